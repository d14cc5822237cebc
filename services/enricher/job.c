/*
 * job.c - one enrichment job from claim to commit.
 *
 *   1. pass 3: custom raw_payload mappings add indicators to those linked at ingest
 *   2. pairs: every indicator x every active, configured provider that supports its type
 *      (indicators the original would not enrich get only a "_validation" skipped result)
 *   3. results from the in-process cache, then the shared cache (one query for all the jobs
 *      of a claim), the rest looked up by the engine, all at once
 *   4. one statement, calseta_enrich_complete_batch(), writes everything and marks the job
 *      done, together with the other jobs finished meanwhile; a statement that failed for a
 *      passing reason (a timeout, a lock, a lost connection) is tried again, its results kept,
 *      until the job's deadline; any other failure releases the job for another try
 */
#include "jsonparse.h"
#include "jsontext.h"
#include "creds.h"
#include "enricher.h"
#include "extract.h"
#include "log.h"
#include "malice.h"
#include "result.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lookup {
    struct job *job;
    size_t ind; /* index into job->indicators */
    const struct provider *p;
    json_t *result;
    int fresh; /* from the engine (not a cache) */
};

struct job {
    struct enricher *en;
    long long id, alert_id;
    int attempts;
    json_t *indicators; /* [{type, value, new}] */
    json_t *skipped;    /* index -> reason, for indicators not enrichable */
    struct provider_set *ps;
    uint64_t started_ms, deadline_ms;
    struct lookup *lk;
    size_t nlk, pending;
    char *doc;             /* completing document, while waiting in en->finished */
    unsigned group;        /* nonzero: half of a failed statement, completed with its half */
    int wait_row;          /* its last statement's outcome is unknown (timeout, lost link) */
    int backoff_ms;        /* wait before the next try of its completion (0: none failed) */
    uint64_t retry_at;     /* while in en->retry: when to try again */
    struct job *fin_next;  /* en->finished, en->retry or en->again */
    struct job *wait_next; /* en->cache_wait, then the cache read's list */
    struct job *prev, *next;
};

static void job_free(struct job *j)
{
    struct enricher *en = j->en;
    if (j->prev)
        j->prev->next = j->next;
    else
        en->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    for (size_t i = 0; i < j->nlk; i++)
        json_decref(j->lk[i].result);
    free(j->lk);
    free(j->doc);
    json_decref(j->indicators);
    json_decref(j->skipped);
    provider_set_unref(j->ps);
    free(j);
    en->inflight--;
    claim_job_finished(en);
}

/* Every job in flight, finished ones waiting for (or in) a completing statement included: the
 * ids the renewal renews (calseta_enrich_renew() skips the rows a running statement holds, which
 * nobody can claim meanwhile, instead of waiting behind it) and the claim leaves out. */
char *jobs_in_flight_array(const struct enricher *en)
{
    struct buf b;
    int n = 0;
    buf_init(&b);
    buf_puts(&b, "{");
    for (const struct job *j = en->jobs; j; j = j->next)
        buf_printf(&b, "%s%lld", n++ ? "," : "", j->id);
    buf_puts(&b, "}");
    if (n == 0) {
        buf_destroy(&b);
        return NULL;
    }
    return b.data;
}

/* ---- step 4: the completing transaction ---- */

/* Finished jobs wait in en->finished while a completing statement is running; each statement
 * completes up to BATCH_MAX of them (one round trip, one commit), in a document of at most about
 * BATCH_BYTES (the server parses and copies it whole: past a few hundred KB its memory is mapped
 * and faulted in afresh for every statement). One statement runs at a time: with two or more
 * always in flight, the jobs finishing meanwhile were split between them, and statements of
 * about 3 jobs cost PostgreSQL a third more per lookup than statements of 13-18. A job waits at
 * most for one statement in flight, so batching adds no delay when PostgreSQL keeps up.
 *
 * Another statement starts beside the running ones (up to completing_max()) when
 *   - a full batch waits: full_jobs() jobs, half the worker's concurrency up to BATCH_MAX (with
 *     8 jobs in flight 32 can never wait), or BATCH_BYTES;
 *   - every running statement has been out longer than STALL_MS: a statement of a full batch
 *     takes a few ms when PostgreSQL keeps up, so one out that long waits for a lock or a stuck
 *     connection, and the jobs finishing meanwhile must not wait behind it (their slots stay
 *     taken and claiming stops); a statement every STALL_MS costs nothing worth batching;
 *   - a half of a failed statement waits, or a job trying again on its own.
 * A statement out longer than complete_timeout_ms() fails with "query timeout"; one of
 * several jobs also fails when it waits for a lock longer than lock_wait_ms(). When the server
 * refused a statement of several jobs (a lock wait, a deadlock: it rolled back, and the rows it
 * held are free) its jobs' leases are renewed in one statement and it is split in halves, each
 * completed at once in a statement of its own: one blocked job is found in log2(n) statements
 * and the others are completed meanwhile, where one statement per job would add n statements
 * to a box that is already slow. When its outcome is unknown (a timeout, a lost connection: it
 * may still be ending on the server, or have committed) each job is asked for by
 * calseta_enrich_renew_one(), which waits for the row, renews the lease and says whether the
 * job is done, and then tries again alone; that path waits complete_timeout_ms() first, so it
 * is rare.
 *
 * A job whose own statement failed for a passing reason (retryable()) stays here with its
 * results and is tried again after a backoff (RETRY_MIN_MS doubling to RETRY_MAX_MS), its lease
 * renewed all along, until its deadline: a lock held for minutes (an analyst's transaction)
 * costs no attempt. Before each try its lease is renewed (waiting for the row only when the
 * failed statement's outcome is unknown). Such tries, which may wait for a lock up to
 * complete_timeout_ms() each, take at most completing_max() - 1 of the statement slots when
 * there are several: the last one is kept for the jobs finishing meanwhile, so they are
 * completed and claiming goes on while a job waits for a lock. With a single slot they take
 * turns with the finished jobs: no try starts right after another while finished jobs wait. */
