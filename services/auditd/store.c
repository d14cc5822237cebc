/*
 * store.c - the append-only audit_events table, written by one blocking libpq connection.
 *
 * Rows go in as one INSERT per batch from a JSON array (jsonb_to_recordset), in arrival order,
 * with ON CONFLICT (event_id) DO NOTHING; RETURNING tells which ids were new.
 */
#include "auditd.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

struct store {
    char *conninfo;
    PGconn *conn;
    int down_logged;
};

static const char INSERT_SQL[] =
    "INSERT INTO audit_events (event_id, occurred_at, service, pid, event_type, request_id, "
    "actor_key_prefix, client_ip, fields) "
    "SELECT x.id::uuid, 'epoch'::timestamptz + x.ts * interval '1 microsecond', x.svc, x.pid, "
    "x.type, x.rid, x.kp, x.ip, coalesce(x.f, '{}'::jsonb) "
    "FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (id text, ts bigint, svc text, pid int, "
    "type text, rid text, kp text, ip text, f jsonb)) WITH ORDINALITY "
    "AS x(id, ts, svc, pid, type, rid, kp, ip, f, n) ORDER BY x.n "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id::text";

struct store *store_new(const char *conninfo)
{
    struct store *st = xcalloc(1, sizeof *st);
    st->conninfo = conninfo && *conninfo ? xstrdup(conninfo) : NULL;
    return st;
}

int store_enabled(const struct store *st)
{
    return st->conninfo != NULL;
}

void store_reset(struct store *st)
{
    if (st->conn)
        PQfinish(st->conn);
    st->conn = NULL;
}

int store_connect(struct store *st)
{
    if (!st->conninfo)
        return 0;
    if (st->conn && PQstatus(st->conn) == CONNECTION_OK)
        return 0;
    store_reset(st);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "client_encoding",
                          "keepalives_idle", NULL};
    const char *vals[] = {st->conninfo, "5", "calseta-auditd", "UTF8", "10", NULL};
    st->conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        if (!st->down_logged)
            msg_error("audit table: cannot connect: %s (holding acknowledgements)",
                      PQerrorMessage(st->conn));
        st->down_logged = 1;
        store_reset(st);
        return -1;
    }
    if (st->down_logged)
        msg_info("audit table: connected again");
    st->down_logged = 0;
    return 0;
}

static int run(struct store *st, const char *sql)
{
    PGresult *r = PQexec(st->conn, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        msg_error("audit table: %s: %s", sql, PQerrorMessage(st->conn));
    PQclear(r);
    if (ok)
        return 0;
    return PQstatus(st->conn) == CONNECTION_OK ? -2 : -1;
}

int store_begin(struct store *st)
{
    if (!st->conninfo)
        return 0;
    if (store_connect(st) != 0)
        return -1;
    return run(st, "BEGIN");
}

static json_t *rows_json(struct audit_event **ev, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        struct audit_event *e = ev[i];
        json_array_append_new(
            a, json_pack("{s:s,s:I,s:s,s:i,s:s,s:s?,s:s?,s:s?,s:O}", "id", e->event_id, "ts",
                         (json_int_t)e->ts_us, "svc", e->service, "pid", e->pid, "type",
                         e->event_type, "rid", e->request_id, "kp", e->actor_key_prefix, "ip",
                         e->client_ip, "f", e->fields));
    }
    return a;
}

int store_insert(struct store *st, struct audit_event **ev, size_t n, char *inserted)
{
    memset(inserted, 0, n);
    if (!st->conninfo) {
        memset(inserted, 1, n);
        return 0;
    }
    if (!st->conn)
        return -1;
    json_t *a = rows_json(ev, n);
    char *param = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    const char *vals[1] = {param};
    PGresult *r = PQexecParams(st->conn, INSERT_SQL, 1, NULL, vals, NULL, NULL, 0);
    free(param);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        msg_error("audit table: insert: %s", PQerrorMessage(st->conn));
        rc = PQstatus(st->conn) == CONNECTION_OK ? -2 : -1;
    } else {
        /* n is small (one batch): match returned ids back to rows. */
        for (int t = 0; t < PQntuples(r); t++) {
            const char *id = PQgetvalue(r, t, 0);
            for (size_t i = 0; i < n; i++)
                if (!inserted[i] && !memcmp(ev[i]->event_id, id, AUDIT_ID_LEN)) {
                    inserted[i] = 1;
                    break;
                }
        }
    }
    PQclear(r);
    return rc;
}

int store_commit(struct store *st)
{
    if (!st->conninfo)
        return 0;
    if (!st->conn)
        return -1;
    return run(st, "COMMIT");
}

void store_rollback(struct store *st)
{
    if (st->conn && PQstatus(st->conn) == CONNECTION_OK) {
        PGresult *r = PQexec(st->conn, "ROLLBACK");
        PQclear(r);
    }
}

void store_free(struct store *st)
{
    if (!st)
        return;
    store_reset(st);
    free(st->conninfo);
    free(st);
}
