/*
 * lookup_client.c - the intake's side of on-demand lookups: requests to the enrichers through
 * the job bus's lookup broker (LOOKUP_REQUEST_ENDPOINT), each with an id and a deadline.
 *
 * The intake sends the provider configuration it read (credentials still encrypted) and gets
 * results back; it never decrypts a provider credential. A request with no answer by its
 * deadline ends with an error; a reply that comes later is dropped (bus_rpc.c keeps that
 * bookkeeping).
 */
#include "lookup_client.h"
#include "bus_rpc.h"
#include "config.h"
#include "proto/lookup.h"
#include "util.h"

#include <stdlib.h>

struct lookup_client {
    struct bus_rpc *rpc;
};

/* What a pending request calls back. */
struct call {
    lookup_client_cb cb;
    void *arg;
};

static void call_fail(void *p, const char *error)
{
    struct call *k = p;
    k->cb(k->arg, error, NULL);
    free(k);
}

static int on_reply(struct bus_rpc *rpc, const char *data, size_t len)
{
    struct lookup_reply r;
    if (lookup_decode_reply(data, len, &r) != 0)
        return -1;
    struct call *k = bus_rpc_take(rpc, r.id);
    json_t *results = r.results_json ? json_loads(r.results_json, 0, NULL) : NULL;
    if (k && r.error)
        k->cb(k->arg, r.error, NULL);
    else if (k && !json_is_object(results))
        k->cb(k->arg, "unreadable results from the enricher", NULL);
    else if (k)
        k->cb(k->arg, NULL, results);
    free(k);
    json_decref(results);
    lookup_reply_destroy(&r);
    return 0;
}

struct lookup_client *lookup_client_new(uv_loop_t *loop, const struct config *cfg, char *err,
                                        size_t errlen)
{
    struct bus_rpc_opts o = {.link = "lookup",
                             .endpoint = cfg->lookup_front,
                             .max_msg = LOOKUP_MAX_MSG,
                             .sweep_ms = 100,
                             .unsent_retry_ms = 0, /* fails at once: the job bus is not there */
                             .what = "on-demand lookups",
                             .silent = "no enricher answered in time",
                             .on_reply = on_reply,
                             .fail = call_fail};
    struct bus_rpc *rpc = bus_rpc_new(loop, cfg, &o, err, errlen);
    if (!rpc)
        return NULL;
    struct lookup_client *c = xcalloc(1, sizeof *c);
    c->rpc = rpc;
    return c;
}

void lookup_client_free(struct lookup_client *c)
{
    if (!c)
        return;
    bus_rpc_free(c->rpc);
    free(c);
}

void lookup_client_ask(struct lookup_client *c, const char *type, const char *value,
                       const char *config_json, const char *providers_json, int timeout_ms,
                       lookup_client_cb cb, void *arg)
{
    struct lookup_req r = {.id = bus_rpc_next_id(c->rpc),
                           .type = (char *)type,
                           .value = (char *)value,
                           .config_json = (char *)config_json,
                           .providers_json = (char *)providers_json,
                           .timeout_ms = timeout_ms};
    struct buf b;
    buf_init(&b);
    lookup_encode_request(&r, &b);
    struct call *k = xcalloc(1, sizeof *k);
    k->cb = cb;
    k->arg = arg;
    /* the enricher's own deadline comes first */
    uint64_t wait_ms = (uint64_t)timeout_ms + 2000;
    int sent = b.len <= LOOKUP_MAX_MSG && bus_rpc_ask(c->rpc, r.id, &b, wait_ms, k) == 0;
    buf_destroy(&b);
    if (!sent) {
        free(k);
        cb(arg, "no enricher is reachable (is calseta-jobbus running?)", NULL);
    }
}
