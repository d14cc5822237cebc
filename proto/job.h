/*
 * job.h (proto) - the "work is ready" message the intake pushes after a commit.
 *
 * PROTO_JOB_READY fields: "job" (job id, int64 > 0), "alert" (alert id, int64 > 0), optional
 * "uuid" (the alert's UUID) and optional "count" (1..PROTO_MAX_ITEMS: how many jobs one commit
 * made ready, "job" and "alert" naming the first of them; 1 when absent). The intake sends one
 * message per group commit rather than one per alert. It is only a wake-up signal: PostgreSQL
 * holds the truth, so a receiver claims pending jobs and a lost message loses nothing.
 */
#ifndef CALSETA_PROTO_JOB_H
#define CALSETA_PROTO_JOB_H

#include <stddef.h>
#include <stdint.h>

struct job_ready {
    int64_t job_id;
    int64_t alert_id;
    char alert_uuid[37]; /* "" when absent */
    int64_t count;       /* jobs made ready together; 0 or 1 = one (not sent) */
};

/* Encodes into out[0..cap); 0 with *len set, -1 when ids are not positive or cap is too small
 * (64 bytes are enough without a uuid, 128 with one). */
int job_ready_encode(int64_t job_id, int64_t alert_id, void *out, size_t cap, size_t *len);
/* Encodes j; -1 also when j->count is negative or above PROTO_MAX_ITEMS. */
int job_ready_encode_msg(const struct job_ready *j, void *out, size_t cap, size_t *len);
/* 0 and *j filled (count 1 when absent), or -1 for anything but a valid JOB_READY of our version. */
int job_ready_decode(const void *data, size_t len, struct job_ready *j);

#endif
