/*
 * workflows_api.c - /v1/workflows: list, create, get, patch, delete, versions, runs, and the
 * workflow secrets an admin allows; plus the module's state (workflowd client, settings) and its
 * start-up and shutdown.
 *
 * Code is checked by a runner (VALIDATE, asked through workflowd) before anything is saved:
 * invalid code is answered 400 WORKFLOW_CODE_INVALID with every error and its line; a runner or
 * a workflowd that does not answer is a 503 (nothing saved). A PATCH that changes the code keeps the old one in
 * workflow_code_versions and bumps code_version (calseta_workflow_patch, one transaction).
 * Secret values are Fernet-encrypted under ENCRYPTION_KEY and never returned.
 */
#include "workflows_api.h"

#include "audit.h"
#include "crypto.h"
#include "indicator_types.h"
#include "log.h"
#include "proto/workflow.h"
#include "settings.h"
#include "settings_table.h"
#include "util.h"
#include "workflow_client.h"

#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- shared helpers ----------------------------------------------------------------------- */

/* ---- field checks ------------------------------------------------------------------------- */

enum fkind { F_STR, F_INT, F_BOOL, F_ENUM, F_ENUMLIST, F_STRLIST, F_SECRETLIST };

struct field {
    const char *name;
    enum fkind kind;
    int nullable;
    long long min, max; /* string length or integer range */
    const char *const *set;
};

static const char *const WF_TYPES[] = {"indicator", "alert", NULL};
static const char *const STATES[] = {"draft", "active", "inactive", NULL};
static const char *const RISKS[] = {"low", "medium", "high", "critical", NULL};
static const char *const MODES[] = {"always", "agent_only", "never", NULL};

static const struct field FIELDS[] = {
    {"name", F_STR, 0, 1, 255, NULL},
    {"workflow_type", F_ENUM, 1, 0, 0, WF_TYPES},
    {"indicator_types", F_ENUMLIST, 0, 0, 0, INDICATOR_TYPES},
    {"code", F_STR, 0, 1, RUNNER_MAX_CODE_BYTES, NULL},
    {"state", F_ENUM, 0, 0, 0, STATES},
    {"timeout_seconds", F_INT, 0, 1, 3600, NULL},
    {"retry_count", F_INT, 0, 0, 10, NULL},
    {"is_active", F_BOOL, 0, 0, 0, NULL},
    {"tags", F_STRLIST, 0, 0, 255, NULL},
    {"time_saved_minutes", F_INT, 1, 0, 1000000, NULL},
    {"approval_mode", F_ENUM, 0, 0, 0, MODES},
    {"approval_channel", F_STR, 1, 0, 255, NULL},
    {"approval_timeout_seconds", F_INT, 0, 1, 30LL * 86400, NULL},
    {"risk_level", F_ENUM, 0, 0, 0, RISKS},
    {"documentation", F_STR, 1, 0, 100000, NULL},
    {"secret_names", F_SECRETLIST, 0, 0, 0, NULL},
};

static int in_set(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(s, *set))
            return 1;
    return 0;
}

/* Names of the platform's own settings can never be workflow secrets: a workflow must not be
 * able to ask for the database password or the encryption key. */
static const char *const RESERVED[] = {"DATABASE_URL", "ENCRYPTION_KEY", "SLACK_SIGNING_SECRET",
                                       "SLACK_BOT_TOKEN", "SENTINEL_WEBHOOK_SECRET",
                                       "ELASTIC_WEBHOOK_SECRET", "SPLUNK_WEBHOOK_SECRET",
                                       "CURVE_SERVER_SECRET_KEY", NULL};

/* 0 if s is a usable secret name: [A-Z][A-Z0-9_]{0,63}, not a platform setting. */
static int secret_name_ok(const char *s, size_t len)
{
    if (len < 1 || len > 64 || strlen(s) != len || !isupper((unsigned char)s[0]))
        return -1;
    for (size_t i = 0; i < len; i++)
        if (!isupper((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_')
            return -1;
    if (in_set(s, RESERVED) || !strncmp(s, "AWS_", 4) || !strncmp(s, "AZURE_", 6) ||
        !strncmp(s, "CALSETA_", 8))
        return -1;
    return 0;
}

static const char *check_string(json_t *v, const struct field *f)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) != json_string_length(v))
        return "Input should be a valid string";
    if (f->kind == F_STR &&
        ((long long)json_string_length(v) < f->min || (long long)json_string_length(v) > f->max))
        return f->min > 0 ? "String should have at least 1 character and not be too long"
                          : "String is too long";
    if (f->kind == F_ENUM && !in_set(s, f->set))
        return "Input is not one of the allowed values";
    return NULL;
}