#define BATCH_MAX 32
#define BATCH_BYTES (256 * 1024)
#define STALL_MS 250
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 5000
/* A statement of several jobs waits at most this long for a lock: a job whose rows someone
 * holds fails its statement at once, not after the timeout, and the others are completed in
 * the halves. Healthy waits (behind another worker's statement on a shared indicator) take
 * milliseconds: 2000 jobs of 10 indicators through two workers at a load of 3 on two cores
 * (tests/bench/enrich_bench.py --phases 1,2) tripped it 0 times (two statements were logged out
 * past STALL_MS). */
#define LOCK_WAIT_MS 1000

struct batch {
    struct enricher *en;
    uint64_t started_ms;
    int stall_logged;
    int again;                 /* a job trying again on its own */
    struct batch *prev, *next; /* en->running */
    size_t n;
    struct job *jobs[BATCH_MAX];
};

static void flush_finished(struct enricher *en);
static void on_retry_timer(uv_timer_t *t);

/* Completing and releasing statements end within 3/8 of a lease (at least 750 ms): a stuck one
 * would otherwise keep its jobs' slots for as long as it hangs, and it must end before the
 * lease it holds lapses. While a statement holds its jobs' rows the periodic renewal skips
 * them, and so does every claim; when it is sent, the last renewal of its rows that succeeded
 * began at most 7/12 of a lease before (claim.c: one every third of a lease, each ending within
 * a quarter of a lease, or 1 s up to 7/24 of a lease when that is more; after a failed
 * statement its jobs are renewed again before the next try, see above), assuming renewals
 * succeed. So the lease holds until at least 5/12 of a lease after the statement is sent, and
 * the statement ends 3/8 of a lease after it: 2.5 s to spare at the 60 s default. Below 4 s
 * leases the 1 s renewal floor takes up to 7/24 of a lease, and the statement then ends no
 * later than the lease: leases that short are for tests. 3/8 of the 2 s shortest lease is the
 * 750 ms floor: from the 2 s minimum up the floor never applies. A healthy statement takes
 * milliseconds. */
static int complete_timeout_ms(const struct enricher *en)
{
    int ms = en->cfg->enrich_job_lease_seconds * 375;
    return ms < 750 ? 750 : ms;
}

/* The lock wait of a statement of several jobs ends well before its timeout, so a blocked job
 * fails it as a lock wait (the rows are then free, the outcome known), not as a timeout. */
static int lock_wait_ms(const struct enricher *en)
{
    int ms = complete_timeout_ms(en) / 2;
    return ms < LOCK_WAIT_MS ? ms : LOCK_WAIT_MS;
}

static void on_released(void *arg, PGresult *res, const char *err)
{
    struct job *j = arg;
    (void)res;
    if (err)
        msg_warn("job %lld: release failed (%s); its lease will expire", j->id, err);
    job_free(j);
}

static void release(struct job *j, const char *why)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", j->id);
    const char *params[3] = {id, j->en->owner, why};
    pg_exec_timeout(j->en->pg, "SELECT calseta_enrich_release($1, $2, $3)", 3, params,
                    complete_timeout_ms(j->en), on_released, j);
}

static void job_outcome(struct job *j, const char *outcome)
{
    if (!strcmp(outcome, "done")) {
        j->en->jobs_done++;
        msg_info("job %lld (alert %lld) done in %llu ms: %zu indicators, %zu lookups", j->id,
                 j->alert_id, (unsigned long long)(now_mono_ms() - j->started_ms),
                 json_array_size(j->indicators), j->nlk);
    } else {
        msg_warn("job %lld: not completed (%s)", j->id, outcome);
    }
    job_free(j);
}

/* j tries its completion again in a statement of its own. */
static void queue_again(struct enricher *en, struct job *j)
{
    j->group = 0;
    j->fin_next = NULL;
    if (en->again_tail)
        en->again_tail->fin_next = j;
    else
        en->again = j;
    en->again_tail = j;
}

