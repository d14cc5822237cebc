/*
 * forkserver.c - the single-threaded process that owns the Python interpreter and forks every
 * workflow child, and the runner's side of it.
 *
 * Why a separate process: a child is a copy of its parent's memory, and CPython offers ways to
 * read that memory from inside. The runner process holds other runs' requests (with their
 * decrypted secrets), ctx.http replies and many threads; the fork server never sees any of it.
 * It is forked by the runner's main thread at start (before any thread or request exists; the
 * runner has already re-executed itself with a minimal environment, see main.c), probes the
 * kernel, initialises CPython (validator, runtime, preloaded modules, gc.freeze) and then only
 * forks. Being single-threaded, fork() never catches another thread holding a lock.
 *
 * Children come in two kinds, and every one reads its request from its channel:
 *   run       forked ahead (forkserver_opts.warm_children of them): prepared, sandboxed up to
 *             landlock, rehearsed (one fixed workflow of ours walks the run path, so the pages
 *             a run touches are already copied), then it says {"t":"warm"} and waits; the
 *             request brings the run's rlimits, then seccomp goes on and user code runs.
 *   validate  forked on demand, fully sandboxed before it reads the code.
 * The runner asks over a SOCK_SEQPACKET pair: one byte ('R' or 'V'), and gets back the pid with
 * three descriptors (SCM_RIGHTS): the child's channel, a pidfd (signals cannot hit a recycled
 * pid) and the read end of a pipe on which the server writes the child's wait status when it
 * reaps it. The server keeps no copy of what it hands out. It ignores SIGINT/SIGTERM (the
 * runner drains its runs first), dies with the runner (parent-death signal) and, when the
 * runner closes the control socket, kills its children and exits; children die with it.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_CHAN_FD 3
#define MAX_GO_FRAME (24 * 1024 * 1024)
#define REFILL_BACKOFF_MS 1000

enum child_mode { MODE_VALIDATE, MODE_RUN };

struct hello {
    int layers;
    struct sandbox_probe probe;
};

/* ---- server state ------------------------------------------------------------------------ */

struct kid {
    pid_t pid;
    int chan, pidfd, status_r; /* handed to the runner (then closed here) */
    int status_w;              /* kept: the wait status goes here when the child is reaped */
    int handed;
};

struct server {
    struct zygote_opts opts;
    struct sandbox_probe probe;
    int layers;
    PyObject *runtime;
    int ctl;
    struct kid *kids; /* every live child; warm ones are those not handed */
    size_t nkids, cap;
    uint64_t refill_after_ms; /* back-off after a warm child died before its run */
};

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

static PyObject *call0(PyObject *mod, const char *fn)
{
    return mod ? PyObject_CallMethod(mod, fn, NULL) : NULL;
}

static int start_python(struct server *s, char *err, size_t errlen)
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
    s->runtime = val ? load_module("_calseta_rt", runner_runtime_py) : NULL;
    PyObject *r1 = call0(s->runtime, "preload");
    PyObject *r2 = r1 ? call0(s->runtime, "install_modules") : NULL;
    PyObject *r3 = r2 ? call0(s->runtime, "freeze") : NULL;
    int ok = r3 != NULL;
    if (!ok)
        PyErr_Print();
    Py_XDECREF(r1);
    Py_XDECREF(r2);
    Py_XDECREF(r3);
    if (!ok)
        snprintf(err, errlen, "loading the workflow runtime failed");
    return ok ? 0 : -1;
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

static __attribute__((noreturn)) void child_sandbox_error(const char *err)
{
    json_t *j = json_pack("{s:s, s:s}", "t", "sandbox_error", "message", err);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s)
        child_send(s);
    _exit(3);
}

/* The request frame: a JSON object, or NULL (runner gone, or garbage). */
static json_t *child_read_go(void)
{
    uint32_t be;
    if (fd_read_full(CHILD_CHAN_FD, &be, 4) != 0 || ntohl(be) > MAX_GO_FRAME)
        return NULL;
    size_t len = ntohl(be);
    char *buf = malloc(len + 1);
    if (!buf || fd_read_full(CHILD_CHAN_FD, buf, len) != 0) {
        free(buf);
        return NULL;
    }
    json_t *j = json_loadb(buf, len, 0, NULL);
    explicit_bzero(buf, len); /* it carried the run's secrets */
    free(buf);
    return j;
}

static PyObject *call_rt(struct server *s, const char *fn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PyObject *f = PyObject_GetAttrString(s->runtime, fn);
    PyObject *args = f ? Py_VaBuildValue(fmt, ap) : NULL;
    va_end(ap);
    PyObject *r = args ? PyObject_CallObject(f, args) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(f);
    return r;
}

