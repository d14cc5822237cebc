/*
 * auth.c - authentication, scopes and rate limits for every non-public route.
 *
 * One pass per request:
 *   1. parse "Authorization: Bearer cai_…" strictly;
 *   2. a key whose SHA-256 is in the verification cache skips bcrypt; otherwise the client IP's
 *      unauthenticated budget (RATE_LIMIT_UNAUTHED_PER_MINUTE) is charged first, so no bcrypt
 *      work is done for a client over its limit, then the row is looked up by prefix and the
 *      bcrypt check runs on the libuv thread pool (never on the loop);
 *   3. one round trip re-reads the key row (revocation, scope and expiry changes take effect on
 *      the very next request, whatever process made them) and counts the request in the shared
 *      fixed-window counter of its rate class;
 *   4. scope check (admin passes all), then the route runs.
 * Every failure goes through audit_auth_failure(), the one place that logs it, so all look alike.
 */
#include "intake.h"
#include "prom.h"
#include "apikey.h"
#include "audit.h"
#include "crypto.h"
#include "log.h"
#include "ratelimit.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_BUCKETS 1024
#define CACHE_MAX 20000

struct cache_entry {
    struct cache_entry *next;
    uint8_t digest[32];
    char prefix[9];
    int64_t key_id;
    uint64_t cached_ms;
};

struct auth_cache {
    struct intake *in;
    struct cache_entry *buckets[CACHE_BUCKETS];
    size_t n;
    uint64_t generation; /* bumped by every invalidation */
    struct auth_op *inflight; /* verifications running now, one per key (single flight) */
};

/* State of one authentication in progress. */
struct auth_op {
    struct reqctx *rc;
    route_fn next;
    char token[73];
    char prefix[9];
    uint8_t digest[32];
    char *hash;
    int64_t key_id;
    int verified;
    uint64_t generation;
    uv_work_t work;
    int ip_charged; /* this request already counted against the IP's unauthenticated budget */
    struct auth_cache *cache;     /* outlives rc, which a reply frees */
    int leader;                   /* on the cache's in-flight list */
    struct auth_op *inflight_next; /* next verification in flight */
    struct auth_op *waiters;       /* same key, waiting for this verification */
    struct auth_op *waiter_next;
};

static void auth_continue(struct auth_op *op);

static unsigned bucket_of(const uint8_t d[32])
{
    return ((unsigned)d[0] | (unsigned)d[1] << 8) % CACHE_BUCKETS;
}

struct auth_cache *auth_cache_new(struct intake *in)
{
    struct auth_cache *c = xcalloc(1, sizeof *c);
    c->in = in;
    return c;
}

static void cache_clear(struct auth_cache *c)
{
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        struct cache_entry *e = c->buckets[i];
        while (e) {
            struct cache_entry *nx = e->next;
            explicit_bzero(e, sizeof *e);
            free(e);
            e = nx;
        }
        c->buckets[i] = NULL;
    }
    c->n = 0;
}

void auth_cache_free(struct auth_cache *c)
{
    if (!c)
        return;
    cache_clear(c);
    free(c);
}

