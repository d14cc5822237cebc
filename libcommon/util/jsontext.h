/*
 * jsontext.h - JSON text written straight into a buffer, for hot paths that would otherwise
 * build a jansson tree only to serialise it once.
 */
#ifndef CALSETA_JSONTEXT_H
#define CALSETA_JSONTEXT_H

#include "util.h"

#include <stddef.h>

/* Appends s[0..n) as a quoted JSON string, escaped as json_dumps() escapes (quote, backslash,
 * control characters; UTF-8 passed through). A byte that is not part of valid UTF-8 is written
 * as U+FFFD, so the text is always valid JSON. */
void buf_json_string(struct buf *b, const char *s, size_t n);
/* As buf_json_string() for a NUL-terminated string, or `null` when s is NULL. */
void buf_json_cstr(struct buf *b, const char *s);

#endif
