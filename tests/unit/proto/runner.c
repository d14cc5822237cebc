/*
 * runner.c - tests of proto/runner.c: every message round-trips, and hostile bytes (truncation
 * at every length, bit flips, wrong types, NULs, oversized claims, trailing bytes, other
 * versions) are refused without crashing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "proto/runner.h"

static void sample_run(struct runner_run_req *r)
{
    static struct runner_secret secrets[2] = {{"API_TOKEN", "t0k"}, {"OTHER", ""}};
    memset(r, 0, sizeof *r);
    r->run_uuid = "9b2f7e0a-0000-4000-8000-000000000001";
    r->code = "async def run(ctx):\n    return 1\n";
    r->timeout_seconds = 30;
    r->max_memory_mb = 128;
    r->trigger_context_json = "{\"trigger_source\":\"human\"}";
    r->indicator_json = "{\"type\":\"ip\",\"value\":\"1.2.3.4\"}";
    r->alert_json = NULL;
    r->nsecrets = 2;
    r->secrets = secrets;
}

static void test_run_roundtrip(void **state)
{
    (void)state;
    struct runner_run_req r;
    struct runner_msg m;
    struct buf b;
    char err[128];
    sample_run(&r);
    buf_init(&b);
    runner_encode_run(42, &r, &b);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), 0);
    assert_int_equal(m.type, RUNNER_MSG_RUN);
    assert_int_equal(m.id, 42);
    assert_string_equal(m.run.code, r.code);
    assert_string_equal(m.run.run_uuid, r.run_uuid);
    assert_int_equal(m.run.timeout_seconds, 30);
    assert_int_equal(m.run.max_memory_mb, 128);
    assert_null(m.run.alert_json);
    assert_string_equal(m.run.indicator_json, r.indicator_json);
    assert_int_equal(m.run.nsecrets, 2);
    assert_string_equal(m.run.secrets[0].name, "API_TOKEN");
    assert_string_equal(m.run.secrets[0].value, "t0k");
    assert_string_equal(m.run.secrets[1].value, "");
    struct runner_run_req copy;
    runner_run_req_copy(&copy, &m.run);
    assert_string_equal(copy.secrets[0].value, "t0k");
    runner_run_req_destroy(&copy);
    runner_msg_destroy(&m);
    buf_destroy(&b);
}

static void test_validate_and_validation(void **state)
{
    (void)state;
    struct runner_msg m;
    struct buf b;
    char err[128];
    buf_init(&b);
    runner_encode_validate(7, "import os\n", &b);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), 0);
    assert_int_equal(m.type, RUNNER_MSG_VALIDATE);
    assert_string_equal(m.code, "import os\n");
    runner_msg_destroy(&m);
    buf_reset(&b);
    struct runner_error errs[2] = {{1, "Line 1: import of 'os' is not allowed"}, {3, "x"}};
    struct runner_validation v = {0, 2, errs};
    runner_encode_validation(8, &v, &b);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), 0);
    assert_int_equal(m.type, RUNNER_MSG_VALIDATION);
    assert_false(m.validation.ok);
    assert_int_equal(m.validation.nerrors, 2);
    assert_int_equal(m.validation.errors[1].line, 3);
    assert_string_equal(m.validation.errors[0].message, errs[0].message);
    runner_msg_destroy(&m);
    buf_destroy(&b);
}

static void test_result_roundtrip(void **state)
{
    (void)state;
    struct runner_result r = {RUNNER_TIMED_OUT,
                              0,
                              "Workflow execution timed out after 2 seconds",
                              "{}",
                              "{\"level\":\"info\"}\n",
                              2012,
                              "ast,seccomp"};
    struct runner_msg m;
    struct buf b;
    char err[128];
    buf_init(&b);
    runner_encode_result(9, &r, &b);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), 0);
    assert_int_equal(m.result.status, RUNNER_TIMED_OUT);
    assert_int_equal(m.result.duration_ms, 2012);
    assert_string_equal(m.result.message, r.message);
    assert_string_equal(m.result.sandbox, "ast,seccomp");
    runner_msg_destroy(&m);
    buf_destroy(&b);
}

static void test_truncation_and_flips(void **state)
{
    (void)state;
    struct runner_run_req r;
    struct runner_msg m;
    struct buf b;
    char err[128];
    sample_run(&r);
    buf_init(&b);
    runner_encode_run(1, &r, &b);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(runner_decode(b.data, n, &m, err, sizeof err), -1);
    char *copy = malloc(b.len);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, b.data, b.len);
            copy[i] ^= (char)(1 << bit);
            if (runner_decode(copy, b.len, &m, err, sizeof err) == 0)
                runner_msg_destroy(&m);
        }
    }
    free(copy);
    buf_append(&b, "\xc0", 1);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "envelope")); /* trailing bytes: refused by the envelope check */
    buf_destroy(&b);
}

