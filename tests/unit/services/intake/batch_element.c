/*
 * tests/unit/services/intake/batch_element.c - alerts packed for the batch's columns and the
 * columns built from them: each string exact (U+0001, U+FFFF, a 4-byte character, quotes),
 * bytes that are not UTF-8 sent as U+FFFD, NULL fields as NULL elements, the batch's indicator
 * pairs sent once with each alert's references, the tags' offsets, the payload trimmed, the
 * arrays in array_send's form, a version-7 uuid per alert and per pair (the two columns SQL
 * NULL, for the database to draw them, when the random generator fails). (The server reading them back is test_ingest_columns.py;
 * the uuids stored, test_ingest_uuids.py.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "services/intake/batch_element.h"
#include "tests/unit/rand_refuse.h"

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A read cursor over one binary array: its header checked, then its elements in order. */
struct rd {
    const unsigned char *p, *end;
    uint32_t n;
};

static void rd_open(struct rd *r, const char *v, int len, uint32_t oid, uint32_t n)
{
    assert_non_null(v);
    r->p = (const unsigned char *)v;
    r->end = r->p + len;
    r->n = n;
    assert_int_equal(be32(r->p), n ? 1 : 0);
    assert_int_equal(be32(r->p + 8), oid);
    if (!n) {
        assert_int_equal(len, 12);
        r->p += 12;
        return;
    }
    assert_int_equal(be32(r->p + 12), n);
    assert_int_equal(be32(r->p + 16), 1);
    r->p += 20;
}

/* The next element's bytes (NULL for a NULL element), its length in *len. */
static const char *rd_next(struct rd *r, uint32_t *len)
{
    assert_true(r->p + 4 <= r->end);
    uint32_t l = be32(r->p);
    r->p += 4;
    if (l == 0xffffffffu) {
        *len = 0;
        return NULL;
    }
    const char *s = (const char *)r->p;
    r->p += l;
    assert_true(r->p <= r->end);
    *len = l;
    return s;
}

static void rd_text(struct rd *r, const char *want)
{
    uint32_t l;
    const char *s = rd_next(r, &l);
    if (!want) {
        assert_null(s);
        return;
    }
    assert_non_null(s);
    assert_int_equal(l, strlen(want));
    assert_memory_equal(s, want, l);
}

static void rd_int4(struct rd *r, int32_t want)
{
    uint32_t l;
    const char *s = rd_next(r, &l);
    assert_int_equal(l, 4);
    assert_int_equal((int32_t)be32((const unsigned char *)s), want);
}

static void rd_close(struct rd *r)
{
    assert_true(r->p == r->end);
}

#define ODD "a\x01" "b\xef\xbf\xbf" "c\xf0\x9f\x98\x80" "d\"e\\f'g"

static struct packed *pack(const char *title, const char *desc, const char **tags, size_t ntags,
                           const char *const (*inds)[2], size_t ninds, const char *rule,
                           int64_t at_us, int check, const char *payload)
{
    struct normalized_alert na;
    normalized_alert_init(&na);
    na.title = title ? strdup(title) : NULL;
    na.severity = strdup("High");
    na.description = desc ? strdup(desc) : NULL;
    na.source_rule_ref = rule ? strdup(rule) : NULL;
    na.occurred_at_us = at_us;
    for (size_t i = 0; i < ntags; i++)
        json_array_append_new(na.tags, json_string(tags[i]));
    struct indicator_set set;
    indicator_set_init(&set);
    for (size_t i = 0; i < ninds; i++)
        indicator_set_add(&set, inds[i][0], inds[i][1], strlen(inds[i][1]));
    struct element e = {.na = &na, .source = "generic", .fingerprint = "fp", .key_prefix = "cai_k",
                        .set = &set, .check_numbers = check};
    struct packed *pk = element_pack(&e, payload, strlen(payload));
    indicator_set_destroy(&set);
    normalized_alert_destroy(&na);
    return pk;
}

