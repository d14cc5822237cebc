/*
 * ssrfcache.h - a small cache of SSRF check results (guard.h), per host and port.
 *
 * guard_check() resolves the host, so the engine runs it on the libuv thread pool; with every
 * lookup of a provider going to the same host that round trip is most of a lookup's cost. The
 * engine keeps one ssrf_cache on its loop thread (not thread-safe, no locking):
 *
 *   - the key is "host:port" exactly as the guard parses the URL (libcurl's URL parser, scheme
 *     http/https only, host lowercase, brackets removed, default port filled in); a URL that
 *     cannot be keyed that way is never served from the cache, so it gets the full check;
 *   - an allowed result is stored with its CURLOPT_RESOLVE pin, and only when the pin names
 *     that same host:port: a hit hands back the pinned address that was checked, so the
 *     connection still goes to exactly that address (no DNS rebinding); an IPv4 address
 *     literal resolves nothing and is stored with an empty pin (its address is the key's);
 *   - a blocked result is stored too (shorter TTL): the cache can only keep a URL blocked,
 *     never let it through;
 *   - entries expire after their TTL; the table holds at most max_entries (the entry closest
 *     to expiry is evicted first).
 */
#ifndef ENRICHER_SSRFCACHE_H
#define ENRICHER_SSRFCACHE_H

#include <stddef.h>
#include <stdint.h>

struct ssrf_cache;

enum ssrf_cache_hit { SSRF_CACHE_MISS = 0, SSRF_CACHE_ALLOWED, SSRF_CACHE_BLOCKED };

/* max_entries >= 1; ttl_ms for allowed results, blocked_ttl_ms for blocked ones. */
struct ssrf_cache *ssrf_cache_new(size_t max_entries, uint64_t ttl_ms, uint64_t blocked_ttl_ms);
void ssrf_cache_free(struct ssrf_cache *c);

/* The cache key of url ("host:port"). 0, or -1 when the URL is not cacheable. */
int ssrf_cache_key(const char *url, char *key, size_t keylen);

/* ssrf_cache_key(), remembered per "scheme://authority" prefix of plain URLs: the URLs of a
 * provider differ only after it (the indicator in the path or query), so the URL parser runs
 * once per origin instead of once per request. */
int ssrf_cache_key_of(struct ssrf_cache *c, const char *url, char *key, size_t keylen);

/* ALLOWED: pin filled (a "host:port:addr" entry for CURLOPT_RESOLVE); BLOCKED: reason filled;
 * MISS: nothing filled. now_ms: a monotonic clock. */
enum ssrf_cache_hit ssrf_cache_get(struct ssrf_cache *c, const char *key, uint64_t now_ms,
                                   char *pin, size_t pinlen, char *reason, size_t reasonlen);

/* Stores a check result. An allowed result whose pin does not start with "key:" is not
 * stored, except an empty pin for an IPv4 address literal key. Returns 1 when stored. */
int ssrf_cache_put(struct ssrf_cache *c, const char *key, uint64_t now_ms, int blocked,
                   const char *pin, const char *reason);

/* Live (unexpired) entries. */
size_t ssrf_cache_count(const struct ssrf_cache *c, uint64_t now_ms);

#endif
