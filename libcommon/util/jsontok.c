/*
 * jsontok.c - the flat token reader (see jsontok.h).
 *
 * The grammar, the checks and their order are those of jsonread.c (a recursive descent with the
 * same error texts at the same positions), so the same input gets the same verdict from both;
 * tests/unit/libcommon/util/jsontok.c and the normalize fuzz target compare them. What
 * differs is the output: a token per value appended to one growing array, a string's text left
 * in the input unless it has escapes. Duplicate keys are found as each key is read (a linear look at
 * the earlier keys of a small object, a hash table for a large one), so a duplicate is refused
 * at the same point as jsonread.c refuses it.
 */
#include "jsontok.h"
#include "jsonread.h"
#include "siphash.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_MAX_DEPTH 2048  /* jansson's JSON_PARSER_MAX_DEPTH, as jsonread.c */
#define DUP_LINEAR_KEYS 16   /* objects up to this many keys are checked without a table */

struct tokreader {
    struct jtok_doc *d;
    const unsigned char *p, *start, *end;
    size_t depth, max_depth;
    int callers_limit;
    struct json_read_stats st;
    size_t ws;
    const char *error;
};

static int fail(struct tokreader *r, const char *why)
{
    if (!r->error)
        r->error = why;
    return -1;
}

/* JSON's four whitespace bytes. */
static const unsigned char JSON_WS[256] = {['\t'] = 1, ['\n'] = 1, ['\r'] = 1, [' '] = 1};

/* Called before and after every value, key and separator: a byte above the space is never
 * whitespace, which settles the common case with one test; a run (a pretty-printed body's
 * line breaks and indentation) is then one table lookup per byte, on locals. */
static inline void skip_ws(struct tokreader *r)
{
    const unsigned char *p = r->p, *end = r->end;
    if (p >= end || *p > ' ')
        return;
    const unsigned char *from = p;
    while (p < end && JSON_WS[*p])
        p++;
    r->ws += (size_t)(p - from);
    r->p = p;
}

static __attribute__((noinline)) void grow(struct jtok_doc *d)
{
    d->cap = d->cap ? d->cap * 2 : 64;
    d->t = xrealloc(d->t, d->cap * sizeof *d->t);
}

/* Inline, with the growth out of line: it runs once per token (a hundred per fixture), and
 * as a call it cost a third of its instructions in the call itself. */
static inline __attribute__((always_inline)) uint32_t push(struct tokreader *r,
                                                           enum jtok_type type)
{
    struct jtok_doc *d = r->d;
    if (__builtin_expect(d->n == d->cap, 0))
        grow(d);
    struct jtok *t = &d->t[d->n];
    *t = (struct jtok){.start = (uint32_t)(r->p - r->start), .next = JTOK_NONE, .type = (uint8_t)type};
    return (uint32_t)d->n++;
}

static void close_tok(struct tokreader *r, uint32_t i)
{
    r->d->t[i].end = (uint32_t)(r->p - r->start);
}

