/*
 * engine.c - provider lookups: steps, SSRF check, caps, retries, results (see engine.h); the
 * curl-on-libuv plumbing is curluv.c.
 */
#include "engine.h"
#include "creds.h"
#include "curluv.h"
#include "guard.h"
#include "httpc.h"
#include "limiter.h"
#include "log.h"
#include "malice.h"
#include "ssrfcache.h"
#include "step.h"
#include "util.h"

#include <curl/curl.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_BASE_MS 500
#define BACKOFF_MAX_MS 30000
#define MAX_RETRIES 8
/* SSRF check results kept per host:port (ssrfcache.h) */
#define SSRF_CACHE_ENTRIES 64
#define SSRF_CACHE_TTL_MS 30000
#define SSRF_CACHE_BLOCKED_TTL_MS 5000
/* idle curl easy handles kept for reuse (each holds its own buffers; connections live in the
 * multi handle's pool) */
#define EASY_POOL_MAX 1024
/* idle lookup records kept for reuse, each with its timer and its response buffer (a lookup's
 * answer usually fits the buffer the record kept) */
#define CALL_POOL_MAX 1024
#define RESP_KEEP_MAX (64 << 10)
/* idle response buffers kept for reuse: a buffer belongs to a lookup only while its request is
 * in flight, so the buffers a worker holds follow the requests in flight (a few hundred), not
 * the lookups queued behind the caps (thousands, when a burst of jobs arrives) */
#define RESP_POOL_MAX 1024

/* Decrypted credentials shared by the lookups of one job at one provider: they start together,
 * so one decryption (and one audit event) serves all of them, and the locked copy is wiped
 * when the last of them ends. On-demand lookups (job 0) never share. */
struct shared_creds {
    const struct provider *p;
    long long job_id;
    struct creds *creds;
    int refs;
    struct shared_creds *prev, *next; /* in their bucket of engine.shared */
};

/* Buckets of shared credentials by job: a few hundred jobs are in progress at once, and each of
 * their lookups finds (and leaves) its entry without walking all of them. */
#define SHARED_BUCKETS 1024

/* Requests in flight to one host:port (the SSRF cache key) in this worker, and the requests
 * waiting for one of them to end. libcurl walks every connection to a host each time it picks
 * one for a transfer, so thousands of connections to one provider host make each request cost
 * O(connections); a capped number in flight keeps the pool at the cap, reused in turn. */
struct host_gate {
    char key[272];
    long in_flight;
    struct call *head, *tail;
    struct host_gate *next;
};

struct engine {
    uv_loop_t *loop;
    struct host_gate *gates;
    struct curluv *cm;
    struct engine_opts o;
    struct ssrf_cache *ssrf;
    struct limiter *limiters;
    struct shared_creds *shared[SHARED_BUCKETS];
    CURL **easy_pool; /* idle easy handles, reset before reuse */
    size_t neasy;
    struct buf *resp_pool; /* idle response buffers, emptied, their capacity kept */
    size_t nresp;
    struct call *leaders; /* calls running the SSRF check of a host:port for all its lookups */
    struct call *pool; /* idle lookup records */
    size_t npool;
    int closing;
    int leases; /* lease queries out (the engine is freed only after their answers) */
    int close_pending;
    size_t active;
    void (*closed)(void *);
    void *closed_arg;
};

enum call_state { ST_IDLE, ST_CHECK, ST_WAIT, ST_HTTP, ST_BACKOFF };

struct call {
    /* ---- zeroed for every lookup (call_get) ---- */
    struct engine *e;
    const struct provider *p;
    char *type, *value; /* in tv, or allocated when they do not fit there */
    long long job_id;
    uint64_t deadline_ms;
    engine_done_cb cb;
    void *arg;
    enum call_state state;
    size_t step, nsteps;
    int retries;
    json_t *steps;    /* {"name": {"response": body}} for templates */
    json_t *raw_by;   /* {"name": body} */
    json_t *last_raw; /* body of the last step */
    struct shared_creds *creds;
    int creds_opened;
    struct step_req req;
    struct limiter *lim;
    int blocked;
    CURL *easy;
    int too_large;
    long retry_after_s;
    struct call *wait_prev, *wait_next; /* in lim's waiting queue */
    int queued;
    struct host_gate *gate; /* holding one of its slots, or queued there */
    int host_queued;
    struct call *hq_prev, *hq_next;
    /* the one SSRF check of its host:port in flight, and the calls waiting for its verdict */
    int leading;
    struct call *lead_next;              /* in engine.leaders */
    struct call *waiters, *waiters_tail; /* while leading */
    struct call *wait_check_next;        /* in its leader's waiters */
    /* ---- kept from one lookup to the next while pooled: each is set before it is read ---- */
    uv_timer_t timer; /* initialised once, stopped between lookups */
    struct buf resp;  /* the answer, while a request is in flight (from engine.resp_pool) */
    struct call *pool_next;
    uv_work_t work;
    struct ssrf_target target; /* where the SSRF check lets the request go */
    char ssrf_key[272]; /* "" when the URL is not cacheable */
    char reason[256];
    struct curluv_pin sockpin; /* the checked address: no connection goes anywhere else */
    char curl_err[CURL_ERROR_SIZE];
    char tv[192]; /* type and value, when they fit */
};

