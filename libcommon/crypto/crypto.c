/*
 * crypto.c - random bytes, base64, hex, digests, HMAC, constant-time compare, UUIDs and the
 * webhook signature header parser (see crypto.h).
 *
 * Base64 maps characters to values with arithmetic instead of table lookups, so decoding a
 * key does not leave a secret-dependent cache footprint.
 */
#include "crypto.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "util.h"

int crypto_random_try(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        if (RAND_bytes(p, chunk) != 1) {
            ERR_clear_error(); /* the next OpenSSL call must not read this failure as its own */
            return -1;
        }
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

void crypto_random(void *buf, size_t n)
{
    if (crypto_random_try(buf, n) != 0)
        msg_fatal("crypto: RAND_bytes failed; no secure randomness available");
}

/* ---- base64 ---------------------------------------------------------------------------- */

/* Character for a 6-bit value, without branches on the value. */
static char b64_char(unsigned v, int url)
{
    int x = (int)v, c = x + 'A';
    c += ((25 - x) >> 8) & 6;
    c -= ((51 - x) >> 8) & 75;
    c -= ((61 - x) >> 8) & 15;
    if (url) {
        c += ((61 - x) >> 8) & 2;
        c += ((62 - x) >> 8) & 49;
    } else {
        c += ((62 - x) >> 8) & 3;
    }
    return (char)c;
}

/* 6-bit value of a character, or -1; without branches on the character. */
static int b64_value(unsigned char ch, int url)
{
    int c = ch, r = -1;
    r += (((0x40 - c) & (c - 0x5b)) >> 8) & (c - 64);
    r += (((0x60 - c) & (c - 0x7b)) >> 8) & (c - 70);
    r += (((0x2f - c) & (c - 0x3a)) >> 8) & (c + 5);
    if (url) {
        r += (((0x2c - c) & (c - 0x2e)) >> 8) & 63;
        r += (((0x5e - c) & (c - 0x60)) >> 8) & 64;
    } else {
        r += (((0x2a - c) & (c - 0x2c)) >> 8) & 63;
        r += (((0x2e - c) & (c - 0x30)) >> 8) & 64;
    }
    return r;
}

size_t crypto_b64_encoded_len(size_t n, int flags)
{
    if (!(flags & CRYPTO_B64_NOPAD))
        return (n + 2) / 3 * 4;
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t crypto_b64_decoded_max(size_t len)
{
    return len / 4 * 3 + 3;
}

size_t crypto_b64_encode(const void *in, size_t n, int flags, char *out)
{
    const uint8_t *p = in;
    int url = flags & CRYPTO_B64_URL;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64_char(v >> 18, url);
        out[o++] = b64_char((v >> 12) & 63, url);
        out[o++] = b64_char((v >> 6) & 63, url);
        out[o++] = b64_char(v & 63, url);
    }
    if (n - i > 0) {
        uint32_t v = (uint32_t)p[i] << 16 | (n - i == 2 ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = b64_char(v >> 18, url);
        out[o++] = b64_char((v >> 12) & 63, url);
        if (n - i == 2)
            out[o++] = b64_char((v >> 6) & 63, url);
        if (!(flags & CRYPTO_B64_NOPAD)) {
            out[o++] = '=';
            if (n - i == 1)
                out[o++] = '=';
        }
    }
    out[o] = 0;
    return o;
}

/* Strips and validates padding; returns the number of data characters or (size_t)-1. */
static size_t b64_data_len(const char *in, size_t len, int flags)
{
    size_t pad = 0;
    while (pad < len && pad < 3 && in[len - 1 - pad] == '=')
        pad++;
    if (pad > 0) {
        if ((flags & CRYPTO_B64_NOPAD) || pad > 2 || len % 4 != 0)
            return (size_t)-1;
    } else if (!(flags & (CRYPTO_B64_NOPAD | CRYPTO_B64_PADOPT)) && len % 4 != 0) {
        return (size_t)-1;
    }
    size_t data = len - pad;
    if (data % 4 == 1)
        return (size_t)-1;
    if (pad > 0 && (data + pad) % 4 != 0)
        return (size_t)-1;
    return data;
}

int crypto_b64_decode(const char *in, size_t len, int flags, uint8_t *out, size_t *outlen)
{
    int url = flags & CRYPTO_B64_URL;
    size_t data = b64_data_len(in, len, flags);
    if (data == (size_t)-1)
        return -1;
    uint32_t acc = 0;
    int bits = 0, bad = 0;
    size_t o = 0;
    for (size_t i = 0; i < data; i++) {
        int v = b64_value((unsigned char)in[i], url);
        bad |= v;
        acc = (acc << 6) | ((uint32_t)v & 63);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bad < 0)
        return -1;
    *outlen = o;
    return 0;
}

/* ---- hex and digests ------------------------------------------------------------------- */

void crypto_hex_encode(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = 0;
}

/* The digests go through the EVP layer, so the configured providers decide what runs (a FIPS
 * provider's SHA-256 on a host that requires one; MD5 refused there). Its per-digest costs are
 * kept out of the way of short inputs (an API key, an alert's fingerprint input, a webhook
 * body): each algorithm is fetched once per process (EVP_sha256() and EVP_md5() are looked up
 * in the provider again on every use), and each thread keeps, per algorithm, a context
 * initialised once and a working one that is made a copy of it again as each digest finishes,
 * so the next digest finds it ready and no digest of a secret (a webhook secret, an API key)
 * stays in it. A copy is the cheapest start OpenSSL 3.0 offers: EVP_DigestInit_ex2() on a kept
 * context still frees and makes the provider's state, asks for an ENGINE and initialises
 * through the provider. */
enum { DIGEST_SHA256, DIGEST_MD5, DIGEST_N };

static EVP_MD *digest_md[DIGEST_N];
static pthread_once_t digest_once[DIGEST_N] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};

static void sha256_fetch(void)
{
    digest_md[DIGEST_SHA256] = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!digest_md[DIGEST_SHA256])
        msg_fatal("crypto: SHA-256 unavailable from the configured providers");
}

