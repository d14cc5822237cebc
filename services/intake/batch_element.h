/*
 * batch_element.h - one normalised alert as an element of a batch: packed for the typed columns
 * calseta_ingest_columns() reads (what the intake sends), or written as a JSON object (the form
 * of calseta_ingest_batch()'s document, which the source tests compare).
 */
#ifndef INTAKE_BATCH_ELEMENT_H
#define INTAKE_BATCH_ELEMENT_H

#include "indicators.h"
#include "pg.h"
#include "pg_arr.h"
#include "source.h"
#include "util.h"

/* The alert's element. Its payload is packed after it (element_pack), always the payload's own
 * text (POST /v1/alerts sends its "payload" member's, not the whole body); occurred_at is read
 * by element_text() only (the columns carry occurred_at_us as a binary timestamp).
 * check_numbers: the payload has a number PostgreSQL's numeric may not hold, so the database
 * converts it to jsonb once to refuse it at ingest rather than store a payload that a jsonb
 * reader (enrichment, workflows) could not read. */
struct element {
    const struct normalized_alert *na;
    const char *source, *occurred_at, *fingerprint, *key_prefix;
    const struct indicator_set *set;
    int check_numbers;
};

/* Appends e's element (a JSON object, keys in a fixed order) to t. */
void element_text(struct buf *t, const struct element *e);

/* The alert's fields packed for the columns, in one allocation: each string already an element
 * of a binary array (a 4-byte big-endian length, or -1 for NULL, then its bytes), so a column is
 * built by copying each alert's element; then the payload's text. */
enum pk_field { PK_TITLE, PK_SEVERITY, PK_SOURCE, PK_DESCRIPTION, PK_FINGERPRINT, PK_RULE, PK_KEY,
                PK_NFIELDS };
struct packed {
    int64_t occurred_pg;        /* microseconds since 2000-01-01 UTC, PostgreSQL's epoch */
    int check_numbers;
    uint32_t field[PK_NFIELDS]; /* each field's element, at data + field[f] */
    uint32_t tags, tags_end;    /* the tags' elements: data[tags, tags_end) */
    uint32_t ntags;
    uint32_t inds, nind;        /* nind (type, value) pairs of elements from data + inds */
    size_t pay, pay_len;        /* the payload's text, stored as given (trimmed of JSON whitespace) */
    size_t len;                 /* data's bytes */
    char data[];
};

/* e and its payload's text raw (raw_len bytes) packed; free() it. Bytes that are not UTF-8 in
 * a field become U+FFFD; a NUL byte is passed through and PostgreSQL refuses it (22021, the
 * alert then answered 422), so the strings must hold none: the JSON parsers refuse \u0000. */
struct packed *element_pack(const struct element *e, const char *raw, size_t raw_len);

/* The bytes of the array element at p (its length word and its bytes). */
static inline size_t pk_elem_size(const char *p)
{
    uint32_t n = pg_be32_get(p);
    return n == 0xffffffffu ? 4 : 4 + (size_t)n;
}

/* The batch's columns, as calseta_ingest_columns() takes them ($1-$20 of INGEST_COLUMNS_SQL,
 * values[COL_x] is $x's): binary arrays built from n packed alerts (each indicator pair sent
 * once, the alerts naming theirs by position); COL_DEDUP_HOURS, the de-duplication window, is
 * hours as text; COL_ALERT_UUIDS and COL_IND_UUIDS, the uuids a new alert and a new indicator
 * get: one per alert and one per pair, version 7 (RFC 9562: the intake's clock in milliseconds
 * as the batch is built, then 74 random bits), all their random bits from one request to
 * OpenSSL's generator. Returns 0 with values[i] malloc'd (NULL: SQL NULL) and lengths and
 * formats set. When the generator fails, the two uuid columns are SQL NULL, which makes the
 * function draw those uuids itself (full entropy, from the database's generator): every other
 * column is built as usual, and columns_build returns 1 with err saying why, for the caller's
 * log. */
enum ingest_column {
    COL_TITLES,
    COL_SEVERITIES,
    COL_SOURCE_NAMES,
    COL_DESCRIPTIONS,
    COL_OCCURRED,
    COL_FINGERPRINTS,
    COL_RULE_REFS,
    COL_KEY_PREFIXES,
    COL_RAW_MEMBERS,
    COL_CHECK_NUMBERS,
    COL_PAYLOADS,
    COL_TAG_OFFS,
    COL_TAG_VALS,
    COL_IND_TYPES,
    COL_IND_VALUES,
    COL_IND_OFFS,
    COL_IND_REFS,
    COL_DEDUP_HOURS,
    COL_ALERT_UUIDS,
    COL_IND_UUIDS,
    INGEST_COLUMNS
};
#define INGEST_COLUMNS_SQL                                                                         \
    "SELECT idx, alert_uuid, alert_id, job_id, is_duplicate, duplicate_count FROM "                \
    "calseta_ingest_columns($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], "   \
    "$6::text[], $7::text[], $8::text[], $9::text[], $10::bool[], $11::text[], $12::int4[], "      \
    "$13::text[], $14::text[], $15::text[], $16::int4[], $17::int4[], $18::int4, $19::uuid[], "    \
    "$20::uuid[])"
int columns_build(const struct packed *const *pk, size_t n, int dedup_hours,
                  char *values[INGEST_COLUMNS], int lengths[INGEST_COLUMNS],
                  int formats[INGEST_COLUMNS], char *err, size_t errlen);

#endif
