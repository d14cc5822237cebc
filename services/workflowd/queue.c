/*
 * queue.c - when to look: at start, on every NOTIFY calseta_workflowd (the intake sends it
 * after queueing a run; the triggers of migration 0018 when they queue a notification) and on a
 * periodic sweep that covers a lost wake-up, a restart, expired leases and slots freed while
 * the runner was away. Each look takes runs (runs.c) and queued notifications.
 *
 * A row is deleted when it is taken, in the statement that takes it (SKIP LOCKED keeps several
 * workflowd apart), so each notification is sent by one process at most once, as the original
 * does; a send that fails is retried in memory by the notifier.
 */
#include "workflowd.h"
#include "log.h"
#include "notifier.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

#define TAKE_ROWS 64

static void on_taken(void *arg, PGresult *res, const char *err)
{
    struct workflowd *wd = arg;
    int got = 0;
    wd->taking = 0;
    if (err || !res) {
        msg_warn("taking approval notifications failed: %s", err ? err : "no result");
    } else {
        got = PQntuples(res);
        for (int i = 0; i < got; i++)
            notifier_queued(wd, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
        wd->taken += (unsigned long)got;
    }
    if (!wd->draining && (got == TAKE_ROWS || wd->take_again)) {
        wd->take_again = 0;
        queue_take(wd); /* there may be more */
    }
}

void queue_take(struct workflowd *wd)
{
    if (wd->draining || !wd->pg)
        return;
    if (wd->taking) {
        wd->take_again = 1;
        return;
    }
    char limit[16];
    snprintf(limit, sizeof limit, "%d", TAKE_ROWS);
    const char *p[1] = {limit};
    if (pg_exec(wd->pg,
                "DELETE FROM workflow_notifications WHERE id IN (SELECT id FROM "
                "workflow_notifications ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1::int) "
                "RETURNING kind, subject::text",
                1, p, on_taken, wd) != 0) {
        msg_error("taking approval notifications: query refused");
        return;
    }
    wd->taking = 1;
}

static void look(struct workflowd *wd)
{
    runs_kick(wd);
    queue_take(wd);
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    (void)channel;
    (void)payload; /* NULL (listen re-established), '' or 'run': either way, look */
    look(arg);
}

static void on_sweep(uv_timer_t *t)
{
    look(t->data);
}

void queue_start(struct workflowd *wd)
{
    pg_pool_listen(wd->pg, "calseta_workflowd", on_notify, wd);
    uv_timer_init(wd->loop, &wd->sweep);
    wd->sweep.data = wd;
    uv_timer_start(&wd->sweep, on_sweep, 0, (uint64_t)wd->poll_ms);
}

void queue_stop(struct workflowd *wd)
{
    uv_timer_stop(&wd->sweep);
    uv_close((uv_handle_t *)&wd->sweep, NULL);
}
