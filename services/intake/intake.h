/*
 * intake.h - the intake service's single context and the pieces of the request pipeline.
 *
 * A request goes: HTTP server (libcommon/http_server) → route table (routes.c) → client IP
 * (clientip.c) → authentication, scope and rate limit (auth.c, ratelimit.c) → the route's
 * handler (ingest.c, alerts.c, api_keys.c, health.c, audit_events.c). All database work is
 * asynchronous on the one libuv loop of the process.
 */
#ifndef CALSETA_INTAKE_H
#define CALSETA_INTAKE_H

#include "config.h"
#include "http_server.h"
#include "pg.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

struct audit_client;
struct auth_cache;
struct ingest_batcher;
struct used_keys;
struct mapping_cache;
struct normalized_alert;
struct indicator_set;
struct workflows;

/* Rate classes of the original: the per-route limit a request is counted against. */
enum rate_class {
    RATE_NONE = 0,
    RATE_DEFAULT,
    RATE_INGEST,
    RATE_ENRICHMENT,
    RATE_WORKFLOW_EXECUTE,
    RATE_MCP
};

struct intake {
    struct config cfg;
    uv_loop_t *loop;
    struct pg_pool *pg;
    struct audit_client *audit;
    struct http_router *router;
    struct http_server *http;
    struct auth_cache *auth_cache;  /* API-key rows in memory (keycache.h) */
    struct ratelimit *rl;           /* leased rate-limit windows (ratelimit.h) */
    struct health *health;          /* readiness refreshed in the background (health.c) */
    int auth_bcrypts_over_budget;   /* auth.c: bcrypt checks running for IPs over budget */
    struct ingest_batcher *batcher;
    struct used_keys *used_keys;
    struct mapping_cache *mappings; /* pass-2 indicator mappings */
    struct enrich_api *enrich;      /* enrichment API: key, SSRF guard (enrichment_api.h) */
    struct lookup_client *lookups;  /* on-demand lookups asked of enrichers (lookup_client.h) */
    struct workflows *workflows;    /* workflows API, runner client (workflows_api.h) */
    struct agents_api *agents;      /* agents and context documents (agents_api.h) */
    struct mcp *mcp;                /* MCP server: sessions and SSE streams (mcp.h) */
    void *job_push; /* PUSH to the job bus */
    uv_signal_t sigterm, sigint;
    uv_timer_t housekeeping;
    uv_timer_t drain_deadline; /* DRAIN_TIMEOUT_MS: then in-flight connections are closed */
    int draining;
    int metrics_rolling; /* a metrics rollup pass is in flight (metrics_api.c) */
    uint64_t started_ms;
    struct prom *prom; /* Prometheus counters of this process (prom.h) */
};

/* What a verified key may do; copied into each request. */
struct auth_info {
    int64_t key_id;
    char key_prefix[9];
    json_t *scopes;          /* array of strings */
    json_t *allowed_sources; /* array or NULL = unrestricted */
    int rate_limit_per_minute; /* 0 = route default */
};

struct route_def;

/* Per-request state that lives from routing to the response. */
struct reqctx {
    struct intake *in;
    struct http_request *req;
    const struct route_def *route;
    char client_ip[64];
    int authenticated;
    struct auth_info auth;
    /* Rate-limit headers to add to the final response (X-RateLimit-*). */
    int rl_set;
    long rl_limit, rl_remaining, rl_reset;
    void *handler_state;
    uint64_t started_ns; /* uv_hrtime() when routed, for the latency histograms */
    /* Front ends other than REST: the audit event of an auth failure (NULL = auth_failure) and
     * a WWW-Authenticate value for 401 answers (owned, freed with the context). */
    const char *audit_event;
    char *www_authenticate;
};

typedef void (*route_fn)(struct reqctx *rc);

/*
 * One route. The fields after fn are its documentation, from which GET /openapi.json is
 * generated (openapi.c); test_openapi.py fails for a route without summary and tag, or with a
 * schema name that openapi_schemas.c does not define.
 */
