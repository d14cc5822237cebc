-- 0006_workflow_leases.sql - workflow runs become leased jobs, so a dead intake or runner loses none.
--
-- A run is committed 'queued' first. An intake process takes it with a lease
-- (calseta_workflow_run_claim: status 'running', lease_owner = that process, lease_expires_at =
-- now + the workflow's timeout + a grace, attempt_count + 1) and sends it to a runner over
-- ZeroMQ. The outcome is recorded only by the lease holder of that attempt
-- (calseta_workflow_run_finish). When the runner does not answer (it died, or none is
-- connected) the holder gives the run back (calseta_workflow_run_release) and it is taken again;
-- when the holder itself dies its lease expires and any intake's sweep takes the run over
-- (calseta_workflow_runs_claimable). A run taken more than p_max_attempts times is failed with
-- the reason, so a run that kills whatever runs it cannot circulate forever.
--
-- The runner holds no database credentials and no encryption key on purpose (each run child is
-- a fork of it), so the claim is made by the intake on the runner's behalf; the lease belongs
-- to the intake process that sent the RUN.

ALTER TABLE workflow_runs ADD COLUMN lease_owner TEXT;
ALTER TABLE workflow_runs ADD COLUMN lease_expires_at TIMESTAMPTZ;

-- Runs left 'running' by the previous version get a lease that ends like its recovery did.
UPDATE workflow_runs r SET lease_expires_at = r.updated_at + make_interval(secs => w.timeout_seconds + 120)
FROM workflows w WHERE w.id = r.workflow_id AND r.status = 'running';

CREATE INDEX ix_workflow_runs_lease ON workflow_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX ix_workflow_runs_queued ON workflow_runs (created_at) WHERE status = 'queued';

DROP FUNCTION calseta_workflow_run_claim(UUID);
DROP FUNCTION calseta_workflow_runs_recover(INTEGER);

-- Records the outcome of a run (once): status, result, log, duration, its approval's
-- execution_result and the workflow_executed activity event. Internal: callers go through
-- calseta_workflow_run_finish (lease holder) or the claim (runs that cannot start).
CREATE OR REPLACE FUNCTION calseta_workflow_run_complete(p_run UUID, p_status TEXT,
                                                         p_result JSONB, p_log TEXT,
                                                         p_duration INTEGER)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    r workflow_runs;
    w workflows;
    ap_uuid UUID;
BEGIN
    UPDATE workflow_runs SET status = p_status, result = p_result, log_output = p_log,
        duration_ms = p_duration, completed_at = calseta_ts(clock_timestamp()),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
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
                'duration_ms', r.duration_ms, 'attempts', r.attempt_count,
                'indicator_type', r.trigger_context->>'indicator_type',
                'indicator_value', r.trigger_context->>'indicator_value',
                'approval_uuid', ap_uuid));
    RETURN calseta_workflow_run_json(r);
END $$;

-- Takes a run that is queued, or running under an expired lease: marks it running under a new
-- lease for p_owner and returns what the RUN request needs (the workflow's current code, the
-- indicator and alert contexts, the declared-and-allowed secrets as Fernet tokens, the attempt
-- number the outcome must quote). NULL if the run cannot be taken (another process holds it, or
-- it is finished). A missing indicator, or too many attempts, fails the run here: {failed}.
CREATE FUNCTION calseta_workflow_run_claim(p_run UUID, p_owner TEXT, p_grace INTEGER,
                                           p_max_attempts INTEGER)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    r workflow_runs;
    w workflows;
    ind indicators;
    al alerts;
    msg TEXT;
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
        msg := format('The run was started %s times and its runner or intake process stopped '
                      'each time; it is not retried again.', r.attempt_count - 1);
        PERFORM calseta_workflow_run_complete(r.uuid, 'failed',
            jsonb_build_object('success', false, 'message', msg, 'data', '{}'::jsonb), '', 0);
        RETURN jsonb_build_object('failed', msg);
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
        'run_uuid', r.uuid, 'attempt', r.attempt_count, 'code', w.code,
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

-- The outcome of attempt p_attempt, recorded only while p_owner still holds that lease (a late
-- answer after a takeover changes nothing). The run's JSON, or NULL when the lease was lost.
CREATE FUNCTION calseta_workflow_run_finish(p_run UUID, p_owner TEXT, p_attempt INTEGER,
                                            p_status TEXT, p_result JSONB, p_log TEXT,
                                            p_duration INTEGER)
RETURNS JSONB LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM workflow_runs
    WHERE uuid = p_run AND status = 'running' AND lease_owner = p_owner
      AND attempt_count = p_attempt
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN calseta_workflow_run_complete(p_run, p_status, p_result, p_log, p_duration);
END $$;

-- Gives a run back to the queue (no runner answered, or none was connected). With p_unsent the
-- attempt is not counted: the request never left this process.
CREATE FUNCTION calseta_workflow_run_release(p_run UUID, p_owner TEXT, p_attempt INTEGER,
                                             p_unsent BOOLEAN)
RETURNS BOOLEAN LANGUAGE sql AS $$
    WITH r AS (
        UPDATE workflow_runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
            attempt_count = attempt_count - CASE WHEN p_unsent THEN 1 ELSE 0 END,
            updated_at = now()
        WHERE uuid = p_run AND status = 'running' AND lease_owner = p_owner
          AND attempt_count = p_attempt
        RETURNING 1)
    SELECT count(*) > 0 FROM r
$$;

-- Runs any intake may take now: queued for at least p_min_age_ms (the intake that committed a
-- run takes it at once; the sweep is the safety net), or running under an expired lease.
CREATE FUNCTION calseta_workflow_runs_claimable(p_min_age_ms INTEGER, p_limit INTEGER)
RETURNS SETOF UUID LANGUAGE sql STABLE AS $$
    (SELECT uuid FROM workflow_runs
     WHERE status = 'queued' AND updated_at < now() - make_interval(secs => p_min_age_ms / 1000.0)
     ORDER BY created_at LIMIT p_limit)
    UNION ALL
    (SELECT uuid FROM workflow_runs
     WHERE status = 'running' AND lease_expires_at < now()
     ORDER BY lease_expires_at LIMIT p_limit)
    LIMIT p_limit
$$;