static void test_columns(void **state)
{
    (void)state;
    const char *tags0[] = {ODD, "\x01", "plain"};
    const char *const inds0[][2] = {{"ip", "192.0.2.1"}, {"domain", ODD}};
    const char *const inds2[][2] = {{"domain", ODD}, {"ip", "192.0.2.2"}, {"ip", "192.0.2.1"}};
    struct packed *pk[3];
    pk[0] = pack(ODD, "desc " ODD, tags0, 3, inds0, 2, "rule-1", 1714566896789012LL, 0,
                 " \n{\"a\": 1}\t\r");
    /* not UTF-8: a lone continuation byte, a truncated sequence, an overlong form */
    pk[1] = pack("x\x80y\xe2\x82z\xc0\xaf", NULL, NULL, 0, NULL, 0, NULL, 0, 1, "[]");
    pk[2] = pack("third", "", NULL, 0, inds2, 3, "rule-1", -1, 0, "{}");
    char *v[INGEST_COLUMNS], err[256];
    int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS];
    assert_int_equal(
        columns_build((const struct packed *const *)pk, 3, 24, v, len, fmt, err, sizeof err), 0);
    struct rd r;
    for (int c = 0; c < INGEST_COLUMNS; c++)
        assert_int_equal(fmt[c], c == 17 ? 0 : 1);
    rd_open(&r, v[0], len[0], PG_OID_TEXT, 3); /* titles */
    rd_text(&r, ODD);
    /* each byte that starts no valid sequence replaced, as the JSON form does */
    rd_text(&r, "x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd");
    rd_text(&r, "third");
    rd_close(&r);
    rd_open(&r, v[3], len[3], PG_OID_TEXT, 3); /* descriptions */
    rd_text(&r, "desc " ODD);
    rd_text(&r, NULL);
    rd_text(&r, "");
    rd_close(&r);
    rd_open(&r, v[4], len[4], PG_OID_TIMESTAMPTZ, 3);
    uint32_t l;
    const unsigned char *t = (const unsigned char *)rd_next(&r, &l);
    assert_int_equal(l, 8);
    int64_t us = (int64_t)((uint64_t)be32(t) << 32 | be32(t + 4));
    assert_true(us == 1714566896789012LL - PG_EPOCH_OFFSET_US);
    rd_next(&r, &l);
    t = (const unsigned char *)rd_next(&r, &l);
    us = (int64_t)((uint64_t)be32(t) << 32 | be32(t + 4));
    assert_true(us == -1 - PG_EPOCH_OFFSET_US);
    rd_close(&r);
    rd_open(&r, v[6], len[6], PG_OID_TEXT, 3); /* rule refs */
    rd_text(&r, "rule-1");
    rd_text(&r, NULL);
    rd_text(&r, "rule-1");
    rd_close(&r);
    assert_null(v[8]); /* raw members: none */
    rd_open(&r, v[9], len[9], PG_OID_BOOL, 3); /* one asks for the number check: all sent */
    for (int i = 0; i < 3; i++) {
        const char *b = rd_next(&r, &l);
        assert_int_equal(l, 1);
        assert_int_equal(b[0], i == 1);
    }
    rd_close(&r);
    rd_open(&r, v[10], len[10], PG_OID_TEXT, 3); /* payloads, trimmed */
    rd_text(&r, "{\"a\": 1}");
    rd_text(&r, "[]");
    rd_text(&r, "{}");
    rd_close(&r);
    rd_open(&r, v[11], len[11], PG_OID_INT4, 4); /* tag offsets */
    rd_int4(&r, 0);
    rd_int4(&r, 3);
    rd_int4(&r, 3);
    rd_int4(&r, 3);
    rd_close(&r);
    rd_open(&r, v[12], len[12], PG_OID_TEXT, 3);
    rd_text(&r, ODD);
    rd_text(&r, "\x01");
    rd_text(&r, "plain");
    rd_close(&r);
    /* the distinct pairs, in the order first named; each alert's references */
    rd_open(&r, v[13], len[13], PG_OID_TEXT, 3);
    rd_text(&r, "ip");
    rd_text(&r, "domain");
    rd_text(&r, "ip");
    rd_close(&r);
    rd_open(&r, v[14], len[14], PG_OID_TEXT, 3);
    rd_text(&r, "192.0.2.1");
    rd_text(&r, ODD);
    rd_text(&r, "192.0.2.2");
    rd_close(&r);
    rd_open(&r, v[15], len[15], PG_OID_INT4, 4);
    rd_int4(&r, 0);
    rd_int4(&r, 2);
    rd_int4(&r, 2);
    rd_int4(&r, 5);
    rd_close(&r);
    rd_open(&r, v[16], len[16], PG_OID_INT4, 5);
    static const int32_t refs[] = {1, 2, 2, 3, 1};
    for (int i = 0; i < 5; i++)
        rd_int4(&r, refs[i]);
    rd_close(&r);
    assert_string_equal(v[17], "24");
    for (int c = 0; c < INGEST_COLUMNS; c++)
        free(v[c]);
    for (int i = 0; i < 3; i++)
        free(pk[i]);
}

