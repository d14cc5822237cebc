/*
 * tests/unit/libcommon/providers/result.c - hostile provider response bodies (invalid JSON, NUL
 * escapes, invalid UTF-8, deep nesting, huge numbers) and the stored result objects.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "libcommon/providers/result.h"
#include "libcommon/util/util.h"

static void expect_raw_text(const char *data, size_t len, const char *want)
{
    json_t *v = body_parse(data, len);
    json_t *t = json_object_get(v, "_raw_text");
    assert_non_null(t);
    assert_string_equal(json_string_value(t), want);
    json_decref(v);
}

static void test_hostile_bodies(void **state)
{
    (void)state;
    json_t *v = body_parse("{\"a\":1,\"a\":2}", 13);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 2); /* last wins, as Python */
    json_decref(v);
    expect_raw_text("", 0, "");
    expect_raw_text("<html>nope</html>", 17, "<html>nope</html>");
    expect_raw_text("{\"a\":\"\\u0000\"}", 14, "{\"a\":\"\\u0000\"}"); /* jsonb refuses NUL */
    expect_raw_text("ab\0cd", 5, "abcd");
    expect_raw_text("x\xff\xfey", 4, "x\xef\xbf\xbd\xef\xbf\xbdy");
    expect_raw_text("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
    expect_raw_text("\xc3", 1, "\xef\xbf\xbd");                                 /* truncated */
    /* an integer beyond int64 is kept as a number (a real), not the answer turned to text */
    v = body_parse("{\"n\":123456789012345678901234567890}", 36);
    assert_true(json_is_real(json_object_get(v, "n")));
    assert_true(json_real_value(json_object_get(v, "n")) > 1.2e29);
    json_decref(v);
    /* deep nesting: refused by the parser's depth limit, kept as text (first 2000 chars) */
    size_t n = 100000;
    char *deep = malloc(n);
    memset(deep, '[', n);
    v = body_parse(deep, n);
    assert_int_equal(json_string_length(json_object_get(v, "_raw_text")), 2000);
    json_decref(v);
    free(deep);
}

static void test_result(void **state)
{
    (void)state;
    json_t *r = result_new("virustotal", "failed", NULL, NULL, "bad \xff byte");
    assert_false(json_is_true(json_object_get(r, "success")));
    assert_string_equal(json_string_value(json_object_get(r, "error_message")),
                        "bad \xef\xbf\xbd byte");
    assert_non_null(json_string_value(json_object_get(r, "enriched_at")));
    assert_true(json_is_null(json_object_get(r, "raw")));
    json_decref(r);
    r = result_new("x", "success", json_object(), json_array(), NULL);
    assert_true(json_is_true(json_object_get(r, "success")));
    assert_true(json_is_null(json_object_get(r, "error_message")));
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_bodies),
        cmocka_unit_test(test_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