static int write_buf(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

static void kstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* A hand-made message: {"v":v, "t":type, "id":1, "code": code(len)} */
static int decode_handmade(int v, unsigned type, const char *code, size_t codelen, char *err)
{
    struct buf b;
    msgpack_packer pk;
    struct runner_msg m;
    buf_init(&b);
    msgpack_packer_init(&pk, &b, write_buf);
    msgpack_pack_map(&pk, 4);
    kstr(&pk, "v");
    msgpack_pack_int(&pk, v);
    kstr(&pk, "t");
    msgpack_pack_unsigned_int(&pk, type);
    kstr(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    kstr(&pk, "code");
    msgpack_pack_str(&pk, codelen);
    msgpack_pack_str_body(&pk, code, codelen);
    int rc = runner_decode(b.data, b.len, &m, err, 128);
    if (rc == 0)
        runner_msg_destroy(&m);
    buf_destroy(&b);
    return rc;
}

static void test_hostile_fields(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(decode_handmade(1, PROTO_RUNNER_VALIDATE, "ok", 2, err), 0);
    assert_int_equal(decode_handmade(2, PROTO_RUNNER_VALIDATE, "ok", 2, err), -1);
    assert_non_null(strstr(err, "version"));
    /* another service's message type, and a type no one knows */
    assert_int_equal(decode_handmade(1, PROTO_AUDIT_EVENT, "ok", 2, err), -1);
    assert_int_equal(decode_handmade(1, 200, "ok", 2, err), -1);
    assert_int_equal(decode_handmade(1, PROTO_RUNNER_VALIDATE, "a\0b", 3, err), -1);
    assert_non_null(strstr(err, "NUL"));
    char *big = malloc(RUNNER_MAX_CODE_BYTES + 1);
    memset(big, 'x', RUNNER_MAX_CODE_BYTES + 1);
    assert_int_equal(decode_handmade(1, PROTO_RUNNER_VALIDATE, big, RUNNER_MAX_CODE_BYTES + 1, err),
                     -1);
    free(big);
    /* a run without its mandatory fields, an array claiming 2^32-1 entries, a non-map */
    assert_int_equal(decode_handmade(1, PROTO_RUNNER_RUN, "x", 1, err), -1);
    struct runner_msg m;
    const char arr32[] = "\xdd\xff\xff\xff\xff";
    assert_int_equal(runner_decode(arr32, sizeof arr32 - 1, &m, err, sizeof err), -1);
    assert_int_equal(runner_decode("\x01", 1, &m, err, sizeof err), -1);
    assert_int_equal(runner_decode("", 0, &m, err, sizeof err), -1);
    /* 1000 nested arrays */
    char deep[1000];
    memset(deep, '\x91', sizeof deep);
    assert_int_equal(runner_decode(deep, sizeof deep, &m, err, sizeof err), -1);
}

/* The optional integrations field: round-trips and is copied when present, absent stays NULL,
 * and an oversized, NUL-carrying or non-string value refuses the whole message. */
static void test_integrations(void **state)
{
    (void)state;
    struct runner_run_req r;
    struct runner_msg m;
    struct buf b;
    char err[128];
    sample_run(&r);
    buf_init(&b);
    runner_encode_run(5, &r, &b);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), 0);
    assert_null(m.run.integrations_json);
    runner_msg_destroy(&m);

    r.integrations_json = "{\"okta\":{\"domain\":\"x.okta.com\",\"api_token\":\"s\"}}";
    buf_reset(&b);
    runner_encode_run(6, &r, &b);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), 0);
    assert_string_equal(m.run.integrations_json, r.integrations_json);
    assert_int_equal(m.run.nsecrets, 2);
    struct runner_run_req copy;
    runner_run_req_copy(&copy, &m.run);
    assert_string_equal(copy.integrations_json, r.integrations_json);
    runner_run_req_destroy(&copy);
    assert_null(copy.integrations_json);
    runner_msg_destroy(&m);

    char *big = malloc(RUNNER_MAX_INTEGRATIONS_BYTES + 2);
    memset(big, 'x', RUNNER_MAX_INTEGRATIONS_BYTES + 1);
    big[RUNNER_MAX_INTEGRATIONS_BYTES + 1] = 0;
    r.integrations_json = big;
    buf_reset(&b);
    runner_encode_run(7, &r, &b);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "integrations"));
    big[RUNNER_MAX_INTEGRATIONS_BYTES] = 0; /* exactly the limit: accepted */
    buf_reset(&b);
    runner_encode_run(8, &r, &b);
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), 0);
    runner_msg_destroy(&m);
    free(big);

    /* a NUL inside, then an integer in place of the string (hand-made by patching bytes) */
    r.integrations_json = "{\"a\":\"ZZ\"}";
    buf_reset(&b);
    runner_encode_run(9, &r, &b);
    char *p = memmem(b.data, b.len, "ZZ", 2);
    assert_non_null(p);
    p[0] = 0;
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "NUL"));
    buf_reset(&b);
    r.integrations_json = "7";
    runner_encode_run(10, &r, &b);
    assert_int_equal((unsigned char)b.data[b.len - 2], 0xa1); /* fixstr of length 1 */
    b.data[b.len - 2] = 0x07;                                 /* positive fixint 7 */
    b.len--;
    assert_int_equal(runner_decode(b.data, b.len, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a string"));
    buf_destroy(&b);
}

static void test_status_names(void **state)
{
    (void)state;
    enum runner_status s;
    assert_int_equal(runner_status_parse("timed_out", &s), 0);
    assert_int_equal(s, RUNNER_TIMED_OUT);
    assert_string_equal(runner_status_name(RUNNER_SUCCESS), "success");
    assert_int_equal(runner_status_parse("queued", &s), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_roundtrip),    cmocka_unit_test(test_validate_and_validation),
        cmocka_unit_test(test_result_roundtrip), cmocka_unit_test(test_truncation_and_flips),
        cmocka_unit_test(test_hostile_fields),   cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_integrations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
