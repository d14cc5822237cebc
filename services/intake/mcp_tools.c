/*
 * mcp_tools.c - the 8 MCP tools, with the original's names, parameters, defaults and result
 * shapes. Input is checked before the scope (as the original), every tool checks its scope on
 * the verified key, and failures come back as isError results with the reason as text.
 *
 * Shared with REST: findings (findings.c), the alert lifecycle (calseta_alert_patch),
 * workflow execution through the approval gate (wf_execute), on-demand enrichment
 * (mcp_enrich_lookup → enrichment_lookup.c). Fixed on purpose against the original:
 * close_classification is checked against its 7 values, page/page_size are range-checked,
 * confidence is checked to 0..1, events are written only when something changed, the REST
 * length limits apply, enrich_indicator always checks its scope, and LIKE wildcards in
 * search_detection_rules' name are matched literally.
 */
#include "findings.h"
#include "crypto.h"
#include "catalogue.h"
#include "detection_rules.h"
#include "indicators.h"
#include "isotime.h"
#include "mcp.h"
#include "alert_vocab.h"
#include "util.h"
#include "workflows_api.h"

#include <stdlib.h>
#include <string.h>

#define VALID_TYPES "['account', 'domain', 'email', 'hash_md5', 'hash_sha1', 'hash_sha256', 'ip', 'url']"

/* ---- tool list ------------------------------------------------------------------------------ */

#define S_STR "{\"type\":\"string\"}"
#define S_OSTR "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}],\"default\":null}"
#define S_OBOOL "{\"anyOf\":[{\"type\":\"boolean\"},{\"type\":\"null\"}],\"default\":null}"

static const char TOOLS_JSON[] =
    "["
    "{\"name\":\"post_alert_finding\",\"description\":\"Post an analysis finding to an alert. "
    "Findings are appended to the alert and visible to analysts and other agents.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"alert_uuid\":" S_STR
    ",\"summary\":" S_STR ",\"confidence\":{\"type\":\"string\",\"enum\":[\"low\",\"medium\","
    "\"high\"]},\"agent_name\":{\"type\":\"string\",\"default\":\"mcp-agent\"},"
    "\"recommended_action\":" S_OSTR "},\"required\":[\"alert_uuid\",\"summary\",\"confidence\"]}},"
    "{\"name\":\"update_alert_status\",\"description\":\"Update an alert's status (Open, "
    "Triaging, Escalated, Closed). Closed requires a close_classification.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"alert_uuid\":" S_STR
    ",\"status\":" S_STR ",\"close_classification\":" S_OSTR
    "},\"required\":[\"alert_uuid\",\"status\"]}},"
    "{\"name\":\"search_alerts\",\"description\":\"Search alerts with filters (comma-separated "
    "lists for status, severity, source_name, enrichment_status; tags must all match), a time "
    "range on occurred_at, sorting and pagination.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"status\":" S_OSTR
    ",\"severity\":" S_OSTR ",\"source_name\":" S_OSTR ",\"is_enriched\":" S_OBOOL
    ",\"enrichment_status\":" S_OSTR ",\"from_time\":" S_OSTR ",\"to_time\":" S_OSTR
    ",\"tags\":" S_OSTR ",\"sort_by\":" S_OSTR ",\"sort_order\":" S_OSTR
    ",\"page\":{\"type\":\"integer\",\"default\":1,\"minimum\":1},\"page_size\":{\"type\":"
    "\"integer\",\"default\":20,\"minimum\":1,\"maximum\":100}}}},"
    "{\"name\":\"update_alert_malice\",\"description\":\"Set an analyst malice override on an "
    "alert (Benign, Suspicious, Malicious, Pending), or null to reset it.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"alert_uuid\":" S_STR
    ",\"malice\":" S_OSTR "},\"required\":[\"alert_uuid\"]}},"
    "{\"name\":\"search_detection_rules\",\"description\":\"Search detection rules by name, "
    "MITRE tactic or technique, source and state.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"name\":" S_OSTR
    ",\"mitre_tactic\":" S_OSTR ",\"mitre_technique\":" S_OSTR ",\"source_name\":" S_OSTR
    ",\"is_active\":" S_OBOOL ",\"sort_by\":" S_OSTR ",\"sort_order\":" S_OSTR
    ",\"page\":{\"type\":\"integer\",\"default\":1,\"minimum\":1},\"page_size\":{\"type\":"
    "\"integer\",\"default\":20,\"minimum\":1,\"maximum\":100}}}},"
    "{\"name\":\"enrich_indicator\",\"description\":\"Enrich one indicator on demand with every "
    "configured provider that supports its type (cache first).\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"type\":" S_STR ",\"value\":" S_STR
    "},\"required\":[\"type\",\"value\"]}},"
    "{\"name\":\"update_indicator_malice\",\"description\":\"Set an analyst malice verdict on an "
    "indicator, or null to recompute it from enrichment results.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"indicator_uuid\":" S_STR
    ",\"malice\":" S_OSTR "},\"required\":[\"indicator_uuid\"]}},"
    "{\"name\":\"execute_workflow\",\"description\":\"Execute a response workflow against an "
    "indicator. Workflows behind the approval gate return pending_approval; give a reason and a "
    "confidence between 0 and 1.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"workflow_uuid\":" S_STR
    ",\"indicator_type\":" S_STR ",\"indicator_value\":" S_STR ",\"alert_uuid\":" S_OSTR
    ",\"reason\":" S_OSTR ",\"confidence\":{\"anyOf\":[{\"type\":\"number\",\"minimum\":0,"
    "\"maximum\":1},{\"type\":\"null\"}],\"default\":null}},"
    "\"required\":[\"workflow_uuid\",\"indicator_type\",\"indicator_value\"]}}"
    "]";

