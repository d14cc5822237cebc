/*
 * http_internal.h - what the pieces of the HTTP server share (not for users of the server).
 *
 *   http_server.c    listener, accept, connection accounting, drain, free
 *   http_conn.c      one connection: reads, llhttp callbacks, limits, timers, writes, close
 *   http_response.c  response formatting: security headers, CORS, request id, access log
 *   http_router.c    method + path pattern matching
 *   http_tls.c       OpenSSL context and per-connection memory-BIO plumbing
 *
 * Also the fuzzing entry point http_conn_fuzz_feed(), which runs the connection code (parser,
 * limits, routing, responses) on a connection without socket or loop.
 */
#ifndef CALSETA_HTTP_INTERNAL_H
#define CALSETA_HTTP_INTERNAL_H

#include "http_server.h"
#include "llhttp.h"

#include <openssl/ssl.h>
#include <string.h>
#include <time.h>

enum csp_kind { CSP_API = 0, CSP_UI = 1, CSP_DOCS = 2 };

enum conn_state {
    CS_HANDSHAKE, /* TLS handshake in progress */
    CS_IDLE,      /* waiting for the first byte of a request */
    CS_HEADERS,   /* inside the request line / header section */
    CS_BODY,      /* reading a body */
    CS_HANDLER,   /* a request is with its handler (or being answered by the server) */
    CS_LINGER,    /* answered with close: write side shut, discarding input until EOF */
};

/* What to do once llhttp returns control (never done from inside a parser callback). */
enum conn_action { ACT_NONE, ACT_DISPATCH, ACT_ERROR, ACT_PREFLIGHT, ACT_GATE };

struct hdr_span {
    uint32_t name_off, name_len, value_off, value_len;
};

struct http_tls;

/* Connections and unread bodies of one peer address (per-address caps). */
struct ip_slot {
    struct ip_slot *next;
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    int nopen, nbody;
};

