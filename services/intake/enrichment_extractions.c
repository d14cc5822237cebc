/*
 * enrichment_extractions.c - /v1/enrichment-field-extractions: list (filters provider_name,
 * indicator_type, is_active), create, bulk create (all or nothing, one statement), get, patch,
 * delete. Rows made through the API have is_system=false; seeded (system) rows can be patched
 * (e.g. deactivated) but not deleted. (provider_name, indicator_type, source_path) is unique:
 * 409 on a duplicate. Writes fire the NOTIFY trigger of migration 0004 (enrichers reload).
 */
#include "audit.h"
#include "enrichment_api.h"
#include "indicators.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define EXTRACTION_JSON                                                                            \
    "json_build_object('uuid', x.uuid, 'provider_name', x.provider_name, 'indicator_type', "       \
    "x.indicator_type, 'source_path', x.source_path, 'target_key', x.target_key, 'value_type', "   \
    "x.value_type, 'is_system', x.is_system, 'is_active', x.is_active, 'description', "            \
    "x.description, 'created_at', calseta_ts(x.created_at), 'updated_at', "                        \
    "calseta_ts(x.updated_at))::text"

#define BULK_MAX 500

static const char *const VALUE_TYPES[] = {"string", "int", "float", "bool", "list", "dict", "any"};

static int str_ok(json_t *v, size_t lo, size_t hi)
{
    const char *s = json_string_value(v);
    return s && strlen(s) == json_string_length(v) && json_string_length(v) >= lo &&
           json_string_length(v) <= hi;
}

static int value_type_ok(const char *s)
{
    for (size_t i = 0; s && i < sizeof VALUE_TYPES / sizeof *VALUE_TYPES; i++)
        if (!strcmp(s, VALUE_TYPES[i]))
            return 1;
    return 0;
}

/* Checks one extraction object; on success returns the row to write (new reference), else
 * NULL with *field and *msg set. create: required fields must be there. */
static json_t *check_extraction(json_t *o, int create, const char **field, const char **msg)
{
    static const char *const required[] = {"provider_name", "indicator_type", "source_path",
                                           "target_key"};
    json_t *row = json_object();
    json_t *v;
    if (!json_is_object(o)) {
        *field = "body";
        *msg = "Input should be an object";
        goto fail;
    }
    for (size_t i = 0; create && i < sizeof required / sizeof *required; i++)
        if (!json_object_get(o, required[i])) {
            *field = required[i];
            *msg = "Field required";
            goto fail;
        }
    *msg = NULL;
    if (create && (v = json_object_get(o, "provider_name"))) {
        *field = "provider_name";
        if (!str_ok(v, 1, 100))
            *msg = "String should have 1 to 100 characters";
        json_object_set(row, *field, v);
    }
    if (!*msg && (v = json_object_get(o, "indicator_type"))) {
        *field = "indicator_type";
        if (!indicator_type_valid(json_string_value(v)))
            *msg = "Unknown indicator type";
        json_object_set(row, *field, v);
    }
    if (!*msg && (v = json_object_get(o, "source_path"))) {
        *field = "source_path";
        if (!str_ok(v, 1, 500))
            *msg = "String should have 1 to 500 characters";
        json_object_set(row, *field, v);
    }
    if (!*msg && (v = json_object_get(o, "target_key"))) {
        *field = "target_key";
        if (!str_ok(v, 1, 255))
            *msg = "String should have 1 to 255 characters";
        json_object_set(row, *field, v);
    }
    if (!*msg && (v = json_object_get(o, "value_type"))) {
        *field = "value_type";
        if (!value_type_ok(json_string_value(v)))
            *msg = "value_type must be one of string, int, float, bool, list, dict, any";
        json_object_set(row, *field, v);
    }
    if (!*msg && (v = json_object_get(o, "is_active"))) {
        *field = "is_active";
        if (!json_is_boolean(v))
            *msg = "Input should be a valid boolean";
        json_object_set(row, *field, v);
    }
    if (!*msg && (v = json_object_get(o, "description"))) {
        *field = "description";
        if (!json_is_null(v) && !str_ok(v, 0, 4000))
            *msg = "String should have at most 4000 characters";
        json_object_set(row, *field, v);
    }
    if (*msg)
        goto fail;
    return row;
fail:
    json_decref(row);
    return NULL;
}

