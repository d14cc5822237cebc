/*
 * intake_normalize_bench.c - CPU per alert of what the intake does with a payload between
 * reading it and queueing it packed for the batch, both ways it reads one: as the member of a POST
 * /v1/alerts body ("once": jtok_parse_limited of the body, the envelope checked on its tokens,
 * then validate, normalize, extract, element at the payload's token; "tree": the former path,
 * json_parse_limited into a tree for the envelope and the body read again into tokens) and as
 * a POST /v1/ingest/{source} body (jtok_parse_limited, then the same steps at the root), for
 * each of the five SIEM fixtures, and the ratio tree / tokens. The ceiling is not our code:
 * memcpy of the body into a fresh block (the least any path must do with it). Thread CPU time,
 * so the figure holds on a loaded machine. By hand:
 *   cmake --build build --target bench_intake_normalize_bench
 *   build/bench/bench_intake_normalize_bench [fixtures dir [tree|tokens]]
 * A path named second runs alone (ten times the rounds), for a profile of that path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/intake/batch_element.h"
#include "services/intake/source.h"
#include "jsonparse.h"
#include "jsontok.h"
#include "util.h"

static const char *const FIXTURES[][2] = {
    {"01_sentinel_brute_force_tor.json", "sentinel"},
    {"02_elastic_malware_hash.json", "elastic"},
    {"03_splunk_anomalous_data_transfer.json", "splunk"},
    {"04_sentinel_impossible_travel.json", "sentinel"},
    {"05_elastic_suspicious_powershell.json", "elastic"},
};
#define NFIX (sizeof FIXTURES / sizeof FIXTURES[0])
#define ROUNDS 20000

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* The alert packed for the batch's columns, as the intake queues it (the payload, which the
 * intake copies in behind the fields, left out: the ceiling's memcpy is that copy). */
static void element(const struct alert_source *src, const struct normalized_alert *na,
                    const struct indicator_set *set, struct buf *out)
{
    char fp[33];
    indicators_fingerprint(na->title, src->name, set, fp);
    struct element e = {.na = na, .source = src->name, .fingerprint = fp, .key_prefix = "cai_bench",
                        .set = set};
    struct packed *pk = element_pack(&e, "", 0);
    buf_reset(out);
    buf_append(out, pk->data, pk->len);
    free(pk);
}

static int by_tree(const struct alert_source *src, const char *doc, size_t len, struct buf *out)
{
    enum json_parse_status st;
    struct json_scan scan;
    char err[160];
    json_t *p = json_parse_limited(doc, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL, &scan,
                                   &st, err, sizeof err);
    struct jtok_doc d;
    uint32_t root;
    struct normalized_alert na;
    int rc = -1, tok = p && source_body_tokens(&d, doc, len, "payload", &root) == 0;
    if (!tok || !src->validate(&d, root) || src->normalize(&d, root, &na) != 0)
        goto out;
    struct indicator_set set;
    indicator_set_init(&set);
    src->extract(&d, root, &set);
    element(src, &na, &set, out);
    indicator_set_destroy(&set);
    normalized_alert_destroy(&na);
    rc = 0;
out:
    if (p)
        jtok_free(&d);
    json_decref(p);
    return rc;
}

/* POST /v1/alerts as the intake reads it: the body once, into tokens. */
static int by_envelope(const struct alert_source *src, const char *doc, size_t len,
                       struct buf *out)
{
    enum json_parse_status st;
    struct json_scan scan;
    char err[160];
    struct jtok_doc d;
    struct normalized_alert na;
    int rc = -1;
    if (jtok_parse_limited(&d, doc, len, NULL, &scan, &st, err, sizeof err) != 0)
        goto out;
    uint32_t root = jtok_get(&d, 0, "payload");
    if (jtok_type(&d, jtok_get(&d, 0, "source_name")) != JT_STRING ||
        jtok_type(&d, root) != JT_OBJECT || !src->validate(&d, root) ||
        src->normalize(&d, root, &na) != 0)
        goto out;
    struct indicator_set set;
    indicator_set_init(&set);
    src->extract(&d, root, &set);
    element(src, &na, &set, out);
    indicator_set_destroy(&set);
    normalized_alert_destroy(&na);
    rc = 0;
out:
    jtok_free(&d);
    return rc;
}

