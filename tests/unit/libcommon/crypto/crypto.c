/*
 * tests/unit/libcommon/crypto/crypto.c - base64, hex, digests, HMAC, constant-time compare, UUIDs and
 * the webhook signature header parser.
 *
 * Base64 is checked against RFC 4648 vectors in both alphabets, with and without padding, and
 * against every kind of malformed input (bad characters, NUL bytes, wrong padding, impossible
 * lengths); a random round-trip covers all lengths 0..300. Digests use published vectors
 * (FIPS 180-2, RFC 1321, RFC 4231), on the main thread and on threads of their own (each keeps
 * its contexts, freed when it exits); MD5 refused by the providers stops the process loudly.
 * The version-7 layout is checked against RFC 9562's example, and a failing generator makes
 * crypto_random_try() return -1 with OpenSSL's error queue left clean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "crypto.h"
#include "util.h"
#include "tests/unit/rand_refuse.h"

static char *enc(const char *s, size_t n, int flags)
{
    char *out = xmalloc(crypto_b64_encoded_len(n, flags) + 1);
    size_t len = crypto_b64_encode(s, n, flags, out);
    assert_int_equal(len, strlen(out));
    assert_int_equal(len, crypto_b64_encoded_len(n, flags));
    return out;
}

/* Decodes s; returns a NUL-terminated copy (caller frees) or NULL if rejected. */
static char *dec(const char *s, size_t len, int flags, size_t *outlen)
{
    uint8_t *out = xmalloc(crypto_b64_decoded_max(len) + 1);
    size_t n = 0;
    if (crypto_b64_decode(s, len, flags, out, &n) != 0) {
        free(out);
        return NULL;
    }
    assert_true(n <= crypto_b64_decoded_max(len));
    out[n] = 0;
    if (outlen)
        *outlen = n;
    return (char *)out;
}