struct ext_op {
    struct reqctx *rc;
    int bulk;
    const char *event;
    int empty;
};

static void audit_rows(struct reqctx *rc, const char *event, json_t *rows)
{
    json_t *names = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        json_array_append_new(names,
                              json_pack("{s:O,s:O,s:O,s:O}", "uuid", json_object_get(r, "uuid"),
                                        "provider_name", json_object_get(r, "provider_name"),
                                        "indicator_type", json_object_get(r, "indicator_type"),
                                        "source_path", json_object_get(r, "source_path")));
    }
    audit_emit(rc->in->audit, event, rc->req->request_id, rc->auth.key_prefix, rc->client_ip,
               json_pack("{s:o}", "extractions", names));
}

static void on_rows(void *arg, PGresult *res, const char *err)
{
    struct ext_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err) {
        const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        free(op);
        if (st && !strcmp(st, "23505"))
            reply_error(rc, 409, "CONFLICT",
                        "A field extraction with this provider_name, indicator_type and "
                        "source_path already exists.",
                        NULL);
        else
            reply_pg_failure(rc, res, err);
        return;
    }
    if (PQntuples(res) == 0 && !op->bulk) {
        free(op);
        reply_error(rc, 404, "NOT_FOUND", "Field extraction not found.", NULL);
        return;
    }
    json_t *rows = json_array();
    for (int r = 0; r < PQntuples(res); r++)
        json_array_append_new(rows, json_loads(PQgetvalue(res, r, 0), 0, NULL));
    if (op->event)
        audit_rows(rc, op->event, rows);
    int bulk = op->bulk, empty = op->empty, created = op->event && strstr(op->event, "created");
    free(op);
    if (empty) {
        json_decref(rows);
        reply_empty(rc, 204);
    } else if (bulk) {
        reply_data(rc, 201, rows);
    } else {
        json_t *one = json_incref(json_array_get(rows, 0));
        json_decref(rows);
        reply_data(rc, created ? 201 : 200, one);
    }
}

/* Inserts the rows of a JSON array (already checked) in one statement. */
static void insert_rows(struct reqctx *rc, json_t *rows, int bulk)
{
    struct ext_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->bulk = bulk;
    op->event = "field_extraction_created";
    char *doc = json_dumps(rows, JSON_COMPACT);
    const char *params[1] = {doc};
    pg_exec(rc->in->pg,
            "INSERT INTO enrichment_field_extractions AS x (provider_name, indicator_type, "
            "source_path, target_key, value_type, is_system, is_active, description) "
            "SELECT r->>'provider_name', r->>'indicator_type', r->>'source_path', "
            "r->>'target_key', coalesce(r->>'value_type', 'string'), false, "
            "coalesce((r->>'is_active')::boolean, true), r->>'description' "
            "FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(r, n) ORDER BY e.n "
            "RETURNING " EXTRACTION_JSON,
            1, params, on_rows, op);
    free(doc);
}

void route_create_extraction(struct reqctx *rc)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    const char *field, *msg;
    json_t *row = check_extraction(body, 1, &field, &msg);
    json_decref(body);
    if (!row) {
        reply_validation_error(rc, "value_error", "body", field, msg);
        return;
    }
    json_t *rows = json_array();
    json_array_append_new(rows, row);
    insert_rows(rc, rows, 0);
    json_decref(rows);
}

void route_bulk_create_extractions(struct reqctx *rc)
{
    json_error_t e;
    struct http_request *req = rc->req;
    json_t *body =
        json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_REJECT_DUPLICATES, &e);
    json_t *list = json_is_array(body) ? body : json_object_get(body, "extractions");
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > BULK_MAX) {
        json_decref(body);
        reply_validation_error(rc, "value_error", "body", "extractions",
                                "A list of 1 to 500 extractions is required (a JSON array, or "
                                "an object with an \"extractions\" array)");
        return;
    }
    json_t *rows = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        const char *field, *msg;
        json_t *row = check_extraction(o, 1, &field, &msg);
        if (!row) {
            char m[400];
            snprintf(m, sizeof m, "extractions[%zu].%s: %s", i, field, msg);
            json_decref(rows);
            json_decref(body);
            reply_validation_error(rc, "value_error", "body", "extractions", m);
            return;
        }
        json_array_append_new(rows, row);
    }
    json_decref(body);
    insert_rows(rc, rows, 1);
    json_decref(rows);
}

