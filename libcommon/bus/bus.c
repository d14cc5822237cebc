/*
 * bus.c - ZeroMQ context, socket options, CURVE and libuv integration (see bus.h).
 */
#include "bus.h"
#include "config.h"
#include "log.h"
#include "proto/proto.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#define DRAIN_MAX 256

/* One per process, as ZeroMQ intends. Threads may make their first socket at the same time
 * (the runner's server thread and a client on the main thread), and inproc endpoints only
 * join sockets of one context, so the first use is serialised. */
static void *the_context;
static pthread_mutex_t context_lock = PTHREAD_MUTEX_INITIALIZER;

void *bus_context(void)
{
    pthread_mutex_lock(&context_lock);
    if (!the_context) {
        the_context = zmq_ctx_new();
        if (!the_context)
            msg_fatal("zmq_ctx_new: %s", zmq_strerror(errno));
    }
    void *ctx = the_context;
    pthread_mutex_unlock(&context_lock);
    return ctx;
}

void bus_context_term(void)
{
    pthread_mutex_lock(&context_lock);
    void *ctx = the_context;
    the_context = NULL;
    pthread_mutex_unlock(&context_lock);
    if (ctx) {
        zmq_ctx_term(ctx);
        bus_zap_stopped();
    }
}

static void set_int(void *s, int opt, int v)
{
    zmq_setsockopt(s, opt, &v, sizeof v);
}

/* The server side: the link's secret key, and a ZAP domain named after the link whose
 * allow-list holds the link's client keys. */
static int curve_server(void *s, const struct config *c, const char *link, char *err,
                        size_t errlen)
{
    char pub[41], sec[41];
    struct buf allowed;
    int rc = -1;
    buf_init(&allowed);
    if (bus_curve_keys(c, link, pub, sec, err, errlen) != 0 ||
        bus_curve_allowed_clients(c, link, &allowed, err, errlen) != 0)
        goto out;
    if (!sec[0]) {
        snprintf(err, errlen, "the %s link has a CURVE public key but no secret key", link);
        goto out;
    }
    if (bus_zap_allow(link, (const uint8_t *)allowed.data, allowed.len / 32, err, errlen) != 0)
        goto out;
    set_int(s, ZMQ_CURVE_SERVER, 1);
    rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40) |
         zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, link, strlen(link));
#ifdef ZMQ_ZAP_ENFORCE_DOMAIN
    set_int(s, ZMQ_ZAP_ENFORCE_DOMAIN, 1);
#endif
    if (rc != 0)
        snprintf(err, errlen, "CURVE setup failed (is libzmq built with CURVE?): %s",
                 zmq_strerror(errno));
out:
    explicit_bzero(sec, sizeof sec);
    buf_destroy(&allowed);
    return rc;
}

/* The client side: the link's server public key, and the link's client pair. */
static int curve_client(void *s, const struct config *c, const char *link, char *err,
                        size_t errlen)
{
    char pub[41], sec[41], cpub[41], csec[41];
    int rc = -1;
    csec[0] = 0;
    if (bus_curve_keys(c, link, pub, sec, err, errlen) != 0 ||
        bus_curve_client_keys(c, link, cpub, csec, err, errlen) != 0)
        goto out;
    if (!csec[0]) {
        snprintf(err, errlen, "the %s link has a CURVE client public key but no client secret "
                              "key", link);
        goto out;
    }
    rc = zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, pub, 40) |
         zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, cpub, 40) |
         zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, csec, 40);
    if (rc != 0)
        snprintf(err, errlen, "CURVE setup failed (is libzmq built with CURVE?): %s",
                 zmq_strerror(errno));
out:
    explicit_bzero(sec, sizeof sec);
    explicit_bzero(csec, sizeof csec);
    return rc;
}

/* CURVE for a socket whose endpoints include tcp://. */
static int apply_curve(void *s, const struct config *c, const char *link, int server, char *err,
                       size_t errlen)
{
    return server ? curve_server(s, c, link, err, errlen) : curve_client(s, c, link, err, errlen);
}

