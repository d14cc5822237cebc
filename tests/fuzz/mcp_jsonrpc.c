/*
 * mcp_jsonrpc.c - libFuzzer target for the MCP server's JSON-RPC framing (mcp_jsonrpc_parse).
 *
 * Feeds arbitrary bytes (copied to a buffer of exactly their size, so any over-read is an ASan
 * report) as one HTTP body. Besides crashes and leaks, the harness aborts when an answer
 * disagrees with the definition: an accepted message is a JSON object with jsonrpc "2.0"; a
 * request has a string or integer id and a non-empty method; a notification has a method and no
 * id; a response has an id and exactly one of result/error and no method; params, when present,
 * is an object; a refusal carries -32700 or -32600 and an id only when the body had a valid one.
 * Every answer is also turned into the error/result envelope the transport would send, which
 * must serialise. Seeds: corpus/mcp_jsonrpc/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "services/intake/mcp.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("fuzz", 0, LOG_ERROR);
    return 0;
}

static void check_envelope(json_t *env)
{
    char *s = json_dumps(env, JSON_COMPACT);
    if (!s)
        abort();
    free(s);
    json_decref(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (size)
        memcpy(buf, data, size);
    struct mcp_msg m;
    int code = 0;
    json_t *id = NULL;
    char err[160];
    if (mcp_jsonrpc_parse(buf, size, &m, &code, &id, err, sizeof err) == 0) {
        json_t *ver = json_object_get(m.root, "jsonrpc");
        if (!json_is_object(m.root) || !json_is_string(ver) ||
            strcmp(json_string_value(ver), "2.0") != 0)
            abort();
        if (m.params && !json_is_object(m.params))
            abort();
        switch (m.kind) {
        case MCP_MSG_REQUEST:
            if (!m.method || !*m.method || !(json_is_string(m.id) || json_is_integer(m.id)))
                abort();
            break;
        case MCP_MSG_NOTIFICATION:
            if (!m.method || !*m.method || m.id)
                abort();
            break;
        case MCP_MSG_RESPONSE:
            if (m.method || !m.id ||
                !!json_object_get(m.root, "result") == !!json_object_get(m.root, "error"))
                abort();
            break;
        }
        check_envelope(mcp_jsonrpc_result(m.id, json_object()));
        mcp_msg_free(&m);
    } else {
        if (code != JSONRPC_PARSE_ERROR && code != JSONRPC_INVALID_REQUEST)
            abort();
        if (id && !json_is_string(id) && !json_is_integer(id))
            abort();
        if (!err[0])
            abort();
        check_envelope(mcp_jsonrpc_error(id, code, err));
        json_decref(id);
    }
    free(buf);
    return 0;
}
