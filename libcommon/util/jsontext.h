/*
 * jsontext.h - JSON text written straight into a buffer, for hot paths that would otherwise
 * build a jansson tree only to serialise it once.
 */
#ifndef CALSETA_JSONTEXT_H
#define CALSETA_JSONTEXT_H

#include "util.h"

#include <jansson.h>

#include <stddef.h>

/* Appends s[0..n) as a quoted JSON string, escaped as json_dumps() escapes (quote, backslash,
 * control characters; UTF-8 passed through). A byte that is not part of valid UTF-8 is written
 * as U+FFFD, so the text is always valid JSON. */
void buf_json_string(struct buf *b, const char *s, size_t n);
/* As buf_json_string() for a NUL-terminated string, or `null` when s is NULL. */
void buf_json_cstr(struct buf *b, const char *s);
/* Appends v as compact JSON text, as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it
 * (keys in their order, reals with up to 17 significant digits), straight into b: no loop
 * check per container, no intermediate string, no copy. v must not contain itself (a tree
 * built by the caller). NULL is written as `null`. */
void buf_json_value(struct buf *b, const json_t *v);

#endif
