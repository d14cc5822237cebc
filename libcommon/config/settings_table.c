/*
 * settings_table.c - every setting, its default, its readers and its meaning (settings_table.h),
 * and the small typed readers that take their defaults from it.
 *
 * Adding a setting: add a row in its group, read it with setting_value()/setting_ll()/
 * setting_bool() (or a config.c field), then run scripts/config-doc.sh to regenerate
 * docs/configuration.md. tests/integration/test_settings_doc.py fails until both are done.
 */
#include "settings_table.h"
#include "log.h"
#include "settings.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define CORE "Core"
#define HTTP "HTTP listener"
#define AUTH "Authentication and rate limits"
#define INGEST "Ingestion and webhook signatures"
#define BUS "Processes and buses"
#define AUDIT "Audit trail"
#define ENRICH "Enrichment"
#define WORKFLOW "Workflows"
#define IDENTITY "Built-in identity integrations"
#define NOTIFY "Approval notifications"
#define AGENTS "Agents"
#define MCP "MCP server"
#define AZURE "Secrets backend: Azure Key Vault"
#define AWS "Secrets backend: AWS Secrets Manager"
#define TOOLS "Tools and tests"

const struct setting_doc SETTINGS_TABLE[] = {
    /* ---- core ---- */
    {CORE, "DATABASE_URL", NULL, "all",
     "PostgreSQL URL (`postgresql://user:password@host:port/db`; the original's `+asyncpg` "
     "suffix is accepted). Unset: the `calseta` command uses the embedded cluster of "
     "`CALSETA_DATA_DIR`; auditd then writes its file and stdout only."},
    {CORE, "POSTGRES_HOST", NULL, "all",
     "Used only when `DATABASE_URL` is unset: the database host; with it the URL is built from "
     "`POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_USER`, `POSTGRES_PASSWORD` and `POSTGRES_DB`, "
     "each percent-encoded, so a password may contain any character (the compose deployment)."},
    {CORE, "POSTGRES_PORT", "5432", "all", "Database port when the URL is built from parts."},
    {CORE, "POSTGRES_USER", "calseta", "all", "Database user when the URL is built from parts."},
    {CORE, "POSTGRES_PASSWORD", NULL, "all",
     "Database password when the URL is built from parts (any characters)."},
    {CORE, "POSTGRES_DB", "calseta", "all", "Database name when the URL is built from parts."},
    {CORE, "ENCRYPTION_KEY", NULL, "intake, enricher, workflowd, dispatcher, master",
     "Fernet key (44 characters) that encrypts provider credentials, workflow secrets and agent "
     "secrets at rest. `calseta gen-encryption-key` makes one; `make run` generates "
     "`$CALSETA_DATA_DIR/encryption.key` when unset. The enrichment workers refuse to start "
     "without a valid key. Back it up with the database."},
    {CORE, "CALSETA_DATA_DIR", "var", "all",
     "Folder of the embedded PostgreSQL cluster, the generated encryption key and the audit "
     "spool. Two stacks on one host need two folders."},
    {CORE, "APP_VERSION", "dev", "intake", "Version reported by `GET /health`."},
    {CORE, "LOG_LEVEL", "INFO", "all", "`DEBUG`, `INFO`, `WARNING` or `ERROR`."},
    {CORE, "LOG_FORMAT", "json", "all",
     "`json`: one JSON object per line (logs and audit lines); anything else: readable text."},
    {CORE, "SSRF_ALLOWED_HOSTS", NULL, "intake, enricher, runner, workflowd",
     "Comma list of host names admitted past the private-address check of outgoing requests "
     "(providers, `ctx.http`, notifications, agent webhooks). Never past the cloud-metadata "
     "block."},

    /* ---- HTTP ---- */
    {HTTP, "HTTP_HOST", "127.0.0.1", "intake", "Address the REST API listens on."},
    {HTTP, "HTTP_PORT", "8000", "intake", "TCP port of the REST API (0: any free port)."},
    {HTTP, "TLS_CERT_FILE", NULL, "intake",
     "PEM certificate chain; with `TLS_KEY_FILE` the intake speaks HTTPS itself (TLS 1.2+, "
     "ECDHE + AEAD). Both or neither."},
    {HTTP, "TLS_KEY_FILE", NULL, "intake", "PEM private key of `TLS_CERT_FILE`."},
    {HTTP, "HTTPS_ENABLED", "false", "intake",
     "The API is served over HTTPS (natively or by a proxy in front): adds "
     "`Strict-Transport-Security`."},
    {HTTP, "SECURITY_HEADER_HSTS_ENABLED", "true", "intake",
     "`false` leaves HSTS out even with `HTTPS_ENABLED`."},
    {HTTP, "MAX_REQUEST_BODY_SIZE_MB", "10", "intake",
     "Body limit of API routes (1-1024); larger bodies get 413 before they are read."},
    {HTTP, "MAX_INGEST_PAYLOAD_SIZE_MB", "5", "intake",
     "Body limit of `/v1/ingest/*` and `POST /v1/alerts` (1-1024)."},
    {HTTP, "MAX_HEADER_SIZE_BYTES", "16384", "intake",
     "Limit of the request's header section; larger gets 431."},
    {HTTP, "HTTP_HEADER_TIMEOUT_MS", "10000", "intake",
     "A client slower than this with its headers gets 408 and is closed."},
    {HTTP, "HTTP_BODY_TIMEOUT_MS", "10000", "intake",
     "The body-rate window: a body that brings less than `HTTP_BODY_MIN_RATE` bytes per second "
     "(and at least one byte) over any consecutive window of this length gets 408 and is "
     "closed. Not reset by each byte."},
    {HTTP, "HTTP_BODY_MIN_RATE", "1024", "intake",
     "Minimum body rate in bytes per second, averaged over each `HTTP_BODY_TIMEOUT_MS` window."},
    {HTTP, "HTTP_IDLE_TIMEOUT_MS", "60000", "intake", "Idle keep-alive connections are closed."},
    {HTTP, "MAX_CONNECTIONS", "4096", "intake",
     "Connections per intake process; at the cap the connection idle the longest is closed to "
     "make room, and only with none idle do new connections get 503 and close."},
    {HTTP, "MAX_CONNECTIONS_PER_IP", "128", "intake",
     "Open connections per socket peer address and intake process; beyond it a new connection "
     "is closed unanswered. 0: no cap. Replaced by `MAX_CONNECTIONS_PER_PROXY` when "
     "`TRUSTED_PROXY_COUNT` >= 1."},
    {HTTP, "MAX_BODIES_PER_IP", "32", "intake",
     "Requests of one socket peer address whose body is announced and not yet fully received "
     "(authentication included); beyond it 503 and close. 0: no cap. Replaced by "
     "`MAX_CONNECTIONS_PER_PROXY` when `TRUSTED_PROXY_COUNT` >= 1."},
    {HTTP, "MAX_CONNECTIONS_PER_PROXY", "0", "intake",
     "Behind proxies (`TRUSTED_PROXY_COUNT` >= 1) every connection comes from a proxy: both "
     "per-address caps use this value for each proxy address instead. 0: `MAX_CONNECTIONS`."},
    {HTTP, "DRAIN_TIMEOUT_MS", "15000", "intake, master",
     "How long a stopping intake may take to finish requests and record workflow runs in "
     "flight; `calseta up` kills a child that outlives it by 5 s."},
    {HTTP, "CORS_ALLOWED_ORIGINS", NULL, "intake",
     "Comma list of exact origins allowed by CORS. Empty: CORS off."},
    {HTTP, "CORS_ALLOW_ALL_ORIGINS", "false", "intake",
     "Any origin, without credentials. Reported as a protection turned off."},
    {HTTP, "TRUSTED_PROXY_COUNT", "0", "intake",
     "Proxies in front of the intake. 0: the client IP is the socket peer and "
     "`X-Forwarded-For` is ignored; N: the N-th address from the right of `X-Forwarded-For`."},

    /* ---- auth ---- */
    {AUTH, "RATE_LIMIT_DEFAULT_PER_MINUTE", "60", "intake", "Per key, API routes."},
    {AUTH, "RATE_LIMIT_INGEST_PER_MINUTE", "120", "intake", "Per key, ingest routes."},
    {AUTH, "RATE_LIMIT_ENRICHMENT_PER_MINUTE", "60", "intake",
     "Per key, enrichment lookups and provider tests."},
    {AUTH, "RATE_LIMIT_WORKFLOW_EXECUTE_PER_MINUTE", "30", "intake", "Per key, workflow execute."},
    {AUTH, "RATE_LIMIT_UNAUTHED_PER_MINUTE", "10", "intake",
     "Per client IP, charged only by requests that end without a valid key (a valid key is never "
     "refused for its IP's junk)."},
    {AUTH, "AUTH_CACHE_TTL_SECONDS", "60", "intake",
     "0: every request pays bcrypt. Otherwise a token that passed bcrypt is remembered by the "
     "process while its key's hash is unchanged (key rows are kept current by notifications)."},
    {AUTH, "AUTH_KEY_REFRESH_SECONDS", "10", "intake",
     "Period of the background re-read of the key rows a process holds, and of forgetting "
     "unknown prefixes: the bound on a key change if a notification were lost."},

    /* ---- ingest ---- */
    {INGEST, "SENTINEL_WEBHOOK_SECRET", NULL, "intake",
     "HMAC-SHA256 secret of Sentinel webhooks. Unset: unsigned webhooks pass, with a start-up "
     "warning."},
    {INGEST, "ELASTIC_WEBHOOK_SECRET", NULL, "intake", "HMAC-SHA256 secret of Elastic webhooks."},
    {INGEST, "SPLUNK_WEBHOOK_SECRET", NULL, "intake", "HMAC-SHA256 secret of Splunk webhooks."},
    {INGEST, "WEBHOOK_SIGNATURE_REQUIRED", "false", "intake",
     "Refuse unsigned webhooks for every source, `generic` included."},
    {INGEST, "ALERT_DEDUP_WINDOW_HOURS", "24", "intake",
     "An alert with the same fingerprint within this window counts as a duplicate of the newest "
     "alert of that fingerprint inside the window (0 disables)."},
    {INGEST, "INGEST_BATCH_MAX", "128", "intake", "Most alerts committed in one group commit."},
    {INGEST, "INGEST_MAX_INFLIGHT", "4", "intake",
     "Most group commits one intake process keeps in the database at once (2-7 of its 8 "
     "connections; 1 is read as 2, with a warning), stalled ones included: the stall bound of "
     "`INGEST_STALL_MS` holds only while fewer than this many of the process's batches are "
     "stalled."},
    {INGEST, "INGEST_BATCH_MIN", "128", "intake",
     "Alerts the queue needs to go to the database as a batch beside live ones (a batch goes at "
     "once when none of the process's batches is live); until then the queue grows while the "
     "running batch commits, since every transaction has a fixed cost. The default, "
     "equal to `INGEST_BATCH_MAX`'s default, keeps one live batch per process: a second goes "
     "beside it only when the queue fills a whole batch (`INGEST_BATCH_MAX` alerts, or 16 MB of "
     "them); raising `INGEST_BATCH_MAX` above this lets a second batch go at this count."},
    {INGEST, "INGEST_STALL_MS", "20", "intake",
     "A batch that has been in the database this long is no longer live (a lock or a slow WAL "
     "flush holds it): the queue may go beside it whatever its size, so while fewer than "
     "`INGEST_MAX_INFLIGHT` of the process's batches are stalled, a stuck batch delays the "
     "process's other alerts by this bound at most (1-60000; a normal round trip is 2-5 ms)."},
    {INGEST, "INGEST_FLUSH_WAIT_MS", NULL, "intake",
     "Retired, ignored: the intake logs a warning at start when it is set. `INGEST_BATCH_MIN` "
     "and `INGEST_STALL_MS` decide when a queue goes beside a running batch."},
    {INGEST, "INGEST_JSON_MAX_DEPTH", "64", "intake",
     "Deepest nesting of arrays and objects an ingested body may have; enforced while the body "
     "is read, before any value deeper is built (deeper: 422)."},
    {INGEST, "INGEST_JSON_MAX_VALUES", "100000", "intake",
     "Most JSON values (object keys included) an ingested body may have; a body long enough to "
     "hold more is counted on its raw bytes before parsing (more: 413 on /v1/ingest, 422 on "
     "/v1/alerts)."},
    {INGEST, "LINKS_MERGE_TIMEOUT_MS", "10000", "intake",
     "Longest the intake's once-a-second merge of the alert links index's pending list may run "
     "before it is cancelled (what it merged so far stays merged; the rest is tried again with "
     "the failure back-off). A merge normally takes milliseconds; a cancelled one means a lock "
     "blocks it or the list has grown far past what a second's ingest adds."},

    /* ---- processes and buses ---- */
    {BUS, "INTAKE_PROCESSES", "2", "master", "Intake processes sharing the HTTP port."},
    {BUS, "ENRICHER_PROCESSES", "1", "master", "Enrichment workers `calseta up` starts on this host."},
    {BUS, "JOB_BUS_PUSH_ENDPOINT", NULL, "intake, jobbus",
     "Intake processes push \"job ready\" hints here. Default: "
     "`ipc://$CALSETA_DATA_DIR/bus/jobs-in.sock`."},
    {BUS, "JOB_BUS_PULL_ENDPOINT", NULL, "jobbus, enricher",
     "Enrichers pull hints here (default `ipc://$CALSETA_DATA_DIR/bus/jobs-out.sock`); set a "
     "`tcp://` address for workers on other hosts (CURVE, see `CURVE_JOBS_PUBLIC_KEY`)."},
    {BUS, "LOOKUP_REQUEST_ENDPOINT", NULL, "intake, jobbus",
     "Intakes send on-demand lookups here (default "
     "`ipc://$CALSETA_DATA_DIR/bus/lookup-in.sock`)."},
    {BUS, "LOOKUP_WORKER_ENDPOINT", NULL, "jobbus, enricher",
     "Enrichers take on-demand lookups here (default "
     "`ipc://$CALSETA_DATA_DIR/bus/lookup-out.sock`); `tcp://` for enrichers on other hosts."},
    {BUS, "RUNNER_ENDPOINT", NULL, "workflowd, runner",
     "Workflow runner(s): a runner binds it; workflowd connects to every one of a comma list "
     "(default `ipc://$CALSETA_DATA_DIR/bus/runner.sock`)."},
    {BUS, "WORKFLOW_REQUEST_ENDPOINT", NULL, "intake, workflowd",
     "Workflow code checks and test runs: workflowd binds it; intakes connect to every one of a "
     "comma list (default `ipc://$CALSETA_DATA_DIR/bus/workflow.sock`); `tcp://` for a workflowd "
     "on another host (CURVE, see `CURVE_WORKFLOW_PUBLIC_KEY`)."},
    {BUS, "CURVE_SERVER_PUBLIC_KEY", NULL, "all but the runner",
     "Z85 CURVE public key for every `tcp://` link but the runner's, unless the link has its "
     "own (`CURVE_<LINK>_PUBLIC_KEY`). Unset: each link's pair is made at first start in "
     "`$CALSETA_DATA_DIR/curve/<link>.key` (mode 0600; first line public, second secret)."},
    {BUS, "CURVE_SERVER_SECRET_KEY", NULL, "jobbus, auditd",
     "Z85 CURVE secret key that goes with `CURVE_SERVER_PUBLIC_KEY` (only where a server binds)."},
    {BUS, "CURVE_AUDIT_PUBLIC_KEY", NULL, "all", "Z85 CURVE public key of the audit link."},
    {BUS, "CURVE_AUDIT_SECRET_KEY", NULL, "auditd", "Z85 CURVE secret key of the audit link."},
    {BUS, "CURVE_JOBS_PUBLIC_KEY", NULL, "intake, jobbus, enricher",
     "Z85 CURVE public key of the job-hint links."},
    {BUS, "CURVE_JOBS_SECRET_KEY", NULL, "jobbus", "Z85 CURVE secret key of the job-hint links."},
    {BUS, "CURVE_LOOKUP_PUBLIC_KEY", NULL, "intake, jobbus, enricher",
     "Z85 CURVE public key of the on-demand lookup links."},
    {BUS, "CURVE_LOOKUP_SECRET_KEY", NULL, "jobbus",
     "Z85 CURVE secret key of the on-demand lookup links."},
    {BUS, "CURVE_WORKFLOW_PUBLIC_KEY", NULL, "intake, workflowd",
     "Z85 CURVE public key of the workflow request link."},
    {BUS, "CURVE_WORKFLOW_SECRET_KEY", NULL, "workflowd",
     "Z85 CURVE secret key of the workflow request link."},
    {BUS, "CURVE_RUNNER_PUBLIC_KEY", NULL, "workflowd, runner",
     "Z85 CURVE public key of the runner link (the stack-wide pair never applies to it, so a "
     "runner holds no key of another link)."},
    {BUS, "CURVE_RUNNER_SECRET_KEY", NULL, "runner", "Z85 CURVE secret key of the runner link."},
    {BUS, "CURVE_CLIENT_PUBLIC_KEY", NULL, "all but the runner",
     "Z85 CURVE public key with which clients of every `tcp://` link but the runner's prove "
     "themselves, unless the link has its own (`CURVE_<LINK>_CLIENT_PUBLIC_KEY`); servers serve "
     "only this key and the link's allowed list. Unset: each link's client pair is made at first "
     "start in `$CALSETA_DATA_DIR/curve/<link>-client.key`."},
    {BUS, "CURVE_CLIENT_SECRET_KEY", NULL, "intake, enricher, all audit clients",
     "Z85 CURVE secret key that goes with `CURVE_CLIENT_PUBLIC_KEY` (only where a client "
     "connects; the public key is derived from it when only this is set)."},
    {BUS, "CURVE_AUDIT_CLIENT_PUBLIC_KEY", NULL, "auditd, all",
     "Z85 CURVE client public key of the audit link."},
    {BUS, "CURVE_AUDIT_CLIENT_SECRET_KEY", NULL, "all", "Z85 CURVE client secret key of the audit link."},
    {BUS, "CURVE_AUDIT_ALLOWED_CLIENT_KEYS", NULL, "auditd",
     "Comma list of further Z85 client public keys the audit link's servers serve (one per remote "
     "host with a pair of its own, from `calseta gen-curve-keys`)."},
    {BUS, "CURVE_JOBS_CLIENT_PUBLIC_KEY", NULL, "jobbus, intake, enricher",
     "Z85 CURVE client public key of the job-hint link."},
    {BUS, "CURVE_JOBS_CLIENT_SECRET_KEY", NULL, "intake, enricher", "Z85 CURVE client secret key of the job-hint link."},
    {BUS, "CURVE_JOBS_ALLOWED_CLIENT_KEYS", NULL, "jobbus",
     "Comma list of further Z85 client public keys the job-hint link's servers serve (one per remote "
     "host with a pair of its own, from `calseta gen-curve-keys`)."},
    {BUS, "CURVE_LOOKUP_CLIENT_PUBLIC_KEY", NULL, "jobbus, intake, enricher",
     "Z85 CURVE client public key of the on-demand lookup link."},
    {BUS, "CURVE_LOOKUP_CLIENT_SECRET_KEY", NULL, "intake, enricher", "Z85 CURVE client secret key of the on-demand lookup link."},
    {BUS, "CURVE_LOOKUP_ALLOWED_CLIENT_KEYS", NULL, "jobbus",
     "Comma list of further Z85 client public keys the on-demand lookup link's servers serve (one per remote "
     "host with a pair of its own, from `calseta gen-curve-keys`)."},
    {BUS, "CURVE_WORKFLOW_CLIENT_PUBLIC_KEY", NULL, "workflowd, intake",
     "Z85 CURVE client public key of the workflow request link."},
    {BUS, "CURVE_WORKFLOW_CLIENT_SECRET_KEY", NULL, "intake",
     "Z85 CURVE client secret key of the workflow request link."},
    {BUS, "CURVE_WORKFLOW_ALLOWED_CLIENT_KEYS", NULL, "workflowd",
     "Comma list of further Z85 client public keys the workflow request link's servers serve (one "
     "per remote host with a pair of its own, from `calseta gen-curve-keys`)."},
    {BUS, "CURVE_RUNNER_CLIENT_PUBLIC_KEY", NULL, "runner, workflowd",
     "Z85 CURVE client public key of the runner link (the stack-wide client pair never applies to it)."},
    {BUS, "CURVE_RUNNER_CLIENT_SECRET_KEY", NULL, "workflowd", "Z85 CURVE client secret key of the runner link."},
    {BUS, "CURVE_RUNNER_ALLOWED_CLIENT_KEYS", NULL, "runner",
     "Comma list of further Z85 client public keys the runner link's servers serve (one per remote "
     "host with a pair of its own, from `calseta gen-curve-keys`)."},

    /* ---- audit ---- */
    {AUDIT, "AUDIT_ENDPOINT", NULL, "all",
     "auditd binds it; every producer connects to it (default "
     "`ipc://$CALSETA_DATA_DIR/bus/audit.sock`)."},
    {AUDIT, "AUDIT_STDOUT", "true", "auditd", "Write audit lines to auditd's stdout."},
    {AUDIT, "AUDIT_LOG_FILE", NULL, "auditd",
     "Append audit lines to this file (needed for exactly-once after a crash)."},
    {AUDIT, "AUDIT_ROTATE_BYTES", "0", "auditd",
     "Rotate the file at this size (`file` to `file.1` ... `file.5`); 0: never."},
    {AUDIT, "AUDIT_FSYNC_MS", "0", "auditd",
     "0: fsync and commit every batch before acknowledging it; N: group batches for N ms per "
     "fsync."},
    {AUDIT, "AUDIT_REFUSAL_WINDOW_SECONDS", "60", "intake",
     "Refusals that name no key (missing or malformed header, unknown key prefix, rate "
     "limited) are aggregated per reason and client IP: the first of a window is written at "
     "once, the rest as one event with their count when the window ends. 0: every refusal is "
     "its own event."},
    {AUDIT, "AUDIT_SPOOL_DIR", NULL, "all",
     "Producers' spool files. Empty: `$CALSETA_DATA_DIR/audit-spool`."},

    /* ---- enrichment ---- */
    {ENRICH, "ENRICHER_CONCURRENCY", "8", "enricher", "Jobs in flight per worker process."},
    {ENRICH, "ENRICH_JOB_LEASE_SECONDS", "60", "enricher",
     "Lease of a claimed job (at least 2), renewed every third of it while it runs; a dead "
     "worker's jobs are taken over when it expires. 3/8 of it bounds a completing statement, "
     "which then fails and its jobs are tried again."},
    {ENRICH, "ENRICH_JOB_DEADLINE_SECONDS", "120", "enricher",
     "A job's time budget: unfinished lookups are failed then, and a completion is not tried "
     "again when the try would end past it."},
    {ENRICH, "ENRICH_JOB_MAX_ATTEMPTS", "5", "enricher",
     "Claims before a job is marked failed."},
    {ENRICH, "ENRICHER_POLL_INTERVAL_MS", "2000", "enricher",
     "Claim poll; takes over expired leases and covers lost bus hints."},
    {ENRICH, "ENRICHER_PROVIDER_RELOAD_SECONDS", "300", "enricher",
     "Periodic provider reload (changes are also picked up at once through NOTIFY)."},
    {ENRICH, "ENRICHER_PROVIDER_MAX_CONCURRENCY", "4", "enricher",
     "Default requests in flight per provider and worker."},
    {ENRICH, "ENRICHER_PROVIDER_RATE_PER_SECOND", "10", "enricher",
     "Default requests per second per provider (shared by all workers unless "
     "ENRICHER_PROVIDER_RATE_GLOBAL=false)."},
    {ENRICH, "ENRICHER_PROVIDER_RATE_GLOBAL", "true", "enricher",
     "Provider rate caps hold across all workers (leased from PostgreSQL); false: per worker."},
    {ENRICH, "ENRICHER_PROVIDER_TIMEOUT_SECONDS", "30", "enricher", "Default provider request timeout."},
    {ENRICH, "ENRICHER_MAX_RESPONSE_BYTES", "1048576", "enricher",
     "Larger provider answers fail the lookup."},
    {ENRICH, "ENRICHER_CACHE_ENTRIES", "10000", "enricher", "In-process result cache, entries."},
    {ENRICH, "ENRICHER_CACHE_MAX_BYTES", "67108864", "enricher", "In-process result cache, bytes."},
    {ENRICH, "ENRICHER_DB_CONNECTIONS", "4", "enricher",
     "PostgreSQL connections per worker for results and claims; a worker holds 3 more (quota "
     "leases, lease renewals, LISTEN), so size max_connections for this + 3 per worker."},
    {ENRICH, "ENRICHER_IDLE_CONNECTIONS", "2048", "enricher",
     "Idle keep-alive provider connections a worker keeps for reuse (all hosts together)."},
    {ENRICH, "ENRICHER_HOST_CONNECTIONS", "256", "enricher",
     "Provider requests a worker has in flight to one host:port at most (and so the kept-alive "
     "connections it opens to it); requests beyond wait in order, in the worker, for one to end. "
     "0: no limit beyond the providers' concurrency caps."},
    {ENRICH, "ENRICHMENT_MOCK_MODE", "false", "intake, enricher",
     "Providers with `mock_responses` answer from them (no credentials, no HTTP)."},
    {ENRICH, "ENRICHER_ALLOW_LOOPBACK", "false", "intake, enricher",
     "Tests only: provider URLs may reach 127.0.0.0/8 and ::1 (local stand-ins); logged as a "
     "warning. Metadata addresses stay blocked."},

    /* ---- workflows ---- */
    {WORKFLOW, "WORKFLOW_MAX_MEMORY_MB", "256", "runner", "Address-space limit of one run (16-65536)."},
    {WORKFLOW, "RUNNER_CONCURRENCY", "4", "runner",
     "Runs one runner executes at once, and warm children it keeps ready (1-256)."},
    {WORKFLOW, "WORKFLOW_RUN_GRACE_SECONDS", "30", "workflowd",
     "A run's lease is its timeout plus this (3-86400); a run without an answer by then is "
     "given back."},
    {WORKFLOW, "WORKFLOW_RUN_MAX_ATTEMPTS", "3", "workflowd", "Times a run is taken before it is failed."},
    {WORKFLOW, "WORKFLOW_MAX_INFLIGHT", "8", "workflowd", "Runs one workflowd process has taken and not finished."},
    {WORKFLOW, "APPROVAL_DEFAULT_TIMEOUT_SECONDS", "3600", "intake",
     "Expiry of an approval request when the workflow sets none."},
    {WORKFLOW, "CALSETA_BASE_URL", "http://localhost:8000", "intake, workflowd",
     "Public base URL of the API, used in approval decide links."},
    {WORKFLOW, "SLACK_SIGNING_SECRET", NULL, "intake",
     "Verifies Slack approval callbacks; unset: every callback is refused (403)."},

    /* ---- identity integrations ---- */
    {IDENTITY, "OKTA_DOMAIN", NULL, "intake, workflowd, enricher", "Okta org domain, e.g. `acme.okta.com`."},
    {IDENTITY, "OKTA_API_TOKEN", NULL, "intake, workflowd, enricher", "Okta API token (sent as `SSWS ...`)."},
    {IDENTITY, "OKTA_BASE_URL", NULL, "intake, workflowd",
     "Okta API base. Empty: `https://{OKTA_DOMAIN}/api/v1` (override for tests)."},
    {IDENTITY, "ENTRA_TENANT_ID", NULL, "intake, workflowd, enricher", "Microsoft Entra tenant."},
    {IDENTITY, "ENTRA_CLIENT_ID", NULL, "intake, workflowd, enricher", "App registration client id."},
    {IDENTITY, "ENTRA_CLIENT_SECRET", NULL, "intake, workflowd, enricher", "App registration secret."},
    {IDENTITY, "ENTRA_LOGIN_URL", NULL, "intake, workflowd",
     "Token endpoint base. Empty: `https://login.microsoftonline.com`."},
    {IDENTITY, "ENTRA_GRAPH_URL", NULL, "intake, workflowd",
     "Microsoft Graph base. Empty: `https://graph.microsoft.com/v1.0`."},

    /* ---- notifications ---- */
    {NOTIFY, "WORKFLOWD_POLL_INTERVAL_MS", "1000", "workflowd",
     "Sweep of queued approval notifications, besides the NOTIFY wake-up (100-600000)."},
    {NOTIFY, "APPROVAL_NOTIFIER", "none", "intake, workflowd",
     "`none`, `slack` or `teams` (any case; anything else is `none` with a warning)."},
    {NOTIFY, "SLACK_BOT_TOKEN", NULL, "workflowd", "Slack bot token with `chat:write`; required for `slack`."},
    {NOTIFY, "SLACK_API_URL", "https://slack.com/api", "workflowd", "Slack Web API base URL."},
    {NOTIFY, "APPROVAL_DEFAULT_CHANNEL", "", "workflowd",
     "Slack channel when the workflow names none (then `#general`)."},
    {NOTIFY, "TEAMS_WEBHOOK_URL", NULL, "workflowd", "Teams incoming webhook URL (a secret); required for `teams`."},
    {NOTIFY, "NOTIFIER_RETRY_SECONDS", "30", "workflowd", "Wait between send attempts (0-3600)."},

    /* ---- agents ---- */
    {AGENTS, "AGENT_SECRET_OVERLAP_SECONDS", "86400", "intake",
     "After a signing-secret rotation the old secret stays valid this long (0-2592000)."},
    {AGENTS, "AGENT_WEBHOOK_ALLOW_LOOPBACK", "false", "intake, dispatcher",
     "Tests only: agent webhook URLs may name loopback addresses."},
    {AGENTS, "DISPATCHER_CONCURRENCY", "64", "dispatcher", "Agent deliveries in flight per dispatcher process."},
    {AGENTS, "DISPATCHER_LEASE_SECONDS", "30", "dispatcher",
     "Lease of a claimed delivery; a dead dispatcher's deliveries are taken over when it expires."},
    {AGENTS, "DISPATCHER_POLL_INTERVAL_MS", "1000", "dispatcher", "Claim poll of the dispatcher."},
    {AGENTS, "DISPATCHER_DB_CONNECTIONS", "4", "dispatcher", "PostgreSQL connections per dispatcher."},
    {AGENTS, "AGENT_RESPONSE_MAX_BYTES", "65536", "dispatcher",
     "Bytes of an agent webhook answer read and stored."},
    {AGENTS, "CALSETA_API_BASE_URL", "http://localhost:8000", "intake, dispatcher",
     "Base URL of this API as agents should call it back, sent in agent payloads."},

    /* ---- MCP server (docs/mcp.md) ---- */
    {MCP, "RATE_LIMIT_MCP_PER_MINUTE", "600", "intake",
     "MCP requests per key per minute (a key's own rate_limit_per_minute wins)."},
    {MCP, "MCP_PUBLIC_BASE_URL", NULL, "intake",
     "Public base URL named by the RFC 9728 metadata and `WWW-Authenticate` (e.g. "
     "`https://calseta.example.com`). Empty: the request's scheme and Host."},
    {MCP, "MCP_ALLOWED_HOSTS", NULL, "intake",
     "Comma list of accepted Host values (DNS rebinding). Empty: on a loopback listener only "
     "localhost, 127.0.0.1 and [::1]; otherwise any."},
    {MCP, "MCP_ALLOWED_ORIGINS", NULL, "intake",
     "Comma list of accepted Origin values. Empty: a request with Origin must be same-origin."},
    {MCP, "MCP_MAX_SESSIONS_PER_KEY", "32", "intake",
     "Open MCP sessions per key (both transports); the next initialize or GET /sse is 429."},
    {MCP, "MCP_SESSION_IDLE_SECONDS", "1800", "intake",
     "Idle expiry of a Streamable HTTP session."},
    {MCP, "MCP_MAX_MESSAGE_BYTES", "1048576", "intake", "Largest JSON-RPC message (413 beyond)."},
    {MCP, "MCP_SSE_MAX_BUFFER_BYTES", "1048576", "intake",
     "Unsent bytes allowed on one SSE stream; a reader that falls further behind is disconnected."},

    /* ---- Azure ---- */
    {AZURE, "AZURE_KEY_VAULT_URL", NULL, "all (process environment only)",
     "Vault base URL (`https://<vault>.vault.azure.net`); set in the real environment it loads "
     "every enabled secret at start (name `a-b` becomes setting `A_B`). Wins over AWS when both "
     "are set."},
    {AZURE, "AZURE_CLIENT_ID", NULL, "all (process environment only)",
     "Client id of a user-assigned managed identity. Empty: the system-assigned identity."},
    {AZURE, "IDENTITY_ENDPOINT", NULL, "all (process environment only)",
     "Token endpoint set by App Service, Functions and Container Apps (used instead of instance "
     "metadata)."},
    {AZURE, "IDENTITY_HEADER", NULL, "all (process environment only)",
     "Header value that goes with `IDENTITY_ENDPOINT`."},
    {AZURE, "AZURE_IMDS_ENDPOINT", "http://169.254.169.254", "all (process environment only)",
     "Instance metadata base URL (override for tests)."},

    /* ---- AWS ---- */
    {AWS, "AWS_SECRETS_MANAGER_SECRET_NAME", NULL, "all (process environment only)",
     "Name or ARN of one secret whose `SecretString` is a JSON object of settings; set in the "
     "real environment it is read at start."},
    {AWS, "AWS_REGION", NULL, "all (process environment only)", "Region of the secret (required)."},
    {AWS, "AWS_DEFAULT_REGION", NULL, "all (process environment only)", "Used when `AWS_REGION` is unset."},
    {AWS, "AWS_SECRETS_MANAGER_ENDPOINT", NULL, "all (process environment only)",
     "API endpoint. Empty: `https://secretsmanager.<region>.amazonaws.com` (`.com.cn` for "
     "`cn-` regions); https required except for a loopback host."},
    {AWS, "AWS_ACCESS_KEY_ID", NULL, "all (process environment only)",
     "Static credentials, first choice when set with `AWS_SECRET_ACCESS_KEY`."},
    {AWS, "AWS_SECRET_ACCESS_KEY", NULL, "all (process environment only)", "See `AWS_ACCESS_KEY_ID`."},
    {AWS, "AWS_SESSION_TOKEN", NULL, "all (process environment only)", "Session token of temporary static credentials."},
    {AWS, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", NULL, "all (process environment only)",
     "ECS task role: credentials from `AWS_CONTAINER_CREDENTIALS_ENDPOINT` + this path."},
    {AWS, "AWS_CONTAINER_CREDENTIALS_FULL_URI", NULL, "all (process environment only)",
     "ECS / EKS Pod Identity: credentials from this URL (https, loopback or the ECS/EKS "
     "link-local addresses)."},
    {AWS, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", NULL, "all (process environment only)",
     "File holding the `Authorization` value for the container endpoint."},
    {AWS, "AWS_CONTAINER_AUTHORIZATION_TOKEN", NULL, "all (process environment only)",
     "`Authorization` value for the container endpoint."},
    {AWS, "AWS_CONTAINER_CREDENTIALS_ENDPOINT", "http://169.254.170.2", "all (process environment only)",
     "Base of the relative URI (override for tests)."},
    {AWS, "AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254", "all (process environment only)",
     "Instance metadata base URL (IMDSv2 only)."},
    {AWS, "AWS_EC2_METADATA_DISABLED", "false", "all (process environment only)",
     "`true` forbids the instance-profile credentials."},

    /* ---- tools ---- */
    {TOOLS, "CALSETA_MIGRATIONS_DIR", NULL, "master",
     "Where `calseta migrate` finds `NNNN_*.sql`. Empty: next to the program "
     "(`../../migrations`, `../share/calseta/migrations`)."},
    {TOOLS, "PRODUCE_WAIT_MS", "120000", "auditd",
     "`calseta-auditd produce` (load generator of the tests and benchmark): how long to wait "
     "for the last acknowledgement."},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct setting_doc *setting_doc_find(const char *name)
{
    for (const struct setting_doc *d = SETTINGS_TABLE; name && d->name; d++)
        if (!strcmp(d->name, name))
            return d;
    return NULL;
}

const char *setting_value(const struct settings *s, const char *name)
{
    const struct setting_doc *d = setting_doc_find(name);
    if (!d)
        msg_fatal("setting %s is read but missing from the settings table", name);
    const char *v = s ? settings_get(s, name) : NULL;
    return v && *v ? v : d->def;
}

char *setting_dup(const struct settings *s, const char *name)
{
    const char *v = setting_value(s, name);
    return v ? xstrdup(v) : NULL;
}

int setting_ll(const struct settings *s, const char *name, long long min, long long max,
               long long *out, char *err, size_t errlen)
{
    const char *v = setting_value(s, name);
    *out = 0;
    if (v && parse_ll(v, min, max, out) != 0) {
        snprintf(err, errlen, "%s must be an integer between %lld and %lld (got \"%s\")", name, min,
                 max, v);
        return -1;
    }
    return 0;
}

int setting_integer(const struct settings *s, const char *name, int min, int max, int *out,
                    char *err, size_t errlen)
{
    long long v;
    *out = 0;
    if (setting_ll(s, name, min, max, &v, err, errlen))
        return -1;
    *out = (int)v;
    return 0;
}

int setting_bool(const struct settings *s, const char *name, int *out, char *err, size_t errlen)
{
    static const char *const yes[] = {"true", "1", "yes", "on", "t", "y"};
    static const char *const no[] = {"false", "0", "no", "off", "f", "n"};
    const char *v = setting_value(s, name);
    *out = 0;
    if (!v)
        return 0;
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(v, no[i]))
            return 0;
    }
    snprintf(err, errlen, "%s must be a boolean (true/false), got \"%s\"", name, v);
    return -1;
}

