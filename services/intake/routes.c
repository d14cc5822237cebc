/*
 * routes.c - the route table of the intake and the steps every request takes through it:
 * client IP → authentication/scope/rate limit (non-public routes) → handler → response with
 * the X-RateLimit-* headers of the request's rate class.
 *
 * The table is the API: method, path pattern, required scope ("*" = any valid key, NULL =
 * public), rate class, handler. Scopes and rate classes follow the reference's route table.
 */
#include "agents_api.h"
#include "catalogue.h"
#include "crypto.h"
#include "detection_rules.h"
#include "enrichment_api.h"
#include "intake.h"
#include "log.h"
#include "util.h"
#include "workflows_api.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const struct route_def ROUTES[] = {
    {"GET", "/health", NULL, RATE_NONE, route_health},

    {"GET", "/v1/api-keys", "admin", RATE_DEFAULT, route_list_api_keys},
    {"POST", "/v1/api-keys", "admin", RATE_DEFAULT, route_create_api_key},
    {"GET", "/v1/api-keys/{uuid}", "admin", RATE_DEFAULT, route_get_api_key},
    {"PATCH", "/v1/api-keys/{uuid}", "admin", RATE_DEFAULT, route_patch_api_key},
    {"DELETE", "/v1/api-keys/{uuid}", "admin", RATE_DEFAULT, route_delete_api_key},

    {"POST", "/v1/ingest/{source}", "alerts:write", RATE_INGEST, route_ingest_source},
    {"POST", "/v1/alerts", "alerts:write", RATE_INGEST, route_post_alert},
    {"GET", "/v1/alerts", "alerts:read", RATE_DEFAULT, route_list_alerts},
    {"GET", "/v1/alerts/{uuid}", "alerts:read", RATE_DEFAULT, route_get_alert},
    {"PATCH", "/v1/alerts/{uuid}", "alerts:write", RATE_DEFAULT, route_patch_alert},
    {"DELETE", "/v1/alerts/{uuid}", "alerts:write", RATE_DEFAULT, route_delete_alert},
    {"GET", "/v1/alerts/{uuid}/indicators", "alerts:read", RATE_DEFAULT, route_alert_indicators},
    {"GET", "/v1/alerts/{uuid}/activity", "alerts:read", RATE_DEFAULT, route_alert_activity},
    {"POST", "/v1/alerts/{uuid}/indicators", "alerts:write", RATE_DEFAULT,
     route_add_alert_indicators},
    {"GET", "/v1/alerts/{uuid}/relationship-graph", "alerts:read", RATE_DEFAULT,
     route_relationship_graph},
    {"GET", "/v1/indicators/{uuid}", "enrichments:read", RATE_DEFAULT, route_get_indicator},
    {"PATCH", "/v1/indicators/{uuid}", "alerts:write", RATE_DEFAULT, route_patch_indicator},

    {"GET", "/v1/detection-rules", "alerts:read", RATE_DEFAULT, route_list_detection_rules},
    {"POST", "/v1/detection-rules", "admin", RATE_DEFAULT, route_create_detection_rule},
    {"GET", "/v1/detection-rules/{uuid}", "alerts:read", RATE_DEFAULT, route_get_detection_rule},
    {"PATCH", "/v1/detection-rules/{uuid}", "admin", RATE_DEFAULT, route_patch_detection_rule},
    {"DELETE", "/v1/detection-rules/{uuid}", "admin", RATE_DEFAULT, route_delete_detection_rule},
    {"GET", "/v1/detection-rules/{uuid}/metrics", "alerts:read", RATE_DEFAULT,
     route_detection_rule_metrics},

    {"GET", "/v1/alerts/{uuid}/context", "alerts:read", RATE_DEFAULT, route_alert_context},
    {"POST", "/v1/alerts/{uuid}/trigger-agents", "agents:write", RATE_DEFAULT,
     route_trigger_agents},
    {"POST", "/v1/alerts/{uuid}/dispatch-agent", "agents:write", RATE_DEFAULT,
     route_dispatch_agent},

    {"GET", "/v1/agents", "agents:read", RATE_DEFAULT, route_list_agents},
    {"POST", "/v1/agents", "agents:write", RATE_DEFAULT, route_create_agent},
    {"GET", "/v1/agents/{uuid}", "agents:read", RATE_DEFAULT, route_get_agent},
    {"PATCH", "/v1/agents/{uuid}", "agents:write", RATE_DEFAULT, route_patch_agent},
    {"DELETE", "/v1/agents/{uuid}", "agents:write", RATE_DEFAULT, route_delete_agent},
    {"POST", "/v1/agents/{uuid}/rotate-secret", "agents:write", RATE_DEFAULT,
     route_rotate_agent_secret},
    {"GET", "/v1/agents/{uuid}/runs", "agents:read", RATE_DEFAULT, route_agent_runs},
    {"POST", "/v1/agents/{uuid}/test", "agents:write", RATE_DEFAULT, route_test_agent},

    {"GET", "/v1/context-documents", "alerts:read", RATE_DEFAULT, route_list_context_documents},
    {"POST", "/v1/context-documents", "alerts:write", RATE_DEFAULT,
     route_create_context_document},
    {"GET", "/v1/context-documents/{uuid}", "alerts:read", RATE_DEFAULT,
     route_get_context_document},
    {"PATCH", "/v1/context-documents/{uuid}", "alerts:write", RATE_DEFAULT,
     route_patch_context_document},
    {"DELETE", "/v1/context-documents/{uuid}", "alerts:write", RATE_DEFAULT,
     route_delete_context_document},

    {"GET", "/v1/audit-events", "admin", RATE_DEFAULT, route_list_audit_events},

    {"GET", "/v1/workflows", "workflows:read", RATE_DEFAULT, route_list_workflows},
    {"POST", "/v1/workflows", "workflows:write", RATE_DEFAULT, route_create_workflow},
    {"POST", "/v1/workflows/generate", "workflows:write", RATE_DEFAULT, route_generate_workflow},
    {"GET", "/v1/workflows/{uuid}", "workflows:read", RATE_DEFAULT, route_get_workflow},
    {"PATCH", "/v1/workflows/{uuid}", "workflows:write", RATE_DEFAULT, route_patch_workflow},
    {"DELETE", "/v1/workflows/{uuid}", "workflows:write", RATE_DEFAULT, route_delete_workflow},
    {"POST", "/v1/workflows/{uuid}/execute", "workflows:execute", RATE_WORKFLOW_EXECUTE,
     route_execute_workflow},
    {"POST", "/v1/workflows/{uuid}/test", "workflows:execute", RATE_DEFAULT, route_test_workflow},
    {"GET", "/v1/workflows/{uuid}/runs", "workflows:read", RATE_DEFAULT, route_workflow_runs},
    {"GET", "/v1/workflows/{uuid}/versions", "workflows:read", RATE_DEFAULT,
     route_workflow_versions},
    {"GET", "/v1/workflows/{uuid}/secrets", "workflows:read", RATE_DEFAULT,
     route_list_workflow_secrets},
    {"PUT", "/v1/workflows/{uuid}/secrets/{name}", "admin", RATE_DEFAULT,
     route_put_workflow_secret},
    {"DELETE", "/v1/workflows/{uuid}/secrets/{name}", "admin", RATE_DEFAULT,
     route_delete_workflow_secret},
    {"GET", "/v1/workflow-runs", "workflows:read", RATE_DEFAULT, route_list_workflow_runs},
    {"GET", "/v1/workflow-approvals", "approvals:write", RATE_DEFAULT, route_list_approvals},
    {"GET", "/v1/workflow-approvals/{uuid}", "approvals:write", RATE_DEFAULT, route_get_approval},
    {"POST", "/v1/workflow-approvals/{uuid}/approve", "approvals:write", RATE_DEFAULT,
     route_approve},
    {"POST", "/v1/workflow-approvals/{uuid}/reject", "approvals:write", RATE_DEFAULT,
     route_reject},
    {"GET", "/v1/approvals/{uuid}/decide", NULL, RATE_DEFAULT, route_decide_page},
    {"POST", "/v1/approvals/{uuid}/decide", NULL, RATE_DEFAULT, route_decide_submit},
    {"POST", "/v1/approvals/callback/slack", NULL, RATE_NONE, route_slack_callback},
    {"POST", "/v1/approvals/callback/teams", NULL, RATE_NONE, route_teams_callback},

    {"POST", "/v1/alerts/{uuid}/enrich", "alerts:write", RATE_ENRICHMENT, route_enrich_alert},
    {"POST", "/v1/enrichments", "enrichments:read", RATE_ENRICHMENT, route_enrich_on_demand},
    {"GET", "/v1/enrichments/providers", "enrichments:read", RATE_DEFAULT,
     route_enrichment_providers_summary},
    {"GET", "/v1/enrichment-providers", "enrichments:read", RATE_DEFAULT, route_list_providers},
    {"POST", "/v1/enrichment-providers", "admin", RATE_DEFAULT, route_create_provider},
    {"GET", "/v1/enrichment-providers/{uuid}", "enrichments:read", RATE_DEFAULT,
     route_get_provider},
    {"PATCH", "/v1/enrichment-providers/{uuid}", "admin", RATE_DEFAULT, route_patch_provider},
    {"DELETE", "/v1/enrichment-providers/{uuid}", "admin", RATE_DEFAULT, route_delete_provider},
    {"POST", "/v1/enrichment-providers/{uuid}/test", "admin", RATE_ENRICHMENT,
     route_test_provider},
    {"POST", "/v1/enrichment-providers/{uuid}/activate", "admin", RATE_DEFAULT,
     route_activate_provider},
    {"POST", "/v1/enrichment-providers/{uuid}/deactivate", "admin", RATE_DEFAULT,
     route_deactivate_provider},
    {"GET", "/v1/enrichment-field-extractions", "enrichments:read", RATE_DEFAULT,
     route_list_extractions},
    {"POST", "/v1/enrichment-field-extractions", "admin", RATE_DEFAULT, route_create_extraction},
    {"POST", "/v1/enrichment-field-extractions/bulk", "admin", RATE_DEFAULT,
     route_bulk_create_extractions},
    {"GET", "/v1/enrichment-field-extractions/{uuid}", "enrichments:read", RATE_DEFAULT,
     route_get_extraction},
    {"PATCH", "/v1/enrichment-field-extractions/{uuid}", "admin", RATE_DEFAULT,
     route_patch_extraction},
    {"DELETE", "/v1/enrichment-field-extractions/{uuid}", "admin", RATE_DEFAULT,
     route_delete_extraction},
};

