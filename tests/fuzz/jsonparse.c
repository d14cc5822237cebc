/*
 * jsonparse.c - libFuzzer target for the bounded JSON parser every request body goes through
 * (json_parse_limited) and the wide reader of PostgreSQL's JSON (json_loads_wide).
 *
 * Arbitrary bytes (copied to a buffer of exactly their size, so an over-read is an ASan report)
 * are parsed under small limits. Besides crashes the harness aborts when the parser's answer
 * disagrees with its definition: an accepted document stays within the limits and re-parses
 * after json_dumps; a document jansson itself accepts is never called invalid (only a limit may
 * refuse it), and an accepted document without integers beyond int64 is exactly what jansson
 * reads from the same bytes (json_read() replaces json_loadb() there); the scan of a refused
 * document never exceeds what it reports. Seeds:
 * corpus/jsonparse/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonparse.h"

static const struct json_limits LIMITS = {.max_depth = 16, .max_values = 2000, .max_bytes = 1 << 16};

static void check_accepted(json_t *v, const struct json_scan *scan)
{
    if (scan->depth > LIMITS.max_depth || scan->values > LIMITS.max_values ||
        scan->compact_bytes > LIMITS.max_bytes)
        abort(); /* accepted past a limit */
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text)
        abort();
    json_t *again = json_loads_wide(text, JSON_DECODE_ANY);
    if (!again)
        abort(); /* what we accepted does not read back */
    json_decref(again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (size)
        memcpy(copy, data, size);
    struct json_scan scan;
    enum json_parse_status st;
    char err[256];
    json_t *v = json_parse_limited(copy, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &LIMITS,
                                   &scan, &st, err, sizeof err);
    if (v) {
        if (st != JSONP_OK)
            abort();
        check_accepted(v, &scan);
        struct json_scan walk; /* a short input was read in one pass: its counts are the walk's */
        if (json_scan_bytes(copy, size, &LIMITS, &walk) != JSONP_OK || walk.depth != scan.depth ||
            walk.values != scan.values || walk.compact_bytes != scan.compact_bytes ||
            walk.big_integers != scan.big_integers || walk.wide_numbers != scan.wide_numbers)
            abort();
        if (!scan.big_integers) {
            json_error_t je;
            json_t *j = json_loadb(copy, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
            if (!j || !json_equal(j, v))
                abort(); /* json_read() and jansson disagree */
            json_decref(j);
        }
        json_decref(v);
    } else if (st == JSONP_INVALID && !memchr(copy, 0, size)) {
        /* jansson accepts it and no limit was hit: we must not call it invalid (except for a
         * raw NUL byte, which jansson skips after a number or a literal and we refuse) */
        json_error_t je;
        json_t *j = json_loadb(copy, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (j) {
            json_decref(j);
            abort();
        }
    }
    /* the trusted reader on the same bytes as a string: any answer, no crash */
    char *text = malloc(size + 1);
    if (size)
        memcpy(text, data, size);
    text[size] = 0;
    json_t *w = json_loads_wide(text, JSON_DECODE_ANY);
    json_decref(w);
    free(text);
    free(copy);
    return 0;
}
