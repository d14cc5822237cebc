-- 0005_workflows.sql - workflows: declared secrets, admin-allowed encrypted values, and the
-- statements of the workflow REST API (services/intake/workflows_*.c, approvals.c).
--
-- Secrets (never readable by other workflows nor by the API): a workflow declares the names it wants (workflows.secret_names,
-- set with workflows:write); an admin allows a name for that workflow by storing its value in
-- workflow_secrets, Fernet-encrypted under ENCRYPTION_KEY (value_encrypted is the token). A run
-- receives only names that are both declared and allowed; the values are decrypted by the
-- intake when it builds the RUN request and never returned by the API.
--
-- Run records: queued (committed before the runner is asked) → running → success | failed |
-- timed_out. Each function below is one statement, hence one transaction.

ALTER TABLE workflows ADD COLUMN secret_names TEXT[] NOT NULL DEFAULT ARRAY[]::text[];

CREATE TABLE workflow_secrets (
    id BIGSERIAL PRIMARY KEY,
    workflow_id BIGINT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value_encrypted TEXT NOT NULL,
    allowed_by TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_workflow_secret UNIQUE (workflow_id, name)
);

CREATE INDEX ix_workflow_runs_status ON workflow_runs (status, created_at);
CREATE INDEX ix_workflow_approvals_workflow ON workflow_approval_requests (workflow_id);

CREATE FUNCTION calseta_workflow_json(w workflows, with_code BOOLEAN) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', w.uuid, 'name', w.name, 'workflow_type', w.workflow_type,
        'indicator_types', to_jsonb(w.indicator_types), 'code_version', w.code_version,
        'state', w.state, 'timeout_seconds', w.timeout_seconds, 'retry_count', w.retry_count,
        'is_active', w.is_active, 'is_system', w.is_system, 'tags', to_jsonb(w.tags),
        'time_saved_minutes', w.time_saved_minutes, 'approval_mode', w.approval_mode,
        'approval_channel', w.approval_channel,
        'approval_timeout_seconds', w.approval_timeout_seconds, 'risk_level', w.risk_level,
        'documentation', w.documentation, 'secret_names', to_jsonb(w.secret_names),
        'allowed_secret_names', coalesce((SELECT jsonb_agg(s.name ORDER BY s.name)
                                          FROM workflow_secrets s WHERE s.workflow_id = w.id),
                                         '[]'::jsonb),
        'created_at', calseta_ts(w.created_at), 'updated_at', calseta_ts(w.updated_at))
        || CASE WHEN with_code THEN jsonb_build_object('code', w.code) ELSE '{}'::jsonb END
$$;

CREATE FUNCTION calseta_workflow_run_json(r workflow_runs) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', r.uuid, 'workflow_uuid', (SELECT w.uuid FROM workflows w WHERE w.id = r.workflow_id),
        'trigger_type', r.trigger_type, 'trigger_context', r.trigger_context,
        'code_version_executed', r.code_version_executed, 'status', r.status,
        'attempt_count', r.attempt_count, 'result', r.result, 'log_output', r.log_output,
        'duration_ms', r.duration_ms, 'started_at', r.started_at,
        'completed_at', r.completed_at, 'created_at', calseta_ts(r.created_at),
        'updated_at', calseta_ts(r.updated_at))
$$;

-- Never includes decide_token. A pending request past its expiry shows as expired.
CREATE FUNCTION calseta_approval_json(a workflow_approval_requests) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', a.uuid, 'workflow_uuid', w.uuid, 'workflow_name', w.name,
        'risk_level', w.risk_level,
        'workflow_run_uuid', (SELECT r.uuid FROM workflow_runs r WHERE r.id = a.workflow_run_id),
        'trigger_type', a.trigger_type, 'trigger_agent_key_prefix', a.trigger_agent_key_prefix,
        'trigger_context', a.trigger_context, 'reason', a.reason, 'confidence', a.confidence,
        'notifier_type', a.notifier_type, 'notifier_channel', a.notifier_channel,
        'external_message_id', a.external_message_id,
        'status', CASE WHEN a.status = 'pending' AND a.expires_at < now() THEN 'expired'
                       ELSE a.status END,
        'responder_id', a.responder_id, 'responded_at', calseta_ts(a.responded_at),
        'expires_at', calseta_ts(a.expires_at), 'execution_result', a.execution_result,
        'created_at', calseta_ts(a.created_at), 'updated_at', calseta_ts(a.updated_at))
    FROM workflows w WHERE w.id = a.workflow_id