/* Fetched on first use only, so a process that never fingerprints an alert does not fail
 * where the providers refuse MD5 (FIPS); one that does stops with this message. */
static void md5_fetch(void)
{
    digest_md[DIGEST_MD5] = EVP_MD_fetch(NULL, "MD5", NULL);
    if (!digest_md[DIGEST_MD5])
        msg_fatal("crypto: MD5 unavailable from the configured providers (FIPS mode?); alert "
                  "fingerprints need it");
}

static void (*const digest_fetch[DIGEST_N])(void) = {sha256_fetch, md5_fetch};

struct digest_ctxs {
    EVP_MD_CTX *fresh[DIGEST_N]; /* initialised once, never updated */
    EVP_MD_CTX *work[DIGEST_N];
};

static __thread struct digest_ctxs *digest_ctxs_tls; /* this thread's, or NULL */
static pthread_key_t digest_key; /* frees a thread's contexts when it exits */
static pthread_once_t digest_key_once = PTHREAD_ONCE_INIT;

static void digest_ctxs_free(void *p)
{
    struct digest_ctxs *d = p;
    digest_ctxs_tls = NULL; /* run in the exiting thread: a digest after this makes new ones */
    for (int i = 0; i < DIGEST_N; i++) {
        EVP_MD_CTX_free(d->fresh[i]);
        EVP_MD_CTX_free(d->work[i]);
    }
    free(d);
}

static void digest_key_make(void)
{
    if (pthread_key_create(&digest_key, digest_ctxs_free) != 0)
        msg_fatal("crypto: no thread key for digest contexts");
}

/* This thread's kept contexts for one algorithm, made (and the algorithm fetched) on first use. */
static struct digest_ctxs *digest_ctxs_make(int which)
{
    struct digest_ctxs *d = digest_ctxs_tls;
    if (!d) {
        pthread_once(&digest_key_once, digest_key_make);
        d = xcalloc(1, sizeof *d);
        if (pthread_setspecific(digest_key, d) != 0)
            msg_fatal("crypto: cannot keep digest contexts");
        digest_ctxs_tls = d;
    }
    if (!d->fresh[which]) {
        pthread_once(&digest_once[which], digest_fetch[which]);
        EVP_MD_CTX *f = EVP_MD_CTX_new(), *w = EVP_MD_CTX_new();
        if (!f || !w)
            msg_fatal("out of memory");
        if (EVP_DigestInit_ex2(f, digest_md[which], NULL) != 1 || EVP_MD_CTX_copy_ex(w, f) != 1)
            msg_fatal("crypto: digest initialisation failed");
        d->fresh[which] = f;
        d->work[which] = w;
    }
    return d;
}

