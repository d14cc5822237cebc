-- 0044_alert_links_in_row.sql - an alert's links to its indicators kept in the alert's own row
-- (alerts.indicator_ids, sorted and distinct) instead of a row each in alert_indicators.
--
-- A link row cost a heap tuple and two b-tree entries (the (alert_id, indicator_id) key and the
-- indicator_id index), five to six of them per fixture alert: about half the records the ingest
-- wrote. The array is written by the same INSERT that makes the alert; the reverse direction
-- (which alerts hold an indicator) goes through a GIN index on it. GIN appends a new alert's
-- entries to its pending list (fastupdate, one WAL record per alert) and merges them into the
-- index in bulk later (autovacuum, or calseta_links_pending_merge() from the intake's housekeeping)
-- rather than descending one posting tree per indicator on every insert.
--
-- Adding the column takes an ACCESS EXCLUSIVE lock on alerts, held until the migration commits:
-- every read and write of alerts waits while the UPDATE of every linked alert and the index build
-- run. The UPDATE writes a new version of every linked alert row.
--
-- alert_indicators remains as a view (alert_id, indicator_id, created_at: the alert's) with
-- INSTEAD OF triggers, for ad-hoc SQL; the application's queries read the array directly.

ALTER TABLE alerts ADD COLUMN IF NOT EXISTS indicator_ids BIGINT[] NOT NULL DEFAULT '{}';

-- Sorted union of two id sets: how every writer adds links to an alert (under the row's lock,
-- which an UPDATE takes, so concurrent writers add to each other's result).
CREATE OR REPLACE FUNCTION calseta_ids_union(a BIGINT[], b BIGINT[]) RETURNS BIGINT[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT x ORDER BY x), '{}') FROM unnest(a || b) x WHERE x IS NOT NULL
$$;

-- alerts first, as the writers of links lock them, then the links: none is written meanwhile
LOCK TABLE alerts IN SHARE MODE;
LOCK TABLE alert_indicators IN ACCESS EXCLUSIVE MODE;
UPDATE alerts a SET indicator_ids = l.ids
  FROM (SELECT alert_id, array_agg(DISTINCT indicator_id ORDER BY indicator_id) AS ids
          FROM alert_indicators GROUP BY alert_id) l
 WHERE a.id = l.alert_id;

DROP TABLE alert_indicators;

CREATE INDEX IF NOT EXISTS ix_alerts_indicator_ids ON alerts USING gin (indicator_ids)
    WITH (fastupdate = on);

CREATE VIEW alert_indicators AS
    SELECT a.id AS alert_id, l.indicator_id, a.created_at
      FROM alerts a CROSS JOIN LATERAL unnest(a.indicator_ids) AS l(indicator_id);

-- Writing to the view adds to or removes from the arrays, with the check the foreign key made.
CREATE OR REPLACE FUNCTION calseta_alert_indicators_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE alerts SET indicator_ids = array_remove(indicator_ids, OLD.indicator_id)
         WHERE id = OLD.alert_id AND indicator_ids @> ARRAY[OLD.indicator_id];
        RETURN OLD;
    END IF;
    UPDATE alerts SET indicator_ids = calseta_ids_union(indicator_ids, ARRAY[NEW.indicator_id])
     WHERE id = NEW.alert_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insert or update on table "alert_indicators" violates the reference to alerts'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (alert_id)=(%s) is not present in table "alerts".', NEW.alert_id);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER trg_alert_indicators_write INSTEAD OF INSERT OR DELETE ON alert_indicators
    FOR EACH ROW EXECUTE FUNCTION calseta_alert_indicators_write();

-- A deleted alert takes its links with it (they are in its row); a deleted indicator is removed
-- from every alert holding it, found through the GIN index.
CREATE OR REPLACE FUNCTION calseta_alert_delete_children() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM enrichment_jobs j USING gone g WHERE j.alert_id = g.id;
    UPDATE activity_events e SET alert_id = NULL FROM gone g WHERE e.alert_id = g.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION calseta_indicator_delete_links() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE alerts SET indicator_ids = array_remove(indicator_ids, OLD.id)
     WHERE indicator_ids @> ARRAY[OLD.id];
    RETURN OLD;
END $$;

-- Merges the GIN pending list into the index, off the ingest's path: called by the intake's
-- periodic housekeeping so that no inserting batch crosses gin_pending_list_limit and pays for the
-- merge itself. Returns the pages merged (0 when another session is merging).
CREATE OR REPLACE FUNCTION calseta_links_pending_merge() RETURNS BIGINT
LANGUAGE sql AS $$
    SELECT gin_clean_pending_list('ix_alerts_indicator_ids'::regclass)
$$;

-- The ingest function as in 0041, each new alert's links written into its row.
CREATE OR REPLACE FUNCTION calseta_ingest_batch(batch JSONB, dedup_hours INTEGER, payloads JSON DEFAULT NULL)
RETURNS TABLE (idx INTEGER, alert_uuid UUID, alert_id BIGINT, job_id BIGINT,
               is_duplicate BOOLEAN, duplicate_count INTEGER)
LANGUAGE plpgsql
-- as set by 0019, 0025 and 0032 (a replaced function keeps only the settings given here)
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET calseta.ingest_parent_checked = 'on'
AS $$
#variable_conflict use_column
DECLARE
    ts TIMESTAMPTZ := now();
BEGIN
    -- Detection-rule stubs: the lock (shared with the rules API) only for rules still missing,
    -- so a known rule costs one index lookup and no wait.
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(batch) x
                WHERE btrim(coalesce(x->>'rule_ref', '')) <> '' AND length(x->>'rule_ref') <= 500
                  AND NOT EXISTS (SELECT 1 FROM detection_rules d
                                   WHERE d.source_name = x->>'source_name'
                                     AND d.source_rule_id = x->>'rule_ref')) THEN
        PERFORM pg_advisory_xact_lock(k)
           FROM (SELECT DISTINCT hashtextextended((x->>'source_name') || chr(1) || (x->>'rule_ref'),
                                                  727275) AS k
                   FROM jsonb_array_elements(batch) x
                  WHERE btrim(coalesce(x->>'rule_ref', '')) <> '' AND length(x->>'rule_ref') <= 500
                    AND NOT EXISTS (SELECT 1 FROM detection_rules d
                                     WHERE d.source_name = x->>'source_name'
                                       AND d.source_rule_id = x->>'rule_ref')
                  ORDER BY 1) s;
        INSERT INTO detection_rules (name, source_rule_id, source_name)
        SELECT DISTINCT x->>'rule_ref', x->>'rule_ref', x->>'source_name'
          FROM jsonb_array_elements(batch) x
         WHERE btrim(coalesce(x->>'rule_ref', '')) <> '' AND length(x->>'rule_ref') <= 500
           AND NOT EXISTS (SELECT 1 FROM detection_rules d
                            WHERE d.source_name = x->>'source_name'
                              AND d.source_rule_id = x->>'rule_ref')
        ON CONFLICT DO NOTHING;
    END IF;

    -- New indicators only, in one sorted insert; an existing row is neither written nor locked.
    -- A concurrent batch inserting the same new value makes this wait for its commit (then do
    -- nothing): the only indicator wait left, once per new value.
    INSERT INTO indicators (type, value, first_seen, last_seen)
    SELECT s.t, s.v, ts, ts
      FROM (SELECT DISTINCT x->>'type' AS t, x->>'value' AS v
              FROM jsonb_array_elements(batch) el, jsonb_array_elements(el->'indicators') x) s
     WHERE NOT EXISTS (SELECT 1 FROM indicators i WHERE i.type = s.t AND i.value = s.v)
     ORDER BY 1, 2
    ON CONFLICT (type, value) DO NOTHING;

    -- De-duplication: only identical fingerprints wait for each other (transaction locks in one
    -- sorted order, so never a deadlock). The lookup below runs after they are held. They are
    -- taken after the rule stubs and the new indicators, which do not depend on them, so a batch
    -- holds them - and makes the next batch of the same alerts wait - for as short a time as it can.
    IF dedup_hours > 0 THEN
        PERFORM pg_advisory_xact_lock(k)
           FROM (SELECT DISTINCT hashtextextended(x->>'fingerprint', 727274) AS k
                   FROM jsonb_array_elements(batch) x ORDER BY 1) s;
    END IF;

    -- Everything else in one statement (a new snapshot: it sees the indicators and rules above
    -- and whatever alert an identical fingerprint committed before its lock was granted).
    RETURN QUERY
    WITH el AS (
        SELECT (t.o - 1)::int AS i, t.e, t.p, t.e->>'fingerprint' AS fp,
               row_number() OVER (PARTITION BY t.e->>'fingerprint' ORDER BY t.o) AS rn,
               count(*) OVER (PARTITION BY t.e->>'fingerprint') AS same
          FROM ROWS FROM (jsonb_array_elements(batch), json_array_elements(payloads))
               WITH ORDINALITY t(e, p, o)
         WHERE t.e IS NOT NULL),
    ex AS ( -- the newest alert of each fingerprint inside the window
        SELECT f.fp, a.id, a.uuid
          FROM (SELECT DISTINCT el.fp FROM el WHERE dedup_hours > 0) f
          CROSS JOIN LATERAL (SELECT a.id, a.uuid FROM alerts a
                               WHERE hashtextextended(a.fingerprint, 0) = hashtextextended(f.fp, 0)
                                 AND a.fingerprint = f.fp
                                 AND a.created_at >= ts - make_interval(hours => dedup_hours)
                               ORDER BY a.created_at DESC LIMIT 1) a),
    nw AS MATERIALIZED ( -- elements that become new alerts, with their ids drawn up front
        SELECT el.i, el.e, el.fp, nextval('alerts_id_seq'::regclass) AS aid,
               CASE WHEN el.p IS NULL THEN coalesce((el.e->'raw_payload')::json, '{}'::json)
                    WHEN el.e ? 'raw_member' THEN el.p -> (el.e->>'raw_member')
                    ELSE el.p END AS p,
               calseta_uuid7() AS au,
               CASE WHEN dedup_hours > 0 THEN el.same - 1 ELSE 0 END AS ndup
          FROM el
         WHERE dedup_hours <= 0
            OR (el.rn = 1 AND NOT EXISTS (SELECT 1 FROM ex WHERE ex.fp = el.fp))),
    ind AS ( -- the indicators of the new alerts (a duplicate, as in the original, touches none)
        SELECT nw.i, i.id, i.last_seen
          FROM nw CROSS JOIN LATERAL jsonb_array_elements(nw.e->'indicators') x
          JOIN indicators i ON i.type = x->>'type' AND i.value = x->>'value'),
    lk AS ( -- each new alert's links: its indicators' ids, sorted and distinct
        SELECT ind.i, array_agg(DISTINCT ind.id ORDER BY ind.id) AS ids FROM ind GROUP BY ind.i),
    ins AS (
        INSERT INTO alerts (id, uuid, title, severity, source_name, description, occurred_at,
                            raw_payload, tags, fingerprint, detection_rule_id, duplicate_count,
                            last_seen_at, indicator_ids)
        SELECT nw.aid, nw.au, nw.e->>'title', nw.e->>'severity', nw.e->>'source_name',
               nw.e->>'description', (nw.e->>'occurred_at')::timestamptz,
               CASE WHEN nw.e ? 'check_numbers' AND nw.p::jsonb IS NULL THEN NULL ELSE nw.p END,
               ARRAY(SELECT jsonb_array_elements_text(coalesce(nw.e->'tags', '[]'::jsonb))),
               nw.fp,
               (SELECT d.id FROM detection_rules d
                 WHERE d.source_name = nw.e->>'source_name' AND d.source_rule_id = nw.e->>'rule_ref'
                 ORDER BY d.id LIMIT 1),
               nw.ndup, CASE WHEN nw.ndup > 0 THEN ts END, coalesce(lk.ids, '{}')
          FROM nw LEFT JOIN lk ON lk.i = nw.i),
    seen AS ( -- not for indicators this batch created: their last_seen is ts already
        INSERT INTO indicator_sightings (indicator_id, seen_at)
        SELECT DISTINCT ind.id, ts FROM ind WHERE ind.last_seen < ts),
    jobs AS (
        INSERT INTO enrichment_jobs (alert_id) SELECT nw.aid FROM nw
        RETURNING enrichment_jobs.id AS jid, enrichment_jobs.alert_id AS aid),
    dup AS ( -- the other elements: duplicates of an older alert or of one made just above
        SELECT el.i, el.e, el.fp, coalesce(ex.id, n1.aid) AS tid, coalesce(ex.uuid, n1.au) AS tuuid,
               (ex.id IS NOT NULL) AS old,
               row_number() OVER (PARTITION BY el.fp ORDER BY el.i) AS k
          FROM el
          LEFT JOIN ex ON ex.fp = el.fp
          LEFT JOIN nw n1 ON n1.fp = el.fp
         WHERE dedup_hours > 0 AND NOT EXISTS (SELECT 1 FROM nw WHERE nw.i = el.i)),
    upd AS (
        UPDATE alerts a SET duplicate_count = a.duplicate_count + c.n, last_seen_at = ts,
                            updated_at = ts
          FROM (SELECT dup.tid, count(*) AS n FROM dup WHERE dup.old GROUP BY dup.tid) c
         WHERE a.id = c.tid
        RETURNING a.id AS tid, a.duplicate_count - c.n AS base),
    dres AS (
        SELECT dup.i, dup.e, dup.fp, dup.tid, dup.tuuid,
               (coalesce(upd.base, 0) + dup.k)::int AS cnt
          FROM dup LEFT JOIN upd ON upd.tid = dup.tid),
    evn AS ( -- one insert, new alerts first, so events keep the order they happened in
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        SELECT 'alert_ingested', 'api', nw.e->>'actor_key_prefix', nw.aid,
               jsonb_build_object('source_name', nw.e->>'source_name',
                                  'severity', nw.e->>'severity', 'title', nw.e->>'title')
          FROM nw
        UNION ALL
        SELECT 'alert_deduplicated', 'api', dres.e->>'actor_key_prefix', dres.tid,
               jsonb_build_object('fingerprint', dres.fp, 'duplicate_count', dres.cnt,
                                  'source_name', dres.e->>'source_name', 'title', dres.e->>'title')
          FROM dres)
    SELECT nw.i, nw.au, nw.aid, jobs.jid, false, NULL::int
      FROM nw JOIN jobs ON jobs.aid = nw.aid
    UNION ALL
    SELECT dres.i, dres.tuuid, dres.tid, NULL::bigint, true, dres.cnt FROM dres;
