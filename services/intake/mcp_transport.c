/*
 * mcp_transport.c - how MCP messages reach the intake.
 *
 * Streamable HTTP (revisions 2025-03-26, 2025-06-18, 2025-11-25) at /mcp:
 *   POST   one JSON-RPC message per request, answered with application/json (a notification
 *          or response: 202 without body). initialize opens a session (Mcp-Session-Id header);
 *          every later message must carry it and, when present, a supported
 *          MCP-Protocol-Version. No server-initiated stream: GET /mcp answers 405.
 *   DELETE ends the session.
 * Legacy HTTP+SSE (the original's transport) at GET /sse: the first event `endpoint` names
 *   /messages/?session_id=<32 hex>; each POST there is answered 202 "Accepted" and its reply
 *   travels over the stream as a `message` event.
 *
 * Every request: Host and Origin are checked first (DNS rebinding), then the bearer key goes
 * through the REST authentication (same cache, scopes, expiry, revocation, audit - event
 * mcp_auth_failure - and a per-key MCP rate class). A session belongs to the key that opened
 * it: another key gets "session not found". Sessions are rows in mcp_sessions, so any intake
 * process serves any session; an SSE stream lives in one process, and replies made by another
 * reach it through mcp_outbox and NOTIFY. A stream whose unsent bytes pass
 * MCP_SSE_MAX_BUFFER_BYTES is closed (a slow reader never holds memory or the loop), and the
 * open streams' keys are re-checked every 15 s so a revoked key loses its stream too.
 */
#include "mcp.h"
#include "crypto.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 1000
#define SSE_PING_TICKS 15
#define SWEEP_TICKS 60

struct sse_sess {
    struct sse_sess *next;
    char id[33];
    int64_t key_id;
    int in_check;      /* part of the key re-check in flight */
    struct reqctx *rc; /* the GET /sse request, answered when the stream ends */
};

struct mcp {
    struct intake *in;
    char owner[64];
    struct sse_sess *sse;
    uv_timer_t tick;
    unsigned ticks;
    int checking; /* a stream re-check is in flight */
    int recheck;  /* keys changed while it was: check again */
    int stopped;
    char **hosts, **origins;
    size_t nhosts, norigins;
};

static void check_streams(struct mcp *m);

static const struct route_def MCP_AUTH_ROUTE = {.method = "POST", .pattern = "/mcp", .scope = "*", .rate = RATE_MCP};

/* ---- settings ------------------------------------------------------------------------------ */

static char **split_list(const char *s, size_t *n)
{
    char **v = NULL;
    *n = 0;
    char *copy = xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t l = strlen(t);
        while (l && t[l - 1] == ' ')
            t[--l] = 0;
        if (!l)
            continue;
        v = xrealloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = xstrdup(t);
    }
    free(copy);
    return v;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- Host / Origin ------------------------------------------------------------------------- */

static int host_chars_ok(const char *h, size_t n)
{
    if (n == 0 || n > 255)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == ':' || ch == '[' || ch == ']'))
            return 0;
    }
    return 1;
}

/* The host name of a Host value, without the port. */
static size_t host_name_len(const char *h, size_t n)
{
    if (n && h[0] == '[') {
        const char *e = memchr(h, ']', n);
        return e ? (size_t)(e - h) + 1 : n;
    }
    const char *c = memchr(h, ':', n);
    return c ? (size_t)(c - h) : n;
}

static int is_loopback_name(const char *h, size_t n)
{
    return (n == 9 && !ascii_casecmp_n(h, "localhost", 9)) || (n == 9 && !memcmp(h, "127.0.0.1", 9)) ||
           (n == 5 && !memcmp(h, "[::1]", 5));
}

static int listener_is_loopback(const struct config *c)
{
    const char *h = c->http_host;
    return !strcmp(h, "127.0.0.1") || !strcmp(h, "localhost") || !strcmp(h, "::1");
}

static int in_list(char **v, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i]) == len && !ascii_casecmp_n(v[i], s, len))
            return 1;
    return 0;
}

