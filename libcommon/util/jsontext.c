/*
 * jsontext.c - JSON strings written straight into a buffer (see jsontext.h).
 */
#include "jsontext.h"
#include "jsonread.h"

#include <string.h>

void buf_json_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    buf_reserve(b, n + 2);
    buf_append(b, "\"", 1);
    while (p < end) {
        const unsigned char *run = p; /* bytes that go out as they are */
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
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
