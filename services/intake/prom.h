/*
 * prom.h - the intake's Prometheus metrics: counters and histograms kept in this process's
 * memory, and figures read from PostgreSQL (job queues, workflow runs) through a short cache.
 *
 * In-memory series are per process: each carries the label pid, because a scrape reaches
 * whichever intake process accepts the connection (they share the port). See docs/api.md.
 */
#ifndef INTAKE_PROM_H
#define INTAKE_PROM_H

#include <stddef.h>
#include <stdint.h>

struct intake;
struct reqctx;
struct prom;

struct prom *prom_new(struct intake *in);
void prom_free(struct prom *p);

/* One answered request of a routed request (status = HTTP status). */
void prom_request(struct intake *in, const struct reqctx *rc, int status);
/* One authentication: the verification cache answered (hit) or not. */
void prom_auth_cache(struct intake *in, int hit);
/* One ingest batch of n alerts sent to PostgreSQL. */
void prom_ingest_batch(struct intake *in, size_t n);
/* One ingested alert's waits: queued until its batch went out, then the batch's round trip. */
void prom_ingest_waits(struct intake *in, double queued_s, double database_s);

/* One provider lookup made by this process for the API (on-demand or provider test); outcome
 * "success", "failure" or "cache_hit". */
void prom_enrichment_lookup(struct intake *in, const char *provider, const char *outcome);

/* GET /metrics */
void route_prometheus(struct reqctx *rc);

#endif
