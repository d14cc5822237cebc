/*
 * agents_api.c - /v1/agents: list, create, get, patch, delete, rotate-secret, runs, test; and
 * the alert routes that queue deliveries (trigger-agents, dispatch-agent).
 *
 * Save: the body is validated (reference ranges; header names that would replace Host,
 * Content-Type, Content-Length, Transfer-Encoding, Connection or an X-Calseta-* header are
 * refused; trigger_filter must be valid targeting rules), the endpoint goes through the SSRF
 * guard on the thread pool (it resolves), then the header value and the signing secret are
 * encrypted under ENCRYPTION_KEY and the row is written. PATCH checks the header name/value
 * pair on the row as it will be (400, not a constraint violation). The signing secret is shown
 * once: in the create and rotate-secret answers.
 *
 * Deliveries are rows in agent_deliveries that calseta-dispatcher claims; the intake only
 * inserts them. POST /v1/agents/{uuid}/test inserts a test delivery and waits (bounded) for
 * its result, woken by the NOTIFY the dispatcher's completing transaction sends.
 */
#include "agents_api.h"
#include "catalogue.h"
#include "crypto.h"
#include "fernet.h"
#include "guard.h"
#include "log.h"
#include "settings.h"
#include "targeting.h"
#include "util.h"
#include "settings_table.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TEST_WAIT_GRACE_SECONDS 10

struct test_wait;

struct agents_api {
    struct intake *in;
    struct guard *guard;
    int have_key;
    char key[64];
    long long secret_overlap_s;
    struct test_wait *waits;
};

static struct agents_api *api(struct reqctx *rc)
{
    return rc->in->agents;
}

static void on_test_notify(void *arg, const char *channel, const char *payload);

void agents_api_init(struct intake *in)
{
    struct agents_api *a = xcalloc(1, sizeof *a);
    a->in = in;
    const struct settings *s = in->cfg.settings;
    char err[256];
    int loopback;
    if (setting_bool(s, "AGENT_WEBHOOK_ALLOW_LOOPBACK", &loopback, err, sizeof err))
        msg_fatal("configuration error: %s", err);
    a->guard = guard_new(in->cfg.ssrf_allowed_hosts, loopback);
    if (setting_ll(s, "AGENT_SECRET_OVERLAP_SECONDS", 0, 30LL * 86400, &a->secret_overlap_s, err,
                   sizeof err))
        msg_fatal("configuration error: %s", err);
    const char *k = in->cfg.encryption_key;
    struct fernet_key fk;
    if (k && *k && strlen(k) < sizeof a->key && fernet_key_parse(k, &fk) == 0) {
        a->have_key = 1;
        memcpy(a->key, k, strlen(k) + 1);
    }
    explicit_bzero(&fk, sizeof fk);
    in->agents = a;
    pg_pool_listen(in->pg, "calseta_agent_test", on_test_notify, a);
}

void agents_api_free(struct intake *in)
{
    struct agents_api *a = in->agents;
    if (!a)
        return;
    guard_free(a->guard);
    explicit_bzero(a->key, sizeof a->key);
    free(a);
    in->agents = NULL;
}

/* ---- validation ---------------------------------------------------------------------------- */

