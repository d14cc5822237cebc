/*
 * enricher.h - the enrichment worker's one context struct and its modules.
 *
 *   options.c   enricher settings beyond struct config (read once, validated)
 *   claim.c     claiming jobs (poll, ZeroMQ wake-ups, completions), lease renewal, purging
 *               expired shared-cache entries (on the poll)
 *   reload.c    provider snapshots: first load, NOTIFY calseta_providers, periodic reload
 *   job.c       one job: pass 3, caches, lookups in parallel, one completing transaction
 *   lookup.c    on-demand lookups for the intake over the bus, on the same engine
 *   quota.c     provider rate caps shared by every worker (leases from PostgreSQL)
 *
 * and the pieces they use: provider.h (provider snapshots), engine.h (lookups over HTTP, on
 * curluv.h), step.h + template.h (requests from http_config), extract.h + malice.h + jpath.h
 * (what results say), creds.h (credentials at the moment of use), guard.h (SSRF), cache.h and
 * limiter.h (in-process cache, per-provider caps).
 */
#ifndef ENRICHER_ENRICHER_H
#define ENRICHER_ENRICHER_H

#include "cache.h"
#include "config.h"
#include "engine.h"
#include "pg.h"
#include "provider.h"

#include <jansson.h>
#include <uv.h>

struct creds_ctx;
struct guard;
struct bus_watch;
struct job;
struct batch;

struct enricher_options {
    int allow_loopback;     /* ENRICHER_ALLOW_LOOPBACK (tests only), false */
    int max_attempts;       /* ENRICH_JOB_MAX_ATTEMPTS, 5 */
    int poll_ms;            /* ENRICHER_POLL_INTERVAL_MS, 2000 */
    int reload_s;           /* ENRICHER_PROVIDER_RELOAD_SECONDS, 300 */
    int cache_entries;      /* ENRICHER_CACHE_ENTRIES, 10000 */
    long long cache_bytes;  /* ENRICHER_CACHE_MAX_BYTES, 64 MiB */
    long long max_response; /* ENRICHER_MAX_RESPONSE_BYTES, 1048576 */
    int db_connections;     /* ENRICHER_DB_CONNECTIONS, 4 */
    int idle_connections;   /* ENRICHER_IDLE_CONNECTIONS, 2048 */
    int host_connections;   /* ENRICHER_HOST_CONNECTIONS, 256 (0: no limit) */
    int rate_global;        /* ENRICHER_PROVIDER_RATE_GLOBAL, true */
    struct provider_defaults provider;
};

struct enricher {
    uv_loop_t *loop;
    struct config *cfg;
    struct enricher_options opt;
    struct pg_pool *pg;
    struct pg_pool *quota_pg; /* one connection for quota leases, never queued behind results */
    struct pg_pool *renew_pg; /* one connection for lease renewals, never queued either */
    struct engine *engine;
    struct creds_ctx *creds;
    struct guard *guard;
    struct cache *cache;
    struct provider_set *providers; /* current snapshot, NULL until the first load */
    void *audit;                    /* audit client, may be NULL */
    void *pull;                     /* ZeroMQ PULL socket */
    struct bus_watch *watch;
    void *lookup_sock; /* DEALER to the lookup broker: on-demand lookups for the intake */
    struct bus_watch *lookup_watch;
    char owner[160]; /* lease owner: host:pid:random */
    struct job *jobs;
    int inflight;
    struct job *finished, *finished_tail; /* waiting for a completing statement */
    size_t fin_jobs, fin_bytes;           /* how many wait there, their documents' bytes */
    size_t doc_len; /* length of the last completion document: the next one's first guess */
    int completing;                       /* completing statements in flight */
    struct batch *running;                /* those statements, newest first */
    uv_timer_t stall_timer; /* when a running statement has been out too long */
    struct job *retry;      /* finished jobs waiting to try their completion again */
    struct job *again, *again_tail; /* due to try again, each in a statement of its own */
    int completing_again;           /* of the completing statements in flight, such tries */
    int last_again;                 /* the last statement started was such a try */
    unsigned group_seq;             /* last id given to the halves of a failed statement */
    uv_timer_t retry_timer; /* when the first of them is due */
    struct job *cache_wait;               /* claimed, waiting for one shared-cache read */
    int claiming, claim_again;
    int renewing; /* a lease renewal in flight */
    int purging;          /* a shared-cache purge statement in flight */
    char *purge_after[3]; /* where the next purge span starts (NULL: the first key) */
    int loading, reload_again;
    int draining;
    unsigned long jobs_done;
    unsigned long jobs_found_done; /* found done after a statement's answer was lost */
    unsigned long complete_stmts, complete_jobs; /* completing statements, jobs they carried */
    unsigned long claims, claimed;               /* claim statements, jobs they returned */
    uv_timer_t poll_timer;
    uv_timer_t renew_timer;
    uv_timer_t reload_timer;
    uv_signal_t sigterm, sigint;
    void (*drained)(struct enricher *en);
};

/* options.c */
int enricher_options_load(struct enricher_options *o, const struct settings *s, char *err,
                          size_t errlen);

/* reload.c: loads providers now, again on NOTIFY calseta_providers and periodically. The first
 * load exits with a clear error if stored credentials do not match ENCRYPTION_KEY. */
void providers_start(struct enricher *en);
void providers_reload(struct enricher *en);
void providers_stop(struct enricher *en);

/* claim.c */
void claim_start(struct enricher *en);
void claim_kick(struct enricher *en);
/* Stops claiming (poll, job bus); leases of jobs in flight are still renewed. */
void claim_stop(struct enricher *en);
/* After the drain: stops lease renewal. */
void claim_close(struct enricher *en);

/* lookup.c: on-demand lookups asked by intakes (counted in inflight, so the drain waits) */
void lookups_start(struct enricher *en);
/* Stops taking requests; lookups in flight still answer. */
void lookups_stop(struct enricher *en);
/* After the drain: closes the socket. */
void lookups_close(struct enricher *en);

/* quota.c: engine_lease_fn on PostgreSQL (lease_arg: the enricher) */
void quota_lease(void *lease_arg, const char *provider, long want, long limit, long window_ms,
                 engine_leased_cb cb, void *arg);

/* job.c */
void job_start(struct enricher *en, long long job_id, long long alert_id, int attempts,
               json_t *doc);
/* The completing statements' timers: set up at start, closed once drained. */
void jobs_init(struct enricher *en);
void jobs_close(struct enricher *en);
/* On a drain: jobs waiting to try their completion again are released now. */
void jobs_drain(struct enricher *en);
/* Reads the shared cache for every job started since the last call, in one query. */
void jobs_read_shared_cache(struct enricher *en);
/* Called by job.c when a job is over (done, released or lost). */
void claim_job_finished(struct enricher *en);
/* Ids of the jobs in flight (their leases are renewed; the claim leaves them out), as a
 * PostgreSQL array literal "{1,2}" (caller frees), or NULL when there are none. */
char *jobs_in_flight_array(const struct enricher *en);

#endif
