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

static int sentinel_validate(const struct jtok_doc *d, uint32_t root)
{
    uint32_t props = jtok_get(d, root, "properties");
    if (jtok_type(d, props) != JT_OBJECT)
        return 0;
    return jtok_truthy(d, jtok_get(d, props, "title")) ||
           jtok_truthy(d, jtok_get(d, props, "severity"));
}

static const char *sentinel_severity(const struct jtok_doc *d, uint32_t props)
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

static int sentinel_tags(const struct jtok_doc *d, uint32_t props, struct normalized_alert *a)
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

static char *sentinel_rule_ref(const struct jtok_doc *d, uint32_t props)
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

static int sentinel_normalize(const struct jtok_doc *d, uint32_t root,
                               struct normalized_alert *out)
{
    normalized_alert_init(out);
    /* absent: every lookup below finds nothing, as in an empty object */
    uint32_t props = jtok_get(d, root, "properties");
    if (props != JTOK_NONE && jtok_type(d, props) != JT_OBJECT)
        goto fail;

    uint32_t title = jtok_get(d, props, "title");
    if (title != JTOK_NONE && jtok_type(d, title) != JT_STRING)
        goto fail;
    out->title = title != JTOK_NONE ? jtok_strdup(d, title) : xstrdup("Untitled Sentinel Incident");
    out->severity = xstrdup(sentinel_severity(d, props));

    uint32_t ts = jtok_or(d, jtok_get(d, props, "firstActivityTimeUtc"),
                          jtok_get(d, props, "createdTimeUtc"));
    if (jtok_isotime_zfix(d, ts, &out->occurred_at_us) != 0)
        normalized_alert_now(out);

    uint32_t desc = jtok_get(d, props, "description");
    enum jtok_type dt = jtok_type(d, desc);
    if (dt != JT_NONE && dt != JT_NULL && dt != JT_STRING)
        goto fail;
    out->description = jtok_strdup(d, desc);

    if (sentinel_tags(d, props, out) != 0)
        goto fail;
    out->source_rule_ref = sentinel_rule_ref(d, props);
    return 0;
fail:
    normalized_alert_destroy(out);
    return -1;
}

/* entity[upper] or entity[lower], Python `a or b`; the string's text or NULL. */
static const char *field2(const struct jtok_doc *d, uint32_t e, const char *upper,
                              const char *lower, size_t *n)
{
    return jtok_str(d, jtok_or(d, jtok_get(d, e, upper), jtok_get(d, e, lower)), n);
}

static void add_joined(struct indicator_set *out, const char *type, const char *a, size_t an,
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

static void sentinel_entity(const struct jtok_doc *d, uint32_t e, struct indicator_set *out)
{
    char type[16];
    size_t an = 0, bn = 0;
    const char *a, *b;
    if (!jtok_lower(d, jtok_or(d, jtok_get(d, e, "Type"), jtok_get(d, e, "type")), type,
                    sizeof type))
        return;
    if (!strcmp(type, "ip")) {
        a = field2(d, e, "Address", "address", &an);
        add_joined(out, "ip", a, an, 0, NULL, 0);
    } else if (!strcmp(type, "account")) {
        a = field2(d, e, "Name", "name", &an);
        b = field2(d, e, "UPNSuffix", "upnSuffix", &bn);
        add_joined(out, "account", a, an, '@', b, bn);
    } else if (!strcmp(type, "host")) {
        a = field2(d, e, "HostName", "hostName", &an);
        b = field2(d, e, "DnsDomain", "dnsDomain", &bn);
        add_joined(out, "domain", a, an, '.', b, bn);
    } else if (!strcmp(type, "url")) {
        a = field2(d, e, "Url", "url", &an);
        add_joined(out, "url", a, an, 0, NULL, 0);
    } else if (!strcmp(type, "filehash")) {
        size_t n;
        const char *alg = field2(d, e, "Algorithm", "algorithm", &n);
        const char *t = !alg                                      ? NULL
                        : n == 6 && !strncasecmp(alg, "SHA256", 6) ? "hash_sha256"
                        : n == 4 && !strncasecmp(alg, "SHA1", 4)   ? "hash_sha1"
                        : n == 3 && !strncasecmp(alg, "MD5", 3)    ? "hash_md5"
                                                                  : NULL;
        if (t) {
            a = field2(d, e, "Value", "value", &an);
            add_joined(out, t, a, an, 0, NULL, 0);
        }
    }
}

static void sentinel_extract(const struct jtok_doc *d, uint32_t root, struct indicator_set *out)
{
    uint32_t entities = jtok_get(d, root, "Entities");
    if (jtok_type(d, entities) != JT_ARRAY)
        return;
    for (uint32_t e = jtok_first(d, entities); e != JTOK_NONE; e = jtok_next(d, e))
        if (jtok_type(d, e) == JT_OBJECT)
            sentinel_entity(d, e, out);
}

const struct alert_source source_sentinel = {
    .name = "sentinel",
    .validate = sentinel_validate,
    .normalize = sentinel_normalize,
    .extract = sentinel_extract,
};