static int int_in(json_t *v, long long lo, long long hi)
{
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

/* NULL if the header name may be sent, else why not. */
static const char *header_name_problem(const char *n)
{
    static const char *const reserved[] = {"host", "content-type", "content-length",
                                           "transfer-encoding", "connection", "expect", NULL};
    if (!*n || strlen(n) > 256)
        return "auth_header_name must be 1 to 256 characters";
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
            return "auth_header_name must be an HTTP header name (letters, digits and "
                   "!#$%&'*+-.^_`|~)";
    for (int i = 0; reserved[i]; i++)
        if (!strcasecmp(n, reserved[i]))
            return "auth_header_name may not replace Host, Content-Type, Content-Length, "
                   "Transfer-Encoding, Connection or Expect";
    if (!strncasecmp(n, "x-calseta-", 10))
        return "auth_header_name may not replace the X-Calseta-* delivery and signature headers";
    return NULL;
}

/* Checks the body (create: required fields and the pair rule); replies 422 and returns -1 on
 * a problem. Null values of a patch mean "unchanged" and are removed. */
static int validate_agent(struct reqctx *rc, json_t *b, int create)
{
    const char *k;
    json_t *v;
    void *tmp;
    const char *field = NULL, *msg = NULL;
    char why[1024];
    if (!create)
        json_object_foreach_safe(b, tmp, k, v) if (json_is_null(v)) json_object_del(b, k);
    if (create && !json_object_get(b, "name")) {
        field = "name", msg = "Field required";
    } else if (create && !json_object_get(b, "endpoint_url")) {
        field = "endpoint_url", msg = "Field required";
    } else if ((v = json_object_get(b, "name")) &&
               (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 255)) {
        field = "name", msg = "String should have 1 to 255 characters";
    } else if ((v = json_object_get(b, "endpoint_url")) &&
               (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > 2048)) {
        field = "endpoint_url", msg = "Input should be a URL of at most 2048 characters";
    } else if ((v = json_object_get(b, "description")) && !json_is_string(v) && !json_is_null(v)) {
        field = "description", msg = "Input should be a valid string";
    } else if ((v = json_object_get(b, "documentation")) && !json_is_string(v) &&
               !json_is_null(v)) {
        field = "documentation", msg = "Input should be a valid string";
    } else if ((v = json_object_get(b, "auth_header_name")) && !json_is_null(v) &&
               (!json_is_string(v) || (msg = header_name_problem(json_string_value(v))))) {
        field = "auth_header_name";
        if (!msg)
            msg = "Input should be a valid string";
    } else if ((v = json_object_get(b, "auth_header_value")) && !json_is_null(v) &&
               (!json_is_string(v) || json_string_length(v) > 8192 ||
                strpbrk(json_string_value(v), "\r\n") ||
                strlen(json_string_value(v)) != json_string_length(v))) {
        field = "auth_header_value",
        msg = "auth_header_value must be a string of at most 8192 characters without line breaks";
    } else if ((v = json_object_get(b, "trigger_on_sources")) && !is_string_list(v)) {
        field = "trigger_on_sources", msg = "Input should be a valid list of strings";
    } else if ((v = json_object_get(b, "trigger_on_severities")) && !is_string_list(v)) {
        field = "trigger_on_severities", msg = "Input should be a valid list of strings";
    } else if ((v = json_object_get(b, "trigger_filter")) && !json_is_null(v) &&
               targeting_validate(v, "trigger_filter", why, sizeof why) != 0) {
        field = "trigger_filter", msg = why;
    } else if ((v = json_object_get(b, "timeout_seconds")) && !int_in(v, 1, 300)) {
        field = "timeout_seconds", msg = "Input should be an integer between 1 and 300";
    } else if ((v = json_object_get(b, "retry_count")) && !int_in(v, 0, 10)) {
        field = "retry_count", msg = "Input should be an integer between 0 and 10";
    } else if ((v = json_object_get(b, "is_active")) && !json_is_boolean(v)) {
        field = "is_active", msg = "Input should be a valid boolean";
    } else if (create) {
        json_t *n = json_object_get(b, "auth_header_name"), *val = json_object_get(b,
                                                                               "auth_header_value");
        if ((n && !json_is_null(n)) != (val && !json_is_null(val)))
            field = "auth_header_name",
            msg = "Value error, auth_header_name and auth_header_value must both be provided or "
                  "both be omitted";
    }
    if (!field)
        return 0;
    reply_validation_error(rc, "value_error", "body", field, msg);
    return -1;
}

/* ---- secrets -------------------------------------------------------------------------------- */

static int encrypt_text(struct agents_api *a, const char *plain, char **token)
{
    struct fernet_key k;
    if (!a->have_key || fernet_key_parse(a->key, &k) != 0)
        return -1;
    int r = fernet_encrypt(&k, plain, strlen(plain), token);
    explicit_bzero(&k, sizeof k);
    return r;
}

static void no_key(struct reqctx *rc)
{
    reply_error(rc, 400, "ENCRYPTION_NOT_CONFIGURED",
                "ENCRYPTION_KEY is not set. Cannot store agent secrets (auth_header_value, the "
                "webhook signing secret) securely. Set ENCRYPTION_KEY in your environment and "
                "restart the service.",
                NULL);
}

/* A fresh signing secret "whsec_" + 43 base64url characters (32 random bytes). */
static void new_secret(char out[64])
{
    uint8_t raw[32];
    crypto_random(raw, sizeof raw);
    memcpy(out, "whsec_", 6);
    crypto_b64_encode(raw, sizeof raw, CRYPTO_B64_URL | CRYPTO_B64_NOPAD, out + 6);
    explicit_bzero(raw, sizeof raw);
}

/* ---- create and patch -------------------------------------------------------------------- */

struct save_op {
    struct reqctx *rc;
    json_t *body;
    char uuid[37];
    int create;
    int blocked;
    char reason[300];
    uv_work_t work;
};

static void save_free(struct save_op *op)
{
    json_decref(op->body);
    free(op);
}

static void do_ssrf(uv_work_t *w)
{
    struct save_op *op = w->data;
    const char *url = json_string_value(json_object_get(op->body, "endpoint_url"));
    if (guard_check(op->rc->in->agents->guard, url, NULL, op->reason, sizeof op->reason) != 0)
        op->blocked = 1;
}

/* Create and rotate-secret: the agent's JSON plus the signing secret, shown this once. */
struct created {
    struct reqctx *rc;
    int status;
    char secret[64];
};

/* A fresh signing secret for an answer of `status`, and its encryption for the row in *token
 * (caller frees). NULL, with the 400 answered, when no ENCRYPTION_KEY can encrypt it. */
static struct created *created_new(struct reqctx *rc, struct agents_api *a, int status,
                                   char **token)
{
    struct created *c = xcalloc(1, sizeof *c);
    c->rc = rc;
    c->status = status;
    new_secret(c->secret);
    *token = NULL;
    if (encrypt_text(a, c->secret, token) != 0) {
        explicit_bzero(c->secret, sizeof c->secret);
        free(c);
        no_key(rc);
        return NULL;
    }
    return c;
}

static void on_created(void *arg, PGresult *res, const char *err)
{
    struct created *c = arg;
    struct reqctx *rc = c->rc;
    if (reply_if_no_row(rc, res, err, "Agent not found.") == 0) {
        json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        json_object_set_new(data, "webhook_secret", json_string(c->secret));
        reply_data(rc, c->status, data);
    }
    explicit_bzero(c->secret, sizeof c->secret);
    free(c);
}

struct patched {
    struct reqctx *rc;
};

static void on_patched(void *arg, PGresult *res, const char *err)
{
    struct patched *p = arg;
    struct reqctx *rc = p->rc;
    free(p);
    if (reply_if_pg_failed(rc, res, err))
        return;
    if (atoi(PQgetvalue(res, 0, 0)) == 0) {
        reply_error(rc, 404, "NOT_FOUND", "Agent not found.", NULL);
    } else if (PQgetisnull(res, 0, 1)) {
        reply_error(rc, 400, "VALIDATION_ERROR",
                    "auth_header_name and auth_header_value must both be set or both be absent; "
                    "this change would leave only one of them.",
                    NULL);
    } else {
        json_t *data = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
        reply_data(rc, 200, data ? data : json_object());
    }
}

static const char AGENT_COLUMNS_SET[] =
    "name = coalesce(p->>'name', g.name), "
    "description = coalesce(p->>'description', g.description), "
    "endpoint_url = coalesce(p->>'endpoint_url', g.endpoint_url), "
    "auth_header_name = coalesce(p->>'auth_header_name', g.auth_header_name), "
    "auth_header_value_encrypted = coalesce(p->>'auth_header_value_encrypted', "
    "g.auth_header_value_encrypted), "
    "trigger_on_sources = CASE WHEN p ? 'trigger_on_sources' THEN ARRAY(SELECT "
    "jsonb_array_elements_text(p->'trigger_on_sources')) ELSE g.trigger_on_sources END, "
    "trigger_on_severities = CASE WHEN p ? 'trigger_on_severities' THEN ARRAY(SELECT "
    "jsonb_array_elements_text(p->'trigger_on_severities')) ELSE g.trigger_on_severities END, "
    "trigger_filter = coalesce(p->'trigger_filter', g.trigger_filter), "
    "timeout_seconds = coalesce((p->>'timeout_seconds')::int, g.timeout_seconds), "
    "retry_count = coalesce((p->>'retry_count')::int, g.retry_count), "
    "is_active = coalesce((p->>'is_active')::boolean, g.is_active), "
    "documentation = coalesce(p->>'documentation', g.documentation), updated_at = now()";

static void save_write(struct save_op *op)
{
    struct reqctx *rc = op->rc;
    struct agents_api *a = api(rc);
    json_t *val = json_object_get(op->body, "auth_header_value");
    if (val && json_is_string(val)) {
        char *token = NULL;
        if (encrypt_text(a, json_string_value(val), &token) != 0) {
            no_key(rc);
            save_free(op);
            return;
        }
        json_object_set_new(op->body, "auth_header_value_encrypted", json_string(token));
        free(token);
    }
    json_object_del(op->body, "auth_header_value"); /* never sent to the database in clear */
    if (op->create) {
        char *token;
        struct created *c = created_new(rc, a, 201, &token);
        if (!c) {
            save_free(op);
            return;
        }
        json_object_set_new(op->body, "webhook_secret_encrypted", json_string(token));
        free(token);
        char *doc = json_dumps(op->body, JSON_COMPACT);
        const char *p[1] = {doc};
        pg_exec(rc->in->pg,
                "INSERT INTO agent_registrations (name, description, endpoint_url, "
                "auth_header_name, auth_header_value_encrypted, trigger_on_sources, "
                "trigger_on_severities, trigger_filter, timeout_seconds, retry_count, is_active, "
                "documentation, webhook_secret_encrypted) "
                "SELECT p->>'name', p->>'description', p->>'endpoint_url', p->>'auth_header_name', "
                "p->>'auth_header_value_encrypted', "
                "ARRAY(SELECT jsonb_array_elements_text(coalesce(p->'trigger_on_sources', '[]'))), "
                "ARRAY(SELECT jsonb_array_elements_text(coalesce(p->'trigger_on_severities', "
                "'[]'))), CASE WHEN jsonb_typeof(p->'trigger_filter') = 'object' THEN "
                "p->'trigger_filter' END, coalesce((p->>'timeout_seconds')::int, 30), "
                "coalesce((p->>'retry_count')::int, 3), coalesce((p->>'is_active')::boolean, true), "
                "p->>'documentation', p->>'webhook_secret_encrypted' "
                "FROM (SELECT $1::jsonb AS p) x "
                "RETURNING calseta_agent_json(agent_registrations)::text",
                1, p, on_created, c);
        free(doc);
        save_free(op);
        return;
    }
    char *doc = json_dumps(op->body, JSON_COMPACT);
    const char *p[2] = {op->uuid, doc};
    char *sql = xasprintf(
        "WITH cur AS (SELECT * FROM agent_registrations WHERE uuid = $1 FOR UPDATE), "
        "upd AS (UPDATE agent_registrations g SET %s FROM cur, (SELECT $2::jsonb AS p) x "
        "WHERE g.id = cur.id AND ((coalesce(p->>'auth_header_name', cur.auth_header_name) IS "
        "NULL) = (coalesce(p->>'auth_header_value_encrypted', cur.auth_header_value_encrypted) "
        "IS NULL)) RETURNING calseta_agent_json(g) AS j) "
        "SELECT (SELECT count(*) FROM cur), (SELECT j FROM upd)::text",
        AGENT_COLUMNS_SET);
    struct patched *pt = xcalloc(1, sizeof *pt);
    pt->rc = rc;
    pg_exec(rc->in->pg, sql, 2, p, on_patched, pt);
    free(sql);
    free(doc);
    save_free(op);
}

static void after_ssrf(uv_work_t *w, int status)
{
    struct save_op *op = w->data;
    if (status != 0 || op->blocked) {
        char msg[400];
        snprintf(msg, sizeof msg, "endpoint_url blocked by SSRF protection: %s",
                 status ? "check cancelled" : op->reason);
        reply_error(op->rc, 400, "INVALID_ENDPOINT_URL", msg, NULL);
        save_free(op);
        return;
    }
    save_write(op);
}

static void save_start(struct reqctx *rc, int create)
{
    struct save_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->create = create;
    if (!create && require_uuid_param(rc, 0, op->uuid) != 0) {
        free(op);
        return;
    }
    op->body = body_json_object(rc);
    if (!op->body || validate_agent(rc, op->body, create) != 0) {
        save_free(op);
        return;
    }
    if (json_object_get(op->body, "endpoint_url")) {
        op->work.data = op;
        uv_queue_work(rc->in->loop, &op->work, do_ssrf, after_ssrf);
        return;
    }
    save_write(op);
}

void route_create_agent(struct reqctx *rc)
{
    save_start(rc, 1);
}

void route_patch_agent(struct reqctx *rc)
{
    save_start(rc, 0);
}

/* ---- read, delete, rotate ------------------------------------------------------------------ */

void route_list_agents(struct reqctx *rc)
{
    int page, page_size;
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    char lim[16], off[24];
    pagination_params(page, page_size, lim, off);
    const char *p[2] = {lim, off};
    list_query(rc,
               "SELECT (SELECT count(*) FROM agent_registrations), coalesce((SELECT jsonb_agg("
               "calseta_agent_json(g) ORDER BY g.created_at DESC, g.id DESC) FROM (SELECT * FROM "
               "agent_registrations ORDER BY created_at DESC, id DESC LIMIT $1::int OFFSET "
               "$2::bigint) g), '[]'::jsonb)::text",
               2, p, page, page_size, "Agent not found.", NULL);
}

void route_get_agent(struct reqctx *rc)
{
    cat_exec_uuid(rc,
                  "SELECT calseta_agent_json(g)::text FROM agent_registrations g WHERE g.uuid = $1",
                  200, "Agent not found.");
}

void route_delete_agent(struct reqctx *rc)
{
    cat_exec_uuid(rc, "DELETE FROM agent_registrations WHERE uuid = $1 RETURNING '{}'", 204,
                  "Agent not found.");
}

void route_rotate_agent_secret(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    struct agents_api *a = api(rc);
    char *token;
    struct created *c = created_new(rc, a, 200, &token);
    if (!c)
        return;
    char overlap[24];
    snprintf(overlap, sizeof overlap, "%lld", a->secret_overlap_s);
    const char *p[3] = {uuid, token, overlap};
    pg_exec(rc->in->pg,
            "UPDATE agent_registrations g SET previous_webhook_secret_encrypted = "
            "g.webhook_secret_encrypted, previous_secret_expires_at = CASE WHEN "
            "g.webhook_secret_encrypted IS NULL THEN NULL ELSE now() + make_interval(secs => "
            "$3::int) END, webhook_secret_encrypted = $2, updated_at = now() WHERE g.uuid = $1 "
            "RETURNING calseta_agent_json(g)::text",
            3, p, on_created, c);
    free(token);
}

void route_agent_runs(struct reqctx *rc)
{
    char uuid[37];
    int page, page_size;
    if (require_uuid_param(rc, 0, uuid) != 0 || parse_pagination(rc, &page, &page_size) != 0)
        return;
    char lim[16], off[24];
    pagination_params(page, page_size, lim, off);
    const char *p[3] = {uuid, lim, off};
    list_query(
        rc,
        "SELECT (SELECT count(*) FROM agent_runs r WHERE r.agent_registration_id = g.id), "
        "coalesce((SELECT jsonb_agg(x.j ORDER BY x.id DESC) FROM (SELECT r.id, jsonb_build_object("
        "'uuid', r.uuid, 'alert_uuid', (SELECT a.uuid FROM alerts a WHERE a.id = r.alert_id), "
        "'delivery_id', r.delivery_uuid, 'status', r.status, 'attempt_count', r.attempt_count, "
        "'response_status_code', r.response_status_code, 'response_body', r.response_body, "
        "'response_truncated', r.response_truncated, 'error', r.error, "
        "'duration_ms', r.duration_ms, 'started_at', r.started_at, "
        "'completed_at', r.completed_at, 'created_at', calseta_ts(r.created_at)) AS j "
        "FROM agent_runs r WHERE r.agent_registration_id = g.id ORDER BY r.id DESC "
        "LIMIT $2::int OFFSET $3::bigint) x), '[]'::jsonb)::text "
        "FROM agent_registrations g WHERE g.uuid = $1",
        3, p, page, page_size, "Agent not found.", NULL);
}

/* ---- test delivery ----------------------------------------------------------------------- */

struct test_wait {
    struct agents_api *a;
    struct reqctx *rc;
    char delivery[37];
    uint64_t deadline_ms;
    uv_timer_t timer;
    int replied;
    int checking;
    struct test_wait *next;
};

static void wait_closed(uv_handle_t *h)
{
    free(h->data);
}

static void wait_finish(struct test_wait *w, json_t *result)
{
    struct test_wait **pp = &w->a->waits;
    while (*pp && *pp != w)
        pp = &(*pp)->next;
    if (*pp)
        *pp = w->next;
    w->replied = 1;
    reply_data(w->rc, 200, result);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, wait_closed);
}

