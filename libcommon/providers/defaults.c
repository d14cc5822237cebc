/*
 * defaults.c - the provider settings the intake and the enricher both read, validated with a
 * message naming the variable (defaults come from libcommon/config/settings_table.c).
 */
#include "provider.h"
#include "settings.h"
#include "settings_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int provider_defaults_load(struct provider_defaults *d, int *allow_loopback,
                           const struct settings *s, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    *allow_loopback = 0;
    if (setting_bool(s, "ENRICHER_ALLOW_LOOPBACK", allow_loopback, err, errlen) ||
        setting_bool(s, "ENRICHMENT_MOCK_MODE", &d->mock_mode, err, errlen) ||
        setting_integer(s, "ENRICHER_PROVIDER_MAX_CONCURRENCY", 1, 1000, &d->max_concurrency, err,
                        errlen) ||
        get_rate(s, "ENRICHER_PROVIDER_RATE_PER_SECOND", &d->rate_per_second, err, errlen) ||
        setting_integer(s, "ENRICHER_PROVIDER_TIMEOUT_SECONDS", 1, 600, &d->timeout_seconds, err,
                        errlen))
        return -1;
    return 0;
}

const char *provider_env_get(void *settings, const char *name)
{
    return settings ? settings_get(settings, name) : NULL;
}
