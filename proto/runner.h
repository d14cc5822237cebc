/*
 * runner.h - the messages between the intake and the workflow runner (msgpack, version 1).
 *
 * VALIDATE{code}                       -> VALIDATION{ok, errors[{line, message}]}
 * RUN{run_uuid, code, timeout_seconds, max_memory_mb, trigger_context, indicator, alert,
 *     secrets{name: value}, integrations?}
 *                                      -> RESULT{status, success, message, data, log_output,
 *                                                duration_ms, sandbox}
 * Every message travels in the common envelope of proto.h ({"v":1, "t":PROTO_RUNNER_*, ...})
 * with an "id" (u64) that pairs a reply with its request. JSON-valued fields (trigger_context, indicator, alert, data) travel as JSON text.
 * runner_decode() treats every byte as hostile: wrong types, missing fields, embedded NULs and
 * oversized values are errors, never crashes.
 */
#ifndef CALSETA_PROTO_RUNNER_H
#define CALSETA_PROTO_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"
#include "util.h"

/* The largest message: a result with its message, data and log at their limits. */
#define RUNNER_MAX_MSG (32 * 1024 * 1024)
#define RUNNER_MAX_CODE_BYTES (1024 * 1024)
#define RUNNER_MAX_SECRETS 64
#define RUNNER_MAX_INTEGRATIONS_BYTES 65536
/* A result's parts, at most (the runner cuts or refuses what is larger before encoding). */
#define RUNNER_MAX_MESSAGE_BYTES (1 << 20)
#define RUNNER_MAX_DATA_BYTES (8 << 20)
#define RUNNER_MAX_LOG_BYTES (8 << 20)

enum runner_msg_type {
    RUNNER_MSG_VALIDATE = PROTO_RUNNER_VALIDATE,
    RUNNER_MSG_VALIDATION = PROTO_RUNNER_VALIDATION,
    RUNNER_MSG_RUN = PROTO_RUNNER_RUN,
    RUNNER_MSG_RESULT = PROTO_RUNNER_RESULT,
};

struct runner_error {
    int line;
    char *message;
};

struct runner_validation {
    int ok;
    size_t nerrors;
    struct runner_error *errors;
};

struct runner_secret {
    char *name;
    char *value;
};

struct runner_run_req {
    char *run_uuid;
    char *code;
    int timeout_seconds;
    int max_memory_mb;          /* 0: the runner's WORKFLOW_MAX_MEMORY_MB */
    char *trigger_context_json; /* JSON object or NULL */
    char *indicator_json;       /* JSON object with at least type and value */
    char *alert_json;           /* JSON object or NULL */
    size_t nsecrets;
    struct runner_secret *secrets;
    /* JSON object text or NULL: the Okta/Entra credentials, only for system workflows
     * (a secret: wiped on destroy; at most RUNNER_MAX_INTEGRATIONS_BYTES) */
    char *integrations_json;
};

/* RUNNER_BUSY: the run was not started (every worker of that runner busy, or no child could be
 * had); the sender gives it back to the queue without counting an attempt. */
enum runner_status { RUNNER_SUCCESS = 0, RUNNER_FAILED, RUNNER_TIMED_OUT, RUNNER_BUSY };

struct runner_result {
    enum runner_status status;
    int success;
    char *message;
    char *data_json;  /* JSON object text */
    char *log_output; /* newline-delimited JSON log entries */
    int64_t duration_ms;
    char *sandbox; /* layers that were in force, e.g. "ast,pyguard,netns,..." */
};

struct runner_msg {
    enum runner_msg_type type;
    uint64_t id;
    char *code; /* VALIDATE */
    struct runner_validation validation;
    struct runner_run_req run;
    struct runner_result result;
};

const char *runner_status_name(enum runner_status s);
int runner_status_parse(const char *s, enum runner_status *out);

void runner_encode_validate(uint64_t id, const char *code, struct buf *out);
void runner_encode_validation(uint64_t id, const struct runner_validation *v, struct buf *out);
void runner_encode_run(uint64_t id, const struct runner_run_req *r, struct buf *out);
void runner_encode_result(uint64_t id, const struct runner_result *r, struct buf *out);

/* 0 and a filled msg (free with runner_msg_destroy), or -1 with err. */
int runner_decode(const void *data, size_t len, struct runner_msg *msg, char *err, size_t errlen);
void runner_msg_destroy(struct runner_msg *msg);

void runner_validation_destroy(struct runner_validation *v);
void runner_run_req_destroy(struct runner_run_req *r);
void runner_result_destroy(struct runner_result *r);
/* Deep copies, for callers that keep a request beyond the decoded message. */
void runner_run_req_copy(struct runner_run_req *dst, const struct runner_run_req *src);

#endif