static void on_test_retired(void *arg, PGresult *res, const char *err)
{
    (void)arg;
    if (!res || err)
        msg_warn("agents: an unanswered test delivery could not be retired: %s",
                 err ? err : "no result");
}

static void on_test_result(void *arg, PGresult *res, const char *err)
{
    struct test_wait *w = arg;
    w->checking = 0;
    if (w->replied)
        return;
    if (!err && res && PQntuples(res) && !PQgetisnull(res, 0, 0)) {
        json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
        wait_finish(w, r ? r : json_object());
        return;
    }
    if (now_mono_ms() >= w->deadline_ms) {
        /* Nobody delivered in time: a dispatcher that claims it later must not send it. */
        const char *p[1] = {w->delivery};
        pg_exec(w->a->in->pg,
                "UPDATE agent_deliveries SET status = 'failed', completed_at = now(), "
                "updated_at = now(), last_error = 'no dispatcher answered in time' "
                "WHERE uuid = $1 AND status = 'pending'",
                1, p, on_test_retired, NULL);
        wait_finish(w, json_pack("{s:b,s:n,s:i,s:s}", "delivered", 0, "status_code",
                                 "duration_ms", 0, "error",
                                 "No dispatcher delivered the test in time (is "
                                 "calseta-dispatcher running?)"));
    }
}