END $$;

-- The readers and writers of the links, on the array (forward) and its GIN index (reverse).

CREATE OR REPLACE FUNCTION calseta_agent_payload(p_alert bigint, p_api_base text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    RETURN (
        WITH a AS (SELECT * FROM alerts WHERE id = p_alert),
        inds AS (SELECT i.* FROM alerts l JOIN indicators i ON i.id = ANY (l.indicator_ids)
                  WHERE l.id = p_alert),
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
          FROM a);
END $function$;

CREATE OR REPLACE FUNCTION calseta_alert_metadata(p_alert bigint)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    RETURN (
        WITH a AS (SELECT * FROM alerts WHERE id = p_alert),
        inds AS (SELECT i.* FROM alerts l JOIN indicators i ON i.id = ANY (l.indicator_ids)
                  WHERE l.id = p_alert),
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
          FROM a);
END $function$;

CREATE OR REPLACE FUNCTION calseta_enrich_claim(p_owner text, p_lease_seconds integer, p_limit integer, p_max_attempts integer)
 RETURNS TABLE(job_id bigint, alert_id bigint, attempts integer, doc jsonb)
 LANGUAGE plpgsql
 SET enable_seqscan TO 'off'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
AS $function$
BEGIN
    RETURN QUERY
    WITH c AS (
        SELECT j.id, j.attempts >= p_max_attempts AS spent
          FROM enrichment_jobs j
         WHERE j.status IN ('pending', 'running')
           AND (j.status = 'pending' OR j.lease_expires_at < now())
         ORDER BY j.id LIMIT p_limit FOR UPDATE SKIP LOCKED),
    dead AS (
        UPDATE enrichment_jobs j
           SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL,
               completed_at = now(), updated_at = now(),
               last_error = coalesce(j.last_error, 'lease expired') || ' (gave up after '
                            || j.attempts || ' attempts)'
          FROM c WHERE j.id = c.id AND c.spent
        RETURNING j.alert_id),
    dead_alerts AS (
        UPDATE alerts a SET enrichment_status = 'Failed', updated_at = now()
          FROM dead WHERE a.id = dead.alert_id AND a.enrichment_status <> 'Enriched'
        RETURNING a.id),
    u AS (
        UPDATE enrichment_jobs j
           SET status = 'running', attempts = j.attempts + 1, lease_owner = p_owner,
               lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               updated_at = now()
          FROM c WHERE j.id = c.id AND NOT c.spent
        RETURNING j.id, j.alert_id, j.attempts)
    SELECT u.id, u.alert_id, u.attempts,
           jsonb_build_object(
               'source_name', a.source_name, 'raw_payload', a.raw_payload,
               'indicators', coalesce((SELECT jsonb_agg(jsonb_build_object('type', i.type,
                                                                           'value', i.value)
                                                        ORDER BY i.id)
                                         FROM indicators i
                                        WHERE i.id = ANY (a.indicator_ids)), '[]'::jsonb))
      FROM u JOIN alerts a ON a.id = u.alert_id;
END $function$;

CREATE OR REPLACE FUNCTION calseta_relationship_graph(p_uuid uuid, p_limit integer)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
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
                'total_alert_count', (SELECT count(*) FROM alerts x
                                       WHERE x.indicator_ids @> ARRAY[i.id] AND x.id <> a.id),
                'sibling_alerts', coalesce((
                    SELECT jsonb_agg(calseta_graph_node(s) ORDER BY s.occurred_at DESC, s.id DESC)
                      FROM (SELECT s.* FROM alerts s
                             WHERE s.indicator_ids @> ARRAY[i.id] AND s.id <> a.id
                             ORDER BY s.occurred_at DESC, s.id DESC LIMIT p_limit) s), '[]'))
                ORDER BY i.type, i.value)
              FROM indicators i
             WHERE i.id = ANY (a.indicator_ids)), '[]'))
      FROM alerts a WHERE a.uuid = p_uuid
