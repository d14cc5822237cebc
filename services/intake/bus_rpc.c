/*
 * bus_rpc.c - the request/reply bookkeeping the intake's bus clients share (on-demand lookups,
 * workflow checks and test runs): each request gets an id and a deadline and waits in a list
 * swept from a loop timer; a reply ends its request once, a later or repeated one is dropped.
 *
 * A request that finds no peer connected (ZMQ_IMMEDIATE) either fails at once (the caller
 * reports it) or is kept and tried again by the sweep for unsent_retry_ms, which covers a peer
 * that is (re)starting. The owner encodes requests and decodes replies. A reply may carry what
 * was made of secrets: its frame is wiped here after use, and the owner wipes the copies it
 * decodes from it.
 */
#include "bus_rpc.h"
#include "bus.h"
#include "config.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct pending {
    struct pending *next;
    uint64_t id;
    uint64_t unsent_until_ms; /* while msg is held: give up sending then */
    uint64_t deadline_ms;
    struct buf msg; /* the encoded request until it has left */
    const char *refused; /* ended by the next sweep with this error (never sent) */
    void *call;
};

struct bus_rpc {
    struct bus_rpc_opts o;
    void *sock;
    struct bus_watch *watch;
    uv_timer_t sweep;
    uint64_t next_id;
    struct pending *list;
};

static void pending_end(struct bus_rpc *rpc, struct pending *p, const char *error)
{
    rpc->o.fail(p->call, error);
    buf_destroy(&p->msg);
    free(p);
}

void *bus_rpc_take(struct bus_rpc *rpc, uint64_t id)
{
    for (struct pending **pp = &rpc->list; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id && (*pp)->msg.len == 0 && !(*pp)->refused) {
            struct pending *p = *pp;
            void *call = p->call;
            *pp = p->next;
            buf_destroy(&p->msg);
            free(p);
            return call;
        }
    return NULL;
}

static void on_readable(void *arg)
{
    struct bus_rpc *rpc = arg;
    struct buf part;
    size_t n;
    buf_init(&part);
    if (bus_recv_msg(rpc->sock, &part, 1, &n) == 0 &&
        (n != 1 || rpc->o.on_reply(rpc, part.data, part.len) != 0))
        msg_warn("%s: dropped a malformed reply", rpc->o.what);
    buf_destroy_wiped(&part);
}

/* 1 when the request has left (its copy is dropped). */
static int try_send(struct bus_rpc *rpc, struct pending *p)
{
    if (bus_send(rpc->sock, p->msg.data, p->msg.len, 0) != 0)
        return 0;
    buf_destroy(&p->msg);
    buf_init(&p->msg);
    bus_watch_kick(rpc->watch);
    return 1;
}

static void on_sweep(uv_timer_t *t)
{
    struct bus_rpc *rpc = t->data;
    uint64_t now = now_mono_ms();
    struct pending **pp = &rpc->list;
    while (*pp) {
        struct pending *p = *pp;
        const char *gone = NULL;
        if (p->refused)
            gone = p->refused;
        else if (p->msg.len && !try_send(rpc, p) && now >= p->unsent_until_ms)
            gone = rpc->o.unreachable;
        else if (!p->msg.len && now >= p->deadline_ms)
            gone = rpc->o.silent;
        if (gone) {
            *pp = p->next;
            pending_end(rpc, p, gone);
        } else {
            pp = &p->next;
        }
    }
    if (!rpc->list)
        uv_timer_stop(&rpc->sweep);
}

struct bus_rpc *bus_rpc_new(uv_loop_t *loop, const struct config *cfg,
                            const struct bus_rpc_opts *opts, char *err, size_t errlen)
{
    struct bus_rpc *rpc = xcalloc(1, sizeof *rpc);
    struct bus_opts bo = {.link = opts->link, .max_msg = opts->max_msg, .hwm = 1000};
    rpc->o = *opts;
    rpc->sock = bus_client(ZMQ_DEALER, cfg, opts->endpoint, &bo, err, errlen);
    if (!rpc->sock) {
        free(rpc);
        return NULL;
    }
    rpc->watch = bus_watch_new(loop, rpc->sock, on_readable, rpc);
    uv_timer_init(loop, &rpc->sweep);
    rpc->sweep.data = rpc;
    return rpc;
}

static void on_sweep_closed(uv_handle_t *h)
{
    free(h->data);
}

void bus_rpc_free(struct bus_rpc *rpc)
{
    if (!rpc)
        return;
    while (rpc->list) {
        struct pending *p = rpc->list;
        rpc->list = p->next;
        pending_end(rpc, p, "the service is stopping");
    }
    bus_watch_free(rpc->watch);
    bus_close(rpc->sock);
    uv_close((uv_handle_t *)&rpc->sweep, on_sweep_closed);
}

uint64_t bus_rpc_next_id(struct bus_rpc *rpc)
{
    return ++rpc->next_id;
}

static void keep(struct bus_rpc *rpc, struct pending *p)
{
    p->next = rpc->list;
    rpc->list = p;
    if (!uv_is_active((uv_handle_t *)&rpc->sweep))
        uv_timer_start(&rpc->sweep, on_sweep, rpc->o.sweep_ms, rpc->o.sweep_ms);
}

void bus_rpc_fail_soon(struct bus_rpc *rpc, void *call, const char *error)
{
    struct pending *p = xcalloc(1, sizeof *p);
    buf_init(&p->msg);
    p->refused = error;
    p->call = call;
    keep(rpc, p);
}

int bus_rpc_ask(struct bus_rpc *rpc, uint64_t id, struct buf *msg, uint64_t wait_ms, void *call)
{
    struct pending *p = xcalloc(1, sizeof *p);
    uint64_t now = now_mono_ms();
    p->id = id;
    p->msg = *msg;
    buf_init(msg);
    if (!try_send(rpc, p) && rpc->o.unsent_retry_ms == 0) {
        buf_destroy(&p->msg);
        free(p);
        return -1;
    }
    p->unsent_until_ms = now + rpc->o.unsent_retry_ms;
    p->deadline_ms = now + wait_ms;
    p->call = call;
    keep(rpc, p);
    return 0;
}
