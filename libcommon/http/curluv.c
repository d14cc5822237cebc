/*
 * curluv.c - curl multi on libuv, see curluv.h.
 *
 * A keep-alive connection is handed back to curl's pool after every transfer and curl then
 * stops watching its socket (CURL_POLL_REMOVE). Its uv_poll handle is parked by descriptor
 * instead of closed, and taken up again when the connection carries the next request: no
 * allocation, handle setup or close round per request. A parked handle stays registered for
 * readability (the events curl asks for while it waits for an answer), so taking it up again
 * usually changes nothing in the epoll set; if the idle socket does turn readable (the server
 * closed it), the handle just stops: curl finds the connection dead when it next looks at it.
 * A parked handle is closed when curl closes the socket (our CURLOPT_CLOSESOCKETFUNCTION),
 * before the descriptor can be reused. Only sockets opened through our
 * CURLOPT_OPENSOCKETFUNCTION are parked: curl closes others (its resolver's socket pair, for
 * one) without that callback, so their handles are closed as soon as curl stops watching them.
 *
 * A pinned transfer (curluv_add_pinned) gets its own open-socket callback: the socket is made
 * only for the pinned address and port, compared as binary sockaddrs, never as names.
 */
#include "curluv.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct curluv *m;
    int parked;
    int events; /* what the poll handle watches now (uv_poll_start() always re-registers) */
    struct sock_ctx *prev, *next; /* for closing */
};

struct curluv {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct sock_ctx *socks;
    struct sock_ctx **parked; /* by descriptor: handles of sockets curl does not watch now */
    unsigned char *owned;     /* by descriptor: opened by on_open_socket, not yet closed */
    size_t nparked;           /* size of both */
    curluv_done_fn done;
    void *arg;
    void (*closed)(void *);
    void *closed_arg;
};

static void check_done(struct curluv *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left))) {
        if (msg->msg == CURLMSG_DONE)
            m->done(m->arg, msg->easy_handle, msg->data.result);
    }
}

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *s = h->data;
    struct curluv *m = s->m;
    int flags = 0, running;
    if (s->parked) { /* not curl's now (see the top of this file) */
        uv_poll_stop(h);
        s->events = 0;
        return;
    }
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(m->multi, s->fd, flags, &running);
    check_done(m);
}

static void sock_forget(struct curluv *m, struct sock_ctx *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        m->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* uv_poll_start() unregisters and registers again (two epoll_ctl calls) even when nothing
 * changes: call it only for a change. */
static void watch(struct sock_ctx *s, int events)
{
    if (s->events == events)
        return;
    uv_poll_start(&s->poll, events, on_poll);
    s->events = events;
}

static void fd_room(struct curluv *m, curl_socket_t fd)
{
    if ((size_t)fd < m->nparked)
        return;
    size_t n = m->nparked ? m->nparked : 64;
    while (n <= (size_t)fd)
        n *= 2;
    m->parked = xrealloc(m->parked, n * sizeof *m->parked);
    m->owned = xrealloc(m->owned, n);
    memset(m->parked + m->nparked, 0, (n - m->nparked) * sizeof *m->parked);
    memset(m->owned + m->nparked, 0, n - m->nparked);
    m->nparked = n;
}

static int owned(const struct curluv *m, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < m->nparked && m->owned[fd];
}

static struct sock_ctx *unpark(struct curluv *m, curl_socket_t fd)
{
    if (fd < 0 || (size_t)fd >= m->nparked)
        return NULL;
    struct sock_ctx *s = m->parked[fd];
    m->parked[fd] = NULL;
    if (s)
        s->parked = 0;
    return s;
}

static void park(struct curluv *m, struct sock_ctx *s)
{
    fd_room(m, s->fd);
    watch(s, UV_READABLE);
    s->parked = 1;
    m->parked[s->fd] = s;
}

/* curl closes a socket: a parked handle goes first, while the descriptor is still ours (closing
 * a poll handle later would remove whatever then has that number from the loop's epoll set). */
static int on_close_socket(void *arg, curl_socket_t fd)
{
    struct curluv *m = arg;
    struct sock_ctx *s = unpark(m, fd);
    if (s)
        sock_forget(m, s);
    if (owned(m, fd))
        m->owned[fd] = 0;
    return close(fd);
}

static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct curluv *m = arg;
    (void)purpose;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    fd_room(m, fd);
    m->owned[fd] = 1;
    return fd;
}

