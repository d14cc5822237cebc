/*
 * enrichment_api.h - the enrichment side of the REST API.
 *
 *   enrichment_api.c          /v1/enrichment-providers (+ activate, deactivate): CRUD with the
 *                             original's builtin protection, auth_config encrypted with Fernet
 *                             under ENCRYPTION_KEY ({"_encrypted": token}, never returned: only
 *                             has_credentials / is_configured), http_config URLs of custom
 *                             providers checked by the SSRF guard at save time
 *   enrichment_lookup.c       POST /v1/enrichments (on-demand, cache-first over the shared
 *                             PostgreSQL cache), POST /v1/enrichment-providers/{uuid}/test,
 *                             GET /v1/enrichments/providers, POST /v1/alerts/{uuid}/enrich
 *   enrichment_extractions.c  /v1/enrichment-field-extractions (+ /bulk)
 *
 * Lookups run the enricher's engine (services/enricher/engine.h) on the intake's loop: each
 * request gets its own engine and credentials context, closed when its lookups are over, so no
 * handle outlives a request and a drain needs nothing extra. Every write to providers or
 * extractions fires the NOTIFY trigger of migration 0004, so running enrichers reload.
 */
#ifndef CALSETA_INTAKE_ENRICHMENT_API_H
#define CALSETA_INTAKE_ENRICHMENT_API_H

#include "intake.h"

struct enrich_api;

/* Reads ENCRYPTION_KEY, SSRF_ALLOWED_HOSTS, ENRICHER_ALLOW_LOOPBACK, ENRICHMENT_MOCK_MODE and
 * the provider defaults from in->cfg; exits with a message naming a malformed setting. */
struct enrich_api *enrich_api_new(struct intake *in);

/*
 * On-demand lookup for callers other than POST /v1/enrichments (MCP tools): the same path —
 * cached results first, the rest asked of an enricher over the bus, successes cached. cb gets
 * 200 and {indicator_type, indicator_value, results: {provider: result}} (raw responses left
 * out, cache_hit per result), or another status and {code, message}; data is borrowed for the
 * call. provider_filter: only that provider (NULL: every active, configured one supporting
 * the type). type and value must already be valid (indicator_type_valid, 1-2048 bytes).
 */
typedef void (*enrich_remote_cb)(void *arg, int status, json_t *data);
void enrich_remote_lookup(struct intake *in, const char *type, const char *value,
                          const char *provider_filter, enrich_remote_cb cb, void *arg);
void enrich_api_free(struct enrich_api *a);

/* ingest.c: wakes an enricher for a committed job (a lost message only delays the job). */
void push_job_ready(struct intake *in, long long job_id, long long alert_id);

/* enrichment_api.c */
void route_list_providers(struct reqctx *rc);
void route_create_provider(struct reqctx *rc);
void route_get_provider(struct reqctx *rc);
void route_patch_provider(struct reqctx *rc);
void route_delete_provider(struct reqctx *rc);
void route_activate_provider(struct reqctx *rc);
void route_deactivate_provider(struct reqctx *rc);

/* enrichment_lookup.c */
void route_test_provider(struct reqctx *rc);
void route_enrich_on_demand(struct reqctx *rc);
void route_enrichment_providers_summary(struct reqctx *rc);
void route_enrich_alert(struct reqctx *rc);

/* enrichment_extractions.c */
void route_list_extractions(struct reqctx *rc);
void route_create_extraction(struct reqctx *rc);
void route_bulk_create_extractions(struct reqctx *rc);
void route_get_extraction(struct reqctx *rc);
void route_patch_extraction(struct reqctx *rc);
void route_delete_extraction(struct reqctx *rc);

/* ---- shared between the three files (enrichment_api.c) ---- */

struct provider_defaults;
/* The provider defaults as the enricher reads them (mock mode, limits, timeouts). */
const struct provider_defaults *enrich_api_defaults(const struct enrich_api *a);
/* ENCRYPTION_KEY as text when it is a valid Fernet key, else NULL. */
const char *enrich_api_key(const struct enrich_api *a);
struct guard *enrich_api_guard(const struct enrich_api *a);

/* 500 / 503 / 422 (SQLSTATE class 22) for a failed statement; res may be NULL. */
/* Adds is_configured to a provider object made by ENRICH_PROVIDER_JSON. */
void enrich_provider_finish(const struct enrich_api *a, json_t *p);

/* One provider row `p` as JSON text (no secret: has_credentials only). */
#define ENRICH_PROVIDER_JSON                                                                       \
    "json_build_object('uuid', p.uuid, 'provider_name', p.provider_name, 'display_name', "         \
    "p.display_name, 'description', p.description, 'is_builtin', p.is_builtin, 'is_active', "      \
    "p.is_active, 'supported_indicator_types', p.supported_indicator_types, 'http_config', "       \
    "p.http_config, 'auth_type', p.auth_type, 'env_var_mapping', p.env_var_mapping, "              \
    "'default_cache_ttl_seconds', p.default_cache_ttl_seconds, 'cache_ttl_by_type', "              \
    "p.cache_ttl_by_type, 'malice_rules', p.malice_rules, 'mock_responses', p.mock_responses, "    \
    "'has_credentials', coalesce(jsonb_typeof(p.auth_config) = 'object' AND "                      \
    "p.auth_config <> '{}', false), "                                                              \
    "'created_at', calseta_ts(p.created_at), 'updated_at', calseta_ts(p.updated_at))::text"

#endif