/* NULL when the request's Host and Origin are acceptable, else why not. */
static const char *origin_problem(struct mcp *m, struct reqctx *rc)
{
    size_t hl = 0, ol = 0;
    const char *host = http_header_get(rc->req, "host", &hl);
    const char *origin = http_header_get(rc->req, "origin", &ol);
    if (!host || !host_chars_ok(host, hl))
        return "Forbidden: invalid Host header";
    size_t nl = host_name_len(host, hl);
    if (m->nhosts) {
        if (!in_list(m->hosts, m->nhosts, host, hl) && !in_list(m->hosts, m->nhosts, host, nl))
            return "Forbidden: Host not allowed";
    } else if (listener_is_loopback(&m->in->cfg) && !is_loopback_name(host, nl)) {
        return "Forbidden: Host not allowed";
    }
    if (!origin)
        return NULL; /* not a browser */
    if (m->norigins)
        return in_list(m->origins, m->norigins, origin, ol) ? NULL
                                                            : "Forbidden: Origin not allowed";
    /* Same origin only: scheme://<Host>. */
    const char *p = memchr(origin, ':', ol);
    if (p && (size_t)(origin + ol - p) > 3 && !memcmp(p, "://", 3)) {
        const char *oh = p + 3;
        size_t ohl = (size_t)(origin + ol - oh);
        if (ohl == hl && !ascii_casecmp_n(oh, host, hl))
            return NULL;
    }
    return "Forbidden: Origin not allowed";
}

/* The public base URL: MCP_PUBLIC_BASE_URL, else the request's scheme and Host. */
static char *base_url(struct reqctx *rc)
{
    const struct config *c = &rc->in->cfg;
    if (*c->mcp_public_base_url) {
        char *b = xstrdup(c->mcp_public_base_url);
        size_t l = strlen(b);
        while (l && b[l - 1] == '/')
            b[--l] = 0;
        return b;
    }
    size_t hl = 0;
    const char *host = http_header_get(rc->req, "host", &hl);
    if (!host || !host_chars_ok(host, hl))
        return xasprintf("http://localhost:%d", c->http_port);
    const char *scheme = rc->req->tls || c->https_enabled ? "https" : "http";
    return xasprintf("%s://%.*s", scheme, (int)hl, host);
}

static void reply_rpc_error(struct reqctx *rc, int status, int code, const char *msg)
{
    reply_json(rc, status, mcp_jsonrpc_error(NULL, code, msg));
}

/* Host/Origin first; then the request is authenticated as an MCP request. -1 after a reply. */
static int guard(struct reqctx *rc)
{
    struct mcp *m = rc->in->mcp;
    const char *why = origin_problem(m, rc);
    if (why) {
        msg_warn("mcp: %s (client %s)", why, rc->client_ip);
        reply_rpc_error(rc, 403, -32000, why);
        return -1;
    }
    char *b = base_url(rc);
    rc->www_authenticate = xasprintf(
        "Bearer error=\"invalid_token\", error_description=\"Authentication required\", "
        "resource_metadata=\"%s/.well-known/oauth-protected-resource/mcp\"",
        b);
    free(b);
    rc->audit_event = "mcp_auth_failure";
    rc->route = &MCP_AUTH_ROUTE;
    return 0;
}

void route_mcp_resource_metadata(struct reqctx *rc)
{
    char *b = base_url(rc);
    char *res = xasprintf("%s/mcp", b);
    json_t *doc = json_pack("{s:s,s:[s],s:[s,s,s,s,s,s],s:s}", "resource", res,
                            "bearer_methods_supported", "header", "scopes_supported",
                            "alerts:read", "alerts:write", "enrichments:read", "workflows:read",
                            "workflows:execute", "admin", "resource_name", "Calseta MCP server");
    free(res);
    free(b);
    struct http_header h[1] = {{"Cache-Control", 13, "public, max-age=3600", 20, 0}};
    reply_json_headers(rc, 200, doc, h, 1);
}

/* ---- request checks -------------------------------------------------------------------------- */

static int header_has(struct reqctx *rc, const char *name, const char *needle)
{
    size_t l = 0;
    const char *v = http_header_get(rc->req, name, &l);
    if (!v)
        return 0;
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= l; i++)
        if (!ascii_casecmp_n(v + i, needle, nl))
            return 1;
    return 0;
}

