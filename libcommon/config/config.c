/*
 * config.c - typed, validated configuration from the merged settings.
 */
#include "config.h"
#include "log.h"
#include "settings.h"
#include "settings_table.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Every default comes from the settings table (settings_table.c), never from here. */
static const char *get(struct settings *s, const char *name)
{
    const char *v = setting_value(s, name);
    return v ? v : "";
}

static char *get_str(struct settings *s, const char *name)
{
    return xstrdup(get(s, name));
}

static char *normalise_db_url(const char *url)
{
    const char *p = strstr(url, "+asyncpg");
    if (!p)
        p = strstr(url, "+psycopg");
    if (!p)
        return xstrdup(url);
    const char *rest = strstr(p, "://");
    if (!rest)
        return xstrdup(url);
    return xasprintf("%.*s%s", (int)(p - url), url, rest);
}

/* An internal link's endpoint: as configured, else a socket in the data folder, so two stacks
 * on one machine (two data folders) never reach each other's processes. */
static char *endpoint(struct settings *s, const char *name, const char *data_dir,
                      const char *sock)
{
    const char *v = get(s, name);
    return *v ? xstrdup(v) : xasprintf("ipc://%s/bus/%s.sock", data_dir, sock);
}

/* DATABASE_URL, or, when it is unset and POSTGRES_HOST is set (the compose deployment), the URL
 * built from POSTGRES_HOST/PORT/USER/PASSWORD/DB. A compose file cannot percent-encode a
 * password itself, and an unencoded '@', '/' or '#' would silently point libpq elsewhere. */
static char *database_url(struct settings *s)
{
    const char *url = get(s, "DATABASE_URL");
    const char *host = get(s, "POSTGRES_HOST");
    if (*url || !*host)
        return normalise_db_url(url);
    struct buf b;
    buf_init(&b);
    const char *parts[] = {"postgresql://", get(s, "POSTGRES_USER"), ":",
                           get(s, "POSTGRES_PASSWORD"), "@", host, ":",
                           get(s, "POSTGRES_PORT"), "/", get(s, "POSTGRES_DB")};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        if (i % 2 == 0)
            buf_puts(&b, parts[i]);
        else
            urlencode_append(&b, parts[i], strlen(parts[i]));
    }
    return b.data;
}

#define INT(name, min, max, field)                                                                 \
    if (setting_integer(s, name, min, max, &c->field, err, errlen))                                \
        return -1;
#define BOOL(name, field)                                                                          \
    if (setting_bool(s, name, &c->field, err, errlen))                                             \
        return -1;

