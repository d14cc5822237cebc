/*
 * approvals.c - the approval gate's decision routes.
 *
 *   /v1/workflow-approvals[/{uuid}], POST .../approve|reject   approvals:write (REST)
 *   GET/POST /v1/approvals/{uuid}/decide?token=                 decide_token (browser, HTML)
 *   POST /v1/approvals/callback/slack                           Slack v0 signature
 *   POST /v1/approvals/callback/teams                           stub, as the original
 *
 * Every decision goes through calseta_approval_decide (one transaction: status, responder,
 * the queued run when approved, the activity event); an approved run is then started like an
 * executed one. The decide token is compared in constant time here, never in SQL. The decide
 * pages are public routes charged to the client IP's unauthenticated budget. Slack callbacks
 * are refused (403) while SLACK_SIGNING_SECRET is unset (the original accepted them unsigned);
 * otherwise the v0 HMAC and a 300 s timestamp window are required.
 */
#include "workflows_api.h"
#include "catalogue.h"

#include "audit.h"
#include "crypto.h"
#include "log.h"
#include "ratelimit.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HTML "text/html; charset=utf-8"
#define TEXT "text/plain; charset=utf-8"

/* ---- helpers ------------------------------------------------------------------------------ */

static void html_escape(struct buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': buf_puts(b, "&amp;"); break;
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        case '\'': buf_puts(b, "&#x27;"); break;
        default: buf_append(b, s, 1);
        }
    }
}

static void reply_page(struct reqctx *rc, int status, const char *title, const char *text)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Calseta</title>"
                 "</head><body><h1>");
    html_escape(&b, title);
    buf_puts(&b, "</h1><p>");
    html_escape(&b, text);
    buf_puts(&b, "</p></body></html>");
    reply_body(rc, status, HTML, b.data, b.len);
    buf_destroy(&b);
}

static int hexv(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The URL-decoded value of form field name in an x-www-form-urlencoded body (malloc'ed), or
 * NULL when absent. */
static char *form_field(const char *body, size_t len, const char *name)
{
    size_t nlen = strlen(name), i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end - i > nlen && !memcmp(body + i, name, nlen) && body[i + nlen] == '=') {
            char *out = xmalloc(end - i + 1);
            size_t o = 0;
            for (size_t k = i + nlen + 1; k < end; k++) {
                char c = body[k];
                if (c == '+')
                    c = ' ';
                else if (c == '%' && k + 2 < end && hexv(body[k + 1]) >= 0 &&
                         hexv(body[k + 2]) >= 0) {
                    c = (char)(hexv(body[k + 1]) * 16 + hexv(body[k + 2]));
                    k += 2;
                }
                out[o++] = c;
            }
            out[o] = 0;
            return out;
        }
        i = end + 1;
    }
    return NULL;
}

/* ---- the decision ------------------------------------------------------------------------ */

enum via { VIA_REST, VIA_BROWSER, VIA_SLACK };

struct decide_op {
    struct reqctx *rc;
    enum via via;
    int approved;
    char uuid[37];
    char *responder;
    char *token; /* browser: the token given */
};

static void decide_free(struct decide_op *op)
{
    free(op->responder);
    if (op->token) {
        explicit_bzero(op->token, strlen(op->token));
        free(op->token);
    }
    free(op);
}

static void reply_decide_error(struct decide_op *op, const char *e, const char *status)
{
    struct reqctx *rc = op->rc;
    char msg[160];
    if (op->via == VIA_SLACK) {
        reply_body(rc, 200, TEXT, "ok", 2);
    } else if (op->via == VIA_BROWSER) {
        if (!strcmp(e, "not_found")) {
            reply_page(rc, 404, "Not found", "Approval request not found.");
        } else {
            snprintf(msg, sizeof msg, "This approval request has already been %s.",
                     status ? status : "decided");
            reply_page(rc, 200, "Approval request", msg);
        }
    } else if (!strcmp(e, "not_found")) {
        reply_error(rc, 404, "NOT_FOUND", "Approval request not found.", NULL);
    } else if (!strcmp(e, "expired")) {
        reply_error(rc, 409, "APPROVAL_EXPIRED", "Approval request has expired.", NULL);
    } else {
        snprintf(msg, sizeof msg, "Approval request is already in terminal status '%s'.",
                 status ? status : "?");
        reply_error(rc, 409, "APPROVAL_ALREADY_DECIDED", msg, NULL);
    }
}

