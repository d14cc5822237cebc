/*
 * source_elastic.c - Elastic Security alerts, normalised as the original does.
 *
 * Every field is read with get(path): the flat dotted key first (raw["kibana.alert.rule.name"],
 * as Kibana sends them), then the nested objects; the first non-null wins.
 *
 *   validate   kibana.alert.rule.name or kibana.alert.rule.uuid truthy
 *   title      str(rule.name or kibana.alert.reason or "Untitled Elastic Alert")
 *   severity   kibana.alert.severity or kibana.alert.rule.severity, lowercased:
 *              critical high medium low informational; anything else or absent -> Pending
 *   occurred   kibana.alert.start or @timestamp, every "Z" made "+00:00", fromisoformat; -> now
 *   descr.     rule.description or reason; when that equals the title: reason or none.
 *              A truthy non-string description is refused (-1), as pydantic does.
 *   tags       kibana.alert.rule.tags when a list: str() of every truthy item
 *   rule ref   kibana.alert.rule.uuid (non-empty string)
 *   pass 1     ip: source.ip destination.ip host.ip threat.indicator.ip (string or list of
 *              strings); domain: destination.domain dns.question.name url.domain
 *              threat.indicator.domain; url: url.full; hash_sha256: process.hash.sha256
 *              file.hash.sha256 threat.indicator.file.hash.sha256; hash_sha1 and hash_md5:
 *              process.hash.* file.hash.*; email: user.email; account: user.name
 */
#include "source.h"
#include "isotime.h"
#include "util.h"

#include <string.h>

/* Pass 1: the paths read, the type of their indicators, and whether a list of strings counts. */
static const struct {
    const char *path, *type;
    int list_ok;
} FIELDS[] = {
    {"source.ip", "ip", 1},
    {"destination.ip", "ip", 1},
    {"host.ip", "ip", 1},
    {"threat.indicator.ip", "ip", 1},
    {"destination.domain", "domain", 0},
    {"dns.question.name", "domain", 0},
    {"url.domain", "domain", 0},
    {"threat.indicator.domain", "domain", 0},
    {"url.full", "url", 0},
    {"process.hash.sha256", "hash_sha256", 0},
    {"file.hash.sha256", "hash_sha256", 0},
    {"threat.indicator.file.hash.sha256", "hash_sha256", 0},
    {"process.hash.sha1", "hash_sha1", 0},
    {"file.hash.sha1", "hash_sha1", 0},
    {"process.hash.md5", "hash_md5", 0},
    {"file.hash.md5", "hash_md5", 0},
    {"user.email", "email", 0},
    {"user.name", "account", 0},
};

/* The nested value at a dotted path from root, or JTOK_NONE. */
static uint32_t nested(const struct jtok_doc *d, uint32_t root, const char *path)
{
    uint32_t cur = root;
    for (const char *seg = path;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        cur = jtok_getn(d, cur, seg, n); /* JTOK_NONE when cur is no object */
        if (cur == JTOK_NONE || !dot)
            return cur;
        seg = dot + 1;
    }
}

/* The original's _get(): flat key, then nested; null counts as missing. */
static uint32_t get(const struct jtok_doc *d, uint32_t root, const char *path)
{
    uint32_t v = jtok_get(d, root, path);
    if (v != JTOK_NONE && jtok_type(d, v) != JT_NULL)
        return v;
    v = nested(d, root, path);
    return v != JTOK_NONE && jtok_type(d, v) != JT_NULL ? v : JTOK_NONE;
}

static int elastic_validate(const struct jtok_doc *d, uint32_t root)
{
    return jtok_truthy(d, get(d, root, "kibana.alert.rule.name")) ||
           jtok_truthy(d, get(d, root, "kibana.alert.rule.uuid"));
}

static const char *elastic_severity(const struct jtok_doc *d, uint32_t root)
{
    static const char *const names[][2] = {
        {"critical", "Critical"},           {"high", "High"}, {"medium", "Medium"}, {"low", "Low"},
        {"informational", "Informational"},
    };
    char low[16];
    if (!jtok_lower(d,
                    jtok_or(d, get(d, root, "kibana.alert.severity"),
                            get(d, root, "kibana.alert.rule.severity")),
                    low, sizeof low))
        return "Pending";
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(low, names[i][0]))
            return names[i][1];
    return "Pending";
}

static int elastic_description(const struct jtok_doc *d, uint32_t root,
                               struct normalized_alert *out)
{
    uint32_t reason = get(d, root, "kibana.alert.reason");
    uint32_t v = jtok_or(d, get(d, root, "kibana.alert.rule.description"), reason);
    if (jtok_streq(d, v, out->title))
        v = jtok_truthy(d, reason) ? reason : JTOK_NONE;
    if (v != JTOK_NONE && jtok_type(d, v) != JT_STRING)
        return -1;
    out->description = jtok_strdup(d, v);
    return 0;
}

static void elastic_tags(const struct jtok_doc *d, uint32_t root, struct normalized_alert *out)
{
    uint32_t list = get(d, root, "kibana.alert.rule.tags");
    if (jtok_type(d, list) != JT_ARRAY)
        return;
    for (uint32_t t = jtok_first(d, list); t != JTOK_NONE; t = jtok_next(d, t)) {
        if (!jtok_truthy(d, t))
            continue;
        if (jtok_type(d, t) == JT_STRING) {
            jtok_add_tag(d, t, out);
        } else {
            char *s = jtok_py_str(d, t);
            json_array_append_new(out->tags, json_string(s));
            free(s);
        }
    }
}

static int elastic_normalize(const struct jtok_doc *d, uint32_t root,
                              struct normalized_alert *out)
{
    normalized_alert_init(out);
    if (jtok_type(d, root) != JT_OBJECT)
        goto fail;
    uint32_t title =
        jtok_or(d, get(d, root, "kibana.alert.rule.name"), get(d, root, "kibana.alert.reason"));
    out->title = title != JTOK_NONE ? jtok_py_str(d, title) : xstrdup("Untitled Elastic Alert");
    out->severity = xstrdup(elastic_severity(d, root));
    uint32_t ts = jtok_or(d, get(d, root, "kibana.alert.start"), get(d, root, "@timestamp"));
    if (jtok_isotime_zfix(d, ts, &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    if (elastic_description(d, root, out) != 0)
        goto fail;
    elastic_tags(d, root, out);
    uint32_t uuid = get(d, root, "kibana.alert.rule.uuid");
    size_t n;
    if (jtok_str(d, uuid, &n) && n)
        out->source_rule_ref = jtok_strdup(d, uuid);
    return 0;
fail:
    normalized_alert_destroy(out);
    return -1;
}

static void elastic_extract(const struct jtok_doc *d, uint32_t root, struct indicator_set *out)
{
    if (jtok_type(d, root) != JT_OBJECT)
        return;
    for (size_t i = 0; i < sizeof FIELDS / sizeof *FIELDS; i++) {
        uint32_t v = get(d, root, FIELDS[i].path);
        if (FIELDS[i].list_ok && jtok_type(d, v) == JT_ARRAY) {
            for (uint32_t x = jtok_first(d, v); x != JTOK_NONE; x = jtok_next(d, x))
                jtok_add_indicator(d, x, out, FIELDS[i].type);
        } else {
            jtok_add_indicator(d, v, out, FIELDS[i].type);
        }
    }
}

const struct alert_source source_elastic = {
    .name = "elastic",
    .validate = elastic_validate,
    .normalize = elastic_normalize,
    .extract = elastic_extract,
};