json_t *mcp_tools_list(void)
{
    json_error_t e;
    json_t *t = json_loads(TOOLS_JSON, 0, &e);
    if (!t)
        abort(); /* a constant: cannot happen */
    return t;
}

/* ---- argument helpers -------------------------------------------------------------------------- */

/* An optional string argument: 0 (absent/null → *out NULL), -1 (wrong type, replied). */
static int opt_str(struct mcp_call *c, json_t *args, const char *name, const char **out)
{
    json_t *v = json_object_get(args, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        mcp_tool_fail(c, "Input validation error: %s must be a string", name);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int req_str(struct mcp_call *c, json_t *args, const char *name, const char **out)
{
    if (opt_str(c, args, name, out) != 0)
        return -1;
    if (!*out) {
        mcp_tool_fail(c, "Input validation error: '%s' is a required property", name);
        return -1;
    }
    return 0;
}

static int opt_bool(struct mcp_call *c, json_t *args, const char *name, int *out)
{
    json_t *v = json_object_get(args, name);
    *out = -1;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        mcp_tool_fail(c, "Input validation error: %s must be a boolean", name);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* page 1.., page_size 1..100 (the original let negative values reach the database). */
static int paging(struct mcp_call *c, json_t *args, int *page, int *page_size)
{
    json_t *p = json_object_get(args, "page"), *ps = json_object_get(args, "page_size");
    *page = 1;
    *page_size = 20;
    if (p && !json_is_null(p)) {
        if (!json_is_integer(p) || json_integer_value(p) < 1 ||
            json_integer_value(p) > 1000000000) {
            mcp_tool_fail(c, "Input validation error: page must be an integer >= 1");
            return -1;
        }
        *page = (int)json_integer_value(p);
    }
    if (ps && !json_is_null(ps)) {
        if (!json_is_integer(ps) || json_integer_value(ps) < 1 || json_integer_value(ps) > 100) {
            mcp_tool_fail(c, "Input validation error: page_size must be an integer from 1 to 100");
            return -1;
        }
        *page_size = (int)json_integer_value(ps);
    }
    return 0;
}

/* Adds a parameter; returns its number. */
static size_t param(json_t *params, const char *v)
{
    json_array_append_new(params, json_string(v));
    return json_array_size(params);
}

/* A comma list as a JSON array parameter (trimmed, empties dropped, checked against allowed);
 * -1 after a reply naming the bad value. */
static int list_param(struct mcp_call *c, json_t *params, const char *name, const char *v,
                      const char *const *allowed, int keep_empty, size_t *num)
{
    json_t *arr = json_array();
    char *copy = xstrdup(v), *p = copy;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = 0;
        char *t = p;
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = 0;
        if (*t || keep_empty) {
            if (allowed && !vocab_has(allowed, t)) {
                mcp_tool_fail(c, "Invalid %s '%.80s'.", name, t);
                free(copy);
                json_decref(arr);
                return -1;
            }
            json_array_append_new(arr, json_string(t));
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    free(copy);
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    *num = param(params, s);
    free(s);
    return 0;
}

static void run_query(struct mcp_call *c, const char *sql, json_t *params, pg_result_cb cb)
{
    const char **pv = param_values(params);
    if (pg_exec(c->rc->in->pg, sql, (int)json_array_size(params), pv, cb, c) != 0)
        cb(c, NULL, "database queue full");
    free(pv);
}

/* Characters of a UTF-8 string, and the bytes of its first n characters. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static size_t utf8_prefix_bytes(const char *s, size_t n)
{
    size_t i = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (n == 0)
                break;
            n--;
        }
    }
    return i;
}

struct rules_op {
    struct mcp_call *c;
    int page, page_size;
};

/* ---- search_alerts ------------------------------------------------------------------------ */

static void on_page(void *arg, PGresult *res, const char *err, const char *key)
{
    struct mcp_call *c = arg;
    if (mcp_pg_failed(c, res, err, 1))
        return;
    json_t *items = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    mcp_tool_ok(c, json_pack("{s:o,s:I,s:i,s:i}", key, items ? items : json_array(), "total",
                             (json_int_t)atoll(PQgetvalue(res, 0, 0)), "page",
                             atoi(PQgetvalue(res, 0, 2)), "page_size",
                             atoi(PQgetvalue(res, 0, 3))));
}

static void on_alerts_page(void *arg, PGresult *res, const char *err)
{
    on_page(arg, res, err, "alerts");
}

static int time_param(struct mcp_call *c, json_t *params, const char *name, const char *v,
                      size_t *num)
{
    int64_t us;
    if (isotime_parse(v, &us) != 0) {
        mcp_tool_fail(c, "Invalid %s format: %.80s", name, v);
        return -1;
    }
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)us);
    *num = param(params, b);
    return 0;
}

static void tool_search_alerts(struct mcp_call *c, json_t *args)
{
    const char *status, *severity, *source, *estatus, *from, *to, *tags, *sort_by, *sort_order;
    int enriched, page, page_size;
    if (opt_str(c, args, "status", &status) || opt_str(c, args, "severity", &severity) ||
        opt_str(c, args, "source_name", &source) ||
        opt_str(c, args, "enrichment_status", &estatus) || opt_str(c, args, "from_time", &from) ||
        opt_str(c, args, "to_time", &to) || opt_str(c, args, "tags", &tags) ||
        opt_str(c, args, "sort_by", &sort_by) || opt_str(c, args, "sort_order", &sort_order) ||
        opt_bool(c, args, "is_enriched", &enriched) || paging(c, args, &page, &page_size))
        return;
    static const char *sorts[] = {"title",       "status",     "severity", "source_name",
                                  "occurred_at", "created_at", NULL};
    if (sort_by && !vocab_has(sorts, sort_by)) {
        mcp_tool_fail(c, "Invalid sort_by '%.40s'. Must be one of: ['created_at', 'occurred_at', "
                         "'severity', 'source_name', 'status', 'title']", sort_by);
        return;
    }
    if (sort_order && strcmp(sort_order, "asc") && strcmp(sort_order, "desc")) {
        mcp_tool_fail(c, "Invalid sort_order '%.40s'. Must be 'asc' or 'desc'", sort_order);
        return;
    }
    json_t *params = json_array();
    struct buf w;
    buf_init(&w);
    buf_puts(&w, "TRUE");
    size_t n;
    if (status) {
        if (list_param(c, params, "status", status, ALERT_STATUSES, 0, &n))
            goto out;
        buf_printf(&w, " AND a.status = ANY(ARRAY(SELECT json_array_elements_text($%zu::json)))", n);
    }
    if (severity) {
        if (list_param(c, params, "severity", severity, ALERT_SEVERITIES, 0, &n))
            goto out;
        buf_printf(&w, " AND a.severity = ANY(ARRAY(SELECT json_array_elements_text($%zu::json)))", n);
    }
    if (source) {
        if (list_param(c, params, "source_name", source, NULL, 0, &n))
            goto out;
        buf_printf(&w, " AND a.source_name = ANY(ARRAY(SELECT json_array_elements_text($%zu::json)))", n);
    }
    if (estatus) {
        if (list_param(c, params, "enrichment_status", estatus, ENRICHMENT_STATUSES, 0, &n))
            goto out;
        buf_printf(&w, " AND a.enrichment_status = ANY(ARRAY(SELECT json_array_elements_text($%zu::json)))", n);
    }
    if (tags) {
        if (list_param(c, params, "tags", tags, NULL, 0, &n))
            goto out;
        buf_printf(&w, " AND a.tags @> ARRAY(SELECT json_array_elements_text($%zu::json))", n);
    }
    if (enriched >= 0)
        buf_printf(&w, " AND a.is_enriched = %s", enriched ? "true" : "false");
    if (from) {
        if (time_param(c, params, "from_time", from, &n))
            goto out;
        buf_printf(&w, " AND a.occurred_at >= 'epoch'::timestamptz + $%zu::bigint * interval '1 microsecond'", n);
    }
    if (to) {
        if (time_param(c, params, "to_time", to, &n))
            goto out;
        buf_printf(&w, " AND a.occurred_at <= 'epoch'::timestamptz + $%zu::bigint * interval '1 microsecond'", n);
    }
    if (mcp_require_scope(c, "alerts:read", 1))
        goto out;
    const char *order = !sort_by || !strcmp(sort_by, "occurred_at") ? "a.occurred_at"
                        : !strcmp(sort_by, "severity")
                            ? "CASE a.severity WHEN 'Critical' THEN 5 WHEN 'High' THEN 4 WHEN "
                              "'Medium' THEN 3 WHEN 'Low' THEN 2 WHEN 'Informational' THEN 1 "
                              "ELSE 0 END"
                        : !strcmp(sort_by, "title")       ? "a.title"
                        : !strcmp(sort_by, "status")      ? "a.status"
                        : !strcmp(sort_by, "source_name") ? "a.source_name"
                                                          : "a.created_at";
    const char *dir = sort_order && !strcmp(sort_order, "asc") ? "ASC" : "DESC";
    /* As the REST list (alerts.c): the count, then the page by sort key and id only. */
    char *sql = xasprintf(
        "SELECT (SELECT count(*) FROM alerts a WHERE %s), "
        "coalesce((SELECT json_agg(" MCP_ALERT_SUMMARY_JSON " ORDER BY x.k %s, x.id %s) FROM "
        "(SELECT %s AS k, a.id FROM alerts a WHERE %s ORDER BY 1 %s, 2 %s LIMIT %d OFFSET %lld) x "
        "JOIN alerts a ON a.id = x.id), '[]'::json)::text, %d, %d",
        w.data, dir, dir, order, w.data, dir, dir, page_size, (long long)(page - 1) * page_size,
        page, page_size);
    run_query(c, sql, params, on_alerts_page);
    free(sql);
out:
    buf_destroy(&w);
    json_decref(params);
}

/* ---- search_detection_rules ----------------------------------------------------------------- */

/* The REST list (detection_rules.c) reduced to the original's MCP item shape, with the
 * documentation cut to 200 characters. */
static void on_rules(void *arg, PGresult *res, const char *err)
{
    struct rules_op *op = arg;
    struct mcp_call *c = op->c;
    int page = op->page, page_size = op->page_size;
    free(op);
    if (mcp_pg_failed(c, res, err, 1))
        return;
    json_t *items = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    json_t *out = json_array();
    static const char *KEEP[] = {"uuid", "name", "source_name", "severity", "is_active",
                                 "mitre_tactics", "mitre_techniques", "mitre_subtechniques",
                                 "documentation", "created_at"};
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        json_t *o = json_object();
        for (size_t k = 0; k < sizeof KEEP / sizeof KEEP[0]; k++) {
            json_t *v = json_object_get(it, KEEP[k]);
            json_object_set(o, KEEP[k], v ? v : json_null());
        }
        const char *doc = json_string_value(json_object_get(it, "documentation"));
        if (doc && utf8_chars(doc) > 200) {
            size_t cut = utf8_prefix_bytes(doc, 200);
            char *t = xasprintf("%.*s...", (int)cut, doc);
            json_object_set_new(o, "documentation", json_string(t));
            free(t);
        }
        json_array_append_new(out, o);
    }
    json_decref(items);
    mcp_tool_ok(c, json_pack("{s:o,s:I,s:i,s:i}", "detection_rules", out, "total",
                             (json_int_t)atoll(PQgetvalue(res, 0, 0)), "page", page, "page_size",
                             page_size));
}

static void tool_search_rules(struct mcp_call *c, json_t *args)
{
    if (mcp_require_scope(c, "alerts:read", 1))
        return;
    struct dr_filter f = {.is_active = -1};
    if (opt_str(c, args, "name", &f.name_contains) ||
        opt_str(c, args, "mitre_tactic", &f.mitre_tactic) ||
        opt_str(c, args, "mitre_technique", &f.mitre_technique) ||
        opt_str(c, args, "source_name", &f.source_names) ||
        opt_str(c, args, "sort_by", &f.sort_by) || opt_str(c, args, "sort_order", &f.sort_order) ||
        opt_bool(c, args, "is_active", &f.is_active) || paging(c, args, &f.page, &f.page_size))
        return;
    json_t *params = json_array();
    char *sql = NULL, err[160];
    if (detection_rules_list_sql(&f, &sql, params, err, sizeof err) != 0) {
        json_decref(params);
        mcp_tool_fail(c, "%s", err);
        return;
    }
    struct rules_op *op = xcalloc(1, sizeof *op);
    op->c = c;
    op->page = f.page;
    op->page_size = f.page_size;
    const char **pv = param_values(params);
    if (pg_exec(c->rc->in->pg, sql, (int)json_array_size(params), pv, on_rules, op) != 0)
        on_rules(op, NULL, "database queue full");
    free(pv);
    free(sql);
    json_decref(params);
}

/* ---- post_alert_finding ------------------------------------------------------------------- */

/* A tool's query about one alert or indicator, named by its uuid. */
struct alert_op {
    struct mcp_call *c;
    char uuid[37];
};

static struct alert_op *alert_op_new(struct mcp_call *c, const char *uuid)
{
    struct alert_op *op = xcalloc(1, sizeof *op);
    op->c = c;
    snprintf(op->uuid, sizeof op->uuid, "%s", uuid);
    return op;
}

/* Frees op, leaving its call in *c and its uuid in uuid; 0 when res has a first row whose column
 * col is not null, else -1 with the call answered (the database's error, or "<what> not found:
 * <uuid>"). */
static int alert_op_done(struct alert_op *op, PGresult *res, const char *err, int col,
                         const char *what, struct mcp_call **c, char uuid[37])
{
    *c = op->c;
    memcpy(uuid, op->uuid, 37);
    free(op);
    if (mcp_pg_failed(*c, res, err, 1))
        return -1;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, col)) {
        mcp_tool_fail(*c, "%s not found: %s", what, uuid);
        return -1;
    }
    return 0;
}