static const char *check_list(json_t *v, const struct field *f)
{
    if (!json_is_array(v) || json_array_size(v) > 100)
        return "Input should be a valid list (at most 100 items)";
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        const char *s = json_string_value(x);
        if (!s || strlen(s) != json_string_length(x) || json_string_length(x) > 255)
            return "Input should be a list of valid strings";
        if (f->kind == F_ENUMLIST && !in_set(s, f->set))
            return "List item is not one of the allowed values";
        if (f->kind == F_SECRETLIST && secret_name_ok(s, json_string_length(x)) != 0)
            return "Secret names are 1-64 of A-Z 0-9 _ (starting with a letter) and may not be "
                   "a platform setting";
    }
    return NULL;
}

static const char *check_field(json_t *v, const struct field *f)
{
    if (json_is_null(v))
        return f->nullable ? NULL : "Input should not be null";
    switch (f->kind) {
    case F_STR:
    case F_ENUM:
        return check_string(v, f);
    case F_INT:
        if (!json_is_integer(v) || json_integer_value(v) < f->min ||
            json_integer_value(v) > f->max)
            return "Input should be an integer in the allowed range";
        return NULL;
    case F_BOOL:
        return json_is_boolean(v) ? NULL : "Input should be a valid boolean";
    default:
        return check_list(v, f);
    }
}

/* The checked fields of body as a new object, or NULL after a 422. */
static json_t *workflow_fields(struct reqctx *rc, json_t *body, int create)
{
    json_t *p = json_object();
    for (size_t i = 0; i < sizeof FIELDS / sizeof FIELDS[0]; i++) {
        const struct field *f = &FIELDS[i];
        json_t *v = json_object_get(body, f->name);
        if (!v) {
            if (create && (!strcmp(f->name, "name") || !strcmp(f->name, "code"))) {
                json_decref(p);
                reply_validation_error(rc, "value_error", "body", f->name, "Field required");
                return NULL;
            }
            continue;
        }
        const char *why = check_field(v, f);
        if (why) {
            json_decref(p);
            reply_validation_error(rc, "value_error", "body", f->name, why);
            return NULL;
        }
        json_object_set(p, f->name, v);
    }
    return p;
}

/* ---- create / patch: runner validation, then the statement ------------------------------- */

struct save_op {
    struct reqctx *rc;
    json_t *p;
    char uuid[37]; /* patch */
    int create;
};

static void save_free(struct save_op *op)
{
    json_decref(op->p);
    free(op);
}

static void on_saved(void *arg, PGresult *res, const char *err)
{
    struct save_op *op = arg;
    struct reqctx *rc = op->rc;
    if (reply_if_pg_failed(rc, res, err) != 0) {
        save_free(op);
        return;
    }
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        save_free(op);
        reply_error(rc, 404, "NOT_FOUND", "Workflow not found.", NULL);
        return;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!data)
        data = json_object();
    json_t *changed = json_object_get(data, "code_changed");
    int code_changed = op->create || json_is_true(changed);
    json_object_del(data, "code_changed");
    audit_emit(rc->in->audit, "workflow_saved", rc->req->request_id, rc->auth.key_prefix,
               rc->client_ip,
               json_pack("{s:O,s:O,s:O,s:b,s:s}", "workflow_uuid", json_object_get(data, "uuid"),
                         "name", json_object_get(data, "name"), "code_version",
                         json_object_get(data, "code_version"), "code_changed", code_changed,
                         "action", op->create ? "create" : "update"));
    int status = op->create ? 201 : 200;
    save_free(op);
    reply_data(rc, status, data);
}

