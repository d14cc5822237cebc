/*
 * workflowd.h - calseta-workflowd: the workflow service. It sends approval notifications (Slack
 * or Teams) for what the intake commits; the intake keeps every REST route and only writes rows.
 *
 *   main.c      configuration, pool, audit client, signals and the drain
 *   queue.c     taking workflow_notifications rows: NOTIFY calseta_workflowd plus a sweep
 *   notifier.c  the Slack/Teams messages, sent over curl multi on the loop
 *
 * One per stack is enough; more are safe: a row is taken by exactly one of them (FOR UPDATE
 * SKIP LOCKED).
 */
#ifndef WORKFLOWD_H
#define WORKFLOWD_H

#include "config.h"
#include "pg.h"

#include <uv.h>

struct notifier;
struct audit_client;

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
};

/* queue.c */
void queue_start(struct workflowd *wd);
/* Takes every queued notification (coalesces concurrent wake-ups). */
void queue_take(struct workflowd *wd);
void queue_stop(struct workflowd *wd);

#endif
