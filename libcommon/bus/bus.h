/*
 * bus.h - the one place ZeroMQ sockets are made: the process's context, sockets with sane
 * options, CURVE on every tcp:// link, and a ZeroMQ socket watched from a libuv loop.
 *
 * Sockets made here have a bounded linger, high-water marks, ZMQ_MAXMSGSIZE (a peer cannot
 * make us allocate more than max_msg bytes for one message) and, on connecting sockets,
 * ZMQ_IMMEDIATE (no queueing towards a peer that is not there). Endpoints are ipc:// (the
 * defaults, under CALSETA_DATA_DIR, so two stacks on one machine never meet), inproc:// or
 * tcp://. Every tcp:// link speaks CURVE, loopback included, and both ends authenticate: the
 * binding side is the CURVE server with its link's secret key and serves only clients whose
 * public key its link allows (a ZAP handler, bus_zap.c); a connecting side checks the link's
 * public key and proves itself with the link's client pair (bus_curve_keys and
 * bus_curve_client_keys say where keys come from). There is no plaintext TCP; ipc:// links are
 * guarded by the data folder's permissions instead.
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
    const char *link; /* "audit", "jobs", "lookup", "runner", "workflow": picks the CURVE keys */
    int64_t max_msg;      /* ZMQ_MAXMSGSIZE; 0 -> PROTO_MAX_MSG */
    int hwm;              /* send and receive high-water marks; 0 -> 10000 */
    int linger_ms;        /* 0 -> 0 (drop on close); bounded to 10 s */
};

/* Makes a socket of `type` and binds (bus_server) or connects (bus_client) it to every
 * endpoint of a comma-separated list. NULL with err filled on failure. opts may be NULL. */
void *bus_server(int type, const struct config *c, const char *endpoint,
                 const struct bus_opts *opts, char *err, size_t errlen);
void *bus_client(int type, const struct config *c, const char *endpoint,
                 const struct bus_opts *opts, char *err, size_t errlen);
void bus_close(void *sock);

/*
 * The CURVE key pair of a link (Z85, 40 characters + NUL): from CURVE_<LINK>_PUBLIC_KEY /
 * CURVE_<LINK>_SECRET_KEY, else (every link but the runner's, whose process must not hold the
 * stack's keys) CURVE_SERVER_PUBLIC_KEY / CURVE_SERVER_SECRET_KEY, else the file
 * CALSETA_DATA_DIR/curve/<link>.key (0600; made at first start). sec is "" when only a public
 * key is configured (a client on another host). 0, or -1 with err.
 */
int bus_curve_keys(const struct config *c, const char *link, char pub[41], char sec[41],
                   char *err, size_t errlen);

/* The link's client pair, the same way: CURVE_<LINK>_CLIENT_PUBLIC_KEY /
 * CURVE_<LINK>_CLIENT_SECRET_KEY, else (but for the runner's link) CURVE_CLIENT_PUBLIC_KEY /
 * CURVE_CLIENT_SECRET_KEY, else CALSETA_DATA_DIR/curve/<link>-client.key. */
int bus_curve_client_keys(const struct config *c, const char *link, char pub[41], char sec[41],
                          char *err, size_t errlen);

/* The client public keys a server of the link serves, 32 raw bytes each, appended to *out:
 * the link's client key and those of CURVE_<LINK>_ALLOWED_CLIENT_KEYS (a comma list, one per
 * remote host that has a pair of its own). 0, or -1 with err. */
struct buf;
int bus_curve_allowed_clients(const struct config *c, const char *link, struct buf *out,
                              char *err, size_t errlen);

/* Adds keys (nkeys raw 32-byte public keys) to the ZAP domain's allow-list, starting the
 * process's ZAP handler thread on first use (before any CURVE server socket binds). */
int bus_zap_allow(const char *domain, const uint8_t *keys, size_t nkeys, char *err,
                  size_t errlen);
/* After the context is terminated: joins the handler thread and forgets the lists. */
void bus_zap_stopped(void);

/* Sends one frame without blocking (more: another frame follows); 0 or -1 (errno). */
int bus_send(void *sock, const void *data, size_t len, int more);
/* 1 when a message can be read now. */
int bus_readable(void *sock);
/* Receives a whole multi-part message without blocking: its first maxparts frames are copied
 * into parts[] (initialised bufs), *nparts is the count of frames the message had (it may
 * exceed maxparts). -1 when no message is ready. */
int bus_recv_msg(void *sock, struct buf *parts, size_t maxparts, size_t *nparts);

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
