/*
 * zygote.c - the initialised interpreter the runner keeps, and one sandboxed child per request.
 *
 * zygote_new() starts an isolated embedded CPython, loads the validator and the runtime,
 * preloads every module a workflow may import (the children cannot read files), and releases
 * the GIL. zygote_validate()/zygote_run() may then be called from any thread: each takes the
 * GIL only around fork(), so children of concurrent requests never share state. The child
 * moves its channel to descriptor 3, closes everything else, clears the environment, prepares
 * the runtime, enters the sandbox (sandbox.c) and only then compiles user code. The parent
 * reads the child's frames (log entries, ctx.http requests, the result), answers ctx.http
 * through the broker, and kills the child at the deadline.
 */
#include "runner.h"
#include "log.h"

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_CHAN_FD 3
#define MAX_FRAME (16 * 1024 * 1024)
#define MAX_LOG_BYTES (1024 * 1024)
#define SETUP_GRACE_MS 250

enum child_mode { MODE_VALIDATE, MODE_RUN, MODE_WARM };

/* A child forked, prepared and sandboxed (all but the run's rlimits and seccomp) ahead of its
 * run, waiting on its channel for the request. */
struct warm {
    pid_t pid;
    int fd;
};

struct zygote {
    struct zygote_opts opts;
    struct sandbox_probe probe;
    int layers;
    PyObject *runtime;
    PyThreadState *main_ts;
    /* the warm pool: a long-lived thread keeps opts.warm_children ready (it must outlive them:
     * their parent-death signal follows the thread that forked them) */
    pthread_t pool_thread;
    int pool_started, pool_stop, nready;
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_need;
    struct warm *ready;
    pid_t *reap; /* children killed after their answer, reaped by the pool thread */
    size_t nreap, reap_cap;
};

/* What the parent collected from one child. */
struct child_io {
    int fd;
    pid_t pid;
    uint64_t deadline_ms;
    int timed_out;
    int status;
    int http_count;
    int log_truncated;
    struct buf in;
    struct buf log;
    json_t *answer; /* the result / validated / sandbox_error frame */
};

static void pool_start(struct zygote *z);
static void pool_stop(struct zygote *z);
static void reap_later(struct zygote *z, pid_t pid);

/* CPython keeps some allocations until exit on purpose; LeakSanitizer builds ignore them. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libpython3.11.so\n";
}

/* ---- interpreter ------------------------------------------------------------------------- */

static PyObject *load_module(const char *name, const char *src)
{
    PyObject *code = Py_CompileString(src, name, Py_file_input);
    if (!code)
        return NULL;
    PyObject *mod = PyImport_ExecCodeModule(name, code);
    Py_DECREF(code);
    return mod;
}

static int start_python(struct zygote *z, char *err, size_t errlen)
{
    PyConfig cfg;
    PyConfig_InitIsolatedConfig(&cfg);
    cfg.install_signal_handlers = 0;
    cfg.site_import = 1;
    cfg.write_bytecode = 0;
    PyStatus st = Py_InitializeFromConfig(&cfg);
    PyConfig_Clear(&cfg);
    if (PyStatus_Exception(st)) {
        snprintf(err, errlen, "python init: %s", st.err_msg ? st.err_msg : "failed");
        return -1;
    }
    PyObject *val = load_module("_calseta_validator", runner_validator_py);
    Py_XDECREF(val);
    z->runtime = val ? load_module("_calseta_rt", runner_runtime_py) : NULL;
    PyObject *r1 = z->runtime ? PyObject_CallMethod(z->runtime, "preload", NULL) : NULL;
    PyObject *r2 = r1 ? PyObject_CallMethod(z->runtime, "install_modules", NULL) : NULL;
    PyObject *r3 = r2 ? PyObject_CallMethod(z->runtime, "freeze", NULL) : NULL;
    Py_XDECREF(r3);
    if (!r2 || !r3) {
        PyErr_Print();
        snprintf(err, errlen, "loading the workflow runtime failed");
        Py_XDECREF(r1);
        return -1;
    }
    Py_DECREF(r1);
    Py_DECREF(r2);
    return 0;
}

struct zygote *zygote_new(const struct zygote_opts *o, char *err, size_t errlen)
{
    struct zygote *z = xcalloc(1, sizeof *z);
    z->opts = *o;
    sandbox_probe(&z->probe);
    z->layers = o->layers & z->probe.layers_available;
    runtime_register_chan();
    if (start_python(z, err, errlen) != 0) {
        free(z);
        return NULL;
    }
    z->main_ts = PyEval_SaveThread();
    pool_start(z);
    return z;
}