static void wait_check(struct test_wait *w)
{
    if (w->replied || w->checking)
        return;
    w->checking = 1;
    const char *p[1] = {w->delivery};
    pg_exec(w->a->in->pg, "SELECT result::text FROM agent_deliveries WHERE uuid = $1", 1, p,
            on_test_result, w);
}

static void on_wait_timer(uv_timer_t *t)
{
    wait_check(t->data);
}

static void on_test_notify(void *arg, const char *channel, const char *payload)
{
    struct agents_api *a = arg;
    (void)channel;
    for (struct test_wait *w = a->waits; w; w = w->next)
        if (!payload || !strcmp(payload, w->delivery))
            wait_check(w);
}

static void on_test_queued(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (reply_if_no_row(rc, res, err, "Agent not found."))
        return;
    struct agents_api *a = api(rc);
    struct test_wait *w = xcalloc(1, sizeof *w);
    w->a = a;
    w->rc = rc;
    snprintf(w->delivery, sizeof w->delivery, "%s", PQgetvalue(res, 0, 0));
    w->deadline_ms = now_mono_ms() + (uint64_t)atoi(PQgetvalue(res, 0, 1)) * 1000 +
                     TEST_WAIT_GRACE_SECONDS * 1000;
    uv_timer_init(rc->in->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_wait_timer, 1000, 1000);
    w->next = a->waits;
    a->waits = w;
}