static void dispatch(struct http_request *req, void *server_ctx)
{
    struct intake *in = server_ctx;
    struct reqctx *rc = xcalloc(1, sizeof *rc);
    rc->in = in;
    rc->req = req;
    rc->route = req->route_data;
    client_ip_resolve(req, in->cfg.trusted_proxy_count, rc->client_ip, sizeof rc->client_ip);
    if (!rc->route->scope) {
        rc->route->fn(rc);
        return;
    }
    auth_request(rc, rc->route->fn);
}

void routes_register(struct intake *in)
{
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
        http_router_add(in->router, ROUTES[i].method, ROUTES[i].pattern, dispatch,
                        (void *)&ROUTES[i]);
}

/* ---- responses -------------------------------------------------------------------------- */

static void reqctx_free(struct reqctx *rc)
{
    auth_info_destroy(&rc->auth);
    free(rc);
}

static size_t rate_headers(struct reqctx *rc, struct http_header *h, char bufs[3][24])
{
    if (!rc->rl_set)
        return 0;
    snprintf(bufs[0], 24, "%ld", rc->rl_limit);
    snprintf(bufs[1], 24, "%ld", rc->rl_remaining < 0 ? 0 : rc->rl_remaining);
    snprintf(bufs[2], 24, "%ld", rc->rl_reset);
    h[0] = (struct http_header){"X-RateLimit-Limit", 17, bufs[0], strlen(bufs[0])};
    h[1] = (struct http_header){"X-RateLimit-Remaining", 21, bufs[1], strlen(bufs[1])};
    h[2] = (struct http_header){"X-RateLimit-Reset", 17, bufs[2], strlen(bufs[2])};
    return 3;
}

