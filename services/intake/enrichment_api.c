/*
 * enrichment_api.c - /v1/enrichment-providers: list, create, get, patch, delete, activate,
 * deactivate (see enrichment_api.h), plus the context and helpers the other enrichment route
 * files share.
 *
 * Rules (as the original's): built-in providers cannot be deleted and a PATCH on one may only
 * change is_active, auth_config, description, malice_rules, default_cache_ttl_seconds and
 * cache_ttl_by_type; a custom provider_name matches ^[a-z0-9_]+$ (1-100); TTLs are 0..86400.
 * auth_config is encrypted on write as {"_encrypted": Fernet token of the JSON object} under
 * ENCRYPTION_KEY (empty or null: stored as NULL) and is never returned. Every http_config URL of
 * a custom provider whose host is literal goes through the SSRF guard (libcommon/ssrf/ssrf.h, on the
 * thread pool since it resolves) before the row is written; URLs whose host is a template are
 * checked when a lookup renders them.
 */
#include "enrichment_api.h"
#include "audit.h"
#include "catalogue.h"
#include "fernet.h"
#include "guard.h"
#include "indicators.h"
#include "log.h"
#include "provider.h"
#include "settings.h"
#include "util.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

struct enrich_api {
    struct intake *in;
    struct provider_defaults defaults;
    int allow_loopback; /* ENRICHER_ALLOW_LOOPBACK (tests only) */
    int have_key;
    char key[64];
    struct guard *guard;
};

struct enrich_api *enrich_api_new(struct intake *in)
{
    struct enrich_api *a = xcalloc(1, sizeof *a);
    char err[512];
    a->in = in;
    if (provider_defaults_load(&a->defaults, &a->allow_loopback, in->cfg.settings, err,
                               sizeof err) != 0)
        msg_fatal("configuration error: %s", err);
    const char *k = in->cfg.encryption_key;
    struct fernet_key fk;
    if (k && *k && strlen(k) < sizeof a->key && fernet_key_parse(k, &fk) == 0) {
        a->have_key = 1;
        memcpy(a->key, k, strlen(k) + 1);
    } else if (k && *k) {
        msg_warn("ENCRYPTION_KEY is not a valid Fernet key: provider credentials cannot be "
                 "stored or used");
    }
    explicit_bzero(&fk, sizeof fk);
    a->guard = guard_new(in->cfg.ssrf_allowed_hosts, a->allow_loopback);
    if (a->allow_loopback)
        msg_warn("ENRICHER_ALLOW_LOOPBACK=true: provider URLs may name loopback addresses (for "
                 "tests only; cloud-metadata addresses stay blocked)");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return a;
}

void enrich_api_free(struct enrich_api *a)
{
    if (!a)
        return;
    guard_free(a->guard);
    explicit_bzero(a->key, sizeof a->key);
    free(a);
    curl_global_cleanup();
}

const struct provider_defaults *enrich_api_defaults(const struct enrich_api *a)
{
    return &a->defaults;
}

const char *enrich_api_key(const struct enrich_api *a)
{
    return a->have_key ? a->key : NULL;
}

struct guard *enrich_api_guard(const struct enrich_api *a)
{
    return a->guard;
}

static int env_any_set(const struct enrich_api *a, json_t *map)
{
    const char *k;
    json_t *v;
    json_object_foreach(map, k, v)
    {
        const char *val =
            json_is_string(v) ? settings_get(a->in->cfg.settings, json_string_value(v)) : NULL;
        if (val && *val)
            return 1;
    }
    return 0;
}

void enrich_provider_finish(const struct enrich_api *a, json_t *p)
{
    const char *auth_type = json_string_value(json_object_get(p, "auth_type"));
    json_t *mock = json_object_get(p, "mock_responses");
    int conf = 0;
    if (json_is_true(json_object_get(p, "is_active"))) {
        if (a->defaults.mock_mode && json_is_object(mock) && json_object_size(mock))
            conf = 1;
        else if (auth_type && !strcmp(auth_type, "no_auth"))
            conf = 1;
        else if (json_is_true(json_object_get(p, "has_credentials")))
            conf = 1;
        else if (a->in->cfg.settings && env_any_set(a, json_object_get(p, "env_var_mapping")))
            conf = 1;
    }
    json_object_set_new(p, "is_configured", json_boolean(conf));
}

