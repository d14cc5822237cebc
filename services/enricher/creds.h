/*
 * creds.h - provider credentials, decrypted only at the moment of use.
 *
 * creds_open() turns a provider's stored auth_config ({"_encrypted": Fernet token} under
 * ENCRYPTION_KEY) into field values held in locked memory (secmem): the token is decrypted
 * straight into a locked buffer and its JSON object parsed in place there, so no plaintext copy
 * lands on the ordinary heap. Every decryption emits the audit event "credentials_decrypted"
 * {provider, job_id} (never the secret). When a provider has no stored credentials the
 * original's env_var_mapping fallback applies (values from the settings). creds_close() wipes
 * and unlocks. Values are exposed to templates through creds_get() (a tpl_auth_fn).
 */
#ifndef ENRICHER_CREDS_H
#define ENRICHER_CREDS_H

#include <stddef.h>

struct provider;
struct settings;
struct creds_ctx;
struct creds;

/* Called after every decryption (the caller emits the audit event; never given the secret). */
typedef void (*creds_audit_fn)(void *arg, const char *provider, long long job_id);

/* key_b64: ENCRYPTION_KEY. Returns NULL with err when the key is missing or not a valid
 * Fernet key (the message names ENCRYPTION_KEY). */
struct creds_ctx *creds_ctx_new(const char *key_b64, const struct settings *settings,
                                creds_audit_fn audit, void *audit_arg, char *err, size_t errlen);
void creds_ctx_free(struct creds_ctx *cc);
/* Checks that token was made under this key (HMAC only, nothing decrypted): 0 or -1. */
int creds_token_matches(const struct creds_ctx *cc, const char *token);

/* NULL with err when credentials are needed but cannot be had. */
struct creds *creds_open(struct creds_ctx *cc, const struct provider *p, long long job_id,
                         char *err, size_t errlen);
const char *creds_get(void *creds, const char *field, size_t *len);
void creds_close(struct creds *c);

#endif