static int content_type_json(struct reqctx *rc)
{
    size_t l = 0;
    const char *v = http_header_get(rc->req, "content-type", &l);
    return v && l >= 16 && !ascii_casecmp_n(v, "application/json", 16) &&
           (l == 16 || v[16] == ';' || v[16] == ' ');
}

static int session_id_ok(const char *s, size_t n)
{
    if (n != 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static void new_session_id(char out[33])
{
    uint8_t r[16];
    crypto_random(r, sizeof r);
    crypto_hex_encode(r, sizeof r, out);
    out[32] = 0;
}

/* ---- Streamable HTTP ------------------------------------------------------------------------- */

struct post_op {
    struct reqctx *rc;
    struct mcp_msg msg;
    char session[33];
    char version[16];
};

static void post_op_free(struct post_op *op)
{
    mcp_msg_free(&op->msg);
    free(op);
}

static void streamable_done(struct mcp_call *c, json_t *response)
{
    struct reqctx *rc = c->rc;
    json_decref(c->id);
    free(c);
    if (!response) {
        reply_empty(rc, 202);
        return;
    }
    reply_json(rc, 200, response);
}

static struct mcp_call *call_new(struct reqctx *rc, const struct mcp_msg *m, const char *session,
                                 const char *version)
{
    struct mcp_call *c = xcalloc(1, sizeof *c);
    c->rc = rc;
    c->id = m->kind == MCP_MSG_REQUEST ? json_incref(m->id) : NULL;
    snprintf(c->session_id, sizeof c->session_id, "%s", session ? session : "");
    snprintf(c->protocol_version, sizeof c->protocol_version, "%s", version ? version : "");
    return c;
}

static void on_session_opened(void *arg, PGresult *res, const char *err)
{
    struct post_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err) {
        msg_warn("mcp: session open failed: %s", err ? err : "no database");
        post_op_free(op);
        reply_rpc_error(rc, 503, JSONRPC_INTERNAL_ERROR, "The database is unavailable.");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        post_op_free(op);
        reply_rpc_error(rc, 429, -32000,
                        "Too many open MCP sessions for this API key; close one (DELETE /mcp) "
                        "or wait for idle sessions to expire.");
        return;
    }
    char want[16];
    memcpy(want, op->version, sizeof want);
    json_t *result = mcp_initialize_result(rc->in, want, op->version);
    json_t *resp = mcp_jsonrpc_result(op->msg.id, result);
    char sid[33];
    memcpy(sid, op->session, sizeof sid);
    struct http_header h[1] = {{"Mcp-Session-Id", 14, sid, 32, 0}};
    post_op_free(op);
    reply_json_headers(rc, 200, resp, h, 1);
}

static void open_session(struct reqctx *rc, const char *id, const char *transport,
                         const char *version, const char *owner, pg_result_cb cb, void *arg)
{
    struct intake *in = rc->in;
    char key[24], cap[16], idle[16];
    snprintf(key, sizeof key, "%lld", (long long)rc->auth.key_id);
    snprintf(cap, sizeof cap, "%d", in->cfg.mcp_max_sessions_per_key);
    snprintf(idle, sizeof idle, "%d", in->cfg.mcp_session_idle_seconds);
    const char *p[7] = {id, key, transport, version, owner, cap, idle};
    if (pg_exec(in->pg,
                "SELECT calseta_mcp_session_open($1, $2::bigint, $3, $4, $5, $6::int, $7::int)", 7,
                p, cb, arg) != 0)
        cb(arg, NULL, "database queue full");
}

static void on_session_found(void *arg, PGresult *res, const char *err)
{
    struct post_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err) {
        msg_warn("mcp: session lookup failed: %s", err ? err : "no database");
        post_op_free(op);
        reply_rpc_error(rc, 503, JSONRPC_INTERNAL_ERROR, "The database is unavailable.");
        return;
    }
    if (PQntuples(res) == 0) {
        post_op_free(op);
        reply_rpc_error(rc, 404, -32001, "Session not found");
        return;
    }
    const char *negotiated = PQgetvalue(res, 0, 0);
    size_t vl = 0;
    const char *v = http_header_get(rc->req, "mcp-protocol-version", &vl);
    if (v && (vl != strlen(negotiated) || memcmp(v, negotiated, vl) != 0)) {
        post_op_free(op);
        reply_rpc_error(rc, 400, JSONRPC_INVALID_REQUEST,
                        "Bad Request: MCP-Protocol-Version does not match the negotiated version");
        return;
    }
    struct mcp_call *c = call_new(rc, &op->msg, op->session, negotiated);
    c->done = streamable_done;
    mcp_dispatch(c, &op->msg);
    post_op_free(op);
}