/* An escape after the backslash at r->p, decoded into the side buffer. */
static int read_escape(struct tokreader *r)
{
    const unsigned char *p = r->p + 1;
    struct buf *b = &r->d->text;
    if (p >= r->end)
        return fail(r, "premature end of input");
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *k = *p ? strchr(from, *p) : NULL;
    if (k) {
        buf_append(b, &to[k - from], 1);
        r->p = p + 1;
        return 0;
    }
    uint32_t v, lo;
    if (*p != 'u' || json_hex4(p + 1, r->end, &v) != 0)
        return fail(r, "invalid escape");
    p += 5;
    if (v >= 0xD800 && v <= 0xDBFF) {
        if (r->end - p < 6 || p[0] != '\\' || p[1] != 'u' || json_hex4(p + 2, r->end, &lo) != 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return fail(r, "invalid Unicode surrogate pair");
        v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
    } else if (v >= 0xDC00 && v <= 0xDFFF) {
        return fail(r, "invalid Unicode low surrogate");
    } else if (v == 0) {
        return fail(r, "\\u0000 is not allowed without JSON_ALLOW_NUL");
    }
    json_put_utf8(b, v);
    r->p = p;
    return 0;
}

/* The rest of a string with escapes, from r->p (the first byte the fast loop stopped at), into
 * the side buffer after the plain prefix from..r->p. t stays valid: no token is added meanwhile. */
static int read_escaped(struct tokreader *r, struct jtok *t, const unsigned char *from)
{
    struct buf *b = &r->d->text;
    const unsigned char *end = r->end;
    size_t at = b->len;
    buf_append(b, from, (size_t)(r->p - from));
    while (r->p < end && *r->p != '"') {
        const unsigned char *q = r->p;
        if (*q == '\\') {
            if (read_escape(r) != 0)
                return -1;
            continue;
        }
        if (*q < 0x20)
            return fail(r, "control character in string");
        size_t k = *q < 0x80 ? 1 : json_utf8_seq(q, end);
        if (!k)
            return fail(r, "invalid UTF-8");
        buf_append(b, q, k);
        r->p += k;
    }
    if (r->p >= end)
        return fail(r, "premature end of input");
    r->p++;
    t->escaped = 1;
    t->str = (uint32_t)at;
    t->slen = (uint32_t)(b->len - at);
    return 0;
}

/* The string at r->p (its opening quote) as token *out. */
static int read_string(struct tokreader *r, uint32_t *out)
{
    uint32_t i = push(r, JT_STRING);
    struct jtok *t = &r->d->t[i];
    const unsigned char *p = ++r->p, *end = r->end;
    *out = i;
    for (;;) {
        p = json_skip_plain(p, end);
        while (p < end && JSON_PLAIN[*p])
            p++;
        if (p >= end)
            return fail(r, "premature end of input");
        if (*p >= 0x80) {
            size_t k = json_utf8_seq(p, end);
            if (!k)
                return fail(r, "invalid UTF-8");
            p += k;
            continue;
        }
        break;
    }
    if (*p == '"') {
        t->str = (uint32_t)(r->p - r->start);
        t->slen = (uint32_t)(p - r->p);
        r->p = p + 1;
        close_tok(r, i);
        return 0;
    }
    if (*p < 0x20)
        return fail(r, "control character in string");
    const unsigned char *from = r->p;
    r->p = p;
    if (read_escaped(r, t, from) != 0)
        return -1;
    close_tok(r, i);
    return 0;
}

/* Whether the integer literal start..p (digits after an optional minus) fits int64. */
static int fits_int64(const unsigned char *start, const unsigned char *p)
{
    int neg = *start == '-';
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (const unsigned char *d = start + neg; d < p; d++) {
        unsigned dig = *d - '0';
        if (v > (lim - dig) / 10)
            return 0;
        v = v * 10 + dig;
    }
    return 1;
}

/* A number with JSON's grammar; a real (or an integer beyond int64, read as a real) must not
 * overflow a double, as jsonread.c refuses it. */
static int read_number(struct tokreader *r)
{
    const unsigned char *p = r->p, *end = r->end, *start = p;
    int integral;
    p = json_number_scan(p, end, &integral);
    if (!p)
        return fail(r, "invalid number");
    uint32_t i = push(r, JT_NUMBER);
    r->p = p;
    close_tok(r, i);
    size_t n = (size_t)(p - start);
    if (json_number_is_wide((const char *)start, n))
        r->st.wide_numbers = 1;
    if (integral && fits_int64(start, p))
        return 0;
    if (integral)
        r->st.big_integers = 1;
    /* Without an exponent, fewer than 309 digits stay below DBL_MAX (about 1.8e308): only a
     * literal with an exponent or that long can overflow, and only that one is converted. */
    if (n <= 300 && !memchr(start, 'e', n) && !memchr(start, 'E', n))
        return 0;
    char small[64], *copy = n < sizeof small ? small : xmalloc(n + 1);
    memcpy(copy, start, n);
    copy[n] = '\0';
    errno = 0;
    double v = strtod(copy, NULL);
    int overflow = errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL);
    if (copy != small)
        free(copy);
    return overflow ? fail(r, "real number overflow") : 0;
}

