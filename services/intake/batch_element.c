/*
 * batch_element.c - one alert as an element of a batch: packed for the typed columns the intake
 * sends, or written as a JSON object; the batch's columns built from the packed alerts, with
 * the uuids its new alerts and indicators get.
 */
#include "batch_element.h"
#include "crypto.h"
#include "jsonparse.h"
#include "jsonread.h"
#include "jsontext.h"
#include "log.h"
#include "siphash.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The indicators to store: all of them count for the fingerprint, but a value longer than
 * INDICATOR_STORE_MAX cannot be indexed (and is no indicator anyone looks up). */
#define INDICATOR_STORE_MAX 2048
static void put_indicators(struct buf *t, const struct indicator_set *set)
{
    int first = 1;
    buf_append(t, "[", 1);
    for (size_t i = 0; i < set->n; i++) {
        size_t n = strlen(set->items[i].value);
        if (n > INDICATOR_STORE_MAX)
            continue;
        buf_puts(t, first ? "{\"type\":" : ",{\"type\":");
        buf_json_cstr(t, set->items[i].type);
        buf_puts(t, ",\"value\":");
        buf_json_string(t, set->items[i].value, n);
        buf_append(t, "}", 1);
        first = 0;
    }
    buf_append(t, "]", 1);
}

static void put_tags(struct buf *t, json_t *tags)
{
    size_t i;
    json_t *v;
    buf_append(t, "[", 1);
    json_array_foreach(tags, i, v)
    {
        if (i)
            buf_append(t, ",", 1);
        if (json_is_string(v)) {
            buf_json_string(t, json_string_value(v), json_string_length(v));
        } else {
            char *x = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            buf_puts(t, x ? x : "null");
            free(x);
        }
    }
    buf_append(t, "]", 1);
}

/* Written as text: a jansson tree built only to be serialised once cost about a tenth of the
 * intake's CPU per alert. */
void element_text(struct buf *t, const struct element *e)
{
    buf_reserve(t, 512);
    buf_puts(t, "{\"title\":");
    buf_json_cstr(t, e->na->title);
    buf_puts(t, ",\"severity\":");
    buf_json_cstr(t, e->na->severity);
    buf_puts(t, ",\"source_name\":");
    buf_json_cstr(t, e->source);
    buf_puts(t, ",\"description\":");
    buf_json_cstr(t, e->na->description);
    buf_puts(t, ",\"occurred_at\":");
    buf_json_cstr(t, e->occurred_at);
    if (e->check_numbers)
        buf_puts(t, ",\"check_numbers\":true");
    buf_puts(t, ",\"tags\":");
    put_tags(t, e->na->tags);
    buf_puts(t, ",\"fingerprint\":");
    buf_json_cstr(t, e->fingerprint);
    buf_puts(t, ",\"indicators\":");
    put_indicators(t, e->set);
    buf_puts(t, ",\"rule_ref\":");
    buf_json_cstr(t, e->na->source_rule_ref);
    buf_puts(t, ",\"actor_key_prefix\":");
    buf_json_cstr(t, e->key_prefix);
    buf_append(t, "}", 1);
}


/* ---- packed for the columns ---- */

/* s[0..n) as an array element. A byte that is not part of valid UTF-8 is sent as U+FFFD (as the
 * JSON form writes it), so the server never refuses a normalised field for its encoding. */
static void pk_str(struct buf *t, const char *s, size_t n)
{
    unsigned char x[4] = {0xff, 0xff, 0xff, 0xff};
    if (!s) {
        buf_append(t, x, 4);
        return;
    }
    size_t at = t->len;
    buf_append(t, x, 4);
    buf_reserve(t, n);
    const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
    while (p < end) {
        /* most fields are ASCII: eight bytes at a time while no byte has its high bit */
        while ((size_t)(end - p) >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & 0x8080808080808080ull)
                break;
            p += 8;
        }
        if (p == end)
            break;
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t k = json_utf8_seq(p, end);
        if (k) {
            p += k;
            continue;
        }
        buf_append(t, run, (size_t)(p - run));
        buf_append(t, "\xef\xbf\xbd", 3);
        run = ++p;
    }
    buf_append(t, run, (size_t)(end - run));
    pg_be32_put(t->data + at, (uint32_t)(t->len - at - 4));
}