/* The n jobs of jobs, put back at the head of en->finished to be completed together. */
static void requeue_group(struct enricher *en, struct job **jobs, size_t n)
{
    if (n == 1) {
        queue_again(en, jobs[0]);
        return;
    }
    unsigned g = ++en->group_seq ? en->group_seq : ++en->group_seq;
    for (size_t i = n; i-- > 0;) {
        struct job *j = jobs[i];
        j->group = g;
        en->fin_jobs++;
        en->fin_bytes += strlen(j->doc);
        j->fin_next = en->finished;
        en->finished = j;
        if (!en->finished_tail)
            en->finished_tail = j;
    }
}

/* The statement never ran (no connection, or none free within the queue timeout, or the pool
 * is closing): no job of the batch can have caused it, and a retry would only wait as long
 * again. "query timeout" and "connection lost" are not among them: a lock held on one job's
 * rows, or one job's document, may be the cause, so the others are worth a try on their own. */
static int never_ran(PGresult *res, const char *err)
{
    return !res && strcmp(err, "query timeout") != 0 && strncmp(err, "connection lost", 15) != 0;
}

/* Worth trying again with the same document: the statement timed out, lost its connection,
 * never ran, or waited for a lock, a deadlock or a serialisation conflict; another SQL error
 * (a document PostgreSQL refuses) would fail the same way. */
static int retryable(PGresult *res, const char *err)
{
    if (!res)
        return strcmp(err, "shutting down") != 0;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (!state)
        return 0;
    return !strncmp(state, "40", 2) || !strncmp(state, "08", 2) || !strncmp(state, "53", 2) ||
           !strcmp(state, "55P03") || !strcmp(state, "57014") || !strcmp(state, "57P01");
}

static void arm_retry_timer(struct enricher *en)
{
    uint64_t first = 0;
    for (struct job *j = en->retry; j; j = j->fin_next)
        if (!first || j->retry_at < first)
            first = j->retry_at;
    if (!first) {
        uv_timer_stop(&en->retry_timer);
        return;
    }
    uint64_t now = now_mono_ms();
    uv_timer_start(&en->retry_timer, on_retry_timer, first > now ? first - now : 0, 0);
}

/* j's completion failed (err): tried again later, or released when that cannot help. */
static void retry_or_release(struct job *j, PGresult *res, const char *err)
{
    struct enricher *en = j->en;
    uint64_t now = now_mono_ms();
    const char *why = NULL;
    if (en->draining)
        why = "draining";
    else if (!retryable(res, err))
        why = "not worth a retry";
    int backoff = j->backoff_ms ? 2 * j->backoff_ms : RETRY_MIN_MS;
    if (backoff > RETRY_MAX_MS)
        backoff = RETRY_MAX_MS;
    /* the next try ends by then: the backoff, the renewal before it (which waits for the row
     * only when the outcome is unknown), its own statement */
    int wait_row = !res && !never_ran(res, err);
    uint64_t next_end =
        now + (uint64_t)backoff + (uint64_t)complete_timeout_ms(en) * (wait_row ? 2 : 1);
    if (!why && next_end >= j->deadline_ms)
        why = "past its deadline";
    if (why) {
        msg_error("job %lld: completing failed: %s (%s: released)", j->id, err, why);
        release(j, err);
        return;
    }
    j->backoff_ms = backoff;
    j->wait_row = wait_row;
    msg_warn("job %lld: completing failed: %s; trying again in %d ms", j->id, err,
             j->backoff_ms);
    j->retry_at = now + (uint64_t)j->backoff_ms;
    j->fin_next = en->retry;
    en->retry = j;
    arm_retry_timer(en);
}

static void on_renewed_one(void *arg, PGresult *res, const char *err)
{
    struct job *j = arg;
    struct enricher *en = j->en;
    if (err) {
        retry_or_release(j, res, err);
        return;
    }
    const char *state = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "?";
    if (!strcmp(state, "done")) {
        /* by the statement whose answer was lost, or by another worker after our lease lapsed:
         * not told apart, so not counted among this worker's jobs done */
        en->jobs_found_done++;
        msg_info("job %lld (alert %lld) found done after its statement's answer was lost", j->id,
                 j->alert_id);
        job_free(j);
        return;
    }
    if (strcmp(state, "running") != 0) {
        job_outcome(j, state); /* taken over */
        return;
    }
    queue_again(en, j);
    flush_finished(en);
}

/* Renews j's lease, waiting for its row (the statement whose outcome is unknown may still hold
 * it), then queues its completion alone. */
static void renew_then_retry(struct job *j)
{
    struct enricher *en = j->en;
    char id[32], lease[16];
    snprintf(id, sizeof id, "%lld", j->id);
    snprintf(lease, sizeof lease, "%d", en->cfg->enrich_job_lease_seconds);
    const char *params[3] = {id, en->owner, lease};
    pg_exec_timeout(en->pg, "SELECT calseta_enrich_renew_one($1, $2, $3)", 3, params,
                    complete_timeout_ms(en), on_renewed_one, j);
}

