/*
 * keycache.c - API-key rows in process memory, kept current by notifications (keycache.h).
 *
 * A record is usable when it is neither stale nor being re-read. Each announced change bumps the
 * record's generation; a re-read whose answer left before the latest change is run again, so an
 * answer never overwrites a newer change. Requests for a record being re-read wait on it.
 */
#include "keycache.h"
#include "crypto.h"
#include "intake.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define REC_BUCKETS 4096
#define REC_MAX 100000
#define VERIFIED_MAX 4

struct kwait {
    struct kwait *next;
    keycache_cb cb;
    void *arg;
};

struct verified {
    uint8_t digest[32];
};

struct rec {
    struct key_rec k; /* first: a struct key_rec * is a struct rec * */
    struct rec *next;
    uint64_t gen;        /* bumped by every announced change */
    int stale;           /* must be re-read before use */
    int loading;         /* a re-read of this record is running */
    uint64_t checked_ms; /* when its row was last read */
    int refs;
    struct verified ok[VERIFIED_MAX];
    size_t nok;
    char *ok_hash; /* the hash the digests in ok passed bcrypt against */
    struct kwait *head, **tail;
};

struct auth_cache {
    struct intake *in;
    struct rec *buckets[REC_BUCKETS];
    size_t n;
    uv_timer_t refresh;
    int refreshing;
    int stopped;
};

/* Columns of a key row as every query here reads it. */
#define ROW_COLUMNS                                                                              \
    "key_prefix, id, key_hash, array_to_json(scopes)::text, array_to_json(allowed_sources)::text, " \
    "(extract(epoch FROM expires_at) * 1000)::bigint, rate_limit_per_minute"

static unsigned bucket_of(const char *prefix)
{
    unsigned h = 2166136261u;
    for (; *prefix; prefix++)
        h = (h ^ (unsigned char)*prefix) * 16777619u;
    return h % REC_BUCKETS;
}

static struct rec *rec_find(struct auth_cache *c, const char *prefix)
{
    for (struct rec *r = c->buckets[bucket_of(prefix)]; r; r = r->next)
        if (!strcmp(r->k.prefix, prefix))
            return r;
    return NULL;
}

static void rec_clear_row(struct rec *r)
{
    r->k.present = 0;
    r->k.id = 0;
    if (r->k.hash) {
        explicit_bzero(r->k.hash, strlen(r->k.hash));
        free(r->k.hash);
    }
    r->k.hash = NULL;
    json_decref(r->k.scopes);
    json_decref(r->k.allowed_sources);
    r->k.scopes = r->k.allowed_sources = NULL;
    r->k.expires_ms = 0;
    r->k.rate_limit = 0;
}

static void rec_forget_verified(struct rec *r)
{
    explicit_bzero(r->ok, sizeof r->ok);
    r->nok = 0;
    free(r->ok_hash);
    r->ok_hash = NULL;
}

static void rec_free(struct rec *r)
{
    rec_clear_row(r);
    rec_forget_verified(r);
    free(r);
}

static int evictable(const struct rec *r)
{
    return !r->refs && !r->loading && !r->head && !r->k.verifying;
}

/* Keeps the table bounded: unknown prefixes go first, then anything idle. */
static void evict(struct auth_cache *c)
{
    for (int pass = 0; pass < 2 && c->n >= REC_MAX; pass++) {
        for (size_t i = 0; i < REC_BUCKETS; i++) {
            struct rec **pp = &c->buckets[i];
            while (*pp) {
                struct rec *r = *pp;
                if (evictable(r) && (pass == 1 || !r->k.present)) {
                    *pp = r->next;
                    rec_free(r);
                    c->n--;
                } else {
                    pp = &r->next;
                }
            }
        }
    }
}

static struct rec *rec_add(struct auth_cache *c, const char *prefix)
{
    if (c->n >= REC_MAX)
        evict(c);
    struct rec *r = xcalloc(1, sizeof *r);
    snprintf(r->k.prefix, sizeof r->k.prefix, "%s", prefix);
    r->stale = 1;
    r->tail = &r->head;
    unsigned b = bucket_of(prefix);
    r->next = c->buckets[b];
    c->buckets[b] = r;
    c->n++;
    return r;
}

static json_t *json_array_or(const char *text, int empty_is_null)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (!json_is_array(v) || (empty_is_null && json_array_size(v) == 0)) {
        json_decref(v);
        return empty_is_null ? NULL : json_array();
    }
    return v;
}

