/*
 * notifier.c - approval notifications to Slack or Teams (see notifier.h).
 *
 * A hook loads what it needs with one statement, builds the message and hands it to a `send`:
 *
 *   send_attempt → SSRF check on the thread pool (ssrf_check resolves) → curl transfer on the
 *   loop (curluv, pinned to the checked address) → on_transfer_done → success, or a retry after
 *   NOTIFIER_RETRY_SECONDS (at most SEND_MAX_ATTEMPTS attempts) → send_finish
 *
 * Slack answers 200 with {"ok":false,"error":...} on failure: that is a failed attempt too.
 * Retry timers are unref'd, so they never keep a draining workflowd alive; a send still
 * waiting for its retry when workflowd stops is abandoned (logged). Transfers in flight finish within
 * their timeout (10 s Slack, 15 s Teams).
 */
#include "notifier.h"

#include "audit.h"
#include "crypto.h"
#include "curluv.h"
#include "httpc.h"
#include "log.h"
#include "settings.h"
#include "settings_table.h"
#include "ssrf.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEND_MAX_ATTEMPTS 3
#define SLACK_TIMEOUT_MS 10000L
#define TEAMS_TIMEOUT_MS 15000L
#define RESPONSE_MAX (64 * 1024)
#define SEND_MAX_PENDING 1000 /* sends alive at once; beyond, new ones are dropped (logged) */

enum notifier_kind { NOTIFY_NONE = 0, NOTIFY_SLACK, NOTIFY_TEAMS };
enum notify_msg { MSG_REQUEST = 0, MSG_UPDATE, MSG_RESULT };

static const char *const KIND_NAMES[] = {"none", "slack", "teams"};
static const char *const MSG_NAMES[] = {"approval_request", "decision_update", "result"};

struct send;

struct notifier {
    struct workflowd *wd;
    enum notifier_kind kind;
    char *token;       /* SLACK_BOT_TOKEN: secret */
    char *api_url;     /* SLACK_API_URL, no trailing '/' */
    char *webhook_url; /* TEAMS_WEBHOOK_URL: secret (the URL is the credential) */
    char *default_channel;
    char *base_url; /* CALSETA_BASE_URL, no trailing '/' */
    int retry_seconds;
    struct curluv *multi;
    struct send *sends; /* every send not yet finished */
    int nsends;
    int open_handles;   /* multi + the retry timers of sends being closed or alive */
    int freed;
};