static void on_finding(void *arg, PGresult *res, const char *err)
{
    struct mcp_call *c;
    char uuid[37];
    if (alert_op_done(arg, res, err, 0, "Alert", &c, uuid))
        return;
    json_t *f = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    mcp_tool_ok(c, json_pack("{s:O,s:s,s:O}", "finding_id", json_object_get(f, "id"),
                             "alert_uuid", uuid, "posted_at", json_object_get(f, "posted_at")));
    json_decref(f);
}

static int uuid_arg(struct mcp_call *c, json_t *args, const char *name, const char *label,
                    char out[37])
{
    const char *v;
    if (req_str(c, args, name, &v))
        return -1;
    if (!crypto_uuid_valid(v)) {
        mcp_tool_fail(c, "Invalid %s: %.80s", label, v);
        return -1;
    }
    snprintf(out, 37, "%s", v);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    return 0;
}

static void tool_post_finding(struct mcp_call *c, json_t *args)
{
    char uuid[37];
    if (uuid_arg(c, args, "alert_uuid", "UUID", uuid))
        return;
    json_t *body = json_deep_copy(args);
    if (!json_object_get(body, "agent_name") || json_is_null(json_object_get(body, "agent_name")))
        json_object_set_new(body, "agent_name", json_string("mcp-agent"));
    json_object_del(body, "evidence"); /* the tool has no evidence parameter */
    json_t *f;
    const char *field;
    char msg[200];
    int r = finding_check(body, 1, &f, &field, msg, sizeof msg);
    json_decref(body);
    if (r != 0) {
        mcp_tool_fail(c, "%s", msg);
        return;
    }
    if (mcp_require_scope(c, "alerts:write", 1)) {
        json_decref(f);
        return;
    }
    struct alert_op *op = alert_op_new(c, uuid);
    if (finding_add(c->rc->in, uuid, f, "mcp", c->rc->auth.key_prefix, on_finding, op) != 0)
        on_finding(op, NULL, "database queue full");
    json_decref(f);
}

