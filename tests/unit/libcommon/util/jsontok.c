/*
 * tests/unit/libcommon/util/jsontok.c - the token reader against json_read(): over the fixtures
 * and hostile bodies (each in a heap block of exactly its size, so ASan sees an over-read) both
 * give the same verdict and error text, and the token index - first/next links, child counts,
 * decoded keys and strings, jtok_getn(), jtok_index(), jtok_json() - describes the same tree.
 * Strings of every length to 48 with each kind of special byte at every place (the scan of plain
 * bytes goes a block at a time) get the same verdict and text as from json_read(). Also: an
 * object whose keys all share one slot under a plain unkeyed hash (built as an attacker
 * builds them) costs no more probes than one with ordinary keys, and the token array is never
 * sized beyond the value limit. Every byte value put as whitespace between tokens is taken
 * exactly when it is a space, tab, LF or CR. Numbers of every length around where a double
 * overflows get json_read()'s verdict. Names of 40 bytes (the longest whose hash a lookup
 * remembers) and 41 bytes are rewritten in place and still find their own key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonread.h"
#include "jsontok.h"

#define READ_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

/* ---- the token index against json_read()'s tree ---- */

static void same_tree(const struct jtok_doc *d, uint32_t i, const json_t *j);

static void same_object(const struct jtok_doc *d, uint32_t i, const json_t *j)
{
    assert_int_equal(jtok_type(d, i), JT_OBJECT);
    assert_int_equal(d->t[i].count, json_object_size(j));
    size_t walked = 0;
    for (uint32_t k = jtok_first(d, i); k != JTOK_NONE; k = jtok_next(d, k), walked++) {
        size_t n;
        const char *key = jtok_str(d, k, &n);
        assert_non_null(key);
        assert_null(memchr(key, 0, n));
        const json_t *v = json_object_getn(j, key, n);
        assert_non_null(v);
        assert_int_equal(jtok_getn(d, i, key, n), k + 1);
        same_tree(d, k + 1, v);
    }
    assert_int_equal(walked, json_object_size(j));
    assert_int_equal(jtok_getn(d, i, "\001" "absent", 7), JTOK_NONE);
}

static void same_array(const struct jtok_doc *d, uint32_t i, const json_t *j)
{
    assert_int_equal(jtok_type(d, i), JT_ARRAY);
    assert_int_equal(d->t[i].count, json_array_size(j));
    size_t idx = 0;
    for (uint32_t e = jtok_first(d, i); e != JTOK_NONE; e = jtok_next(d, e), idx++) {
        assert_true(idx < json_array_size(j));
        assert_int_equal(jtok_index(d, i, idx), e);
        same_tree(d, e, json_array_get(j, idx));
    }
    assert_int_equal(idx, json_array_size(j));
    assert_int_equal(jtok_index(d, i, idx), JTOK_NONE);
}

static void same_tree(const struct jtok_doc *d, uint32_t i, const json_t *j)
{
    size_t n;
    const char *s;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        same_object(d, i, j);
        return;
    case JSON_ARRAY:
        same_array(d, i, j);
        return;
    case JSON_STRING:
        s = jtok_str(d, i, &n);
        assert_non_null(s);
        assert_int_equal(n, json_string_length(j));
        assert_memory_equal(s, json_string_value(j), n);
        return;
    case JSON_INTEGER:
    case JSON_REAL:
        assert_int_equal(jtok_type(d, i), JT_NUMBER);
        break;
    case JSON_TRUE:
        assert_int_equal(jtok_type(d, i), JT_TRUE);
        break;
    case JSON_FALSE:
        assert_int_equal(jtok_type(d, i), JT_FALSE);
        break;
    case JSON_NULL:
        assert_int_equal(jtok_type(d, i), JT_NULL);
        break;
    }
    json_t *back = jtok_json(d, i);
    assert_true(json_equal(back, j));
    json_decref(back);
}