void auth_cache_invalidate(struct auth_cache *c, const char *prefix)
{
    c->generation++;
    if (!prefix) {
        cache_clear(c);
        return;
    }
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        struct cache_entry **pp = &c->buckets[i];
        while (*pp) {
            struct cache_entry *e = *pp;
            if (!strcmp(e->prefix, prefix)) {
                *pp = e->next;
                explicit_bzero(e, sizeof *e);
                free(e);
                c->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static struct cache_entry *cache_find(struct auth_cache *c, const uint8_t d[32])
{
    uint64_t ttl = (uint64_t)c->in->cfg.auth_cache_ttl_seconds * 1000;
    struct cache_entry **pp = &c->buckets[bucket_of(d)];
    while (*pp) {
        struct cache_entry *e = *pp;
        if (crypto_ct_equal(e->digest, 32, d, 32)) {
            if (now_mono_ms() - e->cached_ms > ttl) {
                *pp = e->next;
                explicit_bzero(e, sizeof *e);
                free(e);
                c->n--;
                return NULL;
            }
            return e;
        }
        pp = &e->next;
    }
    return NULL;
}

static void cache_put(struct auth_cache *c, const struct auth_op *op)
{
    if (c->in->cfg.auth_cache_ttl_seconds == 0 || op->generation != c->generation)
        return;
    if (c->n >= CACHE_MAX)
        cache_clear(c);
    struct cache_entry *e = xcalloc(1, sizeof *e);
    memcpy(e->digest, op->digest, 32);
    memcpy(e->prefix, op->prefix, 9);
    e->key_id = op->key_id;
    e->cached_ms = now_mono_ms();
    unsigned b = bucket_of(e->digest);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    c->n++;
}

void auth_info_destroy(struct auth_info *a)
{
    json_decref(a->scopes);
    json_decref(a->allowed_sources);
    a->scopes = NULL;
    a->allowed_sources = NULL;
}

int has_scope(const struct auth_info *a, const char *scope)
{
    size_t i;
    json_t *v;
    json_array_foreach(a->scopes, i, v)
    {
        const char *s = json_string_value(v);
        if (s && (!strcmp(s, "admin") || !strcmp(s, scope)))
            return 1;
    }
    return 0;
}

/* Ends this op's verification: the requests that waited for the same key go on (a success is
 * in the cache by now, so they skip bcrypt; after a failure each is judged on its own). */
static void leader_release(struct auth_op *op)
{
    if (!op->leader)
        return;
    op->leader = 0;
    struct auth_cache *c = op->cache;
    for (struct auth_op **pp = &c->inflight; *pp; pp = &(*pp)->inflight_next) {
        if (*pp == op) {
            *pp = op->inflight_next;
            break;
        }
    }
    struct auth_op *w = op->waiters;
    op->waiters = NULL;
    while (w) {
        struct auth_op *next = w->waiter_next;
        w->waiter_next = NULL;
        auth_continue(w);
        w = next;
    }
}

static void op_free(struct auth_op *op)
{
    leader_release(op);
    explicit_bzero(op->token, sizeof op->token);
    free(op->hash);
    free(op);
}

/* The reply of a failed authentication, kept while its charge to the IP budget is counted. */
struct failure {
    struct auth_op *op;
    int status;
    const char *code, *message, *reason, *prefix;
};

static void fail_now(struct auth_op *op, int status, const char *code, const char *message,
                     const char *reason, const char *prefix)
{
    struct reqctx *rc = op->rc;
    struct http_request *req = rc->req;
    /* A prefix that matches no key says nothing about a real key: aggregated per client like
     * a missing header, so guessing cannot flood the audit log. */
    void (*audit)(struct audit_client *, const char *, const char *, const char *, const char *,
                  const char *, const char *, const char *) =
        !op->hash && !op->key_id ? audit_auth_refusal : audit_auth_failure;
    audit(rc->in->audit, req->method, req->path, rc->client_ip, prefix, reason, NULL,
          req->request_id);
    op_free(op);
    reply_error(rc, status, code, message, NULL);
}

static void on_failure_charged(void *arg, const struct rl_decision *d, const char *err)
{
    (void)d;
    (void)err;
    struct failure *f = arg;
    fail_now(f->op, f->status, f->code, f->message, f->reason, f->prefix);
    free(f);
}

/* Replies a failed authentication. A request that ends without a valid key counts against
 * its IP's unauthenticated budget (requests with a valid key never do); the reply waits for
 * that count so the client's next request sees it. prefix is NULL or op->prefix. */
static void fail(struct auth_op *op, int status, const char *code, const char *message,
                 const char *reason, const char *prefix)
{
    if (op->ip_charged) {
        fail_now(op, status, code, message, reason, prefix);
        return;
    }
    op->ip_charged = 1;
    struct failure *f = xmalloc(sizeof *f);
    *f = (struct failure){op, status, code, message, reason, prefix};
    rl_charge_ip(op->rc->in, op->rc->client_ip, on_failure_charged, f);
}

static void reply_rate_limited(struct reqctx *rc, const struct rl_decision *d, const char *prefix)
{
    struct http_request *req = rc->req;
    audit_auth_failure(rc->in->audit, req->method, req->path, rc->client_ip, prefix,
                       "rate_limited", NULL, req->request_id);
    char msg[96];
    snprintf(msg, sizeof msg, "Rate limit exceeded. Retry after %ld seconds.", d->reset_seconds);
    rc->rl_set = 1;
    rc->rl_limit = d->limit;
    rc->rl_remaining = 0;
    rc->rl_reset = d->reset_seconds;
    reply_error(rc, 429, "RATE_LIMITED", msg,
                json_pack("{s:i}", "retry_after_seconds", (int)d->reset_seconds));
}

/* ---- step 3: re-read the key and count the request ---------------------------------------- */

static const char *rate_class_name(enum rate_class r)
{
    switch (r) {
    case RATE_DEFAULT:
        return "default";
    case RATE_INGEST:
        return "ingest";
    case RATE_ENRICHMENT:
        return "enrichment";
    case RATE_WORKFLOW_EXECUTE:
        return "workflow_execute";
    default:
        return "none";
    }
}

static long class_limit(const struct config *c, enum rate_class r)
{
    switch (r) {
    case RATE_INGEST:
        return c->rate_limit_ingest;
    case RATE_ENRICHMENT:
        return c->rate_limit_enrichment;
    case RATE_WORKFLOW_EXECUTE:
        return c->rate_limit_workflow_execute;
    default:
        return c->rate_limit_default;
    }
}

static const char *REVALIDATE_SQL =
    "WITH k AS (SELECT id, scopes, allowed_sources, expires_at, rate_limit_per_minute "
    "             FROM api_keys WHERE id = $1 AND key_prefix = $2 AND is_active), "
    "w AS (SELECT extract(epoch FROM clock_timestamp()) AS t), "
    "hit AS (INSERT INTO rate_limit_counters AS r (bucket, window_start, count) "
    "        SELECT 'k:' || k.id || ':' || $3, floor(w.t / 60)::bigint, 1 FROM k, w "
    "         WHERE $3 <> 'none' AND (k.expires_at IS NULL OR k.expires_at >= now()) "
    "        ON CONFLICT (bucket, window_start) DO UPDATE SET count = r.count + 1 "
    "        RETURNING r.count) "
    "SELECT array_to_json(k.scopes)::text, array_to_json(k.allowed_sources)::text, "
    "       (k.expires_at IS NOT NULL AND k.expires_at < now()), k.rate_limit_per_minute, "
    "       (SELECT count FROM hit), ceil(60 - (w.t - floor(w.t / 60) * 60))::int "
    "  FROM k, w";

static void on_revalidated(void *arg, PGresult *res, const char *err)
{
    struct auth_op *op = arg;
    struct reqctx *rc = op->rc;
    struct intake *in = rc->in;
    if (!res) {
        msg_warn("authentication for %s unavailable: %s", op->prefix, err);
        op_free(op);
        reply_db_unavailable(rc);
        return;
    }
    if (err) {
        msg_error("key revalidation failed: %s", err);
        op_free(op);
        reply_error(rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
        return;
    }
    if (PQntuples(res) == 0) {
        /* Revoked or deleted since it was verified. */
        auth_cache_invalidate(in->auth_cache, op->prefix);
        fail(op, 401, "UNAUTHORIZED", "Invalid API key.", "invalid_key", op->prefix);
        return;
    }
    if (!strcmp(PQgetvalue(res, 0, 2), "t")) {
        fail(op, 401, "KEY_EXPIRED", "API key has expired.", "key_expired", op->prefix);
        return;
    }
    struct auth_info *a = &rc->auth;
    a->key_id = op->key_id;
    memcpy(a->key_prefix, op->prefix, 9);
    a->scopes = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!json_is_array(a->scopes)) {
        json_decref(a->scopes);
        a->scopes = json_array();
    }
    a->allowed_sources = NULL;
    if (!PQgetisnull(res, 0, 1)) {
        json_t *as = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
        if (json_is_array(as) && json_array_size(as) > 0)
            a->allowed_sources = as;
        else
            json_decref(as);
    }
    a->rate_limit_per_minute = PQgetisnull(res, 0, 3) ? 0 : atoi(PQgetvalue(res, 0, 3));
    rc->authenticated = 1;
    used_keys_note(in->used_keys, op->key_id);

    const char *scope = rc->route->scope;
    if (strcmp(scope, "*") != 0 && !has_scope(a, scope)) {
        struct http_request *req = rc->req;
        audit_auth_failure(in->audit, req->method, req->path, rc->client_ip, op->prefix,
                           "insufficient_scope", scope, req->request_id);
        char msg[128];
        snprintf(msg, sizeof msg, "Insufficient scope. Required: %s", scope);
        op_free(op);
        reply_error(rc, 403, "FORBIDDEN", msg, json_pack("{s:[s]}", "required_scopes", scope));
        return;
    }
    if (rc->route->rate != RATE_NONE && !PQgetisnull(res, 0, 4)) {
        struct rl_decision d;
        d.limit = a->rate_limit_per_minute > 0 ? a->rate_limit_per_minute
                                               : class_limit(&in->cfg, rc->route->rate);
        d.count = atol(PQgetvalue(res, 0, 4));
        d.reset_seconds = atol(PQgetvalue(res, 0, 5));
        if (d.reset_seconds < 1)
            d.reset_seconds = 1;
        if (d.count > d.limit) {
            reply_rate_limited(rc, &d, op->prefix);
            op_free(op);
            return;
        }
        rc->rl_set = 1;
        rc->rl_limit = d.limit;
        rc->rl_remaining = d.limit - d.count;
        rc->rl_reset = d.reset_seconds;
    }
    route_fn next = op->next;
    op_free(op);
    next(rc);
}

static void revalidate(struct auth_op *op)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)op->key_id);
    const char *params[3] = {id, op->prefix, rate_class_name(op->rc->route->rate)};
    pg_exec(op->rc->in->pg, REVALIDATE_SQL, 3, params, on_revalidated, op);
}

