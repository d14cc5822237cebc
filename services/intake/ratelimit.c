/*
 * ratelimit.c - leased fixed windows (see ratelimit.h), the per-IP unauthenticated budget and the
 * in-process fallback limiter.
 *
 * Per bucket and window: `left` requests leased and not used yet, `total` the window's granted
 * count across all processes as of our last lease (so X-RateLimit-Remaining = limit - total +
 * left is what this process can tell). Requests that find no lease wait on the bucket while one
 * lease query runs; a refused lease marks the bucket exhausted, and refusals then come from
 * memory, asking the database again at most once a second (another process may give back).
 */
#include "ratelimit.h"
#include "audit.h"
#include "intake.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUCKETS 4096
#define LOCAL_BUCKETS 2048
#define BLOCK_MAX 10000
#define IDLE_GIVE_BACK_MS 1000
#define EXHAUSTED_RETRY_MS 1000
#define TICK_MS 500

struct rl_wait {
    struct rl_wait *next;
    rl_cb cb;
    void *arg;
};

struct bucket {
    struct bucket *next;
    char *name;
    long window;
    long limit;
    long left;  /* leased to this process, not used yet */
    long total; /* granted in this window across processes, as of our last lease */
    int leasing;
    int keep; /* never given back: the unauthenticated budget, where refusing early harms no one */
    uint64_t exhausted_until_ms; /* the pool said no: refuse from memory until then */
    uint64_t last_use_ms;
    struct rl_wait *head, **tail;
};

struct local_counter {
    struct local_counter *next;
    char *key;
    long count;
};

struct ratelimit {
    struct intake *in;
    struct bucket *buckets[BUCKETS];
    /* Fallback counters and the IPs known over budget, for the current local window. */
    long local_window;
    struct local_counter *local[LOCAL_BUCKETS];
    struct local_counter *over[LOCAL_BUCKETS];
    int outage_audited;
    uv_timer_t tick;
    int stopped;
};

struct lease_op {
    struct ratelimit *rl;
    struct bucket *b;
    long window;
    long want;
};

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static long window_now(void)
{
    return (long)(time(NULL) / 60);
}

static long seconds_left(void)
{
    return 60 - (long)(time(NULL) % 60);
}

static long block_of(long limit)
{
    long b = limit / 100;
    return b < 1 ? 1 : b > BLOCK_MAX ? BLOCK_MAX : b;
}

/* ---- the local window: fallback counters and over-budget IPs ------------------------------ */

static void free_chain(struct local_counter **head)
{
    struct local_counter *c = *head;
    while (c) {
        struct local_counter *nx = c->next;
        free(c->key);
        free(c);
        c = nx;
    }
    *head = NULL;
}

static void local_roll(struct ratelimit *rl)
{
    long w = window_now();
    if (w == rl->local_window)
        return;
    for (size_t i = 0; i < LOCAL_BUCKETS; i++) {
        free_chain(&rl->local[i]);
        free_chain(&rl->over[i]);
    }
    rl->local_window = w;
}

static struct local_counter *local_find(struct local_counter **table, const char *key, int add)
{
    unsigned h = hash_str(key) % LOCAL_BUCKETS;
    for (struct local_counter *c = table[h]; c; c = c->next)
        if (!strcmp(c->key, key))
            return c;
    if (!add)
        return NULL;
    struct local_counter *c = xcalloc(1, sizeof *c);
    c->key = xstrdup(key);
    c->next = table[h];
    table[h] = c;
    return c;
}

int rl_local_hit(struct intake *in, const char *who, const char *cls, long limit,
                 struct rl_decision *d)
{
    struct ratelimit *rl = in->rl;
    local_roll(rl);
    if (!rl->outage_audited) {
        rl->outage_audited = 1;
        msg_warn("shared rate limiter unreachable: falling back to per-process limits");
        audit_emit(in->audit, "rate_limiter_fallback", NULL, NULL, NULL,
                   json_pack("{s:s}", "reason", "database unreachable"));
    }
    char *key = xasprintf("%s|%s", who, cls);
    struct local_counter *c = local_find(rl->local, key, 1);
    free(key);
    c->count++;
    d->limit = limit;
    d->count = c->count;
    d->remaining = limit - c->count > 0 ? limit - c->count : 0;
    d->reset_seconds = seconds_left();
    return c->count > limit ? -1 : 0;
}

int rl_ip_over(struct intake *in, const char *ip)
{
    local_roll(in->rl);
    return local_find(in->rl->over, ip, 0) != NULL;
}

/* ---- buckets ------------------------------------------------------------------------------ */

static struct bucket *bucket_get(struct ratelimit *rl, const char *name)
{
    unsigned h = hash_str(name) % BUCKETS;
    for (struct bucket *b = rl->buckets[h]; b; b = b->next)
        if (!strcmp(b->name, name))
            return b;
    struct bucket *b = xcalloc(1, sizeof *b);
    b->name = xstrdup(name);
    b->window = window_now();
    b->tail = &b->head;
    b->next = rl->buckets[h];
    rl->buckets[h] = b;
    return b;
}

