/*
 * workflow_client.c - the intake's side of code checks and test runs: requests to workflowd
 * (WORKFLOW_REQUEST_ENDPOINT, a DEALER made by the bus module, round robin over the workflowd
 * connected), each with an id and a deadline, watched from the loop.
 *
 * The intake sends the code, or the workflow's id and the test indicator with who asked, and
 * gets the verdict or the result back; it never loads a workflow secret nor holds a runner
 * client. A request that finds no workflowd connected (ZMQ_IMMEDIATE) is tried again for
 * UNSENT_RETRY_MS, which covers a workflowd that is (re)starting, then ends with "not
 * reachable"; a sent request with no answer by its deadline (the runner's own waits plus a
 * margin) ends with "did not answer"; a reply that comes later is dropped (bus_rpc.c keeps
 * that bookkeeping). A request workflowd's decoder would refuse (the routes check each field's
 * limits first, so this is a last guard, e.g. against a field that outgrew workflowd's limit) is
 * not sent: it ends at once as WF_OUT_REFUSED with the reason.
 */
#include "workflow_client.h"
#include "bus_rpc.h"
#include "config.h"
#include "log.h"
#include "proto/workflow.h"
#include "util.h"

#include <stdlib.h>

#define UNSENT_RETRY_MS 3000
/* workflowd's runner client waits 15 s for a check, a test run's timeout (at most 30 s) + 15 s,
 * and retries an unsent request for 3 s: beyond that, workflowd is gone. */
#define VALIDATE_WAIT_MS (15000 + 3000 + 3000)
#define TEST_WAIT_MS (30000 + 15000 + 3000 + 3000)

struct workflow_client {
    struct bus_rpc *rpc;
};

/* What a pending request calls back. */
struct call {
    workflow_client_cb cb;
    void *arg;
    char *refused; /* set when the request was not sent: why workflowd could not read it */
};

static void call_end(struct call *k, const char *error, int outcome, json_t *body)
{
    k->cb(k->arg, error, outcome, body);
    free(k->refused);
    free(k);
}

static void call_fail(void *p, const char *error)
{
    struct call *k = p;
    /* only the refusal itself is a refusal: a call ended for another reason before it could be
     * dropped (the client stopping) answers as any failed call */
    if (k->refused && error == k->refused) {
        json_t *body = json_pack("{s:s}", "message", k->refused);
        call_end(k, NULL, WF_OUT_REFUSED, body);
        json_decref(body);
        return;
    }
    call_end(k, error, -1, NULL);
}

/* A test run's result may hold what the workflow made of its secrets: every copy decoded here
 * (the body text, the JSON tree, what the route makes of it) is zeroed when freed: the intake
 * installs free_scoped() as jansson's free at start, and this thread asks it to wipe while the
 * reply is handled. */
static int on_reply(struct bus_rpc *rpc, const char *data, size_t len)
{
    struct wf_reply r;
    if (wf_decode_reply(data, len, &r) != 0)
        return -1;
    free_wiped_scope(1);
    struct call *k = bus_rpc_take(rpc, r.id);
    json_t *body = json_loads(r.body_json, 0, NULL);
    if (k && !json_is_object(body))
        call_end(k, "an unreadable reply from workflowd", -1, NULL);
    else if (k)
        call_end(k, NULL, r.outcome, body);
    json_decref(body);
    free_wiped_scope(0);
    wf_reply_destroy(&r); /* wipes the body text */
    return 0;
}

struct workflow_client *workflow_client_new(uv_loop_t *loop, const struct config *cfg, char *err,
                                            size_t errlen)
{
    struct bus_rpc_opts o = {.link = "workflow",
                             .endpoint = cfg->workflow_endpoint,
                             .max_msg = WF_MAX_MSG,
                             .sweep_ms = 50,
                             .unsent_retry_ms = UNSENT_RETRY_MS,
                             .what = "workflow requests",
                             .unreachable = "workflowd is not reachable (is calseta-workflowd "
                                            "running?)",
                             .silent = "workflowd did not answer in time",
                             .on_reply = on_reply,
                             .fail = call_fail};
    struct bus_rpc *rpc = bus_rpc_new(loop, cfg, &o, err, errlen);
    if (!rpc)
        return NULL;
    struct workflow_client *c = xcalloc(1, sizeof *c);
    c->rpc = rpc;
    return c;
}

void workflow_client_free(struct workflow_client *c)
{
    if (!c)
        return;
    bus_rpc_free(c->rpc);
    free(c);
}

/* Why workflowd would refuse the encoded request msg, or NULL when it decodes: the same
 * decoder runs here so that a request workflowd cannot read is refused at once, with a reason,
 * instead of costing the caller the whole wait. */
static char *unreadable(const struct buf *msg)
{
    struct wf_request back;
    if (wf_decode_request(msg->data, msg->len, &back) == 0) {
        wf_request_destroy(&back);
        return NULL;
    }
    return xstrdup("The request cannot be passed to the workflow service (a field is too long "
                   "or not valid text).");
}

/* Sends the request, or keeps it for the sweep to try again; either way the callback runs
 * later, never inside the call. */
static void ask(struct workflow_client *c, struct wf_request *r, int wait_ms, workflow_client_cb cb,
                void *arg)
{
    struct call *k = xcalloc(1, sizeof *k);
    struct buf msg;
    k->cb = cb;
    k->arg = arg;
    r->id = bus_rpc_next_id(c->rpc);
    buf_init(&msg);
    wf_encode_request(r, &msg);
    k->refused = unreadable(&msg);
    if (k->refused) {
        msg_warn("workflow requests: not sent: %s", k->refused);
        buf_destroy(&msg);
        bus_rpc_fail_soon(c->rpc, k, k->refused);
        return;
    }
    bus_rpc_ask(c->rpc, r->id, &msg, (uint64_t)wait_ms, k); /* kept even when unsent */
}
void workflow_client_validate(struct workflow_client *c, const char *code, workflow_client_cb cb,
                              void *arg)
{
    struct wf_request r = {.op = WF_OP_VALIDATE, .code = (char *)code};
    ask(c, &r, VALIDATE_WAIT_MS, cb, arg);
}

void workflow_client_test(struct workflow_client *c, const char *workflow_uuid,
                          const char *indicator_type, const char *indicator_value,
                          const struct workflow_caller *who, workflow_client_cb cb, void *arg)
{
    struct wf_request r = {.op = WF_OP_TEST,
                           .workflow_uuid = (char *)workflow_uuid,
                           .indicator_type = (char *)indicator_type,
                           .indicator_value = (char *)indicator_value,
                           .key_prefix = (char *)who->key_prefix,
                           .request_id = (char *)who->request_id,
                           .client_ip = (char *)who->client_ip};
    ask(c, &r, TEST_WAIT_MS, cb, arg);
}
