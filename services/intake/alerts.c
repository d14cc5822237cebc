/*
 * alerts.c - the alerts API: list with filters and pagination, get, patch (status lifecycle),
 * delete, and an alert's indicators and activity.
 *
 * Filters of GET /v1/alerts (comma lists where plural makes sense): status, severity,
 * source_name, enrichment_status, is_enriched, tags (any of), from_time/to_time (occurred_at,
 * ISO-8601), sort_by (created_at, occurred_at, ingested_at, updated_at, severity, status,
 * title), sort_order (asc|desc, default desc), page, page_size.
 */
#include "catalogue.h"
#include "intake.h"
#include "alert_vocab.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Generic completion: one row, one JSON text column; 404 when no row or NULL. */
struct one_op {
    struct reqctx *rc;
    int status;
    int empty;
    int list; /* column 0 = total, column 1 = items */
    int page, page_size;
};

static void on_one(void *arg, PGresult *res, const char *err)
{
    struct one_op *op = arg;
    struct reqctx *rc = op->rc;
    int status = op->status, empty = op->empty, list = op->list;
    int page = op->page, page_size = op->page_size;
    free(op);
    if (reply_if_pg_failed(rc, res, err))
        return;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, list ? 1 : 0)) {
        reply_error(rc, 404, "NOT_FOUND", "Alert not found.", NULL);
        return;
    }
    /* PostgreSQL's JSON goes out as it is: raw payloads may hold numbers jansson cannot. */
    if (list) {
        reply_list_text(rc, PQgetvalue(res, 0, 1), atoll(PQgetvalue(res, 0, 0)), page, page_size);
        return;
    }
    if (empty) {
        reply_empty(rc, status);
        return;
    }
    reply_data_text(rc, status, PQgetvalue(res, 0, 0));
}

static struct one_op *one_new(struct reqctx *rc, int status)
{
    struct one_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->status = status;
    return op;
}

/* ---- list -------------------------------------------------------------------------------- */

