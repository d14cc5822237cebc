/*
 * routes.c - the route table of the intake and the steps every request takes through it:
 * client IP → authentication/scope/rate limit (non-public routes) → handler → response with
 * the X-RateLimit-* headers of the request's rate class. Client IP and authentication run in
 * the HTTP server's admission gate, before the body is read; the handler after it.
 *
 * The table is the API: method, path pattern, required scope ("*" = any valid key, NULL =
 * public), rate class, handler. Scopes and rate classes follow the original's route table.
 */
#include "agents_api.h"
#include "catalogue.h"
#include "crypto.h"
#include "detection_rules.h"
#include "enrichment_api.h"
#include "intake.h"
#include "log.h"
#include "mcp.h"
#include "openapi.h"
#include "prom.h"
#include "util.h"
#include "workflows_api.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const struct route_def ROUTES[] = {
    {"GET", "/health", NULL, RATE_NONE, route_health,
     "Liveness and readiness: database, queue depth, providers", "Health", NULL, NULL, 0, NULL},

    {"GET", "/v1/api-keys", "admin", RATE_DEFAULT, route_list_api_keys,
     "List API keys (never the key or its hash)", "API keys", NULL, "Object[]", 0,
     "page:int,page_size:int"},
    {"POST", "/v1/api-keys", "admin", RATE_DEFAULT, route_create_api_key,
     "Create an API key; the full key appears only in this answer", "API keys", "Object", NULL, 201,
     NULL},
    {"GET", "/v1/api-keys/{uuid}", "admin", RATE_DEFAULT, route_get_api_key,
     "Get one API key", "API keys", NULL, NULL, 0, NULL},
    {"PATCH", "/v1/api-keys/{uuid}", "admin", RATE_DEFAULT, route_patch_api_key,
     "Change scopes, expiry, allowed sources or rate limit of a key", "API keys", "Object", NULL, 0,
     NULL},
    {"DELETE", "/v1/api-keys/{uuid}", "admin", RATE_DEFAULT, route_delete_api_key,
     "Revoke an API key", "API keys", NULL, "-", 204, NULL},

    {"POST", "/v1/ingest/{source}", "alerts:write", RATE_INGEST, route_ingest_source,
     "Ingest an alert from a SIEM source (sentinel, elastic, splunk, generic)", "Ingest", "Object",
     NULL, 202, NULL},
    {"POST", "/v1/alerts", "alerts:write", RATE_INGEST, route_post_alert,
     "Ingest an alert in the generic format", "Ingest", "Object", NULL, 202, NULL},

    {"GET", "/v1/alerts", "alerts:read", RATE_DEFAULT, route_list_alerts,
     "List alerts with filters, sorts and pagination", "Alerts", NULL, "Object[]", 0,
     "status,severity,source_name,enrichment_status,is_enriched:bool,tags,from_time:date-time,"
     "to_time:date-time,sort_by,sort_order,page:int,page_size:int"},
    {"GET", "/v1/alerts/{uuid}", "alerts:read", RATE_DEFAULT, route_get_alert,
     "Get one alert with its indicators and raw payload", "Alerts", NULL, NULL, 0, NULL},
    {"PATCH", "/v1/alerts/{uuid}", "alerts:write", RATE_DEFAULT, route_patch_alert,
     "Change status, severity, tags, close classification or malice override", "Alerts", "Object",
     NULL, 0, NULL},
    {"DELETE", "/v1/alerts/{uuid}", "alerts:write", RATE_DEFAULT, route_delete_alert,
     "Delete an alert", "Alerts", NULL, "-", 204, NULL},
    {"GET", "/v1/alerts/{uuid}/indicators", "alerts:read", RATE_DEFAULT, route_alert_indicators,
     "The indicators of an alert", "Alerts", NULL, "Indicator[]", 0, NULL},
    {"GET", "/v1/alerts/{uuid}/activity", "alerts:read", RATE_DEFAULT, route_alert_activity,
     "The activity events of an alert, newest first", "Alerts", NULL, "Object[]", 0,
     "page:int,page_size:int"},

    {"POST", "/v1/alerts/{uuid}/indicators", "alerts:write", RATE_DEFAULT,
     route_add_alert_indicators,
     "Add indicators to an alert (enrich=true queues an enrichment job)", "Indicators",
     "AlertIndicatorsAdd", "AlertIndicatorsAdded", 201, "enrich:bool"},
    {"GET", "/v1/alerts/{uuid}/relationship-graph", "alerts:read", RATE_DEFAULT,
     route_relationship_graph,
     "The alert, its indicators and the other alerts that share them", "Indicators", NULL,
     "RelationshipGraph", 0, "sibling_limit:int"},
    {"GET", "/v1/indicators/{uuid}", "enrichments:read", RATE_DEFAULT, route_get_indicator,
     "Get one indicator with its full enrichment results", "Indicators", NULL, "Indicator", 0,
     NULL},
    {"PATCH", "/v1/indicators/{uuid}", "alerts:write", RATE_DEFAULT, route_patch_indicator,
     "Set or reset the analyst's malice verdict of an indicator", "Indicators", "IndicatorPatch",
     "Indicator", 0, NULL},

    {"GET", "/v1/detection-rules", "alerts:read", RATE_DEFAULT, route_list_detection_rules,
     "List detection rules", "Detection rules", NULL, "DetectionRule[]", 0,
     "source_name,severity,is_active:bool,sort_by,sort_order,page:int,page_size:int"},
    {"POST", "/v1/detection-rules", "admin", RATE_DEFAULT, route_create_detection_rule,
     "Create a detection rule", "Detection rules", "DetectionRuleCreate", "DetectionRule", 201,
     NULL},
    {"GET", "/v1/detection-rules/{uuid}", "alerts:read", RATE_DEFAULT, route_get_detection_rule,
     "Get one detection rule", "Detection rules", NULL, "DetectionRule", 0, NULL},
    {"PATCH", "/v1/detection-rules/{uuid}", "admin", RATE_DEFAULT, route_patch_detection_rule,
     "Change a detection rule", "Detection rules", "DetectionRulePatch", "DetectionRule", 0, NULL},
    {"DELETE", "/v1/detection-rules/{uuid}", "admin", RATE_DEFAULT, route_delete_detection_rule,
     "Delete a detection rule (its alerts stay, unlinked)", "Detection rules", NULL, "-", 204,
     NULL},
    {"GET", "/v1/detection-rules/{uuid}/metrics", "alerts:read", RATE_DEFAULT,
     route_detection_rule_metrics,
     "Alert metrics of one detection rule", "Detection rules", NULL, "DetectionRuleMetrics", 0,
     "from:date-time,to:date-time"},
    {"POST", "/v1/alerts/{uuid}/findings", "alerts:write", RATE_DEFAULT, route_post_finding,
     "Post an agent finding on an alert (appended atomically)", "Alerts", "Object", NULL, 201,
     NULL},
    {"GET", "/v1/alerts/{uuid}/findings", "alerts:read", RATE_DEFAULT, route_list_findings,
     "The findings of an alert, oldest first", "Alerts", NULL, "Object[]", 0, NULL},

    /* MCP: public in the table; the handlers check Origin/Host first, then authenticate with
     * the MCP rate class and check each resource's and tool's scope (mcp_transport.c). */
    {"POST", "/mcp", NULL, RATE_NONE, route_mcp_post,
     "MCP Streamable HTTP: one JSON-RPC message (bearer key required; see docs/mcp.md)", "MCP",
     "Object", NULL, 0, NULL},
    {"DELETE", "/mcp", NULL, RATE_NONE, route_mcp_delete,
     "MCP Streamable HTTP: end the session named by Mcp-Session-Id", "MCP", NULL, "-", 204, NULL},
    {"GET", "/sse", NULL, RATE_NONE, route_mcp_sse,
     "MCP legacy HTTP+SSE: open the event stream (bearer key required)", "MCP", NULL,
     "text/plain", 0, NULL},
    {"POST", "/messages/", NULL, RATE_NONE, route_mcp_messages,
     "MCP legacy HTTP+SSE: one JSON-RPC message for the stream's session", "MCP", "Object",
     "text/plain", 202, "session_id"},
    {"POST", "/messages", NULL, RATE_NONE, route_mcp_messages,
     "MCP legacy HTTP+SSE: one JSON-RPC message for the stream's session", "MCP", "Object",
     "text/plain", 202, "session_id"},
    {"GET", "/.well-known/oauth-protected-resource", NULL, RATE_NONE, route_mcp_resource_metadata,
     "RFC 9728 protected-resource metadata of the MCP endpoint", "MCP", NULL, "Object", 0, NULL},
    {"GET", "/.well-known/oauth-protected-resource/mcp", NULL, RATE_NONE,
     route_mcp_resource_metadata, "RFC 9728 protected-resource metadata of /mcp", "MCP", NULL,
     "Object", 0, NULL},

    {"GET", "/v1/alerts/{uuid}/context", "alerts:read", RATE_DEFAULT, route_alert_context,
     "The context documents that apply to an alert", "Alerts", NULL, NULL, 0, NULL},

    {"POST", "/v1/alerts/{uuid}/trigger-agents", "agents:write", RATE_DEFAULT, route_trigger_agents,
     "Send the alert to every matching agent", "Agents", NULL, NULL, 202, NULL},
    {"POST", "/v1/alerts/{uuid}/dispatch-agent", "agents:write", RATE_DEFAULT, route_dispatch_agent,
     "Send the alert to one agent", "Agents", "Object", NULL, 202, NULL},
    {"GET", "/v1/agents", "agents:read", RATE_DEFAULT, route_list_agents,
     "List registered agents", "Agents", NULL, "Object[]", 0, "page:int,page_size:int"},
    {"POST", "/v1/agents", "agents:write", RATE_DEFAULT, route_create_agent,
     "Register an agent (webhook endpoint, triggers)", "Agents", "Object", NULL, 201, NULL},
    {"GET", "/v1/agents/{uuid}", "agents:read", RATE_DEFAULT, route_get_agent,
     "Get one agent (never its secrets)", "Agents", NULL, NULL, 0, NULL},
    {"PATCH", "/v1/agents/{uuid}", "agents:write", RATE_DEFAULT, route_patch_agent,
     "Change an agent", "Agents", "Object", NULL, 0, NULL},
    {"DELETE", "/v1/agents/{uuid}", "agents:write", RATE_DEFAULT, route_delete_agent,
     "Delete an agent", "Agents", NULL, "-", 204, NULL},
    {"POST", "/v1/agents/{uuid}/rotate-secret", "agents:write", RATE_DEFAULT,
     route_rotate_agent_secret,
     "Rotate an agent's webhook signing secret", "Agents", NULL, NULL, 0, NULL},
    {"GET", "/v1/agents/{uuid}/runs", "agents:read", RATE_DEFAULT, route_agent_runs,
     "The webhook deliveries of an agent", "Agents", NULL, "Object[]", 0, "page:int,page_size:int"},
    {"POST", "/v1/agents/{uuid}/test", "agents:write", RATE_DEFAULT, route_test_agent,
     "Send a test webhook to an agent", "Agents", NULL, NULL, 0, NULL},

    {"GET", "/v1/context-documents", "alerts:read", RATE_DEFAULT, route_list_context_documents,
     "List context documents (runbooks, SOPs)", "Context documents", NULL, "Object[]", 0,
     "page:int,page_size:int"},
    {"POST", "/v1/context-documents", "alerts:write", RATE_DEFAULT, route_create_context_document,
     "Create a context document", "Context documents", "Object", NULL, 201, NULL},
    {"GET", "/v1/context-documents/{uuid}", "alerts:read", RATE_DEFAULT, route_get_context_document,
     "Get one context document", "Context documents", NULL, NULL, 0, NULL},
    {"PATCH", "/v1/context-documents/{uuid}", "alerts:write", RATE_DEFAULT,
     route_patch_context_document,
     "Change a context document", "Context documents", "Object", NULL, 0, NULL},
    {"DELETE", "/v1/context-documents/{uuid}", "alerts:write", RATE_DEFAULT,
     route_delete_context_document,
     "Delete a context document", "Context documents", NULL, "-", 204, NULL},

    {"GET", "/v1/indicator-mappings", "admin", RATE_DEFAULT, route_list_mappings,
     "List indicator field mappings", "Indicator mappings", NULL, "IndicatorMapping[]", 0,
     "source_name,is_system:bool,is_active:bool,extraction_target,page:int,page_size:int"},
    {"POST", "/v1/indicator-mappings", "admin", RATE_DEFAULT, route_create_mapping,
     "Create an indicator field mapping", "Indicator mappings", "IndicatorMappingCreate",
     "IndicatorMapping", 201, NULL},
    {"GET", "/v1/indicator-mappings/source-plugin-fields", "admin", RATE_DEFAULT,
     route_source_plugin_fields, "The fields each source plugin extracts (pass 1)",
     "Indicator mappings", NULL, "IndicatorMapping", 0, NULL},
    {"POST", "/v1/indicator-mappings/test-extraction", "admin", RATE_DEFAULT,
     route_test_extraction, "Dry run of the three extraction passes over a payload",
     "Indicator mappings", "TestExtraction", "TestExtractionResult", 0, NULL},
    {"GET", "/v1/indicator-mappings/{uuid}", "admin", RATE_DEFAULT, route_get_mapping,
     "Get one indicator field mapping", "Indicator mappings", NULL, "IndicatorMapping", 0, NULL},
    {"PATCH", "/v1/indicator-mappings/{uuid}", "admin", RATE_DEFAULT, route_patch_mapping,
     "Change a mapping (system mappings: is_active only)", "Indicator mappings",
     "IndicatorMappingPatch", "IndicatorMapping", 0, NULL},
    {"DELETE", "/v1/indicator-mappings/{uuid}", "admin", RATE_DEFAULT, route_delete_mapping,
     "Delete a mapping (not a system one)", "Indicator mappings", NULL, "-", 204, NULL},

    {"GET", "/v1/sources", "alerts:read", RATE_DEFAULT, route_list_sources,
     "List source integrations", "Sources", NULL, "Source[]", 0, "page:int,page_size:int"},
    {"POST", "/v1/sources", "admin", RATE_DEFAULT, route_create_source,
     "Create a source integration (auth_config stored encrypted)", "Sources", "SourceCreate",
     "Source", 201, NULL},
    {"GET", "/v1/sources/{uuid}", "alerts:read", RATE_DEFAULT, route_get_source,
     "Get one source integration", "Sources", NULL, "Source", 0, NULL},
    {"PATCH", "/v1/sources/{uuid}", "admin", RATE_DEFAULT, route_patch_source,
     "Change a source integration", "Sources", "SourcePatch", "Source", 0, NULL},
    {"DELETE", "/v1/sources/{uuid}", "admin", RATE_DEFAULT, route_delete_source,
     "Delete a source integration", "Sources", NULL, "-", 204, NULL},

    {"GET", "/v1/metrics/alerts", "alerts:read", RATE_DEFAULT, route_metrics_alerts,
     "Alert metrics of a window (default: the last 30 days)", "Metrics", NULL, "AlertMetrics", 0,
     "from_time:date-time,to_time:date-time"},
    {"GET", "/v1/metrics/workflows", "workflows:read", RATE_DEFAULT, route_metrics_workflows,
     "Workflow metrics of a window (default: the last 30 days)", "Metrics", NULL,
     "WorkflowMetrics", 0, "from_time:date-time,to_time:date-time"},
    {"GET", "/v1/metrics/summary", "alerts:read", RATE_DEFAULT, route_metrics_summary,
     "Platform summary of the last 30 days, job queues included", "Metrics", NULL,
     "MetricsSummary", 0, NULL},

    {"GET", "/v1/settings/approval-defaults", "admin", RATE_DEFAULT, route_approval_defaults,
     "Default approval notification settings", "Settings", NULL, "ApprovalDefaults", 0, NULL},

    {"GET", "/v1/audit-events", "admin", RATE_DEFAULT, route_list_audit_events,
     "Search the audit log", "Audit", NULL, "Object[]", 0,
     "event_type,key_prefix,from_time:date-time,to_time:date-time,page:int,page_size:int"},

    {"GET", "/v1/workflows", "workflows:read", RATE_DEFAULT, route_list_workflows,
     "List workflows", "Workflows", NULL, "Object[]", 0,
     "is_active:bool,sort_by,sort_order,page:int,page_size:int"},
    {"POST", "/v1/workflows", "workflows:write", RATE_DEFAULT, route_create_workflow,
     "Create a workflow (code checked by the sandbox validator)", "Workflows", "Object", NULL, 201,
     NULL},
    {"POST", "/v1/workflows/generate", "workflows:write", RATE_DEFAULT, route_generate_workflow,
     "Generate workflow code from a description", "Workflows", "Object", NULL, 0, NULL},
    {"GET", "/v1/workflows/{uuid}", "workflows:read", RATE_DEFAULT, route_get_workflow,
     "Get one workflow", "Workflows", NULL, NULL, 0, NULL},
    {"PATCH", "/v1/workflows/{uuid}", "workflows:write", RATE_DEFAULT, route_patch_workflow,
     "Change a workflow (a code change makes a new version)", "Workflows", "Object", NULL, 0, NULL},
    {"DELETE", "/v1/workflows/{uuid}", "workflows:write", RATE_DEFAULT, route_delete_workflow,
     "Delete a workflow", "Workflows", NULL, "-", 204, NULL},
    {"POST", "/v1/workflows/{uuid}/execute", "workflows:execute", RATE_WORKFLOW_EXECUTE,
     route_execute_workflow,
     "Run a workflow (through the approval gate when it applies)", "Workflows", "Object", NULL, 202,
     NULL},
    {"POST", "/v1/workflows/{uuid}/test", "workflows:execute", RATE_DEFAULT, route_test_workflow,
     "Run a workflow once in the sandbox and return its result", "Workflows", "Object", NULL, 0,
     NULL},
    {"GET", "/v1/workflows/{uuid}/runs", "workflows:read", RATE_DEFAULT, route_workflow_runs,
     "The runs of a workflow", "Workflows", NULL, "Object[]", 0, "page:int,page_size:int"},
    {"GET", "/v1/workflows/{uuid}/versions", "workflows:read", RATE_DEFAULT,
     route_workflow_versions,
     "The code versions of a workflow", "Workflows", NULL, "Object[]", 0, "page:int,page_size:int"},
    {"GET", "/v1/workflows/{uuid}/secrets", "workflows:read", RATE_DEFAULT,
     route_list_workflow_secrets,
     "The secret names a workflow may read (never the values)", "Workflows", NULL, NULL, 0, NULL},
    {"PUT", "/v1/workflows/{uuid}/secrets/{name}", "admin", RATE_DEFAULT, route_put_workflow_secret,
     "Store a secret for a workflow", "Workflows", "Object", NULL, 0, NULL},
    {"DELETE", "/v1/workflows/{uuid}/secrets/{name}", "admin", RATE_DEFAULT,
     route_delete_workflow_secret,
     "Delete a secret of a workflow", "Workflows", NULL, "-", 204, NULL},
    {"GET", "/v1/workflow-runs", "workflows:read", RATE_DEFAULT, route_list_workflow_runs,
     "List workflow runs", "Workflows", NULL, "Object[]", 0,
     "workflow_uuid,status,page:int,page_size:int"},

    {"GET", "/v1/workflow-approvals", "approvals:write", RATE_DEFAULT, route_list_approvals,
     "List approval requests", "Approvals", NULL, "Object[]", 0,
     "status,workflow_uuid,page:int,page_size:int"},
    {"GET", "/v1/workflow-approvals/{uuid}", "approvals:write", RATE_DEFAULT, route_get_approval,
     "Get one approval request", "Approvals", NULL, NULL, 0, NULL},
    {"POST", "/v1/workflow-approvals/{uuid}/approve", "approvals:write", RATE_DEFAULT,
     route_approve,
     "Approve a pending request (the run starts)", "Approvals", "Object", NULL, 0, NULL},
    {"POST", "/v1/workflow-approvals/{uuid}/reject", "approvals:write", RATE_DEFAULT, route_reject,
     "Reject a pending request", "Approvals", "Object", NULL, 0, NULL},
    {"GET", "/v1/approvals/{uuid}/decide", NULL, RATE_DEFAULT, route_decide_page,
     "The approval page of a notification link (token in the link)", "Approvals", NULL, "text/html",
     0, "token"},
    {"POST", "/v1/approvals/{uuid}/decide", NULL, RATE_DEFAULT, route_decide_submit,
     "Submit the decision of the approval page", "Approvals", NULL, "text/html", 0, "token"},
    {"POST", "/v1/approvals/callback/slack", NULL, RATE_NONE, route_slack_callback,
     "Slack interactive callback (Slack signature)", "Approvals", NULL, "text/plain", 0, NULL},
    {"POST", "/v1/approvals/callback/teams", NULL, RATE_NONE, route_teams_callback,
     "Teams callback", "Approvals", "Object", NULL, 0, NULL},

    {"POST", "/v1/alerts/{uuid}/enrich", "alerts:write", RATE_ENRICHMENT, route_enrich_alert,
     "Queue an enrichment of an alert", "Enrichment", NULL, NULL, 202, NULL},
    {"POST", "/v1/enrichments", "enrichments:read", RATE_ENRICHMENT, route_enrich_on_demand,
     "Look up one indicator at the providers now", "Enrichment", "Object", NULL, 0, NULL},
    {"GET", "/v1/enrichments/providers", "enrichments:read", RATE_DEFAULT,
     route_enrichment_providers_summary,
     "Which providers are configured", "Enrichment", NULL, NULL, 0, NULL},
    {"GET", "/v1/enrichment-providers", "enrichments:read", RATE_DEFAULT, route_list_providers,
     "List enrichment providers", "Enrichment", NULL, "Object[]", 0,
     "is_active:bool,page:int,page_size:int"},
    {"POST", "/v1/enrichment-providers", "admin", RATE_DEFAULT, route_create_provider,
     "Create an enrichment provider", "Enrichment", "Object", NULL, 201, NULL},
    {"GET", "/v1/enrichment-providers/{uuid}", "enrichments:read", RATE_DEFAULT, route_get_provider,
     "Get one enrichment provider (never its credentials)", "Enrichment", NULL, NULL, 0, NULL},
    {"PATCH", "/v1/enrichment-providers/{uuid}", "admin", RATE_DEFAULT, route_patch_provider,
     "Change an enrichment provider", "Enrichment", "Object", NULL, 0, NULL},
    {"DELETE", "/v1/enrichment-providers/{uuid}", "admin", RATE_DEFAULT, route_delete_provider,
     "Delete an enrichment provider", "Enrichment", NULL, "-", 204, NULL},
    {"POST", "/v1/enrichment-providers/{uuid}/test", "admin", RATE_ENRICHMENT, route_test_provider,
     "Test a provider with one lookup", "Enrichment", "Object", NULL, 0, NULL},
    {"POST", "/v1/enrichment-providers/{uuid}/activate", "admin", RATE_DEFAULT,
     route_activate_provider,
     "Activate a provider", "Enrichment", NULL, NULL, 0, NULL},
    {"POST", "/v1/enrichment-providers/{uuid}/deactivate", "admin", RATE_DEFAULT,
     route_deactivate_provider,
     "Deactivate a provider", "Enrichment", NULL, NULL, 0, NULL},
    {"GET", "/v1/enrichment-field-extractions", "enrichments:read", RATE_DEFAULT,
     route_list_extractions,
     "List field extractions", "Enrichment", NULL, "Object[]", 0,
     "provider_name,indicator_type,is_active:bool,page:int,page_size:int"},
    {"POST", "/v1/enrichment-field-extractions", "admin", RATE_DEFAULT, route_create_extraction,
     "Create a field extraction", "Enrichment", "Object", NULL, 201, NULL},
    {"POST", "/v1/enrichment-field-extractions/bulk", "admin", RATE_DEFAULT,
     route_bulk_create_extractions,
     "Create several field extractions", "Enrichment", "Object", NULL, 201, NULL},
    {"GET", "/v1/enrichment-field-extractions/{uuid}", "enrichments:read", RATE_DEFAULT,
     route_get_extraction,
     "Get one field extraction", "Enrichment", NULL, NULL, 0, NULL},
    {"PATCH", "/v1/enrichment-field-extractions/{uuid}", "admin", RATE_DEFAULT,
     route_patch_extraction,
     "Change a field extraction", "Enrichment", "Object", NULL, 0, NULL},
    {"DELETE", "/v1/enrichment-field-extractions/{uuid}", "admin", RATE_DEFAULT,
     route_delete_extraction,
     "Delete a field extraction", "Enrichment", NULL, "-", 204, NULL},

    {"GET", "/metrics", "alerts:read", RATE_DEFAULT, route_prometheus,
     "Prometheus metrics of the intake process that answers (text format 0.0.4)", "Metrics",
     NULL, "text/plain", 0, NULL},
    {"GET", "/openapi.json", NULL, RATE_NONE, route_openapi,
     "This document", "Documentation", NULL, "Object", 0, NULL},
    {"GET", "/docs", NULL, RATE_NONE, route_docs,
     "The API documentation page (works offline)", "Documentation", NULL, "text/html", 0, NULL},
    {"GET", "/docs/docs.js", NULL, RATE_NONE, route_docs_js,
     "Script of the documentation page", "Documentation", NULL, "text/javascript", 0, NULL},
    {"GET", "/docs/docs.css", NULL, RATE_NONE, route_docs_css,
     "Style sheet of the documentation page", "Documentation", NULL, "text/css", 0, NULL},
};

