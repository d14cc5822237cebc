/*
 * tests/unit/services/intake/source_generic.c - the generic source: validation, str() titles
 * and tags, the severity words, fromisoformat with "Z", the explicit indicator list and the
 * top-level indicator fields, and a fingerprint over a Unicode title.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/intake/source.h"
#include "util.h"
#include "tests/unit/testdata.h"
#include "tests/unit/services/intake/source_test.h"

static json_t *parse(const char *text)
{
    return test_json(text, 0);
}

static const struct alert_source *src(void)
{
    return source_expect("generic", &source_generic);
}

static void norm(const char *text, struct normalized_alert *a)
{
    source_normalize_ok(src(), parse(text), a);
}

static void test_validate(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int want;
    } cases[] = {
        {"{\"title\":\"t\"}", 1}, {"{\"title\":1}", 1},     {"{\"title\":[0]}", 1},
        {"{\"title\":\"\"}", 0},  {"{\"title\":0}", 0},     {"{\"title\":null}", 0},
        {"{\"title\":{}}", 0},    {"{\"Title\":\"t\"}", 0}, {"{}", 0},
        {"[\"title\"]", 0},       {"\"title\"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *p = parse(cases[i].json);
        if (source_validate_json(src(), p) != cases[i].want)
            fail_msg("validate(%s) != %d", cases[i].json, cases[i].want);
        json_decref(p);
    }
}

static void test_normalize(void **state)
{
    (void)state;
    struct normalized_alert a;
    norm("{\"title\":\"Suspicious login\",\"severity\":\"HIGH\",\"occurred_at\":"
         "\"2026-03-01T14:23:11Z\",\"description\":\"ignored\",\"tags\":[\"a\",1,null,\"\",true,"
         "{\"k\":[1.0]}],\"rule_id\":\"R-1\",\"rule_name\":\"name\"}",
         &a);
    assert_string_equal(a.title, "Suspicious login");
    assert_string_equal(a.severity, "High");
    assert_int_equal(a.occurred_at_us, 1772374991000000LL);
    assert_int_equal(a.occurred_at_was_now, 0);
    assert_null(a.description); /* always none */
    char *tags = json_dumps(a.tags, JSON_COMPACT);
    assert_string_equal(tags, "[\"a\",\"1\",\"None\",\"\",\"True\",\"{'k': [1.0]}\"]");
    free(tags);
    assert_string_equal(a.source_rule_ref, "R-1");
    normalized_alert_destroy(&a);

    norm("{\"title\":null,\"rule_id\":\"\",\"rule_name\":\"name\",\"tags\":\"a,b\"}", &a);
    assert_string_equal(a.title, "None"); /* str(None) */
    assert_string_equal(a.severity, "Pending");
    assert_int_equal(json_array_size(a.tags), 0);
    assert_string_equal(a.source_rule_ref, "name");
    assert_int_equal(a.occurred_at_was_now, 1);
    normalized_alert_destroy(&a);

    norm("{}", &a);
    assert_string_equal(a.title, "Untitled Alert");
    assert_null(a.source_rule_ref);
    normalized_alert_destroy(&a);

    norm("{\"title\":3.0,\"rule_id\":12}", &a);
    assert_string_equal(a.title, "3.0");
    assert_null(a.source_rule_ref);
    normalized_alert_destroy(&a);

    json_t *p = parse("[1]");
    assert_int_equal(source_normalize_json(src(), p, &a), -1);
    json_decref(p);
}

