/*
 * auth.c - authentication, scopes and rate limits for every non-public route, from memory.
 *
 * One pass per request:
 *   1. parse "Authorization: Bearer cai_…" strictly (a malformed header is charged to the
 *      client IP's unauthenticated budget and refused);
 *   2. the key's row comes from the in-process key cache (keycache.c: kept current by
 *      notifications, so revocation, scope and expiry changes apply within milliseconds); an
 *      unknown prefix is remembered as unknown, so its 401 costs no database work;
 *   3. a token whose SHA-256 already passed bcrypt against the row's hash skips bcrypt;
 *      otherwise bcrypt runs on the libuv thread pool, once per token at a time (single flight);
 *   4. expiry against the cached expires_at, scope (admin passes all), then the per-key window
 *      counted from a lease (ratelimit.c), then the route runs.
 * Only requests that end without a valid key are charged to the IP's unauthenticated budget, so a
 * valid key is never refused for its IP's junk: an IP over its budget still gets a bcrypt check
 * for a key whose prefix exists (at most OVER_BUDGET_BCRYPTS at a time per process; beyond that it
 * is refused with 429), and requests with an unknown prefix from it are refused from memory.
 * Every failure goes through audit_auth_failure(), the one place that logs it.
 *
 * Contract for the HTTP layer: auth_request(rc, next) may be called as soon as the request's
 * headers are complete (it never reads the body); it ends with next(rc) or with a reply.
 */
#include "intake.h"
#include "prom.h"
#include "apikey.h"
#include "audit.h"
#include "crypto.h"
#include "keycache.h"
#include "log.h"
#include "ratelimit.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define OVER_BUDGET_BCRYPTS 2
/* The audit event of a failure: auth_failure, or the front end's own (mcp_auth_failure). */
#define AUTH_EVENT(rc) ((rc)->audit_event ? (rc)->audit_event : "auth_failure")

/* State of one authentication in progress. */
struct auth_op {
    struct reqctx *rc;
    route_fn next;
    char token[73];
    char prefix[9];
    uint8_t digest[32];
    char *hash;          /* the hash the token passed bcrypt against (verified) */
    int verified;
    int over_budget;     /* holds one of the over-budget bcrypt slots */
    int unknown_prefix;  /* no active key has this prefix */
    struct key_rec *key; /* held while bcrypt runs */
    uv_work_t work;
    struct auth_op *inflight_next; /* next verification in flight for the same key */
    struct auth_op *waiters;       /* same token, waiting for this verification */
    struct auth_op *waiter_next;
};

static void auth_continue(struct auth_op *op);

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

static void op_free(struct auth_op *op)
{
    explicit_bzero(op->token, sizeof op->token);
    free(op->hash);
    free(op);
}

/* ---- failures ------------------------------------------------------------------------------ */

/* The reply of a failed authentication, kept while its charge to the IP budget is counted. */
struct failure {
    struct auth_op *op;
    int status;
    const char *code, *message, *reason, *prefix;
};

static void reply_rate_limited(struct reqctx *rc, const struct rl_decision *d, const char *prefix)
{
    struct http_request *req = rc->req;
    audit_auth_failure_as(rc->in->audit, AUTH_EVENT(rc), req->method, req->path, rc->client_ip,
                          prefix, "rate_limited", NULL, req->request_id);
    char msg[96];
    snprintf(msg, sizeof msg, "Rate limit exceeded. Retry after %ld seconds.", d->reset_seconds);
    rc->rl_set = 1;
    rc->rl_limit = d->limit;
    rc->rl_remaining = 0;
    rc->rl_reset = d->reset_seconds;
    reply_error(rc, 429, "RATE_LIMITED", msg,
                json_pack("{s:i}", "retry_after_seconds", (int)d->reset_seconds));
}

static void on_failure_charged(void *arg, const struct rl_decision *d, const char *err)
{
    (void)err;
    struct failure *f = arg;
    struct auth_op *op = f->op;
    struct reqctx *rc = op->rc;
    struct http_request *req = rc->req;
    if (d->count > d->limit) {
        reply_rate_limited(rc, d, f->prefix);
    } else {
        /* A prefix that matches no key says nothing about a real key: aggregated per client like
         * a missing header, so guessing cannot flood the audit log. */
        (op->unknown_prefix ? audit_auth_refusal_as : audit_auth_failure_as)(
            rc->in->audit, AUTH_EVENT(rc), req->method, req->path, rc->client_ip, f->prefix,
            f->reason, NULL, req->request_id);
        reply_error(rc, f->status, f->code, f->message, NULL);
    }
    free(f);
    op_free(op);
}

