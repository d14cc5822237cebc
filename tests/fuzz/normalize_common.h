/*
 * normalize_common.h - the body shared by the normalize_<source> libFuzzer targets.
 *
 * Bytes are parsed as the intake parses a body (JSON_REJECT_DUPLICATES, any JSON value) plus
 * JSON_ALLOW_NUL, so strings with embedded NULs reach the sources too. Then, for the target's
 * source: validate, extract (pass 1), normalize, pass 2 over the normalised fields, pass 3 over
 * the raw payload, the fingerprint and the JSON forms. The harness aborts when a result breaks
 * an invariant: a title, a severity from the enum, tags an array of strings, a fingerprint of
 * 32 lowercase hex digits, indicators stripped, non-empty and unique. A payload that is a bare
 * string also goes through the timestamp parsers.
 */
#ifndef FUZZ_NORMALIZE_COMMON_H
#define FUZZ_NORMALIZE_COMMON_H

#include "services/intake/isotime.h"
#include "services/intake/source.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok)
{
    if (!ok)
        abort();
}

static void check_alert(const struct normalized_alert *a)
{
    static const char *const sev[] = {"Pending", "Informational", "Low",
                                      "Medium",  "High",          "Critical"};
    int known = 0;
    check(a->title != NULL && a->severity != NULL);
    for (size_t i = 0; i < 6; i++)
        known |= !strcmp(a->severity, sev[i]);
    check(known);
    check(json_is_array(a->tags) && json_is_object(a->normalized_fields));
    size_t i;
    json_t *t;
    json_array_foreach(a->tags, i, t) check(json_is_string(t));
}

static void check_set(const struct indicator_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const char *v = s->items[i].value;
        size_t n = strlen(v);
        check(n > 0);
        const char *w = v;
        check(py_strip(&w, n) == n && w == v);
        for (size_t k = 0; k < i && k < 64; k++)
            check(strcmp(s->items[k].type, s->items[i].type) ||
                  strcmp(s->items[k].value, s->items[i].value));
    }
}

static int fuzz_source(const char *name, const uint8_t *data, size_t size)
{
    static const struct indicator_mapping pass2[] = {
        {NULL, "title", "domain"}, {"sentinel", "description", "url"},
        {NULL, "src_ip", "ip"},    {"elastic", "severity", "account"},
        {NULL, NULL, "ip"},
    };
    static const struct indicator_mapping pass3[] = {
        {NULL, "properties.title", "account"},
        {NULL, "result.src", "ip"},
        {NULL, "a.b.c", "email"},
        {NULL, "", "url"},
        {NULL, "..", "url"},
        {"generic", "title", "domain"},
    };
    const struct alert_source *src = source_lookup(name);
    json_error_t err;
    json_t *p = json_loadb((const char *)data, size,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!src || !p)
        return 0;
    if (json_is_string(p)) {
        int64_t us;
        isotime_parse(json_string_value(p), &us);
        isotime_parse_zfix(json_string_value(p), &us);
        isotime_from_epoch_text(json_string_value(p), &us);
    }
    int valid = src->validate(p);
    check(valid == 0 || valid == 1);
    struct indicator_set set;
    indicator_set_init(&set);
    src->extract(p, &set);
    struct normalized_alert a;
    if (src->normalize(p, &a) == 0) {
        check_alert(&a);
        json_t *fields = normalized_alert_fields(&a, name);
        indicators_extract_normalized(fields, name, pass2, 5, &set);
        json_decref(fields);
        indicators_extract_raw(p, name, pass3, 6, &set);
        check_set(&set);
        char fp[33];
        indicators_fingerprint(a.title, name, &set, fp);
        check(strlen(fp) == 32 && strspn(fp, "0123456789abcdef") == 32);
        json_t *j = indicators_to_json(&set);
        check(json_array_size(j) == set.n);
        json_decref(j);
        normalized_alert_destroy(&a);
    } else {
        check(a.title == NULL && a.tags == NULL);
    }
    char *text = py_str(p);
    free(text);
    indicator_set_destroy(&set);
    json_decref(p);
    return 0;
}

#endif
