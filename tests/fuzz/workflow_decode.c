/*
 * tests/fuzz/workflow_decode.c - libFuzzer over the workflow request decoders (what workflowd
 * reads from intakes, what an intake reads back). The first byte picks the decoder; the rest is
 * the message. A message that decodes must encode again and decode to the same thing.
 */
#include "proto/workflow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_request(const uint8_t *d, size_t n)
{
    struct wf_request r, r2;
    if (wf_decode_request(d, n, &r) != 0)
        return;
    struct buf b;
    buf_init(&b);
    wf_encode_request(&r, &b);
    if (wf_decode_request(b.data, b.len, &r2) != 0)
        abort();
    if (r.id != r2.id || r.op != r2.op || !same(r.code, r2.code) ||
        !same(r.workflow_uuid, r2.workflow_uuid) || !same(r.indicator_type, r2.indicator_type) ||
        !same(r.indicator_value, r2.indicator_value) || !same(r.key_prefix, r2.key_prefix) ||
        !same(r.request_id, r2.request_id) || !same(r.client_ip, r2.client_ip))
        abort();
    wf_request_destroy(&r2);
    wf_request_destroy(&r);
    buf_destroy(&b);
}

static void check_reply(const uint8_t *d, size_t n)
{
    struct wf_reply r, r2;
    if (wf_decode_reply(d, n, &r) != 0)
        return;
    if (r.outcome < WF_OUT_OK || r.outcome > WF_OUT_MAX)
        abort();
    struct buf b;
    buf_init(&b);
    wf_encode_reply(&r, &b);
    if (wf_decode_reply(b.data, b.len, &r2) != 0 || r.id != r2.id || r.outcome != r2.outcome ||
        !same(r.body_json, r2.body_json))
        abort();
    wf_reply_destroy(&r2);
    wf_reply_destroy(&r);
    buf_destroy(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        check_reply(data + 1, size - 1);
    else
        check_request(data + 1, size - 1);
    return 0;
}
