/*
 * claim.c - when to claim jobs, and keeping the leases of jobs in flight.
 *
 * A claim runs when a "work ready" message arrives on the job bus, every poll interval
 * (messages are only hints: lost ones, jobs whose worker died, and leases that expired are
 * found by the poll), and whenever a job finishes. At most one claim query is in flight, and a
 * claim never asks for more jobs than the free slots (ENRICHER_CONCURRENCY) and leaves out the
 * jobs this worker has in flight (one whose lease lapsed is not claimed by its own worker a
 * second time). Leases of jobs in flight are renewed every third of the lease, so a long job
 * keeps its lease while a dead worker's jobs are taken over by others after at most one lease.
 * A renewal skips the rows a running completing statement holds instead of waiting for them,
 * runs on a connection of its own (never queued behind completing statements) and ends within
 * renew_timeout_ms(): a quarter of a lease, at least 1 s (a renewal that times out renews
 * nothing, so a loaded server must not make it fail), never more than 7/8 of the interval, so
 * it has always ended when the next one is due. Assuming each renewal succeeds within that
 * bound (the server answers them: a worker whose renewals keep failing loses its leases
 * whatever the bounds), when a statement is sent the last renewal that succeeded began at most
 * a third of a lease plus that bound before (at most 7/24 + 8/24 = 5/8 of a lease), so the
 * lease holds at least 3/8 of a lease after the statement is sent, which job.c's statement
 * bound relies on.
 *
 * The poll also purges expired shared-cache entries, off the completion path: each tick
 * deletes the expired rows of the next CACHE_PURGE_SPAN keys of enrichment_cache, walking the
 * table in key order and starting over at its end, so each statement stays short whatever the
 * table's size and the whole table is visited every (rows / span) polls.
 */
#include "jsonparse.h"
#include "bus.h"
#include "enricher.h"
#include "proto/job.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void on_claimed(void *arg, PGresult *res, const char *err)
{
    struct enricher *en = arg;
    int want = en->claiming;
    en->claiming = 0;
    if (err) {
        msg_warn("claiming jobs failed: %s", err);
        if (en->draining && en->inflight == 0 && en->drained)
            en->drained(en);
        return; /* the poll tries again */
    }
    int n = PQntuples(res);
    en->claims++;
    en->claimed += (unsigned long)n;
    for (int r = 0; r < n; r++) {
        json_t *doc = json_loads_wide(PQgetvalue(res, r, 3), 0);
        if (!doc) {
            msg_error("job %s: unreadable claim document", PQgetvalue(res, r, 0));
            continue; /* its lease expires and the attempt count ends it */
        }
        job_start(en, atoll(PQgetvalue(res, r, 0)), atoll(PQgetvalue(res, r, 1)),
                  atoi(PQgetvalue(res, r, 2)), doc);
        json_decref(doc);
    }
    jobs_read_shared_cache(en);
    if (en->draining) {
        if (en->inflight == 0 && en->drained)
            en->drained(en);
        return;
    }
    if (n == want || en->claim_again) {
        en->claim_again = 0;
        claim_kick(en);
    }
}

void claim_kick(struct enricher *en)
{
    if (en->draining || !en->providers)
        return;
    if (en->claiming) {
        en->claim_again = 1;
        return;
    }
    int free_slots = en->cfg->enricher_concurrency - en->inflight;
    if (free_slots <= 0)
        return;
    char lease[16], limit[16], attempts[16];
    snprintf(lease, sizeof lease, "%d", en->cfg->enrich_job_lease_seconds);
    snprintf(limit, sizeof limit, "%d", free_slots);
    snprintf(attempts, sizeof attempts, "%d", en->opt.max_attempts);
    char *mine = jobs_in_flight_array(en);
    const char *params[5] = {en->owner, lease, limit, attempts, mine ? mine : "{}"};
    en->claiming = free_slots;
    pg_exec(en->pg,
            "SELECT job_id, alert_id, attempts, doc::text "
            "FROM calseta_enrich_claim($1, $2, $3, $4, $5::bigint[])",
            5, params, on_claimed, en);
    free(mine);
}

void claim_job_finished(struct enricher *en)
{
    if (en->draining) {
        if (en->inflight == 0 && en->drained)
            en->drained(en);
        return;
    }
    claim_kick(en);
}

/* ---- wake-ups ---- */

static void on_bus(void *arg)
{
    struct enricher *en = arg;
    unsigned char msg[256];
    int more, got = 0;
    for (int i = 0; i < 1024; i++) {
        int n = bus_recv_frame(en->pull, msg, sizeof msg, &more);
        if (n < 0)
            break;
        if (more)
            bus_skip_rest(en->pull);
        struct job_ready jr;
        if (n <= (int)sizeof msg && job_ready_decode(msg, (size_t)n, &jr) == 0)
            msg_debug("%lld job(s) ready from job %lld (alert %lld)", (long long)jr.count,
                      (long long)jr.job_id, (long long)jr.alert_id);
        else
            msg_warn("job bus: ignoring a message that is not a JOB_READY");
        got = 1;
    }
    if (got)
        claim_kick(en);
}