/* ---- the address pin ---- */

int curluv_pin_set(struct curluv_pin *pin, const char *addr, size_t addrlen, int port)
{
    char a[INET6_ADDRSTRLEN + 2];
    memset(pin, 0, sizeof *pin);
    if (addrlen >= 2 && addr[0] == '[' && addr[addrlen - 1] == ']') {
        addr++;
        addrlen -= 2;
    }
    if (!addrlen || addrlen >= sizeof a || port <= 0 || port > 65535)
        return -1;
    memcpy(a, addr, addrlen);
    a[addrlen] = 0;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&pin->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&pin->addr;
    if (inet_pton(AF_INET, a, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, a, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    return -1;
}

/* Exactly the pinned address and port (for IPv6 the scope too); families must agree, so an
 * IPv4-mapped IPv6 form of a pinned IPv4 address does not pass either. */
static int pin_matches(const struct curluv_pin *pin, const struct sockaddr *sa, socklen_t len)
{
    const struct sockaddr *want = (const struct sockaddr *)&pin->addr;
    if (sa->sa_family != want->sa_family)
        return 0;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *x = (const void *)sa, *y = (const void *)want;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *x = (const void *)sa, *y = (const void *)want;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
    }
    return 0;
}

static void pin_refuse(struct curluv_pin *pin, const char *what, const char *ip, int port)
{
    pin->refused = 1;
    msg_warn("refused %s to %s port %d: not the address the SSRF check approved", what, ip,
             port);
}

static curl_socket_t on_open_pinned(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct curluv_pin *pin = arg;
    if (purpose != CURLSOCKTYPE_IPCXN || !pin_matches(pin, &a->addr, a->addrlen)) {
        char ip[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (a->family == AF_INET) {
            const struct sockaddr_in *x = (const void *)&a->addr;
            inet_ntop(AF_INET, &x->sin_addr, ip, sizeof ip);
            port = ntohs(x->sin_port);
        } else if (a->family == AF_INET6) {
            const struct sockaddr_in6 *x = (const void *)&a->addr;
            inet_ntop(AF_INET6, &x->sin6_addr, ip, sizeof ip);
            port = ntohs(x->sin6_port);
        }
        pin_refuse(pin, "a connection", ip, port);
        return CURL_SOCKET_BAD;
    }
    if (!pin->m) /* a transfer outside curluv (curluv_pin_easy): curl closes it itself */
        return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    return on_open_socket(pin->m, purpose, a);
}

/* Every transfer, on a new or a kept-alive connection, before its request is sent: the
 * connection's peer must be the pinned address (a connection opened for another transfer's
 * pin is not this one's to use). */
static int on_prereq(void *arg, char *peer_ip, char *local_ip, int peer_port, int local_port)
{
    struct curluv_pin *pin = arg;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    (void)local_ip;
    (void)local_port;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (peer_port > 0 && peer_port <= 65535 && inet_pton(AF_INET, peer_ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)peer_port);
        len = sizeof *v4;
    } else if (peer_port > 0 && peer_port <= 65535 &&
               inet_pton(AF_INET6, peer_ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)peer_port);
        v6->sin6_scope_id = ((const struct sockaddr_in6 *)&pin->addr)->sin6_scope_id;
        len = sizeof *v6;
    }
    if (len && pin_matches(pin, (struct sockaddr *)&ss, len))
        return CURL_PREREQFUNC_OK;
    pin_refuse(pin, "a request", peer_ip, peer_port);
    return CURL_PREREQFUNC_ABORT;
}

