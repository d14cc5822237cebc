/*
 * source_splunk.c - Splunk alert-action webhooks, normalised as the original does.
 *
 * The fields live in the "result" object except search_name and sid, which are top-level.
 *
 *   validate   "result" is an object and top-level search_name or sid is truthy
 *   title      result.rule_name or result.signature or search_name or "Untitled Splunk Alert";
 *              a truthy non-string is refused (-1), as pydantic does
 *   severity   result.urgency or result.severity or "low", lowercased: critical high medium low
 *              informational, info -> Informational; anything else -> Pending
 *   occurred   result._time (when truthy) read by float() as epoch seconds, UTC; ISO strings
 *              and anything else unusable -> now
 *   descr.     result.signature or result.search_name; when that equals the title and
 *              result._raw is truthy: _raw. Non-strings are refused (-1).
 *   tags       none
 *   rule ref   result.rule_name or top-level search_name (non-empty strings)
 *   pass 1     ip: src_ip dest_ip, and src / dest when src_ip / dest_ip are not truthy;
 *              account: user; hash_sha256 sha256, hash_md5 md5, hash_sha1 sha1; url; domain
 */
#include "source.h"
#include "isotime.h"
#include "util.h"

#include <string.h>

static const char *const SEVERITY_NAMES[][2] = {
    {"critical", "Critical"},
    {"high", "High"},
    {"medium", "Medium"},
    {"low", "Low"},
    {"informational", "Informational"},
    {"info", "Informational"},
};

static const char *severity_named(const char *low)
{
    for (size_t i = 0; i < sizeof SEVERITY_NAMES / sizeof *SEVERITY_NAMES; i++)
        if (!strcmp(low, SEVERITY_NAMES[i][0]))
            return SEVERITY_NAMES[i][1];
    return "Pending";
}

/* Pass 1: result members read as they are, and the type of their indicators. */
static const char *const PLAIN_FIELDS[][2] = {
    {"user", "account"}, {"sha256", "hash_sha256"}, {"md5", "hash_md5"}, {"sha1", "hash_sha1"},
    {"url", "url"},      {"domain", "domain"},
};

static int splunk_validate(const struct jtok_doc *d, uint32_t root)
{
    if (jtok_type(d, jtok_get(d, root, "result")) != JT_OBJECT)
        return 0;
    return jtok_truthy(d, jtok_get(d, root, "search_name")) ||
           jtok_truthy(d, jtok_get(d, root, "sid"));
}

static const char *splunk_severity(const struct jtok_doc *d, uint32_t r)
{
    uint32_t v = jtok_or(d, jtok_get(d, r, "urgency"), jtok_get(d, r, "severity"));
    char low[16];
    if (v == JTOK_NONE)
        return "Low";
    if (!jtok_lower(d, v, low, sizeof low))
        return "Pending";
    return severity_named(low);
}

static int splunk_time(const struct jtok_doc *d, uint32_t r, int64_t *out_us)
{
    uint32_t t = jtok_get(d, r, "_time");
    if (!jtok_truthy(d, t))
        return -1;
    enum jtok_type type = jtok_type(d, t);
    if (type == JT_NUMBER) {
        json_t *v = jtok_json(d, t);
        int rc = isotime_from_epoch(json_number_value(v), out_us);
        json_decref(v);
        return rc;
    }
    if (type == JT_TRUE)
        return isotime_from_epoch(1.0, out_us); /* float(True) */
    char *text = jtok_strdup(d, t);
    int rc = isotime_from_epoch_text(text, out_us);
    free(text);
    return rc;
}

static int splunk_description(const struct jtok_doc *d, uint32_t r, struct normalized_alert *out)
{
    uint32_t v = jtok_or(d, jtok_get(d, r, "signature"), jtok_get(d, r, "search_name"));
    uint32_t raw = jtok_get(d, r, "_raw");
    if (jtok_streq(d, v, out->title) && jtok_truthy(d, raw))
        v = raw;
    if (v != JTOK_NONE && jtok_type(d, v) != JT_STRING)
        return -1;
    out->description = jtok_strdup(d, v);
    return 0;
}

static int splunk_normalize(const struct jtok_doc *d, uint32_t root,
                             struct normalized_alert *out)
{
    normalized_alert_init(out);
    /* absent: every lookup below finds nothing, as in an empty object */
    uint32_t r = jtok_get(d, root, "result");
    if ((r != JTOK_NONE && jtok_type(d, r) != JT_OBJECT) || jtok_type(d, root) != JT_OBJECT)
        goto fail;
    uint32_t search = jtok_get(d, root, "search_name");
    uint32_t title =
        jtok_or(d, jtok_or(d, jtok_get(d, r, "rule_name"), jtok_get(d, r, "signature")), search);
    if (title != JTOK_NONE && jtok_type(d, title) != JT_STRING)
        goto fail;
    out->title = title != JTOK_NONE ? jtok_strdup(d, title) : xstrdup("Untitled Splunk Alert");
    out->severity = xstrdup(splunk_severity(d, r));
    if (splunk_time(d, r, &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    if (splunk_description(d, r, out) != 0)
        goto fail;
    uint32_t ref = jtok_or(d, jtok_get(d, r, "rule_name"), search);
    out->source_rule_ref = jtok_strdup(d, ref);
    return 0;
fail:
    normalized_alert_destroy(out);
    return -1;
}

static void splunk_extract(const struct jtok_doc *d, uint32_t root, struct indicator_set *out)
{
    uint32_t r = jtok_get(d, root, "result");
    if (jtok_type(d, r) != JT_OBJECT)
        return;
    jtok_add_indicator(d, jtok_or(d, jtok_get(d, r, "src_ip"), jtok_get(d, r, "src")), out, "ip");
    jtok_add_indicator(d, jtok_or(d, jtok_get(d, r, "dest_ip"), jtok_get(d, r, "dest")), out, "ip");
    for (size_t i = 0; i < sizeof PLAIN_FIELDS / sizeof *PLAIN_FIELDS; i++)
        jtok_add_indicator(d, jtok_get(d, r, PLAIN_FIELDS[i][0]), out, PLAIN_FIELDS[i][1]);
}

const struct alert_source source_splunk = {
    .name = "splunk",
    .validate = splunk_validate,
    .normalize = splunk_normalize,
    .extract = splunk_extract,
};
