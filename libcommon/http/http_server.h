/*
 * http_server.h - the HTTP/1.1 server core every REST route goes through (libuv + llhttp,
 * optional native TLS through OpenSSL memory BIOs).
 *
 * What it offers:
 *   - a listener shared by several processes (SO_REUSEPORT), plain or TLS (1.2+);
 *   - keep-alive, pipelining (answered in order: one handler at a time per connection),
 *     chunked request bodies, Expect: 100-continue, Connection: close, HTTP/1.0;
 *   - a router with path parameters ("/v1/alerts/{uuid}") and per-route method lists:
 *     unknown path → 404 NOT_FOUND, known path with another method → 405 with Allow;
 *   - limits, each answered with the original error envelope
 *     {"error":{"code":…,"message":…,"details":{}}}: header section → 431, body → 413 before
 *     any handler runs (Content-Length before a byte of the body is read, counting for chunked
 *     bodies), slow headers/body (minimum rate per window) → 408 then close, too many
 *     connections → the oldest idle one closed, else 503 then close, per-address caps on
 *     connections and unread bodies, malformed HTTP → 400 then close, transfer codings other
 *     than chunked → 501;
 *   - an optional admission gate (authentication) between the header section and the body;
 *   - on every response (errors included): the security headers (CSP by path),
 *     HSTS when https_enabled && hsts_enabled, X-Request-ID (the client's if sane: 1..64 chars
 *     of [A-Za-z0-9._-], else a new uuid4), Date, Content-Length, Connection;
 *   - CORS as the original (off unless cors_allow_all or cors_allowed_origins): preflights are
 *     answered by the server itself, simple responses get the allow-origin headers;
 *   - one access-log event "request" per response (method, path, status_code, duration_ms,
 *     request_id, client_ip, plus the handler's req->log_fields);
 *   - drain for SIGTERM: stop accepting, close idle connections, finish in-flight requests.
 *
 * Handlers run on the loop and must not block it. A handler gets a request and must answer it
 * exactly once with one of the http_respond*() functions, either before returning or later from
 * another loop callback (asynchronous handler). The request (and everything it points to) stays
 * valid until that answer, even when the client disconnects meanwhile (http_request_aborted()
 * then says so and the answer is dropped). Everything here is single-threaded: one server per
 * loop, called from that loop's thread only.
 */
#ifndef CALSETA_HTTP_SERVER_H
#define CALSETA_HTTP_SERVER_H

#include "util.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_MAX_PARAMS 8

struct http_server_config {
    const char *host; /* numeric address or name to bind ("0.0.0.0", "::", "127.0.0.1") */
    int port;         /* 0 = any free port; see http_server_port() */
    int reuseport;    /* SO_REUSEPORT: several processes share the port */
    const char *tls_cert_file, *tls_key_file; /* both set and non-empty = TLS; NULL/"" = plain */
    int https_enabled, hsts_enabled;          /* HSTS header only when both are set */
    long long max_body_bytes;                 /* MAX_REQUEST_BODY_SIZE_MB in bytes */
    long long max_ingest_body_bytes;          /* /v1/ingest/... and exactly /v1/alerts */
    int max_body_mb, max_ingest_body_mb;      /* for the 413 messages; 0 = bytes / 1 MiB */
    int max_header_bytes;                     /* request line + header section → 431 */
    int header_timeout_ms; /* whole header section (and TLS handshake), from its first byte */
    int body_timeout_ms;   /* body rate window: each window must bring body_min_rate bytes/s */
    int body_min_rate;     /* bytes per second, averaged over each body window (0 = 1 byte) */
    int idle_timeout_ms;   /* keep-alive connection with no request */
    int max_connections;   /* beyond: the oldest idle connection is closed to make room; with
                              none idle, accepted, answered 503 + Connection: close, closed */
    int max_connections_per_ip; /* per socket peer address; beyond: closed unanswered (0 = no cap) */
    int max_bodies_per_ip; /* requests of one peer with a body not yet fully read (0 = no cap) */
    const char *cors_allowed_origins; /* comma list of exact origins; NULL/"" = none */
    int cors_allow_all;               /* "*" without credentials; wins over the list */
};

/* A request header (names lowercased, values with surrounding blanks removed), or a header a
 * handler adds to its answer. vetted (answers only): the handler wrote name and value itself
 * from constants and digits, so the answer does not check them again for reserved names,
 * CR, LF, NUL or ':' (never set for anything a client sent). */
struct http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    int vetted;
};

struct http_conn;
struct http_route;
struct http_server;
struct http_router;

struct http_request {
    const char *method; /* "GET", "POST", … (static string) */
    char *path;         /* percent-decoded, without the query string */
    char *query;        /* raw text after '?', or NULL */
    struct http_header *headers;
    size_t nheaders;
    struct buf body;     /* complete body (len 0 when none); data is NUL-terminated */
    char request_id[65]; /* what X-Request-ID of the response will say */
    char peer_ip[INET6_ADDRSTRLEN];
    int peer_port;
    int tls;                             /* arrived over TLS */
    int http_minor;                      /* HTTP/1.<minor> */
    const char *params[HTTP_MAX_PARAMS]; /* path parameters, pointers into path (not NUL-ended) */
    size_t param_lens[HTTP_MAX_PARAMS];
    size_t nparams;
    const struct http_route *route; /* matched route */
    const char *route_pattern;      /* its pattern, e.g. "/v1/alerts/{uuid}" */
    void *route_data;               /* as given to http_router_add() */
    void *user;                     /* free for the handler */
    json_t *log_fields; /* optional object merged into the access-log line (freed by the server) */
    uint64_t start_ms;  /* monotonic ms when the request's first byte was parsed */
    int wipe_response;  /* set by a handler whose answer may carry secrets: the server's own
                           copies of it are zeroed as soon as it is handed to the socket */
    struct http_conn *conn; /* internal */
};

