/*
 * tests/fuzz/proto_decode.c - libFuzzer over every proto/ decoder: the envelope, audit events,
 * audit acks and JOB_READY. The first byte picks the decoder; the rest is the message. A
 * message that decodes must encode again and decode to the same thing.
 */
#include "proto/audit.h"
#include "proto/job.h"
#include "proto/proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_event(const uint8_t *d, size_t n)
{
    struct audit_event e, e2;
    if (audit_event_decode(d, n, &e) != 0)
        return;
    struct buf b;
    buf_init(&b);
    if (audit_event_encode(&e, &b) != 0 || audit_event_decode(b.data, b.len, &e2) != 0)
        abort();
    if (strcmp(e.event_id, e2.event_id) || e.ts_us != e2.ts_us || !json_equal(e.fields, e2.fields))
        abort();
    audit_event_destroy(&e2);
    audit_event_destroy(&e);
    buf_destroy(&b);
}

static void check_ack(const uint8_t *d, size_t n)
{
    static char ids[AUDIT_ACK_MAX][AUDIT_ID_LEN + 1];
    size_t k;
    if (audit_ack_decode(d, n, ids, &k) == 0 && (k == 0 || k > AUDIT_ACK_MAX))
        abort();
}

static void check_job(const uint8_t *d, size_t n)
{
    struct job_ready j, j2;
    if (job_ready_decode(d, n, &j) != 0)
        return;
    unsigned char out[128];
    size_t len;
    if (job_ready_encode_msg(&j, out, sizeof out, &len) != 0 ||
        job_ready_decode(out, len, &j2) != 0 || memcmp(&j, &j2, sizeof j))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    struct proto_msg m;
    switch (data[0] % 4) {
    case 0:
        if (proto_decode(d, n, 0, &m) == 0)
            proto_msg_destroy(&m);
        break;
    case 1:
        check_event(d, n);
        break;
    case 2:
        check_ack(d, n);
        break;
    default:
        check_job(d, n);
        break;
    }
    return 0;
}
