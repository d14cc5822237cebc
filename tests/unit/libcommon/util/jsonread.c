/*
 * tests/unit/libcommon/util/jsonread.c - the request-body reader agrees with jansson.
 *
 * Every case is read by json_read() and by json_loadb() with the same flags: both refuse it, or
 * both accept it and the values are equal (json_equal: same types, same key sets, same bytes in
 * strings, same numbers). The cases cover the grammar's corners (numbers, escapes, surrogates,
 * UTF-8, control characters, literals, trailing bytes, duplicates) and the five SIEM fixtures;
 * then every prefix of a fixture and single-byte mutations of it. Integers beyond int64 are the
 * one intended difference and have their own test. The block scans of plain string bytes (the
 * word version and, where the compiler has it, the SSE2 one) stop where a byte loop says they
 * must, for every byte value at every place of every length to 48.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonread.h"
#include "tests/unit/testdata.h"
#include "util.h"

/* A fixture's bytes (tests/data/fixtures); fails the test when it cannot be read. */
static char *fixture_bytes(const char *name, size_t *len)
{
    const char *dir = getenv("CALSETA_SHARED_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/%s", dir && *dir ? dir : "tests/data", name);
    char *data = file_read(path, len);
    if (!data)
        fail_msg("cannot read %s", path);
    return data;
}

#define FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

/* 1 when both agree on data[0..len) under flags. */
static int agree(const char *data, size_t len, size_t flags)
{
    char err[200];
    json_error_t je;
    json_t *a = json_read(data, len, flags, err, sizeof err);
    json_t *b = json_loadb(data, len, flags, &je);
    int ok = (!a && !b) || (a && b && json_equal(a, b));
    if (!ok)
        print_message("disagree on [%.*s]: json_read %s, jansson %s (%s)\n", (int)len, data,
                      a ? "accepts" : err, b ? "accepts" : "refuses", b ? "" : je.text);
    json_decref(a);
    json_decref(b);
    return ok;
}

static void check_all(const char *const *cases, size_t n, size_t flags)
{
    for (size_t i = 0; i < n; i++)
        assert_true(agree(cases[i], strlen(cases[i]), flags));
}

static void test_grammar(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{}", "[]", " { } ", "{\"a\":1}", "[1,2,3]", "{\"a\":[{\"b\":null}],\"c\":true,\"d\":false}",
        "", " ", "{", "}", "[", "]", "[1,]", "[,1]", "{,}", "{\"a\"}", "{\"a\":}", "{\"a\" 1}",
        "{\"a\":1,}", "{1:2}", "{'a':1}", "[1 2]", "[1]x", "[1] ", "\n\t\r[1]\n", "[1][2]",
        "0", "-0", "-", "01", "-01", "00", "1.", "1.5", "-1.5e10", "1e", "1e+", "1E-2", "1.e5",
        ".5", "+1", "1e400", "-1e400", "1e-400", "9223372036854775807", "-9223372036854775808",
        "0.1", "123456789.123456789e-3", "[0,-0,0.0,-0.0]", "1x", "NaN", "Infinity",
        "true", "false", "null", "True", "nul", "nulll", "truefalse", "[true,false,null]",
        "[tru]", "[true1]", "\"a\"", "\"\"", "\"abc", "\"a\\\"b\"", "\"\\\\\"", "\"\\/\"",
        "\"\\b\\f\\n\\r\\t\"", "\"\\x\"", "\"\\u0041\"", "\"\\u00e9\"", "\"\\u20AC\"",
        "\"\\uD83D\\uDE00\"", "\"\\uD83D\"", "\"\\uDE00\"", "\"\\uD83Dx\"", "\"\\uD83D\\u0041\"",
        "\"\\u12\"", "\"\\u12G4\"", "\"\\u0000\"", "{\"\\u0000\":1}", "\"a\tb\"", "\"a\nb\"",
        "\"\x7f\"", "\"\xc3\xa9\"", "\"\xe2\x82\xac\"", "\"\xf0\x9f\x98\x80\"", "\"\xc3\"",
        "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"", "\"\x80\"",
        "\xc3\xa9", "{\"a\":1,\"a\":2}", "{\"a\":{\"a\":1},\"b\":{\"a\":2}}",
        "{\"k\\u0041\":1,\"kA\":2}", "{\"\":1}", "[\"\\\"\",\"\\\\u0041\"]",
        "{\"a\":\"x\\\"y\",\"b\":\"\\u00e9t\\u00e9\"}",
    };
    check_all(cases, sizeof cases / sizeof cases[0], FLAGS);
    check_all(cases, sizeof cases / sizeof cases[0], 0);
    check_all(cases, sizeof cases / sizeof cases[0], JSON_DECODE_ANY);
    check_all(cases, sizeof cases / sizeof cases[0], JSON_DECODE_ANY | JSON_ALLOW_NUL);
    check_all(cases, sizeof cases / sizeof cases[0], JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL);
}

static void test_embedded_nul_byte(void **state)
{
    (void)state;
    assert_true(agree("\"a\0b\"", 5, FLAGS));
    assert_true(agree("[1]\0", 4, FLAGS));
    assert_true(agree("[1,\0]", 5, FLAGS));
    /* jansson skips a NUL right after a number or literal; it is not JSON and is refused */
    json_error_t je;
    json_t *j = json_loadb("[8\0]", 4, FLAGS, &je);
    assert_non_null(j);
    json_decref(j);
    assert_null(json_read("[8\0]", 4, FLAGS, NULL, 0));
    assert_null(json_read("{\"a\":true\0}", 11, FLAGS, NULL, 0));
}

