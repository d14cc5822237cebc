/*
 * http_conn.c - one HTTP/1.1 connection: bytes in, requests out, answers back, in order.
 *
 * Received bytes (decrypted first under TLS) are appended to c->in and parsed by llhttp in
 * strict mode. A parser callback never calls a handler: it records what to do (c->action) and
 * pauses the parser; conn_process() acts once llhttp has returned. While a request is with its
 * handler, further pipelined bytes stay buffered; the answer (http_conn_response_done) resumes
 * parsing, so answers go out in request order.
 *
 * Limits are enforced here, before any handler runs: the header section is counted while it
 * arrives (431), the body limit is checked against Content-Length at the end of the headers
 * and against the running count of a chunked body (413), and the body is read only once the
 * route is known and the admission gate (authentication) has let the request in: a refused
 * request is answered without its body being read. The body buffer grows with what arrives,
 * never reserved from Content-Length. One timer per connection carries the deadline of its
 * state: TLS handshake and header section (absolute, from the first byte), body (a minimum
 * rate per window, so trickling one byte at a time does not keep a body alive), keep-alive
 * idle, and the linger after a closing answer. An answer that closes the connection shuts the write side
 * down and discards input until EOF (or 2 s) so the client reads the answer instead of a reset.
 *
 * Lifetime: c->refs counts the two libuv handles, pending writes, the request a handler holds
 * and the duration of conn_process(); the connection is freed when it drops to zero.
 */
#include "http_internal.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define LINGER_MS 2000
#define INPUT_PAUSE_BYTES (1u << 20)  /* stop reading when this much waits behind a handler */
#define OUTPUT_PAUSE_BYTES (4u << 20) /* stop parsing while this much waits to be written */
#define KEEP_BUF_BYTES (256u << 10)   /* larger per-request buffers are released */
#define GATE_PAUSE_BYTES (64u << 10)  /* stop reading when this much waits behind the gate */
#define MAX_CHUNK_EXT_BYTES 1024      /* chunk extensions of one request, all chunks together */
#define READ_ROOM_BYTES 4096          /* least free room of the input buffer offered to a read */

static void conn_process(struct http_conn *c);
static void conn_act(struct http_conn *c);
static void http_conn_read_start(struct http_conn *c);

/* ---------- lifetime ---------- */

static void conn_free(struct http_conn *c)
{
    struct http_server *s = c->srv;
    json_decref(c->req.log_fields);
    buf_destroy(&c->in);
    buf_destroy(&c->url);
    buf_destroy(&c->pathbuf);
    buf_destroy(&c->hdrs);
    buf_destroy(&c->req.body);
    buf_destroy(&c->out);
    buf_destroy(&c->tlsout);
    buf_destroy(&c->jsonbuf);
    free(c->spans);
    free(c->harr);
    http_tls_free(c->tls);
    free(c);
    http_server_conn_freed(s);
}

void http_conn_ref(struct http_conn *c)
{
    c->refs++;
}

void http_conn_unref(struct http_conn *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

static void on_handle_close(uv_handle_t *h)
{
    http_conn_unref(h->data);
}

/* An admitted request that will not reach its handler: the gate's state is released. */
static void conn_drop_admitted(struct http_conn *c)
{
    if (!c->admitted)
        return;
    c->admitted = 0;
    if (c->srv->dropped)
        c->srv->dropped(&c->req, c->srv->ctx);
    c->req.user = NULL;
}

static void body_uncount(struct http_conn *c)
{
    if (!c->body_counted)
        return;
    c->body_counted = 0;
    if (c->ip)
        c->ip->nbody--;
}

void http_conn_close(struct http_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    conn_drop_admitted(c);
    http_server_conn_closed(c->srv, c);
    if (c->fake) {
        c->refs -= 1; /* the two handle references */
        http_conn_unref(c);
        return;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_close);
    uv_close((uv_handle_t *)&c->tcp, on_handle_close);
}

/* ---------- timers ---------- */

static void on_timer(uv_timer_t *t);

/* The state's deadline moves with every request (headers, body, handler, keep-alive idle), but
 * the timer is re-armed only when the new deadline is earlier than the one it is armed for: a
 * timer that fires early re-arms itself for what is left. A request on a busy keep-alive
 * connection then costs no timer operation at all (it used to cost four, a tenth of the
 * loop's own work per request outside the handler). */
static void conn_timer(struct http_conn *c, int ms)
{
    if (c->fake || c->closing)
        return;
    uint64_t now = uv_now(c->srv->loop);
    c->deadline = now + (uint64_t)(ms > 0 ? ms : 1);
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due <= c->deadline)
        return;
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
    c->timer_due = c->deadline;
}

/* No deadline while a handler has the request; an armed timer finds none and stays quiet. */
static void conn_timer_stop(struct http_conn *c)
{
    c->deadline = 0;
}

