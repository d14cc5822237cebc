/*
 * ssrf.c - the outbound URL guard (see ssrf.h).
 *
 * URL parsing: libcurl's URL API, the same parser the transfer will use, so tricks such as
 * "http://public@169.254.169.254/" or odd IPv4 spellings are judged as curl will read them.
 * Address rules: a table of IPv4 networks (first match wins, metadata addresses first) and
 * explicit IPv6 rules; IPv6 forms that embed an IPv4 address are judged by that address.
 */
#include "ssrf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "util.h"

/* ---- address classification ------------------------------------------------------------ */

struct net4 {
    uint32_t net;
    int bits;
    enum ssrf_addr_class cls;
};

#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

static const struct net4 nets4[] = {
    {IP4(169, 254, 169, 254), 32, SSRF_ADDR_METADATA}, /* AWS, GCP, Azure, OCI, DO ... */
    {IP4(169, 254, 170, 2), 32, SSRF_ADDR_METADATA},   /* ECS task credentials */
    {IP4(169, 254, 170, 23), 32, SSRF_ADDR_METADATA},  /* EKS pod identity */
    {IP4(100, 100, 100, 200), 32, SSRF_ADDR_METADATA}, /* Alibaba Cloud */
    {IP4(192, 0, 0, 192), 32, SSRF_ADDR_METADATA},     /* Oracle Cloud (legacy) */
    {IP4(168, 63, 129, 16), 32, SSRF_ADDR_METADATA},   /* Azure host endpoint (WireServer, DNS) */
    {IP4(0, 0, 0, 0), 8, SSRF_ADDR_RESERVED},          /* "this network", 0.0.0.0 */
    {IP4(10, 0, 0, 0), 8, SSRF_ADDR_PRIVATE},
    {IP4(100, 64, 0, 0), 10, SSRF_ADDR_PRIVATE}, /* carrier-grade NAT */
    {IP4(127, 0, 0, 0), 8, SSRF_ADDR_LOOPBACK},
    {IP4(169, 254, 0, 0), 16, SSRF_ADDR_LINKLOCAL},
    {IP4(172, 16, 0, 0), 12, SSRF_ADDR_PRIVATE},
    {IP4(192, 0, 0, 0), 24, SSRF_ADDR_RESERVED},   /* IETF protocol assignments */
    {IP4(192, 0, 2, 0), 24, SSRF_ADDR_RESERVED},   /* TEST-NET-1 */
    {IP4(192, 88, 99, 0), 24, SSRF_ADDR_RESERVED}, /* 6to4 relay anycast */
    {IP4(192, 168, 0, 0), 16, SSRF_ADDR_PRIVATE},
    {IP4(198, 18, 0, 0), 15, SSRF_ADDR_RESERVED},   /* benchmarking */
    {IP4(198, 51, 100, 0), 24, SSRF_ADDR_RESERVED}, /* TEST-NET-2 */
    {IP4(203, 0, 113, 0), 24, SSRF_ADDR_RESERVED},  /* TEST-NET-3 */
    {IP4(224, 0, 0, 0), 4, SSRF_ADDR_RESERVED},     /* multicast */
    {IP4(240, 0, 0, 0), 4, SSRF_ADDR_RESERVED},     /* reserved, broadcast */
};

