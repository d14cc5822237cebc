/*
 * zygote.c - the runner's side of every workflow child: the request it gets, the frames it
 * sends, the deadline, the outcome.
 *
 * The children themselves are forked by the fork server (forkserver.c), a single-threaded
 * process that holds the initialised interpreter; this process, which holds the requests, the
 * ctx.http broker and many threads, never forks user code. zygote_validate()/zygote_run() may be
 * called from any thread: each asks the fork server for a child, sends it its request (a frame
 * on the child's channel), then reads the child's frames (log entries, ctx.http requests, the
 * answer), answers ctx.http through the broker, and kills the child (through its pidfd) at the
 * deadline or as soon as its answer is in. A child that ended without an answer is described
 * by its wait status, which the fork server sends when it reaps it.
 */
#include "runner.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LOG_BYTES (1024 * 1024)
#define SETUP_GRACE_MS 250
#define STATUS_WAIT_MS 1000

struct zygote {
    struct zygote_opts opts;
    struct forkserver *fs;
};

/* What the parent collected from one child. */
struct child_io {
    struct fs_child c;
    int fd; /* = c.chan */
    uint64_t deadline_ms;
    int timed_out;
    int have_status; /* status below came from the fork server */
    int status;
    int http_count;
    int log_truncated;
    int stalled; /* a reply to it could not be written before the deadline */
    struct buf in;
    struct buf log;
    json_t *answer; /* the result / validated / sandbox_error frame */
};

struct zygote *zygote_new(const struct zygote_opts *o, char *err, size_t errlen)
{
    struct forkserver *fs = forkserver_start(o, err, errlen);
    if (!fs)
        return NULL;
    struct zygote *z = xcalloc(1, sizeof *z);
    z->opts = *o;
    z->fs = fs;
    return z;
}

void zygote_free(struct zygote *z)
{
    if (!z)
        return;
    forkserver_stop(z->fs);
    free(z);
}

int zygote_layers(const struct zygote *z)
{
    return forkserver_layers(z->fs);
}

const struct sandbox_probe *zygote_probe(const struct zygote *z)
{
    return forkserver_probe(z->fs);
}

/* ---- the channel ------------------------------------------------------------------------- */

/* Writes one frame, never past the deadline: a child that does not read (its buffer full)
 * cannot hold this thread. */
static int send_frame(int fd, const char *s, uint64_t deadline_ms)
{
    uint32_t len = (uint32_t)strlen(s), be = htonl(len);
    struct buf b;
    buf_init(&b);
    buf_append(&b, &be, 4);
    buf_append(&b, s, len);
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            int64_t left = (int64_t)deadline_ms - (int64_t)now_mono_ms();
            struct pollfd p = {fd, POLLOUT, 0};
            if (left <= 0 || (poll(&p, 1, (int)left) < 0 && errno != EINTR))
                break;
            continue;
        }
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    explicit_bzero(b.data, b.len);
    buf_destroy(&b);
    return off == 4 + (size_t)len ? 0 : -1;
}

static void append_log(struct child_io *io, json_t *entry)
{
    if (!json_is_object(entry))
        return;
    char *s = json_dumps(entry, JSON_COMPACT);
    if (io->log.len + strlen(s) + 1 > MAX_LOG_BYTES) {
        io->log_truncated = 1;
    } else {
        buf_puts(&io->log, s);
        buf_puts(&io->log, "\n");
    }
    free(s);
}

static void handle_frame(struct zygote *z, struct child_io *io, const char *data, size_t len)
{
    json_t *j;
    enum chan_kind k = chan_frame_parse(data, len, &j);
    if (k == CHAN_LOG) {
        append_log(io, json_object_get(j, "entry"));
    } else if (k == CHAN_HTTP) {
        char *reply;
        int64_t remaining = (int64_t)io->deadline_ms - (int64_t)now_mono_ms();
        if (++io->http_count > z->opts.max_http_requests) {
            reply = xstrdup("{\"t\":\"http_err\",\"kind\":\"error\",\"message\":"
                            "\"too many ctx.http requests in one run\"}");
        } else {
            struct broker_opts bo = {z->opts.allow_loopback, z->opts.ssrf_allowed_hosts,
                                     z->opts.max_response_bytes};
            reply = broker_http(&bo, data, remaining > 0 ? (int)remaining : 1);
        }
        if (send_frame(io->fd, reply, io->deadline_ms) != 0)
            io->stalled = 1; /* it does not read: supervise() kills it */
        explicit_bzero(reply, strlen(reply));
        free(reply);
    } else if (k == CHAN_ANSWER && !io->answer) {
        io->answer = json_incref(j);
    }
    json_decref(j);
}

/* Consumes complete frames; -1 on a protocol violation. */
static int drain_frames(struct zygote *z, struct child_io *io)
{
    const char *frame;
    size_t len, off = 0;
    int rc;
    while ((rc = chan_frame_next(&io->in, &off, &frame, &len)) == 1)
        handle_frame(z, io, frame, len);
    buf_consume(&io->in, off);
    return rc;
}