static void test_depth(void **state)
{
    (void)state;
    for (size_t n = 2046; n <= 2050; n++) {
        char *s = xmalloc(2 * n + 1);
        memset(s, '[', n);
        memset(s + n, ']', n);
        s[2 * n] = 0;
        assert_true(agree(s, 2 * n, FLAGS));
        free(s);
    }
}

static const char *const FIXTURES[] = {
    "01_sentinel_brute_force_tor.json", "02_elastic_malware_hash.json",
    "03_splunk_anomalous_data_transfer.json", "04_sentinel_impossible_travel.json",
    "05_elastic_suspicious_powershell.json",
};

static void test_fixtures_prefixes_and_mutations(void **state)
{
    (void)state;
    static const char bytes[] = "\"\\{}[],:0-e.u \x01\x80\xc3";
    for (size_t f = 0; f < sizeof FIXTURES / sizeof FIXTURES[0]; f++) {
        size_t len = 0;
        char *doc = fixture_bytes(FIXTURES[f], &len);
        assert_non_null(doc);
        assert_true(agree(doc, len, FLAGS));
        json_t *v = json_read(doc, len, FLAGS, NULL, 0);
        assert_true(json_is_object(v));
        json_decref(v);
        for (size_t n = 0; n < len; n += 23)
            assert_true(agree(doc, n, FLAGS));
        for (size_t i = 0; i < len; i += 31) {
            char keep = doc[i];
            for (size_t k = 0; k < sizeof bytes - 1; k++) {
                doc[i] = bytes[k];
                assert_true(agree(doc, len, FLAGS));
            }
            doc[i] = keep;
        }
        free(doc);
    }
}

static void test_big_integers_become_reals(void **state)
{
    (void)state;
    char err[200];
    const char *s = "{\"u\":18446744073709551615,\"n\":-9223372036854775809,\"i\":9223372036854775807}";
    json_t *v = json_read(s, strlen(s), FLAGS, err, sizeof err);
    assert_non_null(v);
    assert_true(json_is_real(json_object_get(v, "u")));
    assert_true(json_real_value(json_object_get(v, "u")) == 18446744073709551615.0);
    assert_true(json_is_real(json_object_get(v, "n")));
    assert_true(json_is_integer(json_object_get(v, "i")));
    assert_int_equal(json_integer_value(json_object_get(v, "i")), INT64_MAX);
    json_decref(v);
    /* a literal too large even for a double is refused, as jansson refuses 1e400 */
    char big[420];
    memset(big, '9', 400);
    big[400] = 0;
    assert_null(json_read(big, 400, FLAGS, err, sizeof err));
    assert_non_null(strstr(err, "overflow"));
}

static void test_error_position(void **state)
{
    (void)state;
    char err[200];
    assert_null(json_read("{\n \"a\": x}", 10, FLAGS, err, sizeof err));
    assert_non_null(strstr(err, "line 2"));
    assert_null(json_read("{\"a\":1,\"a\":2}", 13, FLAGS, err, sizeof err));
    assert_non_null(strstr(err, "duplicate"));
}

/* Where a block scan must stop on p[0..n): in the block holding the first byte JSON_PLAIN
 * refuses, when that block is whole - at the byte itself (exact) or at the block's start (the
 * word version, which hands the word to the byte loop) - and otherwise where less than a block
 * remains. */
typedef const unsigned char *(*skip_fn)(const unsigned char *, const unsigned char *);

static void check_skip(skip_fn scan, size_t block, int exact, const unsigned char *p, size_t n)
{
    size_t first = 0; /* the first byte the byte loop stops at */
    while (first < n && JSON_PLAIN[p[first]])
        first++;
    size_t blk = first / block * block, want = blk + block <= n ? (exact ? first : blk)
                                                                  : n / block * block;
    size_t at = (size_t)(scan(p, p + n) - p);
    if (at != want)
        fail_msg("%zu-byte scan of %zu bytes, byte 0x%02x at %zu: stopped at %zu, not %zu", block,
                 n, first < n ? p[first] : 0, first, at, want);
}

static void test_skip_plain_every_byte_and_place(void **state)
{
    (void)state;
    for (size_t len = 0; len <= 48; len++) {
        for (size_t k = 0; k <= len; k++) {
            for (int c = 0; c < 256; c++) {
                unsigned char *s = malloc(len ? len : 1); /* exactly len bytes */
                memset(s, 'a', len);
                if (k < len)
                    s[k] = (unsigned char)c;
                check_skip(json_skip_plain_words, 8, 0, s, len);
#ifdef __SSE2__
                check_skip(json_skip_plain_sse2, 16, 1, s, len);
#endif
#if defined(__SSE2__) && !defined(CALSETA_JSON_NO_SIMD)
                check_skip(json_skip_plain, 16, 1, s, len); /* the one the build uses */
#else
                check_skip(json_skip_plain, 8, 0, s, len);
#endif
                free(s);
                if (k == len)
                    break; /* all plain: once */
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_embedded_nul_byte),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_fixtures_prefixes_and_mutations),
        cmocka_unit_test(test_big_integers_become_reals),
        cmocka_unit_test(test_error_position),
        cmocka_unit_test(test_skip_plain_every_byte_and_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
