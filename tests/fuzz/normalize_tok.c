/*
 * normalize_tok.c - libFuzzer target for the token path of POST /v1/ingest/{source}: the token
 * reader (jsontok) and every source's _tok functions against the jansson path they replace.
 *
 * Arbitrary bytes (copied to a buffer of exactly their size, so an over-read is an ASan report)
 * go both ways - json_parse_limited() then validate/normalize/extract, and jtok_parse_limited()
 * then the _tok functions - under small limits and the defaults; the harness aborts when the two
 * outcomes (parse verdict, error text, scan counts, the batch element byte for byte) differ.
 * A document both accept also reads back from its tokens (jtok_json of the root) as the same
 * value. Seeds: corpus/normalize_tok/ (the fixtures and hostile bodies).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/services/intake/source_tok_compare.h"

static const struct json_limits SMALL = {.max_depth = 8, .max_values = 200, .max_bytes = 0};

static void compare(const char *data, size_t size, const struct json_limits *lim)
{
    for (const struct alert_source *const *s = source_all(); *s; s++) {
        if (!(*s)->normalize_tok)
            continue;
        char *a = outcome_tree(*s, data, size, lim);
        char *b = outcome_tok(*s, data, size, lim);
        if (strcmp(a, b) != 0)
            abort();
        free(a);
        free(b);
    }
}

static void read_back(const char *data, size_t size)
{
    struct jtok_doc d;
    enum json_parse_status st;
    char err[160];
    if (jtok_parse_limited(&d, data, size, NULL, NULL, &st, err, sizeof err) != 0) {
        jtok_free(&d);
        return;
    }
    json_t *want = json_parse_limited(data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL,
                                      NULL, &st, err, sizeof err);
    json_t *got = jtok_json(&d, 0);
    if (!want || !got || !json_equal(want, got))
        abort();
    json_decref(want);
    json_decref(got);
    jtok_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (size)
        memcpy(copy, data, size);
    compare(copy, size, &SMALL);
    compare(copy, size, NULL);
    read_back(copy, size);
    free(copy);
    return 0;
}