/* ---- field checks ------------------------------------------------------------------------ */

static const char *const BUILTIN_PATCHABLE[] = {
    "is_active",        "auth_config", "description", "malice_rules", "default_cache_ttl_seconds",
    "cache_ttl_by_type"};
/* Every field a body may set; anything else is ignored (as pydantic does). */
static const char *const FIELDS[] = {"provider_name",
                                     "display_name",
                                     "description",
                                     "is_active",
                                     "supported_indicator_types",
                                     "http_config",
                                     "auth_type",
                                     "auth_config",
                                     "env_var_mapping",
                                     "default_cache_ttl_seconds",
                                     "cache_ttl_by_type",
                                     "malice_rules",
                                     "mock_responses"};

static int in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, list[i]))
            return 1;
    return 0;
}

static int str_ok(json_t *v, size_t lo, size_t hi)
{
    const char *s = json_string_value(v);
    return s && strlen(s) == json_string_length(v) && json_string_length(v) >= lo &&
           json_string_length(v) <= hi;
}

static int charset_ok(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr(extra, *s)))
            return 0;
    return 1;
}

static int env_name_ok(const char *s)
{
    if (!*s || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

static int ttl_ok(json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 86400;
}

/* Object whose values are strings (auth_config, env_var_mapping). */
static int string_object(json_t *v, int env_names)
{
    const char *k;
    json_t *x;
    if (!json_is_object(v))
        return 0;
    json_object_foreach(v, k, x)
    {
        if (!str_ok(x, env_names ? 1 : 0, 8192) || strlen(k) > 255)
            return 0;
        if (env_names && !env_name_ok(json_string_value(x)))
            return 0;
    }
    return 1;
}

static const char *check_types(json_t *v)
{
    size_t i;
    json_t *t;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 8)
        return "Input should be a non-empty list of indicator types";
    json_array_foreach(v, i, t)
    {
        if (!indicator_type_valid(json_string_value(t)))
            return "Unknown indicator type (ip, domain, hash_md5, hash_sha1, hash_sha256, url, "
                   "email, account)";
    }
    return NULL;
}

static const char *check_ttl_map(json_t *v)
{
    const char *k;
    json_t *x;
    if (json_is_null(v))
        return NULL;
    if (!json_is_object(v))
        return "Input should be an object of indicator type to seconds";
    json_object_foreach(v, k, x)
    {
        if (!indicator_type_valid(k))
            return "Unknown indicator type";
        if (!ttl_ok(x))
            return "TTL must be an integer between 0 and 86400";
    }
    return NULL;
}

static const char *check_step(json_t *st, size_t i, int has_templates)
{
    json_t *v;
    if (!json_is_object(st))
        return "every step must be an object";
    v = json_object_get(st, "url");
    if (v ? !str_ok(v, 1, 8192) : !(i == 0 && has_templates))
        return "every step needs a url (step 0 may use url_templates_by_type)";
    if ((v = json_object_get(st, "method")) && !str_ok(v, 1, 16))
        return "method must be a string";
    if ((v = json_object_get(st, "name")) && !str_ok(v, 1, 100))
        return "name must be a string of 1 to 100 characters";
    if ((v = json_object_get(st, "headers")) && !json_is_object(v))
        return "headers must be an object";
    if ((v = json_object_get(st, "timeout_seconds")) &&
        !(json_is_number(v) && json_number_value(v) > 0 && json_number_value(v) <= 600))
        return "timeout_seconds must be a number between 0 and 600";
    return NULL;
}

static const char *check_http_config(json_t *hc)
{
    if (!json_is_object(hc))
        return "Input should be an object";
    json_t *steps = json_object_get(hc, "steps");
    json_t *tpl = json_object_get(hc, "url_templates_by_type");
    if (tpl && !string_object(tpl, 0))
        return "url_templates_by_type must map indicator types to URL strings";
    if (!json_is_array(steps) || json_array_size(steps) == 0 || json_array_size(steps) > 20)
        return "steps must be a list of 1 to 20 steps";
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st)
    {
        const char *e = check_step(st, i, tpl != NULL);
        if (e)
            return e;
    }
    return NULL;
}

