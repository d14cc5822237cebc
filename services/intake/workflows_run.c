/*
 * workflows_run.c - POST /v1/workflows/{uuid}/execute and /test, and the run pipeline.
 *
 * Runs are leased jobs (migrations/0006_workflow_leases.sql). Execute commits first
 * (calseta_workflow_execute: a queued run, or a pending approval when the gate applies) and
 * answers 202; then, if this process has a free slot (WORKFLOW_MAX_INFLIGHT), it takes the run
 * under a lease (calseta_workflow_run_claim: status running, attempt + 1, the current code,
 * indicator/alert contexts, the allowed secrets as Fernet tokens), sends RUN to a runner over
 * ZeroMQ and records the outcome as the lease holder (calseta_workflow_run_finish). No answer
 * (runner died) or no runner connected → the run is given back (calseta_workflow_run_release)
 * and taken again; if this process dies, its lease expires. A sweep every second (wf_sweep in
 * workflows_api.c) takes queued runs and expired leases, so no run is lost. Secrets are
 * decrypted into locked memory only to build the request and wiped as soon as it is encoded.
 * Test runs synchronously through the same runner with a synthetic indicator and stores nothing.
 * A built-in (system) workflow running its seeded code (the claim says is_system, and which
 * integration) also gets that integration's credentials from the settings in the request's
 * `integrations` object (OKTA_DOMAIN/OKTA_API_TOKEN[/OKTA_BASE_URL], ENTRA_TENANT_ID/
 * ENTRA_CLIENT_ID/ENTRA_CLIENT_SECRET[/ENTRA_LOGIN_URL/ENTRA_GRAPH_URL]); user workflows never.
 */
#include "jsonparse.h"
#include "workflows_api.h"

#include "audit.h"
#include "crypto.h"
#include "indicator_types.h"
#include "log.h"
#include "runner_client.h"
#include "secmem.h"
#include "settings.h"
#include "settings_table.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- building the RUN request -------------------------------------------------------------- */

struct run_input {
    struct runner_run_req req;
};

static char *dump_or_null(json_t *v)
{
    return json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
}

static const char *setting(struct workflows *wf, const char *name)
{
    return setting_value(wf->in->cfg.settings, name);
}

/* Wipes every string inside v (credentials) before it is freed. */
static void json_wipe_strings(json_t *v)
{
    const char *k;
    json_t *x;
    if (json_is_string(v))
        explicit_bzero((char *)json_string_value(v), json_string_length(v));
    json_object_foreach(v, k, x)
    {
        json_wipe_strings(x);
    }
}

/* {"okta": {...}} or {"entra": {...}} for the built-in's own integration when every setting it
 * needs is there, else {} (the workflow then fails "... integration is not configured"). */