/* Jobs of a statement the server refused (its rows are free): their leases renewed in one
 * statement, then completed again, in halves when there are several. */
struct regroup {
    struct enricher *en;
    size_t n;
    struct job *jobs[BATCH_MAX];
};

static void on_regroup_renewed(void *arg, PGresult *res, const char *err)
{
    struct regroup *rg = arg;
    struct enricher *en = rg->en;
    if (err && (never_ran(res, err) || en->draining)) {
        /* no database to complete them with (or no time left): each waits out its backoff, or
         * is released, instead of another statement that would only wait as long again */
        msg_warn("renewing %zu jobs before completing them again failed: %s", rg->n, err);
        for (size_t i = 0; i < rg->n; i++)
            retry_or_release(rg->jobs[i], res, err);
        free(rg);
        flush_finished(en);
        return;
    }
    if (err) /* the statement itself then says lease_lost if the lease lapsed */
        msg_warn("renewing %zu jobs before completing them again failed: %s", rg->n, err);
    size_t h = rg->n / 2;
    if (h > 0)
        requeue_group(en, rg->jobs + h, rg->n - h);
    requeue_group(en, rg->jobs, h > 0 ? h : rg->n);
    free(rg);
    flush_finished(en);
}

static void renew_then_regroup(struct enricher *en, struct job **jobs, size_t n)
{
    struct regroup *rg = xcalloc(1, sizeof *rg);
    struct buf ids;
    char lease[16];
    rg->en = en;
    rg->n = n;
    buf_init(&ids);
    buf_puts(&ids, "{");
    for (size_t i = 0; i < n; i++) {
        rg->jobs[i] = jobs[i];
        buf_printf(&ids, "%s%lld", i ? "," : "", jobs[i]->id);
    }
    buf_puts(&ids, "}");
    snprintf(lease, sizeof lease, "%d", en->cfg->enrich_job_lease_seconds);
    const char *params[3] = {ids.data, en->owner, lease};
    pg_exec_timeout(en->pg, "SELECT calseta_enrich_renew($1::bigint[], $2, $3)", 3, params,
                    complete_timeout_ms(en), on_regroup_renewed, rg);
    buf_destroy(&ids);
}

static void on_retry_timer(uv_timer_t *t)
{
    struct enricher *en = t->data;
    uint64_t now = now_mono_ms();
    struct job **pp = &en->retry;
    while (*pp) {
        struct job *j = *pp;
        if (j->retry_at <= now) {
            *pp = j->fin_next;
            j->fin_next = NULL;
            if (j->wait_row)
                renew_then_retry(j);
            else
                renew_then_regroup(en, &j, 1);
        } else {
            pp = &j->fin_next;
        }
    }
    arm_retry_timer(en);
}

/* A job whose completion waits to be tried again, when the worker stops. */
static void release_waiting(struct job *j)
{
    j->fin_next = NULL;
    msg_warn("job %lld: draining while its completion waits to be tried again: released", j->id);
    release(j, "worker stopped while its completion waited");
}

void jobs_drain(struct enricher *en)
{
    struct job *lists[2] = {en->retry, en->again};
    en->retry = en->again = en->again_tail = NULL;
    for (size_t i = 0; i < 2; i++) {
        while (lists[i]) {
            struct job *j = lists[i];
            lists[i] = j->fin_next;
            release_waiting(j);
        }
    }
    uv_timer_stop(&en->retry_timer);
}

static void on_completed(void *arg, PGresult *res, const char *err)
{
    struct batch *b = arg;
    struct enricher *en = b->en;
    en->completing--;
    en->completing_again -= b->again;
    if (b->prev)
        b->prev->next = b->next;
    else
        en->running = b->next;
    if (b->next)
        b->next->prev = b->prev;
    if (err && b->n > 1 && !never_ran(res, err) && !en->draining) {
        /* one bad job must not fail the others: they are tried again at once, in halves when
         * the server refused the statement, one by one when its outcome is unknown */
        if (res) {
            msg_warn("completing %zu jobs failed (%s); completing them in halves", b->n, err);
            renew_then_regroup(en, b->jobs, b->n);
        } else {
            msg_warn("completing %zu jobs failed (%s); completing them one by one", b->n, err);
            for (size_t i = 0; i < b->n; i++)
                renew_then_retry(b->jobs[i]);
        }
    } else if (err) {
        for (size_t i = 0; i < b->n; i++)
            retry_or_release(b->jobs[i], res, err);
    } else {
        for (int r = 0; r < PQntuples(res); r++) {
            long long id = atoll(PQgetvalue(res, r, 0));
            for (size_t i = 0; i < b->n; i++) {
                if (b->jobs[i] && b->jobs[i]->id == id) {
                    job_outcome(b->jobs[i], PQgetvalue(res, r, 1));
                    b->jobs[i] = NULL;
                }
            }
        }
        for (size_t i = 0; i < b->n; i++)
            if (b->jobs[i])
                job_outcome(b->jobs[i], "?");
    }
    free(b);
    flush_finished(en);
}