static void kill_child(struct child_io *io)
{
    fs_child_kill(&io->c);
}

/* Reads frames until the answer, EOF or the deadline; the child is killed unless it ended. */
static void supervise(struct zygote *z, struct child_io *io)
{
    char chunk[65536];
    for (;;) {
        int64_t left = (int64_t)io->deadline_ms - (int64_t)now_mono_ms();
        if (left <= 0) {
            io->timed_out = 1;
            break;
        }
        struct pollfd p = {io->fd, POLLIN, 0};
        int rc = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
        if (rc < 0 && errno != EINTR)
            break;
        if (rc <= 0)
            continue;
        ssize_t n = read(io->fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        buf_append(&io->in, chunk, (size_t)n);
        if (drain_frames(z, io) != 0 || io->answer || io->stalled) /* garbage, last word */
            break;
    }
    explicit_bzero(chunk, sizeof chunk); /* frames carried ctx.http requests */
    if (io->answer) { /* nothing it does from now on matters */
        kill_child(io);
        return;
    }
    /* EOF does not mean exit: a child that closed its channel still meets the deadline. */
    int64_t left = (int64_t)io->deadline_ms - (int64_t)now_mono_ms();
    if (!io->timed_out && left > 0 && fs_child_status(&io->c, (int)left, &io->status) == 0) {
        io->have_status = 1;
        return;
    }
    if (now_mono_ms() >= io->deadline_ms)
        io->timed_out = 1;
    kill_child(io);
    io->have_status = fs_child_status(&io->c, STATUS_WAIT_MS, &io->status) == 0;
}

/* A child from the fork server with its request sent; -1 when none could be had. */
static int run_child(struct zygote *z, int validate, const char *go, uint64_t timeout_ms,
                     struct child_io *io)
{
    memset(io, 0, sizeof *io);
    buf_init(&io->in);
    buf_init(&io->log);
    int rc = forkserver_child(z->fs, validate, &io->c);
    if (rc == FS_DEAD) /* nothing can run any more: exit, the supervisor restarts the runner */
        msg_fatal("runner: the fork server is gone; exiting so that the runner is restarted");
    if (rc != 0)
        return -1;
    io->fd = io->c.chan;
    io->deadline_ms = now_mono_ms() + timeout_ms;
    if (send_frame(io->fd, go, io->deadline_ms) != 0) { /* dead or stuck before reading */
        kill_child(io);
        io->have_status = fs_child_status(&io->c, STATUS_WAIT_MS, &io->status) == 0;
        return 0;
    }
    supervise(z, io);
    return 0;
}

static void child_io_destroy(struct child_io *io)
{
    if (io->c.chan > 0)
        fs_child_close(&io->c);
    buf_destroy_wiped(&io->in); /* frames carried ctx.http requests (headers, tokens) */
    buf_destroy(&io->log);
    json_decref(io->answer);
}

static void describe_exit(const struct child_io *io, char *out, size_t outlen)
{
    if (!io->have_status)
        snprintf(out, outlen, "status unknown");
    else if (WIFSIGNALED(io->status))
        snprintf(out, outlen, "killed by signal %d (%s)", WTERMSIG(io->status),
                 strsignal(WTERMSIG(io->status)));
    else if (WIFEXITED(io->status))
        snprintf(out, outlen, "exit status %d", WEXITSTATUS(io->status));
    else
        snprintf(out, outlen, "unknown status");
}

/* ---- validation -------------------------------------------------------------------------- */

static void validation_error(struct runner_validation *out, const char *msg)
{
    out->ok = 0;
    out->nerrors = 1;
    out->errors = xcalloc(1, sizeof *out->errors);
    out->errors[0].line = 0;
    out->errors[0].message = xstrdup(msg);
}

void zygote_validate(struct zygote *z, const char *code, struct runner_validation *out)
{
    struct child_io io;
    memset(out, 0, sizeof *out);
    json_t *go = json_pack("{s:s}", "code", code);
    char *text = go ? json_dumps(go, JSON_COMPACT) : NULL;
    json_decref(go);
    int rc = text ? run_child(z, 1, text, (uint64_t)z->opts.validate_timeout_seconds * 1000, &io)
                  : -1;
    free(text);
    if (rc != 0) {
        validation_error(out, "Line 0: the runner could not start a validation process");
        return;
    }
    const char *t = json_string_value(json_object_get(io.answer, "t"));
    if (t && !strcmp(t, "validated")) {
        chan_validation_from_answer(io.answer, out);
    } else {
        char why[128], msg[256];
        describe_exit(&io, why, sizeof why);
        snprintf(msg, sizeof msg, "Line 0: validation did not complete (%s)",
                 io.timed_out ? "time limit exceeded" : why);
        validation_error(out, msg);
    }
    child_io_destroy(&io);
}

/* ---- runs -------------------------------------------------------------------------------- */

static char *request_json(const struct runner_run_req *req, int memory_mb);

static json_t *json_or(const char *text, json_t *fallback)
{
    json_t *j = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!j)
        return fallback;
    json_decref(fallback);
    return j;
}