/* This thread's working context for one algorithm, fresh (digest_finish() left it so). */
static EVP_MD_CTX *digest_start(int which)
{
    struct digest_ctxs *d = digest_ctxs_tls;
    if (!d || !d->fresh[which])
        d = digest_ctxs_make(which);
    return d->work[which];
}

/* Finishes the digest begun by digest_start(which) and makes the working context fresh again;
 * 0, or -1 when the digest or the copy failed. */
static int digest_finish(int which, uint8_t *out, unsigned int want)
{
    struct digest_ctxs *d = digest_ctxs_tls;
    unsigned int olen = 0;
    if (EVP_DigestFinal_ex(d->work[which], out, &olen) != 1 || olen != want ||
        EVP_MD_CTX_copy_ex(d->work[which], d->fresh[which]) != 1)
        return -1;
    return 0;
}

/* One SHA-256 over two pieces (an empty piece is skipped). */
static void sha256_2(const void *a, size_t an, const void *b, size_t bn, uint8_t out[32])
{
    EVP_MD_CTX *c = digest_start(DIGEST_SHA256);
    if ((an && EVP_DigestUpdate(c, a, an) != 1) || (bn && EVP_DigestUpdate(c, b, bn) != 1) ||
        digest_finish(DIGEST_SHA256, out, 32) != 0)
        msg_fatal("crypto: SHA-256 failed");
}

void crypto_sha256(const void *p, size_t n, uint8_t out[32])
{
    sha256_2(p, n, NULL, 0, out);
}

void crypto_sha256_hex(const void *p, size_t n, char out[65])
{
    uint8_t d[32];
    crypto_sha256(p, n, d);
    crypto_hex_encode(d, 32, out);
}

void crypto_md5_require(void)
{
    pthread_once(&digest_once[DIGEST_MD5], md5_fetch);
}

void crypto_md5_hex(const void *p, size_t n, char out[33])
{
    EVP_MD_CTX *c = digest_start(DIGEST_MD5);
    uint8_t d[EVP_MAX_MD_SIZE];
    if ((n && EVP_DigestUpdate(c, p, n) != 1) || digest_finish(DIGEST_MD5, d, 16) != 0)
        msg_fatal("crypto: MD5 failed");
    crypto_hex_encode(d, 16, out);
}

/* HMAC (RFC 2104) over the fetched SHA-256: H((K ^ opad) || H((K ^ ipad) || msg)), two
 * passes (three when the key is longer than a block and is first hashed itself). Built here on
 * the kept context rather than through EVP_MAC, whose HMAC keeps three digest contexts and
 * copies them per MAC. */
void crypto_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t n, uint8_t out[32])
{
    uint8_t k[64] = {0}, pad[64], inner[32];
    if (keylen > sizeof k)
        sha256_2(key, keylen, NULL, 0, k);
    else if (keylen)
        memcpy(k, key, keylen);
    for (size_t i = 0; i < sizeof k; i++)
        pad[i] = k[i] ^ 0x36;
    sha256_2(pad, sizeof pad, msg, msg ? n : 0, inner);
    for (size_t i = 0; i < sizeof k; i++)
        pad[i] = k[i] ^ 0x5c;
    sha256_2(pad, sizeof pad, inner, sizeof inner, out);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(inner, sizeof inner);
}

void crypto_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t n, char out[65])
{
    uint8_t d[32];
    crypto_hmac_sha256(key, keylen, msg, n, d);
    crypto_hex_encode(d, 32, out);
}

