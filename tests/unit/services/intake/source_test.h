/*
 * source_test.h - what the unit tests of the alert sources share: a registered source by name,
 * the source's three steps over a payload written as a jansson value (read through its token
 * index, as the intake reads a payload it holds as a tree), a payload normalised by it, and the
 * indicators it extracts as compact JSON text. Include after <cmocka.h> and
 * "services/intake/source.h".
 */
#ifndef CALSETA_SOURCE_TEST_H
#define CALSETA_SOURCE_TEST_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The source registered as name; fails the test unless it is want. */
static inline const struct alert_source *source_expect(const char *name,
                                                       const struct alert_source *want)
{
    const struct alert_source *s = source_lookup(name);
    assert_ptr_equal(s, want);
    return s;
}

/* The tokens of p's compact text (kept in *text), read with no limits, since some tests build
 * payloads beyond the intake's; the caller releases both. */
static inline void source_test_tokens(const json_t *p, struct jtok_doc *d, char **text)
{
    static const struct json_limits none = {0, 0, 0};
    enum json_parse_status st;
    char err[160];
    *text = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(*text);
    assert_int_equal(jtok_parse_limited(d, *text, strlen(*text), &none, NULL, &st, err, sizeof err),
                     0);
}

/* s->validate(), s->normalize() and s->extract() over the tokens of p (borrowed). */
static inline int source_validate_json(const struct alert_source *s, const json_t *p)
{
    struct jtok_doc d;
    char *text;
    source_test_tokens(p, &d, &text);
    int v = s->validate(&d, 0);
    jtok_free(&d);
    free(text);
    return v;
}

static inline int source_normalize_json(const struct alert_source *s, const json_t *p,
                                        struct normalized_alert *a)
{
    struct jtok_doc d;
    char *text;
    source_test_tokens(p, &d, &text);
    int rc = s->normalize(&d, 0, a);
    jtok_free(&d);
    free(text);
    return rc;
}

static inline void source_extract_json(const struct alert_source *s, const json_t *p,
                                       struct indicator_set *out)
{
    struct jtok_doc d;
    char *text;
    source_test_tokens(p, &d, &text);
    s->extract(&d, 0, out);
    jtok_free(&d);
    free(text);
}

/* p (stolen) normalised into a by s; fails the test when s refuses it. */
static inline void source_normalize_ok(const struct alert_source *s, json_t *p,
                                       struct normalized_alert *a)
{
    assert_int_equal(source_normalize_json(s, p, a), 0);
    json_decref(p);
}

/* The indicators s extracts from p, as compact JSON text (caller frees). */
static inline char *source_indicators_text(const struct alert_source *s, const json_t *p)
{
    struct indicator_set set;
    indicator_set_init(&set);
    source_extract_json(s, p, &set);
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
