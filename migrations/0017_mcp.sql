-- 0017_mcp.sql - MCP sessions shared by every intake process, findings appended atomically, and
-- the alert patch with the actor type of its front end (api or mcp) and events only on change.

-- One row per MCP session (Streamable HTTP or the legacy SSE stream). Any intake process can
-- serve a message of any session; a legacy SSE session's stream lives in the process named by
-- owner, and replies made elsewhere reach it through mcp_outbox + NOTIFY calseta_mcp_outbox.
CREATE TABLE mcp_sessions (
    id TEXT PRIMARY KEY,
    key_id BIGINT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    transport TEXT NOT NULL,           -- 'streamable' | 'sse'
    protocol_version TEXT,
    owner TEXT,                        -- the process holding the SSE stream
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_mcp_sessions_key ON mcp_sessions (key_id);
CREATE INDEX ix_mcp_sessions_last_seen ON mcp_sessions (last_seen_at);

CREATE TABLE mcp_outbox (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES mcp_sessions(id) ON DELETE CASCADE,
    message TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_mcp_outbox_session ON mcp_outbox (session_id, id);

-- Opens a session unless the key already holds p_cap live ones (serialised per key, so
-- concurrent opens cannot overshoot). Returns false when the cap is reached.
CREATE FUNCTION calseta_mcp_session_open(p_id TEXT, p_key BIGINT, p_transport TEXT,
                                         p_version TEXT, p_owner TEXT, p_cap INTEGER,
                                         p_idle INTEGER)
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('calseta_mcp_session'), p_key::int);
    DELETE FROM mcp_sessions WHERE key_id = p_key
       AND last_seen_at < now() - make_interval(secs => p_idle);
    IF (SELECT count(*) FROM mcp_sessions WHERE key_id = p_key) >= p_cap THEN
        RETURN false;
    END IF;
    INSERT INTO mcp_sessions (id, key_id, transport, protocol_version, owner)
    VALUES (p_id, p_key, p_transport, p_version, p_owner);
    RETURN true;
END $$;

-- Appends one finding to alerts.agent_findings in a single UPDATE (the row lock serialises
-- concurrent posts, none is lost) and writes alert_finding_added. NULL if the alert is missing.
CREATE FUNCTION calseta_finding_add(p_uuid UUID, f JSONB, p_actor_type TEXT, p_actor TEXT)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    aid BIGINT;
    fin JSONB;
BEGIN
    fin := f || jsonb_build_object('id', gen_random_uuid()::text,
                                   'posted_at', calseta_ts(now()));
    UPDATE alerts SET agent_findings = coalesce(agent_findings, '[]'::jsonb)
                                       || jsonb_build_array(fin),
                      updated_at = now()
     WHERE uuid = p_uuid RETURNING id INTO aid;
    IF aid IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
    VALUES ('alert_finding_added', p_actor_type, p_actor, aid,
            jsonb_build_object('finding_id', fin->>'id', 'agent_name', fin->>'agent_name',
                'summary', CASE WHEN length(fin->>'summary') > 120
                                THEN left(fin->>'summary', 120) || '...'
                                ELSE fin->>'summary' END,
                'confidence', fin->'confidence'));
    RETURN fin;
END $$;

-- The alert patch of 0002 with the actor type as a parameter; malice changes are recorded only
-- when the override really changes. The three-argument form stays for REST.
CREATE FUNCTION calseta_alert_patch(p_uuid UUID, p JSONB, actor TEXT, p_actor_type TEXT)
RETURNS JSON LANGUAGE plpgsql AS $$
DECLARE
    a alerts;
    old_status TEXT;
    old_sev TEXT;
    old_malice TEXT;
BEGIN
    SELECT * INTO a FROM alerts WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    old_status := a.status;
    old_sev := a.severity;
    old_malice := a.malice_override;
    IF p ? 'status' AND p->>'status' <> old_status THEN
        a.status := p->>'status';
        IF old_status = 'Open' AND a.acknowledged_at IS NULL THEN
            a.acknowledged_at := now();
        END IF;
        IF a.status = 'Triaging' AND a.triaged_at IS NULL THEN
            a.triaged_at := now();
        END IF;
        IF a.status = 'Closed' THEN
            a.closed_at := now();
            a.close_classification := p->>'close_classification';
        ELSIF old_status = 'Closed' THEN
            a.closed_at := NULL;
            a.close_classification := NULL;
        END IF;
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_status_updated', p_actor_type, actor, a.id,
                jsonb_build_object('from_status', old_status, 'to_status', a.status));
        IF a.status = 'Closed' THEN
            INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
            VALUES ('alert_closed', p_actor_type, actor, a.id,
                    jsonb_build_object('from_status', old_status,
                                       'close_classification', a.close_classification));
        END IF;
    ELSIF p ? 'close_classification' AND a.status = 'Closed'
          AND a.close_classification IS DISTINCT FROM p->>'close_classification' THEN
        a.close_classification := p->>'close_classification';
    END IF;
    IF p ? 'severity' AND p->>'severity' <> old_sev THEN
        a.severity := p->>'severity';
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_severity_updated', p_actor_type, actor, a.id,
                jsonb_build_object('from_severity', old_sev, 'to_severity', a.severity));
    END IF;
    IF p ? 'tags' THEN
        a.tags := ARRAY(SELECT jsonb_array_elements_text(p->'tags'));
    END IF;
    IF p ? 'malice_override' AND (p->>'malice_override') IS DISTINCT FROM old_malice THEN
        a.malice_override := p->>'malice_override';
        a.malice_override_source := CASE WHEN p->>'malice_override' IS NULL THEN NULL ELSE 'analyst' END;
        a.malice_override_at := CASE WHEN p->>'malice_override' IS NULL THEN NULL ELSE now() END;
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_malice_updated', p_actor_type, actor, a.id,
                jsonb_build_object('malice_override', p->'malice_override',
                                   'from_malice', old_malice, 'to_malice', p->'malice_override',
                                   'malice_source', CASE WHEN p->>'malice_override' IS NULL
                                                         THEN 'reset' ELSE 'analyst' END));
    END IF;
    a.updated_at := now();
    UPDATE alerts SET status = a.status, severity = a.severity, tags = a.tags,
           acknowledged_at = a.acknowledged_at, triaged_at = a.triaged_at,
           closed_at = a.closed_at, close_classification = a.close_classification,
           malice_override = a.malice_override, malice_override_source = a.malice_override_source,
           malice_override_at = a.malice_override_at, updated_at = a.updated_at
     WHERE id = a.id;
    RETURN calseta_alert_json(a, false);
