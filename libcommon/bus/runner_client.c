/*
 * runner_client.c - DEALER socket to the runner on a libuv loop, with request ids and deadlines.
 *
 * ZMQ_FD is edge-triggered, so every wake-up (poll readable, or a kick after a send, which may
 * swallow the edge) drains the socket while ZMQ_EVENTS says POLLIN. A sweep timer runs while
 * requests are pending and fails those past their deadline.
 */
#include "runner_client.h"
#include "bus.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define DEFAULT_VALIDATE_MS 15000
#define DEFAULT_RUN_EXTRA_MS 15000
#define SWEEP_MS 100
#define UNSENT_WAIT_MS 3000
#define MAX_REPLY_BYTES (32LL * 1024 * 1024)

struct pending {
    struct pending *next;
    uint64_t id;
    uint64_t deadline_ms;
    int is_run;
    int unsent;          /* not yet handed to a connected runner */
    uint64_t queued_ms;
    uint64_t send_by_ms; /* ...and given up (RUNNER_CLIENT_UNSENT) after this */
    struct buf msg;      /* the request while unsent (wiped: a run carries secrets) */
    runner_validate_cb vcb;
    runner_run_cb rcb;
    void *arg;
};

struct runner_client {
    uv_loop_t *loop;
    void *sock;
    uv_poll_t poll;
    uv_timer_t sweep;
    uv_timer_t kick;
    int open_handles;
    int closing;
    uint64_t next_id;
    struct pending *pending;
    int validate_ms;
    int run_extra_ms;
};

static void pending_free(struct pending *p)
{
    if (p->msg.data)
        explicit_bzero(p->msg.data, p->msg.len);
    buf_destroy(&p->msg);
    free(p);
}

static void finish(struct pending *p, int status, const struct runner_msg *m)
{
    if (p->is_run)
        p->rcb(p->arg, status, m ? &m->result : NULL);
    else
        p->vcb(p->arg, status, m ? &m->validation : NULL);
    pending_free(p);
}

static struct pending *take(struct runner_client *c, uint64_t id)
{
    for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct pending *p = *pp;
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

static void on_reply(struct runner_client *c, const void *data, size_t len)
{
    struct runner_msg m;
    char err[256];
    if (runner_decode(data, len, &m, err, sizeof err) != 0) {
        msg_warn("runner client: dropped an undecodable reply: %s", err);
        return;
    }
    struct pending *p = take(c, m.id);
    int want = p && p->is_run ? RUNNER_MSG_RESULT : RUNNER_MSG_VALIDATION;
    if (!p) {
        msg_warn("runner client: reply for unknown or expired request %llu",
                 (unsigned long long)m.id);
    } else if ((int)m.type != want) {
        msg_warn("runner client: reply of the wrong type for request %llu",
                 (unsigned long long)m.id);
        finish(p, RUNNER_CLIENT_TIMEOUT, NULL);
    } else {
        finish(p, RUNNER_CLIENT_OK, &m);
    }
    runner_msg_destroy(&m);
}

static void drain(struct runner_client *c)
{
    while (!c->closing) {
        int events = 0;
        size_t sz = sizeof events;
        if (zmq_getsockopt(c->sock, ZMQ_EVENTS, &events, &sz) != 0 || !(events & ZMQ_POLLIN))
            return;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        int more = zmq_msg_more(&msg);
        if (!more)
            on_reply(c, zmq_msg_data(&msg), zmq_msg_size(&msg));
        zmq_msg_close(&msg);
        while (more) { /* a reply has one frame; anything else is dropped whole */
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) < 0)
                more = 0;
            else
                more = zmq_msg_more(&msg);
            zmq_msg_close(&msg);
        }
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drain(h->data);
}

static void on_kick(uv_timer_t *t)
{
    drain(t->data);
}

/* Hands an unsent request to a runner if one is connected now; its wait starts then. */
static int try_send(struct runner_client *c, struct pending *p)
{
    if (bus_send(c->sock, p->msg.data, p->msg.len, 0) != 0)
        return -1;
    p->unsent = 0;
    p->deadline_ms += now_mono_ms() - p->queued_ms;
    explicit_bzero(p->msg.data, p->msg.len);
    buf_destroy(&p->msg);
    buf_init(&p->msg);
    return 0;
}

static void on_sweep(uv_timer_t *t)
{
    struct runner_client *c = t->data;
    uint64_t now = now_mono_ms();
    struct pending **pp = &c->pending;
    while (*pp) {
        struct pending *p = *pp;
        if (p->unsent && try_send(c, p) != 0 && now >= p->send_by_ms) {
            *pp = p->next;
            finish(p, RUNNER_CLIENT_UNSENT, NULL);
        } else if (!p->unsent && p->deadline_ms <= now) {
            *pp = p->next;
            finish(p, RUNNER_CLIENT_TIMEOUT, NULL);
        } else {
            pp = &p->next;
        }
    }
    if (!c->pending)
        uv_timer_stop(&c->sweep);
    drain(c);
}

