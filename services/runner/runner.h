/*
 * runner.h - the workflow runner's internal modules and how they fit together.
 *
 * sandbox.c   the layers a run child puts between user code and the machine (namespaces,
 *             landlock, seccomp, rlimits), the kernel probe at start and the layer switches.
 * validate.c  the AST validator (Python source embedded here) and its C entry point.
 * runtime_py.c the in-sandbox runtime (calseta.workflows, ctx, the guarded import) and the
 *             _calseta_chan module the child uses to talk to its parent.
 * forkserver.c the single-threaded process that keeps the initialised interpreter and forks
 *             every child (warm run children ahead of time), and the runner's client of it.
 * zygote.c    the runner's side of a child: its request, its frames (deadline, ctx.http, log),
 *             the outcome.
 * frames.c    the frames a child writes on its channel (hostile input), answers decoded.
 * broker.c    ctx.http performed by the parent: SSRF guard, pinned address, limits.
 * server.c    the ZeroMQ ROUTER front end and the worker threads that run requests.
 * oneshot.c   --one-shot-validate / --one-shot-run: the same path, driven from a file.
 */
#ifndef CALSETA_RUNNER_H
#define CALSETA_RUNNER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <sys/types.h>

#include "proto/runner.h"
#include "util.h"

struct config;

/* Sandbox layers; each one is enough on its own to stop the basic escapes it is meant for. */
enum {
    LAYER_AST = 1 << 0,      /* validation again just before running */
    LAYER_PYGUARD = 1 << 1,  /* safe builtins, guarded import of preloaded module views */
    LAYER_NETNS = 1 << 2,    /* a new, empty network namespace */
    LAYER_USERNS = 1 << 3,   /* a new user namespace: no capability in the parent namespace */
    LAYER_LANDLOCK = 1 << 4, /* no filesystem access, no TCP bind/connect, scoped signals */
    LAYER_SECCOMP = 1 << 5,  /* syscall allow-list: compute and talk to the parent only */
    LAYER_RLIMIT = 1 << 6,   /* address space, CPU, files, processes, file size */
    LAYER_ALL = (1 << 7) - 1,
};

struct sandbox_probe {
    int layers_available; /* subset of LAYER_ALL this kernel supports */
    int landlock_abi;
    char notes[512]; /* why a layer is missing */
};

struct sandbox_limits {
    int max_memory_mb;
    int cpu_seconds;
};

/* Kernel support, probed once at start in a throwaway child. */
void sandbox_probe(struct sandbox_probe *p);
/* "ast,pyguard,..." for a layer mask. */
void sandbox_layers_string(int layers, char *out, size_t outlen);
/* Parses "seccomp,landlock" (or "all", "none"); -1 on an unknown name. */
int sandbox_layers_parse(const char *s, int *out);
/* In the child: applies the OS layers in `layers` (ast/pyguard are Python-side) to the calling
 * process; every descriptor it holds stays usable, no new one can be made. Returns 0, or -1
 * with err (the run must not go on). */
int sandbox_enter(int layers, const struct sandbox_limits *lim, int landlock_abi, char *err,
                  size_t errlen);
/* The same in two steps, for a child prepared before its run is known (a warm child): early =
 * parent-death signal, no-new-privs, namespaces, uid, landlock; late = the run's rlimits and
 * seccomp, applied once the request has been read. Nothing of the run may execute in between. */
struct sock_filter;
struct sandbox_state {
    long long base_bytes;   /* address space mapped before the run (RLIMIT_AS = this + limit) */
    struct sock_filter *bpf; /* the seccomp program, compiled early (the child exits, never freed) */
    unsigned short bpf_len;
};
int sandbox_enter_early(int layers, int landlock_abi, struct sandbox_state *st, char *err,
                        size_t errlen);
int sandbox_enter_late(int layers, const struct sandbox_limits *lim,
                       const struct sandbox_state *st, char *err, size_t errlen);

/* Embedded Python sources and builtin modules. */
extern const char runner_validator_py[];
extern const char runner_runtime_py[];
/* Registers _calseta_chan; call before the interpreter starts. */
void runtime_register_chan(void);
void runtime_set_chan_fd(int fd);

