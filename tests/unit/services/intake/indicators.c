/*
 * tests/unit/services/intake/indicators.c - the indicator set (strip, blank drop, de-dup, NULs,
 * growth), passes 2 and 3, the type check and the fingerprint against MD5 values computed
 * independently with Python's hashlib; sets past the fingerprint's stack sizes (more than 64
 * indicators, inputs of 2047-2049 bytes, values of hundreds of KB between small ones) against a
 * fingerprint computed here from the pairs added.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "services/intake/source.h"

static char *set_text(const struct indicator_set *s)
{
    json_t *j = indicators_to_json(s);
    char *t = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    return t;
}

static void expect_set(const struct indicator_set *s, const char *want)
{
    char *t = set_text(s);
    assert_string_equal(t, want);
    free(t);
}

static void test_strip(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"  a b  ", "a b"},
        {"\t\n\v\f\r\x1c\x1d\x1e\x1f x", "x"},
        {"\xc2\x85\xc2\xa0x\xe3\x80\x80", "x"},                     /* U+0085 U+00A0 .. U+3000 */
        {"\xe2\x80\xa8x\xe2\x80\xa9\xe2\x80\xaf", "x"},             /* U+2028 U+2029 U+202F */
        {"\xe1\x9a\x80x\xe2\x81\x9f\xe2\x80\x8a", "x"},             /* U+1680 U+205F U+200A */
        {"\xe2\x80\x8bx\xe2\x80\x8b", "\xe2\x80\x8bx\xe2\x80\x8b"}, /* U+200B is not space */
        {"\xef\xbb\xbfx", "\xef\xbb\xbfx"},                         /* nor is the BOM */
        {"\xc3\xa9", "\xc3\xa9"},
        {"   ", ""},
        {"", ""},
        {"\x80 x \xe3\x80", "\x80 x \xe3\x80"}, /* stray bytes are never whitespace */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *p = cases[i].in;
        size_t n = py_strip(&p, strlen(p));
        if (n != strlen(cases[i].want) || memcmp(p, cases[i].want, n))
            fail_msg("strip case %zu: got [%.*s]", i, (int)n, p);
    }
}

static void test_set(void **state)
{
    (void)state;
    struct indicator_set s;
    indicator_set_init(&s);
    assert_int_equal(indicator_set_add(&s, "ip", " 1.1.1.1 ", 9), 1);
    assert_int_equal(indicator_set_add(&s, "ip", "1.1.1.1", 7), 0);
    assert_int_equal(indicator_set_add(&s, "ip", "1.1.1.1\xe3\x80\x80", 10), 0);
    assert_int_equal(indicator_set_add(&s, "domain", "1.1.1.1", 7), 1); /* other type */
    assert_int_equal(indicator_set_add(&s, "ip", "1.1.1.10", 7), 0);    /* len cuts it */
    assert_int_equal(indicator_set_add(&s, "ip", "", 0), 0);
    assert_int_equal(indicator_set_add(&s, "ip", " \t", 2), 0);
    assert_int_equal(indicator_set_add(&s, "ip", "2.2.2.2\0junk", 12), 1); /* up to the NUL */
    assert_int_equal(indicator_set_add(&s, "ip", "2.2.2.2", 7), 0);
    assert_int_equal(indicator_set_add(&s, "ip", "\0x", 2), 0);
    assert_int_equal(indicator_set_add(&s, NULL, "x", 1), 0);
    assert_int_equal(indicator_set_add(&s, "ip", NULL, 0), 0);
    assert_int_equal(indicator_set_add(&s, "url", "HTTP://A", 8), 1);
    assert_int_equal(indicator_set_add(&s, "url", "http://a", 8), 1); /* case matters */
    assert_int_equal(indicator_set_add(&s, "made_up", "v", 1), 1);    /* no type check here */
    expect_set(&s, "[{\"type\":\"ip\",\"value\":\"1.1.1.1\"},{\"type\":\"domain\",\"value\":"
                   "\"1.1.1.1\"},{\"type\":\"ip\",\"value\":\"2.2.2.2\"},{\"type\":\"url\","
                   "\"value\":\"HTTP://A\"},{\"type\":\"url\",\"value\":\"http://a\"},"
                   "{\"type\":\"made_up\",\"value\":\"v\"}]");

    json_t *v = json_stringn("a\0b", 3);
    assert_int_equal(indicator_set_add_json(&s, "account", v), 1);
    assert_string_equal(s.items[s.n - 1].value, "a");
    json_decref(v);
    v = json_integer(5);
    assert_int_equal(indicator_set_add_json(&s, "account", v), 0);
    json_decref(v);
    assert_int_equal(indicator_set_add_json(&s, "account", NULL), 0);
    indicator_set_destroy(&s);
    assert_int_equal(s.n, 0);
    indicator_set_destroy(&s); /* twice is harmless */

    /* Growth: 100k distinct plus the same again. */
    indicator_set_init(&s);
    char buf[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 100000; i++) {
            int n = snprintf(buf, sizeof buf, "v%d", i);
            assert_int_equal(indicator_set_add(&s, "domain", buf, (size_t)n), round == 0);
        }
    assert_int_equal(s.n, 100000);
    assert_string_equal(s.items[99999].value, "v99999");
    for (int i = 0; i < 100000; i += 997) {
        snprintf(buf, sizeof buf, "v%d", i);
        assert_string_equal(s.items[i].value, buf);
        assert_string_equal(s.items[i].type, "domain");
    }
    indicator_set_destroy(&s);

    /* Strings larger than a text block, between small ones, and a type and value taken from the
     * set's own items while it grows: every string stays where it was put. */
    indicator_set_init(&s);
    char *big = malloc(5001);
    memset(big, 'b', 5000);
    big[5000] = '\0';
    assert_int_equal(indicator_set_add(&s, "url", "small", 5), 1);
    assert_int_equal(indicator_set_add(&s, "url", big, 5000), 1);
    big[0] = 'c';
    assert_int_equal(indicator_set_add(&s, "url", big, 5000), 1);
    for (int i = 0; i < 300; i++) {
        int n = snprintf(buf, sizeof buf, "%d.example", i);
        assert_int_equal(indicator_set_add(&s, s.items[0].type, buf, (size_t)n), 1);
    }
    assert_int_equal(indicator_set_add(&s, s.items[1].type, s.items[1].value, 5000), 0);
    assert_int_equal(indicator_set_add(&s, "domain", s.items[2].value, 5000), 1);
    assert_string_equal(s.items[0].value, "small");
    assert_int_equal(strlen(s.items[1].value), 5000);
    assert_int_equal(s.items[1].value[0], 'b');
    assert_string_equal(s.items[2].value, big);
    assert_string_equal(s.items[s.n - 1].value, big);
    assert_string_equal(s.items[s.n - 1].type, "domain");
    assert_string_equal(s.items[302].value, "299.example");
    free(big);
    indicator_set_destroy(&s);
}