static int completing_max(const struct enricher *en)
{
    int n = en->opt.db_connections / 2;
    return n < 1 ? 1 : n;
}

static size_t full_jobs(const struct enricher *en)
{
    int n = en->cfg->enricher_concurrency / 2;
    return n < 1 ? 1 : n > BATCH_MAX ? BATCH_MAX : (size_t)n;
}

/* Running statements started less than STALL_MS before now; *next_ms: when the first of them
 * stops counting (0 when none). */
static int young_statements(struct enricher *en, uint64_t now, uint64_t *next_ms)
{
    int n = 0;
    *next_ms = 0;
    for (struct batch *b = en->running; b; b = b->next) {
        if (now - b->started_ms < STALL_MS) {
            n++;
            if (!*next_ms || b->started_ms + STALL_MS < *next_ms)
                *next_ms = b->started_ms + STALL_MS;
        } else if (!b->stall_logged) {
            b->stall_logged = 1;
            msg_warn("completing %zu jobs: statement out for %llu ms, completing others beside it",
                     b->n, (unsigned long long)(now - b->started_ms));
        }
    }
    return n;
}

/* A statement may start now (see above). */
static int may_complete(struct enricher *en, uint64_t now, uint64_t *next_ms)
{
    *next_ms = 0;
    if (!en->finished || en->completing >= completing_max(en))
        return 0;
    if (en->finished->group || en->fin_jobs >= full_jobs(en) || en->fin_bytes >= BATCH_BYTES)
        return 1;
    return young_statements(en, now, next_ms) == 0;
}

static void on_stall_timer(uv_timer_t *t)
{
    flush_finished(t->data);
}

/* Sends b's statement: its jobs' documents in one; a statement of several jobs with a bounded
 * lock wait. */
static void send_batch(struct enricher *en, struct batch *b, uint64_t now)
{
    struct buf doc;
    char lock_wait[16];
    buf_init(&doc);
    buf_puts(&doc, "{\"jobs\":[");
    for (size_t i = 0; i < b->n; i++) {
        if (i > 0)
            buf_puts(&doc, ",");
        /* the document stays with the job until its outcome: a failed statement sends it
         * again */
        buf_puts(&doc, b->jobs[i]->doc);
    }
    buf_puts(&doc, "]}");
    b->started_ms = now;
    b->next = en->running;
    if (en->running)
        en->running->prev = b;
    en->running = b;
    en->completing++;
    en->completing_again += b->again;
    en->complete_stmts++;
    en->complete_jobs += b->n;
    if (b->n > 1) {
        snprintf(lock_wait, sizeof lock_wait, "%d", lock_wait_ms(en));
        const char *params[3] = {en->owner, doc.data, lock_wait};
        pg_exec_timeout(en->pg,
                        "SELECT job_id, outcome "
                        "FROM calseta_enrich_complete_batch_bounded($1, $2::jsonb, $3)",
                        3, params, complete_timeout_ms(en), on_completed, b);
    } else {
        const char *params[2] = {en->owner, doc.data};
        pg_exec_timeout(en->pg,
                        "SELECT job_id, outcome FROM calseta_enrich_complete_batch($1, "
                        "$2::jsonb)",
                        2, params, complete_timeout_ms(en), on_completed, b);
    }
    buf_destroy(&doc);
}

/* Statements a job trying again on its own may take: all but one when there are several. */
static int again_max(const struct enricher *en)
{
    int n = completing_max(en) - 1;
    return n < 1 ? 1 : n;
}

static void flush_finished(struct enricher *en)
{
    uint64_t now = now_mono_ms(), next_ms;
    for (;;) {
        int again = en->again && en->completing < completing_max(en) &&
                    en->completing_again < again_max(en);
        int finished = may_complete(en, now, &next_ms);
        if (!again && !finished)
            break;
        if (again && !(finished && en->last_again)) {
            /* a try on its own; with a single slot, turns with the finished jobs */
            struct job *j = en->again;
            en->again = j->fin_next;
            if (!en->again)
                en->again_tail = NULL;
            j->fin_next = NULL;
            if (en->draining) { /* as jobs_drain() does with those queued before */
                release_waiting(j);
                continue;
            }
            struct batch *b = xcalloc(1, sizeof *b);
            b->en = en;
            b->again = 1;
            b->jobs[b->n++] = j;
            en->last_again = 1;
            send_batch(en, b, now);
            continue;
        }
        en->last_again = 0;
        struct batch *b = xcalloc(1, sizeof *b);
        size_t bytes = 0;
        unsigned group = en->finished->group;
        b->en = en;
        do {
            struct job *j = en->finished;
            size_t len = strlen(j->doc);
            if (b->n > 0 && (j->group != group || bytes + len > BATCH_BYTES))
                break;
            en->fin_jobs--;
            en->fin_bytes -= len;
            en->finished = j->fin_next;
            if (!en->finished)
                en->finished_tail = NULL;
            j->fin_next = NULL;
            j->group = 0;
            bytes += len + 1;
            b->jobs[b->n++] = j;
        } while (en->finished && b->n < BATCH_MAX);
        send_batch(en, b, now);
    }
    /* jobs left waiting behind young statements: look again when the first of them stalls */
    if (next_ms)
        uv_timer_start(&en->stall_timer, on_stall_timer, next_ms - now + 1, 0);
    else
        uv_timer_stop(&en->stall_timer);
}

