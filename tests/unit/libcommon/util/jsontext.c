/*
 * tests/unit/libcommon/util/jsontext.c - JSON strings written as text read back as the same
 * string (every byte value, escapes, multi-byte UTF-8), and bytes that are not UTF-8 become
 * U+FFFD so the text stays valid; whole values are written byte for byte as
 * json_dumps(JSON_COMPACT) writes them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"

static json_t *read_back(struct buf *b)
{
    json_error_t je;
    json_t *v = json_loadb(b->data, b->len, JSON_DECODE_ANY, &je);
    if (!v)
        fail_msg("not JSON: %.*s (%s)", (int)b->len, b->data, je.text);
    return v;
}

static void test_round_trip(void **state)
{
    (void)state;
    char s[160];
    size_t n = 0;
    for (int c = 1; c < 0x80; c++)
        s[n++] = (char)c;
    memcpy(s + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9); /* é € 😀 */
    n += 9;
    struct buf b;
    buf_init(&b);
    buf_json_string(&b, s, n);
    json_t *v = read_back(&b);
    assert_int_equal(json_string_length(v), n);
    assert_memory_equal(json_string_value(v), s, n);
    json_decref(v);
    /* escaped as jansson escapes */
    b.len = 0;
    buf_json_string(&b, "a\"b\\c\n/\x01", 8);
    assert_int_equal(b.len, strlen("\"a\\\"b\\\\c\\n/\\u0001\""));
    assert_memory_equal(b.data, "\"a\\\"b\\\\c\\n/\\u0001\"", b.len);
    /* hex digits in upper case, as json_dumps() writes them */
    b.len = 0;
    buf_json_string(&b, "\x1f", 1);
    json_t *one = json_string("\x1f");
    char *dumped = json_dumps(one, JSON_ENCODE_ANY);
    json_decref(one);
    assert_non_null(dumped);
    assert_int_equal(b.len, strlen(dumped));
    assert_memory_equal(b.data, dumped, b.len);
    free(dumped);
    buf_destroy(&b);
}

static void test_invalid_utf8_replaced(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_json_string(&b, "a\xff" "b\xc3" "c\xed\xa0\x80", 8);
    json_t *v = read_back(&b);
    assert_string_equal(json_string_value(v),
                        "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(v);
    b.len = 0;
    buf_json_cstr(&b, NULL);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "null", 4);
    buf_destroy(&b);
}

/* v written by buf_json_value() equals json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY). */
static void same_as_jansson(json_t *v)
{
    struct buf b;
    buf_init(&b);
    buf_json_value(&b, v);
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(want);
    assert_string_equal(b.data, want);
    assert_int_equal(b.len, strlen(want));
    free(want);
    buf_destroy(&b);
}

static void test_values_as_jansson(void **state)
{
    (void)state;
    const char *texts[] = {
        "{}", "[]", "null", "true", "false", "0", "-1", "9223372036854775807",
        "-9223372036854775808", "1.5", "-0.0", "1e300", "1.0e-300", "2.5e-7", "123456789012.25",
        "0.1", "100000000000000000000.0", "\"a/\\u00e9\\n\"",
        "{\"b\":1,\"a\":[1,2.0,{\"c\":null,\"d\":[]}],\"e\":{\"x\\u001fy\":\"\\u0000\\u0001\"}}",
        "[[[[\"deep\"]]],{},[],true,false,null,-3,3.14159265358979]",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        json_error_t je;
        json_t *v = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!v)
            fail_msg("test text %zu: %s", i, je.text);
        same_as_jansson(v);
        json_decref(v);
    }
    json_t *r = json_real(1.0 / 3.0);
    same_as_jansson(r);
    json_decref(r);
    struct buf b;
    buf_init(&b);
    buf_json_value(&b, NULL);
    assert_string_equal(b.data, "null");
    buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_invalid_utf8_replaced),
        cmocka_unit_test(test_values_as_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
