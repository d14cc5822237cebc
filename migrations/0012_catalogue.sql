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

-- PATCH of a mapping (values checked by the intake). A system mapping may change is_active
-- only: anything else non-null answers {"readonly": true} and changes nothing.
CREATE FUNCTION calseta_mapping_patch(p_uuid UUID, p JSONB) RETURNS JSONB
LANGUAGE plpgsql AS $$
DECLARE
    m indicator_field_mappings;
BEGIN
    SELECT * INTO m FROM indicator_field_mappings WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF m.is_system AND (jsonb_typeof(p->'field_path') IS DISTINCT FROM 'null' AND p ? 'field_path'
                        OR jsonb_typeof(p->'indicator_type') IS DISTINCT FROM 'null' AND p ? 'indicator_type'
                        OR jsonb_typeof(p->'description') IS DISTINCT FROM 'null' AND p ? 'description') THEN
        RETURN '{"readonly": true}';
    END IF;
    UPDATE indicator_field_mappings SET
           field_path = coalesce(p->>'field_path', field_path),
           indicator_type = coalesce(p->>'indicator_type', indicator_type),
           is_active = coalesce((p->>'is_active')::boolean, is_active),
           description = coalesce(p->>'description', description),
           updated_at = now()
     WHERE id = m.id RETURNING * INTO m;
    RETURN calseta_mapping_json(m);
END $$;

-- ---- metrics ---------------------------------------------------------------------------------
-- The metrics read alerts by created_at window. One covering index answers them with an
-- index-only scan (it replaces the plain created_at index, which it also serves).
DROP INDEX IF EXISTS ix_alerts_created_at;
CREATE INDEX ix_alerts_created_metrics ON alerts (created_at)
    INCLUDE (status, severity, source_name, close_classification, is_enriched, detection_rule_id,
             occurred_at, ingested_at, enriched_at, acknowledged_at, triaged_at, closed_at);
CREATE INDEX ix_workflow_runs_created ON workflow_runs (created_at) INCLUDE (workflow_id, status);
CREATE INDEX ix_enrichment_jobs_finished ON enrichment_jobs (completed_at)
    WHERE status IN ('done', 'failed');
CREATE INDEX ix_approvals_created ON workflow_approval_requests (created_at);

-- The alert figures of one window in one pass (grouping sets), as JSONB:
-- {total, by_status, by_severity, by_source, over_time, active_by_severity, top_rules,
--  closed, fp, enriched, mtte, mttd, mtta, mttt, mttc}.
CREATE FUNCTION calseta_alert_stats(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    WITH g AS (
        SELECT GROUPING(status, severity, source_name, d, detection_rule_id, active) AS gs,
               status, severity, source_name, d, detection_rule_id, active,
               count(*) AS n,
               count(*) FILTER (WHERE status = 'Closed') AS closed,
               count(*) FILTER (WHERE status = 'Closed'
                                AND close_classification LIKE 'False Positive%') AS fp,
               count(*) FILTER (WHERE is_enriched) AS enriched,
               avg(extract(epoch FROM enriched_at - ingested_at))
                   FILTER (WHERE is_enriched AND enriched_at IS NOT NULL) AS mtte,
               avg(extract(epoch FROM created_at - occurred_at)) AS mttd,
               avg(extract(epoch FROM acknowledged_at - created_at)) AS mtta,
               avg(extract(epoch FROM triaged_at - created_at)) AS mttt,
               avg(extract(epoch FROM closed_at - created_at)) AS mttc
          FROM (SELECT *, (created_at AT TIME ZONE 'UTC')::date AS d,
                       status IN ('Open', 'Triaging', 'Escalated') AS active
                  FROM alerts WHERE created_at >= p_from AND created_at < p_to) a
         GROUP BY GROUPING SETS ((), (status), (severity), (source_name), (d),
                                 (detection_rule_id), (active, severity)))
    SELECT jsonb_build_object(
        'total', coalesce((SELECT n FROM g WHERE gs = 63), 0),
        'closed', coalesce((SELECT closed FROM g WHERE gs = 63), 0),
        'fp', coalesce((SELECT fp FROM g WHERE gs = 63), 0),
        'enriched', coalesce((SELECT enriched FROM g WHERE gs = 63), 0),
        'mtte', (SELECT mtte::float8 FROM g WHERE gs = 63),
        'mttd', (SELECT mttd::float8 FROM g WHERE gs = 63),
        'mtta', (SELECT mtta::float8 FROM g WHERE gs = 63),
        'mttt', (SELECT mttt::float8 FROM g WHERE gs = 63),
        'mttc', (SELECT mttc::float8 FROM g WHERE gs = 63),
        'by_status', (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM g WHERE gs = 31),
        'by_severity', (SELECT coalesce(jsonb_object_agg(severity, n), '{}') FROM g WHERE gs = 47),
        'by_source', (SELECT coalesce(jsonb_object_agg(source_name, n), '{}') FROM g WHERE gs = 55),
        'over_time', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'date', to_char(d, 'YYYY-MM-DD'), 'count', n) ORDER BY d), '[]')
                        FROM g WHERE gs = 59),
        'active_by_severity', (SELECT coalesce(jsonb_object_agg(severity, n), '{}')
                                 FROM g WHERE gs = 46 AND active),
        'top_rules', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'uuid', r.uuid, 'name', r.name, 'count', t.n)
                          ORDER BY t.n DESC, r.name), '[]')
                        FROM (SELECT detection_rule_id, n FROM g
                               WHERE gs = 61 AND detection_rule_id IS NOT NULL
                               ORDER BY n DESC LIMIT 10) t
                        JOIN detection_rules r ON r.id = t.detection_rule_id))
      FROM (SELECT 1) one
