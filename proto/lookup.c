/*
 * lookup.c (proto) - encode/decode of LOOKUP_REQUEST and LOOKUP_REPLY (see lookup.h).
 */
#include "proto/lookup.h"
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

static int buf_write(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

void lookup_encode_request(const struct lookup_req *r, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    proto_pack_begin(&pk, PROTO_LOOKUP_REQUEST, 6);
    proto_pack_u64(&pk, "id", r->id);
    proto_pack_str(&pk, "type", r->type);
    proto_pack_str(&pk, "value", r->value);
    proto_pack_str(&pk, "config", r->config_json);
    proto_pack_str(&pk, "providers", r->providers_json);
    proto_pack_i64(&pk, "timeout_ms", r->timeout_ms);
}

void lookup_encode_reply(const struct lookup_reply *r, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    proto_pack_begin(&pk, PROTO_LOOKUP_REPLY, 2);
    proto_pack_u64(&pk, "id", r->id);
    if (r->error)
        proto_pack_str(&pk, "error", r->error);
    else
        proto_pack_str(&pk, "results", r->results_json ? r->results_json : "{}");
}

int lookup_decode_request(const void *data, size_t len, struct lookup_req *r)
{
    struct proto_msg m;
    memset(r, 0, sizeof *r);
    if (proto_decode_max(data, len, LOOKUP_MAX_MSG, PROTO_LOOKUP_REQUEST, &m) != 0)
        return -1;
    int rc = -1;
    if (proto_get_u64(&m, "id", &r->id) == 0 && proto_get_str(&m, "type", 32, 0, &r->type) == 0 &&
        proto_get_str(&m, "value", 2048, 0, &r->value) == 0 &&
        proto_get_str(&m, "config", LOOKUP_MAX_CONFIG, 1, &r->config_json) == 0 &&
        proto_get_str(&m, "providers", 65536, 0, &r->providers_json) == 0 &&
        proto_get_i64(&m, "timeout_ms", 1, LOOKUP_MAX_TIMEOUT_MS, &r->timeout_ms) == 0)
        rc = 0;
    proto_msg_destroy(&m);
    if (rc != 0)
        lookup_req_destroy(r);
    return rc;
}

int lookup_decode_reply(const void *data, size_t len, struct lookup_reply *r)
{
    struct proto_msg m;
    memset(r, 0, sizeof *r);
    if (proto_decode_max(data, len, LOOKUP_MAX_MSG, PROTO_LOOKUP_REPLY, &m) != 0)
        return -1;
    int rc = -1;
    if (proto_get_u64(&m, "id", &r->id) == 0) {
        int e = proto_get_str(&m, "error", 1024, 0, &r->error);
        int s = proto_get_str(&m, "results", LOOKUP_MAX_RESULTS, 1, &r->results_json);
        rc = (e == 0) != (s == 0) && e >= 0 && s >= 0 ? 0 : -1; /* exactly one of them */
    }
    proto_msg_destroy(&m);
    if (rc != 0)
        lookup_reply_destroy(r);
    return rc;
}

void lookup_req_destroy(struct lookup_req *r)
{
    free(r->type);
    free(r->value);
    free(r->config_json);
    free(r->providers_json);
    memset(r, 0, sizeof *r);
}

void lookup_reply_destroy(struct lookup_reply *r)
{
    free(r->results_json);
    free(r->error);
    memset(r, 0, sizeof *r);
}
