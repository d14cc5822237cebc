/*
 * tests/unit/services/intake/source_tok.c - what every source makes of a POST /v1/ingest/{source}
 * body, checked byte for byte against the golden files in tests/data/golden/source_tok/: the parse
 * verdict (status, error text, scan counts) and, for a body the parser accepts, whether the
 * source takes it and the batch element the intake would queue (fingerprint included), under the
 * default limits and under small ones. Inputs: every file of the fixtures folder, each with every
 * value replaced in turn by odd values (types, escapes, surrogates, numbers beyond 64 bits, zeros,
 * timestamps), rewritten (keys escaped, pretty-printed, ASCII-escaped, a duplicate key, dotted
 * keys nested as objects, a flat key set to null beside its nested value), and hand-written
 * hostile bodies (deep, huge, duplicate keys, invalid UTF-8 and escapes, NUL bytes, big objects).
 *
 * The golden files were written by the jansson implementation of the sources that the token one
 * replaced, while both still existed and gave the same outcome for every input here: they pin
 * that behaviour. Each input is one line, "<digest> <bytes>" (input n on line n + 1), the digest
 * (64 bits of SipHash under a fixed key: a changed outcome keeps its digest with odds of 2^-64)
 * taken over its outcomes for every source and both limits; the fixtures as sent and the hostile
 * bodies also have their outcomes in full in the .full file, so that a change there shows as
 * text. CALSETA_GOLDEN_WRITE=1 rewrites the files from the code
 * instead of checking it (only for a change of behaviour that is meant).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "siphash.h"
#include "tests/unit/services/intake/source_outcome.h"

static const struct json_limits SMALL = {.max_depth = 8, .max_values = 60, .max_bytes = 0};
static size_t compared;

static char *read_file(const char *path, size_t *len);

/* One golden file pair being written or checked: the digest lines and the full outcomes. */
static struct golden {
    const char *name;
    int writing;
    FILE *lines_out, *full_out;
    char *lines, *full;  /* checking: the files' text */
    size_t lines_at, full_at;
    size_t index;        /* inputs so far */
    int full_texts;      /* inputs now also have their outcomes in full */
} g;

static char *golden_path(const char *name, const char *ext)
{
    const char *root = getenv("CALSETA_SOURCE_DIR");
    assert_non_null(root);
    return xasprintf("%s/tests/data/golden/source_tok/%s.%s", root, name, ext);
}

static void golden_open(const char *name)
{
    memset(&g, 0, sizeof g);
    g.name = name;
    const char *w = getenv("CALSETA_GOLDEN_WRITE");
    g.writing = w && !strcmp(w, "1");
    char *lines = golden_path(name, "txt"), *full = golden_path(name, "full");
    size_t n;
    if (g.writing) {
        g.lines_out = fopen(lines, "wb");
        g.full_out = fopen(full, "wb");
        assert_non_null(g.lines_out);
        assert_non_null(g.full_out);
    } else {
        g.lines = read_file(lines, &n);
        g.full = read_file(full, &n);
    }
    free(lines);
    free(full);
}

static void golden_close(void)
{
    if (g.writing) {
        assert_int_equal(fclose(g.lines_out), 0);
        assert_int_equal(fclose(g.full_out), 0);
    } else {
        /* every recorded input was made again */
        if (g.lines[g.lines_at] || g.full[g.full_at]) {
            fprintf(stderr, "golden %s: %zu inputs made, the file has more\n", g.name, g.index);
            fail();
        }
        free(g.lines);
        free(g.full);
    }
    memset(&g, 0, sizeof g);
}

/* The outcomes of data for every source under both limits, as one text (caller frees); and the
 * payload held as a tree gives the same under the default limits. */
