/*
 * source_generic.c - the generic source for anything that can send a flat JSON alert
 * (normalised as the original does).
 *
 *   validate   top-level "title" truthy
 *   title      str(title), "Untitled Alert" when the key is absent (str(null) is "None")
 *   severity   str(severity) lowercased: critical high medium low informational pending,
 *              info -> Informational; anything else or absent -> Pending
 *   occurred   occurred_at through fromisoformat (Python 3.12 takes "Z" itself); -> now
 *   descr.     always none
 *   tags       str() of every item when "tags" is a list, else none
 *   rule ref   rule_id or rule_name (non-empty strings)
 *   pass 1     "indicators": [{"type": one of the 8 types in any ASCII case, "value": string}],
 *              then ip: src_ip dest_ip source_ip destination_ip ip; domain: domain hostname;
 *              url; account: user username; email; hash_md5 md5; hash_sha1 sha1;
 *              hash_sha256 sha256 and hash
 */
#include "source.h"
#include "isotime.h"
#include "util.h"

#include <string.h>

static int generic_validate(const json_t *payload)
{
    return py_truthy(json_object_get(payload, "title"));
}

static const char *const SEVERITY_NAMES[][2] = {
    {"critical", "Critical"}, {"high", "High"},          {"medium", "Medium"},
    {"low", "Low"},           {"info", "Informational"}, {"informational", "Informational"},
    {"pending", "Pending"},
};

static const char *severity_named(const char *low)
{
    for (size_t i = 0; i < sizeof SEVERITY_NAMES / sizeof *SEVERITY_NAMES; i++)
        if (!strcmp(low, SEVERITY_NAMES[i][0]))
            return SEVERITY_NAMES[i][1];
    return "Pending";
}

static const char *generic_severity(const json_t *raw)
{
    const json_t *v = json_object_get(raw, "severity");
    if (!v || !json_is_string(v))
        return "Pending"; /* str() of a non-string never spells a level */
    char low[16];
    json_lower(v, low, sizeof low);
    return severity_named(low);
}

static int generic_normalize(const json_t *payload, struct normalized_alert *out)
{
    normalized_alert_init(out);
    if (!json_is_object(payload)) {
        normalized_alert_destroy(out);
        return -1;
    }
    const json_t *title = json_object_get(payload, "title");
    out->title = title ? py_str(title) : xstrdup("Untitled Alert");
    out->severity = xstrdup(generic_severity(payload));
    if (isotime_parse(json_string_value(json_object_get(payload, "occurred_at")),
                      &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    const json_t *tags = json_object_get(payload, "tags");
    size_t i;
    const json_t *t;
    json_array_foreach(tags, i, t)
    {
        char *s = py_str(t);
        json_array_append_new(out->tags, json_string(s));
        free(s);
    }
    const json_t *ref =
        py_or(json_object_get(payload, "rule_id"), json_object_get(payload, "rule_name"));
    if (json_is_string(ref))
        out->source_rule_ref = xstrdup(json_string_value(ref));
    return 0;
}

static void explicit_indicators(const json_t *list, struct indicator_set *out)
{
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        char type[16];
        if (!json_is_object(e) || !json_lower(json_object_get(e, "type"), type, sizeof type))
            continue;
        if (indicator_type_valid(type))
            indicator_set_add_json(out, type, json_object_get(e, "value"));
    }
}

/* Pass 1: top-level members read as they are, and the type of their indicators. */
static const char *const FIELDS[][2] = {
    {"src_ip", "ip"},
    {"dest_ip", "ip"},
    {"source_ip", "ip"},
    {"destination_ip", "ip"},
    {"ip", "ip"},
    {"domain", "domain"},
    {"hostname", "domain"},
    {"url", "url"},
    {"user", "account"},
    {"username", "account"},
    {"email", "email"},
    {"md5", "hash_md5"},
    {"sha1", "hash_sha1"},
    {"sha256", "hash_sha256"},
    {"hash", "hash_sha256"},
};

static void generic_extract(const json_t *payload, struct indicator_set *out)
{
    if (!json_is_object(payload))
        return;
    explicit_indicators(json_object_get(payload, "indicators"), out);
    for (size_t i = 0; i < sizeof FIELDS / sizeof *FIELDS; i++)
        indicator_set_add_json(out, FIELDS[i][1], json_object_get(payload, FIELDS[i][0]));
}

/* ---- the same over a token index (see source.h): keep in step with the functions above ---- */

static int generic_validate_tok(const struct jtok_doc *d)
{
    return jtok_truthy(d, jtok_get(d, 0, "title"));
}

static const char *generic_severity_tok(const struct jtok_doc *d)
{
    char low[16];
    if (!jtok_lower(d, jtok_get(d, 0, "severity"), low, sizeof low))
        return "Pending"; /* str() of a non-string never spells a level */
    return severity_named(low);
}

static int generic_normalize_tok(const struct jtok_doc *d, struct normalized_alert *out)
{
    normalized_alert_init(out);
    if (jtok_type(d, 0) != JT_OBJECT) {
        normalized_alert_destroy(out);
        return -1;
    }
    uint32_t title = jtok_get(d, 0, "title");
    out->title = title != JTOK_NONE ? jtok_py_str(d, title) : xstrdup("Untitled Alert");
    out->severity = xstrdup(generic_severity_tok(d));
    if (jtok_isotime(d, jtok_get(d, 0, "occurred_at"), &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    uint32_t tags = jtok_get(d, 0, "tags");
    if (jtok_type(d, tags) == JT_ARRAY) {
        for (uint32_t t = jtok_first(d, tags); t != JTOK_NONE; t = jtok_next(d, t)) {
            if (jtok_type(d, t) == JT_STRING) {
                jtok_add_tag(d, t, out);
                continue;
            }
            char *s = jtok_py_str(d, t);
            json_array_append_new(out->tags, json_string(s));
            free(s);
        }
    }
    uint32_t ref = jtok_or(d, jtok_get(d, 0, "rule_id"), jtok_get(d, 0, "rule_name"));
    out->source_rule_ref = jtok_strdup(d, ref);
    return 0;
}

static void generic_extract_tok(const struct jtok_doc *d, struct indicator_set *out)
{
    if (jtok_type(d, 0) != JT_OBJECT)
        return;
    uint32_t list = jtok_get(d, 0, "indicators");
    if (jtok_type(d, list) == JT_ARRAY) {
        for (uint32_t e = jtok_first(d, list); e != JTOK_NONE; e = jtok_next(d, e)) {
            char type[16];
            if (jtok_type(d, e) != JT_OBJECT ||
                !jtok_lower(d, jtok_get(d, e, "type"), type, sizeof type))
                continue;
            if (indicator_type_valid(type))
                jtok_add_indicator(d, jtok_get(d, e, "value"), out, type);
        }
    }
    for (size_t i = 0; i < sizeof FIELDS / sizeof *FIELDS; i++)
        jtok_add_indicator(d, jtok_get(d, 0, FIELDS[i][0]), out, FIELDS[i][1]);
}

const struct alert_source source_generic = {
    .name = "generic",
    .validate = generic_validate,
    .normalize = generic_normalize,
    .extract = generic_extract,
    .validate_tok = generic_validate_tok,
    .normalize_tok = generic_normalize_tok,
    .extract_tok = generic_extract_tok,
};
