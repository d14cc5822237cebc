-- 0002_pipeline.sql - our own tables around the shared schema: the enrichment job outbox,
-- shared rate-limit counters, per-key rate limits, key-change notifications, and the
-- group-commit ingest function.

ALTER TABLE api_keys ADD COLUMN rate_limit_per_minute INTEGER
    CHECK (rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0);

-- Every change to a key (revoke, scopes, expiry, delete) tells every intake process to drop
-- its cached verification at once.
CREATE FUNCTION calseta_api_keys_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('calseta_api_keys', OLD.key_prefix);
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.is_active IS NOT DISTINCT FROM OLD.is_active
       AND NEW.scopes IS NOT DISTINCT FROM OLD.scopes
       AND NEW.expires_at IS NOT DISTINCT FROM OLD.expires_at
       AND NEW.allowed_sources IS NOT DISTINCT FROM OLD.allowed_sources
       AND NEW.rate_limit_per_minute IS NOT DISTINCT FROM OLD.rate_limit_per_minute
       AND NEW.key_hash IS NOT DISTINCT FROM OLD.key_hash THEN
        RETURN NEW; -- last_used_at bookkeeping only
    END IF;
    PERFORM pg_notify('calseta_api_keys', OLD.key_prefix);
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_notify AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION calseta_api_keys_notify();

-- Job outbox: one row per enrichment job, committed with its alert. Workers claim with
-- FOR UPDATE SKIP LOCKED and a lease; an expired lease is taken over.
CREATE TABLE enrichment_jobs (
    id BIGSERIAL PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ
);
CREATE INDEX ix_enrichment_jobs_claim ON enrichment_jobs (status, lease_expires_at)
    WHERE status IN ('pending', 'running');
CREATE INDEX ix_enrichment_jobs_alert ON enrichment_jobs (alert_id);

-- Fixed-window rate-limit counters shared by every intake process on every host. UNLOGGED:
-- counters are not worth an fsync, and a crash resets them (fails open for one window).
CREATE UNLOGGED TABLE rate_limit_counters (
    bucket TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);

-- Group commit: one call ingests a batch of normalised alerts in one transaction.
-- Element: {title, severity, source_name, description, occurred_at, raw_payload, tags[],
--           fingerprint, indicators[{type,value}], rule_ref, actor_key_prefix}
-- Identical fingerprints are serialised with transaction-scoped advisory locks taken in a fixed
-- order, so concurrent identical posts never create two alerts and never deadlock.
CREATE FUNCTION calseta_ingest_batch(batch JSONB, dedup_hours INTEGER)
RETURNS TABLE (idx INTEGER, alert_uuid UUID, alert_id BIGINT, job_id BIGINT,
               is_duplicate BOOLEAN, duplicate_count INTEGER)
LANGUAGE plpgsql AS $$
DECLARE
    e JSONB;
    n INTEGER := jsonb_array_length(batch);
    i INTEGER;
    fp TEXT;
    a_id BIGINT;
    a_uuid UUID;
    dup INTEGER;
    j_id BIGINT;
    rule_id BIGINT;
    is_dup BOOLEAN[] := array_fill(false, ARRAY[n + 1]);
