/*
 * http_server.c - tests of libcommon/http_server (+ http_conn, http_response, http_router,
 * http_tls) over real sockets.
 *
 * Each server runs on 127.0.0.1, port 0, in its own thread with its own uv loop and a small
 * router of test handlers (one of them answers later from a uv timer). The tests talk to it with
 * raw send/recv (and OpenSSL for TLS, with a certificate made here) and check framing, limits,
 * timeouts, headers, CORS, TLS and drain, and an answer larger than the socket takes at once. Every byte value in a header name is accepted exactly
 * when it is an RFC 9110 token character (the set is written here) and reaches the handler
 * lowercased.
 */
#include "http_server.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* ---------- the server under test, in its own thread ---------- */

struct srv {
    struct http_server_config cfg;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t cmd;
    struct http_router *router;
    struct http_server *http;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int port;
    int ready;
    atomic_int want_drain, want_stop;
    atomic_int drained;
    atomic_int aborted_seen;
    atomic_int slow_answered;
    int use_gate;              /* install the admission gate below */
    atomic_int gate_calls, gate_dropped, gate_handled;
};

/* ---------- the admission gate: answers 50 ms later, like an authentication round trip ---------- */

struct gate_wait {
    uv_timer_t t;
    struct http_request *req;
    struct srv *s;
};

static void gate_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_gate_timer(uv_timer_t *t)
{
    struct gate_wait *g = t->data;
    struct http_request *req = g->req;
    if (http_header_get(req, "x-deny", NULL)) {
        http_respond_error(req, 401, "UNAUTHORIZED", "Denied.", NULL, NULL, 0);
    } else {
        req->user = strdup("gate state"); /* released by the handler or by dropped */
        http_request_admit(req, http_header_get(req, "x-small", NULL) ? 10 : 0);
    }
    uv_close((uv_handle_t *)&g->t, gate_closed);
}

static void t_gate(struct http_request *req, void *ctx)
{
    struct srv *s = ctx;
    atomic_fetch_add(&s->gate_calls, 1);
    struct gate_wait *g = calloc(1, sizeof *g);
    g->req = req;
    g->s = s;
    uv_timer_init(&s->loop, &g->t);
    g->t.data = g;
    uv_timer_start(&g->t, on_gate_timer, 50, 0);
}

static void t_dropped(struct http_request *req, void *ctx)
{
    struct srv *s = ctx;
    atomic_fetch_add(&s->gate_dropped, 1);
    free(req->user);
}

struct later {
    uv_timer_t t;
    struct http_request *req;
    struct srv *s;
};

