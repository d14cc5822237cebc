-- 0088_ingest_fixed_cost.sql - calseta_ingest_columns() sets up fewer plan nodes per call: the
-- rules come back from the lookup as one array with their locks taken in the aggregate, and a
-- mix's sightings row of a small batch is found by a loop instead of a statement.
--
-- 0084's body, restated with two changes. The lookup read the rules through a CTE twice (the
-- held ids, and a count of the missing ones), and took each lock in a lateral subquery: the
-- held ids and a NULL per missing rule are now one array from one subquery, each lock taken by
-- the aggregate's filter in the order of the rule ids, and a NULL in the array is what makes
-- the stubs. A mix (new alerts and duplicates in one batch) whose batch names known indicators
-- found the ones its new alerts carry with a statement of its own, whose set-up was most of its
-- cost: with up to 64 indicator references in the batch, a PL/pgSQL loop over the new
-- elements' references marks them instead. Locks, rows and answers are the same.
--
-- Instructions per call of 15 under callgrind: see docs/ingestion.md.
--
-- Locks: replacing the function takes none.

CREATE OR REPLACE FUNCTION calseta_ingest_columns(
    titles TEXT[], severities TEXT[], source_names TEXT[], descriptions TEXT[],
    occurred TIMESTAMPTZ[], fingerprints TEXT[], rule_refs TEXT[], key_prefixes TEXT[],
    raw_members TEXT[], check_nums BOOLEAN[], payloads TEXT[],
    tag_offs INTEGER[], tag_vals TEXT[],
    ind_types TEXT[], ind_values TEXT[], ind_offs INTEGER[], ind_refs INTEGER[],
    dedup_hours INTEGER, alert_uuids UUID[], ind_uuids UUID[])
RETURNS TABLE (idx INTEGER, alert_uuid UUID, alert_id BIGINT, job_id BIGINT,
               is_duplicate BOOLEAN, duplicate_count INTEGER)
