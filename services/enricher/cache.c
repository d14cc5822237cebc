/*
 * cache.c - bounded in-process result cache: chained hash table plus an age list.
 */
#include "cache.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct entry {
    char *key;
    size_t keylen;
    uint64_t hash;
    json_t *result;
    size_t weight;
    uint64_t expires_ms;
    struct entry *next;          /* bucket chain */
    struct entry *older, *newer; /* age list */
};

struct cache {
    struct entry **buckets;
    size_t nbuckets;
    size_t size;
    size_t max;
    size_t bytes, max_bytes;
    struct entry *oldest, *newest;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* provider \x1f type \x1f value: the separator cannot appear in provider or type names. */
static char *make_key(const char *p, const char *t, const char *v, size_t *len)
{
    char *k = xasprintf("%s\x1f%s\x1f%s", p, t, v);
    *len = strlen(p) + strlen(t) + strlen(v) + 2;
    return k;
}

struct cache *cache_new(size_t max_entries, size_t max_bytes)
{
    struct cache *c = xcalloc(1, sizeof *c);
    c->max = max_entries ? max_entries : 1;
    c->max_bytes = max_bytes ? max_bytes : 1;
    c->nbuckets = 1;
    while (c->nbuckets < c->max)
        c->nbuckets <<= 1;
    c->buckets = xcalloc(c->nbuckets, sizeof *c->buckets);
    /* A large table comes as untouched zero pages: the first lookup in each page maps the
     * shared zero page and the first insert copies it, two faults (and TLB flushes on every
     * core the process runs on) while the worker is busiest. Touch every page once now. */
    for (size_t i = 0; i < c->nbuckets; i += 4096 / sizeof *c->buckets)
        ((struct entry *volatile *)c->buckets)[i] = NULL;
    return c;
}

static void unlink_entry(struct cache *c, struct entry *e)
{
    struct entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    json_decref(e->result);
    c->bytes -= e->weight;
    free(e->key);
    free(e);
    c->size--;
}

void cache_clear(struct cache *c)
{
    while (c->oldest)
        unlink_entry(c, c->oldest);
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    cache_clear(c);
    free(c->buckets);
    free(c);
}

static struct entry *lookup(struct cache *c, const char *key, size_t len, uint64_t h)
{
    for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && e->keylen == len && !memcmp(e->key, key, len))
            return e;
    return NULL;
}

json_t *cache_get(struct cache *c, const char *provider, const char *type, const char *value,
                  uint64_t now_ms)
{
    size_t len;
    char *key = make_key(provider, type, value, &len);
    uint64_t h = fnv1a(key, len);
    struct entry *e = lookup(c, key, len, h);
    free(key);
    if (!e)
        return NULL;
    if (e->expires_ms <= now_ms) {
        unlink_entry(c, e);
        return NULL;
    }
    return json_incref(e->result);
}

static void make_room(struct cache *c, size_t weight, uint64_t now_ms)
{
    if (c->size < c->max && c->bytes + weight <= c->max_bytes)
        return;
    for (struct entry *e = c->oldest, *n; e; e = n) {
        n = e->newer;
        if (e->expires_ms <= now_ms)
            unlink_entry(c, e);
    }
    while (c->oldest && (c->size >= c->max || c->bytes + weight > c->max_bytes))
        unlink_entry(c, c->oldest);
}

void cache_put(struct cache *c, const char *provider, const char *type, const char *value,
               json_t *result, size_t weight, uint64_t now_ms, int64_t ttl_ms)
{
    if (ttl_ms <= 0 || !result || weight > c->max_bytes / 4)
        return;
    size_t len;
    char *key = make_key(provider, type, value, &len);
    uint64_t h = fnv1a(key, len);
    struct entry *old = lookup(c, key, len, h);
    if (old)
        unlink_entry(c, old);
    make_room(c, weight, now_ms);
    struct entry *e = xcalloc(1, sizeof *e);
    e->weight = weight;
    c->bytes += weight;
    e->key = key;
    e->keylen = len;
    e->hash = h;
    e->result = json_incref(result);
    e->expires_ms = now_ms + (uint64_t)ttl_ms;
    size_t b = h & (c->nbuckets - 1);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    c->size++;
}

size_t cache_size(const struct cache *c)
{
    return c->size;
}