static char *outcomes(const char *data, size_t len)
{
    const struct json_limits *lims[] = {NULL, &SMALL};
    struct held h;
    held_read(&h, data, len, NULL);
    struct buf b;
    buf_init(&b);
    for (const struct alert_source *const *s = source_all(); *s; s++) {
        for (size_t l = 0; l < 2; l++) {
            char *o = outcome_tok(*s, data, len, lims[l]);
            if (!l) {
                char *t = outcome_held_read(*s, &h);
                if (strcmp(o, t) != 0) {
                    fprintf(stderr, "source %s, input (%zu bytes): %.*s\nheld as a tree: %s\n"
                                    "tokens: %s\n",
                            (*s)->name, len, (int)(len > 600 ? 600 : len), data ? data : "", t,
                            o);
                    fail();
                }
                free(t);
            }
            buf_printf(&b, "== %s limits=%s\n%s\n", (*s)->name, l ? "small" : "default", o);
            free(o);
            compared++;
        }
    }
    held_free(&h);
    buf_append(&b, "", 1);
    return b.data;
}

/* Fails the test, showing the input and what it gives now, unless data's outcomes are the ones
 * recorded for the next input of the open golden file. */
static void same(const char *data, size_t len)
{
    assert_non_null(g.name);
    char *text = outcomes(data, len);
    size_t tlen = strlen(text);
    static const struct siphash_key K = {0x736f757263655f74ULL, 0x6f6b5f676f6c6431ULL};
    char line[64];
    snprintf(line, sizeof line, "%016" PRIx64 " %zu\n", siphash24(&K, text, tlen), len);
    char *full = g.full_texts ? xasprintf("## input %zu\n%s", g.index, text) : NULL;
    if (g.writing) {
        fputs(line, g.lines_out);
        if (full)
            fputs(full, g.full_out);
    } else {
        size_t n = strlen(line);
        int ok = !strncmp(g.lines + g.lines_at, line, n);
        if (ok)
            g.lines_at += n;
        if (ok && full) {
            size_t m = strlen(full);
            ok = !strncmp(g.full + g.full_at, full, m);
            if (ok)
                g.full_at += m;
        }
        if (!ok) {
            const char *want = g.lines + g.lines_at, *eol = strchr(want, '\n');
            fprintf(stderr,
                    "golden %s, input %zu (line %zu, %zu bytes): %.*s\nrecorded: %.*s\nnow:      %s"
                    "outcomes now:\n%s\n",
                    g.name, g.index, g.index + 1, len, (int)(len > 600 ? 600 : len), data ? data : "",
                    eol ? (int)(eol - want + 1) : (int)strlen(want), want, line, text);
            fail();
        }
    }
    free(full);
    free(text);
    g.index++;
}

static void same_str(const char *s)
{
    same(s, strlen(s));
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct buf b;
    buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    buf_append(&b, "", 1);
    return b.data;
}

/* ---- every value replaced in turn ---- */

static const char *const ODD[] = {
    "[]", "{}", "null", "0", "0.0", "-0", "0e5", "1e-400", "true", "false", "\"\"", "\"x\"",
    "1e19", "18446744073709551616", "-9223372036854775809", "9223372036854775807", "1.5",
    "1e400", "\"\\u0000\"", "\"a\\u00e9\\\\\\\"\\/\"", "\"\\ud83d\\ude00\"", "\"\\ud83d\"",
    "\"\\ude00\"", "\"\\x\"", "\"caf\xc3\xa9\"", "\"\xff\"", "\"  spaced  \"", "\"ctl\\n\\t\"",
    "[\"a\",1,null,{\"labelName\":\"t\"},{\"labelName\":\"\"},{\"labelName\":3}]",
    "{\"labelName\":\"x\",\"Type\":\"ip\",\"Address\":\"1.2.3.4\"}", "\"HIGH\"", "\"high\"",
    "\"None\"", "\"Critical\"", "\"2024-01-01T00:00:00Z\"", "\"2024-01-01T00:00:00.123456+02:00\"",
    "\"1709305200\"", "1709305200.5", "1709305200", "\"a/b/c/\"", "\"/x\"",
    "[{\"Type\":\"filehash\",\"Algorithm\":\"sha256\",\"Value\":\" abc \"},"
    "{\"type\":\"FileHash\",\"algorithm\":\"Md5\",\"value\":\"d41d8cd98f00b204e9800998ecf8427e\"},"
    "{\"Type\":\"account\",\"Name\":\"bob\",\"UPNSuffix\":\"corp.example\"},"
    "{\"Type\":\"host\",\"HostName\":\"h\",\"dnsDomain\":\"d.example\"},{\"Type\":\"url\",\"url\":\"http://x/\"},"
    "{\"Type\":\"ip\",\"Address\":\"\",\"address\":\"10.0.0.1\"},{\"Type\":\"\\u0049P\",\"Address\":\"10.0.0.2\"}]",
    "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}",
};