/* A field's ASCII is skipped eight bytes at a time: a byte that is not UTF-8 is replaced, and a
 * valid sequence kept, at every position within and across those words, and at the end. */
static void test_title_words(void **state)
{
    (void)state;
    for (size_t at = 0; at < 24; at++) {
        for (int kind = 0; kind < 3; kind++) {
            char title[32], want[40];
            memset(title, 'a', 24);
            title[24] = '\0';
            size_t wn = 0;
            memcpy(want, title, at);
            wn = at;
            if (kind == 0) { /* a lone continuation byte */
                title[at] = '\x80';
                memcpy(want + wn, "\xef\xbf\xbd", 3);
                wn += 3;
                memcpy(want + wn, title + at + 1, 24 - at - 1);
                wn += 24 - at - 1;
            } else if (kind == 1 && at < 23) { /* a valid two-byte sequence, kept */
                title[at] = '\xc3';
                title[at + 1] = '\xa9';
                memcpy(want + wn, title + at, 24 - at);
                wn += 24 - at;
            } else { /* a sequence cut short by the end of the field */
                title[at] = '\xc3';
                title[at + 1] = '\0';
                memcpy(want + wn, "\xef\xbf\xbd", 3);
                wn += 3;
            }
            want[wn] = '\0';
            struct packed *pk = pack(title, NULL, NULL, 0, NULL, 0, NULL, 0, 0, "{}");
            char *v[INGEST_COLUMNS], err[256];
            int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS];
            const struct packed *const *one = (const struct packed *const *)&pk;
            assert_int_equal(columns_build(one, 1, 24, v, len, fmt, err, sizeof err), 0);
            struct rd r;
            rd_open(&r, v[0], len[0], PG_OID_TEXT, 1);
            rd_text(&r, want);
            rd_close(&r);
            for (int c = 0; c < INGEST_COLUMNS; c++)
                free(v[c]);
            free(pk);
        }
    }
}

/* A batch of one alert with no tags and no indicators: empty arrays (no dimension), offsets 0. */
static void test_empty_lists(void **state)
{
    (void)state;
    struct packed *pk = pack("t", NULL, NULL, 0, NULL, 0, NULL, 0, 0, "{}");
    char *v[INGEST_COLUMNS], err[256];
    int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS];
    assert_int_equal(
        columns_build((const struct packed *const *)&pk, 1, 0, v, len, fmt, err, sizeof err), 0);
    struct rd r;
    assert_null(v[9]); /* no number check asked: NULL */
    rd_open(&r, v[12], len[12], PG_OID_TEXT, 0);
    rd_open(&r, v[13], len[13], PG_OID_TEXT, 0);
    rd_open(&r, v[16], len[16], PG_OID_INT4, 0);
    rd_open(&r, v[15], len[15], PG_OID_INT4, 2);
    rd_int4(&r, 0);
    rd_int4(&r, 0);
    rd_close(&r);
    assert_string_equal(v[17], "0");
    for (int c = 0; c < INGEST_COLUMNS; c++)
        free(v[c]);
    free(pk);
}

/* Tags that are not strings (no source makes them): JSON null a NULL element, any other value
 * its compact JSON text. */
static void test_tags_not_strings(void **state)
{
    (void)state;
    struct normalized_alert na;
    normalized_alert_init(&na);
    na.title = strdup("t");
    na.severity = strdup("High");
    json_array_append_new(na.tags, json_null());
    json_array_append_new(na.tags, json_integer(5));
    json_array_append_new(na.tags, json_pack("{s:i}", "a", 1));
    json_array_append_new(na.tags, json_string("s"));
    struct indicator_set set;
    indicator_set_init(&set);
    struct element e = {.na = &na, .source = "generic", .fingerprint = "fp", .key_prefix = "cai_k",
                        .set = &set};
    struct packed *pk = element_pack(&e, "{}", 2);
    indicator_set_destroy(&set);
    normalized_alert_destroy(&na);
    char *v[INGEST_COLUMNS], err[256];
    int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS];
    assert_int_equal(
        columns_build((const struct packed *const *)&pk, 1, 0, v, len, fmt, err, sizeof err), 0);
    struct rd r;
    rd_open(&r, v[12], len[12], PG_OID_TEXT, 4);
    rd_text(&r, NULL);
    rd_text(&r, "5");
    rd_text(&r, "{\"a\":1}");
    rd_text(&r, "s");
    rd_close(&r);
    for (int c = 0; c < INGEST_COLUMNS; c++)
        free(v[c]);
    free(pk);
}

