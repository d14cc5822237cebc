/*
 * job.h (proto) - the "work is ready" message the intake pushes after a commit.
 *
 * PROTO_JOB_READY fields: "job" (job id, int64 > 0), "alert" (alert id, int64 > 0) and optional
 * "uuid" (the alert's UUID). It is only a wake-up signal: PostgreSQL holds the truth, so a
 * receiver claims the job by id and a lost message loses nothing.
 */
#ifndef CALSETA_PROTO_JOB_H
#define CALSETA_PROTO_JOB_H

#include <stddef.h>
#include <stdint.h>

struct job_ready {
    int64_t job_id;
    int64_t alert_id;
    char alert_uuid[37]; /* "" when absent */
};

/* Encodes into out[0..cap); 0 with *len set, -1 when ids are not positive or cap is too small
 * (64 bytes are enough without a uuid, 128 with one). */
int job_ready_encode(int64_t job_id, int64_t alert_id, void *out, size_t cap, size_t *len);
int job_ready_encode_msg(const struct job_ready *j, void *out, size_t cap, size_t *len);
/* 0 and *j filled, or -1 for anything but a valid JOB_READY of our version. */
int job_ready_decode(const void *data, size_t len, struct job_ready *j);

#endif