/* The optional "malice" argument: absent (NULL, which clears an override) or a known verdict. */
static int malice_arg(struct mcp_call *c, json_t *args, const char **out)
{
    if (opt_str(c, args, "malice", out))
        return -1;
    if (*out && !vocab_has(MALICE_LEVELS, *out)) {
        mcp_tool_fail(c, "Invalid malice '%.40s'. Must be one of: ['Benign', 'Malicious', "
                         "'Pending', 'Suspicious']", *out);
        return -1;
    }
    return 0;
}

/* ---- update_alert_status / update_alert_malice -------------------------------------------- */

static void on_status(void *arg, PGresult *res, const char *err)
{
    struct mcp_call *c;
    char uuid[37];
    if (alert_op_done(arg, res, err, 1, "Alert", &c, uuid))
        return;
    json_t *a = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    mcp_tool_ok(c, json_pack("{s:s,s:O,s:s,s:O}", "alert_uuid", uuid, "status",
                             json_object_get(a, "status"), "previous_status",
                             PQgetvalue(res, 0, 0), "updated_at",
                             json_object_get(a, "updated_at")));
    json_decref(a);
}

static void patch_alert(struct mcp_call *c, const char *uuid, json_t *patch, const char *sql,
                        pg_result_cb cb)
{
    struct alert_op *op = alert_op_new(c, uuid);
    char *doc = json_dumps(patch, JSON_COMPACT);
    const char *p[3] = {uuid, doc, c->rc->auth.key_prefix};
    if (pg_exec(c->rc->in->pg, sql, 3, p, cb, op) != 0)
        cb(op, NULL, "database queue full");
    free(doc);
}

