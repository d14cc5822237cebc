/*
 * http_response.c - how every answer of the HTTP server is written.
 *
 * One buffer per answer, status line + headers + body, handed to the connection in one write.
 * Every answer carries, whoever made it (handler, router, limits, timeouts, 503): Date,
 * Content-Length, Connection, X-Request-ID, the security headers with the CSP chosen by path
 * (the API gets the strictest one, the /docs page the one it needs), HSTS when configured, and
 * CORS headers when CORS is on and the request has an Origin (as Starlette's CORSMiddleware
 * semantics). The security header blocks are formatted once per server. Also here: request id
 * assignment, header lookup, the error envelope and the access-log line.
 */
#include "http_internal.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"

#define CSP_API_VALUE "default-src 'none'; frame-ancestors 'none'"
#define CSP_UI_VALUE                                                                               \
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline' "                     \
    "https://fonts.googleapis.com; font-src 'self' https://fonts.gstatic.com; connect-src "        \
    "'self'; img-src 'self' data:; frame-ancestors 'none'"
/* The documentation page (/docs) is served whole by the intake: its script, style sheet and
 * /openapi.json come from the same origin and nothing else is loaded. */
#define CSP_DOCS_VALUE                                                                             \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src "       \
    "'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#define CORS_METHODS "GET, POST, PATCH, DELETE, OPTIONS"
#define CORS_HEADERS                                                                               \
    "Accept, Accept-Language, Authorization, Content-Language, Content-Type, X-Request-ID"

/* With their lengths: a handler's extra headers (the rate-limit ones on every authenticated
 * answer) are checked against the list, and most names differ from each entry by length. */
#define RESERVED(name) {name, sizeof name - 1}
static const struct {
    const char *name;
    size_t len;
} reserved_headers[] = {
    RESERVED("content-length"),
    RESERVED("connection"),
    RESERVED("date"),
    RESERVED("transfer-encoding"),
    RESERVED("x-request-id"),
    RESERVED("x-content-type-options"),
    RESERVED("x-frame-options"),
    RESERVED("x-xss-protection"),
    RESERVED("referrer-policy"),
    RESERVED("permissions-policy"),
    RESERVED("content-security-policy"),
    RESERVED("strict-transport-security"),
    RESERVED("access-control-allow-origin"),
    RESERVED("access-control-allow-credentials"),
};
#undef RESERVED

static const char *status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

/* ---------- request helpers ---------- */

