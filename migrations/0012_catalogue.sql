-- 0012_catalogue.sql - the catalogue routes: detection rules unique per (source_name,
-- source_rule_id), indicator mappings limited to values the extraction understands, the JSON
-- views of rules, sources and mappings, and the indexes the metrics routes need.

-- ---- detection rules -----------------------------------------------------------------------
-- The original had no uniqueness here: once two rules shared a (source_name, source_rule_id),
-- every later lookup failed and alerts of that rule stayed unlinked for good. Existing
-- duplicates are merged into the oldest row first (its alerts and events follow it).
CREATE TEMPORARY TABLE dr_dups ON COMMIT DROP AS
SELECT id, min(id) OVER (PARTITION BY source_name, source_rule_id) AS keep
  FROM detection_rules WHERE source_name IS NOT NULL AND source_rule_id IS NOT NULL;
UPDATE alerts a SET detection_rule_id = d.keep FROM dr_dups d
 WHERE a.detection_rule_id = d.id AND d.id <> d.keep;
UPDATE activity_events e SET detection_rule_id = d.keep FROM dr_dups d
 WHERE e.detection_rule_id = d.id AND d.id <> d.keep;
DELETE FROM detection_rules r USING dr_dups d WHERE r.id = d.id AND d.id <> d.keep;
DROP INDEX IF EXISTS ix_detection_rules_source;
CREATE UNIQUE INDEX uq_detection_rule_source ON detection_rules (source_name, source_rule_id);
CREATE INDEX ix_alerts_detection_rule ON alerts (detection_rule_id, created_at)
    WHERE detection_rule_id IS NOT NULL;

-- Rule creation for one (source_name, source_rule_id), by ingest (stubs) and by the API, is
-- serialised with this transaction lock; the key is shared with calseta_ingest_batch(), which
-- takes it for every rule_ref of a batch before looking rules up. So a stub insert never meets
-- a rule created by an admin in the same instant (which would abort the whole batch).
CREATE FUNCTION calseta_detection_rule_lock(p_source TEXT, p_ref TEXT) RETURNS VOID
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtextextended(p_source || chr(1) || p_ref, 727275))
$$;

-- The rule of (p_source, p_ref), created as a stub when missing; NULL for a blank reference or
-- one too long to be a rule name. Safe against concurrent callers with or without the lock.
CREATE FUNCTION calseta_detection_rule_link(p_source TEXT, p_ref TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    r BIGINT;
BEGIN
    IF p_source IS NULL OR btrim(coalesce(p_ref, '')) = '' OR length(p_ref) > 500 THEN
        RETURN NULL;
    END IF;
    SELECT id INTO r FROM detection_rules WHERE source_name = p_source AND source_rule_id = p_ref;
    IF r IS NULL THEN
        INSERT INTO detection_rules (name, source_rule_id, source_name)
        VALUES (p_ref, p_ref, p_source)
        ON CONFLICT (source_name, source_rule_id) DO NOTHING RETURNING id INTO r;
        IF r IS NULL THEN
            SELECT id INTO r FROM detection_rules
             WHERE source_name = p_source AND source_rule_id = p_ref;
        END IF;
    END IF;
    RETURN r;
END $$;

CREATE FUNCTION calseta_detection_rule_json(d detection_rules) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', d.uuid, 'name', d.name, 'source_rule_id', d.source_rule_id,
        'source_name', d.source_name, 'severity', d.severity, 'is_active', d.is_active,
        'mitre_tactics', to_jsonb(d.mitre_tactics), 'mitre_techniques', to_jsonb(d.mitre_techniques),
        'mitre_subtechniques', to_jsonb(d.mitre_subtechniques),
        'data_sources', to_jsonb(d.data_sources), 'run_frequency', d.run_frequency,
        'created_by', d.created_by, 'documentation', d.documentation,
        'created_at', calseta_ts(d.created_at), 'updated_at', calseta_ts(d.updated_at))
$$;

-- Severity order of the reference's sort (unknown values rank with Pending).
CREATE FUNCTION calseta_severity_rank(s TEXT) RETURNS INTEGER LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE s WHEN 'Critical' THEN 5 WHEN 'High' THEN 4 WHEN 'Medium' THEN 3
                  WHEN 'Low' THEN 2 WHEN 'Informational' THEN 1 ELSE 0 END
$$;

-- ---- indicator mappings --------------------------------------------------------------------
-- The original accepted any indicator_type and extraction_target; extraction then skipped the
-- row silently. Rows the API never could have written are switched off, then refused.
UPDATE indicator_field_mappings SET is_active = false, extraction_target = 'normalized'
 WHERE extraction_target NOT IN ('normalized', 'raw_payload');
