/*
 * tests/unit/services/enricher/malice.c - the original's malice rules: operators, coercion,
 * order, defaults, not-found, worst-of, and rule sets that are malformed on purpose.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "services/enricher/malice.h"

static const char *eval(const char *rules, const char *raw)
{
    static char out[64];
    json_t *r = rules ? json_loads(rules, 0, NULL) : NULL;
    json_t *w = json_loads(raw, JSON_DECODE_ANY, NULL);
    if (rules)
        assert_non_null(r);
    assert_non_null(w);
    const char *v = malice_evaluate(r, w);
    strncpy(out, v, sizeof out - 1);
    json_decref(r);
    json_decref(w);
    return out;
}

#define VT                                                                                         \
    "{\"rules\":[{\"field\":\"data.attributes.last_analysis_stats.malicious\",\"operator\":\">\"," \
    "\"value\":0,\"verdict\":\"Malicious\"},{\"field\":\"data.attributes.last_analysis_stats."     \
    "suspicious\",\"operator\":\">\",\"value\":0,\"verdict\":\"Suspicious\"}],"                    \
    "\"default_verdict\":\"Benign\",\"not_found_verdict\":\"Pending\"}"

static const char *vt(int mal, int sus)
{
    char raw[256];
    snprintf(raw, sizeof raw,
             "{\"data\":{\"attributes\":{\"last_analysis_stats\":{\"malicious\":%d,"
             "\"suspicious\":%d}}}}",
             mal, sus);
    return eval(VT, raw);
}

static void test_virustotal(void **state)
{
    (void)state;
    assert_string_equal(vt(3, 0), "Malicious");
    assert_string_equal(vt(3, 5), "Malicious"); /* first match wins */
    assert_string_equal(vt(0, 1), "Suspicious");
    assert_string_equal(vt(0, 0), "Benign");
    assert_string_equal(eval(VT, "{}"), "Benign"); /* missing field: no match, default */
    json_t *r = json_loads(VT, 0, NULL);
    assert_string_equal(malice_not_found(r), "Pending");
    json_decref(r);
    assert_string_equal(malice_not_found(NULL), "Pending");
}

static void test_abuseipdb_thresholds(void **state)
{
    (void)state;
    const char *rules =
        "{\"rules\":[{\"field\":\"data.abuseConfidenceScore\",\"operator\":\">=\",\"value\":75,"
        "\"verdict\":\"Malicious\"},{\"field\":\"data.abuseConfidenceScore\",\"operator\":\">=\","
        "\"value\":25,\"verdict\":\"Suspicious\"}],\"default_verdict\":\"Benign\"}";
    assert_string_equal(eval(rules, "{\"data\":{\"abuseConfidenceScore\":100}}"), "Malicious");
    assert_string_equal(eval(rules, "{\"data\":{\"abuseConfidenceScore\":75}}"), "Malicious");
    assert_string_equal(eval(rules, "{\"data\":{\"abuseConfidenceScore\":74.9}}"), "Suspicious");
    assert_string_equal(eval(rules, "{\"data\":{\"abuseConfidenceScore\":\"25\"}}"), "Suspicious");
    assert_string_equal(eval(rules, "{\"data\":{\"abuseConfidenceScore\":\"lots\"}}"), "Benign");
    assert_string_equal(eval(rules, "{\"data\":{\"abuseConfidenceScore\":null}}"), "Benign");
    assert_string_equal(eval(rules, "{\"data\":{\"abuseConfidenceScore\":[90]}}"), "Benign");
    assert_string_equal(eval(rules, "{\"data\":{\"abuseConfidenceScore\":true}}"), "Benign");
}

#define ONE(op, val)                                                                               \
    "{\"rules\":[{\"field\":\"x\",\"operator\":\"" op "\",\"value\":" val                          \
    ",\"verdict\":\"Malicious\"}],\"default_verdict\":\"Benign\"}"

static void test_operators(void **state)
{
    (void)state;
    assert_string_equal(eval(ONE("==", "1"), "{\"x\":1.0}"), "Malicious");
    assert_string_equal(eval(ONE("==", "1"), "{\"x\":true}"), "Malicious");
    assert_string_equal(eval(ONE("==", "\"1\""), "{\"x\":1}"), "Benign");
    assert_string_equal(eval(ONE("!=", "\"a\""), "{\"x\":\"b\"}"), "Malicious");
    assert_string_equal(eval(ONE("!=", "\"a\""), "{\"x\":null}"), "Benign"); /* None: false */
    assert_string_equal(eval(ONE("contains", "\"tor\""), "{\"x\":\"is-tor-exit\"}"), "Malicious");
    assert_string_equal(eval(ONE("contains", "\"tor\""), "{\"x\":[\"vpn\",\"tor\"]}"), "Malicious");
    assert_string_equal(eval(ONE("contains", "\"tor\""), "{\"x\":{\"tor\":1}}"), "Malicious");
    assert_string_equal(eval(ONE("contains", "\"tor\""), "{\"x\":5}"), "Benign");
    assert_string_equal(eval(ONE("in", "[\"RU\",\"KP\"]"), "{\"x\":\"KP\"}"), "Malicious");
    assert_string_equal(eval(ONE("in", "[\"RU\",\"KP\"]"), "{\"x\":\"US\"}"), "Benign");
    assert_string_equal(eval(ONE("in", "\"abcdef\""), "{\"x\":\"cd\"}"), "Malicious");
    assert_string_equal(eval(ONE("<", "10"), "{\"x\":-3}"), "Malicious");
    assert_string_equal(eval(ONE("<=", "10"), "{\"x\":\"10\"}"), "Malicious");
    assert_string_equal(eval(ONE("~=", "10"), "{\"x\":10}"), "Benign");
}

static void test_malformed(void **state)
{
    (void)state;
    assert_string_equal(eval(NULL, "{\"x\":1}"), "Pending");
    assert_string_equal(eval("[]", "{\"x\":1}"), "Pending");
    assert_string_equal(eval("{\"rules\":\"nope\"}", "{}"), "Pending");
    assert_string_equal(
        eval("{\"rules\":[1,null,{\"field\":7}],\"default_verdict\":\"Benign\"}", "{}"), "Benign");
    /* a rule without a verdict does not end the evaluation */
    assert_string_equal(eval("{\"rules\":[{\"field\":\"x\",\"operator\":\">\",\"value\":0},"
                             "{\"field\":\"x\",\"operator\":\">\",\"value\":0,\"verdict\":"
                             "\"Suspicious\"}]}",
                             "{\"x\":1}"),
                        "Suspicious");
    /* raw that is not an object */
    assert_string_equal(eval(VT, "[1,2,3]"), "Benign");
    assert_string_equal(eval(VT, "\"text\""), "Benign");
}

static void test_worst(void **state)
{
    (void)state;
    assert_string_equal(malice_worst("Pending", "Benign"), "Benign");
    assert_string_equal(malice_worst("Malicious", "Suspicious"), "Malicious");
    assert_string_equal(malice_worst("Suspicious", "Malicious"), "Malicious");
    assert_string_equal(malice_worst(NULL, "Benign"), "Benign");
    assert_string_equal(malice_worst("Benign", "bogus"), "Benign");
    assert_null(malice_worst(NULL, "bogus"));
    assert_int_equal(malice_rank("Pending"), 0);
    assert_int_equal(malice_rank("malicious"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_virustotal), cmocka_unit_test(test_abuseipdb_thresholds),
        cmocka_unit_test(test_operators),  cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_worst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
