/*
 * requests.c - what intakes ask of workflowd over the bus (proto/workflow.h): check workflow
 * code before it is saved, and test-run a workflow on a synthetic indicator.
 *
 * The intake faces the internet, so it holds neither a runner client nor the key that opens
 * workflow secrets. workflowd binds WORKFLOW_REQUEST_ENDPOINT (a ROUTER made by the bus module:
 * CURVE and the link's client allow-list on tcp://), and for a test loads the workflow, decrypts
 * its allowed secrets into locked memory only to build the RUN (run_request.h), sends it to a
 * runner and replies [identity][reply]. Tests and checks go through a runner client of their
 * own, with the default waits (a check 15 s, a run its timeout + 15 s), so an interactive
 * request never waits on the lease grace that queued runs use. A test stores nothing; it is
 * audited (workflow_tested) with the caller's identity the intake forwarded. At most
 * MAX_PENDING requests are served at once; more, and any while draining, are answered
 * "unavailable" at once rather than left to the intake's deadline; a request that does not
 * decode is answered "refused" when its id can be read.
 */
#include "workflowd.h"

#include "audit.h"
#include "bus.h"
#include "crypto.h"
#include "log.h"
#include "proto/workflow.h"
#include "run_request.h"
#include "runner_client.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_PENDING 256
#define TEST_MAX_TIMEOUT_SECONDS 30 /* a test is interactive: the workflow's own limit, capped */

struct req_op {
    struct workflowd *wd;
    uint8_t identity[256]; /* the ROUTER's routing id of the asking intake */
    size_t identity_len;
    struct wf_request r;
};

static json_t *why(const char *message)
{
    return json_pack("{s:s}", "message", message);
}

/* Sends [identity][reply] (body stolen) and ends the request. */
static void reply(struct req_op *op, int outcome, json_t *body)
{
    struct workflowd *wd = op->wd;
    struct wf_reply rep = {.id = op->r.id, .outcome = outcome};
    rep.body_json = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct buf b;
    buf_init(&b);
    wf_encode_reply(&rep, &b);
    if (!wd->req_sock)
        msg_warn("workflow request %llu: not answered (the socket is closed)",
                 (unsigned long long)op->r.id);
    else if (bus_send(wd->req_sock, op->identity, op->identity_len, 1) != 0 ||
             bus_send(wd->req_sock, b.data, b.len, 0) != 0)
        msg_warn("workflow request %llu: the reply could not be sent: %s",
                 (unsigned long long)op->r.id, zmq_strerror(zmq_errno()));
    else
        bus_watch_kick(wd->req_watch);
    buf_destroy_wiped(&b); /* a test's result may hold what the workflow made of its secrets */
    if (rep.body_json) {
        explicit_bzero(rep.body_json, strlen(rep.body_json));
        free(rep.body_json);
    }
    wf_request_destroy(&op->r);
    free(op);
    wd->req_pending--;
}

/* 1 when the runner client did not answer (stopping, or no runner), after replying so. */
static int runner_failed(struct req_op *op, int status)
{
    if (status == RUNNER_CLIENT_CLOSED)
        reply(op, WF_OUT_UNAVAILABLE, why("workflowd is stopping"));
    else if (status != RUNNER_CLIENT_OK)
        reply(op, WF_OUT_NO_ANSWER, why("no workflow runner answered"));
    return status != RUNNER_CLIENT_OK;
}

/* ---- validation -------------------------------------------------------------------------- */

static void on_validated(void *arg, int status, const struct runner_validation *v)
{
    struct req_op *op = arg;
    if (runner_failed(op, status))
        return;
    json_t *errors = json_array();
    for (size_t i = 0; i < v->nerrors; i++)
        json_array_append_new(errors, json_pack("{s:i,s:s}", "line", v->errors[i].line, "message",
                                                v->errors[i].message ? v->errors[i].message : ""));
    reply(op, WF_OUT_OK, json_pack("{s:b,s:o}", "ok", v->ok, "errors", errors));
}

