/*
 * workflowd.h - calseta-workflowd: the workflow service. It runs queued workflow runs, checks
 * code and test-runs workflows for the intakes, and sends approval notifications (Slack or
 * Teams); the intake keeps every REST route, writes rows and asks over the bus. Only workflowd
 * (and the runner, for the run in hand) ever holds a decrypted workflow secret.
 *
 *   main.c      configuration, pool, audit client, signals and the drain
 *   queue.c     taking workflow_notifications rows: NOTIFY calseta_workflowd plus a sweep
 *   runs.c      queued runs under a lease, sent to a runner, their outcome recorded
 *   requests.c  code checks and test runs asked by intakes (proto/workflow.h)
 *   notifier.c  the Slack/Teams messages, sent over curl multi on the loop
 *
 * One per stack is enough; more are safe: a row is taken by exactly one of them (FOR UPDATE
 * SKIP LOCKED).
 */
#ifndef WORKFLOWD_H
#define WORKFLOWD_H

#include "config.h"
#include "fernet.h"
#include "pg.h"

#include <uv.h>

struct notifier;
struct audit_client;
struct runner_client;
struct bus_watch;

struct workflowd {
    struct config *cfg;
    uv_loop_t *loop;
    struct pg_pool *pg; /* NULL once closing */
    struct audit_client *audit;
    struct notifier *notifier;
    int poll_ms; /* WORKFLOWD_POLL_INTERVAL_MS: the sweep, besides NOTIFY */
    uv_timer_t sweep;
    uv_signal_t sigterm, sigint;
    int taking, take_again;
    int draining;
    unsigned long taken;
    uv_timer_t drain_wait; /* runs in flight finish first, up to DRAIN_TIMEOUT_MS */
    uint64_t drain_started_ms;
    /* runs (runs.c) */
    struct runner_client *runner;
    struct fernet_key key; /* ENCRYPTION_KEY, for workflow secrets */
    int have_key;
    int run_grace_seconds; /* WORKFLOW_RUN_GRACE_SECONDS: lease = the workflow's timeout + this */
    int max_attempts;      /* WORKFLOW_RUN_MAX_ATTEMPTS: a run is taken at most this many times */
    int max_inflight;      /* WORKFLOW_MAX_INFLIGHT: runs taken and not finished, at most */
    int inflight;
    int runs_sweeping, runs_again;
    uint64_t sweep_paused_until; /* after "no runner connected" or "busy", loop time in ms */
    char owner[128];             /* lease owner: workflowd:<host>:<pid>:<random> */
    /* requests from intakes (requests.c) */
    void *req_sock; /* ROUTER on WORKFLOW_REQUEST_ENDPOINT */
    struct bus_watch *req_watch;
    struct runner_client *test_runner; /* checks and test runs, with the default waits */
    int req_pending;
};

/* queue.c */
void queue_start(struct workflowd *wd);
/* Takes every queued notification (coalesces concurrent wake-ups). */
void queue_take(struct workflowd *wd);
void queue_stop(struct workflowd *wd);

/* runs.c */
void runs_init(struct workflowd *wd);
/* Takes queued runs and runs under an expired lease, up to the free slots (coalesces). */
void runs_kick(struct workflowd *wd);
/* After the drain: frees the runner client (runs still out keep their lease until it expires). */
void runs_close(struct workflowd *wd);

/* requests.c */
/* After runs_init() (the key): binds WORKFLOW_REQUEST_ENDPOINT; fatal when it cannot. */
void requests_init(struct workflowd *wd);
/* Answers what is still out "stopping", closes the socket and the runner client. */
void requests_close(struct workflowd *wd);

#endif
