/*
 * tests/unit/services/intake/mcp_jsonrpc.c - the MCP server's JSON-RPC framing: requests,
 * notifications and responses are told apart, and every refusal is an Invalid Request or a
 * Parse error with the id when the body had a valid one. params, when a message is accepted
 * with it, is an object whatever the kind (a response with "params":"" was once accepted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "services/intake/mcp.h"

/* Parses text; returns the code (0 when accepted) and frees everything. */
static int parse(const char *text, enum mcp_kind *kind, int *params_object)
{
    struct mcp_msg m;
    int code = 0;
    json_t *id = NULL;
    char err[160] = "";
    if (mcp_jsonrpc_parse(text, strlen(text), &m, &code, &id, err, sizeof err) != 0) {
        assert_true(err[0] != '\0');
        json_decref(id);
        return code;
    }
    *kind = m.kind;
    *params_object = m.params ? json_is_object(m.params) : -1;
    mcp_msg_free(&m);
    return 0;
}

static void test_kinds(void **state)
{
    (void)state;
    enum mcp_kind k;
    int po;
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", &k, &po), 0);
    assert_int_equal(k, MCP_MSG_REQUEST);
    assert_int_equal(po, -1);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{}}", &k, &po), 0);
    assert_int_equal(k, MCP_MSG_NOTIFICATION);
    assert_int_equal(po, 1);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{}}", &k, &po), 0);
    assert_int_equal(k, MCP_MSG_RESPONSE);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":1,\"params\":{}}", &k, &po),
                     0);
    assert_int_equal(po, 1);
}

static void test_refused(void **state)
{
    (void)state;
    enum mcp_kind k;
    int po;
    assert_int_equal(parse("{", &k, &po), JSONRPC_PARSE_ERROR);
    assert_int_equal(parse("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", &k, &po),
                     JSONRPC_INVALID_REQUEST);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":[1]}", &k, &po),
                     JSONRPC_INVALID_REQUEST);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":1}", &k, &po),
                     JSONRPC_INVALID_REQUEST);
}

/* Found by the mcp_jsonrpc fuzz target: a response's params was handed out as a string. */
static void test_response_params_not_object(void **state)
{
    (void)state;
    enum mcp_kind k;
    int po;
    assert_int_equal(
        parse("{\"jsonrpc\":\"2.0\",\"id\":\"l\",\"params\":\"\",\"result\":{}}", &k, &po),
        JSONRPC_INVALID_REQUEST);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{},\"params\":[]}", &k, &po),
                     JSONRPC_INVALID_REQUEST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_response_params_not_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
