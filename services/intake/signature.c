/*
 * signature.c - HMAC-SHA256 webhook signatures, compared in constant time.
 *
 * Sentinel and Elastic: X-Webhook-Signature (or the original's X-Sentinel-Signature /
 * X-Elastic-Signature): hex HMAC-SHA256 of the raw body, optional "sha256=" prefix.
 * Splunk: X-Splunk-Signature (same HMAC form), or the original's shared-token header
 * X-Splunk-Webhook-Secret compared with the secret itself. Generic has no secret: it is
 * accepted unsigned unless WEBHOOK_SIGNATURE_REQUIRED=true, which fails every unsigned source
 * closed. Header bytes are never trusted to be ASCII: anything but the expected hex is "bad".
 */
#include "signature.h"
#include "crypto.h"
#include "log.h"
#include "util.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The signed sources, one table: the key states below are numbered by it. */
static const struct {
    const char *name, *var;
    size_t off; /* of the secret in struct config */
} signed_sources[] = {
    {"sentinel", "SENTINEL_WEBHOOK_SECRET", offsetof(struct config, sentinel_webhook_secret)},
    {"elastic", "ELASTIC_WEBHOOK_SECRET", offsetof(struct config, elastic_webhook_secret)},
    {"splunk", "SPLUNK_WEBHOOK_SECRET", offsetof(struct config, splunk_webhook_secret)},
};
#define SIGNED_SOURCES (sizeof signed_sources / sizeof signed_sources[0])

static const char *secret_at(const struct config *c, size_t i)
{
    const char *s = *(char *const *)((const char *)c + signed_sources[i].off);
    return s ? s : "";
}

/* The source's secret ("" for none); *slot numbers the signed sources (-1 for the others). */
static const char *secret_for(const struct config *c, const char *source, int *slot)
{
    for (size_t i = 0; i < SIGNED_SOURCES; i++) {
        if (!strcmp(source, signed_sources[i].name)) {
            *slot = (int)i;
            return secret_at(c, i);
        }
    }
    *slot = -1;
    return "";
}

/* A secret's HMAC-SHA256 (RFC 2104) key blocks hashed once: the digest states after K ^ ipad
 * and after K ^ opad. A check copies them into a context the thread keeps, instead of a new
 * context, both key blocks hashed again and two digest set-ups per request. Per thread, so no
 * lock; the intake checks signatures on its loop thread only. A state is remade when its
 * source's secret is another one and dropped when the secret is removed (the configuration is
 * read once, but a test may change it): the states are as good as the key, so an old one is
 * cleared at once, and a thread's are cleared and freed when it exits. */
struct hmac_state {
    char *secret; /* the secret the state was made from */
    EVP_MD_CTX *inner, *outer;
};
static __thread struct hmac_state hmac_states[SIGNED_SOURCES];
static __thread EVP_MD_CTX *hmac_work;
static __thread EVP_MD *hmac_md;
static pthread_key_t hmac_key;
static pthread_once_t hmac_key_once = PTHREAD_ONCE_INIT;

/* Forgets a slot's key: the secret's copy zeroed and freed, the states reset (OpenSSL clears a
 * digest's state before freeing it). The contexts stay for the next secret. */
static void hmac_state_drop(struct hmac_state *st)
{
    if (st->secret) {
        OPENSSL_cleanse(st->secret, strlen(st->secret));
        free(st->secret);
        st->secret = NULL;
    }
    if (st->inner)
        EVP_MD_CTX_reset(st->inner);
    if (st->outer)
        EVP_MD_CTX_reset(st->outer);
}

void webhook_keys_free(void)
{
    for (size_t i = 0; i < SIGNED_SOURCES; i++) {
        hmac_state_drop(&hmac_states[i]);
        EVP_MD_CTX_free(hmac_states[i].inner);
        EVP_MD_CTX_free(hmac_states[i].outer);
        hmac_states[i].inner = hmac_states[i].outer = NULL;
    }
    EVP_MD_CTX_free(hmac_work); /* holds the last request's digest state */
    hmac_work = NULL;
    EVP_MD_free(hmac_md);
    hmac_md = NULL;
}

/* Thread-exit destructor: runs on the exiting thread, so it sees that thread's states. */
static void hmac_thread_exit(void *unused)
{
    (void)unused;
    webhook_keys_free();
}

static void hmac_key_make(void)
{
    if (pthread_key_create(&hmac_key, hmac_thread_exit) != 0)
        msg_fatal("signature: no thread key");
}

static EVP_MD_CTX *ctx_new(void)
{
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    if (!x)
        msg_fatal("out of memory");
    return x;
}

static void keyed(EVP_MD_CTX *x, const uint8_t k[64], uint8_t pad)
{
    uint8_t block[64];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = k[i] ^ pad;
    if (EVP_DigestInit_ex2(x, hmac_md, NULL) != 1 || EVP_DigestUpdate(x, block, sizeof block) != 1)
        msg_fatal("signature: SHA-256 failed");
    OPENSSL_cleanse(block, sizeof block);
}

