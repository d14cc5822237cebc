/*
 * pg_conn.c - one pooled PostgreSQL connection: a small state machine driven by its libpq socket
 * (uv_poll_t) and one timer.
 *
 *   DOWN --timer--> CONNECTING --PQconnectPoll OK--> UP --broken--> DOWN (backoff 100 ms..5 s)
 *
 * While CONNECTING the timer is the connect timeout; while UP and running a query with a
 * statement timeout it is that timeout; while DOWN it is the reconnect backoff. A query is sent
 * with PQsendQueryParams and flushed while PQflush says so; results are read with
 * PQconsumeInput/PQgetResult as the socket becomes readable, and the last one is delivered.
 * Outcomes other than a result go through pgp_fail() so they reach the caller from the idle
 * handle. See pg.c for the re-entrancy rules.
 */
#include "log.h"
#include "pg_int.h"
#include "util.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- socket watching ---- */

static void on_poll(uv_poll_t *h, int status, int events);

static void on_watch_closed(uv_handle_t *h)
{
    struct conn_watch *w = h->data;
    struct pg_pool *pool = w->pool;
    free(w);
    pgp_handle_released(pool);
}

static void conn_unwatch(struct pool_conn *c)
{
    struct conn_watch *w = c->watch;
    if (!w)
        return;
    c->watch = NULL;
    c->events = 0;
    w->c = NULL;
    uv_close((uv_handle_t *)&w->h, on_watch_closed);
}

/*
 * Watches libpq's current socket for events. The socket may change while connecting (another
 * host or address, SSL/GSS fallback) and may even come back with the same number, so rearm
 * re-registers it with the kernel.
 */
static int conn_watch(struct pool_conn *c, int events, int rearm)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    if (c->watch && c->watch->fd != fd)
        conn_unwatch(c);
    if (!c->watch) {
        struct conn_watch *w = xcalloc(1, sizeof(*w));
        if (uv_poll_init(c->pool->loop, &w->h, fd) != 0) {
            free(w);
            return -1;
        }
        w->h.data = w;
        w->pool = c->pool;
        w->c = c;
        c->pool->open_handles++;
        w->fd = fd;
        c->watch = w;
        c->events = 0;
    } else if (rearm && c->events) {
        uv_poll_stop(&c->watch->h);
        c->events = 0;
    }
    if (events != c->events) {
        if (uv_poll_start(&c->watch->h, events, on_poll) != 0)
            return -1;
        c->events = events;
    }
    return 0;
}

/* ---- connection lifecycle ---- */

static void conn_reset(struct pool_conn *c)
{
    uv_timer_stop(&c->timer);
    conn_unwatch(c);
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    PQclear(c->res);
    c->res = NULL;
    c->flushing = 0;
    c->listen_done = 0;
    c->nprepared = 0; /* a new session has none */
    c->preparing = 0;
}

/* Where name is in c's prepared statements, or -1. */
static int conn_prepared(const struct pool_conn *c, const char *name)
{
    for (int i = 0; i < c->nprepared; i++)
        if (c->prepared[i] == name || !strcmp(c->prepared[i], name))
            return i;
    return -1;
}

/* A prepared statement the session no longer holds as we prepared it: gone (26000, e.g. a
 * DISCARD) or its plan's result type changed under it (0A000, a migration that changed what the
 * statement returns). The name is forgotten, and the session is replaced once idle, so the next
 * call prepares the statement afresh. */
static int conn_prepared_stale(struct pool_conn *c, const struct pool_query *q, const PGresult *res)
{
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (!q->prep || !st || (strcmp(st, "26000") && strcmp(st, "0A000")))
        return 0;
    int i = conn_prepared(c, q->prep);
    if (i >= 0)
        c->prepared[i] = c->prepared[--c->nprepared];
    return 1;
}

static void on_conn_timer(uv_timer_t *t);

/*
 * Takes the connection down: its in-flight query (if any) fails with qerr, and a new connection
 * is attempted after delay_ms - unless the pool is closing, then it stays closed.
 */
