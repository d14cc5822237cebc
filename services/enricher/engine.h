/*
 * engine.h - provider lookups over HTTP: libcurl's multi interface driven by libuv.
 *
 * One engine per process runs any number of lookups (one indicator at one provider) at once on
 * one loop: curl sockets are watched with uv_poll, curl's timer with a uv_timer
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION), so a slow provider never holds up others.
 *
 * A lookup runs the provider's http_config steps in order (as the original): render, SSRF check
 * with the resolved address pinned for the connection, per-provider caps (limiter.h; the rate
 * shared by every worker when opts.lease is set), send,
 * then classify the status (expected / not-found / optional skip). A 429 or 5xx is retried
 * after Retry-After (seconds or HTTP date) or an exponential backoff, as long as the retry
 * still fits before the deadline; otherwise the lookup fails. Each request's timeout is the
 * step's timeout_seconds (default: the provider's) capped by the deadline. Redirects are not
 * followed, only http/https are spoken, proxies from the environment are ignored, and a
 * response body beyond max_response_bytes fails the lookup.
 *
 * In mock mode a provider with mock_responses answers from them at once (provider.h).
 *
 * Credentials are opened (creds.h) just before the first request of a lookup is built and
 * wiped when the lookup ends; the lookups of one job at one provider, which run together,
 * share one decryption, wiped when the last of them ends. Easy handles are reused (each
 * request sets what changes) and connections kept alive in the multi handle's pool; at most
 * host_connections requests are in flight per host:port, the others wait in order here. The result is the original's per-provider result object; on
 * success, extracted = field extractions + "malice" (malice rules over the raw response).
 *
 * Reusable by the intake for on-demand lookups (POST /v1/enrichments): load a provider_set with
 * PROVIDER_CONFIG_SQL + provider_set_parse(), then engine_lookup() per provider.
 */
#ifndef ENRICHER_ENGINE_H
#define ENRICHER_ENGINE_H

#include "provider.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

struct creds_ctx;
struct guard;
struct engine;

/* The answer to a quota lease: granted tokens (0..want), good for ms_left from the moment
 * the lease was asked for; failed: the shared counter could not be reached. */
typedef void (*engine_leased_cb)(void *arg, long granted, long ms_left, int failed);
/* Asks the shared counter for want of the limit requests of provider's current window of
 * window_ms. Calls cb exactly once, never from inside this call. */
typedef void (*engine_lease_fn)(void *lease_arg, const char *provider, long want, long limit,
                                long window_ms, engine_leased_cb cb, void *arg);

struct engine_opts {
    struct creds_ctx *creds;   /* borrowed, outlives the engine */
    struct guard *guard;       /* borrowed */
    size_t max_response_bytes; /* ENRICHER_MAX_RESPONSE_BYTES, 1 MiB */
    long idle_connections;     /* ENRICHER_IDLE_CONNECTIONS: kept-alive pool, all hosts */
    long host_connections;     /* ENRICHER_HOST_CONNECTIONS: in flight per host:port, 0 = any */
    engine_lease_fn lease;     /* NULL: rate caps per process (limiter.h) */
    void *lease_arg;
};

/* result: a new reference handed to the callee. Always called from the loop, exactly once. */
typedef void (*engine_done_cb)(void *arg, json_t *result);

struct engine *engine_new(uv_loop_t *loop, const struct engine_opts *o);
/*
 * Starts a lookup. p (and its provider_set) must stay valid until cb runs. deadline_ms is on
 * the now_mono_ms() clock. job_id only labels audit events (0 for on-demand lookups).
 */
void engine_lookup(struct engine *e, const struct provider *p, const char *type, const char *value,
                   long long job_id, uint64_t deadline_ms, engine_done_cb cb, void *arg);
/* Lookups not finished yet. */
size_t engine_active(const struct engine *e);
/* Closes the engine once no lookup is active (call after the last callback); done(arg) runs
 * from the loop when its handles are closed. */
void engine_close(struct engine *e, void (*done)(void *), void *arg);

#endif
