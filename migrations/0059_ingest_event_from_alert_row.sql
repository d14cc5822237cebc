-- 0059_ingest_event_from_alert_row.sql - a new alert's alert_ingested activity event is read
-- from the alert's row instead of being stored as a row of its own.
--
-- Every field of that event is the alert's at ingest: actor 'api', the ingesting key's prefix,
-- references {source_name, severity, title}, created_at the alert's created_at. Storing it cost
-- an activity_events row and its index entry per alert, a tenth of PostgreSQL's CPU per ingested
-- alert. Now the ingest writes the key prefix and a flag into the alert row (no extra row, no
-- extra index entry), and the events are read through the view alert_activity, which adds the
-- derived event to the stored ones. What a reader sees is unchanged:
--  * the references as they were at ingest: the first update that changes the alert's
--    severity, title or source name keeps the old three in ingest_references (a trigger, so
--    every writer is covered; the ingest pays nothing for it);
--  * a uuid that is the same on every read, derived from the alert's uuid;
--  * the order: the derived event sorts by (created_at, id) with id 0, so it comes under every
--    event of the same timestamp, as its stored row's id, drawn before any later event's, did;
--  * alerts ingested before this migration keep their stored event (ingest_event is false for
--    them), so no alert has two;
--  * a deleted alert's events are kept without it (alert_id NULL): its derived event is written
--    out as a stored row then, so the deletion keeps what it kept before.
--
-- Locks: adding nullable columns and one with a constant default takes a brief ACCESS EXCLUSIVE
-- lock on alerts and rewrites nothing; the trigger, view and functions take no table lock beyond
-- their creation.

ALTER TABLE alerts ADD COLUMN ingest_event BOOLEAN NOT NULL DEFAULT false,
                   ADD COLUMN ingest_key_prefix TEXT,
                   ADD COLUMN ingest_references JSONB;

COMMENT ON COLUMN alerts.ingest_event IS
    'its alert_ingested activity event is derived from this row (see alert_activity), not stored';
COMMENT ON COLUMN alerts.ingest_key_prefix IS 'the prefix of the API key that ingested the alert';
COMMENT ON COLUMN alerts.ingest_references IS
    'source_name, severity and title at ingest, kept by the first update that changed one of them';

-- Keeps the alert_ingested event's references as they were at ingest: the first update that
-- changes one of the three stores their old values (later ones find them stored).
CREATE FUNCTION calseta_alert_keep_ingest_references() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.ingest_references := jsonb_build_object('source_name', OLD.source_name,
                                                'severity', OLD.severity, 'title', OLD.title);
    RETURN NEW;
END $$;

CREATE TRIGGER trg_alerts_keep_ingest_references BEFORE UPDATE OF severity, title, source_name ON alerts
    FOR EACH ROW WHEN (OLD.ingest_event AND OLD.ingest_references IS NULL
                       AND (OLD.severity IS DISTINCT FROM NEW.severity OR OLD.title IS DISTINCT FROM NEW.title
                            OR OLD.source_name IS DISTINCT FROM NEW.source_name))
    EXECUTE FUNCTION calseta_alert_keep_ingest_references();

-- The derived event's uuid: the same on every read, shaped as a random (version 4) uuid, as the
-- stored events' are, and unrelated in its text to the alert's.
CREATE FUNCTION calseta_ingest_event_uuid(alert_uuid UUID) RETURNS UUID
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT encode(set_bit(set_bit(set_bit(set_bit(set_bit(set_bit(
               decode(md5('alert_ingested' || alert_uuid::text), 'hex'),
               55, 0), 54, 1), 53, 0), 52, 0), 71, 1), 70, 0), 'hex')::uuid
$$;

-- Every activity event as the API and MCP read it: the stored ones and, for each alert ingested
-- since this migration, its alert_ingested event. Readers order by (created_at DESC, id DESC).
CREATE VIEW alert_activity AS
SELECT e.id, e.uuid, e.created_at, e.event_type, e.actor_type, e.actor_key_prefix, e.alert_id,
       e.workflow_id, e.detection_rule_id, e."references"
  FROM activity_events e
UNION ALL
SELECT 0::bigint, calseta_ingest_event_uuid(a.uuid), a.created_at, 'alert_ingested'::text,
       'api'::text, a.ingest_key_prefix, a.id, NULL::bigint, NULL::bigint,
       coalesce(a.ingest_references,
                jsonb_build_object('source_name', a.source_name, 'severity', a.severity,
                                   'title', a.title))
  FROM alerts a
 WHERE a.ingest_event;