void jobs_init(struct enricher *en)
{
    uv_timer_init(en->loop, &en->stall_timer);
    en->stall_timer.data = en;
    uv_timer_init(en->loop, &en->retry_timer);
    en->retry_timer.data = en;
}

void jobs_close(struct enricher *en)
{
    uv_close((uv_handle_t *)&en->stall_timer, NULL);
    uv_close((uv_handle_t *)&en->retry_timer, NULL);
}

/* The verdicts counted for the summary, in the order they first came (the order of its keys). */
struct verdict_counts {
    const char *name[8];
    long n[8];
    size_t k;
};

static void verdict_count(struct verdict_counts *vc, const char *worst)
{
    for (size_t i = 0; i < vc->k; i++)
        if (!strcmp(vc->name[i], worst)) {
            vc->n[i]++;
            return;
        }
    if (vc->k < sizeof vc->name / sizeof vc->name[0]) {
        vc->name[vc->k] = worst;
        vc->n[vc->k++] = 1;
    }
}

static void put_key(struct buf *b, const char *key)
{
    buf_json_cstr(b, key);
    buf_append(b, ":", 1);
}

/* One indicator's entry of the completion document, written as text: {type, value, new,
 * results by provider, the worst verdict, the cache TTL of each fresh result}. */
static void put_indicator(struct buf *b, struct job *j, size_t i, struct verdict_counts *vc,
                          int *ok, int *failed)
{
    json_t *ind = json_array_get(j->indicators, i);
    const char *type = json_string_value(json_object_get(ind, "type"));
    const char *worst = "Pending";
    int fresh = 0;
    buf_puts(b, "{\"type\":");
    buf_json_value(b, json_object_get(ind, "type"));
    buf_puts(b, ",\"value\":");
    buf_json_value(b, json_object_get(ind, "value"));
    buf_puts(b, json_is_true(json_object_get(ind, "new")) ? ",\"new\":true,\"results\":{"
                                                          : ",\"new\":false,\"results\":{");
    int first = 1;
    json_t *reason = json_object_get(j->skipped, json_string_value(json_object_get(ind, "key")));
    if (reason) {
        char *msg = xasprintf("Enrichment skipped: %s", json_string_value(reason));
        json_t *r = result_new("_validation", "skipped", NULL, NULL, msg);
        put_key(b, "_validation");
        buf_json_value(b, r);
        json_decref(r);
        free(msg);
        first = 0;
    }
    for (size_t k = 0; k < j->nlk; k++) {
        struct lookup *l = &j->lk[k];
        if (l->ind != i || !l->result)
            continue;
        if (!first)
            buf_append(b, ",", 1);
        first = 0;
        put_key(b, l->p->name);
        buf_json_value(b, l->result);
        if (json_is_true(json_object_get(l->result, "success"))) {
            (*ok)++;
            const char *m = json_string_value(
                json_object_get(json_object_get(l->result, "extracted"), "malice"));
            if (m && malice_rank(m) >= 0)
                worst = malice_worst(worst, m);
            fresh += l->fresh;
        } else if (!strcmp(json_string_value(json_object_get(l->result, "status")), "failed")) {
            (*failed)++;
        }
    }
    buf_puts(b, "},\"malice\":");
    buf_json_cstr(b, worst);
    if (fresh) { /* stored in the shared cache from results[provider]: sent once */
        buf_puts(b, ",\"ttl\":{");
        first = 1;
        for (size_t k = 0; k < j->nlk; k++) {
            struct lookup *l = &j->lk[k];
            if (l->ind != i || !l->result || !l->fresh ||
                !json_is_true(json_object_get(l->result, "success")))
                continue;
            if (!first)
                buf_append(b, ",", 1);
            first = 0;
            put_key(b, l->p->name);
            buf_printf(b, "%d", provider_cache_ttl(l->p, type));
        }
        buf_append(b, "}", 1);
    }
    buf_append(b, "}", 1);
    verdict_count(vc, worst);
}

#define DOC_HINT_MAX (64 << 10)

