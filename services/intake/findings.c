/*
 * findings.c - agent findings on alerts: POST/GET /v1/alerts/{uuid}/findings and the shared
 * check-and-append used by the MCP tool post_alert_finding (one implementation, two front ends).
 *
 * Findings live in alerts.agent_findings (a JSONB array). An append is one UPDATE in
 * calseta_finding_add (migration 0017): the row lock serialises concurrent posts, so none is
 * lost (the original's read-modify-write lost updates), and alert_finding_added is written in
 * the same statement.
 */
#include "findings.h"
#include "catalogue.h"
#include "crypto.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define AGENT_NAME_MAX 255
#define SUMMARY_MAX 50000
#define ACTION_MAX 50000
#define EVIDENCE_MAX 65536

/* Characters (not bytes) of a valid UTF-8 string: the length limits count characters. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int utf8_len_ok(json_t *v, size_t min, size_t max)
{
    const char *s = json_string_value(v);
    if (!s || strlen(s) != json_string_length(v))
        return 0;
    size_t n = utf8_chars(s);
    return n >= min && n <= max;
}

int finding_check(json_t *body, int confidence_required, json_t **out, const char **field,
                  char *msg, size_t msglen)
{
    json_t *name = json_object_get(body, "agent_name");
    json_t *summary = json_object_get(body, "summary");
    json_t *conf = json_object_get(body, "confidence");
    json_t *action = json_object_get(body, "recommended_action");
    json_t *evidence = json_object_get(body, "evidence");
    *out = NULL;
    if (!name || !utf8_len_ok(name, 1, AGENT_NAME_MAX)) {
        *field = "agent_name";
        snprintf(msg, msglen, "agent_name must be a string of 1 to %d characters",
                 AGENT_NAME_MAX);
        return -1;
    }
    if (!summary || !utf8_len_ok(summary, 1, SUMMARY_MAX)) {
        *field = "summary";
        snprintf(msg, msglen, "summary must be a string of 1 to %d characters", SUMMARY_MAX);
        return -1;
    }
    if (conf && json_is_null(conf))
        conf = NULL;
    if (conf || confidence_required) {
        const char *c = json_string_value(conf);
        if (!c || (strcmp(c, "low") && strcmp(c, "medium") && strcmp(c, "high"))) {
            *field = "confidence";
            snprintf(msg, msglen,
                     "Invalid confidence '%.40s'. Must be one of: ['high', 'low', 'medium']",
                     c ? c : "");
            return -1;
        }
    }
    if (action && json_is_null(action))
        action = NULL;
    if (action && !utf8_len_ok(action, 0, ACTION_MAX)) {
        *field = "recommended_action";
        snprintf(msg, msglen, "recommended_action must be a string of at most %d characters",
                 ACTION_MAX);
        return -1;
    }
    if (evidence && json_is_null(evidence))
        evidence = NULL;
    if (evidence) {
        if (!json_is_object(evidence)) {
            *field = "evidence";
            snprintf(msg, msglen, "evidence must be an object");
            return -1;
        }
        char *d = json_dumps(evidence, JSON_COMPACT | JSON_ENSURE_ASCII);
        size_t n = d ? strlen(d) : 0;
        free(d);
        if (n > EVIDENCE_MAX) {
            *field = "evidence";
            snprintf(msg, msglen,
                     "Value error, evidence exceeds maximum size of 64 KB (%zu bytes serialized)",
                     n);
            return -1;
        }
    }
    *out = json_pack("{s:O,s:O,s:O,s:O,s:O}", "agent_name", name, "summary", summary,
                     "confidence", conf ? conf : json_null(), "recommended_action",
                     action ? action : json_null(), "evidence",
                     evidence ? evidence : json_null());
    return 0;
}

int finding_add(struct intake *in, const char *alert_uuid, json_t *finding,
                const char *actor_type, const char *actor, pg_result_cb cb, void *arg)
{
    char *doc = json_dumps(finding, JSON_COMPACT);
    const char *p[4] = {alert_uuid, doc, actor_type, actor};
    int r = pg_exec(in->pg, "SELECT calseta_finding_add($1::uuid, $2::jsonb, $3, $4)::text", 4,
                    p, cb, arg);
    free(doc);
    return r;
}

/* ---- REST ----------------------------------------------------------------------------------- */

void route_post_finding(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    json_t *f;
    const char *field;
    char msg[160];
    if (finding_check(body, 0, &f, &field, msg, sizeof msg) != 0) {
        json_decref(body);
        reply_validation_error(rc, "value_error", "body", field, msg);
        return;
    }
    json_decref(body);
    void *op = cat_reply_new(rc, 201, "Alert not found.");
    if (finding_add(rc->in, uuid, f, "api", rc->auth.key_prefix, cat_reply_cb, op) != 0)
        cat_reply_cb(op, NULL, "database queue full");
    json_decref(f);
}

static void on_listed(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (reply_if_no_row(rc, res, err, "Alert not found."))
        return;
    json_t *items = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    reply_data(rc, 200, items ? items : json_array());
}

void route_list_findings(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *p[1] = {uuid};
    /* posted_at has one fixed-width format, so its text order is time order; the array
     * position breaks ties in append order. */
    if (pg_exec(rc->in->pg,
                "SELECT coalesce((SELECT jsonb_agg(f ORDER BY f->>'posted_at', n) FROM "
                "jsonb_array_elements(CASE WHEN jsonb_typeof(a.agent_findings) = 'array' "
                "THEN a.agent_findings ELSE '[]'::jsonb END) WITH ORDINALITY x(f, n)), "
                "'[]'::jsonb)::text FROM alerts a WHERE a.uuid = $1::uuid",
                1, p, on_listed, rc) != 0)
        reply_db_unavailable(rc);
}
