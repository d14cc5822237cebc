/*
 * malice.c - malice rules and worst-of, see malice.h.
 */
#include "malice.h"
#include "jpath.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const VERDICTS[] = {"Pending", "Benign", "Suspicious", "Malicious"};

int malice_rank(const char *v)
{
    for (int i = 0; v && i < 4; i++)
        if (!strcmp(v, VERDICTS[i]))
            return i;
    return -1;
}

const char *malice_worst(const char *a, const char *b)
{
    int ra = malice_rank(a), rb = malice_rank(b);
    if (ra < 0 && rb < 0)
        return NULL;
    return ra >= rb ? VERDICTS[ra] : VERDICTS[rb];
}

static const char *verdict_or(json_t *rules, const char *key)
{
    const char *v = json_string_value(json_object_get(rules, key));
    return v ? v : "Pending";
}

const char *malice_not_found(json_t *rules)
{
    return verdict_or(rules, "not_found_verdict");
}

/* Python float(x): numbers, booleans, numeric strings (surrounding whitespace allowed). */
static int as_float(json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (end == s)
            return -1;
        while (isspace((unsigned char)*end))
            end++;
        if (*end)
            return -1;
        *out = d;
        return 0;
    }
    return -1;
}

static int is_numeric(json_t *v)
{
    return json_is_number(v) || json_is_boolean(v);
}

/* Python ==: numbers (and booleans) compare by value across types; otherwise deep equality. */
static int py_equal(json_t *a, json_t *b)
{
    if (is_numeric(a) && is_numeric(b)) {
        double x, y;
        as_float(a, &x);
        as_float(b, &y);
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return x == y;
    }
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!py_equal(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    return json_equal(a, b);
}

static int member_of(json_t *needle, json_t *hay)
{
    if (json_is_array(hay)) {
        size_t i;
        json_t *x;
        json_array_foreach(hay, i, x) if (py_equal(needle, x)) return 1;
        return 0;
    }
    if (json_is_object(hay))
        return json_is_string(needle) && json_object_get(hay, json_string_value(needle));
    if (json_is_string(hay) && json_is_string(needle))
        return strstr(json_string_value(hay), json_string_value(needle)) != NULL;
    return 0;
}

static int rule_matches(json_t *rule, json_t *raw)
{
    const char *field = json_string_value(json_object_get(rule, "field"));
    const char *op = json_string_value(json_object_get(rule, "operator"));
    json_t *expected = json_object_get(rule, "value");
    if (!field || !op)
        return 0;
    json_t *actual = jpath_get(raw, field);
    if (!actual)
        return 0;
    if (!strcmp(op, "==") || !strcmp(op, "!=")) {
        int eq = expected ? py_equal(actual, expected) : 0;
        return op[0] == '=' ? eq : !eq;
    }
    if (!strcmp(op, "contains"))
        return expected && member_of(expected, actual);
    if (!strcmp(op, "in"))
        return expected && member_of(actual, expected);
    double a, e;
    if (!expected || as_float(actual, &a) || as_float(expected, &e) || isnan(a) || isnan(e))
        return 0;
    if (!strcmp(op, ">"))
        return a > e;
    if (!strcmp(op, ">="))
        return a >= e;
    if (!strcmp(op, "<"))
        return a < e;
    if (!strcmp(op, "<="))
        return a <= e;
    return 0;
}

const char *malice_evaluate(json_t *rules, json_t *raw)
{
    if (!json_is_object(rules))
        return "Pending";
    json_t *list = json_object_get(rules, "rules");
    size_t i;
    json_t *r;
    json_array_foreach(list, i, r)
    {
        if (!json_is_object(r) || !rule_matches(r, raw))
            continue;
        const char *v = json_string_value(json_object_get(r, "verdict"));
        if (v)
            return v;
    }
    return verdict_or(rules, "default_verdict");
}
