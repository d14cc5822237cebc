/*
 * tests/unit/services/intake/source_splunk.c - the Splunk source: validation, the normalisation
 * table (title chain, "low" default severity, float epoch _time, _raw description), pass 1 with
 * the src/dest fallbacks and the fingerprint, on the shared fixture and hostile payloads.
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
    return source_expect("splunk", &source_splunk);
}

static void norm(const char *text, struct normalized_alert *a)
{
    source_normalize_ok(src(), parse(text), a);
}

static char *indicators_text(const json_t *p)
{
    return source_indicators_text(src(), p);
}

static void test_fixture(void **state)
{
    (void)state;
    json_t *p = test_data_json("fixtures", "03_splunk_anomalous_data_transfer.json");
    assert_true(source_validate_json(src(), p));
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), 0);
    assert_string_equal(a.title, "Anomalous Outbound Data Transfer");
    assert_string_equal(a.severity, "High");
    assert_int_equal(a.occurred_at_us, 1709305200000000LL);
    assert_int_equal(a.occurred_at_was_now, 0);
    assert_string_equal(a.description, "Data Exfiltration - Anomalous Volume");
    assert_int_equal(json_array_size(a.tags), 0);
    assert_string_equal(a.source_rule_ref, "Anomalous Outbound Data Transfer");
    char *s = indicators_text(p);
    assert_string_equal(s, "[{\"type\":\"ip\",\"value\":\"10.0.8.55\"},"
                           "{\"type\":\"ip\",\"value\":\"45.33.32.156\"},"
                           "{\"type\":\"account\",\"value\":\"svc_backup\"},"
                           "{\"type\":\"url\",\"value\":"
                           "\"https://suspicious-cloud-sync.com/api/v2/upload\"},"
                           "{\"type\":\"domain\",\"value\":\"suspicious-cloud-sync.com\"}]");
    free(s);
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    /* python3 -c 'import hashlib; print(hashlib.md5("Anomalous Outbound Data Transfer\0splunk\0
     *   account:svc_backup|domain:suspicious-cloud-sync.com|ip:10.0.8.55|ip:45.33.32.156|
     *   url:https://suspicious-cloud-sync.com/api/v2/upload".encode()).hexdigest())' */
    char fp[33];
    indicators_fingerprint(a.title, "splunk", &set, fp);
    assert_string_equal(fp, "67c95dfc3cef630401171b97fc3de3a9");
    indicator_set_destroy(&set);
    normalized_alert_destroy(&a);
    json_decref(p);
}

static void test_validate(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int want;
    } cases[] = {
        {"{\"result\":{},\"sid\":\"1\"}", 1},
        {"{\"result\":{},\"search_name\":\"s\"}", 1},
        {"{\"result\":{},\"sid\":\"\",\"search_name\":0}", 0},
        {"{\"result\":{\"sid\":\"1\",\"search_name\":\"s\"}}", 0},
        {"{\"result\":[],\"sid\":\"1\"}", 0},
        {"{\"result\":null,\"sid\":\"1\"}", 0},
        {"{\"result\":\"x\",\"sid\":\"1\"}", 0},
        {"{\"sid\":\"1\"}", 0},
        {"[{\"result\":{},\"sid\":\"1\"}]", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *p = parse(cases[i].json);
        if (source_validate_json(src(), p) != cases[i].want)
            fail_msg("validate(%s) != %d", cases[i].json, cases[i].want);
        json_decref(p);
    }
}