/* ---- step 2: lookup by prefix and bcrypt on the thread pool -------------------------------- */

static void bcrypt_work(uv_work_t *w)
{
    struct auth_op *op = w->data;
    op->verified = apikey_verify(op->token, op->hash) == 1;
}

static void bcrypt_done(uv_work_t *w, int status)
{
    struct auth_op *op = w->data;
    if (status != 0 || !op->verified) {
        fail(op, 401, "UNAUTHORIZED", "Invalid API key.", "invalid_key", op->prefix);
        return;
    }
    cache_put(op->rc->in->auth_cache, op);
    leader_release(op);
    revalidate(op);
}

static void on_key_row(void *arg, PGresult *res, const char *err)
{
    struct auth_op *op = arg;
    if (!res || err) {
        msg_warn("api key lookup failed: %s", err ? err : "?");
        struct reqctx *rc = op->rc;
        op_free(op);
        reply_db_unavailable(rc);
        return;
    }
    if (PQntuples(res) == 0) {
        fail(op, 401, "UNAUTHORIZED", "Invalid API key.", "invalid_key", op->prefix);
        return;
    }
    op->key_id = atoll(PQgetvalue(res, 0, 0));
    op->hash = xstrdup(PQgetvalue(res, 0, 1));
    op->work.data = op;
    uv_queue_work(op->rc->in->loop, &op->work, bcrypt_work, bcrypt_done);
}

