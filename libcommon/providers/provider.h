/*
 * provider.h - the data-defined enrichment providers, as loaded from PostgreSQL.
 *
 * A provider_set is one snapshot of the active enrichment_providers, the active
 * enrichment_field_extractions and the active pass-3 indicator_field_mappings, built from the
 * single JSON document returned by the SQL function calseta_enrichment_config() (migration
 * 0004). Snapshots are reference-counted: a reload (NOTIFY calseta_providers, or the periodic
 * refresh) swaps in a new one while jobs in flight keep the one they started with.
 *
 * In mock mode (ENRICHMENT_MOCK_MODE=true, as in the original) a provider with mock_responses
 * answers from them ({type: entry} or {"default": entry}) without credentials or HTTP.
 *
 * Per-provider limits come from http_config when present ("max_concurrency",
 * "rate_limit_per_second", "timeout_seconds") and otherwise from the defaults given to
 * provider_set_parse().
 */
#ifndef PROVIDERS_PROVIDER_H
#define PROVIDERS_PROVIDER_H

#include "extract.h"

#include <jansson.h>
#include <stddef.h>

struct provider_defaults {
    int max_concurrency;    /* ENRICHER_PROVIDER_MAX_CONCURRENCY, 4 */
    double rate_per_second; /* ENRICHER_PROVIDER_RATE_PER_SECOND, 10 */
    int timeout_seconds;    /* ENRICHER_PROVIDER_TIMEOUT_SECONDS, 30 */
    int mock_mode;          /* ENRICHMENT_MOCK_MODE, false */
};

struct provider {
    char *name;
    char **types;
    size_t ntypes;
    json_t *http_config;
    char *auth_type;
    char *encrypted_auth;    /* the Fernet token of auth_config._encrypted, or NULL */
    int plaintext_auth;      /* auth_config held a plain dict: refused (never stored in clear) */
    json_t *env_var_mapping; /* {field: ENV_NAME} or NULL */
    int default_ttl;
    json_t *ttl_by_type;
    json_t *malice_rules;
    json_t *mock_responses; /* kept only in mock mode, when non-empty */
    struct field_rule *rules;
    size_t nrules;
    int max_concurrency;
    double rate_per_second;
    int timeout_seconds;
};

struct provider_set {
    int refs;
    struct provider *p;
    size_t n;
    struct raw_mapping *mappings;
    size_t nmappings;
};

struct settings;

/* Reads the provider defaults (ENRICHMENT_MOCK_MODE, ENRICHER_PROVIDER_*) and
 * ENRICHER_ALLOW_LOOPBACK (tests only) from the settings: 0, or -1 with err naming the setting.
 * The intake and the enricher read them alike, so a provider means the same thing to both. */
int provider_defaults_load(struct provider_defaults *d, int *allow_loopback,
                           const struct settings *s, char *err, size_t errlen);

/* The SQL that returns the configuration document (one row, one column). */
extern const char PROVIDER_CONFIG_SQL[];

/* Parses the document; NULL and err on a malformed one. The set starts with one reference. */
struct provider_set *provider_set_parse(json_t *doc, const struct provider_defaults *d, char *err,
                                        size_t errlen);
struct provider_set *provider_set_ref(struct provider_set *s);
void provider_set_unref(struct provider_set *s);

const struct provider *provider_find(const struct provider_set *s, const char *name);
int provider_supports(const struct provider *p, const char *type);
/*
 * Whether the provider can run: mock mode with mock responses, no_auth, an encrypted
 * auth_config, or at least one env_var_mapping variable set (get_env(arg, NAME) != NULL).
 */
int provider_configured(const struct provider *p, const char *(*get_env)(void *, const char *),
                        void *arg);
/* A get_env for provider_configured(): looks the name up in the settings (arg). */
const char *provider_env_get(void *settings, const char *name);
/* Cache TTL for a type: the original's per-type defaults overlaid by cache_ttl_by_type. */
int provider_cache_ttl(const struct provider *p, const char *type);

#endif
