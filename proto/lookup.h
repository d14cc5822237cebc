/*
 * lookup.h (proto) - on-demand enrichment lookups between the intake and the enrichers.
 *
 * PROTO_LOOKUP_REQUEST fields: "id" (u64, pairs the reply), "type" and "value" (the indicator),
 * "config" (JSON text: a provider configuration document as calseta_enrichment_config() returns
 * it; credentials in it are still encrypted), "providers" (JSON text: the array of provider
 * names to run) and "timeout_ms" (how long the asker waits).
 * PROTO_LOOKUP_REPLY fields: "id", "results" (JSON text: {provider: result}, raw included) or
 * "error" (why nothing was looked up).
 *
 * The intake never holds a credential: it sends the (encrypted) configuration and gets results;
 * the enricher decrypts just in time, as it does for jobs.
 */
#ifndef CALSETA_PROTO_LOOKUP_H
#define CALSETA_PROTO_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define LOOKUP_MAX_MSG (4 * 1024 * 1024)
#define LOOKUP_MAX_CONFIG (1024 * 1024)
#define LOOKUP_MAX_RESULTS (3 * 1024 * 1024)
#define LOOKUP_MAX_TIMEOUT_MS 120000

struct lookup_req {
    uint64_t id;
    char *type, *value;
    char *config_json;
    char *providers_json;
    int64_t timeout_ms;
};

struct lookup_reply {
    uint64_t id;
    char *results_json; /* NULL when error is set */
    char *error;
};

void lookup_encode_request(const struct lookup_req *r, struct buf *out);
void lookup_encode_reply(const struct lookup_reply *r, struct buf *out);
/* 0 and a filled struct (free with the _destroy below), or -1 for anything else. */
int lookup_decode_request(const void *data, size_t len, struct lookup_req *r);
int lookup_decode_reply(const void *data, size_t len, struct lookup_reply *r);
void lookup_req_destroy(struct lookup_req *r);
void lookup_reply_destroy(struct lookup_reply *r);

#endif
