/*
 * pg.h - asynchronous PostgreSQL connection pool on a libuv loop.
 *
 * A pool keeps nconns connections to one server and runs queries on them through libpq's
 * asynchronous API, so nothing ever blocks the loop: connections are opened with
 * PQconnectStartParams/PQconnectPoll, queries sent with PQsendQueryParams and read with
 * PQconsumeInput/PQgetResult as the socket becomes ready. Queries wait in one FIFO queue and go to
 * whichever connection is idle; each connection runs one query at a time, so callbacks of queries
 * that ran on the same connection come in the order the queries were queued.
 *
 * Failure model (the point of this module):
 *   - every pg_exec() that returns 0 gets exactly one callback, never from inside pg_exec() itself;
 *   - a broken connection fails its in-flight query ("connection lost: ...") and is reopened with
 *     exponential backoff (100 ms doubling to 5 s); a connect attempt taking longer than the
 *     connect timeout (5 s) is abandoned;
 *   - a query waits in the queue at most queue_timeout_ms, then fails with "database unavailable"
 *     (no query connection was up during some of that wait) or "database busy: queue timeout"
 *     (connections were up all along but all busy);
 *   - the queue is bounded (PG_QUEUE_MAX by default); beyond it queries fail with "queue full";
 *   - a query with a statement timeout that expires fails with "query timeout": its connection is
 *     dropped and reopened at once, and a cancel request is sent from a short-lived detached
 *     thread (PQcancel blocks, so it never runs on the loop) so the server stops the work.
 *
 * Transactions: each pg_exec() runs on whichever connection is free, in autocommit, so a
 * BEGIN ... COMMIT spread over several calls does NOT work. One statement is one transaction:
 * write several tables atomically with data-modifying CTEs (WITH a AS (INSERT ... RETURNING id)
 * INSERT INTO b SELECT ... FROM a), and batch many rows into one statement (and one commit) with
 * array or JSON parameters (INSERT ... SELECT ... FROM json_populate_recordset(NULL::t, $1)).
 *
 * Callbacks may call pg_exec(), pg_pool_listen() and pg_pool_close() re-entrantly. The pool has
 * no global state. Connections always use client_encoding UTF8. Host names in conninfo are
 * resolved synchronously by libpq at connect time; use numeric addresses (or hostaddr=) where
 * a slow resolver would matter.
 */
#ifndef CALSETA_PG_H
#define CALSETA_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define PG_QUEUE_MAX 10000
#define PG_CONNECT_TIMEOUT_MS 5000
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000
#define PG_MAX_PARAMS 65535

struct pg_pool;

/*
 * Result callback, called exactly once per accepted query.
 *   success:          res != NULL, PQresultStatus(res) is PGRES_TUPLES_OK or PGRES_COMMAND_OK,
 *                     err == NULL;
 *   SQL error:        res != NULL (PQresultErrorField(res, PG_DIAG_SQLSTATE) usable), err is the
 *                     server's primary message on one line ("empty query" for an empty one);
 *   no result:        res == NULL, err says why: "connection lost: ...", "database unavailable",
 *                     "database busy: queue timeout", "queue full", "query timeout",
 *                     "shutting down", "COPY is not supported".
 * "connection lost" and "query timeout" mean the outcome is unknown: the statement may or may not
 * have committed. The other no-result errors mean nothing was executed or committed.
 * res is valid only during the callback; the pool PQclear()s it afterwards.
 */
typedef void (*pg_result_cb)(void *arg, PGresult *res, const char *err);

/* Notification callback; payload == NULL means "notifications may have been missed" (see
 * pg_pool_listen). */
typedef void (*pg_notify_cb)(void *arg, const char *channel, const char *payload);

/* Creates a pool of nconns (>= 1) connections and starts connecting them. queue_timeout_ms
 * (>= 1) bounds the time a query waits in the queue for a connection. Never returns NULL. */
struct pg_pool *pg_pool_new(uv_loop_t *loop, const char *conninfo, int nconns,
                            int queue_timeout_ms);

/* Tuning for tests and special callers; call right after pg_pool_new(). */
void pg_pool_set_connect_timeout(struct pg_pool *pool, int ms);
void pg_pool_set_queue_max(struct pg_pool *pool, size_t max);

