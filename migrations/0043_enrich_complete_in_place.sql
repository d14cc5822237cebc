-- 0043_enrich_complete_in_place.sql - the completing function reads the document where it lies
-- and stores an indicator's first results as they are.
--
-- Document. The function copied the whole document several times before writing anything: each
-- job of `jobs` was extracted whole (tens of kilobytes with its results), its indicators copied
-- again into an array of jobs, that array sorted with them to drop a job listed twice, and the
-- summaries likewise. Now the ids are read by position (a path lookup copies the value it
-- returns only), a job's indicators are copied out of the document once, and a summary is
-- read when its event is written. A `jobs` that is not an array completes nothing, as a missing
-- one did.
--
-- First results. Merging a job's results over the stored ones (jsonb_each, the merge rule per
-- provider, jsonb_object_agg, concatenation) rebuilt an object equal to the fresh results
-- whenever nothing was stored yet, the common case (an indicator's first enrichment). Those are
-- now stored as they are; stored results still go through the rule
-- (calseta_enrich_result_kept) per provider.
--
-- Memoize. The planner put a Memoize node over the walk of each job's indicators, keyed by the
-- job's indicators themselves (tens of kilobytes, hashed and compared whole, and kept in its
-- cache for a hit that cannot happen: each job is walked once); it is off for this function.
--
-- The completing function of 0042, with those three changes; every statement, its order and
-- its locks are unchanged.
CREATE OR REPLACE FUNCTION calseta_enrich_complete_batch(p_owner TEXT, doc JSONB)
RETURNS TABLE (job_id BIGINT, outcome TEXT) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_memoize = off AS $$
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
    linked BIGINT[];
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
END $$;