static void conn_server_error(struct http_conn *c, int status, const char *code, const char *msg)
{
    c->err_status = status;
    c->err_code = code;
    snprintf(c->err_msg, sizeof c->err_msg, "%s", msg);
    c->action = ACT_ERROR;
}

/* The least a body must bring in one window (HTTP_BODY_TIMEOUT_MS) to stay alive. */
static uint64_t body_window_min(const struct http_server *s)
{
    uint64_t need = (uint64_t)s->body_min_rate * (uint64_t)s->body_timeout_ms / 1000;
    return need > 0 ? need : 1;
}

static void on_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;
    if (!c->deadline)
        return;
    uint64_t now = uv_now(c->srv->loop);
    if (now < c->deadline) { /* armed for an earlier deadline since moved */
        uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
        c->timer_due = c->deadline;
        return;
    }
    c->deadline = 0;
    switch (c->state) {
    case CS_BODY:
        if (c->win_bytes >= body_window_min(c->srv)) {
            c->win_bytes = 0;
            conn_timer(c, c->srv->body_timeout_ms);
            break;
        }
        /* fall through */
    case CS_HEADERS:
        conn_server_error(c, 408, "REQUEST_TIMEOUT", "The request was not received in time.");
        c->body_unread = 1;
        http_conn_ref(c);
        conn_act(c);
        http_conn_unref(c);
        break;
    case CS_HANDLER:
        break;
    default: /* handshake, idle keep-alive, linger */
        http_conn_close(c);
        break;
    }
}

/* ---------- writing ---------- */

struct wreq {
    uv_write_t req;
    struct http_conn *c;
    size_t len;
    char data[];
};

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;
    if (status < 0)
        http_conn_close(c);
    http_conn_unref(c);
}

/* Closing answer written: send FIN (and close_notify), then discard input for a while. */
static void conn_shutdown(struct http_conn *c)
{
    if (c->shutdown_started || c->closing)
        return;
    c->shutdown_started = 1;
    if (c->fake) {
        http_conn_close(c);
        return;
    }
    if (c->tls) {
        c->tlsout.len = 0;
        http_tls_close_notify(c->tls, &c->tlsout);
        if (c->tlsout.len) {
            uv_buf_t b = uv_buf_init(c->tlsout.data, (unsigned)c->tlsout.len);
            uv_try_write((uv_stream_t *)&c->tcp, &b, 1); /* best effort */
        }
    }
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        http_conn_close(c);
        return;
    }
    http_conn_ref(c);
    if (c->read_stopped) {
        c->read_stopped = 0;
        http_conn_read_start(c);
    }
    conn_timer(c, LINGER_MS);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct http_conn *c = w->c;
    c->writes_pending--;
    c->write_queued -= w->len;
    free(w);
    if (status < 0) {
        http_conn_close(c);
    } else if (c->state == CS_LINGER) {
        if (c->writes_pending == 0)
            conn_shutdown(c);
    } else if (c->write_queued < OUTPUT_PAUSE_BYTES / 2 && c->state != CS_HANDLER) {
        if (c->read_stopped)
            http_conn_read_start(c); /* stopped while the answers backed up (on_read) */
        conn_process(c);
    }
    http_conn_unref(c);
}

/* An answer with nothing queued before it goes out in one send() on the socket itself, not
 * libuv's uv_try_write(): that is a write(), whose trip through the file layer (position lock,
 * permission and notification hooks) was 8 % of the system call in a profile. What the socket
 * does not take is queued with uv_write() as before, and libuv's queue is empty whenever this
 * path is taken (writes_pending counts every uv_write() not yet completed). */
static void stream_write(struct http_conn *c, const char *data, size_t len)
{
    if (c->closing || len == 0)
        return;
    /* libuv's own queue and a started shutdown are checked as well as our count, so that no
     * later path writing through libuv directly can let an answer overtake an earlier one */
    if (c->writes_pending == 0 && c->tcp.write_queue_size == 0 && !c->shutdown_started) {
        ssize_t n;
        do
            n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t)len)
            return;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            http_conn_close(c);
            return;
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
    }
    struct wreq *w = xmalloc(sizeof *w + len);
    memcpy(w->data, data, len);
    w->c = c;
    w->len = len;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(w);
        http_conn_close(c);
        return;
    }
    c->writes_pending++;
    c->write_queued += len;
    http_conn_ref(c);
}

void http_conn_send(struct http_conn *c, const char *data, size_t len)
{
    if (c->closing)
        return;
    if (c->fake) {
        buf_append(&c->srv->fake_out, data, len);
        return;
    }
    if (!c->tls) {
        stream_write(c, data, len);
        return;
    }
    c->tlsout.len = 0;
    if (http_tls_encrypt(c->tls, data, len, &c->tlsout) != 0) {
        http_conn_close(c);
        return;
    }
    stream_write(c, c->tlsout.data, c->tlsout.len);
}