static void on_decided(void *arg, PGresult *res, const char *err)
{
    struct decide_op *op = arg;
    struct reqctx *rc = op->rc;
    if (reply_if_pg_failed(rc, res, err) != 0) {
        decide_free(op);
        return;
    }
    json_t *doc = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    const char *e = json_string_value(json_object_get(doc, "error"));
    if (!doc || e) {
        reply_decide_error(op, e ? e : "not_found",
                           json_string_value(json_object_get(doc, "status")));
        json_decref(doc);
        decide_free(op);
        return;
    }
    const char *run = json_string_value(json_object_get(doc, "run_uuid"));
    static const char *const via_names[] = {"api", "browser", "slack"};
    audit_emit(rc->in->audit, op->approved ? "workflow_approved" : "workflow_rejected",
               rc->req->request_id, op->via == VIA_REST ? rc->auth.key_prefix : NULL,
               rc->client_ip,
               json_pack("{s:s,s:s,s:s,s:s?}", "approval_uuid", op->uuid, "responder_id",
                         op->responder, "via", via_names[op->via], "run_uuid", run));
    if (run)
        wf_runs_wake(rc->in);
    if (op->via == VIA_SLACK) {
        reply_body(rc, 200, TEXT, "ok", 2);
    } else if (op->via == VIA_BROWSER) {
        reply_page(rc, 200, "Approval request",
                   op->approved ? "Approved. The workflow has been queued for execution."
                                : "Rejected. The workflow will not run.");
    } else {
        reply_data(rc, 200, json_incref(json_object_get(doc, "approval")));
    }
    json_decref(doc);
    decide_free(op);
}

static void decide(struct decide_op *op)
{
    struct reqctx *rc = op->rc;
    const char *params[4] = {op->uuid, op->approved ? "t" : "f", op->responder,
                             op->via == VIA_REST ? rc->auth.key_prefix : NULL};
    pg_exec(rc->in->pg,
            "SELECT calseta_approval_decide($1::uuid, $2::boolean, $3, $4)::text", 4, params,
            on_decided, op);
}

/* ---- REST ---------------------------------------------------------------------------------- */

static void rest_decide(struct reqctx *rc, int approved)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = rc->req->body.len ? body_json_object(rc) : json_object();
    if (!body)
        return;
    json_t *r = json_object_get(body, "responder_id");
    if (r && !json_is_null(r) && (!json_is_string(r) || json_string_length(r) > 255)) {
        json_decref(body);
        reply_validation_error(rc, "value_error", "body", "responder_id", "Input should be a string (at most 255)");
        return;
    }
    struct decide_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->via = VIA_REST;
    op->approved = approved;
    memcpy(op->uuid, uuid, sizeof op->uuid);
    op->responder = xstrdup(json_is_string(r) ? json_string_value(r) : rc->auth.key_prefix);
    json_decref(body);
    decide(op);
}

void route_approve(struct reqctx *rc)
{
    rest_decide(rc, 1);
}

void route_reject(struct reqctx *rc)
{
    rest_decide(rc, 0);
}

void route_get_approval(struct reqctx *rc)
{
    cat_exec_uuid(rc,
                  "SELECT calseta_approval_json(a)::text FROM workflow_approval_requests a "
                  "WHERE a.uuid = $1",
                  200, "Approval request not found.");
}

/* $1 a status as the answer shows it (a pending request past its expiry reads "expired", so the
 * filter asks the same function) or NULL, $2 the workflow's uuid or NULL. */
#define APPROVALS_WHERE                                                                            \
    "($1::text IS NULL OR calseta_approval_json(a)->>'status' = $1) AND ($2::uuid IS NULL OR "     \
    "a.workflow_id = (SELECT id FROM workflows WHERE uuid = $2::uuid))"

/* The count and the page are separate reads: the page cuts the matching requests' sort keys to
 * the page before building any request's JSON. */
