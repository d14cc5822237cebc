/*
 * sigv4.c - AWS Signature Version 4: canonical request, string to sign, signing key, signature.
 *
 * Canonical headers: names lower-cased, values trimmed with inner runs of spaces collapsed,
 * sorted by name, repeated names joined with ','. Canonical query: the '&'-separated pairs
 * sorted by name then value (the caller supplies them already percent-encoded).
 */
#include "sigv4.h"
#include "crypto.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void sigv4_signing_key(const char *secret, const char *date8, const char *region,
                       const char *service, unsigned char out[32])
{
    char *k = xasprintf("AWS4%s", secret);
    unsigned char a[32], b[32];
    crypto_hmac_sha256(k, strlen(k), date8, strlen(date8), a);
    crypto_hmac_sha256(a, 32, region, strlen(region), b);
    crypto_hmac_sha256(b, 32, service, strlen(service), a);
    crypto_hmac_sha256(a, 32, "aws4_request", 12, out);
    explicit_bzero(k, strlen(k));
    free(k);
    explicit_bzero(a, sizeof a);
    explicit_bzero(b, sizeof b);
}

void sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

struct hdr {
    char *name;
    char *value;
};

static int hdr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

static char *lower(const char *s)
{
    char *r = xstrdup(s);
    for (char *p = r; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return r;
}

/* Trims and collapses runs of spaces/tabs into one space. */
static char *trim_value(const char *v)
{
    char *r = xmalloc(strlen(v) + 1), *o = r;
    while (*v == ' ' || *v == '\t')
        v++;
    int space = 0;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space && o > r)
            *o++ = ' ';
        space = 0;
        *o++ = *v;
    }
    *o = 0;
    return r;
}

/* Appends canonical headers to b and returns the signed-headers list. */
static char *canonical_headers(const struct sigv4_input *in, struct buf *b)
{
    struct hdr *h = xcalloc(in->nheaders ? in->nheaders : 1, sizeof *h);
    for (size_t i = 0; i < in->nheaders; i++) {
        h[i].name = lower(in->headers[i].name);
        h[i].value = trim_value(in->headers[i].value);
    }
    qsort(h, in->nheaders, sizeof *h, hdr_cmp);
    struct buf names;
    buf_init(&names);
    for (size_t i = 0; i < in->nheaders; i++) {
        int repeat = i > 0 && !strcmp(h[i].name, h[i - 1].name);
        if (repeat) {
            b->len--; /* drop the newline and join with ',' */
            buf_printf(b, ",%s\n", h[i].value);
        } else {
            buf_printf(b, "%s:%s\n", h[i].name, h[i].value);
            buf_printf(&names, "%s%s", names.len ? ";" : "", h[i].name);
        }
    }
    for (size_t i = 0; i < in->nheaders; i++) {
        free(h[i].name);
        explicit_bzero(h[i].value, strlen(h[i].value));
        free(h[i].value);
    }
    free(h);
    char *r = xstrdup(names.data ? names.data : "");
    buf_destroy(&names);
    return r;
}

static int pair_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t xn = strcspn(x, "="), yn = strcspn(y, "=");
    size_t n = xn < yn ? xn : yn;
    int c = memcmp(x, y, n);
    if (c)
        return c;
    if (xn != yn)
        return xn < yn ? -1 : 1;
    return strcmp(x + xn, y + yn);
}

static void canonical_query(const char *q, struct buf *b)
{
    if (!q || !*q)
        return;
    char *copy = xstrdup(q);
    size_t n = 1;
    for (const char *p = q; *p; p++)
        n += *p == '&';
    char **parts = xmalloc(n * sizeof *parts);
    size_t k = 0;
    for (char *save = NULL, *t = strtok_r(copy, "&", &save); t; t = strtok_r(NULL, "&", &save))
        parts[k++] = t;
    qsort(parts, k, sizeof *parts, pair_cmp);
    for (size_t i = 0; i < k; i++)
        buf_printf(b, "%s%s%s", i ? "&" : "", parts[i], strchr(parts[i], '=') ? "" : "=");
    free(parts);
    free(copy);
}

static int valid_date(const char *d)
{
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return 0;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)d[i]))
            return 0;
    return 1;
}

int sigv4_sign(const struct sigv4_input *in, struct sigv4_result *out)
{
    memset(out, 0, sizeof *out);
    if (!valid_date(in->amz_date) || !in->method || !in->path || !in->region || !in->service ||
        !in->access_key || !in->secret_key)
        return -1;
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s\n%s\n", in->method, in->path);
    canonical_query(in->query, &b);
    buf_puts(&b, "\n");
    out->signed_headers = canonical_headers(in, &b);
    char body_hash[65];
    crypto_sha256_hex(in->body ? in->body : "", in->body ? in->body_len : 0, body_hash);
    buf_printf(&b, "\n%s\n%s", out->signed_headers, body_hash);
    out->canonical_request = xstrdup(b.data);
    buf_destroy(&b);

    char creq_hash[65], date8[9];
    crypto_sha256_hex(out->canonical_request, strlen(out->canonical_request), creq_hash);
    memcpy(date8, in->amz_date, 8);
    date8[8] = 0;
    char *scope = xasprintf("%s/%s/%s/aws4_request", date8, in->region, in->service);
    out->string_to_sign = xasprintf("AWS4-HMAC-SHA256\n%s\n%s\n%s", in->amz_date, scope, creq_hash);

    unsigned char key[32], sig[32];
    sigv4_signing_key(in->secret_key, date8, in->region, in->service, key);
    crypto_hmac_sha256(key, 32, out->string_to_sign, strlen(out->string_to_sign), sig);
    crypto_hex_encode(sig, 32, out->signature);
    explicit_bzero(key, sizeof key);
    out->authorization =
        xasprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                  in->access_key, scope, out->signed_headers, out->signature);
    free(scope);
    return 0;
}

void sigv4_result_destroy(struct sigv4_result *r)
{
    free(r->canonical_request);
    free(r->string_to_sign);
    free(r->signed_headers);
    free(r->authorization);
    memset(r, 0, sizeof *r);
}