int crypto_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    /* Lengths are not secret (digests and tokens have a fixed size); the bytes are. */
    if (alen != blen)
        return 0;
    return alen == 0 || CRYPTO_memcmp(a, b, alen) == 0;
}

/* ---- UUIDs ----------------------------------------------------------------------------- */

/* UUIDs come from a per-thread pool of random bytes refilled 4 KB at a time: one RAND_bytes()
 * per id (its fork check is a getpid() system call, and the generator takes a lock) was a
 * visible share of a small HTTP request's CPU, which carries a fresh request id. A forked child
 * drops the pool it inherited, so parent and child never hand out the same ids. */
#define UUID_POOL 4096
static __thread unsigned char uuid_pool[UUID_POOL];
static __thread size_t uuid_pool_left;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

static void uuid_pool_drop(void)
{
    explicit_bzero(uuid_pool, sizeof uuid_pool);
    uuid_pool_left = 0;
}

static void uuid_once_init(void)
{
    pthread_atfork(NULL, NULL, uuid_pool_drop);
}

static void uuid_random(unsigned char b[16])
{
    pthread_once(&uuid_once, uuid_once_init);
    if (uuid_pool_left < 16) {
        crypto_random(uuid_pool, sizeof uuid_pool);
        uuid_pool_left = sizeof uuid_pool;
    }
    unsigned char *p = uuid_pool + sizeof uuid_pool - uuid_pool_left;
    memcpy(b, p, 16);
    explicit_bzero(p, 16); /* an id handed out is not kept */
    uuid_pool_left -= 16;
}

void crypto_owner_id(char *out, size_t outlen, const char *prefix)
{
    char host[64] = "unknown";
    unsigned char r[4];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    crypto_random(r, sizeof r);
    snprintf(out, outlen, "%s%s%s:%d:%02x%02x%02x%02x", prefix ? prefix : "", prefix ? ":" : "",
             host, (int)getpid(), r[0], r[1], r[2], r[3]);
}

void crypto_uuid4(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uuid_random(b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

/* Each byte's value as a hex digit, 16 for any other byte: a signature's 64 digits are decoded
 * with a lookup each and one check for them all, on every signed request. */
static const uint8_t hex_digit[256] = {
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 16, 16, 16, 16, 16,
    16, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
};

static int hex_value(unsigned char c)
{
    return hex_digit[c] < 16 ? hex_digit[c] : -1;
}

int crypto_uuid_valid(const char *s)
{
    if (!s)
        return 0;
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : hex_value((unsigned char)s[i]) < 0)
            return 0;
    }
    return s[36] == 0;
}

void crypto_uuid7_fill(unsigned char (*out)[16], size_t n, uint64_t unix_ms,
                       const unsigned char *rand)
{
    unsigned char ms[6];
    for (int i = 0; i < 6; i++)
        ms[i] = (unsigned char)(unix_ms >> (40 - 8 * i));
    for (size_t i = 0; i < n; i++, rand += CRYPTO_UUID7_RANDOM) {
        unsigned char *u = out[i];
        memcpy(u, ms, sizeof ms);
        memcpy(u + 6, rand, CRYPTO_UUID7_RANDOM);
        u[6] = (unsigned char)(0x70 | (u[6] & 0x0f)); /* version 7, then rand_a's 12 bits */
        u[8] = (unsigned char)(0x80 | (u[8] & 0x3f)); /* variant 10, then rand_b's 62 bits */
    }
}

/* ---- webhook signatures ---------------------------------------------------------------- */

int crypto_parse_hex_signature(const char *hdr, size_t len, uint8_t out[32])
{
    if (!hdr)
        return -1;
    if (len >= 7 && !memcmp(hdr, "sha256=", 7)) {
        hdr += 7;
        len -= 7;
    }
    if (len != 64)
        return -1;
    uint8_t tmp[32];
    unsigned bad = 0;
    for (size_t i = 0; i < 32; i++) {
        unsigned hi = hex_digit[(unsigned char)hdr[2 * i]],
                 lo = hex_digit[(unsigned char)hdr[2 * i + 1]];
        bad |= hi | lo;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    if (bad & 16)
        return -1;
    memcpy(out, tmp, 32);
    return 0;
}
