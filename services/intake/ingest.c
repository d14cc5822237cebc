/*
 * ingest.c - POST /v1/ingest/{source} and POST /v1/alerts: check, normalise, extract,
 * fingerprint, then group-commit.
 *
 * Durability: the 202 goes out only after calseta_ingest_columns() committed the alert, its
 * indicators, its enrichment job and its activity event in one transaction. Concurrent ingests
 * are batched into one call (group commit): while a batch is in the database the next one
 * fills up, so throughput is many alerts per fsync. After the commit a JOB_READY message goes
 * to the job bus (at most one per HINT_GAP_MS, counting the jobs of every commit since the
 * last); it is only a wake-up signal (PostgreSQL is the truth), so a lost message delays a job
 * until the enrichers' poll and loses nothing.
 *
 * With de-duplication on, two alerts of one fingerprint never go out in two of this process's
 * batches at once: the database serialises identical fingerprints on a lock held until commit,
 * so the later batch would only sit in the database behind the earlier one (and hold every
 * other alert of its batch there too). The later alert stays queued until the earlier batch is
 * back; alerts of one fingerprint queued together go in the same batch, which counts them.
 *
 * Failure handling of a batch: serialisation failure or deadlock → retried; any other SQL error
 * → the batch is split and each alert retried alone, so one bad alert cannot fail others; a
 * lost or unreachable database → 503 for everything in the batch (nothing was committed). When
 * no random bytes can be had for the uuids of a batch's new alerts and indicators (the intake
 * makes them, see columns_build), the batch goes all the same and the database draws them.
 */
#include "audit.h"
#include "batch_element.h"
#include "indicators.h"
#include "intake.h"
#include "jsonparse.h"
#include "jsontext.h"
#include "prom.h"
#include "proto/job.h"
#include "proto/proto.h"
#include "log.h"
#include "signature.h"
#include "source.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include "bus.h"

#include <zmq.h>

#define MAX_BATCH_BYTES (16u << 20)
#define MAX_RETRIES 3
#define ALERT_PAYLOAD_MAX 1048576
#define ALERT_ENVELOPE_SLACK 4096 /* {"source_name": ..., "payload": ...} around the payload */

struct pending {
    struct reqctx *rc;
    struct packed *pk; /* the alert's fields and payload, packed for the batch's columns */
    size_t bytes;
    int retries;
    int solo;           /* retry alone after a batch-level SQL error */
    uint64_t queued_ns; /* uv_hrtime() when first queued */
    uint64_t fp;        /* the fingerprint's first 64 bits, never 0 */
};

/* Fingerprints of the alerts in this process's batches in flight: a multiset (one count per
 * alert) in an open-addressing table with linear probing; 0 marks a free slot. */
struct fpset {
    uint64_t *key;
    uint32_t *count;
    size_t cap, used;
};

/* Above INGEST_MAX_INFLIGHT's range (2-7). */
#define INFLIGHT_SLOTS 8

struct ingest_batcher {
    struct intake *in;
    struct pending *q;
    size_t n, cap;
    int inflight;
    uint64_t out_ns[INFLIGHT_SLOTS]; /* when each batch in flight went out, inflight of them */
    int folding;       /* a sightings fold is running */
    uv_timer_t stall;  /* the youngest batch in flight reaches INGEST_STALL_MS */
    uint64_t stall_for_ns; /* out_ns of the batch the armed stall timer is for */
    uv_timer_t hint;   /* the next JOB_READY, while one was sent less than HINT_GAP_MS ago */
    uv_timer_t schema; /* the start-up check of calseta_ingest_columns(), again after a failure */
    uint64_t hint_sent_ns;
    long long hint_jobs, hint_job, hint_alert; /* committed since the last JOB_READY */
    int open_handles;  /* the timers, until the loop has released them */
    struct fpset flying;
    uint64_t held;     /* alerts ever held back behind a batch of their fingerprint */
    /* ready()'s answer, kept while neither the queue's order nor the fingerprints in flight
     * change, so a submit beside a queue of held alerts does not walk it (enqueue at the end
     * updates it; anything else drops it) */
    int rd_valid;
    size_t rd_n, rd_first, rd_bytes; /* rd_bytes: the elements' bytes of those rd_n alerts */
    /* batches sent with their uuids left to the database (no random bytes) since the last
     * report of it, and when that report was */
    uint64_t norand, norand_said_ns;
};

struct batch {
    struct ingest_batcher *b;
    struct pending *items;
    size_t n;
    uint64_t sent_ns;
};

static void flush(struct ingest_batcher *b);

static void on_stalled(uv_timer_t *t);
static void hint_flush(struct ingest_batcher *b);

/* Start-up: the function every batch calls must exist with the argument types the intake
 * sends, or every alert would be answered 500. A database not migrated yet stops the process
 * with the fix in its message; a database that cannot be reached is asked again a second later
 * (the intake starts, and answers 503, while the database is down). */
#define INGEST_COLUMNS_SIGNATURE                                                                   \
    "calseta_ingest_columns(text[],text[],text[],text[],timestamptz[],text[],text[],text[],"        \
    "text[],boolean[],text[],integer[],text[],text[],text[],integer[],integer[],integer,uuid[],"    \
    "uuid[])"

static void schema_check(struct ingest_batcher *b);

static void on_schema_retry(uv_timer_t *t)
{
    schema_check(t->data);
}

static void on_schema_checked(void *arg, PGresult *res, const char *err)
{
    struct ingest_batcher *b = arg;
    if (res && !err) {
        if (PQntuples(res) == 1 && PQgetisnull(res, 0, 0))
            msg_fatal("the database has no " INGEST_COLUMNS_SIGNATURE
                      ": run `calseta migrate` (migration 0084_ingest_uuids_supplied.sql and "
                      "later) before starting this intake");
        return;
    }
    if (err && !strcmp(err, "shutting down"))
        return;
    msg_warn("checking the database's ingest function failed (again in 1 s): %s", err);
    uv_timer_start(&b->schema, on_schema_retry, 1000, 0);
}

