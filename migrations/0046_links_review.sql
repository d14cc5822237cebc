-- 0046_links_review.sql - fixes to the links kept in the alert row (0044).
--
-- 1. calseta_ingest_batch(): each new alert's links are looked up per alert (a lateral
--    aggregate) instead of a list of all the batch's links joined back to the alerts, which with
--    hash and merge joins off was a nested loop over that list for each alert (quadratic in the
--    batch). The sightings come from the same lookup, so each indicator is still read once here.
-- 2. calseta_indicator_set_malice() names the newest alert holding the indicator. Planned as a
--    generic plan (after five calls) the planner preferred a backward walk of alerts' primary key
--    filtering every row, which for a rare indicator held only by old alerts read the whole table
--    while holding the indicator's row lock; a custom plan per call picks the GIN index for a rare
--    indicator and the walk for a common one.

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
    lk AS ( -- each new alert with its links (sorted, distinct) and the ids it sighted again,
            -- found per alert instead of joined to a list of all the batch's links, which with
            -- hash and merge joins off was a nested loop growing with the square of the batch
        SELECT nw.i, nw.e, nw.fp, nw.aid, nw.p, nw.au, nw.ndup, l.ids, l.stale
          FROM nw CROSS JOIN LATERAL (
               SELECT array_agg(DISTINCT i.id ORDER BY i.id) AS ids,
                      array_agg(DISTINCT i.id) FILTER (WHERE i.last_seen < ts) AS stale
                 FROM jsonb_array_elements(nw.e->'indicators') x
                 JOIN indicators i ON i.type = x->>'type' AND i.value = x->>'value') l),
    ins AS (
        INSERT INTO alerts (id, uuid, title, severity, source_name, description, occurred_at,
                            raw_payload, tags, fingerprint, detection_rule_id, duplicate_count,
                            last_seen_at, indicator_ids)
        SELECT lk.aid, lk.au, lk.e->>'title', lk.e->>'severity', lk.e->>'source_name',
               lk.e->>'description', (lk.e->>'occurred_at')::timestamptz,
               CASE WHEN lk.e ? 'check_numbers' AND lk.p::jsonb IS NULL THEN NULL ELSE lk.p END,
               ARRAY(SELECT jsonb_array_elements_text(coalesce(lk.e->'tags', '[]'::jsonb))),
               lk.fp,
               (SELECT d.id FROM detection_rules d
                 WHERE d.source_name = lk.e->>'source_name' AND d.source_rule_id = lk.e->>'rule_ref'
                 ORDER BY d.id LIMIT 1),
               lk.ndup, CASE WHEN lk.ndup > 0 THEN ts END, coalesce(lk.ids, '{}')
          FROM lk),
    seen AS ( -- not for indicators this batch created: their last_seen is ts already
        INSERT INTO indicator_sightings (indicator_id, seen_at)
        SELECT DISTINCT s.id, ts FROM lk CROSS JOIN LATERAL unnest(lk.stale) s(id)),
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

ALTER FUNCTION calseta_indicator_set_malice(uuid, text, text, boolean, text)
    SET plan_cache_mode = force_custom_plan;