/*
 * Queues one SQL statement with nparams text-format parameters ($1..$n; values[i] == NULL is
 * SQL NULL). sql and values are copied. Returns 0 when the query was accepted (cb will be called
 * exactly once, never synchronously from inside this call), -1 on invalid arguments (sql or cb
 * NULL, nparams out of 0..PG_MAX_PARAMS, values NULL with nparams > 0), in which case cb is not
 * called.
 */
int pg_exec(struct pg_pool *pool, const char *sql, int nparams, const char *const *values,
            pg_result_cb cb, void *arg);

/* As pg_exec(), with a statement timeout counted from the moment the query is sent to the server
 * (timeout_ms <= 0: none). Time spent in the queue is bounded by queue_timeout_ms instead. */
int pg_exec_timeout(struct pg_pool *pool, const char *sql, int nparams, const char *const *values,
                    int timeout_ms, pg_result_cb cb, void *arg);

/* As pg_exec(), but the parameters are taken instead of copied: values[i] (malloc'd or NULL)
 * belong to the pool from the call on, whatever it returns. For parameters of tens of KB
 * (the intake's batch documents), whose copy cost as much as building them. */
int pg_exec_owned(struct pg_pool *pool, const char *sql, int nparams, char **values,
                  pg_result_cb cb, void *arg);

/* As pg_exec_owned(), sent as the prepared statement name (a string that outlives the pool,
 * e.g. a literal): each connection prepares sql under that name the first time it runs it, so
 * the server parses and plans it once per session instead of on every call (a few us per call
 * of the intake's batch). The same name must always come with the same sql. */
int pg_exec_prepared_owned(struct pg_pool *pool, const char *name, const char *sql, int nparams,
                           char **values, pg_result_cb cb, void *arg);

/* As pg_exec_prepared_owned(), with each parameter's format: formats[i] 0 is text (values[i] a
 * NUL-terminated string, lengths[i] unused), 1 is binary (values[i] holds lengths[i] >= 0 bytes
 * in the type's wire form, e.g. an array as array_send writes it: the server reads it with no
 * parsing or escaping). values[i] == NULL is SQL NULL. The values are taken (also when refused);
 * lengths and formats are copied. The statement's parameter types come from sql (casts such as
 * $1::text[]), so a binary value must be of exactly that type. -1 on invalid arguments as
 * pg_exec_prepared_owned(), or a format other than 0/1, or a binary value without a length. */
int pg_exec_prepared_bin(struct pg_pool *pool, const char *name, const char *sql, int nparams,
                         char **values, const int *lengths, const int *formats, pg_result_cb cb,
                         void *arg);

/* The binary arrays pg_exec_prepared_bin takes are built with pg_arr.h. */

/*
 * LISTENs on channel (exact name, case-sensitive, quoted by the pool) on a dedicated connection
 * opened on first use; cb(arg, channel, payload) runs for every notification on it. Each time the
 * LISTEN becomes active - the first time and again after every reconnect - cb is called once with
 * payload == NULL: notifications sent before that moment may have been missed, so a cache should
 * be flushed. May be called several times (several channels, several callbacks per channel).
 * There is no unlisten; listeners live until pg_pool_close().
 */
void pg_pool_listen(struct pg_pool *pool, const char *channel, pg_notify_cb cb, void *arg);

/* 1 when at least one query connection is established, else 0. */
int pg_pool_up(const struct pg_pool *pool);

/* Number of queries waiting for a connection (not counting those running). */
size_t pg_pool_queued(const struct pg_pool *pool);

/*
 * Stops the pool: queued queries fail with "shutting down", running queries finish (or time out;
 * a running query without a statement timeout is waited for), the LISTEN connection is dropped,
 * then the connections and uv handles are closed and done(arg) is called from the loop; the pool
 * is freed just before, so it must not be used once done has run. Until then pg_exec() still
 * returns 0 and its callback gets "shutting down" - except in the last moments, while the pool's
 * own handles are closing, when it returns -1. Call once; done may be NULL.
 */
void pg_pool_close(struct pg_pool *pool, void (*done)(void *arg), void *arg);

#endif