static void schema_check(struct ingest_batcher *b)
{
    static const char sql[] = "SELECT to_regprocedure('" INGEST_COLUMNS_SIGNATURE "')";
    (void)pg_exec(b->in->pg, sql, 0, NULL, on_schema_checked, b); /* refused: shutting down */
}

struct ingest_batcher *ingest_batcher_new(struct intake *in)
{
    struct ingest_batcher *b = xcalloc(1, sizeof *b);
    b->in = in;
    uv_timer_init(in->loop, &b->stall);
    b->stall.data = b;
    uv_timer_init(in->loop, &b->hint);
    b->hint.data = b;
    uv_timer_init(in->loop, &b->schema);
    b->schema.data = b;
    uv_unref((uv_handle_t *)&b->schema); /* a retry pending never holds the loop open */
    b->open_handles = 3;
    schema_check(b);
    return b;
}

static void on_batcher_closed(uv_handle_t *h)
{
    struct ingest_batcher *b = h->data;
    if (--b->open_handles > 0)
        return;
    free(b->flying.key);
    free(b->flying.count);
    free(b);
}

/* ---- fingerprints in flight -------------------------------------------------------------- */

static uint64_t fp_bits(const char fp[33])
{
    uint64_t v = 0;
    for (int i = 0; i < 16 && fp[i]; i++) {
        char c = fp[i];
        v = (v << 4) | ((uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10) & 15u);
    }
    return v ? v : 1;
}

static size_t fp_slot(const struct fpset *s, uint64_t k)
{
    size_t i = (size_t)(k ^ k >> 29) & (s->cap - 1);
    while (s->key[i] && s->key[i] != k)
        i = (i + 1) & (s->cap - 1);
    return i;
}

static int fp_flying(const struct fpset *s, uint64_t k)
{
    return s->used && s->key[fp_slot(s, k)] == k;
}

static void fp_add(struct fpset *s, uint64_t k)
{
    if ((s->used + 1) * 2 > s->cap) {
        struct fpset old = *s;
        s->cap = old.cap ? old.cap * 2 : 256;
        s->key = xcalloc(s->cap, sizeof *s->key);
        s->count = xcalloc(s->cap, sizeof *s->count);
        for (size_t i = 0; i < old.cap; i++)
            if (old.key[i]) {
                size_t j = fp_slot(s, old.key[i]);
                s->key[j] = old.key[i];
                s->count[j] = old.count[i];
            }
        free(old.key);
        free(old.count);
    }
    size_t i = fp_slot(s, k);
    if (!s->key[i]) {
        s->key[i] = k;
        s->used++;
    }
    s->count[i]++;
}

/* Drops one count of k; an emptied slot is refilled from the probe run after it, so lookups
 * never stop early at a hole (no tombstones). */
static void fp_remove(struct fpset *s, uint64_t k)
{
    if (!fp_flying(s, k))
        return;
    size_t i = fp_slot(s, k);
    if (--s->count[i])
        return;
    s->key[i] = 0;
    s->used--;
    for (size_t j = (i + 1) & (s->cap - 1); s->key[j]; j = (j + 1) & (s->cap - 1)) {
        size_t home = (size_t)(s->key[j] ^ s->key[j] >> 29) & (s->cap - 1);
        /* j's key may move to the hole at i when i lies cyclically in [home, j) */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            s->key[i] = s->key[j];
            s->count[i] = s->count[j];
            s->key[j] = 0;
            s->count[j] = 0;
            i = j;
        }
    }
}

/* A queued alert may go out now: de-duplication off, or no batch of its fingerprint flying. */
static int may_go(const struct ingest_batcher *b, const struct pending *p)
{
    return b->in->cfg.alert_dedup_window_hours <= 0 || !fp_flying(&b->flying, p->fp);
}

void ingest_batcher_gauges(const struct ingest_batcher *b, size_t *queued, size_t *held,
                           int *inflight, uint64_t *held_total)
{
    *queued = *held = 0;
    *inflight = 0;
    *held_total = 0;
    if (!b)
        return;
    *queued = b->n;
    for (size_t i = 0; i < b->n; i++)
        *held += !may_go(b, &b->q[i]);
    *inflight = b->inflight;
    *held_total = b->held;
}

/* The memory goes once the loop has released the timer (the caller runs the loop once more). */
void ingest_batcher_free(struct ingest_batcher *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->q[i].pk);
    free(b->q);
    b->q = NULL;
    b->n = 0;
    b->rd_valid = 0;
    hint_flush(b);
    uv_close((uv_handle_t *)&b->stall, on_batcher_closed);
    uv_close((uv_handle_t *)&b->hint, on_batcher_closed);
    uv_close((uv_handle_t *)&b->schema, on_batcher_closed);
}

static void enqueue(struct ingest_batcher *b, struct pending p, int front)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->q = xrealloc(b->q, b->cap * sizeof *b->q);
    }
    if (front) {
        memmove(b->q + 1, b->q, b->n * sizeof *b->q);
        b->q[0] = p;
        b->rd_valid = 0;
    } else {
        b->q[b->n] = p;
        if (b->rd_valid && b->rd_n < (size_t)b->in->cfg.ingest_batch_max && may_go(b, &p)) {
            if (!b->rd_n)
                b->rd_first = b->n;
            b->rd_n++;
            b->rd_bytes += p.bytes;
        }
    }
    b->n++;
}

/* The shortest time between two JOB_READY messages of a process: the most an enricher's start
 * on a committed job is delayed by the coalescing (its poll is the fallback, seconds). */
#define HINT_GAP_MS 50