static char *integrations_json(struct workflows *wf, const char *integration)
{
    json_t *o = json_object();
    if (integration && !strcmp(integration, "okta") && setting(wf, "OKTA_DOMAIN") &&
        setting(wf, "OKTA_API_TOKEN")) {
        const char *base = setting(wf, "OKTA_BASE_URL");
        json_object_set_new(o, "okta",
                            json_pack("{s:s,s:s,s:s?}", "domain", setting(wf, "OKTA_DOMAIN"),
                                      "api_token", setting(wf, "OKTA_API_TOKEN"), "base_url",
                                      base));
    } else if (integration && !strcmp(integration, "entra") && setting(wf, "ENTRA_TENANT_ID") &&
               setting(wf, "ENTRA_CLIENT_ID") && setting(wf, "ENTRA_CLIENT_SECRET")) {
        json_object_set_new(
            o, "entra",
            json_pack("{s:s,s:s,s:s,s:s?,s:s?}", "tenant_id", setting(wf, "ENTRA_TENANT_ID"),
                      "client_id", setting(wf, "ENTRA_CLIENT_ID"), "client_secret",
                      setting(wf, "ENTRA_CLIENT_SECRET"), "login_url",
                      setting(wf, "ENTRA_LOGIN_URL"), "graph_url", setting(wf, "ENTRA_GRAPH_URL")));
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_wipe_strings(o);
    json_decref(o);
    return text;
}

/* Fills in->req from a claim/test document; secrets decrypted into secmem. */
static void run_input_init(struct workflows *wf, struct run_input *in, json_t *doc,
                           const char *run_uuid, int timeout_seconds)
{
    struct runner_run_req *r = &in->req;
    memset(in, 0, sizeof *in);
    r->run_uuid = xstrdup(run_uuid);
    r->code = xstrdup(json_string_value(json_object_get(doc, "code")) ?: "");
    r->timeout_seconds = timeout_seconds;
    r->trigger_context_json = dump_or_null(json_object_get(doc, "trigger_context"));
    r->indicator_json = dump_or_null(json_object_get(doc, "indicator"));
    r->alert_json = dump_or_null(json_object_get(doc, "alert"));
    json_t *secrets = json_object_get(doc, "secrets");
    size_t n = json_object_size(secrets);
    if (n > RUNNER_MAX_SECRETS)
        n = RUNNER_MAX_SECRETS;
    r->secrets = xcalloc(n ? n : 1, sizeof *r->secrets);
    const char *name;
    json_t *tok;
    json_object_foreach(secrets, name, tok)
    {
        uint8_t *pt = NULL;
        size_t ptlen;
        if (r->nsecrets >= n)
            break;
        if (!wf->have_key || !json_is_string(tok) ||
            fernet_decrypt(&wf->key, json_string_value(tok), &pt, &ptlen) != 0) {
            json_t *f = json_pack("{s:s,s:s}", "run_uuid", run_uuid, "name", name);
            log_event(LOG_WARN, "workflow_secret_decrypt_failed", f);
            json_decref(f);
            continue;
        }
        r->secrets[r->nsecrets].name = xstrdup(name);
        r->secrets[r->nsecrets].value = (char *)pt; /* secmem, NUL-terminated */
        r->nsecrets++;
    }
    if (json_is_true(json_object_get(doc, "is_system"))) /* set by the claim only */
        r->integrations_json =
            integrations_json(wf, json_string_value(json_object_get(doc, "integration")));
}

static void run_input_destroy(struct run_input *in)
{
    struct runner_run_req *r = &in->req;
    for (size_t i = 0; i < r->nsecrets; i++) {
        free(r->secrets[i].name);
        secmem_free(r->secrets[i].value);
    }
    free(r->secrets);
    free(r->run_uuid);
    free(r->code);
    free(r->trigger_context_json);
    free(r->indicator_json);
    free(r->alert_json);
    if (r->integrations_json) {
        explicit_bzero(r->integrations_json, strlen(r->integrations_json));
        free(r->integrations_json);
    }
    memset(in, 0, sizeof *in);
}

static json_t *result_json(const struct runner_result *r)
{
    json_t *data = r->data_json ? json_loads(r->data_json, 0, NULL) : NULL;
    if (!json_is_object(data)) {
        json_decref(data);
        data = json_object();
    }
    return json_pack("{s:b,s:s,s:o}", "success", r->success, "message",
                     r->message ? r->message : "", "data", data);
}

/* ---- the asynchronous run: claim under a lease → RUN → finish or release --------------- */

#define NO_RUNNER_PAUSE_MS 5000
#define BUSY_RUNNER_PAUSE_MS 500

struct run_op {
    struct workflows *wf;
    char run_uuid[37];
    char attempt[12];
};

static void run_op_done(struct run_op *op)
{
    struct workflows *wf = op->wf;
    wf->inflight--;
    free(op);
    wf_sweep_kick(wf); /* a slot is free: take the next queued run */
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
    struct intake *in = op->wf->in;
    json_t *f = json_pack("{s:s,s:s,s:I,s:s}", "run_uuid", op->run_uuid, "status", status,
                          "duration_ms", (json_int_t)duration_ms, "attempt", op->attempt);
    log_event(LOG_INFO, "workflow_run_completed", f);
    json_decref(f);
    if (!in->pg) {
        json_decref(result);
        run_op_done(op);
        return;
    }
    char *res = json_dumps(result, JSON_COMPACT);
    char dur[24];
    snprintf(dur, sizeof dur, "%lld", (long long)(duration_ms > INT32_MAX ? INT32_MAX : duration_ms));
    const char *params[7] = {op->run_uuid, op->wf->owner, op->attempt, status, res,
                             log ? log : "", dur};
    pg_exec(in->pg,
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
    struct intake *in = op->wf->in;
    json_t *f = json_pack("{s:s,s:s,s:s}", "run_uuid", op->run_uuid, "attempt", op->attempt,
                          "reason", unsent ? "not started (no runner connected, or busy)"
                                           : "no answer from the runner");
    log_event(LOG_WARN, "workflow_run_released", f);
    json_decref(f);
    if (!in->pg) {
        run_op_done(op);
        return;
    }
    const char *params[4] = {op->run_uuid, op->wf->owner, op->attempt, unsent ? "t" : "f"};
    pg_exec(in->pg, "SELECT calseta_workflow_run_release($1::uuid, $2, $3::int, $4::boolean)", 4,
            params, on_released, op);
}

static void on_run_result(void *arg, int status, const struct runner_result *r)
{
    struct run_op *op = arg;
    if (status == RUNNER_CLIENT_CLOSED) { /* shutting down: the lease expires, another takes it */
        op->wf->inflight--;
        free(op);
        return;
    }
    if (status == RUNNER_CLIENT_OK && r->status == RUNNER_BUSY) { /* not started: uncounted */
        op->wf->sweep_paused_until = uv_now(op->wf->in->loop) + BUSY_RUNNER_PAUSE_MS;
        run_release(op, 1);
        return;
    }
    if (status != RUNNER_CLIENT_OK) {
        if (status == RUNNER_CLIENT_UNSENT) /* no runner: do not take runs back for a while */
            op->wf->sweep_paused_until = uv_now(op->wf->in->loop) + NO_RUNNER_PAUSE_MS;
        run_release(op, status == RUNNER_CLIENT_UNSENT);
        return;
    }
    run_finish(op, runner_status_name(r->status), result_json(r), r->log_output, r->duration_ms);
}

static void on_claimed(void *arg, PGresult *res, const char *err)
{
    struct run_op *op = arg;
    struct workflows *wf = op->wf;
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
    if (!wf->runner) {
        json_decref(doc);
        run_release(op, 1);
        return;
    }
    struct run_input in;
    int timeout = (int)json_integer_value(json_object_get(doc, "timeout_seconds"));
    run_input_init(wf, &in, doc, op->run_uuid, timeout > 0 ? timeout : 300);
    json_decref(doc);
    runner_run(wf->runner, &in.req, on_run_result, op); /* encoded (copied) here */
    run_input_destroy(&in);
}

int wf_run_start(struct workflows *wf, const char *run_uuid)
{
    if (!wf->in->pg || wf->stopping || wf->inflight >= wf->max_inflight)
        return -1; /* stays queued: the sweep takes it when a slot is free */
    struct run_op *op = xcalloc(1, sizeof *op);
    op->wf = wf;
    wf->inflight++;
    snprintf(op->run_uuid, sizeof op->run_uuid, "%s", run_uuid);
    char grace[16], attempts[16];
    snprintf(grace, sizeof grace, "%d", wf->run_grace_seconds);
    snprintf(attempts, sizeof attempts, "%d", wf->max_attempts);
    const char *params[4] = {run_uuid, wf->owner, grace, attempts};
    pg_exec(wf->in->pg, "SELECT calseta_workflow_run_claim($1::uuid, $2, $3::int, $4::int)::text",
            4, params, on_claimed, op);
    return 0;
}

/* ---- POST /v1/workflows/{uuid}/execute --------------------------------------------------- */

struct exec_op {
    struct reqctx *rc;
    char wf_uuid[37];
};

static void reply_exec_error(struct reqctx *rc, const char *e, json_t *doc)
{
    if (!strcmp(e, "not_found"))
        reply_error(rc, 404, "NOT_FOUND", "Workflow not found.", NULL);
    else if (!strcmp(e, "alert_not_found"))
        reply_error(rc, 404, "NOT_FOUND", "Alert not found.", NULL);
    else if (!strcmp(e, "agent_fields_required"))
        reply_validation_error(rc, "value_error", "body", "reason",
                         "Agent keys must provide reason and confidence when executing workflows");
    else
        reply_error(rc, 400, "WORKFLOW_NOT_EXECUTABLE",
                    "Workflow is not active and cannot be executed.",
                    json_pack("{s:O}", "state", json_object_get(doc, "state")));
}

/* One execution through the gate (wf_execute): the statement's outcome, then the audit
 * record and the run start or approval notification, whoever asked. */
struct wf_exec {
    struct intake *in;
    char wf_uuid[37];
    char *key_prefix, *request_id, *client_ip;
    wf_execute_cb cb;
    void *arg;
};

static void on_wf_executed(void *arg, PGresult *res, const char *err)
{
    struct wf_exec *x = arg;
    struct intake *in = x->in;
    json_t *doc = res && !err && PQntuples(res) ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (doc && !json_object_get(doc, "error")) {
        const char *status = json_string_value(json_object_get(doc, "status"));
        if (status && !strcmp(status, "queued")) {
            const char *run = json_string_value(json_object_get(doc, "run_uuid"));
            audit_emit(in->audit, "workflow_run", x->request_id, x->key_prefix, x->client_ip,
                       json_pack("{s:s,s:s,s:O}", "workflow_uuid", x->wf_uuid, "run_uuid", run,
                                 "trigger_type", json_object_get(doc, "trigger_type")));
            wf_run_start(in->workflows, run);
        } else {
            audit_emit(in->audit, "workflow_approval_requested", x->request_id, x->key_prefix,
                       x->client_ip,
                       json_pack("{s:s,s:O,s:O}", "workflow_uuid", x->wf_uuid, "approval_uuid",
                                 json_object_get(doc, "approval_request_uuid"), "trigger_type",
                                 json_object_get(doc, "trigger_type")));
        }
    } else if (!doc && res && !err) {
        err = "unreadable outcome";
    }
    x->cb(x->arg, res, err, doc);
    json_decref(doc);
    free(x->key_prefix);
    free(x->request_id);
    free(x->client_ip);
    free(x);
}

void wf_execute(struct intake *in, const char *wf_uuid, json_t *p, const char *key_prefix,
                const char *request_id, const char *client_ip, wf_execute_cb cb, void *arg)
{
    uint8_t raw[32];
    char token[48], dflt[16];
    crypto_random(raw, sizeof raw);
    crypto_b64_encode(raw, sizeof raw, CRYPTO_B64_URL | CRYPTO_B64_NOPAD, token);
    snprintf(dflt, sizeof dflt, "%d", in->workflows->approval_default_timeout);
    struct wf_exec *x = xcalloc(1, sizeof *x);
    x->in = in;
    snprintf(x->wf_uuid, sizeof x->wf_uuid, "%s", wf_uuid);
    x->key_prefix = xstrdup(key_prefix);
    x->request_id = xstrdup(request_id);
    x->client_ip = xstrdup(client_ip);
    x->cb = cb;
    x->arg = arg;
    char *ps = json_dumps(p, JSON_COMPACT);
    const char *params[5] = {wf_uuid, ps, key_prefix, dflt, token};
    if (pg_exec(in->pg, "SELECT calseta_workflow_execute($1::uuid, $2::jsonb, $3, $4::int, $5)::text",
                5, params, on_wf_executed, x) != 0)
        on_wf_executed(x, NULL, "database queue full");
    free(ps);
    explicit_bzero(token, sizeof token);
}

static void on_executed(void *arg, PGresult *res, const char *err, json_t *doc)
{
    struct exec_op *op = arg;
    struct reqctx *rc = op->rc;
    free(op);
    if (!doc) {
        reply_pg_failure(rc, res, err);
        return;
    }
    const char *e = json_string_value(json_object_get(doc, "error"));
    if (e) {
        reply_exec_error(rc, e, doc);
        return;
    }
    const char *status = json_string_value(json_object_get(doc, "status"));
    json_t *out;
    if (status && !strcmp(status, "queued"))
        out = json_pack("{s:O,s:s}", "run_uuid", json_object_get(doc, "run_uuid"), "status",
                        "queued");
    else
        out = json_pack("{s:s,s:O,s:O}", "status", "pending_approval", "approval_request_uuid",
                        json_object_get(doc, "approval_request_uuid"), "expires_at",
                        json_object_get(doc, "expires_at"));
    reply_data(rc, 202, out);
}

/* The checked execute body as an object, or NULL after a 422. */
static json_t *execute_fields(struct reqctx *rc, json_t *body)
{
    json_t *t = json_object_get(body, "indicator_type");
    json_t *v = json_object_get(body, "indicator_value");
    json_t *a = json_object_get(body, "alert_uuid");
    json_t *reason = json_object_get(body, "reason");
    json_t *conf = json_object_get(body, "confidence");
    if (!json_is_string(t) || !indicator_type_valid(json_string_value(t))) {
        reply_validation_error(rc, "value_error", "body", "indicator_type", "Input should be a valid indicator type");
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 2048 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        reply_validation_error(rc, "value_error", "body", "indicator_value", "String should have 1 to 2048 characters");
        return NULL;
    }
    if (a && !json_is_null(a) && (!json_is_string(a) || !crypto_uuid_valid(json_string_value(a)))) {
        reply_validation_error(rc, "value_error", "body", "alert_uuid", "Input should be a valid UUID");
        return NULL;
    }
    if (reason && !json_is_null(reason) &&
        (!json_is_string(reason) || json_string_length(reason) > 4096)) {
        reply_validation_error(rc, "value_error", "body", "reason", "Input should be a string (at most 4096)");
        return NULL;
    }
    if (conf && !json_is_null(conf) &&
        (!json_is_number(conf) || json_number_value(conf) < 0 || json_number_value(conf) > 1)) {
        reply_validation_error(rc, "value_error", "body", "confidence", "Input should be a number between 0 and 1");
        return NULL;
    }
    json_t *p = json_pack("{s:O,s:O}", "indicator_type", t, "indicator_value", v);
    if (a && !json_is_null(a))
        json_object_set(p, "alert_uuid", a);
    if (reason && !json_is_null(reason))
        json_object_set(p, "reason", reason);
    if (conf && !json_is_null(conf))
        json_object_set_new(p, "confidence", json_real(json_number_value(conf)));
    return p;
}

void route_execute_workflow(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    json_t *p = execute_fields(rc, body);
    json_decref(body);
    if (!p)
        return;
    struct exec_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    memcpy(op->wf_uuid, uuid, sizeof op->wf_uuid);
    wf_execute(rc->in, uuid, p, rc->auth.key_prefix, rc->req->request_id, rc->client_ip,
               on_executed, op);
    json_decref(p);
}

/* ---- POST /v1/workflows/{uuid}/test ------------------------------------------------------ */

struct test_op {
    struct reqctx *rc;
    json_t *indicator;
};

static void on_test_result(void *arg, int status, const struct runner_result *r)
{
    struct test_op *op = arg;
    struct reqctx *rc = op->rc;
    json_decref(op->indicator);
    free(op);
    if (status != RUNNER_CLIENT_OK || r->status == RUNNER_BUSY) {
        reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                    status == RUNNER_CLIENT_OK
                        ? "Every workflow runner is busy; the test did not run. Try again."
                        : "The workflow runner did not answer; the test did not complete.",
                    NULL);
        return;
    }
    json_t *out = result_json(r);
    json_object_set_new(out, "status", json_string(runner_status_name(r->status)));
    json_object_set_new(out, "log_output", json_string(r->log_output ? r->log_output : ""));
    json_object_set_new(out, "duration_ms", json_integer(r->duration_ms));
    json_object_set_new(out, "sandbox", json_string(r->sandbox ? r->sandbox : ""));
    reply_data(rc, 200, out);
}

static void on_test_loaded(void *arg, PGresult *res, const char *err)
{
    struct test_op *op = arg;
    struct reqctx *rc = op->rc;
    struct workflows *wf = rc->in->workflows;
    if (reply_if_pg_failed(rc, res, err) != 0 || PQntuples(res) == 0) {
        if (res && !err)
            reply_error(rc, 404, "NOT_FOUND", "Workflow not found.", NULL);
        goto fail;
    }
    json_t *doc = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!doc || !json_is_true(json_object_get(doc, "executable"))) {
        json_decref(doc);
        reply_error(rc, 400, "WORKFLOW_NOT_EXECUTABLE",
                    "Workflow must be active (state active and is_active) to be tested.", NULL);
        goto fail;
    }
    if (!wf->runner) {
        json_decref(doc);
        reply_error(rc, 503, "SERVICE_UNAVAILABLE", "The workflow runner is not available.",
                    NULL);
        goto fail;
    }
    json_object_set(doc, "indicator", op->indicator);
    int timeout = (int)json_integer_value(json_object_get(doc, "timeout_seconds"));
    char run_uuid[37];
    crypto_uuid4(run_uuid);
    struct run_input in;
    run_input_init(wf, &in, doc, run_uuid, timeout > 30 || timeout < 1 ? 30 : timeout);
    json_decref(doc);
    runner_run(wf->runner, &in.req, on_test_result, op);
    run_input_destroy(&in);
    return;
fail:
    json_decref(op->indicator);
    free(op);
}

