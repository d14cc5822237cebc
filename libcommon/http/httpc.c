/*
 * httpc.c - blocking libcurl easy wrapper used only at start-up (secrets backends).
 *
 * Response bytes are collected into a buffer that never leaves a copy behind: growth is
 * allocate-copy-wipe-free instead of realloc, and destroy wipes before freeing.
 */
#include "httpc.h"
#include "util.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sink {
    struct httpc_response *resp;
    size_t cap;
    size_t max;
    int too_large;
};

static void wipe_free(void *p, size_t n)
{
    if (!p)
        return;
    explicit_bzero(p, n);
    free(p);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *k = arg;
    struct httpc_response *r = k->resp;
    size_t n = size * nmemb;
    if (n > k->max || r->body_len > k->max - n) {
        k->too_large = 1;
        return 0;
    }
    if (r->body_len + n + 1 > k->cap) {
        size_t cap = k->cap ? k->cap : 4096;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *nb = xmalloc(cap);
        if (r->body_len)
            memcpy(nb, r->body, r->body_len);
        wipe_free(r->body, k->cap);
        r->body = nb;
        k->cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return n;
}

static void headers_clear(struct httpc_response *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        wipe_free(r->headers[i].name, strlen(r->headers[i].name));
        wipe_free(r->headers[i].value, strlen(r->headers[i].value));
    }
    free(r->headers);
    r->headers = NULL;
    r->nheaders = 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct httpc_response *r = ((struct sink *)arg)->resp;
    size_t n = size * nmemb;
    if (n >= 5 && !memcmp(data, "HTTP/", 5)) {
        headers_clear(r); /* a new response (after 100 Continue) starts over */
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon || colon == data)
        return n;
    const char *v = colon + 1, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    r->headers = xrealloc(r->headers, (r->nheaders + 1) * sizeof *r->headers);
    r->headers[r->nheaders].name = xstrndup(data, (size_t)(colon - data));
    r->headers[r->nheaders].value = xstrndup(v, (size_t)(end - v));
    r->nheaders++;
    return n;
}

static struct curl_slist *build_headers(const struct httpc_request *req)
{
    /* Suppress curl's defaults that could change what the server sees (and signs). */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    h = curl_slist_append(h, "Accept:");
    for (const char *const *p = req->headers; p && *p; p++)
        h = curl_slist_append(h, *p);
    return h;
}

static void set_options(CURL *c, const struct httpc_request *req, struct curl_slist *hdrs,
                        struct sink *k, char *ebuf)
{
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    if (!strcmp(req->method, "GET"))
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    if (req->body || strcmp(req->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, k);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 10000L);
    httpc_harden(c, req->no_proxy);
}

void httpc_harden(CURL *h, int no_proxy)
{
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (no_proxy)
        curl_easy_setopt(h, CURLOPT_PROXY, "");
}

int httpc_perform(const struct httpc_request *req, struct httpc_response *resp, char *err,
                  size_t errlen)
{
    memset(resp, 0, sizeof *resp);
    struct sink k = {resp, 0, req->max_response ? req->max_response : (size_t)1 << 20, 0};
    char ebuf[CURL_ERROR_SIZE] = "";
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return -1;
    }
    struct curl_slist *hdrs = build_headers(req);
    set_options(c, req, hdrs, &k, ebuf);
    CURLcode rc = curl_easy_perform(c);
    int ret = 0;
    if (k.too_large) {
        snprintf(err, errlen, "response from %s larger than %zu bytes", req->method, k.max);
        ret = -1;
    } else if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
        ret = -1;
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    }
    if (!resp->body)
        resp->body = xcalloc(1, 1);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return ret;
}

const char *httpc_response_header(const struct httpc_response *resp, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < resp->nheaders; i++)
        if (!strcasecmp(resp->headers[i].name, name))
            v = resp->headers[i].value;
    return v;
}

void httpc_response_destroy(struct httpc_response *resp)
{
    if (resp->body)
        wipe_free(resp->body, resp->body_len);
    headers_clear(resp);
    memset(resp, 0, sizeof *resp);
}

char *httpc_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = xmalloc(strlen(s) * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = 0;
    return out;
}

static char *url_part(CURLU *h, CURLUPart what, unsigned flags)
{
    char *v = NULL;
    if (curl_url_get(h, what, &v, flags) != CURLUE_OK || !v)
        return xstrdup("");
    char *r = xstrdup(v);
    curl_free(v);
    return r;
}

int httpc_url_parse(const char *url, struct httpc_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    CURLU *h = curl_url();
    if (!h || curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK) {
        snprintf(err, errlen, "not a valid absolute URL");
        curl_url_cleanup(h);
        return -1;
    }
    u->scheme = url_part(h, CURLUPART_SCHEME, 0);
    u->host = url_part(h, CURLUPART_HOST, 0);
    u->port = url_part(h, CURLUPART_PORT, 0);
    char *defport = url_part(h, CURLUPART_PORT, CURLU_DEFAULT_PORT);
    u->port_num = strtol(defport, NULL, 10);
    free(defport);
    u->path = url_part(h, CURLUPART_PATH, 0);
    u->query = url_part(h, CURLUPART_QUERY, 0);
    char *user = url_part(h, CURLUPART_USER, 0), *frag = url_part(h, CURLUPART_FRAGMENT, 0);
    int bad = *user || *frag;
    free(user);
    free(frag);
    curl_url_cleanup(h);
    if (!*u->path) {
        free(u->path);
        u->path = xstrdup("/");
    }
    if (strcmp(u->scheme, "http") && strcmp(u->scheme, "https")) {
        snprintf(err, errlen, "only http and https URLs are allowed");
        goto fail;
    }
    if (bad || !*u->host) {
        snprintf(err, errlen, "URL must have a host and no user info or fragment");
        goto fail;
    }
    return 0;
fail:
    httpc_url_destroy(u);
    return -1;
}

void httpc_url_destroy(struct httpc_url *u)
{
    free(u->scheme);
    free(u->host);
    free(u->port);
    free(u->path);
    free(u->query);
    memset(u, 0, sizeof *u);
}

int httpc_host_is_loopback(const char *host)
{
    if (!strcasecmp(host, "localhost") || !strcmp(host, "[::1]"))
        return 1;
    unsigned a, b, c, d;
    char tail;
    if (sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4)
        return a == 127 && b < 256 && c < 256 && d < 256;
    return 0;
}

int httpc_url_same_origin(const struct httpc_url *a, const struct httpc_url *b)
{
    return !strcmp(a->scheme, b->scheme) && !strcasecmp(a->host, b->host) &&
           a->port_num == b->port_num;
}

void httpc_slist_free_wiped(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}
