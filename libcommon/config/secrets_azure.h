/*
 * secrets_azure.h - Azure Key Vault secrets backend (managed identity + Key Vault REST API).
 *
 * Reads from env (the real process environment): AZURE_KEY_VAULT_URL (vault base URL; https,
 * or http for a loopback host), AZURE_CLIENT_ID (optional user-assigned identity),
 * IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service / Container Apps token endpoint) or else
 * AZURE_IMDS_ENDPOINT (default http://169.254.169.254). Every enabled secret of the vault is
 * stored in out under its mapped name: '-' becomes '_', then upper case.
 */
#ifndef CALSETA_SECRETS_AZURE_H
#define CALSETA_SECRETS_AZURE_H

#include <stddef.h>

struct settings;

/* 0 on success; -1 with a reason (never a secret value) in err. */
int secrets_azure_load(const struct settings *env, struct settings *out, char *err, size_t errlen);
/* "encryption-key" -> "ENCRYPTION_KEY". Caller frees. */
char *secrets_azure_map_name(const char *secret_name);

#endif