/* Takes row i of res (ROW_COLUMNS), or "no active key" when i < 0. */
static void rec_apply(struct rec *r, PGresult *res, int i)
{
    rec_clear_row(r);
    if (i >= 0) {
        r->k.present = 1;
        r->k.id = atoll(PQgetvalue(res, i, 1));
        r->k.hash = xstrdup(PQgetvalue(res, i, 2));
        r->k.scopes = json_array_or(PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3), 0);
        r->k.allowed_sources =
            json_array_or(PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4), 1);
        r->k.expires_ms = PQgetisnull(res, i, 5) ? 0 : atoll(PQgetvalue(res, i, 5));
        if (!PQgetisnull(res, i, 5) && r->k.expires_ms == 0)
            r->k.expires_ms = 1; /* the epoch itself: long expired, not "never" */
        r->k.rate_limit = PQgetisnull(res, i, 6) ? 0 : atoi(PQgetvalue(res, i, 6));
    }
    /* Verifications survive a revocation and re-activation, not a new hash. */
    if (r->k.hash && r->ok_hash && strcmp(r->ok_hash, r->k.hash))
        rec_forget_verified(r);
    r->stale = 0;
    r->checked_ms = now_mono_ms();
}

/* Hands the record (or err) to every request waiting for it. */
static void rec_wake(struct auth_cache *c, struct rec *r, const char *err)
{
    struct kwait *w = r->head;
    r->head = NULL;
    r->tail = &r->head;
    r->refs++;
    while (w) {
        struct kwait *nx = w->next;
        w->cb(w->arg, err ? NULL : &r->k, err);
        free(w);
        w = nx;
    }
    keycache_release(c, &r->k);
}

struct load_op {
    struct auth_cache *c;
    struct rec *r;
    uint64_t gen;
};

static void rec_load(struct auth_cache *c, struct rec *r);

static void on_loaded(void *arg, PGresult *res, const char *err)
{
    struct load_op *op = arg;
    struct auth_cache *c = op->c;
    struct rec *r = op->r;
    uint64_t gen = op->gen;
    free(op);
    r->loading = 0;
    if (!res || err) {
        msg_warn("api key %s: cannot read its row: %s", r->k.prefix, err ? err : "?");
        rec_wake(c, r, err ? err : "no result");
        keycache_release(c, &r->k);
        return;
    }
    if (gen != r->gen && !c->stopped) {
        rec_load(c, r); /* changed again while this answer was on its way */
        keycache_release(c, &r->k);
        return;
    }
    rec_apply(r, res, PQntuples(res) > 0 ? 0 : -1);
    rec_wake(c, r, NULL);
    keycache_release(c, &r->k);
}

static void rec_load(struct auth_cache *c, struct rec *r)
{
    struct load_op *op = xmalloc(sizeof *op);
    *op = (struct load_op){c, r, r->gen};
    r->loading = 1;
    r->refs++;
    const char *params[1] = {r->k.prefix};
    pg_exec(c->in->pg, "SELECT " ROW_COLUMNS " FROM api_keys WHERE key_prefix = $1 AND is_active",
            1, params, on_loaded, op);
}

void keycache_get(struct auth_cache *c, const char *prefix, keycache_cb cb, void *arg)
{
    struct rec *r = rec_find(c, prefix);
    if (r && !r->stale && !r->loading) {
        cb(arg, &r->k, NULL);
        return;
    }
    if (!r)
        r = rec_add(c, prefix);
    struct kwait *w = xcalloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    *r->tail = w;
    r->tail = &w->next;
    if (!r->loading)
        rec_load(c, r);
}

void keycache_hold(struct key_rec *k)
{
    ((struct rec *)k)->refs++;
}

void keycache_release(struct auth_cache *c, struct key_rec *k)
{
    (void)c;
    ((struct rec *)k)->refs--;
}

int keycache_verified(struct auth_cache *c, const struct key_rec *k, const uint8_t digest[32])
{
    const struct rec *r = (const struct rec *)k;
    if (c->in->cfg.auth_cache_ttl_seconds == 0 || !k->hash || !r->ok_hash ||
        strcmp(r->ok_hash, k->hash))
        return 0;
    int found = 0;
    for (size_t i = 0; i < r->nok; i++)
        if (crypto_ct_equal(r->ok[i].digest, 32, digest, 32))
            found = 1;
    return found;
}

void keycache_add_verified(struct auth_cache *c, struct key_rec *k, const uint8_t digest[32],
                           const char *hash)
{
    struct rec *r = (struct rec *)k;
    if (c->in->cfg.auth_cache_ttl_seconds == 0 || !k->hash || strcmp(k->hash, hash))
        return;
    if (!r->ok_hash || strcmp(r->ok_hash, hash)) {
        rec_forget_verified(r);
        r->ok_hash = xstrdup(hash);
    }
    if (r->nok == VERIFIED_MAX) { /* full: the oldest goes */
        memmove(&r->ok[0], &r->ok[1], (VERIFIED_MAX - 1) * sizeof r->ok[0]);
        r->nok--;
    }
    size_t i = r->nok++;
    memcpy(r->ok[i].digest, digest, 32);
}

/* ---- announced changes -------------------------------------------------------------------- */

