/*
 * mcp_resources.c - the 12 MCP resources (calseta://…), with the original's URIs and result
 * shapes. Each is one read-only statement returning one JSON text (NULL = not found). The ones
 * without parameters are listed by resources/list, the others by resources/templates/list (the
 * original listed all as templates). A {uuid} is checked before the scope, then the scope of
 * the verified key, then the lookup; an enrichment value may contain '/' (URLs) and is
 * percent-decoded.
 */
#include "crypto.h"
#include "detection_rules.h"
#include "enrichment_api.h"
#include "mcp.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

json_t *mcp_resources_list(void)
{
    return json_pack(
        "[{s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s},"
        "{s:s,s:s,s:s,s:s}]",
        "uri", "calseta://alerts", "name", "alerts", "description",
        "The 50 most recent alerts (by occurred_at).", "mimeType", "application/json", "uri",
        "calseta://detection-rules", "name", "detection_rules", "description",
        "Detection rules with MITRE mappings and a documentation summary.", "mimeType",
        "application/json", "uri", "calseta://context-documents", "name", "context_documents",
        "description", "Context documents (runbooks, SOPs) without their content.", "mimeType",
        "application/json", "uri", "calseta://workflows", "name", "workflows", "description",
        "Response workflows (without code).", "mimeType", "application/json", "uri",
        "calseta://metrics/summary", "name", "metrics_summary", "description",
        "Alert, workflow, approval and platform metrics of the last 30 days.", "mimeType",
        "application/json");
}

json_t *mcp_resource_templates_list(void)
{
    static const char *T[][3] = {
        {"calseta://alerts/{uuid}", "alert",
         "One alert with indicators, enrichment, detection rule, context documents, findings."},
        {"calseta://alerts/{uuid}/context", "alert_context",
         "The context documents that apply to an alert, with content."},
        {"calseta://alerts/{uuid}/activity", "alert_activity",
         "The 100 most recent activity events of an alert."},
        {"calseta://detection-rules/{uuid}", "detection_rule", "One detection rule in full."},
        {"calseta://context-documents/{uuid}", "context_document",
         "One context document with content and targeting rules."},
        {"calseta://workflows/{uuid}", "workflow", "One workflow with its code."},
        {"calseta://enrichments/{type}/{value}", "enrichment",
         "On-demand enrichment of one indicator (cache first)."},
    };
    json_t *a = json_array();
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s}", "uriTemplate", T[i][0], "name",
                                           T[i][1], "description", T[i][2], "mimeType",
                                           "application/json"));
    return a;
}

/* ---- SQL ------------------------------------------------------------------------------------ */

#define RESULTS_NO_RAW(col)                                                                        \
    "CASE WHEN jsonb_typeof(" col ") = 'object' THEN (SELECT coalesce(jsonb_object_agg(k, CASE "   \
    "WHEN jsonb_typeof(v) = 'object' THEN v - 'raw' ELSE v END), '{}'::jsonb) FROM jsonb_each(" col \
    ") e(k, v)) ELSE " col " END"

/* Applicable documents of alert a, through the same function as REST's /context (globals
 * first, then targeted ones, each by document_type). */
#define APPLICABLE_DOCS "FROM calseta_applicable_documents(a.id) d"
#define APPLICABLE_ORDER "d.is_global DESC, d.document_type, d.id"

static const char SQL_ALERTS[] =
    "SELECT json_build_object('alerts', coalesce(json_agg(x.j ORDER BY x.rn), '[]'::json), "
    "'count', count(*))::text FROM (SELECT " MCP_ALERT_SUMMARY_JSON " AS j, row_number() OVER "
    "(ORDER BY a.occurred_at DESC, a.id DESC) AS rn FROM alerts a ORDER BY a.occurred_at DESC, "
    "a.id DESC LIMIT 50) x";