static void pk_cstr(struct buf *t, const char *s)
{
    pk_str(t, s, s ? strlen(s) : 0);
}

struct packed *element_pack(const struct element *e, const char *raw, size_t raw_len)
{
    /* built in a buffer with the header's room in front, then the header written over it: one
     * allocation, sized once (the payload is most of it) */
    struct buf t;
    buf_init(&t);
    const size_t head = offsetof(struct packed, data);
    buf_reserve(&t, head + raw_len + 1024);
    t.len = head;
    struct packed h;
    memset(&h, 0, sizeof h);
    const char *f[PK_NFIELDS] = {
        [PK_TITLE] = e->na->title,          [PK_SEVERITY] = e->na->severity,
        [PK_SOURCE] = e->source,            [PK_DESCRIPTION] = e->na->description,
        [PK_FINGERPRINT] = e->fingerprint,  [PK_RULE] = e->na->source_rule_ref,
        [PK_KEY] = e->key_prefix};
    for (int i = 0; i < PK_NFIELDS; i++) {
        h.field[i] = (uint32_t)(t.len - head);
        pk_cstr(&t, f[i]);
    }
    h.tags = (uint32_t)(t.len - head);
    size_t i;
    json_t *v;
    json_array_foreach(e->na->tags, i, v)
    {
        if (json_is_string(v)) {
            pk_str(&t, json_string_value(v), json_string_length(v));
        } else if (json_is_null(v)) { /* SQL NULL, as the document form stored it */
            pk_str(&t, NULL, 0);
        } else { /* never from a source (their tags are strings): the value's compact JSON
                  * text (the document form stored jsonb's, with a space after ':' and ',') */
            char *x = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            pk_cstr(&t, x);
            free(x);
        }
        h.ntags++;
    }
    h.tags_end = (uint32_t)(t.len - head);
    h.inds = h.tags_end;
    for (size_t k = 0; k < e->set->n; k++) {
        size_t n = strlen(e->set->items[k].value);
        if (n > INDICATOR_STORE_MAX)
            continue;
        pk_cstr(&t, e->set->items[k].type);
        pk_str(&t, e->set->items[k].value, n);
        h.nind++;
    }
    /* stored without the whitespace around it, as an element of a JSON array is */
    while (raw_len && json_is_ws(raw[0])) {
        raw++;
        raw_len--;
    }
    while (raw_len && json_is_ws(raw[raw_len - 1]))
        raw_len--;
    h.pay = t.len - head;
    h.pay_len = raw_len;
    buf_append(&t, raw, raw_len);
    h.len = t.len - head;
    h.occurred_pg = e->na->occurred_at_us - PG_EPOCH_OFFSET_US;
    h.check_numbers = e->check_numbers;
    memcpy(t.data, &h, head);
    return (struct packed *)(void *)t.data;
}

/* The batch's indicator pairs, each once: an open-addressing table of the pairs' bytes (a type's
 * element and its value's, adjacent in a packed alert), 1-based positions. */
struct pairs {
    const char **key;
    size_t *klen;
    int32_t *pos;
    size_t cap;
};

/* The pair's position; 0 with *slot set when it is new. The pairs are client data, so the
 * table is keyed by the process's SipHash key: no batch can be built to collide. */
static int32_t pair_find(const struct pairs *s, const char *p, size_t n, size_t *slot)
{
    size_t i = (size_t)siphash13(siphash_process_key(), p, n) & (s->cap - 1);
    while (s->key[i]) {
        if (s->klen[i] == n && !memcmp(s->key[i], p, n))
            return s->pos[i];
        i = (i + 1) & (s->cap - 1);
    }
    *slot = i;
    return 0;
}

/* $1-$11: the scalar strings (each alert's element copied), the times, the number checks (only
 * when one asks; $9 raw_members never) and the payloads. */