void zygote_free(struct zygote *z)
{
    if (!z)
        return;
    pool_stop(z);
    free(z->ready);
    PyEval_RestoreThread(z->main_ts);
    Py_XDECREF(z->runtime);
    Py_FinalizeEx();
    free(z);
}

int zygote_layers(const struct zygote *z)
{
    return z->layers;
}

const struct sandbox_probe *zygote_probe(const struct zygote *z)
{
    return &z->probe;
}

/* ---- child ------------------------------------------------------------------------------- */

/* Channel on 3, /dev/null on 0-2, nothing else. Both are first moved above 3 so that neither
 * placement can clobber the other (a /dev/null opened as 3 would otherwise become stdout's
 * source after the channel took its number, and a program's output would land in the channel). */
static void child_fds(int chan)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int null_hi = null >= 0 ? fcntl(null, F_DUPFD_CLOEXEC, 16) : -1;
    int chan_hi = fcntl(chan, F_DUPFD_CLOEXEC, 16);
    if (chan_hi < 0 || null_hi < 0 || dup2(chan_hi, CHILD_CHAN_FD) < 0)
        _exit(4);
    for (int fd = 0; fd <= 2; fd++)
        if (dup2(null_hi, fd) < 0)
            _exit(4);
    close_range(CHILD_CHAN_FD + 1, ~0U, 0);
}

static void child_send(const char *json)
{
    uint32_t len = (uint32_t)strlen(json), be = htonl(len);
    if (write(CHILD_CHAN_FD, &be, 4) == 4) {
        ssize_t w = write(CHILD_CHAN_FD, json, len);
        (void)w;
    }
}

static void child_sandbox_error(const char *err)
{
    json_t *j = json_pack("{s:s, s:s}", "t", "sandbox_error", "message", err);
    char *s = json_dumps(j, JSON_COMPACT);
    child_send(s);
    _exit(3);
}

static int read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* A warm child's request: {"code", "req", "memory_mb", "cpu_seconds"}, or NULL (parent gone). */
static json_t *child_read_go(void)
{
    uint32_t be;
    if (read_full(CHILD_CHAN_FD, &be, 4) != 0 || ntohl(be) > MAX_FRAME)
        return NULL;
    size_t len = ntohl(be);
    char *buf = malloc(len + 1);
    if (!buf || read_full(CHILD_CHAN_FD, buf, len) != 0) {
        free(buf);
        return NULL;
    }
    json_t *j = json_loadb(buf, len, 0, NULL);
    explicit_bzero(buf, len); /* it carried the run's secrets */
    free(buf);
    return j;
}

static PyObject *child_execute(struct zygote *z, const char *code, const char *req_json,
                               int layers)
{
    return PyObject_CallMethod(z->runtime, "child_run", "ssii", code, req_json,
                               (layers & LAYER_AST) != 0, (layers & LAYER_PYGUARD) != 0);
}

/* Warm: sandboxed up to landlock now; the run's limits and seccomp once its request is in. */
static __attribute__((noreturn)) void child_warm(struct zygote *z, int layers)
{
    char err[256];
    struct sandbox_state st;
    if (sandbox_enter_early(layers, z->probe.landlock_abi, &st, err, sizeof err) != 0)
        child_sandbox_error(err);
    PyObject *r = PyObject_CallMethod(z->runtime, "child_rehearse", "ii",
                                      (layers & LAYER_AST) != 0, (layers & LAYER_PYGUARD) != 0);
    if (!r)
        child_sandbox_error("runtime rehearsal failed");
    Py_DECREF(r);
    child_send("{\"t\":\"warm\"}"); /* ready: ignored by the parent's frame reader */
    json_t *go = child_read_go();
    const char *code = json_string_value(json_object_get(go, "code"));
    const char *req = json_string_value(json_object_get(go, "req"));
    if (!code || !req)
        _exit(5);
    struct sandbox_limits lim = {
        (int)json_integer_value(json_object_get(go, "memory_mb")),
        (int)json_integer_value(json_object_get(go, "cpu_seconds")),
    };
    if (sandbox_enter_late(layers, &lim, &st, err, sizeof err) != 0)
        child_sandbox_error(err);
    _exit(child_execute(z, code, req, layers) ? 0 : 2);
}