/* An indicator value over 2048 bytes is not sent (a btree entry cannot hold it: the batch
 * would fail 54000); one of exactly 2048 is. */
static void test_indicator_size_limit(void **state)
{
    (void)state;
    char *big = malloc(2050), *edge = malloc(2049);
    memset(big, 'b', 2049);
    big[2049] = '\0';
    memset(edge, 'e', 2048);
    edge[2048] = '\0';
    const char *const inds[][2] = {{"domain", big}, {"domain", edge}, {"ip", "192.0.2.9"}};
    struct packed *pk = pack("t", NULL, NULL, 0, inds, 3, NULL, 0, 0, "{}");
    char *v[INGEST_COLUMNS], err[256];
    int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS];
    assert_int_equal(
        columns_build((const struct packed *const *)&pk, 1, 0, v, len, fmt, err, sizeof err), 0);
    struct rd r;
    rd_open(&r, v[14], len[14], PG_OID_TEXT, 2);
    rd_text(&r, edge);
    rd_text(&r, "192.0.2.9");
    rd_close(&r);
    rd_open(&r, v[15], len[15], PG_OID_INT4, 2);
    rd_int4(&r, 0);
    rd_int4(&r, 2);
    rd_close(&r);
    for (int c = 0; c < INGEST_COLUMNS; c++)
        free(v[c]);
    free(pk);
    free(big);
    free(edge);
}

/* 500 alerts of 20 pairs each out of 60 overlapping ones (the batch's pair table grows far
 * past its first size and collides): every reference names its alert's own pair, every pair
 * is sent once. */
static void test_many_pairs(void **state)
{
    (void)state;
    enum { N = 500, PER = 20, POOL = 60 };
    static char vals[POOL][16];
    for (int k = 0; k < POOL; k++)
        snprintf(vals[k], sizeof vals[k], "198.51.%d.%d", k / 7, k);
    struct packed **pk = malloc(N * sizeof *pk);
    for (int i = 0; i < N; i++) {
        const char *inds[PER][2];
        for (int j = 0; j < PER; j++) {
            int k = (i * 7 + j * 3) % POOL;
            inds[j][0] = k % 2 ? "ip" : "domain";
            inds[j][1] = vals[k];
        }
        pk[i] = pack("t", NULL, NULL, 0, (const char *const (*)[2])inds, PER, NULL, 0, 0, "{}");
    }
    char *v[INGEST_COLUMNS], err[256];
    int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS];
    assert_int_equal(
        columns_build((const struct packed *const *)pk, N, 0, v, len, fmt, err, sizeof err), 0);
    /* the pairs: type and value of each position */
    const char *types[POOL], *values[POOL];
    uint32_t tl[POOL], vl[POOL];
    struct rd rt, rv, ro, rr;
    rd_open(&rt, v[13], len[13], PG_OID_TEXT, POOL);
    rd_open(&rv, v[14], len[14], PG_OID_TEXT, POOL);
    for (int k = 0; k < POOL; k++) {
        types[k] = rd_next(&rt, &tl[k]);
        values[k] = rd_next(&rv, &vl[k]);
        for (int q = 0; q < k; q++) /* each pair once */
            assert_false(tl[q] == tl[k] && vl[q] == vl[k] && !memcmp(types[q], types[k], tl[k]) &&
                         !memcmp(values[q], values[k], vl[k]));
    }
    rd_close(&rt);
    rd_close(&rv);
    rd_open(&ro, v[15], len[15], PG_OID_INT4, N + 1);
    rd_open(&rr, v[16], len[16], PG_OID_INT4, N * PER);
    rd_int4(&ro, 0);
    for (int i = 0; i < N; i++) {
        rd_int4(&ro, (i + 1) * PER);
        for (int j = 0; j < PER; j++) {
            int k = (i * 7 + j * 3) % POOL;
            uint32_t l;
            const char *p = rd_next(&rr, &l);
            assert_int_equal(l, 4);
            int32_t ref = (int32_t)be32((const unsigned char *)p);
            assert_true(ref >= 1 && ref <= POOL);
            assert_int_equal(tl[ref - 1], strlen(k % 2 ? "ip" : "domain"));
            assert_memory_equal(types[ref - 1], k % 2 ? "ip" : "domain", tl[ref - 1]);
            assert_int_equal(vl[ref - 1], strlen(vals[k]));
            assert_memory_equal(values[ref - 1], vals[k], vl[ref - 1]);
        }
    }
    rd_close(&ro);
    rd_close(&rr);
    for (int c = 0; c < INGEST_COLUMNS; c++)
        free(v[c]);
    for (int i = 0; i < N; i++)
        free(pk[i]);
    free(pk);
}