/* data[0..len) copied to a block of exactly len bytes, read both ways. */
static void compare(const char *data, size_t len)
{
    /* no caller's limits: the reader's own bound (jansson's 2048 levels) and its error texts */
    static const struct json_limits lim = {0, 0, 0};
    char *exact = malloc(len ? len : 1);
    memcpy(exact, data, len);
    char e1[200] = "", e2[200] = "";
    json_t *tree = json_read(exact, len, READ_FLAGS, e1, sizeof e1);
    struct jtok_doc d;
    enum json_parse_status st;
    int rc = jtok_parse_limited(&d, exact, len, &lim, NULL, &st, e2, sizeof e2);
    if ((tree != NULL) != (rc == 0) || (!tree && strcmp(e1, e2) != 0))
        fail_msg("verdicts differ on %.*s: tree %s, tokens %s", (int)(len > 200 ? 200 : len), data,
                 tree ? "ok" : e1, rc == 0 ? "ok" : e2);
    if (tree) {
        same_tree(&d, 0, tree);
        json_t *back = jtok_json(&d, 0);
        assert_true(json_equal(back, tree));
        json_decref(back);
    }
    json_decref(tree);
    jtok_free(&d);
    free(exact);
}

static void compare_str(const char *s)
{
    compare(s, strlen(s));
}

static void test_fixtures(void **state)
{
    (void)state;
    const char *shared = getenv("CALSETA_SHARED_DIR");
    assert_non_null(shared);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fixtures", shared);
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        struct buf b;
        buf_init(&b);
        char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
            buf_append(&b, chunk, got);
        fclose(f);
        compare(b.data, b.len);
        /* and every proper prefix: truncated bodies fail at the same place */
        for (size_t cut = 0; cut < b.len; cut += 7)
            compare(b.data, cut);
        buf_destroy(&b);
        files++;
    }
    closedir(dh);
    assert_true(files >= 5);
}

static void test_hostile(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "", " ", "{", "}", "[]", "\"x\"", "1", "null", "{}", "{} x", "{}}", " {} ", "[[[]]]",
        "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}", "{\"\\u0000\":1}", "\"\\u0000\"",
        "{\"a\":\"\xff\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\xe2\x82\"}", "{\"a\":tru}", "{\"a\":01}",
        "{\"a\":-}", "{\"a\":1.}", "{\"a\":1e}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":1,}",
        "{\"a\" 1}", "{a:1}", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\uD834\\uDD1E\"}", "{\"a\":\"\\uDD1E\\uD834\"}", "{\"a\":\"\\uD834x\"}",
        "{\"a\":\"\t\"}", "{\"a\":\"x", "{\"a\":\"x\\", "{\"a\":1e400}", "{\"a\":-0.0e-0}",
        "{\"a\":123456789012345678901234567890}", "[1e19,-9223372036854775809,9223372036854775807]",
        "\xef\xbb\xbf{}", "{\"k\\u00e9\\n\":{\"\":[true,false,null,{}]}}", "[\"\xf0\x9f\x98\x80\"]",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        compare_str(texts[i]);
    static const char nul1[] = "{\"a\":\"x\0y\"}", nul2[] = "{\"a\":1\0}", nul3[] = "{}\0";
    compare(nul1, sizeof nul1 - 1);
    compare(nul2, sizeof nul2 - 1);
    compare(nul3, sizeof nul3 - 1);
    /* objects around the size where the key table starts, a duplicate at the end, nested */
    size_t sizes[] = {15, 16, 17, 33, 300};
    struct buf b;
    buf_init(&b);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int dup = 0; dup < 3; dup++) {
            buf_reset(&b);
            buf_puts(&b, "{\"in\":{\"t\":\"t\"");
            for (size_t i = 0; i < sizes[s]; i++)
                buf_printf(&b, ",\"k%zu\":[%zu,{\"x\":\"\\u00e9%zu\"}]", i, i, i);
            if (dup == 1)
                buf_puts(&b, ",\"k3\":0");
            if (dup == 2)
                buf_puts(&b, ",\"\\u006b1\":0");
            buf_puts(&b, "}}");
            compare(b.data, b.len);
        }
    }
    /* nesting at and past the reader's bound */
    size_t depths[] = {2047, 2048, 2049};
    for (size_t i = 0; i < sizeof depths / sizeof *depths; i++) {
        buf_reset(&b);
        for (size_t k = 0; k < depths[i]; k++)
            buf_puts(&b, k % 2 ? "[" : "{\"a\":");
        buf_puts(&b, "1");
        for (size_t k = depths[i]; k-- > 0;)
            buf_puts(&b, k % 2 ? "]" : "}");
        compare(b.data, b.len);
    }
    buf_destroy(&b);
}