/* The warm child's request: the code, the run's context (as the runtime reads it) and limits. */
static char *go_json(const struct runner_run_req *req, int memory_mb, int cpu_seconds)
{
    char *rj = request_json(req, memory_mb);
    json_t *go = rj ? json_pack("{s:s, s:s, s:i, s:i}", "code", req->code ? req->code : "",
                                "req", rj, "memory_mb", memory_mb, "cpu_seconds", cpu_seconds)
                    : NULL;
    char *text = go ? json_dumps(go, JSON_COMPACT) : NULL;
    json_decref(go);
    if (rj) {
        explicit_bzero(rj, strlen(rj));
        free(rj);
    }
    return text;
}

static char *request_json(const struct runner_run_req *req, int memory_mb)
{
    json_t *secrets = json_object();
    for (size_t i = 0; i < req->nsecrets; i++)
        json_object_set_new(secrets, req->secrets[i].name, json_string(req->secrets[i].value));
    json_t *j = json_pack("{s:o, s:o, s:o, s:o, s:i, s:i, s:s}", "indicator",
                          json_or(req->indicator_json, json_object()), "alert",
                          json_or(req->alert_json, json_null()), "trigger_context",
                          json_or(req->trigger_context_json, json_object()), "secrets", secrets,
                          "timeout_seconds", req->timeout_seconds, "max_memory_mb", memory_mb,
                          "run_uuid", req->run_uuid ? req->run_uuid : "");
    if (j) /* {} unless a system workflow: ctx.integrations' clients are then None */
        json_object_set_new(j, "integrations", json_or(req->integrations_json, json_object()));
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static void result_from_child(struct zygote *z, const struct runner_run_req *req,
                              const struct child_io *io, int cpu, struct runner_result *out)
{
    const char *t = json_string_value(json_object_get(io->answer, "t"));
    char why[160];
    describe_exit(io, why, sizeof why);
    out->success = 0;
    out->status = RUNNER_FAILED;
    if (t && !strcmp(t, "result")) {
        chan_result_from_answer(io->answer, out);
        return;
    }
    if (io->timed_out) {
        out->status = RUNNER_TIMED_OUT;
        out->message =
            xasprintf("Workflow execution timed out after %d seconds", req->timeout_seconds);
    } else if (io->have_status && WIFSIGNALED(io->status) && WTERMSIG(io->status) == SIGXCPU) {
        out->status = RUNNER_TIMED_OUT;
        out->message = xasprintf("Workflow timed out: CPU time limit of %d seconds exceeded", cpu);
    } else if (t && !strcmp(t, "sandbox_error")) {
        const char *m = json_string_value(json_object_get(io->answer, "message"));
        out->message = xasprintf("Workflow sandbox could not be set up: %s", m ? m : "?");
    } else {
        out->message = xasprintf("Workflow process ended without a result (%s)", why);
    }
    out->data_json = xstrdup("{}");
    (void)z;
}

void zygote_run(struct zygote *z, const struct runner_run_req *req, struct runner_result *out)
{
    char layers_str[128];
    uint64_t start = now_mono_ms();
    int memory = req->max_memory_mb > 0 ? req->max_memory_mb : z->opts.default_memory_mb;
    int cpu = z->opts.cpu_seconds > 0 ? z->opts.cpu_seconds : req->timeout_seconds + 1;
    struct child_io io;
    memset(out, 0, sizeof *out);
    sandbox_layers_string(zygote_layers(z), layers_str, sizeof layers_str);
    out->sandbox = xstrdup(layers_str);
    char *rj = go_json(req, memory, cpu);
    if (!rj) {
        out->status = RUNNER_FAILED;
        out->message = xstrdup("Workflow request could not be encoded");
        out->data_json = xstrdup("{}");
        out->log_output = xstrdup("");
        return;
    }
    uint64_t timeout_ms = (uint64_t)req->timeout_seconds * 1000 + SETUP_GRACE_MS;
    int rc = run_child(z, 0, rj, timeout_ms, &io);
    explicit_bzero(rj, strlen(rj));
    free(rj);
    if (rc != 0) { /* not started: the sender gives the run back uncounted */
        out->status = RUNNER_BUSY;
        out->message = xstrdup("The runner could not start a workflow process");
        out->data_json = xstrdup("{}");
        out->log_output = xstrdup("");
        return;
    }
    result_from_child(z, req, &io, cpu, out);
    if (io.log_truncated)
        buf_puts(&io.log, "{\"level\":\"warning\",\"message\":\"log output truncated\"}\n");
    out->log_output = xstrdup(io.log.len ? io.log.data : "");
    out->duration_ms = (int64_t)(now_mono_ms() - start);
    child_io_destroy(&io);
}