static int read_literal(struct tokreader *r)
{
    static const struct {
        const char *word;
        size_t len;
        enum jtok_type type;
    } words[] = {{"true", 4, JT_TRUE}, {"false", 5, JT_FALSE}, {"null", 4, JT_NULL}};
    const unsigned char *q = r->p;
    while (q < r->end && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
        q++;
    size_t n = (size_t)(q - r->p);
    for (int k = 0; k < 3; k++) {
        if (n == words[k].len && !memcmp(r->p, words[k].word, n)) {
            uint32_t i = push(r, words[k].type);
            r->p = q;
            close_tok(r, i);
            return 0;
        }
    }
    return fail(r, "invalid token");
}

static int read_value(struct tokreader *r);

static int read_array(struct tokreader *r, uint32_t a)
{
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return 0;
    }
    uint32_t prev = JTOK_NONE;
    for (;;) {
        uint32_t el = (uint32_t)r->d->n;
        if (read_value(r) != 0)
            return -1;
        if (prev != JTOK_NONE)
            r->d->t[prev].next = el;
        prev = el;
        r->d->t[a].count++;
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return 0;
        }
        return fail(r, "']' or ',' expected");
    }
}

/* ---- duplicate keys, and the key tables lookups use ---- */

static const char *text_of(const struct jtok_doc *d, const struct jtok *t)
{
    return t->escaped ? d->text.data + t->str : d->data + t->str;
}

/* Keys come from the sender, so they are hashed with SipHash-1-3 under a key drawn once per
 * process: a seeded plain hash still has collisions that hold for every seed, so a sender could
 * pack a large object with keys sharing one slot and make each insert walk all the others. */
static uint32_t hash_bytes(const char *s, size_t n)
{
    return (uint32_t)siphash13(siphash_process_key(), s, n);
}

static int same_text(const struct jtok_doc *d, uint32_t a, uint32_t b)
{
    const struct jtok *x = &d->t[a], *y = &d->t[b];
    return x->slen == y->slen && !memcmp(text_of(d, x), text_of(d, y), x->slen);
}

/* In an object with a key table, a key token's count holds its hash (strings have no
 * children), so a key is hashed once. */
static int same_key(const struct jtok_doc *d, uint32_t a, uint32_t b)
{
    return d->t[a].count == d->t[b].count && same_text(d, a, b);
}

static void hash_key(struct jtok_doc *d, uint32_t k)
{
    struct jtok *t = &d->t[k];
    t->count = hash_bytes(text_of(d, t), t->slen);
}

/* The keys seen in one object: a chain walked while it is short, then an open-addressing
 * table of key token indices, which the object keeps for lookups (jtok_getn). */
struct keyset {
    uint32_t first, last, n;
    uint32_t *slots;
    size_t nslots;
    uint64_t seen; /* while the chain is walked: a bit per (length, first byte) class of its keys */
};

static int table_add(struct jtok_doc *d, struct keyset *ks, uint32_t k)
{
    size_t mask = ks->nslots - 1;
    for (size_t s = d->t[k].count & mask;; s = (s + 1) & mask, d->probes++) {
        if (ks->slots[s] == JTOK_NONE) {
            ks->slots[s] = k;
            return 0;
        }
        if (same_key(d, ks->slots[s], k))
            return -1;
    }
}

static void table_grow(struct jtok_doc *d, struct keyset *ks)
{
    if (!ks->slots) /* the object outgrows the chain: hash the keys it has */
        for (uint32_t k = ks->first; k != JTOK_NONE; k = d->t[k].next)
            hash_key(d, k);
    free(ks->slots);
    ks->nslots = ks->nslots ? ks->nslots * 2 : 4 * DUP_LINEAR_KEYS;
    ks->slots = xmalloc(ks->nslots * sizeof *ks->slots);
    memset(ks->slots, 0xff, ks->nslots * sizeof *ks->slots);
    for (uint32_t k = ks->first; k != JTOK_NONE; k = d->t[k].next)
        table_add(d, ks, k);
}

