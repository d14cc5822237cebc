/*
 * bus_rpc.h - the intake's request/reply bookkeeping over a DEALER bus link: ids, pending
 * requests, deadlines, late replies dropped (see bus_rpc.c).
 */
#ifndef INTAKE_BUS_RPC_H
#define INTAKE_BUS_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct buf;
struct config;
struct bus_rpc;

/* One reply (a single frame) for the owner to decode: it takes the request it answers with
 * bus_rpc_take(). -1 when the reply is malformed (warned and dropped). */
typedef int (*bus_rpc_reply_fn)(struct bus_rpc *rpc, const char *data, size_t len);
/* Ends a request that got no reply; error says why. Called from the loop, never inside
 * bus_rpc_ask(). */
typedef void (*bus_rpc_fail_fn)(void *call, const char *error);

struct bus_rpc_opts {
    const char *link;        /* the CURVE link, as bus_client() */
    const char *endpoint;    /* where the peers are */
    size_t max_msg;          /* largest reply taken */
    unsigned sweep_ms;       /* how often deadlines are checked */
    unsigned unsent_retry_ms; /* how long a request that finds no peer is tried again; 0: not */
    const char *what;        /* names the requests in warnings */
    const char *unreachable; /* the error of a request that never left */
    const char *silent;      /* the error of a sent request with no reply by its deadline */
    bus_rpc_reply_fn on_reply;
    bus_rpc_fail_fn fail;
};

/* NULL with err when the socket cannot be made. opts' strings must outlive the helper. */
struct bus_rpc *bus_rpc_new(uv_loop_t *loop, const struct config *cfg,
                            const struct bus_rpc_opts *opts, char *err, size_t errlen);
/* Requests still waiting fail with "the service is stopping"; memory goes with the loop's
 * close callbacks. */
void bus_rpc_free(struct bus_rpc *rpc);
/* A fresh request id, to encode in the request. */
uint64_t bus_rpc_next_id(struct bus_rpc *rpc);
/* Sends msg (an encoded request with id; its memory is taken) and keeps call until a reply,
 * wait_ms from now, or a failure. -1 (call not kept, nothing called) when it could not be
 * sent and unsent_retry_ms is 0; otherwise 0, an unsent request being tried again by the
 * sweep. */
int bus_rpc_ask(struct bus_rpc *rpc, uint64_t id, struct buf *msg, uint64_t wait_ms, void *call);
/* Ends call with error from the loop, soon (never inside this call): for a request its owner
 * refuses to send, e.g. one the peer could not decode. */
void bus_rpc_fail_soon(struct bus_rpc *rpc, void *call, const char *error);
/* The call of the sent request with id, now no longer pending; NULL when there is none (it
 * already ended: a late or duplicate reply). */
void *bus_rpc_take(struct bus_rpc *rpc, uint64_t id);

#endif
