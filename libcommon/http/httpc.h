/*
 * httpc.h - a tiny blocking HTTP client for start-up time calls (secrets backends).
 *
 * One request, one response, no redirects, http/https only, TLS peer and host verification
 * always on. The response body is capped (max_response) and every buffer that held response
 * bytes is wiped before it is freed, because these responses carry credentials and secrets.
 */
#ifndef CALSETA_HTTPC_H
#define CALSETA_HTTPC_H

#include <curl/curl.h>
#include <stddef.h>

struct httpc_request {
    const char *method; /* "GET", "PUT", "POST" */
    const char *url;
    const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
    const char *body;           /* may be NULL */
    size_t body_len;
    long timeout_ms;     /* whole request; 0 gives 10000 */
    size_t max_response; /* body cap in bytes; 0 gives 1 MiB */
    int no_proxy;        /* 1: never use a proxy (metadata endpoints) */
};

struct httpc_header {
    char *name;
    char *value;
};

struct httpc_response {
    long status;
    char *body; /* NUL-terminated; body_len excludes the NUL */
    size_t body_len;
    struct httpc_header *headers;
    size_t nheaders;
};

/*
 * Performs the request. 0 when an HTTP response arrived (any status), -1 on a transport
 * error (connect, TLS, timeout, response too large) with a reason in err.
 * resp must be released with httpc_response_destroy() in both cases.
 */
int httpc_perform(const struct httpc_request *req, struct httpc_response *resp, char *err,
                  size_t errlen);
/* Last value of a response header (case-insensitive name), or NULL. */
const char *httpc_response_header(const struct httpc_response *resp, const char *name);
/* Wipes and frees everything the response holds. */
void httpc_response_destroy(struct httpc_response *resp);

struct httpc_url {
    char *scheme;  /* lower case: "http" or "https" */
    char *host;    /* as written; IPv6 in brackets */
    char *port;    /* explicit port as written, or "" */
    long port_num; /* explicit or the scheme's default */
    char *path;    /* "/" when absent */
    char *query;   /* "" when absent */
};
/* Parses an absolute http(s) URL without user info or fragment. 0 or -1 with err. */
int httpc_url_parse(const char *url, struct httpc_url *u, char *err, size_t errlen);
void httpc_url_destroy(struct httpc_url *u);
/* 1 for localhost, 127.0.0.0/8 and [::1]. */
int httpc_host_is_loopback(const char *host);
/* 1 when a and b have the same scheme, host (case-insensitive) and port. */
int httpc_url_same_origin(const struct httpc_url *a, const struct httpc_url *b);

/*
 * The options every outgoing request of ours carries, set in this one place: http and https
 * only (redirect targets too, although redirects are never followed), no signals (the callers
 * run on threads and libuv loops), TLS peer and host verified. no_proxy 1 disables any proxy,
 * which requests pinned to an address the SSRF guard checked must do: a proxy would resolve the
 * host itself. Callers add URL, method, headers, body, callbacks and timeouts.
 */
void httpc_harden(CURL *h, int no_proxy);

/* curl_slist_free_all() that zeroes every entry first: header lists of ours carry credentials
 * and signatures. NULL is fine. */
void httpc_slist_free_wiped(struct curl_slist *l);

/* Percent-encodes everything but RFC 3986 unreserved characters. Caller frees. */
char *httpc_escape(const char *s);

#endif