/* Validation: fully sandboxed (fixed limits) before the code is read. */
static __attribute__((noreturn)) void child_validate(struct server *s)
{
    char err[256];
    int layers = s->layers & ~(LAYER_AST | LAYER_PYGUARD);
    struct sandbox_limits lim = {s->opts.default_memory_mb, s->opts.validate_timeout_seconds};
    if (sandbox_enter(layers, &lim, s->probe.landlock_abi, err, sizeof err) != 0)
        child_sandbox_error(err);
    json_t *go = child_read_go();
    const char *code = json_string_value(json_object_get(go, "code"));
    if (!code)
        _exit(5);
    _exit(call_rt(s, "child_validate", "(s)", code) ? 0 : 2);
}

/* Run: sandboxed up to landlock and rehearsed now; the run's limits and seccomp once its request
 * is in. Nothing of the run executes before seccomp. */
static __attribute__((noreturn)) void child_run(struct server *s)
{
    char err[256];
    struct sandbox_state st;
    int ast = (s->layers & LAYER_AST) != 0, guard = (s->layers & LAYER_PYGUARD) != 0;
    if (sandbox_enter_early(s->layers, s->probe.landlock_abi, &st, err, sizeof err) != 0)
        child_sandbox_error(err);
    PyObject *r = call_rt(s, "child_rehearse", "(ii)", ast, guard);
    if (!r)
        child_sandbox_error("runtime rehearsal failed");
    Py_DECREF(r);
    child_send("{\"t\":\"warm\"}"); /* ready; the runner's frame reader ignores it */
    json_t *go = child_read_go();
    const char *code = json_string_value(json_object_get(go, "code"));
    const char *req = json_string_value(json_object_get(go, "req"));
    if (!code || !req)
        _exit(5);
    struct sandbox_limits lim = {
        (int)json_integer_value(json_object_get(go, "memory_mb")),
        (int)json_integer_value(json_object_get(go, "cpu_seconds")),
    };
    if (lim.max_memory_mb <= 0 || lim.cpu_seconds <= 0)
        _exit(5);
    if (sandbox_enter_late(s->layers, &lim, &st, err, sizeof err) != 0)
        child_sandbox_error(err);
    _exit(call_rt(s, "child_run", "(ssii)", code, req, ast, guard) ? 0 : 2);
}

static __attribute__((noreturn)) void child_main(struct server *s, enum child_mode mode, int chan)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    child_fds(chan);
    clearenv();
    runtime_set_chan_fd(CHILD_CHAN_FD);
    PyObject *r = call_rt(s, "child_prepare", "(s)", mode == MODE_RUN ? "run" : "validate");
    if (!r)
        child_sandbox_error("runtime preparation failed");
    Py_DECREF(r);
    if (mode == MODE_RUN)
        child_run(s);
    child_validate(s);
}

/* ---- forking ----------------------------------------------------------------------------- */

static void kid_close_handout(struct kid *k)
{
    if (k->chan >= 0)
        close(k->chan);
    if (k->pidfd >= 0)
        close(k->pidfd);
    if (k->status_r >= 0)
        close(k->status_r);
    k->chan = k->pidfd = k->status_r = -1;
}