/* ---------- the request being parsed ---------- */

static void req_reset(struct http_conn *c)
{
    struct http_request *r = &c->req;
    c->url.len = 0;
    c->hdrs.len = 0;
    c->nspans = 0;
    c->header_bytes = 0;
    c->in_value = 0;
    c->headers_done = 0;
    c->err_status = 0;
    c->action = ACT_NONE;
    c->act_ready = 0;
    c->handler = NULL;
    conn_drop_admitted(c);
    body_uncount(c);
    c->gating = 0;
    c->msg_done = 0;
    c->ext_bytes = 0;
    c->win_bytes = 0;
    if (r->body.cap > KEEP_BUF_BYTES)
        buf_destroy(&r->body);
    r->body.len = 0;
    if (r->body.data)
        r->body.data[0] = '\0';
    r->method = NULL;
    r->path = NULL;
    r->query = NULL;
    r->headers = NULL;
    r->nheaders = 0;
    r->request_id[0] = '\0';
    r->nparams = 0;
    r->route = NULL;
    r->route_pattern = NULL;
    r->route_data = NULL;
    r->user = NULL;
    json_decref(r->log_fields);
    r->log_fields = NULL;
    r->wipe_response = 0;
    r->start_ms = now_mono_ms();
}

static int header_budget(struct http_conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes <= (size_t)c->srv->max_header_bytes)
        return 0;
    conn_server_error(c, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE",
                      "Request header fields too large.");
    c->body_unread = 1;
    c->act_ready = 1;
    return -1;
}

static void span_close_value(struct http_conn *c)
{
    if (!c->in_value)
        return;
    struct hdr_span *sp = &c->spans[c->nspans - 1];
    size_t end = c->hdrs.len;
    while (end > sp->value_off && (c->hdrs.data[end - 1] == ' ' || c->hdrs.data[end - 1] == '\t'))
        end--;
    c->hdrs.len = end;
    sp->value_len = (uint32_t)(end - sp->value_off);
    buf_append(&c->hdrs, "", 1);
    c->in_value = 0;
}

static int cb_message_begin(llhttp_t *p)
{
    struct http_conn *c = p->data;
    req_reset(c);
    http_server_idle_leave(c->srv, c);
    c->state = CS_HEADERS;
    conn_timer(c, c->srv->header_timeout_ms);
    return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (header_budget(c, len))
        return -1;
    buf_append(&c->url, at, len);
    return 0;
}

/* RFC 9110 token characters, what a field name may contain (llhttp's loose mode allows more),
 * each mapped to its lowercase; 0 for any other byte: letters, digits and !#$%&'*+-.^_`|~.
 * One lookup per byte of a header name checks it and lowers it. */
static const unsigned char tchar_lower[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 33, 0, 35, 36, 37, 38, 39, 0, 0, 42, 43, 0, 45, 46, 0,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 0, 0, 0, 0, 0, 0,
    0, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 0, 0, 0, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 0, 124, 0, 126, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (header_budget(c, len))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!tchar_lower[(unsigned char)at[i]]) {
            conn_server_error(c, 400, "BAD_REQUEST", "Malformed HTTP request.");
            c->body_unread = 1;
            c->act_ready = 1;
            return -1;
        }
    }
    if (c->headers_done)
        return 0; /* trailer: counted, not kept */
    if (c->in_value || c->nspans == 0 || c->spans[c->nspans - 1].name_len != UINT32_MAX) {
        span_close_value(c);
        if (c->nspans == c->spans_cap) {
            c->spans_cap = c->spans_cap ? c->spans_cap * 2 : 16;
            c->spans = xrealloc(c->spans, c->spans_cap * sizeof *c->spans);
        }
        struct hdr_span *sp = &c->spans[c->nspans++];
        sp->name_off = (uint32_t)c->hdrs.len;
        sp->name_len = UINT32_MAX; /* open */
        sp->value_off = 0;
        sp->value_len = 0;
    }
    buf_reserve(&c->hdrs, len);
    char *dst = c->hdrs.data + c->hdrs.len;
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)tchar_lower[(unsigned char)at[i]];
    c->hdrs.len += len;
    c->hdrs.data[c->hdrs.len] = '\0';
    return 0;
}

static int cb_header_field_complete(llhttp_t *p)
{
    struct http_conn *c = p->data;
    if (header_budget(c, 4))
        return -1;
    if (c->headers_done || c->nspans == 0)
        return 0;
    struct hdr_span *sp = &c->spans[c->nspans - 1];
    sp->name_len = (uint32_t)(c->hdrs.len - sp->name_off);
    buf_append(&c->hdrs, "", 1);
    sp->value_off = (uint32_t)c->hdrs.len;
    c->in_value = 1;
    return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (header_budget(c, len))
        return -1;
    if (c->headers_done || !c->in_value)
        return 0;
    buf_append(&c->hdrs, at, len);
    return 0;
}