void route_test_agent(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *p[2] = {uuid, setting_value(rc->in->cfg.settings, "CALSETA_API_BASE_URL")};
    pg_exec(rc->in->pg,
            "WITH g AS (SELECT * FROM agent_registrations WHERE uuid = $1), "
            "ins AS (INSERT INTO agent_deliveries (agent_id, kind, trigger, max_attempts, "
            "deadline_at, payload) SELECT g.id, 'test', 'test', 1, now() + make_interval(secs => "
            "g.timeout_seconds + 10), jsonb_build_object('test', true, 'alert', "
            "jsonb_build_object('uuid', '00000000-0000-0000-0000-000000000000', 'title', "
            "'Calseta — Test Webhook', 'severity', 'Low', 'status', 'Open', 'source_name', g.name, "
            "'occurred_at', calseta_isots(now()), 'ingested_at', calseta_isots(now()), "
            "'is_enriched', false, 'tags', jsonb_build_array('test')), 'indicators', '[]'::jsonb, "
            "'detection_rule', NULL, 'context_documents', '[]'::jsonb, 'workflows', '[]'::jsonb, "
            "'calseta_api_base_url', $2::text, '_metadata', jsonb_build_object('generated_at', "
            "calseta_isots(now()), 'alert_source', g.name, 'indicator_count', 0, 'enrichment', "
            "jsonb_build_object('succeeded', '[]'::jsonb, 'failed', '[]'::jsonb, 'enriched_at', "
            "NULL), 'detection_rule_matched', false, 'context_documents_applied', 0)) FROM g "
            "RETURNING uuid) "
            "SELECT ins.uuid, (SELECT timeout_seconds FROM g), "
            "pg_notify('calseta_agent_deliveries', '') FROM ins",
            2, p, on_test_queued, rc);
}

