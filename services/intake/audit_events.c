/*
 * audit_events.c - GET /v1/audit-events (admin): the audit table, newest first, filtered by
 * event_type (comma list), key_prefix, from_time/to_time (ISO-8601), paginated.
 */
#include "intake.h"
#include "isotime.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* The filters; $1 event types (comma list), $2 key prefix, $3/$4 the time range. */
#define AUDIT_WHERE                                                                                \
    "($1::text IS NULL OR e.event_type = ANY(string_to_array($1, ','))) "                          \
    "AND ($2::text IS NULL OR e.actor_key_prefix = $2) "                                           \
    "AND ($3::text IS NULL OR e.occurred_at >= $3::timestamptz) "                                  \
    "AND ($4::text IS NULL OR e.occurred_at <= $4::timestamptz)"

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

/* Whether v is a plain decimal number ("1700000000", "-1.5"): the original's datetime reads
 * such a query value as Unix time, in seconds, or in milliseconds above 2e10 as pydantic does. */
static int epoch_param(const char *v, int64_t *us)
{
    const char *p = v + (*v == '-');
    size_t digits = strspn(p, "0123456789");
    if (digits == 0 || (p[digits] && (p[digits] != '.' || !p[digits + 1] ||
                                      p[digits + 1 + strspn(p + digits + 1, "0123456789")])))
        return -1;
    double secs = strtod(v, NULL);
    if (secs > 2e10 || secs < -2e10)
        secs /= 1000;
    return isotime_from_epoch(secs, us);
}

/* A datetime query parameter as the original reads it (ISO-8601, or a number as Unix time),
 * rewritten as UTC text for the statement: 1 when given (out filled), 0 when absent, -1 after
 * a 422 (PostgreSQL alone would take words such as "yesterday", or fail the request with a
 * 500). */
static int time_param(struct reqctx *rc, const char *name, char out[32])
{
    char v[128];
    int64_t us;
    if (!query_param(rc, name, v, sizeof v))
        return 0;
    if (epoch_param(v, &us) != 0 && isotime_parse(v, &us) != 0) {
        reply_validation_error(rc, "datetime_parsing", "query", name, "Input should be a valid datetime");
        return -1;
    }
    format_iso8601_us(us, out);
    return 1;
}

void route_list_audit_events(struct reqctx *rc)
{
    struct audit_list_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    if (parse_pagination(rc, &op->page, &op->page_size) != 0) {
        free(op);
        return;
    }
    char types[1024] = "", prefix[64] = "", from[32] = "", to[32] = "";
    int has_types = query_param(rc, "event_type", types, sizeof types);
    int has_prefix = query_param(rc, "key_prefix", prefix, sizeof prefix);
    int has_from = time_param(rc, "from_time", from);
    int has_to = has_from < 0 ? -1 : time_param(rc, "to_time", to);
    if (has_from < 0 || has_to < 0) {
        free(op);
        return;
    }
    char lim[16], off[24];
    snprintf(lim, sizeof lim, "%d", op->page_size);
    snprintf(off, sizeof off, "%lld", (long long)(op->page - 1) * op->page_size);
    const char *p[6] = {has_types ? types : NULL, has_prefix ? prefix : NULL,
                        has_from ? from : NULL,   has_to ? to : NULL,
                        lim,                      off};
    /* The count and the page are separate reads: the page walks (occurred_at, id) backwards
     * and stops after it (a top-N sort of the sort keys when a filter picks another index);
     * only the page's rows are then read whole for their JSON. */
    pg_exec(rc->in->pg,
            "SELECT (SELECT count(*) FROM audit_events e WHERE " AUDIT_WHERE "), "
            "coalesce((SELECT json_agg(json_build_object('event_id', f.event_id, 'event_type', "
            "f.event_type, 'occurred_at', calseta_ts(f.occurred_at), 'service', f.service, 'pid', "
            "f.pid, 'request_id', f.request_id, 'actor_key_prefix', f.actor_key_prefix, "
            "'client_ip', f.client_ip, 'fields', f.fields) ORDER BY x.o DESC, x.id DESC) FROM "
            "(SELECT e.occurred_at AS o, e.id FROM audit_events e WHERE " AUDIT_WHERE
            " ORDER BY 1 DESC, 2 DESC LIMIT $5::int OFFSET $6::bigint) x "
            "JOIN audit_events f ON f.id = x.id), '[]'::json)::text",
            6, p, on_list, op);
}
