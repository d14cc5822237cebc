/*
 * enrichment_lookup.c - lookups from the API (see enrichment_api.h):
 *
 *   POST /v1/enrichments                     {type, value} (or indicator_type/indicator_value):
 *       every active, configured provider supporting the type; the shared PostgreSQL cache
 *       (enrichment_cache of migration 0004) is read first in the same statement as the
 *       configuration, misses run the engine in parallel, successes are written back in one
 *       statement before the reply. Per provider: the result without raw, plus cache_hit.
 *       Indicators the original would not enrich get only a "_validation" skipped result.
 *   POST /v1/enrichment-providers/{uuid}/test  one real lookup with that provider (active or
 *       not), no cache; the result with raw.
 *   GET  /v1/enrichments/providers           active providers and whether each can run.
 *   POST /v1/alerts/{uuid}/enrich            202: a new enrichment job in one statement, then a
 *       JOB_READY wake-up on the job bus.
 *
 * Each lookup request owns its engine and credentials context (per-request audit of
 * credentials_decrypted with the caller's request id and key prefix); both are closed before
 * the reply, so nothing outlives the request.
 */
#include "audit.h"
#include "creds.h"
#include "enricher.h"
#include "enrichment_api.h"
#include "extract.h"
#include "fernet.h"
#include "indicators.h"
#include "log.h"
#include "prom.h"
#include "step.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define LOOKUP_MAX_SECONDS 60

struct lookup_op;

struct one_lookup {
    struct lookup_op *op;
    const struct provider *p;
};

struct lookup_op {
    struct reqctx *rc;
    struct enrich_api *a;
    char *type, *value;
    int test;
    struct provider_set *ps;
    struct creds_ctx *creds;
    struct engine *engine;
    struct one_lookup *lk;
    size_t nlk, pending;
    json_t *cached;   /* {provider: result} from the shared cache */
    json_t *results;  /* {provider: result} for the reply */
    json_t *to_cache; /* [{provider, ttl, result}] */
    json_t *test_result;
    uint64_t started_ms;
    uv_timer_t defer; /* closes the engine outside its own callback */
};

static void lookup_free(struct lookup_op *op)
{
    free(op->type);
    free(op->value);
    provider_set_unref(op->ps);
    creds_ctx_free(op->creds);
    free(op->lk);
    json_decref(op->cached);
    json_decref(op->results);
    json_decref(op->to_cache);
    json_decref(op->test_result);
    free(op);
}

/* Reads {type, value} or {indicator_type, indicator_value}; replies 422 and returns -1. */
static int parse_indicator(struct reqctx *rc, json_t *body, struct lookup_op *op)
{
    json_t *t = json_object_get(body, "type");
    json_t *v = json_object_get(body, "value");
    if (!t)
        t = json_object_get(body, "indicator_type");
    if (!v)
        v = json_object_get(body, "indicator_value");
    if (!indicator_type_valid(json_string_value(t))) {
        reply_validation_error(rc, "value_error", "body", "type",
                                "type must be one of ip, domain, hash_md5, hash_sha1, "
                                "hash_sha256, url, email, account");
        return -1;
    }
    const char *s = json_string_value(v);
    if (!s || strlen(s) != json_string_length(v) || json_string_length(v) < 1 ||
        json_string_length(v) > 2048) {
        reply_validation_error(rc, "value_error", "body", "value", "value must be a string of 1 to 2048 characters");
        return -1;
    }
    op->type = xstrdup(json_string_value(t));
    op->value = xstrdup(s);
    return 0;
}

static void audit_decrypted(void *arg, const char *provider, long long job_id)
{
    struct lookup_op *op = arg;
    struct reqctx *rc = op->rc;
    (void)job_id;
    audit_emit(rc->in->audit, "credentials_decrypted", rc->req->request_id, rc->auth.key_prefix,
               rc->client_ip,
               json_pack("{s:s,s:s}", "provider", provider, "origin",
                         op->test ? "provider_test" : "on_demand"));
}

/* The engine and a credentials context for this request. Without a usable ENCRYPTION_KEY a
 * throw-away key stands in: stored tokens then fail to decrypt (warned) and env_var_mapping
 * credentials still work, as in the original. */