static const char SQL_ALERT[] =
    "SELECT json_build_object('uuid', a.uuid, 'title', a.title, 'severity', a.severity, "
    "'status', a.status, 'enrichment_status', a.enrichment_status, 'source_name', a.source_name, "
    "'occurred_at', calseta_ts(a.occurred_at), 'ingested_at', calseta_ts(a.ingested_at), "
    "'enriched_at', calseta_ts(a.enriched_at), 'is_enriched', a.is_enriched, "
    "'close_classification', a.close_classification, 'acknowledged_at', "
    "calseta_ts(a.acknowledged_at), 'triaged_at', calseta_ts(a.triaged_at), 'closed_at', "
    "calseta_ts(a.closed_at), 'tags', a.tags, "
    "'indicators', coalesce((SELECT json_agg(json_build_object('uuid', i.uuid, 'type', i.type, "
    "'value', i.value, 'malice', i.malice, 'is_enriched', i.is_enriched, 'first_seen', "
    "calseta_ts(i.first_seen), 'last_seen', calseta_ts(i.last_seen), 'enrichment_results', "
    RESULTS_NO_RAW("i.enrichment_results") ") ORDER BY i.type, i.value) FROM indicators i "
    "WHERE i.id = ANY (a.indicator_ids)), '[]'::json), "
    "'detection_rule', (SELECT json_build_object('uuid', r.uuid, 'name', r.name, 'severity', "
    "r.severity, 'mitre_tactics', r.mitre_tactics, 'mitre_techniques', r.mitre_techniques, "
    "'mitre_subtechniques', r.mitre_subtechniques, 'documentation', r.documentation) FROM "
    "detection_rules r WHERE r.id = a.detection_rule_id), "
    "'context_documents', coalesce((SELECT json_agg(json_build_object('uuid', d.uuid, 'title', "
    "d.title, 'document_type', d.document_type, 'content', d.content) ORDER BY " APPLICABLE_ORDER
    ") " APPLICABLE_DOCS "), '[]'::json), "
    "'agent_findings', a.agent_findings)::text FROM alerts a WHERE a.uuid = $1::uuid";

static const char SQL_ALERT_CONTEXT[] =
    "SELECT json_build_object('context_documents', coalesce((SELECT json_agg(json_build_object("
    "'uuid', d.uuid, 'title', d.title, 'document_type', d.document_type, 'is_global', "
    "d.is_global, 'description', d.description, 'content', d.content, 'tags', d.tags) ORDER BY "
    APPLICABLE_ORDER ") " APPLICABLE_DOCS "), '[]'::json), 'count', (SELECT count(*) "
    APPLICABLE_DOCS "))::text FROM alerts a WHERE a.uuid = $1::uuid";

/* The event's references first, so a reference key can never overwrite a core field (the
 * original let it). alert_activity, as for GET /v1/alerts/{uuid}/activity: the stored events and
 * the ingest event derived from the alert's row. */
static const char SQL_ALERT_ACTIVITY[] =
    "SELECT json_build_object('activity', coalesce((SELECT json_agg(x.j ORDER BY x.created_at "
    "DESC, x.id DESC) FROM (SELECT e.id, e.created_at, (CASE WHEN jsonb_typeof(e.\"references\") "
    "= 'object' THEN e.\"references\" ELSE '{}'::jsonb END || jsonb_build_object('event_type', "
    "e.event_type, 'actor_type', e.actor_type, 'actor_key_prefix', e.actor_key_prefix, "
    "'created_at', calseta_ts(e.created_at))) AS j FROM alert_activity e WHERE e.alert_id = a.id "
    "ORDER BY e.created_at DESC, e.id DESC LIMIT 100) x), '[]'::json), 'count', (SELECT "
    "least(count(*), 100) FROM alert_activity e WHERE e.alert_id = a.id))::text FROM alerts a "
    "WHERE a.uuid = $1::uuid";

static const char SQL_RULES[] =
    "SELECT json_build_object('detection_rules', coalesce(json_agg(x.j ORDER BY x.rn), "
    "'[]'::json), 'count', count(*))::text FROM (SELECT json_build_object('uuid', r.uuid, "
    "'name', r.name, 'source_name', r.source_name, 'severity', r.severity, 'is_active', "
    "r.is_active, 'mitre_tactics', r.mitre_tactics, 'mitre_techniques', r.mitre_techniques, "
    "'mitre_subtechniques', r.mitre_subtechniques, 'data_sources', r.data_sources, "
    "'documentation_summary', CASE WHEN r.documentation IS NULL THEN NULL WHEN "
    "length(r.documentation) <= 200 THEN r.documentation ELSE rtrim(left(r.documentation, 200), "
    "E' \\t\\n\\r') || '...' END, 'created_at', calseta_ts(r.created_at)) AS j, row_number() "
    "OVER (ORDER BY r.created_at DESC, r.id DESC) AS rn FROM detection_rules r ORDER BY "
    "r.created_at DESC, r.id DESC LIMIT 500) x";

static const char SQL_RULE[] = DETECTION_RULE_GET_SQL;

