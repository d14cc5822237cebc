/*
 * dispatcher.h - calseta-dispatcher: delivers agent webhooks.
 *
 * Deliveries are rows of agent_deliveries (queued by the enrichment trigger, trigger-agents,
 * dispatch-agent and the test route). The dispatcher claims due rows with a lease
 * (calseta_agent_claim, FOR UPDATE SKIP LOCKED), sends each one as a signed POST through the
 * SSRF guard with libcurl's multi interface on libuv (every delivery on its own, concurrently),
 * and records every attempt (calseta_agent_attempt: agent_runs row, retry schedule, activity
 * event). A dispatcher killed mid-delivery loses nothing: the lease expires and any dispatcher
 * takes the row over, with the same delivery id.
 */
#ifndef DISPATCHER_H
#define DISPATCHER_H

#include "config.h"
#include "fernet.h"
#include "pg.h"

#include <jansson.h>

#include <curl/curl.h>
#include <stdint.h>
#include <uv.h>

struct curluv;
struct delivery;

struct dispatcher_options {
    int concurrency;        /* DISPATCHER_CONCURRENCY: deliveries in flight at once */
    int lease_seconds;      /* DISPATCHER_LEASE_SECONDS: lease beyond the agent's timeout */
    int poll_ms;            /* DISPATCHER_POLL_INTERVAL_MS: the sweep, besides NOTIFY */
    int db_connections;     /* DISPATCHER_DB_CONNECTIONS */
    long long max_response; /* AGENT_RESPONSE_MAX_BYTES: response bytes read and stored */
    int allow_loopback;     /* AGENT_WEBHOOK_ALLOW_LOOPBACK: tests only */
    char *api_base_url;     /* CALSETA_API_BASE_URL: calseta_api_base_url of the payload */
};

struct dispatcher {
    struct config *cfg;
    struct dispatcher_options opt;
    uv_loop_t *loop;
    struct pg_pool *pg;
    unsigned ssrf_flags; /* SSRF_ALLOW_LOOPBACK in tests */
    struct curluv *cm;
    struct fernet_key *key; /* ENCRYPTION_KEY, in locked memory */
    char owner[128];
    uv_timer_t sweep;
    uv_signal_t sigterm, sigint;
    int inflight;
    int claiming;       /* claim queries running */
    int claim_reserved; /* slots those queries may fill */
    int claim_again;    /* woken while every claim query was busy */
    int draining;
    unsigned long delivered, failed;
    struct delivery *list; /* in flight */
    /* attempts waiting to be recorded (record.c) */
    struct delivery **rec_v;
    json_t *rec_batch;
    size_t rec_n, rec_cap;
    int rec_inflight; /* batches being written */
    uv_timer_t rec_timer;
};

/* options.c */
int dispatcher_options_load(struct dispatcher_options *o, const struct settings *s, char *err,
                            size_t errlen);
void dispatcher_options_destroy(struct dispatcher_options *o);

/* claim.c */
void claim_start(struct dispatcher *d);
/* Claims as many due deliveries as there is room for (coalesces concurrent wake-ups). */
void claim_now(struct dispatcher *d);
void claim_stop(struct dispatcher *d);

/* deliver.c: takes one claimed row (columns of calseta_agent_claim) */
void delivery_start(struct dispatcher *d, PGresult *res, int row);
/* The recorded outcome ('done', 'retry', 'failed', 'lease_lost'; NULL: not recorded, err says
 * why); frees the delivery. */
void delivery_recorded(struct delivery *v, const char *outcome, const char *err);

/* record.c: attempts are recorded in batches, one statement (one commit) per batch */
void record_queue(struct dispatcher *d, struct delivery *v, json_t *attempt);
void record_init(struct dispatcher *d);
void record_close(struct dispatcher *d);
void delivery_curl_done(void *arg, CURL *easy, CURLcode rc);
/* Called by deliver.c when a delivery is finished and freed. */
void dispatcher_delivery_finished(struct dispatcher *d);

#endif