static enum ssrf_addr_class class4(uint32_t a)
{
    for (size_t i = 0; i < sizeof nets4 / sizeof nets4[0]; i++) {
        uint32_t mask = nets4[i].bits == 32 ? 0xffffffffu : ~(0xffffffffu >> nets4[i].bits);
        if ((a & mask) == nets4[i].net)
            return nets4[i].cls;
    }
    return SSRF_ADDR_PUBLIC;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static enum ssrf_addr_class class6(const uint8_t b[16])
{
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const uint8_t aws_md[4] = {0xfd, 0x00, 0x0e, 0xc2};
    static const uint8_t gcp_md[16] = {0xfd, 0x20, 0x00, 0xce, [15] = 0x54, [14] = 0x02};
    static const uint8_t oci_md[16] = {0xfd, 0x00, 0x00, 0xc1, [12] = 0xa9, 0xfe, 0xa9, 0xfe};
    if (all_zero(b, 15))
        return b[15] == 1 ? SSRF_ADDR_LOOPBACK : SSRF_ADDR_RESERVED; /* ::1 or :: */
    if (all_zero(b, 10) && b[10] == 0xff && b[11] == 0xff)
        return class4(be32(b + 12)); /* ::ffff:a.b.c.d, IPv4-mapped */
    if (all_zero(b, 8) && b[8] == 0xff && b[9] == 0xff && !b[10] && !b[11])
        return class4(be32(b + 12)); /* ::ffff:0:a.b.c.d, IPv4-translated */
    if (!memcmp(b, nat64, 12))
        return class4(be32(b + 12)); /* 64:ff9b::a.b.c.d, NAT64 */
    if (all_zero(b, 12))
        return SSRF_ADDR_RESERVED; /* ::a.b.c.d, deprecated IPv4-compatible */
    if (!memcmp(b, aws_md, 4))
        return SSRF_ADDR_METADATA; /* fd00:ec2::/32: AWS IMDS, DNS, time, pod identity */
    if (!memcmp(b, gcp_md, 16) || !memcmp(b, oci_md, 16))
        return SSRF_ADDR_METADATA; /* GCP and Oracle Cloud IPv6 metadata servers */
    if ((b[0] & 0xfe) == 0xfc)
        return SSRF_ADDR_PRIVATE; /* fc00::/7 unique local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return SSRF_ADDR_LINKLOCAL; /* fe80::/10 */
    if ((b[0] & 0xe0) != 0x20)
        return SSRF_ADDR_RESERVED; /* outside 2000::/3: multicast, site-local, unassigned */
    if (b[0] == 0x20 && b[1] == 0x02) {
        enum ssrf_addr_class c = class4(be32(b + 2)); /* 2002::/16, 6to4 */
        return c;
    }
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02)
        return SSRF_ADDR_RESERVED; /* 2001::/23: Teredo, ORCHID, benchmarking, ... */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return SSRF_ADDR_RESERVED; /* 2001:db8::/32 documentation */
    if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0x00)
        return SSRF_ADDR_RESERVED; /* 3fff::/20 documentation */
    return SSRF_ADDR_PUBLIC;
}

enum ssrf_addr_class ssrf_addr_blocked(const struct sockaddr *sa)
{
    if (!sa)
        return SSRF_ADDR_RESERVED;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
        return class4(ntohl(s->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
        return class6(s->sin6_addr.s6_addr);
    }
    return SSRF_ADDR_RESERVED;
}

const char *ssrf_addr_class_name(enum ssrf_addr_class c)
{
    switch (c) {
    case SSRF_ADDR_PUBLIC:
        return "public";
    case SSRF_ADDR_LOOPBACK:
        return "loopback";
    case SSRF_ADDR_PRIVATE:
        return "private";
    case SSRF_ADDR_LINKLOCAL:
        return "link-local";
    case SSRF_ADDR_RESERVED:
        return "reserved";
    case SSRF_ADDR_METADATA:
        return "a cloud metadata endpoint";
    }
    return "unknown";
}

/* ---- host names ------------------------------------------------------------------------ */

/* Compares host (without its trailing dot) with name, case-insensitively. */
static int name_eq(const char *host, size_t hlen, const char *name)
{
    return strlen(name) == hlen && !strncasecmp(host, name, hlen);
}

static size_t strip_dot(const char *host)
{
    size_t n = strlen(host);
    return n > 0 && host[n - 1] == '.' ? n - 1 : n;
}

/* host equals sfx without its leading dot, or ends with sfx. */
static int has_suffix(const char *host, size_t n, const char *sfx)
{
    size_t s = strlen(sfx);
    if (n == s - 1 && !strncasecmp(host, sfx + 1, n))
        return 1;
    return n > s && !strncasecmp(host + n - s, sfx, s);
}

int ssrf_metadata_host(const char *host)
{
    static const char *const single[] = {"metadata", "instance-data"};
    static const char *const names[] = {
        "metadata.google.internal",   "metadata.goog",
        "instance-data.ec2.internal", "metadata.azure.com",
        "metadata.azure.internal",    "metadata.tencentyun.com",
        "metadata.packet.net",        "metadata.platformequinix.com"};
    if (!host)
        return 0;
    size_t n = strip_dot(host);
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++)
        if (name_eq(host, n, single[i]))
            return 1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char sub[64];
        snprintf(sub, sizeof sub, ".%s", names[i]);
        if (name_eq(host, n, names[i]) || has_suffix(host, n, sub))
            return 1;
    }
    return 0;
}