/*
 * The URL the guard checks for one template: NULL when the host is itself a template (checked
 * when a lookup renders it), else the URL with each {{...}} replaced by "x". *bad is set when
 * the scheme is not a literal http or https.
 */
static char *url_for_check(const char *tpl, int *bad)
{
    *bad = 0;
    size_t skip;
    if (!ascii_casecmp_n(tpl, "http://", 7))
        skip = 7;
    else if (!ascii_casecmp_n(tpl, "https://", 8))
        skip = 8;
    else if (!strncmp(tpl, "{{", 2))
        return NULL;
    else {
        *bad = 1;
        return NULL;
    }
    size_t auth_len = strcspn(tpl + skip, "/?#");
    const char *tp = strstr(tpl + skip, "{{");
    if (tp && tp < tpl + skip + auth_len)
        return NULL;
    struct buf b;
    buf_init(&b);
    const char *s = tpl;
    while (*s) {
        const char *o = strstr(s, "{{");
        const char *c = o ? strstr(o + 2, "}}") : NULL;
        if (!o || !c) {
            buf_append(&b, s, strlen(s));
            break;
        }
        buf_append(&b, s, (size_t)(o - s));
        buf_append(&b, "x", 1);
        s = c + 2;
    }
    buf_append(&b, "", 1);
    return b.data;
}

/* ---- save (create / patch) ------------------------------------------------------------------ */

struct save_op {
    struct reqctx *rc;
    struct enrich_api *a;
    json_t *body;
    json_t *doc; /* the fields to write; auth_config already encrypted */
    char uuid[37];
    int create;
    int builtin;
    char **urls;
    size_t nurls;
    int blocked;
    char reason[512];
    uv_work_t work;
};

static void save_free(struct save_op *op)
{
    for (size_t i = 0; i < op->nurls; i++)
        free(op->urls[i]);
    free(op->urls);
    json_decref(op->body);
    json_decref(op->doc);
    free(op);
}

static void add_url(struct save_op *op, char *u)
{
    op->urls = xrealloc(op->urls, (op->nurls + 1) * sizeof *op->urls);
    op->urls[op->nurls++] = u;
}

/* Collects the URLs the guard must see; replies 400 and returns -1 on a bad scheme. */
static int collect_urls(struct save_op *op, json_t *hc)
{
    json_t *steps = json_object_get(hc, "steps");
    json_t *tpl = json_object_get(hc, "url_templates_by_type");
    size_t n = json_array_size(steps) + json_object_size(tpl);
    const char **src = xcalloc(n + 1, sizeof *src);
    size_t k = 0, i;
    const char *key;
    json_t *v;
    json_array_foreach(steps, i, v)
    {
        if (json_is_string(json_object_get(v, "url")))
            src[k++] = json_string_value(json_object_get(v, "url"));
    }
    json_object_foreach(tpl, key, v) src[k++] = json_string_value(v);
    for (i = 0; i < k; i++) {
        int bad;
        char *u = url_for_check(src[i], &bad);
        if (bad) {
            json_t *details = json_pack("{s:s}", "url", src[i] ? src[i] : "");
            free(src);
            reply_error(op->rc, 400, "INVALID_PROVIDER_URL",
                        "http_config URL blocked by SSRF protection: the scheme must be http or "
                        "https",
                        details);
            return -1;
        }
        if (u)
            add_url(op, u);
    }
    free(src);
    return 0;
}