-- A deleted alert's events stay, without it: the stored ones lose their alert_id (as the foreign
-- key's ON DELETE SET NULL did), and a derived ingest event is written out as a stored one.
CREATE OR REPLACE FUNCTION calseta_alert_delete_children() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM enrichment_jobs j USING gone g WHERE j.alert_id = g.id;
    UPDATE activity_events e SET alert_id = NULL FROM gone g WHERE e.alert_id = g.id;
    INSERT INTO activity_events (uuid, created_at, event_type, actor_type, actor_key_prefix,
                                 alert_id, "references")
    SELECT calseta_ingest_event_uuid(g.uuid), g.created_at, 'alert_ingested', 'api',
           g.ingest_key_prefix, NULL,
           coalesce(g.ingest_references,
                    jsonb_build_object('source_name', g.source_name, 'severity', g.severity,
                                       'title', g.title))
      FROM gone g
     WHERE g.ingest_event;
    RETURN NULL;
END $$;

-- The ingest function as in 0058, without the alert_ingested rows: each new alert is written
-- with ingest_event = true and its key's prefix.
CREATE OR REPLACE FUNCTION calseta_ingest_batch_joined(batch JSONB, dedup_hours INTEGER, payloads TEXT)
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
    missing BIGINT;     -- new indicators a concurrent batch inserted first
    absent BIGINT;      -- rules the batch names that do not exist yet
    rules BIGINT[];     -- the detection rules the batch names, held against their deletion
    -- the payloads, one per element, each stored as given: the caller trims the whitespace
    -- around it (the intake does as it joins them; calseta_ingest_batch's elements have none)
    pieces TEXT[] := string_to_array(payloads, chr(1));
BEGIN
    -- A payload is JSON text the intake's parser accepted, so it holds no raw control character;
    -- one that did would shift every payload after it onto the wrong alert, so the count is
    -- checked before anything is written.
    IF cardinality(pieces) <> jsonb_array_length(batch) THEN
        RAISE EXCEPTION 'calseta_ingest_batch_joined: % payloads for % alerts', cardinality(pieces), jsonb_array_length(batch)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The detection rules the batch names, each distinct (source, rule) looked up once, and the
    -- ones that exist held (a shared transaction lock) against their deletion until the commit:
    -- a rule's deletion takes the lock exclusively, so it waits for the batches naming the rule
    -- and then clears their alerts' reference, and a batch waiting behind a deletion finds the
    -- rule gone when the insert below reads the rules again. This stands in for the foreign
    -- key's KEY SHARE row lock per alert, which wrote the rule's row (a lock record, and a
    -- multixact whenever two batches held it at once: every batch of the same SIEM rule).
    -- A rule still missing gets a stub under a lock shared with the rules API, then the lookup
    -- runs again (a new snapshot: it sees a stub a concurrent batch committed meanwhile).
    --
    -- Every distinct indicator of the batch looked up once: the known ones read, the missing
    -- ones inserted in one sorted insert (an existing row is neither written nor locked). A
    -- concurrent batch inserting the same new value makes this wait for its commit, then do
    -- nothing and return no row for it; the rare values left without an id are read again below,
    -- in a statement whose snapshot sees that commit.
    --
    -- Both lookups are one statement (one executor start per batch instead of two). A stub is
    -- made after the batch's new indicators now, in every batch, so no batch holds a rule's
    -- creation lock while it waits for another's new indicator.
    WITH rl AS (
        SELECT array_agg(r.id) FILTER (WHERE l.held) AS ids,
               count(*) FILTER (WHERE r.id IS NULL AND btrim(r.ref) <> '' AND length(r.ref) <= 500) AS absent
          FROM (SELECT k.ref, d.id
                  FROM (SELECT DISTINCT x->>'source_name' AS s, x->>'rule_ref' AS ref
                          FROM jsonb_array_elements(batch) x WHERE x->>'rule_ref' IS NOT NULL) k
                  LEFT JOIN detection_rules d ON d.source_name = k.s AND d.source_rule_id = k.ref
                 ORDER BY d.id) r
          -- the lock's outcome is what puts a rule in the list, so no plan can leave it out
          CROSS JOIN LATERAL (SELECT CASE WHEN r.id IS NOT NULL
                                          THEN pg_advisory_xact_lock_shared(hashint8extended(r.id, 727278))
                                               IS NOT NULL
                                          ELSE false END AS held) l),
    d AS (
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
    SELECT jsonb_object_agg(r.t || chr(1) || r.v, r.id),
           array_agg(r.id) FILTER (WHERE r.stale),
           (SELECT count(*) FROM f WHERE f.id IS NULL) - count(*) FILTER (WHERE r.isnew),
           (SELECT rl.ids FROM rl), (SELECT rl.absent FROM rl)
      INTO known, resighted, missing, rules, absent
      FROM (SELECT f.t, f.v, f.id, f.last_seen < ts AS stale, false AS isnew FROM f WHERE f.id IS NOT NULL
            UNION ALL
            SELECT n.t, n.v, n.id, false, true FROM n) r;
    IF missing > 0 THEN
        SELECT coalesce(known, '{}') || coalesce(jsonb_object_agg(i.type || chr(1) || i.value, i.id), '{}'),
               coalesce(resighted, '{}') || array_agg(i.id) FILTER (WHERE i.last_seen < ts)
          INTO known, resighted
          FROM (SELECT DISTINCT x->>'type' AS t, x->>'value' AS v
                  FROM jsonb_array_elements(batch) el, jsonb_array_elements(el->'indicators') x) d
          JOIN indicators i ON i.type = d.t AND i.value = d.v
         WHERE NOT coalesce(known ? (d.t || chr(1) || d.v), false);
    END IF;

    IF absent > 0 THEN
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
        SELECT array_agg(r.id) FILTER (WHERE l.held)
          INTO rules
          FROM (SELECT DISTINCT d.id
                  FROM (SELECT DISTINCT x->>'source_name' AS s, x->>'rule_ref' AS ref
                          FROM jsonb_array_elements(batch) x WHERE x->>'rule_ref' IS NOT NULL) k
                  JOIN detection_rules d ON d.source_name = k.s AND d.source_rule_id = k.ref
                 ORDER BY 1) r
         CROSS JOIN LATERAL (SELECT pg_advisory_xact_lock_shared(hashint8extended(r.id, 727278))
                                    IS NOT NULL AS held) l;
    END IF;

    -- De-duplication: only identical fingerprints wait for each other (transaction locks in one
    -- sorted order, so never a deadlock). The lookup below runs after they are held. They are
    -- taken after the new indicators and the rule stubs, which do not depend on them, so a batch
    -- holds them - and makes the next batch of the same alerts wait - for as short a time as it can.
    IF dedup_hours > 0 THEN
        PERFORM pg_advisory_xact_lock(k)
           FROM (SELECT DISTINCT hashtextextended(x->>'fingerprint', 727274) AS k
                   FROM jsonb_array_elements(batch) x ORDER BY 1) s;
    END IF;

    -- Without de-duplication every element is a new alert: everything else in one statement
    -- with none of the de-duplication's steps (each a plan node to set up on every call), its
    -- ids drawn up front, so nothing is joined back. A new snapshot: it sees the indicators and
    -- rules above.
    IF dedup_hours <= 0 THEN
        RETURN QUERY
        WITH nw AS MATERIALIZED ( -- each element read into typed columns once
            SELECT (t.o - 1)::int AS i, t.title, t.severity, t.source_name, t.description,
                   t.occurred_at, coalesce(t.tags, '{}') AS tags, t.fingerprint, t.rule_ref,
                   t.indicators, t.actor_key_prefix, coalesce(t.check_numbers, false) AS check_numbers,
                   CASE WHEN t.p IS NULL THEN coalesce(t.raw_payload::json, '{}'::json)
                        WHEN t.raw_member IS NOT NULL THEN t.p::json -> t.raw_member
                        ELSE t.p::json END AS p,
                   nextval('alerts_id_seq'::regclass) AS aid, calseta_uuid7() AS au,
                   nextval('enrichment_jobs_id_seq'::regclass) AS jid
              FROM ROWS FROM (jsonb_to_recordset(batch)
                                  AS (title TEXT, severity TEXT, source_name TEXT, description TEXT,
                                      occurred_at TIMESTAMPTZ, tags TEXT[], fingerprint TEXT,
                                      rule_ref TEXT, indicators JSONB, actor_key_prefix TEXT,
                                      raw_member TEXT, check_numbers BOOLEAN, raw_payload JSONB),
                              unnest(pieces))
                   WITH ORDINALITY t(title, severity, source_name, description, occurred_at, tags,
                                     fingerprint, rule_ref, indicators, actor_key_prefix, raw_member,
                                     check_numbers, raw_payload, p, o)),
        rm AS MATERIALIZED ( -- the held rules as they are now (one deleted meanwhile is gone)
            SELECT jsonb_object_agg(d.source_name || chr(1) || d.source_rule_id, d.id) AS m
              FROM detection_rules d
             WHERE d.id = ANY (rules) AND d.source_name IS NOT NULL AND d.source_rule_id IS NOT NULL),
        ins AS (
            INSERT INTO alerts (id, uuid, title, severity, source_name, description, occurred_at,
                                raw_payload, tags, fingerprint, detection_rule_id, indicator_ids,
                                ingest_event, ingest_key_prefix)
            SELECT nw.aid, nw.au, nw.title, nw.severity, nw.source_name, nw.description, nw.occurred_at,
                   CASE WHEN nw.check_numbers AND nw.p::jsonb IS NULL THEN NULL ELSE nw.p END,
                   nw.tags, nw.fingerprint,
                   (SELECT (rm.m->>(nw.source_name || chr(1) || nw.rule_ref))::bigint FROM rm),
                   coalesce((SELECT array_agg(DISTINCT y.id ORDER BY y.id)
                               FROM jsonb_array_elements(nw.indicators) x
                               CROSS JOIN LATERAL (SELECT (known->>((x->>'type') || chr(1) || (x->>'value')))::bigint
                                                          AS id) y
                              WHERE y.id IS NOT NULL), '{}'),
                   true, nw.actor_key_prefix
              FROM nw),
        seen AS ( -- one row for the batch: the known indicators its new alerts carry (an indicator
                  -- this batch created has last_seen = ts already). Every element is a new alert
                  -- here and links every indicator it names, so that is every indicator of the
                  -- batch known before it: no need to read the links back.
            INSERT INTO indicator_sightings (indicator_ids, seen_at)
            SELECT ARRAY(SELECT DISTINCT u.id FROM unnest(resighted) u(id) ORDER BY 1), ts
             WHERE cardinality(resighted) > 0),
        jobs AS (
            INSERT INTO enrichment_jobs (id, alert_id) SELECT nw.jid, nw.aid FROM nw)
        SELECT nw.i, nw.au, nw.aid, nw.jid, false, NULL::int FROM nw;
        RETURN;
    END IF;

    -- With de-duplication, everything else in one statement (a new snapshot: it sees the
    -- indicators and rules above and whatever alert an identical fingerprint committed before
    -- its lock was granted).
    RETURN QUERY
    WITH el AS (
        SELECT (t.o - 1)::int AS i, t.e, t.p::json AS p, t.e->>'fingerprint' AS fp,
               row_number() OVER (PARTITION BY t.e->>'fingerprint' ORDER BY t.o) AS rn,
               count(*) OVER (PARTITION BY t.e->>'fingerprint') AS same
          FROM ROWS FROM (jsonb_array_elements(batch), unnest(pieces))
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
    rm AS MATERIALIZED ( -- the held rules as they are now (one deleted meanwhile is gone): key -> id
        SELECT jsonb_object_agg(d.source_name || chr(1) || d.source_rule_id, d.id) AS m
          FROM detection_rules d
         WHERE d.id = ANY (rules) AND d.source_name IS NOT NULL AND d.source_rule_id IS NOT NULL),
    ins AS (
        INSERT INTO alerts (id, uuid, title, severity, source_name, description, occurred_at,
                            raw_payload, tags, fingerprint, detection_rule_id, duplicate_count,
                            last_seen_at, indicator_ids, ingest_event, ingest_key_prefix)
        SELECT lk.aid, lk.au, lk.e->>'title', lk.e->>'severity', lk.e->>'source_name',
               lk.e->>'description', (lk.e->>'occurred_at')::timestamptz,
               CASE WHEN lk.e ? 'check_numbers' AND lk.p::jsonb IS NULL THEN NULL ELSE lk.p END,
               ARRAY(SELECT jsonb_array_elements_text(coalesce(lk.e->'tags', '[]'::jsonb))),
               lk.fp,
               (SELECT (rm.m->>((lk.e->>'source_name') || chr(1) || (lk.e->>'rule_ref')))::bigint FROM rm),
               lk.ndup, CASE WHEN lk.ndup > 0 THEN ts END, coalesce(lk.ids, '{}'),
               true, lk.e->>'actor_key_prefix'
          FROM lk),
    seen AS ( -- one row for the batch: the known indicators its new alerts carry (an indicator
              -- this batch created has last_seen = ts already)
        INSERT INTO indicator_sightings (indicator_ids, seen_at)
        SELECT s.ids, ts
          FROM (SELECT array_agg(u.id ORDER BY u.id) AS ids
                  FROM (SELECT unnest(resighted) INTERSECT SELECT unnest(lk.ids) FROM lk) u(id)) s
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
    evn AS ( -- a new alert's own event is read from its row (see alert_activity)
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        SELECT 'alert_deduplicated', 'api', dres.e->>'actor_key_prefix', dres.tid,
               jsonb_build_object('fingerprint', dres.fp, 'duplicate_count', dres.cnt,
                                  'source_name', dres.e->>'source_name', 'title', dres.e->>'title')
          FROM dres)
    SELECT nw.i, nw.au, nw.aid, jobs.jid, false, NULL::int
      FROM nw JOIN jobs ON jobs.aid = nw.aid
    UNION ALL
    SELECT dres.i, dres.tuuid, dres.tid, NULL::bigint, true, dres.cnt FROM dres;
END $$;

