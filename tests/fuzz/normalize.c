/*
 * normalize.c - libFuzzer target for the alert sources as the intake runs them: arbitrary bytes
 * (copied to a buffer of exactly their size, so an over-read is an ASan report) read by the
 * token reader and given to every source (validate, extract pass 1, normalize), then passes 2
 * and 3, the fingerprint and the JSON forms, under small limits and the defaults. The harness
 * aborts when a result breaks an invariant (a title, a severity from the enum, tags an array of
 * strings, a fingerprint of 32 lowercase hex digits, indicators stripped, non-empty and unique),
 * when the same bytes read as the payload member of a body (as POST /v1/alerts reads it: a
 * jansson tree, then the body's tokens) give any other outcome, or when a
 * document the token reader accepts does not read back (jtok_json of the root) as the value
 * json_parse_limited() builds, or when jansson's json_loadb() (as the mapping test endpoint
 * reads its body) accepts the bytes as the member "raw_payload" of a body whose token index
 * source_body_tokens() then refuses. A body that is a bare string also goes through the timestamp
 * parsers. Seeds: corpus/normalize/ (the fixtures, odd shapes of each source).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "services/intake/isotime.h"
#include "tests/unit/services/intake/source_outcome.h"

static const struct json_limits SMALL = {.max_depth = 8, .max_values = 200, .max_bytes = 0};

static void check(int ok)
{
    if (!ok)
        abort();
}

static void check_alert(const struct normalized_alert *a)
{
    static const char *const sev[] = {"Pending", "Informational", "Low",
                                      "Medium",  "High",          "Critical"};
    int known = 0;
    check(a->title != NULL && a->severity != NULL);
    for (size_t i = 0; i < 6; i++)
        known |= !strcmp(a->severity, sev[i]);
    check(known);
    check(json_is_array(a->tags) &&
          (!a->normalized_fields || json_is_object(a->normalized_fields)));
    size_t i;
    json_t *t;
    json_array_foreach(a->tags, i, t) check(json_is_string(t));
}

static void check_set(const struct indicator_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const char *v = s->items[i].value;
        size_t n = strlen(v);
        check(n > 0);
        const char *w = v;
        check(py_strip(&w, n) == n && w == v);
        for (size_t k = 0; k < i && k < 64; k++)
            check(strcmp(s->items[k].type, s->items[i].type) ||
                  strcmp(s->items[k].value, s->items[i].value));
    }
}

/* One source over the tokens d of a document, the three passes and the fingerprint. */
static void run_source(const struct alert_source *src, const struct jtok_doc *d, json_t *root)
{
    static const struct indicator_mapping pass2[] = {
        {NULL, "title", "domain"}, {"sentinel", "description", "url"},
        {NULL, "src_ip", "ip"},    {"elastic", "severity", "account"},
        {NULL, NULL, "ip"},
    };
    static const struct indicator_mapping pass3[] = {
        {NULL, "properties.title", "account"},
        {NULL, "result.src", "ip"},
        {NULL, "a.b.c", "email"},
        {NULL, "", "url"},
        {NULL, "..", "url"},
        {"generic", "title", "domain"},
    };
    int valid = src->validate(d, 0);
    check(valid == 0 || valid == 1);
    struct indicator_set set;
    indicator_set_init(&set);
    src->extract(d, 0, &set);
    struct normalized_alert a;
    if (src->normalize(d, 0, &a) == 0) {
        check_alert(&a);
        json_t *fields = normalized_alert_fields(&a, src->name);
        indicators_extract_normalized(fields, src->name, pass2, 5, &set);
        json_decref(fields);
        indicators_extract_raw(root, src->name, pass3, 6, &set);
        check_set(&set);
        char fp[33];
        indicators_fingerprint(a.title, src->name, &set, fp);
        check(strlen(fp) == 32 && strspn(fp, "0123456789abcdef") == 32);
        json_t *j = indicators_to_json(&set);
        check(json_array_size(j) == set.n);
        json_decref(j);
        normalized_alert_destroy(&a);
    } else {
        check(a.title == NULL && a.tags == NULL);
    }
    indicator_set_destroy(&set);
}

/* Every source's outcome the same whether the body is read into tokens or held as a tree. */
static void same_held(const char *data, size_t size, const struct json_limits *lim)
{
    for (const struct alert_source *const *s = source_all(); *s; s++) {
        char *a = outcome_tok(*s, data, size, lim);
        char *b = outcome_held(*s, data, size, lim);
        check(strcmp(a, b) == 0);
        free(a);
        free(b);
    }
}

/* The mapping test endpoint checks its body with json_loadb() and then reads the source's payload
 * from the body's tokens: whatever jansson accepts there, the token reader must read too. */
static void loadb_then_tokens(const char *data, size_t size)
{
    struct buf body;
    buf_init(&body);
    buf_puts(&body, "{\"raw_payload\":");
    buf_append(&body, data, size);
    buf_puts(&body, "}");
    json_error_t e;
    json_t *v = json_loadb(body.data, body.len, JSON_REJECT_DUPLICATES, &e);
    if (v) {
        struct jtok_doc d;
        uint32_t root;
        check(source_body_tokens(&d, body.data, body.len, "raw_payload", &root) == 0);
        jtok_free(&d);
        json_decref(v);
    }
    buf_destroy(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (size)
        memcpy(copy, data, size);
    same_held(copy, size, &SMALL);
    same_held(copy, size, NULL);
    loadb_then_tokens(copy, size);
    struct jtok_doc d;
    enum json_parse_status st;
    char err[160];
    if (jtok_parse_limited(&d, copy, size, NULL, NULL, &st, err, sizeof err) == 0) {
        json_t *want = json_parse_limited(copy, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                                          NULL, NULL, &st, err, sizeof err);
        json_t *root = jtok_json(&d, 0);
        check(want && root && json_equal(want, root));
        if (json_is_string(root)) {
            int64_t us;
            isotime_parse(json_string_value(root), &us);
            isotime_parse_zfix(json_string_value(root), &us);
            isotime_from_epoch_text(json_string_value(root), &us);
        }
        for (const struct alert_source *const *s = source_all(); *s; s++)
            run_source(*s, &d, root);
        free(py_str(root));
        json_decref(want);
        json_decref(root);
    }
    jtok_free(&d);
    free(copy);
    return 0;
}
