/*
 * jsonread.c - a strict JSON reader that builds jansson values, for request bodies.
 *
 * It accepts exactly what json_loadb() accepts with the same flags (checked against it by
 * tests/unit/libcommon/util/jsonread.c and the jsonparse fuzz target), with two differences: an
 * integer literal beyond int64 becomes a real instead of an error (see jsonparse.h), and a raw
 * NUL byte right after a number or a literal, which jansson skips ("[8\0]" reads as [8]), is
 * refused: it is not JSON. Why not json_loadb(): jansson reads its input one character at a
 * time through a stream and copies every string through a growing buffer; this reader scans
 * strings with a tight loop and hands an escape-free string (nearly all of them) to jansson
 * straight from the input. Parsing a SIEM alert was the largest share of the intake's CPU per
 * alert.
 */
#include "jsonread.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct reader {
    const unsigned char *p, *start, *end;
    size_t flags;
    size_t depth, max_depth;
    int callers_limit; /* max_depth is the caller's, not jansson's */
    struct json_read_stats st;
    size_t ws; /* insignificant whitespace skipped */
    struct buf scratch; /* unescaped strings, number tokens */
    const char *error;
};

static json_t *read_value(struct reader *r);

static void *fail(struct reader *r, const char *why)
{
    if (!r->error)
        r->error = why;
    return NULL;
}

static void skip_ws(struct reader *r)
{
    const unsigned char *from = r->p;
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
    r->ws += (size_t)(r->p - from);
}

/* Length of the valid UTF-8 sequence at p (first byte >= 0x80), or 0: no overlong forms, no
 * surrogates, nothing above U+10FFFF (as jansson's utf8_check_full). */
size_t json_utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, v = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, v = c & 0x07;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return n;
}