void pgp_conn_fail(struct pool_conn *c, const char *qerr, int delay_ms)
{
    struct pg_pool *pool = c->pool;
    if (c->q) {
        struct pool_query *q = c->q;
        c->q = NULL;
        pgp_fail(pool, q, qerr);
    }
    conn_reset(c);
    if (pool->closing) {
        c->state = CONN_CLOSED;
        pgp_idle_kick(pool);
        return;
    }
    c->state = CONN_DOWN;
    uv_timer_start(&c->timer, on_conn_timer, (uint64_t)delay_ms, 0);
}

static int conn_next_backoff(struct pool_conn *c)
{
    int d = c->backoff_ms;
    c->backoff_ms = d * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS : d * 2;
    return d;
}

static const char *conn_name(const struct pool_conn *c)
{
    return c->is_listen ? "listen" : "query";
}

/* The server or the network went away (or never answered). */
static void conn_lost(struct pool_conn *c, const char *why)
{
    char *w = pgp_msg_trim(why);
    char *qerr = xasprintf("connection lost: %s", w);
    if (c->state == CONN_UP || c->failures == 0)
        msg_warn("postgres %s connection %d: %s", conn_name(c), c->id, w);
    else
        msg_debug("postgres %s connection %d: %s", conn_name(c), c->id, w);
    c->failures++;
    pgp_conn_fail(c, qerr, conn_next_backoff(c));
    free(qerr);
    free(w);
}

static void on_notice(void *arg, const char *message)
{
    struct pool_conn *c = arg;
    char *m = pgp_msg_trim(message);
    msg_debug("postgres %s connection %d: %s", conn_name(c), c->id, m);
    free(m);
}

void pgp_conn_start(struct pool_conn *c)
{
    const char *keys[] = {"dbname", "client_encoding", NULL};
    const char *vals[] = {c->pool->conninfo, "UTF8", NULL};

    c->pg = PQconnectStartParams(keys, vals, 1);
    if (!c->pg)
        msg_fatal("out of memory starting a postgres connection");
    PQsetNoticeProcessor(c->pg, on_notice, c);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = CONN_CONNECTING;
    uv_timer_start(&c->timer, on_conn_timer, (uint64_t)c->pool->connect_timeout_ms, 0);
    /* As if PQconnectPoll had last returned PGRES_POLLING_WRITING. */
    if (conn_watch(c, UV_WRITABLE, 1) != 0)
        conn_lost(c, "cannot watch the connection's socket");
}

/* Whether the session's socket is TCP: a Unix-domain socket has no corking. */
static int socket_is_tcp(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    return ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
}

static void conn_up(struct pool_conn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0 || conn_watch(c, UV_READABLE, 1) != 0) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    c->tcp = socket_is_tcp(PQsocket(c->pg));
    uv_timer_stop(&c->timer);
    if (!c->is_listen && !pg_pool_up(c->pool))
        c->pool->up_since_ms = uv_now(c->pool->loop);
    c->state = CONN_UP;
    c->backoff_ms = PG_BACKOFF_MIN_MS;
    if (c->failures)
        msg_info("postgres %s connection %d: connected again", conn_name(c), c->id);
    c->failures = 0;
    if (c->is_listen)
        pgp_listen_kick(c->pool);
    else
        pgp_dispatch(c->pool);
}

static void conn_connect_step(struct pool_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (conn_watch(c, UV_READABLE, 1) != 0)
            conn_lost(c, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, UV_WRITABLE, 1) != 0)
            conn_lost(c, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_OK:
        conn_up(c);
        return;
    default:
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
}

/* PQcancel blocks (it opens its own connection), so it runs on a detached thread. */
static void *cancel_main(void *arg)
{
    PGcancel *cn = arg;
    char errbuf[256];
    (void)PQcancel(cn, errbuf, sizeof(errbuf));
    PQfreeCancel(cn);
    return NULL;
}

