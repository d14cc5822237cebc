/*
 * enrichment_lookup.c - lookups from the API (see enrichment_api.h):
 *
 *   POST /v1/enrichments                     {type, value} (or indicator_type/indicator_value):
 *       every active, configured provider supporting the type; the shared PostgreSQL cache
 *       (enrichment_cache_results: entries it wrote and those a worker's job stored) is read
 *       first in the same statement as the
 *       configuration, misses are asked of an enricher over the bus (lookup_client.h) with the
 *       configuration (credentials still encrypted), successes are written back in one
 *       statement before the reply. Per provider: the result without raw, plus cache_hit.
 *       Indicators the original would not enrich get only a "_validation" skipped result.
 *   POST /v1/enrichment-providers/{uuid}/test  one real lookup with that provider (active or
 *       not), no cache; the result with raw.
 *   GET  /v1/enrichments/providers           active providers and whether each can run.
 *   POST /v1/alerts/{uuid}/enrich            202: a new enrichment job in one statement, then a
 *       JOB_READY wake-up on the job bus.
 *
 * The intake never decrypts a provider credential: the enricher that answers opens them just
 * in time (and audits credentials_decrypted), exactly as for jobs. enrich_remote_lookup() is
 * the same on-demand path for callers other than the REST route (MCP tools).
 */
#include "audit.h"
#include "enrichment_api.h"
#include "indicators.h"
#include "log.h"
#include "lookup_client.h"
#include "prom.h"
#include "provider.h"
#include "result.h"
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
    struct reqctx *rc;      /* the REST request, or NULL for enrich_remote_lookup() */
    struct intake *in;
    enrich_remote_cb cb;    /* ...which is answered here */
    void *cb_arg;
    char *provider_filter;  /* only this provider (NULL: every one) */
    struct enrich_api *a;
    char *type, *value;
    int test;
    struct provider_set *ps;
    char *config_text;      /* as read: sent to the enricher (credentials encrypted) */
    struct one_lookup *lk;
    size_t nlk, pending;
    json_t *cached;   /* {provider: result} from the shared cache */
    json_t *results;  /* {provider: result} for the reply */
    json_t *to_cache; /* [{provider, ttl, result}] */
    json_t *test_result;
    uint64_t started_ms;
};