/* A uuid column: m version-7 uuids (RFC 9562), each distinct from every one in seen[0..*nseen),
 * their time between t0 and t1 (Unix milliseconds); appended to seen. */
static void rd_uuids(const char *v, int len, uint32_t m, uint64_t t0, uint64_t t1,
                     unsigned char (*seen)[16], size_t *nseen)
{
    struct rd r;
    rd_open(&r, v, len, PG_OID_UUID, m);
    for (uint32_t i = 0; i < m; i++) {
        uint32_t l;
        const unsigned char *u = (const unsigned char *)rd_next(&r, &l);
        assert_int_equal(l, 16);
        uint64_t ms = 0;
        for (int k = 0; k < 6; k++)
            ms = ms << 8 | u[k];
        assert_true(ms >= t0 && ms <= t1);
        assert_int_equal(u[6] >> 4, 7);      /* version */
        assert_int_equal(u[8] >> 6, 2);      /* variant 10 */
        for (size_t q = 0; q < *nseen; q++)
            assert_memory_not_equal(seen[q], u, 16);
        memcpy(seen[(*nseen)++], u, 16);
    }
    rd_close(&r);
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* $19: a uuid per alert; $20: one per distinct pair (a pair two alerts name gets one); all
 * distinct, across batches too, version 7 with the time of the build. The random bits are not
 * constant: over the 60 uuids each of the 74 random bits takes both values. */
static void test_uuids(void **state)
{
    (void)state;
    const char *const inds0[][2] = {{"ip", "192.0.2.1"}, {"domain", "a.example"}};
    const char *const inds1[][2] = {{"domain", "a.example"}, {"ip", "192.0.2.2"}};
    struct packed *pk[3];
    pk[0] = pack("a", NULL, NULL, 0, inds0, 2, NULL, 0, 0, "{}");
    pk[1] = pack("b", NULL, NULL, 0, inds1, 2, NULL, 0, 0, "{}");
    pk[2] = pack("c", NULL, NULL, 0, NULL, 0, NULL, 0, 0, "{}");
    static unsigned char seen[128][16];
    size_t nseen = 0;
    unsigned char any1[16] = {0}, all1[16]; /* each bit: seen set once; set every time */
    memset(all1, 0xff, sizeof all1);
    for (int round = 0; round < 10; round++) {
        char *v[INGEST_COLUMNS], err[256];
        int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS];
        uint64_t t0 = now_ms();
        const struct packed *const *three = (const struct packed *const *)pk;
        assert_int_equal(columns_build(three, 3, 0, v, len, fmt, err, sizeof err), 0);
        uint64_t t1 = now_ms();
        assert_int_equal(fmt[COL_ALERT_UUIDS], 1);
        assert_int_equal(fmt[COL_IND_UUIDS], 1);
        size_t from = nseen;
        rd_uuids(v[COL_ALERT_UUIDS], len[COL_ALERT_UUIDS], 3, t0, t1, seen, &nseen);
        rd_uuids(v[COL_IND_UUIDS], len[COL_IND_UUIDS], 3, t0, t1, seen, &nseen);
        for (size_t q = from; q < nseen; q++)
            for (int k = 6; k < 16; k++) {
                any1[k] |= seen[q][k];
                all1[k] &= seen[q][k];
            }
        for (int c = 0; c < INGEST_COLUMNS; c++)
            free(v[c]);
    }
    assert_int_equal(nseen, 60);
    /* rand_a: the low 4 bits of byte 6 and byte 7; rand_b: the low 6 bits of byte 8, bytes 9-15 */
    assert_int_equal(any1[6] & 0x0f, 0x0f);
    assert_int_equal(all1[6] & 0x0f, 0);
    assert_int_equal(any1[8] & 0x3f, 0x3f);
    assert_int_equal(all1[8] & 0x3f, 0);
    for (int k = 7; k < 16; k++) {
        if (k == 8)
            continue;
        assert_int_equal(any1[k], 0xff);
        assert_int_equal(all1[k], 0);
    }
    for (int i = 0; i < 3; i++)
        free(pk[i]);
}