struct send {
    struct notifier *n;
    struct send *prev, *next;
    enum notify_msg msg;
    char approval_uuid[37];
    char *url;  /* wiped on free (a Teams URL is a secret) */
    char *body; /* wiped on free (holds the decide token) */
    char *channel; /* Slack: the channel asked for (stored when Slack names none) */
    long timeout_ms;
    int attempt;
    uv_timer_t retry;
    uv_work_t work;
    int blocked;
    char reason[192];
    struct ssrf_target target; /* the checked address: the connect-to entry and the socket pin */
    struct curluv_pin sockpin; /* the checked address: no connection goes anywhere else */
    CURL *easy;
    struct curl_slist *headers;
    struct buf resp;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void strip_trailing_slashes(char *s)
{
    size_t n = s ? strlen(s) : 0;
    while (n > 0 && s[n - 1] == '/')
        s[--n] = 0;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* At most max bytes of s, cut on a UTF-8 character boundary, with "…" when cut. */
static char *truncated(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return xstrdup(s);
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    char *out = xmalloc(max + 4);
    memcpy(out, s, max);
    memcpy(out + max, "\xE2\x80\xA6", 4);
    return out;
}

/* Slack mrkdwn text: & < > escaped (no links or mentions smuggled in), at most max bytes of
 * input. */
static char *slack_escape(const char *s, size_t max)
{
    char *t = truncated(s, max);
    struct buf b;
    buf_init(&b);
    for (const char *p = t; *p; p++) {
        if (*p == '&')
            buf_puts(&b, "&amp;");
        else if (*p == '<')
            buf_puts(&b, "&lt;");
        else if (*p == '>')
            buf_puts(&b, "&gt;");
        else
            buf_append(&b, p, 1);
    }
    buf_append(&b, "", 1);
    free(t);
    return b.data;
}

/* 1 if s is 1..max characters, each alphanumeric or in extra. */
static int token_like(const char *s, size_t max, const char *extra)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
            return 0;
    return 1;
}

static void log_fields(enum log_level level, const char *event, const struct send *s,
                       json_t *extra)
{
    json_t *f = json_pack("{s:s,s:s,s:s,s:i}", "notifier", KIND_NAMES[s->n->kind], "kind",
                          MSG_NAMES[s->msg], "approval_uuid", s->approval_uuid, "attempt",
                          s->attempt);
    if (extra)
        json_object_update(f, extra);
    log_event(level, event, f);
    json_decref(f);
}

/* ---- sending ------------------------------------------------------------------------------ */

static void send_attempt(struct send *s);

static void maybe_free_notifier(struct notifier *n)
{
    if (!n->freed || n->open_handles > 0)
        return;
    free_wiped(n->token);
    free_wiped(n->webhook_url);
    free(n->api_url);
    free(n->default_channel);
    free(n->base_url);
    free(n);
    curl_global_cleanup();
}

static void on_send_closed(uv_handle_t *h)
{
    struct send *s = h->data;
    struct notifier *n = s->n;
    free_wiped(s->url);
    free_wiped(s->body);
    free(s->channel);
    buf_destroy(&s->resp);
    free(s);
    n->open_handles--;
    maybe_free_notifier(n);
}

static void send_finish(struct send *s)
{
    struct notifier *n = s->n;
    if (s->prev)
        s->prev->next = s->next;
    else
        n->sends = s->next;
    if (s->next)
        s->next->prev = s->prev;
    n->nsends--;
    uv_timer_stop(&s->retry);
    uv_close((uv_handle_t *)&s->retry, on_send_closed);
}

static void send_start(struct notifier *n, enum notify_msg msg, const char *approval_uuid,
                       const char *url, json_t *body, const char *channel)
{
    if (n->nsends >= SEND_MAX_PENDING) {
        json_t *f = json_pack("{s:s,s:s,s:s,s:s}", "notifier", KIND_NAMES[n->kind], "kind",
                              MSG_NAMES[msg], "approval_uuid", approval_uuid, "error",
                              "too many notifications pending");
        log_event(LOG_ERROR, "approval_notification_failed", f);
        audit_emit(n->wd->audit, "approval_notification_failed", NULL, NULL, NULL, f);
        return;
    }
    n->nsends++;
    struct send *s = xcalloc(1, sizeof *s);
    s->n = n;
    s->msg = msg;
    snprintf(s->approval_uuid, sizeof s->approval_uuid, "%s", approval_uuid);
    s->url = xstrdup(url);
    s->body = json_dumps(body, JSON_COMPACT);
    s->channel = channel ? xstrdup(channel) : NULL;
    s->timeout_ms = n->kind == NOTIFY_SLACK ? SLACK_TIMEOUT_MS : TEAMS_TIMEOUT_MS;
    buf_init(&s->resp);
    uv_timer_init(n->wd->loop, &s->retry);
    uv_unref((uv_handle_t *)&s->retry); /* a pending retry never keeps a drain waiting */
    s->retry.data = s;
    s->work.data = s;
    n->open_handles++;
    s->next = n->sends;
    if (n->sends)
        n->sends->prev = s;
    n->sends = s;
    send_attempt(s);
}

static void store_ts_done(void *arg, PGresult *res, const char *err)
{
    (void)arg;
    if (!res || err)
        msg_warn("approval notification: storing the Slack message id failed: %s",
                 err ? err : "database unavailable");
}

/* Slack's ts (and the channel id it posted to) become the request's external_message_id and
 * notifier_channel: chat.update needs both. */
static void store_slack_ts(struct send *s, const char *ts, const char *channel)
{
    struct workflowd *wd = s->n->wd;
    if (!wd->pg) {
        msg_warn("approval notification %s: shutting down, Slack message id not stored",
                 s->approval_uuid);
        return;
    }
    const char *params[3] = {s->approval_uuid, ts, channel ? channel : s->channel};
    pg_exec(wd->pg,
            "UPDATE workflow_approval_requests SET external_message_id = $2, "
            "notifier_channel = coalesce($3, notifier_channel), updated_at = now() "
            "WHERE uuid = $1::uuid",
            3, params, store_ts_done, NULL);
}

static void send_succeeded(struct send *s, long http_status, json_t *answer)
{
    struct notifier *n = s->n;
    const char *ts = json_string_value(json_object_get(answer, "ts"));
    const char *channel = json_string_value(json_object_get(answer, "channel"));
    if (!token_like(ts, 32, "."))
        ts = NULL;
    if (!token_like(channel, 80, "_-"))
        channel = NULL;
    json_t *extra = json_pack("{s:I}", "http_status", (json_int_t)http_status);
    log_fields(LOG_INFO, "approval_notification_sent", s, extra);
    json_decref(extra);
    audit_emit(n->wd->audit, "approval_notification_sent", NULL, NULL, NULL,
               json_pack("{s:s,s:s,s:s,s:i}", "notifier", KIND_NAMES[n->kind], "kind",
                         MSG_NAMES[s->msg], "approval_uuid", s->approval_uuid, "attempts",
                         s->attempt));
    if (n->kind == NOTIFY_SLACK && s->msg == MSG_REQUEST && ts)
        store_slack_ts(s, ts, channel);
    send_finish(s);
}

static void on_retry(uv_timer_t *t)
{
    send_attempt(t->data);
}

static void send_failed(struct send *s, const char *error)
{
    struct notifier *n = s->n;
    int retry = s->attempt < SEND_MAX_ATTEMPTS && !n->freed;
    json_t *extra = json_pack("{s:s,s:b}", "error", error, "will_retry", retry);
    log_fields(retry ? LOG_WARN : LOG_ERROR,
               retry ? "approval_notification_attempt_failed" : "approval_notification_failed",
               s, extra);
    json_decref(extra);
    if (retry) {
        uv_timer_start(&s->retry, on_retry, (uint64_t)n->retry_seconds * 1000, 0);
        return;
    }
    audit_emit(n->wd->audit, "approval_notification_failed", NULL, NULL, NULL,
               json_pack("{s:s,s:s,s:s,s:i,s:s}", "notifier", KIND_NAMES[n->kind], "kind",
                         MSG_NAMES[s->msg], "approval_uuid", s->approval_uuid, "attempts",
                         s->attempt, "error", error));
    send_finish(s);
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct send *s = arg;
    size_t n = size * nmemb;
    if (s->resp.len + n <= RESPONSE_MAX)
        buf_append(&s->resp, p, n);
    return n; /* the rest of an oversized answer is read and dropped */
}

/* Judges a finished transfer: success, or a failure with a short reason (no secret in it). */
static void judge(struct send *s, CURLcode rc, long status)
{
    char err[128];
    if (rc != CURLE_OK) {
        send_failed(s, curl_easy_strerror(rc)); /* never the URL: it may be the secret */
        return;
    }
    buf_append(&s->resp, "", 1);
    json_t *answer = s->n->kind == NOTIFY_SLACK ? json_loads(s->resp.data, 0, NULL) : NULL;
    if (status < 200 || status > 299) {
        snprintf(err, sizeof err, "HTTP %ld", status);
    } else if (s->n->kind == NOTIFY_SLACK && !json_is_true(json_object_get(answer, "ok"))) {
        const char *e = json_string_value(json_object_get(answer, "error"));
        snprintf(err, sizeof err, "slack: %s", token_like(e, 64, "_.-") ? e : "not ok");
    } else {
        send_succeeded(s, status, answer);
        json_decref(answer);
        return;
    }
    json_decref(answer);
    send_failed(s, err);
}

static void on_transfer_done(void *arg, CURL *easy, CURLcode rc)
{
    struct notifier *n = arg;
    struct send *s = NULL;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&s);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curluv_remove(n->multi, easy);
    curl_easy_cleanup(easy);
    s->easy = NULL;
    httpc_slist_free_wiped(s->headers);
    s->headers = NULL;
    judge(s, rc, status);
}