static void complete(struct job *j)
{
    struct verdict_counts vc = {0};
    int ok = 0, failed = 0;
    size_t n = json_array_size(j->indicators);
    /* written straight into one buffer, without a document tree (about 15 objects per
     * indicator) or json_dumps() (which checks every container for loops and copies the text
     * once more); the text is what json_dumps() of that tree wrote. Jobs of one load are alike,
     * so the last document's size (and a quarter) is usually enough at once. */
    struct enricher *en = j->en;
    struct buf text;
    buf_init(&text);
    buf_reserve(&text, en->doc_len + en->doc_len / 4 + 256);
    buf_printf(&text, "{\"id\":%lld,\"indicators\":[", j->id);
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_append(&text, ",", 1);
        put_indicator(&text, j, i, &vc, &ok, &failed);
    }
    buf_printf(&text,
               "],\"summary\":{\"indicator_count\":%d,\"providers_succeeded\":%d,"
               "\"providers_failed\":%d,\"malice_counts\":{",
               (int)n, ok, failed);
    for (size_t k = 0; k < vc.k; k++) {
        if (k)
            buf_append(&text, ",", 1);
        put_key(&text, vc.name[k]);
        buf_printf(&text, "%ld", vc.n[k]);
    }
    buf_puts(&text, "}}}");
    /* a job with huge answers does not make every later document reserve as much */
    en->doc_len = text.len < DOC_HINT_MAX ? text.len : DOC_HINT_MAX;
    j->doc = text.data;
    en->fin_jobs++;
    en->fin_bytes += text.len;
    if (en->finished_tail)
        en->finished_tail->fin_next = j;
    else
        en->finished = j;
    en->finished_tail = j;
    flush_finished(en);
}

/* ---- step 3: caches and lookups ---- */

/* About the serialised size of v, without serialising it (the in-process cache's weight). */
static size_t json_weight(json_t *v)
{
    size_t w = 0, i;
    const char *k;
    json_t *x;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        w = 2;
        json_object_foreach(v, k, x) w += strlen(k) + 4 + json_weight(x);
        return w;
    case JSON_ARRAY:
        w = 2;
        json_array_foreach(v, i, x) w += 1 + json_weight(x);
        return w;
    case JSON_STRING:
        return json_string_length(v) + 2;
    case JSON_INTEGER:
    case JSON_REAL:
        return 24;
    default:
        return 5;
    }
}

static void lookup_done(struct job *j)
{
    if (--j->pending == 0)
        complete(j);
}

static void on_lookup(void *arg, json_t *result)
{
    struct lookup *l = arg;
    struct job *j = l->job;
    l->result = result;
    l->fresh = 1;
    if (json_is_true(json_object_get(result, "success"))) {
        json_t *ind = json_array_get(j->indicators, l->ind);
        const char *type = json_string_value(json_object_get(ind, "type"));
        cache_put(j->en->cache, l->p->name, type, json_string_value(json_object_get(ind, "value")),
                  result, json_weight(result), now_mono_ms(),
                  (int64_t)provider_cache_ttl(l->p, type) * 1000);
    } else {
        msg_warn("job %lld: %s lookup failed: %s", j->id, l->p->name,
                 json_string_value(json_object_get(result, "error_message")));
    }
    lookup_done(j);
}

static void run_lookups(struct job *j)
{
    j->pending = 1; /* held until every lookup has started */
    for (size_t k = 0; k < j->nlk; k++) {
        struct lookup *l = &j->lk[k];
        if (l->result)
            continue;
        json_t *ind = json_array_get(j->indicators, l->ind);
        j->pending++;
        engine_lookup(j->en->engine, l->p, json_string_value(json_object_get(ind, "type")),
                      json_string_value(json_object_get(ind, "value")), j->id, j->deadline_ms,
                      on_lookup, l);
    }
    lookup_done(j);
}

/* One shared-cache read for the jobs of a claim: key k (1-based) is keys[k - 1]. */
struct cache_read {
    struct enricher *en;
    struct job *jobs; /* linked by wait_next */
    size_t n;
    struct lookup **keys;
};

static void on_shared_cache(void *arg, PGresult *res, const char *err)
{
    struct cache_read *cr = arg;
    if (err) {
        msg_warn("shared cache unavailable (%s), looking everything up", err);
    } else {
        for (int r = 0; r < PQntuples(res); r++) {
            long k = atol(PQgetvalue(res, r, 0));
            if (k < 1 || (size_t)k > cr->n)
                continue;
            struct lookup *l = cr->keys[k - 1];
            json_t *v = json_loads_wide(PQgetvalue(res, r, 1), 0);
            if (!v)
                continue;
            json_t *ind = json_array_get(l->job->indicators, l->ind);
            l->result = v;
            cache_put(cr->en->cache, l->p->name, json_string_value(json_object_get(ind, "type")),
                      json_string_value(json_object_get(ind, "value")), v,
                      (size_t)PQgetlength(res, r, 1), now_mono_ms(),
                      atoll(PQgetvalue(res, r, 2)) * 1000);
        }
    }
    struct job *j = cr->jobs;
    while (j) {
        struct job *next = j->wait_next;
        j->wait_next = NULL;
        run_lookups(j);
        j = next;
    }
    free(cr->keys);
    free(cr);
}

