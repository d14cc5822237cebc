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

static int generic_validate(const struct jtok_doc *d, uint32_t root)
{
    return jtok_truthy(d, jtok_get(d, root, "title"));
}

static const char *generic_severity(const struct jtok_doc *d, uint32_t root)
{
    char low[16];
    if (!jtok_lower(d, jtok_get(d, root, "severity"), low, sizeof low))
        return "Pending"; /* str() of a non-string never spells a level */
    return severity_named(low);
}

static int generic_normalize(const struct jtok_doc *d, uint32_t root,
                              struct normalized_alert *out)
{
    normalized_alert_init(out);
    if (jtok_type(d, root) != JT_OBJECT) {
        normalized_alert_destroy(out);
        return -1;
    }
    uint32_t title = jtok_get(d, root, "title");
    out->title = title != JTOK_NONE ? jtok_py_str(d, title) : xstrdup("Untitled Alert");
    out->severity = xstrdup(generic_severity(d, root));
    if (jtok_isotime(d, jtok_get(d, root, "occurred_at"), &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    uint32_t tags = jtok_get(d, root, "tags");
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
    uint32_t ref = jtok_or(d, jtok_get(d, root, "rule_id"), jtok_get(d, root, "rule_name"));
    out->source_rule_ref = jtok_strdup(d, ref);
    return 0;
}

static void generic_extract(const struct jtok_doc *d, uint32_t root, struct indicator_set *out)
{
    if (jtok_type(d, root) != JT_OBJECT)
        return;
    uint32_t list = jtok_get(d, root, "indicators");
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
        jtok_add_indicator(d, jtok_get(d, root, FIELDS[i][0]), out, FIELDS[i][1]);
}

const struct alert_source source_generic = {
    .name = "generic",
    .validate = generic_validate,
    .normalize = generic_normalize,
    .extract = generic_extract,
};