/* Checks one present field and copies it into doc; replies 422 and returns -1 when invalid. */
static int check_field(struct reqctx *rc, const char *f, json_t *v, json_t *doc)
{
    const char *e = NULL;
    if (!strcmp(f, "provider_name")) {
        if (!str_ok(v, 1, 100) || !charset_ok(json_string_value(v), "_"))
            e = "provider_name must match ^[a-z0-9_]+$ (1 to 100 characters)";
    } else if (!strcmp(f, "display_name")) {
        if (!str_ok(v, 1, 255))
            e = "String should have 1 to 255 characters";
    } else if (!strcmp(f, "description")) {
        if (!json_is_null(v) && !str_ok(v, 0, 4000))
            e = "String should have at most 4000 characters";
    } else if (!strcmp(f, "is_active")) {
        if (!json_is_boolean(v))
            e = "Input should be a valid boolean";
    } else if (!strcmp(f, "supported_indicator_types")) {
        e = check_types(v);
    } else if (!strcmp(f, "http_config")) {
        e = check_http_config(v);
    } else if (!strcmp(f, "auth_type")) {
        if (!str_ok(v, 1, 50) || !charset_ok(json_string_value(v), "_"))
            e = "auth_type must match ^[a-z0-9_]+$ (1 to 50 characters)";
    } else if (!strcmp(f, "auth_config")) {
        if (!json_is_null(v) && !string_object(v, 0))
            e = "auth_config must be an object of string values";
    } else if (!strcmp(f, "env_var_mapping")) {
        if (!json_is_null(v) && !string_object(v, 1))
            e = "env_var_mapping must map fields to environment variable names";
    } else if (!strcmp(f, "default_cache_ttl_seconds")) {
        if (!ttl_ok(v))
            e = "default_cache_ttl_seconds must be an integer between 0 and 86400";
    } else if (!strcmp(f, "cache_ttl_by_type")) {
        e = check_ttl_map(v);
    } else if (!json_is_null(v) && !json_is_object(v)) { /* malice_rules, mock_responses */
        e = "Input should be an object or null";
    }
    if (e) {
        reply_validation_error(rc, "value_error", "body", f, e);
        return -1;
    }
    json_object_set(doc, f, v);
    return 0;
}

/* Encrypts doc.auth_config in place; replies 400 and returns -1 without a usable key. */
static int encrypt_auth(struct save_op *op)
{
    json_t *ac = json_object_get(op->doc, "auth_config");
    if (!ac)
        return 0;
    if (json_is_null(ac) || json_object_size(ac) == 0) {
        json_object_set_new(op->doc, "auth_config", json_null());
        return 0;
    }
    return encrypt_auth_config(op->rc, enrich_api_key(op->a), op->doc);
}

static void save_write(struct save_op *op);

static void do_ssrf(uv_work_t *w)
{
    struct save_op *op = w->data;
    for (size_t i = 0; i < op->nurls && !op->blocked; i++) {
        char why[256];
        if (guard_check(enrich_api_guard(op->a), op->urls[i], NULL, why, sizeof why) != 0) {
            op->blocked = 1;
            snprintf(op->reason, sizeof op->reason, "%s (%s)", why, op->urls[i]);
        }
    }
}

static void after_ssrf(uv_work_t *w, int status)
{
    struct save_op *op = w->data;
    if (status != 0 || op->blocked) {
        char msg[700];
        snprintf(msg, sizeof msg, "http_config URL blocked by SSRF protection: %s",
                 status ? "check cancelled" : op->reason);
        reply_error(op->rc, 400, "INVALID_PROVIDER_URL", msg, NULL);
        save_free(op);
        return;
    }
    save_write(op);
}