$$;

CREATE FUNCTION calseta_text_array(j JSONB) RETURNS TEXT[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(SELECT jsonb_array_elements_text(j))
$$;

-- Create from a checked JSON object (the intake validated every field).
CREATE FUNCTION calseta_workflow_create(p JSONB) RETURNS JSONB LANGUAGE sql AS $$
    INSERT INTO workflows AS w (name, workflow_type, indicator_types, code, state,
        timeout_seconds, retry_count, is_active, tags, time_saved_minutes, approval_mode,
        approval_channel, approval_timeout_seconds, risk_level, documentation, secret_names)
    VALUES (p->>'name', p->>'workflow_type',
        coalesce(calseta_text_array(p->'indicator_types'), ARRAY[]::text[]), p->>'code',
        coalesce(p->>'state', 'draft'), coalesce((p->>'timeout_seconds')::int, 300),
        coalesce((p->>'retry_count')::int, 0), coalesce((p->>'is_active')::boolean, true),
        coalesce(calseta_text_array(p->'tags'), ARRAY[]::text[]),
        (p->>'time_saved_minutes')::int, coalesce(p->>'approval_mode', 'always'),
        p->>'approval_channel', coalesce((p->>'approval_timeout_seconds')::int, 3600),
        coalesce(p->>'risk_level', 'medium'), p->>'documentation',
        coalesce(calseta_text_array(p->'secret_names'), ARRAY[]::text[]))
    RETURNING calseta_workflow_json(w, true)
$$;

-- Patch: only the keys present in p change (JSON null clears nullable fields). A code change
-- keeps the previous code in workflow_code_versions and bumps code_version. is_active follows
-- state unless p sets it.
CREATE FUNCTION calseta_workflow_patch(p_uuid UUID, p JSONB) RETURNS JSONB
LANGUAGE plpgsql AS $$
DECLARE
    w workflows;
    code_changed BOOLEAN;
BEGIN
    SELECT * INTO w FROM workflows WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    code_changed := p ? 'code' AND p->>'code' IS DISTINCT FROM w.code;
    IF code_changed THEN
        INSERT INTO workflow_code_versions (workflow_id, version, code)
        VALUES (w.id, w.code_version, w.code);
    END IF;
    UPDATE workflows x SET
        name = CASE WHEN p ? 'name' THEN p->>'name' ELSE x.name END,
        workflow_type = CASE WHEN p ? 'workflow_type' THEN p->>'workflow_type' ELSE x.workflow_type END,
        indicator_types = CASE WHEN p ? 'indicator_types'
            THEN calseta_text_array(p->'indicator_types') ELSE x.indicator_types END,
        code = CASE WHEN code_changed THEN p->>'code' ELSE x.code END,
        code_version = x.code_version + CASE WHEN code_changed THEN 1 ELSE 0 END,
        state = CASE WHEN p ? 'state' THEN p->>'state' ELSE x.state END,
        is_active = CASE WHEN p ? 'is_active' THEN (p->>'is_active')::boolean
                         WHEN p ? 'state' THEN p->>'state' = 'active' ELSE x.is_active END,
        timeout_seconds = CASE WHEN p ? 'timeout_seconds' THEN (p->>'timeout_seconds')::int
                               ELSE x.timeout_seconds END,
        retry_count = CASE WHEN p ? 'retry_count' THEN (p->>'retry_count')::int ELSE x.retry_count END,
        tags = CASE WHEN p ? 'tags' THEN calseta_text_array(p->'tags') ELSE x.tags END,
        time_saved_minutes = CASE WHEN p ? 'time_saved_minutes'
            THEN (p->>'time_saved_minutes')::int ELSE x.time_saved_minutes END,
        approval_mode = CASE WHEN p ? 'approval_mode' THEN p->>'approval_mode' ELSE x.approval_mode END,
        approval_channel = CASE WHEN p ? 'approval_channel' THEN p->>'approval_channel'
                                ELSE x.approval_channel END,
        approval_timeout_seconds = CASE WHEN p ? 'approval_timeout_seconds'
            THEN (p->>'approval_timeout_seconds')::int ELSE x.approval_timeout_seconds END,
        risk_level = CASE WHEN p ? 'risk_level' THEN p->>'risk_level' ELSE x.risk_level END,
        documentation = CASE WHEN p ? 'documentation' THEN p->>'documentation' ELSE x.documentation END,
        secret_names = CASE WHEN p ? 'secret_names' THEN calseta_text_array(p->'secret_names')
                            ELSE x.secret_names END,
        updated_at = now()
    WHERE x.id = w.id RETURNING * INTO w;
    RETURN calseta_workflow_json(w, true) || jsonb_build_object('code_changed', code_changed);
END $$;

-- Execute (REST): checks, then a queued run or a pending approval, in one transaction.
-- p: {indicator_type, indicator_value, alert_uuid?, reason?, confidence?}. The trigger type is
-- the calling key's key_type. Returns {error} or {status, ...}.
CREATE FUNCTION calseta_workflow_execute(p_uuid UUID, p JSONB, p_key_prefix TEXT,
                                         p_default_timeout INTEGER, p_token TEXT)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    w workflows;
    ktype TEXT;
    al alerts;
    ctx JSONB;
    gate BOOLEAN;
    run_uuid UUID;
    ap workflow_approval_requests;
BEGIN
    SELECT * INTO w FROM workflows WHERE uuid = p_uuid;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', 'not_found');
    END IF;
    SELECT key_type INTO ktype FROM api_keys WHERE key_prefix = p_key_prefix;
    ktype := coalesce(ktype, 'human');
    IF ktype = 'agent' AND (p->'reason' IS NULL OR p->'confidence' IS NULL) THEN
        RETURN jsonb_build_object('error', 'agent_fields_required');
    END IF;
    IF w.state <> 'active' THEN
        RETURN jsonb_build_object('error', 'not_executable', 'state', w.state);
    END IF;
    IF p->>'alert_uuid' IS NOT NULL THEN
        SELECT * INTO al FROM alerts WHERE uuid = (p->>'alert_uuid')::uuid;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('error', 'alert_not_found');
        END IF;
    END IF;
    ctx := jsonb_build_object('indicator_type', p->>'indicator_type',
                              'indicator_value', p->>'indicator_value',
                              'alert_id', al.id, 'alert_uuid', al.uuid, 'trigger_source', ktype);
    gate := w.approval_mode = 'always' OR (w.approval_mode = 'agent_only' AND ktype = 'agent');
    IF gate THEN
        INSERT INTO workflow_approval_requests AS a (workflow_id, trigger_type,
            trigger_agent_key_prefix, trigger_context, reason, confidence, notifier_type,
            notifier_channel, status, expires_at, decide_token)
        VALUES (w.id, ktype, coalesce(p_key_prefix, ''), ctx, coalesce(p->>'reason', ''),
            coalesce((p->>'confidence')::float8, 0.0), 'none', w.approval_channel, 'pending',
            now() + make_interval(secs => coalesce(NULLIF(w.approval_timeout_seconds, 0),
                                                   p_default_timeout)),
            p_token)
        RETURNING * INTO ap;
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, workflow_id,
                                     alert_id, "references")
        VALUES ('workflow_approval_requested', 'api', p_key_prefix, w.id, al.id,
                jsonb_build_object('workflow_uuid', w.uuid, 'workflow_name', w.name,
                                   'approval_uuid', ap.uuid, 'trigger_type', ktype,
                                   'indicator_type', p->>'indicator_type',
                                   'indicator_value', p->>'indicator_value'));
        RETURN jsonb_build_object('status', 'pending_approval', 'approval_request_uuid', ap.uuid,
                                  'expires_at', calseta_ts(ap.expires_at),
                                  'workflow_id', w.id, 'trigger_type', ktype);
    END IF;
    INSERT INTO workflow_runs (workflow_id, trigger_type, trigger_context, code_version_executed,
                               status)
    VALUES (w.id, ktype, ctx, w.code_version, 'queued') RETURNING uuid INTO run_uuid;
    RETURN jsonb_build_object('status', 'queued', 'run_uuid', run_uuid, 'trigger_type', ktype);
