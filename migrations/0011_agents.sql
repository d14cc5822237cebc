-- 0011_agents.sql - agent webhooks and context documents:
--   * signing secrets of agent registrations (Fernet tokens; the previous one during a rotation)
--   * agent_deliveries: the durable, leased delivery jobs the dispatcher claims
--   * agent_runs: one row per attempt, with the delivery id, error and duration
--   * targeting rules (context documents and agent trigger filters), document applicability
--   * the webhook payload, the matching of agents, enqueueing, claiming and finishing deliveries
--   * a trigger that queues deliveries in the transaction that finishes an enrichment job

ALTER TABLE agent_registrations
    ADD COLUMN webhook_secret_encrypted TEXT,
    ADD COLUMN previous_webhook_secret_encrypted TEXT,
    ADD COLUMN previous_secret_expires_at TIMESTAMPTZ;
CREATE INDEX ix_agent_registrations_active ON agent_registrations (is_active, created_at);

ALTER TABLE agent_runs
    ADD COLUMN delivery_uuid UUID,
    ADD COLUMN error TEXT,
    ADD COLUMN duration_ms INTEGER,
    ADD COLUMN response_truncated BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX ix_agent_runs_agent ON agent_runs (agent_registration_id, id DESC);
CREATE INDEX ix_agent_runs_alert ON agent_runs (alert_id);

-- One row per (agent, alert) delivery, or per synthetic test delivery (alert_id NULL). uuid is
-- the X-Calseta-Delivery header: the same on every attempt. claims counts leases taken (a
-- dispatcher killed mid-attempt leaves a claim without an attempt); attempts counts attempts
-- whose outcome was recorded. payload is built once, at the first claim, so every retry sends
-- the same body.
CREATE TABLE agent_deliveries (
    id BIGSERIAL PRIMARY KEY,
    uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    agent_id BIGINT NOT NULL REFERENCES agent_registrations(id) ON DELETE CASCADE,
    alert_id BIGINT REFERENCES alerts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL DEFAULT 'alert' CHECK (kind IN ('alert', 'test')),
    trigger TEXT NOT NULL,
    source_job_id BIGINT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    claims INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deadline_at TIMESTAMPTZ NOT NULL,
    lease_owner TEXT,
    lease_expires_at TIMESTAMPTZ,
    payload JSONB,
    last_status TEXT,
    last_status_code INTEGER,
    last_error TEXT,
    result JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    CHECK (kind = 'test' OR alert_id IS NOT NULL)
);
CREATE INDEX ix_agent_deliveries_claim ON agent_deliveries (next_attempt_at, id)
    WHERE status IN ('pending', 'running');
CREATE INDEX ix_agent_deliveries_alert ON agent_deliveries (alert_id);
CREATE INDEX ix_agent_deliveries_agent ON agent_deliveries (agent_id);
-- An enrichment job queues at most one delivery per agent, however often its status is set.
CREATE UNIQUE INDEX ux_agent_deliveries_source_job ON agent_deliveries (agent_id, source_job_id)
    WHERE source_job_id IS NOT NULL;

-- Python's datetime.isoformat() for UTC: "+00:00", microseconds left out when zero (the form
-- the reference uses in webhook bodies and agent_runs timestamps).
CREATE FUNCTION calseta_isots(t TIMESTAMPTZ) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN t IS NULL THEN NULL
                WHEN extract(microseconds FROM t)::bigint % 1000000 = 0
                THEN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '+00:00'
                ELSE to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00' END
$$;

---------------------------------------------------------------------------------------------
-- Targeting rules (context documents and agent trigger filters). The structure is validated
-- when a document or an agent is saved, so evaluation never meets a malformed rule; it still
-- treats anything unexpected as "does not match" instead of failing.
---------------------------------------------------------------------------------------------

-- Python's str() of a JSON value, as the reference compares values.
CREATE FUNCTION calseta_pystr(v JSONB) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'string' THEN v #>> '{}'
        WHEN 'boolean' THEN CASE WHEN v = 'true'::jsonb THEN 'True' ELSE 'False' END
        WHEN 'null' THEN 'None'
        WHEN 'number' THEN v::text
        WHEN 'array' THEN '[' || coalesce((SELECT string_agg(CASE jsonb_typeof(e)
                                                WHEN 'string' THEN '''' || (e #>> '{}') || ''''
                                                ELSE calseta_pystr(e) END, ', ' ORDER BY n)
                                           FROM jsonb_array_elements(v) WITH ORDINALITY x(e, n)),
                                          '') || ']'
        ELSE v::text END