/* Adds key token k (not yet linked); -1 when the object already has that key. */
static int keyset_add(struct jtok_doc *d, struct keyset *ks, uint32_t k)
{
    if (ks->n < DUP_LINEAR_KEYS) {
        /* Equal keys have the same length and first byte: a key whose class no earlier key
         * has cannot repeat one, and skips the walk (most keys of an object differ there). */
        const struct jtok *t = &d->t[k];
        unsigned first = t->slen ? (unsigned char)text_of(d, t)[0] : 0;
        uint64_t bit = 1ull << ((t->slen * 5u + first) & 63);
        if (!(ks->seen & bit)) {
            ks->seen |= bit;
            return 0;
        }
        for (uint32_t j = ks->first; j != JTOK_NONE; j = d->t[j].next)
            if (same_text(d, j, k))
                return -1;
        return 0;
    }
    if (!ks->slots || (ks->n + 1) * 2 > ks->nslots)
        table_grow(d, ks);
    hash_key(d, k);
    return table_add(d, ks, k);
}

static void keyset_link(struct jtok_doc *d, struct keyset *ks, uint32_t k)
{
    if (ks->last != JTOK_NONE)
        d->t[ks->last].next = k;
    else
        ks->first = k;
    ks->last = k;
    ks->n++;
}

/* The object's table, if it has one, into the document's slot array: an object token's str and
 * slen (unused by containers) say where it is and how many slots it has. */
static void keyset_keep(struct jtok_doc *d, struct keyset *ks, uint32_t o)
{
    if (!ks->slots)
        return;
    if (d->nslots + ks->nslots > d->slots_cap) {
        d->slots_cap = (d->nslots + ks->nslots) * 2;
        d->slots = xrealloc(d->slots, d->slots_cap * sizeof *d->slots);
    }
    memcpy(d->slots + d->nslots, ks->slots, ks->nslots * sizeof *ks->slots);
    d->t[o].str = (uint32_t)d->nslots;
    d->t[o].slen = (uint32_t)ks->nslots;
    d->nslots += ks->nslots;
}

static int read_members(struct tokreader *r, uint32_t o, struct keyset *ks)
{
    for (;;) {
        skip_ws(r);
        if (r->p >= r->end || *r->p != '"')
            return fail(r, "string or '}' expected");
        r->st.values++;
        uint32_t k;
        if (read_string(r, &k) != 0)
            return -1;
        skip_ws(r);
        if (keyset_add(r->d, ks, k) != 0)
            return fail(r, "duplicate object key");
        if (r->p >= r->end || *r->p != ':')
            return fail(r, "':' expected");
        r->p++;
        if (read_value(r) != 0)
            return -1;
        keyset_link(r->d, ks, k);
        r->d->t[o].count++;
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return 0;
        }
        return fail(r, "'}' or ',' expected");
    }
}

static int read_object(struct tokreader *r, uint32_t o)
{
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return 0;
    }
    struct keyset ks = {.first = JTOK_NONE, .last = JTOK_NONE};
    int rc = read_members(r, o, &ks);
    if (rc == 0)
        keyset_keep(r->d, &ks, o);
    free(ks.slots);
    return rc;
}

static int read_value(struct tokreader *r)
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
        uint32_t i = push(r, c == '{' ? JT_OBJECT : JT_ARRAY);
        int rc = c == '{' ? read_object(r, i) : read_array(r, i);
        close_tok(r, i);
        r->depth--;
        return rc;
    }
    if (c == '"') {
        uint32_t i;
        return read_string(r, &i);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return read_number(r);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return read_literal(r);
    return fail(r, "invalid token");
}

