-- 0048_ingest_rule_reference_unlocked.sql - no row lock on the detection rule per ingested
-- alert, and one index entry less per activity event.
--
-- 1. alerts.detection_rule_id loses its foreign key. The key checked every inserted alert with an
--    index lookup and a KEY SHARE lock on the rule's row: a query per alert, a lock record in the
--    WAL per batch and rule, and, as concurrent batches of the same SIEM rule lock the same row,
--    a multixact (more WAL, a shared lock on the multixact state) for nearly every batch.
--    What the key promised is kept: calseta_ingest_batch() holds each rule it names with a shared
--    advisory lock until its commit and only links the rules it holds; deleting a rule takes that
--    lock exclusively (trg_detection_rule_delete_wait), so it waits for the batches naming it,
--    and clears the reference of every alert naming it afterwards (calseta_detection_rule_gone,
--    was ON DELETE SET NULL); any other writer of the column is checked by a trigger taking the
--    key's lock (calseta_alert_rule_check).
-- 2. activity_events loses its primary key index: no query reads an event by id (the API reads
--    them by alert, through ix_activity_events_alert_id); ids still come from the sequence.
--
-- Locks: dropping the key takes a SHARE ROW EXCLUSIVE lock on alerts and detection_rules (ingest
-- and rule writes wait, for milliseconds: nothing is scanned); dropping the primary key takes an
-- ACCESS EXCLUSIVE lock on activity_events, as briefly. Nothing is rewritten.

ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_detection_rule_id_fkey;
ALTER TABLE activity_events DROP CONSTRAINT IF EXISTS activity_events_pkey;

CREATE OR REPLACE FUNCTION calseta_alert_rule_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.detection_rule_id IS NOT NULL THEN
        PERFORM 1 FROM detection_rules WHERE id = NEW.detection_rule_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'insert or update on table "alerts" violates the reference to detection_rules'
                USING ERRCODE = 'foreign_key_violation',
                      DETAIL = format('Key (detection_rule_id)=(%s) is not present in table "detection_rules".',
                                      NEW.detection_rule_id);
        END IF;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS trg_alerts_detection_rule ON alerts;