$$;

CREATE FUNCTION calseta_pyfloat(s TEXT) RETURNS DOUBLE PRECISION LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN btrim(s) ~* '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?$'
                THEN btrim(s)::double precision END
$$;

-- One rule {field, op, value} against an alert's source_name, severity and tags.
CREATE FUNCTION calseta_targeting_rule(r JSONB, p_source TEXT, p_severity TEXT, p_tags TEXT[])
RETURNS BOOLEAN LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    f TEXT;
    op TEXT;
    av JSONB;
    rv JSONB;
BEGIN
    IF jsonb_typeof(r) <> 'object' OR NOT (r ? 'field') OR NOT (r ? 'op') THEN
        RETURN false;
    END IF;
    f := r->>'field';
    op := r->>'op';
    rv := r->'value';
    av := CASE f WHEN 'source_name' THEN to_jsonb(p_source)
                 WHEN 'severity' THEN to_jsonb(p_severity)
                 WHEN 'tags' THEN to_jsonb(coalesce(p_tags, ARRAY[]::text[])) END;
    IF av IS NULL THEN
        RETURN false;
    END IF;
    IF op = 'eq' THEN
        RETURN calseta_pystr(av) = calseta_pystr(rv);
    ELSIF op = 'in' THEN
        RETURN jsonb_typeof(rv) = 'array'
           AND EXISTS (SELECT 1 FROM jsonb_array_elements(rv) e
                        WHERE calseta_pystr(e) = calseta_pystr(av));
    ELSIF op = 'contains' THEN
        RETURN jsonb_typeof(av) = 'array'
           AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(av) t
                        WHERE t = calseta_pystr(rv));
    ELSIF op IN ('gte', 'lte') THEN
        IF jsonb_typeof(av) <> 'string' OR calseta_pyfloat(av #>> '{}') IS NULL
           OR calseta_pyfloat(calseta_pystr(rv)) IS NULL THEN
            RETURN false;
        END IF;
        IF op = 'gte' THEN
            RETURN calseta_pyfloat(av #>> '{}') >= calseta_pyfloat(calseta_pystr(rv));
        END IF;
        RETURN calseta_pyfloat(av #>> '{}') <= calseta_pyfloat(calseta_pystr(rv));
    END IF;
    RETURN false;
END $$;

-- evaluate_targeting_rules of the reference: NULL or no non-empty list → true; match_any: at
-- least one rule; match_all: every rule; both present: both must hold.
CREATE FUNCTION calseta_targeting_match(rules JSONB, p_source TEXT, p_severity TEXT,
                                        p_tags TEXT[])
RETURNS BOOLEAN LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN rules IS NULL OR jsonb_typeof(rules) <> 'object' THEN true ELSE
        (jsonb_typeof(rules->'match_any') IS DISTINCT FROM 'array'
         OR jsonb_array_length(rules->'match_any') = 0
         OR EXISTS (SELECT 1 FROM jsonb_array_elements(rules->'match_any') r
                     WHERE calseta_targeting_rule(r, p_source, p_severity, p_tags)))
        AND
        (jsonb_typeof(rules->'match_all') IS DISTINCT FROM 'array'
         OR jsonb_array_length(rules->'match_all') = 0
         OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(rules->'match_all') r
                         WHERE NOT calseta_targeting_rule(r, p_source, p_severity, p_tags)))
    END
$$;

---------------------------------------------------------------------------------------------
-- Context documents
---------------------------------------------------------------------------------------------

CREATE INDEX ix_context_documents_type ON context_documents (is_global DESC, document_type, id);

-- The documents that apply to an alert, in the reference's order: global ones first, then
-- targeted ones, each group by document_type (ties by id, so the order is deterministic).
-- A non-global document without targeting rules applies to every alert (as in the reference).
CREATE FUNCTION calseta_applicable_documents(p_alert BIGINT)
RETURNS SETOF context_documents LANGUAGE sql STABLE AS $$
    SELECT d.* FROM context_documents d, alerts a
     WHERE a.id = p_alert
       AND (d.is_global OR calseta_targeting_match(d.targeting_rules, a.source_name, a.severity,
                                                   a.tags))
     ORDER BY d.is_global DESC, d.document_type, d.id
$$;

-- The API's view of a document; with_content adds content and targeting_rules (the full
-- response), without them it is the summary of list pages.
CREATE FUNCTION calseta_context_document_json(d context_documents, with_content BOOLEAN)
RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', d.uuid, 'title', d.title, 'document_type', d.document_type,
        'is_global', d.is_global, 'description', d.description, 'tags', to_jsonb(d.tags),
        'version', d.version, 'created_at', calseta_ts(d.created_at),
        'updated_at', calseta_ts(d.updated_at))
        || CASE WHEN with_content THEN jsonb_build_object('content', d.content,
                                                          'targeting_rules', d.targeting_rules)
                ELSE '{}'::jsonb END