static const char SQL_DOCS[] =
    "SELECT json_build_object('context_documents', coalesce(json_agg(x.j ORDER BY x.rn), "
    "'[]'::json), 'count', count(*))::text FROM (SELECT calseta_context_document_json(d, false) "
    "AS j, row_number() OVER (ORDER BY d.created_at DESC, d.id DESC) AS rn FROM "
    "context_documents d ORDER BY d.created_at DESC, d.id DESC LIMIT 500) x";

static const char SQL_DOC[] =
    "SELECT calseta_context_document_json(d, true)::text FROM context_documents d "
    "WHERE d.uuid = $1::uuid";

#define WORKFLOW_FIELDS                                                                            \
    "'uuid', w.uuid, 'name', w.name, 'workflow_type', w.workflow_type, 'indicator_types', "        \
    "w.indicator_types, 'state', w.state, 'code_version', w.code_version, 'is_active', "           \
    "w.is_active, 'is_system', w.is_system, 'tags', w.tags, 'time_saved_minutes', "                \
    "w.time_saved_minutes, 'approval_mode', w.approval_mode, 'risk_level', w.risk_level, "         \
    "'documentation', w.documentation, 'created_at', calseta_ts(w.created_at), 'updated_at', "     \
    "calseta_ts(w.updated_at)"

static const char SQL_WORKFLOWS[] =
    "SELECT json_build_object('workflows', coalesce(json_agg(x.j ORDER BY x.rn), '[]'::json), "
    "'count', count(*))::text FROM (SELECT json_build_object(" WORKFLOW_FIELDS ") AS j, "
    "row_number() OVER (ORDER BY w.created_at DESC, w.id DESC) AS rn FROM workflows w ORDER BY "
    "w.created_at DESC, w.id DESC LIMIT 500) x";

static const char SQL_WORKFLOW[] =
    "SELECT (jsonb_build_object(" WORKFLOW_FIELDS ") || jsonb_build_object('code', w.code, "
    "'timeout_seconds', w.timeout_seconds, 'retry_count', w.retry_count, 'approval_channel', "
    "w.approval_channel, 'approval_timeout_seconds', w.approval_timeout_seconds))::text FROM "
    "workflows w WHERE w.uuid = $1::uuid";

/* The same summary as GET /v1/metrics/summary (the catalogue's function). */
static const char SQL_METRICS[] = "SELECT calseta_metrics_summary()::text";

/* ---- reading -------------------------------------------------------------------------------- */

struct res_op {
    struct mcp_call *c;
    char *uri;
    char what[48]; /* "Alert not found: <uuid>" prefix */
    char id[37];
};

static void on_resource(void *arg, PGresult *res, const char *err)
{
    struct res_op *op = arg;
    struct mcp_call *c = op->c;
    if (mcp_pg_failed(c, res, err, 0))
        goto out;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        mcp_reply_error(c, MCP_RESOURCE_NOT_FOUND, "%s not found: %s", op->what, op->id);
        goto out;
    }
    json_t *doc = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, NULL);
    mcp_resource_ok(c, op->uri, doc ? doc : json_object());
out:
    free(op->uri);
    free(op);
}

static void run(struct mcp_call *c, const char *uri, const char *scope, const char *sql,
                const char *id, const char *what)
{
    if (mcp_require_scope(c, scope, 0))
        return;
    struct res_op *op = xcalloc(1, sizeof *op);
    op->c = c;
    op->uri = xstrdup(uri);
    snprintf(op->what, sizeof op->what, "%s", what ? what : "Resource");
    snprintf(op->id, sizeof op->id, "%s", id ? id : "");
    const char *p[1] = {id};
    if (pg_exec(c->rc->in->pg, sql, id ? 1 : 0, p, on_resource, op) != 0)
        on_resource(op, NULL, "database queue full");
}

static int hexv(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

static char *percent_decode(const char *s)
{
    char *o = xmalloc(strlen(s) + 1), *p = o;
    for (; *s; s++) {
        if (*s == '%' && hexv(s[1]) >= 0 && hexv(s[2]) >= 0) {
            char ch = (char)(hexv(s[1]) * 16 + hexv(s[2]));
            *p++ = ch ? ch : ' ';
            s += 2;
        } else {
            *p++ = *s;
        }
    }
    *p = 0;
    return o;
}

/* A {uuid} segment: canonical lowercase copy, or a JSON-RPC error and -1. */
static int uuid_seg(struct mcp_call *c, const char *s, size_t n, char out[37])
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 63 ? n : 63), s);
    if (n >= 64 || !crypto_uuid_valid(tmp)) {
        mcp_reply_error(c, JSONRPC_INVALID_PARAMS, "Invalid UUID: %.80s", tmp);
        return -1;
    }
    for (char *p = tmp; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    memcpy(out, tmp, 37);
    return 0;
}