static void transfer_start(struct send *s)
{
    struct notifier *n = s->n;
    CURL *h = curl_easy_init();
    if (!h) {
        send_failed(s, "curl_easy_init failed");
        return;
    }
    s->headers = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
    if (n->kind == NOTIFY_SLACK) {
        char *auth = xmalloc(strlen(n->token) + 32);
        sprintf(auth, "Authorization: Bearer %s", n->token);
        s->headers = curl_slist_append(s->headers, auth);
        free_wiped(auth);
    }
    buf_reset(&s->resp);
    s->easy = h;
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    httpc_harden(h, 1);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L); /* no idle socket outlives a send */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "calseta-notifier");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, ssrf_target_list(&s->target));
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_PRIVATE, s);
    curluv_add_pinned(n->multi, h, &s->sockpin);
}

/* Thread pool: the SSRF guard resolves the host. */
static void ssrf_work(uv_work_t *w)
{
    struct send *s = w->data;
    struct ssrf_result r;
    s->blocked = ssrf_check(s->url, s->n->wd->cfg->ssrf_allowed_hosts, 0, &r, s->reason,
                            sizeof s->reason) != 0 ||
                 ssrf_target_of(&r, &s->target, s->reason, sizeof s->reason) != 0;
    if (!s->blocked && curluv_pin_set(&s->sockpin, s->target.addr, strlen(s->target.addr),
                                      s->target.port) != 0) {
        s->blocked = 1;
        snprintf(s->reason, sizeof s->reason, "checked address %s cannot be pinned", r.addr);
    }
}