static void tool_update_status(struct mcp_call *c, json_t *args)
{
    char uuid[37];
    const char *status, *cls;
    if (uuid_arg(c, args, "alert_uuid", "UUID", uuid) || req_str(c, args, "status", &status) ||
        opt_str(c, args, "close_classification", &cls))
        return;
    if (!vocab_has(ALERT_STATUSES, status)) {
        mcp_tool_fail(c, "Invalid status '%.40s'. Must be one of: ['Closed', 'Escalated', "
                         "'Open', 'Triaging']", status);
        return;
    }
    if (!strcmp(status, "Closed") && !cls) {
        mcp_tool_fail(c, "close_classification is required when setting status to 'Closed'.");
        return;
    }
    if (cls && !vocab_has(CLOSE_CLASSIFICATIONS, cls)) {
        mcp_tool_fail(c, "Invalid close_classification '%.80s'. Must be one of: ['True Positive "
                         "- Suspicious Activity', 'Benign Positive - Suspicious but Expected', "
                         "'False Positive - Incorrect Detection Logic', 'False Positive - "
                         "Inaccurate Data', 'Undetermined', 'Duplicate', 'Not Applicable']", cls);
        return;
    }
    if (mcp_require_scope(c, "alerts:write", 1))
        return;
    json_t *patch = json_pack("{s:s}", "status", status);
    if (cls)
        json_object_set_new(patch, "close_classification", json_string(cls));
    patch_alert(c, uuid, patch,
                "WITH prev AS (SELECT status FROM alerts WHERE uuid = $1::uuid) "
                "SELECT (SELECT status FROM prev), "
                "calseta_alert_patch($1::uuid, $2::jsonb, $3, 'mcp')::text",
                on_status);
    json_decref(patch);
}

