/*
 * workflows_run.c - POST /v1/workflows/{uuid}/execute and /test.
 *
 * Execute commits first (calseta_workflow_execute: a queued run, or a pending approval when
 * the gate applies), answers 202 and wakes workflowd (NOTIFY calseta_workflowd), which takes
 * the run under a lease, sends it to a runner and records the outcome (services/workflowd). The
 * intake never runs a queued run itself. Test asks workflowd over the bus (workflow_client.h),
 * which loads the workflow, decrypts its secrets, runs it on a runner with a synthetic
 * indicator and answers; nothing is stored, and the intake never sees a decrypted secret.
 */
#include "workflows_api.h"

#include "audit.h"
#include "crypto.h"
#include "indicator_types.h"
#include "log.h"
#include "proto/workflow.h"
#include "util.h"
#include "workflow_client.h"

#include <stdlib.h>
#include <string.h>

/* After a run is committed queued: wakes workflowd, which takes it under a lease (its sweep
 * would find it anyway; the wake-up saves the wait). */
static void on_woken(void *arg, PGresult *res, const char *err)
{
    (void)arg;
    if (!res || err)
        msg_warn("waking workflowd failed (its sweep takes the run): %s",
                 err ? err : "database unavailable");
}

void wf_runs_wake(struct intake *in)
{
    if (in->pg)
        pg_exec(in->pg, "SELECT pg_notify('calseta_workflowd', 'run')", 0, NULL, on_woken, NULL);
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
            wf_runs_wake(in);
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

/* Whether the workflow exists and is active is answered here, as before any run; workflowd
 * loads it again (with its secrets) and checks once more. */
struct test_op {
    struct reqctx *rc;
    char wf_uuid[37];
    char type[40];
    char *value;
};

static void on_tested(void *arg, const char *error, int outcome, json_t *body)
{
    struct reqctx *rc = arg;
    rc->req->wipe_response = 1; /* the result may hold what the workflow made of its secrets */
    if (error)
        msg_warn("workflow test: %s", error);
    if (error && strstr(error, "not reachable"))
        reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                    "The workflow service is not available; the test did not run.", NULL);
    else if (error)
        reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                    "The workflow runner did not answer; the test did not complete.", NULL);
    else if (outcome == WF_OUT_OK)
        reply_data(rc, 200, json_incref(body));
    else if (outcome == WF_OUT_NOT_FOUND)
        reply_error(rc, 404, "NOT_FOUND", "Workflow not found.", NULL);
    else if (outcome == WF_OUT_NOT_EXECUTABLE)
        reply_error(rc, 400, "WORKFLOW_NOT_EXECUTABLE",
                    "Workflow must be active (state active and is_active) to be tested.", NULL);
    else if (outcome == WF_OUT_RUNNER_BUSY)
        reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                    "Every workflow runner is busy; the test did not run. Try again.", NULL);
    else if (outcome == WF_OUT_REFUSED)
        reply_error(rc, 422, "VALIDATION_ERROR",
                    json_string_value(json_object_get(body, "message"))
                        ? json_string_value(json_object_get(body, "message"))
                        : "The workflow service could not read the request.",
                    NULL);
    else if (outcome == WF_OUT_NO_ANSWER)
        reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                    "The workflow runner did not answer; the test did not complete.", NULL);
    else
        reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                    "The workflow service cannot run the test now; try again.",
                    json_pack("{s:O}", "reason", json_object_get(body, "message")));
}

static void on_test_checked(void *arg, PGresult *res, const char *err)
{
    struct test_op *op = arg;
    struct reqctx *rc = op->rc;
    struct workflows *wf = rc->in->workflows;
    if (reply_if_pg_failed(rc, res, err) != 0)
        goto done;
    if (PQntuples(res) == 0)
        reply_error(rc, 404, "NOT_FOUND", "Workflow not found.", NULL);
    else if (strcmp(PQgetvalue(res, 0, 0), "t"))
        reply_error(rc, 400, "WORKFLOW_NOT_EXECUTABLE",
                    "Workflow must be active (state active and is_active) to be tested.", NULL);
    else if (!wf->wfd)
        reply_error(rc, 503, "SERVICE_UNAVAILABLE", "The workflow service is not available.",
                    NULL);
    else
        workflow_client_test(wf->wfd, op->wf_uuid, op->type, op->value,
                             &(struct workflow_caller){rc->auth.key_prefix, rc->req->request_id,
                                                       rc->client_ip},
                             on_tested, rc);
done:
    free(op->value);
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
    memcpy(op->wf_uuid, uuid, sizeof op->wf_uuid);
    snprintf(op->type, sizeof op->type, "%s", ts);
    op->value = xstrdup(vs);
    json_decref(body);
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg,
            "SELECT w.state = 'active' AND w.is_active FROM workflows w WHERE w.uuid = $1", 1,
            params, on_test_checked, op);
}
