/*
 * ssrfcache.h - a small cache of SSRF check results (guard.h), per host and port.
 *
 * guard_check() resolves the host, so the engine runs it on the libuv thread pool; with every
 * lookup of a provider going to the same host that round trip is most of a lookup's cost. The
 * engine keeps one ssrf_cache on its loop thread (not thread-safe, no locking):
 *
 *   - the key is "host:port" exactly as the guard parses the URL (libcurl's URL parser, scheme
 *     http/https only, host lowercase, default port filled in; an IPv6 literal keeps its
 *     brackets, "[::1]:8080"); a URL that cannot be keyed that way is never served from the
 *     cache, so it gets the full check;
 *   - an allowed result is stored with the checked target (ssrf.h's struct ssrf_target: the
 *     CURLOPT_CONNECT_TO entry and the address the socket pin allows), and only when that target
 *     is for that same host:port: a hit hands back the address that was checked, so the
 *     connection still goes to exactly that address (no DNS rebinding);
 *   - a blocked result is stored too (shorter TTL): the cache can only keep a URL blocked,
 *     never let it through;
 *   - entries expire after their TTL; the table holds at most max_entries (the entry closest
 *     to expiry is evicted first).
 */
#ifndef ENRICHER_SSRFCACHE_H
#define ENRICHER_SSRFCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "ssrf.h"

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

/* 1 if t is a target for exactly key's host and port (what ssrf_cache_put stores), else 0. */
int ssrf_cache_target_fits(const char *key, const struct ssrf_target *t);

/* ALLOWED: *t filled with the checked target; BLOCKED: reason filled; MISS: nothing filled.
 * now_ms: a monotonic clock. */
enum ssrf_cache_hit ssrf_cache_get(struct ssrf_cache *c, const char *key, uint64_t now_ms,
                                   struct ssrf_target *t, char *reason, size_t reasonlen);

/* Stores a check result: t for an allowed one, reason for a blocked one. An allowed target that
 * is not for exactly key's host and port (its connect-to entry names another, or it has none
 * while key is no IPv6 literal of its address) is not stored. Returns 1 when stored. */
int ssrf_cache_put(struct ssrf_cache *c, const char *key, uint64_t now_ms, int blocked,
                   const struct ssrf_target *t, const char *reason);

/* Live (unexpired) entries. */
size_t ssrf_cache_count(const struct ssrf_cache *c, uint64_t now_ms);

#endif