static void on_malice(void *arg, PGresult *res, const char *err)
{
    struct mcp_call *c;
    char uuid[37];
    if (alert_op_done(arg, res, err, 0, "Alert", &c, uuid))
        return;
    json_t *a = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    json_t *mo = json_object_get(a, "malice_override");
    mcp_tool_ok(c, json_pack("{s:s,s:O,s:s,s:O}", "alert_uuid", uuid, "malice_override",
                             mo ? mo : json_null(), "effective_malice",
                             json_is_string(mo) ? json_string_value(mo) : PQgetvalue(res, 0, 1),
                             "updated_at", json_object_get(a, "updated_at")));
    json_decref(a);
}

static void tool_update_alert_malice(struct mcp_call *c, json_t *args)
{
    char uuid[37];
    const char *malice;
    if (uuid_arg(c, args, "alert_uuid", "UUID", uuid) || malice_arg(c, args, &malice) ||
        mcp_require_scope(c, "alerts:write", 1))
        return;
    json_t *patch = json_pack("{s:s?}", "malice_override", malice);
    if (!malice)
        json_object_set_new(patch, "malice_override", json_null());
    patch_alert(c, uuid, patch,
                "SELECT calseta_alert_patch($1::uuid, $2::jsonb, $3, 'mcp')::text, "
                "(SELECT coalesce((ARRAY['Pending','Benign','Suspicious','Malicious'])"
                "[max(array_position(ARRAY['Pending','Benign','Suspicious','Malicious'], "
                "i.malice))], 'Pending') FROM alerts a JOIN indicators i "
                "ON i.id = ANY (a.indicator_ids) WHERE a.uuid = $1::uuid)",
                on_malice);
    json_decref(patch);
}

/* ---- update_indicator_malice -------------------------------------------------------------- */

static void on_indicator_malice(void *arg, PGresult *res, const char *err)
{
    struct mcp_call *c;
    char uuid[37];
    if (alert_op_done(arg, res, err, 0, "Indicator", &c, uuid))
        return;
    json_t *i = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    mcp_tool_ok(c, json_pack("{s:O?,s:O?,s:O?,s:O?}", "indicator_uuid", json_object_get(i, "uuid"),
                             "malice", json_object_get(i, "malice"), "malice_source",
                             json_object_get(i, "malice_source"), "updated_at",
                             json_object_get(i, "updated_at")));
    json_decref(i);
}

static void tool_update_indicator_malice(struct mcp_call *c, json_t *args)
{
    char uuid[37];
    const char *malice;
    if (uuid_arg(c, args, "indicator_uuid", "UUID", uuid) || malice_arg(c, args, &malice) ||
        mcp_require_scope(c, "alerts:write", 1))
        return;
    struct alert_op *op = alert_op_new(c, uuid);
    const char *p[3] = {uuid, malice, c->rc->auth.key_prefix};
    if (pg_exec(c->rc->in->pg,
                "SELECT calseta_indicator_set_malice($1::uuid, $2, $3, false, 'mcp')::text", 3, p,
                on_indicator_malice, op) != 0)
        on_indicator_malice(op, NULL, "database queue full");
}

/* ---- enrich_indicator ------------------------------------------------------------------------ */

struct enrich_op {
    struct mcp_call *c;
    char type[16];
    char *value;
};

static void on_enriched(void *arg, json_t *results, const char *err)
{
    struct enrich_op *op = arg;
    struct mcp_call *c = op->c;
    if (!results) {
        mcp_tool_fail(c, "Enrichment failed: %s", err ? err : "unknown error");
    } else {
        json_t *out = json_pack("{s:s,s:s,s:O,s:I}", "type", op->type, "value", op->value,
                                "results", results, "provider_count",
                                (json_int_t)json_object_size(results));
        if (json_object_size(results) == 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "No configured providers support indicator type '%s'.",
                     op->type);
            json_object_set_new(out, "message", json_string(msg));
        }
        mcp_tool_ok(c, out);
    }
    free(op->value);
    free(op);
}