/* Public routes read their body without a key: webhook callbacks and the decision form are
 * small, so an unauthenticated client cannot make the intake buffer more than this. */
#define PUBLIC_BODY_MAX (1024 * 1024)

static void reqctx_free(struct reqctx *rc);

static void admit(struct reqctx *rc)
{
    http_request_admit(rc->req, rc->route->scope ? 0 : PUBLIC_BODY_MAX);
}

/* The server's admission gate: runs once the header section is complete, before a byte of
 * the body is read. Authentication (key, scope, rate limit) happens here, so a request without
 * valid credentials is answered without its body ever being received. */
static void gate(struct http_request *req, void *server_ctx)
{
    struct intake *in = server_ctx;
    struct reqctx *rc = xcalloc(1, sizeof *rc);
    rc->in = in;
    rc->req = req;
    rc->route = req->route_data;
    req->user = rc;
    rc->started_ns = uv_hrtime();
    client_ip_resolve(req, in->cfg.trusted_proxy_count, rc->client_ip, sizeof rc->client_ip);
    if (!rc->route->scope) {
        admit(rc);
        return;
    }
    auth_request(rc, admit);
}

/* The body is complete: the route runs with what the gate established. */
static void dispatch(struct http_request *req, void *server_ctx)
{
    (void)server_ctx;
    struct reqctx *rc = req->user;
    rc->route->fn(rc);
}

