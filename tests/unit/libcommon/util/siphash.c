/*
 * tests/unit/libcommon/util/siphash.c - SipHash-2-4 gives the published test vectors (key
 * 00..0f, message 00..len-1), and SipHash-1-3 gives what CPython's str/bytes hash gives with
 * PYTHONHASHSEED=1 (its key: the first 16 bytes of the seed's LCG stream), so both the shared
 * rounds and the 1-3 round counts are checked against an implementation other than ours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "siphash.h"

/* The message in an exact-size heap block, so ASan sees any read past it. */
static unsigned char *counting(size_t n)
{
    unsigned char *m = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        m[i] = (unsigned char)i;
    return m;
}

static void test_siphash24_vectors(void **state)
{
    (void)state;
    const struct siphash_key key = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
    const struct {
        size_t len;
        uint64_t want;
    } v[] = {{0, 0x726fdb47dd0e0e31ull}, {1, 0x74f839c593dc67fdull}, {15, 0xa129ca6149be45e5ull}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        unsigned char *m = counting(v[i].len);
        assert_int_equal(siphash24(&key, m, v[i].len), v[i].want);
        free(m);
    }
}

static void test_siphash13_as_cpython(void **state)
{
    (void)state;
    const struct siphash_key key = {0xaed66ce184be2329ull, 0xebe9bbf1f1499052ull};
    unsigned char *a = malloc(1);
    a[0] = 'a';
    assert_int_equal(siphash13(&key, a, 1), 0xd6300bc9f7cc0e73ull);
    free(a);
    unsigned char *m = counting(15);
    assert_int_equal(siphash13(&key, m, 15), 0xfa87985f39e97a53ull);
    free(m);
    m = counting(64);
    assert_int_equal(siphash13(&key, m, 64), 0x7e644b6edc375dc8ull);
    free(m);
}

/* The tail as the algorithm states it: the bytes left copied into a zeroed word, the length's
 * low byte on top. */
static uint64_t reference(const struct siphash_key *key, const unsigned char *m, size_t len, int c,
                          int d)
{
#define RL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define ROUND                                                                                      \
    do {                                                                                           \
        v0 += v1; v1 = RL(v1, 13); v1 ^= v0; v0 = RL(v0, 32);                                      \
        v2 += v3; v3 = RL(v3, 16); v3 ^= v2;                                                       \
        v0 += v3; v3 = RL(v3, 21); v3 ^= v0;                                                       \
        v2 += v1; v1 = RL(v1, 17); v1 ^= v2; v2 = RL(v2, 32);                                      \
    } while (0)
    uint64_t v0 = key->k0 ^ 0x736f6d6570736575ull, v1 = key->k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = key->k0 ^ 0x6c7967656e657261ull, v3 = key->k1 ^ 0x7465646279746573ull;
    size_t words = len / 8;
    for (size_t w = 0; w <= words; w++) {
        unsigned char b[8] = {0};
        size_t take = w < words ? 8 : len % 8;
        memcpy(b, m + 8 * w, take);
        if (w == words)
            b[7] = (unsigned char)len;
        uint64_t x = 0;
        for (int i = 7; i >= 0; i--)
            x = x << 8 | b[i];
        v3 ^= x;
        for (int i = 0; i < c; i++)
            ROUND;
        v0 ^= x;
    }
    v2 ^= 0xff;
    for (int i = 0; i < d; i++)
        ROUND;
    return v0 ^ v1 ^ v2 ^ v3;
#undef ROUND
#undef RL
}

/* Every length up to 80 at every start within a word, each message ending where its heap block
 * ends (ASan sees a tail read past it), against the byte-wise reference. */
static void test_tails_as_reference(void **state)
{
    (void)state;
    const struct siphash_key key = {0x0123456789abcdefull, 0xfedcba9876543210ull};
    unsigned char src[96];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= 80; len++) {
        for (size_t off = 0; off < 8; off++) {
            unsigned char *block = malloc(off + len ? off + len : 1), *m = block + off;
            memcpy(m, src + off, len);
            assert_int_equal(siphash13(&key, m, len), reference(&key, m, len, 1, 3));
            assert_int_equal(siphash24(&key, m, len), reference(&key, m, len, 2, 4));
            free(block);
        }
    }
}

static void test_random_keys_differ(void **state)
{
    (void)state;
    struct siphash_key a, b;
    siphash_random_key(&a);
    siphash_random_key(&b);
    assert_false(a.k0 == b.k0 && a.k1 == b.k1);
    assert_int_not_equal(siphash13(&a, "title", 5), siphash13(&b, "title", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash24_vectors),
        cmocka_unit_test(test_siphash13_as_cpython),
        cmocka_unit_test(test_tails_as_reference),
        cmocka_unit_test(test_random_keys_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
