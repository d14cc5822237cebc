/*
 * api_keys.c - /v1/api-keys: list, create (the only time a key is shown), get, patch, revoke.
 *
 * All admin-only (route table). Keys are made as the original makes them: "cai_" + 43
 * base64url chars, bcrypt $2b$ cost 12 (hashed on the thread pool, never on the loop). Scopes
 * must be among the ten known ones (422 otherwise). rate_limit_per_minute sets a key's own
 * limit for every rate class (SIEM keys need thousands). Each change is audited (never the key)
 * and other intake processes drop their cached verification through the NOTIFY trigger.
 */
#include "apikey.h"
#include "audit.h"
#include "crypto.h"
#include "intake.h"
#include "log.h"
#include "scopes.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Checks a list of strings; scopes additionally against the known set. Returns a PostgreSQL
 * array literal (caller frees) or NULL after replying. */
static char *string_list(struct reqctx *rc, json_t *v, const char *field, int scopes,
                         int min_items)
{
    if (!json_is_array(v)) {
        reply_validation_error(rc, "value_error", "body", field, "Input should be a valid list");
        return NULL;
    }
    if (json_array_size(v) < (size_t)min_items) {
        reply_validation_error(rc, "value_error", "body", field, "List should have at least 1 item after validation");
        return NULL;
    }
    json_t *arr = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        const char *s = json_string_value(x);
        if (!s || strlen(s) != json_string_length(x) || strlen(s) > 255) {
            json_decref(arr);
            reply_validation_error(rc, "value_error", "body", field, "Input should be a list of valid strings");
            return NULL;
        }
        if (scopes && !scope_known(s)) {
            json_decref(arr);
            char msg[320];
            snprintf(msg, sizeof msg, "Unknown scope '%.255s'", s);
            reply_validation_error(rc, "value_error", "body", field, msg);
            return NULL;
        }
        json_array_append(arr, x);
    }
    /* Built as JSON and converted by PostgreSQL: no hand-made array quoting. */
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

/* ---- list ------------------------------------------------------------------------------ */

void route_list_api_keys(struct reqctx *rc)
{
    int page, page_size;
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    char limit[16], offset[24];
    pagination_params(page, page_size, limit, offset);
    const char *params[2] = {limit, offset};
    list_query(rc,
               "WITH f AS (SELECT * FROM api_keys k WHERE k.is_active) "
               "SELECT (SELECT count(*) FROM f), coalesce((SELECT json_agg(x.j ORDER BY x.n) "
               "FROM (SELECT calseta_api_key_json(k) AS j, row_number() OVER (ORDER BY "
               "k.created_at DESC, k.id DESC) AS n FROM f k ORDER BY k.created_at DESC, "
               "k.id DESC LIMIT $1 OFFSET $2) x), '[]'::json)::text",
               2, params, page, page_size, "API key not found.", NULL);
}

/* ---- create ---------------------------------------------------------------------------- */

struct create_op {
    struct reqctx *rc;
    char key[48];
    char prefix[9];
    char hash[61];
    char *name, *scopes, *sources, *key_type, *expires_at, *expires_in, *rlpm;
    int attempts;
    uv_work_t work;
};

static void create_free(struct create_op *op)
{
    explicit_bzero(op->key, sizeof op->key);
    free(op->name);
    free(op->scopes);
    free(op->sources);
    free(op->key_type);
    free(op->expires_at);
    free(op->expires_in);
    free(op->rlpm);
    free(op);
}

static void create_work(uv_work_t *w);
static void create_after_hash(uv_work_t *w, int status);