static void lookup_key(struct auth_op *op)
{
    const char *params[1] = {op->prefix};
    pg_exec(op->rc->in->pg,
            "SELECT id, key_hash FROM api_keys WHERE key_prefix = $1 AND is_active", 1, params,
            on_key_row, op);
}

/* ---- step 1: the unauthenticated per-IP budget ------------------------------------------- *
 * A malformed or missing header is charged at once. A well-formed key that is not in the
 * cache only looks at the budget (an IP over it gets no bcrypt work); it is charged if the key
 * then turns out not to be valid (see fail()). */

struct ip_check {
    struct auth_op *op;
    const char *reason; /* non-NULL: the request already failed with this reason */
};

static void after_ip_charge(struct auth_op *op, const char *reason, const struct rl_decision *d)
{
    if (d->count > d->limit) {
        reply_rate_limited(op->rc, d, reason && !strcmp(reason, "missing_header") ? NULL
                                      : op->prefix[0]                          ? op->prefix
                                                                               : NULL);
        op_free(op);
        return;
    }
    if (!reason) {
        lookup_key(op);
        return;
    }
    if (!strcmp(reason, "missing_header"))
        fail(op, 401, "UNAUTHORIZED",
             "Missing or invalid Authorization header. Expected: Bearer cai_...", reason, NULL);
    else
        fail(op, 401, "UNAUTHORIZED", "Invalid API key format.", reason, NULL);
}

