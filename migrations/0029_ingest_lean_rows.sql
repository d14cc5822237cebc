-- 0029_ingest_lean_rows.sql - less server CPU and WAL per ingested alert: the payload compressed
-- with lz4, and links to indicators without a surrogate key.
--
-- Measured with calseta_ingest_batch() alone (batches of 15 of the five fixture alerts, one
-- client, server CPU of all PostgreSQL processes and WAL bytes per alert):
--   before                                   ~375 us, 5,900 B
--   raw_payload compressed with lz4          ~290 us, 6,010 B
--   + alert_indicators keyed by its pair     ~290 us, 5,600 B
--
-- raw_payload: a SIEM alert is 2-4 KB of JSON, so every alert's payload goes through TOAST
-- compression; with the default pglz that was a fifth of the server's CPU per alert (perf:
-- pglz_compress alone 8 %, the largest single function). lz4 compresses about as well for
-- these documents at a fraction of the CPU, and reads decompress faster too. Only new values
-- are written with it; PostgreSQL reads either kind.
ALTER TABLE alerts ALTER COLUMN raw_payload SET COMPRESSION lz4;

-- alert_indicators: the surrogate id was read by no query (every reader goes by alert_id or
-- indicator_id), yet each link paid a sequence step and one more index entry, and a fixture
-- alert has five or six links: of the ~29 index entries written per alert, six were that key.
-- The pair, unique already, is the primary key now.
ALTER TABLE alert_indicators DROP COLUMN id;
ALTER TABLE alert_indicators DROP CONSTRAINT uq_alert_indicator;
ALTER TABLE alert_indicators ADD CONSTRAINT alert_indicators_pkey PRIMARY KEY (alert_id, indicator_id);

-- activity_events.uuid: the API shows it, no query looks an event up by it, and it is drawn
-- by gen_random_uuid() (122 random bits: a collision is out of reach). Its unique index was
-- one more entry per alert, at a random place in the index: with a large table almost every
-- insert touched a leaf page of its own (a cache miss, and a full-page image after each
-- checkpoint).
ALTER TABLE activity_events DROP CONSTRAINT activity_events_uuid_key;

-- The group-commit function as in 0013, with less work per batch:
--   * a sighting only for indicators that existed before the batch: an indicator the batch
--     creates has last_seen = the batch's time already, so its sighting changed nothing
--     (streams of new IPs and domains wrote two such rows per alert, deleted again by the fold);
--   * a duplicate touches no indicator, as in the original (its indicators are its original's,
--     already linked); they were looked up and sighted again for every duplicate;
--   * the de-duplication locks are taken after the rule stubs and the new indicators, so they
--     are held for the main statement and the commit only: a stream repeating the same alerts
--     runs its batches one after the other on those locks.
CREATE OR REPLACE FUNCTION calseta_ingest_batch(batch JSONB, dedup_hours INTEGER)
RETURNS TABLE (idx INTEGER, alert_uuid UUID, alert_id BIGINT, job_id BIGINT,
               is_duplicate BOOLEAN, duplicate_count INTEGER)
LANGUAGE plpgsql
-- as set by 0019 and 0025 (a replaced function keeps only the settings given here)
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
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
    ind AS ( -- the indicators of the new alerts (a duplicate, as in the original, touches none)
        SELECT nw.i, i.id, i.last_seen
          FROM nw CROSS JOIN LATERAL jsonb_array_elements(nw.e->'indicators') x
          JOIN indicators i ON i.type = x->>'type' AND i.value = x->>'value'),
    links AS (
        INSERT INTO alert_indicators (alert_id, indicator_id)
        SELECT DISTINCT nw.aid, ind.id FROM nw JOIN ind ON ind.i = nw.i),
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