LANGUAGE plpgsql
-- as set by 0019, 0025 and 0032
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET calseta.ingest_parent_checked = 'on'
AS $$
#variable_conflict use_column
DECLARE
    ts TIMESTAMPTZ := now();
    n INTEGER := coalesce(cardinality(payloads), 0);
    ids BIGINT[];       -- the id of each indicator of ind_types / ind_values, by position
    resighted BIGINT[]; -- ids of those that existed before the batch, last_seen before it,
                        -- sorted and distinct (the sightings row of a batch of new alerts)
    missing BIGINT[];   -- positions of the pairs not found, each given a new id in ids
    inserted BIGINT;    -- rows the insert of those wrote
    rules BIGINT[];     -- the detection rules the batch names, held against their deletion; a
                        -- NULL in it for each one missing, until the stubs are made
    -- fingerprint -> [id, uuid] of the alert its duplicates count on; for an alert this batch
    -- makes, [id, uuid, true, its repeats in the batch], the id and uuid drawn at the lookup
    exm JSONB;
    dups INTEGER[];     -- the elements (0-based) that are duplicates; NULL: none. In order from
                        -- the general form, in the plan's order from the lean one: it is read as
                        -- a set (the duplicates' statement numbers them in an order of its own)
    sighted BIGINT[];   -- resighted, kept for the sightings row of a mix
    fplocks BIGINT[];   -- the fingerprints' lock keys, sorted, distinct
    lockkey BIGINT;
    el INTEGER;         -- an element (0-based), a reference, a place in sighted: the mix's loop
    rf INTEGER;
    sj INTEGER;
    hit BOOLEAN[];      -- by place in sighted: carried by a new alert of a mix
    granted BOOLEAN;
BEGIN
    -- Every column the same length, and the offsets starting at 0 and ending at the number of
    -- tags and of indicator references (an entry on the wrong element would store one alert's
    -- field on another), checked before anything is written, in one simple expression (PL/pgSQL
    -- evaluates it without an executor; its set-up is paid on every call). That no offset is
    -- below the one before it is not checked: it needs a pass over the elements, ~40 k
    -- instructions per call of 15, and the intake builds them as running counts. Every column
    -- read by subscript must start at 1 (arrays built or sent plainly do; '[0:1]={...}' does
    -- not): the lookup numbers the pairs by position and the insert reads them by subscript, so
    -- another lower bound would pair one indicator's type with another's value. An empty or NULL
    -- column has no lower bound and passes (the columns of n elements are all empty when n = 0,
    -- so theirs skip the coalesce: each node of this expression is set up again by every call).
    -- A reference out of range names no indicator. The uuid columns, when given, hold one uuid
    -- per element and one per pair, from subscript 1 (NULL: drawn here).
    IF NOT coalesce(cardinality(titles) = n AND cardinality(severities) = n
                    AND cardinality(source_names) = n AND cardinality(descriptions) = n
                    AND cardinality(occurred) = n AND cardinality(fingerprints) = n
                    AND cardinality(rule_refs) = n AND cardinality(key_prefixes) = n
                    AND coalesce(cardinality(raw_members), n) = n
                    AND coalesce(cardinality(check_nums), n) = n
                    AND cardinality(tag_offs) = n + 1 AND cardinality(ind_offs) = n + 1
                    AND cardinality(ind_types) = cardinality(ind_values)
                    AND tag_offs[1] = 0 AND tag_offs[n + 1] = cardinality(tag_vals)
                    AND ind_offs[1] = 0 AND ind_offs[n + 1] = cardinality(ind_refs)
                    AND (n = 0 OR array_lower(titles, 1) = 1 AND array_lower(severities, 1) = 1
                                 AND array_lower(source_names, 1) = 1 AND array_lower(descriptions, 1) = 1
                                 AND array_lower(occurred, 1) = 1 AND array_lower(fingerprints, 1) = 1
                                 AND array_lower(rule_refs, 1) = 1 AND array_lower(key_prefixes, 1) = 1
                                 AND coalesce(array_lower(raw_members, 1), 1) = 1
                                 AND coalesce(array_lower(check_nums, 1), 1) = 1
                                 AND array_lower(payloads, 1) = 1
                                 AND coalesce(array_lower(alert_uuids, 1), 1) = 1)
                    AND coalesce(cardinality(alert_uuids), n) = n
                    AND coalesce(cardinality(ind_uuids), cardinality(ind_types)) = cardinality(ind_types)
                    AND coalesce(array_lower(ind_uuids, 1), 1) = 1
                    AND array_lower(tag_offs, 1) = 1 AND coalesce(array_lower(tag_vals, 1), 1) = 1
                    AND coalesce(array_lower(ind_types, 1), 1) = 1 AND coalesce(array_lower(ind_values, 1), 1) = 1
                    AND array_lower(ind_offs, 1) = 1 AND coalesce(array_lower(ind_refs, 1), 1) = 1, false) THEN
        RAISE EXCEPTION 'calseta_ingest_columns: % payloads, columns of other lengths', n
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
    -- Every indicator the caller sends looked up, in the same statement, its id kept by
    -- position; a pair not found gets its id drawn here, and its position kept in missing.
    -- Only when some are missing does a second statement insert them, with those ids, in one
    -- sorted insert (an existing row is neither written nor locked): most batches name only
    -- known indicators and skip it. With the ids drawn up front, nothing is read back after the
    -- insert: a statement that looked the new rows up again cost ~30 k instructions per new
    -- indicator. A concurrent batch inserting the same new value makes that insert wait for its
    -- commit and fail; see the block below.
    --
    -- Both lookups are one statement (one executor start per batch instead of two). A stub is
    -- made after the batch's new indicators, in every batch, so no batch holds a rule's
    -- creation lock while it waits for another's new indicator.
    --
    -- The rules come back as one array: the ids of those held and a NULL for each one missing,
    -- so one subquery, read once (no CTE, no second subplan for a count of the missing). Each
    -- lock is taken by the aggregate's filter as the rows arrive in the order of their ids
    -- (the filter's outcome is what puts a rule in the list, so no plan can leave it out); a
    -- lateral subquery to take it was two plan nodes more to set up in every batch.
    WITH f AS (
        SELECT u.o, u.t, u.v, i.id, i.last_seen
          FROM unnest(ind_types, ind_values) WITH ORDINALITY u(t, v, o)
          LEFT JOIN indicators i ON i.type = u.t AND i.value = u.v)
    SELECT array_agg(coalesce(f.id, CASE WHEN f.t IS NOT NULL AND f.v IS NOT NULL
                                         THEN nextval('indicators_id_seq'::regclass) END) ORDER BY f.o),
           array_agg(DISTINCT f.id ORDER BY f.id) FILTER (WHERE f.last_seen < ts),
           array_agg(f.o) FILTER (WHERE f.id IS NULL AND f.t IS NOT NULL AND f.v IS NOT NULL),
           (SELECT array_agg(r.id) FILTER (WHERE r.id IS NOT NULL
                                                  AND pg_advisory_xact_lock_shared(hashint8extended(r.id, 727278))
                                                      IS NOT NULL
                                               OR r.id IS NULL AND btrim(r.ref) <> '' AND length(r.ref) <= 500)
              FROM (SELECT k.ref, d.id
                      FROM (SELECT DISTINCT x.s, x.ref
                              FROM unnest(source_names, rule_refs) x(s, ref) WHERE x.ref IS NOT NULL) k
                      LEFT JOIN detection_rules d ON d.source_name = k.s AND d.source_rule_id = k.ref
                     ORDER BY d.id) r),
           -- the de-duplication's lock keys, taken in step 3 (computed here: one statement less)
           ARRAY(SELECT DISTINCT hashtextextended(t.fp, 727274)
                   FROM unnest(fingerprints) t(fp)
                  WHERE dedup_hours > 0 AND t.fp IS NOT NULL ORDER BY 1)
      INTO ids, resighted, missing, rules, fplocks
      FROM f;
    IF missing IS NOT NULL THEN
        -- A plain insert first: ON CONFLICT's speculative insertion (a check of the unique
        -- index before the row, a token lock, a confirmation record after it) cost ~18 k
        -- instructions per new indicator, and a conflict is rare (a concurrent batch
        -- committing the same new value first). When one happens, the block's subtransaction
        -- is rolled back and the insert made again, skipping the values that exist now (the
        -- ids drawn for those go unused: the lookup below reads their rows' ids).
        BEGIN
            INSERT INTO indicators (id, uuid, type, value, first_seen, last_seen)
            SELECT DISTINCT ON (ind_types[m.o], ind_values[m.o]) ids[m.o],
                   coalesce(ind_uuids[m.o], calseta_uuid7()), ind_types[m.o], ind_values[m.o], ts, ts
              FROM unnest(missing) m(o)
             ORDER BY ind_types[m.o], ind_values[m.o];
            GET DIAGNOSTICS inserted = ROW_COUNT;
        EXCEPTION WHEN unique_violation THEN
            INSERT INTO indicators (id, uuid, type, value, first_seen, last_seen)
            SELECT DISTINCT ON (ind_types[m.o], ind_values[m.o]) ids[m.o],
                   coalesce(ind_uuids[m.o], calseta_uuid7()), ind_types[m.o], ind_values[m.o], ts, ts
              FROM unnest(missing) m(o)
             ORDER BY ind_types[m.o], ind_values[m.o]
            ON CONFLICT (type, value) DO NOTHING;
            inserted := -1;
        END;
        IF inserted < cardinality(missing) THEN
            -- A pair sent twice (its positions drew an id each, one row was written) or a value
            -- a concurrent batch committed first (its row has that batch's id): every pair
            -- looked up again, in a new snapshot that sees both. A known one is found again;
            -- the other batch's row is resighted as any known indicator; this batch's rows
            -- have last_seen = ts. (A known one whose last_seen the sightings fold has moved
            -- past ts meanwhile drops out: the fold keeps the latest sighting anyway.)
            SELECT array_agg(i.id ORDER BY u.o),
                   array_agg(DISTINCT i.id ORDER BY i.id) FILTER (WHERE i.last_seen < ts)
              INTO ids, resighted
              FROM unnest(ind_types, ind_values) WITH ORDINALITY u(t, v, o)
              LEFT JOIN indicators i ON i.type = u.t AND i.value = u.v;
        END IF;
    END IF;

    IF array_position(rules, NULL) IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(k)
           FROM (SELECT DISTINCT hashtextextended(x.s || chr(1) || x.ref, 727275) AS k
                   FROM unnest(source_names, rule_refs) x(s, ref)
                  WHERE btrim(coalesce(x.ref, '')) <> '' AND length(x.ref) <= 500
                    AND NOT EXISTS (SELECT 1 FROM detection_rules d
                                     WHERE d.source_name = x.s AND d.source_rule_id = x.ref)
                  ORDER BY 1) s;
        INSERT INTO detection_rules (name, source_rule_id, source_name)
        SELECT DISTINCT x.ref, x.ref, x.s
          FROM unnest(source_names, rule_refs) x(s, ref)
         WHERE btrim(coalesce(x.ref, '')) <> '' AND length(x.ref) <= 500
           AND NOT EXISTS (SELECT 1 FROM detection_rules d
                            WHERE d.source_name = x.s AND d.source_rule_id = x.ref)
        ON CONFLICT DO NOTHING;
        SELECT array_agg(r.id) FILTER (WHERE l.held)
          INTO rules
          FROM (SELECT DISTINCT d.id
                  FROM (SELECT DISTINCT x.s, x.ref
                          FROM unnest(source_names, rule_refs) x(s, ref) WHERE x.ref IS NOT NULL) k
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
        IF cardinality(fplocks) = n THEN
            -- Every fingerprint of the batch once (as many distinct lock keys as elements, so
            -- none NULL and none repeated): an element is a duplicate only of an alert in the
            -- window, and the lookup is an index probe per element (none of the general form's
            -- window functions over the batch to set up and run).
            SELECT jsonb_object_agg(t.fp, jsonb_build_array(a.id, a.uuid)), array_agg((t.o - 1)::int)
              INTO exm, dups
              FROM unnest(fingerprints) WITH ORDINALITY t(fp, o)
              CROSS JOIN LATERAL (
                   SELECT a.id, a.uuid FROM alerts a
                    WHERE hashtextextended(a.fingerprint, 0) = hashtextextended(t.fp, 0)
                      AND a.fingerprint = t.fp
                      AND a.created_at >= ts - make_interval(hours => dedup_hours)
                    ORDER BY a.created_at DESC LIMIT 1) a;
        ELSE
            -- A fingerprint first seen in this batch and repeated in it gets its alert's id and
            -- uuid here, so its repeats count on that alert by identity, and the insert writes the
            -- alert with its final count (no second row version). An element without a
            -- fingerprint (direct SQL callers only: the intake always sends one) is never a
            -- duplicate.
            SELECT jsonb_object_agg(e.fp, CASE WHEN a.id IS NOT NULL THEN jsonb_build_array(a.id, a.uuid)
                                               ELSE jsonb_build_array(nextval('alerts_id_seq'::regclass),
                                                                      coalesce(alert_uuids[e.i + 1], calseta_uuid7()),
                                                                      true, e.n - 1) END)
                       FILTER (WHERE e.rn = 1 AND e.fp IS NOT NULL AND (a.id IS NOT NULL OR e.n > 1)),
                   array_agg(e.i ORDER BY e.i) FILTER (WHERE e.fp IS NOT NULL AND (e.rn > 1 OR a.id IS NOT NULL))
              INTO exm, dups
              FROM (SELECT (t.o - 1)::int AS i, t.fp, row_number() OVER (PARTITION BY t.fp ORDER BY t.o) AS rn,
                           count(*) OVER (PARTITION BY t.fp) AS n
                      FROM unnest(fingerprints) WITH ORDINALITY t(fp, o)) e
              LEFT JOIN LATERAL ( -- only the first element of a fingerprint looks it up
                   SELECT a.id, a.uuid FROM alerts a
                    WHERE e.rn = 1
                      AND hashtextextended(a.fingerprint, 0) = hashtextextended(e.fp, 0)
                      AND a.fingerprint = e.fp
                      AND a.created_at >= ts - make_interval(hours => dedup_hours)
                    ORDER BY a.created_at DESC LIMIT 1) a ON true;
        END IF;
    END IF;

    -- The new alerts: every element without de-duplication, else those the lookup did not name.
    -- One statement, so one plan, for both (a new snapshot: it sees the indicators and rules
    -- above); with none of the de-duplication's steps (each a plan node to set up on every
    -- call) and its ids drawn up front, so nothing is joined back. An alert whose fingerprint
    -- repeats later in the batch is inserted with the id, uuid and count the lookup gave it
    -- (its repeats are answered by the duplicates' statement below, which does not update it).
    -- In a mix, the duplicates' indicators are left out of the sightings row (a duplicate
    -- touches no indicator), which the statement after this one writes.
    IF dups IS NULL OR cardinality(dups) < n THEN
        IF dups IS NOT NULL THEN
            sighted := resighted;
            resighted := NULL;
        END IF;
        RETURN QUERY
        WITH nw AS MATERIALIZED ( -- each new element's position and ids, drawn once
            SELECT g.i, fingerprints[g.i + 1] AS fp,
                   -- an alert repeated in its batch: the id, uuid and count the lookup gave it
                   coalesce((exm->fingerprints[g.i + 1]->>0)::bigint, nextval('alerts_id_seq'::regclass)) AS aid,
                   coalesce((exm->fingerprints[g.i + 1]->>1)::uuid, alert_uuids[g.i + 1], calseta_uuid7()) AS au,
                   (exm->fingerprints[g.i + 1]->>3)::int AS reps,
                   nextval('enrichment_jobs_id_seq'::regclass) AS jid
              FROM generate_series(0, n - 1) g(i)
             WHERE NOT coalesce(g.i = ANY (dups), false)),
        rm AS MATERIALIZED ( -- the held rules as they are now (one deleted meanwhile is gone),
                             -- read once per statement, each alert's rule looked up in the map
            SELECT jsonb_object_agg(d.source_name || chr(1) || d.source_rule_id, d.id) AS m
              FROM detection_rules d
             WHERE d.id = ANY (rules) AND d.source_name IS NOT NULL AND d.source_rule_id IS NOT NULL),
        ins AS (
            INSERT INTO alerts (id, uuid, title, severity, source_name, description, occurred_at,
                                raw_payload, tags, fingerprint, detection_rule_id, indicator_ids,
                                ingest_event, ingest_key_prefix, duplicate_count, last_seen_at)
            SELECT nw.aid, nw.au, titles[nw.i + 1], severities[nw.i + 1], source_names[nw.i + 1],
                   descriptions[nw.i + 1], occurred[nw.i + 1],
                   CASE WHEN coalesce(check_nums[nw.i + 1], false) AND nw.p::jsonb IS NULL THEN NULL
                        ELSE nw.p END,
                   tag_vals[tag_offs[nw.i + 1] + 1 : tag_offs[nw.i + 2]], nw.fp,
                   ((SELECT rm.m FROM rm)->>(source_names[nw.i + 1] || chr(1) || rule_refs[nw.i + 1]))::bigint,
                   -- each id read by its position, nulls removed after
                   coalesce((SELECT array_remove(array_agg(DISTINCT ids[r.r] ORDER BY ids[r.r]), NULL)
                               FROM unnest(ind_refs[ind_offs[nw.i + 1] + 1 : ind_offs[nw.i + 2]]) r(r)), '{}'),
                   true, key_prefixes[nw.i + 1], coalesce(nw.reps, 0), CASE WHEN nw.reps IS NOT NULL THEN ts END
              -- the payload read here, by its position, once (OFFSET 0: not once per use)
              FROM (SELECT nw.*, CASE WHEN payloads[nw.i + 1] IS NULL THEN '{}'::json
                                      WHEN raw_members[nw.i + 1] IS NOT NULL
                                      THEN payloads[nw.i + 1]::json -> raw_members[nw.i + 1]
                                      ELSE payloads[nw.i + 1]::json END AS p
                      FROM nw OFFSET 0) nw),
        seen AS ( -- one row for the batch: the known indicators its new alerts carry (an indicator
                  -- this batch created has last_seen = ts already). When every element is a new
                  -- alert, each links every indicator it names, so that is every indicator of
                  -- the batch known before it: no need to read the links back. The lookup
                  -- sorted them (a subquery here to sort them was a plan node to set up in every
                  -- batch, ~70 k instructions per call).
            INSERT INTO indicator_sightings (indicator_ids, seen_at)
            SELECT resighted, ts WHERE cardinality(resighted) > 0),
        jobs AS (
            INSERT INTO enrichment_jobs (id, alert_id) SELECT nw.jid, nw.aid FROM nw)
        SELECT nw.i, nw.au, nw.aid, nw.jid, false, NULL::int FROM nw;
        IF dups IS NULL THEN
            RETURN;
        END IF;

        -- A mix: the sightings row holds the known indicators the new alerts carry (only when
        -- the batch names some known before it). The alerts the repeats of a new fingerprint
        -- count on were named by the lookup. Up to 64 references, a loop marks the places in
        -- sighted (sorted, distinct) that a new alert names and keeps those in their order: a
        -- statement's set-up cost ~190 k instructions, a reference in the loop ~1 k more than
        -- in the statement, so past that the statement is cheaper.
        IF cardinality(sighted) > 0 AND cardinality(ind_refs) <= 64 THEN
            FOR el IN 0 .. n - 1 LOOP
                CONTINUE WHEN el = ANY (dups);
                FOR rf IN ind_offs[el + 1] + 1 .. ind_offs[el + 2] LOOP
                    sj := array_position(sighted, ids[ind_refs[rf]]);
                    IF sj IS NOT NULL THEN
                        hit[sj] := true;
                    END IF;
                END LOOP;
            END LOOP;
            IF hit IS NOT NULL THEN
                resighted := NULL;
                FOR sj IN 1 .. cardinality(sighted) LOOP
                    IF hit[sj] THEN
                        resighted := resighted || sighted[sj];
                    END IF;
                END LOOP;
                INSERT INTO indicator_sightings (indicator_ids, seen_at) VALUES (resighted, ts);
            END IF;
        ELSIF cardinality(sighted) > 0 THEN
            INSERT INTO indicator_sightings (indicator_ids, seen_at)
            SELECT s.ids, ts
              FROM (SELECT array_agg(DISTINCT ids[r.r] ORDER BY ids[r.r]) AS ids
                      FROM generate_series(0, n - 1) g(i)
                      CROSS JOIN LATERAL unnest(ind_refs[ind_offs[g.i + 1] + 1 : ind_offs[g.i + 2]]) r(r)
                     WHERE NOT coalesce(g.i = ANY (dups), false) AND ids[r.r] = ANY (sighted)) s
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
        SELECT t.i, t.fp, titles[t.i + 1] AS title, source_names[t.i + 1] AS source_name,
               key_prefixes[t.i + 1] AS actor_key_prefix,
               (exm->t.fp->>0)::bigint AS tid, (exm->t.fp->>1)::uuid AS tuuid,
               coalesce((exm->t.fp->>2)::boolean, false) AS mine,
               row_number() OVER (PARTITION BY t.fp ORDER BY t.i) AS k
          FROM (SELECT u.i, fingerprints[u.i + 1] AS fp FROM unnest(dups) u(i)) t),
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