/* Size, Content-Type and framing checks shared by both transports; NULL after a reply. */
static struct post_op *read_message(struct reqctx *rc, int legacy)
{
    struct intake *in = rc->in;
    if (!content_type_json(rc)) {
        if (legacy)
            reply_body(rc, 400, "text/plain; charset=utf-8", "Invalid Content-Type header", 27);
        else
            reply_rpc_error(rc, 415, JSONRPC_INVALID_REQUEST,
                            "Unsupported Media Type: Content-Type must be application/json");
        return NULL;
    }
    if (rc->req->body.len > (size_t)in->cfg.mcp_max_message_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "Request Entity Too Large: a message is limited to %d bytes",
                 in->cfg.mcp_max_message_bytes);
        reply_rpc_error(rc, 413, JSONRPC_INVALID_REQUEST, msg);
        return NULL;
    }
    struct post_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    int code;
    json_t *id = NULL;
    char err[160];
    if (mcp_jsonrpc_parse(rc->req->body.data ? rc->req->body.data : "", rc->req->body.len,
                          &op->msg, &code, &id, err, sizeof err) != 0) {
        free(op);
        if (legacy) {
            json_decref(id);
            reply_body(rc, 400, "text/plain; charset=utf-8", "Could not parse message", 23);
        } else {
            json_t *e = mcp_jsonrpc_error(id, code, err);
            json_decref(id);
            reply_json(rc, 400, e);
        }
        return NULL;
    }
    return op;
}

static void post_authed(struct reqctx *rc)
{
    struct intake *in = rc->in;
    if (!header_has(rc, "accept", "application/json") && !header_has(rc, "accept", "*/*")) {
        reply_rpc_error(rc, 406, JSONRPC_INVALID_REQUEST,
                        "Not Acceptable: Accept must include application/json");
        return;
    }
    struct post_op *op = read_message(rc, 0);
    if (!op)
        return;
    size_t sl = 0;
    const char *sid = http_header_get(rc->req, "mcp-session-id", &sl);
    if (op->msg.kind == MCP_MSG_REQUEST && !strcmp(op->msg.method, "initialize")) {
        json_t *v = json_object_get(op->msg.params, "protocolVersion");
        const char *want = json_string_value(v);
        snprintf(op->version, sizeof op->version, "%s",
                 mcp_version_supported(want) ? want : MCP_VERSIONS[0]);
        new_session_id(op->session);
        open_session(rc, op->session, "streamable", op->version, "", on_session_opened, op);
        return;
    }
    if (!sid) {
        post_op_free(op);
        reply_rpc_error(rc, 400, JSONRPC_INVALID_REQUEST,
                        "Bad Request: Mcp-Session-Id header is required");
        return;
    }
    if (!session_id_ok(sid, sl)) {
        post_op_free(op);
        reply_rpc_error(rc, 404, -32001, "Session not found");
        return;
    }
    size_t vl = 0;
    const char *v = http_header_get(rc->req, "mcp-protocol-version", &vl);
    if (v) {
        char vb[32];
        snprintf(vb, sizeof vb, "%.*s", (int)(vl < 31 ? vl : 31), v);
        if (!mcp_version_supported(vb)) {
            post_op_free(op);
            reply_rpc_error(rc, 400, JSONRPC_INVALID_REQUEST,
                            "Bad Request: Unsupported MCP-Protocol-Version");
            return;
        }
    }
    memcpy(op->session, sid, 32);
    char key[24], idle[16];
    snprintf(key, sizeof key, "%lld", (long long)rc->auth.key_id);
    snprintf(idle, sizeof idle, "%d", in->cfg.mcp_session_idle_seconds);
    const char *p[3] = {op->session, key, idle};
    if (pg_exec(in->pg,
                "UPDATE mcp_sessions SET last_seen_at = now() WHERE id = $1 AND key_id = "
                "$2::bigint AND transport = 'streamable' AND last_seen_at > now() - "
                "make_interval(secs => $3::int) RETURNING coalesce(protocol_version, '2025-03-26')",
                3, p, on_session_found, op) != 0)
        on_session_found(op, NULL, "database queue full");
}