/* Numbers without an exponent are converted only from 301 characters on (shorter ones cannot
 * reach DBL_MAX): around that length and around the overflow itself (309 integer digits), as
 * integers, reals, negative, with long fractions and with exponents, the verdict and error text
 * are json_read()'s. */
static void test_long_numbers(void **state)
{
    (void)state;
    static const size_t digits[] = {19, 20, 299, 300, 301, 307, 308, 309, 310, 400};
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < sizeof digits / sizeof *digits; i++) {
        for (int form = 0; form < 8; form++) {
            buf_reset(&b);
            buf_puts(&b, "{\"a\":");
            if (form & 1)
                buf_puts(&b, "-");
            buf_puts(&b, form & 4 ? "1" : "9");
            for (size_t k = 1; k < digits[i]; k++)
                buf_puts(&b, form & 4 ? "0" : "9");
            if (form & 2)
                buf_puts(&b, ".25");
            buf_puts(&b, "}");
            compare(b.data, b.len);
        }
        buf_reset(&b); /* a long fraction of a small value */
        buf_puts(&b, "[0.");
        for (size_t k = 0; k < digits[i]; k++)
            buf_puts(&b, "0");
        buf_puts(&b, "1]");
        compare(b.data, b.len);
        buf_reset(&b); /* short mantissas with exponents at the edge */
        buf_printf(&b, "[1e%zu,1E%zu,-1.5e%zu,1e-%zu]", digits[i], digits[i], digits[i], digits[i]);
        compare(b.data, b.len);
    }
    buf_destroy(&b);
}

/* The token array is sized for the body but never past what the value limit lets through. */
static void test_token_array_bounded(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"t\":\"");
    for (int i = 0; i < 1 << 20; i++)
        buf_append(&b, "a", 1);
    buf_puts(&b, "\"}");
    const struct json_limits lim = {64, 1000, 0};
    struct jtok_doc d;
    enum json_parse_status st;
    char err[160];
    assert_int_equal(jtok_parse_limited(&d, b.data, b.len, &lim, NULL, &st, err, sizeof err), 0);
    assert_true(d.cap <= lim.max_values + 1);
    assert_int_equal(d.n, 3);
    jtok_free(&d);
    /* and a body denser than one token per 8 bytes still reads (the array grows) */
    buf_reset(&b);
    buf_puts(&b, "[0");
    for (int i = 0; i < 5000; i++)
        buf_puts(&b, ",0");
    buf_puts(&b, "]");
    const struct json_limits wide = {64, 0, 0};
    assert_int_equal(jtok_parse_limited(&d, b.data, b.len, &wide, NULL, &st, err, sizeof err), 0);
    assert_int_equal(d.n, 5002);
    assert_int_equal(d.t[0].count, 5001);
    jtok_free(&d);
    buf_destroy(&b);
}

/* ---- keys that collide under 32-bit FNV-1a in their low bits, for any table up to 2^BITS ---- */

#define FLOOD_BITS 17
#define FLOOD_KEYS 49990

static uint32_t fnv_step(uint32_t h, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)b[i]) * 16777619u;
    return h;
}

/* Finds two 3-byte blocks that take hash state h (low bits) to the same state: each position
 * of a key then takes either block, and 2^m keys of m blocks all end in one state. */
