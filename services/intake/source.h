/*
 * source.h - alert sources: one table entry per source, each source one file.
 *
 * A source turns a vendor payload into the common alert: validate() is the cheap shape check
 * behind 422 INVALID_PAYLOAD, normalize() fills a struct normalized_alert, extract() is
 * indicator extraction pass 1. All three are pure functions of the payload, read from a token
 * index (jsontok.h; borrowed) where the payload is token root (0 when the body is the payload,
 * the member's value when it is a member of the body), and never crash on hostile input: every
 * access is type-checked. The original semantics (those of the original) are documented in
 * each source file.
 *
 * Adding a source: write services/intake/source_<name>.c defining a `const struct alert_source
 * source_<name>`, and add it to the table in source_registry.c.
 *
 * Conventions shared by the sources:
 * - The token reader refuses duplicate keys, so a source never sees them and the "last key
 *   wins" question of Python's json does not arise.
 * - A decoded string never holds a NUL (the reader refuses \u0000: PostgreSQL text cannot
 *   hold it).
 * - Where the original raises (a 500 there, e.g. a non-string Sentinel title that pydantic
 *   refuses), normalize() returns -1 and the intake answers 422 INVALID_PAYLOAD instead.
 *   Where the original's behaviour on an odd type is not pinned down, the source is lenient
 *   (the value counts as absent) rather than failing.
 * - Where the intake holds the body as a jansson tree (POST /v1/alerts, the mapping test
 *   endpoint: their envelope is checked on the tree), the sources still read the payload from
 *   the body's tokens (source_body_tokens()).
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
                                  ...), or NULL for none: the built-in sources set none, so no
                                  object is made per alert only to stay empty */
};

struct alert_source {
    const char *name; /* lowercase, as in /v1/ingest/{name} */
    /* 1 when the payload has the source's shape; never fails otherwise. */
    int (*validate)(const struct jtok_doc *d, uint32_t root);
    /* 0 and *out filled (release with normalized_alert_destroy()), or -1 and *out empty. */
    int (*normalize)(const struct jtok_doc *d, uint32_t root, struct normalized_alert *out);
    /* Pass 1: adds the indicators the source knows about to out. */
    void (*extract)(const struct jtok_doc *d, uint32_t root, struct indicator_set *out);
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
/* Which of the alert's own fields (the ones normalized_alert_fields() sets from the alert
 * itself, over any normalised field of that name) key names; ALERT_OWN_NONE for every other
 * key, NULL included, which only normalized_fields can hold. */
enum alert_own_field {
    ALERT_OWN_NONE = 0,
    ALERT_OWN_TITLE,
    ALERT_OWN_SEVERITY,
    ALERT_OWN_SOURCE_NAME,
    ALERT_OWN_DESCRIPTION,
};
enum alert_own_field normalized_alert_own_field(const char *key);
/* What normalized_alert_fields(a, source_name) holds under key, without building the object:
 * a borrowed value, or one made here and left in *tmp for the caller to release, or NULL. As
 * there, title, severity and source_name override a normalised field of that name when set,
 * description always does (null when unset), and a string that is not UTF-8 overrides nothing. */
const json_t *normalized_alert_field(const struct normalized_alert *a, const char *source_name,
                                     const char *key, json_t **tmp);

/*
 * The token index of a request body whose parse into a tree succeeded already (so it is read
 * with no limits), and in *root the token of its top-level member `member`, the payload. 0, or
 * -1 when the body does not read or has no such member. d borrows body; release it with
 * jtok_free() whatever the result.
 */
int source_body_tokens(struct jtok_doc *d, const char *body, size_t len, const char *member,
                       uint32_t *root);

/* ---- helpers for the source implementations (source_registry.c) ---- */

/* Python str() of a JSON value (repr() inside containers, True/False/None). Caller frees. */
char *py_str(const json_t *v);
/* The ASCII-lowercased text of string i into buf (truncated); 0 if i is not a string. Python
 * str() of value i (a string's text, anything else through its jansson value). occurred_at from
 * an ISO 8601 string with "Z" as isotime_parse_zfix() (-1 when i is not a string or does not
 * parse). A tag string appended to a->tags; a string added to out as an indicator of type. */
int jtok_lower(const struct jtok_doc *d, uint32_t i, char *buf, size_t size);
char *jtok_py_str(const struct jtok_doc *d, uint32_t i);
int jtok_isotime_zfix(const struct jtok_doc *d, uint32_t i, int64_t *out_us);
int jtok_isotime(const struct jtok_doc *d, uint32_t i, int64_t *out_us); /* isotime_parse() */
void jtok_add_tag(const struct jtok_doc *d, uint32_t i, struct normalized_alert *a);
void jtok_add_indicator(const struct jtok_doc *d, uint32_t i, struct indicator_set *out,
                        const char *type);
/* Starts an alert: tags = [], normalized_fields = NULL (none), everything else zero. */
void normalized_alert_init(struct normalized_alert *a);
/* Sets occurred_at to now and occurred_at_was_now. */
void normalized_alert_now(struct normalized_alert *a);

extern const struct alert_source source_sentinel;
extern const struct alert_source source_elastic;
extern const struct alert_source source_splunk;
extern const struct alert_source source_generic;

#endif