static void save_commit(struct save_op *op)
{
    struct reqctx *rc = op->rc;
    char *p = json_dumps(op->p, JSON_COMPACT);
    if (op->create) {
        const char *params[1] = {p};
        pg_exec(rc->in->pg, "SELECT calseta_workflow_create($1::jsonb)::text", 1, params, on_saved,
                op);
    } else {
        const char *params[2] = {op->uuid, p};
        pg_exec(rc->in->pg, "SELECT calseta_workflow_patch($1::uuid, $2::jsonb)::text", 2, params,
                on_saved, op);
    }
    free(p);
}

static void on_validated(void *arg, const char *error, int outcome, json_t *v)
{
    struct save_op *op = arg;
    struct reqctx *rc = op->rc;
    if (!error && outcome == WF_OUT_REFUSED) {
        const char *why = json_string_value(json_object_get(v, "message"));
        save_free(op);
        reply_error(rc, 422, "VALIDATION_ERROR",
                    why ? why : "The workflow service could not read the code; nothing was saved.",
                    NULL);
        return;
    }
    if (error || outcome != WF_OUT_OK) {
        if (error)
            msg_warn("workflow code check: %s", error);
        save_free(op);
        reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                    error && strstr(error, "not reachable")
                        ? "The workflow service is not available; nothing was saved."
                        : "The workflow runner did not answer; the code could not be validated "
                          "and nothing was saved. Retry later.",
                    NULL);
        return;
    }
    if (!json_is_true(json_object_get(v, "ok"))) {
        json_t *errors = json_array(), *locs = json_array(), *e;
        size_t i;
        json_array_foreach(json_object_get(v, "errors"), i, e)
        {
            const char *m = json_string_value(json_object_get(e, "message"));
            json_array_append_new(errors, json_string(m ? m : ""));
            json_array_append_new(
                locs, json_pack("{s:I,s:s}", "line",
                                json_integer_value(json_object_get(e, "line")), "message",
                                m ? m : ""));
        }
        save_free(op);
        reply_error(rc, 400, "WORKFLOW_CODE_INVALID", "Workflow code failed validation.",
                    json_pack("{s:o,s:o}", "errors", errors, "locations", locs));
        return;
    }
    save_commit(op);
}

static void save_start(struct reqctx *rc, struct save_op *op)
{
    struct workflows *wf = rc->in->workflows;
    const char *code = json_string_value(json_object_get(op->p, "code"));
    if (!code) {
        save_commit(op);
        return;
    }
    if (!wf->wfd) {
        save_free(op);
        reply_error(rc, 503, "SERVICE_UNAVAILABLE",
                    "The workflow service is not available; nothing was saved.", NULL);
        return;
    }
    workflow_client_validate(wf->wfd, code, on_validated, op);
}

/* Creates a workflow (uuid NULL) or patches the one named uuid from the request's body. */
static void save_from_body(struct reqctx *rc, const char *uuid)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    json_t *p = workflow_fields(rc, body, uuid == NULL);
    json_decref(body);
    if (!p)
        return;
    struct save_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->p = p;
    op->create = uuid == NULL;
    if (uuid)
        memcpy(op->uuid, uuid, sizeof op->uuid);
    save_start(rc, op);
}

void route_create_workflow(struct reqctx *rc)
{
    save_from_body(rc, NULL);
}

void route_patch_workflow(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) == 0)
        save_from_body(rc, uuid);
}

void route_generate_workflow(struct reqctx *rc)
{
    reply_error(rc, 501, "NOT_IMPLEMENTED",
                "Generating workflow code with an LLM is not available in this build; write the "
                "code and POST it to /v1/workflows.",
                NULL);
}

/* ---- get / delete ------------------------------------------------------------------------- */

struct one_op {
    struct reqctx *rc;
    int del;
};