void route_list_extractions(struct reqctx *rc)
{
    int page, page_size;
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    char prov[128], type[32], act[16];
    const char *pp = query_param(rc, "provider_name", prov, sizeof prov) ? prov : NULL;
    const char *tp = query_param(rc, "indicator_type", type, sizeof type) ? type : NULL;
    const char *ap = query_param(rc, "is_active", act, sizeof act) ? act : NULL;
    if (ap && strcmp(ap, "true") && strcmp(ap, "false")) {
        reply_validation_error(rc, "bool_parsing", "query", "is_active",
                               "Input should be a valid boolean");
        return;
    }
    char limit[16], offset[24];
    pagination_params(page, page_size, limit, offset);
    const char *params[5] = {limit, offset, pp, tp, ap};
    list_query(rc,
               "WITH f AS (SELECT * FROM enrichment_field_extractions x "
               "           WHERE ($3::text IS NULL OR x.provider_name = $3) "
               "             AND ($4::text IS NULL OR x.indicator_type = $4) "
               "             AND ($5::boolean IS NULL OR x.is_active = $5::boolean)) "
               "SELECT (SELECT count(*) FROM f), coalesce((SELECT json_agg(y.j ORDER BY y.n) "
               "FROM (SELECT (" EXTRACTION_JSON ")::json AS j, row_number() OVER (ORDER BY "
               "x.provider_name, x.indicator_type, x.id) AS n FROM f x ORDER BY x.provider_name, "
               "x.indicator_type, x.id LIMIT $1 OFFSET $2) y), '[]'::json)::text",
               5, params, page, page_size, "Field extraction not found.", NULL);
}

void route_get_extraction(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    struct ext_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg,
            "SELECT " EXTRACTION_JSON " FROM enrichment_field_extractions x WHERE x.uuid = $1", 1,
            params, on_rows, op);
}

void route_patch_extraction(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    const char *field, *msg;
    json_t *row = check_extraction(body, 0, &field, &msg);
    json_decref(body);
    if (!row) {
        reply_validation_error(rc, "value_error", "body", field, msg);
        return;
    }
    struct ext_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->event = "field_extraction_updated";
    char *doc = json_dumps(row, JSON_COMPACT);
    json_decref(row);
    const char *params[2] = {uuid, doc};
    pg_exec(rc->in->pg,
            "UPDATE enrichment_field_extractions x SET "
            " indicator_type = coalesce($2::jsonb->>'indicator_type', x.indicator_type), "
            " source_path = coalesce($2::jsonb->>'source_path', x.source_path), "
            " target_key = coalesce($2::jsonb->>'target_key', x.target_key), "
            " value_type = coalesce($2::jsonb->>'value_type', x.value_type), "
            " is_active = coalesce(($2::jsonb->>'is_active')::boolean, x.is_active), "
            " description = CASE WHEN $2::jsonb ? 'description' "
            "   THEN $2::jsonb->>'description' ELSE x.description END, "
            " updated_at = now() "
            "WHERE x.uuid = $1 RETURNING " EXTRACTION_JSON,
            2, params, on_rows, op);
    free(doc);
}

static void on_deleted(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (reply_if_no_row(rc, res, err, "Field extraction not found."))
        return;
    if (!strcmp(PQgetvalue(res, 0, 0), "t")) {
        reply_error(rc, 400, "SYSTEM_EXTRACTION_PROTECTED",
                    "System field extractions cannot be deleted; deactivate them instead "
                    "(is_active=false).",
                    NULL);
        return;
    }
    json_t *rows = json_pack("[o]", json_loads(PQgetvalue(res, 0, 1), 0, NULL));
    audit_rows(rc, "field_extraction_deleted", rows);
    json_decref(rows);
    reply_empty(rc, 204);
}

void route_delete_extraction(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg,
            "WITH x AS (SELECT * FROM enrichment_field_extractions WHERE uuid = $1 FOR UPDATE), "
            "d AS (DELETE FROM enrichment_field_extractions e USING x "
            "      WHERE e.id = x.id AND NOT x.is_system RETURNING e.id) "
            "SELECT x.is_system, " EXTRACTION_JSON ", (SELECT count(*) FROM d) FROM x",
            1, params, on_deleted, rc);
}