/* Forks one child; its record joins s->kids. -1 when the system refuses. */
static int spawn(struct server *s, enum child_mode mode)
{
    int sv[2], st[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    if (pipe2(st, O_CLOEXEC) != 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    PyOS_BeforeFork();
    pid_t pid = fork();
    if (pid == 0) {
        PyOS_AfterFork_Child();
        child_main(s, mode, sv[1]);
    }
    PyOS_AfterFork_Parent();
    close(sv[1]);
    int pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    if (pid < 0 || pidfd < 0) {
        if (pid > 0)
            kill(pid, SIGKILL); /* reaped by the SIGCHLD handler: unknown pids are just reaped */
        close(sv[0]);
        close(st[0]);
        close(st[1]);
        return -1;
    }
    fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    if (s->nkids == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->kids = xrealloc(s->kids, s->cap * sizeof *s->kids);
    }
    s->kids[s->nkids++] = (struct kid){pid, sv[0], pidfd, st[0], st[1], mode == MODE_VALIDATE};
    return (int)s->nkids - 1;
}

static int warm_count(const struct server *s)
{
    int n = 0;
    for (size_t i = 0; i < s->nkids; i++)
        n += !s->kids[i].handed;
    return n;
}

/* Tops the warm children up. While runs are in progress only up to half of the target: a fork
 * and a child warming up take CPU from the runs; the rest follows when they are done. */
static void refill(struct server *s)
{
    if (now_mono_ms() < s->refill_after_ms)
        return;
    int warm = warm_count(s), busy = (int)s->nkids - warm;
    int floor = (s->opts.warm_children + 1) / 2;
    while (warm < s->opts.warm_children && (busy == 0 || warm < floor)) {
        if (spawn(s, MODE_RUN) < 0) {
            s->refill_after_ms = now_mono_ms() + REFILL_BACKOFF_MS;
            return;
        }
        warm++;
    }
}

/* Reaps every child that ended: its status goes to whoever holds its pipe. */
static void reap(struct server *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < s->nkids; i++) {
            struct kid *k = &s->kids[i];
            if (k->pid != pid)
                continue;
            if (!k->handed) { /* a warm child died before its run: slow down refills */
                msg_warn("runner fork server: a prepared child ended before its run (%s %d)",
                         WIFSIGNALED(status) ? "signal" : "exit status",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                s->refill_after_ms = now_mono_ms() + REFILL_BACKOFF_MS;
            }
            ssize_t w = write(k->status_w, &status, sizeof status);
            (void)w;
            close(k->status_w);
            kid_close_handout(k);
            s->kids[i] = s->kids[--s->nkids];
            break;
        }
    }
}

/* ---- the protocol ------------------------------------------------------------------------ */

static int send_kid(int ctl, struct kid *k)
{
    int32_t pid = k ? (int32_t)k->pid : -1;
    struct iovec iov = {&pid, sizeof pid};
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (k) {
        int fds[3] = {k->chan, k->pidfd, k->status_r};
        memset(&u, 0, sizeof u);
        m.msg_control = u.buf;
        m.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof fds);
        memcpy(CMSG_DATA(c), fds, sizeof fds);
    }
    ssize_t n;
    do
        n = sendmsg(ctl, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof pid ? 0 : -1;
}

/* The oldest warm child that has said it is ready, else the oldest, else a new one. */
static struct kid *take_run_child(struct server *s)
{
    struct kid *pick = NULL;
    for (size_t i = 0; i < s->nkids && !pick; i++) {
        struct kid *k = &s->kids[i];
        struct pollfd p = {k->chan, POLLIN, 0};
        if (!k->handed && poll(&p, 1, 0) == 1 && p.revents == POLLIN) /* said warm, not gone */
            pick = k;
    }
    for (size_t i = 0; i < s->nkids && !pick; i++)
        if (!s->kids[i].handed)
            pick = &s->kids[i];
    if (!pick) {
        int i = spawn(s, MODE_RUN);
        pick = i >= 0 ? &s->kids[i] : NULL;
    }
    return pick;
}

static int serve_request(struct server *s, char what)
{
    struct kid *k = NULL;
    if (what == 'R') {
        k = take_run_child(s);
    } else if (what == 'V') {
        int i = spawn(s, MODE_VALIDATE);
        k = i >= 0 ? &s->kids[i] : NULL;
    }
    if (k)
        k->handed = 1;
    int rc = send_kid(s->ctl, k);
    if (k)
        kid_close_handout(k); /* the runner has its own copies now */
    return rc;
}

static __attribute__((noreturn)) void server_exit(struct server *s, int code)
{
    for (size_t i = 0; i < s->nkids; i++)
        kill(s->kids[i].pid, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    _exit(code); /* no interpreter teardown, no atexit work of the runner's */
}

static __attribute__((noreturn)) void server_main(struct server *s)
{
    char err[256];
    struct hello h;
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    sandbox_probe(&s->probe);
    s->layers = s->opts.layers & s->probe.layers_available;
    runtime_register_chan();
    memset(&h, 0, sizeof h);
    if (sfd < 0 || start_python(s, err, sizeof err) != 0) {
        h.layers = -1;
        snprintf(h.probe.notes, sizeof h.probe.notes, "%s",
                 sfd < 0 ? "signalfd failed" : err);
        send(s->ctl, &h, sizeof h, MSG_NOSIGNAL);
        _exit(1);
    }
    h.layers = s->layers;
    h.probe = s->probe;
    if (send(s->ctl, &h, sizeof h, MSG_NOSIGNAL) != (ssize_t)sizeof h)
        server_exit(s, 1);
    refill(s);
    for (;;) {
        struct pollfd p[2] = {{s->ctl, POLLIN, 0}, {sfd, POLLIN, 0}};
        int n = poll(p, 2, s->refill_after_ms ? REFILL_BACKOFF_MS : -1);
        if (n < 0 && errno != EINTR)
            server_exit(s, 1);
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                ;
            reap(s);
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char what;
            ssize_t r = recv(s->ctl, &what, 1, 0);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                server_exit(s, 0); /* the runner is gone or done */
            if (r == 1 && serve_request(s, what) != 0)
                server_exit(s, 0);
        }
        refill(s);
        if (s->refill_after_ms && now_mono_ms() >= s->refill_after_ms)
            s->refill_after_ms = 0;
    }
}

/* ---- the runner's side ------------------------------------------------------------------- */

struct forkserver {
    pid_t pid;
    int ctl;
    pthread_mutex_t lock;
    struct hello hello;
};

struct forkserver *forkserver_start(const struct zygote_opts *o, char *err, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "fork server: socketpair: %s", strerror(errno));
        return NULL;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_IGN); /* a status pipe whose reader is gone */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1)
            _exit(1);
        struct server s = {.opts = *o, .ctl = sv[1]};
        server_main(&s);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        snprintf(err, errlen, "fork server: fork: %s", strerror(errno));
        return NULL;
    }
    struct forkserver *fs = xcalloc(1, sizeof *fs);
    fs->pid = pid;
    fs->ctl = sv[0];
    pthread_mutex_init(&fs->lock, NULL);
    ssize_t n = recv(fs->ctl, &fs->hello, sizeof fs->hello, 0);
    if (n != (ssize_t)sizeof fs->hello || fs->hello.layers < 0) {
        snprintf(err, errlen, "fork server did not start: %s",
                 n == (ssize_t)sizeof fs->hello ? fs->hello.probe.notes : "no answer");
        forkserver_stop(fs);
        return NULL;
    }
    fs->hello.probe.notes[sizeof fs->hello.probe.notes - 1] = 0;
    return fs;
}