static int cb_header_value_complete(llhttp_t *p)
{
    struct http_conn *c = p->data;
    if (!c->headers_done)
        span_close_value(c);
    return 0;
}

static void headers_build(struct http_conn *c)
{
    span_close_value(c);
    if (c->nspans && c->spans[c->nspans - 1].name_len == UINT32_MAX)
        c->nspans--; /* a name without value cannot happen in strict mode; be safe */
    if (c->harr_cap < c->nspans) {
        c->harr_cap = c->nspans;
        c->harr = xrealloc(c->harr, c->harr_cap * sizeof *c->harr);
    }
    for (size_t i = 0; i < c->nspans; i++) {
        const struct hdr_span *sp = &c->spans[i];
        c->harr[i].name = c->hdrs.data + sp->name_off;
        c->harr[i].name_len = sp->name_len;
        c->harr[i].value = c->hdrs.data + sp->value_off;
        c->harr[i].value_len = sp->value_len;
        c->harr[i].vetted = 0;
    }
    c->req.headers = c->harr;
    c->req.nheaders = c->nspans;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Splits the request target into decoded path and raw query; -1 if unusable. */
static int target_split(struct http_conn *c)
{
    char *u = c->url.data ? c->url.data : "";
    size_t n = c->url.len;
    if (n >= 7 && (ascii_casecmp_n(u, "http://", 7) == 0 ||
                   (n >= 8 && ascii_casecmp_n(u, "https://", 8) == 0))) {
        char *auth = strstr(u, "//") + 2;
        char *slash = strchr(auth, '/');
        n = slash ? n - (size_t)(slash - u) : 0;
        u = slash ? slash : "/";
        if (!slash)
            n = 1;
    }
    char *hash = memchr(u, '#', n);
    if (hash) {
        *hash = '\0';
        n = (size_t)(hash - u);
    }
    char *q = memchr(u, '?', n);
    size_t plen = q ? (size_t)(q - u) : n;
    if (q) {
        *q = '\0';
        c->req.query = q + 1;
    }
    c->pathbuf.len = 0;
    buf_reserve(&c->pathbuf, plen + 1);
    char *d = c->pathbuf.data;
    for (size_t i = 0; i < plen; i++) {
        int hi, lo;
        if (u[i] == '%' && i + 2 < plen && (hi = hexval(u[i + 1])) >= 0 &&
            (lo = hexval(u[i + 2])) >= 0) {
            char ch = (char)(hi * 16 + lo);
            if (ch == '\0')
                return -1;
            if (ch == '/') { /* an encoded slash stays encoded: it never splits a segment */
                memcpy(d, u + i, 3);
                d += 3;
            } else {
                *d++ = ch;
            }
            i += 2;
        } else {
            *d++ = u[i];
        }
    }
    *d = '\0';
    c->pathbuf.len = (size_t)(d - c->pathbuf.data);
    c->req.path = c->pathbuf.data;
    return 0;
}

static int is_ingest_path(const char *path)
{
    return strncmp(path, "/v1/ingest/", 11) == 0 || strcmp(path, "/v1/alerts") == 0;
}

static void body_limit_set(struct http_conn *c)
{
    struct http_server *s = c->srv;
    c->body_limit_ingest = is_ingest_path(c->req.path);
    c->body_limit = c->body_limit_ingest ? s->max_ingest_body : s->max_body;
}

static void error_413(struct http_conn *c)
{
    struct http_server *s = c->srv;
    char msg[128];
    if (c->body_limit_ingest)
        snprintf(msg, sizeof msg, "Request body exceeds the %dMB limit for ingest endpoints.",
                 s->max_ingest_body_mb);
    else
        snprintf(msg, sizeof msg, "Request body exceeds the %dMB limit for this endpoint.",
                 s->max_body_mb);
    conn_server_error(c, 413, "PAYLOAD_TOO_LARGE", msg);
    c->body_unread = 1;
}

/* Decides how the request will be answered, before a byte of its body is read. */
static void request_route(struct http_conn *c, llhttp_t *p)
{
    struct http_request *r = &c->req;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)c->body_limit) {
        error_413(c);
        return;
    }
    if (http_cors_is_preflight(c->srv, r)) {
        c->action = ACT_PREFLIGHT;
        return;
    }
    switch (http_router_match(c->srv->router, r, &c->handler, c->allow, sizeof c->allow)) {
    case ROUTE_FOUND:
        c->action = ACT_DISPATCH;
        break;
    case ROUTE_BAD_METHOD:
        conn_server_error(c, 405, "METHOD_NOT_ALLOWED", "Method not allowed.");
        break;
    case ROUTE_NONE:
        conn_server_error(c, 404, "NOT_FOUND", "The requested resource was not found.");
        break;
    }
}

