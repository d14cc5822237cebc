/*
 * jpath.c - dot-path lookup and scalar text, see jpath.h.
 */
#include "jpath.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses a list index segment: decimal digits only (Python int() of a segment). */
static int segment_index(const char *s, size_t n, size_t *out)
{
    if (n == 0 || n > 9)
        return -1;
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static json_t *walk(json_t *root, const char *path, int lists)
{
    json_t *cur = root;
    if (!path || !*path)
        return json_is_null(cur) ? NULL : cur;
    const char *p = path;
    while (cur) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, p, n);
        } else if (lists && json_is_array(cur)) {
            size_t idx;
            cur = segment_index(p, n, &idx) == 0 ? json_array_get(cur, idx) : NULL;
        } else {
            cur = NULL;
        }
        if (!dot)
            break;
        p = dot + 1;
    }
    return json_is_null(cur) ? NULL : cur;
}

json_t *jpath_get(json_t *root, const char *path)
{
    return walk(root, path, 1);
}

char *jvalue_text(const json_t *v)
{
    char tmp[64];
    if (!v || json_is_null(v))
        return NULL;
    switch (json_typeof(v)) {
    case JSON_STRING:
        return xstrndup(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return xstrdup(tmp);
    case JSON_REAL:
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, json_real_value(v));
            if (strtod(tmp, NULL) == json_real_value(v))
                break;
        }
        if (!strpbrk(tmp, ".eEn"))
            strcat(tmp, ".0");
        return xstrdup(tmp);
    case JSON_TRUE:
        return xstrdup("True");
    case JSON_FALSE:
        return xstrdup("False");
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        char *r = xstrdup(s ? s : "");
        free(s);
        return r;
    }
    }
}
