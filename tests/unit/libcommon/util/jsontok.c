/*
 * tests/unit/libcommon/util/jsontok.c - the token reader against hostile key sets: an object
 * whose keys all share one slot under a plain unkeyed hash (built as an attacker builds them)
 * costs no more probes than one with ordinary keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsontok.h"

/* ---- keys that collide under 32-bit FNV-1a in their low bits, for any table up to 2^BITS ---- */

#define FLOOD_BITS 17
#define FLOOD_KEYS 49990

static uint32_t fnv_step(uint32_t h, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)b[i]) * 16777619u;
    return h;
}

/* Finds two 3-byte blocks that take hash state h (low bits) to the same state: each position
 * of a key then takes either block, and 2^m keys of m blocks all end in one state. */
static void collide_pair(uint32_t h, char a[3], char b[3], uint32_t *out)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const uint32_t mask = (1u << FLOOD_BITS) - 1;
    uint32_t *seen = malloc(sizeof *seen << FLOOD_BITS);
    memset(seen, 0xff, sizeof *seen << FLOOD_BITS);
    for (uint32_t i = 0; i < 62u * 62u * 62u; i++) {
        char blk[3] = {alpha[i / 3844], alpha[i / 62 % 62], alpha[i % 62]};
        uint32_t r = fnv_step(h, blk, 3) & mask;
        if (seen[r] != UINT32_MAX) {
            uint32_t j = seen[r];
            a[0] = alpha[j / 3844], a[1] = alpha[j / 62 % 62], a[2] = alpha[j % 62];
            memcpy(b, blk, 3);
            *out = r;
            free(seen);
            return;
        }
        seen[r] = i;
    }
    fail_msg("no colliding blocks");
}

/* {"title":"x", <n keys>:0} in an exact-size heap block; colliding keys, or numbered ones of
 * the same length. */
static char *flood_body(int colliding, size_t n, size_t *len)
{
    int m = 0;
    while ((1ul << m) < n)
        m++;
    char (*pairs)[2][3] = malloc(sizeof *pairs * (size_t)m);
    uint32_t h = 2166136261u & ((1u << FLOOD_BITS) - 1);
    for (int j = 0; colliding && j < m; j++)
        collide_pair(h, pairs[j][0], pairs[j][1], &h);
    size_t klen = 3 * (size_t)m;
    struct buf b;
    buf_init(&b);
    buf_append(&b, "{\"title\":\"x\"", 12);
    for (size_t i = 0; i < n; i++) {
        char key[256];
        if (colliding)
            for (int j = 0; j < m; j++)
                memcpy(key + 3 * j, pairs[j][(i >> j) & 1], 3);
        else
            snprintf(key, sizeof key, "%0*zu", (int)klen, i);
        buf_append(&b, ",\"", 2);
        buf_append(&b, key, klen);
        buf_append(&b, "\":0", 3);
    }
    buf_append(&b, "}", 1);
    free(pairs);
    char *body = malloc(b.len);
    memcpy(body, b.data, b.len);
    *len = b.len;
    buf_destroy(&b);
    return body;
}

static size_t parse_probes(const char *body, size_t len)
{
    static const struct json_limits lim = {JSON_MAX_DEPTH_DEFAULT, 0, 0};
    struct jtok_doc d;
    enum json_parse_status st;
    char err[160];
    if (jtok_parse_limited(&d, body, len, &lim, NULL, &st, err, sizeof err) != 0)
        fail_msg("parse: %s", err);
    assert_int_equal(d.t[0].count, FLOOD_KEYS + 1);
    /* every key is found through the table */
    assert_int_equal(jtok_type(&d, jtok_get(&d, 0, "title")), JT_STRING);
    size_t probes = d.probes;
    jtok_free(&d);
    return probes;
}

static void test_colliding_keys(void **state)
{
    (void)state;
    size_t len, clen;
    char *flood = flood_body(1, FLOOD_KEYS, &len);
    char *ctl = flood_body(0, FLOOD_KEYS, &clen);
    assert_int_equal(len, clen);
    /* the keys really do share one slot under the unkeyed hash */
    const char *k1 = flood + 14, *k2 = k1 + 48 + 5; /* {"title":"x","K1":0,"K2 */
    assert_int_equal(fnv_step(2166136261u, k1, 48) & 0x1ffff, fnv_step(2166136261u, k2, 48) & 0x1ffff);
    size_t pf = parse_probes(flood, len), pc = parse_probes(ctl, clen);
    print_message("probes: colliding keys %zu, ordinary keys %zu (%d keys)\n", pf, pc, FLOOD_KEYS);
    /* a table kept at most half full: a few steps per key, not one per earlier key */
    assert_true(pf < 4 * (size_t)FLOOD_KEYS);
    assert_true(pc < 4 * (size_t)FLOOD_KEYS);
    free(flood);
    free(ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_colliding_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
