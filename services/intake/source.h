/*
 * source.h - alert sources: one table entry per source, each source one file.
 *
 * A source turns a vendor payload into the common alert: validate() is the cheap shape check
 * behind 422 INVALID_PAYLOAD, normalize() fills a struct normalized_alert, extract() is
 * indicator extraction pass 1. All three are pure functions of the payload (a jansson value,
 * borrowed) and never crash on hostile input: every access is type-checked. The original
 * semantics (those of the original) are documented in each source file.
 *
 * Adding a source: write services/intake/source_<name>.c defining a `const struct alert_source
 * source_<name>`, and add it to the table in source_registry.c.
 *
 * Conventions shared by the sources:
 * - The intake parses bodies with JSON_REJECT_DUPLICATES, so a source never sees duplicate
 *   keys and the "last key wins" question of Python's json does not arise.
 * - Strings are read up to their first NUL (json_string_value()); PostgreSQL text cannot hold
 *   NUL, and the intake refuses payloads that contain one before normalising.
 * - Where the original raises (a 500 there, e.g. a non-string Sentinel title that pydantic
 *   refuses), normalize() returns -1 and the intake answers 422 INVALID_PAYLOAD instead.
 *   Where the original's behaviour on an odd type is not pinned down, the source is lenient
 *   (the value counts as absent) rather than failing.
 */
#ifndef INTAKE_SOURCE_H
#define INTAKE_SOURCE_H

#include "indicators.h"
#include "jsontok.h"

#include <jansson.h>
#include <stdint.h>

struct normalized_alert {
    char *title;               /* never NULL after a successful normalize() */
    char *severity;            /* Pending Informational Low Medium High Critical */
    int64_t occurred_at_us;    /* wall-clock microseconds since 1970, UTC */
    int occurred_at_was_now;   /* 1 when the payload had no usable timestamp */
    char *description;         /* may be NULL */
    json_t *tags;              /* array of strings, never NULL */
    char *source_rule_ref;     /* the source's detection-rule id, may be NULL */
    json_t *normalized_fields; /* object: the optional normalised IOC fields (src_ip, dst_ip,
                                  ...); the built-in sources leave it empty */
};

struct alert_source {
    const char *name; /* lowercase, as in /v1/ingest/{name} */
    /* 1 when the payload has the source's shape; never fails otherwise. */
    int (*validate)(const json_t *payload);
    /* 0 and *out filled (release with normalized_alert_destroy()), or -1 and *out empty. */
    int (*normalize)(const json_t *payload, struct normalized_alert *out);
    /* Pass 1: adds the indicators the source knows about to out. */
    void (*extract)(const json_t *payload, struct indicator_set *out);
    /* The same three over a token index (jsontok.h) of the payload, root token 0: the intake's
     * path for a body that is the payload, with no jansson tree built. A source that has them
     * gives exactly the results of the three above for every payload (a unit test runs both
     * over the fixtures and hostile inputs); NULL: the intake builds the tree. */
    int (*validate_tok)(const struct jtok_doc *d);
    int (*normalize_tok)(const struct jtok_doc *d, struct normalized_alert *out);
    void (*extract_tok)(const struct jtok_doc *d, struct indicator_set *out);
};

/* The registered source with exactly this name, or NULL. */
const struct alert_source *source_lookup(const char *name);
/* The registered sources in table order, NULL-terminated. */
const struct alert_source *const *source_all(void);

void normalized_alert_destroy(struct normalized_alert *a);
/*
 * The alert's top-level fields as pass 2 sees them (the original's CalsetaAlert.model_dump()):
 * title, severity, source_name, description (if any) and the normalized_fields. New reference.
 */
json_t *normalized_alert_fields(const struct normalized_alert *a, const char *source_name);

/* ---- helpers for the source implementations (source_registry.c) ---- */

/* Python truthiness: null, false, 0, 0.0, "", [] and {} are false. NULL is false. */
int py_truthy(const json_t *v);
/* Python str() of a JSON value (repr() inside containers, True/False/None). Caller frees. */
char *py_str(const json_t *v);
/* Copy of a JSON string up to its first NUL, or NULL when v is not a string. */
char *json_strdup_or_null(const json_t *v);
/* The first of a, b that is truthy, else NULL (Python `a or b`). */
const json_t *py_or(const json_t *a, const json_t *b);
/* ASCII-lowercased copy of a JSON string into buf (truncated); 0 if v is not a string. */
int json_lower(const json_t *v, char *buf, size_t size);
/* The token counterparts: the lowercased string as json_lower(); Python str() as py_str() (a
 * string's text, anything else through its jansson value); occurred_at from an ISO 8601 string
 * with "Z" as isotime_parse_zfix() (-1 when i is not a string or does not parse); a tag string
 * appended to out->tags; a string added to out as an indicator of type (indicator_set_add_json()). */
int jtok_lower(const struct jtok_doc *d, uint32_t i, char *buf, size_t size);
char *jtok_py_str(const struct jtok_doc *d, uint32_t i);
int jtok_isotime_zfix(const struct jtok_doc *d, uint32_t i, int64_t *out_us);
int jtok_isotime(const struct jtok_doc *d, uint32_t i, int64_t *out_us); /* isotime_parse() */
void jtok_add_tag(const struct jtok_doc *d, uint32_t i, struct normalized_alert *a);
void jtok_add_indicator(const struct jtok_doc *d, uint32_t i, struct indicator_set *out,
                        const char *type);
/* Starts an alert: tags = [], normalized_fields = {}, everything else zero. */
void normalized_alert_init(struct normalized_alert *a);
/* Sets occurred_at to now and occurred_at_was_now. */
void normalized_alert_now(struct normalized_alert *a);

extern const struct alert_source source_sentinel;
extern const struct alert_source source_elastic;
extern const struct alert_source source_splunk;
extern const struct alert_source source_generic;

#endif
