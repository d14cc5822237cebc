/*
 * keycache.h - the API-key rows an intake process authenticates from, held in memory.
 *
 * One record per key prefix seen: either the active key's row (id, bcrypt hash, scopes,
 * allowed sources, expiry, per-key limit, and the SHA-256 digests of tokens that already passed
 * bcrypt in this process) or "no active key has this prefix" (the negative cache). Records are
 * kept current by the calseta_api_keys notifications (every insert, change and delete of a key
 * announces its prefix; the record is re-read at once and requests wait for that re-read), and by
 * a background re-read of every record each AUTH_KEY_REFRESH_SECONDS in case a notification was
 * lost. A (re)established LISTEN connection makes every record stale.
 *
 * The struct auth_cache of intake.h is this cache (auth_cache_new/free/invalidate).
 */
#ifndef CALSETA_KEYCACHE_H
#define CALSETA_KEYCACHE_H

#include <jansson.h>
#include <stdint.h>

struct auth_cache;
struct intake;

struct key_rec {
    char prefix[9];
    int present; /* 0: no active key has this prefix */
    int64_t id;
    char *hash;
    json_t *scopes;          /* array of strings */
    json_t *allowed_sources; /* NULL = unrestricted */
    int64_t expires_ms;      /* wall clock, 0 = never */
    int rate_limit;          /* per-key limit per minute, 0 = the route's default */
    void *verifying;         /* auth.c: verifications of tokens of this key in flight */
};

/* cb gets the current record of prefix, read from the database first when this process does
 * not know it or a change was announced; err (and k == NULL) when it could not be read. k is
 * valid during the callback only, unless held. May run before keycache_get() returns. */
typedef void (*keycache_cb)(void *arg, struct key_rec *k, const char *err);
void keycache_get(struct auth_cache *c, const char *prefix, keycache_cb cb, void *arg);

/* Keeps k allocated (not its contents current) until keycache_release(). */
void keycache_hold(struct key_rec *k);
void keycache_release(struct auth_cache *c, struct key_rec *k);

/* 1 if a token with this SHA-256 digest passed bcrypt against k's current hash in this process
 * (always 0 with AUTH_CACHE_TTL_SECONDS=0: every request pays bcrypt). A verification lasts as
 * long as the key's hash: rows are kept current, so time adds nothing to it. */
int keycache_verified(struct auth_cache *c, const struct key_rec *k, const uint8_t digest[32]);
/* Remembers that the token with this digest matches hash (ignored when k's hash changed). */
void keycache_add_verified(struct auth_cache *c, struct key_rec *k, const uint8_t digest[32],
                           const char *hash);

/* Stops the refresh timer (drain). */
void keycache_stop(struct auth_cache *c);

#endif
