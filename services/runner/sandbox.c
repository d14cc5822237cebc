/*
 * sandbox.c - the operating-system layers of a run child, and the kernel probe.
 *
 * Applied in the forked child, in this order, after the interpreter is ready and before any
 * user code is compiled:
 *   baseline  parent-death signal, no_new_privs, not dumpable, and (when the runner is root)
 *             uid/gid nobody with no supplementary groups;
 *   netns     a new network namespace (only a downed loopback inside);
 *   userns    a new user namespace, so no capability is held in the parent namespace;
 *   landlock  (before rlimit: it needs a descriptor for its ruleset)
 *   rlimit    address space = what the child already maps + the run's memory budget (so each
 *             run gets the whole budget, never the runner), CPU seconds, no new descriptors, no new
 *             processes, no file writes, no core dumps;
 *   landlock  every filesystem right handled and none granted; TCP bind/connect denied;
 *             abstract unix sockets and signals scoped (as far as the kernel's ABI goes);
 *   seccomp   an allow-list of the syscalls the interpreter needs to compute and to talk to
 *             its parent over the inherited descriptors; everything else fails with EPERM.
 * Each layer on its own stops the basic escape it is meant for (see the integration test).
 */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_restrict_self 446
#endif

/* The landlock ABI as of ABI 6; the kernel takes the struct size that matches its ABI. */
struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_FS_ABI1 ((1ULL << 13) - 1) /* execute .. make_sym */
#define LL_FS_REFER (1ULL << 13)
#define LL_FS_TRUNCATE (1ULL << 14)
#define LL_FS_IOCTL_DEV (1ULL << 15)
#define LL_NET_BIND_CONNECT_TCP 3ULL
#define LL_SCOPE_ABSTRACT_UNIX_SIGNAL 3ULL

static const struct {
    int bit;
    const char *name;
} layer_names[] = {
    {LAYER_AST, "ast"},       {LAYER_PYGUARD, "pyguard"},   {LAYER_NETNS, "netns"},
    {LAYER_USERNS, "userns"}, {LAYER_LANDLOCK, "landlock"}, {LAYER_SECCOMP, "seccomp"},
    {LAYER_RLIMIT, "rlimit"},
};
#define NLAYERS (sizeof layer_names / sizeof layer_names[0])

void sandbox_layers_string(int layers, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < NLAYERS; i++) {
        if (!(layers & layer_names[i].bit))
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? "," : "", layer_names[i].name);
        if (n < 0 || (size_t)n >= outlen - used)
            break;
        used += (size_t)n;
    }
}

int sandbox_layers_parse(const char *s, int *out)
{
    int mask = 0;
    char *copy = xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        if (!strcmp(t, "all"))
            mask |= LAYER_ALL, found = 1;
        else if (!strcmp(t, "none"))
            found = 1;
        for (size_t i = 0; i < NLAYERS && !found; i++)
            if (!strcmp(t, layer_names[i].name))
                mask |= layer_names[i].bit, found = 1;
        if (!found) {
            free(copy);
            return -1;
        }
    }
    free(copy);
    *out = mask;
    return 0;
}

static int landlock_abi_version(void)
{
    long v = syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : (int)v;
}

/* ---- the layers -------------------------------------------------------------------------- */

