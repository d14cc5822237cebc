/*
 * tests/unit/libcommon/providers/extract.c - provider field extractions (paths, coercions, the
 * per-type precedence), pass-3 indicator extraction from raw payloads, and the enrichable
 * pre-check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "libcommon/providers/extract.h"

static char *dump(json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void expect_coerce(const char *in, const char *type, const char *want)
{
    json_t *v = json_loads(in, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    json_t *c = extract_coerce(v, type);
    if (!want) {
        assert_null(c);
    } else {
        assert_non_null(c);
        char *s = dump(c);
        assert_string_equal(s, want);
        free(s);
    }
    json_decref(c);
    json_decref(v);
}

static void test_coerce(void **state)
{
    (void)state;
    expect_coerce("42", "int", "42");
    expect_coerce("\"42\"", "int", "42");
    expect_coerce("\" 42 \"", "int", "42");
    expect_coerce("\"3.5\"", "int", NULL);
    expect_coerce("3.9", "int", "3");
    expect_coerce("true", "int", "1");
    expect_coerce("\"abc\"", "int", NULL);
    expect_coerce("1e300", "int", NULL);
    expect_coerce("\"99999999999999999999999\"", "int", NULL);
    expect_coerce("[1]", "int", NULL);
    expect_coerce("\"2.5\"", "float", "2.5");
    expect_coerce("\"nan\"", "float", NULL);
    expect_coerce("\"TRUE\"", "bool", "true");
    expect_coerce("\"yes\"", "bool", "true");
    expect_coerce("\"1\"", "bool", "true");
    expect_coerce("\"no\"", "bool", "false");
    expect_coerce("\"false\"", "bool", "false");
    expect_coerce("0", "bool", "false");
    expect_coerce("[]", "bool", "false");
    expect_coerce("{\"a\":1}", "bool", "true");
    expect_coerce("7", "string", "\"7\"");
    expect_coerce("false", "string", "\"False\"");
    expect_coerce("1.5", "string", "\"1.5\"");
    expect_coerce("{\"a\":[1]}", "string", "\"{\\\"a\\\":[1]}\"");
    expect_coerce("[1,2]", "list", "[1,2]");
    expect_coerce("{\"k\":1}", "dict", "{\"k\":1}");
    expect_coerce("\"x\"", "number", "\"x\""); /* unknown type passes through */
    expect_coerce("null", "string", NULL);
}

static void test_fields(void **state)
{
    (void)state;
    struct field_rule rules[] = {
        {"ip", "data.attributes.last_analysis_stats.malicious", "malicious_count", "int"},
        {"ip", "data.attributes.asn", "asn", "int"},
        {"ip", "data.attributes.tags", "tags", "list"},
        {"domain", "data.attributes.registrar", "registrar", "string"},
        {"ip", "data.attributes.missing", "missing", "string"},
        {"domain", "data.attributes.as_owner", "owner", "string"},
        {"ip", "data.attributes.as_owner", "owner", "string"},
        {"ip", "data.attributes.tags.1", "second_tag", "string"},
    };
    json_t *raw = json_loads("{\"data\":{\"attributes\":{\"last_analysis_stats\":{\"malicious\":"
                             "\"4\"},\"asn\":15169,\"tags\":[\"a\",\"b\"],\"as_owner\":\"G\","
                             "\"registrar\":null}}}",
                             0, NULL);
    json_t *out = extract_fields(raw, rules, sizeof rules / sizeof rules[0], "ip");
    char *s = dump(out);
    assert_string_equal(s, "{\"asn\":15169,\"malicious_count\":4,\"owner\":\"G\","
                           "\"second_tag\":\"b\",\"tags\":[\"a\",\"b\"]}");
    free(s);
    json_decref(out);
    /* hostile raw shapes: nothing extracted, nothing crashes */
    const char *shapes[] = {
        "[]", "\"str\"", "null", "{\"data\":[]}", "{\"data\":{\"attributes\":7}}", "123"};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        json_t *r = json_loads(shapes[i], JSON_DECODE_ANY, NULL);
        json_t *o = extract_fields(r, rules, sizeof rules / sizeof rules[0], "ip");
        assert_int_equal(json_object_size(o), 0);
        json_decref(o);
        json_decref(r);
    }
    json_decref(raw);
}