static void collide_pair(uint32_t h, char a[3], char b[3], uint32_t *out)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const uint32_t mask = (1u << FLOOD_BITS) - 1;
    uint32_t *seen = malloc(sizeof *seen << FLOOD_BITS);
    memset(seen, 0xff, sizeof *seen << FLOOD_BITS);
    for (uint32_t i = 0; i < 62u * 62u * 62u; i++) {
        char blk[3] = {alpha[i / 3844], alpha[i / 62 % 62], alpha[i % 62]};
        uint32_t r = fnv_step(h, blk, 3) & mask;
        if (seen[r] != UINT32_MAX) {
            uint32_t j = seen[r];
            a[0] = alpha[j / 3844], a[1] = alpha[j / 62 % 62], a[2] = alpha[j % 62];
            memcpy(b, blk, 3);
            *out = r;
            free(seen);
            return;
        }
        seen[r] = i;
    }
    fail_msg("no colliding blocks");
}

/* {"title":"x", <n keys>:0} in an exact-size heap block; colliding keys, or numbered ones of
 * the same length. */
static char *flood_body(int colliding, size_t n, size_t *len)
{
    int m = 0;
    while ((1ul << m) < n)
        m++;
    char (*pairs)[2][3] = malloc(sizeof *pairs * (size_t)m);
    uint32_t h = 2166136261u & ((1u << FLOOD_BITS) - 1);
    for (int j = 0; colliding && j < m; j++)
        collide_pair(h, pairs[j][0], pairs[j][1], &h);
    size_t klen = 3 * (size_t)m;
    struct buf b;
    buf_init(&b);
    buf_append(&b, "{\"title\":\"x\"", 12);
    for (size_t i = 0; i < n; i++) {
        char key[256];
        if (colliding)
            for (int j = 0; j < m; j++)
                memcpy(key + 3 * j, pairs[j][(i >> j) & 1], 3);
        else
            snprintf(key, sizeof key, "%0*zu", (int)klen, i);
        buf_append(&b, ",\"", 2);
        buf_append(&b, key, klen);
        buf_append(&b, "\":0", 3);
    }
    buf_append(&b, "}", 1);
    free(pairs);
    char *body = malloc(b.len);
    memcpy(body, b.data, b.len);
    *len = b.len;
    buf_destroy(&b);
    return body;
}

static size_t parse_probes(const char *body, size_t len)
{
    static const struct json_limits lim = {JSON_MAX_DEPTH_DEFAULT, 0, 0};
    struct jtok_doc d;
    enum json_parse_status st;
    char err[160];
    if (jtok_parse_limited(&d, body, len, &lim, NULL, &st, err, sizeof err) != 0)
        fail_msg("parse: %s", err);
    assert_int_equal(d.t[0].count, FLOOD_KEYS + 1);
    /* every key is found through the table */
    assert_int_equal(jtok_type(&d, jtok_get(&d, 0, "title")), JT_STRING);
    size_t probes = d.probes;
    jtok_free(&d);
    return probes;
}

static void test_colliding_keys(void **state)
{
    (void)state;
    size_t len, clen;
    char *flood = flood_body(1, FLOOD_KEYS, &len);
    char *ctl = flood_body(0, FLOOD_KEYS, &clen);
    assert_int_equal(len, clen);
    /* the keys really do share one slot under the unkeyed hash */
    const char *k1 = flood + 14, *k2 = k1 + 48 + 5; /* {"title":"x","K1":0,"K2 */
    assert_int_equal(fnv_step(2166136261u, k1, 48) & 0x1ffff, fnv_step(2166136261u, k2, 48) & 0x1ffff);
    size_t pf = parse_probes(flood, len), pc = parse_probes(ctl, clen);
    print_message("probes: colliding keys %zu, ordinary keys %zu (%d keys)\n", pf, pc, FLOOD_KEYS);
    /* a table kept at most half full: a few steps per key, not one per earlier key */
    assert_true(pf < 4 * (size_t)FLOOD_KEYS);
    assert_true(pc < 4 * (size_t)FLOOD_KEYS);
    free(flood);
    free(ctl);
}

