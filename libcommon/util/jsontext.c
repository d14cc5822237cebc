/*
 * jsontext.c - JSON strings written straight into a buffer (see jsontext.h).
 */
#include "jsontext.h"
#include "jsonread.h"

#include <stdio.h>
#include <string.h>

void buf_json_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    buf_reserve(b, n + 2);
    buf_append(b, "\"", 1);
    while (p < end) {
        const unsigned char *run = p; /* bytes that go out as they are */
        p = json_skip_plain(p, end);
        while (p < end && JSON_PLAIN[*p])
            p++;
        buf_append(b, run, (size_t)(p - run));
        if (p >= end)
            break;
        unsigned c = *p;
        if (c >= 0x80) {
            size_t k = json_utf8_seq(p, end);
            if (k)
                buf_append(b, p, k), p += k;
            else
                buf_append(b, "\xef\xbf\xbd", 3), p++;
            continue;
        }
        char e[6] = {'\\', 0};
        size_t en = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15], en = 6;
        }
        buf_append(b, e, en);
        p++;
    }
    buf_append(b, "\"", 1);
}

void buf_json_cstr(struct buf *b, const char *s)
{
    if (s)
        buf_json_string(b, s, strlen(s));
    else
        buf_append(b, "null", 4);
}

static void put_integer(struct buf *b, json_int_t n)
{
    char d[24];
    buf_append(b, d, fmt_ll(d, n));
}

/* As jansson writes a real: "%.17g", a ".0" when it would read back as an integer, and an
 * exponent without '+' or leading zeros. */
static void put_real(struct buf *b, double x)
{
    char s[40], out[48];
    int n = snprintf(s, sizeof s, "%.17g", x);
    if (n <= 0 || (size_t)n >= sizeof s) {
        buf_append(b, "0.0", 3);
        return;
    }
    size_t k = 0;
    for (const char *p = s; *p; p++) {
        out[k++] = *p == ',' ? '.' : *p; /* a locale's decimal comma */
        if (*p == 'e') {
            p++;
            if (*p == '-')
                out[k++] = *p++;
            else if (*p == '+')
                p++;
            while (*p == '0' && p[1])
                p++;
            while (*p)
                out[k++] = *p++;
            break;
        }
    }
    if (!memchr(out, '.', k) && !memchr(out, 'e', k))
        out[k++] = '.', out[k++] = '0';
    buf_append(b, out, k);
}

void buf_json_value(struct buf *b, const json_t *v)
{
    json_t *m = (json_t *)v; /* jansson's iteration API takes non-const */
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT: {
        buf_append(b, "{", 1);
        int first = 1;
        for (void *it = json_object_iter(m); it; it = json_object_iter_next(m, it)) {
            if (!first)
                buf_append(b, ",", 1);
            first = 0;
            buf_json_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
            buf_append(b, ":", 1);
            buf_json_value(b, json_object_iter_value(it));
        }
        buf_append(b, "}", 1);
        return;
    }
    case JSON_ARRAY: {
        buf_append(b, "[", 1);
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i)
                buf_append(b, ",", 1);
            buf_json_value(b, json_array_get(v, i));
        }
        buf_append(b, "]", 1);
        return;
    }
    case JSON_STRING:
        buf_json_string(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        put_integer(b, json_integer_value(v));
        return;
    case JSON_REAL:
        put_real(b, json_real_value(v));
        return;
    case JSON_TRUE:
        buf_append(b, "true", 4);
        return;
    case JSON_FALSE:
        buf_append(b, "false", 5);
        return;
    case JSON_NULL:
        buf_append(b, "null", 4);
        return;
    }
}