static int baseline(char *err, size_t errlen)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_DUMPABLE, 0) != 0) {
        snprintf(err, errlen, "prctl: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int drop_root(char *err, size_t errlen)
{
    if (geteuid() != 0)
        return 0;
    const gid_t nobody = 65534;
    if (setgroups(0, NULL) != 0 || setresgid(nobody, nobody, nobody) != 0 ||
        setresuid(nobody, nobody, nobody) != 0) {
        snprintf(err, errlen, "dropping root: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Namespaces and the uid change, in the only order that works both as root and not. */
static int enter_namespaces(int layers, char *err, size_t errlen)
{
    int done_user = 0;
    if ((layers & LAYER_NETNS) && geteuid() == 0 && unshare(CLONE_NEWNET) != 0) {
        snprintf(err, errlen, "netns: %s", strerror(errno));
        return -1;
    }
    int netns_pending = (layers & LAYER_NETNS) && geteuid() != 0;
    if (drop_root(err, errlen) != 0)
        return -1;
    if (netns_pending) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
            snprintf(err, errlen, "netns (with userns): %s", strerror(errno));
            return -1;
        }
        done_user = 1;
    }
    if ((layers & LAYER_USERNS) && !done_user && unshare(CLONE_NEWUSER) != 0) {
        snprintf(err, errlen, "userns: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static long long mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long long pages = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%lld", &pages) != 1)
        pages = -1;
    fclose(f);
    return pages < 0 ? -1 : pages * sysconf(_SC_PAGESIZE);
}

/* The highest open descriptor, with every gap below it filled (by a duplicate of an open one)
 * so that RLIMIT_NOFILE = highest + 1 leaves no number free for a new descriptor. */
static int highest_fd_no_gaps(void)
{
    int hi = -1, first = -1;
    for (int fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            hi = fd;
            if (first < 0)
                first = fd;
        }
    }
    for (int fd = 0; fd < hi; fd++)
        if (fcntl(fd, F_GETFD) == -1)
            dup2(first, fd);
    return hi < 0 ? 0 : hi;
}

static int set_limit(int res, rlim_t soft, rlim_t hard, const char *name, char *err, size_t errlen)
{
    struct rlimit r = {soft, hard};
    if (setrlimit(res, &r) != 0) {
        snprintf(err, errlen, "setrlimit(%s): %s", name, strerror(errno));
        return -1;
    }
    return 0;
}

static int apply_rlimits(const struct sandbox_limits *lim, long long base, char *err, size_t errlen)
{
    rlim_t as = (rlim_t)base + (rlim_t)lim->max_memory_mb * 1024 * 1024;
    rlim_t nofile = (rlim_t)highest_fd_no_gaps() + 1;
    rlim_t cpu = lim->cpu_seconds > 0 ? (rlim_t)lim->cpu_seconds : 1;
    if (set_limit(RLIMIT_AS, as, as, "AS", err, errlen) ||
        set_limit(RLIMIT_CPU, cpu, cpu + 1, "CPU", err, errlen) ||
        set_limit(RLIMIT_NOFILE, nofile, nofile, "NOFILE", err, errlen) ||
        set_limit(RLIMIT_NPROC, 0, 0, "NPROC", err, errlen) ||
        set_limit(RLIMIT_FSIZE, 0, 0, "FSIZE", err, errlen) ||
        set_limit(RLIMIT_CORE, 0, 0, "CORE", err, errlen) ||
        set_limit(RLIMIT_MEMLOCK, 0, 0, "MEMLOCK", err, errlen) ||
        set_limit(RLIMIT_MSGQUEUE, 0, 0, "MSGQUEUE", err, errlen))
        return -1;
    return 0;
}

static int apply_landlock(int abi, char *err, size_t errlen)
{
    struct ll_ruleset_attr attr = {LL_FS_ABI1, 0, 0};
    size_t size = sizeof attr.handled_access_fs;
    if (abi < 1) {
        snprintf(err, errlen, "landlock: not supported by this kernel");
        return -1;
    }
    if (abi >= 2)
        attr.handled_access_fs |= LL_FS_REFER;
    if (abi >= 3)
        attr.handled_access_fs |= LL_FS_TRUNCATE;
    if (abi >= 4) {
        attr.handled_access_net = LL_NET_BIND_CONNECT_TCP;
        size = offsetof(struct ll_ruleset_attr, scoped);
    }
    if (abi >= 5)
        attr.handled_access_fs |= LL_FS_IOCTL_DEV;
    if (abi >= 6) {
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SIGNAL;
        size = sizeof attr;
    }
    int fd = (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0);
    if (fd < 0) {
        snprintf(err, errlen, "landlock_create_ruleset: %s", strerror(errno));
        return -1;
    }
    int rc = (int)syscall(__NR_landlock_restrict_self, fd, 0);
    int saved = errno;
    close(fd);
    if (rc != 0) {
        snprintf(err, errlen, "landlock_restrict_self: %s", strerror(saved));
        return -1;
    }
    return 0;
}

/* Syscalls allowed without conditions; names unknown on this architecture are skipped. */
static const char *const seccomp_allow[] = {
    "read",         "write",       "readv",           "writev",
    "pread64",      "close",       "lseek",           "fstat",
    "mmap",         "munmap",      "mremap",          "mprotect",
    "brk",          "madvise",     "rt_sigaction",    "rt_sigprocmask",
    "rt_sigreturn", "sigaltstack", "getpid",          "gettid",
    "getuid",       "geteuid",     "getgid",          "getegid",
    "exit",         "exit_group",  "clock_gettime",   "clock_getres",
    "gettimeofday", "time",        "nanosleep",       "clock_nanosleep",
    "getrandom",    "futex",       "sched_yield",     "sched_getaffinity",
    "epoll_wait",   "epoll_pwait", "epoll_pwait2",    "epoll_ctl",
    "poll",         "ppoll",       "select",          "pselect6",
    "sendto",       "recvfrom",    "sendmsg",         "recvmsg",
    "getrusage",    "uname",       "set_robust_list", "rseq",
};

static int seccomp_rules(scmp_filter_ctx f)
{
    for (size_t i = 0; i < sizeof seccomp_allow / sizeof seccomp_allow[0]; i++) {
        int nr = seccomp_syscall_resolve_name(seccomp_allow[i]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        if (seccomp_rule_add(f, SCMP_ACT_ALLOW, nr, 0) != 0)
            return -1;
    }
    /* fstat through fstatat(fd, "", AT_EMPTY_PATH): descriptors only, never a path. */
    if (seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
                         SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH)) != 0)
        return -1;
    /* fcntl: flags only; F_DUPFD would create descriptors. */
    static const int fcntl_ok[] = {F_GETFD, F_SETFD, F_GETFL, F_SETFL};
    for (size_t i = 0; i < 4; i++)
        if (seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1,
                             SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)fcntl_ok[i], 0)) != 0)
            return -1;
    /* abort() signals itself; no other process may be signalled. */
    if (seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                         SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid(), 0)) != 0)
        return -1;
    return 0;
}

