-- 0026_enrich_complete_lean.sql - the job-completing function does less work per job, with
-- the same outcome:
--   * a cache entry may name its result by the indicator it belongs to ({"provider", "i",
--     "ttl"}: indicators[i].results[provider]) instead of repeating it, so a job's results are
--     sent and parsed once, not twice; the older form ({provider, type, value, ttl, result})
--     is still accepted;
--   * the per-provider merge of enrichment_results is computed once per indicator, inline,
--     instead of calling calseta_merge_results() twice per row (each call ran as a statement
--     of its own);
--   * only pass-3 ("new") indicators are linked to the alert: the others came from its links;
--   * the indicator rows are locked (in id order, as before) by the statement that updates
--     them;
--   * its statements are planned once per session (generic plans): every statement is driven
--     by the document's arrays and unique keys, so the plan does not depend on the values, and
--     planning them again at every call cost more than running them. As for the ingest's
--     group commit (0025), a plan made while the tables are small must not be a sequential
--     scan kept while they grow: a job touches a handful of rows per indicator, each reached
--     by a unique index, so the function forbids the other plans.
CREATE OR REPLACE FUNCTION calseta_enrich_complete(p_job BIGINT, p_owner TEXT, doc JSONB)
RETURNS TEXT LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    j enrichment_jobs;
    a_ingested TIMESTAMPTZ;
    changed INTEGER := 0;
    n INTEGER;
BEGIN
    SELECT * INTO j FROM enrichment_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    IF j.status <> 'running' OR j.lease_owner IS DISTINCT FROM p_owner THEN
        RETURN 'lease_lost';
    END IF;
    SELECT ingested_at INTO a_ingested FROM alerts WHERE id = j.alert_id;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;

    IF jsonb_path_exists(doc, '$.indicators[*] ? (@.new == true)') THEN
        INSERT INTO indicators AS ind (type, value, first_seen, last_seen)
        SELECT x->>'type', x->>'value', a_ingested, a_ingested
          FROM jsonb_array_elements(doc->'indicators') x
         WHERE coalesce((x->>'new')::boolean, false)
         ORDER BY 1, 2
        ON CONFLICT (type, value) DO UPDATE SET last_seen = EXCLUDED.last_seen, updated_at = now()
         WHERE ind.last_seen < EXCLUDED.last_seen;

        INSERT INTO alert_indicators (alert_id, indicator_id)
        SELECT j.alert_id, i.id
          FROM jsonb_array_elements(doc->'indicators') x
          JOIN indicators i ON i.type = x->>'type' AND i.value = x->>'value'
         WHERE coalesce((x->>'new')::boolean, false)
         ORDER BY i.id
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        changed := changed + n;
    END IF;

    WITH locked AS MATERIALIZED (
        SELECT i.id, i.enrichment_results AS old, x->'results' AS fresh, x->>'malice' AS malice
          FROM indicators i
          JOIN jsonb_array_elements(doc->'indicators') x
            ON i.type = x->>'type' AND i.value = x->>'value'
         ORDER BY i.id FOR UPDATE OF i),
    merged AS (
        SELECT l.id, l.malice,
               coalesce(l.old, '{}'::jsonb) || coalesce((
                   SELECT jsonb_object_agg(e.k,
                              CASE WHEN l.old ? e.k AND jsonb_typeof(l.old->e.k) = 'object'
                                        AND jsonb_typeof(e.v) = 'object'
                                        AND (l.old->e.k) - 'enriched_at' = e.v - 'enriched_at'
                                   THEN l.old->e.k ELSE e.v END)
                     FROM jsonb_each(coalesce(l.fresh, '{}'::jsonb)) AS e(k, v)), '{}'::jsonb)
                   AS results
          FROM locked l)
    UPDATE indicators i
       SET enrichment_results = m.results,
           malice = CASE WHEN i.malice_source = 'analyst' THEN i.malice ELSE m.malice END,
           is_enriched = true, updated_at = now()
      FROM merged m
     WHERE i.id = m.id
       AND (NOT i.is_enriched
            OR i.enrichment_results IS DISTINCT FROM m.results
            OR (i.malice_source <> 'analyst' AND i.malice IS DISTINCT FROM m.malice));
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed + n;

    UPDATE alerts SET is_enriched = true, enriched_at = now(), enrichment_status = 'Enriched',
                      updated_at = now()
     WHERE id = j.alert_id
       AND (changed > 0 OR NOT is_enriched OR enrichment_status <> 'Enriched');
    IF FOUND THEN
        INSERT INTO activity_events (event_type, actor_type, alert_id, "references")
        VALUES ('alert_enrichment_completed', 'system', j.alert_id,
                coalesce(doc->'summary', '{}'::jsonb)
                    || jsonb_build_object('enriched_at', calseta_ts(now())));
    END IF;

    INSERT INTO enrichment_cache AS c (provider_name, indicator_type, indicator_value, result,
                                       expires_at)
    SELECT k.provider, k.type, k.value, k.result, now() + make_interval(secs => k.ttl)
      FROM (SELECT x->>'provider' AS provider,
                   coalesce(x->>'type', ind->>'type') AS type,
                   coalesce(x->>'value', ind->>'value') AS value,
                   coalesce(x->'result', ind->'results'->(x->>'provider')) AS result,
                   (x->>'ttl')::integer AS ttl
              FROM jsonb_array_elements(doc->'cache') x
              LEFT JOIN LATERAL (SELECT doc->'indicators'->((x->>'i')::integer) AS ind) r
                ON x ? 'i') k
     WHERE k.ttl > 0 AND k.type IS NOT NULL AND k.value IS NOT NULL
       AND jsonb_typeof(k.result) = 'object'
     ORDER BY 1, 2, 3
    ON CONFLICT (provider_name, indicator_type, indicator_value)
    DO UPDATE SET result = EXCLUDED.result, expires_at = EXCLUDED.expires_at,
                  created_at = now();

    UPDATE enrichment_jobs SET status = 'done', completed_at = now(), lease_owner = NULL,
                               lease_expires_at = NULL, last_error = NULL, updated_at = now()
     WHERE id = p_job;
    RETURN 'done';
END $$;