void route_mcp_post(struct reqctx *rc)
{
    if (guard(rc) == 0)
        auth_request(rc, post_authed);
}

static void on_session_deleted(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (!res || err) {
        reply_rpc_error(rc, 503, JSONRPC_INTERNAL_ERROR, "The database is unavailable.");
        return;
    }
    if (PQntuples(res) == 0) {
        reply_rpc_error(rc, 404, -32001, "Session not found");
        return;
    }
    reply_empty(rc, 204);
}

static void delete_authed(struct reqctx *rc)
{
    size_t sl = 0;
    const char *sid = http_header_get(rc->req, "mcp-session-id", &sl);
    if (!sid) {
        reply_rpc_error(rc, 400, JSONRPC_INVALID_REQUEST,
                        "Bad Request: Mcp-Session-Id header is required");
        return;
    }
    if (!session_id_ok(sid, sl)) {
        reply_rpc_error(rc, 404, -32001, "Session not found");
        return;
    }
    char id[33], key[24];
    memcpy(id, sid, 32);
    id[32] = 0;
    snprintf(key, sizeof key, "%lld", (long long)rc->auth.key_id);
    const char *p[2] = {id, key};
    if (pg_exec(rc->in->pg,
                "DELETE FROM mcp_sessions WHERE id = $1 AND key_id = $2::bigint AND transport = "
                "'streamable' RETURNING 1",
                2, p, on_session_deleted, rc) != 0)
        on_session_deleted(rc, NULL, "database queue full");
}

void route_mcp_delete(struct reqctx *rc)
{
    if (guard(rc) == 0)
        auth_request(rc, delete_authed);
}

/* ---- legacy SSE ----------------------------------------------------------------------------- */