/* One wake-up for count jobs committed together, job_id/alert_id the first of them. */
static void push_jobs_ready(struct intake *in, long long job_id, long long alert_id,
                            long long count)
{
    if (!in->job_push || count <= 0)
        return;
    struct job_ready j = {.job_id = job_id, .alert_id = alert_id,
                          .count = count > PROTO_MAX_ITEMS ? PROTO_MAX_ITEMS : count};
    uint8_t msg[128];
    size_t len = 0;
    if (job_ready_encode_msg(&j, msg, sizeof msg, &len) != 0)
        return;
    /* Never block the loop: a full or absent bus only delays the job until the poll. */
    bus_send(in->job_push, msg, len, 0);
}

void push_job_ready(struct intake *in, long long job_id, long long alert_id)
{
    push_jobs_ready(in, job_id, alert_id, 1);
}

/* Sends the wake-up for the jobs committed since the last one, if any. */
static void hint_flush(struct ingest_batcher *b)
{
    if (!b->hint_jobs)
        return;
    push_jobs_ready(b->in, b->hint_job, b->hint_alert, b->hint_jobs);
    b->hint_jobs = 0;
    b->hint_sent_ns = uv_hrtime();
}

static void on_hint_due(uv_timer_t *t)
{
    hint_flush(t->data);
}

/* Counts jobs committed (job/alert: the first of them) towards the next wake-up: sent at once
 * when the last went HINT_GAP_MS ago or more, else when that much has passed. A wake-up per
 * commit cost the intake a tenth of its system calls (each message wakes ZeroMQ's I/O thread);
 * now a busy intake sends at most 1000 / HINT_GAP_MS a second, an idle one without delay. */
static void hint_add(struct ingest_batcher *b, long long job, long long alert, long long jobs)
{
    if (jobs <= 0)
        return;
    if (!b->hint_jobs) {
        b->hint_job = job;
        b->hint_alert = alert;
    }
    b->hint_jobs += jobs;
    if (b->hint_jobs >= PROTO_MAX_ITEMS) { /* the most one wake-up counts: send it now */
        uv_timer_stop(&b->hint);
        hint_flush(b);
        return;
    }
    if (uv_is_active((uv_handle_t *)&b->hint))
        return;
    uint64_t gap_ns = (uint64_t)HINT_GAP_MS * 1000000u, since = uv_hrtime() - b->hint_sent_ns;
    if (since >= gap_ns)
        hint_flush(b);
    else
        uv_timer_start(&b->hint, on_hint_due, (gap_ns - since + 999999u) / 1000000u, 0);
}

/* The 202 body as text: the uuid and count come from PostgreSQL (a uuid, an integer), so
 * nothing needs escaping, and building it costs no JSON tree per alert (nor a printf: the
 * pieces are copied and the count's digits written by hand). */
static void reply_accepted(struct reqctx *rc, PGresult *res, int row)
{
    static const char queued_tail[] = "\",\"status\":\"queued\",\"is_duplicate\":false,"
                                      "\"duplicate_count\":null}";
    static const char dup_mid[] = "\",\"status\":\"deduplicated\",\"is_duplicate\":true,"
                                  "\"duplicate_count\":";
    int dup = !strcmp(PQgetvalue(res, row, 4), "t");
    const char *uuid = PQgetvalue(res, row, 1);
    size_t ulen = strnlen(uuid, 36);
    char data[160], *p = data;
    memcpy(p, "{\"alert_uuid\":\"", 15);
    p += 15;
    memcpy(p, uuid, ulen);
    p += ulen;
    if (dup) {
        memcpy(p, dup_mid, sizeof dup_mid - 1);
        p += sizeof dup_mid - 1;
        p += fmt_ll(p, atoi(PQgetvalue(res, row, 5)));
        *p++ = '}';
        *p = '\0';
    } else {
        memcpy(p, queued_tail, sizeof queued_tail); /* with its NUL */
    }
    reply_data_text(rc, 202, data);
}

static int sqlstate_is(PGresult *res, const char *state)
{
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return s && !strcmp(s, state);
}

/* A data error that comes from how the intake encoded the columns, not from what a client
 * sent: a binary array the server cannot read (22P03), text that is not UTF-8 or holds a NUL
 * (22021), or calseta_ingest_columns()'s own refusal of columns or offsets that do not match
 * (22023, its message names it). The parsers and pk_str() let no client bytes through that
 * could cause any of them. */
static int encoding_refused(PGresult *res)
{
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return sqlstate_is(res, "22P03") || sqlstate_is(res, "22021") ||
           (sqlstate_is(res, "22023") && msg && !strncmp(msg, "calseta_ingest_columns:", 23));
}

/* A batch went out at sent_ns and is back (or never went): one slot less in flight. */
static void out_remove(struct ingest_batcher *b, uint64_t sent_ns)
{
    for (int i = 0; i < b->inflight; i++)
        if (b->out_ns[i] == sent_ns) {
            b->out_ns[i] = b->out_ns[b->inflight - 1];
            break;
        }
    b->inflight--;
}

