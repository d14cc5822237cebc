/*
 * options.c - the enricher's own settings (those struct config does not carry), read once
 * through the merged settings and validated with a message naming the variable.
 */
#include "enricher.h"
#include "settings.h"
#include "settings_table.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Defaults come from the settings table (libcommon/config/settings_table.c). */
static int get_rate(const struct settings *s, const char *name, double *out, char *err,
                    size_t errlen)
{
    const char *v = setting_value(s, name);
    char *end;
    double d = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(d > 0) || d > 100000) {
        snprintf(err, errlen, "%s must be a number above 0 and at most 100000 (got \"%s\")", name,
                 v ? v : "");
        return -1;
    }
    *out = d;
    return 0;
}

int enricher_options_load(struct enricher_options *o, const struct settings *s, char *err,
                          size_t errlen)
{
    memset(o, 0, sizeof *o);
    if (setting_bool(s, "ENRICHER_ALLOW_LOOPBACK", &o->allow_loopback, err, errlen) ||
        setting_bool(s, "ENRICHMENT_MOCK_MODE", &o->provider.mock_mode, err, errlen) ||
        setting_bool(s, "ENRICHER_PROVIDER_RATE_GLOBAL", &o->rate_global, err, errlen) ||
        setting_integer(s, "ENRICH_JOB_MAX_ATTEMPTS", 1, 1000, &o->max_attempts, err, errlen) ||
        setting_integer(s, "ENRICHER_POLL_INTERVAL_MS", 50, 600000, &o->poll_ms, err, errlen) ||
        setting_integer(s, "ENRICHER_PROVIDER_RELOAD_SECONDS", 1, 86400, &o->reload_s, err,
                        errlen) ||
        setting_integer(s, "ENRICHER_CACHE_ENTRIES", 1, 10000000, &o->cache_entries, err, errlen) ||
        setting_ll(s, "ENRICHER_CACHE_MAX_BYTES", 4096, 64LL << 30, &o->cache_bytes, err, errlen) ||
        setting_ll(s, "ENRICHER_MAX_RESPONSE_BYTES", 1024, 64LL << 20, &o->max_response, err,
                   errlen) ||
        setting_integer(s, "ENRICHER_DB_CONNECTIONS", 1, 64, &o->db_connections, err, errlen) ||
        setting_integer(s, "ENRICHER_PROVIDER_MAX_CONCURRENCY", 1, 1000,
                        &o->provider.max_concurrency, err, errlen) ||
        get_rate(s, "ENRICHER_PROVIDER_RATE_PER_SECOND", &o->provider.rate_per_second, err,
                 errlen) ||
        setting_integer(s, "ENRICHER_PROVIDER_TIMEOUT_SECONDS", 1, 600,
                        &o->provider.timeout_seconds, err, errlen))
        return -1;
    return 0;
}
