/*
 * tests/unit/services/intake/source_elastic.c - the Elastic source: flat-then-nested field
 * lookup, the normalisation table (str() titles, lowercased severity, description rules, tags),
 * pass-1 ECS fields and the fingerprint, on the shared fixtures and hostile payloads.
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

static json_t *fixture(const char *name)
{
    return test_data_json("fixtures", name);
}

static json_t *parse(const char *text)
{
    return test_json(text, 0);
}

static const struct alert_source *src(void)
{
    return source_expect("elastic", &source_elastic);
}

static void norm(const char *text, struct normalized_alert *a)
{
    source_normalize_ok(src(), parse(text), a);
}

static void expect_indicators(const char *text, const char *want)
{
    source_expect_indicators(src(), parse(text), want);
}

static void test_fixture_malware(void **state)
{
    (void)state;
    json_t *p = fixture("02_elastic_malware_hash.json");
    assert_true(source_validate_json(src(), p));
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), 0);
    assert_string_equal(a.title, "Known Malware Hash Detected on Endpoint");
    assert_string_equal(a.severity, "Critical");
    assert_int_equal(a.occurred_at_us, 1772383338000000LL);
    assert_true(!strncmp(a.description, "Detects execution of a file whose SHA-256", 41));
    char *tags = json_dumps(a.tags, JSON_COMPACT);
    assert_string_equal(tags, "[\"Malware\",\"Emotet\",\"Endpoint\",\"T1204.002\",\"Execution\"]");
    free(tags);
    assert_string_equal(a.source_rule_ref, "d8e5f6a7-b9c0-4d1e-a2f3-456789abcdef");

    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    json_t *j = indicators_to_json(&set);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_string_equal(
        s, "[{\"type\":\"ip\",\"value\":\"198.51.100.42\"},{\"type\":\"ip\",\"value\":\"10.0.15."
           "201\"},"
           "{\"type\":\"ip\",\"value\":\"fe80::1a2b:3c4d:5e6f:7890\"},"
           "{\"type\":\"hash_sha256\",\"value\":"
           "\"a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2\"},"
           "{\"type\":\"hash_sha1\",\"value\":\"da39a3ee5e6b4b0d3255bfef95601890afd80709\"},"
           "{\"type\":\"hash_md5\",\"value\":\"d41d8cd98f00b204e9800998ecf8427e\"},"
           "{\"type\":\"email\",\"value\":\"admin@acmeinc.com\"},"
           "{\"type\":\"account\",\"value\":\"admin\"}]");
    free(s);
    json_decref(j);
    /* python3 -c 'import hashlib; print(hashlib.md5("\0".join(["Known Malware Hash Detected
     *   on Endpoint", "elastic", "|".join(sorted-by-(type,value) "type:value")]).encode())
     *   .hexdigest())' over the eight indicators above */
    char fp[33];
    indicators_fingerprint(a.title, "elastic", &set, fp);
    assert_string_equal(fp, "175d6f4cdb089ad48ea20c0c10ed48d3");
    indicator_set_destroy(&set);
    normalized_alert_destroy(&a);
    json_decref(p);
}

static void test_fixture_powershell(void **state)
{
    (void)state;
    json_t *p = fixture("05_elastic_suspicious_powershell.json");
    assert_true(source_validate_json(src(), p));
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), 0);
    assert_string_equal(a.severity, "High");
    assert_int_equal(a.occurred_at_us, 1772403277000000LL);
    assert_int_equal(json_array_size(a.tags), 7);
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    assert_int_equal(set.n, 6); /* source.ip and host.ip are both 10.0.1.10; domains repeat */
    /* Same recipe over account:SYSTEM|domain:c2-relay.darkops.net|hash_sha256:de96...|
     * ip:10.0.1.10|ip:198.51.100.99|url:https://c2-relay.darkops.net/stager.ps1 */
    char fp[33];
    indicators_fingerprint(a.title, "elastic", &set, fp);
    assert_string_equal(fp, "5f03188b36e69b0ad7c1b8d8404199bf");
    indicator_set_destroy(&set);
    normalized_alert_destroy(&a);
    json_decref(p);
}

static void test_validate_and_lookup(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int want;
    } cases[] = {
        {"{\"kibana.alert.rule.name\":\"n\"}", 1},
        {"{\"kibana.alert.rule.uuid\":\"u\"}", 1},
        {"{\"kibana\":{\"alert\":{\"rule\":{\"name\":\"n\"}}}}", 1},
        {"{\"kibana.alert.rule.name\":null,\"kibana\":{\"alert\":{\"rule\":{\"uuid\":\"u\"}}}}", 1},
        {"{\"kibana.alert.rule.name\":\"\",\"kibana\":{\"alert\":{\"rule\":{\"name\":\"n\"}}}}", 0},
        {"{\"kibana.alert\":{\"rule.name\":\"n\"}}", 0}, /* no mixed flat/nested */
        {"{\"kibana\":{\"alert\":[{\"rule\":{\"name\":\"n\"}}]}}", 0},
        {"{\"kibana\":{\"alert\":{\"rule\":\"name\"}}}", 0},
        {"{\"kibana.alert.rule.name\":0,\"kibana.alert.rule.uuid\":[]}", 0},
        {"{\"kibana.alert.rule.name\":1}", 1},
        {"{}", 0},
        {"[]", 0},
        {"null", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *p = parse(cases[i].json);
        if (source_validate_json(src(), p) != cases[i].want)
            fail_msg("validate(%s) != %d", cases[i].json, cases[i].want);
        json_decref(p);
    }
}

