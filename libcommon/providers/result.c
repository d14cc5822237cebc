/*
 * result.c - provider response bodies and the stored per-provider result objects, shared by
 * the enricher (which makes the lookups) and the intake (which reports skipped and failed
 * providers itself).
 */
#include "result.h"
#include "jsonread.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Copies valid UTF-8, replacing invalid bytes with U+FFFD and dropping NULs; stops at max
 * characters. */
static char *utf8_clean(const char *s, size_t n, size_t max_chars)
{
    struct buf b;
    buf_init(&b);
    size_t chars = 0;
    for (size_t i = 0; i < n && chars < max_chars; chars++) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = ((unsigned char)s[i + k] >> 6) == 2;
        if (ok && len > 1) {
            unsigned cp = c & (0x7f >> len);
            for (size_t k = 1; k < len; k++)
                cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3f);
            ok = !(cp < 0x80 || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                   cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff));
        }
        if (!ok) {
            buf_puts(&b, "\xef\xbf\xbd");
            i++;
        } else {
            if (c != 0)
                buf_append(&b, s + i, len);
            i += len;
        }
    }
    buf_append(&b, "", 0);
    return b.data;
}

/* The project's strict reader accepts what jansson's parser does (same depth bound, NUL escapes
 * refused, the last of duplicate keys wins) at a fraction of its cost; one difference: an
 * integer beyond int64 becomes a real instead of failing the whole answer. */
json_t *body_parse(const char *data, size_t len)
{
    char err[160];
    json_t *v = len ? json_read(data, len, JSON_DECODE_ANY, err, sizeof err) : NULL;
    if (v)
        return v;
    char *text = utf8_clean(data ? data : "", len, 2000);
    json_t *o = json_object();
    json_object_set_new(o, "_raw_text", json_string(text));
    free(text);
    return o;
}

json_t *result_new(const char *provider, const char *status, json_t *extracted, json_t *raw,
                   const char *error)
{
    char ts[32];
    format_iso8601_us(now_wall_us(), ts);
    json_t *r = json_object();
    json_object_set_new(r, "provider_name", json_string(provider));
    json_object_set_new(r, "status", json_string(status));
    json_object_set_new(r, "success", json_boolean(!strcmp(status, "success")));
    json_object_set_new(r, "extracted", extracted ? extracted : json_null());
    json_object_set_new(r, "raw", raw ? raw : json_null());
    json_object_set_new(r, "enriched_at", json_string(ts));
    if (error) {
        char *clean = utf8_clean(error, strlen(error), 1000);
        json_object_set_new(r, "error_message", json_string(clean));
        free(clean);
    } else {
        json_object_set_new(r, "error_message", json_null());
    }
    json_object_set_new(r, "debug_steps", json_null());
    return r;
}