static void test_severity(void **state)
{
    (void)state;
    static const struct {
        const char *sev, *want;
    } cases[] = {
        {"\"critical\"", "Critical"},
        {"\"Critical\"", "Critical"},
        {"\"HIGH\"", "High"},
        {"\"medium\"", "Medium"},
        {"\"low\"", "Low"},
        {"\"informational\"", "Informational"},
        {"\"INFO\"", "Informational"},
        {"\"pending\"", "Pending"},
        {"\"severe\"", "Pending"},
        {"\" high\"", "Pending"},
        {"\"\"", "Pending"},
        {"null", "Pending"},
        {"1", "Pending"},
        {"true", "Pending"},
        {"[\"high\"]", "Pending"},
        {"{\"high\":1}", "Pending"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = xasprintf("{\"title\":\"t\",\"severity\":%s}", cases[i].sev);
        struct normalized_alert a;
        norm(text, &a);
        if (strcmp(a.severity, cases[i].want))
            fail_msg("severity %s -> %s", cases[i].sev, a.severity);
        normalized_alert_destroy(&a);
        free(text);
    }
}

static void test_time(void **state)
{
    (void)state;
    static const struct {
        const char *t;
        int64_t want; /* -1: now */
    } cases[] = {
        {"\"2026-03-01T14:23:11Z\"", 1772374991000000LL},
        {"\"2026-03-01T14:23:11.5+00:00\"", 1772374991500000LL},
        {"\"2026-03-01T16:23:11+02:00\"", 1772374991000000LL},
        {"\"2026-03-01 14:23:11\"", 1772374991000000LL},
        {"\"2026-03-01\"", 1772323200000000LL},
        {"\"2026-03-01Z14:23:11\"", 1772374991000000LL}, /* Z as the separator */
        {"\"2026-03-01T14:23:11 UTC\"", -1},
        {"\"03/01/2026\"", -1},
        {"1772374991", -1},
        {"null", -1},
        {"\"\"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = xasprintf("{\"title\":\"t\",\"occurred_at\":%s}", cases[i].t);
        struct normalized_alert a;
        int64_t before = now_wall_us();
        norm(text, &a);
        if (cases[i].want == -1) {
            assert_int_equal(a.occurred_at_was_now, 1);
            assert_true(a.occurred_at_us >= before);
        } else if (a.occurred_at_was_now || a.occurred_at_us != cases[i].want) {
            fail_msg("occurred_at %s -> %lld", cases[i].t, (long long)a.occurred_at_us);
        }
        normalized_alert_destroy(&a);
        free(text);
    }
}

static void test_extract(void **state)
{
    (void)state;
    json_t *p =
        parse("{\"title\":\"t\",\"indicators\":[{\"type\":\"IP\",\"value\":\"1.1.1.1\"},"
              "{\"type\":\"Hash_SHA256\",\"value\":\"AB\"},{\"type\":\"registry\",\"value\":\"k\"},"
              "{\"type\":\"ip\",\"value\":\"\"},{\"type\":\"ip\",\"value\":5},{\"type\":7,"
              "\"value\":\"x\"},"
              "{\"value\":\"x\"},\"ip:1.2.3.4\",null,[{\"type\":\"ip\",\"value\":\"9.9.9.9\"}],"
              "{\"type\":\"url\",\"value\":\" https://a.example \"}],"
              "\"src_ip\":\"1.1.1.1\",\"dest_ip\":\"2.2.2.2\",\"source_ip\":\"3.3.3.3\","
              "\"destination_ip\":\"4.4.4.4\",\"ip\":\"5.5.5.5\",\"domain\":\"d.example\","
              "\"hostname\":\"h.example\",\"url\":\"https://a.example\",\"user\":\"u\","
              "\"username\":\"u2\",\"email\":\"e@x.example\",\"md5\":\"m\",\"sha1\":\"s\","
              "\"sha256\":\"AB\",\"hash\":\"CD\",\"dst_ip\":\"6.6.6.6\"}");
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    json_t *j = indicators_to_json(&set);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_string_equal(
        s, "[{\"type\":\"ip\",\"value\":\"1.1.1.1\"},{\"type\":\"hash_sha256\",\"value\":\"AB\"},"
           "{\"type\":\"url\",\"value\":\"https://a.example\"},"
           "{\"type\":\"ip\",\"value\":\"2.2.2.2\"},{\"type\":\"ip\",\"value\":\"3.3.3.3\"},"
           "{\"type\":\"ip\",\"value\":\"4.4.4.4\"},{\"type\":\"ip\",\"value\":\"5.5.5.5\"},"
           "{\"type\":\"domain\",\"value\":\"d.example\"},"
           "{\"type\":\"domain\",\"value\":\"h.example\"},"
           "{\"type\":\"account\",\"value\":\"u\"},{\"type\":\"account\",\"value\":\"u2\"},"
           "{\"type\":\"email\",\"value\":\"e@x.example\"},"
           "{\"type\":\"hash_md5\",\"value\":\"m\"},{\"type\":\"hash_sha1\",\"value\":\"s\"},"
           "{\"type\":\"hash_sha256\",\"value\":\"CD\"}]");
    free(s);
    json_decref(j);
    indicator_set_destroy(&set);
    json_decref(p);

    p = parse("{\"indicators\":{\"type\":\"ip\",\"value\":\"1.1.1.1\"},\"ip\":[\"1.1.1.1\"]}");
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    assert_int_equal(set.n, 0);
    indicator_set_destroy(&set);
    json_decref(p);
}

/* The indicators extract() finds in text, read as sent (escaped keys stay escaped). */
static char *extract_text(const char *text)
{
    static const struct json_limits none = {0, 0, 0};
    struct jtok_doc d;
    enum json_parse_status st;
    char err[160];
    assert_int_equal(jtok_parse_limited(&d, text, strlen(text), &none, NULL, &st, err, sizeof err), 0);
    struct indicator_set set;
    indicator_set_init(&set);
    src()->extract(&d, 0, &set);
    json_t *j = indicators_to_json(&set);
    char *out = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    indicator_set_destroy(&set);
    jtok_free(&d);
    return out;
}

/* The top-level fields are found in one walk over a small object's keys and by lookups in a
 * large one's key table: either way in the order of the field list, whatever the keys' order,
 * with escaped keys decoded, and keys that only resemble a field name (its length and first
 * byte, a prefix, another case) ignored. */
static void test_extract_fields_walk(void **state)
{
    (void)state;
    static const char fields[] =
        "\"ha\\u0073h\":\"CD\",\"sha256\":\"AB\",\"sha1\":\"s\",\"md5\":\"m\",\"email\":\"e@x.example\","
        "\"username\":\"u2\",\"user\":\"u\",\"url\":\"https://a.example\",\"hostname\":\"h.example\","
        "\"domain\":\"d.example\",\"ip\":\"5.5.5.5\",\"destination_ip\":\"4.4.4.4\","
        "\"source_ip\":\"3.3.3.3\",\"dest_ip\":\"2.2.2.2\",\"src_ip\":\"1.1.1.1\","
        "\"src_ix\":\"7.7.7.7\",\"Src_ip\":\"8.8.8.8\",\"s\":\"x\",\"\":\"x\",\"urls\":\"x\"";
    static const char want[] =
        "[{\"type\":\"ip\",\"value\":\"1.1.1.1\"},{\"type\":\"ip\",\"value\":\"2.2.2.2\"},"
        "{\"type\":\"ip\",\"value\":\"3.3.3.3\"},{\"type\":\"ip\",\"value\":\"4.4.4.4\"},"
        "{\"type\":\"ip\",\"value\":\"5.5.5.5\"},{\"type\":\"domain\",\"value\":\"d.example\"},"
        "{\"type\":\"domain\",\"value\":\"h.example\"},"
        "{\"type\":\"url\",\"value\":\"https://a.example\"},"
        "{\"type\":\"account\",\"value\":\"u\"},{\"type\":\"account\",\"value\":\"u2\"},"
        "{\"type\":\"email\",\"value\":\"e@x.example\"},"
        "{\"type\":\"hash_md5\",\"value\":\"m\"},{\"type\":\"hash_sha1\",\"value\":\"s\"},"
        "{\"type\":\"hash_sha256\",\"value\":\"AB\"},{\"type\":\"hash_sha256\",\"value\":\"CD\"}]";
    /* 21 members (walked), then the same with 30 more (past the walk's bound: looked up) */
    for (int filler = 0; filler <= 30; filler += 30) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "{\"title\":\"t\",");
        for (int i = 0; i < filler; i++)
            buf_printf(&b, "\"f%d\":%d,", i, i);
        buf_puts(&b, fields);
        buf_append(&b, "}", 2);
        char *got = extract_text(b.data);
        if (strcmp(got, want))
            fail_msg("%d filler members: %s", filler, got);
        free(got);
        buf_destroy(&b);
    }
}