static void test_title(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"kibana.alert.rule.name\":\"N\",\"kibana.alert.reason\":\"R\"}", "N"},
        {"{\"kibana.alert.rule.name\":\"\",\"kibana.alert.reason\":\"R\"}", "R"},
        {"{\"kibana\":{\"alert\":{\"reason\":\"nested R\"}}}", "nested R"},
        {"{}", "Untitled Elastic Alert"},
        {"{\"kibana.alert.rule.name\":0,\"kibana.alert.reason\":false}", "Untitled Elastic Alert"},
        {"{\"kibana.alert.rule.name\":42}", "42"},
        {"{\"kibana.alert.rule.name\":-1.5e-7}", "-1.5e-07"},
        {"{\"kibana.alert.rule.name\":1e16}", "1e+16"},
        {"{\"kibana.alert.rule.name\":123.0}", "123.0"},
        {"{\"kibana.alert.rule.name\":0.1}", "0.1"},
        {"{\"kibana.alert.rule.name\":true}", "True"},
        {"{\"kibana.alert.rule.name\":[1,\"a\",null,false]}", "[1, 'a', None, False]"},
        {"{\"kibana.alert.rule.name\":{\"k\":\"it's\",\"q\":\"\\\"\\n\"}}",
         "{'k': \"it's\", 'q': '\"\\n'}"},
        {"{\"kibana.alert.rule.name\":\"\\u65e5\\u672c \\ud83d\\ude00\"}",
         "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct normalized_alert a;
        norm(cases[i].json, &a);
        if (strcmp(a.title, cases[i].want))
            fail_msg("%s: title [%s], want [%s]", cases[i].json, a.title, cases[i].want);
        normalized_alert_destroy(&a);
    }
}

static void test_severity(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"kibana.alert.severity\":\"CRITICAL\"}", "Critical"},
        {"{\"kibana.alert.severity\":\"High\"}", "High"},
        {"{\"kibana.alert.severity\":\"medium\"}", "Medium"},
        {"{\"kibana.alert.severity\":\"lOw\"}", "Low"},
        {"{\"kibana.alert.severity\":\"Informational\"}", "Informational"},
        {"{\"kibana.alert.severity\":\"info\"}", "Pending"},
        {"{\"kibana.alert.severity\":\"none\"}", "Pending"},
        {"{\"kibana.alert.severity\":\"\",\"kibana.alert.rule.severity\":\"low\"}", "Low"},
        {"{\"kibana\":{\"alert\":{\"rule\":{\"severity\":\"high\"}}}}", "High"},
        {"{\"kibana.alert.severity\":\"critical \"}", "Pending"},
        {"{\"kibana.alert.severity\":4}", "Pending"},
        {"{\"kibana.alert.severity\":[\"high\"]}", "Pending"},
        {"{}", "Pending"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct normalized_alert a;
        norm(cases[i].json, &a);
        if (strcmp(a.severity, cases[i].want))
            fail_msg("%s: severity %s, want %s", cases[i].json, a.severity, cases[i].want);
        normalized_alert_destroy(&a);
    }
}

static void test_description(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"kibana.alert.rule.name\":\"T\",\"kibana.alert.rule.description\":\"D\","
         "\"kibana.alert.reason\":\"R\"}",
         "D"},
        {"{\"kibana.alert.rule.name\":\"T\",\"kibana.alert.reason\":\"R\"}", "R"},
        /* description equal to the title: the reason instead */
        {"{\"kibana.alert.rule.name\":\"T\",\"kibana.alert.rule.description\":\"T\","
         "\"kibana.alert.reason\":\"R\"}",
         "R"},
        {"{\"kibana.alert.rule.name\":\"T\",\"kibana.alert.rule.description\":\"T\"}", NULL},
        /* title came from the reason, which is also the description: stays */
        {"{\"kibana.alert.reason\":\"R\"}", "R"},
        {"{\"kibana.alert.rule.name\":\"T\"}", NULL},
        {"{\"kibana.alert.rule.name\":\"T\",\"kibana.alert.rule.description\":\"\"}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct normalized_alert a;
        norm(cases[i].json, &a);
        if (cases[i].want ? !a.description || strcmp(a.description, cases[i].want)
                          : a.description != NULL)
            fail_msg("%s: description %s", cases[i].json, a.description ? a.description : "-");
        normalized_alert_destroy(&a);
    }
    static const char *const refused[] = {
        "{\"kibana.alert.rule.name\":\"T\",\"kibana.alert.rule.description\":7}",
        "{\"kibana.alert.rule.name\":\"T\",\"kibana.alert.reason\":[\"r\"]}",
        "{\"kibana.alert.rule.name\":\"T\",\"kibana.alert.rule.description\":\"T\","
        "\"kibana.alert.reason\":{\"a\":1}}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json_t *p = parse(refused[i]);
        struct normalized_alert a;
        assert_int_equal(source_normalize_json(src(), p, &a), -1);
        json_decref(p);
    }
    json_t *p = parse("[1]");
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), -1);
    json_decref(p);
}