static void conn_cancel_async(struct pool_conn *c)
{
    PGcancel *cn = PQgetCancel(c->pg);
    pthread_attr_t attr;
    pthread_t tid;

    if (!cn)
        return;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, cancel_main, cn) != 0) {
        msg_warn("postgres: cannot start a thread to cancel a timed-out query");
        PQfreeCancel(cn);
    }
    pthread_attr_destroy(&attr);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct pool_conn *c = t->data;
    switch (c->state) {
    case CONN_DOWN:
        pgp_conn_start(c);
        break;
    case CONN_CONNECTING:
        conn_lost(c, "connect timeout");
        break;
    case CONN_UP:
        if (c->q) {
            msg_warn("postgres query connection %d: statement timeout after %d ms, reconnecting",
                     c->id, c->q->timeout_ms);
            conn_cancel_async(c);
            pgp_conn_fail(c, "query timeout", 0);
        }
        break;
    case CONN_CLOSED:
        break;
    }
}

/* ---- queries on a connection ---- */

static void conn_flush(struct pool_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    c->flushing = r == 1;
    if (conn_watch(c, UV_READABLE | (c->flushing ? UV_WRITABLE : 0), 0) != 0)
        conn_lost(c, "cannot watch the connection's socket");
}

static void discard_notifies(struct pool_conn *c)
{
    PGnotify *n;
    while ((n = PQnotifies(c->pg)))
        PQfreemem(n);
}

/*
 * libpq writes a message past 8 KB as soon as it is complete: a large Bind goes out alone and
 * the Describe, Execute and Sync after it in a second write (strace shows the two sendto calls).
 * The server then wakes for the Bind, binds it and waits for the rest, reported active; when the
 * intake is preempted between the two writes (a loaded box) that wait is long (ClientRead in
 * the server's wait events). Corked, the kernel holds a partial segment until the uncork, so
 * the query reaches the server in one piece and wakes it once. Errors are ignored: without
 * the option the query only goes in two pieces.
 */
static void conn_cork(struct pool_conn *c, int on)
{
#ifdef TCP_CORK
    int fd = PQsocket(c->pg);
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
#else
    (void)c; /* a system without the option: the query goes in two pieces */
    (void)on;
#endif
}

/*
 * Sends q on the idle connection c. Before sending, reads whatever is pending: a connection the
 * server closed while idle is noticed here and q goes back to the head of the queue unharmed.
 */
void pgp_conn_send(struct pool_conn *c, struct pool_query *q)
{
    struct pg_pool *pool = c->pool;
    int ok, corked = 0;

    if (!c->is_listen) {
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
            pgp_requeue(pool, q);
            conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
        discard_notifies(c);
    }
    if (c->tcp && q->large && !q->simple) {
        conn_cork(c, 1);
        corked = 1;
    }
    if (q->simple) {
        ok = PQsendQuery(c->pg, q->sql);
    } else if (q->prep && conn_prepared(c, q->prep) >= 0) {
        ok = PQsendQueryPrepared(c->pg, q->prep, q->nparams, (const char *const *)q->values,
                                 q->lengths, q->formats, 0);
    } else if (q->prep && c->nprepared < PG_MAX_PREPARED) {
        /* prepared once per session: parse, analysis and planning are not paid per call (the
         * query goes when the prepare's result is in, see conn_complete) */
        ok = PQsendPrepare(c->pg, q->prep, q->sql, q->nparams, NULL);
        c->preparing = ok;
    } else {
        ok = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, (const char *const *)q->values,
                               q->lengths, q->formats, 0);
    }
    c->q = q;
    if (!ok) {
        if (corked)
            conn_cork(c, 0);
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            conn_lost(c, PQerrorMessage(c->pg));
        } else {
            char *e = pgp_msg_trim(PQerrorMessage(c->pg));
            c->q = NULL;
            pgp_fail(pool, q, e);
            free(e);
        }
        return;
    }
    if (q->timeout_ms > 0) {
        uv_update_time(pool->loop); /* the loop's cached time may be well behind */
        uv_timer_start(&c->timer, on_conn_timer, (uint64_t)q->timeout_ms, 0);
    }
    /* the uncork sends what the kernel holds; a flush left unfinished goes on when writable */
    int fd = corked ? PQsocket(c->pg) : -1;
    conn_flush(c);
    if (corked && c->pg && PQsocket(c->pg) == fd)
        conn_cork(c, 0);
}