const char *http_header_get(const struct http_request *req, const char *lowercase_name,
                            size_t *len_out)
{
    size_t n = strlen(lowercase_name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && memcmp(h->name, lowercase_name, n) == 0) {
            if (len_out)
                *len_out = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

int http_request_aborted(const struct http_request *req)
{
    return req->conn->closing || req->conn->peer_eof;
}

static int request_id_sane(const char *v, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

void http_request_id_assign(struct http_request *req)
{
    size_t n = 0;
    const char *v = http_header_get(req, "x-request-id", &n);
    if (v && request_id_sane(v, n)) {
        memcpy(req->request_id, v, n);
        req->request_id[n] = '\0';
    } else {
        crypto_uuid4(req->request_id);
    }
}

/* ---------- security headers ---------- */

enum csp_kind http_csp_for_path(const char *path)
{
    if (!path || !*path)
        return CSP_API;
    size_t n = strlen(path);
    if (n >= 7 && memcmp(path + n - 7, "/decide", 7) == 0)
        return CSP_UI;
    if (strncmp(path, "/v1/", 4) == 0 || strncmp(path, "/health", 7) == 0)
        return CSP_API;
    if (strncmp(path, "/docs", 5) == 0 || strncmp(path, "/redoc", 6) == 0 ||
        strncmp(path, "/openapi.json", 13) == 0)
        return CSP_DOCS;
    return CSP_UI;
}

int http_server_build_security(struct http_server *s)
{
    static const char *const csp[3] = {CSP_API_VALUE, CSP_UI_VALUE, CSP_DOCS_VALUE};
    for (int k = 0; k < 3; k++) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "X-Content-Type-Options: nosniff\r\n"
                     "X-Frame-Options: DENY\r\n"
                     "X-XSS-Protection: 1; mode=block\r\n"
                     "Referrer-Policy: no-referrer\r\n"
                     "Permissions-Policy: geolocation=(), microphone=(), camera=()\r\n");
        buf_printf(&b, "Content-Security-Policy: %s\r\n", csp[k]);
        if (s->hsts)
            buf_puts(&b, "Strict-Transport-Security: max-age=63072000; includeSubDomains\r\n");
        s->sec_headers[k] = b.data;
        s->sec_len[k] = b.len;
    }
    return 0;
}

static const char *date_header(struct http_server *s)
{
    time_t now = time(NULL);
    if (now != s->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof s->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

/* ---------- CORS ---------- */

static int origin_allowed(const struct http_server *s, const char *o, size_t n)
{
    for (size_t i = 0; i < s->ncors; i++)
        if (strlen(s->cors_origins[i]) == n && memcmp(s->cors_origins[i], o, n) == 0)
            return 1;
    return 0;
}

static int value_safe(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
            return 0;
    return 1;
}

int http_cors_is_preflight(const struct http_server *s, const struct http_request *req)
{
    return s->cors_enabled && strcmp(req->method, "OPTIONS") == 0 &&
           http_header_get(req, "origin", NULL) &&
           http_header_get(req, "access-control-request-method", NULL);
}

/* n in decimal, without printf: the status line and Content-Length of every answer. */
static void buf_put_decimal(struct buf *o, unsigned long long n)
{
    char d[24];
    buf_append(o, d, fmt_ull(d, n));
}

static void header_line(struct buf *o, const char *name, const char *v, size_t n)
{
    buf_puts(o, name);
    buf_append(o, ": ", 2);
    buf_append(o, v, n);
    buf_append(o, "\r\n", 2);
}

/* Headers of a simple (non-preflight) CORS response. */
static void cors_simple(const struct http_server *s, const struct http_request *req, struct buf *o)
{
    size_t n;
    const char *origin;
    if (!s->cors_enabled || !(origin = http_header_get(req, "origin", &n)) ||
        !value_safe(origin, n))
        return;
    if (s->cors_allow_all) {
        if (http_header_get(req, "cookie", NULL)) {
            header_line(o, "Access-Control-Allow-Origin", origin, n);
            buf_puts(o, "Vary: Origin\r\n");
        } else {
            buf_puts(o, "Access-Control-Allow-Origin: *\r\n");
        }
    } else if (origin_allowed(s, origin, n)) {
        header_line(o, "Access-Control-Allow-Origin", origin, n);
        buf_puts(o, "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n");
    }
}

/* ---------- the answer ---------- */

static int header_reserved(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof reserved_headers / sizeof reserved_headers[0]; i++)
        if (reserved_headers[i].len == n && ascii_casecmp_n(name, reserved_headers[i].name, n) == 0)
            return 1;
    return 0;
}

/* A JSON string of s; bytes that are not valid UTF-8 become '?'. */
static json_t *json_lossy(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = xstrdup(s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static void access_log(struct http_conn *c, int status)
{
    struct http_request *r = &c->req;
    if (!log_enabled(LOG_INFO))
        return;
    uint64_t now = now_mono_ms();
    double ms = r->start_ms && now >= r->start_ms ? (double)(now - r->start_ms) : 0.0;
    json_t *f = json_object();
    json_object_set_new(f, "method", json_string(r->method ? r->method : ""));
    json_object_set_new(f, "path", json_lossy(r->path ? r->path : ""));
    json_object_set_new(f, "status_code", json_integer(status));
    json_object_set_new(f, "duration_ms", json_real((double)((long long)(ms * 100 + 0.5)) / 100));
    json_object_set_new(f, "request_id", json_string(r->request_id));
    json_object_set_new(f, "client_ip", json_string(r->peer_ip));
    if (json_is_object(r->log_fields))
        json_object_update(f, r->log_fields);
    log_event(LOG_INFO, "request", f);
    json_decref(f);
}

static void response_head(struct http_conn *c, int status, const char *ctype, size_t len,
                          const struct http_header *extra, size_t nextra, int trusted,
                          int streamed);

/* trusted: extra headers made by the server itself (CORS preflight), no filtering, no CORS. */
static void response_build(struct http_conn *c, int status, const char *ctype, const char *body,
                           size_t len, const struct http_header *extra, size_t nextra, int trusted)
{
    response_head(c, status, ctype, len, extra, nextra, trusted, 0);
    int nobody = (status >= 100 && status < 200) || status == 204 || status == 304;
    int head = c->req.method && strcmp(c->req.method, "HEAD") == 0;
    if (!nobody && !head && len)
        buf_append(&c->out, body, len);
}

/* The status line and headers into c->out; streamed: no Content-Length (chunked on HTTP/1.1,
 * else the body ends with the connection). */
static void response_head(struct http_conn *c, int status, const char *ctype, size_t len,
                          const struct http_header *extra, size_t nextra, int trusted,
                          int streamed)
{
    struct http_server *s = c->srv;
    struct http_request *req = &c->req;
    struct buf *o = &c->out;
    int informational = status >= 100 && status < 200;
    int nobody = informational || status == 204 || status == 304;
    int head = req->method && strcmp(req->method, "HEAD") == 0;
    o->len = 0;
    buf_reserve(o, 1024 + (nobody || head ? 0 : len));
    buf_append(o, "HTTP/1.1 ", 9);
    buf_put_decimal(o, (unsigned long long)(status > 0 ? status : 0));
    buf_append(o, " ", 1);
    buf_puts(o, status_reason(status));
    buf_append(o, "\r\n", 2);
    if (ctype && !nobody && value_safe(ctype, strlen(ctype)))
        header_line(o, "Content-Type", ctype, strlen(ctype));
    if (streamed && c->stream_chunked)
        buf_puts(o, "Transfer-Encoding: chunked\r\n");
    else if (!streamed && !informational && status != 204) {
        buf_append(o, "Content-Length: ", 16);
        buf_put_decimal(o, nobody ? 0 : (unsigned long long)len);
        buf_append(o, "\r\n", 2);
    }
    const char *date = date_header(s); /* before strlen: argument order is unspecified */
    header_line(o, "Date", date, strlen(date));
    buf_puts(o, http_conn_keep_alive(c) ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    header_line(o, "X-Request-ID", req->request_id, strlen(req->request_id));
    enum csp_kind k = http_csp_for_path(req->path);
    buf_append(o, s->sec_headers[k], s->sec_len[k]);
    if (!trusted && req->headers)
        cors_simple(s, req, o);
    for (size_t i = 0; i < nextra; i++) {
        const struct http_header *h = &extra[i];
        size_t nl = h->name_len ? h->name_len : strlen(h->name);
        size_t vl = h->value_len ? h->value_len : strlen(h->value);
        /* A vetted header skips the check in release builds only: debug and sanitizer builds
         * (what the tests run) check it too and stop on a false claim, so a header marked
         * vetted that can carry other bytes fails the tests instead of splitting an answer. */
#ifdef NDEBUG
        int check = !trusted && !h->vetted;
#else
        int check = !trusted;
#endif
        if (check && (header_reserved(h->name, nl) || !value_safe(h->name, nl) ||
                      !value_safe(h->value, vl) || memchr(h->name, ':', nl) || nl == 0)) {
            if (h->vetted) {
                msg_error("http: handler header %.*s marked vetted is not safe",
                          (int)(nl > 64 ? 64 : nl), h->name);
                abort();
            }
            msg_warn("http: handler header %.*s ignored", (int)(nl > 64 ? 64 : nl), h->name);
            continue;
        }
        buf_append(o, h->name, nl);
        buf_append(o, ": ", 2);
        buf_append(o, h->value, vl);
        buf_append(o, "\r\n", 2);
    }
    buf_append(o, "\r\n", 2);
}

static void response_finish(struct http_conn *c, int status, const char *ctype, const char *body,
                            size_t len, const struct http_header *extra, size_t nextra, int trusted)
{
    struct http_request *req = &c->req;
    if (!c->req_active || c->streaming) {
        msg_warn("http: second answer (%d) to %s %s ignored", status,
                 req->method ? req->method : "-", req->path ? req->path : "-");
        return;
    }
    if (!req->request_id[0])
        http_request_id_assign(req);
    if (!http_conn_keep_alive(c))
        c->close_after = 1;
    if (!c->closing) {
        response_build(c, status, ctype, body, len, extra, nextra, trusted);
        http_conn_send(c, c->out.data, c->out.len); /* written or copied: c->out is free */
        if (req->wipe_response)
            buf_destroy_wiped(&c->out);
        else if (c->out.cap > (256u << 10))
            buf_destroy(&c->out);
    }
    access_log(c, status);
    http_conn_response_done(c);
}

void http_response_send(struct http_conn *c, int status, const char *ctype, const char *body,
                        size_t len, const struct http_header *extra, size_t nextra)
{
    response_finish(c, status, ctype, body, len, extra, nextra, 0);
}

static int json_to_buf(const char *p, size_t n, void *data)
{
    buf_append(data, p, n);
    return 0;
}

void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len, const struct http_header *extra, size_t nextra)
{
    http_response_send(req->conn, status, content_type, body, len, extra, nextra);
}

void http_respond_json(struct http_request *req, int status, json_t *body,
                       const struct http_header *extra, size_t nextra)
{
    struct http_conn *c = req->conn;
    struct buf *b = &c->jsonbuf;
    int wipe = req->wipe_response; /* reset once the answer is sent */
    size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    b->len = 0;
    if (body && wipe) /* room first: growing the buffer would leave unwiped copies behind */
        buf_reserve(b, json_dumpb(body, NULL, 0, flags) + 1);
    if (body)
        json_dump_callback(body, json_to_buf, b, flags);
    json_decref(body);
    /* The answer to a client that has gone drops the connection's last reference: hold one
     * until the buffer is wiped or trimmed. */
    http_conn_ref(c);
    http_response_send(c, status, "application/json", b->data ? b->data : "", b->len, extra,
                       nextra);
    if (wipe)
        buf_destroy_wiped(b);
    else if (b->cap > (256u << 10))
        buf_destroy(b);
    http_conn_unref(c);
}

void http_respond_error(struct http_request *req, int status, const char *code, const char *message,
                        json_t *details, const struct http_header *extra, size_t nextra)
{
    json_t *e = json_object();
    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_string(message));
    json_object_set_new(e, "details", details ? details : json_object());
    json_t *env = json_object();
    json_object_set_new(env, "error", e);
    http_respond_json(req, status, env, extra, nextra);
}

void http_response_error(struct http_conn *c, int status, const char *code, const char *message,
                         json_t *details, const struct http_header *extra, size_t nextra)
{
    http_respond_error(&c->req, status, code, message, details, extra, nextra);
}

/* ---------- CORS preflight (answers as Starlette's preflight_response does) ---------- */

static int requested_headers_ok(const char *v, size_t n)
{
    static const char *const allowed[] = {"accept",           "accept-language", "authorization",
                                          "content-language", "content-type",    "x-request-id"};
    struct http_list l = {v, v + n, 0};
    const char *a, *z;
    while (http_list_next(&l, &a, &z)) {
        int ok = 0;
        for (size_t i = 0; i < sizeof allowed / sizeof allowed[0] && !ok; i++)
            ok = strlen(allowed[i]) == (size_t)(z - a) &&
                 ascii_casecmp_n(a, allowed[i], (size_t)(z - a)) == 0;
        if (!ok)
            return 0;
    }
    return 1;
}

static int requested_method_ok(const char *v, size_t n)
{
    static const char *const m[] = {"GET", "POST", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < 5; i++)
        if (strlen(m[i]) == n && memcmp(v, m[i], n) == 0)
            return 1;
    return 0;
}

void http_response_preflight(struct http_conn *c)
{
    struct http_server *s = c->srv;
    struct http_request *req = &c->req;
    size_t on = 0, mn = 0, hn = 0;
    const char *origin = http_header_get(req, "origin", &on);
    const char *method = http_header_get(req, "access-control-request-method", &mn);
    const char *hdrs = http_header_get(req, "access-control-request-headers", &hn);
    struct http_header h[6];
    size_t nh = 0;
    char failures[64] = "";
    if (s->cors_allow_all) {
        h[nh++] = (struct http_header){"Access-Control-Allow-Origin", 27, "*", 1, 0};
    } else {
        h[nh++] = (struct http_header){"Vary", 4, "Origin", 6, 0};
        if (origin_allowed(s, origin, on))
            h[nh++] = (struct http_header){"Access-Control-Allow-Origin", 27, origin, on, 0};
        else
            strcat(failures, "origin");
    }
    if (!requested_method_ok(method, mn))
        strcat(failures, *failures ? ", method" : "method");
    if (hdrs && !requested_headers_ok(hdrs, hn))
        strcat(failures, *failures ? ", headers" : "headers");
    h[nh++] = (struct http_header){"Access-Control-Allow-Methods", 28, CORS_METHODS,
                                   sizeof CORS_METHODS - 1, 0};
    h[nh++] = (struct http_header){"Access-Control-Max-Age", 22, "600", 3, 0};
    h[nh++] = (struct http_header){"Access-Control-Allow-Headers", 28, CORS_HEADERS,
                                   sizeof CORS_HEADERS - 1, 0};
    if (!s->cors_allow_all)
        h[nh++] = (struct http_header){"Access-Control-Allow-Credentials", 32, "true", 4, 0};
    char body[96];
    int status = *failures ? 400 : 200;
    if (*failures)
        snprintf(body, sizeof body, "Disallowed CORS %s", failures);
    else
        snprintf(body, sizeof body, "OK");
    response_finish(c, status, "text/plain; charset=utf-8", body, strlen(body), h, nh, 1);
}

/* ---------- streamed answers (server-sent events) ---------- */

int http_stream_begin(struct http_request *req, int status, const char *content_type,
                      const struct http_header *extra, size_t nextra)
{
    struct http_conn *c = req->conn;
    if (!c->req_active || c->streaming) {
        msg_warn("http: stream on an answered request ignored");
        return -1;
    }
    if (!req->request_id[0])
        http_request_id_assign(req);
    c->streaming = 1;
    c->stream_status = status;
    c->stream_chunked = req->http_minor >= 1;
    if (!c->stream_chunked)
        c->close_after = 1; /* HTTP/1.0: the end of the body is the end of the connection */
    if (c->closing)
        return -1;
    response_head(c, status, content_type, 0, extra, nextra, 0, 1);
    http_conn_send(c, c->out.data, c->out.len);
    return c->closing ? -1 : 0;
}

int http_stream_write(struct http_request *req, const char *data, size_t len)
{
    struct http_conn *c = req->conn;
    if (!c->streaming || c->closing)
        return -1;
    if (len == 0)
        return 0;
    if (c->stream_chunked) {
        struct buf *o = &c->out;
        o->len = 0;
        buf_printf(o, "%zx\r\n", len);
        buf_append(o, data, len);
        buf_append(o, "\r\n", 2);
        http_conn_send(c, o->data, o->len);
        if (o->cap > (256u << 10))
            buf_destroy(o);
    } else {
        http_conn_send(c, data, len);
    }
    return c->closing ? -1 : 0;
}

size_t http_stream_queued(const struct http_request *req)
{
    return req->conn->write_queued;
}

void http_stream_end(struct http_request *req)
{
    struct http_conn *c = req->conn;
    if (!c->streaming)
        return;
    if (c->stream_chunked && !c->closing)
        http_conn_send(c, "0\r\n\r\n", 5);
    c->streaming = 0;
    if (!http_conn_keep_alive(c))
        c->close_after = 1;
    access_log(c, c->stream_status);
    http_conn_response_done(c);
}
