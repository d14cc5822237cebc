/*
 * pg.c - asynchronous PostgreSQL connection pool on a libuv loop (see pg.h): the queue, dispatch,
 * LISTEN/NOTIFY, the deferred-callback idle handle, the public API and closing. One connection's
 * state machine is in pg_conn.c.
 *
 * Shape: one FIFO queue of queries, nconns query connections and one LISTEN connection, each a
 * small state machine (DOWN -> CONNECTING -> UP -> DOWN ...) driven by a uv_poll_t on the libpq
 * socket and one uv_timer_t whose meaning follows the state (reconnect backoff, connect timeout,
 * statement timeout).
 *
 * Re-entrancy rules that keep "exactly one callback" true:
 *   - results (success or SQL error) are delivered from the socket callback, after the
 *     connection has been put back in a consistent state, and nothing touches the connection's
 *     libpq state after the user callback returns except through functions that re-check it;
 *   - every other outcome (connection lost, timeouts, queue full, shutting down) moves the query
 *     to the `failed` list, which an idle handle drains on the next loop iteration, so no
 *     callback ever runs inside pg_exec();
 *   - pg_pool_listen() and pg_pool_close() only record the request and start the idle handle;
 *     the work happens there, outside any of our own stack frames;
 *   - memory is only freed from uv close callbacks, never while a callback of ours is running.
 */
#include "log.h"
#include "pg_int.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- queries and lists ---- */

static struct pool_query *query_new(const char *sql, int nparams, const char *const *values,
                                    int timeout_ms, pg_result_cb cb, void *arg)
{
    struct pool_query *q = xcalloc(1, sizeof(*q));
    q->sql = xstrdup(sql);
    q->nparams = nparams;
    if (nparams > 0) {
        q->values = xcalloc((size_t)nparams, sizeof(char *));
        for (int i = 0; i < nparams; i++)
            q->values[i] = values[i] ? xstrdup(values[i]) : NULL;
    }
    q->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    q->cb = cb;
    q->arg = arg;
    return q;
}

void pgp_query_free(struct pool_query *q)
{
    for (int i = 0; i < q->nparams; i++)
        free(q->values[i]);
    free(q->values);
    free(q->lengths);
    free(q->formats);
    free(q->sql);
    free(q->err);
    free(q);
}

static void qlist_push(struct qlist *l, struct pool_query *q)
{
    q->next = NULL;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    l->len++;
}

static void qlist_push_front(struct qlist *l, struct pool_query *q)
{
    q->next = l->head;
    l->head = q;
    if (!l->tail)
        l->tail = q;
    l->len++;
}

static struct pool_query *qlist_pop(struct qlist *l)
{
    struct pool_query *q = l->head;
    if (!q)
        return NULL;
    l->head = q->next;
    if (!l->head)
        l->tail = NULL;
    l->len--;
    q->next = NULL;
    return q;
}

