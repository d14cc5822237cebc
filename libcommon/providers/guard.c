/*
 * guard.c - the enricher's view of the SSRF guard (libcommon/ssrf/ssrf.h), see guard.h.
 */
#include "guard.h"
#include "ssrf.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct guard {
    char *allowed_hosts;
    unsigned flags;
};

struct guard *guard_new(const char *allowed_hosts, int allow_loopback)
{
    struct guard *g = xcalloc(1, sizeof *g);
    g->allowed_hosts = xstrdup(allowed_hosts ? allowed_hosts : "");
    g->flags = allow_loopback ? SSRF_ALLOW_LOOPBACK : 0;
    return g;
}

void guard_free(struct guard *g)
{
    if (!g)
        return;
    free(g->allowed_hosts);
    free(g);
}

int guard_check(const struct guard *g, const char *url, struct ssrf_target *t, char *reason,
                size_t reasonlen)
{
    struct ssrf_result r;
    struct ssrf_target local;
    struct ssrf_target *out = t ? t : &local;
    memset(out, 0, sizeof *out);
    if (ssrf_check(url, g->allowed_hosts, g->flags, &r, reason, reasonlen) != 0)
        return -1;
    return ssrf_target_of(&r, out, reason, reasonlen);
}