static void next_step(struct call *c);
static void send_request(struct call *c);
static void unwait(struct call *c);
static void wake_waiters(struct engine *e, struct limiter *l);
static void ask_lease(struct engine *e, struct limiter *l);
static void on_wait_timer(uv_timer_t *t);
static void host_leave(struct call *c);

/* ---- lookup records ---- */

static void call_freed(uv_handle_t *h)
{
    struct call *c = h->data;
    buf_destroy(&c->resp);
    free(c);
}

/* ---- response buffers ---- */

static void resp_take(struct engine *e, struct call *c)
{
    if (c->resp.cap || !e->nresp)
        return;
    c->resp = e->resp_pool[--e->nresp];
}

/* The lookup's buffer back to the pool (emptied), or freed when it grew large or the pool is
 * full. */
static void resp_give(struct engine *e, struct call *c)
{
    if (!c->resp.cap)
        return;
    if (c->resp.cap > RESP_KEEP_MAX || e->nresp >= RESP_POOL_MAX || e->closing) {
        buf_destroy(&c->resp);
    } else {
        if (!e->resp_pool)
            e->resp_pool = xcalloc(RESP_POOL_MAX, sizeof *e->resp_pool);
        buf_reset(&c->resp);
        e->resp_pool[e->nresp++] = c->resp;
    }
    buf_init(&c->resp);
}

/* A record from the pool has its timer; only the per-lookup part is zeroed (the
 * whole record, about 2.3 KiB, was allocated zeroed and freed per lookup before). */
static struct call *call_get(struct engine *e)
{
    struct call *c = e->pool;
    if (c) {
        e->pool = c->pool_next;
        e->npool--;
        memset(c, 0, offsetof(struct call, timer));
        return c;
    }
    c = xcalloc(1, sizeof *c);
    buf_init(&c->resp);
    uv_timer_init(e->loop, &c->timer);
    c->timer.data = c;
    return c;
}

static void call_names(struct call *c, const char *type, const char *value)
{
    size_t tl = strlen(type) + 1, vl = strlen(value) + 1;
    if (tl + vl <= sizeof c->tv) {
        memcpy(c->tv, type, tl);
        memcpy(c->tv + tl, value, vl);
        c->type = c->tv;
        c->value = c->tv + tl;
        return;
    }
    c->type = xstrdup(type);
    c->value = xstrdup(value);
}

/* The lookup is over (its timer stopped): back to the pool, or closed. */
static void call_put(struct engine *e, struct call *c)
{
    if (c->type != c->tv) {
        free(c->type);
        free(c->value);
    }
    c->type = c->value = NULL;
    resp_give(e, c);
    if (e->closing || e->npool >= CALL_POOL_MAX) {
        uv_close((uv_handle_t *)&c->timer, call_freed);
        return;
    }
    c->pool_next = e->pool;
    e->pool = c;
    e->npool++;
}

/* ---- credentials, shared per job and provider ---- */

static struct shared_creds **bucket(struct engine *e, long long job_id)
{
    return &e->shared[(unsigned long long)job_id % SHARED_BUCKETS];
}

static struct shared_creds *creds_acquire(struct engine *e, const struct provider *p,
                                          long long job_id, char *err, size_t errlen)
{
    struct shared_creds *s, **b = bucket(e, job_id);
    if (job_id > 0)
        for (s = *b; s; s = s->next)
            if (s->p == p && s->job_id == job_id) {
                s->refs++;
                return s;
            }
    struct creds *cr = creds_open(e->o.creds, p, job_id, err, errlen);
    if (!cr)
        return NULL;
    s = xcalloc(1, sizeof *s);
    s->p = p;
    s->job_id = job_id;
    s->creds = cr;
    s->refs = 1;
    s->next = *b;
    if (*b)
        (*b)->prev = s;
    *b = s;
    return s;
}

