/*
 * mcp_jsonrpc.c - JSON-RPC 2.0 framing for the MCP server: one message per HTTP body, parsed
 * and classified as request, notification or response. Pure (no I/O), so it is fuzzed alone
 * (tests/fuzz/mcp_jsonrpc.c).
 *
 * Refused: bodies that are not one JSON object (batches included: the protocol revisions served
 * send one message per POST), jsonrpc other than "2.0", ids that are not strings or integers,
 * methods that are not non-empty strings, params that are not objects, and objects that are
 * neither a request, a notification nor a response.
 */
#include "mcp.h"

#include <string.h>

const char *const MCP_VERSIONS[] = {"2025-11-25", "2025-06-18", "2025-03-26", NULL};

int mcp_version_supported(const char *v)
{
    if (!v)
        return 0;
    for (size_t i = 0; MCP_VERSIONS[i]; i++)
        if (!strcmp(v, MCP_VERSIONS[i]))
            return 1;
    return 0;
}

void mcp_msg_free(struct mcp_msg *m)
{
    json_decref(m->root);
    memset(m, 0, sizeof *m);
}

json_t *mcp_jsonrpc_error(json_t *id, int code, const char *message)
{
    json_t *e = json_pack("{s:i,s:s}", "code", code, "message", message);
    if (!e) /* message not UTF-8 */
        e = json_pack("{s:i,s:s}", "code", code, "message", "Invalid request text.");
    return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error", e);
}

json_t *mcp_jsonrpc_result(json_t *id, json_t *result)
{
    return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result",
                     result ? result : json_object());
}

static int id_valid(json_t *id)
{
    return json_is_string(id) || json_is_integer(id);
}

static int fail(int *code, int c, char *err, size_t errlen, const char *msg)
{
    *code = c;
    snprintf(err, errlen, "%s", msg);
    return -1;
}

int mcp_jsonrpc_parse(const char *data, size_t len, struct mcp_msg *out, int *code,
                      json_t **id_out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    *id_out = NULL;
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(code, JSONRPC_PARSE_ERROR, err, errlen, "Parse error: invalid JSON");
    if (json_is_array(root)) {
        json_decref(root);
        return fail(code, JSONRPC_INVALID_REQUEST, err, errlen,
                    "Invalid Request: batches are not supported; send one message per request");
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(code, JSONRPC_INVALID_REQUEST, err, errlen,
                    "Invalid Request: a JSON-RPC message must be an object");
    }
    json_t *id = json_object_get(root, "id");
    if (id && id_valid(id))
        *id_out = json_incref(id);
    const char *why = NULL;
    json_t *ver = json_object_get(root, "jsonrpc");
    json_t *method = json_object_get(root, "method");
    json_t *params = json_object_get(root, "params");
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0)
        why = "Invalid Request: jsonrpc must be \"2.0\"";
    else if (id && !id_valid(id))
        why = "Invalid Request: id must be a string or an integer";
    else if (method) {
        if (!json_is_string(method) || json_string_length(method) == 0 ||
            strlen(json_string_value(method)) != json_string_length(method))
            why = "Invalid Request: method must be a non-empty string";
        else if (params && !json_is_object(params))
            why = "Invalid Request: params must be an object";
        else if (json_object_get(root, "result") || json_object_get(root, "error"))
            why = "Invalid Request: a request cannot carry result or error";
    } else {
        int has_result = json_object_get(root, "result") != NULL;
        int has_error = json_object_get(root, "error") != NULL;
        if (!id || has_result == has_error)
            why = "Invalid Request: neither a request, a notification nor a response";
        else if (has_error && !json_is_object(json_object_get(root, "error")))
            why = "Invalid Request: error must be an object";
        else if (params && !json_is_object(params))
            why = "Invalid Request: params must be an object"; /* out->params is one or NULL */
    }
    if (why) {
        json_decref(root);
        return fail(code, JSONRPC_INVALID_REQUEST, err, errlen, why);
    }
    json_decref(*id_out); /* a success carries the id in out */
    *id_out = NULL;
    out->root = root;
    out->id = id;
    out->params = params;
    if (!method)
        out->kind = MCP_MSG_RESPONSE;
    else {
        out->method = json_string_value(method);
        out->kind = id ? MCP_MSG_REQUEST : MCP_MSG_NOTIFICATION;
    }
    return 0;
}