/* A one-line copy of a libpq message: runs of newlines, tabs and spaces become one space. */
char *pgp_msg_trim(const char *s)
{
    char *out = xstrdup(s && *s ? s : "unknown error");
    size_t n = 0;
    int space = 1; /* drops leading blanks */

    for (const char *p = out; *p; p++) {
        int blank = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r';
        if (blank && space)
            continue;
        out[n++] = blank ? ' ' : *p;
        space = blank;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = 0;
    return out;
}

static void on_idle(uv_idle_t *h);

void pgp_idle_kick(struct pg_pool *pool)
{
    if (!pool->final && !uv_is_active((uv_handle_t *)&pool->idle))
        uv_idle_start(&pool->idle, on_idle);
}

/* Fails q later, from the idle handle: callbacks never run inside the caller's call. */
void pgp_fail(struct pg_pool *pool, struct pool_query *q, const char *err)
{
    free(q->err);
    q->err = xstrdup(err);
    qlist_push(&pool->failed, q);
    pgp_idle_kick(pool);
}

/* ---- dispatch and the queue deadline ---- */

void pgp_dispatch(struct pg_pool *pool)
{
    if (pool->closing)
        return;
    for (int i = 0; i < pool->nconns && pool->queue.head; i++) {
        struct pool_conn *c = &pool->conns[i];
        if (c->state == CONN_UP && !c->q)
            pgp_conn_send(c, qlist_pop(&pool->queue));
    }
}

static void on_qtimer(uv_timer_t *t)
{
    struct pg_pool *pool = t->data;
    uint64_t now = uv_now(pool->loop);
    struct pool_query *q;

    while ((q = pool->queue.head) && q->deadline <= now) {
        /* Unavailable if no connection was up at some point of the wait; busy otherwise. */
        int down =
            !pg_pool_up(pool) || pool->up_since_ms > q->deadline - (uint64_t)pool->queue_timeout_ms;
        qlist_pop(&pool->queue);
        pgp_fail(pool, q, down ? "database unavailable" : "database busy: queue timeout");
    }
    if (q)
        uv_timer_start(&pool->qtimer, on_qtimer, q->deadline - now, 0);
}

/* Puts back a query that could not be sent; it keeps its place and its deadline. */
void pgp_requeue(struct pg_pool *pool, struct pool_query *q)
{
    uint64_t now = uv_now(pool->loop);
    qlist_push_front(&pool->queue, q);
    uv_timer_start(&pool->qtimer, on_qtimer, q->deadline > now ? q->deadline - now : 0, 0);
}

static void queue_add(struct pg_pool *pool, struct pool_query *q)
{
    uv_update_time(pool->loop);
    uint64_t now = uv_now(pool->loop);
    q->deadline = now + (uint64_t)pool->queue_timeout_ms;
    qlist_push(&pool->queue, q);
    if (!uv_is_active((uv_handle_t *)&pool->qtimer))
        uv_timer_start(&pool->qtimer, on_qtimer, (uint64_t)pool->queue_timeout_ms, 0);
}

/* ---- LISTEN/NOTIFY ---- */

static void listen_on_result(void *arg, PGresult *res, const char *err)
{
    struct pool_conn *c = arg;
    struct pg_pool *pool = c->pool;

    if (!res)
        return; /* connection lost or shutting down: the next connection LISTENs again */
    if (err)
        msg_warn("postgres LISTEN failed: %s", err);
    size_t from = c->listen_done, to = c->listen_upto;
    c->listen_done = to;
    for (size_t i = from; i < to && !pool->closing; i++)
        pool->listeners[i].cb(pool->listeners[i].arg, pool->listeners[i].channel, NULL);
    pgp_listen_kick(pool);
}

/* Sends LISTEN for the listeners not yet listening on the (idle, up) listen connection. */
static void listen_send(struct pool_conn *c)
{
    struct pg_pool *pool = c->pool;
    struct buf sql;

    buf_init(&sql);
    for (size_t i = c->listen_done; i < pool->nlisteners; i++) {
        const char *ch = pool->listeners[i].channel;
        char *id = PQescapeIdentifier(c->pg, ch, strlen(ch));
        if (!id) {
            msg_warn("postgres: cannot LISTEN on channel \"%s\": %s", ch, PQerrorMessage(c->pg));
            continue;
        }
        buf_printf(&sql, "LISTEN %s;", id);
        PQfreemem(id);
    }
    c->listen_upto = pool->nlisteners;
    if (sql.len == 0)
        buf_puts(&sql, "SELECT 1");
    struct pool_query *q = query_new(sql.data, 0, NULL, 0, listen_on_result, c);
    q->simple = 1;
    buf_destroy(&sql);
    pgp_conn_send(c, q);
}

void pgp_listen_kick(struct pg_pool *pool)
{
    struct pool_conn *c = &pool->conns[pool->nconns];

    if (pool->closing || pool->nlisteners == 0)
        return;
    if (c->state == CONN_DOWN && !uv_is_active((uv_handle_t *)&c->timer))
        pgp_conn_start(c);
    if (c->state == CONN_UP && !c->q && c->listen_done < pool->nlisteners)
        listen_send(c);
}

void pgp_listen_deliver(struct pool_conn *c)
{
    struct pg_pool *pool = c->pool;
    PGnotify *n;

    while (c->state == CONN_UP && (n = PQnotifies(c->pg))) {
        for (size_t i = 0; i < pool->nlisteners && !pool->closing; i++) {
            struct listener *l = &pool->listeners[i];
            if (strcmp(l->channel, n->relname) == 0)
                l->cb(l->arg, n->relname, n->extra);
        }
        PQfreemem(n);
    }
}

/* ---- the idle handle: deferred failures, listen work, closing ---- */

static void close_progress(struct pg_pool *pool);

static void on_idle(uv_idle_t *h)
{
    struct pg_pool *pool = h->data;
    struct qlist batch = pool->failed;
    struct pool_query *q;

    /* Only what has failed so far: a caller that retries at once from its callback (and fails
     * at once again) is served on the next iteration instead of keeping the loop here. */
    memset(&pool->failed, 0, sizeof(pool->failed));
    while ((q = qlist_pop(&batch))) {
        q->cb(q->arg, NULL, q->err);
        pgp_query_free(q);
    }
    if (pool->closing)
        close_progress(pool);
    else
        pgp_listen_kick(pool);
    if (!pool->final && !pool->failed.head)
        uv_idle_stop(&pool->idle);
}

/* ---- public API ---- */

struct pg_pool *pg_pool_new(uv_loop_t *loop, const char *conninfo, int nconns, int queue_timeout_ms)
{
    struct pg_pool *pool = xcalloc(1, sizeof(*pool));

    pool->loop = loop;
    pool->conninfo = xstrdup(conninfo ? conninfo : "");
    pool->nconns = nconns > 0 ? nconns : 1;
    pool->queue_timeout_ms = queue_timeout_ms > 0 ? queue_timeout_ms : 1;
    pool->connect_timeout_ms = PG_CONNECT_TIMEOUT_MS;
    pool->queue_max = PG_QUEUE_MAX;
    pool->conns = xcalloc((size_t)pool->nconns + 1, sizeof(*pool->conns));
    uv_timer_init(loop, &pool->qtimer);
    pool->qtimer.data = pool;
    uv_idle_init(loop, &pool->idle);
    pool->idle.data = pool;
    pool->open_handles = 2;
    for (int i = 0; i <= pool->nconns; i++) {
        struct pool_conn *c = &pool->conns[i];
        c->pool = pool;
        c->id = i;
        c->is_listen = i == pool->nconns;
        c->backoff_ms = PG_BACKOFF_MIN_MS;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        pool->open_handles++;
    }
    for (int i = 0; i < pool->nconns; i++)
        pgp_conn_start(&pool->conns[i]);
    return pool;
}

void pg_pool_set_connect_timeout(struct pg_pool *pool, int ms)
{
    pool->connect_timeout_ms = ms > 0 ? ms : PG_CONNECT_TIMEOUT_MS;
}

void pg_pool_set_queue_max(struct pg_pool *pool, size_t max)
{
    pool->queue_max = max;
}

/* Queues q (its callback runs exactly once from now on). */
static void query_submit(struct pg_pool *pool, struct pool_query *q)
{
    if (pool->closing) {
        pgp_fail(pool, q, "shutting down");
        return;
    }
    if (pool->queue.len >= pool->queue_max) {
        pgp_fail(pool, q, "queue full");
        return;
    }
    queue_add(pool, q);
    pgp_dispatch(pool);
}

static int args_valid(const struct pg_pool *pool, const char *sql, int nparams,
                      const void *values, pg_result_cb cb)
{
    return pool && sql && cb && nparams >= 0 && nparams <= PG_MAX_PARAMS &&
           (nparams == 0 || values) && !pool->final;
}

int pg_exec_timeout(struct pg_pool *pool, const char *sql, int nparams, const char *const *values,
                    int timeout_ms, pg_result_cb cb, void *arg)
{
    if (!args_valid(pool, sql, nparams, values, cb))
        return -1;
    query_submit(pool, query_new(sql, nparams, values, timeout_ms, cb, arg));
    return 0;
}

/* pg_exec_owned(), pg_exec_prepared_owned() and pg_exec_prepared_bin(): the parameters are
 * taken, also when refused. lengths and formats: NULL (every parameter text), or copied. */
static int exec_owned(struct pg_pool *pool, const char *prep, const char *sql, int nparams,
                      char **values, const int *lengths, const int *formats, pg_result_cb cb,
                      void *arg)
{
    if (!args_valid(pool, sql, nparams, values, cb)) {
        for (int i = 0; values && i < nparams; i++)
            free(values[i]);
        return -1;
    }
    struct pool_query *q = query_new(sql, 0, NULL, 0, cb, arg);
    q->prep = prep;
    /* parameters past libpq's 8 KB output chunk go corked (see conn_cork); a small query goes in
     * one write anyway, so it is spared the two setsockopt calls */
    size_t total = 0;
    for (int i = 0; i < nparams && total < 8192; i++)
        if (values[i])
            total += formats && formats[i] ? (size_t)lengths[i] : strnlen(values[i], 8192 - total);
    q->large = total >= 8192;
    if (nparams > 0) {
        q->nparams = nparams;
        q->values = xmalloc((size_t)nparams * sizeof(char *));
        memcpy(q->values, values, (size_t)nparams * sizeof(char *));
    }
    if (nparams > 0 && formats) {
        q->lengths = xmalloc((size_t)nparams * sizeof(int));
        q->formats = xmalloc((size_t)nparams * sizeof(int));
        for (int i = 0; i < nparams; i++) {
            q->formats[i] = formats[i];
            q->lengths[i] = formats[i] ? lengths[i] : 0;
        }
    }
    query_submit(pool, q);
    return 0;
}

int pg_exec_owned(struct pg_pool *pool, const char *sql, int nparams, char **values,
                  pg_result_cb cb, void *arg)
{
    return exec_owned(pool, NULL, sql, nparams, values, NULL, NULL, cb, arg);
}

/* the server cuts names at 63 bytes: a longer one could meet another statement's */
static int name_valid(const char *name)
{
    return name && *name && strlen(name) <= 63;
}

int pg_exec_prepared_owned(struct pg_pool *pool, const char *name, const char *sql, int nparams,
                           char **values, pg_result_cb cb, void *arg)
{
    if (!name_valid(name))
        cb = NULL; /* refused as invalid arguments, the parameters freed */
    return exec_owned(pool, name, sql, nparams, values, NULL, NULL, cb, arg);
}

int pg_exec_prepared_bin(struct pg_pool *pool, const char *name, const char *sql, int nparams,
                         char **values, const int *lengths, const int *formats, pg_result_cb cb,
                         void *arg)
{
    int ok = name_valid(name) && lengths && formats;
    for (int i = 0; ok && values && i < nparams; i++)
        /* the server checks a NULL's format code too (Bind refuses it) */
        if (formats[i] < 0 || formats[i] > 1 || (values[i] && formats[i] == 1 && lengths[i] < 0))
            ok = 0;
    if (!ok)
        cb = NULL; /* refused as invalid arguments, the parameters freed */
    return exec_owned(pool, name, sql, nparams, values, lengths, formats, cb, arg);
}

int pg_exec(struct pg_pool *pool, const char *sql, int nparams, const char *const *values,
            pg_result_cb cb, void *arg)
{
    return pg_exec_timeout(pool, sql, nparams, values, 0, cb, arg);
}

void pg_pool_listen(struct pg_pool *pool, const char *channel, pg_notify_cb cb, void *arg)
{
    if (!channel || !cb || pool->closing)
        return;
    pool->listeners = xrealloc(pool->listeners, (pool->nlisteners + 1) * sizeof(struct listener));
    struct listener *l = &pool->listeners[pool->nlisteners++];
    l->channel = xstrdup(channel);
    l->cb = cb;
    l->arg = arg;
    pgp_idle_kick(pool);
}

int pg_pool_up(const struct pg_pool *pool)
{
    for (int i = 0; i < pool->nconns; i++)
        if (pool->conns[i].state == CONN_UP)
            return 1;
    return 0;
}

size_t pg_pool_queued(const struct pg_pool *pool)
{
    return pool->queue.len;
}

void pg_pool_close(struct pg_pool *pool, void (*done)(void *arg), void *arg)
{
    if (pool->closing) {
        msg_warn("postgres: pg_pool_close called twice");
        return;
    }
    pool->closing = 1;
    pool->done = done;
    pool->done_arg = arg;
    pgp_idle_kick(pool);
}

/* ---- closing ---- */

static void pool_free(struct pg_pool *pool)
{
    for (size_t i = 0; i < pool->nlisteners; i++)
        free(pool->listeners[i].channel);
    free(pool->listeners);
    free(pool->conns);
    free(pool->conninfo);
    free(pool);
}

/* Every uv handle of the pool counts in open_handles; the last one closed frees the pool. */
void pgp_handle_released(struct pg_pool *pool)
{
    if (--pool->open_handles > 0 || !pool->final)
        return;
    void (*done)(void *) = pool->done;
    void *arg = pool->done_arg;
    pool_free(pool);
    if (done)
        done(arg);
}

static void on_pool_handle_closed(uv_handle_t *h)
{
    pgp_handle_released(h->data);
}

/*
 * Fails the queue, shuts every connection without a running query, and once nothing runs any
 * more closes all handles; the last close callback frees the pool and calls done.
 */
static void close_progress(struct pg_pool *pool)
{
    struct pool_query *q;
    int busy = 0;

    if (pool->final)
        return;
    while ((q = qlist_pop(&pool->queue)))
        pgp_fail(pool, q, "shutting down");
    uv_timer_stop(&pool->qtimer);
    for (int i = 0; i <= pool->nconns; i++) {
        struct pool_conn *c = &pool->conns[i];
        if (c->state == CONN_UP && c->q && !c->is_listen) {
            busy++;
            continue;
        }
        if (c->state != CONN_CLOSED)
            pgp_conn_fail(c, "shutting down", 0);
    }
    if (busy || pool->failed.head)
        return;
    pool->final = 1;
    for (int i = 0; i <= pool->nconns; i++) {
        pool->conns[i].timer.data = pool;
        uv_close((uv_handle_t *)&pool->conns[i].timer, on_pool_handle_closed);
    }
    uv_close((uv_handle_t *)&pool->qtimer, on_pool_handle_closed);
    uv_close((uv_handle_t *)&pool->idle, on_pool_handle_closed);
}