/* Validates the body against what this provider allows, then SSRF, encryption, write. */
static void save_start(struct save_op *op)
{
    struct reqctx *rc = op->rc;
    const char *f;
    json_t *v;
    op->doc = json_object();
    if (op->builtin) {
        json_object_foreach(op->body, f, v)
        {
            if (in_list(f, FIELDS, sizeof FIELDS / sizeof *FIELDS) &&
                !in_list(f, BUILTIN_PATCHABLE,
                         sizeof BUILTIN_PATCHABLE / sizeof *BUILTIN_PATCHABLE)) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "Built-in providers only allow changes to is_active, auth_config, "
                         "description, malice_rules, default_cache_ttl_seconds and "
                         "cache_ttl_by_type (not %.60s).",
                         f);
                reply_error(rc, 400, "BUILTIN_PROVIDER_PROTECTED", msg, NULL);
                goto fail;
            }
        }
    }
    if (op->create) {
        static const char *const required[] = {"provider_name", "display_name",
                                               "supported_indicator_types", "http_config"};
        for (size_t i = 0; i < sizeof required / sizeof *required; i++)
            if (!json_object_get(op->body, required[i])) {
                reply_validation_error(rc, "value_error", "body", required[i], "Field required");
                goto fail;
            }
    }
    json_object_foreach(op->body, f, v)
    {
        if (!in_list(f, FIELDS, sizeof FIELDS / sizeof *FIELDS) ||
            (!op->create && !strcmp(f, "provider_name")))
            continue;
        if (check_field(rc, f, v, op->doc) != 0)
            goto fail;
    }
    json_t *hc = json_object_get(op->doc, "http_config");
    if (hc && !op->builtin && collect_urls(op, hc) != 0)
        goto fail;
    if (encrypt_auth(op) != 0)
        goto fail;
    if (op->nurls) {
        op->work.data = op;
        uv_queue_work(rc->in->loop, &op->work, do_ssrf, after_ssrf);
        return;
    }
    save_write(op);
    return;
fail:
    save_free(op);
}

static json_t *changed_fields(json_t *doc)
{
    json_t *a = json_array();
    const char *f;
    json_t *v;
    json_object_foreach(doc, f, v) json_array_append_new(a, json_string(f));
    return a;
}

static void on_saved(void *arg, PGresult *res, const char *err)
{
    struct save_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err) {
        const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (st && !strcmp(st, "23505"))
            reply_error(rc, 409, "CONFLICT", "A provider with this provider_name already exists.",
                        NULL);
        else
            reply_pg_failure(rc, res, err);
        save_free(op);
        return;
    }
    if (PQntuples(res) == 0) {
        reply_error(rc, 404, "NOT_FOUND", "Enrichment provider not found.", NULL);
        save_free(op);
        return;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    enrich_provider_finish(op->a, data);
    audit_emit(rc->in->audit, op->create ? "provider_created" : "provider_updated",
               rc->req->request_id, rc->auth.key_prefix, rc->client_ip,
               json_pack("{s:O,s:O,s:o}", "provider_name", json_object_get(data, "provider_name"),
                         "provider_uuid", json_object_get(data, "uuid"), "fields",
                         changed_fields(op->doc)));
    int status = op->create ? 201 : 200;
    save_free(op);
    reply_data(rc, status, data);
}

