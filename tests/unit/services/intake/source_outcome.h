/*
 * source_outcome.h - what a source makes of a body, written as one text so that a test can
 * compare it byte for byte: the parse verdict (status, error text, the scan counts), then either
 * why the body was refused or whether the source validates it and the batch element the intake
 * would queue (element_text(), fingerprint included). "Now" timestamps are written as NOW.
 * Two ways in: the body read into tokens, the payload at their root (POST /v1/ingest/{source}),
 * and the payload read as a jansson tree and then as a member of a body's tokens (POST
 * /v1/alerts, the mapping test endpoint); both must give the same text.
 * Shared by tests/unit/services/intake/source_tok.c and tests/fuzz/normalize.c.
 */
#ifndef CALSETA_SOURCE_OUTCOME_H
#define CALSETA_SOURCE_OUTCOME_H

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

/* The source's steps over tokens: extraction runs on every object, valid or not, so that it is
 * checked on odd shapes too. */
static void outcome_steps(struct buf *b, const struct alert_source *src, const struct jtok_doc *d,
                          uint32_t root, const struct json_scan *scan)
{
    struct indicator_set set;
    indicator_set_init(&set);
    src->extract(d, root, &set);
    struct normalized_alert na;
    buf_printf(b, "valid=%d\n", src->validate(d, root));
    if (src->normalize(d, root, &na) != 0) {
        buf_puts(b, "refused");
    } else {
        outcome_element(b, src, &na, &set, scan);
        normalized_alert_destroy(&na);
    }
    indicator_set_destroy(&set);
}

/* The outcome through the body's token index (caller frees). */
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
        outcome_steps(&b, src, &d, 0, &scan);
    }
    jtok_free(&d);
    return b.data;
}

/* The same bytes as POST /v1/alerts reads its payload: data read as a jansson tree (p, NULL
 * when refused, with its verdict), then, when it is an object, as the member "payload" of a
 * body's token index (d at root; tok_ok 0 when source_body_tokens() failed). */
struct held {
    json_t *p;
    enum json_parse_status st;
    char err[160];
    struct json_scan scan;
    struct buf body;
    struct jtok_doc d;
    uint32_t root;
    int tok_ok;
};

static void held_read(struct held *h, const char *data, size_t len, const struct json_limits *lim)
{
    memset(h, 0, sizeof *h);
    buf_init(&h->body);
    h->p = json_parse_limited(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, lim, &h->scan,
                              &h->st, h->err, sizeof h->err);
    if (!json_is_object(h->p))
        return;
    buf_puts(&h->body, "{\"source_name\":\"x\",\"payload\":");
    buf_append(&h->body, data, len);
    buf_puts(&h->body, "}");
    h->tok_ok = source_body_tokens(&h->d, h->body.data, h->body.len, "payload", &h->root) == 0;
    if (!h->tok_ok)
        jtok_free(&h->d);
}

static void held_free(struct held *h)
{
    if (h->tok_ok)
        jtok_free(&h->d);
    buf_destroy(&h->body);
    json_decref(h->p);
}

/* The outcome through the payload held as POST /v1/alerts holds it (caller frees). */
static char *outcome_held_read(const struct alert_source *src, const struct held *h)
{
    struct buf b;
    buf_init(&b);
    outcome_verdict(&b, h->st, h->err, &h->scan);
    if (!h->p)
        buf_puts(&b, "unparsed");
    else if (!json_is_object(h->p))
        buf_puts(&b, "not an object");
    else if (!h->tok_ok)
        buf_puts(&b, "no tokens");
    else
        outcome_steps(&b, src, &h->d, h->root, &h->scan);
    return b.data;
}

static inline char *outcome_held(const struct alert_source *src, const char *data, size_t len,
                                 const struct json_limits *lim)
{
    struct held h;
    held_read(&h, data, len, lim);
    char *o = outcome_held_read(src, &h);
    held_free(&h);
    return o;
}

#endif
