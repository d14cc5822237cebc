/*
 * tests/unit/services/intake/signature.c - webhook signatures give the verdicts of a plain
 * HMAC-SHA256 (crypto_hmac_sha256) of the body: right and
 * wrong signatures, the "sha256=" prefix, secrets of up to and beyond the 64-byte block, a secret
 * changed between checks, the three sources side by side and an empty body; a secret rewritten
 * in place, secrets that differ only past the 64-byte block, a removed secret, RFC 4231 vectors,
 * and verdicts given on threads of their own.
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

#include "crypto.h"
#include "services/intake/signature.h"

static enum sig_result check(const struct config *c, const char *source, const char *header,
                             const char *sig, const char *body)
{
    struct http_header h = {header, strlen(header), sig, strlen(sig), 0};
    struct http_request req;
    memset(&req, 0, sizeof req);
    req.headers = &h;
    req.nheaders = 1;
    buf_init(&req.body);
    buf_puts(&req.body, body);
    enum sig_result r = webhook_verify(c, source, &req);
    buf_destroy(&req.body);
    return r;
}

/* The hex HMAC a sender computes, with the general function. */
static void sign(const char *secret, const char *body, char out[65])
{
    crypto_hmac_sha256_hex(secret, strlen(secret), body, strlen(body), out);
}

static void test_as_plain_hmac(void **state)
{
    (void)state;
    const char *body = "{\"alert\": \"one\"}";
    char s65[66], s64[65], s200[201];
    memset(s65, 'k', 65), s65[65] = '\0';
    memset(s64, 'q', 64), s64[64] = '\0';
    memset(s200, 'z', 200), s200[200] = '\0';
    const char *secrets[] = {"s", "bench-secret", s64, s65, s200};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        struct config c;
        memset(&c, 0, sizeof c);
        char *sec = strdup(secrets[i]);
        c.sentinel_webhook_secret = sec;
        c.elastic_webhook_secret = "";
        c.splunk_webhook_secret = "";
        char hex[65], prefixed[72], wrong[65];
        sign(sec, body, hex);
        snprintf(prefixed, sizeof prefixed, "sha256=%s", hex);
        assert_int_equal(check(&c, "sentinel", "x-webhook-signature", hex, body), SIG_OK);
        assert_int_equal(check(&c, "sentinel", "x-sentinel-signature", prefixed, body), SIG_OK);
        memcpy(wrong, hex, sizeof wrong);
        wrong[10] = wrong[10] == '0' ? '1' : '0';
        assert_int_equal(check(&c, "sentinel", "x-webhook-signature", wrong, body), SIG_BAD);
        assert_int_equal(check(&c, "sentinel", "x-webhook-signature", hex, "{\"alert\": \"two\"}"),
                         SIG_BAD);
        /* the same text in a new string at the same place or another: still the same key */
        free(sec);
        c.sentinel_webhook_secret = sec = strdup(secrets[i]);
        assert_int_equal(check(&c, "sentinel", "x-webhook-signature", hex, body), SIG_OK);
        free(sec);
    }
}

static void test_secret_changed(void **state)
{
    (void)state;
    const char *body = "{\"n\": 1}";
    struct config c;
    memset(&c, 0, sizeof c);
    c.elastic_webhook_secret = "first-secret";
    c.sentinel_webhook_secret = c.splunk_webhook_secret = "";
    char a[65], b[65];
    sign("first-secret", body, a);
    sign("second-secret", body, b);
    assert_int_equal(check(&c, "elastic", "x-webhook-signature", a, body), SIG_OK);
    c.elastic_webhook_secret = "second-secret";
    assert_int_equal(check(&c, "elastic", "x-webhook-signature", a, body), SIG_BAD);
    assert_int_equal(check(&c, "elastic", "x-elastic-signature", b, body), SIG_OK);
    c.elastic_webhook_secret = "first-secret";
    assert_int_equal(check(&c, "elastic", "x-webhook-signature", a, body), SIG_OK);
}