static void creds_release(struct engine *e, struct shared_creds *s)
{
    if (--s->refs > 0)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        *bucket(e, s->job_id) = s->next;
    if (s->next)
        s->next->prev = s->prev;
    creds_close(s->creds);
    free(s);
}

/* ---- easy handles ---- */

/* callbacks of every request */
static size_t on_body(char *data, size_t size, size_t n, void *userp);
static size_t on_header(char *data, size_t size, size_t n, void *userp);

/* A pooled handle keeps the options every request shares (set here once); send_request() sets
 * the ones that change, all of them on every request, so nothing of the previous request's
 * carries over and no curl_easy_reset() frees and re-creates the handle's state each time. */
static CURL *easy_get(struct engine *e)
{
    if (e->neasy)
        return e->easy_pool[--e->neasy];
    CURL *h = curl_easy_init();
    if (!h)
        msg_fatal("curl_easy_init failed");
    httpc_harden(h, 1);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "calseta-enricher");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    return h;
}

static void easy_put(struct engine *e, CURL *h)
{
    if (e->neasy >= EASY_POOL_MAX) {
        curl_easy_cleanup(h);
        return;
    }
    if (!e->easy_pool)
        e->easy_pool = xcalloc(EASY_POOL_MAX, sizeof *e->easy_pool);
    e->easy_pool[e->neasy++] = h;
}

/* ---- finishing ---- */

static void finish(struct call *c, json_t *result)
{
    struct engine *e = c->e;
    if (c->creds)
        creds_release(e, c->creds);
    c->creds = NULL;
    unwait(c);
    host_leave(c);
    step_req_wipe(&c->req);
    json_decref(c->steps);
    json_decref(c->raw_by);
    json_decref(c->last_raw);
    uv_timer_stop(&c->timer);
    e->active--;
    c->cb(c->arg, result);
    call_put(e, c);
}

static void fail(struct call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct call *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    finish(c, result_new(c->p->name, "failed", NULL, NULL, msg));
}

static json_t *raw_response(struct call *c)
{
    if (c->nsteps == 1)
        return c->last_raw ? json_incref(c->last_raw) : json_object();
    return json_incref(c->raw_by);
}

static void succeed(struct call *c, int not_found)
{
    json_t *raw = raw_response(c);
    json_t *ext;
    if (not_found) {
        ext = json_object();
        json_object_set_new(ext, "found", json_false());
        json_object_set_new(ext, "malice", json_string(malice_not_found(c->p->malice_rules)));
    } else {
        ext = extract_fields(raw, c->p->rules, c->p->nrules, c->type);
        json_object_set_new(ext, "malice", json_string(malice_evaluate(c->p->malice_rules, raw)));
    }
    finish(c, result_new(c->p->name, "success", ext, raw, NULL));
}

/* ---- limiter waiters ---- */

/* Timer of a waiting call: the head of the queue wakes when a token may be there (or a slot is
 * released), the others only at their deadline (the head's turn wakes them). */
static void rearm(struct call *c, int head)
{
    uint64_t now = now_mono_ms();
    uint64_t left = c->deadline_ms > now ? c->deadline_ms - now : 0;
    uint64_t w = head ? limiter_wait_ms(c->lim, now) : UINT64_MAX;
    /* w == 0: the token came in the millisecond since limiter_try() refused; wake at once (a
     * head left asleep until its deadline would stall the provider when nothing is in flight) */
    uv_timer_start(&c->timer, on_wait_timer, w < left ? w : left, 0);
}

static void enqueue(struct call *c, int front)
{
    struct limiter *l = c->lim;
    struct call *h = l->wait_head, *t = l->wait_tail;
    c->queued = 1;
    if (front) {
        c->wait_prev = NULL;
        c->wait_next = h;
        if (h)
            h->wait_prev = c;
        else
            l->wait_tail = c;
        l->wait_head = c;
    } else {
        c->wait_next = NULL;
        c->wait_prev = t;
        if (t)
            t->wait_next = c;
        else
            l->wait_head = c;
        l->wait_tail = c;
    }
}

static void unwait(struct call *c)
{
    if (!c->queued)
        return;
    struct limiter *l = c->lim;
    if (c->wait_prev)
        c->wait_prev->wait_next = c->wait_next;
    else
        l->wait_head = c->wait_next;
    if (c->wait_next)
        c->wait_next->wait_prev = c->wait_prev;
    else
        l->wait_tail = c->wait_prev;
    c->wait_prev = c->wait_next = NULL;
    c->queued = 0;
}