$$;

-- The applicable documents of an alert as the REST API shows them (full responses).
CREATE FUNCTION calseta_alert_context_json(p_alert BIGINT) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(calseta_context_document_json(d, true)
                              ORDER BY d.is_global DESC, d.document_type, d.id), '[]'::jsonb)
      FROM calseta_applicable_documents(p_alert) d
$$;

---------------------------------------------------------------------------------------------
-- Agents
---------------------------------------------------------------------------------------------

-- The API's view of an agent (never a secret; has_* booleans say what is set).
CREATE FUNCTION calseta_agent_json(g agent_registrations) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', g.uuid, 'name', g.name, 'description', g.description,
        'endpoint_url', g.endpoint_url, 'auth_header_name', g.auth_header_name,
        'trigger_on_sources', to_jsonb(g.trigger_on_sources),
        'trigger_on_severities', to_jsonb(g.trigger_on_severities),
        'trigger_filter', g.trigger_filter, 'timeout_seconds', g.timeout_seconds,
        'retry_count', g.retry_count, 'is_active', g.is_active,
        'documentation', g.documentation,
        'previous_secret_expires_at',
            CASE WHEN g.previous_secret_expires_at > now()
                 THEN calseta_ts(g.previous_secret_expires_at) END,
        'created_at', calseta_ts(g.created_at), 'updated_at', calseta_ts(g.updated_at))
$$;

-- get_matching_agents of the reference: active agents in created_at order whose source and
-- severity lists (empty = all) and trigger_filter accept the alert.
CREATE FUNCTION calseta_matching_agents(p_alert BIGINT)
RETURNS SETOF agent_registrations LANGUAGE sql STABLE AS $$
    SELECT g.* FROM agent_registrations g, alerts a
     WHERE a.id = p_alert AND g.is_active
       AND (cardinality(g.trigger_on_sources) = 0 OR a.source_name = ANY (g.trigger_on_sources))
       AND (cardinality(g.trigger_on_severities) = 0 OR a.severity = ANY (g.trigger_on_severities))
       AND calseta_targeting_match(g.trigger_filter, a.source_name, a.severity, a.tags)
     ORDER BY g.created_at, g.id
$$;