static void on_one(void *arg, PGresult *res, const char *err)
{
    struct one_op *op = arg;
    struct reqctx *rc = op->rc;
    int del = op->del;
    free(op);
    if (reply_if_pg_failed(rc, res, err) != 0)
        return;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        reply_error(rc, 404, "NOT_FOUND", "Workflow not found.", NULL);
        return;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!del) {
        reply_data(rc, 200, data ? data : json_object());
        return;
    }
    if (json_is_true(json_object_get(data, "is_system"))) {
        json_decref(data);
        reply_error(rc, 403, "FORBIDDEN", "System workflows cannot be deleted.", NULL);
        return;
    }
    audit_emit(rc->in->audit, "workflow_deleted", rc->req->request_id, rc->auth.key_prefix,
               rc->client_ip,
               json_pack("{s:O,s:O}", "workflow_uuid", json_object_get(data, "uuid"), "name",
                         json_object_get(data, "name")));
    json_decref(data);
    reply_empty(rc, 204);
}

void route_get_workflow(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    struct one_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    const char *params[1] = {uuid};
    pg_exec(rc->in->pg,
            "SELECT calseta_workflow_json(w, true)::text FROM workflows w WHERE w.uuid = $1", 1,
            params, on_one, op);
}

void route_delete_workflow(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    struct one_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    op->del = 1;
    const char *params[1] = {uuid};
    /* System workflows are kept (the row is returned, the 403 decided in C). */
    pg_exec(rc->in->pg,
            "WITH w AS (SELECT * FROM workflows WHERE uuid = $1), "
            "d AS (DELETE FROM workflows x USING w WHERE x.id = w.id AND NOT w.is_system) "
            "SELECT jsonb_build_object('uuid', w.uuid, 'name', w.name, "
            "'is_system', w.is_system)::text FROM w",
            1, params, on_one, op);
}

/* ---- lists ----------------------------------------------------------------------------- */

/* Checks a comma list against set; NULL when absent, "" after replying 422. */
static const char *list_filter(struct reqctx *rc, const char *name, const char *const *set,
                               char *out, size_t outlen)
{
    if (!query_param(rc, name, out, outlen))
        return NULL;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", out);
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!in_set(t, set)) {
            reply_validation_error(rc, "value_error", "query", name, "Invalid filter value");
            return "";
        }
    }
    return out;
}

static const char *order_clause(struct reqctx *rc)
{
    char by[32] = "created_at", dir[8] = "desc";
    query_param(rc, "sort_by", by, sizeof by);
    query_param(rc, "sort_order", dir, sizeof dir);
    int asc = !strcmp(dir, "asc");
    if (!asc && strcmp(dir, "desc"))
        return NULL;
    static const char *const cols[][3] = {
        {"name", "w.name ASC, w.id", "w.name DESC, w.id DESC"},
        {"state", "w.state ASC, w.id", "w.state DESC, w.id DESC"},
        {"risk_level",
         "CASE w.risk_level WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 ELSE 4 "
         "END ASC, w.id",
         "CASE w.risk_level WHEN 'low' THEN 1 WHEN 'medium' THEN 2 WHEN 'high' THEN 3 ELSE 4 "
         "END DESC, w.id DESC"},
        {"updated_at", "w.updated_at ASC, w.id", "w.updated_at DESC, w.id DESC"},
        {"created_at", "w.created_at ASC, w.id", "w.created_at DESC, w.id DESC"},
    };
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
        if (!strcmp(by, cols[i][0]))
            return cols[i][asc ? 1 : 2];
    return NULL;
}

