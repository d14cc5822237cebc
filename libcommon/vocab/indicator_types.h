/*
 * indicator_types.h - the indicator types: the one list that extraction mappings, enrichment
 * providers, workflows and on-demand lookups accept.
 *
 * Types are exact lowercase strings. No format check belongs to a type: any value is accepted
 * for any type at extraction, as the original does.
 */
#ifndef LIBCOMMON_INDICATOR_TYPES_H
#define LIBCOMMON_INDICATOR_TYPES_H

/* ip domain hash_md5 hash_sha1 hash_sha256 url email account, NULL-terminated. */
extern const char *const INDICATOR_TYPES[];

/* 1 if type is exactly one of INDICATOR_TYPES, 0 otherwise (NULL included). */
int indicator_type_valid(const char *type);

#endif
