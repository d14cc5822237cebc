/*
 * tests/unit/libcommon/crypto/apikey.c - API key format, bcrypt compatibility and the bearer parser.
 *
 * bcrypt: every vector of $CALSETA_SHARED_DIR/vectors/bcrypt.json (made by pyca/bcrypt, costs
 * 4, 10 and 12) verifies as recorded; generate + hash + verify round-trips at low cost; inputs
 * over 72 bytes are refused (never truncated, never a crash); broken hashes are errors.
 * Bearer parsing: case, spacing, tabs, NUL bytes, over-long and non-ASCII tokens.
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

#include "apikey.h"
#include "crypto.h"
#include "util.h"
#include "tests/unit/testdata.h"

static json_t *load_vectors(const char *name)
{
    return test_data_json("vectors", name);
}

static void test_generate(void **state)
{
    (void)state;
    char key[48], prefix[9], other[48], p2[9];
    for (int i = 0; i < 100; i++) {
        memset(key, 'z', sizeof key);
        apikey_generate(key, prefix);
        assert_int_equal(strlen(key), APIKEY_LEN);
        assert_memory_equal(key, "cai_", 4);
        assert_int_equal(strlen(prefix), 8);
        assert_memory_equal(prefix, key, 8);
        for (int j = 4; j < APIKEY_LEN; j++)
            if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", key[j]))
                fail_msg("bad char in %s", key);
        /* 43 chars encode 32 bytes: the last char carries 2 zero bits */
        uint8_t raw[40];
        size_t n = 0;
        assert_int_equal(crypto_b64_decode(key + 4, 43, CRYPTO_B64_URL | CRYPTO_B64_NOPAD, raw, &n),
                         0);
        assert_int_equal(n, 32);
        char tok[73], pre[9];
        char hdr[80];
        snprintf(hdr, sizeof hdr, "Bearer %s", key);
        assert_int_equal(apikey_parse_bearer(hdr, strlen(hdr), tok, pre), APIKEY_OK);
        assert_string_equal(tok, key);
        assert_string_equal(pre, prefix);
    }
    apikey_generate(other, p2);
    assert_string_not_equal(key, other);
}

static void test_vectors(void **state)
{
    (void)state;
    json_t *v = load_vectors("bcrypt.json");
    size_t i;
    json_t *e;
    int seen_cost[3] = {0};
    assert_true(json_array_size(v) >= 6);
    json_array_foreach(v, i, e)
    {
        const char *key = json_string_value(json_object_get(e, "key"));
        const char *hash = json_string_value(json_object_get(e, "hash"));
        int matches = json_is_true(json_object_get(e, "matches"));
        assert_non_null(key);
        assert_non_null(hash);
        int r = apikey_verify(key, hash);
        if (r != matches)
            fail_msg("vector %zu: key %s hash %s: got %d want %d", i, key, hash, r, matches);
        seen_cost[0] |= !strncmp(hash, "$2b$04$", 7);
        seen_cost[1] |= !strncmp(hash, "$2b$10$", 7);
        seen_cost[2] |= !strncmp(hash, "$2b$12$", 7);
    }
    assert_true(seen_cost[0] && seen_cost[1] && seen_cost[2]);
    json_decref(v);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char key[48], prefix[9], hash[61], hash2[61];
    apikey_generate(key, prefix);
    assert_int_equal(apikey_hash(key, 4, hash), 0);
    assert_int_equal(strlen(hash), 60);
    assert_memory_equal(hash, "$2b$04$", 7);
    assert_int_equal(apikey_verify(key, hash), 1);
    /* one changed character anywhere fails */
    for (int pos = 4; pos < APIKEY_LEN; pos += 7) {
        char k2[48];
        memcpy(k2, key, sizeof k2);
        k2[pos] = k2[pos] == 'A' ? 'B' : 'A';
        assert_int_equal(apikey_verify(k2, hash), 0);
    }
    /* a shorter key (prefix of the real one) fails */
    char shorter[48];
    memcpy(shorter, key, sizeof shorter);
    shorter[46] = 0;
    assert_int_equal(apikey_verify(shorter, hash), 0);
    /* salts differ between two hashes of the same key; both verify */
    assert_int_equal(apikey_hash(key, 4, hash2), 0);
    assert_string_not_equal(hash, hash2);
    assert_int_equal(apikey_verify(key, hash2), 1);
    /* the production cost: one hash + one verify */
    assert_int_equal(apikey_hash(key, APIKEY_DEFAULT_COST, hash2), 0);
    assert_memory_equal(hash2, "$2b$12$", 7);
    assert_int_equal(apikey_verify(key, hash2), 1);
}

