/*
 * targeting.c - save-time validation of targeting rules (see targeting.h), with the
 * original's messages: unknown keys, neither list present, a list that is not an array, a
 * rule that is not an object or lacks field/op/value, an unknown field or op, and the 64 KB
 * size limit of the compact JSON form.
 */
#include "targeting.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const FIELDS[] = {"severity", "source_name", "tags"};
static const char *const OPS[] = {"contains", "eq", "gte", "in", "lte"};

static int in_set(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, set[i]))
            return 1;
    return 0;
}

static void add(struct buf *b, const char *msg)
{
    if (b->len)
        buf_puts(b, "; ");
    buf_puts(b, msg);
}

static void check_rule(struct buf *b, const char *list, size_t i, json_t *r)
{
    char m[256];
    if (!json_is_object(r)) {
        snprintf(m, sizeof m, "%s[%zu]: rule must be an object", list, i);
        add(b, m);
        return;
    }
    static const char *const keys[] = {"field", "op", "value"};
    for (size_t k = 0; k < 3; k++)
        if (!json_object_get(r, keys[k])) {
            snprintf(m, sizeof m, "%s[%zu]: missing required key '%s'", list, i, keys[k]);
            add(b, m);
            return;
        }
    const char *f = json_string_value(json_object_get(r, "field"));
    const char *op = json_string_value(json_object_get(r, "op"));
    if (!f || !in_set(f, FIELDS, 3)) {
        snprintf(m, sizeof m, "%s[%zu].field: '%.60s' not in ['severity', 'source_name', 'tags']",
                 list, i, f ? f : "?");
        add(b, m);
    }
    if (!op || !in_set(op, OPS, 5)) {
        snprintf(m, sizeof m,
                 "%s[%zu].op: '%.60s' not in ['contains', 'eq', 'gte', 'in', 'lte']", list, i,
                 op ? op : "?");
        add(b, m);
    }
    if (op && !strcmp(op, "in") && !json_is_array(json_object_get(r, "value"))) {
        snprintf(m, sizeof m, "%s[%zu].value: must be an array for op 'in'", list, i);
        add(b, m);
    }
}

int targeting_validate(json_t *rules, const char *what, char *err, size_t errlen)
{
    struct buf b;
    buf_init(&b);
    if (!json_is_object(rules)) {
        snprintf(err, errlen, "%s must be a JSON object", what);
        return -1;
    }
    char *compact = json_dumps(rules, JSON_COMPACT | JSON_ENSURE_ASCII);
    size_t n = compact ? strlen(compact) : 0;
    free(compact);
    if (n > TARGETING_MAX_BYTES) {
        snprintf(err, errlen, "%s exceeds maximum size of 64 KB (%zu bytes serialized)", what, n);
        return -1;
    }
    const char *k;
    json_t *v;
    struct buf unknown;
    buf_init(&unknown);
    json_object_foreach(rules, k, v)
    {
        if (strcmp(k, "match_any") && strcmp(k, "match_all"))
            buf_printf(&unknown, "%s'%.60s'", unknown.len ? ", " : "", k);
    }
    if (unknown.len) {
        char m[512];
        snprintf(m, sizeof m, "%s has unknown keys: [%s]", what, unknown.data);
        add(&b, m);
    }
    buf_destroy(&unknown);
    json_t *any = json_object_get(rules, "match_any"), *all = json_object_get(rules, "match_all");
    if (!any && !all) {
        char m[160];
        snprintf(m, sizeof m, "%s must contain at least one of: match_any, match_all", what);
        add(&b, m);
    }
    const char *lists[2] = {"match_any", "match_all"};
    json_t *vals[2] = {any, all};
    for (int l = 0; l < 2; l++) {
        if (!vals[l])
            continue;
        if (!json_is_array(vals[l])) {
            char m[160];
            snprintf(m, sizeof m, "%s.%s must be an array", what, lists[l]);
            add(&b, m);
            continue;
        }
        size_t i;
        json_t *r;
        json_array_foreach(vals[l], i, r) check_rule(&b, lists[l], i, r);
    }
    if (!b.len) {
        buf_destroy(&b);
        return 0;
    }
    snprintf(err, errlen, "%s", b.data);
    buf_destroy(&b);
    return -1;
}