static __attribute__((noreturn)) void child_main(struct zygote *z, enum child_mode mode, int chan,
                                                 const char *code, const char *req_json, int layers,
                                                 const struct sandbox_limits *lim)
{
    char err[256];
    child_fds(chan);
    clearenv();
    runtime_set_chan_fd(CHILD_CHAN_FD);
    PyObject *r = PyObject_CallMethod(z->runtime, "child_prepare", "s",
                                      mode == MODE_VALIDATE ? "validate" : "run");
    if (!r)
        child_sandbox_error("runtime preparation failed");
    Py_DECREF(r);
    if (mode == MODE_WARM)
        child_warm(z, layers);
    if (sandbox_enter(layers, lim, z->probe.landlock_abi, err, sizeof err) != 0)
        child_sandbox_error(err);
    if (mode == MODE_VALIDATE)
        r = PyObject_CallMethod(z->runtime, "child_validate", "s", code);
    else
        r = child_execute(z, code, req_json, layers);
    _exit(r ? 0 : 2);
}

/* Forks a child; returns its pid and the parent's end of the channel, or -1. */
static pid_t spawn(struct zygote *z, enum child_mode mode, const char *code, const char *req_json,
                   int layers, const struct sandbox_limits *lim, int *fd)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    PyGILState_STATE g = PyGILState_Ensure();
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid == 0) {
        PyOS_AfterFork_Child();
        close(sv[0]);
        child_main(z, mode, sv[1], code, req_json, layers, lim);
    }
    PyOS_AfterFork_Parent();
    PyGILState_Release(g);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return -1;
    }
    *fd = sv[0];
    return pid;
}

/* ---- parent side of the channel ---------------------------------------------------------- */

static int send_frame(int fd, const char *s)
{
    uint32_t len = (uint32_t)strlen(s), be = htonl(len);
    struct buf b;
    buf_init(&b);
    buf_append(&b, &be, 4);
    buf_append(&b, s, len);
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
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
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
    const char *t = json_string_value(json_object_get(j, "t"));
    if (!t) {
        json_decref(j);
        return;
    }
    if (!strcmp(t, "log")) {
        append_log(io, json_object_get(j, "entry"));
    } else if (!strcmp(t, "http")) {
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
        send_frame(io->fd, reply);
        free(reply);
    } else if (!io->answer &&
               (!strcmp(t, "result") || !strcmp(t, "validated") || !strcmp(t, "sandbox_error"))) {
        io->answer = json_incref(j);
    }
    json_decref(j);
}

/* Consumes complete frames; -1 on a protocol violation. */
static int drain_frames(struct zygote *z, struct child_io *io)
{
    while (io->in.len >= 4) {
        uint32_t be;
        memcpy(&be, io->in.data, 4);
        uint32_t len = ntohl(be);
        if (len > MAX_FRAME)
            return -1;
        if (io->in.len < 4 + (size_t)len)
            break;
        handle_frame(z, io, io->in.data + 4, len);
        buf_consume(&io->in, 4 + (size_t)len);
    }
    return 0;
}

static void kill_child(struct child_io *io)
{
    kill(io->pid, SIGKILL);
}

