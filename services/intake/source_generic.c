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

static const char *generic_severity(const json_t *raw)
{
    static const char *const names[][2] = {
        {"critical", "Critical"}, {"high", "High"},          {"medium", "Medium"},
        {"low", "Low"},           {"info", "Informational"}, {"informational", "Informational"},
        {"pending", "Pending"},
    };
    const json_t *v = json_object_get(raw, "severity");
    if (!v || !json_is_string(v))
        return "Pending"; /* str() of a non-string never spells a level */
    char low[16];
    json_lower(v, low, sizeof low);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(low, names[i][0]))
            return names[i][1];
    return "Pending";
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

static void generic_extract(const json_t *payload, struct indicator_set *out)
{
    static const char *const fields[][2] = {
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
    if (!json_is_object(payload))
        return;
    explicit_indicators(json_object_get(payload, "indicators"), out);
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        indicator_set_add_json(out, fields[i][1], json_object_get(payload, fields[i][0]));
}

const struct alert_source source_generic = {
    .name = "generic",
    .validate = generic_validate,
    .normalize = generic_normalize,
    .extract = generic_extract,
};