static void test_tags_and_time(void **state)
{
    (void)state;
    struct normalized_alert a;
    norm("{\"kibana.alert.rule.tags\":[\"x\",0,\"\",null,true,false,1.5,[],[0],{\"a\":1},\"x\"],"
         "\"kibana.alert.start\":\"2026-03-01T16:42:18.000Z\",\"@timestamp\":\"1999-01-01\"}",
         &a);
    char *tags = json_dumps(a.tags, JSON_COMPACT);
    assert_string_equal(tags, "[\"x\",\"True\",\"1.5\",\"[0]\",\"{'a': 1}\",\"x\"]");
    free(tags);
    assert_int_equal(a.occurred_at_us, 1772383338000000LL);
    normalized_alert_destroy(&a);

    norm("{\"kibana.alert.rule.tags\":\"x\",\"@timestamp\":\"2026-03-01T16:42:18Z\"}", &a);
    assert_int_equal(json_array_size(a.tags), 0);
    assert_int_equal(a.occurred_at_us, 1772383338000000LL);
    normalized_alert_destroy(&a);

    int64_t before = now_wall_us();
    norm("{\"kibana.alert.start\":\"March 1st\",\"@timestamp\":\"2026-03-01T16:42:18Z\"}", &a);
    assert_int_equal(a.occurred_at_was_now, 1);
    assert_true(a.occurred_at_us >= before);
    normalized_alert_destroy(&a);
    norm("{\"kibana.alert.start\":1772383338}", &a);
    assert_int_equal(a.occurred_at_was_now, 1);
    normalized_alert_destroy(&a);
}

static void test_extract(void **state)
{
    (void)state;
    expect_indicators(
        "{\"source.ip\":[\"1.1.1.1\",\" 2.2.2.2 \",5,null,\"\"],"
        "\"destination\":{\"ip\":\"3.3.3.3\",\"domain\":\"d.example\"},"
        "\"host.ip\":\"1.1.1.1\",\"threat\":{\"indicator\":{\"ip\":[\"4.4.4.4\"],"
        "\"domain\":[\"no-list.example\"],\"file\":{\"hash\":{\"sha256\":\"ff\"}}}},"
        "\"dns.question.name\":\"q.example\",\"url.domain\":\"d.example\","
        "\"url\":{\"full\":\"https://x.example/\"},\"process.hash.sha1\":\"s1\","
        "\"file.hash.md5\":\"m5\",\"user\":{\"email\":\"a@b.example\",\"name\":\"\"},"
        "\"user.name\":null}",
        "[{\"type\":\"ip\",\"value\":\"1.1.1.1\"},{\"type\":\"ip\",\"value\":\"2.2.2.2\"},"
        "{\"type\":\"ip\",\"value\":\"3.3.3.3\"},{\"type\":\"ip\",\"value\":\"4.4.4.4\"},"
        "{\"type\":\"domain\",\"value\":\"d.example\"},{\"type\":\"domain\",\"value\":\"q."
        "example\"},"
        "{\"type\":\"url\",\"value\":\"https://x.example/\"},"
        "{\"type\":\"hash_sha256\",\"value\":\"ff\"},{\"type\":\"hash_sha1\",\"value\":\"s1\"},"
        "{\"type\":\"hash_md5\",\"value\":\"m5\"},{\"type\":\"email\",\"value\":\"a@b.example\"}]");
    expect_indicators("[]", "[]");
    expect_indicators("{\"source\":[{\"ip\":\"1.1.1.1\"}],\"user.name\":{\"a\":\"b\"}}", "[]");
}

static void test_many_and_deep(void **state)
{
    (void)state;
    json_t *ips = json_array();
    for (int i = 0; i < 10000; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.1.%d.%d", i / 256, i % 256);
        json_array_append_new(ips, json_string(ip));
    }
    json_t *p = json_pack("{s:s,s:o}", "kibana.alert.rule.name", "n", "host.ip", ips);
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    assert_int_equal(set.n, 10000);
    indicator_set_destroy(&set);
    json_decref(p);

    /* A 1800-level nested rule name is str()'d without trouble. */
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"kibana.alert.rule.name\":");
    for (int i = 0; i < 1800; i++)
        buf_puts(&b, "[");
    for (int i = 0; i < 1800; i++)
        buf_puts(&b, "]");
    buf_puts(&b, "}");
    struct normalized_alert a;
    norm(b.data, &a);
    assert_int_equal(strlen(a.title), 3600);
    normalized_alert_destroy(&a);
    buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_malware),
        cmocka_unit_test(test_fixture_powershell),
        cmocka_unit_test(test_validate_and_lookup),
        cmocka_unit_test(test_title),
        cmocka_unit_test(test_severity),
        cmocka_unit_test(test_description),
        cmocka_unit_test(test_tags_and_time),
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_many_and_deep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