static void ssrf_after(uv_work_t *w, int status)
{
    struct send *s = w->data;
    char err[256];
    if (status != 0 || s->blocked) {
        snprintf(err, sizeof err, "blocked by SSRF protection: %s",
                 status ? "check cancelled" : s->reason);
        send_failed(s, err);
        return;
    }
    if (s->n->freed) {
        send_failed(s, "shutting down");
        return;
    }
    transfer_start(s);
}

static void send_attempt(struct send *s)
{
    s->attempt++;
    uv_queue_work(s->n->wd->loop, &s->work, ssrf_work, ssrf_after);
}

/* ---- messages ----------------------------------------------------------------------------- */

static char *title_of(json_t *a, const char *what)
{
    const char *risk = jstr(a, "risk_level");
    char r[16];
    size_t i = 0;
    for (; risk[i] && i < sizeof r - 1; i++)
        r[i] = (char)toupper((unsigned char)risk[i]);
    r[i] = 0;
    char *name = truncated(jstr(a, "workflow_name"), 100);
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "[%s] %s: %s", r, what, name);
    buf_append(&b, "", 1);
    free(name);
    return b.data;
}

static char *decide_url(struct notifier *n, json_t *a)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s/v1/approvals/%s/decide?token=", n->base_url, jstr(a, "uuid"));
    for (const char *p = jstr(a, "decide_token"); *p; p++) {
        if (isalnum((unsigned char)*p) || strchr("-_.~", *p))
            buf_append(&b, p, 1);
        else
            buf_printf(&b, "%%%02X", (unsigned char)*p);
    }
    buf_append(&b, "", 1);
    return b.data;
}

static char *indicator_text(json_t *a, size_t max)
{
    json_t *ctx = json_object_get(a, "trigger_context");
    char *v = truncated(jstr(ctx, "indicator_value"), max);
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s: %s", jstr(ctx, "indicator_type"), v);
    buf_append(&b, "", 1);
    free(v);
    return b.data;
}

static char *trigger_text(json_t *a)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, jstr(a, "trigger_type"));
    if (*jstr(a, "trigger_agent_key_prefix"))
        buf_printf(&b, " (%s)", jstr(a, "trigger_agent_key_prefix"));
    buf_append(&b, "", 1);
    return b.data;
}

static json_t *slack_field(const char *label, const char *value)
{
    char *v = slack_escape(value, 1500);
    json_t *f = json_pack("{s:s,s:s++}", "type", "mrkdwn", "text", label, "\n", v);
    free(v);
    return f;
}

static json_t *slack_section(const char *mrkdwn)
{
    return json_pack("{s:s,s:{s:s,s:s}}", "type", "section", "text", "type", "mrkdwn", "text",
                     mrkdwn);
}

/* Header, the four fields and the reason: the part of the request message that stays. */
static json_t *slack_summary(json_t *a)
{
    char *title = title_of(a, "Workflow Approval");
    char *ind = indicator_text(a, 500), *trig = trigger_text(a);
    char conf[32];
    snprintf(conf, sizeof conf, "%.0f%%", json_number_value(json_object_get(a, "confidence")) * 100);
    json_t *fields = json_pack("[oooo]", slack_field("*Indicator:*", ind),
                               slack_field("*Trigger:*", trig), slack_field("*Confidence:*", conf),
                               slack_field("*Expires:*", jstr(a, "expires_at")));
    char *reason = slack_escape(*jstr(a, "reason") ? jstr(a, "reason") : "(none given)", 2000);
    char *rtext = xmalloc(strlen(reason) + 16);
    sprintf(rtext, "*Reason:*\n%s", reason);
    json_t *blocks = json_pack("[{s:s,s:{s:s,s:s,s:b}},{s:s,s:o},o]", "type", "header", "text",
                               "type", "plain_text", "text", title, "emoji", 1, "type",
                               "section", "fields", fields, slack_section(rtext));
    free(title);
    free(ind);
    free(trig);
    free(reason);
    free(rtext);
    return blocks;
}

