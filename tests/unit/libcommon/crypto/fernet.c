/*
 * tests/unit/libcommon/crypto/fernet.c - Fernet compatibility with Python's cryptography.
 *
 * Every valid vector of $CALSETA_SHARED_DIR/vectors/fernet.json decrypts to its plaintext and
 * re-encrypting it with the token's own timestamp and IV gives the very same token; every
 * invalid vector is refused. Then: round-trips of random sizes, single-byte tampering
 * anywhere in a token, truncation at every length, key parsing edge cases.
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

#include "crypto.h"
#include "fernet.h"
#include "secmem.h"
#include "util.h"
#include "tests/unit/testdata.h"

static json_t *load_vectors(void)
{
    return test_data_json("vectors", "fernet.json");
}

static void test_valid_vectors(void **state)
{
    (void)state;
    json_t *v = load_vectors(), *e;
    json_t *valid = json_object_get(v, "valid");
    size_t i;
    assert_true(json_array_size(valid) >= 2);
    json_array_foreach(valid, i, e)
    {
        const char *kb = json_string_value(json_object_get(e, "key"));
        const char *want = json_string_value(json_object_get(e, "plaintext"));
        const char *token = json_string_value(json_object_get(e, "token"));
        json_int_t ts = json_integer_value(json_object_get(e, "timestamp"));
        struct fernet_key k;
        assert_int_equal(fernet_key_parse(kb, &k), 0);

        uint8_t *pt = NULL;
        size_t n = 0;
        if (fernet_decrypt(&k, token, &pt, &n) != 0)
            fail_msg("vector %zu did not decrypt", i);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(pt, want, n);
        assert_int_equal(pt[n], 0);
        secmem_free(pt);

        uint64_t got_ts = 0;
        assert_int_equal(fernet_token_timestamp(token, &got_ts), 0);
        assert_int_equal(got_ts, (uint64_t)ts);

        /* the IV is bytes 9..25 of the decoded token */
        size_t tlen = strlen(token), rawlen = 0;
        uint8_t *raw = xmalloc(crypto_b64_decoded_max(tlen));
        assert_int_equal(crypto_b64_decode(token, tlen, CRYPTO_B64_URL, raw, &rawlen), 0);
        char *again = NULL;
        assert_int_equal(fernet_encrypt_at(&k, want, strlen(want), (uint64_t)ts, raw + 9, &again),
                         0);
        assert_string_equal(again, token);
        free(again);
        free(raw);
    }
    json_decref(v);
}

static void test_invalid_vectors(void **state)
{
    (void)state;
    json_t *v = load_vectors(), *e;
    json_t *invalid = json_object_get(v, "invalid");
    size_t i;
    assert_true(json_array_size(invalid) >= 5);
    json_array_foreach(invalid, i, e)
    {
        const char *desc = json_string_value(json_object_get(e, "desc"));
        const char *kb = json_string_value(json_object_get(e, "key"));
        const char *token = json_string_value(json_object_get(e, "token"));
        struct fernet_key k;
        assert_int_equal(fernet_key_parse(kb, &k), 0);
        uint8_t *pt = (uint8_t *)"sentinel";
        size_t n = 99;
        if (fernet_decrypt(&k, token, &pt, &n) == 0)
            fail_msg("invalid vector '%s' decrypted", desc);
        assert_null(pt);
        assert_int_equal(n, 0);
    }
    json_decref(v);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char kb[45];
    struct fernet_key k, other;
    fernet_generate_key(kb);
    assert_int_equal(strlen(kb), 44);
    assert_int_equal(kb[43], '=');
    assert_int_equal(fernet_key_parse(kb, &k), 0);
    fernet_generate_key(kb);
    assert_int_equal(fernet_key_parse(kb, &other), 0);
    uint8_t msg[600];
    for (size_t n = 0; n < sizeof msg; n += (n < 40 ? 1 : 37)) {
        crypto_random(msg, n);
        char *tok = NULL;
        assert_int_equal(fernet_encrypt(&k, msg, n, &tok), 0);
        assert_memory_equal(tok, "gAAAAA", 6); /* 0x80 then a timestamp < 2^40 */
        uint8_t *pt = NULL;
        size_t m = 0;
        assert_int_equal(fernet_decrypt(&k, tok, &pt, &m), 0);
        assert_int_equal(m, n);
        assert_memory_equal(pt, msg, n);
        secmem_free(pt);
        assert_int_equal(fernet_decrypt(&other, tok, &pt, &m), -1);
        assert_null(pt);
        free(tok);
    }
    /* two encryptions of the same text differ (random IV) */
    char *a = NULL, *b = NULL;
    assert_int_equal(fernet_encrypt(&k, "x", 1, &a), 0);
    assert_int_equal(fernet_encrypt(&k, "x", 1, &b), 0);
    assert_string_not_equal(a, b);
    free(a);
    free(b);
}