END $$;

-- Decision on a pending approval (REST, decide page, Slack). Approval creates the queued run
-- in the same transaction. Expiry is persisted (unlike the reference's REST path).
CREATE FUNCTION calseta_approval_decide(p_uuid UUID, p_approved BOOLEAN, p_responder TEXT,
                                        p_actor TEXT)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    a workflow_approval_requests;
    w workflows;
    run_id BIGINT;
    run_uuid UUID;
BEGIN
    SELECT * INTO a FROM workflow_approval_requests WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', 'not_found');
    END IF;
    IF a.status <> 'pending' THEN
        RETURN jsonb_build_object('error', 'already_decided', 'status', a.status);
    END IF;
    IF a.expires_at < now() THEN
        UPDATE workflow_approval_requests SET status = 'expired', updated_at = now()
        WHERE id = a.id;
        RETURN jsonb_build_object('error', 'expired', 'status', 'expired');
    END IF;
    SELECT * INTO w FROM workflows WHERE id = a.workflow_id;
    IF p_approved THEN
        INSERT INTO workflow_runs (workflow_id, trigger_type, trigger_context,
                                   code_version_executed, status)
        VALUES (w.id, a.trigger_type, a.trigger_context, w.code_version, 'queued')
        RETURNING id, uuid INTO run_id, run_uuid;
    END IF;
    UPDATE workflow_approval_requests SET
        status = CASE WHEN p_approved THEN 'approved' ELSE 'rejected' END,
        responder_id = p_responder, responded_at = now(), workflow_run_id = run_id,
        updated_at = now()
    WHERE id = a.id RETURNING * INTO a;
    INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, workflow_id,
                                 "references")
    VALUES ('workflow_approval_responded', 'api', p_actor, w.id,
            jsonb_build_object('workflow_uuid', w.uuid, 'approval_uuid', a.uuid,
                               'status', a.status, 'responder_id', p_responder));
    RETURN jsonb_build_object('status', a.status, 'run_uuid', run_uuid,
                              'approval', calseta_approval_json(a));