static void h_hello(struct http_request *req, void *ctx)
{
    (void)ctx;
    free(req->user); /* the gate's state, when a gate runs (NULL otherwise) */
    http_respond(req, 200, "text/plain", "hello", 5, NULL, 0);
}

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_later(uv_timer_t *t)
{
    struct later *l = t->data;
    if (http_request_aborted(l->req))
        atomic_store(&l->s->aborted_seen, 1);
    http_respond(l->req, 200, "text/plain", "slow", 4, NULL, 0);
    atomic_fetch_add(&l->s->slow_answered, 1);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void h_slow(struct http_request *req, void *ctx)
{
    struct srv *s = ctx;
    struct later *l = calloc(1, sizeof *l);
    l->req = req;
    l->s = s;
    uv_timer_init(&s->loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, on_later, 300, 0);
}

static void h_echo(struct http_request *req, void *ctx)
{
    struct srv *s = ctx;
    if (s->use_gate) {
        assert_non_null(req->user);
        free(req->user);
        atomic_fetch_add(&s->gate_handled, 1);
    }
    http_respond(req, 200, "application/octet-stream", req->body.data, req->body.len, NULL, 0);
}

/* Handler headers with a CR, LF or NUL at each position of a 20-byte value, and of a name,
 * beside safe ones: only the safe ones may go out. */
static void h_unsafe(struct http_request *req, void *ctx)
{
    (void)ctx;
    static const char bad[3] = {'\r', '\n', '\0'};
    static char names[2 * 3 * 20][24], values[2 * 3 * 20][24];
    struct http_header h[2 * 3 * 20 + 2];
    size_t n = 0;
    for (int inname = 0; inname < 2; inname++)
        for (int k = 0; k < 3; k++)
            for (int at = 0; at < 20; at++) {
                char *nm = names[n], *v = values[n];
                snprintf(nm, 24, "X-Bad-%d-%d-%02d-nnnnnnn", inname, k, at); /* 20 bytes */
                memset(v, 'v', 20);
                if (inname)
                    nm[at] = bad[k];
                else
                    v[at] = bad[k];
                h[n] = (struct http_header){.name = nm, .name_len = 20, .value = v, .value_len = 20};
                n++;
            }
    h[n++] = (struct http_header){.name = "X-Good-Long", .value = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"};
    h[n++] = (struct http_header){.name = "X-Good", .value = "v"};
    http_respond(req, 200, "text/plain", "ok", 2, h, n);
}

/* The request's header names as the handler sees them, one a line. */
static void h_headers(struct http_request *req, void *ctx)
{
    (void)ctx;
    char out[4096];
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders && n + req->headers[i].name_len + 1 < sizeof out; i++) {
        memcpy(out + n, req->headers[i].name, req->headers[i].name_len);
        n += req->headers[i].name_len;
        out[n++] = '\n';
    }
    http_respond(req, 200, "application/octet-stream", out, n, NULL, 0);
}

static void h_alert(struct http_request *req, void *ctx)
{
    (void)ctx;
    size_t n;
    const char *u = http_request_param(req, "uuid", &n);
    json_t *o = json_pack("{s:s%,s:s,s:s?}", "uuid", u ? u : "", u ? n : 0, "method", req->method,
                          "query", req->query);
    http_respond_json(req, 200, o, NULL, 0);
}

static void h_ingest(struct http_request *req, void *ctx)
{
    (void)ctx;
    size_t n;
    const char *src = http_request_param(req, "source", &n);
    json_t *o =
        json_pack("{s:s%,s:i}", "source", src ? src : "", src ? n : 0, "len", (int)req->body.len);
    http_respond_json(req, 202, o, NULL, 0);
}

static void h_boom(struct http_request *req, void *ctx)
{
    (void)ctx;
    struct http_header h[] = {
        {"Retry-After", 11, "60", 2, 0},
        {"X-Frame-Options", 15, "ALLOW", 5, 0},  /* must be ignored */
        {"X-Bad", 5, "a\r\nInjected: 1", 14, 0}, /* must be ignored */
    };
    if (strcmp(req->path, "/v1/t/boom") == 0)
        http_respond_error(req, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL, NULL,
                           0);
    else
        http_respond_error(req, 429, "RATE_LIMITED", "Rate limit exceeded.",
                           json_pack("{s:i}", "retry_after_seconds", 60), h, 3);
}

static void on_drained(void *arg)
{
    struct srv *s = arg;
    atomic_store(&s->drained, 1);
}

static void on_cmd(uv_async_t *a)
{
    struct srv *s = a->data;
    if (atomic_exchange(&s->want_drain, 0))
        http_server_drain(s->http, on_drained, s);
    if (atomic_load(&s->want_stop)) {
        http_server_free(s->http);
        s->http = NULL;
        uv_close((uv_handle_t *)&s->cmd, NULL);
    }
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    char err[256] = "";
    uv_loop_init(&s->loop);
    s->router = http_router_new();
    http_router_add(s->router, "GET", "/v1/t/hello", h_hello, NULL);
    http_router_add(s->router, "GET", "/v1/t/headers", h_headers, NULL);
    http_router_add(s->router, "GET", "/v1/t/unsafe", h_unsafe, NULL);
    http_router_add(s->router, "GET", "/v1/t/slow", h_slow, NULL);
    http_router_add(s->router, "POST", "/v1/t/echo", h_echo, NULL);
    http_router_add(s->router, "GET", "/v1/alerts/{uuid}", h_alert, NULL);
    http_router_add(s->router, "PATCH", "/v1/alerts/{uuid}", h_alert, NULL);
    http_router_add(s->router, "POST", "/v1/alerts", h_ingest, NULL);
    http_router_add(s->router, "POST", "/v1/ingest/{source}", h_ingest, NULL);
    http_router_add(s->router, "GET", "/v1/t/boom", h_boom, NULL);
    http_router_add(s->router, "GET", "/v1/t/limited", h_boom, NULL);
    http_router_add(s->router, "GET", "/v1/approvals/{id}/decide", h_hello, NULL);
    s->http = http_server_new(&s->loop, &s->cfg, s->router, s, err, sizeof err);
    if (!s->http)
        fprintf(stderr, "server: %s\n", err);
    else if (s->use_gate)
        http_server_set_gate(s->http, t_gate, t_dropped);
    uv_async_init(&s->loop, &s->cmd, on_cmd);
    s->cmd.data = s;
    pthread_mutex_lock(&s->mu);
    s->port = s->http ? http_server_port(s->http) : -1;
    s->ready = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!s->http)
        uv_close((uv_handle_t *)&s->cmd, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    http_router_free(s->router);
    return NULL;
}

static struct http_server_config base_config(void)
{
    struct http_server_config c = {
        .host = "127.0.0.1",
        .port = 0,
        .reuseport = 1,
        .max_body_bytes = 2 << 20,
        .max_ingest_body_bytes = 1 << 20,
        .max_body_mb = 2,
        .max_ingest_body_mb = 1,
        .max_header_bytes = 8192,
        .header_timeout_ms = 2000,
        .body_timeout_ms = 2000,
        .idle_timeout_ms = 5000,
        .max_connections = 100,
    };
    return c;
}

static struct srv *srv_start_gated(const struct http_server_config *cfg, int gated)
{
    struct srv *s = calloc(1, sizeof *s);
    s->cfg = *cfg;
    s->use_gate = gated;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_create(&s->thread, NULL, srv_main, s);
    pthread_mutex_lock(&s->mu);
    while (!s->ready)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    assert_true(s->port > 0);
    return s;
}

static struct srv *srv_start(const struct http_server_config *cfg)
{
    return srv_start_gated(cfg, 0);
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->want_stop, 1);
    uv_async_send(&s->cmd);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static void srv_drain(struct srv *s)
{
    atomic_store(&s->want_drain, 1);
    uv_async_send(&s->cmd);
}

/* ---------- a small blocking client ---------- */

struct cli {
    int fd;
    SSL *ssl;
    char buf[1 << 16];
    size_t len;
};

struct resp {
    int status;
    char head[16384];
    char body[1 << 16];
    size_t body_len;
};

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static struct cli *cli_new(int port)
{
    struct cli *c = calloc(1, sizeof *c);
    c->fd = tcp_connect(port);
    assert_true(c->fd >= 0);
    return c;
}

static void cli_free(struct cli *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static int cli_send(struct cli *c, const void *p, size_t n)
{
    if (c->ssl)
        return SSL_write(c->ssl, p, (int)n) == (int)n ? 0 : -1;
    const char *s = p;
    while (n) {
        ssize_t k = send(c->fd, s, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

static int cli_sendf(struct cli *c, const char *fmt, ...)
{
    char b[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    return cli_send(c, b, (size_t)n);
}

/* Reads more bytes into c->buf; returns bytes read, 0 on EOF, -1 on error/timeout. */
static ssize_t cli_fill(struct cli *c)
{
    if (c->len == sizeof c->buf)
        return -1;
    ssize_t n;
    if (c->ssl) {
        n = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len));
        if (n <= 0)
            return SSL_get_error(c->ssl, (int)n) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    } else {
        n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    }
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static const char *hdr(const struct resp *r, const char *name)
{
    static __thread char val[4096];
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            snprintf(val, sizeof val, "%.*s", (int)(e - v), v);
            return val;
        }
    }
    return NULL;
}

static int hdr_count(const struct resp *r, const char *name)
{
    int k = 0;
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':')
            k++;
    return k;
}

/* Reads one response (head + Content-Length body; none for HEAD/1xx). 0 ok, -1 EOF/timeout. */
static int cli_read(struct cli *c, struct resp *r, int head_only_body)
{
    memset(r, 0, sizeof *r);
    char *end;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        if (cli_fill(c) <= 0)
            return -1;
    size_t hl = (size_t)(end - c->buf) + 4;
    assert_true(hl < sizeof r->head);
    memcpy(r->head, c->buf, hl);
    r->status = atoi(r->head + 9);
    size_t bl = 0;
    const char *cl = hdr(r, "Content-Length");
    if (cl && !head_only_body && r->status >= 200)
        bl = (size_t)atol(cl);
    assert_true(bl <= sizeof r->body);
    while (c->len < hl + bl)
        if (cli_fill(c) <= 0)
            return -1;
    memcpy(r->body, c->buf + hl, bl);
    r->body_len = bl;
    memmove(c->buf, c->buf + hl + bl, c->len - hl - bl);
    c->len -= hl + bl;
    return 0;
}

/* 1 if the server closed the connection (EOF or reset) within the receive timeout. */
static int cli_closed(struct cli *c)
{
    for (;;) {
        ssize_t n = cli_fill(c);
        if (n == 0)
            return 1;
        if (n < 0)
            return errno == ECONNRESET || (c->ssl != NULL);
        c->len = 0; /* discard */
    }
}

static void get(struct cli *c, const char *path, struct resp *r)
{
    assert_int_equal(cli_sendf(c, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path), 0);
    assert_int_equal(cli_read(c, r, 0), 0);
}

#define CSP_API "default-src 'none'; frame-ancestors 'none'"

static void assert_common_headers(const struct resp *r, const char *csp)
{
    assert_string_equal(hdr(r, "X-Content-Type-Options"), "nosniff");
    assert_string_equal(hdr(r, "X-Frame-Options"), "DENY");
    assert_int_equal(hdr_count(r, "X-Frame-Options"), 1);
    assert_string_equal(hdr(r, "X-XSS-Protection"), "1; mode=block");
    assert_string_equal(hdr(r, "Referrer-Policy"), "no-referrer");
    assert_string_equal(hdr(r, "Permissions-Policy"), "geolocation=(), microphone=(), camera=()");
    assert_string_equal(hdr(r, "Content-Security-Policy"), csp ? csp : CSP_API);
    assert_non_null(hdr(r, "X-Request-ID"));
    assert_non_null(hdr(r, "Date"));
    assert_non_null(hdr(r, "Connection"));
}

static int is_uuid4(const char *s)
{
    if (!s || strlen(s) != 36 || s[14] != '4')
        return 0;
    for (int i = 0; i < 36; i++)
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-'
                                                      : !strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

static void assert_error(const struct resp *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    assert_string_equal(hdr(r, "Content-Type"), "application/json");
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        code);
    assert_true(json_is_object(json_object_get(json_object_get(j, "error"), "details")));
    json_decref(j);
}

/* ---------- fixtures ---------- */

static struct srv *S; /* the default server */

static int group_setup(void **state)
{
    (void)state;
    log_init("test", 1, LOG_ERROR);
    struct http_server_config cfg = base_config();
    S = srv_start(&cfg);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    srv_stop(S);
    return 0;
}

/* ---------- tests ---------- */

static void test_keepalive(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    struct resp r;
    for (int i = 0; i < 3; i++) {
        get(c, "/v1/t/hello", &r);
        assert_int_equal(r.status, 200);
        assert_memory_equal(r.body, "hello", 5);
        assert_string_equal(hdr(&r, "Connection"), "keep-alive");
        assert_string_equal(hdr(&r, "Content-Length"), "5");
        assert_common_headers(&r, NULL);
        assert_null(hdr(&r, "Strict-Transport-Security"));
    }
    /* Connection: close from the client is honoured */
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_string_equal(hdr(&r, "Connection"), "close");
    assert_true(cli_closed(c));
    cli_free(c);
    /* HTTP/1.0 without keep-alive closes; HEAD has no body but the GET length */
    c = cli_new(S->port);
    cli_sendf(c, "HEAD /v1/t/hello HTTP/1.0\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 1), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Length"), "5");
    assert_true(cli_closed(c));
    assert_int_equal(c->len, 0);
    cli_free(c);
}

static void test_pipelining(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    const char *three = "GET /v1/t/slow HTTP/1.1\r\nHost: t\r\n\r\n"
                        "GET /v1/t/hello HTTP/1.1\r\nHost: t\r\nX-Request-ID: second\r\n\r\n"
                        "GET /v1/alerts/abc-123?x=1 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(cli_send(c, three, strlen(three)), 0);
    struct resp r;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "slow", 4);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_memory_equal(r.body, "hello", 5);
    assert_string_equal(hdr(&r, "X-Request-ID"), "second");
    assert_int_equal(cli_read(c, &r, 0), 0);
    r.body[r.body_len] = '\0';
    assert_string_equal(r.body, "{\"uuid\":\"abc-123\",\"method\":\"GET\",\"query\":\"x=1\"}");
    /* still usable */
    get(c, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    cli_free(c);
}

/* Answers larger than the socket takes at once (four pipelined echoes of 1.9 MB, more than
 * the kernel's largest send buffer; the client's receive buffer is small and it reads only
 * later): a send() takes part of an answer, the rest is queued and follows in order, and the
 * request pipelined behind them is answered last, on the same connection. */
static void test_large_answer_sent_in_parts(void **state)
{
    (void)state;
    enum { BODY = 1900000, ECHOES = 4 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct cli *c = calloc(1, sizeof *c);
    c->fd = fd;
    char *body = malloc(BODY);
    for (int e = 0; e < ECHOES; e++) {
        for (size_t i = 0; i < BODY; i++)
            body[i] = (char)('a' + (i + (size_t)e) % 23);
        assert_int_equal(
            cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n",
                      BODY),
            0);
        assert_int_equal(cli_send(c, body, BODY), 0);
    }
    assert_int_equal(cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    usleep(300 * 1000); /* the server has sent what the socket took and queued the rest */
    for (int e = 0; e < ECHOES; e++) {
        for (size_t i = 0; i < BODY; i++)
            body[i] = (char)('a' + (i + (size_t)e) % 23);
        char *end;
        while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
            assert_true(cli_fill(c) > 0);
        assert_int_equal(atoi(c->buf + 9), 200);
        size_t hl = (size_t)(end - c->buf) + 4, got = 0;
        assert_non_null(memmem(c->buf, hl, "Content-Length: 1900000\r\n", 25));
        memmove(c->buf, c->buf + hl, c->len - hl);
        c->len -= hl;
        while (got < BODY) {
            if (c->len == 0)
                assert_true(cli_fill(c) > 0);
            size_t take = c->len < BODY - got ? c->len : BODY - got;
            assert_memory_equal(c->buf, body + got, take);
            got += take;
            memmove(c->buf, c->buf + take, c->len - take);
            c->len -= take;
        }
    }
    struct resp r;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "hello", 5);
    free(body);
    cli_free(c);
}

static void test_chunked(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    cli_sendf(
        c,
        "POST /v1/t/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    usleep(50000);
    cli_sendf(c, "6;ext=1\r\n world\r\n0\r\nX-Trailer: x\r\n\r\n");
    struct resp r;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "hello world", 11);
    assert_string_equal(hdr(&r, "Connection"), "keep-alive");
    get(c, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    cli_free(c);
}

static void test_chunked_too_large(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    static char chunk[65536 + 16];
    int hl = snprintf(chunk, sizeof chunk, "10000\r\n");
    memset(chunk + hl, 'a', 65536);
    memcpy(chunk + hl + 65536, "\r\n", 2);
    for (int i = 0; i < 40; i++) /* 2.5 MB > 2 MB; the server stops reading at the limit */
        if (cli_send(c, chunk, (size_t)hl + 65538) != 0)
            break;
    struct resp r;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert_non_null(strstr(r.body, "Request body exceeds the 2MB limit for this endpoint."));
    assert_string_equal(hdr(&r, "Connection"), "close");
    assert_common_headers(&r, NULL);
    assert_true(cli_closed(c));
    cli_free(c);

    /* ingest limit (1 MB) by counting a chunked body */
    c = cli_new(S->port);
    cli_sendf(c, "POST /v1/ingest/splunk HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 20; i++)
        if (cli_send(c, chunk, (size_t)hl + 65538) != 0)
            break;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert_non_null(strstr(r.body, "Request body exceeds the 1MB limit for ingest endpoints."));
    cli_free(c);
}

static void test_content_length_too_large(void **state)
{
    (void)state;
    struct resp r;
    const char *paths[] = {"/v1/ingest/x", "/v1/alerts", "/v1/t/echo", "/v1/nope"};
    const char *limits[] = {"1MB limit for ingest endpoints.", "1MB limit for ingest endpoints.",
                            "2MB limit for this endpoint.", "2MB limit for this endpoint."};
    for (int i = 0; i < 4; i++) {
        struct cli *c = cli_new(S->port);
        /* headers only: the answer must come before any body byte is sent */
        cli_sendf(c, "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n", paths[i]);
        assert_int_equal(cli_read(c, &r, 0), 0);
        assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
        assert_non_null(strstr(r.body, limits[i]));
        assert_common_headers(&r, NULL);
        assert_true(cli_closed(c));
        cli_free(c);
    }
    /* within the limit: fine; the ingest limit does not apply to /v1/alerts/<id> */
    struct cli *c = cli_new(S->port);
    static char body[1500000];
    memset(body, 'x', sizeof body);
    cli_sendf(c, "PATCH /v1/alerts/u1 HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", sizeof body);
    cli_send(c, body, sizeof body);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    cli_sendf(c, "POST /v1/alerts HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", sizeof body);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 413);
    cli_free(c);
}

static void test_expect_continue(void **state)
{
    (void)state;
    struct resp r;
    struct cli *c = cli_new(S->port);
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 100);
    cli_sendf(c, "abcde");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "abcde", 5);
    /* rejected: over the limit → the final status at once, no 100 */
    cli_sendf(c, "POST /v1/ingest/a HTTP/1.1\r\nContent-Length: 2000000\r\nExpect: 100-continue"
                 "\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 413);
    assert_true(cli_closed(c));
    cli_free(c);
    /* rejected: unknown route */
    c = cli_new(S->port);
    cli_sendf(c, "POST /v1/nowhere HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 404, "NOT_FOUND");
    assert_true(cli_closed(c));
    cli_free(c);
}

static void test_header_too_large(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    static char big[65536];
    memset(big, 'h', sizeof big - 1);
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nX-Big: ");
    cli_send(c, big, sizeof big - 1);
    cli_sendf(c, "\r\n\r\n");
    struct resp r;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE");
    assert_common_headers(&r, NULL);
    assert_string_equal(hdr(&r, "Connection"), "close");
    assert_true(cli_closed(c));
    cli_free(c);
    /* many small headers count too */
    c = cli_new(S->port);
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\n");
    for (int i = 0; i < 2000; i++)
        if (cli_sendf(c, "X-%d: v\r\n", i) != 0)
            break;
    cli_sendf(c, "\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 431);
    cli_free(c);
}

static void test_slow_headers_and_body(void **state)
{
    (void)state;
    struct http_server_config cfg = base_config();
    cfg.header_timeout_ms = 300;
    cfg.body_timeout_ms = 300;
    struct srv *s = srv_start(&cfg);
    struct resp r;
    /* slowloris: a header line every 100 ms never completes the section */
    struct cli *c = cli_new(s->port);
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 6; i++) {
        usleep(100000);
        if (cli_sendf(c, "X-A%d: b\r\n", i) != 0)
            break;
    }
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 408, "REQUEST_TIMEOUT");
    assert_common_headers(&r, NULL);
    assert_string_equal(hdr(&r, "Connection"), "close");
    assert_true(cli_closed(c));
    cli_free(c);
    /* slow body */
    c = cli_new(s->port);
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 408, "REQUEST_TIMEOUT");
    assert_true(cli_closed(c));
    cli_free(c);
    /* a connection that says nothing is closed without a word */
    c = cli_new(s->port);
    assert_true(cli_closed(c));
    assert_int_equal(c->len, 0);
    cli_free(c);
    srv_stop(s);
}