static void test_type_valid(void **state)
{
    (void)state;
    static const char *const good[] = {"ip",          "domain", "hash_md5", "hash_sha1",
                                       "hash_sha256", "url",    "email",    "account"};
    for (size_t i = 0; i < 8; i++)
        assert_true(indicator_type_valid(good[i]));
    static const char *const bad[] = {"IP",          "ip ",  "",         "hash", "sha256",
                                      "hash_sha512", "user", "hostname", "ipv6"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(indicator_type_valid(bad[i]));
    assert_false(indicator_type_valid(NULL));
}

static void test_pass2(void **state)
{
    (void)state;
    struct normalized_alert a;
    normalized_alert_init(&a);
    a.title = strdup("evil.example");
    a.severity = strdup("High");
    a.normalized_fields = json_object();
    json_object_set_new(a.normalized_fields, "src_ip", json_string(" 10.0.0.1 "));
    json_object_set_new(a.normalized_fields, "dst_ip", json_integer(4));
    json_object_set_new(a.normalized_fields, "actor_email", json_string("   "));
    json_object_set_new(a.normalized_fields, "http_url", json_string("https://u.example/"));
    json_t *fields = normalized_alert_fields(&a, "generic");
    assert_string_equal(json_string_value(json_object_get(fields, "source_name")), "generic");
    assert_true(json_is_null(json_object_get(fields, "description")));

    static const struct indicator_mapping m[] = {
        {NULL, "src_ip", "ip"},
        {NULL, "dst_ip", "ip"},
        {NULL, "actor_email", "email"},
        {"generic", "http_url", "url"},
        {"sentinel", "title", "domain"}, /* other source: skipped */
        {"generic", "title", "domain"},  /* any top-level field of the alert */
        {NULL, "missing", "ip"},
        {NULL, "tags", "account"},
        {NULL, NULL, "ip"},
        {NULL, "src_ip", NULL},
    };
    struct indicator_set s;
    indicator_set_init(&s);
    indicators_extract_normalized(fields, "generic", m, sizeof m / sizeof *m, &s);
    expect_set(&s, "[{\"type\":\"ip\",\"value\":\"10.0.0.1\"},{\"type\":\"url\",\"value\":"
                   "\"https://u.example/\"},{\"type\":\"domain\",\"value\":\"evil.example\"}]");
    indicator_set_destroy(&s);

    /* The built-in sources leave normalized_fields empty: the 14 system mappings find none. */
    indicator_set_init(&s);
    indicators_extract_normalized(fields, NULL, m, 4, &s);
    assert_int_equal(s.n, 1);
    indicators_extract_normalized(NULL, "generic", m, 4, &s);
    assert_int_equal(s.n, 1);
    indicator_set_destroy(&s);
    json_decref(fields);
    normalized_alert_destroy(&a);
}

static void test_pass3(void **state)
{
    (void)state;
    json_t *raw = json_loads(
        "{\"a\":{\"b\":{\"c\":\" deep.example \"}},\"list\":[{\"x\":\"1.1.1.1\"}],"
        "\"arr\":[\"2.2.2.2\"],\"num\":{\"n\":5},\"flat.key\":\"flat\",\"\":{\"\":\"empty\"},"
        "\"blank\":\"\",\"nul\":null,\"u\":\"user\"}",
        0, NULL);
    assert_non_null(raw);
    static const struct indicator_mapping m[] = {
        {NULL, "a.b.c", "domain"}, {NULL, "a.b", "domain"}, /* an object: skipped */
        {NULL, "list.0.x", "ip"},                           /* no list indexing */
        {NULL, "arr", "ip"},                                /* lists of strings are not taken */
        {NULL, "num.n", "ip"},     {NULL, "flat.key", "domain"}, /* walked as nested, so not found
                                                                  */
        {NULL, ".", "url"},        {NULL, "blank", "url"},       {NULL, "nul", "url"},
        {NULL, "a.b.c.d", "url"},  {"splunk", "u", "account"},   {"elastic", "u", "email"},
        {NULL, "a.b.c", "domain"},
    };
    struct indicator_set s;
    indicator_set_init(&s);
    indicators_extract_raw(raw, "splunk", m, sizeof m / sizeof *m, &s);
    expect_set(&s, "[{\"type\":\"domain\",\"value\":\"deep.example\"},{\"type\":\"url\","
                   "\"value\":\"empty\"},{\"type\":\"account\",\"value\":\"user\"}]");
    indicator_set_destroy(&s);
    indicator_set_init(&s);
    indicators_extract_raw(NULL, "splunk", m, sizeof m / sizeof *m, &s);
    json_t *str = json_string("a");
    indicators_extract_raw(str, "splunk", m, sizeof m / sizeof *m, &s);
    assert_int_equal(s.n, 0);
    json_decref(str);
    indicator_set_destroy(&s);
    json_decref(raw);
}

static void test_fingerprint(void **state)
{
    (void)state;
    struct indicator_set s;
    indicator_set_init(&s);
    char fp[33];
    /* python3 -c 'import hashlib; print(hashlib.md5(b"t\0generic\0").hexdigest())' */
    indicators_fingerprint("t", "generic", &s, fp);
    assert_string_equal(fp, "24804d639541bec0f0f0ce6597f4d26c");

    /* Sorted by (type, value), not by the "type:value" string: hash_sha1 before hash_sha256
     * although "hash_sha1:" > "hash_sha256:"; "10.0.0.10" < "10.0.0.2"; é after z.
     * python3 -c 'import hashlib; i=[("hash_sha256","b"),("hash_sha1","a"),("ip","10.0.0.2"),
     *   ("ip","10.0.0.10"),("domain","é.example"),("domain","z.example")];
     *   print(hashlib.md5(("T\0generic\0"+"|".join(f"{t}:{v}" for t,v in sorted(i)))
     *   .encode()).hexdigest())' */
    indicator_set_add(&s, "hash_sha256", "b", 1);
    indicator_set_add(&s, "hash_sha1", "a", 1);
    indicator_set_add(&s, "ip", "10.0.0.2", 8);
    indicator_set_add(&s, "ip", "10.0.0.10", 9);
    indicator_set_add(&s, "domain", "\xc3\xa9.example", 10);
    indicator_set_add(&s, "domain", "z.example", 9);
    indicators_fingerprint("T", "generic", &s, fp);
    assert_string_equal(fp, "1e500e80bd37eba682eee1db3e752eeb");
    /* Insertion order does not matter. */
    struct indicator_set r;
    indicator_set_init(&r);
    for (size_t i = s.n; i-- > 0;)
        indicator_set_add(&r, s.items[i].type, s.items[i].value, strlen(s.items[i].value));
    char fp2[33];
    indicators_fingerprint("T", "generic", &r, fp2);
    assert_string_equal(fp, fp2);
    /* Title and source both count. */
    indicators_fingerprint("T ", "generic", &r, fp2);
    assert_string_not_equal(fp, fp2);
    indicators_fingerprint("T", "splunk", &r, fp2);
    assert_string_not_equal(fp, fp2);
    indicators_fingerprint(NULL, NULL, &r, fp2); /* treated as empty, no crash */
    assert_int_equal(strlen(fp2), 32);
    indicator_set_destroy(&r);
    indicator_set_destroy(&s);
}

/* The pairs a test added, kept apart from the set, and the fingerprint computed from them. */
struct pair {
    char *type, *value;
};

static int pair_cmp(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    return c ? c : strcmp(x->value, y->value);
}

static void reference_fp(const char *title, const char *source, struct pair *p, size_t n,
                         char out[33])
{
    qsort(p, n, sizeof *p, pair_cmp);
    size_t cap = strlen(title) + strlen(source) + 2, len = 0;
    for (size_t i = 0; i < n; i++)
        cap += strlen(p[i].type) + strlen(p[i].value) + 2;
    char *in = malloc(cap + 1);
    assert_non_null(in);
    len += (size_t)sprintf(in + len, "%s", title) + 1;
    len += (size_t)sprintf(in + len, "%s", source) + 1;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(in + len, "%s%s:%s", i ? "|" : "", p[i].type, p[i].value);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    assert_int_equal(EVP_Digest(in, len, md, &mdlen, EVP_md5(), NULL), 1);
    assert_int_equal(mdlen, 16);
    for (unsigned i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    free(in);
}

/* The set's fingerprint for (title, source) equals the reference. */
static void expect_fp(const char *title, const char *source, const struct indicator_set *s,
                      struct pair *p, size_t n)
{
    char got[33], want[33];
    indicators_fingerprint(title, source, s, got);
    reference_fp(title, source, p, n, want);
    assert_string_equal(got, want);
}

static void test_fingerprint_heap(void **state)
{
    (void)state;
    static const char *const types[] = {"ip", "domain", "hash_md5", "url", "email"};
    for (size_t count = 1; count <= 200; count = count < 60 ? count + 59 : count + 1) {
        if (count > 66 && count != 200)
            continue; /* 1, 60, 64, 65, 66 and 200 items */
        struct indicator_set s;
        indicator_set_init(&s);
        struct pair *p = calloc(count, sizeof *p);
        assert_non_null(p);
        size_t base = strlen("generic") + 2; /* need with an empty title */
        for (size_t i = 0; i < count; i++) {
            char v[32];
            /* inserted in an order the sort must undo */
            snprintf(v, sizeof v, "v%zu.example", (i * 37) % count);
            p[i].type = strdup(types[i % 5]);
            p[i].value = strdup(v);
            assert_int_equal(indicator_set_add(&s, p[i].type, v, strlen(v)), 1);
            base += strlen(p[i].type) + strlen(v) + 2;
        }
        expect_fp("T", "generic", &s, p, count);
        /* inputs sized 2047, 2048 and 2049 bytes (the stack buffer is 2048), when reachable */
        for (size_t need = 2047; need <= 2049; need++) {
            if (base >= need)
                continue;
            char *title = malloc(need - base + 1);
            assert_non_null(title);
            memset(title, 'T', need - base);
            title[need - base] = '\0';
            expect_fp(title, "generic", &s, p, count);
            free(title);
        }
        for (size_t i = 0; i < count; i++)
            free(p[i].type), free(p[i].value);
        free(p);
        indicator_set_destroy(&s);
    }
}

/* Huge values between small ones: every string stays intact wherever its block went, and the
 * fingerprint is the reference's. */
static void test_large_values(void **state)
{
    (void)state;
    static const size_t sizes[] = {3, 300, 200000, 5, 255, 256, 257, 700000, 9, 1023, 40000, 7};
    enum { N = sizeof sizes / sizeof sizes[0], REPEAT = 40 };
    struct indicator_set s;
    indicator_set_init(&s);
    struct pair p[N * REPEAT];
    size_t n = 0;
    for (size_t r = 0; r < REPEAT; r++)
        for (size_t i = 0; i < N; i++, n++) {
            size_t len = sizes[i] < 100000 || r < 2 ? sizes[i] : sizes[i] / 100;
            char *v = malloc(len + 1);
            assert_non_null(v);
            for (size_t k = 0; k < len; k++)
                v[k] = (char)('a' + (k * 7 + r + i) % 26);
            char tag[48]; /* unique, cut to the value's length */
            size_t m = (size_t)snprintf(tag, sizeof tag, "%zu-%zu-", r, i);
            if (m > len)
                m = len;
            memcpy(v, tag, m);
            if (m < len)
                v[m] = 'x';
            v[len] = '\0';
            p[n].type = strdup(i % 2 ? "url" : "domain");
            p[n].value = v;
            assert_int_equal(indicator_set_add(&s, p[n].type, v, len), 1);
        }
    assert_int_equal(s.n, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(s.items[i].type, p[i].type);
        assert_string_equal(s.items[i].value, p[i].value);
    }
    expect_fp("big", "generic", &s, p, n);
    for (size_t i = 0; i < n; i++)
        free(p[i].type), free(p[i].value);
    indicator_set_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strip),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_type_valid),
        cmocka_unit_test(test_pass2),
        cmocka_unit_test(test_pass3),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_fingerprint_heap),
        cmocka_unit_test(test_large_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
