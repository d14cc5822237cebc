/*
 * broker.c - ctx.http, performed by the runner parent on behalf of a sandboxed child.
 *
 * A child frame {"t":"http", method, url, headers[[k,v]], body_b64, timeout} is checked field
 * by field (the child is hostile), the URL goes through the shared SSRF guard
 * (libcommon/ssrf/ssrf.h: http/https only; the name is resolved once and the request is pinned
 * to that address with CURLOPT_CONNECT_TO and a socket-level pin; DNS failure blocks; private,
 * loopback, link-local and metadata addresses are blocked, an allow-listed host may reach
 * private ranges but never the metadata endpoints; loopback only in the test mode), and libcurl
 * performs it with no redirects, no proxy, the smaller of the request's timeout and the run's
 * remaining time, and a response size cap.
 * The reply is {"t":"http_resp", status, headers, body_b64} or {"t":"http_err", kind, message}.
 */
#include "curluv.h"
#include "httpc.h"
#include "runner.h"
#include "ssrf.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_URL 8192
#define MAX_HEADERS 100
#define MAX_REQUEST_BODY (10 * 1024 * 1024)
#define MAX_RESPONSE_HEADER_BYTES (64 * 1024)

struct response {
    struct buf body;
    json_t *headers;
    size_t header_bytes;
    long long max;
    int too_big;
};

static char *http_err(const char *kind, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    json_t *j = json_pack("{s:s, s:s, s:s}", "t", "http_err", "kind", kind, "message", msg);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* ---- libcurl ----------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct response *r = arg;
    size_t len = size * n;
    if ((long long)(r->body.len + len) > r->max) {
        r->too_big = 1;
        return 0;
    }
    buf_append(&r->body, p, len);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct response *r = arg;
    size_t len = size * n;
    r->header_bytes += len;
    if (r->header_bytes > MAX_RESPONSE_HEADER_BYTES)
        return 0;
    if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
        json_array_clear(r->headers); /* a new response (after 100-continue) */
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return len;
    size_t klen = (size_t)(colon - p), vstart = klen + 1;
    while (vstart < len && (p[vstart] == ' ' || p[vstart] == '\t'))
        vstart++;
    size_t vend = len;
    while (vend > vstart && (p[vend - 1] == '\r' || p[vend - 1] == '\n' || p[vend - 1] == ' '))
        vend--;
    json_array_append_new(r->headers, json_pack("[s#, s#]", p, klen, p + vstart, vend - vstart));
    return len;
}

static int header_ok(const char *s)
{
    return s && !strpbrk(s, "\r\n") && strlen(s) < 8192;
}

static char *b64encode(const struct buf *b)
{
    char *out = xmalloc(4 * ((b->len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)b->data, (int)b->len);
    return out;
}

static int b64decode(const char *in, struct buf *out)
{
    size_t n = strlen(in);
    if (n % 4 || n / 4 * 3 > MAX_REQUEST_BODY)
        return -1;
    buf_reserve(out, n / 4 * 3 + 1);
    int got = EVP_DecodeBlock((unsigned char *)out->data, (const unsigned char *)in, (int)n);
    if (got < 0)
        return -1;
    if (n >= 1 && in[n - 1] == '=')
        got--;
    if (n >= 2 && in[n - 2] == '=')
        got--;
    out->len = (size_t)got;
    out->data[out->len] = 0;
    return 0;
}

static char *perform(CURL *c, struct response *r, const char *url)
{
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_WRITE_ERROR && r->too_big)
        return http_err("error", "response from %s exceeded the size limit", url);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return http_err("timeout", "request to %s timed out", url);
    if (rc != CURLE_OK)
        return http_err("error", "request failed: %s", curl_easy_strerror(rc));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    char *body = b64encode(&r->body);
    json_t *j = json_pack("{s:s, s:i, s:O, s:s}", "t", "http_resp", "status", (json_int_t)status,
                          "headers", r->headers, "body_b64", body);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    explicit_bzero(body, strlen(body));
    free(body);
    return s;
}

