-- 0013_ingest_write_path.sql - the group-commit ingest function without hot rows: indicators
-- are inserted without locking the rows that already exist, a batch is a handful of set-based
-- statements instead of a loop per alert, and only identical fingerprints (and missing rule
-- stubs) are serialised.
--
-- What used to serialise every batch on the same server:
--   * ON CONFLICT (type, value) DO UPDATE SET last_seen = now() held a row lock on every known
--     indicator until the batch's commit (fsync included); in real traffic one IP or hash is in
--     thousands of alerts, so concurrent batches queued behind each other on those rows;
--   * an advisory lock per (source, rule) of the batch, also held until commit, so every batch
--     of the same detection rule waited for the previous one even with de-duplication off.
-- Now: existing indicators are only read (the foreign key of alert_indicators takes a KEY SHARE
-- lock, which never conflicts with another KEY SHARE or with the last_seen update below);
-- last_seen is recorded as a durable sighting row and folded into indicators by
-- calseta_indicator_sightings_apply(), run by every intake process every 15 s (one at a time).

-- One row per (batch, indicator): written with the alert, consumed by the fold below. No index
-- and no foreign key: the table is only appended to and emptied.
CREATE TABLE indicator_sightings (
    indicator_id BIGINT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);

-- Folds the sightings into indicators.last_seen / updated_at. DELETE ... RETURNING takes exactly
-- the committed rows, whatever order their transactions committed in, so none is missed or
-- applied twice; the advisory lock lets one caller at a time do it (the others return 0).
CREATE FUNCTION calseta_indicator_sightings_apply() RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    n INTEGER;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727276) THEN
        RETURN 0;
    END IF;
    WITH s AS (DELETE FROM indicator_sightings RETURNING indicator_id, seen_at),
         m AS (SELECT s.indicator_id, max(s.seen_at) AS seen FROM s GROUP BY s.indicator_id)
    UPDATE indicators i SET last_seen = m.seen, updated_at = greatest(i.updated_at, m.seen)
      FROM m
     WHERE i.id = m.indicator_id AND i.last_seen < m.seen;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Group commit: one call ingests a batch of normalised alerts in one transaction.
-- Element: {title, severity, source_name, description, occurred_at, raw_payload, tags[],
--           fingerprint, indicators[{type,value}], rule_ref, actor_key_prefix}
--           raw_payload may instead be given as text: raw_json (a whole JSON document) and
--           raw_member (NULL, or the member of it that is the payload), so numbers beyond what
--           the intake's parser holds exactly are stored exactly.
-- Returns one row per element: the new alert and its job, or the original it duplicates.
CREATE OR REPLACE FUNCTION calseta_ingest_batch(batch JSONB, dedup_hours INTEGER)
RETURNS TABLE (idx INTEGER, alert_uuid UUID, alert_id BIGINT, job_id BIGINT,
               is_duplicate BOOLEAN, duplicate_count INTEGER)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    ts TIMESTAMPTZ := now();
BEGIN
    -- De-duplication: only identical fingerprints wait for each other (transaction locks in one
    -- sorted order, so never a deadlock). The lookup below runs after they are held.
    IF dedup_hours > 0 THEN
        PERFORM pg_advisory_xact_lock(k)
           FROM (SELECT DISTINCT hashtextextended(x->>'fingerprint', 727274) AS k
                   FROM jsonb_array_elements(batch) x ORDER BY 1) s;
    END IF;

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

    -- Everything else in one statement (a new snapshot: it sees the indicators and rules above
    -- and whatever alert an identical fingerprint committed before its lock was granted).
    RETURN QUERY
    WITH el AS (
        SELECT (t.o - 1)::int AS i, t.e, t.e->>'fingerprint' AS fp,
               row_number() OVER (PARTITION BY t.e->>'fingerprint' ORDER BY t.o) AS rn,
               count(*) OVER (PARTITION BY t.e->>'fingerprint') AS same
          FROM jsonb_array_elements(batch) WITH ORDINALITY t(e, o)),
    ex AS ( -- the newest alert of each fingerprint inside the window
        SELECT f.fp, a.id, a.uuid
          FROM (SELECT DISTINCT el.fp FROM el WHERE dedup_hours > 0) f
          CROSS JOIN LATERAL (SELECT a.id, a.uuid FROM alerts a
                               WHERE a.fingerprint = f.fp
                                 AND a.created_at >= ts - make_interval(hours => dedup_hours)
                               ORDER BY a.created_at DESC LIMIT 1) a),
    nw AS MATERIALIZED ( -- elements that become new alerts, with their ids drawn up front
        SELECT el.i, el.e, el.fp, nextval('alerts_id_seq'::regclass) AS aid,
               gen_random_uuid() AS au,
               CASE WHEN dedup_hours > 0 THEN el.same - 1 ELSE 0 END AS ndup
          FROM el
         WHERE dedup_hours <= 0
            OR (el.rn = 1 AND NOT EXISTS (SELECT 1 FROM ex WHERE ex.fp = el.fp))),
    ins AS (
        INSERT INTO alerts (id, uuid, title, severity, source_name, description, occurred_at,
                            raw_payload, tags, fingerprint, detection_rule_id, duplicate_count,
                            last_seen_at)
        SELECT nw.aid, nw.au, nw.e->>'title', nw.e->>'severity', nw.e->>'source_name',
               nw.e->>'description', (nw.e->>'occurred_at')::timestamptz,
               CASE WHEN nw.e ? 'raw_json' THEN
                        CASE WHEN nw.e->>'raw_member' IS NULL THEN (nw.e->>'raw_json')::jsonb
                             ELSE ((nw.e->>'raw_json')::jsonb) -> (nw.e->>'raw_member') END
                    ELSE coalesce(nw.e->'raw_payload', '{}'::jsonb) END,
               ARRAY(SELECT jsonb_array_elements_text(coalesce(nw.e->'tags', '[]'::jsonb))),
               nw.fp,
               (SELECT d.id FROM detection_rules d
                 WHERE d.source_name = nw.e->>'source_name' AND d.source_rule_id = nw.e->>'rule_ref'
                 ORDER BY d.id LIMIT 1),
               nw.ndup, CASE WHEN nw.ndup > 0 THEN ts END
          FROM nw),
    ind AS ( -- the indicators of every element, new alert or duplicate
        SELECT el.i, i.id
          FROM el CROSS JOIN LATERAL jsonb_array_elements(el.e->'indicators') x
          JOIN indicators i ON i.type = x->>'type' AND i.value = x->>'value'),
    links AS (
        INSERT INTO alert_indicators (alert_id, indicator_id)
        SELECT DISTINCT nw.aid, ind.id FROM nw JOIN ind ON ind.i = nw.i),
    seen AS (
        INSERT INTO indicator_sightings (indicator_id, seen_at)
        SELECT DISTINCT ind.id, ts FROM ind),
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