static int on_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    struct curluv *m = userp;
    struct sock_ctx *s = socketp;
    (void)easy;
    if (action == CURL_POLL_REMOVE) {
        if (s) {
            if (owned(m, fd))
                park(m, s);
            else /* curl may close it without telling us: not kept past this point */
                sock_forget(m, s);
            curl_multi_assign(m->multi, fd, NULL);
        }
        return 0;
    }
    if (!s && (s = unpark(m, fd))) {
        curl_multi_assign(m->multi, fd, s);
    } else if (!s) {
        s = xcalloc(1, sizeof *s);
        s->fd = fd;
        s->m = m;
        uv_poll_init_socket(m->loop, &s->poll, fd);
        s->poll.data = s;
        s->next = m->socks;
        if (m->socks)
            m->socks->prev = s;
        m->socks = s;
        curl_multi_assign(m->multi, fd, s);
    }
    int ev = 0;
    if (action != CURL_POLL_OUT)
        ev |= UV_READABLE;
    if (action != CURL_POLL_IN)
        ev |= UV_WRITABLE;
    watch(s, ev);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    struct curluv *m = t->data;
    int running;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(m);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    struct curluv *m = userp;
    (void)multi;
    if (timeout_ms < 0) {
        uv_timer_stop(&m->timer);
        return 0;
    }
    /* curl often asks again for the expiry the timer already has (within the loop's cached
     * millisecond); restarting would take the timer out of the loop's heap and put it back,
     * among thousands of lookup timers */
    if (uv_is_active((uv_handle_t *)&m->timer) &&
        uv_timer_get_due_in(&m->timer) == (uint64_t)timeout_ms)
        return 0;
    uv_timer_start(&m->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

struct curluv *curluv_new(uv_loop_t *loop, curluv_done_fn done, void *arg)
{
    struct curluv *m = xcalloc(1, sizeof *m);
    m->loop = loop;
    m->done = done;
    m->arg = arg;
    m->multi = curl_multi_init();
    if (!m->multi)
        msg_fatal("curl_multi_init failed");
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    return m;
}

void curluv_max_connections(struct curluv *m, long n)
{
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, n);
}

void curluv_max_host_connections(struct curluv *m, long n)
{
    curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
}

void curluv_add(struct curluv *m, CURL *easy)
{
    /* connections are opened and closed through us, so a parked handle never outlives its
     * socket; a handle pinned before is unpinned */
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, m);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, NULL);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, m);
    curl_multi_add_handle(m->multi, easy);
}

/* The pin's two checks: the socket (new connections) and the request (kept-alive ones). */
static void pin_checks(CURL *easy, struct curluv_pin *pin, struct curluv *m)
{
    pin->m = m;
    pin->refused = 0;
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_pinned);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, pin);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, pin);
}

void curluv_add_pinned(struct curluv *m, CURL *easy, struct curluv_pin *pin)
{
    pin_checks(easy, pin, m);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, m);
    curl_multi_add_handle(m->multi, easy);
}

void curluv_pin_easy(CURL *easy, struct curluv_pin *pin)
{
    pin_checks(easy, pin, NULL);
    /* curl closes the socket itself (an easy once run through curluv keeps no stale callback) */
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, NULL);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, NULL);
}

void curluv_remove(struct curluv *m, CURL *easy)
{
    curl_multi_remove_handle(m->multi, easy);
}

static void on_closed(uv_handle_t *h)
{
    struct curluv *m = h->data;
    void (*closed)(void *) = m->closed;
    void *arg = m->closed_arg;
    free(m->parked);
    free(m->owned);
    free(m);
    if (closed)
        closed(arg);
}

void curluv_close(struct curluv *m, void (*closed)(void *), void *arg)
{
    m->closed = closed;
    m->closed_arg = arg;
    curl_multi_cleanup(m->multi); /* closes cached connections (REMOVE callbacks) */
    m->multi = NULL;
    while (m->socks)
        sock_forget(m, m->socks);
    if (m->parked)
        memset(m->parked, 0, m->nparked * sizeof *m->parked);
    uv_timer_stop(&m->timer);
    uv_close((uv_handle_t *)&m->timer, on_closed);
}
