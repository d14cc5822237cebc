/*
 * mcp_server.c - the MCP methods (initialize, ping, tools/list, tools/call, resources/list,
 * resources/templates/list, resources/read, prompts/list) and the reply helpers every tool and
 * resource uses. Identity and scopes come only from the verified bearer key of the HTTP request
 * (rc->auth); anything the client puts in params._meta is ignored.
 */
#include "mcp.h"
#include "audit.h"
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char INSTRUCTIONS[] =
    "Calseta is a security data layer between SIEMs and AI agents. It ingests alerts from "
    "Microsoft Sentinel, Elastic, Splunk and generic webhooks, normalises them, extracts "
    "indicators (IPs, domains, hashes, URLs, emails, accounts), enriches the indicators with "
    "threat-intelligence providers, links alerts to detection rules and applicable context "
    "documents (runbooks, SOPs), and runs response workflows behind an approval gate.\n\n"
    "How to work an alert:\n"
    "1. Read calseta://alerts (the 50 most recent) or call search_alerts to find alerts "
    "(filters: status, severity, source_name, tags, time range).\n"
    "2. Read calseta://alerts/{uuid} for the full picture: indicators with enrichment results, "
    "the detection rule with its documentation, applicable context documents and earlier "
    "findings. calseta://alerts/{uuid}/activity shows what already happened to it.\n"
    "3. Call enrich_indicator for an indicator that needs a fresh lookup.\n"
    "4. Record your analysis with post_alert_finding (summary, confidence low|medium|high, "
    "optional recommended_action). Findings are visible to analysts and other agents.\n"
    "5. Move the alert with update_alert_status (Closed needs a close_classification) and set "
    "verdicts with update_alert_malice or update_indicator_malice.\n"
    "6. To act (block an IP, suspend a user), list calseta://workflows and call "
    "execute_workflow with a reason and a confidence between 0 and 1; workflows behind the "
    "approval gate return pending_approval until a human decides.\n"
    "Every resource and tool needs a scope on your API key (alerts:read, alerts:write, "
    "enrichments:read, workflows:read, workflows:execute); a missing scope is reported as an "
    "error naming it.";

json_t *mcp_initialize_result(struct intake *in, const char *requested, char version_out[16])
{
    const char *v = mcp_version_supported(requested) ? requested : MCP_VERSIONS[0];
    snprintf(version_out, 16, "%s", v);
    return json_pack("{s:s,s:{s:{s:b},s:{s:b,s:b},s:{s:b}},s:{s:s,s:s,s:s},s:s}",
                     "protocolVersion", v, "capabilities", "tools", "listChanged", 0,
                     "resources", "subscribe", 0, "listChanged", 0, "prompts", "listChanged", 0,
                     "serverInfo", "name", "Calseta", "title", "Calseta", "version",
                     in->cfg.app_version, "instructions", INSTRUCTIONS);
}

/* ---- replies -------------------------------------------------------------------------------- */

void mcp_reply_result(struct mcp_call *c, json_t *result)
{
    c->done(c, c->id ? mcp_jsonrpc_result(c->id, result) : (json_decref(result), NULL));
}

void mcp_reply_error(struct mcp_call *c, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->done(c, c->id ? mcp_jsonrpc_error(c->id, code, msg) : NULL);
}

char *mcp_json_text(json_t *obj)
{
    /* jansson without JSON_COMPACT separates with ", " and ": " like Python's json.dumps. */
    return json_dumps(obj, JSON_INDENT(0) | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER |
                               JSON_ENCODE_ANY);
}

static json_t *text_content(const char *text, int is_error)
{
    return json_pack("{s:[{s:s,s:s}],s:b}", "content", "type", "text", "text", text, "isError",
                     is_error);
}

void mcp_tool_ok(struct mcp_call *c, json_t *obj)
{
    char *t = mcp_json_text(obj);
    json_decref(obj);
    mcp_reply_result(c, text_content(t ? t : "null", 0));
    free(t);
}

void mcp_tool_fail(struct mcp_call *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *r = text_content(msg, 1);
    if (!r) /* echoed input that is not UTF-8 */
        r = text_content("The tool call was refused (the reason contains invalid text).", 1);
    mcp_reply_result(c, r);
}