$function$;

CREATE OR REPLACE FUNCTION calseta_detection_rule_metrics(p_uuid uuid, p_from timestamp with time zone, p_to timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    d detection_rules;
    r JSONB;
BEGIN
    SELECT * INTO d FROM detection_rules WHERE uuid = p_uuid;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    WITH a AS MATERIALIZED (
        SELECT id, indicator_ids, status, severity, source_name, close_classification, created_at,
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
               FROM a CROSS JOIN unnest(a.indicator_ids) ai(indicator_id)
               JOIN indicators i ON i.id = ai.indicator_id
              GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2 LIMIT 10) s),
        'alert_sources', (SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM
            (SELECT source_name k, count(*) n FROM a GROUP BY 1) s))
      INTO r;
    RETURN r;
END $function$;


CREATE OR REPLACE FUNCTION calseta_indicator_set_malice(p_uuid uuid, p_malice text, p_actor text, p_with_raw boolean, p_actor_type text)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
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
                (SELECT a.id FROM alerts a WHERE a.indicator_ids @> ARRAY[i.id]
                  ORDER BY a.id DESC LIMIT 1),
                jsonb_build_object('from_malice', old, 'to_malice', i.malice,
                                   'malice_source', i.malice_source, 'indicator_type', i.type,
                                   'indicator_value', i.value));
    END IF;
    RETURN calseta_indicator_detail_json(i, p_with_raw);
