/*
 * jpath.h - dot paths over JSON documents, and the text form of a JSON value.
 *
 * The original walks provider responses with dot paths: each segment indexes an object by
 * key, or a list by a decimal integer; null counts as missing. Pass-3 indicator extraction
 * walks objects only (no list indexing). Nothing here allocates except jvalue_text().
 */
#ifndef PROVIDERS_JPATH_H
#define PROVIDERS_JPATH_H

#include <jansson.h>

/* Value at path (borrowed) or NULL when missing or null. An empty path gives root. */
json_t *jpath_get(json_t *root, const char *path);
/*
 * Text of a scalar as the original's str() gives it: strings as-is, integers in decimal,
 * reals shortest round-trip, booleans "True"/"False"; objects and lists as compact JSON.
 * NULL for a NULL/null value. Caller frees.
 */
char *jvalue_text(const json_t *v);

#endif