$$;

CREATE FUNCTION calseta_rate(num NUMERIC, den NUMERIC) RETURNS FLOAT8 LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(den, 0) = 0 THEN 0.0 ELSE (num / den)::float8 END
$$;

-- GET /v1/metrics/alerts
CREATE FUNCTION calseta_metrics_alerts(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'period_from', calseta_ts(p_from), 'period_to', calseta_ts(p_to),
        'total_alerts', s->'total', 'alerts_by_status', s->'by_status',
        'alerts_by_severity', s->'by_severity', 'alerts_by_source', s->'by_source',
        'alerts_over_time', s->'over_time',
        'false_positive_rate', calseta_rate((s->>'fp')::numeric, (s->>'closed')::numeric),
        'mean_time_to_enrich', s->'mtte', 'mean_time_to_detect', s->'mttd',
        'mean_time_to_acknowledge', s->'mtta', 'mean_time_to_triage', s->'mttt',
        'mean_time_to_conclusion', s->'mttc',
        'active_alerts_by_severity', s->'active_by_severity',
        'top_detection_rules', s->'top_rules',
        'enrichment_coverage', calseta_rate((s->>'enriched')::numeric, (s->>'total')::numeric))
      FROM calseta_alert_stats(p_from, p_to) s
$$;

-- GET /v1/metrics/workflows
CREATE FUNCTION calseta_metrics_workflows(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    WITH r AS MATERIALIZED (
        SELECT workflow_id, status, (created_at AT TIME ZONE 'UTC')::date AS d
          FROM workflow_runs WHERE created_at >= p_from AND created_at < p_to)
    SELECT jsonb_build_object(
        'period_from', calseta_ts(p_from), 'period_to', calseta_ts(p_to),
        'total_configured', (SELECT count(*) FROM workflows),
        'workflows_by_type', (SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM
            (SELECT coalesce(workflow_type, 'unset') k, count(*) n FROM workflows GROUP BY 1) x),
        'workflow_run_count', (SELECT count(*) FROM r),
        'workflow_success_rate', (SELECT calseta_rate(count(*) FILTER (WHERE status = 'success'),
                                                      count(*)) FROM r),
        'workflow_runs_over_time', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'date', to_char(d, 'YYYY-MM-DD'), 'count', n) ORDER BY d), '[]') FROM
            (SELECT d, count(*) n FROM r GROUP BY 1) x),
        'time_saved_hours', (SELECT coalesce(sum(w.time_saved_minutes), 0)::float8 / 60
                               FROM r JOIN workflows w ON w.id = r.workflow_id
                              WHERE r.status = 'success'),
        'most_executed_workflows', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'uuid', w.uuid, 'name', w.name, 'run_count', x.n) ORDER BY x.n DESC, w.name), '[]')
            FROM (SELECT workflow_id, count(*) n FROM r GROUP BY 1 ORDER BY 2 DESC LIMIT 10) x
            JOIN workflows w ON w.id = x.workflow_id))
