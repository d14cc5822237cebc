/*
 * up.c - `calseta up`: start every service from one table, restart crashed children with
 * backoff, and on SIGTERM/SIGINT stop them in order (front door first, audit writer last),
 * killing any child that outlives its deadline.
 *
 * Like Postfix's master.cf, the table below is the whole process layout: name, program,
 * process count, restart policy. `calseta up intake enricher` runs only the named services
 * (one container per role runs its own master over its own slice of the table). Children run in their own process group so that a Ctrl-C on
 * the terminal reaches only the master, which then drains them in order; PR_SET_PDEATHSIG makes
 * a child stop if the master itself dies.
 */
#include "master.h"
#include "config.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum restart_policy { RESTART_ALWAYS, RESTART_NEVER };

struct service_def {
    const char *name;
    const char *program;
    int stop_rank; /* lower stops first */
    enum restart_policy restart;
};

/* Start order is table order; stop order is by stop_rank. */
static const struct service_def services[] = {
    {"auditd", "calseta-auditd", 4, RESTART_ALWAYS},
    {"jobbus", "calseta-jobbus", 3, RESTART_ALWAYS},
    {"runner", "calseta-runner", 2, RESTART_ALWAYS},
    {"enricher", "calseta-enricher", 1, RESTART_ALWAYS},
    {"dispatcher", "calseta-dispatcher", 1, RESTART_ALWAYS},
    {"workflowd", "calseta-workflowd", 1, RESTART_ALWAYS},
    {"intake", "calseta-intake", 0, RESTART_ALWAYS},
};
#define NSERVICES (sizeof services / sizeof services[0])
#define MAX_STOP_RANK 4

struct child {
    const struct service_def *def;
    int slot;
    pid_t pid;
    uint64_t started_ms;
    uint64_t restart_at_ms; /* 0 = not waiting */
    int backoff_ms;
};

struct up_ctx {
    struct child *children;
    size_t nchildren;
    char bindir[PATH_MAX];
    int stopping;
};

static int count_for(const struct config *c, const struct service_def *d)
{
    if (!strcmp(d->name, "intake"))
        return c->intake_processes;
    if (!strcmp(d->name, "enricher"))
        return c->enricher_processes;
    return 1;
}

static pid_t spawn(struct up_ctx *u, struct child *ch, const sigset_t *oldmask)
{
    char *path = xasprintf("%s/%s", u->bindir, ch->def->program);
    pid_t master = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        msg_error("fork for %s failed: %s", ch->def->name, strerror(errno));
        free(path);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master) /* the master died before the line above */
            _exit(0);
        sigprocmask(SIG_SETMASK, oldmask, NULL);
        char slot[16];
        snprintf(slot, sizeof slot, "%d", ch->slot);
        setenv("CALSETA_PROCESS_SLOT", slot, 1);
        execl(path, path, (char *)NULL);
        fprintf(stderr, "calseta up: cannot execute %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    free(path);
    ch->pid = pid;
    ch->started_ms = now_mono_ms();
    ch->restart_at_ms = 0;
    json_t *f = json_pack("{s:s,s:i,s:i}", "service", ch->def->name, "slot", ch->slot, "pid",
                          (int)pid);
    log_event(LOG_INFO, "child_started", f);
    json_decref(f);
    return pid;
}

static void describe_exit(int status, char *out, size_t n)
{
    if (WIFEXITED(status))
        snprintf(out, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, n, "stopped (status 0x%x)", status);
}

static struct child *find_child(struct up_ctx *u, pid_t pid)
{
    for (size_t i = 0; i < u->nchildren; i++)
        if (u->children[i].pid == pid)
            return &u->children[i];
    return NULL;
}

static void reap(struct up_ctx *u)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct child *ch = find_child(u, pid);
        if (!ch)
            continue;
        char why[96];
        describe_exit(status, why, sizeof why);
        ch->pid = 0;
        uint64_t ran = now_mono_ms() - ch->started_ms;
        int restart = !u->stopping && ch->def->restart == RESTART_ALWAYS;
        if (ran > 30000)
            ch->backoff_ms = 0;
        ch->backoff_ms = ch->backoff_ms ? ch->backoff_ms * 2 : 500;
        if (ch->backoff_ms > 30000)
            ch->backoff_ms = 30000;
        json_t *f = json_pack("{s:s,s:i,s:i,s:s,s:I,s:b,s:i}", "service", ch->def->name, "slot",
                              ch->slot, "pid", (int)pid, "reason", why, "ran_ms",
                              (json_int_t)ran, "restart", restart, "backoff_ms",
                              restart ? ch->backoff_ms : 0);
        log_event(u->stopping ? LOG_INFO : LOG_WARN, "child_exited", f);
        json_decref(f);
        if (restart)
            ch->restart_at_ms = now_mono_ms() + (uint64_t)ch->backoff_ms;
    }
}