void forkserver_stop(struct forkserver *fs)
{
    if (!fs)
        return;
    close(fs->ctl); /* the server kills its children and exits */
    while (waitpid(fs->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    pthread_mutex_destroy(&fs->lock);
    free(fs);
}

int forkserver_layers(const struct forkserver *fs)
{
    return fs->hello.layers;
}

const struct sandbox_probe *forkserver_probe(const struct forkserver *fs)
{
    return &fs->hello.probe;
}

static void close_rights(struct msghdr *m)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            close(fd);
        }
    }
}

/* 0 with c filled; -1 (no child this time); FS_DEAD (the server is gone). A child received
 * incompletely is killed (its pidfd, when it came) and every received descriptor closed. */
static int recv_kid(int ctl, struct fs_child *c)
{
    int32_t pid;
    struct iovec iov = {&pid, sizeof pid};
    union {
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                       .msg_controllen = sizeof u.buf};
    ssize_t n;
    do
        n = recvmsg(ctl, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return FS_DEAD;
    struct cmsghdr *cm = n == (ssize_t)sizeof pid ? CMSG_FIRSTHDR(&m) : NULL;
    if (!cm || pid <= 0 || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
        cm->cmsg_len != CMSG_LEN(3 * sizeof(int)) || (m.msg_flags & MSG_CTRUNC)) {
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len >= CMSG_LEN(2 * sizeof(int))) {
            int pidfd;
            memcpy(&pidfd, CMSG_DATA(cm) + sizeof(int), sizeof pidfd);
            syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        }
        close_rights(&m);
        return -1;
    }
    int fds[3];
    memcpy(fds, CMSG_DATA(cm), sizeof fds);
    c->pid = pid;
    c->chan = fds[0];
    c->pidfd = fds[1];
    c->status_fd = fds[2];
    return 0;
}

int forkserver_child(struct forkserver *fs, int validate, struct fs_child *c)
{
    char what = validate ? 'V' : 'R';
    pthread_mutex_lock(&fs->lock);
    int rc = send(fs->ctl, &what, 1, MSG_NOSIGNAL) == 1 ? recv_kid(fs->ctl, c) : FS_DEAD;
    pthread_mutex_unlock(&fs->lock);
    return rc;
}

void fs_child_kill(const struct fs_child *c)
{
    syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
}

int fs_child_status(const struct fs_child *c, int wait_ms, int *status)
{
    struct pollfd p = {c->status_fd, POLLIN, 0};
    int n;
    do
        n = poll(&p, 1, wait_ms);
    while (n < 0 && errno == EINTR);
    return n == 1 && read(c->status_fd, status, sizeof *status) == (ssize_t)sizeof *status ? 0
                                                                                           : -1;
}

void fs_child_close(struct fs_child *c)
{
    close(c->chan);
    close(c->pidfd);
    close(c->status_fd);
    c->chan = c->pidfd = c->status_fd = -1;
}