#define MARK "\"\\u0001MARK\""

/* root with the value at *slot replaced by each odd value, each compared. */
static void replace_each(json_t *root, json_t *parent, const char *key, size_t index)
{
    json_t *old = key ? json_object_get(parent, key) : json_array_get(parent, index);
    json_incref(old);
    json_t *mark = json_string("\001MARK");
    if (key)
        json_object_set_new(parent, key, mark);
    else
        json_array_set_new(parent, index, mark);
    char *text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
    char *at = strstr(text, MARK);
    assert_non_null(at);
    for (size_t i = 0; i < sizeof ODD / sizeof *ODD; i++) {
        struct buf b;
        buf_init(&b);
        buf_append(&b, text, (size_t)(at - text));
        buf_puts(&b, ODD[i]);
        buf_puts(&b, at + strlen(MARK));
        same(b.data, b.len);
        buf_destroy(&b);
    }
    free(text);
    if (key)
        json_object_set_new(parent, key, old);
    else
        json_array_set_new(parent, index, old);
}

static void replace_all(json_t *root, json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            replace_each(root, v, k, 0);
            replace_all(root, x);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            replace_each(root, v, NULL, i);
            replace_all(root, json_array_get(v, i));
        }
    }
}

/* Every key of the text written with its first letter as a \u escape. */
static char *escape_keys(const char *text)
{
    struct buf b;
    buf_init(&b);
    for (const char *p = text; *p; p++) {
        buf_append(&b, p, 1);
        if (*p == '"' && p[1] && p[1] != '"' && p[1] != '\\' && (unsigned char)p[1] < 0x80) {
            /* a key: the closing quote is followed by ':' */
            const char *q = strchr(p + 1, '"');
            if (q && q[1] == ':' && !memchr(p + 1, '\\', (size_t)(q - p - 1))) {
                buf_printf(&b, "\\u%04X", (unsigned char)p[1]);
                buf_append(&b, p + 2, (size_t)(q - p - 2));
                p = q - 1;
            }
        }
    }
    buf_append(&b, "", 1);
    return b.data;
}

/* The object with every dotted key "a.b.c" written as nested objects {"a":{"b":{"c":...}}}, as
 * Elastic sends documents that were never flattened; a key whose path crosses a value that is no
 * object stays flat. NULL when no key has a dot. */