/* A slot or tokens came free: send what fits, in order; then make sure the rest is woken in
 * time (a lease asked for, the head's timer set). */
static void wake_waiters(struct engine *e, struct limiter *l)
{
    uint64_t now = now_mono_ms();
    struct call *c;
    while ((c = l->wait_head) && limiter_try(l, now)) {
        unwait(c);
        uv_timer_stop(&c->timer);
        send_request(c);
    }
    if (!(c = l->wait_head))
        return;
    ask_lease(e, l);
    /* waiting for tokens: wake when they may be there; for a slot: a release wakes it */
    rearm(c, l->in_flight < l->max_in_flight);
}

/* ---- one request ---- */

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    struct call *c = userp;
    size_t len = size * n;
    if (c->resp.len + len > c->e->o.max_response_bytes) {
        c->too_large = 1;
        return 0;
    }
    buf_append(&c->resp, data, len);
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    struct call *c = userp;
    size_t len = size * n;
    if (len > 12 && !ascii_casecmp_n(data, "retry-after:", 12)) {
        char v[64];
        size_t k = len - 12 < sizeof v - 1 ? len - 12 : sizeof v - 1;
        memcpy(v, data + 12, k);
        v[k] = 0;
        char *s = v + strspn(v, " \t");
        s[strcspn(s, "\r\n")] = 0;
        long long secs;
        if (parse_ll(s, 0, 86400 * 7, &secs) == 0) {
            c->retry_after_s = (long)secs;
        } else {
            time_t when = curl_getdate(s, NULL);
            if (when > 0)
                c->retry_after_s = when > time(NULL) ? (long)(when - time(NULL)) : 0;
        }
    }
    return len;
}

/* The method and body of this request, with those of the handle's previous one undone: no
 * body pointer is left behind (it was freed with that request), GET and no custom verb is the
 * starting point. */
static void set_method(CURL *h, const struct step_req *r)
{
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, -1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L); /* also clears NOBODY (a HEAD before) */
    if (r->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
    }
    if (!strcmp(r->method, "GET"))
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    else if (!strcmp(r->method, "HEAD"))
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (strcmp(r->method, "POST") || !r->body)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
}

/* ---- the per-host cap ---- */

/* A gate lives while its host has requests in flight or waiting, so a provider whose URL names
 * a host per indicator leaves no gate behind; the gate found goes to the front of the list. */
static struct host_gate *gate_of(struct engine *e, const char *key)
{
    struct host_gate *g, **pp;
    for (pp = &e->gates; (g = *pp); pp = &g->next)
        if (!strcmp(g->key, key)) {
            *pp = g->next;
            g->next = e->gates;
            e->gates = g;
            return g;
        }
    g = xcalloc(1, sizeof *g);
    snprintf(g->key, sizeof g->key, "%s", key);
    g->next = e->gates;
    e->gates = g;
    return g;
}

static void gate_drop_if_idle(struct engine *e, struct host_gate *g)
{
    if (!g || g->in_flight > 0 || g->head)
        return;
    for (struct host_gate **pp = &e->gates; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            free(g);
            return;
        }
}

/* Leaves the gate's queue; the caller drops the gate if that left it idle (host_release hands
 * the slot on first). */
static void host_unqueue(struct call *c)
{
    if (!c->host_queued)
        return;
    struct host_gate *g = c->gate;
    if (c->hq_prev)
        c->hq_prev->hq_next = c->hq_next;
    else
        g->head = c->hq_next;
    if (c->hq_next)
        c->hq_next->hq_prev = c->hq_prev;
    else
        g->tail = c->hq_prev;
    c->hq_prev = c->hq_next = NULL;
    c->host_queued = 0;
    c->gate = NULL;
}

/* A call gives up its place in the queue (deadline, job ended); the gate goes if now idle. */
static void host_leave(struct call *c)
{
    if (!c->host_queued)
        return;
    struct host_gate *g = c->gate;
    host_unqueue(c);
    gate_drop_if_idle(c->e, g);
}

/* Waited at the host until the deadline: the provider slot it holds goes back. */
static void on_host_deadline(uv_timer_t *t)
{
    struct call *c = t->data;
    host_leave(c);
    limiter_release(c->lim);
    wake_waiters(c->e, c->lim);
    fail(c, "Step '%s' failed: job deadline exceeded waiting for a connection", c->req.name);
}

static void transmit(struct call *c);