struct http_conn {
    struct http_server *srv;
    struct http_conn *prev, *next; /* server's list of open connections */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    int fd; /* the socket of tcp, for send() (-1: fuzzing) */
    llhttp_t parser;
    struct http_tls *tls;
    int refs;
    enum conn_state state;
    enum conn_action action;
    unsigned fake : 1;        /* no socket: fuzzing */
    unsigned closing : 1;     /* socket closed or closing */
    unsigned close_after : 1; /* close once the current response is written */
    unsigned over_limit : 1;  /* accepted beyond max_connections */
    unsigned processing : 1;  /* inside conn_process() */
    unsigned read_stopped : 1;
    unsigned read_filled : 1;  /* the last read filled the room offered: offer more */
    unsigned peer_eof : 1;
    unsigned req_active : 1;   /* a request is waiting for its answer */
    unsigned body_unread : 1;  /* answered before the body was read */
    unsigned in_value : 1;     /* last header callback was a value */
    unsigned headers_done : 1; /* header section parsed (later fields are trailers) */
    unsigned shutdown_started : 1;
    unsigned listed : 1;
    unsigned act_ready : 1; /* c->action is to be carried out now */
    unsigned gating : 1;      /* the request is with the admission gate */
    unsigned admitted : 1;    /* the gate admitted it; its handler has not run yet */
    unsigned msg_done : 1;    /* the whole request (body included) has been parsed */
    unsigned body_counted : 1; /* counted in ip->nbody */
    unsigned idle_listed : 1;  /* on the server's idle list */
    struct ip_slot *ip;        /* peer address accounting (NULL: fuzzing) */
    struct http_conn *idle_prev, *idle_next;
    uint64_t win_bytes;        /* bytes received in the current body-rate window */
    uint64_t deadline;         /* loop time (ms) the state's timeout falls due, 0: none */
    uint64_t timer_due;        /* loop time (ms) the armed timer fires */
    size_t ext_bytes;          /* chunk-extension bytes of the current request */
    unsigned streaming : 1;     /* the answer is a stream (http_stream_begin) not yet ended */
    unsigned stream_chunked : 1; /* its body goes out in chunked encoding (HTTP/1.1) */
    int stream_status;
    int writes_pending;
    size_t write_queued;  /* bytes handed to uv_write() and not yet written */
    http_handler handler; /* for ACT_DISPATCH */
    /* input not yet parsed (plaintext) */
    struct buf in;
    size_t in_off;
    /* the request being parsed / handled; buffers are reused across requests */
    struct http_request req;
    struct buf url;     /* raw request target */
    struct buf pathbuf; /* decoded path */
    struct buf hdrs;    /* "name\0value\0" for each header */
    struct hdr_span *spans;
    size_t nspans, spans_cap;
    struct http_header *harr;
    size_t harr_cap;
    size_t header_bytes;
    long long body_limit;
    int body_limit_ingest;
    /* a server-made answer: status, code, message */
    int err_status;
    const char *err_code;
    char err_msg[128];
    char allow[320];    /* for 405 */
    struct buf out;     /* response scratch */
    struct buf tlsout;  /* ciphertext scratch */
    struct buf jsonbuf; /* serialised JSON body scratch */
};

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    int port;
    struct http_router *router;
    void *ctx;
    /* configuration (strings owned) */
    long long max_body, max_ingest_body;
    int max_body_mb, max_ingest_body_mb;
    int max_header_bytes;
    int header_timeout_ms, body_timeout_ms, idle_timeout_ms;
    int body_min_rate;
    int max_connections, max_connections_per_ip, max_bodies_per_ip;
    http_gate gate;
    http_handler dropped;
    /* per-address accounting: hash table of slots */
    struct ip_slot **ip_buckets;
    size_t ip_nbuckets;
    /* idle connections, oldest first: the first to go when max_connections is reached */
    struct http_conn *idle_head, *idle_tail;
    uint64_t evicted;        /* idle connections closed to make room */
    uint64_t refused_per_ip; /* connections closed over their address's cap */
    int hsts;
    SSL_CTX *ssl_ctx;
    int cors_enabled, cors_allow_all;
    char **cors_origins;
    size_t ncors;
    /* preformatted security header blocks by CSP kind */
    char *sec_headers[3];
    size_t sec_len[3];
    /* Date header cache */
    time_t date_sec;
    char date[40];
    /* connections */
    struct http_conn *conns;
    int nopen;  /* open, counted against max_connections */
    int nover;  /* open, over the limit (being answered 503) */
    int nalive; /* not yet freed */
    int refs;   /* listener handle + alive connections + 1 until free */
    int draining;
    int free_requested;
    void (*drain_done)(void *);
    void *drain_arg;
    /* read buffer shared by all connections (reads are handled one at a time) */
    char *rbuf;
    size_t rbuf_len;
    /* fuzzing: responses land here instead of a socket */
    int fake;
    struct buf fake_out;
};

/* http_server.c */
void http_server_conn_closed(struct http_server *s, struct http_conn *c);
void http_server_conn_freed(struct http_server *s);
struct http_server *http_server_new_fake(const struct http_server_config *cfg,
                                         struct http_router *router, void *ctx);
int http_server_config_apply(struct http_server *s, const struct http_server_config *cfg, char *err,
                             size_t errlen);
void http_server_release(struct http_server *s);

/* Per-address accounting: the slot of addr (created), and its release when unused. */
struct ip_slot *http_server_ip_slot(struct http_server *s, const uint8_t addr[16]);
void http_server_ip_release(struct http_server *s, struct ip_slot *slot);
/* Idle list: a connection waiting for a request (none buffered, none in progress). */
void http_server_idle_enter(struct http_server *s, struct http_conn *c);
void http_server_idle_leave(struct http_server *s, struct http_conn *c);