static const char *slack_channel(struct notifier *n, json_t *a)
{
    if (*jstr(a, "channel"))
        return jstr(a, "channel");
    return *n->default_channel ? n->default_channel : "#general";
}

static json_t *slack_request(struct notifier *n, json_t *a)
{
    const char *uuid = jstr(a, "uuid");
    char block_id[64], approve_id[64], reject_id[64];
    snprintf(block_id, sizeof block_id, "approval:%s", uuid);
    snprintf(approve_id, sizeof approve_id, "approve:%s", uuid);
    snprintf(reject_id, sizeof reject_id, "reject:%s", uuid);
    json_t *blocks = slack_summary(a);
    json_array_append_new(
        blocks, json_pack("{s:s,s:s,s:[{s:s,s:{s:s,s:s},s:s,s:s,s:s},{s:s,s:{s:s,s:s},s:s,s:s,"
                          "s:s}]}",
                          "type", "actions", "block_id", block_id, "elements", "type", "button",
                          "text", "type", "plain_text", "text", "Approve", "style", "primary",
                          "action_id", approve_id, "value", "approve", "type", "button", "text",
                          "type", "plain_text", "text", "Reject", "style", "danger", "action_id",
                          reject_id, "value", "reject"));
    char *url = decide_url(n, a);
    char *link = xmalloc(strlen(url) + 64);
    sprintf(link, "<%s|Review and decide in the browser>", url);
    json_array_append_new(blocks, json_pack("{s:s,s:[{s:s,s:s}]}", "type", "context", "elements",
                                            "type", "mrkdwn", "text", link));
    free_wiped(link);
    free_wiped(url);
    char *title = title_of(a, "Workflow Approval");
    json_t *msg = json_pack("{s:s,s:s,s:o}", "channel", slack_channel(n, a), "text", title,
                            "blocks", blocks);
    free(title);
    return msg;
}

/* The responder as Slack shows it: a user id becomes a mention, anything else is escaped. */
static char *responder_text(json_t *a)
{
    const char *r = jstr(a, "responder_id");
    struct buf b;
    buf_init(&b);
    if ((r[0] == 'U' || r[0] == 'W') && token_like(r, 32, "")) {
        buf_printf(&b, "<@%s>", r);
    } else {
        char *e = slack_escape(*r ? r : "unknown", 255);
        buf_puts(&b, e);
        free(e);
    }
    buf_append(&b, "", 1);
    return b.data;
}

static json_t *slack_update(json_t *a)
{
    int approved = !strcmp(jstr(a, "status"), "approved");
    char *who = responder_text(a);
    char block_id[64];
    snprintf(block_id, sizeof block_id, "approval:%s", jstr(a, "uuid"));
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s *%s* by %s at %s",
               approved ? ":white_check_mark:" : ":no_entry_sign:",
               approved ? "Approved" : "Rejected", who, jstr(a, "responded_at"));
    if (approved)
        buf_puts(&b, " - the workflow has been queued for execution.");
    buf_append(&b, "", 1);
    json_t *blocks = slack_summary(a);
    json_t *outcome = slack_section(b.data);
    json_object_set_new(outcome, "block_id", json_string(block_id));
    json_array_append_new(blocks, outcome);
    char *title = title_of(a, "Workflow Approval");
    json_t *msg = json_pack("{s:s,s:s,s:s,s:o}", "channel", jstr(a, "channel"), "ts",
                            jstr(a, "ts"), "text", title, "blocks", blocks);
    free(title);
    free(who);
    buf_destroy(&b);
    return msg;
}

static int run_succeeded(json_t *r)
{
    return !strcmp(jstr(r, "run_status"), "success");
}

static json_t *slack_result(struct notifier *n, json_t *r)
{
    const char *st = jstr(r, "run_status");
    char *name = slack_escape(jstr(r, "workflow_name"), 100);
    char *message = slack_escape(*jstr(r, "message") ? jstr(r, "message") : "(no message)", 2000);
    char *who = responder_text(r);
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s Workflow *%s* (approved by %s) finished: *%s*\n>%s",
               run_succeeded(r) ? ":white_check_mark:"
               : !strcmp(st, "timed_out") ? ":hourglass:"
                                          : ":x:",
               name, who, st, message);
    buf_append(&b, "", 1);
    char fallback[160];
    snprintf(fallback, sizeof fallback, "Workflow result: %s", st);
    json_t *msg = json_pack("{s:s,s:s,s:[o]}", "channel", slack_channel(n, r), "text", fallback,
                            "blocks", slack_section(b.data));
    if (token_like(jstr(r, "ts"), 32, "."))
        json_object_set_new(msg, "thread_ts", json_string(jstr(r, "ts")));
    free(name);
    free(message);
    free(who);
    buf_destroy(&b);
    return msg;
}