/* ---- alert routes that queue deliveries ------------------------------------------------------ */

void route_trigger_agents(struct reqctx *rc)
{
    cat_exec_uuid(rc,
                  "SELECT (SELECT jsonb_build_object('queued_agent_count', count(*), "
                  "'agent_names', coalesce(jsonb_agg(e.agent_name ORDER BY e.n), '[]'::jsonb)) "
                  "FROM calseta_agent_enqueue(a.id, NULL, 'trigger_agents', NULL) WITH "
                  "ORDINALITY AS e(agent_uuid, agent_name, delivery_uuid, n))::text FROM alerts a "
                  "WHERE a.uuid = $1",
                  202, "Alert not found.");
}

static void on_dispatch(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (reply_if_pg_failed(rc, res, err))
        return;
    if (PQgetisnull(res, 0, 0)) {
        reply_error(rc, 404, "NOT_FOUND", "Alert not found.", NULL);
    } else if (PQgetisnull(res, 0, 1)) {
        reply_error(rc, 404, "NOT_FOUND", "Agent not found.", NULL);
    } else if (strcmp(PQgetvalue(res, 0, 3), "t")) {
        char msg[400];
        snprintf(msg, sizeof msg, "Agent '%.300s' is inactive.", PQgetvalue(res, 0, 2));
        reply_error(rc, 422, "AGENT_INACTIVE", msg, NULL);
    } else {
        reply_data(rc, 202,
                   json_pack("{s:s,s:s,s:s}", "agent_uuid", PQgetvalue(res, 0, 1), "agent_name",
                             PQgetvalue(res, 0, 2), "alert_uuid", PQgetvalue(res, 0, 0)));
    }
}

void route_dispatch_agent(struct reqctx *rc)
{
    char uuid[37], agent[64];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    if (!query_param(rc, "agent_uuid", agent, sizeof agent)) {
        reply_validation_error(rc, "missing", "query", "agent_uuid", "Field required");
        return;
    }
    if (!crypto_uuid_valid(agent)) {
        reply_validation_error(rc, "uuid_parsing", "query", "agent_uuid",
                               "Input should be a valid UUID");
        return;
    }
    for (char *c = agent; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    const char *p[2] = {uuid, agent};
    pg_exec(rc->in->pg,
            "WITH a AS (SELECT id, uuid FROM alerts WHERE uuid = $1), "
            "g AS (SELECT id, uuid, name, is_active FROM agent_registrations WHERE uuid = $2), "
            "q AS (SELECT e.* FROM a, g, calseta_agent_enqueue(a.id, g.id, 'dispatch_agent', "
            "NULL) e WHERE g.is_active) "
            "SELECT (SELECT uuid FROM a), (SELECT uuid FROM g), (SELECT name FROM g), "
            "(SELECT is_active FROM g), (SELECT count(*) FROM q)",
            2, p, on_dispatch, rc);
}
