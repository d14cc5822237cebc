/*
 * oneshot.c - one request from a JSON file, answered as JSON on stdout.
 *
 * --one-shot-validate FILE   FILE holds the workflow code.
 * --one-shot-run FILE        FILE holds one request, or an array of them run in turn by the
 *                            same runner: {"code", "timeout_seconds", "max_memory_mb", "indicator",
 *                            "alert", "trigger_context", "secrets": {name: value}, "run_uuid"}.
 * The request is encoded as the wire message and goes through runner_dispatch(), the reply is
 * decoded from the wire message: the exact path a ZeroMQ request takes.
 */
#include "runner.h"
#include "log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sends the encoded request through dispatch and decodes the reply. */
static int roundtrip(struct zygote *z, const struct buf *req, struct runner_msg *reply)
{
    struct buf out;
    char err[256];
    buf_init(&out);
    int rc = runner_dispatch(z, req->data, req->len, &out);
    if (rc == 0 && runner_decode(out.data, out.len, reply, err, sizeof err) != 0) {
        msg_error("runner: undecodable reply: %s", err);
        rc = -1;
    }
    buf_destroy(&out);
    return rc;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(j);
}

int runner_oneshot_validate(struct zygote *z, const char *path)
{
    char *code = file_read(path, NULL);
    struct buf req;
    struct runner_msg reply;
    if (!code) {
        msg_error("runner: cannot read %s", path);
        return 1;
    }
    buf_init(&req);
    runner_encode_validate(1, code, &req);
    free(code);
    int rc = roundtrip(z, &req, &reply);
    buf_destroy(&req);
    if (rc != 0)
        return 1;
    json_t *errs = json_array();
    for (size_t i = 0; i < reply.validation.nerrors; i++)
        json_array_append_new(errs, json_pack("{s:i, s:s}", "line", reply.validation.errors[i].line,
                                              "message", reply.validation.errors[i].message));
    print_json(json_pack("{s:b, s:o}", "ok", reply.validation.ok, "errors", errs));
    runner_msg_destroy(&reply);
    return 0;
}

static char *member_json(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    return v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static int request_from_file(json_t *j, struct runner_run_req *r)
{
    const char *code = json_string_value(json_object_get(j, "code"));
    if (!code)
        return -1;
    memset(r, 0, sizeof *r);
    const char *uuid = json_string_value(json_object_get(j, "run_uuid"));
    r->run_uuid = xstrdup(uuid ? uuid : "00000000-0000-0000-0000-000000000000");
    r->code = xstrdup(code);
    json_t *t = json_object_get(j, "timeout_seconds");
    r->timeout_seconds = json_is_integer(t) ? (int)json_integer_value(t) : 30;
    r->max_memory_mb = (int)json_integer_value(json_object_get(j, "max_memory_mb"));
    r->indicator_json = member_json(j, "indicator");
    r->alert_json = member_json(j, "alert");
    r->trigger_context_json = member_json(j, "trigger_context");
    json_t *secrets = json_object_get(j, "secrets");
    const char *k;
    json_t *v;
    r->secrets = xcalloc(json_object_size(secrets) + 1, sizeof *r->secrets);
    json_object_foreach(secrets, k, v)
    {
        if (!json_is_string(v))
            continue;
        r->secrets[r->nsecrets].name = xstrdup(k);
        r->secrets[r->nsecrets++].value = xstrdup(json_string_value(v));
    }
    return 0;
}

static void print_result(const struct runner_result *r)
{
    json_t *data = json_loads(r->data_json, 0, NULL);
    print_json(json_pack("{s:s, s:b, s:s, s:o, s:s, s:I, s:s}", "status",
                         runner_status_name(r->status), "success", r->success, "message",
                         r->message, "data", data ? data : json_object(), "log_output",
                         r->log_output, "duration_ms", (json_int_t)r->duration_ms, "sandbox",
                         r->sandbox ? r->sandbox : ""));
}

static int run_one(struct zygote *z, json_t *j)
{
    struct runner_run_req r;
    struct runner_msg reply;
    struct buf req;
    if (!json_is_object(j) || request_from_file(j, &r) != 0) {
        msg_error("runner: not a run request (JSON object with \"code\")");
        return 1;
    }
    buf_init(&req);
    runner_encode_run(1, &r, &req);
    runner_run_req_destroy(&r);
    int rc = roundtrip(z, &req, &reply);
    buf_destroy(&req);
    if (rc != 0)
        return 1;
    print_result(&reply.result);
    runner_msg_destroy(&reply);
    return 0;
}

/* A file with an array runs each request in turn in the same runner (one line each). */
int runner_oneshot_run(struct zygote *z, const char *path)
{
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, NULL), *v;
    size_t i;
    int rc = 0;
    if (!j) {
        msg_error("runner: %s is not JSON", path);
        return 1;
    }
    if (json_is_array(j)) {
        json_array_foreach(j, i, v)
        {
            if (run_one(z, v) != 0)
                rc = 1;
        }
    } else {
        rc = run_one(z, j);
    }
    json_decref(j);
    return rc;
}