void mcp_resources_read(struct mcp_call *c, const char *uri)
{
    static const char PFX[] = "calseta://";
    if (strncmp(uri, PFX, sizeof PFX - 1) != 0) {
        mcp_reply_error(c, MCP_RESOURCE_NOT_FOUND, "Unknown resource: %.200s", uri);
        return;
    }
    const char *r = uri + sizeof PFX - 1;
    char id[37];
    if (!strcmp(r, "alerts"))
        return run(c, uri, "alerts:read", SQL_ALERTS, NULL, NULL);
    if (!strcmp(r, "detection-rules"))
        return run(c, uri, "alerts:read", SQL_RULES, NULL, NULL);
    if (!strcmp(r, "context-documents"))
        return run(c, uri, "alerts:read", SQL_DOCS, NULL, NULL);
    if (!strcmp(r, "workflows"))
        return run(c, uri, "workflows:read", SQL_WORKFLOWS, NULL, NULL);
    if (!strcmp(r, "metrics/summary"))
        return run(c, uri, "alerts:read", SQL_METRICS, NULL, NULL);
    if (!strncmp(r, "enrichments/", 12)) {
        const char *t = r + 12, *slash = strchr(t, '/');
        if (!slash || slash == t || !slash[1]) {
            mcp_reply_error(c, MCP_RESOURCE_NOT_FOUND, "Unknown resource: %.200s", uri);
            return;
        }
        char *type = xstrndup(t, (size_t)(slash - t));
        char *value = percent_decode(slash + 1);
        mcp_enrich_resource(c, type, value);
        free(type);
        free(value);
        return;
    }
    static const struct {
        const char *prefix, *suffix, *scope, *sql, *what;
    } ONE[] = {
        {"alerts/", "", "alerts:read", SQL_ALERT, "Alert"},
        {"alerts/", "/context", "alerts:read", SQL_ALERT_CONTEXT, "Alert"},
        {"alerts/", "/activity", "alerts:read", SQL_ALERT_ACTIVITY, "Alert"},
        {"detection-rules/", "", "alerts:read", SQL_RULE, "Detection rule"},
        {"context-documents/", "", "alerts:read", SQL_DOC, "Context document"},
        {"workflows/", "", "workflows:read", SQL_WORKFLOW, "Workflow"},
    };
    for (size_t i = 0; i < sizeof ONE / sizeof ONE[0]; i++) {
        size_t pl = strlen(ONE[i].prefix), sl = strlen(ONE[i].suffix), rl = strlen(r);
        if (strncmp(r, ONE[i].prefix, pl) != 0 || rl <= pl + sl ||
            strcmp(r + rl - sl, ONE[i].suffix) != 0)
            continue;
        const char *seg = r + pl;
        size_t n = rl - pl - sl;
        if (memchr(seg, '/', n))
            continue;
        if (uuid_seg(c, seg, n, id))
            return;
        return run(c, uri, ONE[i].scope, ONE[i].sql, id, ONE[i].what);
    }
    mcp_reply_error(c, MCP_RESOURCE_NOT_FOUND, "Unknown resource: %.200s", uri);
}

/* The one place MCP reaches on-demand enrichment: the same path as POST /v1/enrichments (cache
 * first, the rest answered by an enricher over the bus; the intake never decrypts). */
struct enrich_box {
    mcp_enrich_cb cb;
    void *arg;
};

static void on_remote_lookup(void *arg, int status, json_t *data)
{
    struct enrich_box *b = arg;
    if (status == 200) {
        b->cb(b->arg, json_object_get(data, "results"), NULL);
    } else {
        const char *m = json_string_value(json_object_get(data, "message"));
        b->cb(b->arg, NULL, m ? m : "the lookup failed");
    }
    free(b);
}

void mcp_enrich_lookup(struct reqctx *rc, const char *type, const char *value, mcp_enrich_cb cb,
                       void *arg)
{
    struct enrich_box *b = xcalloc(1, sizeof *b);
    b->cb = cb;
    b->arg = arg;
    enrich_remote_lookup(rc->in, type, value, NULL, on_remote_lookup, b);
}
