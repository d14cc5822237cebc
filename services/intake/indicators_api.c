/*
 * indicators_api.c - one indicator (GET, and PATCH for the analyst's malice override or its
 * reset), adding indicators to an alert, and an alert's relationship graph.
 *
 * Fixed on purpose: a value that is blank after trimming is refused (the original stored "");
 * the enrichment job asked for with enrich=true is committed with the links it is for and
 * announced after the commit; PATCH returns the providers' raw answers only to a key that may
 * read them through GET (enrichments:read); the graph is one statement, not one per indicator.
 */
#include "catalogue.h"
#include "enrichment_api.h"
#include "indicators.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char NOT_FOUND[] = "Indicator not found.";

void route_get_indicator(struct reqctx *rc)
{
    cat_exec_uuid(rc,
                  "SELECT calseta_indicator_detail_json(i, true)::text FROM indicators i "
                  "WHERE i.uuid = $1",
                  200, NOT_FOUND);
}

void route_patch_indicator(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    /* {} and {"malice": null} both reset, as in the original. */
    json_t *m = json_object_get(body, "malice");
    if (m && !json_is_null(m) && !str_in(json_string_value(m), MALICE_LEVELS)) {
        json_decref(body);
        reply_validation_error(rc, "enum", "body", "malice",
                               "Input should be 'Pending', 'Benign', 'Suspicious' or 'Malicious'");
        return;
    }
    json_t *params = json_array();
    param_add(params, uuid);
    param_add(params, json_string_value(m));
    param_add(params, rc->auth.key_prefix);
    param_add(params, has_scope(&rc->auth, "enrichments:read") ? "true" : "false");
    json_decref(body);
    cat_exec(rc, "SELECT calseta_indicator_set_malice($1, $2, $3, $4)::text", params, 200,
             NOT_FOUND, NULL);
}

/* ---- POST /v1/alerts/{uuid}/indicators ---------------------------------------------------- */

/* Checks and trims the items into a new array of {type, value}; NULL after a 422 reply. */
static json_t *checked_items(struct reqctx *rc, const json_t *body)
{
    const json_t *list = json_object_get(body, "indicators");
    if (!json_is_array(list) || json_array_size(list) < 1 || json_array_size(list) > 100) {
        reply_validation_error(rc, list ? "too_long" : "missing", "body", "indicators",
                               "indicators must be a list of 1 to 100 items");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        const char *type = json_string_value(json_object_get(it, "type"));
        json_t *v = json_object_get(it, "value");
        const char *value = json_string_value(v);
        if (!json_is_object(it) || !indicator_type_valid(type)) {
            reply_validation_error(rc, "enum", "body", "type",
                                   "Input should be 'ip', 'domain', 'hash_md5', 'hash_sha1', "
                                   "'hash_sha256', 'url', 'email' or 'account'");
            goto fail;
        }
        size_t len = value ? json_string_length(v) : 0;
        if (!value || strlen(value) != len || len > 2048) {
            reply_validation_error(rc, "string_type", "body", "value",
                                   "value must be a string of 1 to 2048 characters");
            goto fail;
        }
        len = py_strip(&value, len);
        if (len == 0) {
            reply_validation_error(rc, "string_too_short", "body", "value",
                                   "value must not be blank");
            goto fail;
        }
        json_array_append_new(out, json_pack("{s:s,s:s%}", "type", type, "value", value, len));
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

static void on_added(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (reply_if_pg_failed(rc, res, err) != 0)
        return;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        reply_error(rc, 404, "NOT_FOUND", "Alert not found.", NULL);
        return;
    }
    json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    json_t *job = json_object_get(r, "job_id");
    if (json_is_integer(job)) /* committed: now the "work is ready" signal */
        push_job_ready(rc->in, (long long)json_integer_value(job),
                       (long long)json_integer_value(json_object_get(r, "alert_id")));
    json_t *data = json_incref(json_object_get(r, "data"));
    json_decref(r);
    reply_data(rc, 201, data ? data : json_object());
}

void route_add_alert_indicators(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    int enrich = query_bool(rc, "enrich");
    if (enrich == -2)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    json_t *items = checked_items(rc, body);
    json_decref(body);
    if (!items)
        return;
    json_t *doc = json_pack("{s:o,s:b}", "indicators", items, "enrich", enrich != 0);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    const char *p[3] = {uuid, text, rc->auth.key_prefix};
    pg_exec(rc->in->pg, "SELECT calseta_alert_add_indicators($1, $2::jsonb, $3)::text", 3, p,
            on_added, rc);
    free(text);
}

void route_relationship_graph(struct reqctx *rc)
{
    char uuid[37], v[32], lim[16] = "10";
    long long n;
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    if (query_param(rc, "sibling_limit", v, sizeof v)) {
        if (parse_ll(v, 1, 50, &n) != 0) {
            reply_validation_error(rc, "less_than_equal", "query", "sibling_limit",
                                   "Input should be between 1 and 50");
            return;
        }
        snprintf(lim, sizeof lim, "%lld", n);
    }
    json_t *params = json_array();
    param_add(params, uuid);
    param_add(params, lim);
    cat_exec(rc, "SELECT calseta_relationship_graph($1, $2::int)::text", params, 200,
             "Alert not found.", NULL);
}
