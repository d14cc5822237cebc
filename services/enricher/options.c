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

/* Defaults come from the settings table (libcommon/config/settings_table.c); the provider
 * defaults are read by provider_defaults_load(), shared with the intake. */
int enricher_options_load(struct enricher_options *o, const struct settings *s, char *err,
                          size_t errlen)
{
    memset(o, 0, sizeof *o);
    if (provider_defaults_load(&o->provider, &o->allow_loopback, s, err, errlen) ||
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
        setting_integer(s, "ENRICHER_IDLE_CONNECTIONS", 1, 65536, &o->idle_connections, err,
                        errlen) ||
        setting_integer(s, "ENRICHER_HOST_CONNECTIONS", 0, 65536, &o->host_connections, err,
                        errlen))
        return -1;
    return 0;
}
