-- 0030_enrich_complete_batch.sql - enrichment jobs completed many at a time, in one lock order.
--
-- calseta_enrich_complete_batch(owner, doc) completes every job of doc = {"jobs": [job, ...]} in
-- one statement and one transaction (one round trip and one commit for N finished jobs), with
--   job = {"id", "indicators": [{type, value, new, malice, results: {provider: result},
--          ttl: {provider: seconds}}], "summary": {...}}
-- where ttl names the fresh successes to store in the shared cache (their result is the one in
-- results, so it is sent once).
--
-- Lock order. The previous function upserted pass-3 indicators in (type, value) order, taking
-- the row lock of every existing one whose last_seen it moved, and then locked all of them in id
-- order: two workers completing jobs that share indicators could each hold one the other
-- wanted, and PostgreSQL aborted one (its job was redone after its lease). Now every row lock is
-- taken in one global order, table by table:
--   1. the batch's jobs, by id;
--   2. new indicators are only INSERTed (ON CONFLICT DO NOTHING, (type, value) order): an
--      existing row is neither written nor locked there. The only wait is on a concurrent insert
--      of the same value, and whoever inserted it holds no lock another completion waits for;
--   3. every indicator of the batch, by id (FOR NO KEY UPDATE), in the statement that updates
--      them (last_seen included);
--   4. links, by (alert, indicator); 5. alerts, by id; 6. shared-cache rows, by key.
--
-- Work per job: the document is walked once into arrays (one element per job indicator) that the
-- statements read by unnest() and subscript; large values (results) are not carried through
-- sorts or joins; an indicator shared by several jobs of the batch is updated once
-- (their results merged in job order); rows are rewritten only when something changed; the
-- shared cache's index on expires_at (read by nothing) is dropped so refreshing an entry can be
-- a HOT update, and indicators keep free space in their pages for the same reason (a row gains
-- its enrichment results after it was inserted).
--
-- calseta_enrich_complete(job, owner, doc) stays, as one job of a batch (older documents too).
-- calseta_enrich_claim claims in one statement that stops after its limit (see below).
-- calseta_enrich_cache_get_many(keys) reads the shared cache for the jobs of a whole claim.

DROP INDEX IF EXISTS ix_enrichment_cache_expires_at;
ALTER TABLE indicators SET (fillfactor = 80);
ALTER TABLE enrichment_cache SET (fillfactor = 80);

-- jsonb objects merged left to right (a key of a later one wins).
CREATE AGGREGATE calseta_jsonb_merge(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb, INITCOND = '{}');

-- Returns one row per job of the document: 'done', 'lease_lost' (the job is not running under
-- p_owner any more: another worker took it over, or it was completed already; nothing of it is
-- written) or 'gone' (the job or its alert was deleted).
CREATE FUNCTION calseta_enrich_complete_batch(p_owner TEXT, doc JSONB)
RETURNS TABLE (job_id BIGINT, outcome TEXT) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    d_ids BIGINT[];     -- per job of the document
    d_inds JSONB[];
    d_summary JSONB[];
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
    linked BIGINT[];