/* A batch with no indicators: an empty uuid column for the pairs, one uuid for the alert. */
static void test_uuids_no_pairs(void **state)
{
    (void)state;
    struct packed *pk = pack("t", NULL, NULL, 0, NULL, 0, NULL, 0, 0, "{}");
    char *v[INGEST_COLUMNS], err[256];
    int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS];
    uint64_t t0 = now_ms();
    assert_int_equal(
        columns_build((const struct packed *const *)&pk, 1, 0, v, len, fmt, err, sizeof err), 0);
    static unsigned char seen[2][16];
    size_t nseen = 0;
    rd_uuids(v[COL_ALERT_UUIDS], len[COL_ALERT_UUIDS], 1, t0, now_ms(), seen, &nseen);
    struct rd r;
    rd_open(&r, v[COL_IND_UUIDS], len[COL_IND_UUIDS], PG_OID_UUID, 0);
    for (int c = 0; c < INGEST_COLUMNS; c++)
        free(v[c]);
    free(pk);
}

/* The generator failing: the uuid columns SQL NULL (the database then draws them), every other
 * column built as when it works, the error said, nothing left allocated (the leak checker sees
 * every column freed), OpenSSL's error queue clean; once it works again, so do the uuids. */
static void test_uuids_generator_fails(void **state)
{
    (void)state;
    const char *const inds[][2] = {{"ip", "192.0.2.1"}, {"domain", "a.example"}};
    struct packed *pk[2];
    pk[0] = pack("t", NULL, NULL, 0, inds, 2, NULL, 0, 0, "{}");
    pk[1] = pack("u", NULL, NULL, 0, inds, 1, NULL, 0, 1, "{\"n\": 1e400}");
    const struct packed *const *two = (const struct packed *const *)pk;
    char *v[INGEST_COLUMNS], *w[INGEST_COLUMNS], err[256] = "";
    int len[INGEST_COLUMNS], fmt[INGEST_COLUMNS], wlen[INGEST_COLUMNS], wfmt[INGEST_COLUMNS];
    const RAND_METHOD *was = rand_refuse_begin();
    int rc = columns_build(two, 2, 24, v, len, fmt, err, sizeof err);
    rand_refuse_end(was);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "random bytes"));
    assert_int_equal(ERR_peek_error(), 0); /* the error queue left clean */
    assert_null(v[COL_ALERT_UUIDS]);
    assert_int_equal(len[COL_ALERT_UUIDS], 0);
    assert_null(v[COL_IND_UUIDS]);
    assert_int_equal(len[COL_IND_UUIDS], 0);
    err[0] = 0;
    assert_int_equal(columns_build(two, 2, 24, w, wlen, wfmt, err, sizeof err), 0);
    assert_string_equal(err, "");
    for (int c = 0; c < INGEST_COLUMNS; c++) {
        assert_int_equal(fmt[c], wfmt[c]);
        if (c == COL_ALERT_UUIDS || c == COL_IND_UUIDS)
            continue;
        assert_int_equal(len[c], wlen[c]);
        if (w[c])
            assert_memory_equal(v[c], w[c], (size_t)wlen[c]);
        else
            assert_null(v[c]);
    }
    assert_non_null(v[COL_CHECK_NUMBERS]); /* asked for by the second alert */
    assert_string_equal(v[COL_DEDUP_HOURS], "24");
    uint64_t t = now_ms();
    static unsigned char seen[4][16];
    size_t nseen = 0;
    rd_uuids(w[COL_ALERT_UUIDS], wlen[COL_ALERT_UUIDS], 2, t - 60000, t, seen, &nseen);
    rd_uuids(w[COL_IND_UUIDS], wlen[COL_IND_UUIDS], 2, t - 60000, t, seen, &nseen);
    for (int c = 0; c < INGEST_COLUMNS; c++) {
        free(v[c]);
        free(w[c]);
    }
    for (int i = 0; i < 2; i++)
        free(pk[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columns),
        cmocka_unit_test(test_title_words),
        cmocka_unit_test(test_empty_lists),
        cmocka_unit_test(test_indicator_size_limit),
        cmocka_unit_test(test_tags_not_strings),
        cmocka_unit_test(test_many_pairs),
        cmocka_unit_test(test_uuids),
        cmocka_unit_test(test_uuids_no_pairs),
        cmocka_unit_test(test_uuids_generator_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