static void lookup_open(struct lookup_op *op)
{
    const char *key = enrich_api_key(op->a);
    char tmp[45], err[256];
    if (!key) {
        fernet_generate_key(tmp);
        key = tmp;
    }
    op->creds = creds_ctx_new(key, op->rc->in->cfg.settings, audit_decrypted, op, err, sizeof err);
    explicit_bzero(tmp, sizeof tmp);
    if (!op->creds)
        msg_fatal("credentials context: %s", err); /* cannot happen: the key was checked */
    struct engine_opts eo = {op->creds, enrich_api_guard(op->a),
                             (size_t)enrich_api_options(op->a)->max_response};
    op->engine = engine_new(op->rc->in->loop, &eo);
}

static uint64_t lookup_deadline(struct lookup_op *op)
{
    int s = op->rc->in->cfg.enrich_job_deadline_seconds;
    if (s <= 0 || s > LOOKUP_MAX_SECONDS)
        s = LOOKUP_MAX_SECONDS;
    return now_mono_ms() + (uint64_t)s * 1000;
}

static void finish_reply(struct lookup_op *op);

static void on_engine_closed(void *arg)
{
    struct lookup_op *op = arg;
    op->engine = NULL;
    finish_reply(op);
}

static void on_defer_closed(uv_handle_t *h)
{
    struct lookup_op *op = h->data;
    engine_close(op->engine, on_engine_closed, op);
}

static void on_defer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, on_defer_closed);
}

static json_t *public_result(json_t *result, int cache_hit)
{
    json_t *r = json_deep_copy(result);
    if (!json_is_object(r)) {
        json_decref(r);
        r = json_object();
    }
    json_object_del(r, "raw");
    json_object_set_new(r, "cache_hit", json_boolean(cache_hit));
    return r;
}

static void on_lookup_done(void *arg, json_t *result)
{
    struct one_lookup *l = arg;
    struct lookup_op *op = l->op;
    prom_enrichment_lookup(op->rc->in, l->p->name,
                           json_is_true(json_object_get(result, "success")) ? "success"
                                                                             : "failure");
    if (op->test) {
        op->test_result = result;
    } else {
        if (json_is_true(json_object_get(result, "success")))
            json_array_append_new(op->to_cache,
                                  json_pack("{s:s,s:i,s:O}", "provider", l->p->name, "ttl",
                                            provider_cache_ttl(l->p, op->type), "result", result));
        json_object_set_new(op->results, l->p->name, public_result(result, 0));
        json_decref(result);
    }
    if (--op->pending == 0) {
        uv_timer_init(op->rc->in->loop, &op->defer);
        op->defer.data = op;
        uv_timer_start(&op->defer, on_defer, 0, 0);
    }
}

static void run_lookups(struct lookup_op *op)
{
    uint64_t deadline = lookup_deadline(op);
    lookup_open(op);
    op->pending = op->nlk;
    for (size_t i = 0; i < op->nlk; i++)
        engine_lookup(op->engine, op->lk[i].p, op->type, op->value, 0, deadline, on_lookup_done,
                      &op->lk[i]);
}

/* ---- POST /v1/enrichments ------------------------------------------------------------------ */

static void reply_results(struct lookup_op *op)
{
    struct reqctx *rc = op->rc;
    json_t *data = json_pack("{s:s,s:s,s:O}", "indicator_type", op->type, "indicator_value",
                             op->value, "results", op->results);
    lookup_free(op);
    reply_data(rc, 200, data);
}

static void on_cache_written(void *arg, PGresult *res, const char *err)
{
    struct lookup_op *op = arg;
    if (!res || err)
        msg_warn("on-demand enrichment: cache write failed: %s", err ? err : "no database");
    reply_results(op);
}

static void finish_reply(struct lookup_op *op)
{
    if (op->test) {
        struct reqctx *rc = op->rc;
        json_t *data = json_deep_copy(op->test_result);
        json_object_set_new(data, "indicator_type", json_string(op->type));
        json_object_set_new(data, "indicator_value", json_string(op->value));
        json_object_set_new(data, "duration_ms",
                            json_integer((json_int_t)(now_mono_ms() - op->started_ms)));
        lookup_free(op);
        reply_data(rc, 200, data);
        return;
    }
    if (json_array_size(op->to_cache) == 0) {
        reply_results(op);
        return;
    }
    char *doc = json_dumps(op->to_cache, JSON_COMPACT);
    const char *params[3] = {op->type, op->value, doc};
    pg_exec(op->rc->in->pg,
            "INSERT INTO enrichment_cache AS c (provider_name, indicator_type, indicator_value, "
            "result, expires_at) "
            "SELECT x->>'provider', $1, $2, x->'result', "
            "now() + make_interval(secs => (x->>'ttl')::integer) "
            "FROM jsonb_array_elements($3::jsonb) x WHERE (x->>'ttl')::integer > 0 "
            "ORDER BY 1 "
            "ON CONFLICT (provider_name, indicator_type, indicator_value) DO UPDATE "
            "SET result = EXCLUDED.result, expires_at = EXCLUDED.expires_at, created_at = now()",
            3, params, on_cache_written, op);
    free(doc);
}

