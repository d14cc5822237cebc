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

/* One table for the current local window; everything is dropped when the minute turns. */
static struct {
    long window;
    struct local_counter *buckets[LOCAL_BUCKETS];
    int outage_audited;
} local; /* process-wide by nature: the fallback for this process */

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void local_reset(long window)
{
    for (size_t i = 0; i < LOCAL_BUCKETS; i++) {
        struct local_counter *c = local.buckets[i];
        while (c) {
            struct local_counter *nx = c->next;
            free(c->key);
            free(c);
            c = nx;
        }
        local.buckets[i] = NULL;
    }
    local.window = window;
}

int rl_local_hit(struct intake *in, const char *who, const char *cls, long limit,
                 struct rl_decision *d)
{
    time_t now = time(NULL);
    long window = (long)(now / 60);
    if (window != local.window)
        local_reset(window);
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
    d.count = atol(PQgetvalue(res, 0, 0));
    d.reset_seconds = atol(PQgetvalue(res, 0, 1));
    if (d.reset_seconds < 1)
        d.reset_seconds = 1;
    op->cb(op->arg, &d, NULL);
    free(op);
}

void rl_charge_ip(struct intake *in, const char *ip,
                  void (*cb)(void *arg, const struct rl_decision *d, const char *err), void *arg)
{
    struct ip_op *op = xcalloc(1, sizeof *op);
    op->in = in;
    snprintf(op->ip, sizeof op->ip, "%s", ip);
    op->cb = cb;
    op->arg = arg;
    const char *params[1] = {ip};
    pg_exec(in->pg,
            "WITH w AS (SELECT extract(epoch FROM clock_timestamp()) AS t) "
            "INSERT INTO rate_limit_counters AS r (bucket, window_start, count) "
            "SELECT 'ip:' || $1, floor(w.t / 60)::bigint, 1 FROM w "
            "ON CONFLICT (bucket, window_start) DO UPDATE SET count = r.count + 1 "
            "RETURNING r.count, (SELECT ceil(60 - (w.t - floor(w.t / 60) * 60))::int FROM w)",
            1, params, on_ip_counted, op);
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