void reply_json(struct reqctx *rc, int status, json_t *body)
{
    struct http_header h[4];
    char bufs[3][24];
    size_t n = rate_headers(rc, h, bufs);
    if (status == 429 && rc->rl_set)
        h[n++] = (struct http_header){"Retry-After", 11, bufs[2], strlen(bufs[2])};
    http_respond_json(rc->req, status, body, h, n);
    reqctx_free(rc);
}

void reply_data(struct reqctx *rc, int status, json_t *data)
{
    reply_json(rc, status, json_pack("{s:o,s:{}}", "data", data, "meta"));
}

void reply_list(struct reqctx *rc, json_t *items, long long total, int page, int page_size)
{
    long long pages = page_size > 0 ? (total + page_size - 1) / page_size : 0;
    reply_json(rc, 200,
               json_pack("{s:o,s:{s:I,s:i,s:i,s:I}}", "data", items, "meta", "total",
                         (json_int_t)total, "page", page, "page_size", page_size, "total_pages",
                         (json_int_t)pages));
}

void reply_error(struct reqctx *rc, int status, const char *code, const char *message,
                 json_t *details)
{
    json_t *body = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", code, "message", message,
                             "details", details ? details : json_object());
    if (!body) /* a message echoing request bytes that are not UTF-8: say it without them */
        body = json_pack("{s:{s:s,s:s,s:{}}}", "error", "code", code, "message",
                         "The request was refused (the reason contains invalid text).",
                         "details");
    reply_json(rc, status, body);
}