static void bucket_roll(struct bucket *b)
{
    long w = window_now();
    if (b->window == w)
        return;
    b->window = w; /* what was leased for an ended window is simply gone */
    b->left = 0;
    b->total = 0;
    b->exhausted_until_ms = 0;
}

static void decide(const struct bucket *b, int ok, struct rl_decision *d)
{
    d->limit = b->limit;
    d->reset_seconds = seconds_left();
    if (ok) {
        d->remaining = b->limit - b->total + b->left;
        if (d->remaining < 0)
            d->remaining = 0;
        if (d->remaining > b->limit)
            d->remaining = b->limit;
        d->count = b->limit - d->remaining;
    } else {
        d->remaining = 0;
        d->count = b->limit + 1;
    }
}

static void lease(struct ratelimit *rl, struct bucket *b, long want);

static void enqueue(struct bucket *b, rl_cb cb, void *arg)
{
    struct rl_wait *w = xcalloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    *b->tail = w;
    b->tail = &w->next;
}

static struct rl_wait *dequeue(struct bucket *b)
{
    struct rl_wait *w = b->head;
    if (w) {
        b->head = w->next;
        if (!b->head)
            b->tail = &b->head;
    }
    return w;
}

static long waiting(const struct bucket *b)
{
    long n = 0;
    for (const struct rl_wait *w = b->head; w; w = w->next)
        n++;
    return n;
}

/* Serves the waiting requests from what is leased; asks for more or refuses the rest. */
static void serve(struct ratelimit *rl, struct bucket *b)
{
    while (b->head && b->left > 0) {
        struct rl_wait *w = dequeue(b);
        b->left--;
        struct rl_decision d;
        decide(b, 1, &d);
        w->cb(w->arg, &d, NULL);
        free(w);
    }
    if (!b->head || b->leasing)
        return;
    if (b->exhausted_until_ms > now_mono_ms()) {
        struct rl_wait *w;
        while ((w = dequeue(b))) {
            struct rl_decision d;
            decide(b, 0, &d);
            w->cb(w->arg, &d, NULL);
            free(w);
        }
        return;
    }
    long want = waiting(b);
    if (want < block_of(b->limit))
        want = block_of(b->limit);
    lease(rl, b, want);
}

static void on_leased(void *arg, PGresult *res, const char *err)
{
    struct lease_op *op = arg;
    struct ratelimit *rl = op->rl;
    struct bucket *b = op->b;
    b->leasing = 0;
    if (!res || err || PQntuples(res) != 1) {
        /* No shared counter: this process decides alone until the database is back. */
        struct rl_wait *w;
        while ((w = dequeue(b))) {
            struct rl_decision d;
            rl_local_hit(rl->in, b->name, "", b->limit, &d);
            w->cb(w->arg, &d, err ? err : "no result");
            free(w);
        }
        free(op);
        return;
    }
    rl->outage_audited = 0;
    bucket_roll(b);
    if (op->window == b->window) {
        long got = atol(PQgetvalue(res, 0, 0));
        b->total = atol(PQgetvalue(res, 0, 1));
        b->left += got;
        if (got < op->want)
            b->exhausted_until_ms = now_mono_ms() + EXHAUSTED_RETRY_MS;
    }
    free(op);
    serve(rl, b);
}

static void lease(struct ratelimit *rl, struct bucket *b, long want)
{
    if (want > b->limit)
        want = b->limit;
    struct lease_op *op = xmalloc(sizeof *op);
    *op = (struct lease_op){rl, b, b->window, want};
    char window[24], wants[24], limit[24];
    snprintf(window, sizeof window, "%ld", b->window);
    snprintf(wants, sizeof wants, "%ld", want);
    snprintf(limit, sizeof limit, "%ld", b->limit);
    const char *params[4] = {b->name, window, wants, limit};
    b->leasing = 1;
    pg_exec(rl->in->pg, "SELECT granted, total FROM calseta_rl_lease($1, $2, $3, $4)", 4, params,
            on_leased, op);
}

static void take(struct intake *in, const char *name, long limit, int keep, rl_cb cb, void *arg)
{
    struct ratelimit *rl = in->rl;
    struct bucket *b = bucket_get(rl, name);
    b->keep = keep;
    bucket_roll(b);
    if (limit != b->limit) {
        b->limit = limit; /* a changed limit is worth asking the pool again */
        b->exhausted_until_ms = 0;
    }
    b->last_use_ms = now_mono_ms();
    struct rl_decision d;
    if (!b->head && b->left > 0) {
        b->left--;
        decide(b, 1, &d);
        long block = block_of(limit);
        /* Lease the next block before this one runs out, off the request path. */
        if (block >= 4 && b->left <= block / 4 && !b->leasing &&
            b->exhausted_until_ms <= b->last_use_ms)
            lease(rl, b, block);
        cb(arg, &d, NULL);
        return;
    }
    if (!b->head && !b->leasing && b->exhausted_until_ms > b->last_use_ms) {
        decide(b, 0, &d);
        cb(arg, &d, NULL);
        return;
    }
    enqueue(b, cb, arg);
    serve(rl, b);
}