/* A request to the gate's host ended: its slot goes to the first waiting one. */
static void host_release(struct call *c)
{
    struct host_gate *g = c->gate;
    if (!g)
        return;
    c->gate = NULL;
    g->in_flight--;
    struct call *n = g->head;
    if (!n) {
        gate_drop_if_idle(c->e, g);
        return;
    }
    host_unqueue(n);
    uv_timer_stop(&n->timer);
    n->gate = g;
    g->in_flight++;
    transmit(n);
}

/* A slot at the host, or a place in its queue (0: sent, 1: queued). */
static int host_admit(struct call *c)
{
    struct engine *e = c->e;
    if (e->o.host_connections <= 0 || !c->ssrf_key[0])
        return 0;
    struct host_gate *g = gate_of(e, c->ssrf_key);
    c->gate = g;
    if (g->in_flight < e->o.host_connections && !g->head) {
        g->in_flight++;
        return 0;
    }
    c->host_queued = 1;
    c->hq_next = NULL;
    c->hq_prev = g->tail;
    if (g->tail)
        g->tail->hq_next = c;
    else
        g->head = c;
    g->tail = c;
    uint64_t now = now_mono_ms();
    uv_timer_start(&c->timer, on_host_deadline, c->deadline_ms > now ? c->deadline_ms - now : 0,
                   0);
    return 1;
}

static void send_request(struct call *c)
{
    uint64_t now = now_mono_ms();
    if (now >= c->deadline_ms) {
        limiter_release(c->lim);
        wake_waiters(c->e, c->lim);
        fail(c, "Step '%s' failed: job deadline exceeded", c->req.name);
        return;
    }
    c->state = ST_HTTP;
    if (host_admit(c) == 0)
        transmit(c);
}

static void transmit(struct call *c)
{
    uint64_t now = now_mono_ms();
    uint64_t left = c->deadline_ms > now ? c->deadline_ms - now : 1;
    uint64_t tmo = (uint64_t)c->req.timeout_s * 1000;
    if (tmo > left)
        tmo = left;
    resp_take(c->e, c);
    buf_reset(&c->resp);
    buf_reserve(&c->resp, 2048); /* most answers fit: no reallocation per body chunk */
    c->too_large = 0;
    c->retry_after_s = -1;
    c->curl_err[0] = 0;
    CURL *h = easy_get(c->e);
    c->easy = h;
    curl_easy_setopt(h, CURLOPT_URL, c->req.url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)tmo);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(tmo < 10000 ? tmo : 10000));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->req.headers);
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, ssrf_target_list(&c->target));
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(h, CURLOPT_PRIVATE, c);
    set_method(h, &c->req);
    curluv_add_pinned(c->e->cm, h, &c->sockpin);
}

/* ---- shared rate: leases from the quota counter ---- */

struct lease_req {
    struct engine *e;
    struct limiter *l;
    uint64_t asked_ms;
};

static void engine_free(struct engine *e);

static void on_leased(void *arg, long granted, long ms_left, int failed)
{
    struct lease_req *r = arg;
    struct engine *e = r->e;
    uint64_t now = now_mono_ms();
    if (failed && !r->l->fallback)
        msg_warn("provider %s: the shared rate counter is unreachable; rate capped per worker "
                 "for now", r->l->name);
    limiter_leased(r->l, granted, ms_left > 0 ? (uint64_t)ms_left : 0, failed, r->asked_ms, now);
    struct limiter *l = r->l;
    free(r);
    e->leases--;
    if (e->close_pending) {
        if (!e->leases)
            engine_free(e);
        return;
    }
    wake_waiters(e, l);
}

static void ask_lease(struct engine *e, struct limiter *l)
{
    uint64_t now = now_mono_ms();
    if (!e->o.lease || !limiter_needs_lease(l, now))
        return;
    struct lease_req *r = xcalloc(1, sizeof *r);
    r->e = e;
    r->l = l;
    r->asked_ms = now;
    l->leasing = 1;
    e->leases++;
    e->o.lease(e->o.lease_arg, l->name, limiter_lease_block(l), limiter_window_limit(l),
               (long)limiter_window_ms(l), on_leased, r);
}

static void on_wait_timer(uv_timer_t *t)
{
    struct call *c = t->data;
    int was_head = c->queued && !c->wait_prev;
    unwait(c);
    if (now_mono_ms() >= c->deadline_ms) {
        fail(c, "Step '%s' failed: job deadline exceeded waiting for the provider", c->req.name);
        return;
    }
    /* backoff over, or a token may be available; nobody overtakes the queue */
    c->state = ST_WAIT;
    struct limiter *l = c->lim;
    if (!l->wait_head && limiter_try(l, now_mono_ms())) {
        send_request(c);
        return;
    }
    enqueue(c, was_head);
    if (l->wait_head == c) {
        wake_waiters(c->e, l); /* c first, then whoever fits behind it */
        return;
    }
    rearm(c, 0);
}

