/*
 * mappings_api.c - /v1/indicator-mappings (all admin): list, create, get, patch, delete, the
 * static list of what each source plugin extracts (pass 1), and a dry run of the three
 * extraction passes over a payload (persists nothing).
 *
 * Fixed on purpose: indicator_type and extraction_target are checked (the original stored any
 * value and extraction then skipped the row silently); a system mapping is read-only except
 * is_active, for every field (the original still let indicator_type and description change);
 * every change reaches the extraction of every intake within a second (mappings.c listens for
 * the change notification; the original kept its cache until restarted).
 */
#include "catalogue.h"
#include "indicators.h"
#include "source.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char NOT_FOUND[] = "Indicator field mapping not found.";
static const char *const TARGETS[] = {"normalized", "raw_payload", NULL};

/* ---- list, create, get, patch, delete ------------------------------------------------------ */

void route_list_mappings(struct reqctx *rc)
{
    int page, page_size, is_system, is_active;
    char v[512];
    if (parse_pagination(rc, &page, &page_size) != 0 ||
        (is_system = query_bool(rc, "is_system")) == -2 ||
        (is_active = query_bool(rc, "is_active")) == -2)
        return;
    json_t *params = json_array();
    struct buf w;
    buf_init(&w);
    buf_puts(&w, "TRUE");
    if (query_param(rc, "source_name", v, sizeof v))
        buf_printf(&w, " AND m.source_name = $%zu", param_add(params, v));
    if (query_param(rc, "extraction_target", v, sizeof v))
        buf_printf(&w, " AND m.extraction_target = $%zu", param_add(params, v));
    if (is_system >= 0)
        buf_printf(&w, " AND m.is_system = %s", is_system ? "true" : "false");
    if (is_active >= 0)
        buf_printf(&w, " AND m.is_active = %s", is_active ? "true" : "false");
    char *sql = xasprintf(
        "WITH f AS (SELECT m.* FROM indicator_field_mappings m WHERE %s) "
        "SELECT (SELECT count(*) FROM f), coalesce((SELECT jsonb_agg(calseta_mapping_json(m) "
        "ORDER BY m.created_at, m.id) FROM (SELECT * FROM f m ORDER BY m.created_at, m.id "
        "LIMIT %d OFFSET %lld) m), '[]'::jsonb)::text",
        w.data, page_size, (long long)(page - 1) * page_size);
    buf_destroy(&w);
    cat_list(rc, sql, params, page, page_size);
    free(sql);
}