static void on_created(void *arg, PGresult *res, const char *err)
{
    struct create_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res) {
        create_free(op);
        reply_db_unavailable(rc);
        return;
    }
    if (err) {
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (st && !strcmp(st, "23505") && ++op->attempts < 4) {
            /* key_prefix collision (24 random bits): make another key. */
            uv_queue_work(rc->in->loop, &op->work, create_work, create_after_hash);
            return;
        }
        if (st && !strncmp(st, "22", 2)) {
            create_free(op);
            reply_validation_error(rc, "value_error", "body", "expires_at", "Input should be a valid datetime");
            return;
        }
        msg_error("api key insert failed: %s", err);
        create_free(op);
        reply_error(rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
        return;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    json_object_del(data, "last_used_at");
    json_object_set_new(data, "key", json_string(op->key));
    audit_emit(rc->in->audit, "api_key_created", rc->req->request_id, rc->auth.key_prefix,
               rc->client_ip,
               json_pack("{s:s,s:s,s:O}", "key_prefix", op->prefix, "name", op->name, "scopes",
                         json_object_get(data, "scopes")));
    create_free(op);
    reply_data(rc, 201, data);
}

static void create_work(uv_work_t *w)
{
    struct create_op *op = w->data;
    apikey_generate(op->key, op->prefix);
    if (apikey_hash(op->key, 12, op->hash) != 0)
        op->hash[0] = 0;
}

static void create_after_hash(uv_work_t *w, int status)
{
    struct create_op *op = w->data;
    struct reqctx *rc = op->rc;
    if (status != 0 || !op->hash[0]) {
        create_free(op);
        reply_error(rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
        return;
    }
    const char *params[9] = {op->name,       op->prefix,     op->hash,
                             op->scopes,     op->key_type,   op->expires_at,
                             op->sources,    op->expires_in, op->rlpm};
    pg_exec(rc->in->pg,
            "INSERT INTO api_keys AS k (name, key_prefix, key_hash, scopes, key_type, expires_at, "
            "allowed_sources, rate_limit_per_minute) "
            "VALUES ($1, $2, $3, ARRAY(SELECT json_array_elements_text($4::json)), $5, "
            "CASE WHEN $8::bigint IS NOT NULL THEN now() + make_interval(secs => $8::bigint) "
            "ELSE $6::timestamptz END, "
            "CASE WHEN $7::json IS NULL THEN NULL "
            "ELSE ARRAY(SELECT json_array_elements_text($7::json)) END, $9::int) "
            "RETURNING calseta_api_key_json(k)::text",
            9, params, on_created, op);
}

void route_create_api_key(struct reqctx *rc)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    struct create_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    json_t *name = json_object_get(body, "name");
    json_t *scopes = json_object_get(body, "scopes");
    json_t *kt = json_object_get(body, "key_type");
    json_t *exp = json_object_get(body, "expires_at");
    json_t *expin = json_object_get(body, "expires_in_seconds");
    json_t *src = json_object_get(body, "allowed_sources");
    json_t *rl = json_object_get(body, "rate_limit_per_minute");
    const char *ns = json_string_value(name);
    if (!ns || json_string_length(name) < 1 || json_string_length(name) > 255 ||
        strlen(ns) != json_string_length(name)) {
        reply_validation_error(rc, "value_error", "body", "name", "String should have 1 to 255 characters");
        goto fail;
    }
    op->name = xstrdup(ns);
    if (!scopes) {
        reply_validation_error(rc, "value_error", "body", "scopes", "Field required");
        goto fail;
    }
    if (!(op->scopes = string_list(rc, scopes, "scopes", 1, 1)))
        goto fail;
    if (kt && !json_is_null(kt)) {
        const char *k = json_string_value(kt);
        if (!k || (strcmp(k, "human") && strcmp(k, "agent"))) {
            reply_validation_error(rc, "value_error", "body", "key_type", "key_type must be one of: ['agent', 'human']");
            goto fail;
        }
        op->key_type = xstrdup(k);
    } else {
        op->key_type = xstrdup("human");
    }
    if (exp && !json_is_null(exp)) {
        if (!json_is_string(exp) || json_string_length(exp) > 64) {
            reply_validation_error(rc, "value_error", "body", "expires_at", "Input should be a valid datetime");
            goto fail;
        }
        op->expires_at = xstrdup(json_string_value(exp));
    }
    if (expin && !json_is_null(expin)) {
        if (!json_is_integer(expin) || json_integer_value(expin) <= 0 ||
            json_integer_value(expin) > 100LL * 365 * 86400) {
            reply_validation_error(rc, "value_error", "body", "expires_in_seconds", "Input should be a positive integer");
            goto fail;
        }
        op->expires_in = xasprintf("%lld", (long long)json_integer_value(expin));
    }
    if (src && !json_is_null(src) && !(op->sources = string_list(rc, src, "allowed_sources", 0, 0)))
        goto fail;
    if (rl && !json_is_null(rl)) {
        if (!json_is_integer(rl) || json_integer_value(rl) < 1 ||
            json_integer_value(rl) > 100000000) {
            reply_validation_error(rc, "value_error", "body", "rate_limit_per_minute",
                             "Input should be an integer between 1 and 100000000");
            goto fail;
        }
        op->rlpm = xasprintf("%lld", (long long)json_integer_value(rl));
    }
    json_decref(body);
    op->work.data = op;
    uv_queue_work(rc->in->loop, &op->work, create_work, create_after_hash);
    return;
fail:
    json_decref(body);
    create_free(op);
}

/* ---- get / patch / delete ----------------------------------------------------------------- */

struct one_op {
    struct reqctx *rc;
    const char *event; /* audit event on success, or NULL */
    int empty;         /* reply 204 */
};

static void on_one(void *arg, PGresult *res, const char *err)
{
    struct one_op *op = arg;
    struct reqctx *rc = op->rc;
    if (reply_if_no_row(rc, res, err, "API key not found.")) {
        free(op);
        return;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (op->event) {
        const char *prefix = json_string_value(json_object_get(data, "key_prefix"));
        auth_cache_invalidate(rc->in->auth_cache, prefix);
        audit_emit(rc->in->audit, op->event, rc->req->request_id, rc->auth.key_prefix,
                   rc->client_ip,
                   json_pack("{s:s,s:O,s:O}", "key_prefix", prefix ? prefix : "", "scopes",
                             json_object_get(data, "scopes"), "is_active",
                             json_object_get(data, "is_active")));
    }
    int empty = op->empty;
    free(op);
    if (empty) {
        json_decref(data);
        reply_empty(rc, 204);
    } else {
        reply_data(rc, 200, data);
    }
}

void route_get_api_key(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    struct one_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg, "SELECT calseta_api_key_json(k)::text FROM api_keys k WHERE k.uuid = $1",
            1, params, on_one, op);
}

void route_delete_api_key(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    struct one_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->event = "api_key_revoked";
    op->empty = 1;
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg,
            "UPDATE api_keys k SET is_active = false, updated_at = now() WHERE k.uuid = $1 "
            "RETURNING calseta_api_key_json(k)::text",
            1, params, on_one, op);
}

