/*
 * source_sentinel.c - Microsoft Sentinel incidents, normalised as the original does.
 *
 *   validate   "properties" is an object and properties.title or properties.severity is truthy
 *   title      properties.title, "Untitled Sentinel Incident" when the key is absent;
 *              a present non-string (null included) is refused (-1), as pydantic does
 *   severity   properties.severity, CASE-SENSITIVE: High Medium Low Informational as-is,
 *              "None" or absent -> Informational, anything else (null, "high") -> Pending
 *   occurred   properties.firstActivityTimeUtc or createdTimeUtc (the first truthy), every
 *              "Z" made "+00:00", fromisoformat; anything unusable -> now
 *   descr.     properties.description when a string; null/absent -> none; other types -> -1
 *   tags       labelName of every object in properties.labels with a truthy labelName
 *              (non-string labelName -> -1; labels not a list -> no tags)
 *   rule ref   last "/" segment of properties.relatedAnalyticRuleIds[0]
 *   pass 1     top-level "Entities" list; per object entity, Type|type lowercased:
 *              ip: Address|address; account: Name|name [+ "@" UPNSuffix|upnSuffix];
 *              host: HostName|hostName [+ "." DnsDomain|dnsDomain] as domain; url: Url|url;
 *              filehash: Value|value typed by Algorithm|algorithm upper-cased (SHA256 SHA1
 *              MD5; ASCII case folding)
 *              Items that are not objects and values that are not strings are skipped.
 */
#include "source.h"
#include "isotime.h"
#include "util.h"

#include <string.h>
#include <strings.h>

static int sentinel_validate(const json_t *payload)
{
    const json_t *props = json_object_get(payload, "properties");
    if (!json_is_object(props))
        return 0;
    return py_truthy(json_object_get(props, "title")) ||
           py_truthy(json_object_get(props, "severity"));
}

static const char *sentinel_severity(const json_t *props)
{
    static const char *const same[] = {"High", "Medium", "Low", "Informational"};
    const json_t *v = json_object_get(props, "severity");
    if (!v)
        return "Informational";
    const char *s = json_string_value(v);
    if (!s)
        return "Pending";
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (!strcmp(s, same[i]))
            return same[i];
    return !strcmp(s, "None") ? "Informational" : "Pending";
}

static int sentinel_tags(const json_t *props, json_t *tags)
{
    const json_t *labels = json_object_get(props, "labels");
    size_t i;
    const json_t *l;
    if (!json_is_array(labels))
        return 0;
    json_array_foreach(labels, i, l)
    {
        const json_t *name = json_object_get(l, "labelName");
        if (!json_is_object(l) || !py_truthy(name))
            continue;
        if (!json_is_string(name))
            return -1;
        json_array_append_new(tags, json_string(json_string_value(name)));
    }
    return 0;
}

static char *sentinel_rule_ref(const json_t *props)
{
    const char *id =
        json_string_value(json_array_get(json_object_get(props, "relatedAnalyticRuleIds"), 0));
    if (!id)
        return NULL;
    const char *slash = strrchr(id, '/');
    const char *last = slash ? slash + 1 : id;
    return *last ? xstrdup(last) : NULL;
}

static int sentinel_normalize(const json_t *payload, struct normalized_alert *out)
{
    normalized_alert_init(out);
    const json_t *props = json_object_get(payload, "properties");
    const json_t *empty = NULL;
    if (!props)
        props = empty = json_object();
    if (!json_is_object(props))
        goto fail;

    const json_t *title = json_object_get(props, "title");
    if (title && !json_is_string(title))
        goto fail;
    out->title = xstrdup(title ? json_string_value(title) : "Untitled Sentinel Incident");
    out->severity = xstrdup(sentinel_severity(props));

    const json_t *ts = py_or(json_object_get(props, "firstActivityTimeUtc"),
                             json_object_get(props, "createdTimeUtc"));
    if (isotime_parse_zfix(json_string_value(ts), &out->occurred_at_us) != 0)
        normalized_alert_now(out);

    const json_t *desc = json_object_get(props, "description");
    if (desc && !json_is_null(desc) && !json_is_string(desc))
        goto fail;
    out->description = json_strdup_or_null(desc);

    if (sentinel_tags(props, out->tags) != 0)
        goto fail;
    out->source_rule_ref = sentinel_rule_ref(props);
    json_decref((json_t *)empty);
    return 0;
fail:
    json_decref((json_t *)empty);
    normalized_alert_destroy(out);
    return -1;
}

/* entity[upper] or entity[lower], Python `a or b`; the string value or NULL. */
static const char *field2(const json_t *e, const char *upper, const char *lower)
{
    return json_string_value(py_or(json_object_get(e, upper), json_object_get(e, lower)));
}

