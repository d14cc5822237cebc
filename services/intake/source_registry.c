/*
 * source_registry.c - the table of alert sources, and the helpers the sources share
 * (Python str(), the token readers of strings and timestamps, the normalised alert's life
 * cycle, the token index of a payload that is a member of the body).
 */
#include "source.h"
#include "isotime.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct alert_source *const sources[] = {
    &source_sentinel, &source_elastic, &source_splunk, &source_generic, NULL,
};

const struct alert_source *source_lookup(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; sources[i]; i++)
        if (!strcmp(sources[i]->name, name))
            return sources[i];
    return NULL;
}

const struct alert_source *const *source_all(void)
{
    return sources;
}

/* ---- the normalised alert ---- */

void normalized_alert_init(struct normalized_alert *a)
{
    memset(a, 0, sizeof *a);
    a->tags = json_array();
}

void normalized_alert_now(struct normalized_alert *a)
{
    a->occurred_at_us = now_wall_us();
    a->occurred_at_was_now = 1;
}

void normalized_alert_destroy(struct normalized_alert *a)
{
    free(a->title);
    free(a->severity);
    free(a->description);
    free(a->source_rule_ref);
    json_decref(a->tags);
    json_decref(a->normalized_fields);
    memset(a, 0, sizeof *a);
}

json_t *normalized_alert_fields(const struct normalized_alert *a, const char *source_name)
{
    json_t *o = json_object();
    if (json_is_object(a->normalized_fields))
        json_object_update(o, a->normalized_fields);
    if (a->title)
        json_object_set_new(o, "title", json_string(a->title));
    if (a->severity)
        json_object_set_new(o, "severity", json_string(a->severity));
    if (source_name)
        json_object_set_new(o, "source_name", json_string(source_name));
    json_object_set_new(o, "description",
                        a->description ? json_string(a->description) : json_null());
    return o;
}

/* The first byte picks the one name a key can be: most mappings name a field of
 * normalized_fields, and five string comparisons each per mapping and alert added up. */
enum alert_own_field normalized_alert_own_field(const char *key)
{
    if (!key)
        return ALERT_OWN_NONE;
    switch (key[0]) {
    case 't':
        return strcmp(key, "title") ? ALERT_OWN_NONE : ALERT_OWN_TITLE;
    case 's':
        if (!strcmp(key, "severity"))
            return ALERT_OWN_SEVERITY;
        return strcmp(key, "source_name") ? ALERT_OWN_NONE : ALERT_OWN_SOURCE_NAME;
    case 'd':
        return strcmp(key, "description") ? ALERT_OWN_NONE : ALERT_OWN_DESCRIPTION;
    default:
        return ALERT_OWN_NONE;
    }
}

/* Kept in step with normalized_alert_fields() above (tests/unit/services/intake/
 * source_registry.c compares the two key by key): the ingest path reads the few keys its
 * mappings name without copying every normalised field per alert. */
const json_t *normalized_alert_field(const struct normalized_alert *a, const char *source_name,
                                     const char *key, json_t **tmp)
{
    const char *text = NULL;
    *tmp = NULL;
    switch (normalized_alert_own_field(key)) {
    case ALERT_OWN_TITLE:
        text = a->title;
        break;
    case ALERT_OWN_SEVERITY:
        text = a->severity;
        break;
    case ALERT_OWN_SOURCE_NAME:
        text = source_name;
        break;
    case ALERT_OWN_DESCRIPTION:
        if (!a->description)
            return json_null();
        text = a->description;
        break;
    case ALERT_OWN_NONE:
        break;
    }
    if (text && (*tmp = json_string(text)) != NULL)
        return *tmp;
    /* no source fills normalized_fields yet, and a lookup in an empty object would still hash
     * the key: 14 mappings per alert made that most of mappings_apply()'s cost */
    return json_object_size(a->normalized_fields) ? json_object_get(a->normalized_fields, key)
                                                  : NULL;
}

/* ---- a payload that is a member of the body ---- */

int source_body_tokens(struct jtok_doc *d, const char *body, size_t len, const char *member,
                       uint32_t *root)
{
    /* the body passed the caller's limits already, read into a tree */
    static const struct json_limits none = {0, 0, 0};
    enum json_parse_status st;
    char err[160];
    *root = JTOK_NONE;
    if (jtok_parse_limited(d, body, len, &none, NULL, &st, err, sizeof err) != 0)
        return -1;
    *root = jtok_get(d, 0, member);
    return *root == JTOK_NONE ? -1 : 0;
}

/* ---- Python str() ---- */