BEGIN
    -- Identical fingerprints (de-duplication) and identical new detection-rule stubs are
    -- serialised with transaction locks, all taken up front in one fixed order.
    PERFORM pg_advisory_xact_lock(k)
       FROM (SELECT hashtextextended(x->>'fingerprint', 727274) AS k
               FROM jsonb_array_elements(batch) x WHERE dedup_hours > 0
             UNION
             SELECT hashtextextended((x->>'source_name') || chr(1) || (x->>'rule_ref'), 727275)
               FROM jsonb_array_elements(batch) x WHERE coalesce(x->>'rule_ref', '') <> ''
             ORDER BY 1) s;
    -- Indicators of the whole batch in one sorted upsert: a fixed lock order across batches.
    INSERT INTO indicators AS ind (type, value, first_seen, last_seen)
    SELECT DISTINCT x->>'type', x->>'value', now(), now()
      FROM jsonb_array_elements(batch) el, jsonb_array_elements(el->'indicators') x
     ORDER BY 1, 2
    ON CONFLICT (type, value) DO UPDATE SET last_seen = now(), updated_at = now();

    FOR i IN 0 .. n - 1 LOOP
        e := batch -> i;
        fp := e->>'fingerprint';
        a_id := NULL;
        IF dedup_hours > 0 THEN
            SELECT a.id, a.uuid INTO a_id, a_uuid FROM alerts a
             WHERE a.fingerprint = fp
               AND a.created_at >= now() - make_interval(hours => dedup_hours)
             ORDER BY a.created_at DESC LIMIT 1;
        END IF;
        IF a_id IS NOT NULL THEN
            UPDATE alerts SET duplicate_count = alerts.duplicate_count + 1, last_seen_at = now(),
                   updated_at = now()
             WHERE id = a_id RETURNING alerts.duplicate_count INTO dup;
            INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
            VALUES ('alert_deduplicated', 'api', e->>'actor_key_prefix', a_id,
                    jsonb_build_object('fingerprint', fp, 'duplicate_count', dup,
                                       'source_name', e->>'source_name', 'title', e->>'title'));
            idx := i; alert_uuid := a_uuid; alert_id := a_id; job_id := NULL;
            is_duplicate := true; duplicate_count := dup;
            RETURN NEXT;
            CONTINUE;
        END IF;

        rule_id := NULL;
        IF coalesce(e->>'rule_ref', '') <> '' THEN
            SELECT d.id INTO rule_id FROM detection_rules d
             WHERE d.source_name = e->>'source_name' AND d.source_rule_id = e->>'rule_ref'
             ORDER BY d.id LIMIT 1;
            IF rule_id IS NULL THEN
                INSERT INTO detection_rules (name, source_rule_id, source_name)
                VALUES (e->>'rule_ref', e->>'rule_ref', e->>'source_name') RETURNING id INTO rule_id;
            END IF;
        END IF;

        INSERT INTO alerts (title, severity, source_name, description, occurred_at, raw_payload,
                            tags, fingerprint, detection_rule_id)
        VALUES (e->>'title', e->>'severity', e->>'source_name', e->>'description',
                (e->>'occurred_at')::timestamptz, coalesce(e->'raw_payload', '{}'::jsonb),
                ARRAY(SELECT jsonb_array_elements_text(coalesce(e->'tags', '[]'::jsonb))),
                fp, rule_id)
        RETURNING id, uuid INTO a_id, a_uuid;

        INSERT INTO alert_indicators (alert_id, indicator_id)
        SELECT a_id, ind.id FROM jsonb_array_elements(e->'indicators') x
          JOIN indicators ind ON ind.type = x->>'type' AND ind.value = x->>'value'
        ON CONFLICT DO NOTHING;

        INSERT INTO enrichment_jobs (alert_id) VALUES (a_id) RETURNING id INTO j_id;

        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_ingested', 'api', e->>'actor_key_prefix', a_id,
                jsonb_build_object('source_name', e->>'source_name', 'severity', e->>'severity',
                                   'title', e->>'title'));

        idx := i; alert_uuid := a_uuid; alert_id := a_id; job_id := j_id;
        is_duplicate := false; duplicate_count := NULL;
        RETURN NEXT;
    END LOOP;
END $$;

-- ISO-8601 UTC with microseconds and a trailing Z, as the reference serialises datetimes.
CREATE FUNCTION calseta_ts(t TIMESTAMPTZ) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The API's view of a key (never the hash).
CREATE FUNCTION calseta_api_key_json(k api_keys) RETURNS JSON LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'uuid', k.uuid, 'name', k.name, 'key_prefix', k.key_prefix,
        'scopes', to_json(k.scopes), 'key_type', k.key_type, 'is_active', k.is_active,
        'created_at', calseta_ts(k.created_at), 'expires_at', calseta_ts(k.expires_at),
        'last_used_at', calseta_ts(k.last_used_at),
        'allowed_sources', CASE WHEN k.allowed_sources IS NULL OR cardinality(k.allowed_sources) = 0
                                THEN NULL ELSE to_json(k.allowed_sources) END,
        'rate_limit_per_minute', k.rate_limit_per_minute)