-- _metadata of an alert: generation time, source, indicator count, the providers whose
-- lookups succeeded / failed (from the indicators' stored results), detection rule and
-- context document counts. Shared by GET /v1/alerts/{uuid} and the webhook body.
CREATE FUNCTION calseta_alert_metadata(p_alert BIGINT) RETURNS JSONB LANGUAGE sql STABLE AS $$
    WITH a AS (SELECT * FROM alerts WHERE id = p_alert),
    inds AS (SELECT i.* FROM alert_indicators ai JOIN indicators i ON i.id = ai.indicator_id
              WHERE ai.alert_id = p_alert),
    res AS (SELECT e.key AS provider, e.value AS r
              FROM inds, jsonb_each(CASE WHEN jsonb_typeof(inds.enrichment_results) = 'object'
                                         THEN inds.enrichment_results ELSE '{}'::jsonb END) e
             WHERE e.key <> '_validation' AND jsonb_typeof(e.value) = 'object')
    SELECT jsonb_build_object(
        'generated_at', calseta_isots(now()), 'alert_source', a.source_name,
        'indicator_count', (SELECT count(*) FROM inds),
        'enrichment', jsonb_build_object(
            'succeeded', coalesce((SELECT jsonb_agg(DISTINCT provider) FROM res
                                    WHERE r->>'success' = 'true'), '[]'::jsonb),
            'failed', coalesce((SELECT jsonb_agg(DISTINCT provider) FROM res
                                 WHERE r->>'status' = 'failed'), '[]'::jsonb),
            'enriched_at', calseta_isots(a.enriched_at)),
        'detection_rule_matched', a.detection_rule_id IS NOT NULL,
        'context_documents_applied', (SELECT count(*) FROM calseta_applicable_documents(p_alert)))
      FROM a
$$;

-- The webhook body of the reference (build_webhook_payload), with _metadata.enrichment's
-- succeeded/failed lists filled in from the indicators' stored results.
CREATE FUNCTION calseta_agent_payload(p_alert BIGINT, p_api_base TEXT) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    WITH a AS (SELECT * FROM alerts WHERE id = p_alert),
    inds AS (SELECT i.* FROM alert_indicators ai JOIN indicators i ON i.id = ai.indicator_id
              WHERE ai.alert_id = p_alert),
    docs AS (SELECT d FROM calseta_applicable_documents(p_alert) d)
    SELECT jsonb_build_object(
        'alert', jsonb_build_object(
            'uuid', a.uuid, 'title', a.title, 'severity', a.severity,
            'source_name', a.source_name, 'status', a.status,
            'occurred_at', calseta_isots(a.occurred_at), 'ingested_at', calseta_isots(a.ingested_at),
            'enriched_at', calseta_isots(a.enriched_at), 'is_enriched', a.is_enriched,
            'tags', to_jsonb(a.tags), 'close_classification', a.close_classification,
            'acknowledged_at', calseta_isots(a.acknowledged_at),
            'triaged_at', calseta_isots(a.triaged_at), 'closed_at', calseta_isots(a.closed_at),
            'agent_findings', coalesce(a.agent_findings, '[]'::jsonb),
            'created_at', calseta_isots(a.created_at), 'updated_at', calseta_isots(a.updated_at),
            '_metadata', calseta_alert_metadata(p_alert)),
        'indicators', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'uuid', i.uuid, 'type', i.type, 'value', i.value, 'malice', i.malice,
                'first_seen', calseta_isots(i.first_seen), 'last_seen', calseta_isots(i.last_seen),
                'is_enriched', i.is_enriched,
                'enrichment_results', coalesce((SELECT jsonb_object_agg(e.key,
                        CASE WHEN jsonb_typeof(e.value) = 'object' THEN e.value - 'raw'
                             ELSE e.value END)
                    FROM jsonb_each(CASE WHEN jsonb_typeof(i.enrichment_results) = 'object'
                                         THEN i.enrichment_results ELSE '{}'::jsonb END) e),
                    '{}'::jsonb)) ORDER BY i.type, i.value) FROM inds i), '[]'::jsonb),
        'detection_rule', (SELECT jsonb_build_object(
                'uuid', d.uuid, 'name', d.name, 'source_rule_id', d.source_rule_id,
                'source_name', d.source_name, 'severity', d.severity, 'is_active', d.is_active,
                'mitre_tactics', to_jsonb(d.mitre_tactics),
                'mitre_techniques', to_jsonb(d.mitre_techniques),
                'mitre_subtechniques', to_jsonb(d.mitre_subtechniques),
                'data_sources', to_jsonb(d.data_sources), 'run_frequency', d.run_frequency,
                'created_by', d.created_by, 'documentation', d.documentation,
                'created_at', calseta_isots(d.created_at), 'updated_at', calseta_isots(d.updated_at))
            FROM detection_rules d WHERE d.id = a.detection_rule_id),
        'context_documents', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'uuid', (d).uuid, 'title', (d).title, 'document_type', (d).document_type,
                'description', (d).description, 'is_global', (d).is_global,
                'tags', to_jsonb((d).tags), 'content', (d).content, 'version', (d).version,
                'created_at', calseta_isots((d).created_at),
                'updated_at', calseta_isots((d).updated_at))
                ORDER BY (d).is_global DESC, (d).document_type, (d).id) FROM docs), '[]'::jsonb),
        'workflows', coalesce((SELECT jsonb_agg(jsonb_build_object(
                'uuid', w.uuid, 'name', w.name, 'workflow_type', w.workflow_type,
                'documentation', w.documentation, 'risk_level', w.risk_level,
                'approval_mode', w.approval_mode, 'indicator_types', to_jsonb(w.indicator_types),
                'tags', to_jsonb(w.tags)) ORDER BY w.created_at, w.id)
            FROM (SELECT * FROM workflows WHERE state = 'active'
                   ORDER BY created_at, id LIMIT 20) w), '[]'::jsonb),
        'calseta_api_base_url', p_api_base)
      FROM a