static void test_sources_apart(void **state)
{
    (void)state;
    struct config c;
    memset(&c, 0, sizeof c);
    c.sentinel_webhook_secret = "sentinel-key";
    c.elastic_webhook_secret = "elastic-key";
    c.splunk_webhook_secret = "splunk-key";
    const char *body = "";
    char sen[65], ela[65], spl[65];
    sign("sentinel-key", body, sen);
    sign("elastic-key", body, ela);
    sign("splunk-key", body, spl);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(check(&c, "sentinel", "x-webhook-signature", sen, body), SIG_OK);
        assert_int_equal(check(&c, "elastic", "x-webhook-signature", ela, body), SIG_OK);
        assert_int_equal(check(&c, "splunk", "x-splunk-signature", spl, body), SIG_OK);
        assert_int_equal(check(&c, "sentinel", "x-webhook-signature", ela, body), SIG_BAD);
        assert_int_equal(check(&c, "elastic", "x-webhook-signature", spl, body), SIG_BAD);
        assert_int_equal(check(&c, "splunk", "x-webhook-signature", sen, body), SIG_BAD);
    }
    assert_int_equal(check(&c, "splunk", "x-splunk-webhook-secret", "splunk-key", body), SIG_OK);
    assert_int_equal(check(&c, "splunk", "x-splunk-webhook-secret", "splunk-kez", body), SIG_BAD);
    assert_int_equal(check(&c, "sentinel", "x-other", sen, body), SIG_MISSING);
    assert_int_equal(check(&c, "generic", "x-webhook-signature", sen, body), SIG_UNSIGNED_OK);
    c.webhook_signature_required = 1;
    assert_int_equal(check(&c, "generic", "x-webhook-signature", sen, body), SIG_MISSING);
}

/* Same address, same length, one byte changed: the old signature must no longer pass. */
static void test_rewritten_in_place(void **state)
{
    (void)state;
    const char *body = "{\"n\": 2}";
    char sec[] = "first-secret";
    struct config c;
    memset(&c, 0, sizeof c);
    c.sentinel_webhook_secret = sec;
    c.elastic_webhook_secret = c.splunk_webhook_secret = "";
    char a[65], b[65];
    sign("first-secret", body, a);
    sign("First-secret", body, b);
    assert_int_equal(check(&c, "sentinel", "x-webhook-signature", a, body), SIG_OK);
    sec[0] = 'F';
    assert_int_equal(check(&c, "sentinel", "x-webhook-signature", a, body), SIG_BAD);
    assert_int_equal(check(&c, "sentinel", "x-webhook-signature", b, body), SIG_OK);
}

/* Secrets longer than the block are hashed to their key: two that differ only after byte 64
 * (or only in their last byte, or in length) are different keys. */
static void test_long_secrets(void **state)
{
    (void)state;
    const char *body = "{\"long\": true}";
    char k65[66], j65[66], k64[65], k66[67], k200[201], j200[201];
    memset(k65, 'k', 65), k65[65] = '\0';
    memcpy(j65, k65, sizeof j65), j65[64] = 'j';
    memset(k64, 'k', 64), k64[64] = '\0';
    memset(k66, 'k', 66), k66[66] = '\0';
    memset(k200, 'k', 200), k200[200] = '\0';
    memcpy(j200, k200, sizeof j200), j200[199] = 'j';
    const char *secrets[] = {k65, j65, k64, k66, k200, j200};
    enum { N = sizeof secrets / sizeof secrets[0] };
    char sigs[N][65];
    for (size_t i = 0; i < N; i++)
        sign(secrets[i], body, sigs[i]);
    struct config c;
    memset(&c, 0, sizeof c);
    c.elastic_webhook_secret = c.splunk_webhook_secret = "";
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < N; i++) {
            c.sentinel_webhook_secret = (char *)secrets[i];
            for (size_t j = 0; j < N; j++)
                assert_int_equal(check(&c, "sentinel", "x-webhook-signature", sigs[j], body),
                                 i == j ? SIG_OK : SIG_BAD);
        }
}

