/*
 * frames.c - what the runner reads from a workflow child: length-prefixed JSON frames on the
 * child's channel, and the answer frames turned into a validation or a result.
 *
 * A child runs user code, so every byte it writes is hostile: a frame longer than the limit
 * ends the conversation, a frame that is not a JSON object with a known "t" is ignored, and
 * the answer's fields are taken only with the right types and within the wire limits.
 */
#include "runner.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

int chan_frame_next(const struct buf *in, size_t *off, const char **frame, size_t *len)
{
    size_t left = in->len - *off;
    if (left < 4)
        return 0;
    uint32_t be;
    memcpy(&be, in->data + *off, 4);
    uint32_t n = ntohl(be);
    if (n > CHAN_MAX_FRAME)
        return -1;
    if (left - 4 < (size_t)n)
        return 0;
    *frame = in->data + *off + 4;
    *len = n;
    *off += 4 + (size_t)n;
    return 1;
}

enum chan_kind chan_frame_parse(const char *data, size_t len, json_t **out)
{
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
    const char *t = json_string_value(json_object_get(j, "t"));
    enum chan_kind k = CHAN_NONE;
    if (t && !strcmp(t, "log"))
        k = CHAN_LOG;
    else if (t && !strcmp(t, "http"))
        k = CHAN_HTTP;
    else if (t && (!strcmp(t, "result") || !strcmp(t, "validated") || !strcmp(t, "sandbox_error")))
        k = CHAN_ANSWER;
    if (k == CHAN_NONE) {
        json_decref(j);
        j = NULL;
    }
    *out = j;
    return k;
}

/* More would not fit in one message envelope; the rest is counted in a last entry. */
#define MAX_ERRORS 1000

void chan_validation_from_answer(json_t *a, struct runner_validation *out)
{
    json_t *errs = json_object_get(a, "errors");
    size_t n = json_array_size(errs), keep = n > MAX_ERRORS ? MAX_ERRORS - 1 : n;
    out->errors = xcalloc(keep + 2, sizeof *out->errors);
    for (size_t i = 0; i < keep; i++) {
        json_t *e = json_array_get(errs, i);
        const char *m = json_string_value(json_array_get(e, 1));
        json_int_t line = json_integer_value(json_array_get(e, 0));
        out->errors[i].line = line < 0 ? 0 : line > INT32_MAX ? INT32_MAX : (int)line;
        if (!m)
            m = "invalid";
        out->errors[i].message = xstrndup(m, strnlen(m, 4096));
    }
    out->nerrors = keep;
    if (keep < n) {
        out->errors[keep].message = xasprintf("... and %zu more errors", n - keep);
        out->nerrors++;
    }
    out->ok = n == 0;
}

/* The message, cut on a character boundary to fit the result message's limit. */
static char *bounded_message(const char *m)
{
    static const char cut[] = "... (message truncated)";
    size_t n = strlen(m), max = RUNNER_MAX_MESSAGE_BYTES - sizeof cut;
    if (n <= RUNNER_MAX_MESSAGE_BYTES)
        return xstrdup(m);
    while (max > 0 && ((unsigned char)m[max] & 0xC0) == 0x80)
        max--;
    char *out = xmalloc(max + sizeof cut);
    memcpy(out, m, max);
    memcpy(out + max, cut, sizeof cut);
    return out;
}

static int contains_timed_out(const char *m)
{
    return strcasestr(m, "timed out") != NULL;
}

void chan_result_from_answer(json_t *a, struct runner_result *out)
{
    const char *m = json_string_value(json_object_get(a, "message"));
    json_t *data = json_object_get(a, "data");
    out->success = json_is_true(json_object_get(a, "success"));
    out->message = bounded_message(m ? m : "");
    out->data_json = json_is_object(data) ? json_dumps(data, JSON_COMPACT) : xstrdup("{}");
    if (!out->data_json) /* e.g. a number jansson cannot print back */
        out->data_json = xstrdup("{}");
    if (strlen(out->data_json) > RUNNER_MAX_DATA_BYTES) { /* recorded, never re-run */
        size_t n = strlen(out->data_json);
        free(out->data_json);
        free(out->message);
        out->data_json = xstrdup("{}");
        out->message = xasprintf("Workflow result data is too large (%zu bytes; the limit is "
                                 "%d bytes)", n, RUNNER_MAX_DATA_BYTES);
        out->success = 0;
    }
    out->status = out->success                       ? RUNNER_SUCCESS
                  : contains_timed_out(out->message) ? RUNNER_TIMED_OUT
                                                     : RUNNER_FAILED;
}
