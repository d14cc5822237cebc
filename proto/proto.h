/*
 * proto.h - the envelope every ZeroMQ message of Calseta travels in, and hostile-input-safe
 * msgpack helpers.
 *
 * A message is one msgpack map whose first two entries are "v" (protocol version, unsigned) and
 * "t" (message type, unsigned), followed by the fields of that type. Decoding never trusts a
 * byte: the whole buffer is first walked by a bounded, non-recursive validator (size, nesting
 * depth, element counts that cannot exceed the bytes left, no reserved codes, no trailing
 * bytes) before msgpack-c builds objects from it, so a 5-byte "array of 4 billion elements" or a
 * nesting bomb costs nothing. Unknown versions and types are refused.
 */
#ifndef CALSETA_PROTO_H
#define CALSETA_PROTO_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_MAX_MSG (256 * 1024) /* no message of ours is larger; also ZMQ_MAXMSGSIZE */
#define PROTO_MAX_DEPTH 4          /* envelope map = depth 1 */
#define PROTO_MAX_ITEMS 4096       /* elements in any one array or map */

enum proto_type {
    PROTO_AUDIT_EVENT = 1, /* producer -> auditd: one audit event */
    PROTO_AUDIT_ACK = 2,   /* auditd -> producer: event ids written durably */
    PROTO_JOB_READY = 3,   /* intake -> enrichers: a committed job id */
    PROTO_RUNNER_VALIDATE = 4,   /* workflow client -> runner: check code (proto/runner.h) */
    PROTO_RUNNER_VALIDATION = 5, /* runner -> client: its verdict */
    PROTO_RUNNER_RUN = 6,        /* workflow client -> runner: run code with its secrets */
    PROTO_RUNNER_RESULT = 7,     /* runner -> client: the run's result */
    PROTO_LOOKUP_REQUEST = 8,    /* intake -> enricher: an on-demand lookup (proto/lookup.h) */
    PROTO_LOOKUP_REPLY = 9,      /* enricher -> intake: its results */
    PROTO_WORKFLOW_REQUEST = 10, /* intake -> workflowd: validate code, test a workflow
                                    (proto/workflow.h) */
    PROTO_WORKFLOW_REPLY = 11,   /* workflowd -> intake: the outcome */
    PROTO_TYPE_MAX = PROTO_WORKFLOW_REPLY, /* a new type goes above and moves this */
};

/* A decoded message: the envelope map, valid until proto_msg_destroy(). */
struct proto_msg {
    msgpack_unpacked up;
    const msgpack_object_map *map;
    unsigned type;
};

/* Validates buf as exactly one msgpack object within the limits above; 0 or -1. */
int proto_validate(const void *buf, size_t len);
/* The same with another size limit, for the few messages (workflow code and results) that
 * may be larger than PROTO_MAX_MSG. */
int proto_validate_max(const void *buf, size_t len, size_t max);

/*
 * Decodes an envelope: validates, unpacks, checks "v" == PROTO_VERSION and "t" == want_type
 * (want_type 0 accepts any known type). 0 on success (call proto_msg_destroy() after), -1 on
 * any defect (nothing to free).
 */
int proto_decode(const void *buf, size_t len, unsigned want_type, struct proto_msg *m);
int proto_decode_max(const void *buf, size_t len, size_t max, unsigned want_type,
                     struct proto_msg *m);
void proto_msg_destroy(struct proto_msg *m);

/* Field lookup in the envelope map; NULL when absent. Keys must be strings. */
const msgpack_object *proto_get(const struct proto_msg *m, const char *key);
/* Typed getters; each returns 0, 1 when absent or nil (out untouched), -1 on a wrong type or a
 * value out of bounds. Strings must be valid UTF-8 without NUL or control characters
 * (tab/newline allowed only when allow_ctl, every control character but NUL when allow_ctl is
 * PROTO_CTL_ANY: for text the platform accepts as it is, such as workflow code with CRLF line
 * ends); *out is a new NUL-terminated copy. */
#define PROTO_CTL_ANY 2
int proto_get_str(const struct proto_msg *m, const char *key, size_t maxlen, int allow_ctl,
                  char **out);
int proto_get_i64(const struct proto_msg *m, const char *key, int64_t min, int64_t max,
                  int64_t *out);
/* An unsigned integer (request ids). */
int proto_get_u64(const struct proto_msg *m, const char *key, uint64_t *out);

/* 1 when s[0..n) is valid UTF-8 with no NUL and no control characters but those allow_ctl
 * admits (see proto_get_str). */
int proto_utf8_ok(const char *s, size_t n, int allow_ctl);

/* Encoding: starts the envelope map with nfields further entries. */
void proto_pack_begin(msgpack_packer *pk, unsigned type, uint32_t nfields);
void proto_pack_str(msgpack_packer *pk, const char *key, const char *val); /* val NULL -> nil */
void proto_pack_i64(msgpack_packer *pk, const char *key, int64_t val);
void proto_pack_u64(msgpack_packer *pk, const char *key, uint64_t val);
void proto_pack_key(msgpack_packer *pk, const char *key);

#endif