static void save_write(struct save_op *op)
{
    char *doc = json_dumps(op->doc, JSON_COMPACT);
    if (op->create) {
        const char *params[1] = {doc};
        pg_exec(op->rc->in->pg,
                "INSERT INTO enrichment_providers AS p (provider_name, display_name, description, "
                "is_builtin, is_active, supported_indicator_types, http_config, auth_type, "
                "auth_config, env_var_mapping, default_cache_ttl_seconds, cache_ttl_by_type, "
                "malice_rules, mock_responses) "
                "SELECT d->>'provider_name', d->>'display_name', d->>'description', false, "
                "coalesce((d->>'is_active')::boolean, true), "
                "ARRAY(SELECT jsonb_array_elements_text(d->'supported_indicator_types')), "
                "d->'http_config', coalesce(d->>'auth_type', 'no_auth'), "
                "nullif(d->'auth_config', 'null'), nullif(d->'env_var_mapping', 'null'), "
                "coalesce((d->>'default_cache_ttl_seconds')::integer, 3600), "
                "nullif(d->'cache_ttl_by_type', 'null'), nullif(d->'malice_rules', 'null'), "
                "nullif(d->'mock_responses', 'null') FROM (SELECT $1::jsonb AS d) s "
                "RETURNING " ENRICH_PROVIDER_JSON,
                1, params, on_saved, op);
    } else {
        const char *params[3] = {op->uuid, doc, op->builtin ? "t" : "f"};
        pg_exec(op->rc->in->pg,
                "UPDATE enrichment_providers p SET "
                " display_name = CASE WHEN $2::jsonb ? 'display_name' "
                "   THEN $2::jsonb->>'display_name' ELSE p.display_name END, "
                " description = CASE WHEN $2::jsonb ? 'description' "
                "   THEN $2::jsonb->>'description' ELSE p.description END, "
                " is_active = CASE WHEN $2::jsonb ? 'is_active' "
                "   THEN ($2::jsonb->>'is_active')::boolean ELSE p.is_active END, "
                " supported_indicator_types = CASE WHEN $2::jsonb ? 'supported_indicator_types' "
                "   THEN ARRAY(SELECT jsonb_array_elements_text("
                "              $2::jsonb->'supported_indicator_types')) "
                "   ELSE p.supported_indicator_types END, "
                " http_config = CASE WHEN $2::jsonb ? 'http_config' "
                "   THEN $2::jsonb->'http_config' ELSE p.http_config END, "
                " auth_type = CASE WHEN $2::jsonb ? 'auth_type' "
                "   THEN $2::jsonb->>'auth_type' ELSE p.auth_type END, "
                " auth_config = CASE WHEN $2::jsonb ? 'auth_config' "
                "   THEN nullif($2::jsonb->'auth_config', 'null') ELSE p.auth_config END, "
                " env_var_mapping = CASE WHEN $2::jsonb ? 'env_var_mapping' "
                "   THEN nullif($2::jsonb->'env_var_mapping', 'null') ELSE p.env_var_mapping END, "
                " default_cache_ttl_seconds = CASE WHEN $2::jsonb ? 'default_cache_ttl_seconds' "
                "   THEN ($2::jsonb->>'default_cache_ttl_seconds')::integer "
                "   ELSE p.default_cache_ttl_seconds END, "
                " cache_ttl_by_type = CASE WHEN $2::jsonb ? 'cache_ttl_by_type' "
                "   THEN nullif($2::jsonb->'cache_ttl_by_type', 'null') "
                "   ELSE p.cache_ttl_by_type END, "
                " malice_rules = CASE WHEN $2::jsonb ? 'malice_rules' "
                "   THEN nullif($2::jsonb->'malice_rules', 'null') ELSE p.malice_rules END, "
                " mock_responses = CASE WHEN $2::jsonb ? 'mock_responses' "
                "   THEN nullif($2::jsonb->'mock_responses', 'null') ELSE p.mock_responses END, "
                " updated_at = now() "
                "WHERE p.uuid = $1 AND p.is_builtin = $3::boolean RETURNING " ENRICH_PROVIDER_JSON,
                3, params, on_saved, op);
    }
    free(doc);
}

void route_create_provider(struct reqctx *rc)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    struct save_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->a = rc->in->enrich;
    op->body = body;
    op->create = 1;
    save_start(op);
}

static void on_patch_target(void *arg, PGresult *res, const char *err)
{
    struct save_op *op = arg;
    if (reply_if_no_row(op->rc, res, err, "Enrichment provider not found.")) {
        save_free(op);
        return;
    }
    op->builtin = !strcmp(PQgetvalue(res, 0, 0), "t");
    save_start(op);
}

void route_patch_provider(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    struct save_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->a = rc->in->enrich;
    op->body = body;
    memcpy(op->uuid, uuid, sizeof op->uuid);
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg, "SELECT is_builtin FROM enrichment_providers WHERE uuid = $1", 1, params,
            on_patch_target, op);
}

/* ---- list / get / activate / deactivate / delete --------------------------------------------- */

struct prov_op {
    struct reqctx *rc;
    const char *event; /* audit event on success, or NULL */
};

static void finish_item(struct reqctx *rc, json_t *item)
{
    enrich_provider_finish(rc->in->enrich, item);
}