static int by_tokens(const struct alert_source *src, const char *doc, size_t len, struct buf *out)
{
    enum json_parse_status st;
    struct json_scan scan;
    char err[160];
    struct jtok_doc d;
    struct normalized_alert na;
    if (jtok_parse_limited(&d, doc, len, NULL, &scan, &st, err, sizeof err) != 0 ||
        !src->validate(&d, 0) || src->normalize(&d, 0, &na) != 0)
        return -1;
    struct indicator_set set;
    indicator_set_init(&set);
    src->extract(&d, 0, &set);
    element(src, &na, &set, out);
    indicator_set_destroy(&set);
    normalized_alert_destroy(&na);
    jtok_free(&d);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        exit(1);
    }
    struct buf b;
    buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    return b.data;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data/fixtures";
    const char *only = argc > 2 ? argv[2] : NULL;
    double tree_all = 0, once_all = 0, tok_all = 0, copy_all = 0;
    struct buf out;
    buf_init(&out);
    printf("%-40s %8s %10s %10s %10s %10s %7s\n", "fixture", "bytes", "tree us", "once us",
           "tokens us", "memcpy us", "ratio");
    for (size_t i = 0; i < NFIX; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, FIXTURES[i][0]);
        size_t len;
        char *doc = slurp(path, &len);
        const struct alert_source *src = source_lookup(FIXTURES[i][1]);
        /* the POST /v1/alerts body around the same payload */
        struct buf env;
        buf_init(&env);
        buf_printf(&env, "{\"source_name\":\"%s\",\"payload\":", FIXTURES[i][1]);
        buf_append(&env, doc, len);
        buf_puts(&env, "}");
        if (by_tree(src, env.data, env.len, &out) != 0 ||
            by_envelope(src, env.data, env.len, &out) != 0 || by_tokens(src, doc, len, &out) != 0) {
            fprintf(stderr, "%s: refused\n", path);
            return 1;
        }
        if (only) {
            int tree = !strcmp(only, "tree");
            for (int r = 0; r < ROUNDS * 10; r++)
                tree ? by_tree(src, env.data, env.len, &out) : by_tokens(src, doc, len, &out);
            free(doc);
            buf_destroy(&env);
            continue;
        }
        double t0 = cpu_ns();
        for (int r = 0; r < ROUNDS; r++)
            by_tree(src, env.data, env.len, &out);
        double tm = cpu_ns();
        for (int r = 0; r < ROUNDS; r++)
            by_envelope(src, env.data, env.len, &out);
        double t1 = cpu_ns();
        for (int r = 0; r < ROUNDS; r++)
            by_tokens(src, doc, len, &out);
        double t2 = cpu_ns();
        for (int r = 0; r < ROUNDS; r++) {
            char *c = xmalloc(len);
            memcpy(c, doc, len);
            __asm__ volatile("" : : "r"(c) : "memory");
            free(c);
        }
        double t3 = cpu_ns();
        double tree = (tm - t0) / ROUNDS / 1e3, once = (t1 - tm) / ROUNDS / 1e3,
               tok = (t2 - t1) / ROUNDS / 1e3, copy = (t3 - t2) / ROUNDS / 1e3;
        printf("%-40s %8zu %10.2f %10.2f %10.2f %10.3f %7.2f\n", FIXTURES[i][0], len, tree, once,
               tok, copy, tree / tok);
        tree_all += tree, once_all += once, tok_all += tok, copy_all += copy;
        free(doc);
        buf_destroy(&env);
    }
    printf("%-40s %8s %10.2f %10.2f %10.2f %10.3f %7.2f\n", "mean per fixture alert", "",
           tree_all / NFIX, once_all / NFIX, tok_all / NFIX, copy_all / NFIX, tree_all / tok_all);
    buf_destroy(&out);
    return 0;
}
