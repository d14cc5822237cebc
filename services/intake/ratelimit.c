/*
 * ratelimit.c - the shared per-IP counter and the in-process fallback limiter.
 */
#include "ratelimit.h"
#include "audit.h"
#include "intake.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOCAL_BUCKETS 2048

struct local_counter {
    struct local_counter *next;
    char *key;
    long count;
};

/* One table for the current local window; everything is dropped when the minute turns. The
 * same table remembers which IPs went over their unauthenticated budget this minute, so their
 * further requests are refused from memory without a database write each (a flood of bad
 * keys cannot queue up the pool). */
static struct {
    long window;
    struct local_counter *buckets[LOCAL_BUCKETS];
    struct local_counter *over[LOCAL_BUCKETS]; /* count = the limit that was exceeded */
    int outage_audited;
} local; /* process-wide by nature: the fallback for this process */

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

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

static void local_reset(long window)
{
    for (size_t i = 0; i < LOCAL_BUCKETS; i++) {
        free_chain(&local.buckets[i]);
        free_chain(&local.over[i]);
    }
    local.window = window;
}

static void local_roll(void)
{
    long window = (long)(time(NULL) / 60);
    if (window != local.window)
        local_reset(window);
}

static void over_mark(const char *ip)
{
    local_roll();
    unsigned b = hash_str(ip) % LOCAL_BUCKETS;
    for (struct local_counter *c = local.over[b]; c; c = c->next)
        if (!strcmp(c->key, ip))
            return;
    struct local_counter *c = xcalloc(1, sizeof *c);
    c->key = xstrdup(ip);
    c->next = local.over[b];
    local.over[b] = c;
}

/* 1 (and the decision) when ip already went over its budget in this minute. */
static int over_known(struct intake *in, const char *ip, struct rl_decision *d)
{
    local_roll();
    unsigned b = hash_str(ip) % LOCAL_BUCKETS;
    for (struct local_counter *c = local.over[b]; c; c = c->next) {
        if (!strcmp(c->key, ip)) {
            d->limit = in->cfg.rate_limit_unauthed;
            d->count = d->limit + 1;
            d->reset_seconds = 60 - (long)(time(NULL) % 60);
            return 1;
        }
    }
    return 0;
}

int rl_local_hit(struct intake *in, const char *who, const char *cls, long limit,
                 struct rl_decision *d)
{
    time_t now = time(NULL);
    local_roll();
    if (!local.outage_audited) {
        local.outage_audited = 1;
        msg_warn("shared rate limiter unreachable: falling back to per-process limits");
        audit_emit(in->audit, "rate_limiter_fallback", NULL, NULL, NULL,
                   json_pack("{s:s}", "reason", "database unreachable"));
    }
    char *key = xasprintf("%s|%s", who, cls);
    unsigned b = hash_str(key) % LOCAL_BUCKETS;
    struct local_counter *c = local.buckets[b];
    while (c && strcmp(c->key, key))
        c = c->next;
    if (!c) {
        c = xcalloc(1, sizeof *c);
        c->key = key;
        c->next = local.buckets[b];
        local.buckets[b] = c;
    } else {
        free(key);
    }
    c->count++;
    d->limit = limit;
    d->count = c->count;
    d->reset_seconds = 60 - (long)(now % 60);
    return c->count > limit ? -1 : 0;
}

struct ip_op {
    struct intake *in;
    int peek;
    char ip[64];
    void (*cb)(void *arg, const struct rl_decision *d, const char *err);
    void *arg;
};

static void on_ip_counted(void *arg, PGresult *res, const char *err)
{
    struct ip_op *op = arg;
    struct rl_decision d = {.limit = op->in->cfg.rate_limit_unauthed};
    if (!res || err || PQntuples(res) != 1) {
        rl_local_hit(op->in, op->ip, "unauthed", d.limit, &d);
        op->cb(op->arg, &d, err ? err : "no result");
        free(op);
        return;
    }
    local.outage_audited = 0;
    d.count = atol(PQgetvalue(res, 0, 0)) + (op->peek ? 1 : 0);
    d.reset_seconds = atol(PQgetvalue(res, 0, 1));
    if (d.reset_seconds < 1)
        d.reset_seconds = 1;
    if (d.count > d.limit)
        over_mark(op->ip);
    op->cb(op->arg, &d, NULL);
    free(op);
}

static void count_ip(struct intake *in, const char *ip, int peek,
                     void (*cb)(void *arg, const struct rl_decision *d, const char *err),
                     void *arg)
{
    struct rl_decision known;
    if (over_known(in, ip, &known)) {
        cb(arg, &known, NULL);
        return;
    }
    struct ip_op *op = xcalloc(1, sizeof *op);
    op->in = in;
    op->peek = peek;
    snprintf(op->ip, sizeof op->ip, "%s", ip);
    op->cb = cb;
    op->arg = arg;
    const char *params[1] = {ip};
    if (peek)
        pg_exec(in->pg,
                "WITH w AS (SELECT extract(epoch FROM clock_timestamp()) AS t) "
                "SELECT coalesce((SELECT r.count FROM rate_limit_counters r, w "
                "  WHERE r.bucket = 'ip:' || $1 AND r.window_start = floor(w.t / 60)::bigint), 0), "
                "ceil(60 - (w.t - floor(w.t / 60) * 60))::int FROM w",
                1, params, on_ip_counted, op);
    else
        pg_exec(in->pg,
                "WITH w AS (SELECT extract(epoch FROM clock_timestamp()) AS t) "
                "INSERT INTO rate_limit_counters AS r (bucket, window_start, count) "
                "SELECT 'ip:' || $1, floor(w.t / 60)::bigint, 1 FROM w "
                "ON CONFLICT (bucket, window_start) DO UPDATE SET count = r.count + 1 "
                "RETURNING r.count, (SELECT ceil(60 - (w.t - floor(w.t / 60) * 60))::int FROM w)",
                1, params, on_ip_counted, op);
}

void rl_charge_ip(struct intake *in, const char *ip,
                  void (*cb)(void *arg, const struct rl_decision *d, const char *err), void *arg)
{
    count_ip(in, ip, 0, cb, arg);
}

void rl_peek_ip(struct intake *in, const char *ip,
                void (*cb)(void *arg, const struct rl_decision *d, const char *err), void *arg)
{
    count_ip(in, ip, 1, cb, arg);
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