BEGIN
    -- the document is walked once; every later statement reads these arrays
    SELECT array_agg((jx->>'id')::bigint), array_agg(jx->'indicators'), array_agg(jx->'summary')
      INTO d_ids, d_inds, d_summary
      FROM jsonb_array_elements(doc->'jobs') jx;
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
          FROM (SELECT DISTINCT ON (u.id) u.id, u.inds, array_position(ok_jobs, u.id) AS p
                  FROM unnest(d_ids, d_inds) AS u(id, inds)
                 ORDER BY u.id) jj
         CROSS JOIN LATERAL jsonb_array_elements(
                   CASE WHEN jsonb_typeof(jj.inds) = 'array' THEN jj.inds ELSE '[]' END) AS x(e)
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
        merged AS (
            SELECT g.id, r_malice[g.olast] AS mal, g.seen, g.old,
                   coalesce(g.old, '{}'::jsonb) || coalesce((
                       SELECT jsonb_object_agg(e.k,
                                  CASE WHEN g.old ? e.k AND jsonb_typeof(g.old->e.k) = 'object'
                                            AND jsonb_typeof(e.v) = 'object'
                                            AND (g.old->e.k) - 'enriched_at' = e.v - 'enriched_at'
                                       THEN g.old->e.k ELSE e.v END)
                         FROM jsonb_each(CASE WHEN g.jobs = 1 THEN r_results[g.o1]
                                              ELSE (SELECT calseta_jsonb_merge(r_results[o.o]
                                                                               ORDER BY o.n)
                                                      FROM unnest(g.os) WITH ORDINALITY AS o(o, n))
                                         END) AS e(k, v)),
                       '{}'::jsonb) AS results
              FROM g),
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

        -- 4. pass-3 indicators linked to their alerts
        IF link_alerts IS NOT NULL THEN
            WITH ins AS (
                INSERT INTO alert_indicators (alert_id, indicator_id)
                SELECT DISTINCT u.a, u.i FROM unnest(link_alerts, link_ids) AS u(a, i)
                 ORDER BY 1, 2
                ON CONFLICT DO NOTHING
                RETURNING alert_id)
            SELECT array_agg(DISTINCT ins.alert_id) INTO linked FROM ins;
            changed := changed || linked;
        END IF;
    END IF;

    IF ok_jobs IS NOT NULL THEN
        -- 5. alerts, by id: marked enriched (again only if something changed), one event each
        WITH la AS MATERIALIZED (
            SELECT a.id FROM alerts a
             WHERE a.id = ANY (ok_alerts)
               AND (a.id = ANY (coalesce(changed, '{}'::bigint[])) OR NOT a.is_enriched
                    OR a.enrichment_status <> 'Enriched')
             ORDER BY a.id FOR NO KEY UPDATE OF a),
        ua AS (
            UPDATE alerts a
               SET is_enriched = true, enriched_at = now(), enrichment_status = 'Enriched',
                   updated_at = now()
              FROM la WHERE a.id = la.id
            RETURNING a.id)
        INSERT INTO activity_events (event_type, actor_type, alert_id, "references")
        SELECT 'alert_enrichment_completed', 'system', ok_alerts[k.p],
               CASE WHEN jsonb_typeof(k.summary) = 'object' THEN k.summary ELSE '{}'::jsonb END
                   || jsonb_build_object('enriched_at', calseta_ts(now()))
          FROM (SELECT DISTINCT ON (u.id) u.id, u.summary, array_position(ok_jobs, u.id) AS p
                  FROM unnest(d_ids, d_summary) AS u(id, summary)
                 ORDER BY u.id) k
         WHERE k.p IS NOT NULL AND ok_alerts[k.p] IN (SELECT ua.id FROM ua)
         ORDER BY k.id;

        -- 6. fresh successes into the shared cache, by key (the latest job's wins)
        IF r_job IS NOT NULL THEN
            INSERT INTO enrichment_cache AS c (provider_name, indicator_type, indicator_value,
                                               result, expires_at)
            SELECT DISTINCT ON (s.p, s.t, s.v) s.p, s.t, s.v, r_results[s.o]->s.p,
                   now() + make_interval(secs => s.ttl)
              FROM (SELECT e.key AS p, u.t, u.v, u.o, e.value::integer AS ttl, u.job
                      FROM unnest(r_job, r_type, r_value, r_ttl)
                           WITH ORDINALITY AS u(job, t, v, ttl, o)
                     CROSS JOIN LATERAL jsonb_each_text(u.ttl) AS e
                     WHERE jsonb_typeof(u.ttl) = 'object') s
             WHERE s.ttl > 0 AND jsonb_typeof(r_results[s.o]->s.p) = 'object'
             ORDER BY s.p, s.t, s.v, s.job DESC
            ON CONFLICT (provider_name, indicator_type, indicator_value)
            DO UPDATE SET result = EXCLUDED.result, expires_at = EXCLUDED.expires_at,
                          created_at = now();
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
END $$;

-- One job, as a batch of one. Its document may still carry the older "cache" array
-- ({provider, i, ttl}, or {provider, type, value, ttl, result} naming one of its indicators):
-- each entry becomes the ttl of the indicator's result it names.
CREATE OR REPLACE FUNCTION calseta_enrich_complete(p_job BIGINT, p_owner TEXT, doc JSONB)
RETURNS TEXT LANGUAGE sql AS $$
    SELECT b.outcome
      FROM calseta_enrich_complete_batch(p_owner, jsonb_build_object('jobs', jsonb_build_array(
               jsonb_build_object('id', p_job, 'summary', doc->'summary', 'indicators',
                   coalesce((SELECT jsonb_agg(CASE WHEN t.m IS NULL THEN x.e
                                                   ELSE x.e || jsonb_build_object('ttl', t.m) END
                                              ORDER BY x.o)
                               FROM jsonb_array_elements(CASE WHEN jsonb_typeof(doc->'indicators') = 'array'
                                                              THEN doc->'indicators' ELSE '[]' END)
                                    WITH ORDINALITY AS x(e, o)
                               LEFT JOIN LATERAL (
                                   SELECT jsonb_object_agg(c->>'provider', (c->>'ttl')::integer) AS m
                                     FROM jsonb_array_elements(CASE WHEN jsonb_typeof(doc->'cache') = 'array'
                                                                    THEN doc->'cache' ELSE '[]' END) c
                                    WHERE c->>'provider' IS NOT NULL
                                      AND ((c->>'i')::integer = x.o - 1
                                           OR (NOT c ? 'i' AND c->>'type' = x.e->>'type'
                                               AND c->>'value' = x.e->>'value'))) t ON true),
                            '[]'::jsonb))))) b
$$;

-- Shared-cache entries for keys = [[provider, type, value], ...]: the 1-based position of each
-- key found, its result and the seconds it has left.
CREATE FUNCTION calseta_enrich_cache_get_many(keys JSONB)
RETURNS TABLE (k INTEGER, result JSONB, ttl_left INTEGER)
LANGUAGE sql STABLE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $$
    SELECT u.o::integer, c.result,
           greatest(1, floor(extract(epoch FROM c.expires_at - now())))::integer
      FROM jsonb_array_elements(keys) WITH ORDINALITY AS u(e, o)
      JOIN enrichment_cache c ON c.provider_name = u.e->>0 AND c.indicator_type = u.e->>1
                             AND c.indicator_value = u.e->>2
     WHERE c.expires_at > now()
$$;

-- Claims up to p_limit jobs (pending ones, and running ones whose lease expired), the oldest
-- first, in one statement: it walks the claimable jobs in id order (an index on id) and stops
-- after p_limit. Those already claimed p_max_attempts times are marked failed (with their
-- alert's enrichment_status) as they are met, instead of being claimed; the previous function
-- looked for them in a statement of its own that read every pending job at every claim. Same
-- result rows as before. Its statement is planned with index lookups only, as the completing
-- function's (a plan chosen while indicators was small scanned it whole for every claimed alert).
CREATE OR REPLACE FUNCTION calseta_enrich_claim(p_owner TEXT, p_lease_seconds INTEGER,
                                                p_limit INTEGER, p_max_attempts INTEGER)
RETURNS TABLE (job_id BIGINT, alert_id BIGINT, attempts INTEGER, doc JSONB)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
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
                                         FROM alert_indicators ai
                                         JOIN indicators i ON i.id = ai.indicator_id
                                        WHERE ai.alert_id = u.alert_id), '[]'::jsonb))
      FROM u JOIN alerts a ON a.id = u.alert_id;
END $$;

-- Claimable jobs by id: the claim takes the oldest ones, so it walks this index in order and
-- stops after its limit, where the index on (status, lease_expires_at) it replaces made it read
-- and sort every pending job for each claim (the whole backlog, while one builds up).
DROP INDEX IF EXISTS ix_enrichment_jobs_claim;
CREATE INDEX ix_enrichment_jobs_claim ON enrichment_jobs (id) WHERE status IN ('pending', 'running');