END $$;

-- Takes a queued run: marks it running and returns what the RUN request needs (the workflow's
-- current code, the indicator and alert contexts, the declared-and-allowed secrets as Fernet
-- tokens). NULL if the run is not queued. A missing indicator fails the run here.
CREATE FUNCTION calseta_workflow_run_claim(p_run UUID) RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    r workflow_runs;
    w workflows;
    ind indicators;
    al alerts;
    msg TEXT;
BEGIN
    UPDATE workflow_runs SET status = 'running', started_at = calseta_ts(clock_timestamp()),
        updated_at = now()
    WHERE uuid = p_run AND status = 'queued' RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO w FROM workflows WHERE id = r.workflow_id;
    SELECT * INTO ind FROM indicators
    WHERE type = r.trigger_context->>'indicator_type'
      AND value = r.trigger_context->>'indicator_value';
    IF NOT FOUND THEN
        msg := format('Indicator (%s, %L) not found in database',
                      r.trigger_context->>'indicator_type', r.trigger_context->>'indicator_value');
        PERFORM calseta_workflow_run_complete(r.uuid, 'failed',
            jsonb_build_object('success', false, 'message', msg, 'data', '{}'::jsonb), '', 0);
        RETURN jsonb_build_object('failed', msg);
    END IF;
    IF r.trigger_context->>'alert_id' IS NOT NULL THEN
        SELECT * INTO al FROM alerts WHERE id = (r.trigger_context->>'alert_id')::bigint;
    END IF;
    RETURN jsonb_build_object(
        'run_uuid', r.uuid, 'code', w.code, 'timeout_seconds', w.timeout_seconds,
        'trigger_context', r.trigger_context,
        'indicator', jsonb_build_object('uuid', ind.uuid, 'type', ind.type, 'value', ind.value,
            'malice', ind.malice, 'is_enriched', ind.is_enriched,
            'enrichment_results', ind.enrichment_results,
            'first_seen', calseta_ts(ind.first_seen), 'last_seen', calseta_ts(ind.last_seen),
            'created_at', calseta_ts(ind.created_at), 'updated_at', calseta_ts(ind.updated_at)),
        'alert', CASE WHEN al.id IS NULL THEN NULL ELSE jsonb_build_object('uuid', al.uuid,
            'title', al.title, 'severity', al.severity, 'source_name', al.source_name,
            'status', al.status, 'occurred_at', calseta_ts(al.occurred_at),
            'tags', to_jsonb(al.tags), 'raw_payload', al.raw_payload) END,
        'secrets', calseta_workflow_secret_tokens(w.id));
