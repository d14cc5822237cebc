/*
 * http_server.c - the listener of the HTTP server: bind (SO_REUSEPORT), accept, connection
 * accounting against max_connections, drain, free; plus the socket-less server the fuzzer uses.
 *
 * The listening socket is made by hand (socket, SO_REUSEADDR/SO_REUSEPORT, bind) and handed
 * to libuv with uv_tcp_open(), because libuv 1.44 cannot set SO_REUSEPORT itself. Connections
 * over max_connections are still accepted, answered 503 with Connection: close and closed, so
 * clients get an answer instead of a hanging SYN; at most as many again are kept for that,
 * beyond which they are closed without a word.
 *
 * Fairness: connections are counted per socket peer address; beyond max_connections_per_ip
 * a new connection is closed at once without an answer, and beyond max_bodies_per_ip a request with a
 * body is refused at the end of its headers. When max_connections is reached, the connection
 * idle the longest (a keep-alive connection between requests, or an accepted one that has not
 * sent a byte) is closed to make room, so held slots are only those doing work.
 *
 * Lifetime: s->refs counts the owner (until http_server_free), the listener handle until its
 * close callback, and every connection not yet freed. Drain completes when the listener is
 * closed and no connection is left.
 */
#include "crypto.h"
#include "http_internal.h"
#include "log.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF_BYTES (64u << 10)
#define LISTEN_BACKLOG 4096 /* bursts of connections wait in the kernel, not as dropped SYNs */

/* ---------- configuration ---------- */

static void cors_parse(struct http_server *s, const char *list)
{
    if (!list)
        return;
    struct http_list l = {list, list + strlen(list), 0};
    const char *a, *z;
    while (http_list_next(&l, &a, &z)) {
        if (z > a) {
            s->cors_origins = xrealloc(s->cors_origins, (s->ncors + 1) * sizeof(char *));
            s->cors_origins[s->ncors++] = xstrndup(a, (size_t)(z - a));
        }
    }
}

int http_server_config_apply(struct http_server *s, const struct http_server_config *cfg, char *err,
                             size_t errlen)
{
    const long long mib = 1024 * 1024;
    s->max_body = cfg->max_body_bytes > 0 ? cfg->max_body_bytes : 10 * mib;
    s->max_ingest_body = cfg->max_ingest_body_bytes > 0 ? cfg->max_ingest_body_bytes : 5 * mib;
    s->max_body_mb = cfg->max_body_mb > 0 ? cfg->max_body_mb : (int)(s->max_body / mib);
    s->max_ingest_body_mb =
        cfg->max_ingest_body_mb > 0 ? cfg->max_ingest_body_mb : (int)(s->max_ingest_body / mib);
    s->max_header_bytes = cfg->max_header_bytes > 0 ? cfg->max_header_bytes : 16384;
    s->header_timeout_ms = cfg->header_timeout_ms > 0 ? cfg->header_timeout_ms : 10000;
    s->body_timeout_ms = cfg->body_timeout_ms > 0 ? cfg->body_timeout_ms : 10000;
    s->body_min_rate = cfg->body_min_rate > 0 ? cfg->body_min_rate : 0;
    s->idle_timeout_ms = cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : 60000;
    s->max_connections = cfg->max_connections > 0 ? cfg->max_connections : 4096;
    s->max_connections_per_ip = cfg->max_connections_per_ip > 0 ? cfg->max_connections_per_ip : 0;
    s->max_bodies_per_ip = cfg->max_bodies_per_ip > 0 ? cfg->max_bodies_per_ip : 0;
    s->ip_nbuckets = 4096;
    s->ip_buckets = xcalloc(s->ip_nbuckets, sizeof *s->ip_buckets);
    s->hsts = cfg->https_enabled && cfg->hsts_enabled;
    s->cors_allow_all = cfg->cors_allow_all != 0;
    if (!s->cors_allow_all)
        cors_parse(s, cfg->cors_allowed_origins);
    s->cors_enabled = s->cors_allow_all || s->ncors > 0;
    if (s->cors_allow_all)
        msg_warn("cors_allow_all_origins_enabled: CORS allows every origin");
    http_server_build_security(s);
    s->rbuf_len = READ_BUF_BYTES;
    s->rbuf = xmalloc(s->rbuf_len);
    int cert = cfg->tls_cert_file && *cfg->tls_cert_file;
    int key = cfg->tls_key_file && *cfg->tls_key_file;
    if (cert != key) {
        snprintf(err, errlen, "TLS_CERT_FILE and TLS_KEY_FILE must be set together");
        return -1;
    }
    if (cert &&
        !(s->ssl_ctx = http_tls_ctx_new(cfg->tls_cert_file, cfg->tls_key_file, err, errlen)))
        return -1;
    return 0;
}

