/*
 * tests/unit/services/intake/source_sentinel.c - the Sentinel source: validation, the
 * normalisation table (case-sensitive severity map, timestamps, labels), pass-1 entities and the
 * fingerprint, on the shared fixtures and on hostile payloads.
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

/* JSON_ALLOW_NUL on top of the intake's flags, to reach the NUL handling. */
static json_t *parse(const char *text)
{
    return test_json(text, JSON_ALLOW_NUL);
}

static const struct alert_source *src(void)
{
    return source_expect("sentinel", &source_sentinel);
}

/* Normalises text, which must succeed; caller destroys. */
static void norm(const char *text, struct normalized_alert *a)
{
    source_normalize_ok(src(), parse(text), a);
}

static char *tags_of(const struct normalized_alert *a)
{
    return json_dumps(a->tags, JSON_COMPACT | JSON_ENSURE_ASCII);
}

static void expect_indicators(const char *text, const char *want)
{
    source_expect_indicators(src(), parse(text), want);
}

static void test_registry(void **state)
{
    (void)state;
    assert_ptr_equal(source_lookup("sentinel"), &source_sentinel);
    assert_null(source_lookup("Sentinel"));
    assert_null(source_lookup("sentinel "));
    assert_null(source_lookup(""));
    assert_null(source_lookup(NULL));
    assert_string_equal(src()->name, "sentinel");
}

static void test_fixture_brute_force(void **state)
{
    (void)state;
    json_t *p = fixture("01_sentinel_brute_force_tor.json");
    assert_true(source_validate_json(src(), p));
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), 0);
    assert_string_equal(a.title, "Brute force sign-in attempts from TOR network detected");
    assert_string_equal(a.severity, "High");
    assert_int_equal(a.occurred_at_us, 1772374991000000LL); /* firstActivityTimeUtc */
    assert_int_equal(a.occurred_at_was_now, 0);
    assert_non_null(a.description);
    assert_true(!strncmp(a.description, "Multiple failed sign-in attempts", 32));
    char *tags = tags_of(&a);
    assert_string_equal(tags, "[\"TOR\",\"BruteForce\",\"IdentityThreat\"]");
    free(tags);
    assert_string_equal(a.source_rule_ref, "c9a7e4d2-3b1f-4e8a-9c6d-f0123456789a");
    assert_null(a.normalized_fields); /* none set */

    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    json_t *j = indicators_to_json(&set);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_string_equal(s, "[{\"type\":\"account\",\"value\":\"j.martinez@contoso.com\"},"
                           "{\"type\":\"ip\",\"value\":\"185.220.101.34\"},"
                           "{\"type\":\"domain\",\"value\":\"AAD-SIGNIN-SVC.contoso.com\"}]");
    free(s);
    json_decref(j);
    /* python3 -c 'import hashlib; print(hashlib.md5(("Brute force sign-in attempts from TOR
     *   network detected\0sentinel\0account:j.martinez@contoso.com|domain:AAD-SIGNIN-SVC.
     *   contoso.com|ip:185.220.101.34").encode()).hexdigest())' */
    char fp[33];
    indicators_fingerprint(a.title, "sentinel", &set, fp);
    assert_string_equal(fp, "c31f11ef1bb444a962446d05b1b40968");
    indicator_set_destroy(&set);
    normalized_alert_destroy(&a);
    json_decref(p);
}

