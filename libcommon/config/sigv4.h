/*
 * sigv4.h - AWS Signature Version 4 (AWS4-HMAC-SHA256) for one HTTP request.
 *
 * The caller gives the request as it will be sent (method, canonical URI path, query,
 * headers including host and x-amz-date, body) and the credentials; sigv4_sign() returns
 * every intermediate form (canonical request, string to sign) as well as the signature and
 * the Authorization header value, so tests can compare each step with AWS's published
 * examples. All headers given are signed.
 *
 * Ours rather than libcurl's CURLOPT_AWS_SIGV4 because the libcurl we build against does not
 * sort query parameters when it signs (tests/unit/libcommon/config/sigv4.c shows it failing
 * AWS's query-order example while this signer passes it).
 */
#ifndef CALSETA_SIGV4_H
#define CALSETA_SIGV4_H

#include <stddef.h>
#include <time.h>

struct sigv4_header {
    const char *name;
    const char *value;
};

struct sigv4_input {
    const char *method;
    const char *path;  /* already URI-encoded absolute path, e.g. "/" */
    const char *query; /* raw query without '?', already encoded; sorted here. NULL = none */
    const struct sigv4_header *headers;
    size_t nheaders; /* must include host and x-amz-date (any case) */
    const void *body;
    size_t body_len;
    const char *region;
    const char *service;
    const char *amz_date; /* "YYYYMMDDTHHMMSSZ", the x-amz-date value */
    const char *access_key;
    const char *secret_key;
};

struct sigv4_result {
    char *canonical_request;
    char *string_to_sign;
    char *signed_headers; /* "content-type;host;x-amz-date" */
    char signature[65];
    char *authorization; /* full Authorization header value */
};

/* 0 on success; -1 when the input is unusable (bad date, missing fields). */
int sigv4_sign(const struct sigv4_input *in, struct sigv4_result *out);
void sigv4_result_destroy(struct sigv4_result *r);

/* kSigning = HMAC chain over "AWS4"+secret, date8 (YYYYMMDD), region, service, "aws4_request". */
void sigv4_signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char out[32]);
/* Formats t as "YYYYMMDDTHHMMSSZ" (UTC). */
void sigv4_amz_date(time_t t, char out[17]);

#endif
