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

static int splunk_validate(const json_t *payload)
{
    if (!json_is_object(json_object_get(payload, "result")))
        return 0;
    return py_truthy(json_object_get(payload, "search_name")) ||
           py_truthy(json_object_get(payload, "sid"));
}

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

static const char *splunk_severity(const json_t *r)
{
    const json_t *v = py_or(json_object_get(r, "urgency"), json_object_get(r, "severity"));
    char low[16];
    if (!v)
        return "Low";
    if (!json_lower(v, low, sizeof low))
        return "Pending";
    return severity_named(low);
}

static int splunk_time(const json_t *r, int64_t *out_us)
{
    const json_t *t = json_object_get(r, "_time");
    if (!py_truthy(t))
        return -1;
    if (json_is_number(t))
        return isotime_from_epoch(json_number_value(t), out_us);
    if (json_is_true(t))
        return isotime_from_epoch(1.0, out_us); /* float(True) */
    return isotime_from_epoch_text(json_string_value(t), out_us);
}

static int splunk_description(const json_t *r, struct normalized_alert *out)
{
    const json_t *d = py_or(json_object_get(r, "signature"), json_object_get(r, "search_name"));
    const json_t *raw = json_object_get(r, "_raw");
    if (json_is_string(d) && !strcmp(json_string_value(d), out->title) && py_truthy(raw))
        d = raw;
    if (d && !json_is_string(d))
        return -1;
    out->description = json_strdup_or_null(d);
    return 0;
}

static int splunk_normalize(const json_t *payload, struct normalized_alert *out)
{
    normalized_alert_init(out);
    const json_t *r = json_object_get(payload, "result");
    const json_t *empty = NULL;
    if (!r)
        r = empty = json_object();
    if (!json_is_object(r) || !json_is_object(payload))
        goto fail;
    const json_t *search = json_object_get(payload, "search_name");
    const json_t *title =
        py_or(py_or(json_object_get(r, "rule_name"), json_object_get(r, "signature")), search);
    if (title && !json_is_string(title))
        goto fail;
    out->title = xstrdup(title ? json_string_value(title) : "Untitled Splunk Alert");
    out->severity = xstrdup(splunk_severity(r));
    if (splunk_time(r, &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    if (splunk_description(r, out) != 0)
        goto fail;
    const json_t *ref = py_or(json_object_get(r, "rule_name"), search);
    if (json_is_string(ref))
        out->source_rule_ref = xstrdup(json_string_value(ref));
    json_decref((json_t *)empty);
    return 0;
fail:
    json_decref((json_t *)empty);
    normalized_alert_destroy(out);
    return -1;
}

/* Pass 1: result members read as they are, and the type of their indicators. */
static const char *const PLAIN_FIELDS[][2] = {
    {"user", "account"}, {"sha256", "hash_sha256"}, {"md5", "hash_md5"}, {"sha1", "hash_sha1"},
    {"url", "url"},      {"domain", "domain"},
};

static void splunk_extract(const json_t *payload, struct indicator_set *out)
{
    const json_t *r = json_object_get(payload, "result");
    if (!json_is_object(r))
        return;
    indicator_set_add_json(out, "ip",
                           py_or(json_object_get(r, "src_ip"), json_object_get(r, "src")));
    indicator_set_add_json(out, "ip",
                           py_or(json_object_get(r, "dest_ip"), json_object_get(r, "dest")));
    for (size_t i = 0; i < sizeof PLAIN_FIELDS / sizeof *PLAIN_FIELDS; i++)
        indicator_set_add_json(out, PLAIN_FIELDS[i][1], json_object_get(r, PLAIN_FIELDS[i][0]));
}

/* ---- the same over a token index (see source.h): keep in step with the functions above ---- */

static int splunk_validate_tok(const struct jtok_doc *d)
{
    if (jtok_type(d, jtok_get(d, 0, "result")) != JT_OBJECT)
        return 0;
    return jtok_truthy(d, jtok_get(d, 0, "search_name")) || jtok_truthy(d, jtok_get(d, 0, "sid"));
}

static const char *splunk_severity_tok(const struct jtok_doc *d, uint32_t r)
{
    uint32_t v = jtok_or(d, jtok_get(d, r, "urgency"), jtok_get(d, r, "severity"));
    char low[16];
    if (v == JTOK_NONE)
        return "Low";
    if (!jtok_lower(d, v, low, sizeof low))
        return "Pending";
    return severity_named(low);
}

static int splunk_time_tok(const struct jtok_doc *d, uint32_t r, int64_t *out_us)
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

static int splunk_description_tok(const struct jtok_doc *d, uint32_t r, struct normalized_alert *out)
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

static int splunk_normalize_tok(const struct jtok_doc *d, struct normalized_alert *out)
{
    normalized_alert_init(out);
    /* absent: every lookup below finds nothing, as in an empty object */
    uint32_t r = jtok_get(d, 0, "result");
    if ((r != JTOK_NONE && jtok_type(d, r) != JT_OBJECT) || jtok_type(d, 0) != JT_OBJECT)
        goto fail;
    uint32_t search = jtok_get(d, 0, "search_name");
    uint32_t title =
        jtok_or(d, jtok_or(d, jtok_get(d, r, "rule_name"), jtok_get(d, r, "signature")), search);
    if (title != JTOK_NONE && jtok_type(d, title) != JT_STRING)
        goto fail;
    out->title = title != JTOK_NONE ? jtok_strdup(d, title) : xstrdup("Untitled Splunk Alert");
    out->severity = xstrdup(splunk_severity_tok(d, r));
    if (splunk_time_tok(d, r, &out->occurred_at_us) != 0)
        normalized_alert_now(out);
    if (splunk_description_tok(d, r, out) != 0)
        goto fail;
    uint32_t ref = jtok_or(d, jtok_get(d, r, "rule_name"), search);
    out->source_rule_ref = jtok_strdup(d, ref);
    return 0;
fail:
    normalized_alert_destroy(out);
    return -1;
}

static void splunk_extract_tok(const struct jtok_doc *d, struct indicator_set *out)
{
    uint32_t r = jtok_get(d, 0, "result");
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
    .validate_tok = splunk_validate_tok,
    .normalize_tok = splunk_normalize_tok,
    .extract_tok = splunk_extract_tok,
};