static void add_joined(struct indicator_set *out, const char *type, const char *a, char sep,
                       const char *b)
{
    if (!a || !*a)
        return;
    if (!b || !*b) {
        indicator_set_add(out, type, a, strlen(a));
        return;
    }
    char *v = xasprintf("%s%c%s", a, sep, b);
    indicator_set_add(out, type, v, strlen(v));
    free(v);
}

static void sentinel_entity(const json_t *e, struct indicator_set *out)
{
    char type[16];
    if (!json_lower(py_or(json_object_get(e, "Type"), json_object_get(e, "type")), type,
                    sizeof type))
        return;
    if (!strcmp(type, "ip")) {
        add_joined(out, "ip", field2(e, "Address", "address"), 0, NULL);
    } else if (!strcmp(type, "account")) {
        add_joined(out, "account", field2(e, "Name", "name"), '@',
                   field2(e, "UPNSuffix", "upnSuffix"));
    } else if (!strcmp(type, "host")) {
        add_joined(out, "domain", field2(e, "HostName", "hostName"), '.',
                   field2(e, "DnsDomain", "dnsDomain"));
    } else if (!strcmp(type, "url")) {
        add_joined(out, "url", field2(e, "Url", "url"), 0, NULL);
    } else if (!strcmp(type, "filehash")) {
        const char *alg = field2(e, "Algorithm", "algorithm");
        const char *t = !alg                         ? NULL
                        : !strcasecmp(alg, "SHA256") ? "hash_sha256"
                        : !strcasecmp(alg, "SHA1")   ? "hash_sha1"
                        : !strcasecmp(alg, "MD5")    ? "hash_md5"
                                                     : NULL;
        if (t)
            add_joined(out, t, field2(e, "Value", "value"), 0, NULL);
    }
}

static void sentinel_extract(const json_t *payload, struct indicator_set *out)
{
    const json_t *entities = json_object_get(payload, "Entities");
    size_t i;
    const json_t *e;
    if (!json_is_array(entities))
        return;
    json_array_foreach(entities, i, e)
    {
        if (json_is_object(e))
            sentinel_entity(e, out);
    }
}

/* ---- the same over a token index (see source.h): keep in step with the functions above ---- */

static int sentinel_validate_tok(const struct jtok_doc *d)
{
    uint32_t props = jtok_get(d, 0, "properties");
    if (jtok_type(d, props) != JT_OBJECT)
        return 0;
    return jtok_truthy(d, jtok_get(d, props, "title")) ||
           jtok_truthy(d, jtok_get(d, props, "severity"));
}

static const char *sentinel_severity_tok(const struct jtok_doc *d, uint32_t props)
{
    static const char *const same[] = {"High", "Medium", "Low", "Informational"};
    uint32_t v = jtok_get(d, props, "severity");
    if (v == JTOK_NONE)
        return "Informational";
    if (jtok_type(d, v) != JT_STRING)
        return "Pending";
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (jtok_streq(d, v, same[i]))
            return same[i];
    return jtok_streq(d, v, "None") ? "Informational" : "Pending";
}

static int sentinel_tags_tok(const struct jtok_doc *d, uint32_t props, struct normalized_alert *a)
{
    uint32_t labels = jtok_get(d, props, "labels");
    if (jtok_type(d, labels) != JT_ARRAY)
        return 0;
    for (uint32_t l = jtok_first(d, labels); l != JTOK_NONE; l = jtok_next(d, l)) {
        uint32_t name = jtok_get(d, l, "labelName");
        if (jtok_type(d, l) != JT_OBJECT || !jtok_truthy(d, name))
            continue;
        if (jtok_type(d, name) != JT_STRING)
            return -1;
        jtok_add_tag(d, name, a);
    }
    return 0;
}

static char *sentinel_rule_ref_tok(const struct jtok_doc *d, uint32_t props)
{
    size_t n;
    const char *id =
        jtok_str(d, jtok_index(d, jtok_get(d, props, "relatedAnalyticRuleIds"), 0), &n);
    if (!id)
        return NULL;
    size_t from = n;
    while (from > 0 && id[from - 1] != '/')
        from--;
    return from < n ? xstrndup(id + from, n - from) : NULL;
}

