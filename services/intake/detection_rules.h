/*
 * detection_rules.h - detection rules: the REST routes and the query builders behind them,
 * shared with other readers of the catalogue (the MCP resource and search tool build their
 * statements here so both surfaces filter, sort and serialise rules the same way).
 *
 * A rule's JSON view is calseta_detection_rule_json(d) in PostgreSQL (migration 0012); list
 * statements return one row (total, JSON array of the page) as list_query()/cat_list() expect.
 */
#ifndef INTAKE_DETECTION_RULES_H
#define INTAKE_DETECTION_RULES_H

#include "intake.h"

#include <jansson.h>
#include <stddef.h>

struct dr_filter {
    const char *source_names;  /* comma list, exact match; NULL = any */
    const char *severities;    /* comma list, exact match; NULL = any */
    int is_active;             /* 1, 0, or -1 = any */
    const char *name_contains; /* case-insensitive substring of name; NULL = any */
    const char *mitre;         /* equals one of the tactics, techniques or sub-techniques */
    const char *mitre_tactic;    /* equals one of the tactics (MCP search) */
    const char *mitre_technique; /* equals one of the techniques or sub-techniques (MCP search) */
    const char *sort_by;       /* name | source_name | severity | created_at; NULL = created_at */
    const char *sort_order;    /* asc | desc; NULL = desc */
    int page, page_size;       /* 1-based page; page_size rows */
};

/* Builds the list statement into *sql (caller frees), appending its parameters (strings) to
 * params. Returns -1 with a message in err (the original's 400 text) for a bad sort. */
int detection_rules_list_sql(const struct dr_filter *f, char **sql, json_t *params, char *err,
                             size_t errlen);

/* One rule by uuid ($1): one row with the rule's JSON text, or no row. */
#define DETECTION_RULE_GET_SQL                                                                 \
    "SELECT calseta_detection_rule_json(d)::text FROM detection_rules d WHERE d.uuid = $1"

/* Metrics of one rule ($1 uuid, $2 from, $3 to): one row with the JSON text, or NULL. */
#define DETECTION_RULE_METRICS_SQL                                                             \
    "SELECT calseta_detection_rule_metrics($1::uuid, $2::timestamptz, $3::timestamptz)::text"

void route_list_detection_rules(struct reqctx *rc);
void route_create_detection_rule(struct reqctx *rc);
void route_get_detection_rule(struct reqctx *rc);
void route_patch_detection_rule(struct reqctx *rc);
void route_delete_detection_rule(struct reqctx *rc);
void route_detection_rule_metrics(struct reqctx *rc);

#endif