void route_test_workflow(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = rc->req->body.len ? body_json_object(rc) : json_object();
    if (!body)
        return;
    json_t *t = json_object_get(body, "indicator_type");
    json_t *v = json_object_get(body, "indicator_value");
    const char *ts = t ? json_string_value(t) : "ip";
    const char *vs = v ? json_string_value(v) : "1.2.3.4";
    if (!ts || !indicator_type_valid(ts) || !vs || strlen(vs) < 1 || strlen(vs) > 2048) {
        json_decref(body);
        reply_validation_error(rc, "value_error", "body", "indicator", "indicator_type/indicator_value are invalid");
        return;
    }
    struct test_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->indicator = json_pack("{s:s,s:s,s:s,s:b,s:{}}", "type", ts, "value", vs, "malice",
                              "Pending", "is_enriched", 0, "enrichment_results");
    json_decref(body);
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg,
            "SELECT jsonb_build_object('code', w.code, 'timeout_seconds', w.timeout_seconds, "
            "'executable', w.state = 'active' AND w.is_active, "
            "'trigger_context', jsonb_build_object('trigger_source', 'test'), "
            "'secrets', calseta_workflow_secret_tokens(w.id))::text "
            "FROM workflows w WHERE w.uuid = $1",
            1, params, on_test_loaded, op);
}
