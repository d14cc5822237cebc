/*
 * tests/unit/libcommon/util/jsonparse.c - bounded parsing and integers beyond int64.
 *
 * The limits refuse before parsing (a document far too deep for jansson's own limit is refused
 * as too deep, not as invalid), strings cannot hide brackets or numbers from the walk, only the
 * integers that overflow become reals (and exactly those), numbers numeric may not hold are
 * flagged, and the PostgreSQL reader takes what PostgreSQL writes for numerics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonparse.h"
#include "util.h"

static json_t *parse(const char *s, const struct json_limits *lim, enum json_parse_status *st,
                     struct json_scan *scan)
{
    char err[160];
    return json_parse_limited(s, strlen(s), JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, lim, scan,
                              st, err, sizeof err);
}

static char *repeat(const char *open, size_t n, const char *mid, const char *close)
{
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < n; i++)
        buf_puts(&b, open);
    buf_puts(&b, mid);
    for (size_t i = 0; i < n; i++)
        buf_puts(&b, close);
    return b.data;
}

static void test_depth_limit(void **state)
{
    (void)state;
    enum json_parse_status st;
    struct json_limits lim = {8, 0, 0};
    char *ok = repeat("[", 8, "1", "]");
    json_t *v = parse(ok, &lim, &st, NULL);
    assert_int_equal(st, JSONP_OK);
    assert_non_null(v);
    json_decref(v);
    char *deep = repeat("[", 9, "1", "]");
    assert_null(parse(deep, &lim, &st, NULL));
    assert_int_equal(st, JSONP_TOO_DEEP);
    /* far beyond jansson's own limit: still "too deep" from the walk, at the default limit */
    char *huge = repeat("{\"a\":", 5000, "1", "}");
    struct json_scan scan;
    assert_null(parse(huge, NULL, &st, &scan));
    assert_int_equal(st, JSONP_TOO_DEEP);
    assert_int_equal(scan.depth, JSON_MAX_DEPTH_DEFAULT + 1);
    free(ok);
    free(deep);
    free(huge);
}

static void test_value_limit(void **state)
{
    (void)state;
    enum json_parse_status st;
    struct json_limits lim = {0, 10, 0};
    json_t *v = parse("[1,2,3,4,5,6,7,8,9]", &lim, &st, NULL); /* 9 + the array */
    assert_int_equal(st, JSONP_OK);
    json_decref(v);
    assert_null(parse("[1,2,3,4,5,6,7,8,9,10]", &lim, &st, NULL));
    assert_int_equal(st, JSONP_TOO_MANY);
    /* keys count, so do empty containers */
    assert_null(parse("{\"a\":{},\"b\":[],\"c\":[{},{},{},{}]}", &lim, &st, NULL)); /* 11 */
    assert_int_equal(st, JSONP_TOO_MANY);
    /* a million empty objects: refused by the walk */
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "[");
    for (int i = 0; i < 1000000; i++)
        buf_puts(&b, i ? ",{}" : "{}");
    buf_puts(&b, "]");
    struct json_scan scan;
    assert_null(parse(b.data, NULL, &st, &scan));
    assert_int_equal(st, JSONP_TOO_MANY);
    assert_int_equal(scan.values, JSON_MAX_VALUES_DEFAULT + 1);
    buf_destroy(&b);
}

static void test_strings_hide_nothing(void **state)
{
    (void)state;
    enum json_parse_status st;
    struct json_limits lim = {2, 5, 0};
    struct json_scan scan;
    const char *s = "{\"k\": \"[[[[[[[[ {{{{ \\\" ]]] 99999999999999999999999 \\\\\"}";
    json_t *v = parse(s, &lim, &st, &scan);
    assert_int_equal(st, JSONP_OK);
    assert_non_null(v);
    assert_int_equal(scan.depth, 1);
    assert_int_equal(scan.values, 3);
    assert_int_equal(scan.big_integers, 0);
    assert_string_equal(json_string_value(json_object_get(v, "k")),
                        "[[[[[[[[ {{{{ \" ]]] 99999999999999999999999 \\");
    json_decref(v);
}

static void test_compact_bytes(void **state)
{
    (void)state;
    struct json_scan scan;
    const char *s = " { \"a b\" :\n [ 1 , true ,\t\"x y\" ] } ";
    assert_int_equal(json_scan_bytes(s, strlen(s), NULL, &scan), JSONP_OK);
    assert_int_equal(scan.compact_bytes, strlen("{\"a b\":[1,true,\"x y\"]}"));
    struct json_limits lim = {0, 0, 21};
    assert_int_equal(json_scan_bytes(s, strlen(s), &lim, &scan), JSONP_TOO_BIG);
    lim.max_bytes = 22;
    assert_int_equal(json_scan_bytes(s, strlen(s), &lim, &scan), JSONP_OK);
}