/* Adds "AND <column> = ANY(<list>)" for a comma-separated filter, checking every value. */
static int add_list_filter(struct reqctx *rc, struct buf *where, json_t *params, const char *name,
                           const char *column, const char *const *allowed)
{
    char v[1024];
    if (!query_param(rc, name, v, sizeof v))
        return 0;
    json_t *arr = json_array();
    char *save = NULL;
    for (char *t = strtok_r(v, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t)
            continue;
        if (allowed && !vocab_has(allowed, t)) {
            json_decref(arr);
            char msg[160];
            snprintf(msg, sizeof msg, "Invalid value for %s: '%.80s'", name, t);
            reply_validation_error(rc, "value_error", "query", name, msg);
            return -1;
        }
        json_array_append_new(arr, json_string(t));
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    json_array_append_new(params, json_string(s));
    free(s);
    if (!strcmp(column, "tags"))
        buf_printf(where, " AND a.tags && ARRAY(SELECT json_array_elements_text($%zu::json))",
                   json_array_size(params));
    else
        buf_printf(where, " AND a.%s = ANY(ARRAY(SELECT json_array_elements_text($%zu::json)))",
                   column, json_array_size(params));
    return 0;
}

void route_list_alerts(struct reqctx *rc)
{
    int page, page_size;
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    struct buf where;
    buf_init(&where);
    buf_puts(&where, "TRUE");
    json_t *params = json_array();
    char v[256];
    if (add_list_filter(rc, &where, params, "status", "status", ALERT_STATUSES) ||
        add_list_filter(rc, &where, params, "severity", "severity", ALERT_SEVERITIES) ||
        add_list_filter(rc, &where, params, "source_name", "source_name", NULL) ||
        add_list_filter(rc, &where, params, "enrichment_status", "enrichment_status",
                        ENRICHMENT_STATUSES) ||
        add_list_filter(rc, &where, params, "tags", "tags", NULL))
        goto out;
    if (query_param(rc, "is_enriched", v, sizeof v)) {
        if (strcmp(v, "true") && strcmp(v, "false")) {
            reply_validation_error(rc, "value_error", "query", "is_enriched", "Input should be a valid boolean");
            goto out;
        }
        buf_printf(&where, " AND a.is_enriched = %s", v);
    }
    if (query_param(rc, "from_time", v, sizeof v)) {
        json_array_append_new(params, json_string(v));
        buf_printf(&where, " AND a.occurred_at >= $%zu::timestamptz", json_array_size(params));
    }
    if (query_param(rc, "to_time", v, sizeof v)) {
        json_array_append_new(params, json_string(v));
        buf_printf(&where, " AND a.occurred_at <= $%zu::timestamptz", json_array_size(params));
    }
    const char *order = "a.created_at";
    if (query_param(rc, "sort_by", v, sizeof v)) {
        static const char *cols[] = {"created_at", "occurred_at", "ingested_at", "updated_at",
                                     "status",     "title",       "severity",    NULL};
        if (!vocab_has(cols, v)) {
            reply_validation_error(rc, "value_error", "query", "sort_by", "Invalid sort field");
            goto out;
        }
        order = !strcmp(v, "severity")
                    ? "CASE a.severity WHEN 'Critical' THEN 5 WHEN 'High' THEN 4 WHEN 'Medium' "
                      "THEN 3 WHEN 'Low' THEN 2 WHEN 'Informational' THEN 1 ELSE 0 END"
                : !strcmp(v, "occurred_at") ? "a.occurred_at"
                : !strcmp(v, "ingested_at") ? "a.ingested_at"
                : !strcmp(v, "updated_at")  ? "a.updated_at"
                : !strcmp(v, "status")      ? "a.status"
                : !strcmp(v, "title")       ? "a.title"
                                            : "a.created_at";
    }
    const char *dir = "DESC";
    if (query_param(rc, "sort_order", v, sizeof v)) {
        if (strcmp(v, "asc") && strcmp(v, "desc")) {
            reply_validation_error(rc, "value_error", "query", "sort_order", "Input should be 'asc' or 'desc'");
            goto out;
        }
        dir = !strcmp(v, "asc") ? "ASC" : "DESC";
    }
    /* The count and the page are separate reads of the table: the page takes only the sort key
     * and id of each matching row (an index scan for created_at; for other keys a top-N sort
     * that keeps just the page in memory), then the page's rows for their JSON. */
    char *sql = xasprintf(
        "SELECT (SELECT count(*) FROM alerts a WHERE %s), "
        "coalesce((SELECT json_agg(calseta_alert_json(a, false) ORDER BY x.k %s, x.id %s) FROM "
        "(SELECT %s AS k, a.id FROM alerts a WHERE %s ORDER BY 1 %s, 2 %s LIMIT %d OFFSET %lld) x "
        "JOIN alerts a ON a.id = x.id), '[]'::json)::text",
        where.data, dir, dir, order, where.data, dir, dir, page_size,
        (long long)(page - 1) * page_size);
    const char **pv = param_values(params);
    struct one_op *op = one_new(rc, 200);
    op->list = 1;
    op->page = page;
    op->page_size = page_size;
    pg_exec(rc->in->pg, sql, (int)json_array_size(params), pv, on_one, op);
    free(pv);
    free(sql);
out:
    json_decref(params);
    buf_destroy(&where);
}

/* ---- one alert --------------------------------------------------------------------------- */

void route_get_alert(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *p[1] = {uuid};
    pg_exec(rc->in->pg,
            "SELECT (calseta_alert_json(a, true)::jsonb || jsonb_build_object('indicators', "
            "coalesce((SELECT jsonb_agg(calseta_indicator_json(i) ORDER BY i.type, i.value) "
            "FROM indicators i WHERE i.id = ANY (a.indicator_ids)), '[]'::jsonb), "
            "'context_documents', calseta_alert_context_json(a.id), "
            "'_metadata', calseta_alert_metadata(a.id)))::text FROM alerts a WHERE a.uuid = $1",
            1, p, on_one, one_new(rc, 200));
}

void route_delete_alert(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *p[1] = {uuid};
    struct one_op *op = one_new(rc, 204);
    op->empty = 1;
    pg_exec(rc->in->pg, "SELECT '{}' FROM calseta_alert_delete($1::uuid) AS d(found) WHERE found", 1, p, on_one, op);
}

void route_patch_alert(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    json_t *v;
    const char *status = NULL;
    if ((v = json_object_get(body, "status"))) {
        status = json_string_value(v);
        if (!status || !vocab_has(ALERT_STATUSES, status)) {
            reply_validation_error(rc, "value_error", "body", "status",
                          "Input should be 'Open', 'Triaging', 'Escalated' or 'Closed'");
            goto out;
        }
    }
    if ((v = json_object_get(body, "severity")) &&
        (!json_is_string(v) || !vocab_has(ALERT_SEVERITIES, json_string_value(v)))) {
        reply_validation_error(rc, "value_error", "body", "severity", "Invalid severity");
        goto out;
    }
    if ((v = json_object_get(body, "close_classification")) &&
        (!json_is_string(v) || !vocab_has(CLOSE_CLASSIFICATIONS, json_string_value(v)))) {
        reply_validation_error(rc, "value_error", "body", "close_classification", "Invalid close_classification");
        goto out;
    }
    if (status && !strcmp(status, "Closed") && !json_object_get(body, "close_classification")) {
        reply_validation_error(rc, "value_error", "body", "close_classification",
                      "close_classification is required when status is Closed");
        goto out;
    }
    if ((v = json_object_get(body, "malice_override")) && !json_is_null(v) &&
        (!json_is_string(v) || !vocab_has(MALICE_LEVELS, json_string_value(v)))) {
        reply_validation_error(rc, "value_error", "body", "malice_override", "Invalid malice value");
        goto out;
    }
    if ((v = json_object_get(body, "tags"))) {
        size_t i;
        json_t *t;
        int ok = json_is_array(v);
        json_array_foreach(v, i, t) if (!json_is_string(t) ||
                                        strlen(json_string_value(t)) != json_string_length(t)) ok =
            0;
        if (!ok) {
            reply_validation_error(rc, "value_error", "body", "tags", "Input should be a list of strings");
            goto out;
        }
    }
    char *doc = json_dumps(body, JSON_COMPACT);
    const char *p[3] = {uuid, doc, rc->auth.key_prefix};
    pg_exec(rc->in->pg, "SELECT calseta_alert_patch($1::uuid, $2::jsonb, $3)::text", 3, p, on_one,
            one_new(rc, 200));
    free(doc);
out:
    json_decref(body);
}

void route_alert_indicators(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *p[1] = {uuid};
    struct one_op *op = one_new(rc, 200);
    op->list = 1;
    op->page = 1;
    op->page_size = 500;
    pg_exec(rc->in->pg,
            "SELECT cardinality(a.indicator_ids), "
            "coalesce((SELECT json_agg(calseta_indicator_json(i) ORDER BY i.type, i.value) "
            "FROM indicators i WHERE i.id = ANY (a.indicator_ids)), '[]'::json)::text "
            "FROM alerts a WHERE a.uuid = $1",
            1, p, on_one, op);
}

/* alert_activity holds the stored events and the alert_ingested event each newer alert's row
 * stands for (its ingest writes no event row). */
void route_alert_activity(struct reqctx *rc)
{
    char uuid[37];
    int page, page_size;
    if (require_uuid_param(rc, 0, uuid) != 0 || parse_pagination(rc, &page, &page_size) != 0)
        return;
    char lim[16], off[24];
    snprintf(lim, sizeof lim, "%d", page_size);
    snprintf(off, sizeof off, "%lld", (long long)(page - 1) * page_size);
    const char *p[3] = {uuid, lim, off};
    struct one_op *op = one_new(rc, 200);
    op->list = 1;
    op->page = page;
    op->page_size = page_size;
    pg_exec(rc->in->pg,
            "SELECT (SELECT count(*) FROM alert_activity e WHERE e.alert_id = a.id), "
            "coalesce((SELECT json_agg(x.j ORDER BY x.created_at DESC, x.id DESC) FROM "
            "(SELECT e.id, e.created_at, json_build_object('uuid', e.uuid, 'event_type', "
            "e.event_type, 'actor_type', e.actor_type, 'actor_key_prefix', e.actor_key_prefix, "
            "'references', e.\"references\", 'created_at', calseta_ts(e.created_at)) AS j "
            "FROM alert_activity e WHERE e.alert_id = a.id "
            "ORDER BY e.created_at DESC, e.id DESC LIMIT $2::int OFFSET $3::bigint) x), "
            "'[]'::json)::text FROM alerts a WHERE a.uuid = $1",
            3, p, on_one, op);
}
