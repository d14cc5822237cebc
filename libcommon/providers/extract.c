/*
 * extract.c - field extraction, pass-3 indicator extraction and the enrichable check.
 */
#include "extract.h"
#include "indicators.h"
#include "jpath.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- coercion (Python int()/float()/bool()/str() semantics where it matters) ---- */

static int parse_int_text(const char *s, json_int_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static int parse_float_text(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static json_t *to_int(json_t *v)
{
    json_int_t i;
    if (json_is_integer(v))
        return json_incref(v);
    if (json_is_boolean(v))
        return json_integer(json_is_true(v));
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || fabs(d) >= 9.2e18)
            return NULL;
        return json_integer((json_int_t)d);
    }
    if (json_is_string(v) && parse_int_text(json_string_value(v), &i) == 0)
        return json_integer(i);
    return NULL;
}

static json_t *to_float(json_t *v)
{
    double d;
    if (json_is_number(v))
        return json_real(json_number_value(v));
    if (json_is_boolean(v))
        return json_real(json_is_true(v) ? 1.0 : 0.0);
    if (json_is_string(v) && parse_float_text(json_string_value(v), &d) == 0 && isfinite(d))
        return json_real(d);
    return NULL;
}

static json_t *to_bool(json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return json_boolean(!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes"));
    }
    if (json_is_boolean(v))
        return json_incref(v);
    if (json_is_integer(v))
        return json_boolean(json_integer_value(v) != 0);
    if (json_is_real(v))
        return json_boolean(json_real_value(v) != 0.0);
    if (json_is_object(v))
        return json_boolean(json_object_size(v) != 0);
    if (json_is_array(v))
        return json_boolean(json_array_size(v) != 0);
    return json_false();
}

json_t *extract_coerce(json_t *v, const char *t)
{
    if (!v || json_is_null(v))
        return NULL;
    if (!strcmp(t, "string")) {
        char *s = jvalue_text(v);
        json_t *r = json_string(s);
        free(s);
        return r;
    }
    if (!strcmp(t, "int"))
        return to_int(v);
    if (!strcmp(t, "float"))
        return to_float(v);
    if (!strcmp(t, "bool"))
        return to_bool(v);
    return json_incref(v); /* list, dict, any and unknown types pass through */
}

json_t *extract_fields(json_t *raw, const struct field_rule *rules, size_t n, const char *type)
{
    json_t *out = json_object();
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            int own = type && !strcmp(rules[i].indicator_type, type);
            if (own != pass)
                continue;
            json_t *c = extract_coerce(jpath_get(raw, rules[i].source_path), rules[i].value_type);
            if (c)
                json_object_set_new(out, rules[i].target_key, c);
        }
    }
    return out;
}

/* ---- pass 3 ---- */

static int already_have(json_t *out, const char *type, const char *value, size_t vlen)
{
    size_t i;
    json_t *e;
    json_array_foreach(out, i, e)
    {
        const char *t = json_string_value(json_object_get(e, "type"));
        json_t *v = json_object_get(e, "value");
        if (!t || !json_is_string(v) || strcmp(t, type))
            continue;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        while (n && isspace((unsigned char)*s)) {
            s++;
            n--;
        }
        while (n && isspace((unsigned char)s[n - 1]))
            n--;
        if (n == vlen && !memcmp(s, value, n))
            return 1;
    }
    return 0;
}

size_t extract_pass3(json_t *raw_payload, const char *source_name, const struct raw_mapping *m,
                     size_t n, json_t *out)
{
    /* The walk, the stripping and the de-duplication are the ingest's own (indicators.h), so
     * pass 3 here finds exactly what the original's pass 3 finds. */
    struct indicator_mapping *im = xcalloc(n ? n : 1, sizeof *im);
    for (size_t i = 0; i < n; i++)
        im[i] = (struct indicator_mapping){m[i].source_name, m[i].field_path, m[i].indicator_type};
    struct indicator_set set;
    indicator_set_init(&set);
    indicators_extract_raw(raw_payload, source_name, im, n, &set);
    free(im);
    size_t added = 0;
    for (size_t i = 0; i < set.n; i++) {
        const char *type = set.items[i].type, *value = set.items[i].value;
        size_t len = strlen(value);
        if (len > INDICATOR_VALUE_MAX || already_have(out, type, value, len))
            continue;
        json_array_append_new(out, json_pack("{s:s,s:s,s:b}", "type", type, "value", value,
                                             "new", 1));
        added++;
    }
    indicator_set_destroy(&set);
    return added;
}

