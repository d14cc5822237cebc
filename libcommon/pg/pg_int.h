/*
 * pg_int.h - what pg.c (pool, queue, LISTEN, API) and pg_conn.c (one connection's state machine)
 * share. Private to the pg module; users include pg.h only.
 */
#ifndef CALSETA_PG_INT_H
#define CALSETA_PG_INT_H

#include "pg.h"

#include <stdint.h>

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_UP, CONN_CLOSED };

/* Statement names one connection keeps prepared; a query with another name beyond these is
 * sent unnamed, as any other. */
#define PG_MAX_PREPARED 8

struct pool_query {
    struct pool_query *next;
    char *sql;
    char **values;
    int *lengths;  /* NULL, or each value's bytes (binary parameters) */
    int *formats;  /* NULL, or 0 (text) / 1 (binary) per parameter */
    int nparams;
    int timeout_ms;
    int simple; /* internal LISTEN batch: PQsendQuery, several statements */
    const char *prep; /* a statement name (static): sent prepared, the connection preparing
                       * sql under that name the first time */
    int large;        /* handed-over parameters of 8 KB or more (documents): sent corked */
    uint64_t deadline;
    pg_result_cb cb;
    void *arg;
    char *err; /* why it failed, while it waits in the failed list */
};

struct qlist {
    struct pool_query *head, *tail;
    size_t len;
};

struct pool_conn;

/* A uv_poll_t lives as long as libpq's socket number does; a new socket gets a new watch. */
struct conn_watch {
    uv_poll_t h;
    struct pg_pool *pool;
    struct pool_conn *c;
    int fd;
};

struct pool_conn {
    struct pg_pool *pool;
    int id;
    int is_listen;
    enum conn_state state;
    PGconn *pg;
    struct conn_watch *watch;
    int events;
    int flushing;
    uv_timer_t timer;
    struct pool_query *q; /* in flight */
    PGresult *res;        /* last result of q so far */
    int backoff_ms;
    int failures;       /* consecutive failed attempts, for logging */
    size_t listen_done; /* listeners whose LISTEN is active on this connection */
    size_t listen_upto; /* listeners covered by the LISTEN in flight */
    const char *prepared[PG_MAX_PREPARED]; /* statement names prepared on this session */
    int nprepared;
    int preparing; /* q's statement is being prepared; q is sent when that is done */
    int tcp;       /* the session's socket is TCP (TCP_CORK applies) */
};

struct listener {
    char *channel;
    pg_notify_cb cb;
    void *arg;
};

struct pg_pool {
    uv_loop_t *loop;
    char *conninfo;
    int nconns;
    struct pool_conn *conns; /* nconns query connections, then the listen connection */
    struct qlist queue;
    struct qlist failed;
    uv_timer_t qtimer;
    uv_idle_t idle;
    int queue_timeout_ms;
    int connect_timeout_ms;
    size_t queue_max;
    struct listener *listeners;
    size_t nlisteners;
    uint64_t up_since_ms; /* when a query connection last came up while none was */
    int closing;
    int final;
    int open_handles;
    void (*done)(void *);
    void *done_arg;
};

/* pg.c */
void pgp_query_free(struct pool_query *q);
/* Puts back at the head of the queue a query that could not be sent. */
void pgp_requeue(struct pg_pool *pool, struct pool_query *q);
/* A one-line copy of a libpq message (newlines and runs of blanks become one space). */
char *pgp_msg_trim(const char *s);
/* Makes the idle handle run: deferred failures, LISTEN work, closing. */
void pgp_idle_kick(struct pg_pool *pool);
/* Fails q with err from the idle handle (never inside the caller's call). Takes q. */
void pgp_fail(struct pg_pool *pool, struct pool_query *q, const char *err);
/* Sends queued queries to idle query connections. */
void pgp_dispatch(struct pg_pool *pool);
/* Opens the listen connection or sends pending LISTENs on it, as needed. */
void pgp_listen_kick(struct pg_pool *pool);
/* Hands the notifications read on the listen connection to the listeners. */
void pgp_listen_deliver(struct pool_conn *c);
/* A uv handle of the pool finished closing; the last one frees the pool. */
void pgp_handle_released(struct pg_pool *pool);

/* pg_conn.c */
/* Starts connecting c (state DOWN). */
void pgp_conn_start(struct pool_conn *c);
/* Sends q on c (state UP, no query); may requeue q at the head if c turns out dead. */
void pgp_conn_send(struct pool_conn *c, struct pool_query *q);
/* Takes c down: its query fails with qerr; reconnects after delay_ms unless closing. */
void pgp_conn_fail(struct pool_conn *c, const char *qerr, int delay_ms);

#endif