static json_t *teams_card(json_t *body, json_t *actions)
{
    json_t *content = json_pack("{s:s,s:s,s:s,s:o}", "$schema",
                                "http://adaptivecards.io/schemas/adaptive-card.json", "type",
                                "AdaptiveCard", "version", "1.4", "body", body);
    if (actions)
        json_object_set_new(content, "actions", actions);
    return json_pack("{s:s,s:[{s:s,s:n,s:o}]}", "type", "message", "attachments", "contentType",
                     "application/vnd.microsoft.card.adaptive", "contentUrl", "content", content);
}

static json_t *fact(const char *title, const char *value)
{
    char *v = truncated(value, 500);
    json_t *f = json_pack("{s:s,s:s}", "title", title, "value", v);
    free(v);
    return f;
}

static json_t *teams_request(struct notifier *n, json_t *a)
{
    char *title = title_of(a, "Workflow Approval");
    char *ind = indicator_text(a, 500), *trig = trigger_text(a);
    char *reason = truncated(*jstr(a, "reason") ? jstr(a, "reason") : "(none given)", 2000);
    char conf[32];
    snprintf(conf, sizeof conf, "%.0f%%", json_number_value(json_object_get(a, "confidence")) * 100);
    json_t *body = json_pack(
        "[{s:s,s:s,s:s,s:s,s:b},{s:s,s:[oooo]},{s:s,s:s,s:b}]", "type", "TextBlock", "size",
        "Large", "weight", "Bolder", "text", title, "wrap", 1, "type", "FactSet", "facts",
        fact("Indicator", ind), fact("Trigger", trig), fact("Confidence", conf),
        fact("Expires", jstr(a, "expires_at")), "type", "TextBlock", "text", reason, "wrap", 1);
    char *url = decide_url(n, a);
    struct buf api_a, api_r;
    buf_init(&api_a);
    buf_init(&api_r);
    buf_printf(&api_a, "%s/v1/workflow-approvals/%s/approve", n->base_url, jstr(a, "uuid"));
    buf_printf(&api_r, "%s/v1/workflow-approvals/%s/reject", n->base_url, jstr(a, "uuid"));
    json_t *actions = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s}]", "type",
                                "Action.OpenUrl", "title", "Review & Decide", "url", url, "type",
                                "Action.OpenUrl", "title", "Approve via API", "url", api_a.data,
                                "type", "Action.OpenUrl", "title", "Reject via API", "url",
                                api_r.data);
    free_wiped(url);
    buf_destroy(&api_a);
    buf_destroy(&api_r);
    free(title);
    free(ind);
    free(trig);
    free(reason);
    return teams_card(body, actions);
}

static json_t *teams_result(json_t *r)
{
    char *title = title_of(r, "Workflow Result");
    char *ind = indicator_text(r, 500);
    char *message = truncated(*jstr(r, "message") ? jstr(r, "message") : "(no message)", 2000);
    json_t *body = json_pack("[{s:s,s:s,s:s,s:s,s:s,s:b},{s:s,s:[ooo]},{s:s,s:s,s:b}]", "type",
                             "TextBlock", "size", "Large", "weight", "Bolder", "color",
                             run_succeeded(r) ? "Good" : "Attention", "text", title, "wrap", 1,
                             "type", "FactSet", "facts", fact("Status", jstr(r, "run_status")),
                             fact("Indicator", ind), fact("Approved by", jstr(r, "responder_id")),
                             "type", "TextBlock", "text", message, "wrap", 1);
    free(title);
    free(ind);
    free(message);
    return teams_card(body, NULL);
}

/* ---- hooks -------------------------------------------------------------------------------- */

struct load_op {
    struct notifier *n;
    enum notify_msg msg;
    char uuid[37];
};