END $$;

-- {name: token} for names the workflow declares and an admin allowed.
CREATE FUNCTION calseta_workflow_secret_tokens(p_workflow BIGINT) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(s.name, s.value_encrypted), '{}'::jsonb)
    FROM workflow_secrets s JOIN workflows w ON w.id = s.workflow_id
    WHERE s.workflow_id = p_workflow AND s.name = ANY (w.secret_names)
$$;

-- Records the outcome of a running run (once), its approval's execution_result and the
-- workflow_executed activity event.
CREATE FUNCTION calseta_workflow_run_complete(p_run UUID, p_status TEXT, p_result JSONB,
                                              p_log TEXT, p_duration INTEGER)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    r workflow_runs;
    w workflows;
    ap_uuid UUID;
BEGIN
    UPDATE workflow_runs SET status = p_status, result = p_result, log_output = p_log,
        duration_ms = p_duration, completed_at = calseta_ts(clock_timestamp()),
        attempt_count = attempt_count + 1, updated_at = now()
    WHERE uuid = p_run AND status IN ('queued', 'running') RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO w FROM workflows WHERE id = r.workflow_id;
    UPDATE workflow_approval_requests SET execution_result = p_result, updated_at = now()
    WHERE workflow_run_id = r.id RETURNING uuid INTO ap_uuid;
    INSERT INTO activity_events (event_type, actor_type, workflow_id, alert_id, "references")
    VALUES ('workflow_executed', 'system', w.id, (r.trigger_context->>'alert_id')::bigint,
            jsonb_build_object('workflow_uuid', w.uuid, 'workflow_name', w.name,
                'run_uuid', r.uuid, 'trigger_type', r.trigger_type, 'status', r.status,
                'duration_ms', r.duration_ms,
                'indicator_type', r.trigger_context->>'indicator_type',
                'indicator_value', r.trigger_context->>'indicator_value',
                'approval_uuid', ap_uuid));
    RETURN calseta_workflow_run_json(r);
END $$;

-- At intake start: runs left queued/running longer than their timeout (+ grace) by a process
-- that died are failed.
CREATE FUNCTION calseta_workflow_runs_recover(p_grace_seconds INTEGER) RETURNS INTEGER
LANGUAGE sql AS $$
    WITH stale AS (
        UPDATE workflow_runs r SET status = 'failed',
            result = jsonb_build_object('success', false, 'message',
                'The run was interrupted (its process stopped) and did not complete.',
                'data', '{}'::jsonb),
            completed_at = calseta_ts(clock_timestamp()), updated_at = now()
        FROM workflows w
        WHERE w.id = r.workflow_id AND r.status IN ('queued', 'running')
          AND r.updated_at < now() - make_interval(secs => w.timeout_seconds + p_grace_seconds)
        RETURNING r.id)
    SELECT count(*)::int FROM stale
$$;