void jobs_read_shared_cache(struct enricher *en)
{
    if (!en->cache_wait)
        return;
    struct cache_read *cr = xcalloc(1, sizeof *cr);
    cr->en = en;
    cr->jobs = en->cache_wait;
    en->cache_wait = NULL;
    size_t cap = 0;
    for (struct job *j = cr->jobs; j; j = j->wait_next)
        cap += j->nlk;
    cr->keys = xcalloc(cap ? cap : 1, sizeof *cr->keys);
    json_t *keys = json_array();
    for (struct job *j = cr->jobs; j; j = j->wait_next) {
        for (size_t k = 0; k < j->nlk; k++) {
            struct lookup *l = &j->lk[k];
            if (l->result)
                continue;
            json_t *ind = json_array_get(j->indicators, l->ind);
            json_array_append_new(keys,
                                  json_pack("[s,O,O]", l->p->name, json_object_get(ind, "type"),
                                            json_object_get(ind, "value")));
            cr->keys[cr->n++] = l;
        }
    }
    char *text = json_dumps(keys, JSON_COMPACT);
    json_decref(keys);
    const char *params[1] = {text};
    pg_exec(en->pg,
            "SELECT k, result::text, ttl_left FROM calseta_enrich_cache_get_many($1::jsonb)", 1,
            params, on_shared_cache, cr);
    free(text);
}

/* The in-process cache first; the shared cache for the rest is read with the other jobs of
 * the claim (jobs_read_shared_cache). */
static void consult_caches(struct job *j)
{
    size_t missing = 0;
    for (size_t k = 0; k < j->nlk; k++) {
        struct lookup *l = &j->lk[k];
        json_t *ind = json_array_get(j->indicators, l->ind);
        l->result =
            cache_get(j->en->cache, l->p->name, json_string_value(json_object_get(ind, "type")),
                      json_string_value(json_object_get(ind, "value")), now_mono_ms());
        if (!l->result)
            missing++;
    }
    if (missing == 0) {
        run_lookups(j);
        return;
    }
    j->wait_next = j->en->cache_wait;
    j->en->cache_wait = j;
}

/* ---- steps 1 and 2 ---- */

static void plan(struct job *j)
{
    struct enricher *en = j->en;
    size_t n = json_array_size(j->indicators);
    j->lk = xcalloc(n * (j->ps->n ? j->ps->n : 1) + 1, sizeof *j->lk);
    for (size_t i = 0; i < n; i++) {
        json_t *ind = json_array_get(j->indicators, i);
        const char *type = json_string_value(json_object_get(ind, "type"));
        const char *value = json_string_value(json_object_get(ind, "value"));
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        json_object_set_new(ind, "key", json_string(key));
        const char *reason;
        if (!is_enrichable(type, value, &reason)) {
            json_object_set_new(j->skipped, key, json_string(reason));
            continue;
        }
        for (size_t p = 0; p < j->ps->n; p++) {
            const struct provider *pr = &j->ps->p[p];
            if (!provider_supports(pr, type) ||
                !provider_configured(pr, provider_env_get, en->cfg->settings))
                continue;
            j->lk[j->nlk].job = j;
            j->lk[j->nlk].ind = i;
            j->lk[j->nlk].p = pr;
            j->nlk++;
        }
    }
}

static json_t *valid_indicators(json_t *in)
{
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(in, i, e)
    {
        json_t *t = json_object_get(e, "type"), *v = json_object_get(e, "value");
        if (json_is_string(t) && json_is_string(v) && json_string_length(v) > 0)
            json_array_append_new(out, json_pack("{s:O,s:O,s:b}", "type", t, "value", v, "new", 0));
    }
    return out;
}

void job_start(struct enricher *en, long long job_id, long long alert_id, int attempts, json_t *doc)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->en = en;
    j->id = job_id;
    j->alert_id = alert_id;
    j->attempts = attempts;
    j->started_ms = now_mono_ms();
    j->deadline_ms = j->started_ms + (uint64_t)en->cfg->enrich_job_deadline_seconds * 1000;
    j->ps = provider_set_ref(en->providers);
    j->skipped = json_object();
    j->indicators = valid_indicators(json_object_get(doc, "indicators"));
    size_t added = extract_pass3(json_object_get(doc, "raw_payload"),
                                 json_string_value(json_object_get(doc, "source_name")),
                                 j->ps->mappings, j->ps->nmappings, j->indicators);
    j->next = en->jobs;
    if (en->jobs)
        en->jobs->prev = j;
    en->jobs = j;
    en->inflight++;
    plan(j);
    msg_info("job %lld (alert %lld, attempt %d): %zu indicators (%zu from pass 3), %zu lookups",
             job_id, alert_id, attempts, json_array_size(j->indicators), added, j->nlk);
    consult_caches(j);
}