void route_list_approvals(struct reqctx *rc)
{
    static const char *const STATUSES[] = {"pending", "approved", "rejected", "expired"};
    int page, page_size;
    char st[256], wfu[64], limit[16], offset[24];
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    const char *status = NULL, *wf_uuid = NULL;
    if (query_param(rc, "status", st, sizeof st)) {
        int ok = 0;
        for (size_t i = 0; i < 4; i++)
            ok |= !strcmp(st, STATUSES[i]);
        if (!ok) {
            reply_validation_error(rc, "value_error", "query", "status", "Invalid status");
            return;
        }
        status = st;
    }
    if (query_param(rc, "workflow_uuid", wfu, sizeof wfu)) {
        if (!crypto_uuid_valid(wfu)) {
            reply_validation_error(rc, "value_error", "query", "workflow_uuid", "Input should be a valid UUID");
            return;
        }
        wf_uuid = wfu;
    }
    pagination_params(page, page_size, limit, offset);
    const char *params[4] = {status, wf_uuid, limit, offset};
    list_query(rc,
                  "SELECT (SELECT count(*) FROM workflow_approval_requests a WHERE " APPROVALS_WHERE
                  "), (SELECT coalesce(jsonb_agg(calseta_approval_json(a) ORDER BY x.created_at "
                  "DESC, x.id DESC), '[]'::jsonb)::text FROM (SELECT a.created_at, a.id FROM "
                  "workflow_approval_requests a WHERE " APPROVALS_WHERE " ORDER BY 1 DESC, 2 DESC "
                  "LIMIT $3 OFFSET $4) x JOIN workflow_approval_requests a ON a.id = x.id)",
                  4, params, page, page_size, "Workflow not found.", NULL);
}

/* ---- decide pages ------------------------------------------------------------------------ */

struct page_op {
    struct reqctx *rc;
    char uuid[37];
    char *token;
    int submit; /* POST */
    int approved;
};

static void page_free(struct page_op *op)
{
    if (op->token) {
        explicit_bzero(op->token, strlen(op->token));
        free(op->token);
    }
    free(op);
}

static void render_pending(struct page_op *op, json_t *a)
{
    struct buf b;
    char line[256];
    buf_init(&b);
    buf_puts(&b, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Calseta approval"
                 "</title></head><body><h1>Workflow approval: ");
    html_escape(&b, json_string_value(json_object_get(a, "workflow_name")));
    buf_puts(&b, "</h1><ul><li>Risk: ");
    html_escape(&b, json_string_value(json_object_get(a, "risk_level")));
    json_t *ctx = json_object_get(a, "trigger_context");
    buf_puts(&b, "</li><li>Indicator: ");
    html_escape(&b, json_string_value(json_object_get(ctx, "indicator_type")));
    buf_puts(&b, " ");
    html_escape(&b, json_string_value(json_object_get(ctx, "indicator_value")));
    buf_puts(&b, "</li><li>Trigger: ");
    html_escape(&b, json_string_value(json_object_get(a, "trigger_type")));
    snprintf(line, sizeof line, "</li><li>Confidence: %.0f%%</li><li>Expires: ",
             json_number_value(json_object_get(a, "confidence")) * 100);
    buf_puts(&b, line);
    html_escape(&b, json_string_value(json_object_get(a, "expires_at")));
    buf_puts(&b, "</li><li>Reason: ");
    html_escape(&b, json_string_value(json_object_get(a, "reason")));
    buf_puts(&b, "</li></ul><form method=\"post\"><input type=\"hidden\" name=\"token\" value=\"");
    html_escape(&b, op->token);
    buf_puts(&b, "\"><button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button> "
                 "<button type=\"submit\" name=\"decision\" value=\"reject\">Reject</button>"
                 "</form></body></html>");
    buf_append(&b, "", 1);
    reply_body(op->rc, 200, HTML, b.data, b.len);
    buf_destroy(&b);
}

