/*
 * guard.c - the SSRF check of provider requests, see guard.h.
 *
 * Order: scheme http/https; a host is required; cloud-metadata names and addresses are always
 * blocked (an allowlist never bypasses that, fix 9); SSRF_ALLOWED_HOSTS (exact, case-insensitive)
 * skips the private-address checks; internal name suffixes are blocked; the host is resolved
 * and a DNS failure blocks (fails closed); every resolved address must be global (or loopback
 * when allow_loopback); the first one is pinned for the connection.
 */
#include "guard.h"
#include "extract.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

struct guard {
    char **allowed;
    size_t nallowed;
    int allow_loopback;
};

struct guard *guard_new(const char *allowed_hosts, int allow_loopback)
{
    struct guard *g = xcalloc(1, sizeof *g);
    g->allow_loopback = allow_loopback;
    char *copy = xstrdup(allowed_hosts ? allowed_hosts : "");
    for (char *save = NULL, *t = strtok_r(copy, ", \t", &save); t;
         t = strtok_r(NULL, ", \t", &save)) {
        g->allowed = xrealloc(g->allowed, (g->nallowed + 1) * sizeof *g->allowed);
        g->allowed[g->nallowed++] = xstrdup(t);
    }
    free(copy);
    return g;
}

void guard_free(struct guard *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nallowed; i++)
        free(g->allowed[i]);
    free(g->allowed);
    free(g);
}

/* Splits scheme://[userinfo@]host[:port][/...] into host (lower-cased) and port. */
static int parse_url(const char *url, char *host, size_t hostlen, int *port, char *reason,
                     size_t rlen)
{
    const char *p;
    if (!strncasecmp(url, "http://", 7)) {
        p = url + 7;
        *port = 80;
    } else if (!strncasecmp(url, "https://", 8)) {
        p = url + 8;
        *port = 443;
    } else {
        snprintf(reason, rlen, "scheme must be http or https");
        return -1;
    }
    size_t auth_len = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < auth_len; i++)
        if (p[i] == '@')
            at = p + i;
    if (at) {
        auth_len -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', auth_len);
        if (!he) {
            snprintf(reason, rlen, "malformed host");
            return -1;
        }
        p = he + 1;
    } else {
        he = p;
        while ((size_t)(he - hs) < auth_len && *he != ':')
            he++;
        p = he;
    }
    size_t n = (size_t)(he - hs);
    if (n == 0 || n >= hostlen) {
        snprintf(reason, rlen, "URL has no valid host");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        host[i] = (char)tolower((unsigned char)hs[i]);
    host[n] = 0;
    if (*p == ':') {
        long long v;
        char digits[8] = {0};
        size_t dn = strcspn(p + 1, "/?#");
        if (dn == 0 || dn >= sizeof digits) {
            snprintf(reason, rlen, "malformed port");
            return -1;
        }
        memcpy(digits, p + 1, dn);
        if (parse_ll(digits, 1, 65535, &v)) {
            snprintf(reason, rlen, "malformed port");
            return -1;
        }
        *port = (int)v;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int metadata_addr(int family, const unsigned char *a)
{
    static const unsigned char v4[][4] = {{169, 254, 169, 254}, {100, 100, 100, 200},
                                          {169, 254, 170, 2}};
    static const unsigned char aws6[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0,
                                           0,    0,    0,    0,    0, 0, 0x02, 0x54};
    if (family == AF_INET6) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(a, aws6, 16))
            return 1;
        if (memcmp(a, mapped, 12))
            return 0;
        a += 12;
    }
    for (size_t i = 0; i < sizeof v4 / sizeof v4[0]; i++)
        if (!memcmp(a, v4[i], 4))
            return 1;
    return 0;
}

static int loopback_addr(int family, const unsigned char *a)
{
    static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return family == AF_INET ? a[0] == 127 : !memcmp(a, one, 16);
}

static int check_addr(const struct guard *g, int family, const unsigned char *a, int allowlisted,
                      char *reason, size_t rlen)
{
    char txt[INET6_ADDRSTRLEN];
    inet_ntop(family, a, txt, sizeof txt);
    if (metadata_addr(family, a)) {
        snprintf(reason, rlen, "cloud metadata address %s", txt);
        return -1;
    }
    if (allowlisted || ip_bytes_global(family, a))
        return 0;
    if (g->allow_loopback && loopback_addr(family, a))
        return 0;
    snprintf(reason, rlen, "private or reserved address %s", txt);
    return -1;
}

int guard_check(const struct guard *g, const char *url, char *pin, size_t pinlen, char *reason,
                size_t rlen)
{
    char host[256];
    int port;
    pin[0] = 0;
    if (parse_url(url, host, sizeof host, &port, reason, rlen))
        return -1;
    size_t hl = strlen(host);
    if (hl && host[hl - 1] == '.')
        host[--hl] = 0;
    if (!strcmp(host, "metadata.google.internal") || !strcmp(host, "metadata.goog")) {
        snprintf(reason, rlen, "cloud metadata host %s", host);
        return -1;
    }
    int allowlisted = 0;
    for (size_t i = 0; i < g->nallowed; i++)
        if (!strcasecmp(g->allowed[i], host))
            allowlisted = 1;
    static const char *suffixes[] = {".internal", ".local", ".corp", ".lan", ".home.arpa"};
    for (size_t i = 0; !allowlisted && i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (ends_with(host, suffixes[i])) {
            snprintf(reason, rlen, "internal host name %s", host);
            return -1;
        }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(reason, rlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1; /* fail closed */
    }
    int verdict = 0;
    char first[INET6_ADDRSTRLEN] = "";
    int first_family = 0;
    for (struct addrinfo *ai = res; ai && verdict == 0; ai = ai->ai_next) {
        const unsigned char *a;
        if (ai->ai_family == AF_INET)
            a = (const unsigned char *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            a = (const unsigned char *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        else
            continue;
        verdict = check_addr(g, ai->ai_family, a, allowlisted, reason, rlen);
        if (verdict == 0 && !first[0]) {
            inet_ntop(ai->ai_family, a, first, sizeof first);
            first_family = ai->ai_family;
        }
    }
    freeaddrinfo(res);
    if (verdict != 0)
        return -1;
    if (!first[0]) {
        snprintf(reason, rlen, "no usable address for %s", host);
        return -1;
    }
    /* IP literals need no pin (curl connects to them as they are) */
    unsigned char tmp[16];
    if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1)
        return 0;
    snprintf(pin, pinlen, first_family == AF_INET6 ? "%s:%d:[%s]" : "%s:%d:%s", host, port, first);
    return 0;
}
