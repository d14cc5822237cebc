/*
 * source_test.h - what the unit tests of the alert sources share: a registered source by name,
 * a payload normalised by it, and the indicators it extracts as compact JSON text. Each test
 * parses its JSON literals with its own flags. Include after <cmocka.h> and
 * "services/intake/source.h".
 */
#ifndef CALSETA_SOURCE_TEST_H
#define CALSETA_SOURCE_TEST_H

#include <jansson.h>
#include <stdlib.h>

/* The source registered as name; fails the test unless it is want. */
static inline const struct alert_source *source_expect(const char *name,
                                                       const struct alert_source *want)
{
    const struct alert_source *s = source_lookup(name);
    assert_ptr_equal(s, want);
    return s;
}

/* p (stolen) normalised into a by s; fails the test when s refuses it. */
static inline void source_normalize_ok(const struct alert_source *s, json_t *p,
                                       struct normalized_alert *a)
{
    assert_int_equal(s->normalize(p, a), 0);
    json_decref(p);
}

/* The indicators s extracts from p, as compact JSON text (caller frees). */
static inline char *source_indicators_text(const struct alert_source *s, const json_t *p)
{
    struct indicator_set set;
    indicator_set_init(&set);
    s->extract(p, &set);
    json_t *j = indicators_to_json(&set);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    indicator_set_destroy(&set);
    return text;
}

/* Fails the test unless s extracts exactly want (compact JSON) from p (stolen). */
static inline void source_expect_indicators(const struct alert_source *s, json_t *p,
                                            const char *want)
{
    char *got = source_indicators_text(s, p);
    assert_string_equal(got, want);
    free(got);
    json_decref(p);
}

#endif