/* A table cell: '|' escaped, so a description can never break the row. */
static void cell(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            buf_puts(b, "\\|");
        else
            buf_append(b, s, 1);
    }
}

char *settings_table_markdown(void)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "# Configuration reference\n\n"
                 "<!-- Generated by scripts/config-doc.sh from libcommon/config/settings_table.c;"
                 " edit the table, not this file. -->\n\n"
                 "Every Calseta program reads its settings once at start, from these sources, "
                 "lowest priority first:\n\n"
                 "1. `.env` in the working directory (optional),\n"
                 "2. the process environment,\n"
                 "3. at most one secrets backend (Azure Key Vault or AWS Secrets Manager), chosen "
                 "by the real process environment only; its values override both others.\n\n"
                 "A setting that is unset or empty takes its default. An invalid value stops the "
                 "program with a message naming the setting. `calseta config-check NAME...` shows "
                 "which backend a host uses and whether each name is set, without printing any "
                 "value. The secrets backends are described in [security.md](security.md).\n\n"
                 "Besides the names below, an enrichment worker reads the names a provider's "
                 "`env_var_mapping` lists, from the same sources, when the provider has no "
                 "stored credentials: for the built-in providers `VIRUSTOTAL_API_KEY` "
                 "(VirusTotal), `ABUSEIPDB_API_KEY` (AbuseIPDB) and the Okta and Entra settings "
                 "below; for a provider you add, the names you give it. See "
                 "[enrichment.md](enrichment.md).\n");
    const char *group = NULL;
    for (const struct setting_doc *d = SETTINGS_TABLE; d->name; d++) {
        if (!group || strcmp(group, d->group)) {
            group = d->group;
            buf_printf(&b, "\n## %s\n\n| Setting | Default | Read by | Meaning |\n|---|---|---|---|\n",
                       group);
        }
        buf_printf(&b, "| `%s` | ", d->name);
        if (d->def && *d->def) {
            buf_puts(&b, "`");
            cell(&b, d->def);
            buf_puts(&b, "`");
        } else {
            buf_puts(&b, "(empty)");
        }
        buf_puts(&b, " | ");
        cell(&b, d->services);
        buf_puts(&b, " | ");
        cell(&b, d->description);
        buf_puts(&b, " |\n");
    }
    return b.data; /* the caller owns the buffer's block */
}
