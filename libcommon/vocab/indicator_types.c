/*
 * indicator_types.c - the indicator types (see indicator_types.h).
 */
#include "indicator_types.h"

#include <string.h>

const char *const INDICATOR_TYPES[] = {"ip",  "domain", "hash_md5", "hash_sha1", "hash_sha256",
                                       "url", "email",  "account",  NULL};

int indicator_type_valid(const char *type)
{
    if (!type)
        return 0;
    for (const char *const *t = INDICATOR_TYPES; *t; t++)
        if (!strcmp(type, *t))
            return 1;
    return 0;
}