static void test_fixture_impossible_travel(void **state)
{
    (void)state;
    json_t *p = fixture("04_sentinel_impossible_travel.json");
    assert_true(source_validate_json(src(), p));
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), 0);
    assert_string_equal(a.severity, "High");
    assert_int_equal(a.occurred_at_us, 1772356522000000LL);
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    assert_int_equal(set.n, 5);
    assert_string_equal(set.items[4].type, "url");
    assert_string_equal(set.items[4].value, "https://portal.azure.com");
    /* Same hashlib recipe over account:r.chen@contoso.com|domain:RChen-Laptop.contoso.com|
     * ip:203.0.113.25|ip:91.234.56.78|url:https://portal.azure.com */
    char fp[33];
    indicators_fingerprint(a.title, "sentinel", &set, fp);
    assert_string_equal(fp, "6123e6535641ba2aabf2218b34c4c36e");
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
        {"{\"properties\":{\"title\":\"x\"}}", 1},
        {"{\"properties\":{\"severity\":\"High\"}}", 1},
        {"{\"properties\":{\"severity\":7}}", 1},
        {"{\"properties\":{\"title\":[0]}}", 1},
        {"{\"properties\":{\"title\":\"\",\"severity\":\"\"}}", 0},
        {"{\"properties\":{\"title\":null,\"severity\":false}}", 0},
        {"{\"properties\":{\"title\":0,\"severity\":[]}}", 0},
        {"{\"properties\":{}}", 0},
        {"{\"properties\":[{\"title\":\"x\"}]}", 0},
        {"{\"properties\":\"title\"}", 0},
        {"{\"title\":\"x\"}", 0},
        {"{}", 0},
        {"[]", 0},
        {"\"properties\"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *p = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(p);
        if (source_validate_json(src(), p) != cases[i].want)
            fail_msg("validate(%s) != %d", cases[i].json, cases[i].want);
        json_decref(p);
    }
}

