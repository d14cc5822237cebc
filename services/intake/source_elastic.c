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

/* The nested value at a dotted path, or NULL. */
static const json_t *nested(const json_t *root, const char *path)
{
    const json_t *cur = root;
    for (const char *seg = path;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        if (!json_is_object(cur))
            return NULL;
        cur = json_object_getn(cur, seg, n);
        if (!cur || !dot)
            return cur;
        seg = dot + 1;
    }
}

/* The original's _get(): flat key, then nested; null counts as missing. */
static const json_t *get(const json_t *raw, const char *path)
{
    const json_t *v = json_object_get(raw, path);
    if (v && !json_is_null(v))
        return v;
    v = nested(raw, path);
    return v && !json_is_null(v) ? v : NULL;
}

static int elastic_validate(const json_t *payload)
{
    return py_truthy(get(payload, "kibana.alert.rule.name")) ||
           py_truthy(get(payload, "kibana.alert.rule.uuid"));
}

static const char *elastic_severity(const json_t *raw)
{
    static const char *const names[][2] = {
        {"critical", "Critical"},           {"high", "High"}, {"medium", "Medium"}, {"low", "Low"},
        {"informational", "Informational"},
    };
    char low[16];
    if (!json_lower(
            py_or(get(raw, "kibana.alert.severity"), get(raw, "kibana.alert.rule.severity")), low,
            sizeof low))
        return "Pending";
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(low, names[i][0]))
            return names[i][1];
    return "Pending";
}

static int elastic_description(const json_t *raw, struct normalized_alert *out)
{
    const json_t *reason = get(raw, "kibana.alert.reason");
    const json_t *d = py_or(get(raw, "kibana.alert.rule.description"), reason);
    if (json_is_string(d) && !strcmp(json_string_value(d), out->title))
        d = py_truthy(reason) ? reason : NULL;
    if (d && !json_is_string(d))
        return -1;
    out->description = json_strdup_or_null(d);
    return 0;
}

static void elastic_tags(const json_t *raw, json_t *tags)
{
    const json_t *list = get(raw, "kibana.alert.rule.tags");
    size_t i;
    const json_t *t;
    if (!json_is_array(list))
        return;
    json_array_foreach(list, i, t)
    {
        if (!py_truthy(t))
            continue;
        char *s = py_str(t);
        json_array_append_new(tags, json_string(s));
        free(s);
    }
}

static int elastic_normalize(const json_t *payload, struct normalized_alert *out)
{
    normalized_alert_init(out);
    if (!json_is_object(payload))
        goto fail;
    const json_t *title =
        py_or(get(payload, "kibana.alert.rule.name"), get(payload, "kibana.alert.reason"));
    out->title = title ? py_str(title) : xstrdup("Untitled Elastic Alert");
    out->severity = xstrdup(elastic_severity(payload));
    const json_t *ts = py_or(get(payload, "kibana.alert.start"), get(payload, "@timestamp"));
    if (isotime_parse_zfix(json_string_value(ts), &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    if (elastic_description(payload, out) != 0)
        goto fail;
    elastic_tags(payload, out->tags);
    const json_t *uuid = get(payload, "kibana.alert.rule.uuid");
    if (json_is_string(uuid) && *json_string_value(uuid))
        out->source_rule_ref = xstrdup(json_string_value(uuid));
    return 0;
fail:
    normalized_alert_destroy(out);
    return -1;
}

static void add_path(const json_t *raw, struct indicator_set *out, const char *type,
                     const char *path, int list_ok)
{
    const json_t *v = get(raw, path);
    size_t i;
    const json_t *x;
    if (list_ok && json_is_array(v)) {
        json_array_foreach(v, i, x) indicator_set_add_json(out, type, x);
    } else {
        indicator_set_add_json(out, type, v);
    }
}

static void elastic_extract(const json_t *payload, struct indicator_set *out)
{
    static const struct {
        const char *path, *type;
        int list_ok;
    } fields[] = {
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
    if (!json_is_object(payload))
        return;
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        add_path(payload, out, fields[i].type, fields[i].path, fields[i].list_ok);
}

const struct alert_source source_elastic = {
    .name = "elastic",
    .validate = elastic_validate,
    .normalize = elastic_normalize,
    .extract = elastic_extract,
};