$$;

-- Queues one delivery per agent for an alert: every matching agent (p_agent NULL) or the one
-- given. Idempotent per enrichment job (p_source_job). The total deadline of a delivery is
-- its whole retry budget (attempts x timeout plus backoff) plus one hour for a dispatcher
-- outage. Returns the agents queued (created_at order) and wakes the dispatchers.
CREATE FUNCTION calseta_agent_enqueue(p_alert BIGINT, p_agent BIGINT, p_trigger TEXT,
                                      p_source_job BIGINT)
RETURNS TABLE (agent_uuid UUID, agent_name TEXT, delivery_uuid UUID)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH g AS (
        SELECT m.* FROM calseta_matching_agents(p_alert) m WHERE p_agent IS NULL
        UNION ALL
        SELECT r.* FROM agent_registrations r WHERE r.id = p_agent),
    ins AS (
        INSERT INTO agent_deliveries (agent_id, alert_id, trigger, source_job_id, max_attempts,
                                      deadline_at)
        SELECT g.id, p_alert, p_trigger, p_source_job, greatest(1, g.retry_count + 1),
               now() + interval '1 hour'
                     + make_interval(secs => (g.retry_count + 1) * (g.timeout_seconds + 5)
                                             + least(300 * g.retry_count,
                                                     power(2, g.retry_count + 1)::int))
          FROM g
        ON CONFLICT DO NOTHING
        RETURNING agent_deliveries.agent_id, agent_deliveries.uuid)
    SELECT g.uuid, g.name, ins.uuid FROM ins JOIN g ON g.id = ins.agent_id
     ORDER BY g.created_at, g.id;
    IF FOUND THEN
        PERFORM pg_notify('calseta_agent_deliveries', '');
    END IF;
END $$;