static void test_severity_map(void **state)
{
    (void)state;
    static const struct {
        const char *sev, *want;
    } cases[] = {
        {"\"High\"", "High"},
        {"\"Medium\"", "Medium"},
        {"\"Low\"", "Low"},
        {"\"Informational\"", "Informational"},
        {"\"None\"", "Informational"},
        {"\"high\"", "Pending"}, /* case-sensitive */
        {"\"HIGH\"", "Pending"},
        {"\"none\"", "Pending"},
        {"\"Critical\"", "Pending"}, /* no Critical in Sentinel's map */
        {"\" High\"", "Pending"},
        {"\"\"", "Pending"},
        {"null", "Pending"},
        {"3", "Pending"},
        {"[\"High\"]", "Pending"},
        {"{\"High\":1}", "Pending"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = xasprintf("{\"properties\":{\"title\":\"t\",\"severity\":%s}}", cases[i].sev);
        struct normalized_alert a;
        norm(text, &a);
        if (strcmp(a.severity, cases[i].want))
            fail_msg("severity %s -> %s, want %s", cases[i].sev, a.severity, cases[i].want);
        normalized_alert_destroy(&a);
        free(text);
    }
    struct normalized_alert a;
    norm("{\"properties\":{\"title\":\"t\"}}", &a); /* absent -> "None" -> Informational */
    assert_string_equal(a.severity, "Informational");
    normalized_alert_destroy(&a);
}

static void test_title_and_description(void **state)
{
    (void)state;
    struct normalized_alert a;
    norm("{\"properties\":{\"severity\":\"Low\"}}", &a);
    assert_string_equal(a.title, "Untitled Sentinel Incident");
    assert_null(a.description);
    assert_int_equal(json_array_size(a.tags), 0);
    assert_null(a.source_rule_ref);
    normalized_alert_destroy(&a);

    norm("{\"properties\":{\"title\":\"\",\"severity\":\"Low\",\"description\":null}}", &a);
    assert_string_equal(a.title, "");
    assert_null(a.description);
    normalized_alert_destroy(&a);

    /* Unicode survives byte for byte. */
    norm("{\"properties\":{\"title\":\"\\u00dcberwachung \\ud83d\\udea8 \\u4e2d\\u6587\"}}", &a);
    assert_string_equal(a.title, "\xc3\x9c"
                                 "berwachung \xf0\x9f\x9a\xa8 \xe4\xb8\xad\xe6\x96\x87");
    normalized_alert_destroy(&a);

    /* A string with a NUL never reaches a source: the token reader refuses it. */
    static const char nul[] = "{\"properties\":{\"title\":\"ab\\u0000cd\"}}";
    struct jtok_doc d;
    enum json_parse_status st;
    char err[160];
    assert_int_equal(jtok_parse_limited(&d, nul, sizeof nul - 1, NULL, NULL, &st, err, sizeof err),
                     -1);
    jtok_free(&d);

    /* Where pydantic would refuse (a 500 in the original) normalize() refuses. */
    static const char *const refused[] = {
        "{\"properties\":{\"title\":42}}",
        "{\"properties\":{\"title\":null,\"severity\":\"High\"}}",
        "{\"properties\":{\"title\":[\"a\"]}}",
        "{\"properties\":{\"title\":\"t\",\"description\":5}}",
        "{\"properties\":{\"title\":\"t\",\"description\":{}}}",
        "{\"properties\":{\"title\":\"t\",\"labels\":[{\"labelName\":7}]}}",
        "{\"properties\":[1,2]}",
        "{\"properties\":null}",
        "{\"properties\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json_t *p = parse(refused[i]);
        memset(&a, 0x5a, sizeof a);
        if (source_normalize_json(src(), p, &a) != -1)
            fail_msg("accepted %s", refused[i]);
        assert_null(a.title); /* *out left empty */
        normalized_alert_destroy(&a);
        json_decref(p);
    }
    /* No properties at all: defaults (the original's raw.get("properties", {})). */
    norm("{}", &a);
    assert_string_equal(a.title, "Untitled Sentinel Incident");
    assert_string_equal(a.severity, "Informational");
    assert_int_equal(a.occurred_at_was_now, 1);
    normalized_alert_destroy(&a);
}

static void expect_time(const char *props, int64_t want)
{
    char *text = xasprintf("{\"properties\":{\"title\":\"t\"%s}}", props);
    struct normalized_alert a;
    int64_t before = now_wall_us();
    norm(text, &a);
    int64_t after = now_wall_us();
    if (want >= 0) {
        if (a.occurred_at_was_now || a.occurred_at_us != want)
            fail_msg("%s: got %lld", props, (long long)a.occurred_at_us);
    } else {
        assert_int_equal(a.occurred_at_was_now, 1);
        assert_true(a.occurred_at_us >= before && a.occurred_at_us <= after);
    }
    normalized_alert_destroy(&a);
    free(text);
}

static void test_timestamps(void **state)
{
    (void)state;
    expect_time(",\"firstActivityTimeUtc\":\"2026-03-01T14:23:11.000Z\","
                "\"createdTimeUtc\":\"2026-03-01T14:39:02Z\"",
                1772374991000000LL);
    /* falsy first value -> createdTimeUtc */
    expect_time(",\"firstActivityTimeUtc\":\"\",\"createdTimeUtc\":\"2026-03-01T14:23:11Z\"",
                1772374991000000LL);
    expect_time(",\"firstActivityTimeUtc\":null,\"createdTimeUtc\":\"2026-03-01T15:23:11+01:00\"",
                1772374991000000LL);
    /* truthy but unusable first value: no fallback to createdTimeUtc, now */
    expect_time(
        ",\"firstActivityTimeUtc\":\"yesterday\",\"createdTimeUtc\":\"2026-03-01T14:23:11Z\"", -1);
    expect_time(",\"firstActivityTimeUtc\":12345,\"createdTimeUtc\":\"2026-03-01T14:23:11Z\"", -1);
    expect_time(",\"firstActivityTimeUtc\":[\"2026-03-01T14:23:11Z\"]", -1);
    expect_time("", -1);
    expect_time(",\"firstActivityTimeUtc\":\"2026-02-30T00:00:00Z\"", -1);
    /* naive = UTC */
    expect_time(",\"createdTimeUtc\":\"2026-03-01T14:23:11\"", 1772374991000000LL);
}

static void test_labels(void **state)
{
    (void)state;
    struct normalized_alert a;
    norm("{\"properties\":{\"title\":\"t\",\"labels\":[{\"labelName\":\"A\"},\"B\",null,"
         "{\"labelName\":\"\"},{\"labelName\":null},{\"other\":\"C\"},[\"D\"],"
         "{\"labelName\":\"A\"},{\"labelName\":\"\\u00e9\"}]}}",
         &a);
    char *tags = tags_of(&a);
    assert_string_equal(tags, "[\"A\",\"A\",\"\\u00E9\"]");
    free(tags);
    normalized_alert_destroy(&a);
    norm("{\"properties\":{\"title\":\"t\",\"labels\":{\"labelName\":\"A\"}}}", &a);
    assert_int_equal(json_array_size(a.tags), 0);
    normalized_alert_destroy(&a);
    norm("{\"properties\":{\"title\":\"t\",\"labels\":\"A\"}}", &a);
    assert_int_equal(json_array_size(a.tags), 0);
    normalized_alert_destroy(&a);
}

static void test_rule_ref(void **state)
{
    (void)state;
    static const struct {
        const char *ids, *want;
    } cases[] = {
        {"[\"/a/b/alertRules/r1\",\"/x/r2\"]", "r1"},
        {"[\"r3\"]", "r3"},
        {"[\"/a/b/\"]", NULL},
        {"[]", NULL},
        {"[5]", NULL},
        {"\"/a/r4\"", NULL},
        {"null", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = xasprintf("{\"properties\":{\"title\":\"t\",\"relatedAnalyticRuleIds\":%s}}",
                               cases[i].ids);
        struct normalized_alert a;
        norm(text, &a);
        if (cases[i].want)
            assert_string_equal(a.source_rule_ref, cases[i].want);
        else
            assert_null(a.source_rule_ref);
        normalized_alert_destroy(&a);
        free(text);
    }
}

static void test_entities(void **state)
{
    (void)state;
    expect_indicators(
        "{\"Entities\":[{\"type\":\"IP\",\"address\":\" 10.0.0.1 \"},"
        "{\"Type\":\"Ip\",\"Address\":\"\",\"address\":\"10.0.0.2\"},"
        "{\"Type\":\"account\",\"name\":\"bob\"},"
        "{\"Type\":\"account\",\"Name\":\"amy\",\"upnSuffix\":\"corp.example\"},"
        "{\"Type\":\"host\",\"HostName\":\"h1\"},"
        "{\"Type\":\"host\",\"hostName\":\"h2\",\"DnsDomain\":\"d.example\"},"
        "{\"Type\":\"url\",\"url\":\"https://u.example/\"},"
        "{\"Type\":\"filehash\",\"Algorithm\":\"sha256\",\"Value\":\"aa\"},"
        "{\"Type\":\"filehash\",\"algorithm\":\"SHA1\",\"value\":\"bb\"},"
        "{\"Type\":\"FileHash\",\"Algorithm\":\"Md5\",\"Value\":\"cc\"},"
        "{\"Type\":\"filehash\",\"Algorithm\":\"SHA512\",\"Value\":\"dd\"},"
        "{\"Type\":\"filehash\",\"Value\":\"ee\"},"
        "{\"Type\":\"process\",\"Address\":\"10.9.9.9\"},"
        "{\"Type\":\"ip\",\"Address\":\"10.0.0.1\"}]}",
        "[{\"type\":\"ip\",\"value\":\"10.0.0.1\"},{\"type\":\"ip\",\"value\":\"10.0.0.2\"},"
        "{\"type\":\"account\",\"value\":\"bob\"},"
        "{\"type\":\"account\",\"value\":\"amy@corp.example\"},"
        "{\"type\":\"domain\",\"value\":\"h1\"},{\"type\":\"domain\",\"value\":\"h2.d.example\"},"
        "{\"type\":\"url\",\"value\":\"https://u.example/\"},"
        "{\"type\":\"hash_sha256\",\"value\":\"aa\"},{\"type\":\"hash_sha1\",\"value\":\"bb\"},"
        "{\"type\":\"hash_md5\",\"value\":\"cc\"}]");
    /* Hostile shapes: nothing, and no crash. */
    static const char *const empty[] = {
        "{}",
        "{\"Entities\":null}",
        "{\"Entities\":{\"Type\":\"ip\",\"Address\":\"1.1.1.1\"}}",
        "{\"Entities\":\"ip\"}",
        "{\"Entities\":[1,\"ip\",null,[{\"Type\":\"ip\",\"Address\":\"1.1.1.1\"}],true]}",
        "{\"Entities\":[{\"Type\":5,\"Address\":\"1.1.1.1\"},{\"Type\":\"ip\",\"Address\":7},"
        "{\"Type\":\"ip\",\"Address\":[\"1.1.1.1\"]},{\"Type\":\"account\",\"UPNSuffix\":\"x\"},"
        "{\"Type\":\"ip\",\"Address\":\"   \"},{\"Type\":null},{}]}",
        "{\"entities\":[{\"Type\":\"ip\",\"Address\":\"1.1.1.1\"}]}",
    };
    for (size_t i = 0; i < sizeof empty / sizeof *empty; i++)
        expect_indicators(empty[i], "[]");
    /* Entities is top-level only. */
    expect_indicators("{\"properties\":{\"Entities\":[{\"Type\":\"ip\",\"Address\":\"1.1.1.1\"}]}}",
                      "[]");
    /* A non-string UPNSuffix is ignored, the name stays. */
    expect_indicators("{\"Entities\":[{\"Type\":\"account\",\"Name\":\"x\",\"UPNSuffix\":3}]}",
                      "[{\"type\":\"account\",\"value\":\"x\"}]");
}

static void test_many_entities(void **state)
{
    (void)state;
    json_t *ents = json_array();
    for (int i = 0; i < 10000; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i / 65536, (i / 256) % 256, i % 256);
        json_array_append_new(ents, json_pack("{s:s,s:s}", "Type", "ip", "Address", ip));
        json_array_append_new(ents, json_pack("{s:s,s:s}", "Type", "ip", "Address", ip));
    }
    json_t *p = json_pack("{s:{s:s},s:o}", "properties", "title", "many", "Entities", ents);
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    assert_int_equal(set.n, 10000);
    assert_string_equal(set.items[9999].value, "10.0.39.15");
    char fp1[33], fp2[33];
    indicators_fingerprint("many", "sentinel", &set, fp1);
    /* The fingerprint is order-independent: reverse the entities and compare. */
    json_t *rev = json_array();
    for (size_t i = json_array_size(ents); i-- > 0;)
        json_array_append(rev, json_array_get(ents, i));
    json_t *p2 = json_pack("{s:o}", "Entities", rev);
    struct indicator_set set2;
    indicator_set_init(&set2);
    source_extract_json(src(), p2, &set2);
    indicators_fingerprint("many", "sentinel", &set2, fp2);
    assert_string_equal(fp1, fp2);
    indicator_set_destroy(&set);
    indicator_set_destroy(&set2);
    json_decref(p);
    json_decref(p2);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* 1500 levels in labels, in an extra field and in Entities: ignored, nothing recursed. */
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"properties\":{\"title\":\"deep\",\"labels\":");
    for (int i = 0; i < 1500; i++)
        buf_puts(&b, "[");
    for (int i = 0; i < 1500; i++)
        buf_puts(&b, "]");
    buf_puts(&b, ",\"extra\":");
    for (int i = 0; i < 1500; i++)
        buf_puts(&b, "{\"a\":");
    buf_puts(&b, "1");
    for (int i = 0; i < 1500; i++)
        buf_puts(&b, "}");
    buf_puts(&b, "},\"Entities\":");
    for (int i = 0; i < 1500; i++)
        buf_puts(&b, "[");
    for (int i = 0; i < 1500; i++)
        buf_puts(&b, "]");
    buf_puts(&b, "}");
    json_t *p = parse(b.data);
    assert_true(source_validate_json(src(), p));
    struct normalized_alert a;
    assert_int_equal(source_normalize_json(src(), p, &a), 0);
    assert_string_equal(a.title, "deep");
    assert_int_equal(json_array_size(a.tags), 0);
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(src(), p, &set);
    assert_int_equal(set.n, 0);
    indicator_set_destroy(&set);
    normalized_alert_destroy(&a);
    json_decref(p);
    buf_destroy(&b);
}

/* The intake parses with JSON_REJECT_DUPLICATES, so a source never sees duplicate keys. */
static void test_duplicate_keys_rejected(void **state)
{
    (void)state;
    json_error_t err;
    const char *dup = "{\"properties\":{\"title\":\"a\",\"title\":\"b\"}}";
    assert_null(json_loads(dup, JSON_REJECT_DUPLICATES, &err));
    assert_non_null(strstr(err.text, "duplicate"));
    json_t *lax = json_loads(dup, 0, NULL); /* without the flag jansson keeps the last */
    assert_non_null(lax);
    json_decref(lax);
    assert_null(json_loads("{\"Entities\":[],\"Entities\":[]}", JSON_REJECT_DUPLICATES, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_fixture_brute_force),
        cmocka_unit_test(test_fixture_impossible_travel),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_severity_map),
        cmocka_unit_test(test_title_and_description),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_rule_ref),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_many_entities),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_duplicate_keys_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
