-- 0001_reference_schema.sql - the tables shared with the original system, same names and
-- columns (so data moves between the two), with the quoted-default quirk fixed.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE detection_rules (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    name TEXT NOT NULL,
    source_rule_id TEXT,
    source_name TEXT,
    severity TEXT,
    is_active BOOLEAN NOT NULL DEFAULT true,
    mitre_tactics TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    mitre_techniques TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    mitre_subtechniques TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    data_sources TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    run_frequency TEXT,
    created_by TEXT,
    documentation TEXT,
    is_system BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX ix_detection_rules_source ON detection_rules (source_name, source_rule_id);

CREATE TABLE source_integrations (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    source_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT true,
    auth_type TEXT,
    auth_config JSONB,
    documentation TEXT
);

CREATE TABLE context_documents (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    title TEXT NOT NULL,
    document_type TEXT NOT NULL,
    is_global BOOLEAN NOT NULL DEFAULT false,
    targeting_rules JSONB,
    description TEXT,
    content TEXT NOT NULL,
    tags TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    version INTEGER NOT NULL DEFAULT 1,
    is_system BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE workflows (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    name TEXT NOT NULL,
    workflow_type TEXT,
    indicator_types TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    code TEXT NOT NULL,
    code_version INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL DEFAULT 'draft',
    timeout_seconds INTEGER NOT NULL DEFAULT 300,
    retry_count INTEGER NOT NULL DEFAULT 0,
    is_active BOOLEAN NOT NULL DEFAULT true,
    is_system BOOLEAN NOT NULL DEFAULT false,
    tags TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    time_saved_minutes INTEGER,
    approval_mode VARCHAR(20) NOT NULL DEFAULT 'always',
    approval_channel TEXT,
    approval_timeout_seconds INTEGER NOT NULL DEFAULT 3600,
    risk_level TEXT NOT NULL DEFAULT 'medium',
    documentation TEXT
);

CREATE TABLE agent_registrations (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    name TEXT NOT NULL,
    description TEXT,
    endpoint_url TEXT NOT NULL,
    auth_header_name TEXT,
    auth_header_value_encrypted TEXT,
    trigger_on_sources TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    trigger_on_severities TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    trigger_filter JSONB,
    timeout_seconds INTEGER NOT NULL DEFAULT 30,
    retry_count INTEGER NOT NULL DEFAULT 3,
    is_active BOOLEAN NOT NULL DEFAULT true,
    documentation TEXT,
    CONSTRAINT ck_agent_auth_header_pair CHECK (
        (auth_header_name IS NULL AND auth_header_value_encrypted IS NULL) OR
        (auth_header_name IS NOT NULL AND auth_header_value_encrypted IS NOT NULL))
);

CREATE TABLE api_keys (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    name TEXT NOT NULL,
    key_prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    scopes TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    is_active BOOLEAN NOT NULL DEFAULT true,
    expires_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    allowed_sources TEXT[],
    key_type TEXT NOT NULL DEFAULT 'human',
    is_system BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE indicator_field_mappings (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    source_name TEXT,
    field_path TEXT NOT NULL,
    indicator_type TEXT NOT NULL,
    extraction_target TEXT NOT NULL DEFAULT 'normalized',
    is_system BOOLEAN NOT NULL DEFAULT true,
    is_active BOOLEAN NOT NULL DEFAULT true,
    description TEXT
);

CREATE TABLE enrichment_providers (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    provider_name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT,
    is_builtin BOOLEAN NOT NULL DEFAULT false,
    is_active BOOLEAN NOT NULL DEFAULT true,
    supported_indicator_types TEXT[] NOT NULL DEFAULT '{}',
    http_config JSONB NOT NULL,
    auth_type TEXT NOT NULL DEFAULT 'no_auth',
    auth_config JSONB,
    env_var_mapping JSONB,
    default_cache_ttl_seconds INTEGER NOT NULL DEFAULT 3600,
    cache_ttl_by_type JSONB,
    malice_rules JSONB,
    mock_responses JSONB,
    CONSTRAINT uq_enrichment_provider_name UNIQUE (provider_name)
);
CREATE INDEX ix_enrichment_providers_is_active ON enrichment_providers (is_active);

CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    title TEXT NOT NULL,
    description TEXT,
    severity TEXT NOT NULL DEFAULT 'Pending',
    source_name TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    source_time TIMESTAMPTZ,
    ingested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    enriched_at TIMESTAMPTZ,
    is_enriched BOOLEAN NOT NULL DEFAULT false,
    fingerprint TEXT,
    duplicate_count INTEGER NOT NULL DEFAULT 0,
    last_seen_at TIMESTAMPTZ,
    status TEXT NOT NULL DEFAULT 'Open',
    enrichment_status TEXT NOT NULL DEFAULT 'Pending',
    close_classification TEXT,
    acknowledged_at TIMESTAMPTZ,
    triaged_at TIMESTAMPTZ,
    closed_at TIMESTAMPTZ,
    malice_override TEXT,
    malice_override_source TEXT,
    malice_override_at TIMESTAMPTZ,
    raw_payload JSONB NOT NULL DEFAULT '{}',
    agent_findings JSONB,
    tags TEXT[] NOT NULL DEFAULT ARRAY[]::text[],
    is_system BOOLEAN NOT NULL DEFAULT false,
    detection_rule_id BIGINT REFERENCES detection_rules(id) ON DELETE SET NULL
);
CREATE INDEX ix_alerts_fingerprint_created_at ON alerts (fingerprint, created_at DESC);
CREATE INDEX ix_alerts_created_at ON alerts (created_at DESC);

CREATE TABLE indicators (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    type TEXT NOT NULL,
    value TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    is_enriched BOOLEAN NOT NULL DEFAULT false,
    malice TEXT NOT NULL DEFAULT 'Pending',
    malice_source TEXT NOT NULL DEFAULT 'enrichment',
    malice_overridden_at TIMESTAMPTZ,
    enrichment_results JSONB,
    CONSTRAINT uq_indicator_type_value UNIQUE (type, value)
);

CREATE TABLE alert_indicators (
    id BIGSERIAL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    alert_id BIGINT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    indicator_id BIGINT NOT NULL REFERENCES indicators(id) ON DELETE CASCADE,
    CONSTRAINT uq_alert_indicator UNIQUE (alert_id, indicator_id)
);
CREATE INDEX ix_alert_indicators_indicator_id ON alert_indicators (indicator_id);

CREATE TABLE enrichment_field_extractions (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    provider_name TEXT NOT NULL,
    indicator_type TEXT NOT NULL,
    source_path TEXT NOT NULL,
    target_key TEXT NOT NULL,
    value_type TEXT NOT NULL DEFAULT 'string',
    is_system BOOLEAN NOT NULL DEFAULT true,
    is_active BOOLEAN NOT NULL DEFAULT true,
    description TEXT,
    CONSTRAINT uq_enrichment_extraction_provider_type_path UNIQUE (provider_name, indicator_type, source_path)
);

CREATE TABLE activity_events (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    event_type TEXT NOT NULL,
    actor_type TEXT NOT NULL,
    actor_key_prefix TEXT,
    alert_id BIGINT REFERENCES alerts(id) ON DELETE SET NULL,
    workflow_id BIGINT REFERENCES workflows(id) ON DELETE SET NULL,
    detection_rule_id BIGINT REFERENCES detection_rules(id) ON DELETE SET NULL,
    "references" JSONB
);
CREATE INDEX ix_activity_events_alert_id ON activity_events (alert_id, created_at DESC);

CREATE TABLE workflow_runs (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    workflow_id BIGINT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    trigger_type TEXT NOT NULL,
    trigger_context JSONB,
    code_version_executed INTEGER NOT NULL,
    log_output TEXT,
    result JSONB,
    status TEXT NOT NULL DEFAULT 'pending',
    attempt_count INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER,
    started_at TEXT,
    completed_at TEXT
);
CREATE INDEX ix_workflow_runs_workflow_id ON workflow_runs (workflow_id);

CREATE TABLE workflow_approval_requests (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    workflow_id BIGINT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    workflow_run_id BIGINT REFERENCES workflow_runs(id) ON DELETE SET NULL,
    trigger_type TEXT NOT NULL,
    trigger_agent_key_prefix TEXT NOT NULL,
    trigger_context JSONB,
    reason TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    notifier_type TEXT NOT NULL DEFAULT 'none',
    notifier_channel TEXT,
    external_message_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    responder_id TEXT,
    responded_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ NOT NULL,
    execution_result JSONB,
    decide_token TEXT
);

CREATE TABLE workflow_code_versions (
    id BIGSERIAL PRIMARY KEY,
    workflow_id BIGINT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    code TEXT NOT NULL,
    saved_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_workflow_code_versions_workflow_id ON workflow_code_versions (workflow_id);

CREATE TABLE agent_runs (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    agent_registration_id BIGINT NOT NULL REFERENCES agent_registrations(id) ON DELETE CASCADE,
    alert_id BIGINT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    request_payload JSONB,
    response_status_code INTEGER,
    response_body JSONB,
    status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    completed_at TEXT
);

-- The 14 system normalized-field mappings of the original (pass 2 of indicator extraction).
INSERT INTO indicator_field_mappings (source_name, field_path, indicator_type, extraction_target, is_system, description)
VALUES
 (NULL, 'src_ip', 'ip', 'normalized', true, 'Source IP'),
 (NULL, 'dst_ip', 'ip', 'normalized', true, 'Destination IP'),
 (NULL, 'src_hostname', 'domain', 'normalized', true, 'Source hostname'),
 (NULL, 'dst_hostname', 'domain', 'normalized', true, 'Destination hostname'),
 (NULL, 'file_hash_md5', 'hash_md5', 'normalized', true, 'File MD5'),
 (NULL, 'file_hash_sha256', 'hash_sha256', 'normalized', true, 'File SHA-256'),
 (NULL, 'file_hash_sha1', 'hash_sha1', 'normalized', true, 'File SHA-1'),
 (NULL, 'actor_email', 'email', 'normalized', true, 'Actor email'),
 (NULL, 'actor_username', 'account', 'normalized', true, 'Actor username'),
 (NULL, 'dns_query', 'domain', 'normalized', true, 'DNS query'),
 (NULL, 'http_url', 'url', 'normalized', true, 'HTTP URL'),
 (NULL, 'http_hostname', 'domain', 'normalized', true, 'HTTP hostname'),
 (NULL, 'email_from', 'email', 'normalized', true, 'Email sender'),
 (NULL, 'email_reply_to', 'email', 'normalized', true, 'Email reply-to');