static const struct field_spec CREATE_FIELDS[] = {
    {"source_name", F_STR, 0, 1, 100, NULL},
    {"field_path", F_STR, 1, 1, 1000, NULL},
    {"indicator_type", F_STR, 1, 0, 0, INDICATOR_TYPES},
    {"extraction_target", F_STR, 0, 0, 0, TARGETS},
    {"is_active", F_BOOL, 0, 0, 0, NULL},
    {"description", F_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

void route_create_mapping(struct reqctx *rc)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    if (validate_body(rc, body, CREATE_FIELDS, 0) != 0)
        goto out;
    const char *src = json_string_value(json_object_get(body, "source_name"));
    if (src && !source_lookup(src)) {
        reply_validation_error(rc, "enum", "body", "source_name",
                               "Unknown alert source (sentinel, elastic, splunk, generic)");
        goto out;
    }
    char *doc = json_dumps(body, JSON_COMPACT);
    json_t *params = json_array();
    param_add(params, doc);
    free(doc);
    cat_exec(rc,
             "INSERT INTO indicator_field_mappings (source_name, field_path, indicator_type, "
             "extraction_target, is_system, is_active, description) "
             "SELECT p->>'source_name', p->>'field_path', p->>'indicator_type', "
             "coalesce(p->>'extraction_target', 'normalized'), false, "
             "coalesce((p->>'is_active')::boolean, true), p->>'description' "
             "FROM (SELECT $1::jsonb AS p) x "
             "RETURNING calseta_mapping_json(indicator_field_mappings)::text",
             params, 201, NULL, NULL);
out:
    json_decref(body);
}

void route_get_mapping(struct reqctx *rc)
{
    cat_exec_uuid(rc,
                  "SELECT calseta_mapping_json(m)::text FROM indicator_field_mappings m "
                  "WHERE m.uuid = $1",
                  200, NOT_FOUND);
}

static const struct field_spec PATCH_FIELDS[] = {
    {"field_path", F_STR, 0, 1, 1000, NULL},
    {"indicator_type", F_STR, 0, 0, 0, INDICATOR_TYPES},
    {"is_active", F_BOOL, 0, 0, 0, NULL},
    {"description", F_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* The statement answers the JSON view, {"readonly": true} for a refused system change, or
 * no row. */
static void on_mapping_change(void *arg, PGresult *res, const char *err)
{
    struct reqctx *rc = arg;
    if (reply_if_pg_failed(rc, res, err) != 0)
        return;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        reply_error(rc, 404, "NOT_FOUND", NOT_FOUND, NULL);
        return;
    }
    json_t *v = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (json_is_true(json_object_get(v, "readonly"))) {
        json_decref(v);
        reply_error(rc, 422, "SYSTEM_MAPPING_READONLY",
                    !strcmp(rc->req->method, "DELETE")
                        ? "System mappings cannot be deleted. Set is_active=false to disable."
                        : "System mappings are read-only. Only is_active can be toggled.",
                    NULL);
        return;
    }
    if (!strcmp(rc->req->method, "DELETE")) {
        json_decref(v);
        reply_empty(rc, 204);
        return;
    }
    reply_data(rc, 200, v ? v : json_object());
}

void route_patch_mapping(struct reqctx *rc)
{
    char uuid[37];
    json_t *body = cat_patch_input(rc, PATCH_FIELDS, uuid);
    if (!body)
        return;
    char *doc = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    const char *p[2] = {uuid, doc};
    pg_exec(rc->in->pg, "SELECT calseta_mapping_patch($1, $2::jsonb)::text", 2, p,
            on_mapping_change, rc);
    free(doc);
}

void route_delete_mapping(struct reqctx *rc)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    const char *p[1] = {uuid};
    pg_exec(rc->in->pg,
            "WITH m AS (SELECT id, is_system FROM indicator_field_mappings WHERE uuid = $1), "
            "d AS (DELETE FROM indicator_field_mappings x USING m "
            "WHERE x.id = m.id AND NOT m.is_system RETURNING x.id) "
            "SELECT CASE WHEN m.is_system THEN '{\"readonly\": true}' ELSE '{}' END FROM m",
            1, p, on_mapping_change, rc);
}

/* ---- what each source plugin extracts (pass 1) --------------------------------------------- */

static const struct {
    const char *source, *path, *type, *description;
} PLUGIN_FIELDS[] = {
    {"sentinel", "Entities[Type=ip].Address", "ip", "IP entities"},
    {"sentinel", "Entities[Type=account].Name@UPNSuffix", "account", "Account entities"},
    {"sentinel", "Entities[Type=host].HostName.DnsDomain", "domain", "Host entities"},
    {"sentinel", "Entities[Type=url].Url", "url", "URL entities"},
    {"sentinel", "Entities[Type=filehash,Algorithm=SHA256].Value", "hash_sha256",
     "File hash entities (SHA256)"},
    {"sentinel", "Entities[Type=filehash,Algorithm=SHA1].Value", "hash_sha1",
     "File hash entities (SHA1)"},
    {"sentinel", "Entities[Type=filehash,Algorithm=MD5].Value", "hash_md5",
     "File hash entities (MD5)"},
    {"elastic", "source.ip", "ip", "Source IP"},
    {"elastic", "destination.ip", "ip", "Destination IP"},
    {"elastic", "host.ip", "ip", "Host IPs"},
    {"elastic", "threat.indicator.ip", "ip", "Threat indicator IP"},
    {"elastic", "destination.domain", "domain", "Destination domain"},
    {"elastic", "dns.question.name", "domain", "DNS query name"},
    {"elastic", "url.domain", "domain", "URL domain"},
    {"elastic", "threat.indicator.domain", "domain", "Threat indicator domain"},
    {"elastic", "url.full", "url", "Full URL"},
    {"elastic", "process.hash.sha256", "hash_sha256", "Process hash (SHA256)"},
    {"elastic", "file.hash.sha256", "hash_sha256", "File hash (SHA256)"},
    {"elastic", "threat.indicator.file.hash.sha256", "hash_sha256", "Threat indicator file hash"},
    {"elastic", "process.hash.sha1", "hash_sha1", "Process hash (SHA1)"},
    {"elastic", "file.hash.sha1", "hash_sha1", "File hash (SHA1)"},
    {"elastic", "process.hash.md5", "hash_md5", "Process hash (MD5)"},
    {"elastic", "file.hash.md5", "hash_md5", "File hash (MD5)"},
    {"elastic", "user.email", "email", "User email"},
    {"elastic", "user.name", "account", "User name"},
    {"splunk", "result.src_ip (or result.src)", "ip", "Source IP"},
    {"splunk", "result.dest_ip (or result.dest)", "ip", "Destination IP"},
    {"splunk", "result.user", "account", "User"},
    {"splunk", "result.sha256", "hash_sha256", "SHA256 hash"},
    {"splunk", "result.md5", "hash_md5", "MD5 hash"},
    {"splunk", "result.sha1", "hash_sha1", "SHA1 hash"},
    {"splunk", "result.url", "url", "URL"},
    {"splunk", "result.domain", "domain", "Domain"},
    {"generic", "indicators[].value", "(per item)", "Explicit indicators [{type, value}]"},
    {"generic", "src_ip", "ip", "Source IP"},
    {"generic", "dest_ip", "ip", "Destination IP"},
    {"generic", "source_ip", "ip", "Source IP"},
    {"generic", "destination_ip", "ip", "Destination IP"},
    {"generic", "ip", "ip", "IP"},
    {"generic", "domain", "domain", "Domain"},
    {"generic", "hostname", "domain", "Host name"},
    {"generic", "url", "url", "URL"},
    {"generic", "user", "account", "User"},
    {"generic", "username", "account", "User name"},
    {"generic", "email", "email", "Email"},
    {"generic", "md5", "hash_md5", "MD5 hash"},
    {"generic", "sha1", "hash_sha1", "SHA1 hash"},
    {"generic", "sha256", "hash_sha256", "SHA256 hash"},
    {"generic", "hash", "hash_sha256", "Hash (taken as SHA256)"},
};

void route_source_plugin_fields(struct reqctx *rc)
{
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof PLUGIN_FIELDS / sizeof PLUGIN_FIELDS[0]; i++)
        json_array_append_new(
            list, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:b,s:s,s:s}", "uuid",
                            "00000000-0000-0000-0000-000000000000", "source_name",
                            PLUGIN_FIELDS[i].source, "field_path", PLUGIN_FIELDS[i].path,
                            "indicator_type", PLUGIN_FIELDS[i].type, "extraction_target",
                            "source_plugin", "description", PLUGIN_FIELDS[i].description,
                            "is_system", 1, "is_active", 1, "created_at",
                            "2000-01-01T00:00:00Z", "updated_at", "2000-01-01T00:00:00Z"));
    reply_json(rc, 200, json_pack("{s:o}", "data", list));
}