static void field_columns(struct buf col[INGEST_COLUMNS], const struct packed *const *pk, size_t n,
                          size_t pay, int checks)
{
    struct pg_arr a;
    static const int scol[PK_NFIELDS] = {[PK_TITLE] = COL_TITLES,
                                         [PK_SEVERITY] = COL_SEVERITIES,
                                         [PK_SOURCE] = COL_SOURCE_NAMES,
                                         [PK_DESCRIPTION] = COL_DESCRIPTIONS,
                                         [PK_FINGERPRINT] = COL_FINGERPRINTS,
                                         [PK_RULE] = COL_RULE_REFS,
                                         [PK_KEY] = COL_KEY_PREFIXES};
    for (int f = 0; f < PK_NFIELDS; f++) {
        struct buf *b = &col[scol[f]];
        buf_reserve(b, 20 + n * 64);
        pg_arr_begin(&a, b, PG_OID_TEXT);
        for (size_t i = 0; i < n; i++) {
            const char *p = pk[i]->data + pk[i]->field[f];
            buf_append(b, p, pk_elem_size(p));
        }
        a.n = (uint32_t)n;
        pg_arr_end(&a);
    }
    pg_arr_begin(&a, &col[COL_OCCURRED], PG_OID_TIMESTAMPTZ);
    for (size_t i = 0; i < n; i++)
        pg_arr_int8(&a, pk[i]->occurred_pg);
    pg_arr_end(&a);
    if (checks) {
        pg_arr_begin(&a, &col[COL_CHECK_NUMBERS], PG_OID_BOOL);
        for (size_t i = 0; i < n; i++)
            pg_arr_bool(&a, pk[i]->check_numbers);
        pg_arr_end(&a);
    }
    buf_reserve(&col[COL_PAYLOADS], 20 + 4 * n + pay);
    pg_arr_begin(&a, &col[COL_PAYLOADS], PG_OID_TEXT);
    for (size_t i = 0; i < n; i++)
        pg_arr_elem(&a, pk[i]->data + pk[i]->pay, pk[i]->pay_len);
    pg_arr_end(&a);
}

/* $12, $13: the tags, each alert's slice by offsets. */
static void tag_columns(struct buf col[INGEST_COLUMNS], const struct packed *const *pk, size_t n,
                        size_t tags)
{
    struct pg_arr a, offs;
    pg_arr_begin(&offs, &col[COL_TAG_OFFS], PG_OID_INT4);
    pg_arr_begin(&a, &col[COL_TAG_VALS], PG_OID_TEXT);
    buf_reserve(&col[COL_TAG_VALS], tags);
    pg_arr_int4(&offs, 0);
    for (size_t i = 0; i < n; i++) {
        buf_append(&col[COL_TAG_VALS], pk[i]->data + pk[i]->tags, pk[i]->tags_end - pk[i]->tags);
        a.n += pk[i]->ntags;
        pg_arr_int4(&offs, (int32_t)a.n);
    }
    pg_arr_end(&offs);
    pg_arr_end(&a);
}

/* $14-$17: the distinct pairs, then each alert's references to them. Returns the pairs. */
static uint32_t indicator_columns(struct buf col[INGEST_COLUMNS], const struct packed *const *pk,
                                  size_t n, size_t inds)
{
    struct pairs s = {0};
    for (s.cap = 16; s.cap < 2 * inds; s.cap *= 2)
        ;
    s.key = xcalloc(s.cap, sizeof *s.key);
    s.klen = xmalloc(s.cap * sizeof *s.klen);
    s.pos = xmalloc(s.cap * sizeof *s.pos);
    struct pg_arr types, vals, offs, refs;
    pg_arr_begin(&types, &col[COL_IND_TYPES], PG_OID_TEXT);
    pg_arr_begin(&vals, &col[COL_IND_VALUES], PG_OID_TEXT);
    pg_arr_begin(&offs, &col[COL_IND_OFFS], PG_OID_INT4);
    pg_arr_begin(&refs, &col[COL_IND_REFS], PG_OID_INT4);
    pg_arr_int4(&offs, 0);
    for (size_t i = 0; i < n; i++) {
        const char *p = pk[i]->data + pk[i]->inds;
        for (uint32_t k = 0; k < pk[i]->nind; k++) {
            size_t tn = pk_elem_size(p), vn = pk_elem_size(p + tn), slot = 0;
            int32_t pos = pair_find(&s, p, tn + vn, &slot);
            if (!pos) {
                buf_append(&col[COL_IND_TYPES], p, tn);
                buf_append(&col[COL_IND_VALUES], p + tn, vn);
                types.n++;
                vals.n++;
                pos = (int32_t)types.n;
                s.key[slot] = p;
                s.klen[slot] = tn + vn;
                s.pos[slot] = pos;
            }
            pg_arr_int4(&refs, pos);
            p += tn + vn;
        }
        pg_arr_int4(&offs, (int32_t)refs.n);
    }
    pg_arr_end(&types);
    pg_arr_end(&vals);
    pg_arr_end(&offs);
    pg_arr_end(&refs);
    free(s.key);
    free(s.klen);
    free(s.pos);
    return types.n;
}

