-- 0007_workflow_claims.sql - corrections to the workflow run leases of 0006 (review).
--
-- * A run executes the code version it was queued or approved with
--   (workflow_runs.code_version_executed), not the code saved since: a run can wait in the
--   queue (no runner) or be retried after a PATCH, and an approved run must run what was
--   approved.
-- * The sweep orders queued runs and expired leases together by age, so a backlog of queued
--   runs cannot starve runs whose intake died.

CREATE OR REPLACE FUNCTION calseta_workflow_run_claim(p_run UUID, p_owner TEXT, p_grace INTEGER,
                                           p_max_attempts INTEGER)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    r workflow_runs;
    w workflows;
    ind indicators;
    al alerts;
    msg TEXT;
    code TEXT;
BEGIN
    UPDATE workflow_runs x SET status = 'running',
        started_at = coalesce(x.started_at, calseta_ts(clock_timestamp())),
        lease_owner = p_owner,
        lease_expires_at = now() + make_interval(secs => wf.timeout_seconds + p_grace),
        attempt_count = x.attempt_count + 1, updated_at = now()
    FROM workflows wf
    WHERE x.uuid = p_run AND wf.id = x.workflow_id
      AND (x.status = 'queued' OR (x.status = 'running' AND x.lease_expires_at < now()))
    RETURNING x.* INTO r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF r.attempt_count > p_max_attempts THEN
        msg := format('The run was sent to a runner %s times without an answer (the runner or '
                      'the intake stopped, or the run outlived its lease); it is not retried '
                      'again.', r.attempt_count - 1);
        PERFORM calseta_workflow_run_complete(r.uuid, 'failed',
            jsonb_build_object('success', false, 'message', msg, 'data', '{}'::jsonb), '', 0);
        RETURN jsonb_build_object('failed', msg);
    END IF;
    SELECT * INTO w FROM workflows WHERE id = r.workflow_id;
    -- the version the run was queued (or approved) with, not whatever was saved since
    IF w.code_version = r.code_version_executed THEN
        code := w.code;
    ELSE
        SELECT v.code INTO code FROM workflow_code_versions v
        WHERE v.workflow_id = w.id AND v.version = r.code_version_executed
        ORDER BY v.id DESC LIMIT 1;
    END IF;
    IF code IS NULL THEN
        msg := format('Version %s of the workflow code is no longer available',
                      r.code_version_executed);
        PERFORM calseta_workflow_run_complete(r.uuid, 'failed',
            jsonb_build_object('success', false, 'message', msg, 'data', '{}'::jsonb), '', 0);
        RETURN jsonb_build_object('failed', msg);
    END IF;
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
        'run_uuid', r.uuid, 'attempt', r.attempt_count, 'code', code,
        'timeout_seconds', w.timeout_seconds, 'trigger_context', r.trigger_context,
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

-- Runs any intake may take now, oldest first: queued for at least p_min_age_ms (the intake
-- that committed a run takes it at once; the sweep is the safety net), or running under an
-- expired lease.
CREATE OR REPLACE FUNCTION calseta_workflow_runs_claimable(p_min_age_ms INTEGER, p_limit INTEGER)
RETURNS SETOF UUID LANGUAGE sql STABLE AS $$
    SELECT uuid FROM (
        (SELECT uuid, updated_at AS since FROM workflow_runs
         WHERE status = 'queued'
           AND updated_at < now() - make_interval(secs => p_min_age_ms / 1000.0)
         ORDER BY updated_at LIMIT p_limit)
        UNION ALL
        (SELECT uuid, lease_expires_at AS since FROM workflow_runs
         WHERE status = 'running' AND lease_expires_at < now()
         ORDER BY lease_expires_at LIMIT p_limit)) c
    ORDER BY since LIMIT p_limit
$$;