static struct sse_sess *sse_find(struct mcp *m, const char *id)
{
    for (struct sse_sess *s = m->sse; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

static void on_row_deleted(void *arg, PGresult *res, const char *err)
{
    (void)arg;
    (void)res;
    if (err)
        msg_warn("mcp: session delete failed: %s", err);
}

/* Ends the stream, forgets the session (here and in the database). */
static void sse_close(struct mcp *m, struct sse_sess *s, const char *why)
{
    for (struct sse_sess **pp = &m->sse; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    msg_info("mcp: SSE session %.8s… closed: %s", s->id, why);
    if (m->in->pg) {
        const char *p[1] = {s->id};
        pg_exec(m->in->pg, "DELETE FROM mcp_sessions WHERE id = $1", 1, p, on_row_deleted, NULL);
    }
    reply_stream_end(s->rc);
    free(s);
}

/* Queues one event; closes the session when its reader is too slow or gone. */
static int sse_event(struct mcp *m, struct sse_sess *s, const char *event, const char *data)
{
    struct http_request *req = s->rc->req;
    size_t dl = strlen(data);
    if (http_request_aborted(req)) {
        sse_close(m, s, "client went away");
        return -1;
    }
    if (http_stream_queued(req) + dl > (size_t)m->in->cfg.mcp_sse_max_buffer_bytes) {
        msg_warn("mcp: SSE session %.8s… reader too slow (%zu bytes unsent): closed", s->id,
                 http_stream_queued(req));
        sse_close(m, s, "reader too slow");
        return -1;
    }
    struct buf b;
    buf_init(&b);
    if (event)
        buf_printf(&b, "event: %s\r\n", event);
    buf_puts(&b, "data: ");
    buf_append(&b, data, dl); /* compact JSON: no line breaks */
    buf_puts(&b, "\r\n\r\n");
    int r = http_stream_write(req, b.data, b.len);
    buf_destroy(&b);
    if (r != 0) {
        sse_close(m, s, "write failed");
        return -1;
    }
    return 0;
}

static void sse_deliver_local(struct mcp *m, struct sse_sess *s, const char *msg)
{
    sse_event(m, s, "message", msg);
}

struct legacy_op {
    struct reqctx *rc;
};

static void on_outbox_written(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (!res || err) {
        msg_warn("mcp: reply to another process's stream failed: %s", err ? err : "no database");
        reply_body(rc, 503, "text/plain; charset=utf-8", "Service Unavailable", 19);
        return;
    }
    reply_body(rc, 202, "text/plain; charset=utf-8", "Accepted", 8);
}

static void legacy_done(struct mcp_call *c, json_t *response)
{
    struct reqctx *rc = c->rc;
    struct mcp *m = rc->in->mcp;
    char owner[64];
    snprintf(owner, sizeof owner, "%s", (const char *)c->transport);
    free(c->transport);
    char sid[33];
    memcpy(sid, c->session_id, sizeof sid);
    json_decref(c->id);
    free(c);
    if (!response) {
        reply_body(rc, 202, "text/plain; charset=utf-8", "Accepted", 8);
        return;
    }
    char *text = json_dumps(response, JSON_COMPACT);
    json_decref(response);
    struct sse_sess *s = sse_find(m, sid);
    if (s || !strcmp(owner, m->owner)) {
        if (s)
            sse_deliver_local(m, s, text);
        free(text);
        reply_body(rc, 202, "text/plain; charset=utf-8", "Accepted", 8);
        return;
    }
    const char *p[3] = {sid, text, owner};
    if (pg_exec(rc->in->pg,
                "WITH m AS (INSERT INTO mcp_outbox (session_id, message) VALUES ($1, $2) "
                "RETURNING id) SELECT pg_notify('calseta_mcp_outbox', $3) FROM m",
                3, p, on_outbox_written, rc) != 0)
        on_outbox_written(rc, NULL, "database queue full");
    free(text);
}

static void on_legacy_session(void *arg, PGresult *res, const char *err)
{
    struct post_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err) {
        post_op_free(op);
        reply_body(rc, 503, "text/plain; charset=utf-8", "Service Unavailable", 19);
        return;
    }
    if (PQntuples(res) == 0) {
        post_op_free(op);
        reply_body(rc, 404, "text/plain; charset=utf-8", "Could not find session", 22);
        return;
    }
    struct mcp_call *c = call_new(rc, &op->msg, op->session, "");
    c->transport = xstrdup(PQgetvalue(res, 0, 0));
    c->legacy = 1;
    c->done = legacy_done;
    mcp_dispatch(c, &op->msg);
    post_op_free(op);
}

static void messages_authed(struct reqctx *rc)
{
    char sid[64];
    if (!query_param(rc, "session_id", sid, sizeof sid)) {
        reply_body(rc, 400, "text/plain; charset=utf-8", "session_id is required", 22);
        return;
    }
    if (!session_id_ok(sid, strlen(sid))) {
        reply_body(rc, 400, "text/plain; charset=utf-8", "Invalid session ID", 18);
        return;
    }
    struct post_op *op = read_message(rc, 1);
    if (!op)
        return;
    memcpy(op->session, sid, 33);
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)rc->auth.key_id);
    const char *p[2] = {op->session, key};
    if (pg_exec(rc->in->pg,
                "UPDATE mcp_sessions SET last_seen_at = now() WHERE id = $1 AND key_id = "
                "$2::bigint AND transport = 'sse' RETURNING owner",
                2, p, on_legacy_session, op) != 0)
        on_legacy_session(op, NULL, "database queue full");
}

void route_mcp_messages(struct reqctx *rc)
{
    if (guard(rc) == 0)
        auth_request(rc, messages_authed);
}

struct sse_open {
    struct reqctx *rc;
    char id[33];
};