/* Number of headers named name (lowercase). */
static size_t header_count(const struct http_request *r, const char *name, size_t nlen)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        n += r->headers[i].name_len == nlen && !memcmp(r->headers[i].name, name, nlen);
    return n;
}

/* 1 if every Transfer-Encoding header together names exactly one coding, chunked. Other
 * codings (gzip, identity, ...) are not implemented, whatever their order. */
static int transfer_encoding_ok(const struct http_request *r)
{
    int seen = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];
        if (h->name_len != 17 || memcmp(h->name, "transfer-encoding", 17) != 0)
            continue;
        struct http_list l = {h->value, h->value + h->value_len, 0};
        const char *a, *z;
        while (http_list_next(&l, &a, &z)) {
            if (z > a && (seen++ || z - a != 7 || ascii_casecmp_n(a, "chunked", 7) != 0))
                return 0;
        }
    }
    return seen == 1;
}

/* Framing and singleton-header checks once the header section is complete; 0 if fine. */
static int headers_check(struct http_conn *c, llhttp_t *p)
{
    struct http_request *r = &c->req;
    if ((p->flags & F_TRANSFER_ENCODING) && !transfer_encoding_ok(r)) {
        conn_server_error(c, 501, "NOT_IMPLEMENTED",
                          "Transfer-Encoding other than a single 'chunked' is not supported.");
        return -1;
    }
    if (header_count(r, "authorization", 13) > 1) {
        conn_server_error(c, 400, "BAD_REQUEST", "More than one Authorization header.");
        return -1;
    }
    return 0;
}

/* Counts a request with a body against its peer's cap on unread bodies; -1 when over it. */
static int body_count(struct http_conn *c)
{
    struct http_server *s = c->srv;
    if (!c->ip)
        return 0;
    if (s->max_bodies_per_ip > 0 && c->ip->nbody >= s->max_bodies_per_ip) {
        conn_server_error(c, 503, "SERVICE_UNAVAILABLE",
                          "Too many uploads in progress from this address; retry later.");
        return -1;
    }
    c->ip->nbody++;
    c->body_counted = 1;
    return 0;
}

/* The body will be read now: Expect: 100-continue is answered and the rate window starts. */
static void body_start(struct http_conn *c)
{
    struct http_request *r = &c->req;
    size_t elen;
    const char *expect = http_header_get(r, "expect", &elen);
    if (expect && elen == 12 && ascii_casecmp_n(expect, "100-continue", 12) == 0 &&
        r->http_minor >= 1)
        http_conn_send(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->state = CS_BODY;
    c->win_bytes = 0;
    conn_timer(c, c->srv->body_timeout_ms);
}

static int cb_headers_complete(llhttp_t *p)
{
    struct http_conn *c = p->data;
    struct http_request *r = &c->req;
    headers_build(c);
    c->headers_done = 1;
    r->method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    r->http_minor = p->http_minor;
    r->tls = c->tls != NULL;
    if (target_split(c) != 0) {
        r->path = NULL;
        http_request_id_assign(r);
        conn_server_error(c, 400, "BAD_REQUEST", "Malformed request target.");
        c->body_unread = 1;
        c->act_ready = 1;
        return HPE_PAUSED;
    }
    http_request_id_assign(r);
    body_limit_set(c);
    if (llhttp_get_upgrade(p))
        c->close_after = 1; /* no protocol switch here: answer, then close */
    if (headers_check(c, p) != 0) {
        c->body_unread = 1;
        c->act_ready = 1;
        return HPE_PAUSED;
    }
    request_route(c, p);
    int has_body = (p->flags & (F_CHUNKED | F_TRANSFER_ENCODING)) ||
                   ((p->flags & F_CONTENT_LENGTH) && p->content_length);
    if (!has_body)
        return 0; /* the gate, if any, runs at the end of the message */
    if (c->action == ACT_DISPATCH && body_count(c) != 0) {
        c->body_unread = 1;
        c->act_ready = 1;
        return HPE_PAUSED;
    }
    if (c->action != ACT_DISPATCH) {
        c->body_unread = 1; /* answered without reading the body */
        c->act_ready = 1;
        return HPE_PAUSED;
    }
    if (c->srv->gate) {
        c->action = ACT_GATE; /* the body waits for the gate's decision */
        c->act_ready = 1;
        return HPE_PAUSED;
    }
    body_start(c);
    return 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if ((long long)(c->req.body.len + len) > c->body_limit) {
        error_413(c);
        c->act_ready = 1;
        return -1;
    }
    buf_append(&c->req.body, at, len);
    return 0;
}

static int cb_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    (void)at;
    c->ext_bytes += len;
    if (c->ext_bytes <= MAX_CHUNK_EXT_BYTES)
        return 0;
    conn_server_error(c, 400, "BAD_REQUEST", "Chunk extensions too long.");
    c->body_unread = 1;
    c->act_ready = 1;
    return -1;
}

