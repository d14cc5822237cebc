/*
 * jsonparse.c - bounded-cost parsing of untrusted JSON and integers beyond int64 (see
 * jsonparse.h). The walk is a byte loop with no allocation; it does not validate syntax
 * (json_read() does that afterwards), it only counts, so it is fooled by nothing that matters:
 * whatever it counts wrongly in invalid JSON is refused by the parser anyway.
 */
#include "jsonparse.h"
#include "jsonread.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_num_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Length of the number token at p (at most len), whether it is an integer literal that does not
 * fit int64 (big), and whether it is wide (json_number_is_wide; wide may be NULL). */
static size_t number_token(const char *p, size_t len, int *big, int *wide)
{
    size_t n = 0;
    int integral = 1;
    while (n < len && is_num_char(p[n])) {
        if (p[n] == '.' || p[n] == 'e' || p[n] == 'E')
            integral = 0;
        n++;
    }
    *big = 0;
    if (wide)
        *wide = json_number_is_wide(p, n);
    if (!integral)
        return n;
    int neg = p[0] == '-';
    const char *d = p + neg;
    size_t nd = n - (size_t)neg;
    while (nd > 1 && *d == '0') /* invalid JSON anyway, but compare digits, not zeros */
        d++, nd--;
    const char *lim = neg ? "9223372036854775808" : "9223372036854775807";
    if (nd > 19 || (nd == 19 && memcmp(d, lim, 19) > 0))
        *big = 1;
    return n;
}

/* Index of the quote closing the string opened at data[open], or len when it is not closed. A
 * quote ends the string unless an odd run of backslashes precedes it: escapes are pairs from
 * the opening quote on, and a run starts at a pair boundary (after a character that is not a
 * backslash, or right after the opening quote). memchr() jumps to each candidate quote: the
 * byte loop this replaces was a fifth of the intake's CPU spent on JSON. */
static size_t string_end(const char *data, size_t len, size_t open)
{
    size_t j = open + 1;
    while (j < len) {
        const char *q = memchr(data + j, '"', len - j);
        if (!q)
            return len;
        size_t k = (size_t)(q - data), run = 0;
        while (k - run > open + 1 && data[k - run - 1] == '\\')
            run++;
        if (run % 2 == 0)
            return k;
        j = k + 1;
    }
    return len;
}

enum json_parse_status json_scan_bytes(const char *data, size_t len, const struct json_limits *lim,
                                       struct json_scan *scan)
{
    static const struct json_limits defaults = {JSON_MAX_DEPTH_DEFAULT, JSON_MAX_VALUES_DEFAULT, 0};
    if (!lim)
        lim = &defaults;
    struct json_scan s = {0};
    size_t depth = 0;
    enum json_parse_status st = JSONP_OK;
    for (size_t i = 0; i < len && st == JSONP_OK; i++) {
        char c = data[i];
        if (json_is_ws(c))
            continue;
        s.compact_bytes++;
        switch (c) {
        case '"': {
            s.values++;
            size_t j = string_end(data, len, i);
            s.compact_bytes += (j < len ? j : len - 1) - i;
            i = j;
            break;
        }
        case '[':
        case '{':
            s.values++;
            if (++depth > s.depth)
                s.depth = depth;
            if (lim->max_depth && depth > lim->max_depth)
                st = JSONP_TOO_DEEP;
            break;
        case ']':
        case '}':
            if (depth)
                depth--;
            break;
        case ',':
        case ':':
            break;
        default:
            if (c == '-' || (c >= '0' && c <= '9')) {
                int big, wide;
                size_t n = number_token(data + i, len - i, &big, &wide);
                s.big_integers |= big;
                s.wide_numbers |= wide;
                s.compact_bytes += n - 1;
                i += n - 1;
            } else { /* true, false, null or junk the parser will refuse */
                while (i + 1 < len && data[i + 1] >= 'a' && data[i + 1] <= 'z')
                    i++, s.compact_bytes++;
            }
            s.values++;
        }
        if (st == JSONP_OK && lim->max_values && s.values > lim->max_values)
            st = JSONP_TOO_MANY;
    }
    if (st == JSONP_OK && lim->max_bytes && s.compact_bytes > lim->max_bytes)
        st = JSONP_TOO_BIG;
    if (scan)
        *scan = s;
    return st;
}