/* An admitted request that will not reach its handler (body too slow, too large, client gone). */
static void dropped(struct http_request *req, void *server_ctx)
{
    (void)server_ctx;
    reqctx_free(req->user);
}

const struct route_def *routes_table(size_t *n)
{
    *n = sizeof ROUTES / sizeof ROUTES[0];
    return ROUTES;
}

void routes_register(struct intake *in)
{
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++)
        http_router_add(in->router, ROUTES[i].method, ROUTES[i].pattern, dispatch,
                        (void *)&ROUTES[i]);
}

void routes_attach(struct intake *in)
{
    http_server_set_gate(in->http, gate, dropped);
}

/* ---- responses -------------------------------------------------------------------------- */

static void reqctx_free(struct reqctx *rc)
{
    auth_info_destroy(&rc->auth);
    free(rc->www_authenticate);
    free(rc);
}

static size_t rate_headers(struct reqctx *rc, struct http_header *h, char bufs[3][24])
{
    if (!rc->rl_set)
        return 0;
    /* constant names and decimal digits: vetted, so every answer skips checking them */
    h[0] = (struct http_header){"X-RateLimit-Limit", 17, bufs[0], fmt_ll(bufs[0], rc->rl_limit),
                                1};
    h[1] = (struct http_header){"X-RateLimit-Remaining", 21, bufs[1],
                                fmt_ll(bufs[1], rc->rl_remaining < 0 ? 0 : rc->rl_remaining), 1};
    h[2] = (struct http_header){"X-RateLimit-Reset", 17, bufs[2], fmt_ll(bufs[2], rc->rl_reset),
                                1};
    return 3;
}