static void on_sse_opened(void *arg, PGresult *res, const char *err)
{
    struct sse_open *so = arg;
    struct reqctx *rc = so->rc;
    struct mcp *m = rc->in->mcp;
    if (!res || err) {
        free(so);
        reply_rpc_error(rc, 503, JSONRPC_INTERNAL_ERROR, "The database is unavailable.");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        free(so);
        reply_rpc_error(rc, 429, -32000, "Too many open MCP sessions for this API key.");
        return;
    }
    struct http_header h[2] = {{"Cache-Control", 13, "no-cache", 8, 0},
                               {"X-Accel-Buffering", 17, "no", 2, 0}};
    struct sse_sess *s = xcalloc(1, sizeof *s);
    memcpy(s->id, so->id, sizeof s->id);
    s->key_id = rc->auth.key_id;
    s->rc = rc;
    free(so);
    s->next = m->sse;
    m->sse = s;
    if (http_stream_begin(rc->req, 200, "text/event-stream", h, 2) != 0) {
        sse_close(m, s, "client went away");
        return;
    }
    char ep[64];
    snprintf(ep, sizeof ep, "/messages/?session_id=%s", s->id);
    sse_event(m, s, "endpoint", ep);
}

static void sse_authed(struct reqctx *rc)
{
    struct mcp *m = rc->in->mcp;
    if (m->stopped || rc->in->draining) {
        reply_rpc_error(rc, 503, -32000, "The server is shutting down.");
        return;
    }
    struct sse_open *so = xcalloc(1, sizeof *so);
    so->rc = rc;
    new_session_id(so->id);
    open_session(rc, so->id, "sse", "", m->owner, on_sse_opened, so);
}

void route_mcp_sse(struct reqctx *rc)
{
    if (guard(rc) == 0)
        auth_request(rc, sse_authed);
}

/* ---- replies made by other processes ---------------------------------------------------------- */

static void on_outbox_rows(void *arg, PGresult *res, const char *err)
{
    struct mcp *m = arg;
    if (!res || err) {
        msg_warn("mcp: outbox read failed: %s", err ? err : "no database");
        return;
    }
    int n = PQntuples(res);
    /* DELETE … RETURNING has no order: deliver by id. */
    int *order = xcalloc((size_t)(n ? n : 1), sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && atoll(PQgetvalue(res, order[j], 2)) <
                                     atoll(PQgetvalue(res, order[j - 1], 2));
             j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        struct sse_sess *s = sse_find(m, PQgetvalue(res, order[i], 0));
        if (s)
            sse_deliver_local(m, s, PQgetvalue(res, order[i], 1));
    }
    free(order);
}

static void outbox_drain(struct mcp *m)
{
    if (!m->in->pg || m->stopped)
        return;
    const char *p[1] = {m->owner};
    pg_exec(m->in->pg,
            "DELETE FROM mcp_outbox o USING mcp_sessions s WHERE o.session_id = s.id AND "
            "s.owner = $1 RETURNING o.session_id, o.message, o.id",
            1, p, on_outbox_rows, m);
}

static void on_outbox_notify(void *arg, const char *channel, const char *payload)
{
    struct mcp *m = arg;
    (void)channel;
    if (!payload || !strcmp(payload, m->owner))
        outbox_drain(m);
}

/* ---- the tick: dead streams, pings, key re-checks, expired sessions ---------------------------- */

static void on_streams_checked(void *arg, PGresult *res, const char *err)
{
    struct mcp *m = arg;
    m->checking = 0;
    int again = m->recheck;
    m->recheck = 0;
    if (!res || err || m->stopped) {
        for (struct sse_sess *s = m->sse; s; s = s->next)
            s->in_check = 0;
        return;
    }
    /* Rows: sessions still present with a valid key. Others lose their stream. */
    struct sse_sess *s = m->sse;
    while (s) {
        struct sse_sess *next = s->next;
        int ok = !s->in_check;
        for (int i = 0; i < PQntuples(res) && !ok; i++)
            ok = !strcmp(PQgetvalue(res, i, 0), s->id);
        s->in_check = 0;
        if (!ok)
            sse_close(m, s, "key revoked or expired, or session removed");
        s = next;
    }
    if (again)
        check_streams(m);
}