static int alive_in_rank(struct up_ctx *u, int rank)
{
    int n = 0;
    for (size_t i = 0; i < u->nchildren; i++)
        if (u->children[i].pid > 0 && u->children[i].def->stop_rank == rank)
            n++;
    return n;
}

/* Stops one rank: SIGTERM, wait up to deadline_ms, then SIGKILL. */
static void stop_rank(struct up_ctx *u, int rank, int deadline_ms)
{
    for (size_t i = 0; i < u->nchildren; i++) {
        struct child *ch = &u->children[i];
        ch->restart_at_ms = 0;
        if (ch->pid > 0 && ch->def->stop_rank == rank)
            kill(ch->pid, SIGTERM);
    }
    uint64_t until = now_mono_ms() + (uint64_t)deadline_ms;
    while (alive_in_rank(u, rank) && now_mono_ms() < until) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
        reap(u);
    }
    for (size_t i = 0; i < u->nchildren; i++) {
        struct child *ch = &u->children[i];
        if (ch->pid > 0 && ch->def->stop_rank == rank) {
            json_t *f = json_pack("{s:s,s:i}", "service", ch->def->name, "pid", (int)ch->pid);
            log_event(LOG_WARN, "child_killed_after_deadline", f);
            json_decref(f);
            kill(ch->pid, SIGKILL);
        }
    }
    while (alive_in_rank(u, rank)) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
        reap(u);
    }
}

static void find_bindir(struct up_ctx *u)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        msg_fatal("cannot find the calseta program's folder");
    exe[n] = 0;
    snprintf(u->bindir, sizeof u->bindir, "%s", dirname(exe));
}

/* 1 when service `name` should run: every service when no names were given (argv[1..]), else
 * only the named ones. */
static int selected(int argc, char **argv, const char *name)
{
    if (argc <= 1)
        return 1;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name))
            return 1;
    return 0;
}

/* Every name given must be a service of the table: a typo must not start an empty master. */
static int check_names(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        size_t k = 0;
        while (k < NSERVICES && strcmp(services[k].name, argv[i]))
            k++;
        if (k == NSERVICES) {
            fprintf(stderr, "calseta up: unknown service '%s'; services are:", argv[i]);
            for (k = 0; k < NSERVICES; k++)
                fprintf(stderr, " %s", services[k].name);
            fprintf(stderr, "\n");
            return -1;
        }
    }
    return 0;
}

int cmd_up(int argc, char **argv)
{
    if (check_names(argc, argv) < 0) {
        fprintf(stderr, "usage: calseta up [SERVICE ...]\n");
        return 2;
    }
    struct config c;
    master_config(&c, "master");
    struct up_ctx u = {0};
    find_bindir(&u);
    for (size_t i = 0; i < NSERVICES; i++) {
        if (!selected(argc, argv, services[i].name))
            continue;
        char *p = xasprintf("%s/%s", u.bindir, services[i].program);
        int present = access(p, X_OK) == 0;
        free(p);
        if (!present) {
            msg_warn("service %s: program %s not built, not started", services[i].name,
                     services[i].program);
            continue;
        }
        int n = count_for(&c, &services[i]);
        for (int k = 0; k < n; k++) {
            u.children = xrealloc(u.children, (u.nchildren + 1) * sizeof *u.children);
            u.children[u.nchildren++] = (struct child){.def = &services[i], .slot = k};
        }
    }
    int drain_ms = c.drain_timeout_ms + 5000;

    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);

    for (size_t i = 0; i < u.nchildren; i++)
        spawn(&u, &u.children[i], &oldmask);
    json_t *f = json_pack("{s:i,s:s,s:i}", "children", (int)u.nchildren, "listen", c.http_host,
                          "port", c.http_port);
    log_event(LOG_INFO, "master_started", f);
    json_decref(f);

    while (!u.stopping) {
        struct timespec ts = {0, 200 * 1000000};
        int sig = sigtimedwait(&mask, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            u.stopping = 1;
            msg_info("received %s, stopping services in order", strsignal(sig));
            break;
        }
        if (sig == SIGHUP) {
            for (size_t i = 0; i < u.nchildren; i++)
                if (u.children[i].pid > 0 && !strcmp(u.children[i].def->name, "auditd"))
                    kill(u.children[i].pid, SIGHUP);
        }
        reap(&u);
        uint64_t now = now_mono_ms();
        for (size_t i = 0; i < u.nchildren; i++) {
            struct child *ch = &u.children[i];
            if (ch->pid == 0 && ch->restart_at_ms && now >= ch->restart_at_ms)
                spawn(&u, ch, &oldmask);
        }
    }
    for (int rank = 0; rank <= MAX_STOP_RANK; rank++)
        stop_rank(&u, rank, drain_ms);
    log_event(LOG_INFO, "master_stopped", NULL);
    free(u.children);
    config_destroy(&c);
    return 0;
}
