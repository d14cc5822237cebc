/*
 * main.c - calseta-intake: the HTTP front door.
 *
 *   1. configuration and logging           config_load()
 *   2. event loop, database pool, audit     uv_default_loop(), pg_pool_new(), audit_client_new()
 *   3. key-change notifications             LISTEN calseta_api_keys → auth cache
 *   4. job bus                              PUSH to JOB_BUS_PUSH_ENDPOINT
 *   5. routes and the HTTP server           routes_register(), http_server_new() (SO_REUSEPORT)
 *   6. housekeeping timer                   last_used_at, rate-counter cleanup; readiness
 *      for /health, key-row refresh and rate-limit give-backs run on their own timers
 *   7. SIGTERM/SIGINT: drain                stop accepting, finish in-flight, flush, exit
 */
#include "audit.h"
#include "bus.h"
#include "crypto.h"
#include "enrichment_api.h"
#include "agents_api.h"
#include "intake.h"
#include "mcp.h"
#include "log.h"
#include "lookup_client.h"
#include "procsec.h"
#include "siphash.h"
#include "prom.h"
#include "ratelimit.h"
#include "keycache.h"
#include "signature.h"
#include "util.h"
#include "workflows_api.h"

#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void on_key_change(void *arg, const char *channel, const char *payload)
{
    struct intake *in = arg;
    (void)channel;
    auth_cache_invalidate(in->auth_cache, payload); /* NULL payload: missed some, drop all */
    mcp_keys_changed(in);                           /* open SSE streams re-check their keys */
}

static void on_housekeeping(uv_timer_t *t)
{
    struct intake *in = t->data;
    used_keys_flush(in, NULL);
    ingest_sightings_apply(in);
    rl_cleanup(in);
    mappings_refresh(in);
    metrics_rollup_run(in);
}

static void on_pool_closed(void *arg)
{
    struct intake *in = arg;
    in->pg = NULL;
}

static void close_pool(struct intake *in)
{
    pg_pool_close(in->pg, on_pool_closed, in);
}

static void flush_and_close_pool(struct intake *in)
{
    used_keys_flush(in, close_pool); /* the last batch of last_used_at, then the pool */
}

static void on_drained(void *arg)
{
    struct intake *in = arg;
    msg_info("drained: no request in flight, stopping");
    uv_timer_stop(&in->housekeeping);
    uv_close((uv_handle_t *)&in->housekeeping, NULL);
    links_merge_stop();
    uv_close((uv_handle_t *)&in->drain_deadline, NULL);
    uv_close((uv_handle_t *)&in->sigterm, NULL);
    uv_close((uv_handle_t *)&in->sigint, NULL);
    health_stop(in);
    keycache_stop(in->auth_cache);
    rl_stop(in->rl);
    flush_and_close_pool(in);
}

static void on_drain_deadline(uv_timer_t *t)
{
    struct intake *in = t->data;
    msg_warn("drain took longer than DRAIN_TIMEOUT_MS: closing the remaining connections");
    http_server_close_all(in->http);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct intake *in = s->data;
    if (in->draining)
        return;
    in->draining = 1;
    msg_info("received %s: draining", strsignal(signum));
    uv_timer_start(&in->drain_deadline, on_drain_deadline, (uint64_t)in->cfg.drain_timeout_ms, 0);
    mcp_drain(in); /* SSE streams would otherwise hold the drain until its deadline */
    http_server_drain(in->http, on_drained, in);
}

static void job_bus_open(struct intake *in)
{
    char err[512];
    struct bus_opts o = {.link = "jobs", .max_msg = 4096};
    in->job_push = bus_client(ZMQ_PUSH, &in->cfg, in->cfg.job_bus_push, &o, err, sizeof err);
    if (!in->job_push)
        msg_warn("job bus: %s (enrichers will find jobs by polling)", err);
    in->lookups = lookup_client_new(in->loop, &in->cfg, err, sizeof err);
    if (!in->lookups)
        msg_fatal("on-demand lookups: %s (LOOKUP_REQUEST_ENDPOINT=%s)", err,
                  in->cfg.lookup_front);
}