struct route_def {
    const char *method;
    const char *pattern;
    const char *scope; /* NULL = public */
    enum rate_class rate;
    route_fn fn;
    const char *summary;  /* one line */
    const char *tag;      /* group in the document, e.g. "Detection rules" */
    const char *request;  /* JSON body schema name; NULL = no body */
    /* success body: "Name" = {"data": Name, "meta": {}}, "Name[]" = paginated list of Name,
     * "-" = none, "text/html" or "text/plain" = that media type, NULL = {"data": object} */
    const char *response;
    int status;           /* success status; 0 = 200 */
    const char *query;    /* query parameters "name[:int|:bool|:date-time|:number],..." */
};

/* routes.c */
void routes_register(struct intake *in);
/* Installs the admission gate (authentication before the body) on in->http. */
void routes_attach(struct intake *in);
/* The route table (for the OpenAPI document). */
const struct route_def *routes_table(size_t *n);
/* Responses through these add the rate-limit headers and free the request context. */
void reply_json(struct reqctx *rc, int status, json_t *body);
void reply_data(struct reqctx *rc, int status, json_t *data); /* {"data":…,"meta":{}} */
/* reply_json with up to 4 extra headers. */
void reply_json_headers(struct reqctx *rc, int status, json_t *body,
                        const struct http_header *extra, size_t nextra);
/* Ends a streamed answer (http_stream_begin on rc->req) and frees the request context. */
void reply_stream_end(struct reqctx *rc);
void reply_list(struct reqctx *rc, json_t *items, long long total, int page, int page_size);
/* As reply_data/reply_list with the data as JSON text written by PostgreSQL, passed through
 * untouched: numbers beyond what jansson holds (u64 counters, 1e19) come back exactly. */
void reply_data_text(struct reqctx *rc, int status, const char *data_json);
void reply_list_text(struct reqctx *rc, const char *items_json, long long total, int page,
                     int page_size);
void reply_error(struct reqctx *rc, int status, const char *code, const char *message,
                 json_t *details);
void reply_empty(struct reqctx *rc, int status);
void reply_body(struct reqctx *rc, int status, const char *content_type, const char *body,
                size_t len);
/* 422 VALIDATION_ERROR with one pydantic-style error {type, loc: [where, field], msg}. */
void reply_validation_error(struct reqctx *rc, const char *type, const char *where,
                            const char *field, const char *msg);
void reply_db_unavailable(struct reqctx *rc);
/* A failed pg_exec: unreachable → 503, a value PostgreSQL refused (SQLSTATE class 22) → 422,
 * anything else → 500 (logged). */
void reply_pg_failure(struct reqctx *rc, PGresult *res, const char *err);
/* 0 when the query succeeded; otherwise replies as reply_pg_failure() and returns -1. */
int reply_if_pg_failed(struct reqctx *rc, PGresult *res, const char *err);
/* 0 when the query succeeded with at least one row; otherwise replies as reply_if_pg_failed()
 * or, for no row, 404 NOT_FOUND with not_found, and returns -1. */
int reply_if_no_row(struct reqctx *rc, PGresult *res, const char *err, const char *not_found);
/* Path parameter i as a NUL-terminated copy in buf; returns buf. */
const char *path_param(struct reqctx *rc, size_t i, char *buf, size_t buflen);
/* Query parameter lookup (URL-decoded); returns 1 if present. */
int query_param(struct reqctx *rc, const char *name, char *out, size_t outlen);
/* Runs a list query whose one row is (total, JSON array of the page's items) - the shape that
 * still knows the total past the last page - and replies the list envelope; no row or a NULL
 * array → 404 with not_found (the parent of the list is missing). each (may be NULL) may
 * adjust every item before the reply. */
void list_query(struct reqctx *rc, const char *sql, int nparams, const char *const *params,
                int page, int page_size, const char *not_found,
                void (*each)(struct reqctx *rc, json_t *item));