void route_list_workflows(struct reqctx *rc)
{
    int page, page_size;
    char types[512], states[512], risks[512], active[16], limit[16], offset[24];
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    const char *t = list_filter(rc, "workflow_type", WF_TYPES, types, sizeof types);
    if (t && !*t)
        return;
    const char *s = list_filter(rc, "state", STATES, states, sizeof states);
    if (s && !*s)
        return;
    const char *r = list_filter(rc, "risk_level", RISKS, risks, sizeof risks);
    if (r && !*r)
        return;
    const char *a = NULL;
    if (query_param(rc, "is_active", active, sizeof active)) {
        if (strcmp(active, "true") && strcmp(active, "false")) {
            reply_validation_error(rc, "value_error", "query", "is_active", "Input should be a valid boolean");
            return;
        }
        a = active;
    }
    const char *order = order_clause(rc);
    if (!order) {
        reply_validation_error(rc, "value_error", "query", "sort_by", "Invalid sort_by or sort_order");
        return;
    }
    pagination_params(page, page_size, limit, offset);
    char *sql = xasprintf(
        "WITH base AS (SELECT calseta_workflow_json(w, false) AS j, row_number() OVER "
        "(ORDER BY %s) AS k FROM workflows w WHERE "
        "($1::text IS NULL OR w.workflow_type = ANY (string_to_array($1, ','))) AND "
        "($2::text IS NULL OR w.state = ANY (string_to_array($2, ','))) AND "
        "($3::text IS NULL OR w.risk_level = ANY (string_to_array($3, ','))) AND "
        "($4::boolean IS NULL OR w.is_active = $4::boolean)) "
        "SELECT (SELECT count(*) FROM base), (SELECT coalesce(jsonb_agg(j ORDER BY k), "
        "'[]'::jsonb)::text FROM (SELECT j, k FROM base ORDER BY k LIMIT $5 OFFSET $6) x)",
        order);
    const char *params[6] = {t, s, r, a, limit, offset};
    list_query(rc, sql, 6, params, page, page_size, "Workflow not found.", NULL);
    free(sql);
}

static const char *const RUN_STATUSES[] = {"queued", "running", "success", "failed", "timed_out",
                                           NULL};

/* $1 the workflow's uuid or NULL, $2 statuses (comma list) or NULL. */
#define RUNS_WHERE                                                                                 \
    "($1::uuid IS NULL OR r.workflow_id = (SELECT id FROM workflows WHERE uuid = $1::uuid)) AND "  \
    "($2::text IS NULL OR r.status = ANY (string_to_array($2, ',')))"

/* Runs of one workflow ($1 = its uuid) or of all (filters status, workflow_uuid). The count and
 * the page are separate reads; the page takes the sort keys of the matching runs, cuts them to
 * the page, and only then builds the page's runs (a run list grows with every alert a workflow
 * answers: building and copying every run's JSON for one page was the cost). */
static void list_runs(struct reqctx *rc, const char *wf_uuid, int must_exist)
{
    int page, page_size;
    char statuses[512], limit[16], offset[24];
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    const char *st = list_filter(rc, "status", RUN_STATUSES, statuses, sizeof statuses);
    if (st && !*st)
        return;
    pagination_params(page, page_size, limit, offset);
    const char *params[5] = {wf_uuid, st, limit, offset, must_exist ? "t" : "f"};
    list_query(rc,
                  "SELECT (SELECT count(*) FROM workflow_runs r WHERE " RUNS_WHERE "), "
                  "CASE WHEN NOT $5::boolean OR EXISTS (SELECT 1 FROM workflows WHERE uuid = "
                  "$1::uuid) THEN (SELECT coalesce(jsonb_agg(calseta_workflow_run_json(r) ORDER BY "
                  "x.created_at DESC, x.id DESC), '[]'::jsonb)::text FROM (SELECT r.created_at, "
                  "r.id FROM workflow_runs r WHERE " RUNS_WHERE " ORDER BY 1 DESC, 2 DESC "
                  "LIMIT $3 OFFSET $4) x JOIN workflow_runs r ON r.id = x.id) END",
                  5, params, page, page_size, "Workflow not found.", NULL);
}

void route_workflow_runs(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    list_runs(rc, uuid, 1);
}

void route_list_workflow_runs(struct reqctx *rc)
{
    char uuid[64];
    if (query_param(rc, "workflow_uuid", uuid, sizeof uuid)) {
        if (!crypto_uuid_valid(uuid)) {
            reply_validation_error(rc, "value_error", "query", "workflow_uuid", "Input should be a valid UUID");
            return;
        }
        list_runs(rc, uuid, 0);
        return;
    }
    list_runs(rc, NULL, 0);
}

