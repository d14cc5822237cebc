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

#include <openssl/crypto.h>
#include <stddef.h>
#include <string.h>

/* The signed sources: their names, settings and secrets in one table. */
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

/* The source's secret ("" for none). */
static const char *secret_for(const struct config *c, const char *source)
{
    for (size_t i = 0; i < SIGNED_SOURCES; i++)
        if (!strcmp(source, signed_sources[i].name))
            return secret_at(c, i);
    return "";
}

static enum sig_result check_hmac(const char *secret, const struct http_request *req,
                                  const char *hdr, size_t len)
{
    uint8_t given[32], expect[32];
    if (crypto_parse_hex_signature(hdr, len, given) != 0)
        return SIG_BAD;
    crypto_hmac_sha256(secret, strlen(secret), req->body.data ? req->body.data : "",
                       req->body.len, expect);
    enum sig_result r = crypto_ct_equal(given, 32, expect, 32) ? SIG_OK : SIG_BAD;
    OPENSSL_cleanse(expect, sizeof expect);
    return r;
}

enum sig_result webhook_verify(const struct config *c, const char *source,
                               const struct http_request *req)
{
    const char *secret = secret_for(c, source);
    if (!*secret)
        return c->webhook_signature_required ? SIG_MISSING : SIG_UNSIGNED_OK;
    size_t len = 0;
    const char *h = http_header_get(req, "x-webhook-signature", &len);
    if (!h && !strcmp(source, "sentinel"))
        h = http_header_get(req, "x-sentinel-signature", &len);
    if (!h && !strcmp(source, "elastic"))
        h = http_header_get(req, "x-elastic-signature", &len);
    if (!h && !strcmp(source, "splunk"))
        h = http_header_get(req, "x-splunk-signature", &len);
    if (h)
        return check_hmac(secret, req, h, len);
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