UPDATE indicator_field_mappings SET is_active = false, indicator_type = 'ip'
 WHERE indicator_type NOT IN ('ip', 'domain', 'hash_md5', 'hash_sha1', 'hash_sha256', 'url',
                              'email', 'account');
ALTER TABLE indicator_field_mappings
    ADD CONSTRAINT ck_mapping_target CHECK (extraction_target IN ('normalized', 'raw_payload')),
    ADD CONSTRAINT ck_mapping_type CHECK (indicator_type IN ('ip', 'domain', 'hash_md5',
        'hash_sha1', 'hash_sha256', 'url', 'email', 'account'));

CREATE FUNCTION calseta_mapping_json(m indicator_field_mappings) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', m.uuid, 'source_name', m.source_name, 'field_path', m.field_path,
        'indicator_type', m.indicator_type, 'extraction_target', m.extraction_target,
        'is_system', m.is_system, 'is_active', m.is_active, 'description', m.description,
        'created_at', calseta_ts(m.created_at), 'updated_at', calseta_ts(m.updated_at))
$$;

-- ---- sources ---------------------------------------------------------------------------------
-- auth_config is write-only: the view never contains it.
CREATE FUNCTION calseta_source_json(s source_integrations) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', s.uuid, 'source_name', s.source_name, 'display_name', s.display_name,
        'is_active', s.is_active, 'auth_type', s.auth_type, 'documentation', s.documentation,
        'created_at', calseta_ts(s.created_at), 'updated_at', calseta_ts(s.updated_at))
$$;

-- ---- shared helpers ------------------------------------------------------------------------
-- A PATCH array field: NULL when absent or JSON null (= unchanged).
CREATE FUNCTION calseta_pick_array(p JSONB, k TEXT) RETURNS TEXT[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p->k) = 'array' THEN calseta_text_array(p->k) END
$$;

-- ---- per-rule metrics (GET /v1/detection-rules/{uuid}/metrics) -------------------------------
-- Window from <= created_at < to. Days are UTC calendar days. NULL when the rule is missing.
CREATE FUNCTION calseta_detection_rule_metrics(p_uuid UUID, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ)
RETURNS JSONB LANGUAGE plpgsql STABLE AS $$
DECLARE
    d detection_rules;
    r JSONB;
BEGIN
    SELECT * INTO d FROM detection_rules WHERE uuid = p_uuid;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    WITH a AS MATERIALIZED (
        SELECT id, status, severity, source_name, close_classification, created_at,
               acknowledged_at, closed_at,
               status IN ('Open', 'Triaging', 'Escalated') AS active,
               status = 'Closed' AND close_classification LIKE 'False Positive%' AS fp,
               status = 'Closed' AND close_classification LIKE 'True Positive%' AS tp
          FROM alerts
         WHERE detection_rule_id = d.id AND created_at >= p_from AND created_at < p_to)
    SELECT jsonb_build_object(
        'detection_rule_uuid', d.uuid, 'detection_rule_name', d.name,
        'period_from', calseta_ts(p_from), 'period_to', calseta_ts(p_to),
        'total_alerts', (SELECT count(*) FROM a),
        'active_alerts', (SELECT count(*) FROM a WHERE active),
        'alerts_by_status', (SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM
            (SELECT status k, count(*) n FROM a GROUP BY 1) s),
        'alerts_by_severity', (SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM
            (SELECT severity k, count(*) n FROM a GROUP BY 1) s),
        'false_positive_rate', (SELECT coalesce(count(*) FILTER (WHERE fp)::float8
                                                / nullif(count(*), 0), 0.0)
                                  FROM a WHERE status = 'Closed'),
        'true_positive_rate', (SELECT coalesce(count(*) FILTER (WHERE tp)::float8
                                               / nullif(count(*), 0), 0.0)
                                 FROM a WHERE status = 'Closed'),
        'close_classifications', (SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM
            (SELECT close_classification k, count(*) n FROM a
              WHERE status = 'Closed' AND close_classification IS NOT NULL GROUP BY 1) s),
        'alerts_over_time', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'date', to_char(k, 'YYYY-MM-DD'), 'count', n) ORDER BY k), '[]') FROM
            (SELECT (created_at AT TIME ZONE 'UTC')::date k, count(*) n FROM a GROUP BY 1) s),
        'fp_over_time', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'date', to_char(k, 'YYYY-MM-DD'), 'count', n) ORDER BY k), '[]') FROM
            (SELECT (created_at AT TIME ZONE 'UTC')::date k, count(*) n FROM a WHERE fp
              GROUP BY 1) s),
        'mtta_seconds', (SELECT avg(extract(epoch FROM acknowledged_at - created_at))::float8
                           FROM a WHERE acknowledged_at IS NOT NULL),
        'mttc_seconds', (SELECT avg(extract(epoch FROM closed_at - created_at))::float8
                           FROM a WHERE closed_at IS NOT NULL),
        'severity_distribution', (SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM
            (SELECT severity k, count(*) n FROM a WHERE active GROUP BY 1) s),
        'top_indicators', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'type', t, 'value', v, 'count', n, 'malice', m) ORDER BY n DESC, t, v), '[]') FROM
            (SELECT i.type t, i.value v, i.malice m, count(*) n
               FROM a JOIN alert_indicators ai ON ai.alert_id = a.id
               JOIN indicators i ON i.id = ai.indicator_id
              GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2 LIMIT 10) s),
        'alert_sources', (SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM
            (SELECT source_name k, count(*) n FROM a GROUP BY 1) s))
      INTO r;
    RETURN r;