static int cb_message_complete(llhttp_t *p)
{
    struct http_conn *c = p->data;
    if (!llhttp_should_keep_alive(p))
        c->close_after = 1;
    c->msg_done = 1;
    body_uncount(c);
    if (c->action == ACT_NONE) /* cannot happen: headers_complete always decides */
        conn_server_error(c, 400, "BAD_REQUEST", "Malformed HTTP request.");
    else if (c->action == ACT_DISPATCH && c->srv->gate && !c->admitted)
        c->action = ACT_GATE; /* no body: admission now, the handler right after */
    c->act_ready = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = cb_message_begin,
    .on_url = cb_url,
    .on_header_field = cb_header_field,
    .on_header_field_complete = cb_header_field_complete,
    .on_header_value = cb_header_value,
    .on_header_value_complete = cb_header_value_complete,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_chunk_extension_name = cb_chunk_extension,
    .on_chunk_extension_value = cb_chunk_extension,
    .on_message_complete = cb_message_complete,
};

/* ---------- acting on a parsed (or failed) request ---------- */

static void conn_act(struct http_conn *c)
{
    enum conn_action a = c->action;
    c->action = ACT_NONE;
    c->act_ready = 0;
    c->state = CS_HANDLER;
    conn_timer_stop(c);
    c->req_active = 1;
    http_conn_ref(c); /* released by http_conn_response_done() or admission */
    if (a != ACT_DISPATCH && a != ACT_GATE) {
        conn_drop_admitted(c);
        body_uncount(c);
    }
    switch (a) {
    case ACT_GATE:
        c->gating = 1;
        if (!c->msg_done)
            c->body_unread = 1; /* until admitted: a refusal closes the connection */
        c->srv->gate(&c->req, c->srv->ctx);
        break;
    case ACT_DISPATCH:
        c->admitted = 0;
        c->handler(&c->req, c->srv->ctx);
        break;
    case ACT_PREFLIGHT:
        http_response_preflight(c);
        break;
    default: {
        struct http_header allow = {"Allow", 5, c->allow, strlen(c->allow), 0};
        http_response_error(c, c->err_status ? c->err_status : 400,
                            c->err_status ? c->err_code : "BAD_REQUEST",
                            c->err_status ? c->err_msg : "Malformed HTTP request.", NULL, &allow,
                            c->err_status == 405 ? 1 : 0);
        break;
    }
    }
}

static void parse_failed(struct http_conn *c)
{
    if (c->action != ACT_ERROR) { /* llhttp's own error, not one of our limits */
        if (c->state == CS_IDLE)
            req_reset(c);
        if (llhttp_get_errno(&c->parser) == HPE_INVALID_TRANSFER_ENCODING)
            conn_server_error(c, 501, "NOT_IMPLEMENTED", /* a coding after chunked */
                              "Transfer-Encoding other than a single 'chunked' is not supported.");
        else
            conn_server_error(c, 400, "BAD_REQUEST", "Malformed HTTP request.");
    }
    c->body_unread = 1;
    c->act_ready = 1;
}

static void input_compact(struct http_conn *c)
{
    if (c->in_off == c->in.len) {
        c->in.len = 0;
        c->in_off = 0;
        if (c->in.cap > KEEP_BUF_BYTES)
            buf_destroy(&c->in);
    } else if (c->in_off > 0) {
        buf_consume(&c->in, c->in_off);
        c->in_off = 0;
    }
}

static int may_parse(const struct http_conn *c)
{
    return !c->closing && c->state != CS_HANDLER && c->state != CS_LINGER &&
           c->state != CS_HANDSHAKE && c->in_off < c->in.len &&
           c->write_queued < OUTPUT_PAUSE_BYTES;
}

static void conn_process(struct http_conn *c)
{
    if (c->processing || c->closing)
        return;
    c->processing = 1;
    http_conn_ref(c);
    while (may_parse(c)) {
        const char *p = c->in.data + c->in_off;
        size_t n = c->in.len - c->in_off;
        llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
        if (e == HPE_OK) {
            c->in_off += n;
        } else if (e == HPE_PAUSED) {
            c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - p);
            llhttp_resume(&c->parser);
        } else if (e == HPE_PAUSED_UPGRADE) {
            c->in_off = c->in.len;
            c->close_after = 1;
        } else {
            c->in_off = c->in.len;
            parse_failed(c);
        }
        if (c->act_ready)
            conn_act(c);
    }
    input_compact(c);
    if (c->peer_eof && !c->closing && c->state != CS_HANDLER && c->state != CS_LINGER &&
        c->in_off >= c->in.len)
        http_conn_close(c); /* EOF with no complete request left */
    c->processing = 0;
    http_conn_unref(c);
}

