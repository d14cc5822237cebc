/*
 * detection_rules.c - /v1/detection-rules: list (filters, sorts), create, get, patch, delete,
 * and per-rule metrics. Reads need alerts:read, writes admin (the route table says so).
 *
 * Fixed on purpose: (source_name, source_rule_id) is unique, so a rule created here can never
 * duplicate a stub made by ingest (409 instead); created_by defaults to the creating key's
 * name, never its prefix, because every alerts:read reader sees the field.
 */
#include "detection_rules.h"
#include "catalogue.h"
#include "isotime.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char *const SORTS[] = {"created_at", "name", "severity", "source_name", NULL};

/* Appends " AND <expr> = ANY(<comma list as text[]>)" when list is set. */
static void add_any(struct buf *w, json_t *params, const char *expr, const char *list)
{
    if (!list)
        return;
    json_t *arr = comma_list(list);
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    buf_printf(w, " AND %s = ANY(calseta_text_array($%zu::jsonb))", expr, param_add(params, s));
    free(s);
}

int detection_rules_list_sql(const struct dr_filter *f, char **sql, json_t *params, char *err,
                             size_t errlen)
{
    const char *sort = f->sort_by ? f->sort_by : "created_at";
    const char *order = f->sort_order ? f->sort_order : "desc";
    if (!str_in(sort, SORTS)) {
        snprintf(err, errlen,
                 "sort_by must be one of: ['created_at', 'name', 'severity', 'source_name']");
        return -1;
    }
    if (strcmp(order, "asc") && strcmp(order, "desc")) {
        snprintf(err, errlen, "sort_order must be 'asc' or 'desc'");
        return -1;
    }
    struct buf w;
    buf_init(&w);
    buf_puts(&w, "TRUE");
    add_any(&w, params, "d.source_name", f->source_names);
    add_any(&w, params, "d.severity", f->severities);
    if (f->is_active >= 0)
        buf_printf(&w, " AND d.is_active = %s", f->is_active ? "true" : "false");
    if (f->name_contains)
        buf_printf(&w, " AND strpos(lower(d.name), lower($%zu)) > 0",
                   param_add(params, f->name_contains));
    if (f->mitre) {
        size_t p = param_add(params, f->mitre);
        buf_printf(&w,
                   " AND ($%zu = ANY(d.mitre_tactics) OR $%zu = ANY(d.mitre_techniques) OR "
                   "$%zu = ANY(d.mitre_subtechniques))",
                   p, p, p);
    }
    if (f->mitre_tactic)
        buf_printf(&w, " AND $%zu = ANY(d.mitre_tactics)", param_add(params, f->mitre_tactic));
    if (f->mitre_technique) {
        size_t p = param_add(params, f->mitre_technique);
        buf_printf(&w, " AND ($%zu = ANY(d.mitre_techniques) OR $%zu = ANY(d.mitre_subtechniques))",
                   p, p);
    }
    const char *key = !strcmp(sort, "severity") ? "calseta_severity_rank(d.severity)"
                      : !strcmp(sort, "name")   ? "d.name"
                      : !strcmp(sort, "source_name") ? "d.source_name"
                                                     : "d.created_at";
    const char *dir = !strcmp(order, "asc") ? "ASC" : "DESC";
    /* The count and the page are separate reads; the page cuts the sort keys before any
     * rule is read whole. */
    *sql = xasprintf(
        "SELECT (SELECT count(*) FROM detection_rules d WHERE %s), coalesce((SELECT jsonb_agg("
        "calseta_detection_rule_json(d) ORDER BY x.k %s, x.id %s) FROM (SELECT %s AS k, d.id "
        "FROM detection_rules d WHERE %s ORDER BY 1 %s, 2 %s LIMIT %d OFFSET %lld) x "
        "JOIN detection_rules d ON d.id = x.id), '[]'::jsonb)::text",
        w.data, dir, dir, key, w.data, dir, dir, f->page_size,
        (long long)(f->page - 1) * f->page_size);
    buf_destroy(&w);
    return 0;
}

