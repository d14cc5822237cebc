/*
 * bus.h - thin ZeroMQ helpers: the process's one context, sockets with sane options, CURVE,
 * and a ZeroMQ socket watched from a libuv loop.
 *
 * Sockets made here have a bounded linger, high-water marks, ZMQ_MAXMSGSIZE (a peer cannot
 * make us allocate more than max_msg bytes for one message) and, on connecting sockets,
 * ZMQ_IMMEDIATE (no queueing towards a peer that is not there). When the configuration has a
 * CURVE key pair (CURVE_SERVER_PUBLIC_KEY / CURVE_SERVER_SECRET_KEY, Z85), binding sockets are
 * CURVE servers and connecting sockets CURVE clients with a fresh ephemeral key pair, so links
 * across hosts are authenticated and encrypted (DESIGN invariant 5). Without keys a
 * non-loopback endpoint is refused unless allow_plain is set in the options.
 *
 * ZMQ_FD is edge-triggered: it signals a change, not a level, and any zmq_send/zmq_recv/
 * ZMQ_EVENTS on the socket may consume the edge. bus_watch therefore drains while ZMQ_EVENTS
 * says POLLIN after every wakeup, and must be kicked (bus_watch_kick) after the owner sends on
 * the socket outside the read callback.
 */
#ifndef CALSETA_BUS_H
#define CALSETA_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct config;

/* The process's ZeroMQ context, made on first use (zmq contexts are thread-safe). */
void *bus_context(void);
/* Terminates it; every socket must be closed first. Safe when never made. */
void bus_context_term(void);

struct bus_opts {
    int64_t max_msg;  /* ZMQ_MAXMSGSIZE; 0 -> PROTO_MAX_MSG */
    int hwm;          /* send and receive high-water marks; 0 -> 10000 */
    int linger_ms;    /* 0 -> 0 (drop on close); bounded to 10 s */
    int allow_plain;  /* permit a non-loopback endpoint without CURVE */
};

/* Makes a socket of `type` and binds (bus_server) or connects (bus_client) it to endpoint.
 * NULL with err filled on failure. opts may be NULL. */
void *bus_server(int type, const struct config *c, const char *endpoint,
                 const struct bus_opts *opts, char *err, size_t errlen);
void *bus_client(int type, const struct config *c, const char *endpoint,
                 const struct bus_opts *opts, char *err, size_t errlen);
/* 1 when the endpoint is ipc://, inproc:// or tcp:// on 127.0.0.0/8, ::1 or localhost. */
int bus_endpoint_is_local(const char *endpoint);

/* Receives one frame without blocking into buf (up to cap bytes). Returns its size (which may
 * exceed cap: then it was truncated), -1 when none is ready. *more is set to ZMQ_RCVMORE. */
int bus_recv_frame(void *sock, void *buf, size_t cap, int *more);
/* Discards the remaining frames of a multi-part message. */
void bus_skip_rest(void *sock);

/* Calls cb(arg) each time the socket has a message to read; cb should receive (with
 * ZMQ_DONTWAIT) at least one message per call. At most 256 calls per loop iteration, then the
 * rest waits for the next iteration so other handles get their turn. Handles are unref'd: a
 * watch does not keep the loop alive. */
typedef void (*bus_readable_cb)(void *arg);
struct bus_watch;
struct bus_watch *bus_watch_new(uv_loop_t *loop, void *sock, bus_readable_cb cb, void *arg);
/* Re-checks readiness; call after sending on the socket outside cb. */
void bus_watch_kick(struct bus_watch *w);
/* Stops watching; memory is released from the loop's close callbacks (run the loop once more
 * if it has already returned). */
void bus_watch_free(struct bus_watch *w);

#endif