$$;

-- The job queues, per kind: pending, in progress, finished in the last 30 days, mean run time,
-- oldest pending age. Reads the partial indexes on unfinished jobs and the finished-at indexes.
CREATE FUNCTION calseta_queue_stats() RETURNS JSONB LANGUAGE plpgsql STABLE AS $$
DECLARE
    since TIMESTAMPTZ := now() - interval '30 days';
    q JSONB := '[]';
BEGIN
    q := q || jsonb_build_array((SELECT jsonb_build_object(
        'queue', 'enrichment',
        'pending', count(*) FILTER (WHERE status = 'pending'),
        'in_progress', count(*) FILTER (WHERE status = 'running'),
        'oldest_pending_age_seconds', extract(epoch FROM now() - min(created_at)
                                              FILTER (WHERE status = 'pending'))::float8)
        FROM enrichment_jobs WHERE status IN ('pending', 'running'))
        || (SELECT jsonb_build_object(
        'succeeded_30d', count(*) FILTER (WHERE status = 'done'),
        'failed_30d', count(*) FILTER (WHERE status = 'failed'),
        'avg_duration_seconds', avg(extract(epoch FROM completed_at - created_at))
                                FILTER (WHERE status = 'done')::float8)
        FROM enrichment_jobs WHERE status IN ('done', 'failed') AND completed_at >= since));
    q := q || jsonb_build_array((SELECT jsonb_build_object(
        'queue', 'workflow_runs',
        'pending', count(*) FILTER (WHERE status = 'queued'),
        'in_progress', count(*) FILTER (WHERE status = 'running'),
        'oldest_pending_age_seconds', extract(epoch FROM now() - min(created_at)
                                              FILTER (WHERE status = 'queued'))::float8)
        FROM workflow_runs WHERE status IN ('queued', 'running'))
        || (SELECT jsonb_build_object(
        'succeeded_30d', count(*) FILTER (WHERE status = 'success'),
        'failed_30d', count(*) FILTER (WHERE status IN ('failed', 'timed_out')),
        'avg_duration_seconds', (avg(duration_ms) / 1000.0)::float8)
        FROM workflow_runs WHERE created_at >= since AND status IN ('success', 'failed', 'timed_out')));
    IF to_regclass('agent_deliveries') IS NOT NULL THEN
        q := q || jsonb_build_array((SELECT jsonb_build_object(
            'queue', 'agent_deliveries',
            'pending', count(*) FILTER (WHERE status = 'pending'),
            'in_progress', count(*) FILTER (WHERE status = 'running'),
            'oldest_pending_age_seconds', extract(epoch FROM now() - min(created_at)
                                                  FILTER (WHERE status = 'pending'))::float8)
            FROM agent_deliveries WHERE status IN ('pending', 'running'))
            || (SELECT jsonb_build_object(
            'succeeded_30d', count(*) FILTER (WHERE status = 'done'),
            'failed_30d', count(*) FILTER (WHERE status = 'failed'),
            'avg_duration_seconds', avg(extract(epoch FROM completed_at - created_at))
                                    FILTER (WHERE status = 'done')::float8)
            FROM agent_deliveries WHERE status IN ('done', 'failed') AND completed_at >= since));
    END IF;
    RETURN jsonb_build_object(
        'queues', q,
        'total_pending', (SELECT sum((e->>'pending')::bigint) FROM jsonb_array_elements(q) e),
        'total_in_progress', (SELECT sum((e->>'in_progress')::bigint) FROM jsonb_array_elements(q) e),
        'total_failed_30d', (SELECT sum((e->>'failed_30d')::bigint) FROM jsonb_array_elements(q) e),
        'total_succeeded_30d', (SELECT sum((e->>'succeeded_30d')::bigint) FROM jsonb_array_elements(q) e),
        'oldest_pending_age_seconds', (SELECT max((e->>'oldest_pending_age_seconds')::float8)
                                         FROM jsonb_array_elements(q) e));