static void on_loaded(void *arg, PGresult *res, const char *err)
{
    struct load_op *op = arg;
    struct notifier *n = op->n;
    if (!res || err) {
        json_t *f = json_pack("{s:s,s:s,s:s}", "kind", MSG_NAMES[op->msg], "uuid", op->uuid,
                              "error", err ? err : "database unavailable");
        log_event(LOG_ERROR, "approval_notification_load_failed", f);
        json_decref(f);
        free(op);
        return;
    }
    json_t *a = PQntuples(res) ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (!a || n->freed) { /* nothing to send (not pending, not approved, no Slack message) */
        json_decref(a);
        free(op);
        return;
    }
    json_t *msg = NULL;
    char url[600];
    snprintf(url, sizeof url, "%s/%s", n->api_url,
             op->msg == MSG_UPDATE ? "chat.update" : "chat.postMessage");
    if (n->kind == NOTIFY_SLACK)
        msg = op->msg == MSG_REQUEST  ? slack_request(n, a)
              : op->msg == MSG_UPDATE ? slack_update(a)
                                      : slack_result(n, a);
    else if (op->msg != MSG_UPDATE)
        msg = op->msg == MSG_REQUEST ? teams_request(n, a) : teams_result(a);
    if (msg)
        send_start(n, op->msg, jstr(a, "uuid"), n->kind == NOTIFY_SLACK ? url : n->webhook_url,
                   msg, n->kind == NOTIFY_SLACK ? jstr(msg, "channel") : NULL);
    json_decref(msg);
    json_decref(a);
    free(op);
}

/* Everything the messages show about an approval request (alias a, workflow w). */
#define APPROVAL_FIELDS                                                                        \
    "'uuid', a.uuid, 'workflow_name', w.name, 'risk_level', w.risk_level, "                  \
    "'trigger_type', a.trigger_type, 'trigger_agent_key_prefix', a.trigger_agent_key_prefix, " \
    "'trigger_context', a.trigger_context, 'reason', a.reason, 'confidence', a.confidence, "   \
    "'expires_at', calseta_ts(a.expires_at), 'status', a.status, "                            \
    "'responder_id', a.responder_id, 'responded_at', calseta_ts(a.responded_at)"

static const char *const LOAD_SQL[] = {
    /* MSG_REQUEST: still pending; records which notifier was used */
    "WITH a AS (UPDATE workflow_approval_requests SET notifier_type = $2, updated_at = now() "
    "WHERE uuid = $1::uuid AND status = 'pending' RETURNING *) "
    "SELECT jsonb_build_object(" APPROVAL_FIELDS ", 'decide_token', a.decide_token, "
    "'channel', w.approval_channel)::text FROM a JOIN workflows w ON w.id = a.workflow_id",
    /* MSG_UPDATE: decided, with a Slack message to update */
    "SELECT jsonb_build_object(" APPROVAL_FIELDS ", 'channel', a.notifier_channel, "
    "'ts', a.external_message_id)::text FROM workflow_approval_requests a "
    "JOIN workflows w ON w.id = a.workflow_id WHERE a.uuid = $1::uuid "
    "AND a.status IN ('approved', 'rejected') AND a.external_message_id IS NOT NULL "
    "AND a.notifier_channel IS NOT NULL AND $2 = 'slack'",
    /* MSG_RESULT: a finished run that an approved request started */
    "SELECT jsonb_build_object(" APPROVAL_FIELDS ", 'run_status', r.status, "
    "'message', r.result->>'message', 'ts', a.external_message_id, "
    "'channel', coalesce(a.notifier_channel, w.approval_channel))::text "
    "FROM workflow_runs r JOIN workflow_approval_requests a ON a.workflow_run_id = r.id "
    "JOIN workflows w ON w.id = a.workflow_id WHERE r.uuid = $1::uuid "
    "AND a.status = 'approved' AND r.status IN ('success', 'failed', 'timed_out') "
    "AND $2 <> ''",
};

void notifier_queued(struct workflowd *wd, const char *kind, const char *uuid)
{
    struct notifier *n = wd->notifier;
    enum notify_msg msg;
    for (msg = MSG_REQUEST; msg <= MSG_RESULT; msg++)
        if (!strcmp(kind, MSG_NAMES[msg]))
            break;
    if (!n || n->kind == NOTIFY_NONE || n->freed || msg > MSG_RESULT)
        return;
    if (msg == MSG_UPDATE && n->kind != NOTIFY_SLACK) /* only a Slack message is updated */
        return;
    if (!uuid || !crypto_uuid_valid(uuid) || !wd->pg) {
        msg_warn("approval notification (%s) skipped: %s", MSG_NAMES[msg],
                 wd->pg ? "invalid uuid" : "shutting down");
        return;
    }
    struct load_op *op = xcalloc(1, sizeof *op);
    op->n = n;
    op->msg = msg;
    snprintf(op->uuid, sizeof op->uuid, "%s", uuid);
    const char *params[2] = {op->uuid, KIND_NAMES[n->kind]};
    pg_exec(wd->pg, LOAD_SQL[msg], 2, params, on_loaded, op);
}