/* A copy of data where every integer literal beyond int64 carries an exponent ("e0"), which
 * makes jansson read it as a real. Strings are copied untouched. */
static char *widen_integers(const char *data, size_t len, size_t *outlen)
{
    struct buf b;
    buf_init(&b);
    size_t i = 0, from = 0;
    while (i < len) {
        char c = data[i];
        if (c == '"') {
            i++;
            while (i < len && data[i] != '"')
                i += data[i] == '\\' ? 2 : 1;
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            int big;
            size_t n = number_token(data + i, len - i, &big, NULL);
            i += n;
            if (big) {
                buf_append(&b, data + from, i - from);
                buf_append(&b, "e0", 2);
                from = i;
            }
        } else {
            i++;
        }
    }
    if (from < len)
        buf_append(&b, data + from, len - from);
    *outlen = b.len;
    return b.data ? b.data : xstrdup(""); /* the buffer's block is the caller's now */
}

static void depth_error(const struct json_limits *lim, char *err, size_t errlen)
{
    snprintf(err, errlen, "nesting deeper than %zu levels", lim->max_depth);
}

/* Every value takes at least one byte and whitespace is not counted, so an input no longer
 * than the value and size limits can only break the depth limit: the reader enforces that as
 * it goes, and the walk before it, a second pass over every byte, is skipped. */
static json_t *parse_one_pass(const char *data, size_t len, size_t flags,
                              const struct json_limits *lim, struct json_scan *scan,
                              enum json_parse_status *status, char *err, size_t errlen)
{
    struct json_read_stats rs;
    json_t *v = json_read_bounded(data, len, flags, lim->max_depth, &rs, err, errlen);
    if (scan)
        *scan = (struct json_scan){.depth = rs.depth, .values = rs.values,
                                   .compact_bytes = rs.compact_bytes,
                                   .big_integers = rs.big_integers,
                                   .wide_numbers = rs.wide_numbers};
    if (v)
        *status = JSONP_OK;
    else if (rs.too_deep) {
        *status = JSONP_TOO_DEEP;
        depth_error(lim, err, errlen);
    } else
        *status = JSONP_INVALID;
    return v;
}

json_t *json_parse_limited(const char *data, size_t len, size_t flags,
                           const struct json_limits *lim, struct json_scan *scan,
                           enum json_parse_status *status, char *err, size_t errlen)
{
    struct json_scan s;
    if (!data)
        data = "", len = 0;
    static const struct json_limits defaults = {JSON_MAX_DEPTH_DEFAULT, JSON_MAX_VALUES_DEFAULT, 0};
    if (!lim)
        lim = &defaults;
    if ((!lim->max_values || len <= lim->max_values) && (!lim->max_bytes || len <= lim->max_bytes))
        return parse_one_pass(data, len, flags, lim, scan, status, err, errlen);
    enum json_parse_status st = json_scan_bytes(data, len, lim, &s);
    if (scan)
        *scan = s;
    if (st == JSONP_TOO_DEEP) {
        depth_error(lim, err, errlen);
    } else if (st == JSONP_TOO_MANY) {
        snprintf(err, errlen, "more than %zu values", lim->max_values);
    } else if (st == JSONP_TOO_BIG) {
        snprintf(err, errlen, "%zu bytes without whitespace, more than %zu", s.compact_bytes,
                 lim->max_bytes);
    }
    if (st != JSONP_OK) {
        *status = st;
        return NULL;
    }
    json_t *v = json_read(data, len, flags, err, errlen);
    if (!v) {
        *status = JSONP_INVALID;
        return NULL;
    }
    *status = JSONP_OK;
    if (err && errlen)
        *err = '\0';
    return v;
}

json_t *json_loads_wide(const char *text, size_t flags)
{
    if (!text)
        return NULL;
    json_error_t jerr;
    json_t *v = json_loads(text, flags, &jerr);
    if (v || json_error_code(&jerr) != json_error_numeric_overflow)
        return v;
    size_t wlen;
    char *wide = widen_integers(text, strlen(text), &wlen);
    v = json_loadb(wide, wlen, flags, &jerr);
    free(wide);
    return v;
}