/* http_conn.c */
struct http_conn *http_conn_new(struct http_server *s, int fake);
/* Fills c->req.peer_ip/peer_port and addr (16 bytes, IPv4 mapped) from the socket. */
void http_conn_peer(struct http_conn *c, uint8_t addr[16]);
int http_conn_start(struct http_conn *c); /* after accept into c->tcp */
void http_conn_close(struct http_conn *c);
void http_conn_feed(struct http_conn *c, const char *data, size_t len); /* plaintext */
void http_conn_over_limit(struct http_conn *c);
void http_conn_drain(struct http_conn *c);
/* Sends raw plaintext bytes (TLS-encrypted if needed). */
void http_conn_send(struct http_conn *c, const char *data, size_t len);
/* The answer to the current request was sent: continue or close. */
void http_conn_response_done(struct http_conn *c);
/* Whether the answer being built may keep the connection open. */
int http_conn_keep_alive(const struct http_conn *c);
void http_conn_ref(struct http_conn *c);
void http_conn_unref(struct http_conn *c);

/* http_response.c */
/* Builds and sends a full response for c->req; drops it when the connection is gone. */
void http_response_send(struct http_conn *c, int status, const char *content_type, const char *body,
                        size_t len, const struct http_header *extra, size_t nextra);
void http_response_error(struct http_conn *c, int status, const char *code, const char *message,
                         json_t *details, const struct http_header *extra, size_t nextra);
/* The CORS preflight answer for c->req. */
void http_response_preflight(struct http_conn *c);
/* Fills req->request_id from X-Request-ID or a new uuid. */
void http_request_id_assign(struct http_request *req);
int http_cors_is_preflight(const struct http_server *s, const struct http_request *req);
int http_server_build_security(struct http_server *s);
enum csp_kind http_csp_for_path(const char *path);

/* http_router.c */
enum route_result { ROUTE_FOUND, ROUTE_BAD_METHOD, ROUTE_NONE };
/* On ROUTE_FOUND fills req->route/route_pattern/route_data/params and *fn; on ROUTE_BAD_METHOD
 * writes the Allow header value into allow. */
enum route_result http_router_match(const struct http_router *r, struct http_request *req,
                                    http_handler *fn, char *allow, size_t allowcap);

/* http_tls.c */
SSL_CTX *http_tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
struct http_tls *http_tls_new(SSL_CTX *ctx);
void http_tls_free(struct http_tls *t);
/* Feeds received ciphertext; appends plaintext to *plain and bytes to send to *send.
 * Returns 0, 1 when the peer closed the TLS session, -1 on a fatal TLS error. */
int http_tls_feed(struct http_tls *t, const char *data, size_t len, struct buf *plain,
                  struct buf *send);
int http_tls_handshake_done(const struct http_tls *t);
/* Encrypts plaintext; appends ciphertext to *send. -1 on error. */
int http_tls_encrypt(struct http_tls *t, const char *data, size_t len, struct buf *send);
/* Appends a close_notify alert to *send. */
void http_tls_close_notify(struct http_tls *t, struct buf *send);

/* Walks a comma-separated header or setting value element by element, as Python's
 * str.split(","): every element, empty ones included, with the spaces and tabs around it
 * dropped. Start with {p, end, 0}; each call sets [*a, *z) and returns 1, then 0 when none is
 * left. */
struct http_list {
    const char *p, *end;
    int done;
};

static inline int http_list_next(struct http_list *l, const char **a, const char **z)
{
    if (l->done)
        return 0;
    const char *comma = l->p < l->end ? memchr(l->p, ',', (size_t)(l->end - l->p)) : NULL;
    const char *x = l->p, *y = comma ? comma : l->end;
    while (x < y && (*x == ' ' || *x == '\t'))
        x++;
    while (y > x && (y[-1] == ' ' || y[-1] == '\t'))
        y--;
    *a = x;
    *z = y;
    if (comma)
        l->p = comma + 1;
    else
        l->done = 1;
    return 1;
}

/* Fuzzing: runs the bytes through a socket-less connection of a built-in test server. The test
 * servers are built once, by http_conn_fuzz_init() (else by the first feed) and kept. */
void http_conn_fuzz_init(void);
void http_conn_fuzz_feed(const uint8_t *data, size_t len);

#endif
