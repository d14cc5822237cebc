/*
 * indicators.h - indicator sets, extraction passes 2 and 3, and the alert fingerprint.
 *
 * An indicator is {type, value}. The original merges its extraction passes in order and keeps
 * the first of every (type, value.strip()) pair, dropping blank values; indicator_set_add()
 * does exactly that, storing the stripped value (Python str.strip(): ASCII and Unicode
 * whitespace). Values are byte strings up to their first NUL (PostgreSQL text cannot hold NUL).
 * No format check happens at extraction: any string is accepted for any type, as in the
 * reference; indicator_type_valid() is for callers that take a type from a client.
 *
 *   pass 1: per source, see source.h (alert_source.extract)
 *   pass 2: indicators_extract_normalized() - indicator_field_mappings with
 *           extraction_target='normalized': a top-level field of the normalised alert
 *   pass 3: indicators_extract_raw() - extraction_target='raw_payload': a dotted path walked
 *           through nested objects of the raw payload (no list indexing)
 *   indicators_fingerprint(): lowercase hex MD5 of title NUL source NUL "t:v|t:v..." with the
 *           pairs sorted by (type, value) in byte (= code point) order. Passes 1+2 only.
 */
#ifndef INTAKE_INDICATORS_H
#define INTAKE_INDICATORS_H

#include "indicator_types.h"

#include <jansson.h>
#include <stddef.h>

/* The strings live in the set's shared blocks: read them, never free or change them. */
struct indicator {
    const char *type;
    const char *value; /* stripped, non-empty, NUL-free */
};

struct indicator_text; /* blocks holding the items' strings */

struct indicator_set {
    struct indicator *items; /* in insertion order; their strings belong to the set */
    size_t n, cap;
    size_t *slots; /* open-addressing index of items (+1; 0 = empty) for de-duplication */
    size_t nslots;
    struct indicator_text *text;
};

/* One indicator_field_mappings row. source_name NULL applies to every source. */
struct indicator_mapping {
    const char *source_name;
    const char *field_path;
    const char *indicator_type;
};

void indicator_set_init(struct indicator_set *s);
void indicator_set_destroy(struct indicator_set *s);
/*
 * Adds (type, strip(value[0..len))) unless blank or already present. The value ends at its
 * first NUL if it has one. Returns 1 if added, 0 if not.
 */
int indicator_set_add(struct indicator_set *s, const char *type, const char *value, size_t len);
/* As indicator_set_add() for a JSON value: only strings are taken. */
int indicator_set_add_json(struct indicator_set *s, const char *type, const json_t *v);

/*
 * Python str.strip(): narrows [*s, *s+len) to exclude leading and trailing whitespace
 * (Unicode White_Space as str.isspace() sees it). Returns the new length.
 */
size_t py_strip(const char **s, size_t len);

/*
 * Pass 2. fields is the normalised alert as an object of top-level fields (see
 * normalized_alert_fields() in source.h); a mapping applies when its source_name is NULL or
 * equals source_name, and takes fields[field_path] when that is a string.
 */
void indicators_extract_normalized(const json_t *fields, const char *source_name,
                                   const struct indicator_mapping *m, size_t n,
                                   struct indicator_set *out);
/* Pass 3, for the enrichment worker: fields[a][b][c] for field_path "a.b.c", strings only. */
void indicators_extract_raw(const json_t *raw, const char *source_name,
                            const struct indicator_mapping *m, size_t n, struct indicator_set *out);

void indicators_fingerprint(const char *title, const char *source_name,
                            const struct indicator_set *s, char out[33]);
/* New array of {"type": ..., "value": ...} in insertion order. */
json_t *indicators_to_json(const struct indicator_set *s);

#endif