/* ---- test run ------------------------------------------------------------------------------ */

static void on_test_result(void *arg, int status, const struct runner_result *r)
{
    struct req_op *op = arg;
    if (runner_failed(op, status))
        return;
    if (r->status == RUNNER_BUSY) {
        reply(op, WF_OUT_RUNNER_BUSY, why("every workflow runner is busy"));
        return;
    }
    json_t *out = run_result_json(r);
    json_object_set_new(out, "status", json_string(runner_status_name(r->status)));
    json_object_set_new(out, "log_output", json_string(r->log_output ? r->log_output : ""));
    json_object_set_new(out, "duration_ms", json_integer(r->duration_ms));
    json_object_set_new(out, "sandbox", json_string(r->sandbox ? r->sandbox : ""));
    audit_emit(op->wd->audit, "workflow_tested", op->r.request_id, op->r.key_prefix,
               op->r.client_ip,
               json_pack("{s:s,s:s,s:s}", "workflow_uuid", op->r.workflow_uuid, "status",
                         runner_status_name(r->status), "indicator_type", op->r.indicator_type));
    reply(op, WF_OUT_OK, out);
}

/* The workflow as the test needs it: code, timeout, secrets as Fernet tokens, whether active. */
static void on_test_loaded(void *arg, PGresult *res, const char *err)
{
    struct req_op *op = arg;
    struct workflowd *wd = op->wd;
    if (!res || err) {
        msg_warn("workflow test %s: loading the workflow failed: %s", op->r.workflow_uuid,
                 err ? err : "database unavailable");
        reply(op, WF_OUT_UNAVAILABLE, why("the database is unavailable"));
        return;
    }
    if (PQntuples(res) == 0) {
        reply(op, WF_OUT_NOT_FOUND, why("Workflow not found."));
        return;
    }
    json_t *doc = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!doc || !json_is_true(json_object_get(doc, "executable"))) {
        json_decref(doc);
        reply(op, WF_OUT_NOT_EXECUTABLE, why("Workflow is not active."));
        return;
    }
    if (!wd->test_runner) {
        json_decref(doc);
        reply(op, WF_OUT_UNAVAILABLE, why("workflowd is stopping"));
        return;
    }
    json_object_set_new(doc, "indicator",
                        json_pack("{s:s,s:s,s:s,s:b,s:{}}", "type", op->r.indicator_type, "value",
                                  op->r.indicator_value, "malice", "Pending", "is_enriched", 0,
                                  "enrichment_results"));
    int timeout = (int)json_integer_value(json_object_get(doc, "timeout_seconds"));
    if (timeout < 1 || timeout > TEST_MAX_TIMEOUT_SECONDS)
        timeout = TEST_MAX_TIMEOUT_SECONDS;
    char run_uuid[37];
    crypto_uuid4(run_uuid);
    struct runner_run_req req;
    run_request_init(&req, doc, run_uuid, timeout, wd->have_key ? &wd->key : NULL,
                     wd->cfg->settings);
    json_decref(doc);
    runner_run(wd->test_runner, &req, on_test_result, op); /* encoded (copied) here */
    run_request_destroy(&req);                             /* secrets wiped */
}

static void test_start(struct req_op *op)
{
    struct workflowd *wd = op->wd;
    const char *params[1] = {op->r.workflow_uuid};
    if (!wd->pg ||
        pg_exec(wd->pg,
                "SELECT jsonb_build_object('code', w.code, 'timeout_seconds', w.timeout_seconds, "
                "'executable', w.state = 'active' AND w.is_active, "
                "'trigger_context', jsonb_build_object('trigger_source', 'test'), "
                "'secrets', calseta_workflow_secret_tokens(w.id))::text "
                "FROM workflows w WHERE w.uuid = $1::uuid",
                1, params, on_test_loaded, op) != 0)
        reply(op, WF_OUT_UNAVAILABLE, why("the database is unavailable"));
}

/* ---- the socket ------------------------------------------------------------------------------ */