static void on_batch_done(void *arg, PGresult *res, const char *err)
{
    struct batch *bt = arg;
    struct ingest_batcher *b = bt->b;
    struct intake *in = b->in;
    out_remove(b, bt->sent_ns);
    for (size_t i = 0; i < bt->n; i++)
        fp_remove(&b->flying, bt->items[i].fp);
    b->rd_valid = 0;
    if (res && !err) {
        uint64_t now = uv_hrtime();
        for (size_t i = 0; i < bt->n; i++)
            prom_ingest_waits(in, (double)(bt->sent_ns - bt->items[i].queued_ns) / 1e9,
                              (double)(now - bt->sent_ns) / 1e9);
        int rows = PQntuples(res), first_job = -1;
        long long jobs = 0;
        for (int r = 0; r < rows; r++) {
            int idx = atoi(PQgetvalue(res, r, 0));
            if (idx < 0 || (size_t)idx >= bt->n || !bt->items[idx].rc)
                continue;
            struct pending *p = &bt->items[idx];
            if (!PQgetisnull(res, r, 3) && jobs++ == 0)
                first_job = r;
            reply_accepted(p->rc, res, r);
            p->rc = NULL;
        }
        /* Wake-ups for many commits at once (see hint_add); the job bus splits each so that
         * many jobs wake several enrichers. */
        long long job = first_job >= 0 ? atoll(PQgetvalue(res, first_job, 3)) : 0;
        long long alert = first_job >= 0 ? atoll(PQgetvalue(res, first_job, 2)) : 0;
        hint_add(b, job, alert, jobs);
        for (size_t i = 0; i < bt->n; i++) {
            if (bt->items[i].rc) /* no row came back for it: cannot happen, never hang */
                reply_error(bt->items[i].rc, 500, "INTERNAL_ERROR",
                            "An unexpected error occurred.", NULL);
            free(bt->items[i].pk);
        }
    } else if (res && (sqlstate_is(res, "40P01") || sqlstate_is(res, "40001") || bt->n > 1)) {
        /* Retry: the whole batch after a deadlock or a serialization failure (an alert a
         * duplicate counts on was deleted under the batch: the retry's lookup no longer finds
         * it, and the alert is new), else each alert alone. Each alert's retries are counted
         * across all three, so a batch that keeps failing ends in 503. The whole batch is
         * back in the queue, in its order, before any alert past its retries is answered: an
         * answer can start its connection's next pipelined request, whose submit flushes the
         * queue, and a half re-queued batch would let a later alert of a fingerprint go out
         * before an earlier one. */
        int split = !(sqlstate_is(res, "40P01") || sqlstate_is(res, "40001"));
        /* the alerts retried alone may each go in; the intake's own encoding bug must not go
         * unseen for that */
        if (encoding_refused(res))
            msg_error("ingest batch of %zu refused as sent by the intake (retrying each alert "
                      "alone): %s",
                      bt->n, err);
        for (size_t i = bt->n; i-- > 0;) {
            struct pending p = bt->items[i];
            if (p.retries >= MAX_RETRIES)
                continue;
            p.retries++;
            p.solo = split;
            enqueue(b, p, 1);
        }
        for (size_t i = 0; i < bt->n; i++)
            if (bt->items[i].retries >= MAX_RETRIES) {
                reply_error(bt->items[i].rc, 503, "SERVICE_UNAVAILABLE",
                            "The database could not store the alert; nothing was stored. "
                            "Retry later.",
                            NULL);
                free(bt->items[i].pk);
            }
    } else {
        int is_data = res && PQresultErrorField(res, PG_DIAG_SQLSTATE) &&
                      !strncmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22", 2);
        int ours = res && is_data && encoding_refused(res);
        if (ours) /* the intake's own columns refused: its bug, not the client's alert */
            msg_error("ingest batch of %zu refused as sent by the intake: %s", bt->n, err);
        else if (res)
            msg_warn("ingest batch of %zu failed: %s", bt->n, err);
        else
            msg_warn("ingest batch of %zu not stored: %s", bt->n, err);
        for (size_t i = 0; i < bt->n; i++) {
            struct pending *p = &bt->items[i];
            if (is_data && !ours)
                reply_error(p->rc, 422, "INVALID_PAYLOAD",
                            "The alert contains a value the database cannot store.", NULL);
            else if (res)
                reply_error(p->rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
            else if (err && (!strncmp(err, "connection lost", 15) ||
                             !strncmp(err, "query timeout", 13)))
                reply_error(p->rc, 503, "SERVICE_UNAVAILABLE",
                            "The database connection was lost while storing the alert; it may "
                            "or may not be stored. Retrying is safe: a repeat is de-duplicated.",
                            NULL);
            else
                reply_db_unavailable(p->rc);
            free(p->pk);
        }
    }
    free(bt->items);
    free(bt);
    flush(b);
}

/* Moves the alerts of the next batch from the queue into bt->items, in queue order: those free
 * to go (see may_go), up to INGEST_BATCH_MAX and MAX_BATCH_BYTES; a retry of one alert alone
 * goes alone. The alerts held back keep their order. The batch ends at the first alert free to
 * go that does not fit, so no later alert overtakes it (one of its fingerprint would become the
 * stored alert and it the duplicate). Returns the bytes of the elements. */
static size_t take_batch(struct ingest_batcher *b, struct batch *bt)
{
    size_t max = (size_t)b->in->cfg.ingest_batch_max, bytes = 0, kept = 0, i;
    bt->items = xmalloc((b->n < max ? b->n : max) * sizeof *bt->items);
    bt->n = 0;
    for (i = 0; i < b->n && bt->n < max; i++) {
        struct pending *p = &b->q[i];
        int fits = bt->n == 0 || (!p->solo && !bt->items[0].solo &&
                                  bytes + p->bytes <= MAX_BATCH_BYTES);
        if (!may_go(b, p)) {
            b->q[kept++] = *p;
            continue;
        }
        if (!fits)
            break;
        bytes += p->bytes;
        bt->items[bt->n++] = *p;
    }
    memmove(b->q + kept, b->q + i, (b->n - i) * sizeof *b->q);
    b->n = kept + (b->n - i);
    for (size_t k = 0; k < bt->n; k++)
        fp_add(&b->flying, bt->items[k].fp);
    b->rd_valid = 0;
    return bytes;
}

/* A batch that never reached the database (the pool is gone at shutdown): nothing was stored
 * and nothing is in flight, so each alert is answered 503. As in on_batch_done, the batcher's
 * state is settled before the first answer: an answer can start its connection's next
 * pipelined request, whose submit flushes, and that flush must not see this batch's
 * fingerprints still flying. */
static void batch_unsent(struct ingest_batcher *b, struct batch *bt)
{
    out_remove(b, bt->sent_ns);
    for (size_t i = 0; i < bt->n; i++)
        fp_remove(&b->flying, bt->items[i].fp);
    b->rd_valid = 0;
    for (size_t i = 0; i < bt->n; i++) {
        reply_db_unavailable(bt->items[i].rc);
        free(bt->items[i].pk);
    }
    free(bt->items);
    free(bt);
}

/* The policy when the generator gives no random bytes for a batch's uuids: the batch goes with
 * its uuid columns NULL and the database draws them (see columns_build), so no alert is refused
 * for it. OpenSSL's generator fails only when the system cannot seed it, and then it fails for
 * every batch, so the log says so once a minute with the count of batches, not once per batch;
 * and once more when the generator works again. */
#define NORAND_SAY_NS (60ull * 1000000000ull)
static void norand_note(struct ingest_batcher *b, int failed, const char *why)
{
    uint64_t now = uv_hrtime();
    if (failed) {
        b->norand++;
        if (b->norand_said_ns && now - b->norand_said_ns < NORAND_SAY_NS)
            return;
        msg_warn("ingest: %llu batch(es) sent with their uuids left to the database (%s)",
                 (unsigned long long)b->norand, why);
    } else {
        msg_warn("ingest: random bytes again; %llu more batch(es) had their uuids drawn by the "
                 "database",
                 (unsigned long long)b->norand);
        now = 0; /* the next failure is a new burst, said at once */
    }
    b->norand = 0;
    b->norand_said_ns = now;
}

static void send_batch(struct ingest_batcher *b)
{
    struct intake *in = b->in;
    struct batch *bt = xcalloc(1, sizeof *bt);
    bt->b = b;
    bt->sent_ns = uv_hrtime();
    take_batch(b, bt);
    size_t take = bt->n;

    /* The batch as typed columns, binary arrays the server reads with no parsing (each alert's
     * strings packed as array elements already, copied once into their column), instead of a
     * JSON document it parsed into jsonb and took apart again; with the uuids of its new alerts
     * and indicators, made here for the whole batch (see columns_build). */
    const struct packed **pks = xmalloc(take * sizeof *pks);
    for (size_t i = 0; i < take; i++)
        pks[i] = bt->items[i].pk;
    char *values[INGEST_COLUMNS], err[256];
    int lengths[INGEST_COLUMNS], formats[INGEST_COLUMNS];
    int norand = columns_build(pks, take, in->cfg.alert_dedup_window_hours, values, lengths,
                               formats, err, sizeof err);
    free(pks);
    if (norand || b->norand_said_ns)
        norand_note(b, norand, err);
    b->out_ns[b->inflight++] = bt->sent_ns;
    prom_ingest_batch(in, take);
    /* handed to the pool, not copied: the columns are most of the bytes of a batch */
    int sent = pg_exec_prepared_bin(in->pg, "calseta_ingest_columns", INGEST_COLUMNS_SQL,
                                    INGEST_COLUMNS, values, lengths, formats, on_batch_done, bt);
    if (sent != 0) /* the pool is gone (shutdown) */
        batch_unsent(b, bt);
}

/* The queued alerts free to go now (at most INGEST_BATCH_MAX are counted); *first, the oldest. */
static size_t ready(struct ingest_batcher *b, const struct pending **first)
{
    size_t n = 0, bytes = 0, max = (size_t)b->in->cfg.ingest_batch_max;
    if (!b->rd_valid) {
        b->rd_first = 0;
        for (size_t i = 0; i < b->n && n < max; i++)
            if (may_go(b, &b->q[i])) {
                if (!n)
                    b->rd_first = i;
                n++;
                bytes += b->q[i].bytes;
            }
        b->rd_n = n;
        b->rd_bytes = bytes;
        b->rd_valid = 1;
    }
    *first = b->rd_n ? &b->q[b->rd_first] : NULL;
    return b->rd_n;
}

/* The batches in flight that are live: out less than INGEST_STALL_MS. *due_ms, when the
 * youngest of them stalls (0 when none is live); *youngest_ns, when it went out. */
static int live_batches(const struct ingest_batcher *b, uint64_t *due_ms, uint64_t *youngest_ns)
{
    uint64_t stall_ns = (uint64_t)b->in->cfg.ingest_stall_ms * 1000000u, now = uv_hrtime();
    uint64_t left_ns = 0;
    int n = 0;
    *youngest_ns = 0;
    for (int i = 0; i < b->inflight; i++) {
        uint64_t age = now - b->out_ns[i];
        if (age < stall_ns) {
            n++;
            if (stall_ns - age > left_ns) {
                left_ns = stall_ns - age;
                *youngest_ns = b->out_ns[i];
            }
        }
    }
    *due_ms = (left_ns + 999999u) / 1000000u;
    return n;
}

/* Group commit with a floor: a batch goes out at once when none of the process's batches is
 * live in the database; beside live ones only when the queue holds INGEST_BATCH_MIN alerts (or
 * a full batch, or a retry of one alert alone), up to INGEST_MAX_INFLIGHT. Otherwise the queue
 * grows while the running batch commits: every transaction costs the server a fixed amount of
 * CPU. By default the floor is a whole batch, so a process keeps one live batch in the database:
 * on a quiet box that was the fastest and cheapest per alert, a second batch beside it only
 * adding concurrency. A batch held in the database (a lock, a slow WAL flush) is no longer live
 * once it has been out INGEST_STALL_MS, so a stuck batch delays the rest of the process's alerts
 * by that bound, not by its own duration - while fewer than INGEST_MAX_INFLIGHT of the
 * process's batches are stuck (stalled ones keep their slots, hence a range from 2). Only
 * alerts free to go count (see may_go). */
static void flush(struct ingest_batcher *b)
{
    const struct config *c = &b->in->cfg;
    uint64_t due_ms = 0, youngest_ns = 0;
    int held_by_live = 0;
    while (b->n > 0 && b->inflight < c->ingest_max_inflight) {
        const struct pending *first;
        size_t n = ready(b, &first);
        if (!n)
            break;
        /* a queue that fills a whole batch goes: INGEST_BATCH_MAX alerts, or the byte cap (a
         * batch of large alerts is full long before the count says so) */
        if (!first->solo && n < (size_t)c->ingest_batch_min && n < (size_t)c->ingest_batch_max &&
            b->rd_bytes < MAX_BATCH_BYTES && b->inflight > 0 &&
            live_batches(b, &due_ms, &youngest_ns) > 0) {
            held_by_live = 1;
            break;
        }
        send_batch(b);
    }
    /* the queue goes when the running batch returns, or when it stalls, whichever is first;
     * the timer already armed for the same youngest batch stays (each alert queued beside a
     * live batch re-armed it) */
    if (!held_by_live) {
        uv_timer_stop(&b->stall);
    } else if (!uv_is_active((uv_handle_t *)&b->stall) || b->stall_for_ns != youngest_ns) {
        uv_timer_start(&b->stall, on_stalled, due_ms ? due_ms : 1, 0);
        b->stall_for_ns = youngest_ns;
    }
}

static void on_stalled(uv_timer_t *t)
{
    flush(t->data);
}

/* ---- indicators.last_seen, off the write path ------------------------------------------- */

static void on_sightings_applied(void *arg, PGresult *res, const char *err)
{
    struct ingest_batcher *b = arg;
    b->folding = 0;
    if (err)
        msg_warn("indicator last_seen update failed (kept for the next round): %s", err);
    (void)res;
}

/* Ingest records a sighting row per (batch, indicator) instead of updating the indicator, which
 * would hold a lock on a hot row until the commit; this folds them into last_seen. */
void ingest_sightings_apply(struct intake *in)
{
    struct ingest_batcher *b = in->batcher;
    if (!b || b->folding)
        return;
    b->folding = 1;
    if (pg_exec(in->pg, "SELECT calseta_indicator_sightings_apply()", 0, NULL,
                on_sightings_applied, b) != 0)
        b->folding = 0;
}

/* ---- checks shared by both routes ------------------------------------------------------- */

static int source_allowed(const struct auth_info *a, const char *source)
{
    if (!a->allowed_sources)
        return 1;
    size_t i;
    json_t *v;
    json_array_foreach(a->allowed_sources, i, v)
    {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, source))
            return 1;
    }
    return 0;
}