/* At the cap, the connection idle the longest makes room; with none idle, 503 + close. */
static void test_max_connections(void **state)
{
    (void)state;
    struct http_server_config cfg = base_config();
    cfg.max_connections = 3;
    struct srv *s = srv_start(&cfg);
    struct resp r;
    struct cli *c[3];
    for (int i = 0; i < 3; i++) { /* busy: in the middle of a header section */
        c[i] = cli_new(s->port);
        cli_sendf(c[i], "GET /v1/t/hello HTTP/1.1\r\n");
    }
    usleep(100000);
    struct cli *x = cli_new(s->port);
    cli_sendf(x, "GET /v1/t/hello HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(x, &r, 0), 0);
    assert_error(&r, 503, "SERVICE_UNAVAILABLE");
    assert_string_equal(hdr(&r, "Connection"), "close");
    assert_common_headers(&r, NULL);
    assert_true(is_uuid4(hdr(&r, "X-Request-ID")));
    assert_true(cli_closed(x));
    cli_free(x);
    for (int i = 0; i < 3; i++) { /* finish: now idle keep-alive connections, oldest c[0] */
        cli_sendf(c[i], "\r\n");
        assert_int_equal(cli_read(c[i], &r, 0), 0);
        assert_int_equal(r.status, 200);
        usleep(20000);
    }
    x = cli_new(s->port); /* the oldest idle connection is closed to make room */
    get(x, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    assert_true(cli_closed(c[0]));
    get(c[2], "/v1/t/hello", &r); /* the others stay (c[2] becomes the newest idle) */
    assert_int_equal(r.status, 200);
    struct cli *y = cli_new(s->port); /* evicts c[1], the oldest idle now */
    get(y, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    assert_true(cli_closed(c[1]));
    get(c[2], "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    cli_free(y);
    cli_free(x);
    for (int i = 0; i < 3; i++)
        cli_free(c[i]);
    srv_stop(s);
}

/* The gate decides before a byte of the body is read: a refusal closes the connection without
 * reading the announced body; an admitted body is read; an admitted request that never reaches
 * its handler (client gone, body too slow, too large) is handed to dropped. */
static void test_gate(void **state)
{
    (void)state;
    struct http_server_config cfg = base_config();
    cfg.body_min_rate = 100; /* 200 bytes per 2 s window */
    struct srv *s = srv_start_gated(&cfg, 1);
    struct resp r;
    struct cli *c = cli_new(s->port);
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nX-Deny: 1\r\nExpect: 100-continue\r\n"
                 "Content-Length: 100000\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 401, "UNAUTHORIZED"); /* no 100 Continue before it */
    assert_string_equal(hdr(&r, "Connection"), "close");
    assert_true(cli_closed(c));
    cli_free(c);
    c = cli_new(s->port); /* refused without a body: the connection stays */
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nX-Deny: 1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 401);
    get(c, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 1), 0);
    assert_int_equal(r.status, 100);
    cli_sendf(c, "hello");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "hello", 5);
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nX-Small: 1\r\nContent-Length: 11\r\n\r\nhello world");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE"); /* the gate's lower limit */
    cli_free(c);
    assert_int_equal(atomic_load(&s->gate_handled), 1);
    assert_int_equal(atomic_load(&s->gate_dropped), 1);
    c = cli_new(s->port); /* admitted, then the client goes away mid-body */
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
    usleep(200000);
    cli_free(c);
    usleep(100000);
    assert_int_equal(atomic_load(&s->gate_dropped), 2);
    c = cli_new(s->port); /* admitted, then too slow: one byte every 300 ms is below the rate */
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    for (int i = 0; i < 8; i++) {
        cli_sendf(c, "x");
        usleep(300000);
    }
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 408, "REQUEST_TIMEOUT");
    cli_free(c);
    assert_int_equal(atomic_load(&s->gate_dropped), 3);
    assert_int_equal(atomic_load(&s->gate_calls), 7);
    srv_stop(s);
}

