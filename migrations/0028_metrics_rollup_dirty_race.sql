-- 0028: a rollup pass recomputes every hour whose dirty note it removes, and never removes a
-- note whose writer has not committed.
--
-- Two races of 0024's pass, both leaving an hour stale until its next change:
--   - it read metrics_rollup_dirty in one statement and deleted its rows in the next; under READ
--     COMMITTED a note committed between the two was removed without its hour being recomputed.
--     The notes are now taken with DELETE ... RETURNING, and the hours returned are recomputed by
--     statements that start after the delete, so they see the change that wrote the note;
--   - one note per (kind, hour) with ON CONFLICT DO NOTHING: a writer (an analyst's patch) whose
--     hour already had a committed note added nothing, the pass deleted that note while the
--     writer was still open, and the writer's change, committed after the recompute, was noted
--     nowhere. Every writer now adds its own row (the writers' ON CONFLICT DO NOTHING no longer
--     has a unique index to meet), which the pass cannot see, and so cannot delete, before it
--     commits. Rows repeat per hour until the next pass (a few per analyst change); readers
--     already take distinct hours.

ALTER TABLE metrics_rollup_dirty DROP CONSTRAINT metrics_rollup_dirty_pkey;
ALTER TABLE metrics_rollup_dirty ADD COLUMN id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
CREATE INDEX ix_metrics_rollup_dirty_kind_bucket ON metrics_rollup_dirty (kind, bucket);

-- The hours of one kind a pass recomputes: every whole hour since the last pass (from the
-- kind's first row), the hours found changed, and the hours noted in metrics_rollup_dirty, whose
-- notes are taken in the same statement (only committed ones are seen, so only those are taken).
CREATE FUNCTION calseta_rollup_take_hours(p_kind TEXT, p_first TIMESTAMPTZ, p_rolled_to TIMESTAMPTZ,
                                          p_changed TIMESTAMPTZ[], p_before TIMESTAMPTZ)
RETURNS TIMESTAMPTZ[] LANGUAGE plpgsql AS $$
DECLARE
    hours TIMESTAMPTZ[];
BEGIN
    WITH d AS (DELETE FROM metrics_rollup_dirty WHERE kind = p_kind AND bucket < p_before
               RETURNING bucket)
    SELECT coalesce(array_agg(h ORDER BY h), '{}') INTO hours FROM (
        SELECT h FROM generate_series(greatest(p_rolled_to, coalesce(p_first, p_before)),
                                      p_before - interval '1 hour', interval '1 hour') h
        UNION
        SELECT unnest(p_changed)
        UNION
        SELECT bucket FROM d) s(h);
    RETURN hours;
END $$;

CREATE OR REPLACE FUNCTION calseta_metrics_rollup() RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    st metrics_rollup_state;
    c_new TIMESTAMPTZ;
    w_new TIMESTAMPTZ;
    first_alert TIMESTAMPTZ;
    first_job TIMESTAMPTZ;
    first_run TIMESTAMPTZ;
    hours TIMESTAMPTZ[];
    jhours TIMESTAMPTZ[];
    rhours TIMESTAMPTZ[];
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('calseta_metrics_rollup')) THEN
        RETURN -1;
    END IF;
    SELECT * INTO st FROM metrics_rollup_state FOR UPDATE;
    -- A write this pass cannot see belongs to a transaction open now (the time it stamps -
    -- enriched_at, a job's updated_at, a new alert's created_at - is at least its start) or to
    -- one that starts later. Read before any statement below takes its snapshot.
    SELECT least(now(), min(xact_start)) INTO c_new FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
       AND backend_type = 'client backend';
    w_new := date_trunc('hour', c_new, 'UTC');

    SELECT date_trunc('hour', min(created_at), 'UTC') INTO first_alert FROM alerts;
    hours := calseta_rollup_take_hours('alert', first_alert, st.rolled_to,
        calseta_alert_enriched_hours(st.changes_since, '-infinity', w_new), w_new);
    PERFORM calseta_alert_rollup_hours(hours, w_new);

    SELECT date_trunc('hour', min(completed_at), 'UTC') INTO first_job FROM enrichment_jobs
     WHERE status IN ('done', 'failed');
    jhours := calseta_rollup_take_hours('enrichment', first_job, st.rolled_to,
        calseta_job_finished_hours(st.changes_since, '-infinity', w_new), w_new);
    PERFORM calseta_job_rollup_hours(jhours);

    SELECT date_trunc('hour', min(created_at), 'UTC') INTO first_run FROM workflow_runs;
    rhours := calseta_rollup_take_hours('run', first_run, st.rolled_to,
        calseta_run_changed_hours(st.changes_since, '-infinity', w_new), w_new);
    PERFORM calseta_run_rollup_hours(rhours, w_new);

    UPDATE metrics_rollup_state SET rolled_to = w_new, changes_since = c_new, rolled_at = now(),
           hours_recomputed = hours_recomputed + cardinality(hours) + cardinality(jhours)
                              + cardinality(rhours);
    RETURN cardinality(hours) + cardinality(jhours) + cardinality(rhours);
END $$;
