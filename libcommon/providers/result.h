/*
 * result.h - provider response bodies and per-provider result objects.
 *
 * result_new() builds the stored per-provider result object of the original:
 * {provider_name, status, success, extracted, raw, enriched_at, error_message, debug_steps}.
 */
#ifndef PROVIDERS_RESULT_H
#define PROVIDERS_RESULT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Parses a response body: JSON when it is a JSON document, else {"_raw_text": first 2000
 * characters} with invalid UTF-8 replaced and NUL bytes dropped. Never NULL. */
json_t *body_parse(const char *data, size_t len);

/* status: "success", "failed" or "skipped". extracted, raw: stolen (may be NULL). */
json_t *result_new(const char *provider, const char *status, json_t *extracted, json_t *raw,
                   const char *error);

#endif