END $$;

-- ---- indicators ------------------------------------------------------------------------------
-- The detail view: every field, the providers' raw answers included when with_raw. Without
-- it each provider object loses its "raw" key; a provider value that is not an object is kept
-- as it is (the original answered 500 on one).
CREATE FUNCTION calseta_indicator_detail_json(i indicators, with_raw BOOLEAN) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'uuid', i.uuid, 'type', i.type, 'value', i.value, 'malice', i.malice,
        'malice_source', i.malice_source,
        'malice_overridden_at', calseta_ts(i.malice_overridden_at),
        'first_seen', calseta_ts(i.first_seen), 'last_seen', calseta_ts(i.last_seen),
        'is_enriched', i.is_enriched,
        'enrichment_results', CASE
            WHEN with_raw OR jsonb_typeof(i.enrichment_results) IS DISTINCT FROM 'object'
            THEN i.enrichment_results
            ELSE (SELECT coalesce(jsonb_object_agg(k, CASE WHEN jsonb_typeof(v) = 'object'
                                                           THEN v - 'raw' ELSE v END), '{}')
                    FROM jsonb_each(i.enrichment_results) e(k, v)) END,
        'created_at', calseta_ts(i.created_at), 'updated_at', calseta_ts(i.updated_at))
$$;

-- Analyst override (p_malice one of the four levels) or reset (NULL: malice recomputed from
-- the stored results - extracted.verdict, else extracted.malice, worst wins, default Pending).
-- Writes indicator_malice_updated against the most recently linked alert. NULL if not found.
CREATE FUNCTION calseta_indicator_set_malice(p_uuid UUID, p_malice TEXT, p_actor TEXT,
                                             p_with_raw BOOLEAN)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    i indicators;
    old TEXT;
    computed TEXT;
BEGIN
    SELECT * INTO i FROM indicators WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    old := i.malice;
    IF p_malice IS NOT NULL THEN
        UPDATE indicators SET malice = p_malice, malice_source = 'analyst',
               malice_overridden_at = now(), updated_at = now()
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
    INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
    VALUES ('indicator_malice_updated', 'api', p_actor,
            (SELECT ai.alert_id FROM alert_indicators ai WHERE ai.indicator_id = i.id
              ORDER BY ai.created_at DESC, ai.alert_id DESC LIMIT 1),
            jsonb_build_object('from_malice', old, 'to_malice', i.malice,
                               'malice_source', i.malice_source, 'indicator_type', i.type,
                               'indicator_value', i.value));
    RETURN calseta_indicator_detail_json(i, p_with_raw);
END $$;

-- POST /v1/alerts/{uuid}/indicators: upsert and link the (already trimmed) indicators, write
-- the event and, when asked, the enrichment job - all in this one transaction, so the job is
-- committed with the links it is for. p = {"indicators": [{type, value}], "enrich": bool}.
-- Returns {"data": …, "job_id", "alert_id"}, or NULL when the alert does not exist.
CREATE FUNCTION calseta_alert_add_indicators(p_uuid UUID, p JSONB, p_actor TEXT)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    a_id BIGINT;
    j_id BIGINT;
    items JSONB;
