-- 0031: one function finds the hours changed since a rollup pass, for every kind.
--
-- 0024 wrote it three times (alerts enriched, enrichment jobs finished, workflow runs changed),
-- the same body with another table, time column and condition. The kind now picks them from one
-- table of three rows. The statement stays a one-off (EXECUTE with the bounds as constants): the
-- planner then reads only the recent range of the index that finds the kind's changes.

-- 'alert':      the creation hours of alerts enriched at or after p_since (the partial index on
--               enriched_at; analyst changes and deletes are noted in metrics_rollup_dirty);
-- 'enrichment': the completion hours of jobs finished, or changed after finishing, since then;
-- 'run':        the creation hours of workflow runs changed since then (every run transition
--               sets updated_at).
-- Only hours in [p_from, p_before) count. Nothing is changed before the first pass.
CREATE FUNCTION calseta_changed_hours(p_kind TEXT, p_since TIMESTAMPTZ, p_from TIMESTAMPTZ,
                                      p_before TIMESTAMPTZ) RETURNS TIMESTAMPTZ[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    src RECORD;
    hours TIMESTAMPTZ[];
BEGIN
    IF p_since = '-infinity' THEN
        RETURN '{}';
    END IF;
    SELECT * INTO src FROM (VALUES
        ('alert', 'alerts', 'created_at', 'enriched_at', 'TRUE'),
        ('enrichment', 'enrichment_jobs', 'completed_at', 'updated_at',
         'status IN (''done'', ''failed'')'),
        ('run', 'workflow_runs', 'created_at', 'updated_at', 'TRUE'))
        AS k(kind, tbl, hour_col, changed_col, cond)
     WHERE k.kind = p_kind;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'calseta_changed_hours: unknown kind %', p_kind;
    END IF;
    EXECUTE format('SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', %1$I, ''UTC'') FROM %2$I '
                   'WHERE %3$s AND %4$I >= %5$L AND %1$I >= %6$L AND %1$I < %7$L)',
                   src.hour_col, src.tbl, src.cond, src.changed_col, p_since, p_from, p_before)
       INTO hours;
    RETURN hours;
END $$;

-- The pass of 0028, each kind's changed hours from the function above.
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
        calseta_changed_hours('alert', st.changes_since, '-infinity', w_new), w_new);
    PERFORM calseta_alert_rollup_hours(hours, w_new);

    SELECT date_trunc('hour', min(completed_at), 'UTC') INTO first_job FROM enrichment_jobs
     WHERE status IN ('done', 'failed');
    jhours := calseta_rollup_take_hours('enrichment', first_job, st.rolled_to,
        calseta_changed_hours('enrichment', st.changes_since, '-infinity', w_new), w_new);
    PERFORM calseta_job_rollup_hours(jhours);

    SELECT date_trunc('hour', min(created_at), 'UTC') INTO first_run FROM workflow_runs;
    rhours := calseta_rollup_take_hours('run', first_run, st.rolled_to,
        calseta_changed_hours('run', st.changes_since, '-infinity', w_new), w_new);
    PERFORM calseta_run_rollup_hours(rhours, w_new);

    UPDATE metrics_rollup_state SET rolled_to = w_new, changes_since = c_new, rolled_at = now(),
           hours_recomputed = hours_recomputed + cardinality(hours) + cardinality(jhours)
                              + cardinality(rhours);
    RETURN cardinality(hours) + cardinality(jhours) + cardinality(rhours);
END $$;

-- The hours of [p_from, p_to) whose rollup rows are out of date (0024's, through the function
-- above).
CREATE OR REPLACE FUNCTION calseta_rollup_dirty_hours(p_kind TEXT, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ)
RETURNS TIMESTAMPTZ[] LANGUAGE plpgsql STABLE AS $$
DECLARE
    st metrics_rollup_state;
BEGIN
    SELECT * INTO st FROM metrics_rollup_state;
    IF st.rolled_to = '-infinity' THEN
        RETURN '{}';
    END IF;
    RETURN ARRAY(SELECT unnest(calseta_changed_hours(p_kind, st.changes_since, p_from,
                                                     least(p_to, st.rolled_to)))
                 UNION
                 SELECT bucket FROM metrics_rollup_dirty WHERE kind = p_kind);
END $$;

DROP FUNCTION calseta_alert_enriched_hours(TIMESTAMPTZ, TIMESTAMPTZ, TIMESTAMPTZ);
DROP FUNCTION calseta_job_finished_hours(TIMESTAMPTZ, TIMESTAMPTZ, TIMESTAMPTZ);
DROP FUNCTION calseta_run_changed_hours(TIMESTAMPTZ, TIMESTAMPTZ, TIMESTAMPTZ);