static int blocked_suffix(const char *host, const char **which)
{
    static const char *const sfx[] = {".internal", ".local", ".localhost",
                                      ".corp",     ".lan",   ".home.arpa"};
    size_t n = strip_dot(host);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
        if (has_suffix(host, n, sfx[i]) && !name_eq(host, n, "localhost")) {
            *which = sfx[i];
            return 1;
        }
    return 0;
}

/* Exact, case-insensitive membership in a comma list (spaces, brackets, trailing dots
 * ignored). */
static int allowlisted(const char *csv, const char *host)
{
    if (!csv || !*csv)
        return 0;
    size_t hn = strip_dot(host);
    const char *p = csv;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *z = end;
        while (a < z && isspace((unsigned char)*a))
            a++;
        while (z > a && isspace((unsigned char)z[-1]))
            z--;
        if (z > a && *a == '[' && z[-1] == ']') {
            a++;
            z--;
        }
        if (z > a && z[-1] == '.')
            z--;
        if ((size_t)(z - a) == hn && hn > 0 && !strncasecmp(a, host, hn))
            return 1;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* ---- the check ------------------------------------------------------------------------- */

static int block(char *reason, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int block(char *reason, size_t len, const char *fmt, ...)
{
    if (reason && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Scheme, host (lowercase, brackets removed) and port of url; 0 or -1 with reason. */
static int parse_url(const char *url, struct ssrf_result *out, char *reason, size_t rlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -1;
    if (!u)
        return block(reason, rlen, "out of memory");
    if (!url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        block(reason, rlen, "invalid URL");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        block(reason, rlen, "scheme not allowed (only http and https)");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
        block(reason, rlen, "hostname required");
        goto done;
    }
    /* A zone id (http://[fe80::1%25eth0]/) names a link, not a host: curl keeps it apart from
     * the host, so the address checked here would not say which link the request leaves on. */
    char *zone = NULL;
    CURLUcode zrc = curl_url_get(u, CURLUPART_ZONEID, &zone, 0);
    curl_free(zone);
    if (zrc == CURLUE_OK) {
        block(reason, rlen, "IPv6 zone ids are not allowed");
        goto done;
    }
    size_t n = strlen(host);
    const char *h = host;
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof out->host) {
        block(reason, rlen, n ? "hostname too long" : "hostname required");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        /* ASCII only: curl would turn an IDN into punycode and resolve a name we never saw */
        unsigned char c = (unsigned char)h[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '.' && c != '-' && c != '_' && c != ':') {
            block(reason, rlen, "hostname has characters other than letters, digits, '.-_'");
            goto done;
        }
        out->host[i] = (char)tolower(c);
    }
    out->host[n] = 0;
    long long pn = 0;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        parse_ll(port, 1, 65535, &pn) != 0) {
        block(reason, rlen, "invalid port");
        goto done;
    }
    out->port = (int)pn;
    rc = 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static int addr_passes(enum ssrf_addr_class c, int listed, unsigned flags)
{
    if (c == SSRF_ADDR_PUBLIC)
        return 1;
    if (c == SSRF_ADDR_LOOPBACK)
        return listed || (flags & SSRF_ALLOW_LOOPBACK);
    if (c == SSRF_ADDR_PRIVATE)
        return listed;
    return 0; /* metadata, link-local, reserved: never */
}

/* Resolves out->host and checks every address; pins the first IPv4 one (else the first). */
static int resolve_and_check(struct ssrf_result *out, int listed, unsigned flags, char *reason,
                             size_t rlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(out->host, NULL, &hints, &res);
    if (gai != 0 || !res) {
        if (res)
            freeaddrinfo(res);
        return block(reason, rlen, "DNS resolution failed for %s (%s)", out->host,
                     gai ? gai_strerror(gai) : "no addresses");
    }
    const struct addrinfo *pin = NULL;
    int rc = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN] = "?";
        if (ai->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, text, sizeof text);
        else if (ai->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, text,
                      sizeof text);
        enum ssrf_addr_class c = ssrf_addr_blocked(ai->ai_addr);
        if (!addr_passes(c, listed, flags)) {
            rc = block(reason, rlen, "address %s of %s is %s", text, out->host,
                       ssrf_addr_class_name(c));
            break;
        }
        if (!pin || (pin->ai_family != AF_INET && ai->ai_family == AF_INET)) {
            pin = ai;
            out->family = ai->ai_family;
            snprintf(out->addr, sizeof out->addr, "%s", text);
        }
    }
    freeaddrinfo(res);
    if (rc == 0 && !pin)
        return block(reason, rlen, "no usable address for %s", out->host);
    return rc;
}

int ssrf_check(const char *url, const char *allowed_hosts_csv, unsigned flags,
               struct ssrf_result *out, char *reason, size_t reasonlen)
{
    const char *sfx = NULL;
    memset(out, 0, sizeof *out);
    if (reason && reasonlen)
        reason[0] = 0;
    if (parse_url(url, out, reason, reasonlen) != 0)
        goto fail;
    if (ssrf_metadata_host(out->host)) {
        block(reason, reasonlen, "%s is a cloud metadata endpoint", out->host);
        goto fail;
    }
    int listed = allowlisted(allowed_hosts_csv, out->host);
    if (!listed && blocked_suffix(out->host, &sfx)) {
        block(reason, reasonlen, "hostname %s has a blocked suffix (%s)", out->host, sfx);
        goto fail;
    }
    if (resolve_and_check(out, listed, flags, reason, reasonlen) != 0)
        goto fail;
    return 0;
fail:
    memset(out, 0, sizeof *out);
    return -1;
}

/* ---- the connection target --------------------------------------------------------------- */

int ssrf_target_of(const struct ssrf_result *r, struct ssrf_target *t, char *reason,
                   size_t reasonlen)
{
    int n = 0;
    memset(t, 0, sizeof *t);
    size_t hlen = strnlen(r->host, sizeof r->host), alen = strnlen(r->addr, sizeof r->addr);
    if (!hlen || hlen == sizeof r->host || !alen || alen >= sizeof t->addr || r->port <= 0 ||
        r->port > 65535 || (r->family != AF_INET && r->family != AF_INET6)) {
        block(reason, reasonlen, "cannot pin the checked address of %.*s", (int)hlen, r->host);
        goto fail;
    }
    memcpy(t->addr, r->addr, alen);
    t->port = r->port;
    if (memchr(r->host, ':', hlen)) /* an IPv6 literal: curl connects to the address it names */
        return 0;
    n = snprintf(t->connect_to, sizeof t->connect_to,
                 r->family == AF_INET6 ? "%.*s:%d:[%s]:%d" : "%.*s:%d:%s:%d", (int)hlen, r->host,
                 r->port, t->addr, r->port);
    if (n < 0 || (size_t)n >= sizeof t->connect_to) {
        block(reason, reasonlen, "cannot pin the checked address of %.*s: too long", (int)hlen,
              r->host);
        goto fail;
    }
    return 0;
fail:
    memset(t, 0, sizeof *t);
    return -1;
}

struct curl_slist *ssrf_target_list(struct ssrf_target *t)
{
    if (!t->connect_to[0])
        return NULL;
    t->node.data = t->connect_to;
    t->node.next = NULL;
    return &t->node;
}