static void test_b64_rfc4648(void **state)
{
    (void)state;
    static const char *const v[][3] = {{"", "", ""},
                                       {"f", "Zg==", "Zg"},
                                       {"fo", "Zm8=", "Zm8"},
                                       {"foo", "Zm9v", "Zm9v"},
                                       {"foob", "Zm9vYg==", "Zm9vYg"},
                                       {"fooba", "Zm9vYmE=", "Zm9vYmE"},
                                       {"foobar", "Zm9vYmFy", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *e = enc(v[i][0], strlen(v[i][0]), CRYPTO_B64_STD);
        assert_string_equal(e, v[i][1]);
        free(e);
        e = enc(v[i][0], strlen(v[i][0]), CRYPTO_B64_URL | CRYPTO_B64_NOPAD);
        assert_string_equal(e, v[i][2]);
        free(e);
        char *d = dec(v[i][1], strlen(v[i][1]), CRYPTO_B64_STD, NULL);
        assert_non_null(d);
        assert_string_equal(d, v[i][0]);
        free(d);
        d = dec(v[i][2], strlen(v[i][2]), CRYPTO_B64_URL | CRYPTO_B64_NOPAD, NULL);
        assert_non_null(d);
        assert_string_equal(d, v[i][0]);
        free(d);
        /* PADOPT takes both forms */
        d = dec(v[i][1], strlen(v[i][1]), CRYPTO_B64_STD | CRYPTO_B64_PADOPT, NULL);
        assert_non_null(d);
        free(d);
        d = dec(v[i][2], strlen(v[i][2]), CRYPTO_B64_STD | CRYPTO_B64_PADOPT, NULL);
        assert_non_null(d);
        free(d);
    }
}

static void test_b64_alphabets(void **state)
{
    (void)state;
    const uint8_t raw[] = {0xfb, 0xff, 0xbf, 0xfe};
    char *e = enc((const char *)raw, sizeof raw, CRYPTO_B64_STD);
    assert_string_equal(e, "+/+//g==");
    free(e);
    e = enc((const char *)raw, sizeof raw, CRYPTO_B64_URL);
    assert_string_equal(e, "-_-__g==");
    free(e);
    /* each alphabet refuses the other's special characters */
    assert_null(dec("+/+//g==", 8, CRYPTO_B64_URL, NULL));
    assert_null(dec("-_-__g==", 8, CRYPTO_B64_STD, NULL));
    size_t n = 0;
    char *d = dec("-_-__g==", 8, CRYPTO_B64_URL, &n);
    assert_non_null(d);
    assert_int_equal(n, 4);
    assert_memory_equal(d, raw, 4);
    free(d);
    /* all 64 characters, in order, decode and re-encode identically */
    const char *all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    d = dec(all, 64, CRYPTO_B64_URL, &n);
    assert_non_null(d);
    assert_int_equal(n, 48);
    e = enc(d, n, CRYPTO_B64_URL);
    assert_string_equal(e, all);
    free(e);
    free(d);
}

static void test_b64_rejects(void **state)
{
    (void)state;
    static const char *const bad_padded[] = {
        "Zg=",       /* short padding */
        "Zg",        /* padding required by default */
        "Z===",      /* three pads */
        "====",      /* only padding */
        "=",         /* lone pad */
        "Zm9v=",     /* pad after a full quantum */
        "Zm=9v",     /* pad in the middle */
        "Zm9v\n",    /* whitespace */
        " Zm9v",     /* leading space */
        "Zm9v YmFy", /* inner space */
        "Zm9*",      /* bad character */
        "Zm9vY",     /* 5 chars: impossible length */
        "Zg==Zg==",  /* padding then data */
        "Zm9\xc3\xa9", "Zm\x80v",
    };
    for (size_t i = 0; i < sizeof bad_padded / sizeof bad_padded[0]; i++) {
        char *d = dec(bad_padded[i], strlen(bad_padded[i]), CRYPTO_B64_STD, NULL);
        if (d)
            fail_msg("accepted %s", bad_padded[i]);
    }
    /* an embedded NUL is a bad character, not a terminator */
    assert_null(dec("Zm9v\0mFy", 8, CRYPTO_B64_STD, NULL));
    assert_null(dec("Zm\0v", 4, CRYPTO_B64_STD | CRYPTO_B64_PADOPT, NULL));
    /* NOPAD forbids padding */
    assert_null(dec("Zg==", 4, CRYPTO_B64_URL | CRYPTO_B64_NOPAD, NULL));
    assert_null(dec("Z", 1, CRYPTO_B64_URL | CRYPTO_B64_NOPAD, NULL));
    /* every byte that is not in the alphabet is refused at every position */
    for (int c = 0; c < 256; c++) {
        int in_url = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_';
        char s[5] = "QUJD";
        for (int pos = 0; pos < 4; pos++) {
            memcpy(s, "QUJD", 4);
            s[pos] = (char)c;
            char *d = dec(s, 4, CRYPTO_B64_URL | CRYPTO_B64_PADOPT, NULL);
            if (c == '=' && pos >= 2) { /* "QU=D" is bad, "QUJ=" is valid padding */
                if (pos == 3)
                    assert_non_null(d);
                else
                    assert_null(d);
            } else if (in_url) {
                assert_non_null(d);
            } else if (d) {
                fail_msg("accepted byte 0x%02x at %d", c, pos);
            }
            free(d);
        }
    }
}

static void test_b64_roundtrip(void **state)
{
    (void)state;
    uint8_t raw[300];
    for (size_t n = 0; n <= sizeof raw; n++) {
        crypto_random(raw, n);
        for (int flags = 0; flags < 4; flags++) {
            char *e = enc((const char *)raw, n, flags);
            size_t m = 0;
            char *d = dec(e, strlen(e), flags, &m);
            assert_non_null(d);
            assert_int_equal(m, n);
            assert_memory_equal(d, raw, n);
            free(d);
            free(e);
        }
    }
}

static void test_hex_and_digests(void **state)
{
    (void)state;
    char hex[65], md5[33];
    crypto_hex_encode("\x00\x01\xab\xff", 4, hex);
    assert_string_equal(hex, "0001abff");
    crypto_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypto_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    uint8_t raw[32];
    crypto_sha256("abc", 3, raw);
    assert_int_equal(raw[0], 0xba);
    assert_int_equal(raw[31], 0xad);
    crypto_md5_hex("", 0, md5);
    assert_string_equal(md5, "d41d8cd98f00b204e9800998ecf8427e");
    crypto_md5_hex("The quick brown fox jumps over the lazy dog", 43, md5);
    assert_string_equal(md5, "9e107d9d372bb6826bd81d3542a419d6");
    /* fingerprint-style input with NUL separators hashes all bytes */
    char a[33], b[33];
    crypto_md5_hex("t\0s\0x", 5, a);
    crypto_md5_hex("t\0s\0y", 5, b);
    assert_string_not_equal(a, b);
}

static void test_hmac(void **state)
{
    (void)state;
    char hex[65];
    /* RFC 4231 test case 2 */
    crypto_hmac_sha256_hex("Jefe", 4, "what do ya want for nothing?", 28, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* RFC 4231 test case 1: key = 20 x 0x0b */
    uint8_t key[20];
    memset(key, 0x0b, sizeof key);
    crypto_hmac_sha256_hex(key, sizeof key, "Hi There", 8, hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* RFC 4231 test case 6: key longer than the block (131 x 0xaa) */
    uint8_t big[131];
    memset(big, 0xaa, sizeof big);
    const char *m = "Test Using Larger Than Block-Size Key - Hash Key First";
    crypto_hmac_sha256_hex(big, sizeof big, m, strlen(m), hex);
    assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    /* empty key and empty message are legal */
    uint8_t r1[32], r2[32];
    crypto_hmac_sha256("", 0, "", 0, r1);
    crypto_hmac_sha256(NULL, 0, NULL, 0, r2);
    assert_memory_equal(r1, r2, 32);
    crypto_hex_encode(r1, 32, hex);
    assert_string_equal(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

/* A process whose providers refuse MD5 (default properties "fips=yes", as on a host in FIPS
 * mode) stops with a message at its first fingerprint instead of digesting outside them. Runs
 * first, in a child forked before this process fetched MD5 itself. */
static void test_md5_refused(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL); /* the child leaves by exit(): nothing buffered may be written twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        if (EVP_set_default_properties(NULL, "fips=yes") != 1)
            _exit(3);
        char out[33];
        crypto_md5_hex("abc", 3, out);
        _exit(0); /* digested although refused */
    }
    close(fds[1]);
    char buf[4096];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = 0;
    close(fds[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_non_null(strstr(buf, "MD5 unavailable"));
}

/* Every digest on a thread of its own, interleaved so each kept context is re-initialised
 * after the other algorithm ran; the threads' contexts are freed as they exit (the sanitizer
 * build reports any left). */
static void *digest_thread(void *arg)
{
    long bad = 0;
    for (int i = 0; i < 50; i++) {
        char hex[65], md5[33];
        crypto_md5_hex("The quick brown fox jumps over the lazy dog", 43, md5);
        bad += strcmp(md5, "9e107d9d372bb6826bd81d3542a419d6") != 0;
        crypto_sha256_hex("abc", 3, hex);
        bad += strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") != 0;
        crypto_hmac_sha256_hex("Jefe", 4, "what do ya want for nothing?", 28, hex);
        bad += strcmp(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") != 0;
        crypto_md5_hex("", 0, md5);
        bad += strcmp(md5, "d41d8cd98f00b204e9800998ecf8427e") != 0;
    }
    (void)arg;
    return (void *)bad;
}

static void test_digest_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, digest_thread, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *bad = NULL;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_null(bad);
    }
    assert_null(digest_thread(NULL)); /* and the main thread's own contexts */
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(crypto_ct_equal("abc", 3, "abc", 3));
    assert_false(crypto_ct_equal("abc", 3, "abd", 3));
    assert_false(crypto_ct_equal("abc", 3, "abcd", 4));
    assert_false(crypto_ct_equal("abcd", 4, "abc", 3));
    assert_true(crypto_ct_equal("", 0, "", 0));
    assert_true(crypto_ct_equal(NULL, 0, "x", 0));
    /* a difference in any single bit of any byte is seen */
    uint8_t x[64], y[64];
    crypto_random(x, sizeof x);
    for (size_t i = 0; i < sizeof x; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(y, x, sizeof x);
            y[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(crypto_ct_equal(x, sizeof x, y, sizeof y), 0);
        }
    assert_int_equal(crypto_ct_equal(x, sizeof x, x, sizeof x), 1);
    /* differences that cancel under OR-less schemes: 0x01 vs 0x00 and 0xff vs 0xfe */
    assert_false(crypto_ct_equal("\x01\xff", 2, "\x00\xfe", 2));
    assert_false(crypto_ct_equal("\x00", 1, "\x80", 1));
}

static void test_uuid(void **state)
{
    (void)state;
    char u[37], v[37];
    for (int i = 0; i < 200; i++) {
        crypto_uuid4(u);
        assert_int_equal(strlen(u), 36);
        assert_true(crypto_uuid_valid(u));
        assert_int_equal(u[14], '4');
        assert_true(strchr("89ab", u[19]) != NULL);
        for (int j = 0; j < 36; j++)
            assert_false(u[j] >= 'A' && u[j] <= 'F');
    }
    crypto_uuid4(v);
    assert_string_not_equal(u, v);

    assert_true(crypto_uuid_valid("123e4567-e89b-12d3-a456-426614174000"));
    assert_true(crypto_uuid_valid("123E4567-E89B-12D3-A456-426614174000"));
    assert_true(crypto_uuid_valid("00000000-0000-0000-0000-000000000000"));
    static const char *const bad[] = {
        "",
        "123e4567-e89b-12d3-a456-42661417400",   /* 35 */
        "123e4567-e89b-12d3-a456-4266141740000", /* 37 */
        "123e4567e89b12d3a456426614174000",      /* no hyphens */
        "{123e4567-e89b-12d3-a456-426614174000}",
        "123e4567-e89b-12d3-a456_426614174000",
        "123e4567-e89b-12d3-a4560426614174000",
        "123e456--e89b-12d3-a456-426614174000",
        "g23e4567-e89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-42661417400 ",
        " 23e4567-e89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-4266141740\xc3\xa9",
        "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
        "../../../../etc/passwd",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (crypto_uuid_valid(bad[i]))
            fail_msg("accepted '%s'", bad[i]);
    assert_false(crypto_uuid_valid(NULL));
    /* an early NUL inside a buffer that continues is not valid */
    char buf[40] = "123e4567-e89b-12d3-a456-426614174000";
    buf[20] = 0;
    assert_false(crypto_uuid_valid(buf));
}

/* Ids come from a per-thread pool: past a refill they stay distinct, and a forked child never
 * hands out what its parent will (it drops the pool it inherited). */
static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 37);
}

static void test_uuid_pool(void **state)
{
    (void)state;
    enum { N = 1000 }; /* about four pools' worth */
    char(*ids)[37] = calloc(N, 37);
    assert_non_null(ids);
    for (int i = 0; i < N; i++)
        crypto_uuid4(ids[i]);
    qsort(ids, N, 37, cmp_id);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);

    char parent[37], child[37] = {0};
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        crypto_uuid4(child);
        _exit(write(fds[1], child, 37) == 37 ? 0 : 1);
    }
    crypto_uuid4(parent);
    assert_int_equal(read(fds[0], child, 37), 37);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    close(fds[0]);
    close(fds[1]);
    assert_true(crypto_uuid_valid(child));
    assert_string_not_equal(parent, child);
}

static void test_hex_signature(void **state)
{
    (void)state;
    const char *hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const char *HEX = "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843";
    uint8_t want[32], got[32];
    crypto_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, want);
    char pref[80];
    snprintf(pref, sizeof pref, "sha256=%s", hex);

    memset(got, 0, 32);
    assert_int_equal(crypto_parse_hex_signature(hex, 64, got), 0);
    assert_memory_equal(got, want, 32);
    memset(got, 0, 32);
    assert_int_equal(crypto_parse_hex_signature(HEX, 64, got), 0);
    assert_memory_equal(got, want, 32);
    memset(got, 0, 32);
    assert_int_equal(crypto_parse_hex_signature(pref, strlen(pref), got), 0);
    assert_memory_equal(got, want, 32);

    char s[200];
    /* wrong lengths, prefixes, characters, NULs, non-ASCII */
    assert_int_equal(crypto_parse_hex_signature(hex, 63, got), -1);
    assert_int_equal(crypto_parse_hex_signature(pref, strlen(pref) - 1, got), -1);
    snprintf(s, sizeof s, "%s0", hex);
    assert_int_equal(crypto_parse_hex_signature(s, strlen(s), got), -1);
    snprintf(s, sizeof s, "SHA256=%s", hex);
    assert_int_equal(crypto_parse_hex_signature(s, strlen(s), got), -1);
    snprintf(s, sizeof s, "sha256= %s", hex);
    assert_int_equal(crypto_parse_hex_signature(s, strlen(s), got), -1);
    snprintf(s, sizeof s, "sha1=%s", hex);
    assert_int_equal(crypto_parse_hex_signature(s, strlen(s), got), -1);
    snprintf(s, sizeof s, "sha256=sha256=%s", hex);
    assert_int_equal(crypto_parse_hex_signature(s, strlen(s), got), -1);
    snprintf(s, sizeof s, " %.63s", hex);
    assert_int_equal(crypto_parse_hex_signature(s, 64, got), -1);
    memcpy(s, hex, 64);
    s[10] = 'g';
    assert_int_equal(crypto_parse_hex_signature(s, 64, got), -1);
    s[10] = 0;
    assert_int_equal(crypto_parse_hex_signature(s, 64, got), -1);
    memcpy(s, hex, 64);
    s[62] = '\xc3';
    s[63] = '\xa9';
    assert_int_equal(crypto_parse_hex_signature(s, 64, got), -1);
    assert_int_equal(crypto_parse_hex_signature("", 0, got), -1);
    assert_int_equal(crypto_parse_hex_signature("sha256=", 7, got), -1);
    assert_int_equal(crypto_parse_hex_signature(NULL, 0, got), -1);
    /* a rejected header leaves out untouched */
    memset(got, 0x5a, 32);
    memcpy(s, hex, 64);
    s[63] = 'x';
    assert_int_equal(crypto_parse_hex_signature(s, 64, got), -1);
    for (int i = 0; i < 32; i++)
        assert_int_equal(got[i], 0x5a);
    /* every byte value as the first and as the last digit: taken exactly when it is one of
     * 0-9a-fA-F, with its value */
    for (int pos = 0; pos < 64; pos += 63) {
        for (int b = 0; b < 256; b++) {
            memset(s, '0', 64);
            s[pos] = (char)b;
            int v = b >= '0' && b <= '9'   ? b - '0'
                    : b >= 'a' && b <= 'f' ? b - 'a' + 10
                    : b >= 'A' && b <= 'F' ? b - 'A' + 10
                                           : -1;
            memset(got, 0x5a, 32);
            assert_int_equal(crypto_parse_hex_signature(s, 64, got), v < 0 ? -1 : 0);
            if (v < 0)
                continue;
            for (int i = 0; i < 32; i++)
                assert_int_equal(got[i], i == pos / 2 ? (pos ? v : v << 4) : 0);
        }
    }
}

static void test_owner_id(void **state)
{
    (void)state;
    char host[64] = "unknown", want[128], a[128], b[128];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;

    crypto_owner_id(a, sizeof a, "svc");
    snprintf(want, sizeof want, "svc:%s:%d:", host, (int)getpid());
    assert_int_equal(strncmp(a, want, strlen(want)), 0);
    const char *rnd = a + strlen(want);
    assert_int_equal(strlen(rnd), 8);
    assert_int_equal(strspn(rnd, "0123456789abcdef"), 8);

    crypto_owner_id(b, sizeof b, NULL); /* no prefix */
    snprintf(want, sizeof want, "%s:%d:", host, (int)getpid());
    assert_int_equal(strncmp(b, want, strlen(want)), 0);
    assert_int_equal(strlen(b), strlen(want) + 8);

    crypto_owner_id(b, sizeof b, "svc"); /* a second start of the same pid differs */
    assert_string_not_equal(a, b);

    crypto_owner_id(b, 8, "svc"); /* truncated, terminated */
    assert_int_equal(strlen(b), 7);
}

static void test_random(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};
    crypto_random(a, sizeof a);
    crypto_random(b, sizeof b);
    assert_memory_not_equal(a, b, 32);
    assert_memory_not_equal(a, zero, 32);
    crypto_random(NULL, 0);
}