int config_from_settings(struct config *c, struct settings *s, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->settings = s;
    c->secrets_backend = settings_backend(s);
    c->database_url = database_url(s);
    c->app_version = get_str(s, "APP_VERSION");
    c->log_level = get_str(s, "LOG_LEVEL");
    c->log_json = strcasecmp(get(s, "LOG_FORMAT"), "json") == 0;
    c->data_dir = get_str(s, "CALSETA_DATA_DIR");

    c->http_host = get_str(s, "HTTP_HOST");
    INT("HTTP_PORT", 0, 65535, http_port);
    INT("INTAKE_PROCESSES", 1, 64, intake_processes);
    INT("ENRICHER_PROCESSES", 0, 64, enricher_processes);
    c->tls_cert_file = get_str(s, "TLS_CERT_FILE");
    c->tls_key_file = get_str(s, "TLS_KEY_FILE");
    if (!*c->tls_cert_file != !*c->tls_key_file) {
        snprintf(err, errlen, "TLS_CERT_FILE and TLS_KEY_FILE must be set together");
        return -1;
    }
    BOOL("HTTPS_ENABLED", https_enabled);
    BOOL("SECURITY_HEADER_HSTS_ENABLED", hsts_enabled);
    INT("MAX_REQUEST_BODY_SIZE_MB", 1, 1024, max_request_body_mb);
    INT("MAX_INGEST_PAYLOAD_SIZE_MB", 1, 1024, max_ingest_payload_mb);
    c->max_request_body_bytes = (long long)c->max_request_body_mb * 1024 * 1024;
    c->max_ingest_payload_bytes = (long long)c->max_ingest_payload_mb * 1024 * 1024;
    INT("MAX_HEADER_SIZE_BYTES", 1024, 1048576, max_header_bytes);
    INT("HTTP_HEADER_TIMEOUT_MS", 100, 600000, header_timeout_ms);
    INT("HTTP_BODY_TIMEOUT_MS", 100, 600000, body_timeout_ms);
    INT("HTTP_BODY_MIN_RATE", 0, 1000000000, body_min_rate);
    INT("HTTP_IDLE_TIMEOUT_MS", 100, 3600000, idle_timeout_ms);
    INT("MAX_CONNECTIONS", 1, 1000000, max_connections);
    INT("MAX_CONNECTIONS_PER_IP", 0, 1000000, max_connections_per_ip);
    INT("MAX_BODIES_PER_IP", 0, 1000000, max_bodies_per_ip);
    INT("MAX_CONNECTIONS_PER_PROXY", 0, 1000000, max_connections_per_proxy);
    INT("DRAIN_TIMEOUT_MS", 0, 600000, drain_timeout_ms);
    c->cors_allowed_origins = get_str(s, "CORS_ALLOWED_ORIGINS");
    BOOL("CORS_ALLOW_ALL_ORIGINS", cors_allow_all);
    INT("TRUSTED_PROXY_COUNT", 0, 32, trusted_proxy_count);

    INT("RATE_LIMIT_DEFAULT_PER_MINUTE", 1, 100000000, rate_limit_default);
    INT("RATE_LIMIT_UNAUTHED_PER_MINUTE", 1, 100000000, rate_limit_unauthed);
    INT("RATE_LIMIT_INGEST_PER_MINUTE", 1, 100000000, rate_limit_ingest);
    INT("RATE_LIMIT_ENRICHMENT_PER_MINUTE", 1, 100000000, rate_limit_enrichment);
    INT("RATE_LIMIT_WORKFLOW_EXECUTE_PER_MINUTE", 1, 100000000, rate_limit_workflow_execute);
    INT("AUTH_CACHE_TTL_SECONDS", 0, 3600, auth_cache_ttl_seconds);
    INT("AUTH_KEY_REFRESH_SECONDS", 1, 3600, auth_key_refresh_seconds);
    c->sentinel_webhook_secret = get_str(s, "SENTINEL_WEBHOOK_SECRET");
    c->elastic_webhook_secret = get_str(s, "ELASTIC_WEBHOOK_SECRET");
    c->splunk_webhook_secret = get_str(s, "SPLUNK_WEBHOOK_SECRET");
    BOOL("WEBHOOK_SIGNATURE_REQUIRED", webhook_signature_required);

    INT("ALERT_DEDUP_WINDOW_HOURS", 0, 87600, alert_dedup_window_hours);
    INT("INGEST_BATCH_MAX", 1, 10000, ingest_batch_max);
    INT("INGEST_MAX_INFLIGHT", 1, 7, ingest_max_inflight);
    /* 1 was allowed before stalled batches kept their slots: read as 2 (the intake says so)
     * rather than refused, which would stop every process of a deployment that set it */
    c->ingest_max_inflight_raised = c->ingest_max_inflight == 1;
    if (c->ingest_max_inflight_raised)
        c->ingest_max_inflight = 2;
    INT("INGEST_BATCH_MIN", 1, 10000, ingest_batch_min);
    INT("INGEST_STALL_MS", 1, 60000, ingest_stall_ms);
    /* retired: set, it would be silently ignored, and its owner would think it still acts */
    const char *flush_wait = settings_get(s, "INGEST_FLUSH_WAIT_MS");
    c->ingest_flush_wait_set = flush_wait && *flush_wait;
    INT("INGEST_JSON_MAX_DEPTH", 2, 1000, ingest_json_max_depth);
    INT("INGEST_JSON_MAX_VALUES", 10, 10000000, ingest_json_max_values);
    INT("LINKS_MERGE_TIMEOUT_MS", 100, 3600000, links_merge_timeout_ms);

    c->job_bus_push = endpoint(s, "JOB_BUS_PUSH_ENDPOINT", c->data_dir, "jobs-in");
    c->job_bus_pull = endpoint(s, "JOB_BUS_PULL_ENDPOINT", c->data_dir, "jobs-out");
    c->audit_endpoint = endpoint(s, "AUDIT_ENDPOINT", c->data_dir, "audit");
    c->lookup_front = endpoint(s, "LOOKUP_REQUEST_ENDPOINT", c->data_dir, "lookup-in");
    c->lookup_back = endpoint(s, "LOOKUP_WORKER_ENDPOINT", c->data_dir, "lookup-out");
    c->workflow_endpoint = endpoint(s, "WORKFLOW_REQUEST_ENDPOINT", c->data_dir, "workflow");
    c->audit_spool_dir = get_str(s, "AUDIT_SPOOL_DIR");
    c->audit_log_file = get_str(s, "AUDIT_LOG_FILE");
    BOOL("AUDIT_STDOUT", audit_stdout);
    INT("AUDIT_FSYNC_MS", 0, 60000, audit_fsync_ms);
    INT("AUDIT_REFUSAL_WINDOW_SECONDS", 0, 3600, audit_refusal_window_seconds);
    long long rot = 0;
    const char *rv = get(s, "AUDIT_ROTATE_BYTES");
    if (parse_ll(rv, 0, (long long)1 << 50, &rot)) {
        snprintf(err, errlen, "AUDIT_ROTATE_BYTES must be a non-negative integer (got \"%s\")", rv);
        return -1;
    }
    c->audit_rotate_bytes = rot;
    c->runner_endpoint = endpoint(s, "RUNNER_ENDPOINT", c->data_dir, "runner");
    c->curve_server_public_key = get_str(s, "CURVE_SERVER_PUBLIC_KEY");
    c->curve_server_secret_key = get_str(s, "CURVE_SERVER_SECRET_KEY");

    c->encryption_key = get_str(s, "ENCRYPTION_KEY");
    c->ssrf_allowed_hosts = get_str(s, "SSRF_ALLOWED_HOSTS");
    INT("WORKFLOW_MAX_MEMORY_MB", 16, 65536, workflow_max_memory_mb);
    INT("ENRICH_JOB_LEASE_SECONDS", 2, 86400, enrich_job_lease_seconds);
    INT("ENRICH_JOB_DEADLINE_SECONDS", 1, 86400, enrich_job_deadline_seconds);
    INT("ENRICHER_CONCURRENCY", 1, 1024, enricher_concurrency);

    INT("RATE_LIMIT_MCP_PER_MINUTE", 1, 100000000, rate_limit_mcp);
    c->mcp_public_base_url = get_str(s, "MCP_PUBLIC_BASE_URL");
    c->mcp_allowed_hosts = get_str(s, "MCP_ALLOWED_HOSTS");
    c->mcp_allowed_origins = get_str(s, "MCP_ALLOWED_ORIGINS");
    INT("MCP_MAX_SESSIONS_PER_KEY", 1, 100000, mcp_max_sessions_per_key);
    INT("MCP_SESSION_IDLE_SECONDS", 10, 604800, mcp_session_idle_seconds);
    INT("MCP_MAX_MESSAGE_BYTES", 1024, 67108864, mcp_max_message_bytes);
    INT("MCP_SSE_MAX_BUFFER_BYTES", 65536, 67108864, mcp_sse_max_buffer_bytes);
    return 0;
}