/* Reads frames until EOF or the deadline, then reaps the child. */
static void supervise(struct zygote *z, struct child_io *io)
{
    char chunk[65536];
    for (;;) {
        int64_t left = (int64_t)io->deadline_ms - (int64_t)now_mono_ms();
        if (left <= 0) {
            io->timed_out = 1;
            kill_child(io);
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
        if (drain_frames(z, io) != 0) {
            kill_child(io);
            break;
        }
        if (io->answer) { /* its last word: nothing it does from now on matters */
            kill_child(io);
            break;
        }
    }
    /* EOF does not mean exit: a child that closed its channel still meets the deadline. */
    for (;;) {
        if (io->answer) { /* killed after its answer: its exit status says nothing */
            reap_later(z, io->pid);
            break;
        }
        if (io->timed_out) { /* killed: it goes at once */
            while (waitpid(io->pid, &io->status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        pid_t w = waitpid(io->pid, &io->status, WNOHANG);
        if (w == io->pid || (w < 0 && errno != EINTR))
            break;
        if (now_mono_ms() >= io->deadline_ms && !io->timed_out) {
            io->timed_out = 1;
            kill_child(io);
        }
        usleep(2000);
    }
    close(io->fd);
}

/* ---- the warm pool ----------------------------------------------------------------------- */

static void warm_discard(struct warm *w)
{
    kill(w->pid, SIGKILL);
    close(w->fd);
    while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Waits for killed children off the answer's path (their teardown takes a millisecond or
 * two). Called and returns with pool_lock held. */
static void reap_pending(struct zygote *z)
{
    while (z->nreap > 0) {
        pid_t pid = z->reap[--z->nreap];
        pthread_mutex_unlock(&z->pool_lock);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        pthread_mutex_lock(&z->pool_lock);
    }
}

/* A child already sent SIGKILL: reaped by the pool thread, or here when there is none. */
static void reap_later(struct zygote *z, pid_t pid)
{
    if (!z->pool_started) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return;
    }
    pthread_mutex_lock(&z->pool_lock);
    if (z->nreap == z->reap_cap) {
        z->reap_cap = z->reap_cap ? z->reap_cap * 2 : 16;
        z->reap = xrealloc(z->reap, z->reap_cap * sizeof *z->reap);
    }
    z->reap[z->nreap++] = pid;
    pthread_cond_signal(&z->pool_need);
    pthread_mutex_unlock(&z->pool_lock);
}

static void *pool_main(void *arg)
{
    struct zygote *z = arg;
    pthread_mutex_lock(&z->pool_lock);
    while (!z->pool_stop) {
        if (z->nreap > 0) { /* unlocks meanwhile: look at pool_stop again after */
            reap_pending(z);
            continue;
        }
        if (z->nready >= z->opts.warm_children) {
            pthread_cond_wait(&z->pool_need, &z->pool_lock);
            continue;
        }
        pthread_mutex_unlock(&z->pool_lock);
        struct warm w;
        w.pid = spawn(z, MODE_WARM, NULL, NULL, z->layers, NULL, &w.fd);
        if (w.pid < 0)
            usleep(100 * 1000);
        pthread_mutex_lock(&z->pool_lock);
        if (w.pid > 0)
            z->ready[z->nready++] = w;
    }
    while (z->nready > 0)
        warm_discard(&z->ready[--z->nready]);
    reap_pending(z);
    pthread_mutex_unlock(&z->pool_lock);
    return NULL;
}

static void pool_start(struct zygote *z)
{
    if (z->opts.warm_children <= 0)
        return;
    z->ready = xcalloc((size_t)z->opts.warm_children, sizeof *z->ready);
    pthread_mutex_init(&z->pool_lock, NULL);
    pthread_cond_init(&z->pool_need, NULL);
    if (pthread_create(&z->pool_thread, NULL, pool_main, z) != 0) {
        msg_warn("runner: cannot start the warm pool thread; every run forks on demand");
        return;
    }
    z->pool_started = 1;
}

static void pool_stop(struct zygote *z)
{
    if (!z->pool_started)
        return;
    pthread_mutex_lock(&z->pool_lock);
    z->pool_stop = 1;
    pthread_cond_broadcast(&z->pool_need);
    pthread_mutex_unlock(&z->pool_lock);
    pthread_join(z->pool_thread, NULL);
    free(z->reap);
    pthread_mutex_destroy(&z->pool_lock);
    pthread_cond_destroy(&z->pool_need);
    z->pool_started = 0;
}

/* The oldest child that has said it is warm, else the oldest (the nearest to ready). */
static int pool_take(struct zygote *z, struct warm *w)
{
    int ok = 0;
    if (!z->pool_started)
        return -1;
    pthread_mutex_lock(&z->pool_lock);
    if (z->nready > 0) {
        int pick = 0;
        for (int i = 0; i < z->nready; i++) {
            struct pollfd p = {z->ready[i].fd, POLLIN, 0};
            if (poll(&p, 1, 0) == 1) {
                pick = i;
                break;
            }
        }
        *w = z->ready[pick];
        memmove(&z->ready[pick], &z->ready[pick + 1],
                (size_t)(z->nready - pick - 1) * sizeof *z->ready);
        z->nready--;
        ok = 1;
        pthread_cond_signal(&z->pool_need);
    }
    pthread_mutex_unlock(&z->pool_lock);
    return ok ? 0 : -1;
}

/* Hands a run to a warm child: 0 with io->pid/fd set, or -1 (none ready, or it had died). */
static int start_warm(struct zygote *z, const char *code, const char *req,
                      const struct sandbox_limits *lim, struct child_io *io)
{
    struct warm w;
    if (pool_take(z, &w) != 0)
        return -1;
    json_t *go = json_pack("{s:s, s:s, s:i, s:i}", "code", code, "req", req, "memory_mb",
                           lim->max_memory_mb, "cpu_seconds", lim->cpu_seconds);
    char *text = go ? json_dumps(go, JSON_COMPACT) : NULL;
    json_decref(go);
    int rc = text ? send_frame(w.fd, text) : -1;
    if (text) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
    if (rc != 0) {
        warm_discard(&w);
        return -1;
    }
    io->pid = w.pid;
    io->fd = w.fd;
    return 0;
}

static int run_child(struct zygote *z, enum child_mode mode, const char *code, const char *req,
                     int layers, const struct sandbox_limits *lim, uint64_t timeout_ms,
                     struct child_io *io)
{
    memset(io, 0, sizeof *io);
    buf_init(&io->in);
    buf_init(&io->log);
    io->deadline_ms = now_mono_ms() + timeout_ms;
    if (mode != MODE_RUN || layers != z->layers || start_warm(z, code, req, lim, io) != 0)
        io->pid = spawn(z, mode, code, req, layers, lim, &io->fd);
    if (io->pid < 0)
        return -1;
    supervise(z, io);
    return 0;
}

static void child_io_destroy(struct child_io *io)
{
    buf_destroy(&io->in);
    buf_destroy(&io->log);
    json_decref(io->answer);
}

static void describe_exit(const struct child_io *io, char *out, size_t outlen)
{
    if (WIFSIGNALED(io->status))
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

static void validation_from_answer(json_t *a, struct runner_validation *out)
{
    json_t *errs = json_object_get(a, "errors");
    size_t n = json_array_size(errs);
    out->errors = xcalloc(n + 1, sizeof *out->errors);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(errs, i);
        const char *m = json_string_value(json_array_get(e, 1));
        out->errors[i].line = (int)json_integer_value(json_array_get(e, 0));
        out->errors[i].message = xstrdup(m ? m : "invalid");
    }
    out->nerrors = n;
    out->ok = n == 0;
}

void zygote_validate(struct zygote *z, const char *code, struct runner_validation *out)
{
    struct child_io io;
    struct sandbox_limits lim = {z->opts.default_memory_mb, z->opts.validate_timeout_seconds};
    int layers = z->layers & ~(LAYER_AST | LAYER_PYGUARD);
    memset(out, 0, sizeof *out);
    if (run_child(z, MODE_VALIDATE, code, NULL, layers, &lim,
                  (uint64_t)z->opts.validate_timeout_seconds * 1000, &io) != 0) {
        validation_error(out, "Line 0: the runner could not start a validation process");
        return;
    }
    const char *t = json_string_value(json_object_get(io.answer, "t"));
    if (t && !strcmp(t, "validated")) {
        validation_from_answer(io.answer, out);
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

static json_t *json_or(const char *text, json_t *fallback)
{
    json_t *j = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!j)
        return fallback;
    json_decref(fallback);
    return j;
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
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static int contains_timed_out(const char *m)
{
    return strcasestr(m, "timed out") != NULL;
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
        const char *m = json_string_value(json_object_get(io->answer, "message"));
        json_t *data = json_object_get(io->answer, "data");
        out->success = json_is_true(json_object_get(io->answer, "success"));
        out->message = xstrdup(m ? m : "");
        out->data_json = json_is_object(data) ? json_dumps(data, JSON_COMPACT) : xstrdup("{}");
        out->status = out->success                       ? RUNNER_SUCCESS
                      : contains_timed_out(out->message) ? RUNNER_TIMED_OUT
                                                         : RUNNER_FAILED;
        return;
    }
    if (io->timed_out) {
        out->status = RUNNER_TIMED_OUT;
        out->message =
            xasprintf("Workflow execution timed out after %d seconds", req->timeout_seconds);
    } else if (WIFSIGNALED(io->status) && WTERMSIG(io->status) == SIGXCPU) {
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
    struct sandbox_limits lim = {memory, cpu};
    struct child_io io;
    memset(out, 0, sizeof *out);
    sandbox_layers_string(z->layers, layers_str, sizeof layers_str);
    out->sandbox = xstrdup(layers_str);
    char *rj = request_json(req, memory);
    if (!rj) {
        out->status = RUNNER_FAILED;
        out->message = xstrdup("Workflow request could not be encoded");
        out->data_json = xstrdup("{}");
        out->log_output = xstrdup("");
        return;
    }
    uint64_t timeout_ms = (uint64_t)req->timeout_seconds * 1000 + SETUP_GRACE_MS;
    int rc = run_child(z, MODE_RUN, req->code, rj, z->layers, &lim, timeout_ms, &io);
    explicit_bzero(rj, strlen(rj));
    free(rj);
    if (rc != 0) {
        out->status = RUNNER_FAILED;
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