/* ---- POST /v1/indicator-mappings/test-extraction ------------------------------------------- */

struct extraction_op {
    struct reqctx *rc;
    const struct alert_source *src;
    json_t *payload;     /* pass 3 reads the tree */
    struct jtok_doc tok; /* the source reads the payload from the body's tokens, at root; they
                            borrow the request's body, valid until the reply (http_server.h) */
    uint32_t root;
    uint64_t started_ns;
};

static json_t *pass_new(const char *name, const char *label)
{
    return json_pack("{s:s,s:s,s:[],s:n}", "pass_name", name, "pass_label", label, "indicators",
                     "error");
}

/* Appends the new indicators of tmp to the pass (with their source field) and to all. */
static void pass_take(json_t *pass, struct indicator_set *tmp, const char *field,
                      struct indicator_set *all, json_t *dedup)
{
    json_t *list = json_object_get(pass, "indicators");
    for (size_t i = 0; i < tmp->n; i++) {
        json_t *it = json_pack("{s:s,s:s}", "type", tmp->items[i].type, "value",
                               tmp->items[i].value);
        json_object_set_new(it, "source_field", field ? json_string(field) : json_null());
        if (indicator_set_add(all, tmp->items[i].type, tmp->items[i].value,
                              strlen(tmp->items[i].value)))
            json_array_append(dedup, it);
        json_array_append_new(list, it);
    }
}

/* Passes 2 and 3: one mapping at a time, so each indicator knows the field it came from. */
static void mapping_pass(json_t *pass, PGresult *res, const char *target, const json_t *from,
                         const char *source, struct indicator_set *all, json_t *dedup)
{
    int normalized = !strcmp(target, "normalized");
    for (int r = 0; r < PQntuples(res); r++) {
        if (strcmp(PQgetvalue(res, r, 3), target))
            continue;
        struct indicator_mapping m = {PQgetisnull(res, r, 0) ? NULL : PQgetvalue(res, r, 0),
                                      PQgetvalue(res, r, 1), PQgetvalue(res, r, 2)};
        struct indicator_set tmp;
        indicator_set_init(&tmp);
        if (normalized)
            indicators_extract_normalized(from, source, &m, 1, &tmp);
        else
            indicators_extract_raw(from, source, &m, 1, &tmp);
        char *field = xasprintf("%s.%s", normalized ? "normalized" : "raw_payload", m.field_path);
        pass_take(pass, &tmp, field, all, dedup);
        free(field);
        indicator_set_destroy(&tmp);
    }
}