/* Objects of every size up to 300 keys, across the linear check's bound and each growth of the
 * key table: every key is found, an absent one is not, and a duplicate last key is refused. */
static void test_key_tables_every_size(void **state)
{
    (void)state;
    for (int n = 1; n <= 300; n++) {
        for (int dup = 0; dup < 2; dup++) {
            struct buf b;
            buf_init(&b);
            buf_puts(&b, "{");
            for (int i = 0; i < n; i++)
                buf_printf(&b, "%s\"key.number.%d\":%d", i ? "," : "", i, i);
            if (dup)
                buf_printf(&b, ",\"key.number.%d\":0", n / 2);
            buf_puts(&b, "}");
            struct jtok_doc d;
            enum json_parse_status st;
            char err[160], key[32];
            int rc = jtok_parse_limited(&d, b.data, b.len, NULL, NULL, &st, err, sizeof err);
            if (dup) {
                assert_int_equal(rc, -1);
                assert_non_null(strstr(err, "duplicate"));
            } else {
                assert_int_equal(rc, 0);
                for (int i = 0; i < n; i++) {
                    snprintf(key, sizeof key, "key.number.%d", i);
                    assert_int_equal(jtok_type(&d, jtok_get(&d, 0, key)), JT_NUMBER);
                }
                assert_int_equal(jtok_get(&d, 0, "key.number.x"), JTOK_NONE);
            }
            jtok_free(&d);
            buf_destroy(&b);
        }
    }
}

/* Lookups in a key table remember a name's hash by the name's address: one buffer rewritten with
 * names of the same length, the same name at two addresses, and names past the remembered
 * length all find their own key (or none), in a document and in a second one. */
static long long num(const struct jtok_doc *d, uint32_t t)
{
    json_t *v = jtok_json(d, t);
    long long x = json_is_integer(v) ? (long long)json_integer_value(v) : -1;
    json_decref(v);
    return x;
}

static void test_lookup_names_reused(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (int i = 0; i < 40; i++)
        buf_printf(&b, "%s\"name_%02d\":%d", i ? "," : "", i, i);
    buf_puts(&b, ",\"a.very.long.dotted.key.name.past.forty.bytes.x\":\"long\"");
    /* 40 and 41 bytes, two of each differing only in the last byte */
    static const char n40[] = "forty.bytes.exactly.remembered.by.name.";
    static const char n41[] = "forty.one.bytes.never.remembered.by.name";
    for (int last = 1; last <= 2; last++)
        buf_printf(&b, ",\"%s%d\":%d,\"%s%d\":%d", n40, last, 400 + last, n41, last, 410 + last);
    buf_puts(&b, "}");
    for (int doc = 0; doc < 2; doc++) {
        struct jtok_doc d;
        enum json_parse_status st;
        char err[160], key[64];
        assert_int_equal(jtok_parse_limited(&d, b.data, b.len, NULL, NULL, &st, err, sizeof err), 0);
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < 45; i++) {
                snprintf(key, sizeof key, "name_%02d", i);
                uint32_t t = jtok_get(&d, 0, key);
                if (i < 40) {
                    assert_int_equal(jtok_type(&d, t), JT_NUMBER);
                    assert_int_equal(num(&d, t), i);
                } else {
                    assert_int_equal(t, JTOK_NONE);
                }
            }
            char *copy = strdup("name_07");
            assert_int_equal(num(&d, jtok_get(&d, 0, copy)), 7);
            assert_int_equal(num(&d, jtok_get(&d, 0, "name_07")), 7);
            free(copy);
            snprintf(key, sizeof key, "a.very.long.dotted.key.name.past.forty.bytes.x");
            assert_int_equal(jtok_type(&d, jtok_get(&d, 0, key)), JT_STRING);
            key[strlen(key) - 1] = 'y';
            assert_int_equal(jtok_get(&d, 0, key), JTOK_NONE);
            for (int w = 0; w < 2; w++) {
                const char *stem = w ? n41 : n40;
                size_t len = strlen(stem) + 1;
                assert_int_equal(len, w ? 41 : 40);
                snprintf(key, sizeof key, "%s1", stem);
                assert_int_equal(num(&d, jtok_get(&d, 0, key)), (w ? 410 : 400) + 1);
                key[len - 1] = '2'; /* same address, same length */
                assert_int_equal(num(&d, jtok_get(&d, 0, key)), (w ? 410 : 400) + 2);
                key[len - 1] = '3';
                assert_int_equal(jtok_get(&d, 0, key), JTOK_NONE);
                key[len - 1] = '1';
                assert_int_equal(num(&d, jtok_get(&d, 0, key)), (w ? 410 : 400) + 1);
                assert_int_equal(jtok_getn(&d, 0, key, len - 1), JTOK_NONE); /* a prefix */
            }
        }
        jtok_free(&d);
    }
    buf_destroy(&b);
}