static struct provider_set *parse_config(struct lookup_op *op, const char *text)
{
    char err[256];
    json_t *doc = json_loads(text, 0, NULL);
    struct provider_set *ps =
        doc ? provider_set_parse(doc, &enrich_api_options(op->a)->provider, err, sizeof err) : NULL;
    json_decref(doc);
    return ps;
}

static void on_config(void *arg, PGresult *res, const char *err)
{
    struct lookup_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err || PQntuples(res) != 1) {
        reply_pg_failure(rc, res, err ? err : "no configuration row");
        op->rc = NULL;
        lookup_free(op);
        return;
    }
    op->ps = parse_config(op, PQgetvalue(res, 0, 0));
    op->cached = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    if (!op->ps || !json_is_object(op->cached)) {
        lookup_free(op);
        reply_error(rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
        return;
    }
    const char *reason;
    if (!is_enrichable(op->type, op->value, &reason)) {
        char msg[300];
        snprintf(msg, sizeof msg, "Enrichment skipped: %s", reason);
        json_object_set_new(op->results, "_validation",
                            result_new("_validation", "skipped", NULL, NULL, msg));
        reply_results(op);
        return;
    }
    op->lk = xcalloc(op->ps->n + 1, sizeof *op->lk);
    for (size_t i = 0; i < op->ps->n; i++) {
        const struct provider *p = &op->ps->p[i];
        if (!provider_supports(p, op->type) ||
            !provider_configured(p, creds_env_get, rc->in->cfg.settings))
            continue;
        json_t *hit = json_object_get(op->cached, p->name);
        if (json_is_object(hit)) {
            prom_enrichment_lookup(rc->in, p->name, "cache_hit");
            json_object_set_new(op->results, p->name, public_result(hit, 1));
            continue;
        }
        op->lk[op->nlk].op = op;
        op->lk[op->nlk].p = p;
        op->nlk++;
    }
    if (op->nlk == 0) {
        reply_results(op);
        return;
    }
    run_lookups(op);
}

static struct lookup_op *lookup_new(struct reqctx *rc, int test)
{
    struct lookup_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->a = rc->in->enrich;
    op->test = test;
    op->results = json_object();
    op->to_cache = json_array();
    op->started_ms = now_mono_ms();
    return op;
}

void route_enrich_on_demand(struct reqctx *rc)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    struct lookup_op *op = lookup_new(rc, 0);
    if (parse_indicator(rc, body, op) != 0) {
        json_decref(body);
        op->rc = NULL;
        lookup_free(op);
        return;
    }
    json_decref(body);
    const char *params[2] = {op->type, op->value};
    pg_exec(rc->in->pg,
            "SELECT calseta_enrichment_config()::text, "
            "coalesce((SELECT jsonb_object_agg(c.provider_name, c.result) FROM enrichment_cache c "
            "WHERE c.indicator_type = $1 AND c.indicator_value = $2 AND c.expires_at > now()), "
            "'{}'::jsonb)::text",
            2, params, on_config, op);
}

/* ---- POST /v1/enrichment-providers/{uuid}/test ------------------------------------------------
 */

static void on_test_config(void *arg, PGresult *res, const char *err)
{
    struct lookup_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err) {
        reply_pg_failure(rc, res, err);
        op->rc = NULL;
        lookup_free(op);
        return;
    }
    if (PQntuples(res) == 0) {
        lookup_free(op);
        reply_error(rc, 404, "NOT_FOUND", "Enrichment provider not found.", NULL);
        return;
    }
    op->ps = parse_config(op, PQgetvalue(res, 0, 0));
    if (!op->ps || op->ps->n != 1) {
        lookup_free(op);
        reply_error(rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
        return;
    }
    const struct provider *p = &op->ps->p[0];
    if (!provider_supports(p, op->type)) {
        char msg[300];
        snprintf(msg, sizeof msg, "Provider %.100s does not support indicator type %s.", p->name,
                 op->type);
        lookup_free(op);
        reply_error(rc, 400, "UNSUPPORTED_INDICATOR_TYPE", msg, NULL);
        return;
    }
    op->lk = xcalloc(1, sizeof *op->lk);
    op->lk[0].op = op;
    op->lk[0].p = p;
    op->nlk = 1;
    run_lookups(op);
}