/* type and value checked as the original (value trimmed); NULL after a reply. */
static char *indicator_args(struct mcp_call *c, json_t *args, int tool, char type[16])
{
    const char *t, *v;
    if (tool) {
        if (req_str(c, args, "type", &t) || req_str(c, args, "value", &v))
            return NULL;
    } else {
        t = json_string_value(json_object_get(args, "type"));
        v = json_string_value(json_object_get(args, "value"));
    }
    if (!indicator_type_valid(t)) {
        if (tool)
            mcp_tool_fail(c, "Invalid indicator type '%.40s'. Valid types: " VALID_TYPES, t);
        else
            mcp_reply_error(c, JSONRPC_INVALID_PARAMS,
                            "Invalid indicator type: '%.40s'. Valid types are: account, domain, "
                            "email, hash_md5, hash_sha1, hash_sha256, ip, url", t);
        return NULL;
    }
    while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
        v++;
    size_t l = strlen(v);
    while (l && (v[l - 1] == ' ' || v[l - 1] == '\t' || v[l - 1] == '\n' || v[l - 1] == '\r'))
        l--;
    if (l == 0 || l > 2048) {
        if (tool)
            mcp_tool_fail(c, l ? "Indicator value must be at most 2048 characters."
                               : "Indicator value must not be empty.");
        else
            mcp_reply_error(c, JSONRPC_INVALID_PARAMS, l ? "Indicator value must be at most 2048 characters."
                                                          : "Indicator value must not be empty.");
        return NULL;
    }
    snprintf(type, 16, "%s", t);
    return xstrndup(v, l);
}

void mcp_enrich_start(struct mcp_call *c, const char *type, char *value,
                      void (*cb)(void *arg, json_t *results, const char *err))
{
    struct enrich_op *op = xcalloc(1, sizeof *op);
    op->c = c;
    snprintf(op->type, sizeof op->type, "%s", type);
    op->value = value;
    mcp_enrich_lookup(c->rc, op->type, op->value, cb, op);
}

static void tool_enrich(struct mcp_call *c, json_t *args)
{
    char type[16];
    char *value = indicator_args(c, args, 1, type);
    if (!value)
        return;
    if (mcp_require_scope(c, "enrichments:read", 1)) {
        free(value);
        return;
    }
    mcp_enrich_start(c, type, value, on_enriched);
}

/* The resource form: same lookup, JSON-RPC errors, scope first. */
static void on_enriched_resource(void *arg, json_t *results, const char *err)
{
    struct enrich_op *op = arg;
    struct mcp_call *c = op->c;
    if (!results) {
        mcp_reply_error(c, JSONRPC_INTERNAL_ERROR, "Enrichment failed: %s",
                        err ? err : "unknown error");
    } else {
        json_t *out = json_pack("{s:s,s:s,s:O,s:I}", "type", op->type, "value", op->value,
                                "results", results, "provider_count",
                                (json_int_t)json_object_size(results));
        char *uri = xasprintf("calseta://enrichments/%s/%s", op->type, op->value);
        mcp_resource_ok(c, uri, out);
        free(uri);
    }
    free(op->value);
    free(op);
}

void mcp_enrich_resource(struct mcp_call *c, const char *type, const char *value)
{
    if (mcp_require_scope(c, "enrichments:read", 0))
        return;
    json_t *args = json_pack("{s:s,s:s}", "type", type, "value", value);
    char t[16];
    char *v = args ? indicator_args(c, args, 0, t) : NULL;
    if (!args)
        mcp_reply_error(c, JSONRPC_INVALID_PARAMS, "Invalid indicator value.");
    json_decref(args);
    if (v)
        mcp_enrich_start(c, t, v, on_enriched_resource);
}

/* ---- execute_workflow ------------------------------------------------------------------------ */

struct exec_ctx {
    struct mcp_call *c;
    char wf_uuid[37];
    char alert_uuid[37];
};

