/*
 * config.h - every setting of every service, read once, validated, passed down as a struct.
 *
 * config_load() reads through settings.h (environment, .env, secrets backend) and checks each
 * value; an invalid value is an error naming the variable. Nothing else calls getenv().
 */
#ifndef CALSETA_CONFIG_H
#define CALSETA_CONFIG_H

#include <stddef.h>

struct settings;

struct config {
    /* core */
    char *database_url; /* libpq form (the original's "+asyncpg" suffix is stripped) */
    char *app_version;
    char *log_level;
    int log_json;
    char *data_dir; /* CALSETA_DATA_DIR: var/ by default */
    const char *secrets_backend;

    /* HTTP listener */
    char *http_host;
    int http_port;
    int intake_processes;
    int enricher_processes;
    char *tls_cert_file;
    char *tls_key_file;
    int https_enabled;
    int hsts_enabled;
    long long max_request_body_bytes;
    long long max_ingest_payload_bytes;
    int max_request_body_mb;
    int max_ingest_payload_mb;
    int max_header_bytes;
    int header_timeout_ms;
    int body_timeout_ms;
    int idle_timeout_ms;
    int body_min_rate;
    int max_connections;
    int max_connections_per_ip;
    int max_bodies_per_ip;
    int max_connections_per_proxy; /* replaces both per-IP caps when TRUSTED_PROXY_COUNT >= 1 */
    int drain_timeout_ms;
    char *cors_allowed_origins; /* comma list, "" = off */
    int cors_allow_all;
    int trusted_proxy_count;

    /* auth and limits */
    int rate_limit_default;
    int rate_limit_unauthed;
    int rate_limit_ingest;
    int rate_limit_enrichment;
    int rate_limit_workflow_execute;
    int auth_cache_ttl_seconds;
    int auth_key_refresh_seconds;
    char *sentinel_webhook_secret;
    char *elastic_webhook_secret;
    char *splunk_webhook_secret;
    int webhook_signature_required;

    /* ingest */
    int alert_dedup_window_hours;
    int ingest_batch_max;
    int ingest_max_inflight; /* group commits one intake process has in the database at once */
    int links_merge_timeout_ms; /* longest one merge of the links index's pending list may run */
    int ingest_batch_min; /* alerts that go beside a live batch without waiting for it */
    int ingest_stall_ms; /* a batch out this long no longer keeps the next one from going */
    int ingest_flush_wait_set; /* the retired INGEST_FLUSH_WAIT_MS is set (it is ignored) */
    int ingest_max_inflight_raised; /* INGEST_MAX_INFLIGHT=1 was read as 2 */
    int ingest_json_max_depth;  /* nesting of an ingested document */
    int ingest_json_max_values; /* values (keys included) of an ingested document */

    /* buses */
    char *job_bus_push;   /* intake connects PUSH here */
    char *job_bus_pull;   /* enrichers connect PULL here */
    char *audit_endpoint; /* auditd binds, producers connect */
    char *audit_spool_dir;
    char *audit_log_file;
    int audit_stdout;
    int audit_fsync_ms;
    int audit_refusal_window_seconds; /* 0 = every refusal is its own event */
    long long audit_rotate_bytes;
    char *runner_endpoint;
    char *lookup_front; /* on-demand lookups: the job bus binds, intakes connect */
    char *lookup_back;  /* ...and enrichers connect here to answer them */
    char *workflow_endpoint; /* workflowd binds, intakes connect: code checks and test runs */
    char *curve_server_public_key;
    char *curve_server_secret_key;

    /* enrichment, workflows */
    char *encryption_key;
    char *ssrf_allowed_hosts;
    int workflow_max_memory_mb;
    int enrich_job_lease_seconds;
    int enrich_job_deadline_seconds;
    int enricher_concurrency;

    /* MCP server (intake) */
    int rate_limit_mcp;
    char *mcp_public_base_url;  /* "" = from the request's Host */
    char *mcp_allowed_hosts;    /* comma list of Host values; "" = see docs/mcp.md */
    char *mcp_allowed_origins;  /* comma list of Origin values; "" = same host only */
    int mcp_max_sessions_per_key;
    int mcp_session_idle_seconds;
    int mcp_max_message_bytes;
    int mcp_sse_max_buffer_bytes;

    struct settings *settings; /* for provider env_var_mapping and the like */
};

/* Returns 0, or -1 with err naming the offending variable. */
int config_load(struct config *c, char *err, size_t errlen);
/* Same, from an already-loaded settings object (taken over by the config). */
int config_from_settings(struct config *c, struct settings *s, char *err, size_t errlen);
void config_destroy(struct config *c);
/* Starts logging from the config (service = short name). */
void config_init_log(const struct config *c, const char *service);

#endif
