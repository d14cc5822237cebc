/*
 * claim.c - when to claim: at start, on every NOTIFY calseta_agent_deliveries (a delivery was
 * queued or rescheduled), whenever a delivery finishes and frees a slot, and on a periodic
 * sweep (DISPATCHER_POLL_INTERVAL_MS) that also picks up retries that became due and leases
 * that expired. Up to CLAIMS_IN_FLIGHT claim queries run at once, each for at most CLAIM_ROWS
 * rows, never for more rows than there are free slots.
 */
#include "dispatcher.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

/* Several claim queries may run at once (SKIP LOCKED keeps them apart): building payloads
 * takes the database a few milliseconds per row, and one query at a time would leave slots
 * idle while it runs. */
#define CLAIMS_IN_FLIGHT 4
#define CLAIM_ROWS 16

struct claim_op {
    struct dispatcher *d;
    int asked;
};

static void on_claimed(void *arg, PGresult *res, const char *err)
{
    struct claim_op *op = arg;
    struct dispatcher *d = op->d;
    int asked = op->asked, got = 0;
    free(op);
    d->claiming--;
    d->claim_reserved -= asked;
    if (err || !res) {
        msg_warn("claim failed: %s", err ? err : "no result");
    } else {
        got = PQntuples(res);
        for (int i = 0; i < got; i++)
            delivery_start(d, res, i);
        if (got)
            msg_debug("claimed %d deliveries (%d in flight)", got, d->inflight);
    }
    if (!d->draining && (got == asked || d->claim_again)) {
        d->claim_again = 0;
        claim_now(d); /* there may be more */
    }
}

void claim_now(struct dispatcher *d)
{
    if (d->draining)
        return;
    int room = d->opt.concurrency - d->inflight - d->claim_reserved;
    if (room > 0 && d->claiming >= CLAIMS_IN_FLIGHT)
        d->claim_again = 1;
    while (room > 0 && d->claiming < CLAIMS_IN_FLIGHT) {
        int n = room < CLAIM_ROWS ? room : CLAIM_ROWS;
        char lease[16], limit[16];
        snprintf(lease, sizeof lease, "%d", d->opt.lease_seconds);
        snprintf(limit, sizeof limit, "%d", n);
        const char *p[4] = {d->owner, lease, limit, d->opt.api_base_url};
        struct claim_op *op = xcalloc(1, sizeof *op);
        op->d = d;
        op->asked = n;
        if (pg_exec(d->pg,
                    "SELECT delivery_id, delivery_uuid, kind, attempt, agent::text, payload "
                    "FROM calseta_agent_claim($1, $2::int, $3::int, $4)",
                    4, p, on_claimed, op) != 0) {
            free(op);
            msg_error("claim query refused");
            return;
        }
        d->claiming++;
        d->claim_reserved += n;
        room -= n;
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
