/*
 * settings.h - the merged name/value view every service reads its configuration from.
 *
 * Sources, lowest priority first: `.env` in the working directory, the process environment,
 * then at most one secrets backend (Azure Key Vault or AWS Secrets Manager, chosen only by the
 * real process environment: AZURE_KEY_VAULT_URL, else AWS_SECRETS_MANAGER_SECRET_NAME; Azure
 * wins when both are set, with a warning). A configured backend that fails makes
 * settings_load() fail with a message naming the backend and the reason; there is no
 * fall-back. Values are wiped from memory when replaced or freed.
 */
#ifndef CALSETA_SETTINGS_H
#define CALSETA_SETTINGS_H

#include <stddef.h>

struct settings;

/* dotenv_path may be NULL (then ".env"). Returns NULL and fills err on failure. */
struct settings *settings_load(const char *dotenv_path, char *err, size_t errlen);
/* As settings_load() with an explicit environment (NULL-terminated "NAME=value" array);
 * dotenv_path "" reads no .env file at all. */
struct settings *settings_load_env(const char *dotenv_path, char *const *envp, char *err,
                                   size_t errlen);
/* An empty store (backend "environment"). */
struct settings *settings_new(void);
/* NULL when the name is not set anywhere. */
const char *settings_get(const struct settings *s, const char *name);
/* Sets or replaces a value (used by secrets backends and tests). */
void settings_set(struct settings *s, const char *name, const char *value);
/* Number of names set. */
size_t settings_count(const struct settings *s);
/* "environment", "azure_key_vault" or "aws_secrets_manager" (static strings). */
const char *settings_backend(const struct settings *s);
void settings_free(struct settings *s);

/*
 * `calseta config-check [NAME...]`: loads the settings as every service does and prints
 * "backend=<name>", then per NAME "NAME=set sha256=<hex>" or "NAME=unset" (never a value).
 * On a load failure prints the reason on stderr and returns 1.
 */
int settings_check_main(int argc, char **argv);

#endif
