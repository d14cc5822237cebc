-- 0068_ingest_original_gone_retried.sql - an original deleted under a batch makes the batch
-- retryable, and only a duplicate's event written by the ingest function goes unchecked.
--
-- A batch that found an original, and then found it gone when it came to count on it (a
-- deletion committed between the two), failed with a foreign-key violation: a batch of several
-- alerts was split and each retried alone, but a lone alert was answered 500. It now fails with
-- serialization_failure, which the intake retries as a whole batch (at most three times, then
-- 503): the retry's lookup takes a new snapshot, no longer sees the deleted original, and the
-- alert becomes new (or a duplicate of an older one still in the window). A retry fails again
-- only if yet another original of the same fingerprint is deleted in the same moment.
--
-- The trigger's exemption no longer names alert_ingested: since 0059 the ingest function
-- writes none (a new alert's event is read from its row), so only its alert_deduplicated
-- events, each naming an original its own update holds, skip the check.
--
-- Locks: CREATE OR REPLACE TRIGGER takes a SHARE ROW EXCLUSIVE lock on activity_events for
-- the migration's transaction (writers of events wait that long); replacing the function
-- takes none. A batch already running when this commits keeps the error it raises.

CREATE OR REPLACE FUNCTION calseta_ingest_original_gone(alert_id BIGINT) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'original alert % was deleted during the ingest batch', alert_id
        USING ERRCODE = 'serialization_failure',
              HINT = 'Retry the batch: its lookup will no longer find the deleted alert.';
END $$;

CREATE OR REPLACE TRIGGER trg_activity_events_alert AFTER INSERT OR UPDATE OF alert_id ON activity_events
    FOR EACH ROW WHEN (current_setting('calseta.ingest_parent_checked', true) IS DISTINCT FROM 'on'
                       OR NEW.event_type IS DISTINCT FROM 'alert_deduplicated')
    EXECUTE FUNCTION calseta_alert_child_check();
