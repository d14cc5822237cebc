/*
 * tests/unit/services/enricher/cache.c - the in-process result cache: expiry, replacement,
 * TTL 0, the entry and byte bounds (oldest evicted first), oversized entries refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "services/enricher/cache.h"

static void test_cache(void **state)
{
    (void)state;
    struct cache *c = cache_new(3, 1000);
    json_t *a = json_string("a"), *b = json_string("b");
    cache_put(c, "vt", "ip", "1.1.1.1", a, 10, 0, 1000);
    cache_put(c, "vt", "ip", "1.1.1.1", b, 10, 0, 1000);  /* replaces */
    cache_put(c, "vt", "ip", "2.2.2.2", a, 10, 0, 0);     /* ttl 0: not stored */
    cache_put(c, "vt", "ip", "3.3.3.3", a, 251, 0, 1000); /* over a quarter of the bytes */
    assert_int_equal(cache_size(c), 1);
    json_t *g = cache_get(c, "vt", "ip", "1.1.1.1", 999);
    assert_ptr_equal(g, b);
    json_decref(g);
    assert_null(cache_get(c, "vt", "ip", "1.1.1.1", 1000)); /* expired */
    assert_null(cache_get(c, "vt", "domain", "1.1.1.1", 0));
    for (int i = 0; i < 10; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        cache_put(c, "p", "ip", v, a, 10, 0, 100000);
    }
    assert_int_equal(cache_size(c), 3); /* bounded, oldest gone */
    cache_put(c, "p", "ip", "big1", a, 250, 0, 100000);
    cache_put(c, "p", "ip", "big2", a, 250, 0, 100000);
    cache_put(c, "p", "ip", "big3", a, 250, 0, 100000);
    cache_put(c, "p", "ip", "big4", a, 250, 0, 100000);
    assert_int_equal(cache_size(c), 3); /* 750 + 10s would pass 1000 bytes: oldest went */
    assert_null(cache_get(c, "p", "ip", "big1", 1));
    assert_null(cache_get(c, "p", "ip", "v0", 1));
    g = cache_get(c, "p", "ip", "big4", 1);
    assert_non_null(g);
    json_decref(g);
    cache_clear(c);
    assert_int_equal(cache_size(c), 0);
    cache_free(c);
    json_decref(a);
    json_decref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cache)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