/* json_read_bounded() with JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, into d. */
static int tok_read(struct jtok_doc *d, size_t max_depth, struct json_read_stats *stats, char *err,
                    size_t errlen)
{
    struct tokreader r = {.d = d};
    r.callers_limit = max_depth > 0 && max_depth <= READ_MAX_DEPTH;
    r.max_depth = r.callers_limit ? max_depth : READ_MAX_DEPTH;
    r.start = r.p = (const unsigned char *)d->data;
    r.end = r.p + d->len;
    skip_ws(&r);
    int rc = read_value(&r);
    if (rc == 0) {
        skip_ws(&r);
        if (r.p < r.end)
            rc = fail(&r, "end of file expected");
    }
    *stats = r.st;
    stats->compact_bytes = (size_t)(r.p - r.start) - r.ws;
    if (rc != 0 && err && errlen) {
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
    return rc;
}

static void scan_from(struct json_scan *scan, const struct json_read_stats *rs)
{
    *scan = (struct json_scan){.depth = rs->depth, .values = rs->values,
                               .compact_bytes = rs->compact_bytes,
                               .big_integers = rs->big_integers,
                               .wide_numbers = rs->wide_numbers};
}

int jtok_parse_limited(struct jtok_doc *d, const char *data, size_t len,
                       const struct json_limits *lim, struct json_scan *scan,
                       enum json_parse_status *status, char *err, size_t errlen)
{
    static const struct json_limits defaults = {JSON_MAX_DEPTH_DEFAULT, JSON_MAX_VALUES_DEFAULT, 0};
    struct json_scan s = {0};
    memset(d, 0, sizeof *d);
    buf_init(&d->text);
    d->data = data ? data : "";
    d->len = data ? len : 0;
    if (!lim)
        lim = &defaults;
    if (d->len >= UINT32_MAX) {
        *status = JSONP_TOO_BIG;
        snprintf(err, errlen, "%zu bytes, too many to read", d->len);
        goto fail;
    }
    int one_pass = (!lim->max_values || d->len <= lim->max_values) &&
                   (!lim->max_bytes || d->len <= lim->max_bytes);
    if (!one_pass) {
        /* as json_parse_limited(): the walk refuses before anything is read */
        *status = json_scan_bytes(d->data, d->len, lim, &s);
        if (*status == JSONP_TOO_DEEP)
            snprintf(err, errlen, "nesting deeper than %zu levels", lim->max_depth);
        else if (*status == JSONP_TOO_MANY)
            snprintf(err, errlen, "more than %zu values", lim->max_values);
        else if (*status == JSONP_TOO_BIG)
            snprintf(err, errlen, "%zu bytes without whitespace, more than %zu", s.compact_bytes,
                     lim->max_bytes);
        if (*status != JSONP_OK)
            goto fail;
    }
    struct json_read_stats rs;
    /* a token per 8 bytes covers ordinary payloads, and no document has more tokens than the
     * value limit lets through; push() doubles the array for denser bodies */
    d->cap = d->len / 8 + 16;
    if (lim->max_values && d->cap > lim->max_values + 1)
        d->cap = lim->max_values + 1;
    d->t = xmalloc(d->cap * sizeof *d->t);
    int rc = tok_read(d, one_pass ? lim->max_depth : 0, &rs, err, errlen);
    if (one_pass)
        scan_from(&s, &rs);
    if (rc == 0) {
        *status = JSONP_OK;
        if (scan)
            *scan = s;
        return 0;
    }
    if (one_pass && rs.too_deep) {
        *status = JSONP_TOO_DEEP;
        snprintf(err, errlen, "nesting deeper than %zu levels", lim->max_depth);
    } else {
        *status = JSONP_INVALID;
    }
fail:
    if (scan)
        *scan = s;
    jtok_free(d);
    d->data = data ? data : "";
    d->len = 0;
    return -1;
}

void jtok_free(struct jtok_doc *d)
{
    free(d->t);
    free(d->slots);
    d->t = NULL;
    d->slots = NULL;
    d->n = d->cap = d->nslots = d->slots_cap = d->probes = 0;
    buf_destroy(&d->text);
}

/* ---- accessors ---- */

static const struct jtok *tok(const struct jtok_doc *d, uint32_t i)
{
    return i < d->n ? &d->t[i] : NULL;
}

enum jtok_type jtok_type(const struct jtok_doc *d, uint32_t i)
{
    const struct jtok *t = tok(d, i);
    return t ? (enum jtok_type)t->type : JT_NONE;
}

/* A looked-up name's hash, as the table's keys were hashed. The sources look the same few dozen
 * literal names up in every alert, so a name's hash is remembered per thread: the slot its
 * address picks holds the address, the length, a copy of the bytes and the hash, and a hit needs
 * all three to match, so a buffer reused for another name is hashed afresh. */
#define NAME_CACHE_SLOTS 64
#define NAME_CACHE_BYTES 40
struct name_hash {
    const char *p;
    uint32_t n, h;
    char text[NAME_CACHE_BYTES];
};
static __thread struct name_hash name_cache[NAME_CACHE_SLOTS];

static uint32_t name_hash(const char *key, size_t n)
{
    if (n > NAME_CACHE_BYTES || !key)
        return hash_bytes(key ? key : "", n);
    struct name_hash *e = &name_cache[((uintptr_t)key >> 3 ^ n) & (NAME_CACHE_SLOTS - 1)];
    if (e->p == key && e->n == n && !memcmp(e->text, key, n))
        return e->h;
    e->p = key;
    e->n = (uint32_t)n;
    memcpy(e->text, key, n);
    e->h = hash_bytes(key, n);
    return e->h;
}

uint32_t jtok_getn(const struct jtok_doc *d, uint32_t obj, const char *key, size_t n)
{
    const struct jtok *o = tok(d, obj);
    if (!o || o->type != JT_OBJECT || !o->count)
        return JTOK_NONE;
    if (o->slen) { /* a large object: its key table */
        const uint32_t *slots = d->slots + o->str;
        size_t mask = o->slen - 1;
        uint32_t h = name_hash(key, n);
        for (size_t s = h & mask; slots[s] != JTOK_NONE; s = (s + 1) & mask) {
            const struct jtok *t = &d->t[slots[s]];
            if (t->count == h && t->slen == n && !memcmp(text_of(d, t), key, n))
                return slots[s] + 1;
        }
        return JTOK_NONE;
    }
    for (uint32_t k = obj + 1; k != JTOK_NONE; k = d->t[k].next) {
        const struct jtok *t = &d->t[k];
        if (t->slen == n && !memcmp(text_of(d, t), key, n))
            return k + 1;
    }
    return JTOK_NONE;
}

uint32_t jtok_index(const struct jtok_doc *d, uint32_t arr, size_t k)
{
    const struct jtok *a = tok(d, arr);
    if (!a || a->type != JT_ARRAY || k >= a->count)
        return JTOK_NONE;
    uint32_t e = arr + 1;
    while (k--)
        e = d->t[e].next;
    return e;
}

uint32_t jtok_first(const struct jtok_doc *d, uint32_t i)
{
    const struct jtok *t = tok(d, i);
    return t && (t->type == JT_OBJECT || t->type == JT_ARRAY) && t->count ? i + 1 : JTOK_NONE;
}

uint32_t jtok_next(const struct jtok_doc *d, uint32_t i)
{
    const struct jtok *t = tok(d, i);
    return t ? t->next : JTOK_NONE;
}

const char *jtok_str(const struct jtok_doc *d, uint32_t i, size_t *len)
{
    const struct jtok *t = tok(d, i);
    if (!t || t->type != JT_STRING)
        return NULL;
    if (len)
        *len = t->slen;
    return t->slen ? text_of(d, t) : "";
}

int jtok_streq(const struct jtok_doc *d, uint32_t i, const char *s)
{
    size_t n;
    const char *v = jtok_str(d, i, &n);
    return v && n == strlen(s) && !memcmp(v, s, n);
}

char *jtok_strdup(const struct jtok_doc *d, uint32_t i)
{
    size_t n;
    const char *v = jtok_str(d, i, &n);
    return v ? xstrndup(v, n) : NULL;
}

int jtok_truthy(const struct jtok_doc *d, uint32_t i)
{
    const struct jtok *t = tok(d, i);
    if (!t)
        return 0;
    switch (t->type) {
    case JT_OBJECT:
    case JT_ARRAY:
        return t->count > 0;
    case JT_STRING:
        return t->slen > 0;
    case JT_TRUE:
        return 1;
    case JT_NUMBER: {
        json_t *v = jtok_json(d, i); /* zero has many spellings (-0, 0e7, 1e-400) */
        double x = json_number_value(v);
        json_decref(v);
        return x != 0;
    }
    default:
        return 0;
    }
}

uint32_t jtok_or(const struct jtok_doc *d, uint32_t a, uint32_t b)
{
    if (jtok_truthy(d, a))
        return a;
    return jtok_truthy(d, b) ? b : JTOK_NONE;
}

json_t *jtok_json(const struct jtok_doc *d, uint32_t i)
{
    const struct jtok *t = tok(d, i);
    if (!t)
        return NULL;
    return json_read(d->data + t->start, t->end - t->start, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                     NULL, 0);
}
