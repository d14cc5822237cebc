/*
 * tests/unit/libcommon/util/jsontext.c - JSON strings written as text read back as the same
 * string (every byte value, escapes, multi-byte UTF-8), and bytes that are not UTF-8 become
 * U+FFFD so the text stays valid; whole values are written byte for byte as
 * json_dumps(JSON_COMPACT) writes them. Strings of every length to 48 with one special byte or
 * sequence at every place (the writer skips plain bytes a block at a time) come out byte for
 * byte as a plain byte-at-a-time writer writes them, each read from a heap copy of exactly its
 * size so ASan sees an over-read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonread.h"
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

/* The string writer as it is without any block scan: one byte at a time. */
static void reference_string(struct buf *b, const unsigned char *p, size_t n)
{
    const unsigned char *end = p + n;
    buf_append(b, "\"", 1);
    while (p < end) {
        unsigned c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            buf_append(b, p++, 1);
            continue;
        }
        if (c >= 0x80) {
            size_t k = json_utf8_seq(p, end);
            if (k)
                buf_append(b, p, k), p += k;
            else
                buf_append(b, "\xef\xbf\xbd", 3), p++;
            continue;
        }
        char e[7];
        switch (c) {
        case '"': strcpy(e, "\\\""); break;
        case '\\': strcpy(e, "\\\\"); break;
        case '\b': strcpy(e, "\\b"); break;
        case '\f': strcpy(e, "\\f"); break;
        case '\n': strcpy(e, "\\n"); break;
        case '\r': strcpy(e, "\\r"); break;
        case '\t': strcpy(e, "\\t"); break;
        default: snprintf(e, sizeof e, "\\u%04X", c);
        }
        buf_append(b, e, strlen(e));
        p++;
    }
    buf_append(b, "\"", 1);
}

static void test_every_position_as_the_byte_loop(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
    } specials[] = {
        {"\"", 1}, {"\\", 1}, {"\0", 1}, {"\x01", 1}, {"\n", 1}, {"\x1f", 1}, {"\x20", 1},
        {"\x7f", 1}, {"\x80", 1}, {"\xff", 1}, {"\xc3\xa9", 2}, {"\xe2\x82\xac", 3},
        {"\xf0\x9f\x98\x80", 4}, {"\xf4\x8f\xbf\xbf", 4}, {"\xc0\x80", 2}, {"\xe0\x80\x80", 3},
        {"\xed\xa0\x80", 3}, {"\xf4\x90\x80\x80", 4}, {"\xc3", 1}, {"\xe2\x82", 2},
        {"\xf0\x9f\x98", 3},
    };
    static const char fill[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    struct buf got, want;
    buf_init(&got);
    buf_init(&want);
    for (size_t len = 0; len <= 48; len++) {
        for (size_t s = 0; s < sizeof specials / sizeof *specials; s++) {
            size_t sn = specials[s].n;
            for (size_t k = 0; k + sn <= len || (k == 0 && sn > len); k++) {
                unsigned char *str = malloc(len ? len : 1); /* exactly len bytes */
                memcpy(str, fill, len);
                if (sn <= len)
                    memcpy(str + k, specials[s].s, sn);
                got.len = want.len = 0;
                buf_json_string(&got, (const char *)str, len);
                reference_string(&want, str, len);
                if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0)
                    fail_msg("special %zu at %zu of %zu: %.*s, want %.*s", s, k, len,
                             (int)got.len, got.data, (int)want.len, want.data);
                free(str);
                if (sn > len)
                    break;
            }
        }
    }
    buf_destroy(&got);
    buf_destroy(&want);
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
        cmocka_unit_test(test_every_position_as_the_byte_loop),
        cmocka_unit_test(test_values_as_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
