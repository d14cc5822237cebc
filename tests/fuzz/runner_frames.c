/*
 * tests/fuzz/runner_frames.c - libFuzzer over what a workflow child can write to the runner:
 * the byte stream of its channel is cut into frames, every frame classified, and answer frames
 * turned into a validation verdict and a run result, as the runner does. Results must stay
 * within the wire limits and encode into a runner message that decodes again.
 */
#include "runner.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void answer(json_t *a)
{
    struct runner_validation v = {0};
    struct runner_result r = {0};
    chan_validation_from_answer(a, &v);
    chan_result_from_answer(a, &r);
    if (strlen(r.message) > RUNNER_MAX_MESSAGE_BYTES || strlen(r.data_json) > RUNNER_MAX_DATA_BYTES)
        abort();
    struct buf b;
    struct runner_msg m;
    char err[128];
    buf_init(&b);
    r.log_output = strdup("");
    r.sandbox = strdup("");
    runner_encode_result(1, &r, &b);
    if (runner_decode(b.data, b.len, &m, err, sizeof err) != 0)
        abort();
    runner_msg_destroy(&m);
    buf_reset(&b);
    runner_encode_validation(2, &v, &b);
    if (runner_decode(b.data, b.len, &m, err, sizeof err) != 0)
        abort();
    runner_msg_destroy(&m);
    buf_destroy(&b);
    runner_result_destroy(&r);
    runner_validation_destroy(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf in;
    buf_init(&in);
    buf_append(&in, data, size);
    const char *frame;
    size_t len, off = 0;
    while (chan_frame_next(&in, &off, &frame, &len) == 1) {
        json_t *j;
        if (chan_frame_parse(frame, len, &j) == CHAN_ANSWER)
            answer(j);
        json_decref(j);
    }
    buf_consume(&in, off);
    buf_destroy(&in);
    return 0;
}
