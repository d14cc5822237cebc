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
    if (!json_is_object(payload))
        return;
    for (size_t i = 0; i < sizeof FIELDS / sizeof *FIELDS; i++)
        add_path(payload, out, FIELDS[i].type, FIELDS[i].path, FIELDS[i].list_ok);
}

/* ---- the same over a token index (see source.h): keep in step with the functions above ---- */

static uint32_t nested_tok(const struct jtok_doc *d, uint32_t root, const char *path)
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

static uint32_t get_tok(const struct jtok_doc *d, const char *path)
{
    uint32_t v = jtok_get(d, 0, path);
    if (v != JTOK_NONE && jtok_type(d, v) != JT_NULL)
        return v;
    v = nested_tok(d, 0, path);
    return v != JTOK_NONE && jtok_type(d, v) != JT_NULL ? v : JTOK_NONE;
}

static int elastic_validate_tok(const struct jtok_doc *d)
{
    return jtok_truthy(d, get_tok(d, "kibana.alert.rule.name")) ||
           jtok_truthy(d, get_tok(d, "kibana.alert.rule.uuid"));
}

static const char *elastic_severity_tok(const struct jtok_doc *d)
{
    static const char *const names[][2] = {
        {"critical", "Critical"},           {"high", "High"}, {"medium", "Medium"}, {"low", "Low"},
        {"informational", "Informational"},
    };
    char low[16];
    if (!jtok_lower(d,
                    jtok_or(d, get_tok(d, "kibana.alert.severity"),
                            get_tok(d, "kibana.alert.rule.severity")),
                    low, sizeof low))
        return "Pending";
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(low, names[i][0]))
            return names[i][1];
    return "Pending";
}

static int elastic_description_tok(const struct jtok_doc *d, struct normalized_alert *out)
{
    uint32_t reason = get_tok(d, "kibana.alert.reason");
    uint32_t v = jtok_or(d, get_tok(d, "kibana.alert.rule.description"), reason);
    if (jtok_streq(d, v, out->title))
        v = jtok_truthy(d, reason) ? reason : JTOK_NONE;
    if (v != JTOK_NONE && jtok_type(d, v) != JT_STRING)
        return -1;
    out->description = jtok_strdup(d, v);
    return 0;
}

static void elastic_tags_tok(const struct jtok_doc *d, struct normalized_alert *out)
{
    uint32_t list = get_tok(d, "kibana.alert.rule.tags");
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

static int elastic_normalize_tok(const struct jtok_doc *d, struct normalized_alert *out)
{
    normalized_alert_init(out);
    if (jtok_type(d, 0) != JT_OBJECT)
        goto fail;
    uint32_t title =
        jtok_or(d, get_tok(d, "kibana.alert.rule.name"), get_tok(d, "kibana.alert.reason"));
    out->title = title != JTOK_NONE ? jtok_py_str(d, title) : xstrdup("Untitled Elastic Alert");
    out->severity = xstrdup(elastic_severity_tok(d));
    uint32_t ts = jtok_or(d, get_tok(d, "kibana.alert.start"), get_tok(d, "@timestamp"));
    if (jtok_isotime_zfix(d, ts, &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    if (elastic_description_tok(d, out) != 0)
        goto fail;
    elastic_tags_tok(d, out);
    uint32_t uuid = get_tok(d, "kibana.alert.rule.uuid");
    size_t n;
    if (jtok_str(d, uuid, &n) && n)
        out->source_rule_ref = jtok_strdup(d, uuid);
    return 0;
fail:
    normalized_alert_destroy(out);
    return -1;
}

static void elastic_extract_tok(const struct jtok_doc *d, struct indicator_set *out)
{
    if (jtok_type(d, 0) != JT_OBJECT)
        return;
    for (size_t i = 0; i < sizeof FIELDS / sizeof *FIELDS; i++) {
        uint32_t v = get_tok(d, FIELDS[i].path);
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
    .validate_tok = elastic_validate_tok,
    .normalize_tok = elastic_normalize_tok,
    .extract_tok = elastic_extract_tok,
};
