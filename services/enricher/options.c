/*
 * options.c - the enricher's own settings (those struct config does not carry), read once
 * through the merged settings and validated with a message naming the variable.
 */
#include "enricher.h"
#include "settings.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int get_ll(const struct settings *s, const char *name, long long def, long long lo,
                  long long hi, long long *out, char *err, size_t errlen)
{
    const char *v = settings_get(s, name);
    *out = def;
    if (v && *v && parse_ll(v, lo, hi, out) != 0) {
        snprintf(err, errlen, "%s must be an integer between %lld and %lld (got \"%s\")", name, lo,
                 hi, v);
        return -1;
    }
    return 0;
}

static int get_int(const struct settings *s, const char *name, int def, int lo, int hi, int *out,
                   char *err, size_t errlen)
{
    long long v;
    if (get_ll(s, name, def, lo, hi, &v, err, errlen))
        return -1;
    *out = (int)v;
    return 0;
}

static int get_bool(const struct settings *s, const char *name, int *out, char *err, size_t errlen)
{
    const char *v = settings_get(s, name);
    *out = 0;
    if (!v || !*v || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no"))
        return 0;
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")) {
        *out = 1;
        return 0;
    }
    snprintf(err, errlen, "%s must be true or false (got \"%s\")", name, v);
    return -1;
}

static int get_rate(const struct settings *s, const char *name, double def, double *out, char *err,
                    size_t errlen)
{
    const char *v = settings_get(s, name);
    *out = def;
    if (!v || !*v)
        return 0;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d > 0) || d > 100000) {
        snprintf(err, errlen, "%s must be a number above 0 and at most 100000 (got \"%s\")", name,
                 v);
        return -1;
    }
    *out = d;
    return 0;
}

int enricher_options_load(struct enricher_options *o, const struct settings *s, char *err,
                          size_t errlen)
{
    memset(o, 0, sizeof *o);
    if (get_bool(s, "ENRICHER_ALLOW_LOOPBACK", &o->allow_loopback, err, errlen) ||
        get_bool(s, "ENRICHMENT_MOCK_MODE", &o->provider.mock_mode, err, errlen) ||
        get_int(s, "ENRICH_JOB_MAX_ATTEMPTS", 5, 1, 1000, &o->max_attempts, err, errlen) ||
        get_int(s, "ENRICHER_POLL_INTERVAL_MS", 2000, 50, 600000, &o->poll_ms, err, errlen) ||
        get_int(s, "ENRICHER_PROVIDER_RELOAD_SECONDS", 300, 1, 86400, &o->reload_s, err, errlen) ||
        get_int(s, "ENRICHER_CACHE_ENTRIES", 10000, 1, 10000000, &o->cache_entries, err, errlen) ||
        get_ll(s, "ENRICHER_CACHE_MAX_BYTES", 64LL << 20, 4096, 64LL << 30, &o->cache_bytes, err,
               errlen) ||
        get_ll(s, "ENRICHER_MAX_RESPONSE_BYTES", 1048576, 1024, 64LL << 20, &o->max_response, err,
               errlen) ||
        get_int(s, "ENRICHER_DB_CONNECTIONS", 4, 1, 64, &o->db_connections, err, errlen) ||
        get_int(s, "ENRICHER_PROVIDER_MAX_CONCURRENCY", 4, 1, 1000, &o->provider.max_concurrency,
                err, errlen) ||
        get_rate(s, "ENRICHER_PROVIDER_RATE_PER_SECOND", 10, &o->provider.rate_per_second, err,
                 errlen) ||
        get_int(s, "ENRICHER_PROVIDER_TIMEOUT_SECONDS", 30, 1, 600, &o->provider.timeout_seconds,
                err, errlen))
        return -1;
    return 0;
}