/* Registry lookup and allowed_sources; replies and returns NULL on failure. */
static const struct alert_source *resolve_source(struct reqctx *rc, const char *name)
{
    const struct alert_source *src = source_lookup(name);
    if (!src) {
        char msg[160];
        snprintf(msg, sizeof msg, "Alert source '%.100s' is not registered.", name);
        reply_error(rc, 404, "UNKNOWN_SOURCE", msg, NULL);
        return NULL;
    }
    if (!source_allowed(&rc->auth, name)) {
        struct http_request *req = rc->req;
        audit_auth_failure(rc->in->audit, req->method, req->path, rc->client_ip,
                           rc->auth.key_prefix, "source_not_allowed", NULL, req->request_id);
        char msg[160];
        snprintf(msg, sizeof msg, "API key is not authorized to ingest from source '%s'.", name);
        reply_error(rc, 403, "SOURCE_NOT_ALLOWED", msg, NULL);
        return NULL;
    }
    return src;
}

static void reply_payload_mismatch(struct reqctx *rc, const char *name)
{
    char msg[160];
    snprintf(msg, sizeof msg, "Payload does not match expected structure for source '%s'.", name);
    reply_error(rc, 422, "INVALID_PAYLOAD", msg, NULL);
}

/* The source's normalise and extract steps: they read only the payload's tokens, so they may
 * run on a pool thread. -1 when the payload does not normalise (nothing to release). */
