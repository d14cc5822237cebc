/*
 * tests/unit/proto/workflow.c - WORKFLOW_REQUEST and WORKFLOW_REPLY: round trips, every
 * truncation refused, requests that carry the wrong fields for their op refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/proto.h"
#include "proto/workflow.h"

#include <stdlib.h>
#include <string.h>

static int buf_write(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

static void test_validate_round_trip(void **state)
{
    (void)state;
    struct wf_request in = {.id = 7, .op = WF_OP_VALIDATE, .code = "async def run(ctx):\n\tpass\n"};
    struct wf_request out;
    struct buf b;
    buf_init(&b);
    wf_encode_request(&in, &b);
    assert_int_equal(wf_decode_request(b.data, b.len, &out), 0);
    assert_true(out.id == 7 && out.op == WF_OP_VALIDATE);
    assert_string_equal(out.code, in.code);
    assert_null(out.workflow_uuid);
    wf_request_destroy(&out);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(wf_decode_request(b.data, n, &out), -1);
    /* a request is not a reply */
    struct wf_reply r;
    assert_int_equal(wf_decode_reply(b.data, b.len, &r), -1);
    buf_destroy(&b);
}

static void test_test_round_trip(void **state)
{
    (void)state;
    struct wf_request in = {.id = UINT64_MAX,
                            .op = WF_OP_TEST,
                            .workflow_uuid = "0b8e7a52-1f3c-4d2e-9a7b-6c5d4e3f2a10",
                            .indicator_type = "ip",
                            .indicator_value = "192.0.2.1",
                            .key_prefix = "cai_abcd",
                            .request_id = NULL,
                            .client_ip = "127.0.0.1"};
    struct wf_request out;
    struct buf b;
    buf_init(&b);
    wf_encode_request(&in, &b);
    assert_int_equal(wf_decode_request(b.data, b.len, &out), 0);
    assert_true(out.id == UINT64_MAX && out.op == WF_OP_TEST);
    assert_string_equal(out.workflow_uuid, in.workflow_uuid);
    assert_string_equal(out.indicator_value, "192.0.2.1");
    assert_string_equal(out.key_prefix, "cai_abcd");
    assert_null(out.request_id);
    assert_null(out.code);
    wf_request_destroy(&out);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(wf_decode_request(b.data, n, &out), -1);
    buf_destroy(&b);
    /* a workflow id that is not uuid-shaped, an empty indicator */
    const char *bad_uuids[] = {"0b8e7a52-1f3c-4d2e-9a7b-6c5d4e3f2a1",
                               "0b8e7a52'1f3c-4d2e-9a7b-6c5d4e3f2a10",
                               "0b8e7a52-1f3c-4d2e-9a7b-6c5d4e3f2a1g"};
    for (size_t i = 0; i < 3; i++) {
        struct wf_request bad = in;
        bad.workflow_uuid = (char *)bad_uuids[i];
        buf_init(&b);
        wf_encode_request(&bad, &b);
        assert_int_equal(wf_decode_request(b.data, b.len, &out), -1);
        buf_destroy(&b);
    }
    struct wf_request empty = in;
    empty.indicator_value = "";
    buf_init(&b);
    wf_encode_request(&empty, &b);
    assert_int_equal(wf_decode_request(b.data, b.len, &out), -1);
    buf_destroy(&b);
}