$$;

-- The API's view of an alert.
CREATE FUNCTION calseta_alert_json(a alerts, with_payload BOOLEAN) RETURNS JSON
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'uuid', a.uuid, 'title', a.title, 'description', a.description,
        'severity', a.severity, 'source_name', a.source_name, 'status', a.status,
        'enrichment_status', a.enrichment_status, 'is_enriched', a.is_enriched,
        'occurred_at', calseta_ts(a.occurred_at), 'ingested_at', calseta_ts(a.ingested_at),
        'enriched_at', calseta_ts(a.enriched_at), 'created_at', calseta_ts(a.created_at),
        'updated_at', calseta_ts(a.updated_at), 'fingerprint', a.fingerprint,
        'duplicate_count', a.duplicate_count, 'last_seen_at', calseta_ts(a.last_seen_at),
        'close_classification', a.close_classification,
        'acknowledged_at', calseta_ts(a.acknowledged_at),
        'triaged_at', calseta_ts(a.triaged_at), 'closed_at', calseta_ts(a.closed_at),
        'malice_override', a.malice_override, 'malice_override_source', a.malice_override_source,
        'malice_override_at', calseta_ts(a.malice_override_at),
        'tags', to_json(a.tags), 'agent_findings', a.agent_findings,
        'detection_rule', (SELECT json_build_object('uuid', d.uuid, 'name', d.name,
                                                    'source_rule_id', d.source_rule_id)
                             FROM detection_rules d WHERE d.id = a.detection_rule_id),
        'raw_payload', CASE WHEN with_payload THEN a.raw_payload ELSE NULL END)
$$;

CREATE FUNCTION calseta_indicator_json(i indicators) RETURNS JSON LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'uuid', i.uuid, 'type', i.type, 'value', i.value,
        'first_seen', calseta_ts(i.first_seen), 'last_seen', calseta_ts(i.last_seen),
        'is_enriched', i.is_enriched, 'malice', i.malice, 'malice_source', i.malice_source,
        'enrichment_results', i.enrichment_results, 'created_at', calseta_ts(i.created_at),
        'updated_at', calseta_ts(i.updated_at))
$$;

-- PATCH /v1/alerts/{uuid}: the status lifecycle with its automatic timestamps and activity
-- events, in one statement. Values are validated by the caller. Returns NULL if not found.
CREATE FUNCTION calseta_alert_patch(p_uuid UUID, p JSONB, actor TEXT) RETURNS JSON
LANGUAGE plpgsql AS $$
DECLARE
    a alerts;
    old_status TEXT;
    old_sev TEXT;
BEGIN
    SELECT * INTO a FROM alerts WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    old_status := a.status;
    old_sev := a.severity;
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
        VALUES ('alert_status_updated', 'api', actor, a.id,
                jsonb_build_object('from_status', old_status, 'to_status', a.status));
        IF a.status = 'Closed' THEN
            INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
            VALUES ('alert_closed', 'api', actor, a.id,
                    jsonb_build_object('close_classification', a.close_classification));
        END IF;
    ELSIF p ? 'close_classification' AND a.status = 'Closed' THEN
        a.close_classification := p->>'close_classification';
    END IF;
    IF p ? 'severity' AND p->>'severity' <> old_sev THEN
        a.severity := p->>'severity';
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_severity_updated', 'api', actor, a.id,
                jsonb_build_object('from_severity', old_sev, 'to_severity', a.severity));
    END IF;
    IF p ? 'tags' THEN
        a.tags := ARRAY(SELECT jsonb_array_elements_text(p->'tags'));
    END IF;
    IF p ? 'malice_override' THEN
        a.malice_override := p->>'malice_override';
        a.malice_override_source := CASE WHEN p->>'malice_override' IS NULL THEN NULL ELSE 'analyst' END;
        a.malice_override_at := CASE WHEN p->>'malice_override' IS NULL THEN NULL ELSE now() END;
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_malice_updated', 'api', actor, a.id,
                jsonb_build_object('malice_override', p->'malice_override'));
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