void route_list_detection_rules(struct reqctx *rc)
{
    struct dr_filter f = {.is_active = -1};
    char src[1024], sev[512], sort[64], order[16], err[160];
    if (parse_pagination(rc, &f.page, &f.page_size) != 0 ||
        (f.is_active = query_bool(rc, "is_active")) == -2)
        return;
    if (query_param(rc, "source_name", src, sizeof src))
        f.source_names = src;
    if (query_param(rc, "severity", sev, sizeof sev))
        f.severities = sev;
    if (query_param(rc, "sort_by", sort, sizeof sort))
        f.sort_by = sort;
    if (query_param(rc, "sort_order", order, sizeof order))
        f.sort_order = order;
    json_t *params = json_array();
    char *sql = NULL;
    if (detection_rules_list_sql(&f, &sql, params, err, sizeof err) != 0) {
        json_decref(params);
        reply_error(rc, 400, "VALIDATION_ERROR", err, NULL);
        return;
    }
    cat_list(rc, sql, params, f.page, f.page_size);
    free(sql);
}

static const struct field_spec RULE_FIELDS[] = {
    {"name", F_STR, 1, 1, 500, NULL},
    {"source_rule_id", F_STR, 0, 0, 500, NULL},
    {"source_name", F_STR, 0, 0, 0, NULL},
    {"severity", F_STR, 0, 0, 0, NULL},
    {"is_active", F_BOOL, 0, 0, 0, NULL},
    {"mitre_tactics", F_STRARR, 0, 0, 0, NULL},
    {"mitre_techniques", F_STRARR, 0, 0, 0, NULL},
    {"mitre_subtechniques", F_STRARR, 0, 0, 0, NULL},
    {"data_sources", F_STRARR, 0, 0, 0, NULL},
    {"run_frequency", F_STR, 0, 0, 0, NULL},
    {"created_by", F_STR, 0, 0, 0, NULL},
    {"documentation", F_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const char NOT_FOUND[] = "Detection rule not found.";
static const char CONFLICT[] =
    "A detection rule with this source_name and source_rule_id already exists.";

void route_create_detection_rule(struct reqctx *rc)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    if (validate_body(rc, body, RULE_FIELDS, 0) != 0) {
        json_decref(body);
        return;
    }
    char *doc = json_dumps(body, JSON_COMPACT);
    char kid[24];
    snprintf(kid, sizeof kid, "%lld", (long long)rc->auth.key_id);
    json_t *params = json_array();
    param_add(params, doc);
    param_add(params, kid);
    free(doc);
    json_decref(body);
    /* The lock makes a concurrent ingest stub of the same rule wait for this insert (and then
     * find it) instead of failing on the unique key. */
    cat_exec(rc,
             "INSERT INTO detection_rules (name, source_rule_id, source_name, severity, "
             "is_active, mitre_tactics, mitre_techniques, mitre_subtechniques, data_sources, "
             "run_frequency, created_by, documentation) "
             "SELECT p->>'name', p->>'source_rule_id', p->>'source_name', p->>'severity', "
             "coalesce((p->>'is_active')::boolean, true), "
             "calseta_text_array(coalesce(nullif(p->'mitre_tactics', 'null'), '[]')), "
             "calseta_text_array(coalesce(nullif(p->'mitre_techniques', 'null'), '[]')), "
             "calseta_text_array(coalesce(nullif(p->'mitre_subtechniques', 'null'), '[]')), "
             "calseta_text_array(coalesce(nullif(p->'data_sources', 'null'), '[]')), "
             "p->>'run_frequency', coalesce(nullif(p->>'created_by', ''), "
             "(SELECT k.name FROM api_keys k WHERE k.id = $2::bigint)), p->>'documentation' "
             "FROM (SELECT $1::jsonb AS p) x, LATERAL (SELECT calseta_detection_rule_lock("
             "x.p->>'source_name', x.p->>'source_rule_id')) l "
             "RETURNING calseta_detection_rule_json(detection_rules)::text",
             params, 201, NULL, CONFLICT);
}

void route_get_detection_rule(struct reqctx *rc)
{
    cat_exec_uuid(rc, DETECTION_RULE_GET_SQL, 200, NOT_FOUND);
}

/* Patchable: name, severity, is_active, the four arrays, documentation (null = unchanged). */
static const struct field_spec PATCH_FIELDS[] = {
    {"name", F_STR, 0, 1, 500, NULL},
    {"severity", F_STR, 0, 0, 0, NULL},
    {"is_active", F_BOOL, 0, 0, 0, NULL},
    {"mitre_tactics", F_STRARR, 0, 0, 0, NULL},
    {"mitre_techniques", F_STRARR, 0, 0, 0, NULL},
    {"mitre_subtechniques", F_STRARR, 0, 0, 0, NULL},
    {"data_sources", F_STRARR, 0, 0, 0, NULL},
    {"documentation", F_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

void route_patch_detection_rule(struct reqctx *rc)
{
    char uuid[37];
    json_t *body = cat_patch_input(rc, PATCH_FIELDS, uuid);
    if (!body)
        return;
    cat_save(rc, uuid, body,
             "UPDATE detection_rules d SET "
             "name = coalesce($2::jsonb->>'name', d.name), "
             "severity = coalesce($2::jsonb->>'severity', d.severity), "
             "is_active = coalesce(($2::jsonb->>'is_active')::boolean, d.is_active), "
             "mitre_tactics = coalesce(calseta_pick_array($2::jsonb, 'mitre_tactics'), "
             "d.mitre_tactics), "
             "mitre_techniques = coalesce(calseta_pick_array($2::jsonb, 'mitre_techniques'), "
             "d.mitre_techniques), "
             "mitre_subtechniques = coalesce(calseta_pick_array($2::jsonb, "
             "'mitre_subtechniques'), d.mitre_subtechniques), "
             "data_sources = coalesce(calseta_pick_array($2::jsonb, 'data_sources'), "
             "d.data_sources), "
             "documentation = coalesce($2::jsonb->>'documentation', d.documentation), "
             "updated_at = now() WHERE d.uuid = $1 RETURNING calseta_detection_rule_json(d)::text",
             200, NOT_FOUND, NULL);
}

void route_delete_detection_rule(struct reqctx *rc)
{
    cat_exec_uuid(rc, "DELETE FROM detection_rules WHERE uuid = $1 RETURNING '{}'", 204,
                  NOT_FOUND);
}

/* An ISO-8601 query parameter as a canonical UTC timestamp; def when absent. -1 after a 422. */
static int time_param(struct reqctx *rc, const char *name, int64_t def_us, char out[32])
{
    char v[128];
    int64_t us = def_us;
    if (query_param(rc, name, v, sizeof v) && isotime_parse(v, &us) != 0) {
        reply_validation_error(rc, "datetime_parsing", "query", name,
                               "Input should be a valid datetime");
        return -1;
    }
    format_iso8601_us(us, out);
    return 0;
}

void route_detection_rule_metrics(struct reqctx *rc)
{
    char uuid[37], from[32], to[32];
    int64_t now = now_wall_us();
    if (require_uuid_param(rc, 0, uuid) != 0 ||
        time_param(rc, "from", now - 30LL * 86400 * 1000000, from) != 0 ||
        time_param(rc, "to", now, to) != 0)
        return;
    json_t *params = json_array();
    param_add(params, uuid);
    param_add(params, from);
    param_add(params, to);
    cat_exec(rc, DETECTION_RULE_METRICS_SQL, params, 200, NOT_FOUND, NULL);
}
