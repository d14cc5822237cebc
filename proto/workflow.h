/*
 * workflow.h (proto) - what the intake asks of workflowd: check workflow code before it is
 * saved, and test-run a workflow. The intake holds neither a runner client nor a key that opens
 * workflow secrets; workflowd loads the workflow, decrypts its secrets just in time, runs it on
 * a runner and answers.
 *
 * PROTO_WORKFLOW_REQUEST fields: "id" (u64, pairs the reply), "op" (WF_OP_*), and
 *   validate: "code";
 *   test:     "workflow" (uuid), "indicator_type", "indicator_value", and who asked, for the
 *             audit record: "key_prefix", "request_id", "client_ip" (each may be nil).
 * PROTO_WORKFLOW_REPLY fields: "id", "outcome" (WF_OUT_*), "body" (JSON text):
 *   validate, WF_OUT_OK: {"ok": bool, "errors": [{"line": n, "message": s}]};
 *   test, WF_OUT_OK:     {"success", "message", "data", "status", "log_output", "duration_ms",
 *                         "sandbox"} as the route answers it;
 *   anything else:       {"message": s} (why).
 * A request workflowd cannot decode is still answered (WF_OUT_REFUSED) when its "id" can be
 * read, so the asker never waits out its deadline for it; the intake checks its own requests
 * with the same decoder before sending, so a request it makes is never one workflowd drops.
 */
#ifndef CALSETA_PROTO_WORKFLOW_H
#define CALSETA_PROTO_WORKFLOW_H

#include <stddef.h>
#include <stdint.h>

#include "proto/runner.h"
#include "util.h"

/* A request carries at most the code; a reply at most a runner's result as JSON. */
#define WF_MAX_REQUEST (RUNNER_MAX_CODE_BYTES + 64 * 1024)
#define WF_MAX_REPLY RUNNER_MAX_MSG
#define WF_MAX_MSG (WF_MAX_REPLY > WF_MAX_REQUEST ? WF_MAX_REPLY : WF_MAX_REQUEST)

enum wf_op { WF_OP_VALIDATE = 1, WF_OP_TEST = 2 };

enum wf_outcome {
    WF_OUT_OK = 0,
    WF_OUT_NOT_FOUND = 1,      /* test: no such workflow */
    WF_OUT_NOT_EXECUTABLE = 2, /* test: not active */
    WF_OUT_RUNNER_BUSY = 3,    /* test: every runner busy, nothing ran */
    WF_OUT_NO_ANSWER = 4,      /* no runner answered in time (or none is connected) */
    WF_OUT_UNAVAILABLE = 5,    /* workflowd cannot serve it (database, stopping, overloaded) */
    WF_OUT_REFUSED = 6,        /* the request was not one workflowd reads: the id, no more */
    WF_OUT_MAX = WF_OUT_REFUSED,
};

struct wf_request {
    uint64_t id;
    int op;
    char *code;
    char *workflow_uuid;
    char *indicator_type, *indicator_value;
    char *key_prefix, *request_id, *client_ip;
};

struct wf_reply {
    uint64_t id;
    int outcome;
    char *body_json;
};

void wf_encode_request(const struct wf_request *r, struct buf *out);
void wf_encode_reply(const struct wf_reply *r, struct buf *out);
/* 0 and a filled struct (free with the _destroy below), or -1 for anything else: a request
 * must carry exactly what its op needs. */
int wf_decode_request(const void *data, size_t len, struct wf_request *r);
int wf_decode_reply(const void *data, size_t len, struct wf_reply *r);
/* The "id" of a WORKFLOW_REQUEST envelope that wf_decode_request() refused (up to WF_MAX_MSG
 * bytes, any other field broken): 0, or -1 when even that cannot be read. */
int wf_request_id(const void *data, size_t len, uint64_t *id);
void wf_request_destroy(struct wf_request *r);
/* Zeroes the body before freeing it. */
void wf_reply_destroy(struct wf_reply *r);

#endif