/* A request that does not decode is answered when its id can be read (the intake would
 * otherwise wait out its deadline, up to a minute, for an answer that never comes); without a
 * readable id there is no one to answer. */
static void refuse(struct workflowd *wd, const struct buf *identity, const struct buf *msg)
{
    uint64_t id;
    if (identity->len == 0 || identity->len > sizeof((struct req_op *)0)->identity ||
        wf_request_id(msg->data, msg->len, &id) != 0) {
        msg_warn("workflow requests: dropped a malformed message without a readable id "
                 "(%zu bytes)",
                 msg->len);
        return;
    }
    msg_warn("workflow request %llu: refused a malformed request (%zu bytes)",
             (unsigned long long)id, msg->len);
    struct req_op *op = xcalloc(1, sizeof *op);
    op->wd = wd;
    memcpy(op->identity, identity->data, identity->len);
    op->identity_len = identity->len;
    op->r.id = id;
    wd->req_pending++;
    reply(op, WF_OUT_REFUSED,
          why("workflowd could not read the request (a field is missing, too long or not "
              "valid text)"));
}

static void dispatch(struct workflowd *wd, const struct buf *identity, const struct buf *msg)
{
    struct wf_request r;
    if (identity->len == 0 || identity->len > sizeof((struct req_op *)0)->identity ||
        wf_decode_request(msg->data, msg->len, &r) != 0) {
        refuse(wd, identity, msg);
        return;
    }
    struct req_op *op = xcalloc(1, sizeof *op);
    op->wd = wd;
    memcpy(op->identity, identity->data, identity->len);
    op->identity_len = identity->len;
    op->r = r;
    wd->req_pending++;
    if (wd->draining || !wd->test_runner || wd->req_pending > MAX_PENDING)
        reply(op, WF_OUT_UNAVAILABLE,
              why(wd->draining ? "workflowd is stopping" : "workflowd is overloaded"));
    else if (r.op == WF_OP_VALIDATE)
        runner_validate(wd->test_runner, r.code, on_validated, op);
    else
        test_start(op);
}

static void on_readable(void *arg)
{
    struct workflowd *wd = arg;
    struct buf parts[2];
    size_t n;
    buf_init(&parts[0]);
    buf_init(&parts[1]);
    if (bus_recv_msg(wd->req_sock, parts, 2, &n) == 0) {
        if (n == 2)
            dispatch(wd, &parts[0], &parts[1]);
        else
            msg_warn("workflow requests: dropped a message of %zu frames", n);
    }
    buf_destroy(&parts[0]);
    buf_destroy(&parts[1]);
}

void requests_init(struct workflowd *wd)
{
    char err[512];
    const struct config *c = wd->cfg;
    struct bus_opts o = {.link = "workflow", .max_msg = WF_MAX_MSG, .hwm = 1000};
    wd->test_runner = runner_client_new(wd->loop, c, c->runner_endpoint, err, sizeof err);
    if (!wd->test_runner)
        msg_fatal("workflow runner client: %s (RUNNER_ENDPOINT=%s)", err, c->runner_endpoint);
    wd->req_sock = bus_server(ZMQ_ROUTER, c, c->workflow_endpoint, &o, err, sizeof err);
    if (!wd->req_sock)
        msg_fatal("workflow requests: %s (WORKFLOW_REQUEST_ENDPOINT=%s)", err,
                  c->workflow_endpoint);
    wd->req_watch = bus_watch_new(wd->loop, wd->req_sock, on_readable, wd);
}

void requests_close(struct workflowd *wd)
{
    if (wd->test_runner) {
        struct runner_client *r = wd->test_runner;
        wd->test_runner = NULL;
        runner_client_free(r); /* checks and tests still out are answered "stopping" */
    }
    if (wd->req_sock) {
        bus_watch_free(wd->req_watch);
        bus_close(wd->req_sock);
        wd->req_watch = NULL;
        wd->req_sock = NULL;
    }
}