/* Framing and routing points: two Authorization headers, transfer codings, chunk extensions,
 * an encoded slash. */
static void test_framing_points(void **state)
{
    (void)state;
    struct http_server_config cfg = base_config();
    struct srv *s = srv_start(&cfg);
    struct resp r;
    struct cli *c = cli_new(s->port);
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 400, "BAD_REQUEST");
    cli_free(c);
    const char *codings[] = {"gzip, chunked", "chunked, identity", "gzip", "chunked, chunked"};
    for (size_t i = 0; i < 4; i++) {
        c = cli_new(s->port);
        cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nTransfer-Encoding: %s\r\n\r\n0\r\n\r\n",
                  codings[i]);
        assert_int_equal(cli_read(c, &r, 0), 0);
        if (i < 3)
            assert_error(&r, 501, "NOT_IMPLEMENTED");
        else /* chunked twice: refused either way */
            assert_true(r.status == 501 || r.status == 400);
        cli_free(c);
    }
    c = cli_new(s->port);
    char ext[1200];
    memset(ext, 'e', sizeof ext - 1);
    ext[sizeof ext - 1] = 0;
    cli_sendf(c, "POST /v1/t/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;x=%s\r\nab\r\n0\r\n\r\n",
              ext);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 400, "BAD_REQUEST");
    cli_free(c);
    c = cli_new(s->port);
    get(c, "/v1/alerts/abc%2Fdef", &r); /* one segment: the slash stays encoded */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"uuid\":\"abc%2Fdef\""));
    get(c, "/v1/alerts/abc%2fdef/x", &r);
    assert_int_equal(r.status, 404);
    cli_free(c);
    srv_stop(s);
}