static void test_pass3(void **state)
{
    (void)state;
    struct raw_mapping m[] = {
        {NULL, "event.src.address", "ip"},     {"splunk", "result.user", "account"},
        {"elastic", "result.user", "account"}, {NULL, "event.list", "domain"},
        {NULL, "event.blank", "domain"},       {NULL, "event.num", "ip"},
        {NULL, "event.items.0", "domain"},     {NULL, "event.dup", "ip"},
        {NULL, "event.huge", "url"},
    };
    json_t *raw =
        json_loads("{\"event\":{\"src\":{\"address\":\"  203.0.113.9 \"},\"list\":[\"a\"],"
                   "\"blank\":\"   \",\"num\":5,\"items\":{\"0\":\"k.example.org\"},"
                   "\"dup\":\"8.8.8.8\"},\"result\":{\"user\":\"alice\"}}",
                   0, NULL);
    char *big = malloc(INDICATOR_VALUE_MAX + 10);
    memset(big, 'a', INDICATOR_VALUE_MAX + 9);
    big[INDICATOR_VALUE_MAX + 9] = 0;
    json_object_set_new(json_object_get(raw, "event"), "huge", json_string(big));
    free(big);
    json_t *out = json_loads("[{\"type\":\"ip\",\"value\":\"8.8.8.8\",\"new\":false}]", 0, NULL);
    size_t added = extract_pass3(raw, "splunk", m, sizeof m / sizeof m[0], out);
    assert_int_equal(added, 3);
    char *s = dump(out);
    assert_string_equal(s, "[{\"new\":false,\"type\":\"ip\",\"value\":\"8.8.8.8\"},"
                           "{\"new\":true,\"type\":\"ip\",\"value\":\"203.0.113.9\"},"
                           "{\"new\":true,\"type\":\"account\",\"value\":\"alice\"},"
                           "{\"new\":true,\"type\":\"domain\",\"value\":\"k.example.org\"}]");
    free(s);
    /* again: everything is already there */
    assert_int_equal(extract_pass3(raw, "splunk", m, sizeof m / sizeof m[0], out), 0);
    /* not a splunk alert: the splunk-only mapping does not apply, the elastic one does */
    json_t *out2 = json_array();
    assert_int_equal(extract_pass3(raw, "elastic", m, sizeof m / sizeof m[0], out2), 4);
    json_decref(out2);
    /* raw payload that is not an object */
    json_t *weird = json_loads("[1,2]", 0, NULL);
    json_t *out3 = json_array();
    assert_int_equal(extract_pass3(weird, "x", m, sizeof m / sizeof m[0], out3), 0);
    json_decref(out3);
    json_decref(weird);
    json_decref(out);
    json_decref(raw);
}

static void test_enrichable(void **state)
{
    (void)state;
    const char *r;
    assert_true(is_enrichable("ip", "8.8.8.8", &r));
    assert_true(is_enrichable("ip", "2001:4860:4860::8888", &r));
    assert_false(is_enrichable("ip", "10.1.2.3", &r));
    assert_false(is_enrichable("ip", "127.0.0.1", &r));
    assert_false(is_enrichable("ip", "169.254.169.254", &r));
    assert_false(is_enrichable("ip", "192.168.0.1", &r));
    assert_false(is_enrichable("ip", "100.64.0.1", &r));
    assert_false(is_enrichable("ip", "::1", &r));
    assert_false(is_enrichable("ip", "fe80::1", &r));
    assert_false(is_enrichable("ip", "::ffff:10.0.0.1", &r));
    assert_false(is_enrichable("ip", "not-an-ip", &r));
    assert_non_null(r);
    assert_true(is_enrichable("domain", "evil-c2.com", &r));
    assert_true(is_enrichable("domain", "Evil.COM.", &r));
    assert_false(is_enrichable("domain", "localhost", &r));
    assert_false(is_enrichable("domain", "db.corp", &r));
    assert_false(is_enrichable("domain", "printer.LOCAL.", &r));
    assert_false(is_enrichable("domain", "x.example", &r));
    assert_false(is_enrichable("domain", "", &r));
    assert_true(is_enrichable("url", "https://user@evil.com:8443/x?y#z", &r));
    assert_false(is_enrichable("url", "http://10.0.0.5/admin", &r));
    assert_false(is_enrichable("url", "http://[::1]:80/", &r));
    assert_false(is_enrichable("url", "http:///path", &r));
    assert_true(is_enrichable("hash_sha256", "anything", &r));
    assert_true(is_enrichable("account", "alice", &r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coerce),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_pass3),
        cmocka_unit_test(test_enrichable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
