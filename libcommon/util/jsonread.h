/*
 * jsonread.h - a strict, fast JSON reader producing jansson values (see jsonread.c).
 *
 * json_read() accepts what json_loadb(data, len, flags) accepts, with the same flags
 * (JSON_REJECT_DUPLICATES, JSON_DECODE_ANY, JSON_ALLOW_NUL, JSON_DECODE_INT_AS_REAL), and one
 * difference: an integer literal beyond int64 becomes a real instead of an error (and a raw NUL
 * byte after a number or a literal, which jansson skips, is refused). It bounds
 * nesting at jansson's 2048 levels only: callers check their own limits first (jsonparse.h).
 * Returns a new reference, or NULL with err ("reason (line L, column C)") set.
 */
#ifndef CALSETA_JSONREAD_H
#define CALSETA_JSONREAD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

json_t *json_read(const char *data, size_t len, size_t flags, char *err, size_t errlen);

/* What json_read_bounded() saw, as far as it read (all of it when it returned a value). */
struct json_read_stats {
    size_t depth;         /* deepest nesting of arrays and objects */
    size_t values;        /* values, object keys included */
    size_t compact_bytes; /* bytes read outside insignificant whitespace */
    int big_integers;     /* integer literals beyond int64 (read as reals) */
    int wide_numbers;     /* numbers json_number_is_wide() calls wide */
    int too_deep;         /* failed on nesting deeper than max_depth */
};

/* Whether the number token p[0..n) may be beyond what PostgreSQL's numeric holds (about 131,072
 * digits before the point and 16,383 after): longer than 1,000 characters, or an exponent of
 * 1,000 or more either way. Anything else is far inside both limits. */
int json_number_is_wide(const char *p, size_t n);

/* json_read() that also refuses nesting deeper than max_depth (0: jansson's 2048 only; above
 * 2048 is 2048) as it reads, setting stats->too_deep, and counts what it reads: one pass
 * instead of a limit walk before the parse, for a caller whose other limits the length of the
 * input already guarantees (each value takes at least one byte). stats may be NULL. */
json_t *json_read_bounded(const char *data, size_t len, size_t flags, size_t max_depth,
                          struct json_read_stats *stats, char *err, size_t errlen);

/* Length of the valid UTF-8 sequence starting at p (whose first byte is >= 0x80) before end, or
 * 0: no overlong forms, no surrogates, nothing above U+10FFFF. */
size_t json_utf8_seq(const unsigned char *p, const unsigned char *end);

/* What the token reader (jsontok.c) shares with this one: the bytes a string's fast loop steps
 * over (printable ASCII but the quote and the backslash), four hex digits at p (0, or -1 when
 * they are not), v appended as UTF-8, and the number grammar. */
extern const unsigned char JSON_PLAIN[256];
int json_hex4(const unsigned char *p, const unsigned char *end, uint32_t *out);
struct buf;
void json_put_utf8(struct buf *b, uint32_t v);
/* The end of the number at p, or NULL when there is none; *integral: no fraction, no exponent. */
const unsigned char *json_number_scan(const unsigned char *p, const unsigned char *end,
                                      int *integral);

#endif
