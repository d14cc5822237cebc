/*
 * metrics_api.c - /v1/metrics/alerts (alerts:read), /v1/metrics/workflows (workflows:read) and
 * /v1/metrics/summary (alerts:read). Each is one statement, a function of migrations 0012, 0020
 * and 0024.
 *
 * The alert figures, the enrichment jobs finished in 30 days and the workflow runs come from the
 * rollup of migrations 0020 and 0024 where it is current and from the tables elsewhere, so they
 * are exact as of the request; metrics_rollup_run() (housekeeping) keeps the part counted live
 * small.
 *
 * Window: from_time, to_time (ISO-8601), created_at in [from, to); if either is missing both
 * are the last 30 days, as in the original. The summary's queue block reports every job kind
 * (enrichment jobs, workflow runs, agent deliveries); the original's was always null.
 */
#include "catalogue.h"
#include "isotime.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Fills from/to; -1 after a 422 reply. */
static int window(struct reqctx *rc, char from[32], char to[32])
{
    char f[128], t[128];
    int64_t now = now_wall_us(), fu = now - 30LL * 86400 * 1000000, tu = now;
    int hf = query_param(rc, "from_time", f, sizeof f), ht = query_param(rc, "to_time", t, sizeof t);
    if (hf && isotime_parse(f, &fu) != 0) {
        reply_validation_error(rc, "datetime_parsing", "query", "from_time",
                               "Input should be a valid datetime");
        return -1;
    }
    if (ht && isotime_parse(t, &tu) != 0) {
        reply_validation_error(rc, "datetime_parsing", "query", "to_time",
                               "Input should be a valid datetime");
        return -1;
    }
    if (!hf || !ht) {
        fu = now - 30LL * 86400 * 1000000;
        tu = now;
    }
    format_iso8601_us(fu, from);
    format_iso8601_us(tu, to);
    return 0;
}

static void windowed(struct reqctx *rc, const char *sql)
{
    char from[32], to[32];
    if (window(rc, from, to) != 0)
        return;
    json_t *params = json_array();
    param_add(params, from);
    param_add(params, to);
    cat_exec(rc, sql, params, 200, NULL, NULL);
}

void route_metrics_alerts(struct reqctx *rc)
{
    windowed(rc, "SELECT calseta_metrics_alerts($1::timestamptz, $2::timestamptz)::text");
}

void route_metrics_workflows(struct reqctx *rc)
{
    windowed(rc, "SELECT calseta_metrics_workflows($1::timestamptz, $2::timestamptz)::text");
}

void route_metrics_summary(struct reqctx *rc)
{
    cat_exec(rc, "SELECT calseta_metrics_summary()::text", json_array(), 200, NULL, NULL);
}

static void on_rolled_up(void *arg, PGresult *res, const char *err)
{
    struct intake *in = arg;
    in->metrics_rolling = 0;
    if (err)
        msg_warn("metrics rollup: %s", err);
    else if (res && PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) > 0)
        msg_info("metrics rollup: %s hours recomputed", PQgetvalue(res, 0, 0));
}

void metrics_rollup_run(struct intake *in)
{
    if (in->metrics_rolling || in->draining || !in->pg)
        return;
    in->metrics_rolling = 1;
    if (pg_exec(in->pg, "SELECT calseta_metrics_rollup()", 0, NULL, on_rolled_up, in) != 0)
        in->metrics_rolling = 0;
}