static void test_long_and_odd_inputs(void **state)
{
    (void)state;
    char hash[61];
    char k72[73], k73[74], big[1001];
    memset(k72, 'a', 72);
    k72[72] = 0;
    memset(k73, 'a', 73);
    k73[73] = 0;
    memset(big, 'x', 1000);
    big[1000] = 0;
    /* 72 bytes is bcrypt's limit and is accepted; one more is refused, not truncated */
    assert_int_equal(apikey_hash(k72, 4, hash), 0);
    assert_int_equal(apikey_verify(k72, hash), 1);
    assert_int_equal(apikey_verify(k73, hash), 0); /* would match if truncated to 72 */
    assert_int_equal(apikey_verify(big, hash), 0);
    assert_int_equal(apikey_hash(k73, 4, hash), -1);
    assert_string_equal(hash, "");
    assert_int_equal(apikey_hash(big, 4, hash), -1);
    assert_int_equal(apikey_hash("", 4, hash), -1);
    assert_int_equal(apikey_hash(NULL, 4, hash), -1);
    /* cost range */
    assert_int_equal(apikey_hash("cai_abcdefgh", 3, hash), -1);
    assert_int_equal(apikey_hash("cai_abcdefgh", 32, hash), -1);
    /* non-ASCII keys are just bytes to bcrypt */
    const char *utf = "cai_\xc3\xa9\xe2\x9c\x93\xff\x80";
    assert_int_equal(apikey_hash(utf, 4, hash), 0);
    assert_int_equal(apikey_verify(utf, hash), 1);
    assert_int_equal(apikey_verify("cai_\xc3\xa9\xe2\x9c\x93\xff\x81", hash), 0);
    assert_int_equal(apikey_verify("", hash), 0);
    assert_int_equal(apikey_verify(NULL, hash), 0);
}

static void test_bad_hashes(void **state)
{
    (void)state;
    const char *key = "cai_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const char *good = "$2b$04$S8DCRKKgtZpkf4eUv4SgAO6zUu0qyYbIIVC7IBTKBJl3hNTon8wnq";
    assert_int_equal(apikey_verify(key, good), 1);
    static const char *const bad[] = {
        "",
        "$2b$04$S8DCRKKgtZpkf4eUv4SgAO6zUu0qyYbIIVC7IBTKBJl3hNTon8wn",   /* 59 */
        "$2b$04$S8DCRKKgtZpkf4eUv4SgAO6zUu0qyYbIIVC7IBTKBJl3hNTon8wnqq", /* 61 */
        "$2x$04$S8DCRKKgtZpkf4eUv4SgAO6zUu0qyYbIIVC7IBTKBJl3hNTon8wnq",  /* unknown variant */
        "$2b$03$S8DCRKKgtZpkf4eUv4SgAO6zUu0qyYbIIVC7IBTKBJl3hNTon8wnq",  /* cost too low */
        "$2b$99$S8DCRKKgtZpkf4eUv4SgAO6zUu0qyYbIIVC7IBTKBJl3hNTon8wnq",  /* cost too high */
        "$1$04$S8DCRKKgtZpkf4eUv4SgAO6zUu0qyYbIIVC7IBTKBJl3hNTon8wnqxx", /* md5-crypt shape */
        "$2b$04$S8DCRKKgtZpkf4eUv4SgAO6zUu0qyYbIIVC7IBTKBJl3hNTon8wn!",  /* bad char */
        "*0",
        "plaintext-password-in-the-hash-column-is-not-a-hash-at-all!!",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = apikey_verify(key, bad[i]);
        if (r == 1)
            fail_msg("hash '%s' matched", bad[i]);
    }
    assert_int_equal(apikey_verify(key, NULL), -1);
    assert_int_equal(apikey_verify(key, ""), -1);
    /* $2a$ and $2y$ spellings of the same hash verify too (libxcrypt knows all three) */
    char alt[61];
    memcpy(alt, good, 61);
    alt[2] = 'a';
    assert_int_equal(apikey_verify(key, alt), 1);
    alt[2] = 'y';
    assert_int_equal(apikey_verify(key, alt), 1);
}

