/*
 * links_merge.c - keeps the GIN index of alert links (alerts.indicator_ids) merged off the
 * ingest path.
 *
 * A new alert's index entries go to the index's pending list (one cheap append); the list is
 * merged into the index in bulk. Left alone, the insert that finds the list over
 * gin_pending_list_limit merges it inside its own batch: measured, one batch in ~25,000 alerts
 * then took 0.3-0.7 s. Merging every second from here keeps the list far below the limit, so no
 * batch pays for it. Several intakes may call at once: the SQL function lets one merge and the
 * others return at once. The call runs on a pool connection, never on the loop, and is cancelled
 * after LINKS_MERGE_TIMEOUT_MS: a merge stuck on a huge list or a lock would otherwise hold that
 * connection (one of the few the ingest's group commits use) for as long as it lasts.
 */
#include "intake.h"
#include "log.h"
#include "pg.h"

#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

#define LINKS_MERGE_PERIOD_MS 1000

#define LINKS_MERGE_BACKOFF_MAX_MS 60000

static uv_timer_t merge_timer;
static int merging;        /* a merge call is in flight */
static unsigned failures;  /* merges failed in a row */
static uint64_t resume_ms; /* after failures, no call before this loop time */

/* A merge that keeps failing (a role that does not own the index, a read-only server, an
 * overloaded pool) is retried after 2, 4, ... up to 60 s, and warned about at the first failure
 * and each doubling, instead of every second. */
static void on_merged(void *arg, PGresult *res, const char *err)
{
    struct intake *in = arg;
    (void)res;
    merging = 0;
    if (!err) {
        if (failures)
            msg_info("links pending-list merge works again after %u failures", failures);
        failures = 0;
        return;
    }
    failures++;
    uint64_t wait = LINKS_MERGE_PERIOD_MS;
    for (unsigned i = 0; i < failures && wait < LINKS_MERGE_BACKOFF_MAX_MS; i++)
        wait *= 2;
    if (wait > LINKS_MERGE_BACKOFF_MAX_MS)
        wait = LINKS_MERGE_BACKOFF_MAX_MS;
    resume_ms = uv_now(in->loop) + wait;
    if ((failures & (failures - 1)) == 0)
        msg_warn("links pending-list merge failed (%u in a row, next try in %llu ms): %s",
                 failures, (unsigned long long)wait, err);
}

static void on_merge_timer(uv_timer_t *t)
{
    struct intake *in = t->data;
    if (merging || in->draining || !in->pg || uv_now(in->loop) < resume_ms)
        return;
    merging = 1;
    if (pg_exec_timeout(in->pg, "SELECT calseta_links_pending_merge()", 0, NULL,
                        in->cfg.links_merge_timeout_ms, on_merged, in) != 0)
        merging = 0;
}

void links_merge_start(struct intake *in)
{
    uv_timer_init(in->loop, &merge_timer);
    merge_timer.data = in;
    uv_timer_start(&merge_timer, on_merge_timer, LINKS_MERGE_PERIOD_MS, LINKS_MERGE_PERIOD_MS);
}

void links_merge_stop(void)
{
    uv_timer_stop(&merge_timer);
    uv_close((uv_handle_t *)&merge_timer, NULL);
}