static json_t *nest_keys(json_t *flat)
{
    if (!json_is_object(flat))
        return NULL;
    json_t *out = json_object();
    int nested = 0;
    const char *k;
    json_t *v;
    json_object_foreach(flat, k, v)
    {
        json_t *at = out;
        const char *seg = k, *dot;
        while (at && (dot = strchr(seg, '.')) != NULL) {
            char *name = xstrndup(seg, (size_t)(dot - seg));
            json_t *next = json_object_get(at, name);
            if (!next) {
                next = json_object();
                json_object_set_new(at, name, next);
            }
            free(name);
            at = json_is_object(next) ? next : NULL;
            seg = dot + 1;
        }
        if (at && !json_object_get(at, seg)) {
            json_object_set(at, seg, v);
            nested |= seg != k;
        } else {
            json_object_set(out, k, v);
        }
    }
    if (!nested) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* The nested form, every value replaced in turn; then the nested form with each dotted key also
 * present flat, once set to null (the nested value must win) and once to an odd value. */
static void nested_variants(json_t *flat)
{
    json_t *nested = nest_keys(flat);
    if (!nested)
        return;
    char *text = json_dumps(nested, JSON_COMPACT);
    same_str(text);
    free(text);
    replace_all(nested, nested);
    const char *k;
    json_t *v;
    json_object_foreach(flat, k, v)
    {
        if (!strchr(k, '.'))
            continue;
        json_t *both = json_deep_copy(nested);
        json_object_set_new(both, k, json_null());
        text = json_dumps(both, JSON_COMPACT);
        same_str(text);
        free(text);
        json_object_set_new(both, k, json_string(""));
        text = json_dumps(both, JSON_COMPACT);
        same_str(text);
        free(text);
        json_object_set_new(both, k, json_integer(0));
        text = json_dumps(both, JSON_COMPACT);
        same_str(text);
        free(text);
        json_decref(both);
    }
    json_decref(nested);
}

static void fixture_variants(const char *text, size_t len)
{
    g.full_texts = 1;
    same(text, len);
    g.full_texts = 0;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(root);
    replace_all(root, root);
    nested_variants(root);
    char *pretty = json_dumps(root, JSON_INDENT(3));
    char *ascii = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
    char *escaped = escape_keys(ascii);
    same_str(pretty);
    same_str(ascii);
    same_str(escaped);
    /* the first key again at the end: a duplicate, refused both ways */
    void *it = json_object_iter(root);
    if (it) {
        struct buf b;
        buf_init(&b);
        buf_append(&b, ascii, strlen(ascii) - 1);
        buf_printf(&b, ",\"%s\":1}", json_object_iter_key(it));
        same(b.data, b.len);
        buf_destroy(&b);
    }
    free(pretty);
    free(ascii);
    free(escaped);
    json_decref(root);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Each fixture has its own golden files, named after it. */
static void test_fixtures(void **state)
{
    (void)state;
    const char *shared = getenv("CALSETA_SHARED_DIR");
    assert_non_null(shared);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fixtures", shared);
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[64];
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        assert_true(files < sizeof names / sizeof *names);
        names[files++] = xstrndup(e->d_name, n - 5);
    }
    closedir(d);
    qsort(names, files, sizeof *names, by_name);
    for (size_t i = 0; i < files; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s.json", dir, names[i]);
        size_t len;
        char *text = read_file(path, &len);
        golden_open(names[i]);
        fixture_variants(text, len);
        golden_close();
        free(text);
        free(names[i]);
    }
    assert_true(files >= 5);
    assert_true(compared > 10000);
}

/* The generic source has no fixture: a body with every member it reads, in every odd shape. */
static void test_generic_shapes(void **state)
{
    (void)state;
    static const char text[] =
        "{\"title\":\"Brute force\",\"severity\":\"High\",\"occurred_at\":\"2024-03-01T10:00:00Z\","
        "\"tags\":[\"a\",1,null,true,1.5,-0.0,1e300,{\"k\":\"v\",\"n\":[1,2.5]},[\"x\"],\"\\u00e9\\\"\"],"
        "\"rule_id\":\"r-1\",\"rule_name\":\"n\",\"indicators\":[{\"type\":\"IP\",\"value\":\"10.0.0.1\"},"
        "{\"type\":\"hash_sha256\",\"value\":\" abc \"},{\"type\":\"bogus\",\"value\":\"x\"},"
        "{\"type\":\"email\"},{\"type\":\"Domain\",\"value\":[\"x\"]},\"ip\"],\"src_ip\":\"1.2.3.4\","
        "\"dest_ip\":\"5.6.7.8\",\"source_ip\":\"\",\"destination_ip\":null,\"ip\":\"9.9.9.9\","
        "\"domain\":\"evil.example\",\"hostname\":\"h\",\"url\":\"http://x/\",\"user\":\"bob\","
        "\"username\":\"b\",\"email\":\"a@b.c\",\"md5\":\"d41d8cd98f00b204e9800998ecf8427e\","
        "\"sha1\":\"da39a3ee5e6b4b0d3255bfef95601890afd80709\",\"sha256\":\"e3b0c442\",\"hash\":\"h\"}";
    size_t before = compared;
    golden_open("generic_shapes");
    fixture_variants(text, sizeof text - 1);
    golden_close();
    assert_true(compared - before > 1000);
}

/* ---- hostile bodies ---- */

static char *repeat(const char *open, size_t n, const char *mid, const char *close)
{
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; i < n; i++)
        buf_puts(&b, open);
    buf_puts(&b, mid);
    for (size_t i = 0; i < n; i++)
        buf_puts(&b, close);
    return b.data;
}