int json_hex4(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

void json_put_utf8(struct buf *b, uint32_t v)
{
    char u[4];
    size_t n;
    if (v < 0x80) {
        u[0] = (char)v, n = 1;
    } else if (v < 0x800) {
        u[0] = (char)(0xC0 | (v >> 6)), u[1] = (char)(0x80 | (v & 0x3F)), n = 2;
    } else if (v < 0x10000) {
        u[0] = (char)(0xE0 | (v >> 12)), u[1] = (char)(0x80 | ((v >> 6) & 0x3F));
        u[2] = (char)(0x80 | (v & 0x3F)), n = 3;
    } else {
        u[0] = (char)(0xF0 | (v >> 18)), u[1] = (char)(0x80 | ((v >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((v >> 6) & 0x3F)), u[3] = (char)(0x80 | (v & 0x3F)), n = 4;
    }
    buf_append(b, u, n);
}

/* One escape after the backslash at r->p; appends its text to the scratch buffer. */
static int read_escape(struct reader *r)
{
    const unsigned char *p = r->p + 1;
    if (p >= r->end)
        return fail(r, "premature end of input"), -1;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = *p ? strchr(from, *p) : NULL;
    if (k) {
        buf_append(&r->scratch, &to[k - from], 1);
        r->p = p + 1;
        return 0;
    }
    uint32_t v, lo;
    if (*p != 'u' || json_hex4(p + 1, r->end, &v) != 0)
        return fail(r, "invalid escape"), -1;
    p += 5;
    if (v >= 0xD800 && v <= 0xDBFF) {
        if (r->end - p < 6 || p[0] != '\\' || p[1] != 'u' || json_hex4(p + 2, r->end, &lo) != 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return fail(r, "invalid Unicode surrogate pair"), -1;
        v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
    } else if (v >= 0xDC00 && v <= 0xDFFF) {
        return fail(r, "invalid Unicode low surrogate"), -1;
    } else if (v == 0 && !(r->flags & JSON_ALLOW_NUL)) {
        return fail(r, "\\u0000 is not allowed without JSON_ALLOW_NUL"), -1;
    }
    json_put_utf8(&r->scratch, v);
    r->p = p;
    return 0;
}

/* The bytes a string's fast loop steps over: printable ASCII but the quote and the backslash
 * (one table load per byte instead of four comparisons; the loop was the parser's hottest). */
const unsigned char JSON_PLAIN[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The string at r->p (its opening quote). Sets s and n to its text, either in the input (no
 * escapes) or in the scratch buffer. */
static int read_string(struct reader *r, const char **s, size_t *n)
{
    const unsigned char *p = ++r->p, *end = r->end;
    for (;;) { /* the common case: no escape, straight from the input */
        while (p < end && JSON_PLAIN[*p])
            p++;
        if (p >= end)
            return fail(r, "premature end of input"), -1;
        if (*p >= 0x80) {
            size_t k = json_utf8_seq(p, end);
            if (!k)
                return fail(r, "invalid UTF-8"), -1;
            p += k;
            continue;
        }
        break;
    }
    if (*p == '"') {
        *s = (const char *)r->p, *n = (size_t)(p - r->p);
        r->p = p + 1;
        return 0;
    }
    if (*p < 0x20)
        return fail(r, "control character in string"), -1;
    r->scratch.len = 0;
    buf_append(&r->scratch, r->p, (size_t)(p - r->p));
    r->p = p;
    while (r->p < end && *r->p != '"') {
        const unsigned char *q = r->p;
        if (*q == '\\') {
            if (read_escape(r) != 0)
                return -1;
            continue;
        }
        if (*q < 0x20)
            return fail(r, "control character in string"), -1;
        size_t k = *q < 0x80 ? 1 : json_utf8_seq(q, end);
        if (!k)
            return fail(r, "invalid UTF-8"), -1;
        buf_append(&r->scratch, q, k);
        r->p += k;
    }
    if (r->p >= end)
        return fail(r, "premature end of input"), -1;
    r->p++;
    *s = r->scratch.data ? r->scratch.data : "", *n = r->scratch.len;
    return 0;
}

static int is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* Whether the number token p[0..n) may be beyond what PostgreSQL's numeric holds (about 131,072
 * digits before the point and 16,383 after): longer than 1,000 characters, or an exponent of 1,000
 * or more either way. Anything else is far inside both limits. */
int json_number_is_wide(const char *p, size_t n)
{
    if (n > 1000)
        return 1;
    size_t e = 0;
    while (e < n && p[e] != 'e' && p[e] != 'E')
        e++;
    if (e == n)
        return 0;
    e++;
    if (e < n && (p[e] == '+' || p[e] == '-'))
        e++;
    while (e < n && p[e] == '0')
        e++;
    return n - e > 3;
}

/* A number with JSON's grammar; integers that fit int64 become integers, the others reals. */
/* The end of the JSON number at p (RFC 8259's grammar: optional minus, no leading zeros, a
 * fraction and an exponent each with at least one digit), or NULL when p holds none; *integral
 * is 1 when it has neither fraction nor exponent. Both readers scan numbers with it. */
const unsigned char *json_number_scan(const unsigned char *p, const unsigned char *end,
                                      int *integral)
{
    *integral = 1;
    if (p < end && *p == '-')
        p++;
    if (!is_digit(p, end))
        return NULL;
    if (*p == '0') {
        p++;
        if (is_digit(p, end))
            return NULL;
    } else {
        while (is_digit(p, end))
            p++;
    }
    if (p < end && *p == '.') {
        *integral = 0;
        if (!is_digit(++p, end))
            return NULL;
        while (is_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(p, end))
            return NULL;
        while (is_digit(p, end))
            p++;
    }
    return p;
}

static json_t *read_number(struct reader *r)
{
    const unsigned char *p = r->p, *end = r->end, *start = p;
    int neg = *p == '-', integral;
    p = json_number_scan(p, end, &integral);
    if (!p)
        return fail(r, "invalid number");
    r->p = p;
    if (json_number_is_wide((const char *)start, (size_t)(p - start)))
        r->st.wide_numbers = 1;
    if (integral && !(r->flags & JSON_DECODE_INT_AS_REAL)) {
        uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        const unsigned char *d = start + neg;
        for (; d < p; d++) {
            unsigned dig = *d - '0';
            if (v > (lim - dig) / 10)
                break;
            v = v * 10 + dig;
        }
        if (d == p)
            return json_integer(neg ? (json_int_t)(0 - v) : (json_int_t)v);
        r->st.big_integers = 1;
    }
    r->scratch.len = 0; /* strtod needs a terminated copy */
    buf_append(&r->scratch, start, (size_t)(p - start));
    buf_append(&r->scratch, "", 1);
    errno = 0;
    double d = strtod(r->scratch.data, NULL);
    if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
        return fail(r, "real number overflow");
    return json_real(d);
}

static json_t *read_literal(struct reader *r)
{
    static const struct {
        const char *word;
        size_t len;
    } words[] = {{"true", 4}, {"false", 5}, {"null", 4}};
    const unsigned char *q = r->p;
    while (q < r->end && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
        q++;
    size_t n = (size_t)(q - r->p);
    for (int i = 0; i < 3; i++) {
        if (n == words[i].len && !memcmp(r->p, words[i].word, n)) {
            r->p = q;
            return i == 0 ? json_true() : i == 1 ? json_false() : json_null();
        }
    }
    return fail(r, "invalid token");
}

static json_t *read_array(struct reader *r)
{
    json_t *a = json_array();
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return a;
    }
    for (;;) {
        json_t *v = read_value(r);
        if (!v || json_array_append_new(a, v) != 0)
            goto fail;
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return a;
        }
        fail(r, "']' or ',' expected");
        goto fail;
    }
fail:
    json_decref(a);
    return NULL;
}

static json_t *read_object(struct reader *r)
{
    json_t *o = json_object();
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return o;
    }
    for (;;) {
        const char *s;
        size_t n;
        skip_ws(r);
        if (r->p >= r->end || *r->p != '"') {
            fail(r, "string or '}' expected");
            goto fail;
        }
        r->st.values++;
        if (read_string(r, &s, &n) != 0)
            goto fail;
        if (memchr(s, '\0', n)) {
            fail(r, "NUL byte in object key not supported");
            goto fail;
        }
        char small[256], *key = n < sizeof small ? small : xmalloc(n + 1);
        memcpy(key, s, n); /* s may be the scratch buffer, which the value reuses */
        key[n] = '\0';
        int dup = (r->flags & JSON_REJECT_DUPLICATES) && json_object_getn(o, key, n);
        json_t *v = NULL;
        skip_ws(r);
        if (dup)
            fail(r, "duplicate object key");
        else if (r->p >= r->end || *r->p != ':')
            fail(r, "':' expected");
        else if (r->p++, (v = read_value(r)) != NULL && json_object_setn_new_nocheck(o, key, n, v) != 0)
            v = NULL;
        if (key != small)
            free(key);
        if (!v)
            goto fail;
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return o;
        }
        fail(r, "'}' or ',' expected");
        goto fail;
    }
fail:
    json_decref(o);
    return NULL;
}

static json_t *read_value(struct reader *r)
{
    skip_ws(r);
    if (r->p >= r->end)
        return fail(r, "premature end of input");
    unsigned char c = *r->p;
    r->st.values++;
    if (c == '{' || c == '[') {
        if (++r->depth > r->st.depth)
            r->st.depth = r->depth;
        if (r->depth > r->max_depth) {
            r->st.too_deep = r->callers_limit;
            return fail(r, "maximum parsing depth reached");
        }
        json_t *v = c == '{' ? read_object(r) : read_array(r);
        r->depth--;
        return v;
    }
    if (c == '"') {
        const char *s;
        size_t n;
        if (read_string(r, &s, &n) != 0)
            return NULL;
        return json_stringn_nocheck(s, n);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return read_number(r);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return read_literal(r);
    return fail(r, "invalid token");
}

json_t *json_read(const char *data, size_t len, size_t flags, char *err, size_t errlen)
{
    return json_read_bounded(data, len, flags, 0, NULL, err, errlen);
}

json_t *json_read_bounded(const char *data, size_t len, size_t flags, size_t max_depth,
                          struct json_read_stats *stats, char *err, size_t errlen)
{
    struct reader r = {.flags = flags};
    r.callers_limit = max_depth > 0 && max_depth <= READ_MAX_DEPTH;
    r.max_depth = r.callers_limit ? max_depth : READ_MAX_DEPTH;
    r.start = r.p = (const unsigned char *)(data ? data : "");
    r.end = r.p + (data ? len : 0);
    buf_init(&r.scratch);
    skip_ws(&r);
    json_t *v = NULL;
    if (!(flags & JSON_DECODE_ANY) && (r.p >= r.end || (*r.p != '[' && *r.p != '{')))
        fail(&r, "'[' or '{' expected");
    else
        v = read_value(&r);
    if (v) {
        skip_ws(&r);
        if (r.p < r.end) {
            fail(&r, "end of file expected");
            json_decref(v);
            v = NULL;
        }
    }
    buf_destroy(&r.scratch);
    if (stats) {
        *stats = r.st;
        stats->compact_bytes = (size_t)(r.p - r.start) - r.ws;
    }
    if (!v && err && errlen) {
        size_t line = 1, col = 1;
        for (const unsigned char *q = r.start; q < r.p && q < r.end; q++) {
            if (*q == '\n')
                line++, col = 1;
            else
                col++;
        }
        snprintf(err, errlen, "%s (line %zu, column %zu)", r.error ? r.error : "invalid JSON",
                 line, col);
    } else if (err && errlen) {
        *err = '\0';
    }
    return v;
}