static void lookup_free(struct lookup_op *op)
{
    free(op->type);
    free(op->value);
    provider_set_unref(op->ps);
    free(op->config_text);
    free(op->provider_filter);
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

static int lookup_timeout_ms(struct lookup_op *op)
{
    int s = op->in->cfg.enrich_job_deadline_seconds;
    if (s <= 0 || s > LOOKUP_MAX_SECONDS)
        s = LOOKUP_MAX_SECONDS;
    return s * 1000;
}

static void finish_reply(struct lookup_op *op);

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

static void take_result(struct lookup_op *op, const struct provider *p, json_t *result)
{
    prom_enrichment_lookup(op->in, p->name,
                           json_is_true(json_object_get(result, "success")) ? "success"
                                                                            : "failure");
    if (op->test) {
        json_decref(op->test_result);
        op->test_result = result;
        return;
    }
    if (json_is_true(json_object_get(result, "success")))
        json_array_append_new(op->to_cache,
                              json_pack("{s:s,s:i,s:O}", "provider", p->name, "ttl",
                                        provider_cache_ttl(p, op->type), "result", result));
    json_object_set_new(op->results, p->name, public_result(result, 0));
    json_decref(result);
}

/* Every provider asked gets a result: the enricher's, or a failure saying why there is none
 * (unreachable enricher, deadline, a provider it did not run). */
static void on_remote(void *arg, const char *error, json_t *results)
{
    struct lookup_op *op = arg;
    for (size_t i = 0; i < op->nlk; i++) {
        const struct provider *p = op->lk[i].p;
        json_t *r = results ? json_object_get(results, p->name) : NULL;
        if (json_is_object(r) && json_is_string(json_object_get(r, "status")))
            take_result(op, p, json_incref(r));
        else if (error)
            take_result(op, p, result_new(p->name, "failed", NULL, NULL, error));
        else if (op->test)
            take_result(op, p, result_new(p->name, "skipped", NULL, NULL,
                                          "Provider is not configured on the enricher"));
        /* on demand, a provider the enricher did not run (not configured there) is left out */
    }
    if (op->test && !op->test_result)
        op->test_result = result_new("unknown", "failed", NULL, NULL, "no result");
    finish_reply(op);
}

static void run_lookups(struct lookup_op *op)
{
    json_t *names = json_array();
    for (size_t i = 0; i < op->nlk; i++)
        json_array_append_new(names, json_string(op->lk[i].p->name));
    char *text = json_dumps(names, JSON_COMPACT);
    json_decref(names);
    lookup_client_ask(op->in->lookups, op->type, op->value, op->config_text, text,
                      lookup_timeout_ms(op), on_remote, op);
    free(text);
}

/* ---- POST /v1/enrichments ------------------------------------------------------------------ */

/* The answer: to the REST request, or to enrich_remote_lookup()'s callback. */
static void answer(struct lookup_op *op, json_t *data)
{
    struct reqctx *rc = op->rc;
    enrich_remote_cb cb = op->cb;
    void *arg = op->cb_arg;
    lookup_free(op);
    if (cb) {
        cb(arg, 200, data);
        json_decref(data);
    } else {
        reply_data(rc, 200, data);
    }
}

static void fail(struct lookup_op *op, PGresult *res, const char *err)
{
    struct reqctx *rc = op->rc;
    enrich_remote_cb cb = op->cb;
    void *arg = op->cb_arg;
    op->rc = NULL;
    lookup_free(op);
    if (cb) {
        json_t *e = json_pack("{s:s,s:s}", "code", "SERVICE_UNAVAILABLE", "message",
                              err ? err : "the configuration could not be read");
        cb(arg, 503, e);
        json_decref(e);
    } else if (res || err) {
        reply_pg_failure(rc, res, err);
    } else {
        reply_error(rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
    }
}

static void reply_results(struct lookup_op *op)
{
    answer(op, json_pack("{s:s,s:s,s:O}", "indicator_type", op->type, "indicator_value",
                         op->value, "results", op->results));
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
        json_t *data = json_deep_copy(op->test_result);
        json_object_set_new(data, "indicator_type", json_string(op->type));
        json_object_set_new(data, "indicator_value", json_string(op->value));
        json_object_set_new(data, "duration_ms",
                            json_integer((json_int_t)(now_mono_ms() - op->started_ms)));
        answer(op, data);
        return;
    }
    if (json_array_size(op->to_cache) == 0) {
        reply_results(op);
        return;
    }
    char *doc = json_dumps(op->to_cache, JSON_COMPACT);
    const char *params[3] = {op->type, op->value, doc};
    pg_exec(op->in->pg,
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
        doc ? provider_set_parse(doc, enrich_api_defaults(op->a), err, sizeof err) : NULL;
    json_decref(doc);
    return ps;
}

static void on_config(void *arg, PGresult *res, const char *err)
{
    struct lookup_op *op = arg;
    if (!res || err || PQntuples(res) != 1) {
        fail(op, res, err ? err : "no configuration row");
        return;
    }
    op->config_text = xstrdup(PQgetvalue(res, 0, 0));
    op->ps = parse_config(op, op->config_text);
    op->cached = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    if (!op->ps || !json_is_object(op->cached)) {
        fail(op, NULL, NULL);
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
            (op->provider_filter && strcmp(p->name, op->provider_filter)) ||
            !provider_configured(p, provider_env_get, op->in->cfg.settings))
            continue;
        json_t *hit = json_object_get(op->cached, p->name);
        if (json_is_object(hit)) {
            prom_enrichment_lookup(op->in, p->name, "cache_hit");
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

static struct lookup_op *lookup_new(struct intake *in, struct reqctx *rc, int test)
{
    struct lookup_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->in = in;
    op->a = in->enrich;
    op->test = test;
    op->results = json_object();
    op->to_cache = json_array();
    op->started_ms = now_mono_ms();
    return op;
}

/* Configuration and cached results in one statement, then on_config(). */
static void start_on_demand(struct lookup_op *op)
{
    const char *params[2] = {op->type, op->value};
    pg_exec(op->in->pg,
            "SELECT calseta_enrichment_config()::text, "
            "coalesce((SELECT jsonb_object_agg(c.provider_name, c.result) FROM enrichment_cache_results c "
            "WHERE c.indicator_type = $1 AND c.indicator_value = $2 AND c.expires_at > now()), "
            "'{}'::jsonb)::text",
            2, params, on_config, op);
}

void route_enrich_on_demand(struct reqctx *rc)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    struct lookup_op *op = lookup_new(rc->in, rc, 0);
    if (parse_indicator(rc, body, op) != 0) {
        json_decref(body);
        op->rc = NULL;
        lookup_free(op);
        return;
    }
    json_decref(body);
    start_on_demand(op);
}

void enrich_remote_lookup(struct intake *in, const char *type, const char *value,
                          const char *provider_filter, enrich_remote_cb cb, void *arg)
{
    struct lookup_op *op = lookup_new(in, NULL, 0);
    op->cb = cb;
    op->cb_arg = arg;
    op->type = xstrdup(type);
    op->value = xstrdup(value);
    op->provider_filter = provider_filter ? xstrdup(provider_filter) : NULL;
    start_on_demand(op);
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
    op->config_text = xstrdup(PQgetvalue(res, 0, 0));
    op->ps = parse_config(op, op->config_text);
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
    struct lookup_op *op = lookup_new(rc->in, rc, 1);
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