void rl_take(struct intake *in, const char *name, long limit, rl_cb cb, void *arg)
{
    take(in, name, limit, 0, cb, arg);
}

/* ---- the per-IP unauthenticated budget ---------------------------------------------------- */

struct ip_op {
    struct ratelimit *rl;
    rl_cb cb;
    void *arg;
    char ip[64];
};

static void on_ip_taken(void *arg, const struct rl_decision *d, const char *err)
{
    struct ip_op *op = arg;
    if (d->count > d->limit) {
        local_roll(op->rl);
        local_find(op->rl->over, op->ip, 1);
    }
    op->cb(op->arg, d, err);
    free(op);
}

void rl_charge_ip(struct intake *in, const char *ip, rl_cb cb, void *arg)
{
    if (rl_ip_over(in, ip)) {
        struct rl_decision d = {.limit = in->cfg.rate_limit_unauthed};
        d.count = d.limit + 1;
        d.reset_seconds = seconds_left();
        cb(arg, &d, NULL);
        return;
    }
    struct ip_op *op = xcalloc(1, sizeof *op);
    op->rl = in->rl;
    op->cb = cb;
    op->arg = arg;
    snprintf(op->ip, sizeof op->ip, "%s", ip);
    char name[80];
    snprintf(name, sizeof name, "ip:%s", ip);
    take(in, name, in->cfg.rate_limit_unauthed, 1, on_ip_taken, op);
}

/* ---- give-backs and clean-up -------------------------------------------------------------- */

static void on_given_back(void *arg, PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    if (err)
        msg_debug("rate limit give-back: %s", err);
}

static void give_back(struct ratelimit *rl, struct bucket *b)
{
    char window[24], n[24];
    snprintf(window, sizeof window, "%ld", b->window);
    snprintf(n, sizeof n, "%ld", b->left);
    const char *params[3] = {b->name, window, n};
    pg_exec(rl->in->pg, "SELECT calseta_rl_give_back($1, $2, $3)", 3, params, on_given_back,
            NULL);
    b->total -= b->left;
    b->left = 0;
}

static void bucket_free(struct bucket *b)
{
    free(b->name);
    free(b);
}

/* Gives back idle leases (all of them when stopping) and forgets idle buckets of ended
 * windows. */
static void sweep(struct ratelimit *rl, int all)
{
    uint64_t now = now_mono_ms();
    long w = window_now();
    for (size_t i = 0; i < BUCKETS; i++) {
        struct bucket **pp = &rl->buckets[i];
        while (*pp) {
            struct bucket *b = *pp;
            int busy = b->leasing || b->head;
            if (!busy && b->window != w) {
                *pp = b->next;
                bucket_free(b);
                continue;
            }
            if (!busy && b->left > 0 && !b->keep &&
                (all || now - b->last_use_ms >= IDLE_GIVE_BACK_MS))
                give_back(rl, b);
            pp = &b->next;
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    sweep(t->data, 0);
}

struct ratelimit *rl_new(struct intake *in)
{
    struct ratelimit *rl = xcalloc(1, sizeof *rl);
    rl->in = in;
    rl->local_window = window_now();
    uv_timer_init(in->loop, &rl->tick);
    rl->tick.data = rl;
    uv_timer_start(&rl->tick, on_tick, TICK_MS, TICK_MS);
    return rl;
}

void rl_stop(struct ratelimit *rl)
{
    if (rl->stopped)
        return;
    rl->stopped = 1;
    sweep(rl, 1);
    uv_timer_stop(&rl->tick);
    uv_close((uv_handle_t *)&rl->tick, NULL);
}

void rl_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < BUCKETS; i++) {
        struct bucket *b = rl->buckets[i];
        while (b) {
            struct bucket *nx = b->next;
            struct rl_wait *w;
            while ((w = dequeue(b)))
                free(w);
            bucket_free(b);
            b = nx;
        }
    }
    for (size_t i = 0; i < LOCAL_BUCKETS; i++) {
        free_chain(&rl->local[i]);
        free_chain(&rl->over[i]);
    }
    free(rl);
}

static void on_cleanup(void *arg, PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    if (err)
        msg_debug("rate counter cleanup: %s", err);
}

void rl_cleanup(struct intake *in)
{
    pg_exec(in->pg,
            "DELETE FROM rate_limit_counters "
            "WHERE window_start < floor(extract(epoch FROM now()) / 60)::bigint - 1",
            0, NULL, on_cleanup, NULL);
}
