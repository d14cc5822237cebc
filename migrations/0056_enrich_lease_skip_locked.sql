-- Leases of jobs whose completion waits, and batches that do not wait for one blocked job.
--
-- A completing statement holds its jobs' rows (FOR NO KEY UPDATE) while it waits, for a lock
-- or a slow server, and the claim skips locked rows, so a job in a running completing
-- statement cannot be taken over. The periodic renewal therefore skips those rows too instead
-- of waiting behind them (a renewal stuck there would hold every other row it had updated), and
-- a worker renews all its jobs, finished ones waiting for their completion included.
--
-- calseta_enrich_renew_one renews one job before its completion is tried again: it waits for
-- the row (the statement that failed may still be ending on the server) and says what became of
-- the job: 'running' (renewed), 'done' (completed meanwhile, by a statement whose answer was
-- lost) or 'lease_lost'.
--
-- The claim takes the ids of the jobs the worker has in flight and leaves them out, so a worker
-- never holds two instances of one job (an old instance's release would undo the new claim, and
-- both would be counted done).

CREATE OR REPLACE FUNCTION calseta_enrich_renew(p_jobs BIGINT[], p_owner TEXT,
                                                p_lease_seconds INTEGER)
RETURNS INTEGER LANGUAGE sql AS $$
    WITH r AS (
        UPDATE enrichment_jobs
           SET lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               updated_at = now()
         WHERE id IN (SELECT j.id FROM enrichment_jobs j
                       WHERE j.id = ANY (p_jobs) AND j.lease_owner = p_owner
                         AND j.status = 'running'
                       ORDER BY j.id FOR NO KEY UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*)::integer FROM r
$$;

CREATE FUNCTION calseta_enrich_renew_one(p_job BIGINT, p_owner TEXT, p_lease_seconds INTEGER)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    st TEXT;
    own TEXT;
BEGIN
    SELECT status, lease_owner INTO st, own FROM enrichment_jobs WHERE id = p_job
       FOR NO KEY UPDATE;
    IF st = 'running' AND own IS NOT DISTINCT FROM p_owner THEN
        UPDATE enrichment_jobs
           SET lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               updated_at = now()
         WHERE id = p_job;
        RETURN 'running';
    END IF;
    RETURN CASE WHEN st = 'done' THEN 'done' ELSE 'lease_lost' END;
END $$;

CREATE FUNCTION calseta_enrich_claim(p_owner text, p_lease_seconds integer, p_limit integer,
                                     p_max_attempts integer, p_skip bigint[])
 RETURNS TABLE(job_id bigint, alert_id bigint, attempts integer, doc jsonb)
 LANGUAGE plpgsql
 SET enable_seqscan TO 'off'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
AS $function$
BEGIN
    RETURN QUERY
    WITH c AS (
        SELECT j.id, j.attempts >= p_max_attempts AS spent
          FROM enrichment_jobs j
         WHERE j.status IN ('pending', 'running')
           AND (j.status = 'pending' OR j.lease_expires_at < now())
           AND j.id <> ALL (coalesce(p_skip, '{}'::bigint[]))
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
                                         FROM indicators i
                                        WHERE i.id = ANY (a.indicator_ids)), '[]'::jsonb))
      FROM u JOIN alerts a ON a.id = u.alert_id;
END $function$;

-- The four-argument form (tools and tests call it) is the claim with nothing left out.
CREATE OR REPLACE FUNCTION calseta_enrich_claim(p_owner text, p_lease_seconds integer,
                                                p_limit integer, p_max_attempts integer)
 RETURNS TABLE(job_id bigint, alert_id bigint, attempts integer, doc jsonb)
 LANGUAGE sql
AS $function$
    SELECT * FROM calseta_enrich_claim(p_owner, p_lease_seconds, p_limit, p_max_attempts,
                                       '{}'::bigint[])
$function$;

-- A completing statement of several jobs waits for a lock at most p_lock_timeout_ms: one job
-- whose rows someone else holds then fails its batch at once, the others are completed again
-- one by one, and only that job waits (in a statement of its own, without this bound).
CREATE FUNCTION calseta_enrich_complete_batch_bounded(p_owner TEXT, doc JSONB,
                                                      p_lock_timeout_ms INTEGER)
RETURNS TABLE(job_id BIGINT, outcome TEXT) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout_ms::text, true);
    RETURN QUERY SELECT c.job_id, c.outcome FROM calseta_enrich_complete_batch(p_owner, doc) c;
END $$;