static void test_unicode_fingerprint(void **state)
{
    (void)state;
    json_t *p = parse("{\"title\":\"\\u00dcn\\u00efc\\u00f6d\\u00e9 \\ud83d\\udea8 alert\","
                      "\"user\":\"  bob\\u3000\",\"username\":\"bob\"}");
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), 0);
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    assert_int_equal(set.n, 1); /* "  bob\u3000".strip() == "bob" */
    /* python3 -c 'import hashlib; print(hashlib.md5("Ünïcödé 🚨 alert\0generic\0account:bob"
     *   .encode()).hexdigest())' */
    char fp[33];
    indicators_fingerprint(a.title, "generic", &set, fp);
    assert_string_equal(fp, "5fae5c96c77f52a97eb4c97e0352299b");
    indicator_set_destroy(&set);
    normalized_alert_destroy(&a);
    json_decref(p);
}

static void test_huge_tags(void **state)
{
    (void)state;
    json_t *tags = json_array();
    for (int i = 0; i < 10000; i++)
        json_array_append_new(tags, json_integer(i));
    json_t *p = json_pack("{s:s,s:o}", "title", "t", "tags", tags);
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), 0);
    assert_int_equal(json_array_size(a.tags), 10000);
    assert_string_equal(json_string_value(json_array_get(a.tags, 9999)), "9999");
    normalized_alert_destroy(&a);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),  cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_severity),  cmocka_unit_test(test_time),
        cmocka_unit_test(test_extract),   cmocka_unit_test(test_extract_fields_walk),
        cmocka_unit_test(test_unicode_fingerprint),
        cmocka_unit_test(test_huge_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