/* Any change to any byte of the decoded token is detected; so is every truncation. */
static void test_tamper_and_truncate(void **state)
{
    (void)state;
    struct fernet_key k;
    assert_int_equal(fernet_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &k), 0);
    char *tok = NULL;
    const char *secret = "{\"api_key\": \"vt-0123456789abcdef\"}";
    assert_int_equal(fernet_encrypt(&k, secret, strlen(secret), &tok), 0);
    size_t tlen = strlen(tok), rawlen = 0;
    uint8_t *raw = xmalloc(crypto_b64_decoded_max(tlen));
    assert_int_equal(crypto_b64_decode(tok, tlen, CRYPTO_B64_URL, raw, &rawlen), 0);
    char *mod = xmalloc(crypto_b64_encoded_len(rawlen, CRYPTO_B64_URL) + 1);
    uint8_t *pt = NULL;
    size_t n = 0;
    for (size_t i = 0; i < rawlen; i++) {
        raw[i] ^= 0x01;
        crypto_b64_encode(raw, rawlen, CRYPTO_B64_URL, mod);
        if (fernet_decrypt(&k, mod, &pt, &n) == 0)
            fail_msg("flip at byte %zu accepted", i);
        raw[i] ^= 0x01;
    }
    for (size_t len = 0; len < rawlen; len++) {
        crypto_b64_encode(raw, len, CRYPTO_B64_URL, mod);
        if (fernet_decrypt(&k, mod, &pt, &n) == 0)
            fail_msg("truncation to %zu accepted", len);
    }
    /* extra data appended */
    uint8_t *longer = xmalloc(rawlen + 16);
    memcpy(longer, raw, rawlen);
    memset(longer + rawlen, 0, 16);
    char *ext = xmalloc(crypto_b64_encoded_len(rawlen + 16, CRYPTO_B64_URL) + 1);
    crypto_b64_encode(longer, rawlen + 16, CRYPTO_B64_URL, ext);
    assert_int_equal(fernet_decrypt(&k, ext, &pt, &n), -1);
    /* textual damage: no padding, standard alphabet, whitespace, empty */
    char *nopad = xstrdup(tok);
    while (nopad[0] && nopad[strlen(nopad) - 1] == '=')
        nopad[strlen(nopad) - 1] = 0;
    if (strlen(nopad) != tlen)
        assert_int_equal(fernet_decrypt(&k, nopad, &pt, &n), -1);
    char *spaced = xasprintf(" %s", tok);
    assert_int_equal(fernet_decrypt(&k, spaced, &pt, &n), -1);
    assert_int_equal(fernet_decrypt(&k, "", &pt, &n), -1);
    assert_int_equal(fernet_decrypt(&k, NULL, &pt, &n), -1);
    /* the original still works */
    assert_int_equal(fernet_decrypt(&k, tok, &pt, &n), 0);
    assert_int_equal(n, strlen(secret));
    assert_true(secmem_size(pt) >= n + 1);
    secmem_free(pt);
    free(spaced);
    free(nopad);
    free(ext);
    free(longer);
    free(mod);
    free(raw);
    free(tok);
}

/* A valid MAC over a ciphertext with broken PKCS7 padding is still refused. */
static void test_bad_padding_with_good_mac(void **state)
{
    (void)state;
    struct fernet_key k;
    assert_int_equal(fernet_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &k), 0);
    /* 16 bytes of ciphertext that decrypt to garbage padding: build the token by hand */
    uint8_t raw[25 + 16 + 32];
    raw[0] = 0x80;
    memset(raw + 1, 0, 8);
    crypto_random(raw + 9, 16 + 16);
    crypto_hmac_sha256(k.sign, 16, raw, 25 + 16, raw + 25 + 16);
    char tok[200];
    crypto_b64_encode(raw, sizeof raw, CRYPTO_B64_URL, tok);
    uint8_t *pt = NULL;
    size_t n = 0;
    int ok = 0;
    /* random ciphertext has valid padding with probability ~1/256 per try: try a few */
    for (int i = 0; i < 8; i++) {
        if (fernet_decrypt(&k, tok, &pt, &n) != 0) {
            ok = 1;
            break;
        }
        secmem_free(pt);
        crypto_random(raw + 25, 16);
        crypto_hmac_sha256(k.sign, 16, raw, 25 + 16, raw + 25 + 16);
        crypto_b64_encode(raw, sizeof raw, CRYPTO_B64_URL, tok);
    }
    assert_true(ok);
    assert_null(pt);
}

static void test_key_parse(void **state)
{
    (void)state;
    struct fernet_key k;
    const char *good = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    assert_int_equal(fernet_key_parse(good, &k), 0);
    assert_int_equal(k.sign[0], 0);
    assert_int_equal(k.sign[15], 15);
    assert_int_equal(k.enc[0], 16);
    assert_int_equal(k.enc[15], 31);
    static const char *const bad[] = {
        "",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",   /* no padding, 43 */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==", /* 45 */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+=",  /* standard alphabet */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh/=",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 ",
        " AECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh==", /* 31 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AAAA=",
        "not a key",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\xc3\xa9h8=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (fernet_key_parse(bad[i], &k) == 0)
            fail_msg("accepted key '%s'", bad[i]);
    assert_int_equal(fernet_key_parse(NULL, &k), -1);
    /* a urlsafe key with - and _ parses */
    assert_int_equal(fernet_key_parse("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=", &k), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_vectors),
        cmocka_unit_test(test_invalid_vectors),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_tamper_and_truncate),
        cmocka_unit_test(test_bad_padding_with_good_mac),
        cmocka_unit_test(test_key_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