static void server_destroy(struct http_server *s)
{
    for (size_t i = 0; i < s->ncors; i++)
        free(s->cors_origins[i]);
    free(s->cors_origins);
    for (int k = 0; k < 3; k++)
        free(s->sec_headers[k]);
    free(s->rbuf);
    for (size_t i = 0; i < s->ip_nbuckets; i++)
        for (struct ip_slot *sl = s->ip_buckets[i], *nx; sl; sl = nx) {
            nx = sl->next;
            free(sl);
        }
    free(s->ip_buckets);
    if (s->ssl_ctx)
        SSL_CTX_free(s->ssl_ctx);
    buf_destroy(&s->fake_out);
    free(s);
}

void http_server_release(struct http_server *s)
{
    if (--s->refs == 0)
        server_destroy(s);
}

static void maybe_drained(struct http_server *s)
{
    if (!s->draining || s->listening || s->nalive > 0 || !s->drain_done)
        return;
    void (*done)(void *) = s->drain_done;
    s->drain_done = NULL;
    done(s->drain_arg);
}

/* ---------- connection accounting ---------- */

static size_t ip_hash(const struct http_server *s, const uint8_t a[16])
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 1099511628211ull;
    return (size_t)(h % s->ip_nbuckets);
}

struct ip_slot *http_server_ip_slot(struct http_server *s, const uint8_t addr[16])
{
    struct ip_slot **b = &s->ip_buckets[ip_hash(s, addr)];
    for (struct ip_slot *sl = *b; sl; sl = sl->next)
        if (!memcmp(sl->addr, addr, 16))
            return sl;
    struct ip_slot *sl = xcalloc(1, sizeof *sl);
    memcpy(sl->addr, addr, 16);
    sl->next = *b;
    *b = sl;
    return sl;
}

void http_server_ip_release(struct http_server *s, struct ip_slot *slot)
{
    if (slot->nopen > 0 || slot->nbody > 0)
        return;
    for (struct ip_slot **pp = &s->ip_buckets[ip_hash(s, slot->addr)]; *pp; pp = &(*pp)->next)
        if (*pp == slot) {
            *pp = slot->next;
            free(slot);
            return;
        }
}

void http_server_idle_enter(struct http_server *s, struct http_conn *c)
{
    if (c->idle_listed || c->closing || c->fake)
        return;
    c->idle_listed = 1;
    c->idle_next = NULL;
    c->idle_prev = s->idle_tail;
    if (s->idle_tail)
        s->idle_tail->idle_next = c;
    else
        s->idle_head = c;
    s->idle_tail = c;
}

void http_server_idle_leave(struct http_server *s, struct http_conn *c)
{
    if (!c->idle_listed)
        return;
    c->idle_listed = 0;
    if (c->idle_prev)
        c->idle_prev->idle_next = c->idle_next;
    else
        s->idle_head = c->idle_next;
    if (c->idle_next)
        c->idle_next->idle_prev = c->idle_prev;
    else
        s->idle_tail = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
}