void http_request_admit(struct http_request *req, long long max_body)
{
    struct http_conn *c = req->conn;
    if (!c->gating) {
        msg_warn("http: admission of %s %s outside the gate ignored", req->method, req->path);
        return;
    }
    c->gating = 0;
    c->admitted = 1;
    if (c->closing) { /* the client went away meanwhile: nothing to read, nobody to answer */
        c->req_active = 0;
        conn_drop_admitted(c);
        http_conn_unref(c);
        return;
    }
    if (c->msg_done) { /* no body: the handler runs now, as if dispatched */
        c->admitted = 0;
        c->handler(req, c->srv->ctx);
        return;
    }
    c->req_active = 0;
    c->body_unread = 0;
    if (max_body > 0 && max_body < c->body_limit)
        c->body_limit = max_body;
    llhttp_t *p = &c->parser;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)c->body_limit) {
        error_413(c);
        c->act_ready = 1;
        conn_act(c); /* takes its own reference */
        http_conn_unref(c);
        return;
    }
    c->action = ACT_DISPATCH;
    body_start(c);
    if (c->read_stopped)
        http_conn_read_start(c);
    conn_process(c);
    http_conn_unref(c);
}

int http_conn_keep_alive(const struct http_conn *c)
{
    return !c->close_after && !c->body_unread && !c->srv->draining && !c->over_limit &&
           !(c->peer_eof && c->in_off >= c->in.len);
}

void http_conn_response_done(struct http_conn *c)
{
    c->req_active = 0;
    c->gating = 0;
    body_uncount(c);
    json_decref(c->req.log_fields);
    c->req.log_fields = NULL;
    if (!c->closing) {
        if (!http_conn_keep_alive(c)) {
            c->state = CS_LINGER;
            if (c->writes_pending == 0)
                conn_shutdown(c);
            else /* a client that never reads its closing answer does not keep the connection */
                conn_timer(c, c->srv->idle_timeout_ms);
        } else {
            c->state = CS_IDLE;
            if (c->in_off >= c->in.len && c->in.cap > 2 * READ_ROOM_BYTES) {
                buf_destroy(&c->in); /* an idle connection keeps no body-sized read buffer */
                c->in_off = 0;
            }
            conn_timer(c, c->srv->idle_timeout_ms);
            http_server_idle_enter(c->srv, c);
            if (c->read_stopped)
                http_conn_read_start(c);
            conn_process(c);
        }
    }
    http_conn_unref(c);
}

/* ---------- reading ---------- */

/* Plaintext is read straight into the connection's input buffer (room for at least
 * READ_ROOM_BYTES; after a read of a body that filled the room, as much as the server's read
 * buffer, so a large body takes few reads), not into the server's read buffer to
 * be copied there: a copy of every request less. TLS records and discarded input still go
 * through the server's buffer. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct http_conn *c = h->data;
    (void)suggested;
    if (c->tls || c->state == CS_LINGER || c->closing) {
        *b = uv_buf_init(c->srv->rbuf, (unsigned)c->srv->rbuf_len);
        return;
    }
    /* More room only for a body (read, or waiting behind the gate, which stops reading at
     * GATE_PAUSE_BYTES as before): a header section grows the buffer only as its bytes do. */
    int more = c->read_filled && (c->state == CS_BODY || c->gating);
    /* buf_reserve() keeps a byte for the NUL itself: asking one less keeps an empty buffer at a
     * power of two (4 or 64 KiB, not 8 or 128). */
    buf_reserve(&c->in, (more ? c->srv->rbuf_len : READ_ROOM_BYTES) - 1);
    size_t room = c->in.cap - c->in.len - 1; /* the NUL the buffer keeps after its bytes */
    if (room > c->srv->rbuf_len)
        room = c->srv->rbuf_len;
    *b = uv_buf_init(c->in.data + c->in.len, (unsigned)room);
}

static void on_eof(struct http_conn *c)
{
    c->peer_eof = 1;
    if (c->state == CS_LINGER || c->state == CS_HANDSHAKE) {
        http_conn_close(c);
        return;
    }
    if (c->state != CS_HANDLER)
        conn_process(c); /* closes when nothing complete is left */
}