struct runner_client *runner_client_new(uv_loop_t *loop, const struct config *cfg,
                                        const char *endpoint, char *err, size_t errlen)
{
    struct runner_client *c = xcalloc(1, sizeof *c);
    int fd;
    size_t fdlen = sizeof fd;
    char berr[256];
    c->loop = loop;
    c->validate_ms = DEFAULT_VALIDATE_MS;
    c->run_extra_ms = DEFAULT_RUN_EXTRA_MS;
    struct bus_opts o = {.link = "runner", .max_msg = MAX_REPLY_BYTES};
    c->sock = bus_client(ZMQ_DEALER, cfg, endpoint, &o, berr, sizeof berr);
    if (!c->sock) {
        snprintf(err, errlen, "runner client: %s", berr);
        free(c);
        return NULL;
    }
    if (zmq_getsockopt(c->sock, ZMQ_FD, &fd, &fdlen) != 0) {
        snprintf(err, errlen, "runner client: %s", zmq_strerror(errno));
        bus_close(c->sock);
        free(c);
        return NULL;
    }
    uv_poll_init(loop, &c->poll, fd);
    uv_timer_init(loop, &c->sweep);
    uv_timer_init(loop, &c->kick);
    c->poll.data = c->sweep.data = c->kick.data = c;
    c->open_handles = 3;
    uv_poll_start(&c->poll, UV_READABLE, on_poll);
    return c;
}

void runner_client_set_timeouts(struct runner_client *c, int validate_ms, int run_extra_ms)
{
    if (validate_ms > 0)
        c->validate_ms = validate_ms;
    if (run_extra_ms > 0)
        c->run_extra_ms = run_extra_ms;
}

static void on_closed(uv_handle_t *h)
{
    struct runner_client *c = h->data;
    if (--c->open_handles == 0) {
        bus_close(c->sock);
        free(c);
    }
}

void runner_client_free(struct runner_client *c)
{
    if (!c)
        return;
    c->closing = 1;
    while (c->pending) {
        struct pending *p = c->pending;
        c->pending = p->next;
        finish(p, RUNNER_CLIENT_CLOSED, NULL);
    }
    uv_close((uv_handle_t *)&c->poll, on_closed);
    uv_close((uv_handle_t *)&c->sweep, on_closed);
    uv_close((uv_handle_t *)&c->kick, on_closed);
}

static uint64_t submit(struct runner_client *c, struct pending *p, const struct buf *msg,
                       int wait_ms)
{
    p->queued_ms = now_mono_ms();
    p->deadline_ms = p->queued_ms + (uint64_t)wait_ms;
    p->next = c->pending;
    c->pending = p;
    buf_init(&p->msg);
    if (bus_send(c->sock, msg->data, msg->len, 0) != 0) {
        /* No runner connected (ZMQ_IMMEDIATE): retried by the sweep for a short while, so a
         * runner that is (re)starting is waited for, then answered RUNNER_CLIENT_UNSENT. */
        p->unsent = 1;
        p->send_by_ms = p->queued_ms + UNSENT_WAIT_MS;
        buf_append(&p->msg, msg->data, msg->len);
    }
    if (!uv_is_active((uv_handle_t *)&c->sweep))
        uv_timer_start(&c->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_timer_start(&c->kick, on_kick, 0, 0);
    return p->id;
}

uint64_t runner_validate(struct runner_client *c, const char *code, runner_validate_cb cb,
                         void *arg)
{
    struct pending *p = xcalloc(1, sizeof *p);
    struct buf msg;
    p->id = ++c->next_id;
    p->vcb = cb;
    p->arg = arg;
    buf_init(&msg);
    runner_encode_validate(p->id, code, &msg);
    uint64_t id = submit(c, p, &msg, c->validate_ms);
    buf_destroy(&msg);
    return id;
}

uint64_t runner_run(struct runner_client *c, const struct runner_run_req *req, runner_run_cb cb,
                    void *arg)
{
    struct pending *p = xcalloc(1, sizeof *p);
    struct buf msg;
    p->id = ++c->next_id;
    p->is_run = 1;
    p->rcb = cb;
    p->arg = arg;
    buf_init(&msg);
    runner_encode_run(p->id, req, &msg);
    int wait = req->timeout_seconds * 1000 + c->run_extra_ms;
    uint64_t id = submit(c, p, &msg, wait);
    explicit_bzero(msg.data, msg.len); /* it carried the run's secrets */
    buf_destroy(&msg);
    return id;
}

size_t runner_client_pending(const struct runner_client *c)
{
    size_t n = 0;
    for (const struct pending *p = c->pending; p; p = p->next)
        n++;
    return n;
}
