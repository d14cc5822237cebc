/*
 * sources_api.c - /v1/sources: the catalogue of alert source integrations (reads alerts:read,
 * writes admin). auth_config is stored only as {"_encrypted": Fernet token of the JSON} under
 * ENCRYPTION_KEY and is never returned, logged or decrypted here.
 */
#include "catalogue.h"
#include "source.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char NOT_FOUND[] = "Source integration not found.";
#define AUTH_CONFIG_MAX 262144 /* compact JSON bytes, as the original */

void route_list_sources(struct reqctx *rc)
{
    int page, page_size;
    if (parse_pagination(rc, &page, &page_size) != 0)
        return;
    char *sql = xasprintf(
        "SELECT (SELECT count(*) FROM source_integrations), coalesce((SELECT jsonb_agg("
        "calseta_source_json(s) ORDER BY s.created_at DESC, s.id DESC) FROM (SELECT * FROM "
        "source_integrations s ORDER BY s.created_at DESC, s.id DESC LIMIT %d OFFSET %lld) s), "
        "'[]'::jsonb)::text",
        page_size, (long long)(page - 1) * page_size);
    cat_list(rc, sql, json_array(), page, page_size);
    free(sql);
}

void route_get_source(struct reqctx *rc)
{
    cat_exec_uuid(rc,
                  "SELECT calseta_source_json(s)::text FROM source_integrations s WHERE s.uuid = $1",
                  200, NOT_FOUND);
}

/* Replaces body.auth_config (a non-null object) with its encrypted envelope. 0, or a reply
 * (422 too large, 400 no key) and -1. */
static int check_and_encrypt(struct reqctx *rc, json_t *body)
{
    json_t *ac = json_object_get(body, "auth_config");
    if (!ac || json_is_null(ac))
        return 0;
    char *compact = json_dumps(ac, JSON_COMPACT | JSON_ENSURE_ASCII);
    size_t n = strlen(compact);
    free_wiped(compact);
    if (n > AUTH_CONFIG_MAX) {
        reply_validation_error(rc, "value_error", "body", "auth_config",
                               "auth_config exceeds maximum size of 256 KB (262144 bytes)");
        return -1;
    }
    return encrypt_auth_config(rc, rc->in->cfg.encryption_key, body);
}

static const struct field_spec CREATE_FIELDS[] = {
    {"source_name", F_STR, 1, 0, 0, NULL},
    {"display_name", F_STR, 1, 1, 255, NULL},
    {"is_active", F_BOOL, 0, 0, 0, NULL},
    {"auth_type", F_STR, 0, 0, 0, NULL},
    {"auth_config", F_OBJ, 0, 0, 0, NULL},
    {"documentation", F_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

void route_create_source(struct reqctx *rc)
{
    json_t *body = body_json_object(rc);
    if (!body)
        return;
    if (validate_body(rc, body, CREATE_FIELDS, 0) != 0)
        goto fail;
    const char *name = json_string_value(json_object_get(body, "source_name"));
    if (!source_lookup(name)) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "Unknown source plugin: '%.100s'. Registered sources: ['sentinel', 'elastic', "
                 "'splunk', 'generic']",
                 name);
        reply_error(rc, 400, "INVALID_SOURCE", msg, NULL);
        goto fail;
    }
    if (check_and_encrypt(rc, body) != 0)
        goto fail;
    cat_save(rc, NULL, body,
             "INSERT INTO source_integrations (source_name, display_name, is_active, auth_type, "
             "auth_config, documentation) SELECT p->>'source_name', p->>'display_name', "
             "coalesce((p->>'is_active')::boolean, true), p->>'auth_type', "
             "nullif(p->'auth_config', 'null'), p->>'documentation' "
             "FROM (SELECT $2::jsonb AS p, $1::text AS unused) x "
             "RETURNING calseta_source_json(source_integrations)::text",
             201, NOT_FOUND, NULL);
    return;
fail:
    json_decref(body);
}

static const struct field_spec PATCH_FIELDS[] = {
    {"display_name", F_STR, 0, 1, 255, NULL},
    {"is_active", F_BOOL, 0, 0, 0, NULL},
    {"auth_type", F_STR, 0, 0, 0, NULL},
    {"auth_config", F_OBJ, 0, 0, 0, NULL},
    {"documentation", F_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

void route_patch_source(struct reqctx *rc)
{
    char uuid[37];
    json_t *body = cat_patch_input(rc, PATCH_FIELDS, uuid);
    if (!body)
        return;
    if (check_and_encrypt(rc, body) != 0) {
        json_decref(body);
        return;
    }
    cat_save(rc, uuid, body,
             "UPDATE source_integrations s SET "
             "display_name = coalesce($2::jsonb->>'display_name', s.display_name), "
             "is_active = coalesce(($2::jsonb->>'is_active')::boolean, s.is_active), "
             "auth_type = coalesce($2::jsonb->>'auth_type', s.auth_type), "
             "auth_config = coalesce(nullif($2::jsonb->'auth_config', 'null'), s.auth_config), "
             "documentation = coalesce($2::jsonb->>'documentation', s.documentation), "
             "updated_at = now() WHERE s.uuid = $1::uuid RETURNING calseta_source_json(s)::text",
             200, NOT_FOUND, NULL);
}

void route_delete_source(struct reqctx *rc)
{
    cat_exec_uuid(rc, "DELETE FROM source_integrations WHERE uuid = $1 RETURNING '{}'", 204,
                  NOT_FOUND);
}