/* LIMIT and OFFSET parameters of a page. */
void pagination_params(int page, int page_size, char limit[16], char offset[24]);
/* page/page_size per the original: defaults 1/50, page_size 1..500, 422 on violations. */
int parse_pagination(struct reqctx *rc, int *page, int *page_size);
/* Validates a path uuid (422 VALIDATION_ERROR on failure, then returns -1). */
int require_uuid_param(struct reqctx *rc, size_t i, char out[37]);
/* Parses the body as a JSON object (422 VALIDATION_ERROR on failure, then returns NULL). */
json_t *body_json_object(struct reqctx *rc);
int has_scope(const struct auth_info *a, const char *scope);

/* clientip.c */
void client_ip_resolve(const struct http_request *req, int trusted_proxy_count, char *out,
                       size_t outlen);

/* auth.c: authenticates, checks scope and rate limit, then calls next(rc) or replies. */
struct auth_cache *auth_cache_new(struct intake *in);
void auth_cache_free(struct auth_cache *c);
void auth_request(struct reqctx *rc, route_fn next);
void auth_info_destroy(struct auth_info *a);
/* The key with this prefix changed (NULL = any key may have): its row is read again before its
 * next use. */
void auth_cache_invalidate(struct auth_cache *c, const char *prefix);
/* last_used_at bookkeeping: remembered in memory, written in batches. */
struct used_keys *used_keys_new(void);
void used_keys_note(struct used_keys *u, int64_t key_id);
/* Writes last_used_at of the keys used since the last flush; then done(in) if not NULL. */
void used_keys_flush(struct intake *in, void (*done)(struct intake *in));
void used_keys_free(struct used_keys *u);

/* ingest.c */
struct ingest_batcher *ingest_batcher_new(struct intake *in);
void ingest_batcher_free(struct ingest_batcher *b);
/* The batcher's state for GET /metrics: alerts queued, of them held behind a batch of their
 * fingerprint, batches in the database, alerts ever held back on arrival. */
void ingest_batcher_gauges(const struct ingest_batcher *b, size_t *queued, size_t *held,
                           int *inflight, uint64_t *held_total);
/* Folds the indicator sightings of committed alerts into indicators.last_seen (housekeeping). */
void ingest_sightings_apply(struct intake *in);
void route_ingest_source(struct reqctx *rc);
void route_post_alert(struct reqctx *rc);

/* mappings.c: pass-2 indicator mappings, refreshed by housekeeping */
void mappings_refresh(struct intake *in);

/* metrics_api.c: one pass of the metrics rollup (housekeeping); skipped while one is in flight
 * in this process, and a no-op in PostgreSQL while another process's pass holds its lock. */
void metrics_rollup_run(struct intake *in);
/* links_merge.c: the periodic merge of the alert links' GIN pending list */
void links_merge_start(struct intake *in);
void links_merge_stop(void);
/* Reloads on every change notification of indicator_field_mappings. */
void mappings_listen(struct intake *in);
/* Replaces the mappings with copies of m[0..n), as a load from the table does. */
struct indicator_mapping;
void mappings_set(struct intake *in, const struct indicator_mapping *m, size_t n);
void mappings_apply(struct intake *in, const struct normalized_alert *na, const char *source,
                    struct indicator_set *set);
void mappings_free(struct mapping_cache *c);

/* health.c: readiness checked in the background; GET /health answers from memory */
void health_start(struct intake *in);
void health_stop(struct intake *in);
void health_free(struct intake *in);

/* handlers */
void route_health(struct reqctx *rc);
void route_list_alerts(struct reqctx *rc);
void route_get_alert(struct reqctx *rc);
void route_patch_alert(struct reqctx *rc);
void route_delete_alert(struct reqctx *rc);
void route_alert_indicators(struct reqctx *rc);
void route_alert_activity(struct reqctx *rc);
void route_list_api_keys(struct reqctx *rc);
void route_create_api_key(struct reqctx *rc);
void route_get_api_key(struct reqctx *rc);
void route_patch_api_key(struct reqctx *rc);
void route_delete_api_key(struct reqctx *rc);
void route_list_audit_events(struct reqctx *rc);

/* findings.c */
void route_post_finding(struct reqctx *rc);
void route_list_findings(struct reqctx *rc);

#endif