static char *send_request(const struct broker_opts *o, json_t *req, const char *method,
                          const char *url, const struct ssrf_result *sr, long timeout_ms)
{
    struct buf body;
    struct response r = {.headers = json_array(), .max = o->max_response_bytes};
    struct curl_slist *hdrs = NULL;
    struct ssrf_target target;
    struct curluv_pin sockpin;
    char *reply = NULL;
    buf_init(&body);
    buf_init(&r.body);
    const char *b64 = json_string_value(json_object_get(req, "body_b64"));
    if (b64decode(b64 ? b64 : "", &body) != 0) {
        reply = http_err("error", "invalid request body%s", "");
        goto out;
    }
    json_t *hl = json_object_get(req, "headers");
    if (json_array_size(hl) > MAX_HEADERS) {
        reply = http_err("error", "too many request headers%s", "");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(hl); i++) {
        const char *k = json_string_value(json_array_get(json_array_get(hl, i), 0));
        const char *v = json_string_value(json_array_get(json_array_get(hl, i), 1));
        if (!header_ok(k) || !header_ok(v) || !*k || strchr(k, ':')) {
            reply = http_err("error", "invalid request header%s", "");
            goto out;
        }
        char *line = xasprintf("%s: %s", k, v);
        hdrs = curl_slist_append(hdrs, line);
        free(line);
    }
    char reason[300];
    if (ssrf_target_of(sr, &target, reason, sizeof reason) != 0) {
        reply = http_err("blocked", "blocked by SSRF guard: %s", reason);
        goto out;
    }
    if (curluv_pin_set(&sockpin, target.addr, strlen(target.addr), target.port) != 0) {
        reply = http_err("blocked", "blocked by SSRF guard: checked address %s cannot be pinned",
                         sr->addr);
        goto out;
    }
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curluv_pin_easy(c, &sockpin); /* a name curl resolves anew can reach no other address */
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body.len || !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_CONNECT_TO, ssrf_target_list(&target));
    httpc_harden(c, 1);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "calseta-workflow/1");
    reply = perform(c, &r, url);
    curl_easy_cleanup(c);
out:
    curl_slist_free_all(hdrs);
    buf_destroy_wiped(&body); /* requests and answers may carry tokens */
    buf_destroy_wiped(&r.body);
    json_decref(r.headers);
    return reply;
}

static int method_ok(const char *m)
{
    static const char *const ok[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};
    for (size_t i = 0; m && i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(m, ok[i]))
            return 1;
    return 0;
}

char *broker_http(const struct broker_opts *o, const char *req_json, int remaining_ms)
{
    json_t *req = json_loads(req_json, JSON_REJECT_DUPLICATES, NULL);
    const char *method = json_string_value(json_object_get(req, "method"));
    const char *url = json_string_value(json_object_get(req, "url"));
    struct ssrf_result sr;
    char *reply = NULL, reason[256];
    if (!method_ok(method) || !url || strlen(url) > MAX_URL) {
        reply = http_err("error", "invalid ctx.http request%s", "");
        goto out;
    }
    if (ssrf_check(url, o->allowed_hosts, o->allow_loopback ? SSRF_ALLOW_LOOPBACK : 0, &sr, reason,
                   sizeof reason) != 0) {
        reply = http_err("blocked", "blocked by SSRF guard: %s", reason);
        goto out;
    }
    double t = json_number_value(json_object_get(req, "timeout"));
    long timeout_ms = t > 0 && t < 3600 ? (long)(t * 1000) : 30000;
    if (timeout_ms > remaining_ms)
        timeout_ms = remaining_ms > 1 ? remaining_ms : 1;
    reply = send_request(o, req, method, url, &sr, timeout_ms);
out:
    json_decref(req);
    return reply;
}