/* ctx is the one given to http_server_new(). */
typedef void (*http_handler)(struct http_request *req, void *ctx);

/*
 * Admission (optional, see http_server_set_gate): gate runs for every routed request once its
 * header section is complete and before a byte of its body is read. It must either answer the
 * request with http_respond*() (the body is then never read and, if one was announced, the
 * connection closes after the answer) or call http_request_admit(), now or later from another
 * loop callback: then the body is read and the route's handler runs. An admitted request that
 * never reaches its handler (body too slow or too large, client gone) is handed to dropped, so
 * whatever the gate attached to req->user can be released.
 */
typedef void (*http_gate)(struct http_request *req, void *ctx);

/* --- router (build it before the server starts; read-only afterwards) --- */
struct http_router *http_router_new(void);
void http_router_free(struct http_router *r);
/*
 * Adds method (one name, "GET") on pattern. Pattern segments are literal or "{name}" (matches one
 * non-empty segment). Routes match in the order added; the same pattern added again with
 * another method extends that route's method list. GET routes also answer HEAD (without body).
 * Aborts (msg_fatal) on a malformed pattern or more than HTTP_MAX_PARAMS parameters.
 */
void http_router_add(struct http_router *r, const char *method, const char *pattern,
                     http_handler fn, void *route_data);

/* --- server --- */
/* Binds and listens; NULL with err filled on failure (bad address, bind error, TLS files). */
struct http_server *http_server_new(uv_loop_t *loop, const struct http_server_config *cfg,
                                    struct http_router *router, void *ctx, char *err,
                                    size_t errlen);
/* Sets the admission gate and its dropped callback (both on the server's ctx). */
void http_server_set_gate(struct http_server *s, http_gate gate, http_handler dropped);
/* From the gate: read the body, at most max_body bytes (0 = the server's limit for the path;
 * a larger value does not raise it), then run the route's handler. The request belongs to the
 * server again until then: do not touch it after this call. */
void http_request_admit(struct http_request *req, long long max_body);
/* The bound port (useful after port 0). */
int http_server_port(const struct http_server *s);
/* Open connections (accepted and not yet closed). */
int http_server_connections(const struct http_server *s);
/*
 * Drain: stop accepting, close idle keep-alive connections, let in-flight requests finish
 * (their responses say Connection: close, then the connection closes); done(arg) runs once no
 * connection is left and every request has been answered. Call once.
 */
void http_server_drain(struct http_server *s, void (*done)(void *), void *arg);
/* After a drain deadline: closes every connection now (in-flight answers are dropped). */
void http_server_close_all(struct http_server *s);
/*
 * Frees the server. Anything still open is closed first; in that case run the loop once more
 * (uv_run(loop, UV_RUN_NOWAIT)) so libuv can release the handles. Requests not yet answered keep
 * their connection alive until answered.
 */
void http_server_free(struct http_server *s);

/* --- requests --- */
/* First header with this (lowercase) name, or NULL; *len_out gets the value length. */
const char *http_header_get(const struct http_request *req, const char *lowercase_name,
                            size_t *len_out);
/* Path parameter by its name in the pattern ("uuid"), or NULL. */
const char *http_request_param(const struct http_request *req, const char *name, size_t *len_out);
/* 1 if the client went away (connection closed, or it sent EOF): the answer will be dropped
 * or unread (but must still be given). */
int http_request_aborted(const struct http_request *req);

/*
 * Answers the request (exactly once). body may be NULL when len is 0; content_type NULL = no
 * Content-Type. extra headers are added after the server's own; extra headers that would
 * replace a server header (security headers, X-Request-ID, Content-Length, Connection, Date,
 * Transfer-Encoding, CORS) or contain CR/LF are ignored.
 */
void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len, const struct http_header *extra, size_t nextra);
/* application/json, compact; body is stolen (json_decref'ed). */
void http_respond_json(struct http_request *req, int status, json_t *body,
                       const struct http_header *extra, size_t nextra);
/* The original error envelope; details stolen, NULL = {}. */
void http_respond_error(struct http_request *req, int status, const char *code, const char *message,
                        json_t *details, const struct http_header *extra, size_t nextra);

/*
 * Streamed answers (server-sent events): http_stream_begin() sends the status line and headers
 * (no Content-Length; chunked on HTTP/1.1, close-delimited on HTTP/1.0) and the request stays
 * open; http_stream_write() sends one piece of body, queued without blocking when the peer is
 * slow (http_stream_queued() says how many bytes wait, so the caller can bound it);
 * http_stream_end() ends the body and answers the request (exactly once, like http_respond).
 * The caller learns of a peer that went away through http_request_aborted() or a -1 return.
 */
int http_stream_begin(struct http_request *req, int status, const char *content_type,
                      const struct http_header *extra, size_t nextra);
int http_stream_write(struct http_request *req, const char *data, size_t len);
size_t http_stream_queued(const struct http_request *req);
void http_stream_end(struct http_request *req);

#endif