static void acquire_and_send(struct call *c)
{
    c->lim = limiter_get(&c->e->limiters, c->p->name, c->p->max_concurrency, c->p->rate_per_second,
                         c->e->o.lease != NULL, now_mono_ms());
    c->state = ST_WAIT;
    on_wait_timer(&c->timer);
}

/* 429/5xx: wait and try the same step again if it fits before the deadline. */
static int schedule_retry(struct call *c, long status)
{
    if (status != 429 && status < 500)
        return 0;
    if (c->retries >= MAX_RETRIES)
        return 0;
    uint64_t delay;
    if (c->retry_after_s >= 0) {
        delay = (uint64_t)c->retry_after_s * 1000;
    } else {
        delay = (uint64_t)BACKOFF_BASE_MS << c->retries;
        if (delay > BACKOFF_MAX_MS)
            delay = BACKOFF_MAX_MS;
        delay += (uint64_t)(rand() % 250);
    }
    if (now_mono_ms() + delay + 100 >= c->deadline_ms)
        return 0;
    c->retries++;
    c->state = ST_BACKOFF;
    msg_info("provider %s returned HTTP %ld, retrying in %llu ms", c->p->name, status,
             (unsigned long long)delay);
    uv_timer_start(&c->timer, on_wait_timer, delay, 0);
    return 1;
}

static void request_done(struct call *c, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curluv_remove(c->e->cm, c->easy);
    easy_put(c->e, c->easy);
    c->easy = NULL;
    host_release(c);
    limiter_release(c->lim);
    wake_waiters(c->e, c->lim);
    if (c->sockpin.refused) { /* curl tried an address the check never approved */
        if (c->req.optional) {
            c->step++;
            next_step(c);
            return;
        }
        fail(c, "Step '%s' SSRF blocked: connection to an address the check did not approve",
             c->req.name);
        return;
    }
    if (c->too_large) {
        fail(c, "Step '%s' failed: response larger than %zu bytes", c->req.name,
             c->e->o.max_response_bytes);
        return;
    }
    if (rc != CURLE_OK) {
        if (c->req.optional) {
            c->step++;
            next_step(c);
            return;
        }
        fail(c, "Step '%s' failed: %s", c->req.name,
             c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc));
        return;
    }
    if (status_listed(c->req.not_found, status)) {
        json_t *st = json_pack("{s:i}", "status_code", (int)status);
        json_object_set(c->raw_by, c->req.name, st);
        json_decref(c->last_raw);
        c->last_raw = st;
        succeed(c, 1);
        return;
    }
    json_t *expected = c->req.expected;
    int ok = json_array_size(expected) ? status_listed(expected, status) : status == 200;
    if (!ok) {
        if (schedule_retry(c, status))
            return;
        if (c->req.optional) {
            c->step++;
            next_step(c);
            return;
        }
        fail(c, "Step '%s' returned HTTP %ld", c->req.name, status);
        return;
    }
    json_t *body = body_parse(c->resp.data, c->resp.len);
    resp_give(c->e, c);
    if (c->nsteps > 1) { /* later steps' templates and the raw answer by step */
        json_object_set_new(c->steps, c->req.name, json_pack("{s:O}", "response", body));
        json_object_set(c->raw_by, c->req.name, body);
    }
    json_decref(c->last_raw);
    c->last_raw = body;
    c->step++;
    next_step(c);
}

static void on_transfer_done(void *arg, CURL *easy, CURLcode rc)
{
    struct call *c = NULL;
    (void)arg;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
    request_done(c, rc);
}

/* ---- steps ---- */

/* The checked address as the socket-level pin, from the check's own target (an IPv6 literal
 * included): curl may connect nowhere else. The target's connect-to entry (ssrf_target_list(),
 * installed per transfer) steers curl there; unlike a CURLOPT_RESOLVE entry it is part of what
 * curl matches when it picks a kept-alive connection, so a connection opened to an address
 * checked before is reused only while the check still names that address. */
static int pin_socket(struct call *c)
{
    const struct ssrf_target *t = &c->target;
    return curluv_pin_set(&c->sockpin, t->addr, strnlen(t->addr, sizeof t->addr), t->port);
}