static void test_deep(void **state)
{
    (void)state;
    size_t depths[] = {7, 8, 9, 63, 64, 65, 2047, 2048, 2049, 5000};
    golden_open("deep");
    g.full_texts = 1;
    for (size_t i = 0; i < sizeof depths / sizeof *depths; i++) {
        char *a = repeat("[", depths[i], "1", "]");
        char *o = repeat("{\"properties\":", depths[i], "{}", "}");
        char *bad = repeat("[", depths[i], "1", "}");
        same_str(a);
        same_str(o);
        same_str(bad);
        free(a);
        free(o);
        free(bad);
    }
    golden_close();
}

static void test_big(void **state)
{
    (void)state;
    golden_open("big"); /* digests only: the outcomes hold the megabyte */
    struct buf b;
    buf_init(&b);
    /* a string of a megabyte, plain and then with escapes all along */
    buf_puts(&b, "{\"properties\":{\"title\":\"");
    for (int i = 0; i < 1 << 20; i++)
        buf_append(&b, i % 1000 == 999 ? "\\n" : "a", i % 1000 == 999 ? 2 : 1);
    buf_puts(&b, "\",\"severity\":\"High\"}}");
    same(b.data, b.len);
    buf_reset(&b);
    /* a hundred thousand and one values; then objects with many keys, a duplicate at the end */
    buf_puts(&b, "{\"Entities\":[");
    for (int i = 0; i < 100001; i++)
        buf_puts(&b, i ? ",0" : "0");
    buf_puts(&b, "]}");
    same(b.data, b.len);
    size_t sizes[] = {15, 16, 17, 100, 5000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int dup = 0; dup < 3; dup++) {
            buf_reset(&b);
            buf_puts(&b, "{\"properties\":{\"title\":\"t\"");
            for (size_t i = 0; i < sizes[s]; i++)
                buf_printf(&b, ",\"k%zu\":%zu", i, i);
            if (dup == 1)
                buf_puts(&b, ",\"k3\":0");
            if (dup == 2)
                buf_puts(&b, ",\"\\u006b1\":0");
            buf_puts(&b, "}}");
            same(b.data, b.len);
        }
    }
    buf_destroy(&b);
    golden_close();
}

static void test_hostile(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "", " ", "{", "}", "[]", "\"x\"", "1", "null", "{}", "{} x", "{}}", " {} ",
        "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}", "{\"\\u0000\":1}",
        "{\"properties\":{\"title\":\"t\",\"title\":\"u\"}}",
        "{\"properties\":{\"title\":\"t\"},\"properties\":{\"title\":\"u\"}}",
        "{\"a\":\"\xff\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xe2\x82\"}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}", "{\"a\":01}",
        "{\"a\":-}", "{\"a\":1.}", "{\"a\":1e}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":1,}",
        "{\"a\" 1}", "{a:1}", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\uD834\\uDD1E\"}", "{\"a\":\"\\uDD1E\\uD834\"}", "{\"a\":\"\\uD834x\"}",
        "{\"a\":\"\t\"}", "{\"a\":\"x", "{\"a\":\"x\\", "{\"a\":1e400}", "{\"a\":-1e400}",
        "{\"a\":123456789012345678901234567890}", "{\"a\":-0.0e-0}",
        "{\"properties\":{\"title\":\"t\",\"severity\":1e19},\"Entities\":1e19}",
        "{\"properties\":{\"title\":\"t\",\"labels\":[{\"labelName\":18446744073709551616}]}}",
        "{\"properties\":{\"title\":\"t\"},\"x\":[1e1000]}",
        "{\"properties\":{\"title\":\"t\"},\"x\":" "1" "00000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000}",
        "\xef\xbb\xbf{}", "{\"properties\":{\"title\":\"\xf0\x9f\x98\x80\"}}",
    };
    golden_open("hostile");
    g.full_texts = 1;
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        same_str(texts[i]);
    /* raw NUL bytes: inside a string, after a number, after a literal, after the document */
    static const char nul1[] = "{\"a\":\"x\0y\"}", nul2[] = "{\"a\":1\0}", nul3[] = "{\"a\":true\0}",
                      nul4[] = "{}\0";
    same(nul1, sizeof nul1 - 1);
    same(nul2, sizeof nul2 - 1);
    same(nul3, sizeof nul3 - 1);
    same(nul4, sizeof nul4 - 1);
    same(NULL, 0);
    golden_close();
}