void route_test_provider(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    struct lookup_op *op = lookup_new(rc, 1);
    if (parse_indicator(rc, body, op) != 0) {
        json_decref(body);
        op->rc = NULL;
        lookup_free(op);
        return;
    }
    json_decref(body);
    const char *params[1] = {uuid};
    /* The document of calseta_enrichment_config() for this one provider, active or not. */
    pg_exec(rc->in->pg,
            "SELECT jsonb_build_object('providers', jsonb_build_array(jsonb_build_object("
            "'name', p.provider_name, 'types', to_jsonb(p.supported_indicator_types), "
            "'http_config', p.http_config, 'auth_type', p.auth_type, "
            "'auth_config', p.auth_config, 'env_var_mapping', p.env_var_mapping, "
            "'default_ttl', p.default_cache_ttl_seconds, 'ttl_by_type', p.cache_ttl_by_type, "
            "'malice_rules', p.malice_rules, 'mock_responses', p.mock_responses)), "
            "'extractions', (SELECT coalesce(jsonb_agg(jsonb_build_object("
            "'provider', x.provider_name, 'type', x.indicator_type, "
            "'source_path', x.source_path, 'target_key', x.target_key, "
            "'value_type', x.value_type) ORDER BY x.id), '[]'::jsonb) "
            "FROM enrichment_field_extractions x "
            "WHERE x.is_active AND x.provider_name = p.provider_name), "
            "'mappings', '[]'::jsonb)::text FROM enrichment_providers p WHERE p.uuid = $1",
            1, params, on_test_config, op);
}

/* ---- GET /v1/enrichments/providers -------------------------------------------------------------
 */

static void on_summary(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    static const char *const keep[] = {"uuid",
                                       "provider_name",
                                       "display_name",
                                       "is_builtin",
                                       "is_active",
                                       "supported_indicator_types",
                                       "has_credentials",
                                       "is_configured"};
    if (!res || err) {
        reply_pg_failure(rc, res, err);
        return;
    }
    json_t *items = json_array();
    for (int r = 0; r < PQntuples(res); r++) {
        json_t *p = json_loads(PQgetvalue(res, r, 0), 0, NULL);
        enrich_provider_finish(rc->in->enrich, p);
        json_t *o = json_object();
        for (size_t k = 0; k < sizeof keep / sizeof *keep; k++)
            json_object_set(o, keep[k], json_object_get(p, keep[k]));
        json_decref(p);
        json_array_append_new(items, o);
    }
    reply_data(rc, 200, items);
}

void route_enrichment_providers_summary(struct reqctx *rc)
{
    pg_exec(rc->in->pg,
            "SELECT " ENRICH_PROVIDER_JSON " FROM enrichment_providers p WHERE p.is_active "
            "ORDER BY p.provider_name",
            0, NULL, on_summary, rc);
}

/* ---- POST /v1/alerts/{uuid}/enrich ---------------------------------------------------------- */

struct enrich_alert_op {
    struct reqctx *rc;
    char uuid[37];
};

static void on_job(void *arg, PGresult *res, const char *err)
{
    struct enrich_alert_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err) {
        free(op);
        reply_pg_failure(rc, res, err);
        return;
    }
    if (PQntuples(res) == 0) {
        free(op);
        reply_error(rc, 404, "NOT_FOUND", "Alert not found.", NULL);
        return;
    }
    push_job_ready(rc->in, atoll(PQgetvalue(res, 0, 0)), atoll(PQgetvalue(res, 0, 1)));
    json_t *data = json_pack("{s:s,s:s}", "alert_uuid", op->uuid, "status", "queued");
    free(op);
    reply_data(rc, 202, data);
}

void route_enrich_alert(struct reqctx *rc)
{
    struct enrich_alert_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    if (require_uuid_param(rc, 0, op->uuid) != 0) {
        free(op);
        return;
    }
    const char *params[1] = {op->uuid};
    pg_exec(rc->in->pg,
            "INSERT INTO enrichment_jobs (alert_id) SELECT a.id FROM alerts a WHERE a.uuid = $1 "
            "RETURNING id, alert_id",
            1, params, on_job, op);
}
