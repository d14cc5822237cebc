-- calseta_enrich_renew_one counts the renewed lease from the moment it has the job's row, not
-- from the start of its statement: it waits for the row while a statement whose outcome the
-- worker lost may still be ending on the server, and the periodic renewal skipped the row all
-- that time, so a lease counted from before the wait would be short by the wait.
--
-- A statement of several jobs that waits longer than its lock bound is now split in halves by
-- the worker (each half again bounded) rather than into single jobs; a job's own statement
-- still waits for its locks up to the statement timeout.

CREATE OR REPLACE FUNCTION calseta_enrich_renew_one(p_job BIGINT, p_owner TEXT,
                                                    p_lease_seconds INTEGER)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    st TEXT;
    own TEXT;
BEGIN
    SELECT status, lease_owner INTO st, own FROM enrichment_jobs WHERE id = p_job
       FOR NO KEY UPDATE;
    IF st = 'running' AND own IS NOT DISTINCT FROM p_owner THEN
        UPDATE enrichment_jobs
           SET lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds),
               updated_at = now()
         WHERE id = p_job;
        RETURN 'running';
    END IF;
    RETURN CASE WHEN st = 'done' THEN 'done' ELSE 'lease_lost' END;
END $$;