static int normalize_extract(const struct alert_source *src, const struct jtok_doc *tok,
                             uint32_t root, struct normalized_alert *na, struct indicator_set *set)
{
    if (src->normalize(tok, root, na) != 0)
        return -1;
    indicator_set_init(set);
    src->extract(tok, root, set);
    return 0;
}

static void submit_normalized(struct reqctx *rc, const struct alert_source *src,
                              struct normalized_alert *pna, struct indicator_set *pset,
                              const char *raw, size_t raw_len, const struct json_scan *scan);

/* Normalise, extract, fingerprint and queue. The source reads the payload from tok, the body's
 * token index, at token root; raw/raw_len is the payload's text in the body, which goes to the
 * database as received (the parser accepted it), so nothing is serialised again and numbers
 * stay exactly as sent. scan: what the limit walk saw of the body. */
static void submit(struct reqctx *rc, const struct alert_source *src, const struct jtok_doc *tok,
                   uint32_t root, const char *raw, size_t raw_len, const struct json_scan *scan)
{
    struct normalized_alert na;
    struct indicator_set set;
    if (normalize_extract(src, tok, root, &na, &set) != 0) {
        reply_payload_mismatch(rc, src->name);
        return;
    }
    submit_normalized(rc, src, &na, &set, raw, raw_len, scan);
}

/* The rest of submit() on a normalised alert and its indicators, which it releases. */
static void submit_normalized(struct reqctx *rc, const struct alert_source *src,
                              struct normalized_alert *pna, struct indicator_set *pset,
                              const char *raw, size_t raw_len, const struct json_scan *scan)
{
    struct normalized_alert na = *pna;
    struct indicator_set set = *pset;
    mappings_apply(rc->in, &na, src->name, &set);
    char fp[33];
    indicators_fingerprint(na.title, src->name, &set, fp);

    struct element e = {.na = &na, .source = src->name, .fingerprint = fp,
                        .key_prefix = rc->auth.key_prefix, .set = &set,
                        .check_numbers = scan && scan->wide_numbers};
    struct packed *pk = element_pack(&e, raw, raw_len);
    indicator_set_destroy(&set);
    normalized_alert_destroy(&na);

    struct pending p = {.rc = rc, .pk = pk, .bytes = pk->len, .queued_ns = uv_hrtime(),
                        .fp = fp_bits(fp)};
    struct ingest_batcher *b = rc->in->batcher;
    b->held += !may_go(b, &p);
    enqueue(b, p, 0);
    flush(b);
}