END $$;

-- GET /v1/metrics/summary: the last 30 days.
CREATE FUNCTION calseta_metrics_summary() RETURNS JSONB LANGUAGE sql STABLE AS $$
    WITH w AS (SELECT now() - interval '30 days' AS since),
    ap AS (SELECT count(*) FILTER (WHERE status = 'approved') AS approved,
                  count(*) FILTER (WHERE status = 'rejected' AND responded_at IS NOT NULL) AS rejected,
                  count(*) FILTER (WHERE status = 'approved' AND responded_at IS NOT NULL) AS approved_resp,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM responded_at - created_at) / 60)
                      FILTER (WHERE responded_at IS NOT NULL) AS median_min
             FROM workflow_approval_requests, w WHERE created_at >= w.since),
    runs AS (SELECT count(*) AS n, count(*) FILTER (WHERE r.status = 'success') AS ok,
                    coalesce(sum(wf.time_saved_minutes) FILTER (WHERE r.status = 'success'), 0) AS saved
               FROM workflow_runs r JOIN workflows wf ON wf.id = r.workflow_id, w
              WHERE r.created_at >= w.since)
    SELECT jsonb_build_object(
        'period', 'last_30_days',
        'alerts', (SELECT jsonb_build_object(
            'total', s->'total',
            'active', (SELECT coalesce(sum(value::bigint), 0) FROM jsonb_each_text(s->'active_by_severity')),
            'by_severity', s->'active_by_severity', 'by_status', s->'by_status',
            'by_source', s->'by_source',
            'enrichment_coverage', calseta_rate((s->>'enriched')::numeric, (s->>'total')::numeric),
            'mean_time_to_enrich_seconds', s->'mtte',
            'false_positive_rate', calseta_rate((s->>'fp')::numeric, (s->>'closed')::numeric),
            'mttd_seconds', s->'mttd', 'mtta_seconds', s->'mtta', 'mttt_seconds', s->'mttt',
            'mttc_seconds', s->'mttc')
            FROM w, calseta_alert_stats(w.since, 'infinity') s),
        'workflows', (SELECT jsonb_build_object(
            'total_configured', (SELECT count(*) FROM workflows WHERE state = 'active'),
            'executions', runs.n, 'success_rate', calseta_rate(runs.ok, runs.n),
            'estimated_time_saved_hours', (runs.saved / 60.0)::float8) FROM runs),
        'approvals', (SELECT jsonb_build_object(
            'pending', (SELECT count(*) FROM workflow_approval_requests WHERE status = 'pending'),
            'approved_last_30_days', ap.approved,
            'approval_rate', calseta_rate(ap.approved_resp, ap.approved_resp + ap.rejected),
            'median_response_time_minutes', ap.median_min) FROM ap),
        'platform', jsonb_build_object(
            'context_documents', (SELECT count(*) FROM context_documents),
            'detection_rules', (SELECT count(*) FROM detection_rules),
            'enrichment_providers', (SELECT count(*) FROM enrichment_providers WHERE is_active),
            'enrichment_providers_by_indicator_type', (SELECT coalesce(jsonb_object_agg(t, n), '{}')
                FROM (SELECT t, count(DISTINCT p.id) n FROM enrichment_providers p,
                             unnest(p.supported_indicator_types) t WHERE p.is_active GROUP BY 1) x),
            'agents', (SELECT count(*) FROM agent_registrations WHERE is_active),
            'workflows', (SELECT count(*) FROM workflows),
            'indicator_mappings', (SELECT count(*) FROM indicator_field_mappings)),
        'queue', calseta_queue_stats())
$$;