int config_load(struct config *c, char *err, size_t errlen)
{
    struct settings *s = settings_load(NULL, err, errlen);
    if (!s)
        return -1;
    if (config_from_settings(c, s, err, errlen)) {
        config_destroy(c);
        return -1;
    }
    return 0;
}

void config_destroy(struct config *c)
{
    char **strs[] = {&c->database_url, &c->app_version, &c->log_level, &c->data_dir,
                     &c->http_host, &c->tls_cert_file, &c->tls_key_file, &c->cors_allowed_origins,
                     &c->sentinel_webhook_secret, &c->elastic_webhook_secret,
                     &c->splunk_webhook_secret, &c->job_bus_push, &c->job_bus_pull,
                     &c->audit_endpoint, &c->audit_spool_dir, &c->audit_log_file,
                     &c->runner_endpoint, &c->lookup_front, &c->lookup_back, &c->workflow_endpoint,
                     &c->curve_server_public_key,
                     &c->curve_server_secret_key, &c->encryption_key, &c->ssrf_allowed_hosts,
                     &c->mcp_public_base_url, &c->mcp_allowed_hosts, &c->mcp_allowed_origins};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (*strs[i] && strs[i] == &c->encryption_key)
            explicit_bzero(*strs[i], strlen(*strs[i]));
        free(*strs[i]);
        *strs[i] = NULL;
    }
    settings_free(c->settings);
    c->settings = NULL;
}

void config_init_log(const struct config *c, const char *service)
{
    log_init(service, c->log_json, log_level_parse(c->log_level));
}