/* ---- enrichable ---- */

static int ipv4_global(const unsigned char a[4])
{
    uint32_t x = ((uint32_t)a[0] << 24) | ((uint32_t)a[1] << 16) | ((uint32_t)a[2] << 8) | a[3];
    static const struct {
        uint32_t net, mask;
    } blocked[] = {
        {0x00000000, 0xff000000}, {0x0a000000, 0xff000000}, {0x64400000, 0xffc00000},
        {0x7f000000, 0xff000000}, {0xa9fe0000, 0xffff0000}, {0xac100000, 0xfff00000},
        {0xc0000000, 0xffffff00}, {0xc0000200, 0xffffff00}, {0xc0a80000, 0xffff0000},
        {0xc6120000, 0xfffe0000}, {0xc6336400, 0xffffff00}, {0xcb007100, 0xffffff00},
        {0xe0000000, 0xf0000000}, {0xf0000000, 0xf0000000},
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        if ((x & blocked[i].mask) == blocked[i].net)
            return 0;
    return 1;
}

static int ipv6_global(const unsigned char a[16])
{
    static const unsigned char zero[16];
    if (!memcmp(a, zero, 15) && (a[15] == 0 || a[15] == 1))
        return 0; /* unspecified, loopback */
    if (!memcmp(a, zero, 10) && a[10] == 0xff && a[11] == 0xff)
        return ipv4_global(a + 12); /* v4-mapped */
    if ((a[0] & 0xe0) != 0x20)
        return 0; /* only 2000::/3 is global unicast */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
        return 0; /* documentation */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 0x02)
        return 0; /* 2001::/23 IETF protocol assignments */
    if (a[0] == 0x20 && a[1] == 0x02)
        return 0; /* 6to4 */
    return 1;
}

static int domain_ok(const char *value, const char **reason)
{
    static const char *bad[] = {"internal", "local", "localhost", "home",    "lan",
                                "corp",     "test",  "example",   "invalid", "arpa"};
    size_t n = strlen(value);
    char *d = xstrdup(value);
    for (size_t i = 0; i < n; i++)
        d[i] = (char)tolower((unsigned char)d[i]);
    if (n && d[n - 1] == '.')
        d[--n] = 0;
    int ok = n > 0 && strcmp(d, "localhost") != 0;
    const char *last = strrchr(d, '.');
    last = last ? last + 1 : d;
    for (size_t i = 0; ok && i < sizeof bad / sizeof bad[0]; i++)
        if (!strcmp(last, bad[i]))
            ok = 0;
    free(d);
    if (!ok)
        *reason = "internal or reserved domain";
    return ok;
}

static int ip_ok(const char *value, const char **reason)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, value, a) == 1) {
        if (ipv4_global(a))
            return 1;
    } else if (inet_pton(AF_INET6, value, a) == 1) {
        if (ipv6_global(a))
            return 1;
    } else {
        *reason = "not a valid IP address";
        return 0;
    }
    *reason = "private or reserved IP address";
    return 0;
}

static int url_ok(const char *value, const char **reason)
{
    const char *p = strstr(value, "://");
    p = p ? p + 3 : value;
    const char *at = NULL;
    for (const char *q = p; *q && *q != '/' && *q != '?' && *q != '#'; q++)
        if (*q == '@')
            at = q;
    if (at)
        p = at + 1;
    char host[256];
    size_t n = 0;
    if (*p == '[') {
        p++;
        while (p[n] && p[n] != ']' && n < sizeof host - 1)
            n++;
    } else {
        while (p[n] && !strchr(":/?#", p[n]) && n < sizeof host - 1)
            n++;
    }
    if (n == 0) {
        *reason = "URL has no hostname";
        return 0;
    }
    memcpy(host, p, n);
    host[n] = 0;
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1)
        return ip_ok(host, reason);
    return domain_ok(host, reason);
}

int is_enrichable(const char *type, const char *value, const char **reason)
{
    *reason = NULL;
    if (!strcmp(type, "ip"))
        return ip_ok(value, reason);
    if (!strcmp(type, "domain"))
        return domain_ok(value, reason);
    if (!strcmp(type, "url"))
        return url_ok(value, reason);
    return 1;
}
