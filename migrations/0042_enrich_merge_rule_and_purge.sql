-- 0042_enrich_merge_rule_and_purge.sql - the rule deciding which of two results of one provider
-- an indicator keeps, in one place; and expired shared-cache entries purged in bulk.
--
-- Merge rule. The completing function carried the rule inline, so changing it meant copying the
-- whole function into a new migration. calseta_enrich_result_kept(stored, fresh) is the rule
-- alone: true when the stored result stays, i.e. the fresh one is the same but for its
-- enriched_at (nothing to write), or was looked up before the stored one (a worker's
-- in-process cache may bring a result older than one another worker stored meanwhile;
-- enriched_at is written in one fixed-width UTC format, so text order is time order). Any
-- other fresh result, or one without a stored result to compare with, is stored. It is a plain
-- SQL expression the planner inlines into the completing statement, and the next change of the
-- rule replaces this function only (plans using it are invalidated with it).
--
-- Purge. Nothing deleted expired enrichment_cache rows: a reader ignores them, so the table only
-- grew, with a row per provider and indicator ever looked up. calseta_enrich_cache_purge walks
-- the table in key order, a bounded span per call, from where the previous call stopped, and
-- deletes the expired rows of that span. Each worker calls it on its poll timer (off the
-- completion path). The table has no index on expires_at on purpose (an index entry per
-- refresh would cost every completion), so the walk follows the primary key; the span bound
-- keeps each call short whatever the table's size. Rows another transaction holds (a completion
-- refreshing the entry) are skipped, so a purge never waits on a lock nor takes part in a
-- deadlock; a row refreshed meanwhile is re-checked and kept.

CREATE OR REPLACE FUNCTION calseta_enrich_result_kept(stored JSONB, fresh JSONB)
RETURNS BOOLEAN LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_typeof(stored) = 'object' AND jsonb_typeof(fresh) = 'object'
                    AND (stored - 'enriched_at' = fresh - 'enriched_at'
                         OR (fresh->>'enriched_at') COLLATE "C" < (stored->>'enriched_at')),
                    false)
$$;

-- p_after: the last key of the previous span (provider, type, value), NULL to start from the
-- first key. Returns the rows deleted and the key to pass next time (NULL once the walk reached
-- the end of the table: the next call starts again from the first key).
CREATE OR REPLACE FUNCTION calseta_enrich_cache_purge(p_after TEXT[], p_span INTEGER,
                                                      OUT purged INTEGER, OUT next_after TEXT[])
LANGUAGE plpgsql SET enable_seqscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $$
DECLARE
    keys TEXT[];        -- the span, as provider, type, value triples flattened in key order
    expired BOOLEAN[];
    n INTEGER;
BEGIN
    IF p_after IS NULL OR cardinality(p_after) <> 3 THEN
        SELECT array_agg(ARRAY[s.provider_name, s.indicator_type, s.indicator_value]
                         ORDER BY s.provider_name, s.indicator_type, s.indicator_value),
               array_agg(s.expires_at <= now()
                         ORDER BY s.provider_name, s.indicator_type, s.indicator_value)
          INTO keys, expired
          FROM (SELECT c.provider_name, c.indicator_type, c.indicator_value, c.expires_at
                  FROM enrichment_cache c
                 ORDER BY c.provider_name, c.indicator_type, c.indicator_value
                 LIMIT p_span) s;
    ELSE
        SELECT array_agg(ARRAY[s.provider_name, s.indicator_type, s.indicator_value]
                         ORDER BY s.provider_name, s.indicator_type, s.indicator_value),
               array_agg(s.expires_at <= now()
                         ORDER BY s.provider_name, s.indicator_type, s.indicator_value)
          INTO keys, expired
          FROM (SELECT c.provider_name, c.indicator_type, c.indicator_value, c.expires_at
                  FROM enrichment_cache c
                 WHERE (c.provider_name, c.indicator_type, c.indicator_value)
                       > (p_after[1], p_after[2], p_after[3])
                 ORDER BY c.provider_name, c.indicator_type, c.indicator_value
                 LIMIT p_span) s;
    END IF;
    n := coalesce(array_length(keys, 1), 0);
    IF n >= p_span THEN
        next_after := ARRAY[keys[n][1], keys[n][2], keys[n][3]];
    END IF;
    purged := 0;
    IF true = ANY (expired) THEN
        WITH doomed AS MATERIALIZED (
            SELECT c.ctid AS t
              FROM generate_subscripts(keys, 1) AS k(i)
              JOIN enrichment_cache c ON c.provider_name = keys[k.i][1]
                                     AND c.indicator_type = keys[k.i][2]
                                     AND c.indicator_value = keys[k.i][3]
             WHERE expired[k.i] AND c.expires_at <= now()
             ORDER BY k.i
               FOR UPDATE OF c SKIP LOCKED),
        gone AS (
            DELETE FROM enrichment_cache c USING doomed d
             WHERE c.ctid = d.t AND c.expires_at <= now()
            RETURNING 1)
        SELECT count(*) INTO purged FROM gone;
    END IF;
END $$;

-- The completing function of 0039, unchanged but for the rule, now calseta_enrich_result_kept.
CREATE OR REPLACE FUNCTION calseta_enrich_complete_batch(p_owner TEXT, doc JSONB)
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
                                  CASE WHEN calseta_enrich_result_kept(g.old->e.k, e.v)
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