/* A short input is read in one pass (the walk is skipped): its counts and verdicts are the
 * walk's, and the two-pass path (input longer than the value limit) agrees on the same text. */
static void test_one_pass_counts_as_the_walk(void **state)
{
    (void)state;
    const char *docs[] = {
        " { \"a b\" :\n [ 1 , true ,\t\"x y\", -0.5e3, null, false ] } ",
        "{\"n\": 18446744073709551615, \"m\": -9223372036854775808, \"r\": 1e19}",
        "[1e-1000, 2.5E-0001000, 1e-999]",
        "[[[[{\"k\": [\"\\\" ]\", {}]}]]], [], {}]",
        "\"just a string\"",
        "  42  ",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        const char *d = docs[i];
        struct json_scan walk, one, two;
        enum json_parse_status st;
        assert_int_equal(json_scan_bytes(d, strlen(d), NULL, &walk), JSONP_OK);
        struct json_limits roomy = {64, 100000, 0}, tight = {64, 1, 0};
        json_t *a = parse(d, &roomy, &st, &one); /* one pass */
        assert_int_equal(st, JSONP_OK);
        assert_int_equal(one.depth, walk.depth);
        assert_int_equal(one.values, walk.values);
        assert_int_equal(one.compact_bytes, walk.compact_bytes);
        assert_int_equal(one.big_integers, walk.big_integers);
        assert_int_equal(one.wide_numbers, walk.wide_numbers);
        tight.max_values = walk.values; /* shorter than the input: walked first */
        json_t *b = parse(d, &tight, &st, &two);
        assert_int_equal(st, JSONP_OK);
        assert_true(json_equal(a, b));
        json_decref(a);
        json_decref(b);
    }
    /* too deep in one pass, and the message names the limit */
    struct json_limits lim = {3, 100000, 0};
    char err[160];
    enum json_parse_status st;
    const char *deep = "{\"a\":[[[1]]]}";
    assert_null(json_parse_limited(deep, strlen(deep), JSON_DECODE_ANY, &lim, NULL, &st, err,
                                   sizeof err));
    assert_int_equal(st, JSONP_TOO_DEEP);
    assert_string_equal(err, "nesting deeper than 3 levels");
    const char *bad = "{\"a\":[[1]] x}";
    assert_null(json_parse_limited(bad, strlen(bad), JSON_DECODE_ANY, &lim, NULL, &st, err,
                                   sizeof err));
    assert_int_equal(st, JSONP_INVALID);
}

/* Backslash runs before a quote: an even run leaves the quote closing the string, an odd one
 * escapes it; what follows the string is counted as structure again. */
static void test_backslash_runs(void **state)
{
    (void)state;
    struct json_scan scan;
    static const struct {
        const char *doc;
        size_t values, depth;
    } cases[] = {
        {"[\"a\\\\\", [1]]", 4, 2},        /* "a\\" ends: [1] is structure */
        {"[\"a\\\\\\\", [1]]\"]", 2, 1}, /* "a\\\", [1]]" is one string */
        {"[\"\\\\\", [[1]]]", 5, 3},        /* a run right after the opening quote */
        {"[\"\\\", [[1]]]\"]", 2, 1},
        {"[\"x\\\" \\\\\\\" y\", [1]]", 4, 2}, /* escaped quotes inside, then it ends */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *d = cases[i].doc;
        assert_int_equal(json_scan_bytes(d, strlen(d), NULL, &scan), JSONP_OK);
        assert_int_equal(scan.values, cases[i].values);
        assert_int_equal(scan.depth, cases[i].depth);
        json_error_t je;
        json_t *v = json_loadb(d, strlen(d), JSON_DECODE_ANY, &je);
        assert_non_null(v); /* the cases are JSON, so the walk matches the parser's reading */
        json_decref(v);
    }
    /* unterminated: everything after the quote is string */
    const char *open = "[\"abc\\\" [[[[";
    assert_int_equal(json_scan_bytes(open, strlen(open), NULL, &scan), JSONP_OK);
    assert_int_equal(scan.depth, 1);
    assert_int_equal(scan.compact_bytes, strlen(open));
}