static void rec_changed(struct auth_cache *c, struct rec *r)
{
    r->gen++;
    r->stale = 1;
    /* A known key is re-read at once so its next request does not wait for it. */
    if (r->k.present && !r->loading && !c->stopped)
        rec_load(c, r);
}

void auth_cache_invalidate(struct auth_cache *c, const char *prefix)
{
    if (prefix) {
        struct rec *r = rec_find(c, prefix);
        if (r)
            rec_changed(c, r);
        return;
    }
    for (size_t i = 0; i < REC_BUCKETS; i++)
        for (struct rec *r = c->buckets[i]; r; r = r->next) {
            r->gen++;
            r->stale = 1;
        }
}

/* ---- the fallback re-read ----------------------------------------------------------------- */

struct refresh_op {
    struct auth_cache *c;
    size_t n;
    struct rec **recs;
    uint64_t *gens;
};

static void on_refreshed(void *arg, PGresult *res, const char *err)
{
    struct refresh_op *op = arg;
    struct auth_cache *c = op->c;
    c->refreshing = 0;
    if (!res || err)
        msg_debug("api key refresh: %s", err ? err : "?");
    int rows = res && !err ? PQntuples(res) : 0;
    for (size_t i = 0; i < op->n; i++) {
        struct rec *r = op->recs[i];
        if (res && !err && r->gen == op->gens[i] && !r->loading && !r->stale) {
            int row = -1;
            for (int j = 0; j < rows && row < 0; j++)
                if (!strcmp(PQgetvalue(res, j, 0), r->k.prefix))
                    row = j;
            rec_apply(r, res, row);
        }
        keycache_release(c, &r->k);
    }
    free(op->recs);
    free(op->gens);
    free(op);
}

/* Re-reads every known key in one query; unknown prefixes older than the period are re-checked
 * on their next use. */
static void on_refresh_tick(uv_timer_t *t)
{
    struct auth_cache *c = t->data;
    if (c->refreshing || !pg_pool_up(c->in->pg))
        return;
    uint64_t period = (uint64_t)c->in->cfg.auth_key_refresh_seconds * 1000;
    uint64_t now = now_mono_ms();
    struct refresh_op *op = xcalloc(1, sizeof *op);
    op->c = c;
    size_t cap = 0;
    struct buf prefixes;
    buf_init(&prefixes);
    buf_puts(&prefixes, "{");
    for (size_t i = 0; i < REC_BUCKETS; i++)
        for (struct rec *r = c->buckets[i]; r; r = r->next) {
            if (r->stale || r->loading)
                continue;
            if (!r->k.present) {
                if (now - r->checked_ms >= period)
                    r->stale = 1;
                continue;
            }
            if (op->n == cap) {
                cap = cap ? cap * 2 : 64;
                op->recs = xrealloc(op->recs, cap * sizeof *op->recs);
                op->gens = xrealloc(op->gens, cap * sizeof *op->gens);
            }
            op->recs[op->n] = r;
            op->gens[op->n] = r->gen;
            r->refs++;
            buf_puts(&prefixes, op->n ? ",\"" : "\"");
            for (const char *p = r->k.prefix; *p; p++) {
                if (*p == '"' || *p == '\\')
                    buf_puts(&prefixes, "\\");
                buf_append(&prefixes, p, 1);
            }
            buf_puts(&prefixes, "\"");
            op->n++;
        }
    buf_puts(&prefixes, "}");
    if (op->n == 0) {
        free(op);
        buf_destroy(&prefixes);
        return;
    }
    c->refreshing = 1;
    const char *params[1] = {prefixes.data};
    pg_exec(c->in->pg,
            "SELECT " ROW_COLUMNS " FROM api_keys WHERE key_prefix = ANY($1::text[]) AND is_active",
            1, params, on_refreshed, op);
    buf_destroy(&prefixes);
}

struct auth_cache *auth_cache_new(struct intake *in)
{
    struct auth_cache *c = xcalloc(1, sizeof *c);
    c->in = in;
    uint64_t period = (uint64_t)in->cfg.auth_key_refresh_seconds * 1000;
    uv_timer_init(in->loop, &c->refresh);
    c->refresh.data = c;
    uv_timer_start(&c->refresh, on_refresh_tick, period, period);
    return c;
}

void keycache_stop(struct auth_cache *c)
{
    if (c->stopped)
        return;
    c->stopped = 1;
    uv_timer_stop(&c->refresh);
    uv_close((uv_handle_t *)&c->refresh, NULL);
}

void auth_cache_free(struct auth_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < REC_BUCKETS; i++) {
        struct rec *r = c->buckets[i];
        while (r) {
            struct rec *nx = r->next;
            struct kwait *w = r->head;
            while (w) {
                struct kwait *wn = w->next;
                free(w);
                w = wn;
            }
            rec_free(r);
            r = nx;
        }
    }
    free(c);
}
