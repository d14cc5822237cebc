/*
 * jsonparse.h - JSON from outside parsed at a bounded cost, and JSON numbers beyond 64 bits.
 *
 * json_parse_limited() bounds a request's parse cost by the limits instead of by what the sender
 * chose to nest. An input long enough to break the value or size limit is walked once before
 * anything is allocated (nesting depth, number of values, size without whitespace) and refused
 * there; a shorter one (every value takes a byte) can only break the depth limit, which the
 * reader enforces as it goes, so it is read in one pass.
 *
 * jansson holds integers as int64 and refuses a document with a larger integer literal (SIEM
 * u64 counters, PostgreSQL's rendering of 1e19 as 10000000000000000000). Both functions here
 * read such literals as reals instead - and only those, every other integer stays an integer -
 * and say so, so a caller that stores the document can keep its exact text.
 */
#ifndef CALSETA_JSONPARSE_H
#define CALSETA_JSONPARSE_H

#include <jansson.h>
#include <stddef.h>

#define JSON_MAX_DEPTH_DEFAULT 64
#define JSON_MAX_VALUES_DEFAULT 100000

/* JSON's insignificant whitespace (RFC 8259): space, tab, line feed, carriage return. */
static inline int json_is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

struct json_limits {
    size_t max_depth;  /* nesting of arrays and objects; 0 = no limit */
    size_t max_values; /* values of every kind, object keys included; 0 = no limit */
    size_t max_bytes;  /* size without insignificant whitespace; 0 = no limit */
};

enum json_parse_status {
    JSONP_OK,
    JSONP_TOO_DEEP,  /* nesting beyond max_depth (nothing was parsed) */
    JSONP_TOO_MANY,  /* more than max_values values (nothing was parsed) */
    JSONP_TOO_BIG,   /* more than max_bytes without whitespace (nothing was parsed) */
    JSONP_INVALID,   /* not JSON (err says where) */
};

struct json_scan {
    size_t depth;         /* deepest nesting seen (up to the limit) */
    size_t values;        /* values seen (up to the limit) */
    size_t compact_bytes; /* bytes outside insignificant whitespace */
    int big_integers;     /* integer literals outside the int64 range were seen */
    int wide_numbers;     /* numbers PostgreSQL's numeric may not hold were seen (over 1,000
                             characters, or an exponent of 1,000 or more either way) */
};

/*
 * Scans data[0..len) against lim (NULL: the defaults), then parses it with jansson's flags
 * (JSON_REJECT_DUPLICATES, JSON_DECODE_ANY, ...). Integer literals beyond int64 become reals.
 * Returns the value (status JSONP_OK) or NULL with *status and err set. scan may be NULL; when
 * given it is filled even on failure (as far as the walk went).
 */
json_t *json_parse_limited(const char *data, size_t len, size_t flags,
                           const struct json_limits *lim, struct json_scan *scan,
                           enum json_parse_status *status, char *err, size_t errlen);

/* Walks data without parsing: the counts of json_parse_limited() and its verdict on the limits
 * (JSONP_OK, JSONP_TOO_DEEP, JSONP_TOO_MANY or JSONP_TOO_BIG; syntax is not checked). */
enum json_parse_status json_scan_bytes(const char *data, size_t len, const struct json_limits *lim,
                                       struct json_scan *scan);

/* JSON text from a trusted writer (PostgreSQL): json_loads() that reads integers beyond int64
 * as reals instead of failing the whole document. NULL for invalid text. */
json_t *json_loads_wide(const char *text, size_t flags);

#endif