static void check_streams(struct mcp *m)
{
    if (!m->sse || m->checking || !m->in->pg)
        return;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (struct sse_sess *s = m->sse; s; s = s->next) {
        buf_printf(&b, "%s%s", b.len > 1 ? "," : "", s->id);
        s->in_check = 1;
    }
    buf_puts(&b, "}");
    const char *p[1] = {b.data};
    m->checking = 1;
    if (pg_exec(m->in->pg,
                "UPDATE mcp_sessions s SET last_seen_at = now() FROM api_keys k "
                "WHERE s.id = ANY($1::text[]) AND k.id = s.key_id AND k.is_active AND "
                "(k.expires_at IS NULL OR k.expires_at > now()) RETURNING s.id",
                1, p, on_streams_checked, m) != 0)
        m->checking = 0;
    buf_destroy(&b);
}

static void sweep_sessions(struct mcp *m)
{
    char idle[16];
    snprintf(idle, sizeof idle, "%d", m->in->cfg.mcp_session_idle_seconds);
    const char *p[1] = {idle};
    /* Streams are touched every 15 s while open, so an SSE row older than two minutes belongs
     * to a process that is gone. */
    pg_exec(m->in->pg,
            "DELETE FROM mcp_sessions WHERE (transport = 'streamable' AND last_seen_at < now() - "
            "make_interval(secs => $1::int)) OR (transport = 'sse' AND last_seen_at < now() - "
            "interval '120 seconds')",
            1, p, on_row_deleted, NULL);
}

static void on_tick(uv_timer_t *t)
{
    struct mcp *m = t->data;
    m->ticks++;
    struct sse_sess *s = m->sse;
    while (s) {
        struct sse_sess *next = s->next;
        if (http_request_aborted(s->rc->req))
            sse_close(m, s, "client went away");
        else if (m->ticks % SSE_PING_TICKS == 0 && http_stream_write(s->rc->req, ": ping\r\n\r\n", 10) != 0)
            sse_close(m, s, "write failed");
        s = next;
    }
    if (m->ticks % SSE_PING_TICKS == 0)
        check_streams(m);
    if (m->ticks % SWEEP_TICKS == 0 && m->in->pg)
        sweep_sessions(m);
}

void mcp_keys_changed(struct intake *in)
{
    struct mcp *m = in->mcp;
    if (!m || m->stopped)
        return;
    if (m->checking)
        m->recheck = 1; /* one more pass once the one in flight is back */
    else
        check_streams(m);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

void mcp_init(struct intake *in)
{
    struct mcp *m = xcalloc(1, sizeof *m);
    m->in = in;
    uint8_t r[8];
    char hex[17];
    crypto_random(r, sizeof r);
    crypto_hex_encode(r, sizeof r, hex);
    hex[16] = 0;
    snprintf(m->owner, sizeof m->owner, "intake:%d:%s", (int)getpid(), hex);
    m->hosts = split_list(in->cfg.mcp_allowed_hosts, &m->nhosts);
    m->origins = split_list(in->cfg.mcp_allowed_origins, &m->norigins);
    in->mcp = m;
    uv_timer_init(in->loop, &m->tick);
    m->tick.data = m;
    uv_timer_start(&m->tick, on_tick, TICK_MS, TICK_MS);
    pg_pool_listen(in->pg, "calseta_mcp_outbox", on_outbox_notify, m);
}

void mcp_drain(struct intake *in)
{
    struct mcp *m = in->mcp;
    if (!m || m->stopped)
        return;
    while (m->sse)
        sse_close(m, m->sse, "server draining");
    m->stopped = 1;
    uv_timer_stop(&m->tick);
    uv_close((uv_handle_t *)&m->tick, NULL);
}

void mcp_free(struct intake *in)
{
    struct mcp *m = in->mcp;
    if (!m)
        return;
    free_list(m->hosts, m->nhosts);
    free_list(m->origins, m->norigins);
    free(m);
    in->mcp = NULL;
}