static void tls_input(struct http_conn *c, const char *data, size_t len)
{
    c->tlsout.len = 0;
    int rc = http_tls_feed(c->tls, data, len, &c->in, &c->tlsout);
    if (c->tlsout.len)
        stream_write(c, c->tlsout.data, c->tlsout.len);
    if (rc < 0) {
        http_conn_close(c);
        return;
    }
    if (c->state == CS_HANDSHAKE && http_tls_handshake_done(c->tls)) {
        c->state = CS_IDLE;
        conn_timer(c, c->srv->header_timeout_ms);
        if (!c->over_limit)
            http_server_idle_enter(c->srv, c);
    }
    if (rc == 1)
        c->peer_eof = 1;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct http_conn *c = st->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            on_eof(c);
        else
            http_conn_close(c);
        return;
    }
    if (c->state == CS_LINGER)
        return; /* discarded */
    http_conn_ref(c);
    if (c->tls) {
        tls_input(c, b->base, (size_t)nread);
    } else if (c->in.data && b->base == c->in.data + c->in.len) { /* read in place */
        c->read_filled = (size_t)nread == b->len;
        c->in.len += (size_t)nread;
        c->in.data[c->in.len] = '\0';
    } else {
        buf_append(&c->in, b->base, (size_t)nread);
    }
    if (!c->closing) {
        if (c->state == CS_BODY)
            c->win_bytes += (uint64_t)nread;
        if (c->state == CS_HANDLER &&
            c->in.len - c->in_off > (c->gating ? GATE_PAUSE_BYTES : INPUT_PAUSE_BYTES)) {
            uv_read_stop(st);
            c->read_stopped = 1;
        }
        if (c->peer_eof)
            on_eof(c);
        else
            conn_process(c);
        /* A client that sends requests faster than it reads the answers: parsing pauses at
         * OUTPUT_PAUSE_BYTES of answers queued (may_parse), so stop reading too once the
         * unparsed input passes INPUT_PAUSE_BYTES, or the connection would buffer whatever the
         * client sends until the idle close. on_write() reads again when the answers drain. */
        if (!c->closing && !c->read_stopped && c->write_queued >= OUTPUT_PAUSE_BYTES &&
            c->in.len - c->in_off > INPUT_PAUSE_BYTES) {
            uv_read_stop(st);
            c->read_stopped = 1;
        }
    }
    http_conn_unref(c);
}

static void http_conn_read_start(struct http_conn *c)
{
    if (c->fake || c->closing)
        return;
    c->read_stopped = 0;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        http_conn_close(c);
}

/* ---------- creation ---------- */

struct http_conn *http_conn_new(struct http_server *s, int fake)
{
    struct http_conn *c = xcalloc(1, sizeof *c);
    c->srv = s;
    c->fake = fake;
    c->fd = -1;
    c->refs = 2; /* tcp + timer handles */
    c->state = CS_IDLE;
    buf_init(&c->in);
    buf_init(&c->url);
    buf_init(&c->pathbuf);
    buf_init(&c->hdrs);
    buf_init(&c->req.body);
    buf_init(&c->out);
    buf_init(&c->tlsout);
    buf_init(&c->jsonbuf);
    c->req.conn = c;
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    if (!fake) {
        uv_tcp_init(s->loop, &c->tcp);
        uv_timer_init(s->loop, &c->timer);
        c->tcp.data = c;
        c->timer.data = c;
    }
    return c;
}

void http_conn_peer(struct http_conn *c, uint8_t addr[16])
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(addr, 0, 16);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, c->req.peer_ip, sizeof c->req.peer_ip);
        c->req.peer_port = ntohs(a->sin_port);
        addr[10] = addr[11] = 0xff;
        memcpy(addr + 12, &a->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, c->req.peer_ip, sizeof c->req.peer_ip);
        c->req.peer_port = ntohs(a->sin6_port);
        memcpy(addr, &a->sin6_addr, 16);
        if (strncmp(c->req.peer_ip, "::ffff:", 7) == 0 && strchr(c->req.peer_ip, '.'))
            memmove(c->req.peer_ip, c->req.peer_ip + 7, strlen(c->req.peer_ip + 7) + 1);
    }
}

int http_conn_start(struct http_conn *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
        http_conn_close(c);
        return -1;
    }
    c->fd = fd;
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->srv->ssl_ctx) {
        c->tls = http_tls_new(c->srv->ssl_ctx);
        c->state = CS_HANDSHAKE;
    } else if (!c->over_limit) {
        http_server_idle_enter(c->srv, c);
    }
    conn_timer(c, c->srv->header_timeout_ms);
    http_conn_read_start(c);
    return c->closing ? -1 : 0;
}

void http_conn_feed(struct http_conn *c, const char *data, size_t len)
{
    if (c->closing || c->state == CS_LINGER)
        return;
    http_conn_ref(c);
    buf_append(&c->in, data, len);
    conn_process(c);
    http_conn_unref(c);
}

void http_conn_over_limit(struct http_conn *c)
{
    c->over_limit = 1;
    if (c->tls) { /* nothing readable can be said before a handshake: just close */
        http_conn_close(c);
        return;
    }
    req_reset(c);
    http_request_id_assign(&c->req);
    conn_server_error(c, 503, "SERVICE_UNAVAILABLE",
                      "The server is handling too many connections; retry later.");
    c->body_unread = 1;
    conn_act(c);
}

void http_conn_drain(struct http_conn *c)
{
    if (c->closing)
        return;
    if ((c->state == CS_IDLE || c->state == CS_HANDSHAKE) && !c->req_active &&
        c->in_off >= c->in.len)
        http_conn_close(c);
}