/* ---- set-up ------------------------------------------------------------------------------- */

static enum notifier_kind kind_setting(const struct config *c)
{
    char *v = setting_dup(c->settings, "APPROVAL_NOTIFIER");
    enum notifier_kind k = NOTIFY_NONE;
    if (!strcasecmp(v, "slack"))
        k = NOTIFY_SLACK;
    else if (!strcasecmp(v, "teams"))
        k = NOTIFY_TEAMS;
    else if (strcasecmp(v, "none"))
        msg_warn("APPROVAL_NOTIFIER=%.40s is not one of none, slack, teams: notifications are off",
                 v);
    free(v);
    return k;
}

static int url_ok(const char *url)
{
    return url && (!strncasecmp(url, "https://", 8) || !strncasecmp(url, "http://", 7));
}

/* The settings of the chosen kind; a missing or malformed one turns notifications off. */
static void read_settings(struct notifier *n)
{
    const struct config *c = n->wd->cfg;
    long long retry = 30;
    char *r = setting_dup(c->settings, "NOTIFIER_RETRY_SECONDS");
    if (r && parse_ll(r, 0, 3600, &retry) != 0)
        msg_fatal("NOTIFIER_RETRY_SECONDS must be an integer between 0 and 3600");
    free(r);
    n->retry_seconds = (int)retry;
    n->base_url = setting_dup(c->settings, "CALSETA_BASE_URL");
    strip_trailing_slashes(n->base_url);
    n->default_channel = setting_dup(c->settings, "APPROVAL_DEFAULT_CHANNEL");
    n->api_url = setting_dup(c->settings, "SLACK_API_URL");
    strip_trailing_slashes(n->api_url);
    if (n->kind == NOTIFY_SLACK) {
        n->token = setting_dup(c->settings, "SLACK_BOT_TOKEN");
        if (!n->token || !url_ok(n->api_url) || strlen(n->api_url) > 500) {
            msg_warn("APPROVAL_NOTIFIER=slack needs SLACK_BOT_TOKEN and an http(s) SLACK_API_URL:"
                     " notifications are off");
            n->kind = NOTIFY_NONE;
        } else if (strpbrk(n->token, "\r\n")) {
            msg_warn("SLACK_BOT_TOKEN contains a line break: notifications are off");
            n->kind = NOTIFY_NONE;
        }
    } else if (n->kind == NOTIFY_TEAMS) {
        n->webhook_url = setting_dup(c->settings, "TEAMS_WEBHOOK_URL");
        if (!url_ok(n->webhook_url)) {
            msg_warn("APPROVAL_NOTIFIER=teams needs an http(s) TEAMS_WEBHOOK_URL: notifications "
                     "are off");
            n->kind = NOTIFY_NONE;
        }
    }
}

void notifier_init(struct workflowd *wd)
{
    struct notifier *n = xcalloc(1, sizeof *n);
    n->wd = wd;
    wd->notifier = n;
    n->kind = kind_setting(wd->cfg);
    read_settings(n);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    n->multi = curluv_new(wd->loop, on_transfer_done, n);
    n->open_handles = 1;
    if (n->kind != NOTIFY_NONE)
        msg_info("approval notifications: %s (retries every %d s)", KIND_NAMES[n->kind],
                 n->retry_seconds);
}

static void on_multi_closed(void *arg)
{
    struct notifier *n = arg;
    n->open_handles--;
    maybe_free_notifier(n);
}

void notifier_free(struct workflowd *wd)
{
    struct notifier *n = wd->notifier;
    if (!n)
        return;
    wd->notifier = NULL;
    n->freed = 1;
    while (n->sends) {
        struct send *s = n->sends;
        log_fields(LOG_WARN, "approval_notification_abandoned", s, NULL);
        if (s->easy) {
            curluv_remove(n->multi, s->easy);
            curl_easy_cleanup(s->easy);
            httpc_slist_free_wiped(s->headers);
            s->easy = NULL;
        }
        send_finish(s);
    }
    curluv_close(n->multi, on_multi_closed, n);
}