void reply_body(struct reqctx *rc, int status, const char *content_type, const char *body,
                size_t len)
{
    struct http_header h[3];
    char bufs[3][24];
    size_t n = rate_headers(rc, h, bufs);
    http_respond(rc->req, status, content_type, body, len, h, n);
    reqctx_free(rc);
}

void reply_empty(struct reqctx *rc, int status)
{
    reply_body(rc, status, NULL, NULL, 0);
}

void reply_validation_error(struct reqctx *rc, const char *type, const char *where,
                            const char *field, const char *msg)
{
    reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                json_pack("{s:[{s:s,s:[s,s],s:s}]}", "errors", "type", type, "loc", where, field,
                          "msg", msg));
}

void reply_pg_failure(struct reqctx *rc, PGresult *res, const char *err)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!res) {
        reply_db_unavailable(rc);
    } else if (st && !strncmp(st, "22", 2)) {
        reply_validation_error(rc, "value_error", "body", "value", "Invalid value");
    } else {
        msg_error("%s %s: statement failed: %s", rc->req->method, rc->route->pattern,
                  err ? err : "?");
        reply_error(rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
    }
}

int reply_if_pg_failed(struct reqctx *rc, PGresult *res, const char *err)
{
    if (res && !err)
        return 0;
    reply_pg_failure(rc, res, err);
    return -1;
}

void reply_db_unavailable(struct reqctx *rc)
{
    reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                "The database is unavailable; nothing was changed. Retry later.", NULL);
}

/* ---- list routes ---------------------------------------------------------------------------- */

struct list_op {
    struct reqctx *rc;
    int page, page_size;
    const char *not_found;
    void (*each)(struct reqctx *rc, json_t *item);
};

static void on_list(void *arg, PGresult *res, const char *err)
{
    struct list_op *op = arg;
    struct reqctx *rc = op->rc;
    struct list_op o = *op;
    free(op);
    if (reply_if_pg_failed(rc, res, err) != 0)
        return;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 1)) {
        reply_error(rc, 404, "NOT_FOUND", o.not_found, NULL);
        return;
    }
    json_t *items = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    if (!json_is_array(items)) {
        json_decref(items);
        items = json_array();
    }
    size_t i;
    json_t *item;
    if (o.each)
        json_array_foreach(items, i, item) o.each(rc, item);
    reply_list(rc, items, atoll(PQgetvalue(res, 0, 0)), o.page, o.page_size);
}