static void conn_link(struct http_server *s, struct http_conn *c)
{
    c->next = s->conns;
    c->prev = NULL;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    c->listed = 1;
    s->nalive++;
    s->refs++;
    if (c->over_limit)
        s->nover++;
    else
        s->nopen++;
}

void http_server_conn_closed(struct http_server *s, struct http_conn *c)
{
    if (!c->listed)
        return;
    c->listed = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->over_limit)
        s->nover--;
    else
        s->nopen--;
    http_server_idle_leave(s, c);
    if (c->ip) {
        if (!c->over_limit)
            c->ip->nopen--;
        if (c->body_counted)
            c->ip->nbody--;
        c->body_counted = 0;
        http_server_ip_release(s, c->ip);
        c->ip = NULL;
    }
}

void http_server_conn_freed(struct http_server *s)
{
    s->nalive--;
    s->refs++; /* keep s while the drain callback runs */
    http_server_release(s);
    maybe_drained(s);
    http_server_release(s);
}

int http_server_connections(const struct http_server *s)
{
    return s->nopen + s->nover;
}

/* ---------- listening ---------- */

/* Makes room at the global cap by closing the connection idle the longest; 1 if one went. */
static int evict_idle(struct http_server *s)
{
    struct http_conn *c = s->idle_head;
    if (!c)
        return 0;
    s->evicted++;
    http_conn_close(c);
    return 1;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct http_server *s = listener->data;
    if (status < 0) {
        msg_warn("http: accept: %s", uv_strerror(status));
        return;
    }
    struct http_conn *c = http_conn_new(s, 0);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || s->draining) {
        conn_link(s, c);
        http_conn_close(c);
        return;
    }
    uint8_t addr[16];
    http_conn_peer(c, addr);
    struct ip_slot *ip = http_server_ip_slot(s, addr);
    if (s->max_connections_per_ip > 0 && ip->nopen >= s->max_connections_per_ip) {
        /* over its address's cap: closed at once, no answer (an answer and the linger after
         * it would cost more than the connection is worth to a client holding that many) */
        s->refused_per_ip++;
        conn_link(s, c);
        http_conn_close(c);
        return;
    }
    int over = 0;
    {
        ip->nopen++; /* before an eviction, which may release the slot of its own address */
        if (s->nopen >= s->max_connections && !evict_idle(s)) {
            over = 1;
            ip->nopen--;
        }
    }
    c->over_limit = over;
    if (over)
        http_server_ip_release(s, ip); /* a refused connection holds no slot */
    else
        c->ip = ip;
    conn_link(s, c);
    if (over && s->nover > (s->max_connections < 64 ? 64 : s->max_connections)) {
        http_conn_close(c); /* even the 503s are too many: close without a word */
        return;
    }
    if (http_conn_start(c) != 0)
        return;
    if (over)
        http_conn_over_limit(c);
}

void http_server_set_gate(struct http_server *s, http_gate gate, http_handler dropped)
{
    s->gate = gate;
    s->dropped = dropped;
}

static int listen_socket(const char *host, int port, int reuseport, int *family, char *err,
                         size_t errlen)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "address %s: %s", host ? host : "", gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        goto fail;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        snprintf(err, errlen, "bind: %s", strerror(errno));
        goto fail;
    }
    *family = ai->ai_family;
    freeaddrinfo(ai);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return -1;
}

static void on_listener_close(uv_handle_t *h)
{
    struct http_server *s = h->data;
    s->refs++;
    http_server_release(s); /* the listener's reference */
    maybe_drained(s);
    http_server_release(s);
}

static struct http_server *server_alloc(void)
{
    struct http_server *s = xcalloc(1, sizeof *s);
    s->refs = 1;
    buf_init(&s->fake_out);
    return s;
}