/* The SSRF check is done (from the cache or the thread pool): go on or fail closed. */
static void checked(struct call *c, int cancelled)
{
    if (cancelled || c->blocked) {
        if (c->req.optional) {
            c->step++;
            next_step(c);
            return;
        }
        fail(c, "Step '%s' SSRF blocked: %s", c->req.name,
             cancelled ? "check cancelled" : c->reason);
        return;
    }
    if (pin_socket(c) != 0) { /* fail closed: never unpinned */
        fail(c, "Step '%s' SSRF blocked: unusable address pin", c->req.name);
        return;
    }
    acquire_and_send(c);
}

/* The call checking key now, if any: the lookups that miss the cache while it runs wait for
 * its verdict instead of each resolving the host again (a burst of claimed jobs at start, or
 * when the cached verdict expires, would queue one resolution per lookup). */
static struct call *leader_of(struct engine *e, const char *key)
{
    for (struct call *l = e->leaders; l; l = l->lead_next)
        if (!strcmp(l->ssrf_key, key))
            return l;
    return NULL;
}

static void leader_drop(struct engine *e, struct call *c)
{
    for (struct call **pp = &e->leaders; *pp; pp = &(*pp)->lead_next)
        if (*pp == c) {
            *pp = c->lead_next;
            break;
        }
    c->leading = 0;
    c->lead_next = NULL;
}

static void on_checked(uv_work_t *w, int status)
{
    struct call *c = w->data;
    struct engine *e = c->e;
    if (status == 0 && c->ssrf_key[0])
        ssrf_cache_put(e->ssrf, c->ssrf_key, now_mono_ms(), c->blocked, &c->target, c->reason);
    struct call *next = NULL;
    struct ssrf_target target;
    char reason[sizeof c->reason];
    int blocked = c->blocked;
    if (c->leading) { /* the verdict is copied out: checked() may end c and reuse its record */
        leader_drop(e, c);
        next = c->waiters;
        c->waiters = c->waiters_tail = NULL;
        target = c->target;
        memcpy(reason, c->reason, sizeof reason);
    }
    checked(c, status != 0);
    while (next) {
        struct call *n = next;
        next = n->wait_check_next;
        n->wait_check_next = NULL;
        n->blocked = blocked;
        n->target = target;
        memcpy(n->reason, reason, sizeof reason);
        /* a waiter shares the leader's key, so the target is its own; if the two ever parsed a
         * URL apart, it would be another host's checked address: fail closed instead */
        if (!blocked && status == 0 && !ssrf_cache_target_fits(n->ssrf_key, &target)) {
            n->blocked = 1;
            snprintf(n->reason, sizeof n->reason, "checked target does not match %.200s",
                     n->ssrf_key);
        }
        checked(n, status != 0);
    }
}

static void do_check(uv_work_t *w)
{
    struct call *c = w->data;
    c->blocked = guard_check(c->e->o.guard, c->req.url, &c->target, c->reason,
                             sizeof c->reason) != 0;
}

static void next_step(struct call *c)
{
    step_req_wipe(&c->req);
    c->retries = 0;
    if (c->step >= c->nsteps) {
        succeed(c, 0);
        return;
    }
    if (!c->creds_opened) {
        char err[256];
        c->creds_opened = 1;
        c->creds = creds_acquire(c->e, c->p, c->job_id, err, sizeof err);
        if (!c->creds) {
            fail(c, "%s", err);
            return;
        }
    }
    struct tpl_ctx ctx = {c->type, c->value, creds_get, c->creds->creds, c->steps};
    char err[256];
    if (step_build(c->p->http_config, c->step, &ctx, c->p->timeout_seconds, &c->req, err,
                   sizeof err)) {
        fail(c, "%s", err);
        return;
    }
    c->state = ST_CHECK;
    memset(&c->target, 0, sizeof c->target);
    c->reason[0] = 0;
    if (ssrf_cache_key_of(c->e->ssrf, c->req.url, c->ssrf_key, sizeof c->ssrf_key) != 0)
        c->ssrf_key[0] = 0;
    switch (ssrf_cache_get(c->e->ssrf, c->ssrf_key, now_mono_ms(), &c->target, c->reason,
                           sizeof c->reason)) {
    case SSRF_CACHE_ALLOWED:
        c->blocked = 0;
        checked(c, 0);
        return;
    case SSRF_CACHE_BLOCKED:
        c->blocked = 1;
        checked(c, 0);
        return;
    case SSRF_CACHE_MISS:
        break;
    }
    if (c->ssrf_key[0]) {
        struct call *l = leader_of(c->e, c->ssrf_key);
        if (l) {
            if (l->waiters_tail)
                l->waiters_tail->wait_check_next = c;
            else
                l->waiters = c;
            l->waiters_tail = c;
            return;
        }
        c->leading = 1;
        c->lead_next = c->e->leaders;
        c->e->leaders = c;
    }
    c->work.data = c;
    uv_queue_work(c->e->loop, &c->work, do_check, on_checked);
}