/* Replies a failed authentication after charging it to the IP's unauthenticated budget: 429 when
 * that budget is spent, otherwise the failure itself. prefix is NULL or op->prefix. */
static void fail(struct auth_op *op, int status, const char *code, const char *message,
                 const char *reason, const char *prefix)
{
    struct failure *f = xmalloc(sizeof *f);
    *f = (struct failure){op, status, code, message, reason, prefix};
    rl_charge_ip(op->rc->in, op->rc->client_ip, on_failure_charged, f);
}

static void fail_unavailable(struct auth_op *op, const char *err)
{
    struct reqctx *rc = op->rc;
    msg_warn("authentication for %s unavailable: %s", op->prefix, err);
    op_free(op);
    reply_db_unavailable(rc);
}

/* ---- step 4: expiry, scope, per-key limit ------------------------------------------------- */

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
    case RATE_MCP:
        return "mcp";
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
    case RATE_MCP:
        return c->rate_limit_mcp;
    default:
        return c->rate_limit_default;
    }
}

static void on_key_counted(void *arg, const struct rl_decision *d, const char *err)
{
    (void)err; /* an outage decides from the local fallback counter */
    struct auth_op *op = arg;
    struct reqctx *rc = op->rc;
    if (d->count > d->limit) {
        reply_rate_limited(rc, d, op->prefix);
        op_free(op);
        return;
    }
    rc->rl_set = 1;
    rc->rl_limit = d->limit;
    rc->rl_remaining = d->remaining;
    rc->rl_reset = d->reset_seconds;
    route_fn next = op->next;
    op_free(op);
    next(rc);
}

static void authorize(struct auth_op *op, const struct key_rec *k)
{
    struct reqctx *rc = op->rc;
    struct intake *in = rc->in;
    if (k->expires_ms && now_wall_us() / 1000 > k->expires_ms) {
        fail(op, 401, "KEY_EXPIRED", "API key has expired.", "key_expired", op->prefix);
        return;
    }
    struct auth_info *a = &rc->auth;
    a->key_id = k->id;
    memcpy(a->key_prefix, op->prefix, 9);
    a->scopes = json_incref(k->scopes);
    a->allowed_sources = json_incref(k->allowed_sources);
    a->rate_limit_per_minute = k->rate_limit;
    rc->authenticated = 1;
    used_keys_note(in->used_keys, k->id);

    const char *scope = rc->route->scope;
    if (strcmp(scope, "*") != 0 && !has_scope(a, scope)) {
        struct http_request *req = rc->req;
        /* Aggregated per key and route: a client repeating a request its key may not make
         * writes one event per window, not one per request. */
        audit_key_refusal_as(in->audit, AUTH_EVENT(rc), req->method, rc->route->pattern,
                             req->path, rc->client_ip, op->prefix, "insufficient_scope", scope,
                             req->request_id);
        char msg[128];
        snprintf(msg, sizeof msg, "Insufficient scope. Required: %s", scope);
        op_free(op);
        reply_error(rc, 403, "FORBIDDEN", msg, json_pack("{s:[s]}", "required_scopes", scope));
        return;
    }
    if (rc->route->rate == RATE_NONE) {
        route_fn next = op->next;
        op_free(op);
        next(rc);
        return;
    }
    /* "k:<id>:<class>", written without printf: one per authenticated request */
    char bucket[64];
    const char *cls = rate_class_name(rc->route->rate);
    size_t n = 2, clen = strlen(cls);
    memcpy(bucket, "k:", 2);
    n += fmt_ll(bucket + n, (long long)k->id);
    bucket[n++] = ':';
    if (clen > sizeof bucket - n - 1)
        clen = sizeof bucket - n - 1;
    memcpy(bucket + n, cls, clen);
    bucket[n + clen] = '\0';
    long limit = k->rate_limit > 0 ? k->rate_limit : class_limit(&in->cfg, rc->route->rate);
    rl_take(in, bucket, limit, on_key_counted, op);
}

/* ---- step 3: bcrypt on the thread pool, one verification per token at a time -------------- */

static void bcrypt_work(uv_work_t *w)
{
    struct auth_op *op = w->data;
    op->verified = apikey_verify(op->token, op->hash) == 1;
}