struct http_server *http_server_new(uv_loop_t *loop, const struct http_server_config *cfg,
                                    struct http_router *router, void *ctx, char *err, size_t errlen)
{
    struct http_server *s = server_alloc();
    s->loop = loop;
    s->router = router;
    s->ctx = ctx;
    if (http_server_config_apply(s, cfg, err, errlen) != 0)
        goto fail;
    int family = AF_INET;
    int fd = listen_socket(cfg->host, cfg->port, cfg->reuseport, &family, err, errlen);
    if (fd < 0)
        goto fail;
    (void)family;
    uv_tcp_init(loop, &s->listener); /* no socket yet: uv_tcp_open() gives it ours */
    s->listener.data = s;
    s->listening = 1;
    s->refs++;
    int rc = uv_tcp_open(&s->listener, fd);
    if (rc != 0)
        close(fd); /* not the handle's yet */
    else
        rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "listen: %s", uv_strerror(rc));
        s->listening = 0;
        uv_close((uv_handle_t *)&s->listener, on_listener_close);
        http_server_release(s);
        return NULL;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return s;
fail:
    http_server_release(s);
    return NULL;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

static void stop_listening(struct http_server *s)
{
    if (!s->listening)
        return;
    s->listening = 0;
    uv_close((uv_handle_t *)&s->listener, on_listener_close);
}

void http_server_drain(struct http_server *s, void (*done)(void *), void *arg)
{
    s->draining = 1;
    s->drain_done = done;
    s->drain_arg = arg;
    stop_listening(s);
    for (struct http_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        http_conn_drain(c);
    }
    s->refs++;
    maybe_drained(s);
    http_server_release(s);
}

void http_server_close_all(struct http_server *s)
{
    while (s->conns)
        http_conn_close(s->conns);
}

void http_server_free(struct http_server *s)
{
    if (!s || s->free_requested)
        return;
    s->free_requested = 1;
    s->drain_done = NULL;
    stop_listening(s);
    http_server_close_all(s);
    http_server_release(s);
}

/* ---------- socket-less server for fuzzing ---------- */

struct http_server *http_server_new_fake(const struct http_server_config *cfg,
                                         struct http_router *router, void *ctx)
{
    struct http_server *s = server_alloc();
    s->router = router;
    s->ctx = ctx;
    s->fake = 1;
    char err[256];
    struct http_server_config c = *cfg;
    c.tls_cert_file = c.tls_key_file = NULL;
    if (http_server_config_apply(s, &c, err, sizeof err) != 0)
        msg_fatal("fake http server: %s", err);
    return s;
}

static void fz_info(struct http_request *req, void *ctx)
{
    (void)ctx;
    if (http_header_get(req, "x-fail", NULL)) {
        http_respond_error(req, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL, NULL,
                           0);
        return;
    }
    json_t *o = json_pack("{s:i,s:i,s:b}", "body", (int)req->body.len, "params", (int)req->nparams,
                          "query", req->query != NULL);
    http_respond_json(req, req->body.len ? 202 : 200, o, NULL, 0);
}

/* The fuzzer's admission: "x-deny" refuses (the body is never read), "x-small" admits with a
 * 100-byte body limit, anything else is admitted with the server's limit. */
static void fz_gate(struct http_request *req, void *ctx)
{
    (void)ctx;
    if (http_header_get(req, "x-deny", NULL)) {
        http_respond_error(req, 401, "UNAUTHORIZED", "Denied.", NULL, NULL, 0);
        return;
    }
    http_request_admit(req, http_header_get(req, "x-small", NULL) ? 100 : 0);
}

static void fz_dropped(struct http_request *req, void *ctx)
{
    (void)ctx;
    if (req->user)
        msg_fatal("fuzz: dropped request carries state");
}

/* Walks the answers one by one: each is a status line and header section, every final one
 * with a request id, the security headers and a Content-Length covering its body. */