/* A validate request that also names a workflow, and an unknown op, are refused. */
static void test_mixed_fields(void **state)
{
    (void)state;
    struct buf b;
    msgpack_packer pk;
    struct wf_request out;
    buf_init(&b);
    msgpack_packer_init(&pk, &b, buf_write);
    proto_pack_begin(&pk, PROTO_WORKFLOW_REQUEST, 4);
    proto_pack_key(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    proto_pack_i64(&pk, "op", WF_OP_VALIDATE);
    proto_pack_str(&pk, "code", "x");
    proto_pack_str(&pk, "workflow", "0b8e7a52-1f3c-4d2e-9a7b-6c5d4e3f2a10");
    assert_int_equal(wf_decode_request(b.data, b.len, &out), -1);
    buf_destroy(&b);
    buf_init(&b);
    msgpack_packer_init(&pk, &b, buf_write);
    proto_pack_begin(&pk, PROTO_WORKFLOW_REQUEST, 3);
    proto_pack_key(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    proto_pack_i64(&pk, "op", 3);
    proto_pack_str(&pk, "code", "x");
    assert_int_equal(wf_decode_request(b.data, b.len, &out), -1);
    buf_destroy(&b);
}

static void test_reply(void **state)
{
    (void)state;
    struct wf_reply in = {
        .id = 3, .outcome = WF_OUT_RUNNER_BUSY, .body_json = "{\"message\":\"busy\"}"};
    struct wf_reply out;
    struct buf b;
    buf_init(&b);
    wf_encode_reply(&in, &b);
    assert_int_equal(wf_decode_reply(b.data, b.len, &out), 0);
    assert_true(out.id == 3 && out.outcome == WF_OUT_RUNNER_BUSY);
    assert_string_equal(out.body_json, in.body_json);
    wf_reply_destroy(&out);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(wf_decode_reply(b.data, n, &out), -1);
    buf_destroy(&b);
    in.outcome = WF_OUT_MAX + 1; /* an outcome the intake does not know */
    buf_init(&b);
    wf_encode_reply(&in, &b);
    assert_int_equal(wf_decode_reply(b.data, b.len, &out), -1);
    buf_destroy(&b);
}

/* What the intake accepts and the runner runs must cross the link: code with CRLF line ends, a
 * form feed or DEL, a test indicator with a tab or CR, a result whose JSON holds DEL (jansson
 * escapes only the characters below 0x20). A request or reply refused here is never answered:
 * the intake waits out its deadline and answers 503. */
static void test_control_characters_cross(void **state)
{
    (void)state;
    struct wf_request v = {.id = 1, .op = WF_OP_VALIDATE, .code = "a = 1\r\n\fb = '\x7f'\r\n"};
    struct wf_request t = {.id = 2,
                           .op = WF_OP_TEST,
                           .workflow_uuid = "0b8e7a52-1f3c-4d2e-9a7b-6c5d4e3f2a10",
                           .indicator_type = "domain",
                           .indicator_value = "evil\texample\r\x1b.com"};
    struct wf_reply r = {.id = 3, .outcome = WF_OUT_OK, .body_json = "{\"data\":\"\x7f\"}"};
    struct wf_request out;
    struct wf_reply rout;
    struct buf b;
    buf_init(&b);
    wf_encode_request(&v, &b);
    assert_int_equal(wf_decode_request(b.data, b.len, &out), 0);
    assert_string_equal(out.code, v.code);
    wf_request_destroy(&out);
    buf_reset(&b);
    wf_encode_request(&t, &b);
    assert_int_equal(wf_decode_request(b.data, b.len, &out), 0);
    assert_string_equal(out.indicator_value, t.indicator_value);
    wf_request_destroy(&out);
    buf_reset(&b);
    wf_encode_reply(&r, &b);
    assert_int_equal(wf_decode_reply(b.data, b.len, &rout), 0);
    assert_string_equal(rout.body_json, r.body_json);
    wf_reply_destroy(&rout);
    buf_destroy(&b);
}

/* A NUL inside the code is still refused (C strings end there). */
static void test_nul_refused(void **state)
{
    (void)state;
    struct buf b;
    msgpack_packer pk;
    struct wf_request out;
    buf_init(&b);
    msgpack_packer_init(&pk, &b, buf_write);
    proto_pack_begin(&pk, PROTO_WORKFLOW_REQUEST, 3);
    proto_pack_key(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    proto_pack_i64(&pk, "op", WF_OP_VALIDATE);
    proto_pack_key(&pk, "code");
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "a\0b", 3);
    assert_int_equal(wf_decode_request(b.data, b.len, &out), -1);
    buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_round_trip),
        cmocka_unit_test(test_test_round_trip),
        cmocka_unit_test(test_mixed_fields),
        cmocka_unit_test(test_reply),
        cmocka_unit_test(test_control_characters_cross),
        cmocka_unit_test(test_nul_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