BEGIN
    SELECT id INTO a_id FROM alerts WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO indicators AS ind (type, value, first_seen, last_seen)
    SELECT DISTINCT x->>'type', x->>'value', now(), now()
      FROM jsonb_array_elements(p->'indicators') x ORDER BY 1, 2
    ON CONFLICT (type, value) DO UPDATE SET last_seen = now(), updated_at = now();
    INSERT INTO alert_indicators (alert_id, indicator_id)
    SELECT DISTINCT a_id, i.id FROM jsonb_array_elements(p->'indicators') x
      JOIN indicators i ON i.type = x->>'type' AND i.value = x->>'value'
    ON CONFLICT DO NOTHING;
    SELECT jsonb_agg(calseta_indicator_detail_json(i, false) ORDER BY x.n) INTO items
      FROM jsonb_array_elements(p->'indicators') WITH ORDINALITY x(v, n)
      JOIN indicators i ON i.type = x.v->>'type' AND i.value = x.v->>'value';
    IF (p->>'enrich')::boolean THEN
        INSERT INTO enrichment_jobs (alert_id) VALUES (a_id) RETURNING id INTO j_id;
    END IF;
    INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
    VALUES ('alert_indicators_added', 'api', p_actor, a_id,
            jsonb_build_object('indicator_count', jsonb_array_length(p->'indicators'),
                               'indicators', p->'indicators',
                               'enrich_requested', (p->>'enrich')::boolean));
    RETURN jsonb_build_object(
        'data', jsonb_build_object('added_count', jsonb_array_length(p->'indicators'),
                                   'indicators', coalesce(items, '[]'),
                                   'enrich_requested', (p->>'enrich')::boolean),
        'job_id', j_id, 'alert_id', a_id);
END $$;

-- One provider's one-word summary for the relationship graph: the first truthy of
-- extracted.verdict, .malice, .risk_score (a risk score of 0 counts: it is a score), else
-- "enriched"/"failed" from success; NULL leaves the provider out.
CREATE FUNCTION calseta_provider_summary(v JSONB) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(v) <> 'object' THEN NULL
        WHEN coalesce(v->'extracted'->>'verdict', '') NOT IN ('', 'false') THEN v->'extracted'->>'verdict'
        WHEN coalesce(v->'extracted'->>'malice', '') NOT IN ('', 'false') THEN v->'extracted'->>'malice'
        WHEN jsonb_typeof(v->'extracted'->'risk_score') IN ('number', 'string')
             AND v->'extracted'->>'risk_score' <> '' THEN v->'extracted'->>'risk_score'
        WHEN v->'success' = 'true' THEN 'enriched'
        WHEN v->'success' = 'false' THEN 'failed'
    END
$$;

CREATE FUNCTION calseta_graph_node(a alerts) RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('uuid', a.uuid, 'title', a.title, 'severity', a.severity,
                              'status', a.status, 'source_name', a.source_name,
                              'occurred_at', calseta_ts(a.occurred_at), 'tags', to_jsonb(a.tags))
$$;

-- The whole relationship graph of one alert in one statement (the original ran one query per
-- indicator). total_alert_count counts the OTHER alerts linked to the indicator.
CREATE FUNCTION calseta_relationship_graph(p_uuid UUID, p_limit INTEGER) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'alert', calseta_graph_node(a),
        'indicators', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'uuid', i.uuid, 'type', i.type, 'value', i.value, 'malice', i.malice,
                'first_seen', calseta_ts(i.first_seen), 'last_seen', calseta_ts(i.last_seen),
                'is_enriched', i.is_enriched,
                'enrichment_summary', coalesce((
                    SELECT jsonb_object_agg(k, calseta_provider_summary(v))
                      FROM jsonb_each(CASE WHEN jsonb_typeof(i.enrichment_results) = 'object'
                                           THEN i.enrichment_results ELSE '{}' END) e(k, v)
                     WHERE calseta_provider_summary(v) IS NOT NULL), '{}'),
                'total_alert_count', (SELECT count(*) FROM alert_indicators x
                                       WHERE x.indicator_id = i.id AND x.alert_id <> a.id),
                'sibling_alerts', coalesce((
                    SELECT jsonb_agg(calseta_graph_node(s) ORDER BY s.occurred_at DESC, s.id DESC)
                      FROM (SELECT s.* FROM alert_indicators x JOIN alerts s ON s.id = x.alert_id
                             WHERE x.indicator_id = i.id AND x.alert_id <> a.id
                             ORDER BY s.occurred_at DESC, s.id DESC LIMIT p_limit) s), '[]'))
                ORDER BY i.type, i.value)
              FROM alert_indicators ai JOIN indicators i ON i.id = ai.indicator_id
             WHERE ai.alert_id = a.id), '[]'))
      FROM alerts a WHERE a.uuid = p_uuid
$$;
