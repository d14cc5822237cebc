/*
 * cache.h - the in-process layer of the enrichment cache.
 *
 * Keyed by (provider, indicator type, indicator value); holds successful results only, each
 * with its own expiry (the provider's TTL for the type). Bounded in entries and in bytes (each
 * entry is weighed by the caller, e.g. its serialised size): when full, expired entries go
 * first, then the oldest. The shared layer lives in PostgreSQL (enrichment_cache, written in
 * the job's completing transaction and read in one query per job, see job.c); this layer saves
 * that query for hot indicators. Time is passed in (monotonic ms) so tests can drive it.
 */
#ifndef ENRICHER_CACHE_H
#define ENRICHER_CACHE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct cache;

struct cache *cache_new(size_t max_entries, size_t max_bytes);
void cache_free(struct cache *c);
/* New reference to the cached result, or NULL (absent or expired). */
json_t *cache_get(struct cache *c, const char *provider, const char *type, const char *value,
                  uint64_t now_ms);
/* Stores a reference to result until now_ms + ttl_ms (ttl_ms <= 0, or a weight above a quarter
 * of max_bytes: not stored). */
void cache_put(struct cache *c, const char *provider, const char *type, const char *value,
               json_t *result, size_t weight, uint64_t now_ms, int64_t ttl_ms);
/* Drops everything (provider configuration changed). */
void cache_clear(struct cache *c);
size_t cache_size(const struct cache *c);

#endif
