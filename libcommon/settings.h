/*
 * settings.h - the merged name/value view every service reads its configuration from.
 *
 * Sources, lowest priority first: `.env` in the working directory, the process environment,
 * then at most one secrets backend (Azure Key Vault or AWS Secrets Manager, chosen only by the
 * real process environment). A configured backend that fails makes settings_load() fail.
 */
#ifndef CALSETA_SETTINGS_H
#define CALSETA_SETTINGS_H

#include <stddef.h>

struct settings;

/* dotenv_path may be NULL (then ".env"). Returns NULL and fills err on failure. */
struct settings *settings_load(const char *dotenv_path, char *err, size_t errlen);
/* NULL when the name is not set anywhere. */
const char *settings_get(const struct settings *s, const char *name);
/* Sets or replaces a value (used by secrets backends and tests). */
void settings_set(struct settings *s, const char *name, const char *value);
/* "environment", "azure_key_vault" or "aws_secrets_manager". */
const char *settings_backend(const struct settings *s);
void settings_free(struct settings *s);

#endif