void route_patch_api_key(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    char *scopes = NULL, *sources = NULL, *rlpm = NULL;
    const char *active = NULL, *set_sources = "f", *set_rl = "f";
    json_t *v;
    if ((v = json_object_get(body, "scopes")) && !json_is_null(v) &&
        !(scopes = string_list(rc, v, "scopes", 1, 0)))
        goto fail;
    if ((v = json_object_get(body, "is_active")) && !json_is_null(v)) {
        if (!json_is_boolean(v)) {
            reply_validation_error(rc, "value_error", "body", "is_active", "Input should be a valid boolean");
            goto fail;
        }
        active = json_is_true(v) ? "t" : "f";
    }
    if ((v = json_object_get(body, "allowed_sources"))) {
        set_sources = "t";
        if (!json_is_null(v) && !(sources = string_list(rc, v, "allowed_sources", 0, 0)))
            goto fail;
    }
    if ((v = json_object_get(body, "rate_limit_per_minute"))) {
        set_rl = "t";
        if (!json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > 100000000) {
                reply_validation_error(rc, "value_error", "body", "rate_limit_per_minute",
                                 "Input should be an integer between 1 and 100000000");
                goto fail;
            }
            rlpm = xasprintf("%lld", (long long)json_integer_value(v));
        }
    }
    json_decref(body);
    struct one_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->event = "api_key_updated";
    const char *params[7] = {uuid, scopes, active, set_sources, sources, set_rl, rlpm};
    pg_exec(rc->in->pg,
            "UPDATE api_keys k SET "
            " scopes = CASE WHEN $2::json IS NULL THEN k.scopes "
            "          ELSE ARRAY(SELECT json_array_elements_text($2::json)) END, "
            " is_active = coalesce($3::boolean, k.is_active), "
            " allowed_sources = CASE WHEN NOT $4::boolean THEN k.allowed_sources "
            "          WHEN $5::json IS NULL THEN NULL "
            "          ELSE ARRAY(SELECT json_array_elements_text($5::json)) END, "
            " rate_limit_per_minute = CASE WHEN $6::boolean THEN $7::int "
            "          ELSE k.rate_limit_per_minute END, "
            " updated_at = now() "
            "WHERE k.uuid = $1 RETURNING calseta_api_key_json(k)::text",
            7, params, on_one, op);
    free(scopes);
    free(sources);
    free(rlpm);
    return;
fail:
    json_decref(body);
    free(scopes);
    free(sources);
    free(rlpm);
}