/* RFC 9562's example (appendix A.6): 017f22e2-79b0-7cc3-98c4-dc0c0c07398f, from the random
 * bytes with the bits the version and the variant replace set, which must not show; then each
 * uuid of a fill takes its own 10 bytes, and a later millisecond sorts after whatever the
 * random bits. */
static void test_uuid7(void **state)
{
    (void)state;
    static const unsigned char want[16] = {0x01, 0x7f, 0x22, 0xe2, 0x79, 0xb0, 0x7c, 0xc3,
                                           0x98, 0xc4, 0xdc, 0x0c, 0x0c, 0x07, 0x39, 0x8f};
    unsigned char rnd[3 * CRYPTO_UUID7_RANDOM] = {0xfc, 0xc3, 0xd8, 0xc4, 0xdc,
                                                  0x0c, 0x0c, 0x07, 0x39, 0x8f};
    memset(rnd + CRYPTO_UUID7_RANDOM, 0xff, CRYPTO_UUID7_RANDOM);
    memset(rnd + 2 * CRYPTO_UUID7_RANDOM, 0x00, CRYPTO_UUID7_RANDOM);
    unsigned char u[4][16];
    memset(u, 0xaa, sizeof u);
    crypto_uuid7_fill(u, 3, 0x017f22e279b0ull | 0xabcd000000000000ull, rnd); /* 48 bits kept */
    assert_memory_equal(u[0], want, 16);
    static const unsigned char ones[10] = {0x7f, 0xff, 0xbf, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff};
    static const unsigned char zeros[10] = {0x70, 0x00, 0x80};
    assert_memory_equal(u[1], want, 6);
    assert_memory_equal(u[1] + 6, ones, 10);
    assert_memory_equal(u[2], want, 6);
    assert_memory_equal(u[2] + 6, zeros, 10);
    for (int k = 0; k < 16; k++) /* nothing written past n */
        assert_int_equal(u[3][k], 0xaa);
    crypto_uuid7_fill(u + 3, 1, 0x017f22e279b1ull, rnd + 2 * CRYPTO_UUID7_RANDOM);
    assert_true(memcmp(u[1], u[3], 16) < 0); /* all random bits set, a millisecond earlier */
    crypto_uuid7_fill(u, 0, 0, NULL);
    assert_memory_equal(u[0], want, 16);
}