static const struct hmac_state *hmac_state_for(int slot, const char *secret)
{
    struct hmac_state *st = &hmac_states[slot];
    if (st->secret && !strcmp(st->secret, secret))
        return st;
    if (!hmac_md) {
        if (!(hmac_md = EVP_MD_fetch(NULL, "SHA256", NULL)))
            msg_fatal("signature: SHA-256 unavailable");
        /* any non-NULL value makes the destructor run at this thread's exit */
        pthread_once(&hmac_key_once, hmac_key_make);
        if (pthread_setspecific(hmac_key, &hmac_key) != 0)
            msg_fatal("signature: no thread key");
    }
    hmac_state_drop(st);
    if (!st->inner) {
        st->inner = ctx_new();
        st->outer = ctx_new();
    }
    uint8_t k[64] = {0};
    size_t n = strlen(secret);
    if (n > sizeof k)
        crypto_sha256(secret, n, k); /* a key longer than the block is its digest */
    else
        memcpy(k, secret, n);
    keyed(st->inner, k, 0x36);
    keyed(st->outer, k, 0x5c);
    OPENSSL_cleanse(k, sizeof k);
    st->secret = xstrdup(secret);
    return st;
}

static void hmac_body(int slot, const char *secret, const void *msg, size_t n, uint8_t out[32])
{
    const struct hmac_state *st = hmac_state_for(slot, secret);
    if (!hmac_work)
        hmac_work = ctx_new();
    uint8_t inner[32];
    unsigned int ilen = 0, olen = 0;
    if (EVP_MD_CTX_copy_ex(hmac_work, st->inner) != 1 ||
        (n && EVP_DigestUpdate(hmac_work, msg, n) != 1) ||
        EVP_DigestFinal_ex(hmac_work, inner, &ilen) != 1 || ilen != 32 ||
        EVP_MD_CTX_copy_ex(hmac_work, st->outer) != 1 ||
        EVP_DigestUpdate(hmac_work, inner, sizeof inner) != 1 ||
        EVP_DigestFinal_ex(hmac_work, out, &olen) != 1 || olen != 32)
        msg_fatal("signature: HMAC-SHA256 failed");
    OPENSSL_cleanse(inner, sizeof inner);
}

static enum sig_result check_hmac(int slot, const char *secret, const struct http_request *req,
                                  const char *hdr, size_t len)
{
    uint8_t given[32], expect[32];
    if (crypto_parse_hex_signature(hdr, len, given) != 0)
        return SIG_BAD;
    hmac_body(slot, secret, req->body.data ? req->body.data : "", req->body.len, expect);
    enum sig_result r = crypto_ct_equal(given, 32, expect, 32) ? SIG_OK : SIG_BAD;
    OPENSSL_cleanse(expect, sizeof expect);
    return r;
}

enum sig_result webhook_verify(const struct config *c, const char *source,
                               const struct http_request *req)
{
    int slot;
    const char *secret = secret_for(c, source, &slot);
    if (!*secret) {
        if (slot >= 0 && hmac_states[slot].secret)
            hmac_state_drop(&hmac_states[slot]); /* the secret was removed */
        return c->webhook_signature_required ? SIG_MISSING : SIG_UNSIGNED_OK;
    }
    size_t len = 0;
    const char *h = http_header_get(req, "x-webhook-signature", &len);
    if (!h && !strcmp(source, "sentinel"))
        h = http_header_get(req, "x-sentinel-signature", &len);
    if (!h && !strcmp(source, "elastic"))
        h = http_header_get(req, "x-elastic-signature", &len);
    if (!h && !strcmp(source, "splunk"))
        h = http_header_get(req, "x-splunk-signature", &len);
    if (h)
        return check_hmac(slot, secret, req, h, len);
    if (!strcmp(source, "splunk")) {
        h = http_header_get(req, "x-splunk-webhook-secret", &len);
        if (h)
        {
            /* Compare digests: equal length, so the time says nothing about the secret's. */
            uint8_t a[32], b[32];
            crypto_sha256(h, len, a);
            crypto_sha256(secret, strlen(secret), b);
            return crypto_ct_equal(a, 32, b, 32) ? SIG_OK : SIG_BAD;
        }
    }
    return SIG_MISSING;
}

void webhook_warn_unsigned(const struct config *c)
{
    for (size_t i = 0; i < SIGNED_SOURCES; i++) {
        if (*secret_at(c, i))
            continue;
        if (c->webhook_signature_required)
            msg_warn("%s is not set: %s webhooks are refused (WEBHOOK_SIGNATURE_REQUIRED=true)",
                     signed_sources[i].var, signed_sources[i].name);
        else
            msg_warn("%s is not set: %s webhooks are accepted without a signature",
                     signed_sources[i].var, signed_sources[i].name);
    }
}