END $function$;

CREATE OR REPLACE FUNCTION calseta_alert_add_indicators(p_uuid uuid, p jsonb, p_actor text)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
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
    -- the alert's row is locked above: the links are added to the array it holds
    UPDATE alerts a SET indicator_ids = calseta_ids_union(a.indicator_ids, n.ids)
      FROM (SELECT array_agg(DISTINCT i.id ORDER BY i.id) AS ids
              FROM jsonb_array_elements(p->'indicators') x
              JOIN indicators i ON i.type = x->>'type' AND i.value = x->>'value') n
     WHERE a.id = a_id AND NOT a.indicator_ids @> n.ids;
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
END $function$;

CREATE OR REPLACE FUNCTION calseta_enrich_complete_batch(p_owner text, doc jsonb)
 RETURNS TABLE(job_id bigint, outcome text)
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_seqscan TO 'off'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
 SET enable_memoize TO 'off'
AS $function$
DECLARE
    d_ids BIGINT[];     -- per job of the document
    n_jobs INTEGER;
    ids BIGINT[];
    ok_jobs BIGINT[];
    ok_alerts BIGINT[];
    ok_seen TIMESTAMPTZ[];
    lost_jobs BIGINT[];
    r_job BIGINT[];     -- per indicator of the jobs still leased to p_owner
    r_alert BIGINT[];
    r_type TEXT[];
    r_value TEXT[];
    r_new BOOLEAN[];
    r_malice TEXT[];
    r_results JSONB[];
    r_seen TIMESTAMPTZ[];
    r_ttl JSONB[];
    link_alerts BIGINT[];
    link_ids BIGINT[];
    changed BIGINT[];
