/*
 * options.c - the dispatcher's settings, read once through the merged settings and validated
 * with a message naming the variable.
 */
#include "dispatcher.h"
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

int dispatcher_options_load(struct dispatcher_options *o, const struct settings *s, char *err,
                            size_t errlen)
{
    memset(o, 0, sizeof *o);
    if (get_int(s, "DISPATCHER_CONCURRENCY", 64, 1, 10000, &o->concurrency, err, errlen) ||
        get_int(s, "DISPATCHER_LEASE_SECONDS", 30, 1, 3600, &o->lease_seconds, err, errlen) ||
        get_int(s, "DISPATCHER_POLL_INTERVAL_MS", 1000, 50, 600000, &o->poll_ms, err, errlen) ||
        get_int(s, "DISPATCHER_DB_CONNECTIONS", 4, 1, 64, &o->db_connections, err, errlen) ||
        get_ll(s, "AGENT_RESPONSE_MAX_BYTES", 65536, 256, 16LL << 20, &o->max_response, err,
               errlen) ||
        get_bool(s, "AGENT_WEBHOOK_ALLOW_LOOPBACK", &o->allow_loopback, err, errlen))
        return -1;
    const char *base = settings_get(s, "CALSETA_API_BASE_URL");
    o->api_base_url = xstrdup(base && *base ? base : "http://localhost:8000");
    return 0;
}

void dispatcher_options_destroy(struct dispatcher_options *o)
{
    free(o->api_base_url);
    o->api_base_url = NULL;
}
