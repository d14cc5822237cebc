/*
 * runs.c - workflow runs: taken under a lease, sent to a runner, their outcome recorded.
 *
 * Runs are leased jobs (migrations/0006_workflow_leases.sql). The intake commits a queued run
 * (execute, an approved request) and wakes workflowd with NOTIFY calseta_workflowd; workflowd
 * takes it under a lease when it has a free slot (WORKFLOW_MAX_INFLIGHT):
 * calseta_workflow_run_claim sets it running, attempt + 1, and returns the current code, the
 * indicator/alert contexts and the allowed secrets as Fernet tokens. The RUN goes to a runner
 * over the bus and the outcome is recorded as the lease holder (calseta_workflow_run_finish).
 * No answer (runner died) or no runner connected: the run is given back
 * (calseta_workflow_run_release) and taken again; if workflowd dies, its lease expires. A sweep
 * (WORKFLOWD_POLL_INTERVAL_MS) takes queued runs and expired leases, so no run is lost, and
 * several workflowd are safe: the claim is conditional, one of them wins. Secrets are decrypted
 * into locked memory only to build the request and wiped as soon as it is encoded
 * (run_request.h).
 */
#include "workflowd.h"

#include "jsonparse.h"
#include "log.h"
#include "run_request.h"
#include "runner_client.h"
#include "settings_table.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the asynchronous run: claim under a lease → RUN → finish or release --------------- */

#define NO_RUNNER_PAUSE_MS 5000
#define BUSY_RUNNER_PAUSE_MS 500

struct run_op {
    struct workflowd *wd;
    char run_uuid[37];
    char attempt[12];
};

static void run_op_done(struct run_op *op)
{
    struct workflowd *wd = op->wd;
    wd->inflight--;
    free(op);
    runs_kick(wd); /* a slot is free: take the next queued run */
}

static void on_finished(void *arg, PGresult *res, const char *err)
{
    struct run_op *op = arg;
    if (!res || err)
        msg_error("workflow run %s: recording the outcome failed (the lease will expire and the "
                  "run be taken again): %s",
                  op->run_uuid, err ? err : "database unavailable");
    else if (PQgetisnull(res, 0, 0))
        msg_warn("workflow run %s: attempt %s lost its lease; its outcome was not recorded",
                 op->run_uuid, op->attempt);
    run_op_done(op);
}

static void run_finish(struct run_op *op, const char *status, json_t *result, const char *log,
                       int64_t duration_ms)
{
    struct workflowd *wd = op->wd;
    json_t *f = json_pack("{s:s,s:s,s:I,s:s}", "run_uuid", op->run_uuid, "status", status,
                          "duration_ms", (json_int_t)duration_ms, "attempt", op->attempt);
    log_event(LOG_INFO, "workflow_run_completed", f);
    json_decref(f);
    if (!wd->pg) {
        json_decref(result);
        run_op_done(op);
        return;
    }
    char *res = json_dumps(result, JSON_COMPACT);
    char dur[24];
    snprintf(dur, sizeof dur, "%lld", (long long)(duration_ms > INT32_MAX ? INT32_MAX : duration_ms));
    const char *params[7] = {op->run_uuid, op->wd->owner, op->attempt, status, res,
                             log ? log : "", dur};
    pg_exec(wd->pg,
            "SELECT calseta_workflow_run_finish($1::uuid, $2, $3::int, $4, $5::jsonb, $6, "
            "$7::int)::text",
            7, params, on_finished, op);
    free(res);
    json_decref(result);
}

static void on_released(void *arg, PGresult *res, const char *err)
{
    struct run_op *op = arg;
    if (!res || err)
        msg_warn("workflow run %s: giving it back failed (its lease will expire): %s",
                 op->run_uuid, err ? err : "database unavailable");
    run_op_done(op);
}

/* No runner answered (unsent: none was connected): the run goes back to the queue, to be taken
 * again by the sweep of any intake; a sent attempt counts towards the attempt limit. */
static void run_release(struct run_op *op, int unsent)
{
    struct workflowd *wd = op->wd;
    json_t *f = json_pack("{s:s,s:s,s:s}", "run_uuid", op->run_uuid, "attempt", op->attempt,
                          "reason", unsent ? "not started (no runner connected, or busy)"
                                           : "no answer from the runner");
    log_event(LOG_WARN, "workflow_run_released", f);
    json_decref(f);
    if (!wd->pg) {
        run_op_done(op);
        return;
    }
    const char *params[4] = {op->run_uuid, op->wd->owner, op->attempt, unsent ? "t" : "f"};
    pg_exec(wd->pg, "SELECT calseta_workflow_run_release($1::uuid, $2, $3::int, $4::boolean)", 4,
            params, on_released, op);
}

static void on_run_result(void *arg, int status, const struct runner_result *r)
{
    struct run_op *op = arg;
    if (status == RUNNER_CLIENT_CLOSED) { /* shutting down: the lease expires, another takes it */
        op->wd->inflight--;
        free(op);
        return;
    }
    if (status == RUNNER_CLIENT_OK && r->status == RUNNER_BUSY) { /* not started: uncounted */
        op->wd->sweep_paused_until = uv_now(op->wd->loop) + BUSY_RUNNER_PAUSE_MS;
        run_release(op, 1);
        return;
    }
    if (status != RUNNER_CLIENT_OK) {
        if (status == RUNNER_CLIENT_UNSENT) /* no runner: do not take runs back for a while */
            op->wd->sweep_paused_until = uv_now(op->wd->loop) + NO_RUNNER_PAUSE_MS;
        run_release(op, status == RUNNER_CLIENT_UNSENT);
        return;
    }
    run_finish(op, runner_status_name(r->status), run_result_json(r), r->log_output, r->duration_ms);
}