/* crypto_random_try(): bytes while the generator works, -1 with a clean error queue while it
 * refuses, bytes again after. */
static void test_random_try(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, zero[32] = {0};
    assert_int_equal(crypto_random_try(a, sizeof a), 0);
    assert_memory_not_equal(a, zero, 32);
    assert_int_equal(crypto_random_try(NULL, 0), 0);
    const RAND_METHOD *was = rand_refuse_begin();
    int rc = crypto_random_try(a, sizeof a);
    rand_refuse_end(was);
    assert_int_equal(rc, -1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(crypto_random_try(a, sizeof a), 0); /* working again */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* first: its child must not inherit an MD5 already fetched */
        cmocka_unit_test(test_md5_refused),     cmocka_unit_test(test_digest_threads),
        cmocka_unit_test(test_b64_rfc4648),     cmocka_unit_test(test_b64_alphabets),
        cmocka_unit_test(test_b64_rejects),     cmocka_unit_test(test_b64_roundtrip),
        cmocka_unit_test(test_hex_and_digests), cmocka_unit_test(test_hmac),
        cmocka_unit_test(test_ct_equal),        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_uuid_pool),       cmocka_unit_test(test_owner_id),
        cmocka_unit_test(test_hex_signature),   cmocka_unit_test(test_random),
        cmocka_unit_test(test_uuid7),           cmocka_unit_test(test_random_try),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
