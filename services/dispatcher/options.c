/*
 * options.c - the dispatcher's settings, read once through the merged settings and validated
 * with a message naming the variable.
 */
#include "dispatcher.h"
#include "settings.h"
#include "settings_table.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Defaults come from the settings table (libcommon/config/settings_table.c). */
int dispatcher_options_load(struct dispatcher_options *o, const struct settings *s, char *err,
                            size_t errlen)
{
    memset(o, 0, sizeof *o);
    if (setting_integer(s, "DISPATCHER_CONCURRENCY", 1, 10000, &o->concurrency, err, errlen) ||
        setting_integer(s, "DISPATCHER_LEASE_SECONDS", 1, 3600, &o->lease_seconds, err, errlen) ||
        setting_integer(s, "DISPATCHER_POLL_INTERVAL_MS", 50, 600000, &o->poll_ms, err, errlen) ||
        setting_integer(s, "DISPATCHER_DB_CONNECTIONS", 1, 64, &o->db_connections, err, errlen) ||
        setting_ll(s, "AGENT_RESPONSE_MAX_BYTES", 256, 16LL << 20, &o->max_response, err, errlen) ||
        setting_bool(s, "AGENT_WEBHOOK_ALLOW_LOOPBACK", &o->allow_loopback, err, errlen))
        return -1;
    o->api_base_url = setting_dup(s, "CALSETA_API_BASE_URL");
    return 0;
}

void dispatcher_options_destroy(struct dispatcher_options *o)
{
    free(o->api_base_url);
    o->api_base_url = NULL;
}