static int result_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

static char *result_error(const PGresult *res)
{
    const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (m && *m)
        return pgp_msg_trim(m);
    if (PQresultStatus(res) == PGRES_EMPTY_QUERY)
        return xstrdup("empty query");
    m = PQresultErrorMessage(res);
    if (m && *m)
        return pgp_msg_trim(m);
    return xstrdup(PQresStatus(PQresultStatus(res)));
}

/*
 * PQgetResult returned NULL: the query is over. A successful result is delivered even when the
 * connection broke right after it (the statement did complete); an error on a broken connection
 * is the connection's death, not an SQL error. Then looks for more work.
 */
static void conn_complete(struct pool_conn *c)
{
    struct pg_pool *pool = c->pool;
    struct pool_query *q = c->q;
    PGresult *res = c->res;

    uv_timer_stop(&c->timer);
    if (!res || (!result_ok(res) && PQstatus(c->pg) == CONNECTION_BAD)) {
        char *why = pgp_msg_trim(res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
        conn_lost(c, why); /* fails q, clears res */
        free(why);
        return;
    }
    if (c->preparing) {
        /* the prepare is done: the query itself goes now (a name the session holds already,
         * 42P05, is as good as prepared) */
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        c->preparing = 0;
        if (result_ok(res) || (state && !strcmp(state, "42P05"))) {
            c->prepared[c->nprepared++] = q->prep;
            PQclear(res);
            c->res = NULL;
            c->q = NULL;
            pgp_conn_send(c, q);
            /* a connection that broke meanwhile put q back at the head of the queue: another
             * idle one may take it now */
            if (c->q != q && !pool->closing)
                pgp_dispatch(pool);
            return;
        }
    }
    int stale = !result_ok(res) && conn_prepared_stale(c, q, res);
    c->q = NULL;
    c->res = NULL;
    if (result_ok(res)) {
        q->cb(q->arg, res, NULL);
    } else {
        char *err = result_error(res);
        q->cb(q->arg, res, err);
        free(err);
    }
    PQclear(res);
    pgp_query_free(q);
    if (stale && c->state == CONN_UP && !c->q && !pool->closing)
        pgp_conn_fail(c, "prepared statement invalidated", 0); /* a new session, at once */
    if (pool->closing)
        pgp_idle_kick(pool);
    else
        pgp_dispatch(pool);
}

static void conn_read(struct pool_conn *c)
{
    if (!PQconsumeInput(c->pg)) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (!c->is_listen)
        discard_notifies(c);
    while (c->q && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            conn_complete(c);
            break;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            pgp_conn_fail(c, "COPY is not supported", 0);
            return;
        }
        PQclear(c->res);
        c->res = r;
    }
    /* A callback may have sent a new query on c, or c may have gone down meanwhile. */
    if (c->state != CONN_UP)
        return;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->is_listen)
        pgp_listen_deliver(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct conn_watch *w = h->data;
    struct pool_conn *c = w->c;

    if (!c)
        return;
    if (status < 0) {
        /* libuv reports POLLERR as an error and stops the handle; libpq tells what happened. */
        c->events = 0;
        if (c->state == CONN_CONNECTING) {
            conn_connect_step(c);
        } else if (c->state == CONN_UP) {
            conn_read(c);
            if (c->state == CONN_UP)
                conn_lost(c, "socket error");
        }
        return;
    }
    if (c->state == CONN_CONNECTING) {
        conn_connect_step(c);
        return;
    }
    if (c->state != CONN_UP)
        return;
    if (events & (UV_READABLE | UV_DISCONNECT))
        conn_read(c);
    if (c->state == CONN_UP && c->flushing)
        conn_flush(c);
}