static void fuzz_check_output(const char *o, size_t len)
{
    const char *p = o, *end = o + len;
    while (p < end) {
        const char *hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend || strncmp(p, "HTTP/1.1 ", 9) != 0)
            msg_fatal("fuzz: malformed answer at offset %zu", (size_t)(p - o));
        int status = atoi(p + 9);
        size_t hlen = (size_t)(hend - p) + 4;
        char *head = xstrndup(p, hlen);
        const char *cl = strstr(head, "\r\nContent-Length: ");
        int ok = status == 100 || (strstr(head, "\r\nX-Request-ID: ") && cl &&
                                   strstr(head, "\r\nX-Content-Type-Options: nosniff\r\n") &&
                                   strstr(head, "\r\nContent-Security-Policy: "));
        size_t blen = cl ? strtoul(cl + 18, NULL, 10) : 0;
        free(head);
        size_t rest = (size_t)(end - p) - hlen;
        if (rest == 0 || (rest >= 9 && strncmp(p + hlen, "HTTP/1.1 ", 9) == 0))
            blen = 0; /* answer to HEAD: the length of a body not sent (bodies here are never
                         HTTP text) */
        if (!ok || blen > (size_t)(end - p) - hlen)
            msg_fatal("fuzz: answer %d at offset %zu lacks a required header", status,
                      (size_t)(p - o));
        p += hlen + blen;
    }
}

/* The fuzzer's servers, one per combination of the first byte's three setting bits, built once:
 * building one (its 4096-bucket address table, read buffer and security header blocks) and
 * tearing it down cost a hundred times the input it serves. Each input gets a fresh connection;
 * the server must be back to no connection, no reference and no output after it. */
static struct http_router *fz_router;
static struct http_server *fz_servers[8];

void http_conn_fuzz_init(void)
{
    if (fz_router)
        return;
    char id[37];
    crypto_uuid4(id); /* OpenSSL builds its generator on first use: here, not inside an input */
    fz_router = http_router_new();
    http_router_add(fz_router, "GET", "/health", fz_info, NULL);
    http_router_add(fz_router, "POST", "/v1/alerts", fz_info, NULL);
    http_router_add(fz_router, "GET", "/v1/alerts/{uuid}", fz_info, NULL);
    http_router_add(fz_router, "PATCH", "/v1/alerts/{uuid}", fz_info, NULL);
    http_router_add(fz_router, "POST", "/v1/ingest/{source}", fz_info, NULL);
    http_router_add(fz_router, "POST", "/v1/alerts/{uuid}/x/{y}", fz_info, NULL);
    for (unsigned mode = 0; mode < 8; mode++) {
        struct http_server_config cfg = {
            .max_body_bytes = 4096,
            .max_ingest_body_bytes = 2048,
            .max_header_bytes = 1024,
            .cors_allowed_origins = (mode & 1) ? "https://a.example, https://b.example" : "",
            .cors_allow_all = (mode & 2) != 0,
            .https_enabled = 1,
            .hsts_enabled = (mode & 4) != 0,
        };
        fz_servers[mode] = http_server_new_fake(&cfg, fz_router, NULL);
        http_server_set_gate(fz_servers[mode], fz_gate, fz_dropped);
    }
}

void http_conn_fuzz_feed(const uint8_t *data, size_t len)
{
    http_conn_fuzz_init();
    unsigned mode = len ? data[0] : 0;
    struct http_server *s = fz_servers[mode & 7];
    struct http_conn *c = http_conn_new(s, 1);
    conn_link(s, c);
    http_conn_ref(c);
    size_t chunk = (mode >> 3) ? (mode >> 3) : len; /* 1..31-byte pieces, or all at once */
    for (size_t off = len ? 1 : 0; off < len && !c->closing; off += chunk)
        http_conn_feed(c, (const char *)data + off, len - off < chunk ? len - off : chunk);
    fuzz_check_output(s->fake_out.data ? s->fake_out.data : "", s->fake_out.len);
    http_conn_close(c);
    http_conn_unref(c);
    if (s->conns || s->nalive || s->nopen || s->nover || s->refs != 1 || s->idle_head)
        msg_fatal("fuzz: the connection left state in its server");
    buf_reset(&s->fake_out);
}