static void bcrypt_done(uv_work_t *w, int status)
{
    struct auth_op *op = w->data;
    struct intake *in = op->rc->in;
    struct key_rec *k = op->key;
    op->key = NULL;
    if (op->over_budget)
        in->auth_bcrypts_over_budget--;
    op->over_budget = 0;
    for (struct auth_op **pp = (struct auth_op **)&k->verifying; *pp; pp = &(*pp)->inflight_next)
        if (*pp == op) {
            *pp = op->inflight_next;
            break;
        }
    int ok = status == 0 && op->verified;
    if (ok)
        keycache_add_verified(in->auth_cache, k, op->digest, op->hash);
    /* The waiters carry the same token: the same answer holds for them. */
    struct auth_op *wt = op->waiters;
    op->waiters = NULL;
    while (wt) {
        struct auth_op *nx = wt->waiter_next;
        if (ok) {
            wt->verified = 1;
            wt->hash = xstrdup(op->hash);
            auth_continue(wt);
        } else {
            fail(wt, 401, "UNAUTHORIZED", "Invalid API key.", "invalid_key", wt->prefix);
        }
        wt = nx;
    }
    keycache_release(in->auth_cache, k);
    if (!ok) {
        fail(op, 401, "UNAUTHORIZED", "Invalid API key.", "invalid_key", op->prefix);
        return;
    }
    auth_continue(op); /* the row may have changed while bcrypt ran */
}

static void verify(struct auth_op *op, struct key_rec *k)
{
    struct reqctx *rc = op->rc;
    struct intake *in = rc->in;
    for (struct auth_op *l = k->verifying; l; l = l->inflight_next)
        if (crypto_ct_equal(l->digest, 32, op->digest, 32)) {
            op->waiter_next = l->waiters;
            l->waiters = op;
            return;
        }
    if (rl_ip_over(in, rc->client_ip)) {
        if (in->auth_bcrypts_over_budget >= OVER_BUDGET_BCRYPTS) {
            struct rl_decision d = {.limit = in->cfg.rate_limit_unauthed};
            d.count = d.limit + 1;
            d.reset_seconds = 60 - (long)(now_wall_us() / 1000000 % 60);
            reply_rate_limited(rc, &d, op->prefix);
            op_free(op);
            return;
        }
        in->auth_bcrypts_over_budget++;
        op->over_budget = 1;
    }
    free(op->hash);
    op->hash = xstrdup(k->hash);
    op->verified = 0;
    op->key = k;
    keycache_hold(k);
    op->inflight_next = k->verifying;
    k->verifying = op;
    op->work.data = op;
    uv_queue_work(in->loop, &op->work, bcrypt_work, bcrypt_done);
}

/* ---- step 2: the key's row ---------------------------------------------------------------- */

static void on_key(void *arg, struct key_rec *k, const char *err)
{
    struct auth_op *op = arg;
    if (!k) {
        fail_unavailable(op, err);
        return;
    }
    if (!k->present) {
        op->unknown_prefix = 1;
        fail(op, 401, "UNAUTHORIZED", "Invalid API key.", "invalid_key", op->prefix);
        return;
    }
    if (op->verified && op->hash && !strcmp(op->hash, k->hash)) {
        authorize(op, k); /* just verified by bcrypt (or waited for that verification) */
        return;
    }
    int hit = keycache_verified(op->rc->in->auth_cache, k, op->digest);
    prom_auth_cache(op->rc->in, hit);
    if (hit) {
        authorize(op, k);
        return;
    }
    verify(op, k);
}

static void auth_continue(struct auth_op *op)
{
    keycache_get(op->rc->in->auth_cache, op->prefix, on_key, op);
}

/* ---- step 1: the header ------------------------------------------------------------------- */

void auth_request(struct reqctx *rc, route_fn next)
{
    struct auth_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->next = next;
    size_t hlen = 0;
    const char *h = http_header_get(rc->req, "authorization", &hlen);
    enum apikey_parse pr = apikey_parse_bearer(h, h ? hlen : 0, op->token, op->prefix);
    if (pr == APIKEY_MISSING) {
        fail(op, 401, "UNAUTHORIZED",
             "Missing or invalid Authorization header. Expected: Bearer cai_...",
             "missing_header", NULL);
        return;
    }
    if (pr != APIKEY_OK) {
        fail(op, 401, "UNAUTHORIZED", "Invalid API key format.", "invalid_format", NULL);
        return;
    }
    crypto_sha256(op->token, strlen(op->token), op->digest);
    auth_continue(op);
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
