/*
 * ssrfcache.c - per host:port cache of SSRF check results, see ssrfcache.h.
 */
#include "ssrfcache.h"
#include "util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY_MAX 272 /* host (255) + ":65535" */
#define REASON_MAX 256
#define ORIGIN_MAX 288 /* "https://" + KEY_MAX */
#define MEMO_MAX 16

struct ssrf_entry {
    char key[KEY_MAX];
    struct ssrf_target target; /* allowed: where the check lets the connection go */
    char reason[REASON_MAX];
    int blocked;
    uint64_t expires_ms; /* 0: free slot */
};

/* "scheme://authority" as written in a URL, and its key */
struct key_memo {
    char origin[ORIGIN_MAX];
    char key[KEY_MAX];
};

struct ssrf_cache {
    struct ssrf_entry *e;
    size_t n;
    uint64_t ttl_ms, blocked_ttl_ms;
    struct key_memo memo[MEMO_MAX];
    size_t nmemo, next_memo;
};

struct ssrf_cache *ssrf_cache_new(size_t max_entries, uint64_t ttl_ms, uint64_t blocked_ttl_ms)
{
    struct ssrf_cache *c = xcalloc(1, sizeof *c);
    c->n = max_entries ? max_entries : 1;
    c->e = xcalloc(c->n, sizeof *c->e);
    c->ttl_ms = ttl_ms;
    c->blocked_ttl_ms = blocked_ttl_ms;
    return c;
}

void ssrf_cache_free(struct ssrf_cache *c)
{
    if (!c)
        return;
    free(c->e);
    free(c);
}

/* Host as the guard sees it: ASCII letters, digits, '.', '-', '_', or an IPv6 literal in
 * brackets (hex digits, ':' and '.'). A URL with a zone id has no key (ssrf_cache_key), and the
 * guard refuses it. */
static int host_ok(const char *h, size_t n)
{
    if (n == 0 || n > 255)
        return 0;
    if (h[0] == '[') {
        if (n < 4 || h[n - 1] != ']')
            return 0;
        for (size_t i = 1; i + 1 < n; i++) {
            unsigned char ch = (unsigned char)h[i];
            int hex =
                (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
            if (!hex && ch != ':' && ch != '.')
                return 0;
        }
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        int alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!alpha && !(ch >= '0' && ch <= '9') && ch != '.' && ch != '-' && ch != '_')
            return 0;
    }
    return 1;
}

