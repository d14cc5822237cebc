/*
 * audit_events.c - GET /v1/audit-events (admin): the audit table, newest first, filtered by
 * event_type (comma list), key_prefix, from_time/to_time (ISO-8601), paginated.
 */
#include "intake.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct audit_list_op {
    struct reqctx *rc;
    int page, page_size;
};

static void on_list(void *arg, PGresult *res, const char *err)
{
    struct audit_list_op *op = arg;
    struct reqctx *rc = op->rc;
    int page = op->page, page_size = op->page_size;
    free(op);
    if (reply_if_pg_failed(rc, res, err))
        return;
    json_t *items = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
    reply_list(rc, items ? items : json_array(), atoll(PQgetvalue(res, 0, 0)), page, page_size);
}

void route_list_audit_events(struct reqctx *rc)
{
    struct audit_list_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    if (parse_pagination(rc, &op->page, &op->page_size) != 0) {
        free(op);
        return;
    }
    char types[1024] = "", prefix[64] = "", from[64] = "", to[64] = "";
    int has_types = query_param(rc, "event_type", types, sizeof types);
    int has_prefix = query_param(rc, "key_prefix", prefix, sizeof prefix);
    int has_from = query_param(rc, "from_time", from, sizeof from);
    int has_to = query_param(rc, "to_time", to, sizeof to);
    char lim[16], off[24];
    snprintf(lim, sizeof lim, "%d", op->page_size);
    snprintf(off, sizeof off, "%lld", (long long)(op->page - 1) * op->page_size);
    const char *p[6] = {has_types ? types : NULL, has_prefix ? prefix : NULL,
                        has_from ? from : NULL,   has_to ? to : NULL,
                        lim,                      off};
    pg_exec(rc->in->pg,
            "WITH f AS (SELECT * FROM audit_events e "
            " WHERE ($1::text IS NULL OR e.event_type = ANY(string_to_array($1, ','))) "
            "   AND ($2::text IS NULL OR e.actor_key_prefix = $2) "
            "   AND ($3::text IS NULL OR e.occurred_at >= $3::timestamptz) "
            "   AND ($4::text IS NULL OR e.occurred_at <= $4::timestamptz)) "
            "SELECT (SELECT count(*) FROM f), coalesce((SELECT json_agg(x.j ORDER BY x.o DESC, "
            "x.id DESC) FROM (SELECT f.id, f.occurred_at AS o, json_build_object("
            "'event_id', f.event_id, 'event_type', f.event_type, 'occurred_at', "
            "calseta_ts(f.occurred_at), 'service', f.service, 'pid', f.pid, 'request_id', "
            "f.request_id, 'actor_key_prefix', f.actor_key_prefix, 'client_ip', f.client_ip, "
            "'fields', f.fields) AS j FROM f ORDER BY f.occurred_at DESC, f.id DESC "
            "LIMIT $5::int OFFSET $6::bigint) x), '[]'::json)::text",
            6, p, on_list, op);
}