/* $19, $20: a version-7 uuid for each of n alerts, then for each of npairs pairs (see
 * crypto_uuid7_fill), all at the intake's clock's millisecond. The database drew each with
 * gen_random_uuid(), a request to OpenSSL's generator per uuid (three per alert of an IP and a
 * domain of its own); here one request gives the batch's random bits. -1 with both columns left
 * empty (SQL NULL) when the generator fails. */
static int uuid_columns(struct buf col[INGEST_COLUMNS], size_t n, size_t npairs, char *err,
                        size_t errlen)
{
    size_t k = n + npairs;
    if (k > (size_t)INT_MAX / CRYPTO_UUID7_RANDOM) { /* unreachable under the batch's byte cap */
        snprintf(err, errlen, "ingest batch of %zu uuids", k);
        return -1;
    }
    unsigned char *r = xmalloc(k * CRYPTO_UUID7_RANDOM + 1);
    if (crypto_random_try(r, k * CRYPTO_UUID7_RANDOM) != 0) {
        snprintf(err, errlen, "OpenSSL's generator gave no random bytes for %zu uuids", k);
        free(r);
        return -1;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    const unsigned char *p = r;
    static const struct {
        int col;
        int pairs;
    } cols[] = {{COL_ALERT_UUIDS, 0}, {COL_IND_UUIDS, 1}};
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
        size_t m = cols[c].pairs ? npairs : n;
        struct buf *b = &col[cols[c].col];
        struct pg_arr a;
        buf_reserve(b, 20 + m * (4 + 16)); /* the header, then a length word and 16 bytes each */
        pg_arr_begin(&a, b, PG_OID_UUID);
        for (size_t i = 0; i < m; i++, p += CRYPTO_UUID7_RANDOM) {
            unsigned char u[1][16];
            crypto_uuid7_fill(u, 1, ms, p);
            pg_arr_elem(&a, u[0], sizeof u[0]);
        }
        pg_arr_end(&a);
    }
    free(r);
    return 0;
}

int columns_build(const struct packed *const *pk, size_t n, int dedup_hours,
                  char *values[INGEST_COLUMNS], int lengths[INGEST_COLUMNS],
                  int formats[INGEST_COLUMNS], char *err, size_t errlen)
{
    struct buf col[INGEST_COLUMNS];
    size_t tags = 0, inds = 0, pay = 0;
    int checks = 0;
    for (size_t i = 0; i < n; i++) {
        tags += pk[i]->tags_end - pk[i]->tags;
        inds += pk[i]->nind;
        pay += pk[i]->pay_len;
        checks |= pk[i]->check_numbers;
    }
    for (int c = 0; c < INGEST_COLUMNS; c++) {
        buf_init(&col[c]);
        formats[c] = 1;
    }
    field_columns(col, pk, n, pay, checks);
    tag_columns(col, pk, n, tags);
    uint32_t pairs = indicator_columns(col, pk, n, inds);
    buf_printf(&col[COL_DEDUP_HOURS], "%d", dedup_hours);
    formats[COL_DEDUP_HOURS] = 0;
    /* Without random bytes the uuids are left to the database, not refused with a 503: the
     * alerts are stored all the same, their uuids drawn by calseta_uuid7() with the database's
     * generator, and no uuid is ever made with fewer random bits. */
    int rc = uuid_columns(col, n, pairs, err, errlen) != 0;
    for (int c = 0; c < INGEST_COLUMNS; c++) {
        if (col[c].len == 0) { /* $9, $10 unless asked, the uuids without random bytes: NULL */
            buf_destroy(&col[c]);
            values[c] = NULL;
            lengths[c] = 0;
            continue;
        }
        if (col[c].len > INT_MAX) /* unreachable under the batch's byte cap; never wrapped */
            msg_fatal("ingest column %d of %zu bytes", c + 1, col[c].len);
        values[c] = col[c].data;
        lengths[c] = (int)col[c].len;
    }
    return rc;
}