int ssrf_cache_key(const char *url, char *key, size_t keylen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    long long pn;
    int rc = -1;
    if (!u || !url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0))
        goto done;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host_ok(host, strlen(host)))
        goto done;
    char *zone = NULL; /* curl keeps a zone id apart from the host: the key would drop it */
    CURLUcode zrc = curl_url_get(u, CURLUPART_ZONEID, &zone, 0);
    curl_free(zone);
    if (zrc == CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        parse_ll(port, 1, 65535, &pn) != 0)
        goto done;
    int n = snprintf(key, keylen, "%s:%lld", host, pn);
    if (n < 0 || (size_t)n >= keylen)
        goto done;
    for (char *p = key; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    rc = 0;
done:
    if (rc != 0 && key && keylen)
        key[0] = 0;
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static struct ssrf_entry *find(struct ssrf_cache *c, const char *key, uint64_t now_ms)
{
    for (size_t i = 0; i < c->n; i++) {
        struct ssrf_entry *e = &c->e[i];
        if (e->expires_ms && e->expires_ms <= now_ms)
            e->expires_ms = 0; /* expired: free the slot */
        if (e->expires_ms && !strcmp(e->key, key))
            return e;
    }
    return NULL;
}

static void copy(char *dst, size_t len, const char *src)
{
    if (len)
        snprintf(dst, len, "%s", src ? src : "");
}

/* 1 if the key "[v6]:port" names the IPv6 address addr (compared as addresses, not text). */
static int literal_is(const char *key, size_t hostlen, const char *addr)
{
    char lit[INET6_ADDRSTRLEN];
    struct in6_addr a, b;
    if (hostlen < 4 || key[0] != '[' || key[hostlen - 1] != ']' || hostlen - 2 >= sizeof lit)
        return 0;
    memcpy(lit, key + 1, hostlen - 2);
    lit[hostlen - 2] = 0;
    return inet_pton(AF_INET6, lit, &a) == 1 && inet_pton(AF_INET6, addr, &b) == 1 &&
           memcmp(&a, &b, sizeof a) == 0;
}

/* 1 if t is a target for exactly key's host and port: its connect-to entry is
 * "key:addr:port" for its own address and port, or, for an IPv6 literal key (curl connects to
 * the literal as named, so there is no entry), its address is the literal's. */
static int target_fits(const char *key, size_t kn, const struct ssrf_target *t)
{
    struct in6_addr a6;
    struct in_addr a4;
    char want[sizeof t->connect_to];
    const char *colon = key + kn;
    while (colon > key && colon[-1] != ':')
        colon--;
    long long port;
    if (!t || colon == key || parse_ll(colon, 1, 65535, &port) != 0 || port != t->port ||
        strnlen(t->addr, sizeof t->addr) == sizeof t->addr)
        return 0;
    int v6 = inet_pton(AF_INET6, t->addr, &a6) == 1;
    if (!v6 && inet_pton(AF_INET, t->addr, &a4) != 1)
        return 0;
    if (!t->connect_to[0])
        return v6 && literal_is(key, (size_t)(colon - 1 - key), t->addr);
    int n = snprintf(want, sizeof want, v6 ? "%s:[%s]:%d" : "%s:%s:%d", key, t->addr, t->port);
    return n > 0 && (size_t)n < sizeof want && !strcmp(want, t->connect_to);
}

int ssrf_cache_target_fits(const char *key, const struct ssrf_target *t)
{
    return key && target_fits(key, strlen(key), t);
}

enum ssrf_cache_hit ssrf_cache_get(struct ssrf_cache *c, const char *key, uint64_t now_ms,
                                   struct ssrf_target *t, char *reason, size_t reasonlen)
{
    if (!key || !key[0])
        return SSRF_CACHE_MISS;
    struct ssrf_entry *e = find(c, key, now_ms);
    if (!e)
        return SSRF_CACHE_MISS;
    if (e->blocked) {
        copy(reason, reasonlen, e->reason);
        return SSRF_CACHE_BLOCKED;
    }
    *t = e->target;
    t->node.data = NULL; /* ssrf_target_list() points it into the caller's copy */
    t->node.next = NULL;
    return SSRF_CACHE_ALLOWED;
}

int ssrf_cache_put(struct ssrf_cache *c, const char *key, uint64_t now_ms, int blocked,
                   const struct ssrf_target *t, const char *reason)
{
    size_t kn = key ? strlen(key) : 0;
    uint64_t ttl = blocked ? c->blocked_ttl_ms : c->ttl_ms;
    if (kn == 0 || kn >= KEY_MAX || ttl == 0)
        return 0;
    if (!blocked && !target_fits(key, kn, t))
        return 0; /* the target must be for exactly this host:port */
    struct ssrf_entry *e = find(c, key, now_ms);
    if (!e) {
        e = &c->e[0];
        for (size_t i = 0; i < c->n; i++) {
            if (!c->e[i].expires_ms) {
                e = &c->e[i];
                break;
            }
            if (c->e[i].expires_ms < e->expires_ms)
                e = &c->e[i];
        }
    }
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, kn + 1);
    e->blocked = blocked ? 1 : 0;
    if (blocked) {
        copy(e->reason, sizeof e->reason, reason);
    } else {
        e->target = *t;
        e->target.node.data = NULL;
        e->target.node.next = NULL;
    }
    e->expires_ms = now_ms + ttl;
    return 1;
}

size_t ssrf_cache_count(const struct ssrf_cache *c, uint64_t now_ms)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].expires_ms > now_ms)
            k++;
    return k;
}

/* Length of the "scheme://authority" that starts url when it is plain enough to stand for the
 * whole URL's host and port: a letters-only scheme and an authority of host-name characters and
 * ':' only (no userinfo, brackets, percent or backslash, nothing curl could read another way),
 * ended by '/', '?', '#' or the end. 0 otherwise. */
static size_t plain_origin(const char *url)
{
    size_t i = 0;
    while ((url[i] >= 'a' && url[i] <= 'z') || (url[i] >= 'A' && url[i] <= 'Z'))
        i++;
    if (i == 0 || strncmp(url + i, "://", 3) != 0)
        return 0;
    i += 3;
    size_t start = i;
    for (;; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch == 0 || ch == '/' || ch == '?' || ch == '#')
            break;
        int alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '.' && ch != '-' && ch != '_' && ch != ':')
            return 0;
    }
    return i > start && i < ORIGIN_MAX ? i : 0;
}

int ssrf_cache_key_of(struct ssrf_cache *c, const char *url, char *key, size_t keylen)
{
    size_t on = url ? plain_origin(url) : 0;
    for (size_t i = 0; on && i < c->nmemo; i++) {
        struct key_memo *m = &c->memo[i];
        if (!strncmp(m->origin, url, on) && m->origin[on] == 0) {
            size_t kn = strlen(m->key);
            if (kn >= keylen)
                break;
            memcpy(key, m->key, kn + 1);
            return 0;
        }
    }
    if (ssrf_cache_key(url, key, keylen) != 0)
        return -1;
    if (on && strlen(key) < KEY_MAX) {
        struct key_memo *m = &c->memo[c->next_memo];
        memcpy(m->origin, url, on);
        m->origin[on] = 0;
        memcpy(m->key, key, strlen(key) + 1);
        c->next_memo = (c->next_memo + 1) % MEMO_MAX;
        if (c->nmemo < MEMO_MAX)
            c->nmemo++;
    }
    return 0;
}