/* A removed secret leaves nothing behind: the source is unsigned while it is gone, and the old
 * signature fails under the next secret. */
static void test_secret_removed(void **state)
{
    (void)state;
    const char *body = "{\"gone\": 1}";
    struct config c;
    memset(&c, 0, sizeof c);
    c.sentinel_webhook_secret = c.elastic_webhook_secret = "";
    c.splunk_webhook_secret = "old-secret";
    char old[65], fresh[65];
    sign("old-secret", body, old);
    sign("new-secret", body, fresh);
    assert_int_equal(check(&c, "splunk", "x-splunk-signature", old, body), SIG_OK);
    c.splunk_webhook_secret = "";
    assert_int_equal(check(&c, "splunk", "x-splunk-signature", old, body), SIG_UNSIGNED_OK);
    c.webhook_signature_required = 1;
    assert_int_equal(check(&c, "splunk", "x-splunk-signature", old, body), SIG_MISSING);
    c.splunk_webhook_secret = "new-secret";
    assert_int_equal(check(&c, "splunk", "x-splunk-signature", old, body), SIG_BAD);
    assert_int_equal(check(&c, "splunk", "x-splunk-signature", fresh, body), SIG_OK);
    c.splunk_webhook_secret = "old-secret";
    assert_int_equal(check(&c, "splunk", "x-splunk-signature", old, body), SIG_OK);
    assert_int_equal(check(&c, "splunk", "x-splunk-signature", fresh, body), SIG_BAD);
}

/* RFC 4231 test cases 1, 2, 6 and 7 (keys of 20, 4 and 131 bytes): an oracle that is not
 * crypto_hmac_sha256. Cases 3-5 have keys or bodies with bytes a C string cannot carry. */
static void test_rfc4231(void **state)
{
    (void)state;
    char k20[21], k131[132];
    memset(k20, 0x0b, 20), k20[20] = '\0';
    memset(k131, 0xaa, 131), k131[131] = '\0';
    static const struct {
        int key; /* 0: k20, 1: "Jefe", 2: k131 */
        const char *body, *mac;
    } v[] = {
        {0, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {1, "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {2, "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {2,
         "This is a test using a larger than block-size key and a larger than block-size data. "
         "The key needs to be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    const char *keys[] = {k20, "Jefe", k131};
    struct config c;
    memset(&c, 0, sizeof c);
    c.sentinel_webhook_secret = c.splunk_webhook_secret = "";
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        c.elastic_webhook_secret = (char *)keys[v[i].key];
        assert_int_equal(check(&c, "elastic", "x-webhook-signature", v[i].mac, v[i].body), SIG_OK);
    }
}

static void *verify_on_thread(void *arg)
{
    const struct config *c = arg;
    char hex[65];
    sign("thread-secret", "{}", hex);
    intptr_t r = check(c, "sentinel", "x-webhook-signature", hex, "{}");
    return (void *)r;
}

/* Threads of their own verify as the main thread does (and leave nothing for LeakSanitizer). */
static void test_on_threads(void **state)
{
    (void)state;
    struct config c;
    memset(&c, 0, sizeof c);
    c.sentinel_webhook_secret = "thread-secret";
    c.elastic_webhook_secret = c.splunk_webhook_secret = "";
    for (int i = 0; i < 4; i++) {
        pthread_t t;
        void *r = NULL;
        assert_int_equal(pthread_create(&t, NULL, verify_on_thread, &c), 0);
        assert_int_equal(pthread_join(t, &r), 0);
        assert_int_equal((intptr_t)r, SIG_OK);
    }
    assert_int_equal((intptr_t)verify_on_thread(&c), SIG_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_as_plain_hmac), cmocka_unit_test(test_secret_changed),
        cmocka_unit_test(test_sources_apart), cmocka_unit_test(test_rewritten_in_place),
        cmocka_unit_test(test_long_secrets),  cmocka_unit_test(test_secret_removed),
        cmocka_unit_test(test_rfc4231),       cmocka_unit_test(test_on_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
