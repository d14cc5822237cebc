/*
 * mcp.h - the MCP (Model Context Protocol) server of the intake: AI agents read alerts and act
 * through resources and tools, with the same API keys, scopes and rate limits as REST.
 *
 *   mcp_jsonrpc.c    JSON-RPC 2.0 framing: one message parsed and classified (no I/O; fuzzed)
 *   mcp_transport.c  Streamable HTTP (POST/DELETE /mcp) and the legacy HTTP+SSE transport
 *                    (GET /sse + POST /messages/?session_id=), sessions in PostgreSQL,
 *                    Origin/Host checks, authentication, RFC 9728 metadata
 *   mcp_server.c     the methods: initialize, ping, tools, resources, prompts/list
 *   mcp_tools.c      the 8 tools
 *   mcp_resources.c  the 12 resources
 */
#ifndef CALSETA_INTAKE_MCP_H
#define CALSETA_INTAKE_MCP_H

#include "intake.h"

#include <jansson.h>
#include <stddef.h>

/* ---- mcp_jsonrpc.c ------------------------------------------------------------------------ */

#define JSONRPC_PARSE_ERROR (-32700)
#define JSONRPC_INVALID_REQUEST (-32600)
#define JSONRPC_METHOD_NOT_FOUND (-32601)
#define JSONRPC_INVALID_PARAMS (-32602)
#define JSONRPC_INTERNAL_ERROR (-32603)
#define MCP_RESOURCE_NOT_FOUND (-32002)
#define MCP_FORBIDDEN (-32003)

enum mcp_kind { MCP_MSG_REQUEST, MCP_MSG_NOTIFICATION, MCP_MSG_RESPONSE };

struct mcp_msg {
    enum mcp_kind kind;
    json_t *root;       /* owned */
    json_t *id;         /* borrowed from root; NULL for notifications */
    const char *method; /* borrowed; NULL for responses */
    json_t *params;     /* borrowed; NULL when absent (an object otherwise) */
};

/* Parses exactly one JSON-RPC 2.0 message (batches are refused). 0 on success (free with
 * mcp_msg_free); -1 with *code (PARSE_ERROR or INVALID_REQUEST), the message id when one could
 * be read (*id, owned, may be NULL) and a reason. */
int mcp_jsonrpc_parse(const char *data, size_t len, struct mcp_msg *out, int *code,
                      json_t **id, char *err, size_t errlen);
void mcp_msg_free(struct mcp_msg *m);
/* {"jsonrpc":"2.0","id":…,"error":{code,message}}; id borrowed (NULL → null). */
json_t *mcp_jsonrpc_error(json_t *id, int code, const char *message);
/* {"jsonrpc":"2.0","id":…,"result":…}; id borrowed, result stolen. */
json_t *mcp_jsonrpc_result(json_t *id, json_t *result);
/* The protocol revisions served, newest first; 1 if v is one of them. */
extern const char *const MCP_VERSIONS[];
int mcp_version_supported(const char *v);

/* ---- mcp_server.c ------------------------------------------------------------------------- */

/* One JSON-RPC request (or notification) being served. The HTTP request that carried it (rc)
 * stays open until done() is called, exactly once. */
struct mcp_call {
    struct reqctx *rc;
    json_t *id;              /* owned; NULL for a notification */
    char protocol_version[16];
    char session_id[33];
    /* Called with the response to send (stolen; NULL for a notification). */
    void (*done)(struct mcp_call *c, json_t *response);
    void *transport;
    int legacy; /* arrived over the HTTP+SSE transport (also speaks 2024-11-05) */
};

/* Serves one parsed message (not initialize on Streamable HTTP: the transport answers it). */
void mcp_dispatch(struct mcp_call *c, const struct mcp_msg *m);
/* The result of initialize for the client's requested protocol revision. */
json_t *mcp_initialize_result(struct intake *in, const char *requested, char version_out[16]);

void mcp_reply_result(struct mcp_call *c, json_t *result);
void mcp_reply_error(struct mcp_call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Tool results: the object as JSON text content (isError false); errors as text, isError true. */
void mcp_tool_ok(struct mcp_call *c, json_t *obj);
void mcp_tool_fail(struct mcp_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Resource result: one text item with the object's JSON. */
void mcp_resource_ok(struct mcp_call *c, const char *uri, json_t *obj);
/* 0 if the verified key has scope (admin passes); otherwise audits the refusal, replies (a tool
 * error for tools, a JSON-RPC error for resources) and returns -1. */
int mcp_require_scope(struct mcp_call *c, const char *scope, int tool);
/* JSON text as the original wrote it (", " and ": " separators, non-ASCII escaped). */
char *mcp_json_text(json_t *obj);
/* A failed statement as a tool or resource error; 0 when the query succeeded. */
int mcp_pg_failed(struct mcp_call *c, PGresult *res, const char *err, int tool);

/* ---- mcp_tools.c / mcp_resources.c -------------------------------------------------------- */

json_t *mcp_tools_list(void);
void mcp_tools_call(struct mcp_call *c, const char *name, json_t *args);
json_t *mcp_resources_list(void);
json_t *mcp_resource_templates_list(void);
void mcp_resources_read(struct mcp_call *c, const char *uri);

/* calseta://enrichments/{type}/{value} (mcp_tools.c: the same code as enrich_indicator). */
void mcp_enrich_resource(struct mcp_call *c, const char *type, const char *value);

/* An alert `a` as the original's MCP summary. */
#define MCP_ALERT_SUMMARY_JSON                                                                     \
    "json_build_object('uuid', a.uuid, 'title', a.title, 'severity', a.severity, 'status', "       \
    "a.status, 'enrichment_status', a.enrichment_status, 'source_name', a.source_name, "           \
    "'occurred_at', calseta_ts(a.occurred_at), 'is_enriched', a.is_enriched, 'tags', a.tags, "     \
    "'created_at', calseta_ts(a.created_at))"

/* The on-demand enrichment used by enrich_indicator and calseta://enrichments/{type}/{value}:
 * cb gets {provider: result} (owned by the callee) or NULL with an error text. */
typedef void (*mcp_enrich_cb)(void *arg, json_t *results, const char *err);
void mcp_enrich_lookup(struct reqctx *rc, const char *type, const char *value, mcp_enrich_cb cb,
                       void *arg);

/* ---- mcp_transport.c ---------------------------------------------------------------------- */

void mcp_init(struct intake *in);
/* Drain: ends every SSE stream so in-flight requests can finish. */
void mcp_drain(struct intake *in);
void mcp_free(struct intake *in);
/* An API key changed (revoked, expired, deleted): re-check the keys of open SSE streams now. */
void mcp_keys_changed(struct intake *in);

void route_mcp_post(struct reqctx *rc);
void route_mcp_delete(struct reqctx *rc);
void route_mcp_sse(struct reqctx *rc);
void route_mcp_messages(struct reqctx *rc);
void route_mcp_resource_metadata(struct reqctx *rc);

#endif