/* ---- shared-cache purge ---- */

enum { CACHE_PURGE_SPAN = 5000 };

static void purge_cursor_set(struct enricher *en, PGresult *res)
{
    for (int i = 0; i < 3; i++) {
        free(en->purge_after[i]);
        en->purge_after[i] = NULL;
        if (res && !PQgetisnull(res, 0, 1 + i))
            en->purge_after[i] = xstrdup(PQgetvalue(res, 0, 1 + i));
    }
}

static void on_purged(void *arg, PGresult *res, const char *err)
{
    struct enricher *en = arg;
    en->purging = 0;
    if (err) {
        msg_warn("purging expired shared-cache entries failed: %s", err);
        return; /* the next poll tries the same span again */
    }
    if (en->draining || PQntuples(res) != 1)
        return;
    int purged = atoi(PQgetvalue(res, 0, 0));
    if (purged > 0)
        msg_debug("shared cache: %d expired entries purged", purged);
    purge_cursor_set(en, PQgetisnull(res, 0, 1) ? NULL : res);
}

static void cache_purge(struct enricher *en)
{
    if (en->purging || en->draining)
        return;
    char span[16];
    snprintf(span, sizeof span, "%d", CACHE_PURGE_SPAN);
    const char *params[4] = {en->purge_after[0], en->purge_after[1], en->purge_after[2], span};
    if (pg_exec(en->pg,
                "SELECT purged, next_after[1], next_after[2], next_after[3] "
                "FROM calseta_enrich_cache_purge(CASE WHEN $1::text IS NOT NULL "
                "THEN ARRAY[$1, $2, $3] END, $4)",
                4, params, on_purged, en) == 0)
        en->purging = 1;
}

static void on_poll(uv_timer_t *t)
{
    claim_kick(t->data);
    cache_purge(t->data);
}

static uint64_t renew_interval_ms(const struct enricher *en)
{
    uint64_t ms = (uint64_t)en->cfg->enrich_job_lease_seconds * 1000 / 3;
    return ms ? ms : 300;
}

/* See above: a quarter of a lease, at least 1 s, at most 7/24 of a lease (7/8 of the interval,
 * which also keeps the lease arithmetic true: 2/3 - 7/24 = 3/8). */
static int renew_timeout_ms(const struct enricher *en)
{
    uint64_t lease_ms = (uint64_t)en->cfg->enrich_job_lease_seconds * 1000;
    uint64_t ms = lease_ms / 4, most = lease_ms * 7 / 24;
    if (ms < 1000)
        ms = 1000;
    return (int)(ms < most ? ms : most);
}

static void on_renewed(void *arg, PGresult *res, const char *err)
{
    struct enricher *en = arg;
    (void)res;
    en->renewing = 0;
    if (err)
        msg_warn("renewing job leases failed: %s", err);
}

static void on_renew(uv_timer_t *t)
{
    struct enricher *en = t->data;
    if (en->renewing) {
        msg_warn("lease renewal skipped: the previous one has not ended");
        return;
    }
    char *ids = jobs_in_flight_array(en);
    if (!ids)
        return;
    char lease[16];
    snprintf(lease, sizeof lease, "%d", en->cfg->enrich_job_lease_seconds);
    const char *params[3] = {ids, en->owner, lease};
    if (pg_exec_timeout(en->renew_pg, "SELECT calseta_enrich_renew($1::bigint[], $2, $3)", 3,
                        params, renew_timeout_ms(en), on_renewed, en) == 0)
        en->renewing = 1;
    free(ids);
}

void claim_start(struct enricher *en)
{
    char err[256];
    struct bus_opts bo = {.link = "jobs", .max_msg = 4096, .hwm = 10000};
    en->pull = bus_client(ZMQ_PULL, en->cfg, en->cfg->job_bus_pull, &bo, err, sizeof err);
    if (!en->pull)
        msg_fatal("job bus: %s (JOB_BUS_PULL_ENDPOINT=%s)", err, en->cfg->job_bus_pull);
    en->watch = bus_watch_new(en->loop, en->pull, on_bus, en);
    uv_timer_init(en->loop, &en->poll_timer);
    en->poll_timer.data = en;
    uv_timer_start(&en->poll_timer, on_poll, 0, (uint64_t)en->opt.poll_ms);
    uint64_t renew_ms = renew_interval_ms(en);
    uv_timer_init(en->loop, &en->renew_timer);
    en->renew_timer.data = en;
    uv_timer_start(&en->renew_timer, on_renew, renew_ms, renew_ms);
}

void claim_close(struct enricher *en)
{
    purge_cursor_set(en, NULL);
    uv_timer_stop(&en->renew_timer);
    uv_close((uv_handle_t *)&en->renew_timer, NULL);
}

void claim_stop(struct enricher *en)
{
    uv_timer_stop(&en->poll_timer);
    uv_close((uv_handle_t *)&en->poll_timer, NULL);
    if (en->watch)
        bus_watch_free(en->watch);
    en->watch = NULL;
    if (en->pull)
        zmq_close(en->pull);
    en->pull = NULL;
}
