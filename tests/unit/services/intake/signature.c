/*
 * tests/unit/services/intake/signature.c - webhook signatures checked from key states made once
 * per secret give the verdicts of a plain HMAC-SHA256 (crypto_hmac_sha256) of the body: right and
 * wrong signatures, the "sha256=" prefix, secrets of up to and beyond the 64-byte block, a secret
 * changed between checks, the three sources side by side and an empty body.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "services/intake/signature.h"

static enum sig_result check(const struct config *c, const char *source, const char *header,
                             const char *sig, const char *body)
{
    struct http_header h = {header, strlen(header), sig, strlen(sig)};
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_as_plain_hmac),
        cmocka_unit_test(test_secret_changed),
        cmocka_unit_test(test_sources_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