END $$;

CREATE OR REPLACE FUNCTION calseta_alert_patch(p_uuid UUID, p JSONB, actor TEXT) RETURNS JSON
LANGUAGE sql AS $$
    SELECT calseta_alert_patch(p_uuid, p, actor, 'api')
$$;

-- The indicator malice of 0012 (shared by PATCH /v1/indicators and the MCP tool) with the
-- actor type of its front end, and indicator_malice_updated written only when the malice or
-- its source really changes. The four-argument form stays for REST.
CREATE FUNCTION calseta_indicator_set_malice(p_uuid UUID, p_malice TEXT, p_actor TEXT,
                                             p_with_raw BOOLEAN, p_actor_type TEXT)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    i indicators;
    old TEXT;
    old_src TEXT;
    computed TEXT;
BEGIN
    SELECT * INTO i FROM indicators WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    old := i.malice;
    old_src := i.malice_source;
    IF p_malice IS NOT NULL THEN
        UPDATE indicators SET malice = p_malice, malice_source = 'analyst',
               malice_overridden_at = CASE WHEN old = p_malice AND old_src = 'analyst'
                                           THEN malice_overridden_at ELSE now() END,
               updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
    ELSE
        SELECT coalesce((ARRAY['Pending', 'Benign', 'Suspicious', 'Malicious'])[max(
                   array_position(ARRAY['Pending', 'Benign', 'Suspicious', 'Malicious'],
                                  coalesce(v->'extracted'->>'verdict', v->'extracted'->>'malice')))],
                   'Pending')
          INTO computed
          FROM jsonb_each(CASE WHEN jsonb_typeof(i.enrichment_results) = 'object'
                               THEN i.enrichment_results ELSE '{}' END) e(k, v)
         WHERE jsonb_typeof(v) = 'object' AND jsonb_typeof(v->'extracted') = 'object';
        UPDATE indicators SET malice = coalesce(computed, 'Pending'), malice_source = 'enrichment',
               malice_overridden_at = NULL, updated_at = now()
         WHERE id = i.id RETURNING * INTO i;
    END IF;
    IF i.malice IS DISTINCT FROM old OR i.malice_source IS DISTINCT FROM old_src THEN
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('indicator_malice_updated', p_actor_type, p_actor,
                (SELECT ai.alert_id FROM alert_indicators ai WHERE ai.indicator_id = i.id
                  ORDER BY ai.created_at DESC, ai.alert_id DESC LIMIT 1),
                jsonb_build_object('from_malice', old, 'to_malice', i.malice,
                                   'malice_source', i.malice_source, 'indicator_type', i.type,
                                   'indicator_value', i.value));
    END IF;
    RETURN calseta_indicator_detail_json(i, p_with_raw);
END $$;

CREATE OR REPLACE FUNCTION calseta_indicator_set_malice(p_uuid UUID, p_malice TEXT, p_actor TEXT,
                                                        p_with_raw BOOLEAN)
RETURNS JSONB LANGUAGE sql AS $$
    SELECT calseta_indicator_set_malice(p_uuid, p_malice, p_actor, p_with_raw, 'api')
$$;