void mcp_resource_ok(struct mcp_call *c, const char *uri, json_t *obj)
{
    char *t = mcp_json_text(obj);
    json_decref(obj);
    mcp_reply_result(c, json_pack("{s:[{s:s,s:s,s:s}]}", "contents", "uri", uri, "mimeType",
                                  "application/json", "text", t ? t : "null"));
    free(t);
}

int mcp_require_scope(struct mcp_call *c, const char *scope, int tool)
{
    if (has_scope(&c->rc->auth, scope))
        return 0;
    struct reqctx *rc = c->rc;
    /* aggregated per key, scope and window like the REST refusals: an agent retrying a tool
     * its key may not call costs one audit event per window, not one per call */
    char route[96];
    snprintf(route, sizeof route, "%s %s", rc->route ? rc->route->pattern : "/mcp", scope);
    audit_key_refusal_as(rc->in->audit, "mcp_auth_failure", rc->req->method, route, rc->req->path,
                         rc->client_ip, rc->auth.key_prefix, "insufficient_scope", scope,
                         rc->req->request_id);
    if (tool)
        mcp_tool_fail(c, "Insufficient scope. Required: %s", scope);
    else
        mcp_reply_error(c, MCP_FORBIDDEN, "Insufficient scope. Required: %s", scope);
    return -1;
}

int mcp_pg_failed(struct mcp_call *c, PGresult *res, const char *err, int tool)
{
    if (res && !err)
        return 0;
    if (err)
        msg_warn("mcp: statement failed: %s", err);
    const char *m = !res ? "The database is unavailable; try again."
                         : "The request failed on the server.";
    if (tool)
        mcp_tool_fail(c, "%s", m);
    else
        mcp_reply_error(c, JSONRPC_INTERNAL_ERROR, "%s", m);
    return -1;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void mcp_dispatch(struct mcp_call *c, const struct mcp_msg *m)
{
    if (m->kind != MCP_MSG_REQUEST) {
        c->done(c, NULL); /* notifications and responses: nothing to answer */
        return;
    }
    const char *meth = m->method;
    json_t *p = m->params;
    if (!strcmp(meth, "initialize")) {
        const char *v = json_string_value(json_object_get(p, "protocolVersion"));
        json_t *r = mcp_initialize_result(c->rc->in, v, c->protocol_version);
        if (c->legacy && v && !strcmp(v, "2024-11-05")) /* the revision that defined HTTP+SSE */
            json_object_set_new(r, "protocolVersion", json_string(v));
        mcp_reply_result(c, r);
    } else if (!strcmp(meth, "ping")) {
        mcp_reply_result(c, json_object());
    } else if (!strcmp(meth, "tools/list")) {
        mcp_reply_result(c, json_pack("{s:o}", "tools", mcp_tools_list()));
    } else if (!strcmp(meth, "resources/list")) {
        mcp_reply_result(c, json_pack("{s:o}", "resources", mcp_resources_list()));
    } else if (!strcmp(meth, "resources/templates/list")) {
        mcp_reply_result(c,
                         json_pack("{s:o}", "resourceTemplates", mcp_resource_templates_list()));
    } else if (!strcmp(meth, "prompts/list")) {
        mcp_reply_result(c, json_pack("{s:[]}", "prompts"));
    } else if (!strcmp(meth, "tools/call")) {
        json_t *name = json_object_get(p, "name");
        json_t *args = json_object_get(p, "arguments");
        if (!json_is_string(name) || (args && !json_is_object(args) && !json_is_null(args))) {
            mcp_reply_error(c, JSONRPC_INVALID_PARAMS,
                            "Invalid params: tools/call needs a name and an arguments object");
            return;
        }
        json_t *a = json_is_object(args) ? json_incref(args) : json_object();
        mcp_tools_call(c, json_string_value(name), a);
        json_decref(a);
    } else if (!strcmp(meth, "resources/read")) {
        json_t *uri = json_object_get(p, "uri");
        if (!json_is_string(uri)) {
            mcp_reply_error(c, JSONRPC_INVALID_PARAMS, "Invalid params: resources/read needs a uri");
            return;
        }
        mcp_resources_read(c, json_string_value(uri));
    } else {
        mcp_reply_error(c, JSONRPC_METHOD_NOT_FOUND, "Method not found: %.100s", meth);
    }
}