/* repr(float): shortest round-trip digits; fixed notation for 1e-4 <= |x| < 1e16. */
static void repr_real(struct buf *b, double d)
{
    char tmp[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    if (*p == '-') {
        buf_puts(b, "-");
        p++;
    }
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    if (exp < -4 || exp >= 16) {
        buf_append(b, digits, 1);
        if (nd > 1)
            buf_printf(b, ".%s", digits + 1);
        buf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        buf_puts(b, "0.");
        for (int i = -1; i > exp; i--)
            buf_puts(b, "0");
        buf_puts(b, digits);
    } else {
        for (int i = 0; i <= exp; i++)
            buf_append(b, i < (int)nd ? &digits[i] : "0", 1);
        buf_puts(b, ".");
        buf_puts(b, (int)nd > exp + 1 ? digits + exp + 1 : "0");
    }
}

/* Characters repr() escapes: C0/C1 controls, DEL and the common non-printable code points. */
static int repr_escape(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
           (cp >= 0x205f && cp <= 0x206f) || cp == 0x3000 || cp == 0xfeff ||
           (cp >= 0xe000 && cp <= 0xf8ff) || (cp >= 0xfff9 && cp <= 0xfffb);
}

static void repr_string(struct buf *b, const char *s, size_t len)
{
    char q = memchr(s, '\'', len) && !memchr(s, '"', len) ? '"' : '\'';
    buf_append(b, &q, 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (n > len - i)
            n = len - i;
        unsigned cp = c < 0x80 ? c : (unsigned)(c & (0x7f >> n));
        for (size_t k = 1; k < n; k++)
            cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3f);
        if (c == '\\' || c == (unsigned char)q)
            buf_printf(b, "\\%c", c);
        else if (c == '\n' || c == '\r' || c == '\t')
            buf_puts(b, c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t");
        else if (repr_escape(cp))
            buf_printf(b, cp <= 0xff ? "\\x%02x" : "\\u%04x", cp);
        else
            buf_append(b, s + i, n);
        i += n;
    }
    buf_append(b, &q, 1);
}

static void py_repr(struct buf *b, const json_t *v, int top)
{
    size_t i;
    const char *k;
    json_t *x;
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (top)
            buf_puts(b, json_string_value(v));
        else
            repr_string(b, json_string_value(v), strlen(json_string_value(v)));
        break;
    case JSON_INTEGER:
        buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        repr_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        buf_puts(b, "True");
        break;
    case JSON_FALSE:
        buf_puts(b, "False");
        break;
    case JSON_NULL:
        buf_puts(b, "None");
        break;
    case JSON_ARRAY:
        buf_puts(b, "[");
        json_array_foreach(v, i, x)
        {
            if (i)
                buf_puts(b, ", ");
            py_repr(b, x, 0);
        }
        buf_puts(b, "]");
        break;
    case JSON_OBJECT:
        buf_puts(b, "{");
        i = 0;
        json_object_foreach((json_t *)v, k, x)
        {
            if (i++)
                buf_puts(b, ", ");
            repr_string(b, k, strlen(k));
            buf_puts(b, ": ");
            py_repr(b, x, 0);
        }
        buf_puts(b, "}");
        break;
    }
}

char *py_str(const json_t *v)
{
    if (!v)
        return xstrdup("None");
    struct buf b;
    buf_init(&b);
    py_repr(&b, v, 1);
    char *s = b.data ? b.data : xstrdup("");
    return s;
}

/* ---- readers over the token index ---- */

int jtok_lower(const struct jtok_doc *d, uint32_t i, char *buf, size_t size)
{
    size_t n;
    const char *s = jtok_str(d, i, &n);
    if (!s || size == 0)
        return 0;
    size_t k = 0;
    for (; k < n && k + 1 < size; k++)
        buf[k] = (s[k] >= 'A' && s[k] <= 'Z') ? (char)(s[k] + 32) : s[k];
    buf[k] = '\0';
    return 1;
}

char *jtok_py_str(const struct jtok_doc *d, uint32_t i)
{
    if (jtok_type(d, i) == JT_STRING)
        return jtok_strdup(d, i);
    json_t *v = jtok_json(d, i);
    char *s = py_str(v);
    json_decref(v);
    return s;
}

/* parse(text of string i); -1 when i is not a string. */
static int jtok_time(const struct jtok_doc *d, uint32_t i, int (*parse)(const char *, int64_t *),
                     int64_t *out_us)
{
    size_t n;
    const char *s = jtok_str(d, i, &n);
    if (!s)
        return -1;
    char small[128];
    if (n < sizeof small) {
        memcpy(small, s, n);
        small[n] = '\0';
        return parse(small, out_us);
    }
    char *copy = xstrndup(s, n);
    int rc = parse(copy, out_us);
    free(copy);
    return rc;
}

int jtok_isotime_zfix(const struct jtok_doc *d, uint32_t i, int64_t *out_us)
{
    return jtok_time(d, i, isotime_parse_zfix, out_us);
}

int jtok_isotime(const struct jtok_doc *d, uint32_t i, int64_t *out_us)
{
    return jtok_time(d, i, isotime_parse, out_us);
}

void jtok_add_tag(const struct jtok_doc *d, uint32_t i, struct normalized_alert *a)
{
    size_t n;
    const char *s = jtok_str(d, i, &n);
    if (s)
        json_array_append_new(a->tags, json_stringn_nocheck(s, n));
}

void jtok_add_indicator(const struct jtok_doc *d, uint32_t i, struct indicator_set *out,
                        const char *type)
{
    size_t n;
    const char *s = jtok_str(d, i, &n);
    if (s)
        indicator_set_add(out, type, s, n);
}
