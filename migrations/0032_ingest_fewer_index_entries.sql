-- 0032_ingest_fewer_index_entries.sql - fewer index entries and no key-share lock per ingested
-- alert: one enrichment_jobs index instead of two for unfinished jobs, and the links, job and
-- activity event written by calseta_ingest_batch() no longer checked by a foreign key.
--
-- Measured with calseta_ingest_batch() alone (batches of 15 of the five fixture alerts, one
-- client, server CPU of all PostgreSQL processes and WAL bytes per alert): see
-- docs/ingestion.md, "What a batch writes per alert".

-- Unfinished jobs were indexed twice: ix_enrichment_jobs_claim (id) for the claim, which takes
-- the oldest claimable jobs in id order, and ix_enrichment_jobs_unfinished (status, created_at)
-- for the queue figures. Every reader of the latter is a count or a minimum over all unfinished
-- jobs, never a lookup of a few:
--   * /health:            count(*) WHERE status IN ('pending', 'running')
--   * /metrics (prom.c):  count(*) FILTER (status = ...), min(created_at) FILTER (pending),
--                         over WHERE status IN ('pending', 'running')
--   * calseta_queue_stats() / metrics summary: count(*) WHERE status = 'pending' / 'running',
--                         min(created_at) WHERE status = 'pending'
-- The stale-lease sweep is the claim itself (status = 'running' AND lease_expires_at < now(),
-- read through the claim index), and the finished/cleanup readers use ix_enrichment_jobs_finished
-- and ix_enrichment_jobs_finished_updated (partial on done/failed, not written at ingest).
-- With status and created_at carried by the claim index, all of those are index-only scans of
-- it, reading the same entries they read from the dropped index, and a new job (and each claim,
-- which moves the job to a new heap tuple) writes one entry less.
DROP INDEX IF EXISTS ix_enrichment_jobs_unfinished;
DROP INDEX IF EXISTS ix_enrichment_jobs_claim;
CREATE INDEX ix_enrichment_jobs_claim ON enrichment_jobs (id) INCLUDE (status, created_at)
    WHERE status IN ('pending', 'running');

-- The links, the job and the activity event of a new alert were each checked by a foreign key
-- to alerts: an index lookup per row (six to eight per fixture alert) and a KEY SHARE lock on
-- the alert row, which writes a heap lock record to the WAL. calseta_ingest_batch() inserts
-- those rows in the statement that inserted the alert, with the id that insert returned, so
-- the checks could not fail there. Every other writer (the API's activity events and
-- re-enrichment jobs, the enricher's links) may race a deletion of the alert, so it keeps the
-- check, made by the triggers below with the same lock the key took, after the statement as the
-- key's was (a duplicate may name an alert the same statement inserted); the ingest function turns
-- it off for itself alone (calseta.ingest_parent_checked, set for its own execution only).
-- What the keys did on a deletion of an alert is kept by calseta_alert_delete_children():
-- links and jobs deleted (was ON DELETE CASCADE), activity events kept with alert_id NULL
-- (was ON DELETE SET NULL), in the deleting statement, as the keys' actions were.
ALTER TABLE alert_indicators DROP CONSTRAINT IF EXISTS alert_indicators_alert_id_fkey;
ALTER TABLE enrichment_jobs DROP CONSTRAINT IF EXISTS enrichment_jobs_alert_id_fkey;
ALTER TABLE activity_events DROP CONSTRAINT IF EXISTS activity_events_alert_id_fkey;

CREATE OR REPLACE FUNCTION calseta_alert_child_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.alert_id IS NOT NULL THEN
        PERFORM 1 FROM alerts WHERE id = NEW.alert_id FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'insert or update on table "%" violates the reference to alerts',
                TG_TABLE_NAME
                USING ERRCODE = 'foreign_key_violation',
                      DETAIL = format('Key (alert_id)=(%s) is not present in table "alerts".',
                                      NEW.alert_id);
        END IF;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS trg_alert_indicators_alert ON alert_indicators;
CREATE TRIGGER trg_alert_indicators_alert AFTER INSERT OR UPDATE OF alert_id ON alert_indicators
    FOR EACH ROW WHEN (current_setting('calseta.ingest_parent_checked', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION calseta_alert_child_check();
DROP TRIGGER IF EXISTS trg_enrichment_jobs_alert ON enrichment_jobs;
CREATE TRIGGER trg_enrichment_jobs_alert AFTER INSERT OR UPDATE OF alert_id ON enrichment_jobs
    FOR EACH ROW WHEN (current_setting('calseta.ingest_parent_checked', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION calseta_alert_child_check();
DROP TRIGGER IF EXISTS trg_activity_events_alert ON activity_events;
-- A duplicate's event names an alert the batch found but did not create: a deletion committed
-- since may have removed it (the batch's update of it then touched nothing), so that event is
-- still checked and fails the batch, which is retried, as the key did.
CREATE TRIGGER trg_activity_events_alert AFTER INSERT OR UPDATE OF alert_id ON activity_events
    FOR EACH ROW WHEN (current_setting('calseta.ingest_parent_checked', true) IS DISTINCT FROM 'on'
                       OR NEW.event_type IS DISTINCT FROM 'alert_ingested')
    EXECUTE FUNCTION calseta_alert_child_check();

CREATE OR REPLACE FUNCTION calseta_alert_delete_children() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM alert_indicators l USING gone g WHERE l.alert_id = g.id;
    DELETE FROM enrichment_jobs j USING gone g WHERE j.alert_id = g.id;
    UPDATE activity_events e SET alert_id = NULL FROM gone g WHERE e.alert_id = g.id;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS trg_alert_delete_children ON alerts;
CREATE TRIGGER trg_alert_delete_children AFTER DELETE ON alerts REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION calseta_alert_delete_children();

-- Only for the function's own execution: a later CREATE OR REPLACE of it without this setting
-- turns the checks back on (slower, never unsafe).
ALTER FUNCTION calseta_ingest_batch(JSONB, INTEGER) SET calseta.ingest_parent_checked = 'on';
