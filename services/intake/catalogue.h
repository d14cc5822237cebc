/*
 * catalogue.h - helpers shared by the catalogue routes (detection rules, indicator mappings,
 * indicators, sources, metrics, settings) and the other REST routes of the same shape (agents,
 * context documents, findings, approvals): body validation from a field table, and
 * one-statement handlers whose SQL returns the answer as one JSON text.
 *
 * The statements of these routes compute their whole answer in PostgreSQL (a JSON view of the
 * row, or an aggregate) so a handler is: validate → one pg_exec → reply.
 */
#ifndef INTAKE_CATALOGUE_H
#define INTAKE_CATALOGUE_H

#include "alert_vocab.h"
#include "indicator_types.h"
#include "intake.h"

#include <jansson.h>
#include <stddef.h>

enum field_kind { F_STR, F_BOOL, F_STRARR, F_OBJ, F_INT };

/* One body field. Unknown fields are ignored (as the original's models do); null is "absent"
 * for an optional field and refused for a required one. */
struct field_spec {
    const char *name;
    enum field_kind kind;
    int required;                /* on create; a PATCH never requires */
    size_t minlen, maxlen;       /* strings: length in characters; 0 = unbounded */
    const char *const *one_of;   /* strings: allowed values, NULL-terminated; NULL = any */
};

/* Checks body against spec (patch: nothing required). 0, or a 422 reply and -1. */
int validate_body(struct reqctx *rc, const json_t *body, const struct field_spec *spec, int patch);

/*
 * Runs sql with params (a JSON array of strings or nulls; stolen) and replies:
 *   row 0 column 0 not NULL → status with {"data": <that JSON>, "meta": {}} (204: empty body);
 *   no row or NULL          → 404 NOT_FOUND with not_found;
 *   unique violation        → 409 CONFLICT with conflict (or a generic message);
 *   other failures          → as reply_pg_failure().
 */
void cat_exec(struct reqctx *rc, const char *sql, json_t *params, int status,
              const char *not_found, const char *conflict);

/* cat_exec()'s reply as the callback of a statement queued elsewhere (by a function shared with
 * the MCP tools): cat_reply_new() makes the callback's argument, which the callback frees. A
 * statement that could not be queued is answered with cat_reply_cb(arg, NULL, why): a 503. */
void *cat_reply_new(struct reqctx *rc, int status, const char *not_found);
void cat_reply_cb(void *arg, PGresult *res, const char *err);

/* As cat_exec() with $1 = path parameter 0, which must be a UUID (else a 422 and no query). */
void cat_exec_uuid(struct reqctx *rc, const char *sql, int status, const char *not_found);

/* The input of a PATCH: path parameter 0 as a UUID in uuid and the body checked against spec
 * (nothing required). The body (a new reference), or NULL after the reply (422 or 400). */
json_t *cat_patch_input(struct reqctx *rc, const struct field_spec *spec, char uuid[37]);

/* As cat_exec() with $1 = uuid (NULL: SQL NULL) and $2 = body as compact JSON. The body is
 * stolen; its compact text is wiped once copied into the parameters (it may carry a secret). */
void cat_save(struct reqctx *rc, const char *uuid, json_t *body, const char *sql, int status,
              const char *not_found, const char *conflict);

/* As cat_exec() for a list statement whose one row is (total, JSON array). */
void cat_list(struct reqctx *rc, const char *sql, json_t *params, int page, int page_size);

/* Appends a string parameter (NULL → SQL NULL); returns its number ($n). */
size_t param_add(json_t *params, const char *value);

/* The values of params (strings, NULL for json null) as pg_exec() takes them; a new array to
 * free() whose strings stay owned by params. */
const char **param_values(json_t *params);

/* "true"/"false" query parameter: 1/0, -1 when absent; 422 reply and -2 when malformed. */
int query_bool(struct reqctx *rc, const char *name);

/* 1 if s is one of the NULL-terminated set. */
int str_in(const char *s, const char *const *set);

/* Replaces holder's "auth_config" (an object) with {"_encrypted": <Fernet token of it under
 * key>}, the original's stored form. 0, or a reply (400 ENCRYPTION_NOT_CONFIGURED without a
 * usable key, 500) and -1. */
int encrypt_auth_config(struct reqctx *rc, const char *key, json_t *holder);

/* 1 if v is an array whose items are all strings. */
int is_string_list(const json_t *v);

/* The items of a comma-separated list, spaces around them trimmed and empty ones dropped, as a
 * new JSON array of strings. */
json_t *comma_list(const char *list);

/* indicators_api.c */
void route_get_indicator(struct reqctx *rc);
void route_patch_indicator(struct reqctx *rc);
void route_add_alert_indicators(struct reqctx *rc);
void route_relationship_graph(struct reqctx *rc);

/* mappings_api.c */
void route_list_mappings(struct reqctx *rc);
void route_create_mapping(struct reqctx *rc);
void route_get_mapping(struct reqctx *rc);
void route_patch_mapping(struct reqctx *rc);
void route_delete_mapping(struct reqctx *rc);
void route_source_plugin_fields(struct reqctx *rc);
void route_test_extraction(struct reqctx *rc);

/* sources_api.c */
void route_list_sources(struct reqctx *rc);
void route_create_source(struct reqctx *rc);
void route_get_source(struct reqctx *rc);
void route_patch_source(struct reqctx *rc);
void route_delete_source(struct reqctx *rc);

/* settings_api.c */
void route_approval_defaults(struct reqctx *rc);

/* metrics_api.c */
void route_metrics_alerts(struct reqctx *rc);
void route_metrics_workflows(struct reqctx *rc);
void route_metrics_summary(struct reqctx *rc);


#endif
