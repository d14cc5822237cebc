/*
 * claim.c - when to claim: at start, on every NOTIFY calseta_agent_deliveries (a delivery was
 * queued or rescheduled), whenever a delivery finishes and frees a slot, and on a periodic
 * sweep (DISPATCHER_POLL_INTERVAL_MS) that also picks up retries that became due and leases
 * that expired. One claim query runs at a time; wake-ups during it ask for another round.
 */
#include "dispatcher.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

static void on_claimed(void *arg, PGresult *res, const char *err)
{
    struct dispatcher *d = arg;
    d->claiming = 0;
    if (err || !res) {
        msg_warn("claim failed: %s", err ? err : "no result");
    } else {
        int n = PQntuples(res);
        for (int i = 0; i < n; i++)
            delivery_start(d, res, i);
        if (n)
            msg_debug("claimed %d deliveries (%d in flight)", n, d->inflight);
        if (n > 0 && d->inflight < d->opt.concurrency)
            d->claim_again = 1; /* there may be more */
    }
    if (d->claim_again && !d->draining) {
        d->claim_again = 0;
        claim_now(d);
    }
}

void claim_now(struct dispatcher *d)
{
    if (d->draining)
        return;
    if (d->claiming) {
        d->claim_again = 1;
        return;
    }
    int room = d->opt.concurrency - d->inflight;
    if (room <= 0)
        return;
    char lease[16], limit[16];
    snprintf(lease, sizeof lease, "%d", d->opt.lease_seconds);
    snprintf(limit, sizeof limit, "%d", room < 100 ? room : 100);
    const char *p[4] = {d->owner, lease, limit, d->opt.api_base_url};
    d->claiming = 1;
    if (pg_exec(d->pg,
                "SELECT delivery_id, delivery_uuid, kind, attempt, agent::text, payload "
                "FROM calseta_agent_claim($1, $2::int, $3::int, $4)",
                4, p, on_claimed, d) != 0) {
        d->claiming = 0;
        msg_error("claim query refused");
    }
}

static void on_notify(void *arg, const char *channel, const char *payload)
{
    (void)channel;
    (void)payload; /* NULL (listen re-established) or '': either way, look */
    claim_now(arg);
}

static void on_sweep(uv_timer_t *t)
{
    claim_now(t->data);
}

void claim_start(struct dispatcher *d)
{
    pg_pool_listen(d->pg, "calseta_agent_deliveries", on_notify, d);
    uv_timer_init(d->loop, &d->sweep);
    d->sweep.data = d;
    uv_timer_start(&d->sweep, on_sweep, 0, (uint64_t)d->opt.poll_ms);
}

void claim_stop(struct dispatcher *d)
{
    uv_timer_stop(&d->sweep);
    uv_close((uv_handle_t *)&d->sweep, NULL);
}

void dispatcher_delivery_finished(struct dispatcher *d)
{
    d->inflight--;
    if (!d->draining)
        claim_now(d);
}