static void on_executed(void *arg, PGresult *res, const char *err, json_t *doc)
{
    struct exec_ctx *x = arg;
    struct mcp_call *c = x->c;
    char wf[37], alert[37];
    memcpy(wf, x->wf_uuid, sizeof wf);
    memcpy(alert, x->alert_uuid, sizeof alert);
    free(x);
    if (!doc) {
        mcp_pg_failed(c, res, err ? err : "failed", 1);
        return;
    }
    const char *e = json_string_value(json_object_get(doc, "error"));
    if (e) {
        if (!strcmp(e, "not_found"))
            mcp_tool_fail(c, "Workflow not found: %s", wf);
        else if (!strcmp(e, "alert_not_found"))
            mcp_tool_fail(c, "Alert not found: %s", alert);
        else if (!strcmp(e, "agent_fields_required"))
            mcp_tool_fail(c, "reason and confidence are required when an agent key executes a "
                             "workflow.");
        else
            mcp_tool_fail(c, "Workflow cannot be executed: state is '%s'.",
                          json_string_value(json_object_get(doc, "state"))
                              ? json_string_value(json_object_get(doc, "state"))
                              : "?");
        return;
    }
    const char *status = json_string_value(json_object_get(doc, "status"));
    if (status && !strcmp(status, "queued"))
        mcp_tool_ok(c, json_pack("{s:s,s:O,s:s}", "status", "queued", "run_uuid",
                                 json_object_get(doc, "run_uuid"), "workflow_uuid", wf));
    else
        mcp_tool_ok(c, json_pack("{s:s,s:O,s:s,s:O}", "status", "pending_approval",
                                 "approval_request_uuid",
                                 json_object_get(doc, "approval_request_uuid"), "workflow_uuid",
                                 wf, "expires_at", json_object_get(doc, "expires_at")));
}

static void tool_execute(struct mcp_call *c, json_t *args)
{
    char wf[37], alert[37] = "";
    const char *t, *v, *a, *reason;
    if (req_str(c, args, "workflow_uuid", &t))
        return;
    if (!crypto_uuid_valid(t)) {
        mcp_tool_fail(c, "Invalid workflow UUID: %.80s", t);
        return;
    }
    snprintf(wf, sizeof wf, "%s", t);
    if (req_str(c, args, "indicator_type", &t) || req_str(c, args, "indicator_value", &v) ||
        opt_str(c, args, "alert_uuid", &a) || opt_str(c, args, "reason", &reason))
        return;
    if (!indicator_type_valid(t)) {
        mcp_tool_fail(c, "Invalid indicator_type '%.40s'. Must be one of: " VALID_TYPES, t);
        return;
    }
    if (strlen(v) < 1 || json_string_length(json_object_get(args, "indicator_value")) > 2048) {
        mcp_tool_fail(c, "indicator_value must be a string of 1 to 2048 characters.");
        return;
    }
    if (a && !crypto_uuid_valid(a)) {
        mcp_tool_fail(c, "Invalid alert UUID: %.80s", a);
        return;
    }
    if (a)
        snprintf(alert, sizeof alert, "%s", a);
    if (reason && strlen(reason) > 4096) {
        mcp_tool_fail(c, "reason must be at most 4096 characters.");
        return;
    }
    json_t *conf = json_object_get(args, "confidence");
    if (conf && json_is_null(conf))
        conf = NULL;
    if (conf && (!json_is_number(conf) || json_number_value(conf) < 0 ||
                 json_number_value(conf) > 1)) {
        mcp_tool_fail(c, "confidence must be a number between 0 and 1.");
        return;
    }
    if (mcp_require_scope(c, "workflows:execute", 1))
        return;
    json_t *p = json_pack("{s:s,s:s}", "indicator_type", t, "indicator_value", v);
    if (*alert)
        json_object_set_new(p, "alert_uuid", json_string(alert));
    if (reason)
        json_object_set_new(p, "reason", json_string(reason));
    if (conf)
        json_object_set_new(p, "confidence", json_real(json_number_value(conf)));
    struct exec_ctx *x = xcalloc(1, sizeof *x);
    x->c = c;
    memcpy(x->wf_uuid, wf, sizeof wf);
    memcpy(x->alert_uuid, alert, sizeof alert);
    struct reqctx *rc = c->rc;
    wf_execute(rc->in, wf, p, rc->auth.key_prefix, rc->req->request_id, rc->client_ip,
               on_executed, x);
    json_decref(p);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void mcp_tools_call(struct mcp_call *c, const char *name, json_t *args)
{
    static const struct {
        const char *name;
        void (*fn)(struct mcp_call *c, json_t *args);
    } TOOLS[] = {
        {"post_alert_finding", tool_post_finding},
        {"update_alert_status", tool_update_status},
        {"search_alerts", tool_search_alerts},
        {"update_alert_malice", tool_update_alert_malice},
        {"search_detection_rules", tool_search_rules},
        {"enrich_indicator", tool_enrich},
        {"update_indicator_malice", tool_update_indicator_malice},
        {"execute_workflow", tool_execute},
    };
    for (size_t i = 0; i < sizeof TOOLS / sizeof TOOLS[0]; i++) {
        if (!strcmp(name, TOOLS[i].name)) {
            TOOLS[i].fn(c, args);
            return;
        }
    }
    mcp_reply_error(c, JSONRPC_INVALID_PARAMS, "Unknown tool: %.100s", name);
}