-- Deliveries follow the end of enrichment, in the same transaction: whether the job succeeded
-- or was given up (the reference dispatches in both cases).
CREATE FUNCTION calseta_enrichment_jobs_dispatch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM calseta_agent_enqueue(NEW.alert_id, NULL, 'enrichment', NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER enrichment_jobs_dispatch AFTER UPDATE OF status ON enrichment_jobs
    FOR EACH ROW WHEN (NEW.status IN ('done', 'failed') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION calseta_enrichment_jobs_dispatch();

-- Writes the activity event that summarises a finished delivery.
CREATE FUNCTION calseta_agent_delivery_event(d agent_deliveries, g agent_registrations)
RETURNS VOID LANGUAGE sql AS $$
    INSERT INTO activity_events (event_type, actor_type, alert_id, "references")
    SELECT 'agent_webhook_dispatched', 'system', d.alert_id,
           jsonb_build_object('agent_name', g.name, 'agent_uuid', g.uuid,
                              'status', d.last_status, 'status_code', d.last_status_code,
                              'attempt_count', d.attempts, 'delivery_id', d.uuid,
                              'trigger', d.trigger, 'error', d.last_error)
     WHERE d.alert_id IS NOT NULL
$$;

-- Claims up to p_limit deliveries that are due: pending ones whose next attempt time has come,
-- and running ones whose lease expired (their dispatcher died). The lease covers the agent's
-- timeout plus p_lease_seconds. Deliveries past their deadline, or claimed too often without
-- an outcome (a dispatcher that dies on them), are given up first. Each row carries what the
-- dispatcher needs: the agent's endpoint and encrypted secrets, and the body to send.
CREATE FUNCTION calseta_agent_claim(p_owner TEXT, p_lease_seconds INTEGER, p_limit INTEGER,
                                    p_api_base TEXT)
RETURNS TABLE (delivery_id BIGINT, delivery_uuid UUID, kind TEXT, attempt INTEGER,
               agent JSONB, payload TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    d agent_deliveries;
    g agent_registrations;
BEGIN
    FOR d IN
        UPDATE agent_deliveries x
           SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL,
               completed_at = now(), updated_at = now(),
               last_status = coalesce(x.last_status, 'failed'),
               last_error = CASE WHEN x.deadline_at < now() THEN 'deadline exceeded'
                                 ELSE 'given up after ' || x.claims || ' claims' END
                            || coalesce(' (last error: ' || x.last_error || ')', ''),
               result = jsonb_build_object('delivered', false, 'status_code', x.last_status_code,
                                           'duration_ms', 0, 'error', 'deadline exceeded')
         WHERE x.id IN (SELECT y.id FROM agent_deliveries y
                         WHERE (y.status = 'pending'
                                OR (y.status = 'running' AND y.lease_expires_at < now()))
                           AND (y.deadline_at < now() OR y.claims >= y.max_attempts + 3)
                         ORDER BY y.id LIMIT 100 FOR UPDATE SKIP LOCKED)
        RETURNING x.*
    LOOP
        SELECT * INTO g FROM agent_registrations WHERE id = d.agent_id;
        PERFORM calseta_agent_delivery_event(d, g);
        IF d.kind = 'test' THEN
            PERFORM pg_notify('calseta_agent_test', d.uuid::text);
        END IF;
    END LOOP;

    RETURN QUERY
    WITH c AS (
        SELECT y.id FROM agent_deliveries y
         WHERE (y.status = 'pending' AND y.next_attempt_at <= now())
            OR (y.status = 'running' AND y.lease_expires_at < now())
         ORDER BY y.next_attempt_at, y.id LIMIT p_limit FOR UPDATE SKIP LOCKED),
    u AS (
        UPDATE agent_deliveries x
           SET status = 'running', claims = x.claims + 1, lease_owner = p_owner,
               lease_expires_at = now() + make_interval(secs => p_lease_seconds
                                                               + r.timeout_seconds),
               payload = coalesce(x.payload, calseta_agent_payload(x.alert_id, p_api_base)),
               updated_at = now()
          FROM c, agent_registrations r
         WHERE x.id = c.id AND r.id = x.agent_id
        RETURNING x.*)
    SELECT u.id, u.uuid, u.kind, u.attempts + 1,
           jsonb_build_object('uuid', r.uuid, 'name', r.name, 'endpoint_url', r.endpoint_url,
                              'auth_header_name', r.auth_header_name,
                              'auth_header_value_encrypted', r.auth_header_value_encrypted,
                              'secret', r.webhook_secret_encrypted,
                              'previous_secret',
                              CASE WHEN r.previous_secret_expires_at > now()
                                   THEN r.previous_webhook_secret_encrypted END,
                              'timeout_seconds', r.timeout_seconds),
           u.payload::text
      FROM u JOIN agent_registrations r ON r.id = u.agent_id;
END $$;

-- Records one attempt of a delivery this dispatcher holds. p_status: success | failed |
-- timeout | blocked (the SSRF guard refused the address; never retried). A failure is retried
-- after p_retry_seconds while attempts and the deadline allow. Writes the agent_runs row, and
-- the activity event when the delivery is finished. Returns 'done', 'retry', 'failed' or
-- 'lease_lost' (another dispatcher took the delivery over; nothing is written).
CREATE FUNCTION calseta_agent_attempt(p_delivery BIGINT, p_owner TEXT, p_status TEXT,
                                      p_code INTEGER, p_body TEXT, p_truncated BOOLEAN,
                                      p_error TEXT, p_started TIMESTAMPTZ, p_duration_ms INTEGER,
                                      p_retry_seconds INTEGER)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    d agent_deliveries;
    g agent_registrations;
    body JSONB;
    outcome TEXT;
BEGIN
    SELECT * INTO d FROM agent_deliveries WHERE id = p_delivery FOR UPDATE;
    IF NOT FOUND OR d.status <> 'running' OR d.lease_owner IS DISTINCT FROM p_owner THEN
        RETURN 'lease_lost';
    END IF;
    SELECT * INTO g FROM agent_registrations WHERE id = d.agent_id;
    IF p_body IS NOT NULL AND p_body <> '' THEN
        BEGIN
            body := p_body::jsonb;
        EXCEPTION WHEN others THEN
            body := jsonb_build_object('raw', p_body);
        END;
        IF p_truncated THEN
            body := jsonb_build_object('raw', p_body, 'truncated', true);
        END IF;
    END IF;
    d.attempts := d.attempts + 1;
    d.last_status := CASE WHEN p_status = 'blocked' THEN 'failed' ELSE p_status END;
    d.last_status_code := p_code;
    d.last_error := p_error;
    IF p_status = 'success' THEN
        outcome := 'done';
    ELSIF p_status <> 'blocked' AND d.attempts < d.max_attempts
          AND now() + make_interval(secs => p_retry_seconds) < d.deadline_at THEN
        outcome := 'retry';
    ELSE
        outcome := 'failed';
    END IF;

    IF d.kind = 'alert' THEN
        INSERT INTO agent_runs (agent_registration_id, alert_id, request_payload,
                                response_status_code, response_body, status, attempt_count,
                                started_at, completed_at, delivery_uuid, error, duration_ms,
                                response_truncated)
        VALUES (d.agent_id, d.alert_id,
                jsonb_build_object('endpoint_url', g.endpoint_url, 'delivery_id', d.uuid,
                                   'trigger', d.trigger),
                p_code, body, d.last_status, d.attempts, calseta_isots(p_started),
                calseta_isots(p_started + make_interval(secs => p_duration_ms / 1000.0)),
                d.uuid, p_error, p_duration_ms, coalesce(p_truncated, false));
    END IF;

    UPDATE agent_deliveries
       SET attempts = d.attempts, last_status = d.last_status, last_status_code = p_code,
           last_error = p_error, lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
           status = CASE outcome WHEN 'retry' THEN 'pending' WHEN 'done' THEN 'done'
                                 ELSE 'failed' END,
           next_attempt_at = CASE WHEN outcome = 'retry'
                                  THEN now() + make_interval(secs => p_retry_seconds)
                                  ELSE next_attempt_at END,
           completed_at = CASE WHEN outcome = 'retry' THEN NULL ELSE now() END,
           result = CASE WHEN outcome = 'retry' THEN NULL
                         ELSE jsonb_build_object('delivered', p_status = 'success',
                                                 'status_code', p_code,
                                                 'duration_ms', p_duration_ms,
                                                 'error', p_error) END
     WHERE id = p_delivery
    RETURNING * INTO d;
    IF outcome <> 'retry' THEN
        PERFORM calseta_agent_delivery_event(d, g);
        IF d.kind = 'test' THEN
            PERFORM pg_notify('calseta_agent_test', d.uuid::text);
        END IF;
    ELSE
        PERFORM pg_notify('calseta_agent_deliveries', '');
    END IF;
    RETURN outcome;
END $$;

-- Gives a delivery back without an attempt (the dispatcher is stopping): claimable again.
CREATE FUNCTION calseta_agent_release(p_delivery BIGINT, p_owner TEXT) RETURNS VOID
LANGUAGE sql AS $$
    UPDATE agent_deliveries SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                                claims = greatest(claims - 1, 0), updated_at = now()
     WHERE id = p_delivery AND lease_owner = p_owner AND status = 'running'
$$;

-- Seconds until the next pending delivery is due (NULL: none), for the dispatcher's timer.
CREATE FUNCTION calseta_agent_next_due() RETURNS DOUBLE PRECISION LANGUAGE sql STABLE AS $$
    SELECT greatest(0, extract(epoch FROM min(CASE WHEN status = 'pending' THEN next_attempt_at
                                                   ELSE lease_expires_at END) - now()))::float8
      FROM agent_deliveries WHERE status IN ('pending', 'running')
$$;
