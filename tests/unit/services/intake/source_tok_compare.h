/*
 * source_tok_compare.h - the intake's two ways of reading a body for POST /v1/ingest/{source},
 * written as one outcome text each so that a test can compare them byte for byte: the jansson
 * tree (json_parse_limited, then validate/normalize/extract) and the token index
 * (jtok_parse_limited, then the _tok functions). The outcome is the parse verdict (status, error
 * text, the scan counts), then either why the body was refused or the batch element the intake
 * would queue (element_text(), fingerprint included). "Now" timestamps are written as NOW.
 * Shared by tests/unit/services/intake/source_tok.c and tests/fuzz/normalize_tok.c.
 */
#ifndef CALSETA_SOURCE_TOK_COMPARE_H
#define CALSETA_SOURCE_TOK_COMPARE_H

#include "services/intake/batch_element.h"
#include "services/intake/source.h"
#include "jsonparse.h"
#include "jsontok.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void outcome_verdict(struct buf *b, enum json_parse_status st, const char *err,
                            const struct json_scan *s)
{
    buf_printf(b, "st=%d err=%s depth=%zu values=%zu compact=%zu big=%d wide=%d\n", (int)st, err,
               s->depth, s->values, s->compact_bytes, s->big_integers, s->wide_numbers);
}

static void outcome_element(struct buf *b, const struct alert_source *src,
                            const struct normalized_alert *na, const struct indicator_set *set,
                            const struct json_scan *scan)
{
    char fp[33], ts[32];
    indicators_fingerprint(na->title, src->name, set, fp);
    if (na->occurred_at_was_now)
        strcpy(ts, "NOW");
    else
        format_iso8601_us(na->occurred_at_us, ts);
    struct element e = {.na = na, .source = src->name, .occurred_at = ts, .fingerprint = fp,
                        .key_prefix = "cai_test", .set = set,
                        .check_numbers = scan->wide_numbers};
    element_text(b, &e);
}

/* The outcome through the jansson tree (caller frees). */
static char *outcome_tree(const struct alert_source *src, const char *data, size_t len,
                          const struct json_limits *lim)
{
    struct buf b;
    buf_init(&b);
    struct json_scan scan = {0};
    enum json_parse_status st;
    char err[160] = "";
    json_t *p = json_parse_limited(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, lim,
                                   &scan, &st, err, sizeof err);
    outcome_verdict(&b, st, err, &scan);
    if (!p) {
        buf_puts(&b, "unparsed");
    } else if (!json_is_object(p)) {
        buf_puts(&b, "not an object");
    } else {
        /* extraction runs on every object, valid or not, to compare it on odd shapes too */
        struct indicator_set set;
        indicator_set_init(&set);
        src->extract(p, &set);
        struct normalized_alert na;
        buf_printf(&b, "valid=%d\n", src->validate(p));
        if (src->normalize(p, &na) != 0) {
            buf_puts(&b, "refused");
        } else {
            outcome_element(&b, src, &na, &set, &scan);
            normalized_alert_destroy(&na);
        }
        indicator_set_destroy(&set);
    }
    json_decref(p);
    return b.data;
}

/* The outcome through the token index (caller frees). */
static char *outcome_tok(const struct alert_source *src, const char *data, size_t len,
                         const struct json_limits *lim)
{
    struct buf b;
    buf_init(&b);
    struct json_scan scan = {0};
    enum json_parse_status st;
    char err[160] = "";
    struct jtok_doc d;
    int ok = jtok_parse_limited(&d, data, len, lim, &scan, &st, err, sizeof err) == 0;
    outcome_verdict(&b, st, err, &scan);
    if (!ok) {
        buf_puts(&b, "unparsed");
    } else if (jtok_type(&d, 0) != JT_OBJECT) {
        buf_puts(&b, "not an object");
    } else {
        struct indicator_set set;
        indicator_set_init(&set);
        src->extract_tok(&d, &set);
        struct normalized_alert na;
        buf_printf(&b, "valid=%d\n", src->validate_tok(&d));
        if (src->normalize_tok(&d, &na) != 0) {
            buf_puts(&b, "refused");
        } else {
            outcome_element(&b, src, &na, &set, &scan);
            normalized_alert_destroy(&na);
        }
        indicator_set_destroy(&set);
    }
    jtok_free(&d);
    return b.data;
}

#endif