/* An ipc:// path must fit in sun_path; its folder is made (0700) when missing. */
static int ipc_ready(const char *ep, int server, char *err, size_t errlen)
{
    const char *path = ep + 6;
    if (strlen(path) >= 107) {
        snprintf(err, errlen, "%s: the socket path is longer than 107 bytes; use a shorter "
                              "CALSETA_DATA_DIR", ep);
        return -1;
    }
    const char *slash = strrchr(path, '/');
    if (server && slash && slash > path) {
        char *dir = xstrndup(path, (size_t)(slash - path));
        mkdir(dir, 0700);
        free(dir);
    }
    return 0;
}

static int attach(void *s, int server, const char *ep, char *err, size_t errlen)
{
    if (!strncmp(ep, "ipc://", 6) && ipc_ready(ep, server, err, errlen) != 0)
        return -1;
    if ((server ? zmq_bind(s, ep) : zmq_connect(s, ep)) != 0) {
        snprintf(err, errlen, "%s %s: %s", server ? "bind" : "connect", ep, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static int attach_all(void *s, int server, const char *list, int tcp, char *err, size_t errlen)
{
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *e = strtok_r(copy, ", ", &save); e && rc == 0; e = strtok_r(NULL, ", ", &save))
        if (!strncmp(e, "tcp://", 6) == !!tcp)
            rc = attach(s, server, e, err, errlen);
    free(copy);
    return rc;
}

/* Every endpoint of a comma- or space-separated list; *tcp is set when one is tcp://. */
static int endpoints_check(const char *list, int *tcp, char *err, size_t errlen)
{
    char *copy = xstrdup(list), *save = NULL;
    int n = 0, rc = 0;
    *tcp = 0;
    for (char *e = strtok_r(copy, ", ", &save); e && rc == 0; e = strtok_r(NULL, ", ", &save)) {
        n++;
        if (!strncmp(e, "tcp://", 6))
            *tcp = 1;
        else if (strncmp(e, "ipc://", 6) && strncmp(e, "inproc://", 9)) {
            snprintf(err, errlen, "%s: only tcp://, ipc:// and inproc:// endpoints are used", e);
            rc = -1;
        }
    }
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "no endpoint given");
        rc = -1;
    }
    free(copy);
    return rc;
}

static void *make(int type, const struct config *c, const char *ep, const struct bus_opts *o,
                  int server, char *err, size_t errlen)
{
    struct bus_opts d = {0};
    int tcp;
    if (!o)
        o = &d;
    if (!ep || endpoints_check(ep, &tcp, err, errlen) != 0)
        return NULL;
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
    /* A socket's options are copied into each connection or listener when it is made: ipc and
     * inproc endpoints are attached first, without CURVE, then CURVE is set for the tcp ones.
     * So one client may list a local runner (ipc) and a remote one (tcp). */
    int rc = attach_all(s, server, ep, 0, err, errlen);
    if (rc == 0 && tcp)
        rc = apply_curve(s, c, o->link ? o->link : "bus", server, err, errlen);
    if (rc == 0 && tcp)
        rc = attach_all(s, server, ep, 1, err, errlen);
    if (rc != 0)
        goto fail;
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

void bus_close(void *sock)
{
    if (sock)
        zmq_close(sock);
}

int bus_send(void *sock, const void *data, size_t len, int more)
{
    return zmq_send(sock, data, len, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) < 0 ? -1 : 0;
}

int bus_readable(void *sock)
{
    uint32_t ev = 0;
    size_t sz = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &sz) != 0)
        return 0;
    return (ev & ZMQ_POLLIN) != 0;
}

int bus_recv_msg(void *sock, struct buf *parts, size_t maxparts, size_t *nparts)
{
    size_t n = 0;
    int more = 1, got = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, got ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            if (!got)
                return -1;
            break;
        }
        got = 1;
        more = zmq_msg_more(&m);
        if (n < maxparts) {
            buf_reset(&parts[n]);
            buf_append(&parts[n], zmq_msg_data(&m), zmq_msg_size(&m));
        }
        n++;
        zmq_msg_close(&m);
    }
    *nparts = n;
    return 0;
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

static void on_idle(uv_idle_t *h);

/* The edge-triggered rule: keep going while ZMQ_EVENTS says POLLIN, whatever woke us. */
static void drain(struct bus_watch *w)
{
    for (int i = 0; i < DRAIN_MAX; i++) {
        if (w->closing)
            return;
        if (!bus_readable(w->sock)) {
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
    if (w && !w->closing && bus_readable(w->sock))
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