/* Options of one zygote (interpreter + fork policy). */
struct zygote_opts {
    int layers; /* layers requested */
    int default_memory_mb;
    int validate_timeout_seconds;
    int allow_loopback; /* test mode only: ctx.http may reach 127.0.0.0/8 */
    const char *ssrf_allowed_hosts;
    long long max_response_bytes;
    int max_http_requests;
    int cpu_seconds; /* 0: derived from timeout_seconds */
    int warm_children; /* runs' children prepared ahead (0: fork each run on demand) */
};

struct zygote;

/* forkserver.c: the process that forks every child (see there). */
struct forkserver;
struct fs_child {
    pid_t pid;
    int chan;      /* the child's channel (frames both ways) */
    int pidfd;     /* for signals: never a recycled pid */
    int status_fd; /* the wait status (an int) arrives here when the child is reaped */
};
struct forkserver *forkserver_start(const struct zygote_opts *o, char *err, size_t errlen);
void forkserver_stop(struct forkserver *fs);
int forkserver_layers(const struct forkserver *fs);
const struct sandbox_probe *forkserver_probe(const struct forkserver *fs);
/* Thread-safe: a run child (warm when one is ready) or a validation child. 0, or -1 when no
 * child could be made this time, or FS_DEAD when the fork server is gone. */
enum { FS_DEAD = -2 };
int forkserver_child(struct forkserver *fs, int validate, struct fs_child *c);
void fs_child_kill(const struct fs_child *c);
/* 0 with *status once the fork server reaped the child (waits at most wait_ms), else -1. */
int fs_child_status(const struct fs_child *c, int wait_ms, int *status);
void fs_child_close(struct fs_child *c);

/* Starts the fork server (which initialises the interpreter, loads the runtime and preloads the
 * allowed modules). Called on the main thread before any other thread exists. */
struct zygote *zygote_new(const struct zygote_opts *o, char *err, size_t errlen);
void zygote_free(struct zygote *z);
int zygote_layers(const struct zygote *z); /* requested & available */
const struct sandbox_probe *zygote_probe(const struct zygote *z);
/* Thread-safe: fork a sandboxed child and wait for its answer. */
void zygote_validate(struct zygote *z, const char *code, struct runner_validation *out);
void zygote_run(struct zygote *z, const struct runner_run_req *req, struct runner_result *out);

/* The child's channel: frames of a 4-byte big-endian length and a JSON object {"t": ...}. */
#define CHAN_MAX_FRAME (16 * 1024 * 1024)
enum chan_kind { CHAN_NONE, CHAN_LOG, CHAN_HTTP, CHAN_ANSWER };
/* The next complete frame at offset *off of in: 1 with *frame (inside in) and *len, *off moved
 * past it; 0 when it is not complete yet, -1 when it claims more than CHAN_MAX_FRAME. The
 * caller drops the frames it has read once, with buf_consume(in, *off), after its loop: dropping
 * each frame as it is read moves the rest of the buffer every time, quadratic in the frames a
 * child can pack into one read. */
int chan_frame_next(const struct buf *in, size_t *off, const char **frame, size_t *len);
/* The kind of a frame and its JSON object (*out: a new reference, NULL for CHAN_NONE, which
 * is every frame that is not an object with a known "t"). */
enum chan_kind chan_frame_parse(const char *data, size_t len, json_t **out);
/* An answer frame as a validation verdict ("validated") or a run result ("result"). */
void chan_validation_from_answer(json_t *a, struct runner_validation *out);
void chan_result_from_answer(json_t *a, struct runner_result *out);

/* ctx.http from the parent side. `req` and the returned reply are JSON texts (channel frames). */
struct broker_opts {
    int allow_loopback;
    const char *allowed_hosts;
    long long max_response_bytes;
};
char *broker_http(const struct broker_opts *o, const char *req_json, int remaining_ms);

/* One request (a msgpack VALIDATE or RUN) in, its reply out; the single path every front end
 * takes. Returns 0 with reply filled, or -1 (undecodable request, logged; no reply). */
int runner_dispatch(struct zygote *z, const void *req, size_t len, struct buf *reply);

/* The ZeroMQ front end: a ROUTER on endpoint; returns when *stop becomes non-zero and every
 * request in flight has been answered. */
struct config;
int runner_serve(struct zygote *z, const struct config *c, const char *endpoint,
                 int max_concurrent, volatile int *stop);

/* One request from a JSON file, its reply as JSON on stdout (tests, operators). */
int runner_oneshot_validate(struct zygote *z, const char *path);
int runner_oneshot_run(struct zygote *z, const char *path);

#endif