BEGIN
    -- the jobs' ids by position; a job's indicators and summary are read where they lie in the
    -- document (a path or jsonpath copies the values it returns, not the job around them)
    n_jobs := coalesce(jsonb_path_query_first(doc, 'strict $.jobs.size()', silent => true)::integer,
                       0);
    SELECT array_agg((doc #>> ARRAY['jobs', g::text, 'id'])::bigint ORDER BY g)
      INTO d_ids FROM generate_series(0, n_jobs - 1) g;
    SELECT array_agg(DISTINCT x) INTO ids FROM unnest(d_ids) x WHERE x IS NOT NULL;

    -- 1. the jobs, locked by id; those still leased to this worker go on
    SELECT array_agg(l.id) FILTER (WHERE l.mine AND l.seen IS NOT NULL),
           array_agg(l.alert_id) FILTER (WHERE l.mine AND l.seen IS NOT NULL),
           array_agg(l.seen) FILTER (WHERE l.mine AND l.seen IS NOT NULL),
           array_agg(l.id) FILTER (WHERE NOT l.mine)
      INTO ok_jobs, ok_alerts, ok_seen, lost_jobs
      FROM (SELECT j.id, j.alert_id,
                   j.status = 'running' AND j.lease_owner IS NOT DISTINCT FROM p_owner AS mine,
                   (SELECT a.ingested_at FROM alerts a WHERE a.id = j.alert_id) AS seen
              FROM enrichment_jobs j
             WHERE j.id = ANY (ids)
             ORDER BY j.id FOR NO KEY UPDATE OF j) l;

    IF ok_jobs IS NOT NULL THEN
        -- one array element per job indicator (a job listed twice counts once)
        SELECT array_agg(jj.id), array_agg(ok_alerts[jj.p]), array_agg(x.e->>'type'),
               array_agg(x.e->>'value'), array_agg(coalesce((x.e->>'new')::boolean, false)),
               array_agg(x.e->>'malice'),
               array_agg(CASE WHEN jsonb_typeof(x.e->'results') = 'object'
                              THEN x.e->'results' ELSE '{}'::jsonb END),
               array_agg(ok_seen[jj.p]), array_agg(x.e->'ttl')
          INTO r_job, r_alert, r_type, r_value, r_new, r_malice, r_results, r_seen, r_ttl
          FROM (SELECT DISTINCT ON (u.id) u.id, u.o, array_position(ok_jobs, u.id) AS p
                  FROM unnest(d_ids) WITH ORDINALITY AS u(id, o)
                 ORDER BY u.id, u.o) jj
         CROSS JOIN LATERAL (SELECT doc #> ARRAY['jobs', (jj.o - 1)::text, 'indicators'] AS inds
                              OFFSET 0) ji
         CROSS JOIN LATERAL jsonb_array_elements(
                   CASE WHEN jsonb_typeof(ji.inds) = 'array' THEN ji.inds ELSE '[]' END) AS x(e)
         WHERE jj.p IS NOT NULL
           AND jsonb_typeof(x.e->'type') = 'string' AND jsonb_typeof(x.e->'value') = 'string';
    END IF;

    IF r_job IS NOT NULL THEN
        -- 2. pass-3 indicators not stored yet (an existing row is not touched here)
        IF true = ANY (r_new) THEN
            INSERT INTO indicators (type, value, first_seen, last_seen)
            SELECT u.t, u.v, min(u.seen), max(u.seen)
              FROM unnest(r_type, r_value, r_new, r_seen) AS u(t, v, n, seen)
             WHERE u.n
             GROUP BY u.t, u.v
             ORDER BY u.t, u.v
            ON CONFLICT (type, value) DO NOTHING;
        END IF;

        -- 3. every indicator, locked by id, updated once with the results of all its jobs
        WITH locked AS MATERIALIZED (
            SELECT i.id, x.o, x.job, x.alert, x.n, i.enrichment_results AS old
              FROM unnest(r_job, r_alert, r_type, r_value, r_new)
                   WITH ORDINALITY AS x(job, alert, t, v, n, o)
              JOIN indicators i ON i.type = x.t AND i.value = x.v
             ORDER BY i.id FOR NO KEY UPDATE OF i),
        g AS (
            SELECT l.id, count(*) AS jobs, min(l.o) AS o1,
                   (array_agg(l.o ORDER BY l.job DESC))[1] AS olast,
                   array_agg(l.o ORDER BY l.job) AS os,
                   max(r_seen[l.o]) FILTER (WHERE l.n) AS seen, (array_agg(l.old))[1] AS old
              FROM locked l GROUP BY l.id),
        fresh AS (
            SELECT g.id, g.olast, g.seen, g.old,
                   CASE WHEN g.jobs = 1 THEN r_results[g.o1]
                        ELSE (SELECT calseta_jsonb_merge(r_results[o.o] ORDER BY o.n)
                                FROM unnest(g.os) WITH ORDINALITY AS o(o, n)) END AS nr
              FROM g),
        merged AS (
            -- nothing stored yet (an indicator's first results): they are stored as they are
            SELECT f.id, r_malice[f.olast] AS mal, f.seen, f.old,
                   CASE WHEN f.old IS NULL OR f.old = '{}'::jsonb THEN f.nr
                        ELSE f.old || coalesce((
                            SELECT jsonb_object_agg(e.k,
                                       CASE WHEN calseta_enrich_result_kept(f.old->e.k, e.v)
                                            THEN f.old->e.k ELSE e.v END)
                              FROM jsonb_each(f.nr) AS e(k, v)), '{}'::jsonb) END AS results
              FROM fresh f),
        upd AS (
            UPDATE indicators i
               SET enrichment_results = m.results,
                   malice = CASE WHEN i.malice_source = 'analyst' THEN i.malice
                                 ELSE coalesce(m.mal, i.malice) END,
                   is_enriched = true, last_seen = greatest(i.last_seen, m.seen),
                   updated_at = now()
              FROM merged m
             WHERE i.id = m.id
               AND (NOT i.is_enriched
                    OR m.old IS DISTINCT FROM m.results
                    OR (i.malice_source <> 'analyst' AND m.mal IS NOT NULL
                        AND i.malice IS DISTINCT FROM m.mal)
                    OR i.last_seen < m.seen)
            RETURNING i.id)
        SELECT array_agg(l.alert) FILTER (WHERE l.n), array_agg(l.id) FILTER (WHERE l.n),
               array_agg(DISTINCT l.alert) FILTER (WHERE l.id IN (SELECT u.id FROM upd u))
          INTO link_alerts, link_ids, changed
          FROM locked l;

        -- 4. pass-3 indicators are linked to their alerts by step 5's update of the alert
    END IF;

    IF ok_jobs IS NOT NULL THEN
        -- 5. alerts, by id: marked enriched (again only if something changed, a pass-3
        --    indicator not linked yet included: it is added to the alert's links here, in the
        --    same row version), one event each
        WITH nl AS (
            SELECT u.a, array_agg(DISTINCT u.i ORDER BY u.i) AS ids
              FROM unnest(link_alerts, link_ids) AS u(a, i)
             GROUP BY u.a),
        la AS MATERIALIZED (
            SELECT a.id, nl.ids FROM alerts a LEFT JOIN nl ON nl.a = a.id
             WHERE a.id = ANY (ok_alerts)
               AND (a.id = ANY (coalesce(changed, '{}'::bigint[])) OR NOT a.is_enriched
                    OR a.enrichment_status <> 'Enriched'
                    OR NOT a.indicator_ids @> coalesce(nl.ids, '{}'::bigint[]))
             ORDER BY a.id FOR NO KEY UPDATE OF a),
        ua AS (
            UPDATE alerts a
               SET is_enriched = true, enriched_at = now(), enrichment_status = 'Enriched',
                   updated_at = now(),
                   indicator_ids = CASE WHEN la.ids IS NULL OR a.indicator_ids @> la.ids
                                        THEN a.indicator_ids
                                        ELSE calseta_ids_union(a.indicator_ids, la.ids) END
              FROM la WHERE a.id = la.id
            RETURNING a.id)
        INSERT INTO activity_events (event_type, actor_type, alert_id, "references")
        SELECT 'alert_enrichment_completed', 'system', ok_alerts[k.p],
               CASE WHEN jsonb_typeof(k.summary) = 'object' THEN k.summary ELSE '{}'::jsonb END
                   || jsonb_build_object('enriched_at', calseta_ts(now()))
          FROM (SELECT DISTINCT ON (u.id) u.id, doc #> ARRAY['jobs', (u.o - 1)::text, 'summary']
                           AS summary, array_position(ok_jobs, u.id) AS p
                  FROM unnest(d_ids) WITH ORDINALITY AS u(id, o)
                 ORDER BY u.id, u.o) k
         WHERE k.p IS NOT NULL AND ok_alerts[k.p] IN (SELECT ua.id FROM ua)
         ORDER BY k.id;

        -- 6. fresh successes into the shared cache, by key (the latest job's wins): the key and
        --    its expiry only, the result is the one step 3 stored in the indicator
        IF r_job IS NOT NULL THEN
            INSERT INTO enrichment_cache AS c (provider_name, indicator_type, indicator_value,
                                               result, expires_at)
            SELECT DISTINCT ON (s.p, s.t, s.v) s.p, s.t, s.v, NULL::jsonb,
                   now() + make_interval(secs => s.ttl)
              FROM (SELECT e.key AS p, u.t, u.v, u.o, e.value::integer AS ttl, u.job
                      FROM unnest(r_job, r_type, r_value, r_ttl)
                           WITH ORDINALITY AS u(job, t, v, ttl, o)
                     CROSS JOIN LATERAL jsonb_each_text(u.ttl) AS e
                     WHERE jsonb_typeof(u.ttl) = 'object') s
             WHERE s.ttl > 0 AND jsonb_typeof(r_results[s.o]->s.p) = 'object'
             ORDER BY s.p, s.t, s.v, s.job DESC
            ON CONFLICT (provider_name, indicator_type, indicator_value)
            DO UPDATE SET result = NULL, expires_at = EXCLUDED.expires_at, created_at = now();
        END IF;

        UPDATE enrichment_jobs j
           SET status = 'done', completed_at = now(), lease_owner = NULL,
               lease_expires_at = NULL, last_error = NULL, updated_at = now()
         WHERE j.id = ANY (ok_jobs);
    END IF;

    RETURN QUERY
    SELECT k.id,
           CASE WHEN k.id = ANY (coalesce(ok_jobs, '{}'::bigint[])) THEN 'done'
                WHEN k.id = ANY (coalesce(lost_jobs, '{}'::bigint[])) THEN 'lease_lost'
                ELSE 'gone' END
      FROM unnest(ids) AS k(id);
END $function$;