/* The accessors: lookups, iteration and what a value reads back as. */
static void test_accessors(void **state)
{
    (void)state;
    const char *text = " {\"a\":[1,\"two\",{\"x\":null}],\"b\\u0063\":\"d\\ne\",\"e\":{}} ";
    struct jtok_doc d;
    enum json_parse_status st;
    char err[160];
    assert_int_equal(jtok_parse_limited(&d, text, strlen(text), NULL, NULL, &st, err, sizeof err), 0);
    uint32_t a = jtok_get(&d, 0, "a");
    assert_int_equal(jtok_type(&d, a), JT_ARRAY);
    assert_true(jtok_streq(&d, jtok_index(&d, a, 1), "two"));
    assert_int_equal(jtok_type(&d, jtok_get(&d, jtok_index(&d, a, 2), "x")), JT_NULL);
    assert_int_equal(jtok_index(&d, a, 3), JTOK_NONE);
    size_t n;
    const char *s = jtok_str(&d, jtok_get(&d, 0, "bc"), &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "d\ne", 3);
    assert_int_equal(jtok_get(&d, JTOK_NONE, "a"), JTOK_NONE);
    assert_int_equal(jtok_get(&d, a, "a"), JTOK_NONE);
    assert_false(jtok_truthy(&d, jtok_get(&d, 0, "e")));
    size_t count = 0;
    for (uint32_t k = jtok_first(&d, 0); k != JTOK_NONE; k = jtok_next(&d, k))
        count++;
    assert_int_equal(count, 3);
    json_t *v = jtok_json(&d, a);
    json_t *want = json_loads("[1,\"two\",{\"x\":null}]", 0, NULL);
    assert_true(json_equal(v, want));
    json_decref(v);
    json_decref(want);
    jtok_free(&d);

    /* objects with many keys are looked up through their key table, nested ones too */
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"in\":{");
    for (int i = 0; i < 300; i++)
        buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
    buf_puts(&b, ",\"\\u00e9t\\u00e9\":\"summer\"}");
    for (int i = 0; i < 40; i++)
        buf_printf(&b, ",\"o%d\":\"v%d\"", i, i);
    buf_puts(&b, "}");
    assert_int_equal(jtok_parse_limited(&d, b.data, b.len, NULL, NULL, &st, err, sizeof err), 0);
    uint32_t in = jtok_get(&d, 0, "in");
    assert_int_equal(jtok_type(&d, in), JT_OBJECT);
    for (int i = 0; i < 300; i++) {
        char key[16], val[16];
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "%d", i);
        uint32_t x = jtok_get(&d, in, key);
        assert_int_equal(jtok_type(&d, x), JT_NUMBER);
        assert_int_equal(d.t[x].end - d.t[x].start, strlen(val));
        assert_memory_equal(b.data + d.t[x].start, val, strlen(val));
    }
    for (int i = 0; i < 40; i++) {
        char key[16], val[16];
        snprintf(key, sizeof key, "o%d", i);
        snprintf(val, sizeof val, "v%d", i);
        assert_true(jtok_streq(&d, jtok_get(&d, 0, key), val));
    }
    assert_true(jtok_streq(&d, jtok_get(&d, in, "\xc3\xa9t\xc3\xa9"), "summer"));
    assert_int_equal(jtok_get(&d, in, "k300"), JTOK_NONE);
    assert_int_equal(jtok_get(&d, in, "o1"), JTOK_NONE);
    assert_int_equal(jtok_get(&d, 0, "k1"), JTOK_NONE);
    jtok_free(&d);
    buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accessors), cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_deep),      cmocka_unit_test(test_big),
        cmocka_unit_test(test_fixtures),  cmocka_unit_test(test_generic_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