void route_workflow_versions(struct reqctx *rc)
{
    char uuid[37], limit[16], offset[24];
    int page, page_size;
    if (require_uuid_param(rc, 0, uuid) != 0 || parse_pagination(rc, &page, &page_size) != 0)
        return;
    pagination_params(page, page_size, limit, offset);
    const char *params[3] = {uuid, limit, offset};
    list_query(rc,
                  "WITH w AS (SELECT id FROM workflows WHERE uuid = $1), "
                  "base AS (SELECT jsonb_build_object('version', v.version, 'code_preview', "
                  "left(v.code, 120), 'saved_at', calseta_ts(v.saved_at)) AS j, row_number() "
                  "OVER (ORDER BY v.version DESC, v.id DESC) AS k FROM workflow_code_versions v "
                  "JOIN w ON v.workflow_id = w.id) "
                  "SELECT (SELECT count(*) FROM base), CASE WHEN EXISTS (SELECT 1 FROM w) THEN "
                  "(SELECT coalesce(jsonb_agg(j ORDER BY k), '[]'::jsonb)::text FROM "
                  "(SELECT j, k FROM base ORDER BY k LIMIT $2 OFFSET $3) x) END",
                  3, params, page, page_size, "Workflow not found.", NULL);
}

/* ---- secrets ------------------------------------------------------------------------------ */

void route_list_workflow_secrets(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *params[1] = {uuid};
    list_query(rc,
                  "WITH w AS (SELECT * FROM workflows WHERE uuid = $1), "
                  "n AS (SELECT unnest(w.secret_names) AS name FROM w UNION "
                  "SELECT s.name FROM workflow_secrets s JOIN w ON s.workflow_id = w.id) "
                  "SELECT (SELECT count(*) FROM n), CASE WHEN EXISTS (SELECT 1 FROM w) THEN "
                  "(SELECT coalesce(jsonb_agg(jsonb_build_object('name', n.name, 'declared', "
                  "n.name = ANY (w.secret_names), 'allowed', s.id IS NOT NULL, 'updated_at', "
                  "calseta_ts(s.updated_at)) ORDER BY n.name), '[]'::jsonb)::text "
                  "FROM n CROSS JOIN w LEFT JOIN workflow_secrets s "
                  "ON s.workflow_id = w.id AND s.name = n.name) END",
                  1, params, 1, 500, "Workflow not found.", NULL);
}

struct secret_op {
    struct reqctx *rc;
    char uuid[37];
    char name[65];
    int del;
};

static void on_secret(void *arg, PGresult *res, const char *err)
{
    struct secret_op *op = arg;
    struct reqctx *rc = op->rc;
    if (reply_if_pg_failed(rc, res, err) != 0) {
        free(op);
        return;
    }
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        int del = op->del;
        free(op);
        reply_error(rc, 404, "NOT_FOUND",
                    del ? "Workflow or secret not found." : "Workflow not found.", NULL);
        return;
    }
    audit_emit(rc->in->audit, op->del ? "workflow_secret_deleted" : "workflow_secret_set",
               rc->req->request_id, rc->auth.key_prefix, rc->client_ip,
               json_pack("{s:s,s:s}", "workflow_uuid", op->uuid, "name", op->name));
    int del = op->del;
    free(op);
    if (del) {
        reply_empty(rc, 204);
        return;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    reply_data(rc, 200, data ? data : json_object());
}

static struct secret_op *secret_op_new(struct reqctx *rc)
{
    char uuid[37], name[128];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return NULL;
    path_param(rc, 1, name, sizeof name);
    if (secret_name_ok(name, strlen(name)) != 0) {
        reply_validation_error(rc, "value_error", "path", "name",
                         "Secret names are 1-64 of A-Z 0-9 _ (starting with a letter) and may "
                         "not be a platform setting");
        return NULL;
    }
    struct secret_op *op = xcalloc(1, sizeof *op);
    op->rc = rc;
    memcpy(op->uuid, uuid, sizeof op->uuid);
    snprintf(op->name, sizeof op->name, "%.64s", name); /* secret_name_ok: at most 64 */
    return op;
}