/* Small objects skip the walk over earlier keys for a key whose length and first byte no earlier
 * key has: duplicates are still refused when written differently (escapes), when other keys
 * share their class, and as the last key; keys that only share a class are accepted. */
static void test_small_object_duplicates(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        int ok;
    } cases[] = {
        {"{\"ab\":1,\"ac\":2,\"ab\":3}", 0},
        {"{\"ab\":1,\"ba\":2,\"ac\":3,\"bb\":4}", 1},
        {"{\"\\u0061b\":1,\"ab\":2}", 0},
        {"{\"ab\":1,\"a\\u0062\":2}", 0},
        {"{\"\":1,\"x\":2,\"\":3}", 0},
        {"{\"\":1,\"x\":2}", 1},
        {"{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"a\":9}", 0},
        {"{\"key1\":1,\"key2\":2,\"key3\":3,\"kez1\":4,\"key4\":5}", 1},
        {"{\"key1\":1,\"key2\":2,\"key3\":3,\"kez1\":4,\"key2\":5}", 0},
        {"{\"o\":{\"ab\":1},\"p\":{\"ab\":2,\"ab\":3}}", 0},
        {"{\"o\":{\"ab\":1},\"p\":{\"ab\":2}}", 1},
        /* the outer object's keys seen before and after an inner object */
        {"{\"a\":1,\"o\":{\"x\":1},\"a\":2}", 0},
        {"{\"a\":1,\"o\":{\"a\":1},\"b\":2}", 1},
        {"{\"a\":1,\"o\":[{\"q\":1},{\"a\":2}],\"a\":3}", 0},
        /* one key written two ways: escaped solidus, a two-byte character, a surrogate pair */
        {"{\"/\":1,\"\\/\":2}", 0},
        {"{\"\xc3\xa9\":1,\"\\u00e9\":2}", 0},
        {"{\"\xf0\x9f\x98\x80\":1,\"\\ud83d\\ude00\":2}", 0},
        {"{\"\xc3\xa9\":1,\"\\u00e8\":2}", 1},
        /* keys longer than 64 bytes, differing only at the end */
        {"{\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk1\":1,"
         "\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk2\":2}", 1},
        {"{\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk1\":1,"
         "\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk1\":2}", 0},
        /* sixteen keys of sixteen classes, a duplicate of the first as key 16 and as key 17 */
        {"{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1,\"j\":1,"
         "\"k\":1,\"l\":1,\"m\":1,\"n\":1,\"o\":1,\"a\":1}", 0},
        {"{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1,\"j\":1,"
         "\"k\":1,\"l\":1,\"m\":1,\"n\":1,\"o\":1,\"p\":1,\"a\":1}", 0},
        {"{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1,\"j\":1,"
         "\"k\":1,\"l\":1,\"m\":1,\"n\":1,\"o\":1,\"p\":1,\"q\":1}", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct jtok_doc d;
        enum json_parse_status st;
        char err[160];
        int rc = jtok_parse_limited(&d, cases[i].doc, strlen(cases[i].doc), NULL, NULL, &st, err,
                                    sizeof err);
        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            jtok_free(&d);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, "duplicate"));
        }
        compare_str(cases[i].doc); /* the same verdict and position as jsonread.c */
    }
}