static void test_title_severity(void **state)
{
    (void)state;
    static const struct {
        const char *json, *title, *sev;
    } cases[] = {
        {"{\"result\":{\"rule_name\":\"R\",\"signature\":\"S\"},\"search_name\":\"N\"}", "R",
         "Low"},
        {"{\"result\":{\"rule_name\":\"\",\"signature\":\"S\"},\"search_name\":\"N\"}", "S", "Low"},
        {"{\"result\":{\"search_name\":\"inner\"},\"search_name\":\"N\"}", "N", "Low"},
        {"{\"result\":{}}", "Untitled Splunk Alert", "Low"},
        {"{}", "Untitled Splunk Alert", "Low"},
        {"{\"result\":{\"urgency\":\"CRITICAL\"}}", "Untitled Splunk Alert", "Critical"},
        {"{\"result\":{\"urgency\":\"\",\"severity\":\"Medium\"}}", "Untitled Splunk Alert",
         "Medium"},
        {"{\"result\":{\"severity\":\"info\"}}", "Untitled Splunk Alert", "Informational"},
        {"{\"result\":{\"severity\":\"INFORMATIONAL\"}}", "Untitled Splunk Alert", "Informational"},
        {"{\"result\":{\"urgency\":\"urgent\"}}", "Untitled Splunk Alert", "Pending"},
        {"{\"result\":{\"urgency\":\"pending\"}}", "Untitled Splunk Alert", "Pending"},
        {"{\"result\":{\"urgency\":5}}", "Untitled Splunk Alert", "Pending"},
        {"{\"result\":{\"urgency\":0,\"severity\":null}}", "Untitled Splunk Alert", "Low"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct normalized_alert a;
        norm(cases[i].json, &a);
        if (strcmp(a.title, cases[i].title) || strcmp(a.severity, cases[i].sev))
            fail_msg("%s: %s / %s", cases[i].json, a.title, a.severity);
        normalized_alert_destroy(&a);
    }
    static const char *const refused[] = {
        "{\"result\":{\"rule_name\":7}}",
        "{\"result\":{\"signature\":[\"s\"]}}",
        "{\"result\":{},\"search_name\":{\"a\":1}}",
        "{\"result\":[]}",
        "{\"result\":\"r\"}",
        "{\"result\":null}",
        "{\"result\":{\"rule_name\":\"T\",\"signature\":5}}",
        "[]",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json_t *p = parse(refused[i]);
        struct normalized_alert a;
        if (source_normalize_json(src(), p, &a) != -1)
            fail_msg("accepted %s", refused[i]);
        json_decref(p);
    }
}

static void expect_time(const char *t, int64_t want)
{
    char *text = xasprintf("{\"result\":{\"_time\":%s}}", t);
    struct normalized_alert a;
    int64_t before = now_wall_us();
    norm(text, &a);
    if (want == INT64_MIN) {
        assert_int_equal(a.occurred_at_was_now, 1);
        assert_true(a.occurred_at_us >= before && a.occurred_at_us <= now_wall_us());
    } else if (a.occurred_at_was_now || a.occurred_at_us != want) {
        fail_msg("_time %s -> %lld", t, (long long)a.occurred_at_us);
    }
    normalized_alert_destroy(&a);
    free(text);
}

static void test_time(void **state)
{
    (void)state;
    expect_time("\"1709305200\"", 1709305200000000LL);
    expect_time("\"1709305200.123456\"", 1709305200123456LL);
    expect_time("1709305200", 1709305200000000LL);
    expect_time("1709305200.5", 1709305200500000LL);
    expect_time("true", 1000000LL); /* float(True) */
    expect_time("\" 1e9 \"", 1000000000000000LL);
    expect_time("\"2024-03-01T15:00:00Z\"", INT64_MIN); /* ISO strings fall back to now */
    expect_time("\"\"", INT64_MIN);
    expect_time("0", INT64_MIN); /* falsy */
    expect_time("\"0\"", 0);
    expect_time("\"nan\"", INT64_MIN);
    expect_time("1e300", INT64_MIN);
    expect_time("[1709305200]", INT64_MIN);
    expect_time("null", INT64_MIN);
}

static void test_description(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"result\":{\"rule_name\":\"T\",\"signature\":\"S\"}}", "S"},
        {"{\"result\":{\"rule_name\":\"T\",\"search_name\":\"N\"}}", "N"},
        {"{\"result\":{\"signature\":\"S\",\"_raw\":\"RAW\"}}", "RAW"}, /* title == signature */
        {"{\"result\":{\"signature\":\"S\"}}", "S"},
        {"{\"result\":{\"signature\":\"S\",\"_raw\":\"\"}}", "S"},
        {"{\"result\":{\"rule_name\":\"N\",\"search_name\":\"N\",\"_raw\":\"RAW\"}}", "RAW"},
        {"{\"result\":{\"rule_name\":\"T\"},\"search_name\":\"T\"}", NULL},
        {"{\"result\":{\"signature\":\"S\",\"_raw\":{\"x\":1}}}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *p = parse(cases[i].json);
        struct normalized_alert a;
        int rv = source_normalize_json(src(), p, &a);
        if (i == 7) {
            assert_int_equal(rv, -1); /* the _raw that would be used is not a string */
        } else {
            assert_int_equal(rv, 0);
            if (cases[i].want ? !a.description || strcmp(a.description, cases[i].want)
                              : a.description != NULL)
                fail_msg("%s: %s", cases[i].json, a.description ? a.description : "-");
            normalized_alert_destroy(&a);
        }
        json_decref(p);
    }
}

static void test_extract(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"result\":{\"src\":\"1.1.1.1\",\"dest\":\"2.2.2.2\"}}",
         "[{\"type\":\"ip\",\"value\":\"1.1.1.1\"},{\"type\":\"ip\",\"value\":\"2.2.2.2\"}]"},
        {"{\"result\":{\"src_ip\":\"3.3.3.3\",\"src\":\"1.1.1.1\",\"dest_ip\":\"\",\"dest\":\"2.2."
         "2.2\"}}",
         "[{\"type\":\"ip\",\"value\":\"3.3.3.3\"},{\"type\":\"ip\",\"value\":\"2.2.2.2\"}]"},
        {"{\"result\":{\"sha256\":\"a\",\"md5\":\"b\",\"sha1\":\"c\",\"user\":\" u \"}}",
         "[{\"type\":\"account\",\"value\":\"u\"},{\"type\":\"hash_sha256\",\"value\":\"a\"},"
         "{\"type\":\"hash_md5\",\"value\":\"b\"},{\"type\":\"hash_sha1\",\"value\":\"c\"}]"},
        {"{\"result\":{\"src_ip\":[\"1.1.1.1\"],\"user\":5,\"url\":null,\"domain\":{}}}", "[]"},
        {"{\"src_ip\":\"1.1.1.1\",\"result\":{}}", "[]"},
        {"{\"result\":[{\"src_ip\":\"1.1.1.1\"}]}", "[]"},
        {"\"result\"", "[]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *p = parse(cases[i].json);
        char *s = indicators_text(p);
        if (strcmp(s, cases[i].want))
            fail_msg("%s -> %s", cases[i].json, s);
        free(s);
        json_decref(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture),        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_title_severity), cmocka_unit_test(test_time),
        cmocka_unit_test(test_description),    cmocka_unit_test(test_extract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
