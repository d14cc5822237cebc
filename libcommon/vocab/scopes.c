/*
 * scopes.c - the API-key scopes (see scopes.h).
 */
#include "scopes.h"

#include <string.h>

const char *const SCOPES[] = {"alerts:read",       "alerts:write",    "enrichments:read",
                              "workflows:read",    "workflows:write", "workflows:execute",
                              "approvals:write",   "agents:read",     "agents:write",
                              "admin",             NULL};

int scope_known(const char *s)
{
    if (!s)
        return 0;
    for (const char *const *p = SCOPES; *p; p++)
        if (!strcmp(s, *p))
            return 1;
    return 0;
}
