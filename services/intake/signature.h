/*
 * signature.h - webhook signature verification for POST /v1/ingest/{source}.
 */
#ifndef CALSETA_SIGNATURE_H
#define CALSETA_SIGNATURE_H

#include "config.h"
#include "http_server.h"

enum sig_result {
    SIG_OK = 0,        /* verified */
    SIG_UNSIGNED_OK,   /* no secret configured and signatures not required */
    SIG_MISSING,       /* secret set (or required) and no signature header */
    SIG_BAD,           /* signature present but wrong or malformed */
};

/* Verifies the exact raw body of req for source. */
enum sig_result webhook_verify(const struct config *c, const char *source,
                               const struct http_request *req);

/* Logs at start-up which sources accept unsigned webhooks. */
void webhook_warn_unsigned(const struct config *c);

#endif