void reply_json(struct reqctx *rc, int status, json_t *body)
{
    reply_json_headers(rc, status, body, NULL, 0);
}

void reply_json_headers(struct reqctx *rc, int status, json_t *body,
                        const struct http_header *extra, size_t nextra)
{
    struct http_header h[9];
    char bufs[3][24];
    size_t n = rate_headers(rc, h, bufs);
    if (status == 429 && rc->rl_set)
        h[n++] = (struct http_header){"Retry-After", 11, bufs[2], strlen(bufs[2]), 0};
    if (status == 401 && rc->www_authenticate)
        h[n++] = (struct http_header){"WWW-Authenticate", 16, rc->www_authenticate,
                                      strlen(rc->www_authenticate), 0};
    for (size_t i = 0; i < nextra && n < sizeof h / sizeof h[0]; i++)
        h[n++] = extra[i];
    prom_request(rc->in, rc, status);
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

void reply_data_text(struct reqctx *rc, int status, const char *data_json)
{
    static const char head[] = "{\"data\":", tail[] = ",\"meta\":{}}";
    size_t n = strlen(data_json);
    char small[512]; /* a 202 of ingest: no allocation for the envelope */
    if (sizeof head - 1 + n + sizeof tail <= sizeof small) {
        memcpy(small, head, sizeof head - 1);
        memcpy(small + sizeof head - 1, data_json, n);
        memcpy(small + sizeof head - 1 + n, tail, sizeof tail); /* with its NUL */
        reply_body(rc, status, "application/json", small, sizeof head - 1 + n + sizeof tail - 1);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"data\":");
    buf_puts(&b, data_json);
    buf_puts(&b, ",\"meta\":{}}");
    reply_body(rc, status, "application/json", b.data, b.len);
    buf_destroy(&b);
}

void reply_list_text(struct reqctx *rc, const char *items_json, long long total, int page,
                     int page_size)
{
    long long pages = page_size > 0 ? (total + page_size - 1) / page_size : 0;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"data\":");
    buf_puts(&b, items_json);
    buf_printf(&b, ",\"meta\":{\"total\":%lld,\"page\":%d,\"page_size\":%d,\"total_pages\":%lld}}",
               total, page, page_size, pages);
    reply_body(rc, 200, "application/json", b.data, b.len);
    buf_destroy(&b);
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
    prom_request(rc->in, rc, status);
    http_respond(rc->req, status, content_type, body, len, h, n);
    reqctx_free(rc);
}

void reply_stream_end(struct reqctx *rc)
{
    /* Not counted in the request latency histograms: a stream lasts as long as its client. */
    http_stream_end(rc->req);
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

int reply_if_no_row(struct reqctx *rc, PGresult *res, const char *err, const char *not_found)
{
    if (reply_if_pg_failed(rc, res, err))
        return -1;
    if (PQntuples(res) > 0)
        return 0;
    reply_error(rc, 404, "NOT_FOUND", not_found, NULL);
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
