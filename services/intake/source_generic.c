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
#define FIELD(name, type) {name, sizeof name - 1, type}
static const struct {
    const char *name;
    size_t len;
    const char *type;
} FIELDS[] = {
    FIELD("src_ip", "ip"),
    FIELD("dest_ip", "ip"),
    FIELD("source_ip", "ip"),
    FIELD("destination_ip", "ip"),
    FIELD("ip", "ip"),
    FIELD("domain", "domain"),
    FIELD("hostname", "domain"),
    FIELD("url", "url"),
    FIELD("user", "account"),
    FIELD("username", "account"),
    FIELD("email", "email"),
    FIELD("md5", "hash_md5"),
    FIELD("sha1", "hash_sha1"),
    FIELD("sha256", "hash_sha256"),
    FIELD("hash", "hash_sha256"),
};
#undef FIELD
#define NFIELDS (sizeof FIELDS / sizeof *FIELDS)

/* Up to this many members, the object's keys are walked once and each matched against FIELDS
 * (a length and a first byte rule out almost every entry without a call); a lookup per name
 * walked the keys once per name, 15 times. A larger object is looked up by name through its
 * key table (the parser gives one to objects of more than 16 members, so those of 17 to 32
 * members have one too, and are walked all the same). */
#define FIELDS_WALK_MAX 32

/* The FIELDS entry the key names, or -1. */
static int field_named(const char *k, size_t n)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (FIELDS[i].len == n && FIELDS[i].name[0] == k[0] && !memcmp(FIELDS[i].name, k, n))
            return (int)i;
    return -1;
}

/* at[i]: the value of FIELDS[i] in the object root, or JTOK_NONE. */
static void fields_find(const struct jtok_doc *d, uint32_t root, uint32_t at[NFIELDS])
{
    if (d->t[root].count > FIELDS_WALK_MAX) {
        for (size_t i = 0; i < NFIELDS; i++)
            at[i] = jtok_getn(d, root, FIELDS[i].name, FIELDS[i].len);
        return;
    }
    for (size_t i = 0; i < NFIELDS; i++)
        at[i] = JTOK_NONE;
    for (uint32_t k = jtok_first(d, root); k != JTOK_NONE; k = jtok_next(d, k)) {
        size_t n;
        const char *name = jtok_str(d, k, &n);
        int f = n ? field_named(name, n) : -1;
        /* the first match, as jtok_getn() finds it (the parser refuses a repeated key today,
         * so there is one at most) */
        if (f >= 0 && at[f] == JTOK_NONE)
            at[f] = k + 1;
    }
}

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
    uint32_t at[NFIELDS];
    fields_find(d, root, at);
    for (size_t i = 0; i < NFIELDS; i++)
        jtok_add_indicator(d, at[i], out, FIELDS[i].type);
}

const struct alert_source source_generic = {
    .name = "generic",
    .validate = generic_validate,
    .normalize = generic_normalize,
    .extract = generic_extract,
};
