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
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* The first byte from p that is not JSON_PLAIN (a quote, a backslash, a control character or a
 * byte >= 0x80), found a block at a time while a block remains; the caller's byte loop over
 * JSON_PLAIN finishes the tail (and, in the word version, the word that held such a byte). Used
 * per string by the token reader and the string writer of jsontext.c, so inline. The word
 * version is what builds without SSE2 use; it is compiled everywhere so that its unit test runs
 * on x86-64 too, and CALSETA_JSON_NO_SIMD makes json_skip_plain() use it (a second unit test
 * build of the reader and the writer does). */
static inline const unsigned char *json_skip_plain_words(const unsigned char *p,
                                                         const unsigned char *end)
{
    /* a word holds such a byte when this high-bit mask is not zero (bytes after the first may
     * be flagged wrongly, which only hands the word to the byte loop) */
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t w, q, b;
        memcpy(&w, p, 8);
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        if ((((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w) & highs)
            break;
        p += 8;
    }
    return p;
}

#ifdef __SSE2__
static inline const unsigned char *json_skip_plain_sse2(const unsigned char *p,
                                                        const unsigned char *end)
{
    /* as signed bytes, a control character and a byte >= 0x80 are both below 0x20 */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash));
        hit = _mm_or_si128(hit, _mm_cmplt_epi8(v, space));
        unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
    return p;
}
#endif

static inline const unsigned char *json_skip_plain(const unsigned char *p,
                                                   const unsigned char *end)
{
#if defined(__SSE2__) && !defined(CALSETA_JSON_NO_SIMD)
    return json_skip_plain_sse2(p, end);
#else
    return json_skip_plain_words(p, end);
#endif
}

#endif