void route_list_providers(struct reqctx *rc)
{
    int page, page_size;
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    char active[16] = "";
    const char *act = NULL;
    if (query_param(rc, "is_active", active, sizeof active)) {
        if (strcmp(active, "true") && strcmp(active, "false")) {
            reply_validation_error(rc, "bool_parsing", "query", "is_active",
                                   "Input should be a valid boolean");
            return;
        }
        act = active;
    }
    char limit[16], offset[24];
    pagination_params(page, page_size, limit, offset);
    const char *params[3] = {limit, offset, act};
    list_query(rc,
               "WITH f AS (SELECT * FROM enrichment_providers p "
               "           WHERE $3::boolean IS NULL OR p.is_active = $3::boolean) "
               "SELECT (SELECT count(*) FROM f), coalesce((SELECT json_agg(x.j ORDER BY x.n) "
               "FROM (SELECT (" ENRICH_PROVIDER_JSON ")::json AS j, row_number() OVER (ORDER BY "
               "p.is_builtin DESC, p.provider_name) AS n FROM f p ORDER BY p.is_builtin DESC, "
               "p.provider_name LIMIT $1 OFFSET $2) x), '[]'::json)::text",
               3, params, page, page_size, "Enrichment provider not found.", finish_item);
}

static void on_one(void *arg, PGresult *res, const char *err)
{
    struct prov_op *op = arg;
    struct reqctx *rc = op->rc;
    if (reply_if_no_row(rc, res, err, "Enrichment provider not found.")) {
        free(op);
        return;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    enrich_provider_finish(rc->in->enrich, data);
    if (op->event)
        audit_emit(rc->in->audit, op->event, rc->req->request_id, rc->auth.key_prefix,
                   rc->client_ip,
                   json_pack("{s:O,s:O,s:[s],s:O}", "provider_name",
                             json_object_get(data, "provider_name"), "provider_uuid",
                             json_object_get(data, "uuid"), "fields", "is_active", "is_active",
                             json_object_get(data, "is_active")));
    free(op);
    reply_data(rc, 200, data);
}

void route_get_provider(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    struct prov_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg,
            "SELECT " ENRICH_PROVIDER_JSON " FROM enrichment_providers p WHERE p.uuid = $1", 1,
            params, on_one, op);
}

static void set_active(struct reqctx *rc, const char *v)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    struct prov_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->event = "provider_updated";
    const char *params[2] = {uuid, v};
    pg_exec(rc->in->pg,
            "UPDATE enrichment_providers p SET is_active = $2::boolean, updated_at = now() "
            "WHERE p.uuid = $1 RETURNING " ENRICH_PROVIDER_JSON,
            2, params, on_one, op);
}

void route_activate_provider(struct reqctx *rc)
{
    set_active(rc, "t");
}

void route_deactivate_provider(struct reqctx *rc)
{
    set_active(rc, "f");
}

static void on_deleted(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (reply_if_no_row(rc, res, err, "Enrichment provider not found."))
        return;
    if (!strcmp(PQgetvalue(res, 0, 0), "t")) {
        reply_error(rc, 400, "BUILTIN_PROVIDER_PROTECTED",
                    "Built-in providers cannot be deleted; deactivate them instead.", NULL);
        return;
    }
    audit_emit(rc->in->audit, "provider_deleted", rc->req->request_id, rc->auth.key_prefix,
               rc->client_ip,
               json_pack("{s:s,s:s}", "provider_name", PQgetvalue(res, 0, 1), "provider_uuid",
                         PQgetvalue(res, 0, 2)));
    reply_empty(rc, 204);
}

void route_delete_provider(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg,
            "WITH t AS (SELECT id, is_builtin, provider_name, uuid FROM enrichment_providers "
            "           WHERE uuid = $1 FOR UPDATE), "
            "d AS (DELETE FROM enrichment_providers p USING t "
            "      WHERE p.id = t.id AND NOT t.is_builtin RETURNING p.id) "
            "SELECT t.is_builtin, t.provider_name, t.uuid, (SELECT count(*) FROM d) FROM t",
            1, params, on_deleted, rc);
}