void route_put_workflow_secret(struct reqctx *rc)
{
    struct workflows *wf = rc->in->workflows;
    struct secret_op *op = secret_op_new(rc);
    if (!op)
        return;
    json_t *body = body_json_object(rc);
    if (!body) {
        free(op);
        return;
    }
    json_t *v = json_object_get(body, "value");
    const char *value = json_string_value(v);
    if (!value || json_string_length(v) < 1 || json_string_length(v) > 65536 ||
        strlen(value) != json_string_length(v)) {
        json_decref(body);
        free(op);
        reply_validation_error(rc, "value_error", "body", "value", "String should have 1 to 65536 characters");
        return;
    }
    char *token = NULL;
    if (!wf->have_key || fernet_encrypt(&wf->key, value, strlen(value), &token) != 0) {
        json_decref(body);
        free(op);
        reply_error(rc, 400, "ENCRYPTION_NOT_CONFIGURED",
                    "ENCRYPTION_KEY must be set to store workflow secrets securely. Set "
                    "ENCRYPTION_KEY in your environment and restart the service.",
                    NULL);
        return;
    }
    json_decref(body); /* jansson frees the value; the request body is wiped by its owner */
    const char *params[4] = {op->uuid, op->name, token, rc->auth.key_prefix};
    pg_exec(rc->in->pg,
            "INSERT INTO workflow_secrets AS s (workflow_id, name, value_encrypted, allowed_by) "
            "SELECT w.id, $2, $3, $4 FROM workflows w WHERE w.uuid = $1 "
            "ON CONFLICT (workflow_id, name) DO UPDATE SET value_encrypted = "
            "excluded.value_encrypted, allowed_by = excluded.allowed_by, updated_at = now() "
            "RETURNING jsonb_build_object('name', s.name, 'allowed', true, 'declared', "
            "EXISTS (SELECT 1 FROM workflows x WHERE x.id = s.workflow_id AND "
            "s.name = ANY (x.secret_names)), "
            "'updated_at', calseta_ts(s.updated_at))::text",
            4, params, on_secret, op);
    free(token);
}

void route_delete_workflow_secret(struct reqctx *rc)
{
    struct secret_op *op = secret_op_new(rc);
    if (!op)
        return;
    op->del = 1;
    const char *params[2] = {op->uuid, op->name};
    pg_exec(rc->in->pg,
            "DELETE FROM workflow_secrets s USING workflows w WHERE s.workflow_id = w.id AND "
            "w.uuid = $1 AND s.name = $2 RETURNING s.name",
            2, params, on_secret, op);
}

/* ---- module state ------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    struct workflows *wf = h->data;
    if (--wf->open_handles == 0 && wf->freed)
        free(wf);
}

static void close_handles(struct workflows *wf)
{
    if (wf->wfd) {
        workflow_client_free(wf->wfd); /* checks and tests still waiting: "stopping" (503) */
        wf->wfd = NULL;
    }
    if (uv_is_closing((uv_handle_t *)&wf->stop_wait))
        return;
    uv_close((uv_handle_t *)&wf->stop_wait, on_handle_closed);
    uv_close((uv_handle_t *)&wf->activate_retry, on_handle_closed);
    uv_close((uv_handle_t *)&wf->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&wf->sigint, on_handle_closed);
}

/* The workflowd client's socket keeps the loop alive: let it go once the database pool is gone
 * (the intake has drained), or after the drain timeout. */
static void on_stop_wait(uv_timer_t *t)
{
    struct workflows *wf = t->data;
    uint64_t waited = uv_now(wf->in->loop) - wf->stop_started_ms;
    if (wf->in->pg && waited < (uint64_t)wf->in->cfg.drain_timeout_ms + 5000)
        return;
    close_handles(wf);
}

static void begin_stop(struct workflows *wf)
{
    if (wf->stopping)
        return;
    wf->stopping = 1;
    wf->stop_started_ms = uv_now(wf->in->loop);
    uv_timer_start(&wf->stop_wait, on_stop_wait, 100, 100);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    begin_stop(s->data);
}

static int setting_int(const struct config *c, const char *name, long long min, long long max)
{
    char err[256];
    long long x;
    if (setting_ll(c->settings, name, min, max, &x, err, sizeof err))
        msg_fatal("configuration error: %s", err);
    return (int)x;
}

#define ACTIVATE_TRIES 60

static void on_activate_retry(uv_timer_t *t);

static void on_builtins_activated(void *arg, PGresult *res, const char *err)
{
    struct workflows *wf = arg;
    if (res && !err)
        return;
    /* at start the database may not answer yet: try again, the built-ins' state depends on it */
    int again = !wf->stopping && !wf->freed && ++wf->activate_tries < ACTIVATE_TRIES;
    msg_warn("built-in workflows: setting is_active failed: %s%s",
             err ? err : "database unavailable", again ? "; trying again in 1 s" : "");
    if (again)
        uv_timer_start(&wf->activate_retry, on_activate_retry, 1000, 0);
}