static void on_ip_charged(void *arg, const struct rl_decision *d, const char *err)
{
    struct ip_check *ic = arg;
    struct auth_op *op = ic->op;
    const char *reason = ic->reason;
    free(ic);
    if (err && !reason) {
        /* No shared limiter and no database: the key cannot be checked either. */
        struct reqctx *rc = op->rc;
        op_free(op);
        reply_db_unavailable(rc);
        return;
    }
    after_ip_charge(op, reason, d);
}

void auth_request(struct reqctx *rc, route_fn next)
{
    struct intake *in = rc->in;
    struct auth_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->next = next;
    op->cache = in->auth_cache;
    op->generation = in->auth_cache->generation;

    size_t hlen = 0;
    const char *h = http_header_get(rc->req, "authorization", &hlen);
    enum apikey_parse pr = apikey_parse_bearer(h, h ? hlen : 0, op->token, op->prefix);
    struct ip_check *ic = xcalloc(1, sizeof *ic);
    ic->op = op;
    if (pr != APIKEY_OK) {
        op->prefix[0] = 0;
        op->ip_charged = 1;
        ic->reason = pr == APIKEY_MISSING ? "missing_header" : "invalid_format";
        rl_charge_ip(in, rc->client_ip, on_ip_charged, ic);
        return;
    }
    crypto_sha256(op->token, strlen(op->token), op->digest);
    free(ic);
    auth_continue(op);
}

/* A well-formed key: the cache, else join a verification of the same key already running,
 * else charge the IP's unauthenticated budget and verify. */
static void auth_continue(struct auth_op *op)
{
    struct auth_cache *c = op->rc->in->auth_cache;
    op->generation = c->generation;
    struct cache_entry *e = cache_find(c, op->digest);
    prom_auth_cache(op->rc->in, e != NULL);
    if (e) {
        op->key_id = e->key_id;
        revalidate(op);
        return;
    }
    for (struct auth_op *l = c->inflight; l; l = l->inflight_next) {
        if (crypto_ct_equal(l->digest, 32, op->digest, 32)) {
            op->waiter_next = l->waiters;
            l->waiters = op;
            return;
        }
    }
    op->leader = 1;
    op->inflight_next = c->inflight;
    c->inflight = op;
    struct ip_check *ic = xcalloc(1, sizeof *ic);
    ic->op = op;
    rl_peek_ip(op->rc->in, op->rc->client_ip, on_ip_charged, ic);
}

/* ---- last_used_at, written in batches ------------------------------------------------------ */

struct used_keys {
    int64_t *ids;
    size_t n, cap;
};

struct used_keys *used_keys_new(void)
{
    return xcalloc(1, sizeof(struct used_keys));
}

void used_keys_note(struct used_keys *u, int64_t key_id)
{
    for (size_t i = 0; i < u->n; i++)
        if (u->ids[i] == key_id)
            return;
    if (u->n == u->cap) {
        u->cap = u->cap ? u->cap * 2 : 16;
        u->ids = xrealloc(u->ids, u->cap * sizeof *u->ids);
    }
    u->ids[u->n++] = key_id;
}

struct flush_op {
    struct intake *in;
    void (*done)(struct intake *in);
};

static void on_used_flushed(void *arg, PGresult *res, const char *err)
{
    struct flush_op *f = arg;
    (void)res;
    if (err)
        msg_warn("last_used_at update failed: %s", err);
    if (f->done)
        f->done(f->in);
    free(f);
}

void used_keys_flush(struct intake *in, void (*done)(struct intake *in))
{
    struct used_keys *u = in->used_keys;
    if (u->n == 0) {
        if (done)
            done(in);
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (size_t i = 0; i < u->n; i++)
        buf_printf(&b, "%s%lld", i ? "," : "", (long long)u->ids[i]);
    buf_puts(&b, "}");
    struct flush_op *f = xmalloc(sizeof *f);
    *f = (struct flush_op){in, done};
    const char *params[1] = {b.data};
    pg_exec(in->pg, "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::bigint[])", 1,
            params, on_used_flushed, f);
    buf_destroy(&b);
    u->n = 0;
}

void used_keys_free(struct used_keys *u)
{
    if (!u)
        return;
    free(u->ids);
    free(u);
}
