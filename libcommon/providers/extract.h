/*
 * extract.h - what the enricher takes out of documents.
 *
 *   extract_fields()   provider field extractions over a raw response (reference FieldExtractor)
 *   extract_pass3()    pass 3 of indicator extraction: custom indicator_field_mappings with
 *                      extraction_target = raw_payload, walked over the alert's raw payload
 *   is_enrichable()    the original's pre-check (global IPs, public domains, URL hosts)
 */
#ifndef PROVIDERS_EXTRACT_H
#define PROVIDERS_EXTRACT_H

#include <jansson.h>
#include <stddef.h>

#define INDICATOR_VALUE_MAX 2048 /* longer values are dropped (index row limit) */

struct field_rule {
    char *indicator_type;
    char *source_path;
    char *target_key;
    char *value_type; /* string int float bool list dict any (unknown: pass-through) */
};

struct raw_mapping {
    char *source_name; /* NULL: every source */
    char *field_path;
    char *indicator_type;
};

/*
 * Applies rules to raw and returns a new object {target_key: value}. As in the original every
 * rule of the provider runs whatever the indicator type; rules of the indicator's own type
 * run last so they win a clash.
 */
json_t *extract_fields(json_t *raw, const struct field_rule *rules, size_t n, const char *type);
/* Coerces one value per value_type; NULL when coercion fails (e.g. int of "3.5"). New ref. */
json_t *extract_coerce(json_t *v, const char *value_type);

/*
 * Appends {type, value} objects found by the mappings that apply to source_name to out (an
 * array), skipping values already present in out (compared after trimming). Non-blank strings
 * only, trimmed, at most INDICATOR_VALUE_MAX bytes. Returns how many were added.
 */
size_t extract_pass3(json_t *raw_payload, const char *source_name, const struct raw_mapping *m,
                     size_t n, json_t *out);

/* 1 when the original would call providers for this indicator; else 0 and a reason. */
int is_enrichable(const char *type, const char *value, const char **reason);

#endif