static json_t *preview_of(const struct normalized_alert *na, const char *source)
{
    json_t *p = normalized_alert_fields(na, source);
    char ts[32];
    format_iso8601_us(na->occurred_at_us, ts);
    json_object_set_new(p, "occurred_at", json_string(ts));
    json_object_set(p, "tags", na->tags);
    if (!json_object_get(p, "description"))
        json_object_set_new(p, "description", json_null());
    return p;
}

static void on_test_mappings(void *arg, PGresult *res, const char *err)
{
    struct extraction_op *op = arg;
    struct reqctx *rc = op->rc;
    if (reply_if_pg_failed(rc, res, err) != 0)
        goto out;
    const char *source = op->src->name;
    struct indicator_set all, tmp;
    indicator_set_init(&all);
    indicator_set_init(&tmp);
    json_t *dedup = json_array();
    json_t *p1 = pass_new("source_plugin", "Source Plugin");
    json_t *p2 = pass_new("normalized_mappings", "Normalized Mappings");
    json_t *p3 = pass_new("raw_payload_mappings", "Raw Payload Mappings");
    op->src->extract(&op->tok, op->root, &tmp);
    pass_take(p1, &tmp, NULL, &all, dedup);
    indicator_set_destroy(&tmp);
    struct normalized_alert na;
    json_t *preview = json_null();
    if (op->src->normalize(&op->tok, op->root, &na) == 0) {
        preview = preview_of(&na, source);
        json_t *fields = normalized_alert_fields(&na, source);
        mapping_pass(p2, res, "normalized", fields, source, &all, dedup);
        json_decref(fields);
        normalized_alert_destroy(&na);
    } else {
        json_object_set_new(p2, "error", json_string("Normalization failed \u2014 cannot run Pass 2"));
    }
    mapping_pass(p3, res, "raw_payload", op->payload, source, &all, dedup);
    indicator_set_destroy(&all);
    double ms = (double)(uv_hrtime() - op->started_ns) / 1e6;
    reply_data(rc, 200,
               json_pack("{s:b,s:s,s:[o,o,o],s:I,s:o,s:o,s:n,s:f}", "success", 1, "source_name",
                         source, "passes", p1, p2, p3, "deduplicated_count",
                         (json_int_t)json_array_size(dedup), "deduplicated", dedup,
                         "normalization_preview", preview, "error_message", "duration_ms", ms));
out:
    json_decref(op->payload);
    jtok_free(&op->tok);
    free(op);
}

void route_test_extraction(struct reqctx *rc)
{
    uint64_t started = uv_hrtime();
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "source_name"));
    json_t *payload = json_object_get(body, "raw_payload");
    if (!name) {
        reply_validation_error(rc, "missing", "body", "source_name", "Field required");
        goto out;
    }
    if (!json_is_object(payload)) {
        reply_validation_error(rc, "dict_type", "body", "raw_payload",
                               "Input should be a valid dictionary");
        goto out;
    }
    const struct alert_source *src = source_lookup(name);
    if (!src) {
        char msg[200];
        snprintf(msg, sizeof msg, "Unknown alert source: %.100s", name);
        reply_error(rc, 422, "UNKNOWN_SOURCE", msg, NULL);
        goto out;
    }
    struct extraction_op *op = xcalloc(1, sizeof *op);
    *op = (struct extraction_op){.rc = rc, .src = src, .started_ns = started};
    struct http_request *req = rc->req;
    if (source_body_tokens(&op->tok, req->body.data, req->body.len, "raw_payload", &op->root) !=
            0 ||
        !src->validate(&op->tok, op->root)) {
        jtok_free(&op->tok);
        free(op);
        reply_error(rc, 422, "INVALID_PAYLOAD",
                    "Payload failed source validation. Check the JSON structure matches the "
                    "selected source format.",
                    NULL);
        goto out;
    }
    op->payload = json_incref(payload);
    const char *p[1] = {src->name};
    pg_exec(rc->in->pg,
            "SELECT source_name, field_path, indicator_type, extraction_target "
            "FROM indicator_field_mappings WHERE is_active "
            "AND (source_name IS NULL OR source_name = $1) ORDER BY id",
            1, p, on_test_mappings, op);
out:
    json_decref(body);
}
