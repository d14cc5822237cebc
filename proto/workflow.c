/*
 * workflow.c (proto) - encode/decode of WORKFLOW_REQUEST and WORKFLOW_REPLY (see workflow.h).
 */
#include "proto/workflow.h"
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

static int buf_write(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

void wf_encode_request(const struct wf_request *r, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    if (r->op == WF_OP_VALIDATE) {
        proto_pack_begin(&pk, PROTO_WORKFLOW_REQUEST, 3);
        proto_pack_u64(&pk, "id", r->id);
        proto_pack_i64(&pk, "op", r->op);
        proto_pack_str(&pk, "code", r->code ? r->code : "");
        return;
    }
    proto_pack_begin(&pk, PROTO_WORKFLOW_REQUEST, 8);
    proto_pack_u64(&pk, "id", r->id);
    proto_pack_i64(&pk, "op", r->op);
    proto_pack_str(&pk, "workflow", r->workflow_uuid);
    proto_pack_str(&pk, "indicator_type", r->indicator_type);
    proto_pack_str(&pk, "indicator_value", r->indicator_value);
    proto_pack_str(&pk, "key_prefix", r->key_prefix);
    proto_pack_str(&pk, "request_id", r->request_id);
    proto_pack_str(&pk, "client_ip", r->client_ip);
}

void wf_encode_reply(const struct wf_reply *r, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    proto_pack_begin(&pk, PROTO_WORKFLOW_REPLY, 3);
    proto_pack_u64(&pk, "id", r->id);
    proto_pack_i64(&pk, "outcome", r->outcome);
    proto_pack_str(&pk, "body", r->body_json ? r->body_json : "{}");
}

/* A field that must be there (1 = absent is an error too). ctl: proto_get_str's allow_ctl. */
static int need_str(const struct proto_msg *m, const char *key, size_t max, int ctl, char **out)
{
    return proto_get_str(m, key, max, ctl, out) == 0 ? 0 : -1;
}

/* The caller's identity: each may be absent or nil. */
static int opt_str(const struct proto_msg *m, const char *key, size_t max, char **out)
{
    return proto_get_str(m, key, max, 0, out) >= 0 ? 0 : -1;
}

/* 8-4-4-4-12 hex digits: the workflow's uuid goes into a query as it is. */
static int uuid_shaped(const char *s)
{
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
            return 0;
    }
    return s[36] == 0;
}

static int decode_test(const struct proto_msg *m, struct wf_request *r)
{
    if (need_str(m, "workflow", 36, 0, &r->workflow_uuid) != 0 || !uuid_shaped(r->workflow_uuid) ||
        need_str(m, "indicator_type", 32, 0, &r->indicator_type) != 0 ||
        need_str(m, "indicator_value", 2048, PROTO_CTL_ANY, &r->indicator_value) != 0 || !*r->indicator_value)
        return -1;
    if (opt_str(m, "key_prefix", 16, &r->key_prefix) != 0 ||
        opt_str(m, "request_id", 128, &r->request_id) != 0 ||
        opt_str(m, "client_ip", 64, &r->client_ip) != 0)
        return -1;
    return proto_get(m, "code") ? -1 : 0;
}

int wf_decode_request(const void *data, size_t len, struct wf_request *r)
{
    struct proto_msg m;
    int64_t op;
    memset(r, 0, sizeof *r);
    if (proto_decode_max(data, len, WF_MAX_REQUEST, PROTO_WORKFLOW_REQUEST, &m) != 0)
        return -1;
    int rc = -1;
    if (proto_get_u64(&m, "id", &r->id) == 0 && proto_get_i64(&m, "op", WF_OP_VALIDATE, WF_OP_TEST, &op) == 0) {
        r->op = (int)op;
        if (op == WF_OP_VALIDATE)
            rc = need_str(&m, "code", RUNNER_MAX_CODE_BYTES, PROTO_CTL_ANY, &r->code) == 0 &&
                         !proto_get(&m, "workflow")
                     ? 0
                     : -1;
        else
            rc = decode_test(&m, r);
    }
    proto_msg_destroy(&m);
    if (rc != 0)
        wf_request_destroy(r);
    return rc;
}

int wf_request_id(const void *data, size_t len, uint64_t *id)
{
    struct proto_msg m;
    if (proto_decode_max(data, len, WF_MAX_MSG, PROTO_WORKFLOW_REQUEST, &m) != 0)
        return -1;
    int rc = proto_get_u64(&m, "id", id) == 0 ? 0 : -1;
    proto_msg_destroy(&m);
    return rc;
}

int wf_decode_reply(const void *data, size_t len, struct wf_reply *r)
{
    struct proto_msg m;
    int64_t outcome;
    memset(r, 0, sizeof *r);
    if (proto_decode_max(data, len, WF_MAX_REPLY, PROTO_WORKFLOW_REPLY, &m) != 0)
        return -1;
    int rc = -1;
    if (proto_get_u64(&m, "id", &r->id) == 0 &&
        proto_get_i64(&m, "outcome", WF_OUT_OK, WF_OUT_MAX, &outcome) == 0 &&
        need_str(&m, "body", WF_MAX_REPLY, PROTO_CTL_ANY, &r->body_json) == 0) {
        r->outcome = (int)outcome;
        rc = 0;
    }
    proto_msg_destroy(&m);
    if (rc != 0)
        wf_reply_destroy(r);
    return rc;
}

void wf_request_destroy(struct wf_request *r)
{
    free(r->code);
    free(r->workflow_uuid);
    free(r->indicator_type);
    free(r->indicator_value);
    free(r->key_prefix);
    free(r->request_id);
    free(r->client_ip);
    memset(r, 0, sizeof *r);
}

void wf_reply_destroy(struct wf_reply *r)
{
    if (r->body_json) /* a test's result may hold what the workflow made of its secrets */
        explicit_bzero(r->body_json, strlen(r->body_json));
    free(r->body_json);
    memset(r, 0, sizeof *r);
}