static void on_page_loaded(void *arg, PGresult *res, const char *err)
{
    struct page_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!res || err) {
        page_free(op);
        reply_page(rc, !res ? 503 : 500, "Unavailable", "Please retry later.");
        return;
    }
    if (PQntuples(res) == 0) {
        page_free(op);
        reply_page(rc, 404, "Not found", "Approval request not found.");
        return;
    }
    const char *stored = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);
    if (!stored || !crypto_ct_equal(stored, strlen(stored), op->token, strlen(op->token))) {
        audit_emit(rc->in->audit, "approval_token_invalid", rc->req->request_id, NULL,
                   rc->client_ip, json_pack("{s:s}", "approval_uuid", op->uuid));
        page_free(op);
        reply_page(rc, 403, "Forbidden", "Invalid approval token.");
        return;
    }
    json_t *a = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    const char *status = json_string_value(json_object_get(a, "status"));
    if (status && strcmp(status, "pending")) {
        char msg[128];
        snprintf(msg, sizeof msg, "This approval request has already been %s.", status);
        json_decref(a);
        page_free(op);
        reply_page(rc, 200, "Approval request", msg);
        return;
    }
    if (op->submit) {
        json_decref(a);
        struct decide_op *d = xcalloc(1, sizeof *d);
        d->rc = rc;
        d->via = VIA_BROWSER;
        d->approved = op->approved;
        memcpy(d->uuid, op->uuid, sizeof d->uuid);
        d->responder = xstrdup("browser");
        page_free(op);
        decide(d);
        return;
    }
    render_pending(op, a);
    json_decref(a);
    page_free(op);
}

static void page_load(struct page_op *op)
{
    const char *params[1] = {op->uuid};
    /* Expiry is materialised on access; the JSON already shows it. */
    pg_exec(op->rc->in->pg,
            "WITH e AS (UPDATE workflow_approval_requests SET status = 'expired', "
            "updated_at = now() WHERE uuid = $1 AND status = 'pending' AND expires_at < now() "
            "RETURNING id) SELECT calseta_approval_json(a)::text, a.decide_token, "
            "(SELECT count(*) FROM e) FROM workflow_approval_requests a WHERE a.uuid = $1",
            1, params, on_page_loaded, op);
}

static void on_page_charged(void *arg, const struct rl_decision *d, const char *err)
{
    struct page_op *op = arg;
    (void)err;
    if (d->count > d->limit) {
        struct reqctx *rc = op->rc;
        page_free(op);
        reply_page(rc, 429, "Too many requests", "Too many requests; retry in a minute.");
        return;
    }
    page_load(op);
}

static struct page_op *page_op_new(struct reqctx *rc, char *token)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0) {
        free(token);
        return NULL;
    }
    struct page_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    memcpy(op->uuid, uuid, sizeof op->uuid);
    op->token = token;
    return op;
}

void route_decide_page(struct reqctx *rc)
{
    char tok[256];
    if (!query_param(rc, "token", tok, sizeof tok)) {
        reply_validation_error(rc, "value_error", "query", "token", "Field required");
        return;
    }
    struct page_op *op = page_op_new(rc, xstrdup(tok));
    explicit_bzero(tok, sizeof tok);
    if (!op)
        return;
    rl_charge_ip(rc->in, rc->client_ip, on_page_charged, op);
}

void route_decide_submit(struct reqctx *rc)
{
    const struct buf *b = &rc->req->body;
    char *token = form_field(b->data ? b->data : "", b->len, "token");
    char *decision = form_field(b->data ? b->data : "", b->len, "decision");
    int approved = decision && !strcmp(decision, "approve");
    int valid = decision && (approved || !strcmp(decision, "reject"));
    free(decision);
    if (!token) {
        char tok[256];
        if (query_param(rc, "token", tok, sizeof tok))
            token = xstrdup(tok);
        explicit_bzero(tok, sizeof tok);
    }
    if (!valid || !token) {
        free(token);
        reply_page(rc, 400, "Bad request",
                   !valid ? "Invalid decision: use approve or reject." : "Missing token.");
        return;
    }
    struct page_op *op = page_op_new(rc, token);
    if (!op)
        return;
    op->submit = 1;
    op->approved = approved;
    rl_charge_ip(rc->in, rc->client_ip, on_page_charged, op);
}

/* ---- Slack ------------------------------------------------------------------------------- */