/* ---- parsing, off the loop when the body is large ------------------------------------------
 *
 * A body is read once, into a token index, with the limits of jsonparse.h (nesting, values; for
 * POST /v1/alerts also the payload cap on the bytes received) before anything is built. Bodies
 * larger than OFFLOOP_BYTES are parsed (and for POST /v1/ingest/{source} also normalised) on
 * libuv's thread pool, so a request the limits let through costs the loop little more than a
 * small one. The payload is stored from the request's own text, never serialised again. */

#define OFFLOOP_BYTES (64u << 10)

/* Serialised with ASCII escapes, a payload is at most this many times its bytes without
 * whitespace: a character of 2 UTF-8 bytes becomes \uXXXX (6), and a 3-byte real such as 0.1
 * becomes 0.10000000000000001 (19) - 8 leaves room. Below the cap divided by this, the exact
 * serialised size cannot break the cap and is not computed. */
#define SERIALISED_GROWTH 8

struct parse_job;
typedef void (*parsed_fn)(struct parse_job *pj);

struct parse_job {
    uv_work_t work;
    struct reqctx *rc;
    const struct alert_source *src; /* POST /v1/ingest/{source} */
    struct json_limits lim;
    int alerts_route;       /* POST /v1/alerts: the payload is the body's member "payload" */
    int tok_ok;             /* tok holds the body */
    struct jtok_doc tok;    /* the body's tokens (they borrow the request's body) */
    uint32_t tok_root;      /* POST /v1/alerts: "payload" in tok, once tok_ok */
    enum { TOK_UNCHECKED, TOK_NOT_OBJECT, TOK_MISMATCH, TOK_READY } tok_verdict;
    struct normalized_alert na; /* TOK_READY: the normalised alert and its indicators, */
    struct indicator_set set;   /* built on the pool for a large body; submit releases them */
    struct json_scan scan;
    enum json_parse_status st;
    size_t payload_size;    /* POST /v1/alerts: compact ASCII size of "payload", when it may be
                               over the cap (else 0) */
    size_t body_len;        /* kept: rc is gone once the request is answered */
    char err[160];
    parsed_fn next;
};

/* The source's checks over the token index, for a large body on the pool thread that parsed it:
 * they only read the tokens, and str() of a large container (tags, Python's rendering of a
 * value) re-reads its bytes, which would otherwise cost the loop. */
static void check_tokens(struct parse_job *pj)
{
    if (jtok_type(&pj->tok, 0) != JT_OBJECT)
        pj->tok_verdict = TOK_NOT_OBJECT;
    else if (!pj->src->validate(&pj->tok, 0) ||
             normalize_extract(pj->src, &pj->tok, 0, &pj->na, &pj->set) != 0)
        pj->tok_verdict = TOK_MISMATCH;
    else
        pj->tok_verdict = TOK_READY;
}

/* The payload's size as the original measured it (compact, ASCII escapes), only when it may be
 * over the cap: a body that large is on the pool already. */
