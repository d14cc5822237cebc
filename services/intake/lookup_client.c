/*
 * lookup_client.c - the intake's side of on-demand lookups: requests to the enrichers through
 * the job bus's lookup broker (LOOKUP_REQUEST_ENDPOINT), each with an id and a deadline.
 *
 * The intake sends the provider configuration it read (credentials still encrypted) and gets
 * results back; it never decrypts a provider credential. A request with no answer by its
 * deadline ends with an error; a reply that comes later is dropped.
 */
#include "lookup_client.h"
#include "bus.h"
#include "config.h"
#include "log.h"
#include "proto/lookup.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define SWEEP_MS 100

struct ask {
    struct ask *next;
    uint64_t id;
    uint64_t deadline_ms;
    lookup_client_cb cb;
    void *arg;
};

struct lookup_client {
    uv_loop_t *loop;
    void *sock;
    struct bus_watch *watch;
    uv_timer_t sweep;
    uint64_t next_id;
    struct ask *asks;
};

static struct ask *take(struct lookup_client *c, uint64_t id)
{
    for (struct ask **pp = &c->asks; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            struct ask *a = *pp;
            *pp = a->next;
            return a;
        }
    return NULL;
}

static void on_readable(void *arg)
{
    struct lookup_client *c = arg;
    struct buf part;
    size_t n;
    buf_init(&part);
    if (bus_recv_msg(c->sock, &part, 1, &n) == 0) {
        struct lookup_reply r;
        if (n != 1 || lookup_decode_reply(part.data, part.len, &r) != 0) {
            msg_warn("on-demand lookups: dropped a malformed reply");
        } else {
            struct ask *a = take(c, r.id);
            json_t *results = r.results_json ? json_loads(r.results_json, 0, NULL) : NULL;
            if (a && r.error)
                a->cb(a->arg, r.error, NULL);
            else if (a && !json_is_object(results))
                a->cb(a->arg, "unreadable results from the enricher", NULL);
            else if (a)
                a->cb(a->arg, NULL, results);
            free(a);
            json_decref(results);
            lookup_reply_destroy(&r);
        }
    }
    buf_destroy_wiped(&part);
}

static void on_sweep(uv_timer_t *t)
{
    struct lookup_client *c = t->data;
    uint64_t now = now_mono_ms();
    struct ask **pp = &c->asks;
    while (*pp) {
        struct ask *a = *pp;
        if (a->deadline_ms <= now) {
            *pp = a->next;
            a->cb(a->arg, "no enricher answered in time", NULL);
            free(a);
        } else {
            pp = &a->next;
        }
    }
    if (!c->asks)
        uv_timer_stop(&c->sweep);
}

struct lookup_client *lookup_client_new(uv_loop_t *loop, const struct config *cfg, char *err,
                                        size_t errlen)
{
    struct lookup_client *c = xcalloc(1, sizeof *c);
    struct bus_opts o = {.link = "lookup", .max_msg = LOOKUP_MAX_MSG, .hwm = 1000};
    c->loop = loop;
    c->sock = bus_client(ZMQ_DEALER, cfg, cfg->lookup_front, &o, err, errlen);
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

void lookup_client_free(struct lookup_client *c)
{
    if (!c)
        return;
    while (c->asks) {
        struct ask *a = c->asks;
        c->asks = a->next;
        a->cb(a->arg, "the service is stopping", NULL);
        free(a);
    }
    bus_watch_free(c->watch);
    bus_close(c->sock);
    uv_close((uv_handle_t *)&c->sweep, on_sweep_closed);
}

void lookup_client_ask(struct lookup_client *c, const char *type, const char *value,
                       const char *config_json, const char *providers_json, int timeout_ms,
                       lookup_client_cb cb, void *arg)
{
    struct lookup_req r = {.id = ++c->next_id,
                           .type = (char *)type,
                           .value = (char *)value,
                           .config_json = (char *)config_json,
                           .providers_json = (char *)providers_json,
                           .timeout_ms = timeout_ms};
    struct buf b;
    buf_init(&b);
    lookup_encode_request(&r, &b);
    /* ZMQ_IMMEDIATE: fails at once when the job bus is not there */
    int sent = b.len <= LOOKUP_MAX_MSG && bus_send(c->sock, b.data, b.len, 0) == 0;
    buf_destroy(&b);
    if (!sent) {
        cb(arg, "no enricher is reachable (is calseta-jobbus running?)", NULL);
        return;
    }
    bus_watch_kick(c->watch);
    struct ask *a = xcalloc(1, sizeof *a);
    a->id = r.id;
    a->deadline_ms = now_mono_ms() + (uint64_t)timeout_ms + 2000; /* the enricher's own
                                                                     deadline comes first */
    a->cb = cb;
    a->arg = arg;
    a->next = c->asks;
    c->asks = a;
    if (!uv_is_active((uv_handle_t *)&c->sweep))
        uv_timer_start(&c->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
}
