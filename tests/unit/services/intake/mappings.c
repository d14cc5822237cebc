/*
 * tests/unit/services/intake/mappings.c - mappings_apply() takes the same indicators as
 * indicators_extract_normalized() over normalized_alert_fields(): a mapping naming each of the
 * alert's own fields applies whether or not the alert has normalised fields (one naming any
 * other field finds nothing without them, and its value with them), a mapping for another
 * source or with a missing path or type is passed over, and a reload replaces the set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "indicators.h"
#include "services/intake/intake.h"
#include "services/intake/source.h"

/* The indicators of the set as one JSON text (caller frees). */
static char *dump(const struct indicator_set *s)
{
    json_t *j = indicators_to_json(s);
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return t;
}

/* mappings_apply() over m[0..n) against the reference pass over the full object. */
static void expect_same(const struct indicator_mapping *m, size_t n,
                        const struct normalized_alert *a, const char *source, size_t want_n)
{
    struct intake in;
    memset(&in, 0, sizeof in);
    mappings_set(&in, m, n);
    struct indicator_set got, want;
    indicator_set_init(&got);
    indicator_set_init(&want);
    mappings_apply(&in, a, source, &got);
    json_t *all = normalized_alert_fields(a, source);
    indicators_extract_normalized(all, source, m, n, &want);
    json_decref(all);
    char *g = dump(&got), *w = dump(&want);
    assert_string_equal(g, w);
    json_t *arr = json_loads(g, 0, NULL);
    assert_int_equal(json_array_size(arr), want_n);
    json_decref(arr);
    free(g);
    free(w);
    indicator_set_destroy(&got);
    indicator_set_destroy(&want);
    mappings_free(in.mappings);
}

static void alert(struct normalized_alert *a, int with_fields)
{
    normalized_alert_init(a);
    a->title = strdup("evil.example.com");
    a->severity = strdup("10.9.8.7");
    a->description = strdup("bad.example.org");
    if (with_fields) {
        a->normalized_fields = json_object();
        json_object_set_new(a->normalized_fields, "src_ip", json_string("10.1.2.3"));
        json_object_set_new(a->normalized_fields, "title", json_string("not taken"));
    }
}

/* One mapping per key normalized_alert_fields() builds from the alert itself, each giving an
 * indicator of its own value. */
static void test_own_fields_mapped(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        struct normalized_alert a;
        alert(&a, f);
        struct normalized_alert bare;
        alert(&bare, 0);
        json_t *own = normalized_alert_fields(&bare, "generic");
        size_t n = json_object_size(own), i = 0;
        assert_int_equal(n, 4);
        struct indicator_mapping *m = calloc(n, sizeof *m);
        const char *key;
        json_t *v;
        json_object_foreach(own, key, v)
        {
            (void)v;
            m[i++] = (struct indicator_mapping){NULL, key, "domain"};
            expect_same(&m[i - 1], 1, &a, "generic", 1); /* each on its own */
        }
        expect_same(m, n, &a, "generic", 4);
        free(m);
        json_decref(own);
        normalized_alert_destroy(&bare);
        normalized_alert_destroy(&a);
    }
}

static void test_other_fields(void **state)
{
    (void)state;
    const struct indicator_mapping m[] = {
        {NULL, "src_ip", "ip"},         /* a normalised field */
        {"sentinel", "title", "domain"}, /* another source's */
        {"generic", "title", "domain"},  /* this source's */
        {NULL, NULL, "ip"},              /* no path */
        {NULL, "severity", NULL},        /* no type */
        {NULL, "", "ip"},
        {NULL, "absent", "ip"},
    };
    size_t n = sizeof m / sizeof *m;
    struct normalized_alert a;
    alert(&a, 0);
    expect_same(m, n, &a, "generic", 1);
    expect_same(m, n, &a, "sentinel", 1);
    expect_same(m, n, &a, NULL, 0);
    normalized_alert_destroy(&a);
    alert(&a, 1);
    expect_same(m, n, &a, "generic", 2);
    expect_same(m, n, &a, NULL, 1);
    normalized_alert_destroy(&a);
}

static void test_reload(void **state)
{
    (void)state;
    struct intake in;
    memset(&in, 0, sizeof in);
    const struct indicator_mapping one[] = {{NULL, "title", "domain"}};
    const struct indicator_mapping two[] = {{NULL, "description", "domain"}};
    mappings_set(&in, one, 1);
    mappings_set(&in, two, 1);
    struct normalized_alert a;
    alert(&a, 0);
    struct indicator_set s;
    indicator_set_init(&s);
    mappings_apply(&in, &a, "generic", &s);
    char *t = dump(&s);
    assert_non_null(strstr(t, "bad.example.org"));
    assert_null(strstr(t, "evil.example.com"));
    free(t);
    indicator_set_destroy(&s);
    mappings_set(&in, NULL, 0);
    indicator_set_init(&s);
    mappings_apply(&in, &a, "generic", &s);
    t = dump(&s);
    assert_string_equal(t, "[]");
    free(t);
    indicator_set_destroy(&s);
    normalized_alert_destroy(&a);
    mappings_free(in.mappings);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_fields_mapped),
        cmocka_unit_test(test_other_fields),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