static int sentinel_normalize_tok(const struct jtok_doc *d, struct normalized_alert *out)
{
    normalized_alert_init(out);
    /* absent: every lookup below finds nothing, as in an empty object */
    uint32_t props = jtok_get(d, 0, "properties");
    if (props != JTOK_NONE && jtok_type(d, props) != JT_OBJECT)
        goto fail;

    uint32_t title = jtok_get(d, props, "title");
    if (title != JTOK_NONE && jtok_type(d, title) != JT_STRING)
        goto fail;
    out->title = title != JTOK_NONE ? jtok_strdup(d, title) : xstrdup("Untitled Sentinel Incident");
    out->severity = xstrdup(sentinel_severity_tok(d, props));

    uint32_t ts = jtok_or(d, jtok_get(d, props, "firstActivityTimeUtc"),
                          jtok_get(d, props, "createdTimeUtc"));
    if (jtok_isotime_zfix(d, ts, &out->occurred_at_us) != 0)
        normalized_alert_now(out);

    uint32_t desc = jtok_get(d, props, "description");
    enum jtok_type dt = jtok_type(d, desc);
    if (dt != JT_NONE && dt != JT_NULL && dt != JT_STRING)
        goto fail;
    out->description = jtok_strdup(d, desc);

    if (sentinel_tags_tok(d, props, out) != 0)
        goto fail;
    out->source_rule_ref = sentinel_rule_ref_tok(d, props);
    return 0;
fail:
    normalized_alert_destroy(out);
    return -1;
}

/* entity[upper] or entity[lower], Python `a or b`; the string's text or NULL. */
static const char *field2_tok(const struct jtok_doc *d, uint32_t e, const char *upper,
                              const char *lower, size_t *n)
{
    return jtok_str(d, jtok_or(d, jtok_get(d, e, upper), jtok_get(d, e, lower)), n);
}

static void add_joined_tok(struct indicator_set *out, const char *type, const char *a, size_t an,
                           char sep, const char *b, size_t bn)
{
    if (!a || !an)
        return;
    if (!b || !bn) {
        indicator_set_add(out, type, a, an);
        return;
    }
    char small[512];
    size_t n = an + 1 + bn;
    char *v = n <= sizeof small ? small : xmalloc(n);
    memcpy(v, a, an);
    v[an] = sep;
    memcpy(v + an + 1, b, bn);
    indicator_set_add(out, type, v, n);
    if (v != small)
        free(v);
}

static void sentinel_entity_tok(const struct jtok_doc *d, uint32_t e, struct indicator_set *out)
{
    char type[16];
    size_t an = 0, bn = 0;
    const char *a, *b;
    if (!jtok_lower(d, jtok_or(d, jtok_get(d, e, "Type"), jtok_get(d, e, "type")), type,
                    sizeof type))
        return;
    if (!strcmp(type, "ip")) {
        a = field2_tok(d, e, "Address", "address", &an);
        add_joined_tok(out, "ip", a, an, 0, NULL, 0);
    } else if (!strcmp(type, "account")) {
        a = field2_tok(d, e, "Name", "name", &an);
        b = field2_tok(d, e, "UPNSuffix", "upnSuffix", &bn);
        add_joined_tok(out, "account", a, an, '@', b, bn);
    } else if (!strcmp(type, "host")) {
        a = field2_tok(d, e, "HostName", "hostName", &an);
        b = field2_tok(d, e, "DnsDomain", "dnsDomain", &bn);
        add_joined_tok(out, "domain", a, an, '.', b, bn);
    } else if (!strcmp(type, "url")) {
        a = field2_tok(d, e, "Url", "url", &an);
        add_joined_tok(out, "url", a, an, 0, NULL, 0);
    } else if (!strcmp(type, "filehash")) {
        size_t n;
        const char *alg = field2_tok(d, e, "Algorithm", "algorithm", &n);
        const char *t = !alg                                      ? NULL
                        : n == 6 && !strncasecmp(alg, "SHA256", 6) ? "hash_sha256"
                        : n == 4 && !strncasecmp(alg, "SHA1", 4)   ? "hash_sha1"
                        : n == 3 && !strncasecmp(alg, "MD5", 3)    ? "hash_md5"
                                                                  : NULL;
        if (t) {
            a = field2_tok(d, e, "Value", "value", &an);
            add_joined_tok(out, t, a, an, 0, NULL, 0);
        }
    }
}

static void sentinel_extract_tok(const struct jtok_doc *d, struct indicator_set *out)
{
    uint32_t entities = jtok_get(d, 0, "Entities");
    if (jtok_type(d, entities) != JT_ARRAY)
        return;
    for (uint32_t e = jtok_first(d, entities); e != JTOK_NONE; e = jtok_next(d, e))
        if (jtok_type(d, e) == JT_OBJECT)
            sentinel_entity_tok(d, e, out);
}

const struct alert_source source_sentinel = {
    .name = "sentinel",
    .validate = sentinel_validate,
    .normalize = sentinel_normalize,
    .extract = sentinel_extract,
    .validate_tok = sentinel_validate_tok,
    .normalize_tok = sentinel_normalize_tok,
    .extract_tok = sentinel_extract_tok,
};