int main(void)
{
    static struct intake in; /* the service's one context */
    char perr[160];
    if (secure_process_init(perr, sizeof perr) != 0) /* before any secret is read */
        fprintf(stderr, "calseta-intake: %s\n", perr);
    (void)siphash_process_key(); /* drawn now: a kernel without randomness stops us here */
    char err[512];
    if (config_load(&in.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-intake: configuration error: %s\n", err);
        return 1;
    }
    config_init_log(&in.cfg, "intake");
    if (in.cfg.ingest_flush_wait_set)
        msg_warn("INGEST_FLUSH_WAIT_MS is retired and ignored: a batch now waits beside a live "
                 "one until the queue holds INGEST_BATCH_MIN alerts or the live batch has been "
                 "out INGEST_STALL_MS");
    if (in.cfg.ingest_max_inflight_raised)
        msg_warn("INGEST_MAX_INFLIGHT=1 is read as 2: a stalled batch keeps its slot, so with one "
                 "slot a stuck batch would hold every other alert of the process");
    if (!*in.cfg.database_url)
        msg_fatal("DATABASE_URL is not set");
    signal(SIGPIPE, SIG_IGN);
    crypto_md5_require(); /* alert fingerprints: a host whose providers refuse MD5 stops here */
    /* Keep freed heap instead of returning it at once: every group commit frees a batch
     * document of tens of KB at the top of the heap, and glibc's default trim threshold gave it
     * back to the kernel (brk) and took it again for the next batch - 5 % of the CPU per alert
     * under load (perf). What is kept is reused by the next batch. Only glibc's malloc reads
     * this; the release build links jemalloc (docs/allocator.md), which keeps freed pages itself. */
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    /* before any thread: a workflow test's reply is wiped when freed (workflow_client.c) */
    json_set_alloc_funcs(malloc, free_scoped);
    in.loop = uv_default_loop();
    in.started_ms = now_mono_ms();

    in.pg = pg_pool_new(in.loop, in.cfg.database_url, 8, 3000);
    in.audit = audit_client_new(&in.cfg, "intake", in.loop);
    audit_emit_config_loaded(in.audit, &in.cfg);
    webhook_warn_unsigned(&in.cfg);
    in.auth_cache = auth_cache_new(&in);
    in.rl = rl_new(&in);
    in.used_keys = used_keys_new();
    in.batcher = ingest_batcher_new(&in);
    pg_pool_listen(in.pg, "calseta_api_keys", on_key_change, &in);
    mappings_refresh(&in);
    mappings_listen(&in);
    in.enrich = enrich_api_new(&in);
    workflows_api_init(&in);
    agents_api_init(&in);
    mcp_init(&in);
    job_bus_open(&in);

    in.router = http_router_new();
    routes_register(&in);
    in.prom = prom_new(&in);
    struct http_server_config hc = {
        .host = in.cfg.http_host,
        .port = in.cfg.http_port,
        .reuseport = 1,
        .tls_cert_file = in.cfg.tls_cert_file,
        .tls_key_file = in.cfg.tls_key_file,
        .https_enabled = in.cfg.https_enabled,
        .hsts_enabled = in.cfg.hsts_enabled,
        .max_body_bytes = in.cfg.max_request_body_bytes,
        .max_ingest_body_bytes = in.cfg.max_ingest_payload_bytes,
        .max_body_mb = in.cfg.max_request_body_mb,
        .max_ingest_body_mb = in.cfg.max_ingest_payload_mb,
        .max_header_bytes = in.cfg.max_header_bytes,
        .header_timeout_ms = in.cfg.header_timeout_ms,
        .body_timeout_ms = in.cfg.body_timeout_ms,
        .idle_timeout_ms = in.cfg.idle_timeout_ms,
        .body_min_rate = in.cfg.body_min_rate,
        .max_connections = in.cfg.max_connections,
        .max_connections_per_ip = in.cfg.trusted_proxy_count > 0 ? in.cfg.max_connections_per_proxy
                                                                 : in.cfg.max_connections_per_ip,
        .max_bodies_per_ip = in.cfg.trusted_proxy_count > 0 ? in.cfg.max_connections_per_proxy
                                                            : in.cfg.max_bodies_per_ip,
        .cors_allowed_origins = in.cfg.cors_allowed_origins,
        .cors_allow_all = in.cfg.cors_allow_all,
    };
    in.http = http_server_new(in.loop, &hc, in.router, &in, err, sizeof err);
    if (!in.http)
        msg_fatal("cannot start the HTTP server on %s:%d: %s", in.cfg.http_host, in.cfg.http_port,
                  err);
    routes_attach(&in);
    msg_info("listening on %s://%s:%d", *in.cfg.tls_cert_file ? "https" : "http",
             in.cfg.http_host, http_server_port(in.http));

    health_start(&in);
    uv_timer_init(in.loop, &in.housekeeping);
    in.housekeeping.data = &in;
    uv_timer_start(&in.housekeeping, on_housekeeping, 15000, 15000);
    links_merge_start(&in);
    uv_timer_init(in.loop, &in.drain_deadline);
    in.drain_deadline.data = &in;
    uv_signal_init(in.loop, &in.sigterm);
    uv_signal_init(in.loop, &in.sigint);
    in.sigterm.data = in.sigint.data = &in;
    uv_signal_start(&in.sigterm, on_signal, SIGTERM);
    uv_signal_start(&in.sigint, on_signal, SIGINT);

    uv_run(in.loop, UV_RUN_DEFAULT);

    http_server_free(in.http);
    http_router_free(in.router);
    prom_free(in.prom);
    ingest_batcher_free(in.batcher);
    auth_cache_free(in.auth_cache);
    rl_free(in.rl);
    health_free(&in);
    used_keys_free(in.used_keys);
    mappings_free(in.mappings);
    enrich_api_free(in.enrich);
    workflows_api_free(&in);
    agents_api_free(&in);
    mcp_free(&in);
    bus_close(in.job_push);
    lookup_client_free(in.lookups);
    audit_client_flush(in.audit, 3000);
    audit_client_free(in.audit);
    uv_run(in.loop, UV_RUN_NOWAIT); /* let libuv release the closed handles */
    uv_loop_close(in.loop);
    bus_context_term();
    config_destroy(&in.cfg);
    return 0;
}