static enum apikey_parse parse(const char *v, size_t len, char *tok, char *pre)
{
    memset(tok, 'Q', 73);
    memset(pre, 'Q', 9);
    enum apikey_parse r = apikey_parse_bearer(v, len, tok, pre);
    if (r != APIKEY_OK) {
        assert_string_equal(tok, "");
        assert_string_equal(pre, "");
    }
    return r;
}

#define P(s) parse(s, sizeof(s) - 1, tok, pre)

static void test_bearer(void **state)
{
    (void)state;
    char tok[73], pre[9];
    assert_int_equal(P("Bearer cai_abcd"), APIKEY_OK);
    assert_string_equal(tok, "cai_abcd");
    assert_string_equal(pre, "cai_abcd");
    assert_int_equal(P("Bearer cai_sandbox_demo_key_not_for_production"), APIKEY_OK);
    assert_string_equal(pre, "cai_sand");

    /* missing_header */
    assert_int_equal(parse(NULL, 0, tok, pre), APIKEY_MISSING);
    assert_int_equal(P(""), APIKEY_MISSING);
    assert_int_equal(P("Bearer"), APIKEY_MISSING);
    assert_int_equal(P("bearer cai_abcdefgh"), APIKEY_MISSING);
    assert_int_equal(P("BEARER cai_abcdefgh"), APIKEY_MISSING);
    assert_int_equal(P("Basic dXNlcjpwYXNz"), APIKEY_MISSING);
    assert_int_equal(P("Bearer\tcai_abcdefgh"), APIKEY_MISSING);
    assert_int_equal(P(" Bearer cai_abcdefgh"), APIKEY_MISSING);
    assert_int_equal(P("Bearer\0cai_abcdefgh"), APIKEY_MISSING);
    assert_int_equal(P("Token cai_abcdefgh"), APIKEY_MISSING);
    assert_int_equal(P("cai_abcdefgh"), APIKEY_MISSING);

    /* invalid_format */
    assert_int_equal(P("Bearer "), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer x"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abc"), APIKEY_BAD_FORMAT); /* 7 chars */
    assert_int_equal(P("Bearer  cai_abcdefgh"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcd efgh"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcdefgh "), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcd\tefgh"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcdefgh\t"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcd\0efgh"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcdefgh\0"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcdefgh\r\n"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcd\x7f"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer cai_abcd\xff"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer CAI_abcdefgh"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer Bearer cai_abcdefgh"), APIKEY_BAD_FORMAT);
    assert_int_equal(P("Bearer sk_abcdefghijkl"), APIKEY_BAD_FORMAT);

    /* the length given wins over the NUL terminator */
    assert_int_equal(parse("Bearer cai_abcdefgh", 14, tok, pre), APIKEY_BAD_FORMAT);
    assert_int_equal(parse("Bearer cai_abcdefgh", 15, tok, pre), APIKEY_OK);
    assert_string_equal(tok, "cai_abcd");

    /* 72 bytes is the longest token; 73 and 1000 are bad format (401), never a crash */
    char hdr[1100];
    memcpy(hdr, "Bearer cai_", 11);
    memset(hdr + 11, 'A', 1000);
    assert_int_equal(parse(hdr, 7 + 72, tok, pre), APIKEY_OK);
    assert_int_equal(strlen(tok), 72);
    assert_int_equal(parse(hdr, 7 + 73, tok, pre), APIKEY_BAD_FORMAT);
    assert_int_equal(parse(hdr, 7 + 1000, tok, pre), APIKEY_BAD_FORMAT);
    /* every control byte and every byte >= 0x7f is refused inside a token */
    for (int c = 0; c < 256; c++) {
        char h[32] = "Bearer cai_abcdefgh";
        h[15] = (char)c;
        enum apikey_parse r = parse(h, 19, tok, pre);
        if (c > 0x20 && c < 0x7f)
            assert_int_equal(r, APIKEY_OK);
        else
            assert_int_equal(r, APIKEY_BAD_FORMAT);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate),   cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_roundtrip),  cmocka_unit_test(test_long_and_odd_inputs),
        cmocka_unit_test(test_bad_hashes), cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
