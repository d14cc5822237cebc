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
 * margin) ends with "did not answer"; a reply that comes later is dropped.
 */
#include "workflow_client.h"
#include "bus.h"
#include "config.h"
#include "log.h"
#include "proto/workflow.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define SWEEP_MS 50
#define UNSENT_RETRY_MS 3000
/* workflowd's runner client waits 15 s for a check, a test run's timeout (at most 30 s) + 15 s,
 * and retries an unsent request for 3 s: beyond that, workflowd is gone. */
#define VALIDATE_WAIT_MS (15000 + 3000 + 3000)
#define TEST_WAIT_MS (30000 + 15000 + 3000 + 3000)

struct ask {
    struct ask *next;
    uint64_t id;
    uint64_t unsent_until_ms; /* while msg is held: give up sending then */
    uint64_t deadline_ms;
    struct buf msg; /* the encoded request until it has left */
    workflow_client_cb cb;
    void *arg;
};

struct workflow_client {
    uv_loop_t *loop;
    void *sock;
    struct bus_watch *watch;
    uv_timer_t sweep;
    uint64_t next_id;
    struct ask *asks;
};

static void ask_end(struct ask *a, const char *error, int outcome, json_t *body)
{
    a->cb(a->arg, error, outcome, body);
    buf_destroy(&a->msg);
    free(a);
}

static struct ask *take(struct workflow_client *c, uint64_t id)
{
    for (struct ask **pp = &c->asks; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id && (*pp)->msg.len == 0) {
            struct ask *a = *pp;
            *pp = a->next;
            return a;
        }
    return NULL;
}

static void on_readable(void *arg)
{
    struct workflow_client *c = arg;
    struct buf part;
    size_t n;
    buf_init(&part);
    if (bus_recv_msg(c->sock, &part, 1, &n) == 0) {
        struct wf_reply r;
        if (n != 1 || wf_decode_reply(part.data, part.len, &r) != 0) {
            msg_warn("workflow requests: dropped a malformed reply");
        } else {
            struct ask *a = take(c, r.id);
            json_t *body = json_loads(r.body_json, 0, NULL);
            if (a && !json_is_object(body))
                ask_end(a, "an unreadable reply from workflowd", -1, NULL);
            else if (a)
                ask_end(a, NULL, r.outcome, body);
            json_decref(body);
            wf_reply_destroy(&r);
        }
    }
    buf_destroy_wiped(&part); /* a test's result may hold what a workflow made of its secrets */
}

/* 1 when the request has left (its copy is dropped). */
static int try_send(struct workflow_client *c, struct ask *a)
{
    if (bus_send(c->sock, a->msg.data, a->msg.len, 0) != 0)
        return 0;
    buf_destroy(&a->msg);
    buf_init(&a->msg);
    bus_watch_kick(c->watch);
    return 1;
}

static void on_sweep(uv_timer_t *t)
{
    struct workflow_client *c = t->data;
    uint64_t now = now_mono_ms();
    struct ask **pp = &c->asks;
    while (*pp) {
        struct ask *a = *pp;
        const char *gone = NULL;
        if (a->msg.len && !try_send(c, a) && now >= a->unsent_until_ms)
            gone = "workflowd is not reachable (is calseta-workflowd running?)";
        else if (!a->msg.len && now >= a->deadline_ms)
            gone = "workflowd did not answer in time";
        if (gone) {
            *pp = a->next;
            ask_end(a, gone, -1, NULL);
        } else {
            pp = &a->next;
        }
    }
    if (!c->asks)
        uv_timer_stop(&c->sweep);
}

struct workflow_client *workflow_client_new(uv_loop_t *loop, const struct config *cfg, char *err,
                                            size_t errlen)
{
    struct workflow_client *c = xcalloc(1, sizeof *c);
    struct bus_opts o = {.link = "workflow", .max_msg = WF_MAX_MSG, .hwm = 1000};
    c->loop = loop;
    c->sock = bus_client(ZMQ_DEALER, cfg, cfg->workflow_endpoint, &o, err, errlen);
    if (!c->sock) {
        free(c);
        return NULL;
    }
    c->watch = bus_watch_new(loop, c->sock, on_readable, c);
    uv_timer_init(loop, &c->sweep);
    c->sweep.data = c;
    return c;
}

static void on_sweep_closed(uv_handle_t *h)
{
    free(h->data);
}

void workflow_client_free(struct workflow_client *c)
{
    if (!c)
        return;
    while (c->asks) {
        struct ask *a = c->asks;
        c->asks = a->next;
        ask_end(a, "the service is stopping", -1, NULL);
    }
    bus_watch_free(c->watch);
    bus_close(c->sock);
    uv_close((uv_handle_t *)&c->sweep, on_sweep_closed);
}

/* Sends the request, or keeps it for the sweep to try again; either way the callback runs
 * later, never inside the call. */
static void ask(struct workflow_client *c, struct wf_request *r, int wait_ms, workflow_client_cb cb,
                void *arg)
{
    struct ask *a = xcalloc(1, sizeof *a);
    r->id = ++c->next_id;
    a->id = r->id;
    buf_init(&a->msg);
    wf_encode_request(r, &a->msg);
    uint64_t now = now_mono_ms();
    a->unsent_until_ms = now + UNSENT_RETRY_MS;
    a->deadline_ms = now + (uint64_t)wait_ms;
    a->cb = cb;
    a->arg = arg;
    a->next = c->asks;
    c->asks = a;
    try_send(c, a);
    if (!uv_is_active((uv_handle_t *)&c->sweep))
        uv_timer_start(&c->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
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