static void on_claimed(void *arg, PGresult *res, const char *err)
{
    struct run_op *op = arg;
    struct workflowd *wd = op->wd;
    if (!res || err || PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        if (!res || err)
            msg_error("workflow run %s: claim failed: %s", op->run_uuid,
                      err ? err : "database unavailable");
        run_op_done(op); /* taken by another process, or finished */
        return;
    }
    json_t *doc = json_loads_wide(PQgetvalue(res, 0, 0), 0);
    if (!doc || json_object_get(doc, "failed")) { /* failed in the claim */
        json_decref(doc);
        run_op_done(op);
        return;
    }
    snprintf(op->attempt, sizeof op->attempt, "%lld",
             (long long)json_integer_value(json_object_get(doc, "attempt")));
    if (!wd->runner) {
        json_decref(doc);
        run_release(op, 1);
        return;
    }
    struct runner_run_req req;
    int timeout = (int)json_integer_value(json_object_get(doc, "timeout_seconds"));
    run_request_init(&req, doc, op->run_uuid, timeout > 0 ? timeout : 300,
                     wd->have_key ? &wd->key : NULL, wd->cfg->settings);
    json_decref(doc);
    runner_run(wd->runner, &req, on_run_result, op); /* encoded (copied) here */
    run_request_destroy(&req);
}

static int run_start(struct workflowd *wd, const char *run_uuid)
{
    if (!wd->pg || wd->draining || wd->inflight >= wd->max_inflight)
        return -1; /* stays queued: the sweep takes it when a slot is free */
    struct run_op *op = xcalloc(1, sizeof *op);
    op->wd = wd;
    wd->inflight++;
    snprintf(op->run_uuid, sizeof op->run_uuid, "%s", run_uuid);
    char grace[16], attempts[16];
    snprintf(grace, sizeof grace, "%d", wd->run_grace_seconds);
    snprintf(attempts, sizeof attempts, "%d", wd->max_attempts);
    const char *params[4] = {run_uuid, wd->owner, grace, attempts};
    pg_exec(wd->pg, "SELECT calseta_workflow_run_claim($1::uuid, $2, $3::int, $4::int)::text",
            4, params, on_claimed, op);
    return 0;
}


/* ---- the sweep: queued runs and expired leases, up to the free slots ---------------------- */

static void on_claimable(void *arg, PGresult *res, const char *err)
{
    struct workflowd *wd = arg;
    wd->runs_sweeping = 0;
    if (!res || err) {
        msg_warn("workflow run sweep failed: %s", err ? err : "database unavailable");
        return;
    }
    int n = PQntuples(res), started = 0;
    for (int i = 0; i < n; i++, started++)
        if (run_start(wd, PQgetvalue(res, i, 0)) != 0)
            break;
    if (wd->runs_again || (n > 0 && started == n)) { /* woken meanwhile, or there may be more */
        wd->runs_again = 0;
        runs_kick(wd);
    }
}

void runs_kick(struct workflowd *wd)
{
    int room = wd->max_inflight - wd->inflight;
    if (wd->draining || !wd->pg || !wd->runner || room <= 0 ||
        uv_now(wd->loop) < wd->sweep_paused_until)
        return;
    if (wd->runs_sweeping) {
        wd->runs_again = 1;
        return;
    }
    char lim[16];
    snprintf(lim, sizeof lim, "%d", room);
    const char *params[2] = {"0", lim};
    wd->runs_sweeping = 1;
    pg_exec(wd->pg, "SELECT calseta_workflow_runs_claimable($1::int, $2::int)::text", 2, params,
            on_claimable, wd);
}

static int setting_int(const struct config *c, const char *name, int min, int max)
{
    char err[256];
    int x;
    if (setting_integer(c->settings, name, min, max, &x, err, sizeof err))
        msg_fatal("configuration error: %s", err);
    return x;
}

void runs_init(struct workflowd *wd)
{
    char err[256];
    const struct config *c = wd->cfg;
    wd->run_grace_seconds = setting_int(c, "WORKFLOW_RUN_GRACE_SECONDS", 3, 86400);
    wd->max_attempts = setting_int(c, "WORKFLOW_RUN_MAX_ATTEMPTS", 1, 100);
    wd->max_inflight = setting_int(c, "WORKFLOW_MAX_INFLIGHT", 1, 10000);
    wd->have_key = c->encryption_key && *c->encryption_key &&
                   fernet_key_parse(c->encryption_key, &wd->key) == 0;
    if (!wd->have_key)
        msg_warn("ENCRYPTION_KEY is not set or not a valid Fernet key: workflow secrets cannot "
                 "be given to runs");
    wd->runner = runner_client_new(wd->loop, c, c->runner_endpoint, err, sizeof err);
    if (!wd->runner)
        msg_fatal("workflow runner client: %s (RUNNER_ENDPOINT=%s)", err, c->runner_endpoint);
    /* a sent run is given back after its timeout + the grace without answer */
    runner_client_set_timeouts(wd->runner, 0, wd->run_grace_seconds * 1000);
}

void runs_close(struct workflowd *wd)
{
    if (wd->runner) {
        runner_client_free(wd->runner); /* runs still waiting: their leases expire */
        wd->runner = NULL;
    }
    explicit_bzero(&wd->key, sizeof wd->key);
}