static void test_not_found_and_method(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    struct resp r;
    get(c, "/v1/nope", &r);
    assert_error(&r, 404, "NOT_FOUND");
    r.body[r.body_len] = '\0';
    assert_string_equal(r.body, "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"The requested "
                                "resource was not found.\",\"details\":{}}}");
    assert_common_headers(&r, NULL);
    assert_string_equal(hdr(&r, "Connection"), "keep-alive");
    get(c, "/v1/alerts/", &r); /* empty parameter */
    assert_int_equal(r.status, 404);
    cli_sendf(c, "DELETE /v1/alerts/abc HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_error(&r, 405, "METHOD_NOT_ALLOWED");
    assert_string_equal(hdr(&r, "Allow"), "GET, HEAD, PATCH");
    assert_common_headers(&r, NULL);
    cli_sendf(c, "POST /v1/t/hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(hdr(&r, "Allow"), "GET, HEAD");
    /* a 405 with a body is answered without reading it, then the connection closes */
    cli_sendf(c, "PUT /v1/t/hello HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    assert_true(cli_closed(c));
    cli_free(c);
    /* percent-decoding before routing; CSP by path */
    c = cli_new(S->port);
    get(c, "/v1/alerts/a%2Db", &r);
    r.body[r.body_len] = '\0';
    assert_non_null(strstr(r.body, "\"uuid\":\"a-b\""));
    get(c, "/v1/approvals/7/decide", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(hdr(&r, "Content-Security-Policy"), "default-src 'self'; script-src"));
    get(c, "/redoc", &r);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(hdr(&r, "Content-Security-Policy"), "script-src 'self'; style-src"));
    assert_null(strstr(hdr(&r, "Content-Security-Policy"), "https:"));
    get(c, "/docs/docs.js", &r);
    assert_non_null(strstr(hdr(&r, "Content-Security-Policy"), "connect-src 'self'"));
    get(c, "/", &r);
    assert_non_null(strstr(hdr(&r, "Content-Security-Policy"), "fonts.googleapis.com"));
    get(c, "/health", &r);
    assert_string_equal(hdr(&r, "Content-Security-Policy"), CSP_API);
    cli_free(c);
}

static void test_handler_errors(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    struct resp r;
    get(c, "/v1/t/boom", &r);
    assert_error(&r, 500, "INTERNAL_ERROR");
    assert_common_headers(&r, NULL);
    get(c, "/v1/t/limited", &r);
    assert_error(&r, 429, "RATE_LIMITED");
    assert_common_headers(&r, NULL);
    assert_string_equal(hdr(&r, "Retry-After"), "60");
    assert_null(hdr(&r, "Injected"));
    assert_null(hdr(&r, "X-Bad"));
    assert_non_null(strstr(r.body, "\"retry_after_seconds\":60"));
    cli_free(c);
}

static void test_request_id(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    struct resp r;
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nX-Request-ID: abc.DEF_123-x\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_string_equal(hdr(&r, "X-Request-ID"), "abc.DEF_123-x");
    char longid[70];
    memset(longid, 'a', 65);
    longid[65] = '\0';
    const char *bad[] = {"abc$def", longid, "a/b", "\"x\""};
    for (int i = 0; i < 4; i++) {
        cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nX-Request-ID: %s\r\n\r\n", bad[i]);
        assert_int_equal(cli_read(c, &r, 0), 0);
        assert_true(is_uuid4(hdr(&r, "X-Request-ID")));
    }
    longid[64] = '\0'; /* 64 chars is still sane */
    cli_sendf(c, "GET /v1/nope HTTP/1.1\r\nX-Request-ID: %s\r\n\r\n", longid);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_string_equal(hdr(&r, "X-Request-ID"), longid);
    get(c, "/v1/t/hello", &r);
    char first[64];
    snprintf(first, sizeof first, "%s", hdr(&r, "X-Request-ID"));
    get(c, "/v1/t/hello", &r);
    assert_true(is_uuid4(first));
    assert_string_not_equal(first, hdr(&r, "X-Request-ID"));
    cli_free(c);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /v1/t/hello HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET /v1/t/hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "GET /v1/t/hello HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET /a%00b HTTP/1.1\r\n\r\n",
        "POST /v1/t/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cli *c = cli_new(S->port);
        cli_send(c, bad[i], strlen(bad[i]));
        struct resp r;
        assert_int_equal(cli_read(c, &r, 0), 0);
        assert_error(&r, 400, "BAD_REQUEST");
        assert_common_headers(&r, NULL);
        assert_string_equal(hdr(&r, "Connection"), "close");
        assert_true(cli_closed(c));
        cli_free(c);
    }
    /* non-ASCII bytes in header names and values: an answer, no crash */
    struct cli *c = cli_new(S->port);
    cli_send(c, "GET /v1/t/hello HTTP/1.1\r\nX-V: \xc3\xa9\xff\x80\r\n\r\n",
             sizeof("GET /v1/t/hello HTTP/1.1\r\nX-V: \xc3\xa9\xff\x80\r\n\r\n") - 1);
    struct resp r;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_true(r.status == 200 || r.status == 400);
    cli_free(c);
    c = cli_new(S->port);
    cli_send(c, "GET /v1/t/hello HTTP/1.1\r\nX-\xff\xfe: v\r\n\r\n",
             sizeof("GET /v1/t/hello HTTP/1.1\r\nX-\xff\xfe: v\r\n\r\n") - 1);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 400);
    cli_free(c);
    c = cli_new(S->port);
    cli_send(c, "GET /\xff\xfe\x80 HTTP/1.1\r\n\r\n",
             sizeof("GET /\xff\xfe\x80 HTTP/1.1\r\n\r\n") - 1);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_true(r.status == 404 || r.status == 400);
    cli_free(c);
    c = cli_new(S->port);
    get(c, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    cli_free(c);
}

/* RFC 9110 token characters, written out independently of the server's table. */
static int is_token_char(int b)
{
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
           (b && strchr("!#$%&'*+-.^_`|~", b) != NULL);
}

static void test_unsafe_handler_headers(void **state)
{
    (void)state;
    struct cli *c = cli_new(S->port);
    assert_int_equal(cli_sendf(c, "GET /v1/t/unsafe HTTP/1.1\r\n\r\n"), 0);
    struct resp r;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nX-Good-Long: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\r\n"));
    assert_non_null(strstr(r.head, "\r\nX-Good: v\r\n"));
    /* a bad byte in a name breaks at most one of its two markers ("X-Bad" at 0-4, the n-run at
     * 13-19 leaves a run of 3 either side); a value's leaves its name whole */
    if (strstr(r.head, "X-Bad") || strstr(r.head, "nnn"))
        fail_msg("an unsafe handler header went out:\n%s", r.head);
    assert_int_equal(r.body_len, 2);
    cli_free(c);
}

static void test_header_name_bytes(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        if (b == '\r' || b == '\n' || b == ':')
            continue;
        char req[128];
        int n = snprintf(req, sizeof req, "GET /v1/t/headers HTTP/1.1\r\nX%cy: v\r\n\r\n", 'Q');
        char *q = memchr(req, 'Q', (size_t)n);
        *q = (char)b;
        struct cli *c = cli_new(S->port);
        assert_int_equal(cli_send(c, req, (size_t)n), 0);
        struct resp r;
        assert_int_equal(cli_read(c, &r, 0), 0);
        if (is_token_char(b)) {
            if (r.status != 200)
                fail_msg("byte 0x%02x in a header name: %d, expected 200", b, r.status);
            char want[8] = {'x', (char)(b >= 'A' && b <= 'Z' ? b - 'A' + 'a' : b), 'y', '\n'};
            assert_int_equal(r.body_len, 4);
            assert_memory_equal(r.body, want, 4);
        } else {
            if (r.status != 400)
                fail_msg("byte 0x%02x in a header name: %d, expected 400", b, r.status);
            assert_error(&r, 400, "BAD_REQUEST");
        }
        cli_free(c);
    }
    /* every token character in one mixed-case name, and a second header after it */
    struct cli *c = cli_new(S->port);
    assert_int_equal(cli_sendf(c, "GET /v1/t/headers HTTP/1.1\r\nAbYz-09!#$%%&'*+.^_`|~QM: v\r\n"
                                  "X-SECOND: w\r\n\r\n"),
                     0);
    struct resp r;
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    static const char want[] = "abyz-09!#$%&'*+.^_`|~qm\nx-second\n";
    assert_int_equal(r.body_len, sizeof want - 1);
    assert_memory_equal(r.body, want, sizeof want - 1);
    cli_free(c);
}

