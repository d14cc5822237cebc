/*
 * record.c - attempts are recorded in batches: every outcome is queued, and a batch is
 * written when it holds RECORD_BATCH_MAX attempts or RECORD_DELAY_MS after its first one, as
 * one statement calling calseta_agent_attempt() for each (one commit for many deliveries
 * instead of one each). Each call checks its own lease, so a batch never records an attempt
 * for a delivery another dispatcher took over. A batch that fails records none of its
 * attempts: their leases expire and the deliveries are sent again, same delivery id.
 */
#include "dispatcher.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define RECORD_BATCH_MAX 64
#define RECORD_DELAY_MS 5

struct batch {
    struct dispatcher *d;
    struct delivery **v;
    size_t n;
};

static void on_batch(void *arg, PGresult *res, const char *err)
{
    struct batch *b = arg;
    struct dispatcher *d = b->d;
    const char **outcome = xcalloc(b->n ? b->n : 1, sizeof *outcome);
    if (!err && res) {
        for (int r = 0; r < PQntuples(res); r++) {
            long i = atol(PQgetvalue(res, r, 0));
            if (i >= 0 && (size_t)i < b->n)
                outcome[i] = PQgetvalue(res, r, 1);
        }
    }
    d->rec_inflight--;
    if (err)
        msg_warn("recording %zu attempts failed: %s", b->n, err);
    for (size_t i = 0; i < b->n; i++)
        delivery_recorded(b->v[i], outcome[i], err ? err : "no result");
    free(outcome);
    free(b->v);
    free(b);
}

static void flush(struct dispatcher *d)
{
    uv_timer_stop(&d->rec_timer);
    if (!d->rec_n)
        return;
    struct batch *b = xcalloc(1, sizeof *b);
    b->d = d;
    b->v = d->rec_v;
    b->n = d->rec_n;
    char *doc = json_dumps(d->rec_batch, JSON_COMPACT);
    json_decref(d->rec_batch);
    d->rec_batch = NULL;
    d->rec_v = NULL;
    d->rec_n = d->rec_cap = 0;
    const char *p[2] = {d->owner, doc};
    d->rec_inflight++;
    pg_exec(d->pg,
            "SELECT r.i, calseta_agent_attempt(r.id, $1, r.status, r.code, r.body, r.truncated, "
            "r.error, r.started::timestamptz, r.dur, r.retry) "
            "FROM jsonb_to_recordset($2::jsonb) AS r(i int, id bigint, status text, code int, "
            "body text, truncated boolean, error text, started text, dur int, retry int) "
            "ORDER BY r.id",
            2, p, on_batch, b);
    free(doc);
}

static void on_timer(uv_timer_t *t)
{
    flush(t->data);
}

void record_queue(struct dispatcher *d, struct delivery *v, json_t *attempt)
{
    if (d->rec_n == d->rec_cap) {
        d->rec_cap = d->rec_cap ? d->rec_cap * 2 : 16;
        d->rec_v = xrealloc(d->rec_v, d->rec_cap * sizeof *d->rec_v);
    }
    if (!d->rec_batch)
        d->rec_batch = json_array();
    json_object_set_new(attempt, "i", json_integer((json_int_t)d->rec_n));
    d->rec_v[d->rec_n++] = v;
    json_array_append_new(d->rec_batch, attempt);
    if (d->rec_n >= RECORD_BATCH_MAX)
        flush(d);
    else if (d->rec_n == 1)
        uv_timer_start(&d->rec_timer, on_timer, RECORD_DELAY_MS, 0);
}

void record_init(struct dispatcher *d)
{
    uv_timer_init(d->loop, &d->rec_timer);
    d->rec_timer.data = d;
}

void record_close(struct dispatcher *d)
{
    flush(d);
    uv_close((uv_handle_t *)&d->rec_timer, NULL);
}