CREATE TRIGGER trg_alerts_detection_rule AFTER INSERT OR UPDATE OF detection_rule_id ON alerts
    FOR EACH ROW WHEN (NEW.detection_rule_id IS NOT NULL
                       AND current_setting('calseta.ingest_parent_checked', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION calseta_alert_rule_check();

-- Before a rule row goes: wait for the ingest batches holding it (see calseta_ingest_batch).
CREATE OR REPLACE FUNCTION calseta_detection_rule_delete_wait() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashint8extended(OLD.id, 727278));
    RETURN OLD;
END $$;

DROP TRIGGER IF EXISTS trg_detection_rule_delete_wait ON detection_rules;
CREATE TRIGGER trg_detection_rule_delete_wait BEFORE DELETE ON detection_rules
    FOR EACH ROW EXECUTE FUNCTION calseta_detection_rule_delete_wait();

-- After: the alerts naming a deleted rule keep no reference (a statement of its own, so its
-- snapshot holds the alerts of the batches waited for above).
CREATE OR REPLACE FUNCTION calseta_detection_rule_gone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE alerts a SET detection_rule_id = NULL FROM gone g WHERE a.detection_rule_id = g.id;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS trg_detection_rule_gone ON detection_rules;
CREATE TRIGGER trg_detection_rule_gone AFTER DELETE ON detection_rules REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION calseta_detection_rule_gone();

-- As 0047, the rules the batch names held against their deletion and linked only when held.
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
    known JSONB;       -- type chr(1) value -> id, for every indicator the batch names
    resighted BIGINT[]; -- ids of those that existed before the batch, last_seen before it
    missing BIGINT;
    rules BIGINT[];     -- the detection rules the batch names, held against their deletion
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

    -- The rules the batch's alerts will name, each held (a shared transaction lock) against its
    -- deletion until the commit: a rule's deletion takes the lock exclusively, so it waits for
    -- the batches naming the rule and then clears their alerts' reference, and a batch waiting
    -- behind a deletion finds the rule gone. This stands in for the foreign key's KEY SHARE row
    -- lock per alert, which wrote the rule's row (a lock record, and a multixact whenever two
    -- batches held it at once: every batch of the same SIEM rule).
    SELECT array_agg(r.id) INTO rules
      FROM (SELECT DISTINCT d.id
              FROM jsonb_array_elements(batch) x
              JOIN detection_rules d ON d.source_name = x->>'source_name' AND d.source_rule_id = x->>'rule_ref'
             ORDER BY 1) r
     CROSS JOIN LATERAL (SELECT pg_advisory_xact_lock_shared(hashint8extended(r.id, 727278))) l;

    -- Every distinct indicator of the batch looked up once: the known ones read, the missing
    -- ones inserted in one sorted insert (an existing row is neither written nor locked). A
    -- concurrent batch inserting the same new value makes this wait for its commit, then do
    -- nothing and return no row for it; the rare values left without an id are read again below,
    -- in a statement whose snapshot sees that commit.
    WITH d AS (
        SELECT DISTINCT x->>'type' AS t, x->>'value' AS v
          FROM jsonb_array_elements(batch) el, jsonb_array_elements(el->'indicators') x
         WHERE x->>'type' IS NOT NULL AND x->>'value' IS NOT NULL),
    f AS MATERIALIZED (
        SELECT d.t, d.v, i.id, i.last_seen FROM d LEFT JOIN indicators i ON i.type = d.t AND i.value = d.v),
    n AS (
        INSERT INTO indicators (type, value, first_seen, last_seen)
        SELECT f.t, f.v, ts, ts FROM f WHERE f.id IS NULL ORDER BY 1, 2
        ON CONFLICT (type, value) DO NOTHING
        RETURNING indicators.type AS t, indicators.value AS v, indicators.id)
    SELECT jsonb_object_agg(r.t || chr(1) || r.v, r.id) FILTER (WHERE r.id IS NOT NULL),
           array_agg(r.id) FILTER (WHERE r.stale),
           count(*) FILTER (WHERE r.id IS NULL)
      INTO known, resighted, missing
      FROM (SELECT f.t, f.v, coalesce(f.id, n.id) AS id, f.last_seen < ts AS stale
              FROM f LEFT JOIN n ON f.id IS NULL AND n.t = f.t AND n.v = f.v) r;
    IF missing > 0 THEN
        SELECT coalesce(known, '{}') || jsonb_object_agg(i.type || chr(1) || i.value, i.id),
               coalesce(resighted, '{}') || array_agg(i.id) FILTER (WHERE i.last_seen < ts)
          INTO known, resighted
          FROM (SELECT DISTINCT x->>'type' AS t, x->>'value' AS v
                  FROM jsonb_array_elements(batch) el, jsonb_array_elements(el->'indicators') x) d
          JOIN indicators i ON i.type = d.t AND i.value = d.v
         WHERE NOT coalesce(known ? (d.t || chr(1) || d.v), false);
    END IF;

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
    lk AS ( -- each new alert with its links (sorted, distinct), from the lookup above
        SELECT nw.i, nw.e, nw.fp, nw.aid, nw.p, nw.au, nw.ndup, l.ids
          FROM nw CROSS JOIN LATERAL (
               SELECT array_agg(DISTINCT y.id ORDER BY y.id) AS ids
                 FROM jsonb_array_elements(nw.e->'indicators') x
                 CROSS JOIN LATERAL (SELECT (known->>((x->>'type') || chr(1) || (x->>'value')))::bigint AS id) y
                WHERE y.id IS NOT NULL) l),
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
                   AND d.id = ANY (rules)
                 ORDER BY d.id LIMIT 1),
               lk.ndup, CASE WHEN lk.ndup > 0 THEN ts END, coalesce(lk.ids, '{}')
          FROM lk),
    seen AS ( -- one row for the batch: the known indicators its new alerts carry (an indicator
              -- this batch created has last_seen = ts already)
        INSERT INTO indicator_sightings (indicator_ids, seen_at)
        SELECT s.ids, ts
          FROM (SELECT array_agg(DISTINCT u.id) AS ids
                  FROM lk CROSS JOIN LATERAL unnest(lk.ids) u(id)
                 WHERE u.id = ANY (resighted)) s
         WHERE s.ids IS NOT NULL),
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
