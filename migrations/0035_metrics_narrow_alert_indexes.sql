-- 0035: the metrics stop widening every alert write. The covering index of the metrics becomes
-- a plain created_at index, and the partial index on enriched_at goes: the rollup finds the
-- alerts enriched since a pass through their finished enrichment jobs instead.
--
-- ix_alerts_created_metrics carried twelve INCLUDE columns (status, severity, source, close
-- classification, is_enriched, rule, and six timestamps): a ~130-byte entry written by every
-- ingested alert, and written again by every update that changed one of those columns. Status,
-- triage, acknowledgement, close and enrichment updates all change one, so none of them could
-- be heap-only (HOT): each wrote a new entry into every index of alerts. What reads alerts by
-- created_at, and what it needs from the row:
--   * the rollup (calseta_alert_rollup_hours) recomputes only new and changed hours; an hour of
--     20,000 alerts is a range scan of the created_at index plus those rows' heap pages (they
--     were inserted together, so they sit on adjacent pages);
--   * the live part of a metrics request (window edges, the tail since the last pass, changed
--     hours) counts at most a few hours of alerts the same way;
--   * GET /v1/alerts sorted by created_at (the default) walks the index and stops after a page;
--   * the first-hour lookups (min(created_at)) read one end of the index.
-- None needs the INCLUDE columns from the index; all need the created_at order, so a narrow
-- index on created_at stays.
DROP INDEX IF EXISTS ix_alerts_created_metrics;
CREATE INDEX IF NOT EXISTS ix_alerts_created ON alerts (created_at);

-- ix_alerts_enriched_at (partial, enriched alerts) existed only for calseta_changed_hours
-- ('alert'): the creation hours of the alerts enriched since a pass. Not written at ingest, but
-- the enrichment's UPDATE of each alert added an entry to it and so was never HOT. Every
-- enrichment stamps enriched_at = now() in the transaction that marks its job 'done' with
-- updated_at = now() (calseta_enrich_complete_batch), so the same transaction start is on the
-- job; finished jobs changed since a pass are already read for the 'enrichment' kind from
-- ix_enrichment_jobs_finished_updated, and their alerts are found by primary key. The set found
-- is a superset of the alerts enriched since (it also holds alerts whose job failed), which only
-- recomputes an hour more. A finished job deleted before the next pass (its alert deleted - that
-- hour is noted in metrics_rollup_dirty by the delete) hides nothing else.
DROP INDEX IF EXISTS ix_alerts_enriched_at;

-- 'alert':      the creation hours of alerts whose enrichment finished at or after p_since
--               (analyst changes and deletes are noted in metrics_rollup_dirty);
-- 'enrichment': the completion hours of jobs finished, or changed after finishing, since then;
-- 'run':        the creation hours of workflow runs changed since then.
-- Only hours in [p_from, p_before) count. Nothing is changed before the first pass. One-off
-- statements (bounds as constants), so the planner reads only the recent range of each index.
CREATE OR REPLACE FUNCTION calseta_changed_hours(p_kind TEXT, p_since TIMESTAMPTZ, p_from TIMESTAMPTZ,
                                                 p_before TIMESTAMPTZ) RETURNS TIMESTAMPTZ[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    q TEXT;
    hours TIMESTAMPTZ[];
BEGIN
    IF p_since = '-infinity' THEN
        RETURN '{}';
    END IF;
    q := CASE p_kind
        WHEN 'alert' THEN
            'SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', a.created_at, ''UTC'') '
            'FROM enrichment_jobs j JOIN alerts a ON a.id = j.alert_id '
            'WHERE j.status IN (''done'', ''failed'') AND j.updated_at >= %1$L '
            'AND a.created_at >= %2$L AND a.created_at < %3$L)'
        WHEN 'enrichment' THEN
            'SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', completed_at, ''UTC'') '
            'FROM enrichment_jobs WHERE status IN (''done'', ''failed'') AND updated_at >= %1$L '
            'AND completed_at >= %2$L AND completed_at < %3$L)'
        WHEN 'run' THEN
            'SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', created_at, ''UTC'') '
            'FROM workflow_runs WHERE updated_at >= %1$L AND created_at >= %2$L AND created_at < %3$L)'
        END;
    IF q IS NULL THEN
        RAISE EXCEPTION 'calseta_changed_hours: unknown kind %', p_kind;
    END IF;
    EXECUTE format(q, p_since, p_from, p_before) INTO hours;
    RETURN hours;
END $$;