/* Builds the filter and keeps its BPF program (libseccomp's own output, read back through a
 * pipe), so that installing it later is one system call. The tgkill rule names this process. */
static int compile_seccomp(struct sandbox_state *st, char *err, size_t errlen)
{
    int p[2] = {-1, -1}, rc = -1;
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!f || seccomp_rules(f) != 0 || pipe2(p, O_CLOEXEC) != 0 ||
        seccomp_export_bpf(f, p[1]) != 0) {
        snprintf(err, errlen, "seccomp: cannot build the filter");
        goto out;
    }
    close(p[1]);
    p[1] = -1;
    struct buf b;
    buf_init(&b);
    char chunk[4096];
    ssize_t n;
    while ((n = read(p[0], chunk, sizeof chunk)) > 0)
        buf_append(&b, chunk, (size_t)n);
    if (n < 0 || b.len == 0 || b.len % sizeof(struct sock_filter) != 0 ||
        b.len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        snprintf(err, errlen, "seccomp: the exported filter is unusable");
        buf_destroy(&b);
        goto out;
    }
    st->bpf = (struct sock_filter *)b.data;
    st->bpf_len = (unsigned short)(b.len / sizeof(struct sock_filter));
    rc = 0;
out:
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    if (f)
        seccomp_release(f);
    return rc;
}

static int apply_seccomp(const struct sandbox_state *st, char *err, size_t errlen)
{
    struct sock_fprog prog = {st->bpf_len, st->bpf};
    if (!st->bpf || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        snprintf(err, errlen, "seccomp: %s", st->bpf ? strerror(errno) : "no filter");
        return -1;
    }
    return 0;
}

int sandbox_enter_early(int layers, int landlock_abi, struct sandbox_state *st, char *err,
                        size_t errlen)
{
    memset(st, 0, sizeof *st);
    st->base_bytes = mapped_bytes(); /* /proc is out of reach once landlock is on */
    if (st->base_bytes < 0) {
        snprintf(err, errlen, "cannot read /proc/self/statm");
        return -1;
    }
    if (baseline(err, errlen) != 0 || enter_namespaces(layers, err, errlen) != 0)
        return -1;
    if ((layers & LAYER_LANDLOCK) && apply_landlock(landlock_abi, err, errlen) != 0)
        return -1;
    if ((layers & LAYER_SECCOMP) && compile_seccomp(st, err, errlen) != 0)
        return -1;
    return 0;
}

int sandbox_enter_late(int layers, const struct sandbox_limits *lim,
                       const struct sandbox_state *st, char *err, size_t errlen)
{
    if ((layers & LAYER_RLIMIT) && apply_rlimits(lim, st->base_bytes, err, errlen) != 0)
        return -1;
    if ((layers & LAYER_SECCOMP) && apply_seccomp(st, err, errlen) != 0)
        return -1;
    return 0;
}

int sandbox_enter(int layers, const struct sandbox_limits *lim, int landlock_abi, char *err,
                  size_t errlen)
{
    struct sandbox_state st;
    if (sandbox_enter_early(layers, landlock_abi, &st, err, errlen) != 0)
        return -1;
    return sandbox_enter_late(layers, lim, &st, err, errlen);
}

/* ---- probe ------------------------------------------------------------------------------- */

static int probe_layer(int layer, int abi, char *why, size_t whylen)
{
    int fds[2];
    if (pipe(fds) != 0)
        return 0;
    pid_t pid = fork();
    if (pid == 0) {
        char err[256] = "";
        struct sandbox_limits lim = {256, 5};
        close(fds[0]);
        int rc = sandbox_enter(layer, &lim, abi, err, sizeof err);
        ssize_t w = write(fds[1], err, strlen(err));
        (void)w;
        _exit(rc == 0 ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = pid > 0 ? read(fds[0], why, whylen - 1) : -1;
    why[n > 0 ? n : 0] = 0;
    close(fds[0]);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void sandbox_probe(struct sandbox_probe *p)
{
    static const int os_layers[] = {LAYER_NETNS, LAYER_USERNS, LAYER_LANDLOCK, LAYER_SECCOMP,
                                    LAYER_RLIMIT};
    memset(p, 0, sizeof *p);
    p->landlock_abi = landlock_abi_version();
    p->layers_available = LAYER_AST | LAYER_PYGUARD;
    size_t used = 0;
    for (size_t i = 0; i < sizeof os_layers / sizeof os_layers[0]; i++) {
        char why[256];
        if (probe_layer(os_layers[i], p->landlock_abi, why, sizeof why)) {
            p->layers_available |= os_layers[i];
        } else if (used < sizeof p->notes) {
            int n = snprintf(p->notes + used, sizeof p->notes - used, "%s%s", used ? "; " : "",
                             why[0] ? why : "unavailable");
            used += n > 0 ? (size_t)n : 0;
        }
    }
}
