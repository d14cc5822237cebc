/*
 * tests/unit/services/intake/targeting.c - save-time validation of targeting rules: the
 * original's messages for each kind of mistake, joined with "; ", and the 64 KB limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "services/intake/targeting.h"

static void expect(const char *json, const char *want)
{
    json_error_t e;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &e);
    char err[1024] = "";
    int r = targeting_validate(v, "targeting_rules", err, sizeof err);
    if (!want) {
        assert_int_equal(r, 0);
    } else {
        assert_int_equal(r, -1);
        assert_string_equal(err, want);
    }
    json_decref(v);
}

static void test_valid(void **state)
{
    (void)state;
    expect("{\"match_any\": []}", NULL);
    expect("{\"match_all\": [{\"field\": \"tags\", \"op\": \"contains\", \"value\": \"tor\"}],"
           " \"match_any\": [{\"field\": \"severity\", \"op\": \"in\", \"value\": [\"High\"]}]}",
           NULL);
}

static void test_messages(void **state)
{
    (void)state;
    expect("[]", "targeting_rules must be a JSON object");
    expect("{}", "targeting_rules must contain at least one of: match_any, match_all");
    expect("{\"x\": 1, \"match_any\": []}", "targeting_rules has unknown keys: ['x']");
    expect("{\"match_any\": {}}", "targeting_rules.match_any must be an array");
    expect("{\"match_all\": [1, {\"field\": \"severity\", \"op\": \"eq\"}]}",
           "match_all[0]: rule must be an object; match_all[1]: missing required key 'value'");
    expect("{\"match_any\": [{\"field\": \"title\", \"op\": \"like\", \"value\": 1}]}",
           "match_any[0].field: 'title' not in ['severity', 'source_name', 'tags']; "
           "match_any[0].op: 'like' not in ['contains', 'eq', 'gte', 'in', 'lte']");
    expect("{\"match_any\": [{\"field\": \"severity\", \"op\": \"in\", \"value\": \"High\"}]}",
           "match_any[0].value: must be an array for op 'in'");
}

static void test_size(void **state)
{
    (void)state;
    size_t n = 70000;
    char *big = malloc(n + 100);
    strcpy(big, "{\"match_any\": [{\"field\": \"tags\", \"op\": \"eq\", \"value\": \"");
    size_t l = strlen(big);
    memset(big + l, 'x', n);
    strcpy(big + l + n, "\"}]}");
    json_t *v = json_loads(big, 0, NULL);
    char err[256];
    assert_int_equal(targeting_validate(v, "trigger_filter", err, sizeof err), -1);
    assert_non_null(strstr(err, "trigger_filter exceeds maximum size of 64 KB"));
    json_decref(v);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
