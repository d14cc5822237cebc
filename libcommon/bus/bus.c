/*
 * bus.c - ZeroMQ context, socket options, CURVE and libuv integration (see bus.h).
 */
#include "bus.h"
#include "config.h"
#include "log.h"
#include "proto/proto.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define DRAIN_MAX 256

static void *the_context; /* one per process, as ZeroMQ intends */

void *bus_context(void)
{
    if (!the_context) {
        the_context = zmq_ctx_new();
        if (!the_context)
            msg_fatal("zmq_ctx_new: %s", zmq_strerror(errno));
    }
    return the_context;
}

void bus_context_term(void)
{
    if (the_context)
        zmq_ctx_term(the_context);
    the_context = NULL;
}

int bus_endpoint_is_local(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return 1;
    if (strncmp(ep, "tcp://", 6))
        return 0;
    const char *h = ep + 6;
    return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6);
}

static void set_int(void *s, int opt, int v)
{
    zmq_setsockopt(s, opt, &v, sizeof v);
}

static int apply_curve(void *s, const struct config *c, int server, char *err, size_t errlen)
{
    const char *pub = c ? c->curve_server_public_key : NULL;
    const char *sec = c ? c->curve_server_secret_key : NULL;
    if (server && sec && *sec) {
        set_int(s, ZMQ_CURVE_SERVER, 1);
        if (zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, strlen(sec)) != 0)
            goto bad;
        return 1;
    }
    if (!server && pub && *pub) {
        char epub[41], esec[41];
        if (zmq_curve_keypair(epub, esec) != 0)
            goto bad;
        int rc = zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, pub, strlen(pub)) |
                 zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, epub, 40) |
                 zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, esec, 40);
        explicit_bzero(esec, sizeof esec);
        if (rc != 0)
            goto bad;
        return 1;
    }
    return 0;
bad:
    snprintf(err, errlen, "CURVE setup failed (keys must be 40-character Z85; is libzmq built "
                          "with CURVE?): %s", zmq_strerror(errno));
    return -1;
}

static void *make(int type, const struct config *c, const char *ep, const struct bus_opts *o,
                  int server, char *err, size_t errlen)
{
    struct bus_opts d = {0};
    if (!o)
        o = &d;
    void *s = zmq_socket(bus_context(), type);
    if (!s) {
        snprintf(err, errlen, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    int hwm = o->hwm > 0 ? o->hwm : 10000;
    int linger = o->linger_ms > 0 ? (o->linger_ms < 10000 ? o->linger_ms : 10000) : 0;
    int64_t maxmsg = o->max_msg > 0 ? o->max_msg : PROTO_MAX_MSG;
    set_int(s, ZMQ_LINGER, linger);
    set_int(s, ZMQ_SNDHWM, hwm);
    set_int(s, ZMQ_RCVHWM, hwm);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (!server)
        set_int(s, ZMQ_IMMEDIATE, 1);
    int curve = apply_curve(s, c, server, err, errlen);
    if (curve < 0)
        goto fail;
    if (!curve && !o->allow_plain && !bus_endpoint_is_local(ep)) {
        snprintf(err, errlen, "%s is not a loopback endpoint: set CURVE_SERVER_PUBLIC_KEY and "
                              "CURVE_SERVER_SECRET_KEY to encrypt it", ep);
        goto fail;
    }
    if ((server ? zmq_bind(s, ep) : zmq_connect(s, ep)) != 0) {
        snprintf(err, errlen, "%s %s: %s", server ? "bind" : "connect", ep, zmq_strerror(errno));
        goto fail;
    }
    return s;
fail:
    zmq_close(s);
    return NULL;
}

void *bus_server(int type, const struct config *c, const char *endpoint,
                 const struct bus_opts *opts, char *err, size_t errlen)
{
    return make(type, c, endpoint, opts, 1, err, errlen);
}

void *bus_client(int type, const struct config *c, const char *endpoint,
                 const struct bus_opts *opts, char *err, size_t errlen)
{
    return make(type, c, endpoint, opts, 0, err, errlen);
}

int bus_recv_frame(void *sock, void *buf, size_t cap, int *more)
{
    int n = zmq_recv(sock, buf, cap, ZMQ_DONTWAIT);
    if (n < 0)
        return -1;
    int m = 0;
    size_t sz = sizeof m;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &m, &sz);
    if (more)
        *more = m;
    return n;
}

void bus_skip_rest(void *sock)
{
    int more = 1;
    size_t sz = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    while (more) {
        char tmp[1];
        if (zmq_recv(sock, tmp, sizeof tmp, ZMQ_DONTWAIT) < 0)
            return;
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    }
}

struct bus_watch {
    uv_poll_t poll;
    uv_idle_t idle;
    void *sock;
    bus_readable_cb cb;
    void *arg;
    int closing;
    int open_handles;
};

static int readable(void *sock)
{
    uint32_t ev = 0;
    size_t sz = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz) != 0)
        return 0;
    return (ev & ZMQ_POLLIN) != 0;
}

static void on_idle(uv_idle_t *h);

/* The edge-triggered rule: keep going while ZMQ_EVENTS says POLLIN, whatever woke us. */
static void drain(struct bus_watch *w)
{
    for (int i = 0; i < DRAIN_MAX; i++) {
        if (w->closing)
            return;
        if (!readable(w->sock)) {
            uv_idle_stop(&w->idle);
            return;
        }
        w->cb(w->arg);
    }
    if (!w->closing)
        uv_idle_start(&w->idle, on_idle);
}

static void on_idle(uv_idle_t *h)
{
    drain(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drain(h->data);
}

struct bus_watch *bus_watch_new(uv_loop_t *loop, void *sock, bus_readable_cb cb, void *arg)
{
    int fd = -1;
    size_t sz = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &sz) != 0)
        return NULL;
    struct bus_watch *w = xcalloc(1, sizeof *w);
    w->sock = sock;
    w->cb = cb;
    w->arg = arg;
    if (uv_poll_init(loop, &w->poll, fd) != 0) {
        free(w);
        return NULL;
    }
    uv_idle_init(loop, &w->idle);
    w->poll.data = w->idle.data = w;
    w->open_handles = 2;
    uv_unref((uv_handle_t *)&w->poll);
    uv_unref((uv_handle_t *)&w->idle);
    uv_poll_start(&w->poll, UV_READABLE, on_poll);
    /* Messages may already be queued: the edge for them is gone. */
    uv_idle_start(&w->idle, on_idle);
    return w;
}

void bus_watch_kick(struct bus_watch *w)
{
    if (w && !w->closing && readable(w->sock))
        uv_idle_start(&w->idle, on_idle);
}

static void on_closed(uv_handle_t *h)
{
    struct bus_watch *w = h->data;
    if (--w->open_handles == 0)
        free(w);
}

void bus_watch_free(struct bus_watch *w)
{
    if (!w || w->closing)
        return;
    w->closing = 1;
    uv_close((uv_handle_t *)&w->poll, on_closed);
    uv_close((uv_handle_t *)&w->idle, on_closed);
}