void list_query(struct reqctx *rc, const char *sql, int nparams, const char *const *params,
                int page, int page_size, const char *not_found,
                void (*each)(struct reqctx *rc, json_t *item))
{
    struct list_op *op = xcalloc(1, sizeof *op);
    *op = (struct list_op){rc, page, page_size, not_found, each};
    pg_exec(rc->in->pg, sql, nparams, params, on_list, op);
}

void pagination_params(int page, int page_size, char limit[16], char offset[24])
{
    snprintf(limit, 16, "%d", page_size);
    snprintf(offset, 24, "%lld", (long long)(page - 1) * page_size);
}

/* ---- request helpers ------------------------------------------------------------------------ */

const char *path_param(struct reqctx *rc, size_t i, char *buf, size_t buflen)
{
    buf[0] = 0;
    if (i >= rc->req->nparams)
        return buf;
    size_t n = rc->req->param_lens[i];
    if (n >= buflen)
        n = buflen - 1;
    memcpy(buf, rc->req->params[i], n);
    buf[n] = 0;
    return buf;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int query_param(struct reqctx *rc, const char *name, char *out, size_t outlen)
{
    const char *q = rc->req->query;
    if (!q)
        return 0;
    size_t nlen = strlen(name);
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > nlen && !strncmp(q, name, nlen) && q[nlen] == '=') {
            size_t o = 0;
            for (size_t i = nlen + 1; i < len && o + 1 < outlen; i++) {
                char c = q[i];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && i + 2 < len + 0 + 1 && hexval(q[i + 1]) >= 0 &&
                           hexval(q[i + 2]) >= 0) {
                    c = (char)(hexval(q[i + 1]) * 16 + hexval(q[i + 2]));
                    i += 2;
                }
                if (c == 0)
                    c = ' ';
                out[o++] = c;
            }
            out[o] = 0;
            return 1;
        }
        if (!amp)
            break;
        q = amp + 1;
    }
    return 0;
}

int parse_pagination(struct reqctx *rc, int *page, int *page_size)
{
    char v[32];
    long long x;
    *page = 1;
    *page_size = 50;
    if (query_param(rc, "page", v, sizeof v)) {
        if (parse_ll(v, 1, 1000000000, &x)) {
            reply_validation_error(rc, "value_error", "query", "page", "Input should be greater than or equal to 1");
            return -1;
        }
        *page = (int)x;
    }
    if (query_param(rc, "page_size", v, sizeof v)) {
        if (parse_ll(v, 1, 500, &x)) {
            reply_validation_error(rc, "value_error", "query", "page_size", "Input should be between 1 and 500");
            return -1;
        }
        *page_size = (int)x;
    }
    return 0;
}

int require_uuid_param(struct reqctx *rc, size_t i, char out[37])
{
    char buf[64];
    path_param(rc, i, buf, sizeof buf);
    if (!crypto_uuid_valid(buf)) {
        reply_validation_error(rc, "uuid_parsing", "path", "uuid", "Input should be a valid UUID");
        return -1;
    }
    for (int k = 0; k < 36; k++)
        out[k] = (char)tolower((unsigned char)buf[k]);
    out[36] = 0;
    return 0;
}

json_t *body_json_object(struct reqctx *rc)
{
    json_error_t e;
    struct http_request *req = rc->req;
    json_t *v = json_loadb(req->body.data ? req->body.data : "", req->body.len,
                           JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(v)) {
        json_decref(v);
        reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                    json_pack("{s:[{s:s,s:[s],s:s}]}", "errors", "type", "json_invalid", "loc",
                              "body", "msg", "A JSON object is required"));
        return NULL;
    }
    return v;
}
