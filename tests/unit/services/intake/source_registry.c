/*
 * tests/unit/services/intake/source_registry.c - normalized_alert_field() reads, key by key, what
 * normalized_alert_fields() builds: every override of a normalised field (title, severity,
 * source_name, description set and unset, a title that is not UTF-8), plain and dotted keys, an
 * absent key, and an alert without normalised fields. normalized_alert_own_field() names
 * exactly the keys the alert itself provides: every key of normalized_alert_fields() for an
 * alert without normalised fields, and nothing else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "services/intake/source.h"

static const char *const KEYS[] = {"title",  "severity", "source_name", "description",
                                   "src_ip", "a.b",      "absent",      "Title"};

static void expect_same(const struct normalized_alert *a, const char *source)
{
    json_t *all = normalized_alert_fields(a, source);
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        json_t *tmp = NULL;
        const json_t *one = normalized_alert_field(a, source, KEYS[i], &tmp);
        const json_t *want = json_object_get(all, KEYS[i]);
        if (!want || !one) {
            if (want != one)
                fail_msg("key %s: one side absent", KEYS[i]);
        } else if (!json_equal((json_t *)one, (json_t *)want)) {
            fail_msg("key %s differs", KEYS[i]);
        }
        json_decref(tmp);
    }
    json_decref(all);
}

static void fill(struct normalized_alert *a, int with_fields)
{
    normalized_alert_init(a);
    assert_null(a->normalized_fields); /* none until a source sets some */
    if (with_fields) {
        a->normalized_fields = json_object();
        json_object_set_new(a->normalized_fields, "title", json_string("from the fields"));
        json_object_set_new(a->normalized_fields, "description", json_string("field text"));
        json_object_set_new(a->normalized_fields, "source_name", json_integer(7));
        json_object_set_new(a->normalized_fields, "src_ip", json_string("10.1.2.3"));
        json_object_set_new(a->normalized_fields, "a.b", json_pack("[s,i]", "x", 1));
        json_object_set_new(a->normalized_fields, "Title", json_string("other case"));
    }
}

static void test_overrides_set(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        struct normalized_alert a;
        fill(&a, f);
        a.title = strdup("Brute force");
        a.severity = strdup("High");
        a.description = strdup("many logons");
        expect_same(&a, "sentinel");
        expect_same(&a, NULL);
        normalized_alert_destroy(&a);
    }
}

static void test_overrides_unset(void **state)
{
    (void)state;
    for (int f = 0; f < 2; f++) {
        struct normalized_alert a;
        fill(&a, f);
        expect_same(&a, "generic");
        expect_same(&a, NULL);
        normalized_alert_destroy(&a);
    }
}

static void test_title_not_utf8(void **state)
{
    (void)state;
    struct normalized_alert a;
    fill(&a, 1);
    a.title = strdup("bad \xff title");
    a.severity = strdup("Low");
    expect_same(&a, "elastic");
    normalized_alert_destroy(&a);
}

static void test_no_fields_object(void **state)
{
    (void)state;
    struct normalized_alert a;
    fill(&a, 0);
    json_decref(a.normalized_fields);
    a.normalized_fields = NULL;
    a.title = strdup("t");
    expect_same(&a, "splunk");
    normalized_alert_destroy(&a);
}

/* The mappings skip a field that is not the alert's own when the alert has no normalised
 * fields, so a field added to normalized_alert_fields() must be added to the predicate too. */
static void test_own_fields(void **state)
{
    (void)state;
    static const char *const own[] = {"title", "severity", "source_name", "description"};
    static const enum alert_own_field which[] = {ALERT_OWN_TITLE, ALERT_OWN_SEVERITY,
                                                 ALERT_OWN_SOURCE_NAME, ALERT_OWN_DESCRIPTION};
    for (int set = 0; set < 2; set++) {
        struct normalized_alert a;
        fill(&a, 0);
        if (set) {
            a.title = strdup("t");
            a.severity = strdup("Low");
            a.description = strdup("d");
        }
        json_t *all = normalized_alert_fields(&a, "generic");
        const char *key;
        json_t *v;
        json_object_foreach(all, key, v)
        {
            (void)v;
            if (normalized_alert_own_field(key) == ALERT_OWN_NONE)
                fail_msg("%s is built from the alert but not named as its own", key);
        }
        for (size_t i = 0; i < sizeof own / sizeof *own; i++) {
            assert_int_equal(normalized_alert_own_field(own[i]), which[i]);
            if (set && !json_object_get(all, own[i]))
                fail_msg("%s is named as the alert's own but not built from it", own[i]);
        }
        if (set)
            assert_int_equal(json_object_size(all), sizeof own / sizeof *own);
        json_decref(all);
        normalized_alert_destroy(&a);
    }
    static const char *const other[] = {"src_ip", "", "Title", "titles", "titl", "sever",
                                        "source_rule_ref", "occurred_at", "a.b", "d", "s"};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        assert_int_equal(normalized_alert_own_field(other[i]), ALERT_OWN_NONE);
    assert_int_equal(normalized_alert_own_field(NULL), ALERT_OWN_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overrides_set),
        cmocka_unit_test(test_overrides_unset),
        cmocka_unit_test(test_title_not_utf8),
        cmocka_unit_test(test_no_fields_object),
        cmocka_unit_test(test_own_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