/* Mock mode: the provider's stored answer for the type, no credentials, no HTTP. */
static void mock_answer(struct call *c)
{
    json_t *m = c->p->mock_responses;
    json_t *entry = json_object_get(m, c->type);
    if (!entry)
        entry = json_object_get(m, "default");
    if (!json_is_object(entry)) {
        finish(c, result_new(c->p->name, "skipped", NULL, NULL, "No mock response for type"));
        return;
    }
    json_t *raw = json_object_get(entry, "raw");
    raw = raw ? raw : entry;
    json_t *ext = json_object_get(entry, "extracted");
    ext = json_is_object(ext) ? json_deep_copy(ext)
                              : extract_fields(raw, c->p->rules, c->p->nrules, c->type);
    const char *malice = json_string_value(json_object_get(entry, "malice"));
    json_object_set_new(ext, "malice",
                        json_string(malice ? malice : malice_evaluate(c->p->malice_rules, raw)));
    finish(c, result_new(c->p->name, "success", ext, json_incref(raw), NULL));
}

static void start_call(uv_timer_t *t)
{
    struct call *c = t->data;
    if (c->p->mock_responses) {
        mock_answer(c);
        return;
    }
    if (c->nsteps == 0) {
        fail(c, "Provider %s has no http_config steps", c->p->name);
        return;
    }
    next_step(c);
}

void engine_lookup(struct engine *e, const struct provider *p, const char *type, const char *value,
                   long long job_id, uint64_t deadline_ms, engine_done_cb cb, void *arg)
{
    struct call *c = call_get(e);
    c->e = e;
    c->p = p;
    call_names(c, type, value);
    c->job_id = job_id;
    c->deadline_ms = deadline_ms;
    c->cb = cb;
    c->arg = arg;
    c->nsteps = step_count(p->http_config);
    if (c->nsteps > 1) { /* one step: its answer is the raw answer, no template needs it */
        c->steps = json_object();
        c->raw_by = json_object();
    }
    e->active++;
    uv_timer_start(&c->timer, start_call, 0, 0); /* never call back from inside this call */
}

/* ---- engine ---- */

struct engine *engine_new(uv_loop_t *loop, const struct engine_opts *o)
{
    struct engine *e = xcalloc(1, sizeof *e);
    e->loop = loop;
    e->o = *o;
    if (!e->o.max_response_bytes)
        e->o.max_response_bytes = 1 << 20;
    e->cm = curluv_new(loop, on_transfer_done, e);
    curluv_max_connections(e->cm, o->idle_connections ? o->idle_connections : 2048);
    e->ssrf = ssrf_cache_new(SSRF_CACHE_ENTRIES, SSRF_CACHE_TTL_MS, SSRF_CACHE_BLOCKED_TTL_MS);
    return e;
}

size_t engine_active(const struct engine *e)
{
    return e->active;
}

static void engine_free(struct engine *e)
{
    void (*done)(void *) = e->closed;
    void *done_arg = e->closed_arg;
    limiter_free_all(&e->limiters);
    while (e->gates) {
        struct host_gate *g = e->gates;
        e->gates = g->next;
        free(g);
    }
    ssrf_cache_free(e->ssrf);
    while (e->neasy)
        curl_easy_cleanup(e->easy_pool[--e->neasy]);
    free(e->easy_pool);
    while (e->nresp)
        buf_destroy(&e->resp_pool[--e->nresp]);
    free(e->resp_pool);
    free(e);
    if (done)
        done(done_arg);
}

static void on_curluv_closed(void *arg)
{
    struct engine *e = arg;
    if (e->leases) {
        e->close_pending = 1; /* on_leased frees it after the last answer */
        return;
    }
    engine_free(e);
}

void engine_close(struct engine *e, void (*done)(void *), void *arg)
{
    if (e->active)
        msg_warn("engine closed with %zu lookups active", e->active);
    e->closed = done;
    e->closed_arg = arg;
    e->closing = 1;
    while (e->pool) {
        struct call *c = e->pool;
        e->pool = c->pool_next;
        uv_close((uv_handle_t *)&c->timer, call_freed);
    }
    e->npool = 0;
    curluv_close(e->cm, on_curluv_closed, e);
}