/* is_active of the nine built-ins follows the configuration (as in the original): the Okta ones
 * when OKTA_DOMAIN and OKTA_API_TOKEN are set, the Entra ones when ENTRA_TENANT_ID,
 * ENTRA_CLIENT_ID and ENTRA_CLIENT_SECRET are. Execute still checks only state. */
static void builtins_activate(struct intake *in)
{
    static const char *const okta[] = {"OKTA_DOMAIN", "OKTA_API_TOKEN", NULL};
    static const char *const entra[] = {"ENTRA_TENANT_ID", "ENTRA_CLIENT_ID",
                                        "ENTRA_CLIENT_SECRET", NULL};
    const char *const *sets[2] = {okta, entra};
    const char *params[2] = {"t", "t"};
    for (int i = 0; i < 2; i++)
        for (const char *const *n = sets[i]; *n; n++) {
            const char *v = in->cfg.settings ? settings_get(in->cfg.settings, *n) : NULL;
            if (!v || !*v)
                params[i] = "f";
        }
    if (in->pg)
        pg_exec(in->pg, "SELECT calseta_builtin_workflows_activate($1::boolean, $2::boolean)",
                2, params, on_builtins_activated, in->workflows);
}

static void on_activate_retry(uv_timer_t *t)
{
    struct workflows *wf = t->data;
    builtins_activate(wf->in);
}

void workflows_api_init(struct intake *in)
{
    char err[256];
    struct workflows *wf = xcalloc(1, sizeof *wf);
    wf->in = in;
    in->workflows = wf;
    wf->wfd = workflow_client_new(in->loop, &in->cfg, err, sizeof err);
    if (!wf->wfd)
        msg_warn("%s (WORKFLOW_REQUEST_ENDPOINT=%s): workflow code checks and tests answer 503",
                 err, in->cfg.workflow_endpoint);
    wf->have_key = in->cfg.encryption_key && *in->cfg.encryption_key &&
                   fernet_key_parse(in->cfg.encryption_key, &wf->key) == 0;
    wf->slack_signing_secret = setting_dup(in->cfg.settings, "SLACK_SIGNING_SECRET");
    wf->base_url = setting_dup(in->cfg.settings, "CALSETA_BASE_URL");
    wf->approval_default_timeout =
        setting_int(&in->cfg, "APPROVAL_DEFAULT_TIMEOUT_SECONDS", 1, 30LL * 86400);
    if (!wf->slack_signing_secret)
        msg_info("SLACK_SIGNING_SECRET is not set: Slack approval callbacks are refused (403)");
    uv_timer_init(in->loop, &wf->stop_wait);
    uv_timer_init(in->loop, &wf->activate_retry);
    uv_signal_init(in->loop, &wf->sigterm);
    uv_signal_init(in->loop, &wf->sigint);
    wf->stop_wait.data = wf->sigterm.data = wf->sigint.data = wf->activate_retry.data = wf;
    wf->open_handles = 4;
    uv_unref((uv_handle_t *)&wf->activate_retry);
    builtins_activate(in);
    uv_signal_start(&wf->sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&wf->sigint, on_stop_signal, SIGINT);
    uv_unref((uv_handle_t *)&wf->sigterm);
    uv_unref((uv_handle_t *)&wf->sigint);
    uv_unref((uv_handle_t *)&wf->stop_wait);
}

void workflows_api_free(struct intake *in)
{
    struct workflows *wf = in->workflows;
    if (!wf)
        return;
    in->workflows = NULL;
    close_handles(wf);
    if (wf->slack_signing_secret) {
        explicit_bzero(wf->slack_signing_secret, strlen(wf->slack_signing_secret));
        free(wf->slack_signing_secret);
    }
    free(wf->base_url);
    explicit_bzero(&wf->key, sizeof wf->key);
    wf->freed = 1;
    if (wf->open_handles == 0)
        free(wf);
}