static void test_string_scan_positions(void **state)
{
    (void)state;
    /* (bytes, length): a NUL among them, so the documents are put together with memcpy */
    static const struct {
        const char *s;
        size_t n;
    } specials[] = {
        {"\"", 1}, {"\\", 1}, {"\\n", 2}, {"\\u00e9", 6}, {"\0", 1}, {"\x01", 1}, {"\x1f", 1},
        {" ", 1}, {"~", 1}, {"\x7f", 1}, {"\x80", 1}, {"\xff", 1}, {"\xc3\xa9", 2},
        {"\xe2\x82\xac", 3}, {"\xf0\x9f\x98\x80", 4}, {"\xf4\x8f\xbf\xbf", 4}, {"\xc0\x80", 2},
        {"\xe0\x80\x80", 3}, {"\xed\xa0\x80", 3}, {"\xf4\x90\x80\x80", 4}, {"\xc3", 1},
        {"\xe2\x82", 2}, {"\xf0\x9f\x98", 3},
    };
    static const char before[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    static const char after[] = "0123456789012345678901234567890123456789012345678";
    char doc[128];
    for (size_t len = 0; len <= 48; len++) {
        for (size_t k = 0; k <= len; k++) {
            for (size_t s = 0; s < sizeof specials / sizeof *specials; s++) {
                /* ["<k plain bytes><special><len - k plain bytes>"] */
                size_t n = 0;
                memcpy(doc + n, "[\"", 2), n += 2;
                memcpy(doc + n, before, k), n += k;
                memcpy(doc + n, specials[s].s, specials[s].n), n += specials[s].n;
                memcpy(doc + n, after, len - k), n += len - k;
                memcpy(doc + n, "\"]", 2), n += 2;
                compare(doc, n);
                compare(doc, n - 2); /* the string never closed */
            }
        }
    }
}

/* Every byte value as whitespace at each place between tokens: accepted exactly for space, tab,
 * LF and CR (written here, not taken from the reader), with json_read()'s verdict and text. Each
 * template is invalid for any other single byte in the gap (no byte there can make a number or
 * a literal longer, or close a container). */
static void test_whitespace_bytes(void **state)
{
    (void)state;
    static const char *const templates[] = {
        "@{}",         "{}@",          "{@\"a\":true}", "{\"a\"@:true}", "{\"a\":@true}",
        "{\"a\":true@}", "[true,@null]", "[true@,null]", "[@null]",     "[null@]",
        "@\"s\"@",      "{\"a\":[@{}@]@}",
    };
    static const struct json_limits lim = {0, 0, 0};
    for (size_t t = 0; t < sizeof templates / sizeof templates[0]; t++) {
        for (int byte = 0; byte < 256; byte++) {
            char doc[32];
            size_t len = strlen(templates[t]);
            memcpy(doc, templates[t], len);
            for (size_t i = 0; i < len; i++)
                if (doc[i] == '@')
                    doc[i] = (char)byte;
            int ws = byte == ' ' || byte == '\t' || byte == '\n' || byte == '\r';
            struct jtok_doc d;
            enum json_parse_status st;
            char err[200];
            int rc = jtok_parse_limited(&d, doc, len, &lim, NULL, &st, err, sizeof err);
            if ((rc == 0) != ws)
                fail_msg("byte 0x%02x in %s: %s", byte, templates[t], rc == 0 ? "accepted" : err);
            jtok_free(&d);
            compare(doc, len);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_long_numbers),
        cmocka_unit_test(test_string_scan_positions),
        cmocka_unit_test(test_token_array_bounded),
        cmocka_unit_test(test_colliding_keys),
        cmocka_unit_test(test_key_tables_every_size),
        cmocka_unit_test(test_lookup_names_reused),
        cmocka_unit_test(test_small_object_duplicates),
        cmocka_unit_test(test_whitespace_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
