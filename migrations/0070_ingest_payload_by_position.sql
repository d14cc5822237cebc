-- 0070_ingest_payload_by_position.sql - calseta_ingest_batch_joined(): each new alert's payload is
-- read from the split payloads by its position, in the insert, instead of travelling through
-- the batch's typed rows.
--
-- The payloads (most of a batch's bytes) went through two result stores on their way to the
-- insert: unnest(pieces) beside jsonb_to_recordset() in ROWS FROM (a function scan keeps its
-- whole result), then the materialised rows of the new alerts, which the insert, the jobs and
-- the answer each read. The array of payloads is already in memory, split once, and an element
-- of it is reached by its subscript: the insert now validates pieces[position] as JSON itself,
-- and the rows the other readers share hold no payload.
--
-- Measured with callgrind: instructions of a single-user backend running 10 and 40 calls of a
-- batch of 15 (ingest_sql_bench.py's batches, the function of 0069 vs this one, the difference
-- divided by 30): fixtures, de-duplication off 16.00 -> 15.83 M per call (-1.1 %); 30 %
-- repeats, 24 h 18.94 -> 18.82 M (-0.6 %); own IP and domain each 21.57 -> 21.43 M (-0.6 %).
--
-- Locks: replacing the function takes none.

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
    -- fingerprint -> [id, uuid] of the alert its duplicates count on; for an alert this batch
    -- makes, [id, uuid, true, its repeats in the batch], the id and uuid drawn at the lookup
    exm JSONB;
    dups INTEGER[];     -- the elements (0-based) that are duplicates, in order; NULL: none
    sighted BIGINT[];   -- resighted, kept for the sightings row of a mix
    fplocks BIGINT[];   -- the fingerprints' lock keys, sorted, distinct
    lockkey BIGINT;
    granted BOOLEAN;
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
    -- Every distinct indicator of the batch looked up once, in the same statement. Only when
    -- some are missing does a second statement insert them, in one sorted insert (an existing
    -- row is neither written nor locked): most batches name only known indicators and skip it.
    -- A concurrent batch inserting the same new value makes that insert wait for its commit,
    -- then do nothing and return no row for it; the rare values left without an id are read
    -- again below, in a statement whose snapshot sees that commit.
    --
    -- Both lookups are one statement (one executor start per batch instead of two). A stub is
    -- made after the batch's new indicators, in every batch, so no batch holds a rule's
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
    f AS (
        SELECT d.t, d.v, i.id, i.last_seen
          FROM (SELECT DISTINCT x->>'type' AS t, x->>'value' AS v
                  FROM jsonb_array_elements(batch) el, jsonb_array_elements(el->'indicators') x
                 WHERE x->>'type' IS NOT NULL AND x->>'value' IS NOT NULL) d
          LEFT JOIN indicators i ON i.type = d.t AND i.value = d.v)
    SELECT jsonb_object_agg(f.t || chr(1) || f.v, f.id) FILTER (WHERE f.id IS NOT NULL),
           array_agg(f.id) FILTER (WHERE f.last_seen < ts),
           count(*) FILTER (WHERE f.id IS NULL),
           (SELECT rl.ids FROM rl), (SELECT rl.absent FROM rl),
           -- the de-duplication's lock keys, taken in step 3 (computed here: one statement less)
           ARRAY(SELECT DISTINCT hashtextextended(t.fingerprint, 727274)
                   FROM jsonb_to_recordset(batch) AS t(fingerprint TEXT)
                  WHERE dedup_hours > 0 AND t.fingerprint IS NOT NULL ORDER BY 1)
      INTO known, resighted, missing, rules, absent, fplocks
      FROM f;
    IF missing > 0 THEN
        WITH n AS (
            INSERT INTO indicators (type, value, first_seen, last_seen)
            SELECT d.t, d.v, ts, ts
              FROM (SELECT DISTINCT x->>'type' AS t, x->>'value' AS v
                      FROM jsonb_array_elements(batch) el, jsonb_array_elements(el->'indicators') x
                     WHERE x->>'type' IS NOT NULL AND x->>'value' IS NOT NULL) d
             WHERE NOT coalesce(known ? (d.t || chr(1) || d.v), false)
             ORDER BY 1, 2
            ON CONFLICT (type, value) DO NOTHING
            RETURNING indicators.type AS t, indicators.value AS v, indicators.id)
        SELECT coalesce(known, '{}') || coalesce(jsonb_object_agg(n.t || chr(1) || n.v, n.id), '{}'),
               missing - count(*)
          INTO known, missing
          FROM n;
    END IF;
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
    -- sorted order, so never a deadlock). They are taken after the new indicators and the rule
    -- stubs, which do not depend on them, so a batch holds them - and makes the next batch of
    -- the same alerts wait - for as short a time as it can: from here to the commit it runs one
    -- lookup and then only the statements that write what the batch holds.
    --
    -- The lookup (a new snapshot: it sees whatever alert an identical fingerprint committed
    -- before its lock was granted) finds the newest alert of each fingerprint inside the window
    -- and names the elements that are duplicates: of such an alert, or of an element before
    -- them in the batch. What it finds decides which statements run, so a batch sets up only
    -- the plan nodes it needs: new alerts only (most batches) go through the statement the
    -- batches without de-duplication use; duplicates only (a storm of one alert) through a
    -- lean one that counts them; a mix through both.
    IF dedup_hours > 0 THEN
        -- one lock per key, each an expression PL/pgSQL evaluates without starting an executor
        FOREACH lockkey IN ARRAY fplocks LOOP
            granted := pg_advisory_xact_lock(lockkey) IS NOT NULL;
        END LOOP;
        -- A fingerprint first seen in this batch and repeated in it gets its alert's id and
        -- uuid here, so its repeats count on that alert by identity, and the insert writes the
        -- alert with its final count (no second row version). An element without a
        -- fingerprint (direct SQL callers only: the intake always sends one) is never a
        -- duplicate.
        SELECT jsonb_object_agg(e.fp, CASE WHEN a.id IS NOT NULL THEN jsonb_build_array(a.id, a.uuid)
                                           ELSE jsonb_build_array(nextval('alerts_id_seq'::regclass),
                                                                  calseta_uuid7(), true, e.n - 1) END)
                   FILTER (WHERE e.rn = 1 AND e.fp IS NOT NULL AND (a.id IS NOT NULL OR e.n > 1)),
               array_agg(e.i ORDER BY e.i) FILTER (WHERE e.fp IS NOT NULL AND (e.rn > 1 OR a.id IS NOT NULL))
          INTO exm, dups
          FROM (SELECT (t.o - 1)::int AS i, t.fp, row_number() OVER (PARTITION BY t.fp ORDER BY t.o) AS rn,
                       count(*) OVER (PARTITION BY t.fp) AS n
                  FROM ROWS FROM (jsonb_to_recordset(batch) AS (fingerprint TEXT)) WITH ORDINALITY t(fp, o)) e
          LEFT JOIN LATERAL ( -- only the first element of a fingerprint looks it up
               SELECT a.id, a.uuid FROM alerts a
                WHERE e.rn = 1
                  AND hashtextextended(a.fingerprint, 0) = hashtextextended(e.fp, 0)
                  AND a.fingerprint = e.fp
                  AND a.created_at >= ts - make_interval(hours => dedup_hours)
                ORDER BY a.created_at DESC LIMIT 1) a ON true;
    END IF;

    -- The new alerts: every element without de-duplication, else those the lookup did not name.
    -- One statement, so one plan, for both (a new snapshot: it sees the indicators and rules
    -- above); with none of the de-duplication's steps (each a plan node to set up on every
    -- call) and its ids drawn up front, so nothing is joined back. An alert whose fingerprint
    -- repeats later in the batch is inserted with the id, uuid and count the lookup gave it
    -- (its repeats are answered by the duplicates' statement below, which does not update it).
    -- In a mix, the duplicates' indicators are left out of the sightings row (a duplicate
    -- touches no indicator), which the statement after this one writes.
    IF dups IS NULL OR cardinality(dups) < jsonb_array_length(batch) THEN
        IF dups IS NOT NULL THEN
            sighted := resighted;
            resighted := NULL;
        END IF;
        RETURN QUERY
        WITH nw AS MATERIALIZED ( -- each element read into typed columns once
            SELECT (t.o - 1)::int AS i, t.title, t.severity, t.source_name, t.description,
                   t.occurred_at, coalesce(t.tags, '{}') AS tags, t.fingerprint, t.rule_ref,
                   t.indicators, t.actor_key_prefix, coalesce(t.check_numbers, false) AS check_numbers,
                   t.raw_payload, t.raw_member,
                   -- an alert repeated in its batch: the id, uuid and count the lookup gave it
                   coalesce((exm->t.fingerprint->>0)::bigint, nextval('alerts_id_seq'::regclass)) AS aid,
                   coalesce((exm->t.fingerprint->>1)::uuid, calseta_uuid7()) AS au,
                   (exm->t.fingerprint->>3)::int AS reps,
                   nextval('enrichment_jobs_id_seq'::regclass) AS jid
              FROM ROWS FROM (jsonb_to_recordset(batch)
                                  AS (title TEXT, severity TEXT, source_name TEXT, description TEXT,
                                      occurred_at TIMESTAMPTZ, tags TEXT[], fingerprint TEXT,
                                      rule_ref TEXT, indicators JSONB, actor_key_prefix TEXT,
                                      raw_member TEXT, check_numbers BOOLEAN, raw_payload JSONB))
                   WITH ORDINALITY t(title, severity, source_name, description, occurred_at, tags,
                                     fingerprint, rule_ref, indicators, actor_key_prefix, raw_member,
                                     check_numbers, raw_payload, o)
             WHERE NOT coalesce((t.o - 1)::int = ANY (dups), false)),
        rm AS MATERIALIZED ( -- the held rules as they are now (one deleted meanwhile is gone),
                             -- read once per statement, each alert's rule looked up in the map
            SELECT jsonb_object_agg(d.source_name || chr(1) || d.source_rule_id, d.id) AS m
              FROM detection_rules d
             WHERE d.id = ANY (rules) AND d.source_name IS NOT NULL AND d.source_rule_id IS NOT NULL),
        ins AS (
            INSERT INTO alerts (id, uuid, title, severity, source_name, description, occurred_at,
                                raw_payload, tags, fingerprint, detection_rule_id, indicator_ids,
                                ingest_event, ingest_key_prefix, duplicate_count, last_seen_at)
            SELECT nw.aid, nw.au, nw.title, nw.severity, nw.source_name, nw.description, nw.occurred_at,
                   CASE WHEN nw.check_numbers AND nw.p::jsonb IS NULL THEN NULL ELSE nw.p END,
                   nw.tags, nw.fingerprint,
                   ((SELECT rm.m FROM rm)->>(nw.source_name || chr(1) || nw.rule_ref))::bigint,
                   -- each id looked up once (a filter on it was a second lookup), nulls removed after
                   coalesce((SELECT array_remove(array_agg(DISTINCT y.id ORDER BY y.id), NULL)
                               FROM jsonb_array_elements(nw.indicators) x
                               CROSS JOIN LATERAL (SELECT (known->>((x->>'type') || chr(1) || (x->>'value')))::bigint
                                                          AS id) y), '{}'),
                   true, nw.actor_key_prefix, coalesce(nw.reps, 0), CASE WHEN nw.reps IS NOT NULL THEN ts END
              -- the payload read here, by its position, once (OFFSET 0: not once per use); the
              -- rows of nw, which the jobs and the answer read as well, do not carry it
              FROM (SELECT nw.*, CASE WHEN pieces[nw.i + 1] IS NULL THEN coalesce(nw.raw_payload::json, '{}'::json)
                                      WHEN nw.raw_member IS NOT NULL THEN pieces[nw.i + 1]::json -> nw.raw_member
                                      ELSE pieces[nw.i + 1]::json END AS p
                      FROM nw OFFSET 0) nw),
        seen AS ( -- one row for the batch: the known indicators its new alerts carry (an indicator
                  -- this batch created has last_seen = ts already). When every element is a new
                  -- alert, each links every indicator it names, so that is every indicator of
                  -- the batch known before it: no need to read the links back.
            INSERT INTO indicator_sightings (indicator_ids, seen_at)
            SELECT ARRAY(SELECT DISTINCT u.id FROM unnest(resighted) u(id) ORDER BY 1), ts
             WHERE cardinality(resighted) > 0),
        jobs AS (
            INSERT INTO enrichment_jobs (id, alert_id) SELECT nw.jid, nw.aid FROM nw)
        SELECT nw.i, nw.au, nw.aid, nw.jid, false, NULL::int FROM nw;
        IF dups IS NULL THEN
            RETURN;
        END IF;

        -- A mix: the sightings row holds the known indicators the new alerts carry (a
        -- statement only when the batch names some known before it). The alerts the repeats
        -- of a new fingerprint count on were named by the lookup.
        IF cardinality(sighted) > 0 THEN
            INSERT INTO indicator_sightings (indicator_ids, seen_at)
            SELECT s.ids, ts
              FROM (SELECT array_agg(DISTINCT y.id ORDER BY y.id) AS ids
                      FROM ROWS FROM (jsonb_to_recordset(batch) AS (indicators JSONB)) WITH ORDINALITY t(indicators, o)
                      CROSS JOIN LATERAL jsonb_array_elements(t.indicators) x
                      CROSS JOIN LATERAL (SELECT (known->>((x->>'type') || chr(1) || (x->>'value')))::bigint AS id) y
                     WHERE NOT coalesce((t.o - 1)::int = ANY (dups), false) AND y.id = ANY (sighted)) s
             WHERE s.ids IS NOT NULL;
        END IF;
    END IF;
    IF dups IS NULL THEN
        RETURN;
    END IF;

    -- The duplicates: each older alert counted on once (its count raised by its duplicates in
    -- the batch, each duplicate answered with the count it made), and an alert_deduplicated
    -- event per duplicate; nothing else. An alert this batch made was written with its count,
    -- so its repeats only answer and write their events. The update holds each original's row
    -- until the commit (a deletion waits for it), so the events need no check of their alert
    -- of their own; the batch's own alerts no other session can see, so none can delete them.
    RETURN QUERY
    WITH d AS MATERIALIZED (
        SELECT (t.o - 1)::int AS i, t.fp, t.title, t.source_name, t.actor_key_prefix,
               (exm->t.fp->>0)::bigint AS tid, (exm->t.fp->>1)::uuid AS tuuid,
               coalesce((exm->t.fp->>2)::boolean, false) AS mine,
               row_number() OVER (PARTITION BY t.fp ORDER BY t.o) AS k
          FROM ROWS FROM (jsonb_to_recordset(batch)
                              AS (fingerprint TEXT, title TEXT, source_name TEXT, actor_key_prefix TEXT))
               WITH ORDINALITY t(fp, title, source_name, actor_key_prefix, o)
         WHERE (t.o - 1)::int = ANY (dups)),
    upd AS (
        UPDATE alerts a SET duplicate_count = a.duplicate_count + c.n, last_seen_at = ts,
                            updated_at = ts
          FROM (SELECT d.tid, count(*) AS n FROM d WHERE NOT d.mine GROUP BY d.tid) c
         WHERE a.id = c.tid
        RETURNING a.id AS tid, a.duplicate_count - c.n AS base),
    dres AS MATERIALIZED ( -- an original the update did not find was deleted since the lookup:
                           -- the batch fails, retryably (the retry's lookup finds it gone)
        SELECT d.i, d.fp, d.title, d.source_name, d.actor_key_prefix, d.tid, d.tuuid,
               (CASE WHEN upd.tid IS NOT NULL OR d.mine THEN coalesce(upd.base, 0)
                     ELSE calseta_ingest_original_gone(d.tid) END + d.k)::int AS cnt
          FROM d LEFT JOIN upd ON upd.tid = d.tid),
    evn AS ( -- a new alert's own event is read from its row (see alert_activity)
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        SELECT 'alert_deduplicated', 'api', dres.actor_key_prefix, dres.tid,
               jsonb_build_object('fingerprint', dres.fp, 'duplicate_count', dres.cnt,
                                  'source_name', dres.source_name, 'title', dres.title)
          FROM dres)
    SELECT dres.i, dres.tuuid, dres.tid, NULL::bigint, true, dres.cnt FROM dres;
END $$;