static void slack_refuse(struct reqctx *rc, const char *reason, const char *text)
{
    audit_emit(rc->in->audit, "approval_callback_refused", rc->req->request_id, NULL,
               rc->client_ip, json_pack("{s:s,s:s}", "notifier", "slack", "reason", reason));
    reply_body(rc, 403, TEXT, text, strlen(text));
}

/* 0 when the v0 signature and timestamp are right, else replied 403. */
static int slack_verify(struct reqctx *rc, const char *secret)
{
    size_t tlen = 0, slen = 0;
    const char *ts = http_header_get(rc->req, "x-slack-request-timestamp", &tlen);
    const char *sig = http_header_get(rc->req, "x-slack-signature", &slen);
    char tsbuf[24];
    long long t;
    if (!ts || tlen == 0 || tlen >= sizeof tsbuf) {
        slack_refuse(rc, "invalid_timestamp", "Invalid timestamp");
        return -1;
    }
    memcpy(tsbuf, ts, tlen);
    tsbuf[tlen] = 0;
    if (parse_ll(tsbuf, 0, 1LL << 40, &t) != 0) {
        slack_refuse(rc, "invalid_timestamp", "Invalid timestamp");
        return -1;
    }
    /* the precise clock: time() reads the kernel's coarse one, up to a tick behind, so a
     * timestamp taken just after a second's turn could look a second younger than it is */
    struct timespec tsnow;
    clock_gettime(CLOCK_REALTIME, &tsnow);
    long long now = (long long)tsnow.tv_sec;
    if (now - t > 300 || t - now > 300) {
        slack_refuse(rc, "stale_timestamp", "Request too old");
        return -1;
    }
    struct buf m;
    buf_init(&m);
    buf_printf(&m, "v0:%s:", tsbuf);
    buf_append(&m, rc->req->body.data ? rc->req->body.data : "", rc->req->body.len);
    uint8_t mac[32];
    char expect[3 + 65];
    crypto_hmac_sha256(secret, strlen(secret), m.data, m.len, mac);
    buf_destroy(&m);
    memcpy(expect, "v0=", 3);
    crypto_hex_encode(mac, sizeof mac, expect + 3);
    if (!sig || !crypto_ct_equal(expect, 67, sig, slen)) {
        slack_refuse(rc, "invalid_signature", "Invalid signature");
        return -1;
    }
    return 0;
}

void route_slack_callback(struct reqctx *rc)
{
    struct workflows *wf = rc->in->workflows;
    if (!wf->slack_signing_secret) {
        slack_refuse(rc, "signing_secret_unset",
                     "Slack callbacks are disabled: SLACK_SIGNING_SECRET is not set.");
        return;
    }
    if (slack_verify(rc, wf->slack_signing_secret) != 0)
        return;
    const struct buf *b = &rc->req->body;
    char *payload = form_field(b->data ? b->data : "", b->len, "payload");
    if (!payload) {
        reply_body(rc, 400, TEXT, "Missing payload", strlen("Missing payload"));
        return;
    }
    json_t *p = json_loads(payload, 0, NULL);
    free(payload);
    if (!json_is_object(p)) {
        json_decref(p);
        reply_body(rc, 400, TEXT, "Invalid JSON payload", strlen("Invalid JSON payload"));
        return;
    }
    const char *action = json_string_value(
        json_object_get(json_array_get(json_object_get(p, "actions"), 0), "action_id"));
    const char *user = json_string_value(json_object_get(json_object_get(p, "user"), "id"));
    const char *colon = action ? strchr(action, ':') : NULL;
    if (!colon || !crypto_uuid_valid(colon + 1)) {
        json_decref(p);
        reply_body(rc, 200, TEXT, "ok", 2);
        return;
    }
    struct decide_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->via = VIA_SLACK;
    op->approved = (size_t)(colon - action) == 7 && !strncmp(action, "approve", 7);
    for (int i = 0; i < 36; i++)
        op->uuid[i] = (char)tolower((unsigned char)colon[1 + i]);
    op->responder = xstrdup(user ? user : "slack");
    json_decref(p);
    decide(op);
}

void route_teams_callback(struct reqctx *rc)
{
    reply_json(rc, 200,
               json_pack("{s:s}", "message",
                         "Teams approvals use the decide link in the card (Review & Decide) or "
                         "the REST API; this callback takes no action."));
}