static size_t payload_serialised_size(const struct parse_job *pj)
{
    if (pj->scan.compact_bytes <= ALERT_PAYLOAD_MAX / SERIALISED_GROWTH)
        return 0;
    json_t *payload = jtok_json(&pj->tok, pj->tok_root);
    size_t n = json_dumpb(payload, NULL, 0, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(payload);
    return n;
}

/* Strict JSON: duplicate keys are refused, and so is \u0000, which PostgreSQL could not store.
 * Runs on the loop or on a pool thread (touches only pj and the request's body). */
static void parse_body(struct parse_job *pj)
{
    struct http_request *req = pj->rc->req;
    pj->tok_ok = jtok_parse_limited(&pj->tok, req->body.data, req->body.len, &pj->lim,
                                    &pj->scan, &pj->st, pj->err, sizeof pj->err) == 0;
    if (!pj->tok_ok)
        return;
    if (pj->alerts_route) {
        pj->tok_root = jtok_get(&pj->tok, 0, "payload");
        if (jtok_type(&pj->tok, pj->tok_root) == JT_OBJECT)
            pj->payload_size = payload_serialised_size(pj);
    } else if (pj->body_len > OFFLOOP_BYTES) {
        check_tokens(pj);
    }
}

static void parse_work(uv_work_t *w)
{
    parse_body(w->data);
}

static void parse_after(uv_work_t *w, int status)
{
    struct parse_job *pj = w->data;
    (void)status; /* never cancelled */
    pj->next(pj);
}

static void parse_then(struct reqctx *rc, const struct alert_source *src, size_t max_bytes,
                       parsed_fn next)
{
    struct parse_job *pj = xcalloc(1, sizeof *pj);
    pj->rc = rc;
    pj->src = src;
    pj->tok_root = JTOK_NONE;
    pj->lim = (struct json_limits){(size_t)rc->in->cfg.ingest_json_max_depth,
                                   (size_t)rc->in->cfg.ingest_json_max_values, max_bytes};
    pj->alerts_route = max_bytes > 0;
    pj->next = next;
    pj->body_len = rc->req->body.len;
    pj->work.data = pj;
    if (rc->req->body.len <= OFFLOOP_BYTES ||
        uv_queue_work(rc->in->loop, &pj->work, parse_work, parse_after) != 0) {
        parse_body(pj);
        next(pj);
    }
}

/* Drops the parse job and its tokens: two blocks, whatever the body's size. */
static void parse_job_free(struct parse_job *pj)
{
    jtok_free(&pj->tok);
    free(pj);
}

static void ingest_source_parsed(struct parse_job *pj);

void route_ingest_source(struct reqctx *rc)
{
    char name[64];
    path_param(rc, 0, name, sizeof name);
    const struct alert_source *src = resolve_source(rc, name);
    if (!src)
        return;
    struct http_request *req = rc->req;
    enum sig_result sr = webhook_verify(&rc->in->cfg, name, req);
    if (sr == SIG_MISSING || sr == SIG_BAD) {
        audit_auth_failure(rc->in->audit, req->method, req->path, rc->client_ip,
                           rc->auth.key_prefix, "invalid_signature", NULL, req->request_id);
        reply_error(rc, 401, "INVALID_SIGNATURE", "Webhook signature verification failed.", NULL);
        return;
    }
    parse_then(rc, src, 0, ingest_source_parsed);
}

static void reply_unparsed(struct reqctx *rc, const struct parse_job *pj)
{
    char msg[256];
    if (pj->st == JSONP_TOO_MANY) {
        snprintf(msg, sizeof msg, "Payload too large: %s.", pj->err);
        reply_error(rc, 413, "PAYLOAD_TOO_LARGE", msg, NULL);
    } else if (pj->st == JSONP_TOO_DEEP) {
        snprintf(msg, sizeof msg, "Payload nesting too deep: %s.", pj->err);
        reply_error(rc, 422, "INVALID_PAYLOAD", msg, NULL);
    } else {
        reply_error(rc, 400, "INVALID_JSON", "Request body is not valid JSON.", NULL);
    }
}

/* The checks of ingest_source_parsed() over the token index. */
static void ingest_source_tokens(struct parse_job *pj)
{
    struct reqctx *rc = pj->rc;
    struct http_request *req = rc->req;
    /* the parser accepted the body, so it is there: a body of no bytes is not JSON */
    const char *raw = req->body.data;
    size_t raw_len = req->body.len;
    if (!pj->tok_ok)
        reply_unparsed(rc, pj);
    else if (pj->tok_verdict == TOK_READY)
        submit_normalized(rc, pj->src, &pj->na, &pj->set, raw, raw_len, &pj->scan);
    else if (pj->tok_verdict == TOK_MISMATCH)
        reply_payload_mismatch(rc, pj->src->name);
    else if (jtok_type(&pj->tok, 0) != JT_OBJECT)
        reply_error(rc, 422, "INVALID_PAYLOAD", "Request body must be a JSON object.", NULL);
    else if (!pj->src->validate(&pj->tok, 0))
        reply_payload_mismatch(rc, pj->src->name);
    else
        submit(rc, pj->src, &pj->tok, 0, raw, raw_len, &pj->scan);
}

static void ingest_source_parsed(struct parse_job *pj)
{
    ingest_source_tokens(pj);
    parse_job_free(pj);
}

static json_t *validation_error(const char *type, const char *field, const char *msg)
{
    return json_pack("{s:[{s:s,s:[s,s],s:s}]}", "errors", "type", type, "loc", "body", field,
                     "msg", msg);
}

static void post_alert_parsed(struct parse_job *pj);

void route_post_alert(struct reqctx *rc)
{
    /* The payload cap on the bytes received (whitespace aside), before parsing: the payload
     * is most of the body. The exact check on the serialised payload follows the parse. */
    parse_then(rc, NULL, ALERT_PAYLOAD_MAX + ALERT_ENVELOPE_SLACK, post_alert_parsed);
}

/* The checks of POST /v1/alerts in the original's order; replies and returns -1 on failure. */
static int post_alert_check(struct parse_job *pj)
{
    struct reqctx *rc = pj->rc;
    const struct jtok_doc *d = &pj->tok;
    char msg[256];
    if (!pj->tok_ok && pj->st != JSONP_INVALID) {
        if (pj->st == JSONP_TOO_BIG)
            snprintf(msg, sizeof msg,
                     "Value error, payload exceeds maximum size of 1 MB (%zu bytes received)",
                     pj->scan.compact_bytes);
        else
            snprintf(msg, sizeof msg, "Value error, payload has %s", pj->err);
        reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                    validation_error("value_error", "payload", msg));
        return -1;
    }
    if (!pj->tok_ok || jtok_type(d, 0) != JT_OBJECT) {
        reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                    validation_error("json_invalid", "body", "JSON object expected"));
        return -1;
    }
    uint32_t sn = jtok_get(d, 0, "source_name");
    const char *err_field = NULL, *err_type = NULL, *err_msg = NULL;
    if (sn == JTOK_NONE) {
        err_field = "source_name", err_type = "missing", err_msg = "Field required";
    } else if (jtok_type(d, sn) != JT_STRING) {
        err_field = "source_name", err_type = "string_type",
        err_msg = "Input should be a valid string";
    } else if (pj->tok_root == JTOK_NONE) {
        err_field = "payload", err_type = "missing", err_msg = "Field required";
    } else if (jtok_type(d, pj->tok_root) != JT_OBJECT) {
        err_field = "payload", err_type = "dict_type",
        err_msg = "Input should be a valid dictionary";
    }
    if (err_field) {
        reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                    validation_error(err_type, err_field, err_msg));
        return -1;
    }
    if (pj->payload_size > ALERT_PAYLOAD_MAX) {
        snprintf(msg, sizeof msg,
                 "Value error, payload exceeds maximum size of 1 MB (%zu bytes serialized)",
                 pj->payload_size);
        reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                    validation_error("value_error", "payload", msg));
        return -1;
    }
    return 0;
}

static void post_alert_parsed(struct parse_job *pj)
{
    struct reqctx *rc = pj->rc;
    if (post_alert_check(pj) == 0) {
        char *name = jtok_strdup(&pj->tok, jtok_get(&pj->tok, 0, "source_name"));
        const struct alert_source *src = resolve_source(rc, name);
        free(name);
        if (src && !src->validate(&pj->tok, pj->tok_root)) {
            reply_payload_mismatch(rc, src->name);
        } else if (src) {
            const struct jtok *t = &pj->tok.t[pj->tok_root];
            submit(rc, src, &pj->tok, pj->tok_root, rc->req->body.data + t->start,
                   t->end - t->start, &pj->scan);
        }
    }
    parse_job_free(pj);
}