static void test_cors(void **state)
{
    (void)state;
    struct resp r;
    /* off by default: no CORS headers; OPTIONS goes to the router */
    struct cli *c = cli_new(S->port);
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_null(hdr(&r, "Access-Control-Allow-Origin"));
    cli_sendf(c, "OPTIONS /v1/t/hello HTTP/1.1\r\nOrigin: https://a.example\r\n"
                 "Access-Control-Request-Method: GET\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 405);
    cli_free(c);

    struct http_server_config cfg = base_config();
    cfg.cors_allowed_origins = " https://a.example , https://b.example,";
    struct srv *s = srv_start(&cfg);
    c = cli_new(s->port);
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin"), "https://a.example");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Credentials"), "true");
    assert_string_equal(hdr(&r, "Vary"), "Origin");
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_null(hdr(&r, "Access-Control-Allow-Origin"));
    cli_sendf(c, "GET /v1/nope HTTP/1.1\r\nOrigin: https://b.example\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin"), "https://b.example");
    /* preflight, allowed */
    cli_sendf(c,
              "OPTIONS /v1/alerts HTTP/1.1\r\nOrigin: https://a.example\r\n"
              "Access-Control-Request-Method: PATCH\r\n"
              "Access-Control-Request-Headers: Content-Type, authorization,X-Request-ID\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "OK", 2);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin"), "https://a.example");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Methods"),
                        "GET, POST, PATCH, DELETE, OPTIONS");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Headers"),
                        "Accept, Accept-Language, Authorization, Content-Language, Content-Type, "
                        "X-Request-ID");
    assert_string_equal(hdr(&r, "Access-Control-Max-Age"), "600");
    assert_string_equal(hdr(&r, "Access-Control-Allow-Credentials"), "true");
    assert_string_equal(hdr(&r, "Vary"), "Origin");
    assert_common_headers(&r, NULL);
    /* preflight failures */
    cli_sendf(c, "OPTIONS /v1/alerts HTTP/1.1\r\nOrigin: https://evil.example\r\n"
                 "Access-Control-Request-Method: PUT\r\n"
                 "Access-Control-Request-Headers: x-evil\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 400);
    r.body[r.body_len] = '\0';
    assert_string_equal(r.body, "Disallowed CORS origin, method, headers");
    assert_string_equal(hdr(&r, "Content-Type"), "text/plain; charset=utf-8");
    assert_null(hdr(&r, "Access-Control-Allow-Origin"));
    cli_sendf(c, "OPTIONS /v1/alerts HTTP/1.1\r\nOrigin: https://a.example\r\n"
                 "Access-Control-Request-Method: GET\r\n"
                 "Access-Control-Request-Headers: content-type, x-evil\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 400);
    r.body[r.body_len] = '\0';
    assert_string_equal(r.body, "Disallowed CORS headers");
    cli_free(c);
    srv_stop(s);

    /* allow all (+ HSTS on this server) */
    cfg = base_config();
    cfg.cors_allow_all = 1;
    cfg.cors_allowed_origins = "https://a.example";
    cfg.https_enabled = 1;
    cfg.hsts_enabled = 1;
    s = srv_start(&cfg);
    c = cli_new(s->port);
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\nOrigin: https://x.example\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin"), "*");
    assert_null(hdr(&r, "Access-Control-Allow-Credentials"));
    assert_string_equal(hdr(&r, "Strict-Transport-Security"),
                        "max-age=63072000; includeSubDomains");
    cli_sendf(c, "OPTIONS /x HTTP/1.1\r\nOrigin: https://x.example\r\n"
                 "Access-Control-Request-Method: DELETE\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin"), "*");
    assert_null(hdr(&r, "Access-Control-Allow-Credentials"));
    assert_null(hdr(&r, "Vary"));
    get(c, "/v1/nope", &r);
    assert_string_equal(hdr(&r, "Strict-Transport-Security"),
                        "max-age=63072000; includeSubDomains");
    cli_free(c);
    srv_stop(s);
}

