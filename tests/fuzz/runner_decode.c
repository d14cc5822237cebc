/*
 * tests/fuzz/runner_decode.c - libFuzzer over the runner's message decoder (VALIDATE,
 * VALIDATION, RUN, RESULT in the common envelope). A message that decodes must encode again and
 * decode to the same thing.
 */
#include "proto/runner.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_run(const struct runner_run_req *a, const struct runner_run_req *b)
{
    if (!same(a->run_uuid, b->run_uuid) || !same(a->code, b->code) ||
        a->timeout_seconds != b->timeout_seconds || a->max_memory_mb != b->max_memory_mb ||
        a->nsecrets != b->nsecrets || !same(a->integrations_json, b->integrations_json) ||
        !same(a->indicator_json, b->indicator_json))
        abort();
    for (size_t i = 0; i < a->nsecrets; i++)
        if (!same(a->secrets[i].name, b->secrets[i].name) ||
            !same(a->secrets[i].value, b->secrets[i].value))
            abort();
}

static void reencode(const struct runner_msg *m, struct buf *b)
{
    switch (m->type) {
    case RUNNER_MSG_VALIDATE:
        runner_encode_validate(m->id, m->code, b);
        break;
    case RUNNER_MSG_VALIDATION:
        runner_encode_validation(m->id, &m->validation, b);
        break;
    case RUNNER_MSG_RUN:
        runner_encode_run(m->id, &m->run, b);
        break;
    case RUNNER_MSG_RESULT:
        runner_encode_result(m->id, &m->result, b);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct runner_msg m, m2;
    char err[256];
    if (runner_decode(data, size, &m, err, sizeof err) != 0)
        return 0;
    struct buf b;
    buf_init(&b);
    reencode(&m, &b);
    if (runner_decode(b.data, b.len, &m2, err, sizeof err) != 0 || m2.type != m.type ||
        m2.id != m.id)
        abort();
    if (m.type == RUNNER_MSG_VALIDATE && !same(m.code, m2.code))
        abort();
    if (m.type == RUNNER_MSG_RUN)
        check_run(&m.run, &m2.run);
    if (m.type == RUNNER_MSG_VALIDATION && m.validation.nerrors != m2.validation.nerrors)
        abort();
    if (m.type == RUNNER_MSG_RESULT &&
        (m.result.status != m2.result.status || !same(m.result.message, m2.result.message)))
        abort();
    runner_msg_destroy(&m2);
    runner_msg_destroy(&m);
    buf_destroy(&b);
    return 0;
}