static void test_big_integers_become_reals(void **state)
{
    (void)state;
    enum json_parse_status st;
    struct json_scan scan;
    json_t *v = parse("{\"small\": 7, \"max\": 9223372036854775807, \"min\": -9223372036854775808, "
                      "\"u64\": 18446744073709551615, \"neg\": -9223372036854775809, "
                      "\"e\": 1e19, \"s\": \"18446744073709551615\"}",
                      NULL, &st, &scan);
    assert_int_equal(st, JSONP_OK);
    assert_non_null(v);
    assert_int_equal(scan.big_integers, 1);
    assert_true(json_is_integer(json_object_get(v, "small")));
    assert_true(json_is_integer(json_object_get(v, "max")));
    assert_true(json_integer_value(json_object_get(v, "max")) == INT64_MAX);
    assert_true(json_is_integer(json_object_get(v, "min")));
    assert_true(json_integer_value(json_object_get(v, "min")) == INT64_MIN);
    assert_true(json_is_real(json_object_get(v, "u64")));
    assert_true(json_real_value(json_object_get(v, "u64")) == 18446744073709551615.0);
    assert_true(json_is_real(json_object_get(v, "neg")));
    assert_true(json_is_real(json_object_get(v, "e")));
    assert_string_equal(json_string_value(json_object_get(v, "s")), "18446744073709551615");
    json_decref(v);
    /* without big integers nothing is rewritten */
    v = parse("[9223372036854775807]", NULL, &st, &scan);
    assert_int_equal(scan.big_integers, 0);
    assert_true(json_is_integer(json_array_get(v, 0)));
    json_decref(v);
}

/* Numbers PostgreSQL's numeric may not hold are flagged (the ingest then has the database check
 * the payload); everyday numbers, and digits inside strings, are not. */
static void test_wide_numbers(void **state)
{
    (void)state;
    enum json_parse_status st;
    struct json_scan scan;
    const char *plain[] = {"[1, -2.5, 1e19, 1.5E+308, 1e-999, 5E-0999, 18446744073709551615]",
                           "{\"s\": \"1e-20000\"}"};
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
        json_t *v = parse(plain[i], NULL, &st, &scan);
        assert_non_null(v);
        assert_int_equal(scan.wide_numbers, 0);
        json_decref(v);
    }
    const char *wide[] = {"[1e-20000]", "{\"a\": [0, -5E-0100000]}", "[1.5e-1000]", "[1e+1000]"};
    for (size_t i = 0; i < sizeof wide / sizeof *wide; i++) {
        json_t *v = parse(wide[i], NULL, &st, &scan);
        assert_int_equal(scan.wide_numbers, 1);
        json_decref(v);
    }
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "[0.");
    for (int i = 0; i < 1200; i++)
        buf_puts(&b, "1");
    buf_puts(&b, "]");
    assert_int_equal(json_scan_bytes(b.data, b.len, NULL, &scan), JSONP_OK);
    assert_int_equal(scan.wide_numbers, 1);
    buf_destroy(&b);
}

static void test_invalid_stays_invalid(void **state)
{
    (void)state;
    enum json_parse_status st;
    const char *bad[] = {"", "{", "{\"a\":1,\"a\":2}", "[1,]", "18446744073709551615x", "\"\\u0000\"",
                         "[00018446744073709551615]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_null(parse(bad[i], NULL, &st, NULL));
        assert_int_equal(st, JSONP_INVALID);
    }
}

static void test_loads_wide(void **state)
{
    (void)state;
    /* what PostgreSQL renders for {"bytes": 1e19} and a u64 counter */
    json_t *v = json_loads_wide("{\"bytes\": 10000000000000000000, \"n\": 18446744073709551615, "
                                "\"c\": 3, \"s\": \"10000000000000000000\"}",
                                0);
    assert_non_null(v);
    assert_true(json_real_value(json_object_get(v, "bytes")) == 1e19);
    assert_true(json_is_integer(json_object_get(v, "c")));
    assert_true(json_is_string(json_object_get(v, "s")));
    json_decref(v);
    assert_null(json_loads_wide("{\"a\": ", 0));
    assert_null(json_loads_wide(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_value_limit),
        cmocka_unit_test(test_strings_hide_nothing),
        cmocka_unit_test(test_compact_bytes),
        cmocka_unit_test(test_one_pass_counts_as_the_walk),
        cmocka_unit_test(test_backslash_runs),
        cmocka_unit_test(test_big_integers_become_reals),
        cmocka_unit_test(test_wide_numbers),
        cmocka_unit_test(test_invalid_stays_invalid),
        cmocka_unit_test(test_loads_wide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
