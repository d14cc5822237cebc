/*
 * quota.c - provider rate caps shared by every worker: the engine's lease function
 * (engine_lease_fn) on PostgreSQL.
 *
 * One row per provider in enrichment_provider_quota counts the requests granted in the
 * current fixed window of the database clock; calseta_enrich_quota_lease() grants up to the
 * asked block without ever passing the window's limit, and says how long the window still
 * runs. Workers on any host agree on the windows because only the database clock is read.
 * Leases go over their own connection: queued behind a worker's result writes they would
 * stall every provider at each window's start.
 */
#include "enricher.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

/* a slow answer is a failed one: the worker falls back to its own bucket for a second */
#define QUOTA_TIMEOUT_MS 2000

struct quota_req {
    engine_leased_cb cb;
    void *arg;
};

static void on_quota(void *arg, PGresult *res, const char *err)
{
    struct quota_req *q = arg;
    long granted = 0, ms_left = 0;
    int failed = err != NULL || PQntuples(res) != 1;
    if (err)
        msg_warn("quota lease failed: %s", err);
    if (!failed) {
        granted = atol(PQgetvalue(res, 0, 0));
        ms_left = atol(PQgetvalue(res, 0, 1));
    }
    q->cb(q->arg, granted, ms_left, failed);
    free(q);
}

void quota_lease(void *lease_arg, const char *provider, long want, long limit, long window_ms,
                 engine_leased_cb cb, void *arg)
{
    struct enricher *en = lease_arg;
    char w[24], l[24], win[24];
    snprintf(w, sizeof w, "%ld", want);
    snprintf(l, sizeof l, "%ld", limit);
    snprintf(win, sizeof win, "%ld", window_ms);
    const char *params[4] = {provider, w, l, win};
    struct quota_req *q = xcalloc(1, sizeof *q);
    q->cb = cb;
    q->arg = arg;
    if (pg_exec_timeout(en->quota_pg,
                        "SELECT granted, ms_left FROM calseta_enrich_quota_lease($1, $2, $3, $4)",
                        4, params, QUOTA_TIMEOUT_MS, on_quota, q) != 0)
        msg_fatal("quota lease: query refused by the pool");
}