/* ---------- TLS ---------- */

static void make_cert(char *cert_path, char *key_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    assert_non_null(pk);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    strcpy(cert_path, "/tmp/http-test-cert-XXXXXX");
    strcpy(key_path, "/tmp/http-test-key-XXXXXX");
    int cfd = mkstemp(cert_path), kfd = mkstemp(key_path);
    FILE *cf = fdopen(cfd, "w"), *kf = fdopen(kfd, "w");
    PEM_write_X509(cf, x);
    PEM_write_PrivateKey(kf, pk, NULL, NULL, 0, NULL, NULL);
    fclose(cf);
    fclose(kf);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static struct cli *tls_connect(int port, SSL_CTX *ctx, int *ok)
{
    struct cli *c = cli_new(port);
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    *ok = SSL_connect(c->ssl) == 1;
    ERR_clear_error();
    return c;
}

static void test_tls(void **state)
{
    (void)state;
    char cert[64], key[64];
    make_cert(cert, key);
    struct http_server_config cfg = base_config();
    cfg.tls_cert_file = cert;
    cfg.tls_key_file = key;
    cfg.https_enabled = 1;
    cfg.hsts_enabled = 1;
    struct srv *s = srv_start(&cfg);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int ok;
    struct cli *c = tls_connect(s->port, ctx, &ok);
    assert_true(ok);
    assert_true(SSL_version(c->ssl) >= TLS1_2_VERSION);
    struct resp r;
    for (int i = 0; i < 2; i++) {
        get(c, "/v1/t/hello", &r);
        assert_int_equal(r.status, 200);
        assert_memory_equal(r.body, "hello", 5);
        assert_string_equal(hdr(&r, "Strict-Transport-Security"),
                            "max-age=63072000; includeSubDomains");
    }
    /* a big body and a pipelined pair through TLS */
    static char body[300000];
    memset(body, 'q', sizeof body);
    cli_sendf(c, "POST /v1/alerts HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", sizeof body);
    cli_send(c, body, sizeof body);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 202);
    r.body[r.body_len] = '\0';
    assert_non_null(strstr(r.body, "\"len\":300000"));
    cli_sendf(c, "GET /v1/t/slow HTTP/1.1\r\n\r\nGET /v1/nope HTTP/1.1\r\n\r\n");
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(cli_read(c, &r, 0), 0);
    assert_int_equal(r.status, 404);
    cli_free(c);
    SSL_CTX_free(ctx);

    /* TLS 1.2 only also works; TLS 1.1 is refused */
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    c = tls_connect(s->port, ctx, &ok);
    assert_true(ok);
    assert_int_equal(SSL_version(c->ssl), TLS1_2_VERSION);
    get(c, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    cli_free(c);
    SSL_CTX_free(ctx);

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
    c = tls_connect(s->port, ctx, &ok);
    assert_false(ok);
    cli_free(c);
    SSL_CTX_free(ctx);

    /* plaintext HTTP on the TLS port gets no answer, just a close */
    c = cli_new(s->port);
    cli_sendf(c, "GET /v1/t/hello HTTP/1.1\r\n\r\n");
    struct resp r2;
    assert_int_not_equal(cli_read(c, &r2, 0), 0);
    cli_free(c);
    srv_stop(s);
    unlink(cert);
    unlink(key);

    /* bad files: the server does not start, with a message naming the variable */
    cfg.tls_cert_file = "/nonexistent/cert.pem";
    char err[256] = "";
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct http_router *rt = http_router_new();
    assert_null(http_server_new(&loop, &cfg, rt, NULL, err, sizeof err));
    assert_non_null(strstr(err, "TLS_CERT_FILE"));
    http_router_free(rt);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---------- drain, abort ---------- */

static void test_drain(void **state)
{
    (void)state;
    struct http_server_config cfg = base_config();
    struct srv *s = srv_start(&cfg);
    int port = s->port;
    struct resp r;
    struct cli *idle = cli_new(port);
    get(idle, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    struct cli *busy = cli_new(port);
    cli_sendf(busy, "GET /v1/t/slow HTTP/1.1\r\n\r\n");
    usleep(50000);
    srv_drain(s);
    assert_true(cli_closed(idle)); /* idle keep-alive closed at once */
    assert_int_equal(atomic_load(&s->drained), 0);
    assert_int_equal(cli_read(busy, &r, 0), 0); /* in-flight request finishes */
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "slow", 4);
    assert_string_equal(hdr(&r, "Connection"), "close");
    assert_true(cli_closed(busy));
    for (int i = 0; i < 300 && !atomic_load(&s->drained); i++) /* lingering close: <= 2 s */
        usleep(10000);
    assert_int_equal(atomic_load(&s->drained), 1);
    assert_int_equal(tcp_connect(port), -1); /* not accepting any more */
    cli_free(idle);
    cli_free(busy);
    srv_stop(s);
}

static void test_client_abort(void **state)
{
    (void)state;
    struct http_server_config cfg = base_config();
    struct srv *s = srv_start(&cfg);
    struct cli *c = cli_new(s->port);
    cli_sendf(c, "GET /v1/t/slow HTTP/1.1\r\n\r\nGET /v1/t/hello HTTP/1.1\r\n\r\n");
    usleep(50000);
    cli_free(c); /* gone while the handler works */
    for (int i = 0; i < 100 && !atomic_load(&s->slow_answered); i++)
        usleep(10000);
    assert_int_equal(atomic_load(&s->slow_answered), 1);
    assert_int_equal(atomic_load(&s->aborted_seen), 1);
    struct resp r;
    c = cli_new(s->port);
    get(c, "/v1/t/hello", &r);
    assert_int_equal(r.status, 200);
    cli_free(c);
    srv_stop(s); /* ASan checks that nothing leaked */
}

static void test_reuseport(void **state)
{
    (void)state;
    struct http_server_config cfg = base_config();
    struct srv *a = srv_start(&cfg);
    cfg.port = a->port;
    struct srv *b = srv_start(&cfg); /* same port, second "process" */
    assert_int_equal(b->port, a->port);
    struct resp r;
    for (int i = 0; i < 4; i++) {
        struct cli *c = cli_new(a->port);
        get(c, "/v1/t/hello", &r);
        assert_int_equal(r.status, 200);
        cli_free(c);
    }
    srv_stop(b);
    srv_stop(a);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_large_answer_sent_in_parts),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_chunked_too_large),
        cmocka_unit_test(test_content_length_too_large),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_slow_headers_and_body),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_gate),
        cmocka_unit_test(test_framing_points),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_handler_errors),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_header_name_bytes),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_client_abort),
        cmocka_unit_test(test_reuseport),
        cmocka_unit_test(test_unsafe_handler_headers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
