-- 0020: the metrics routes at any table size: pre-aggregated alert and enrichment-job figures
-- maintained by a periodic rollup, plus the little that changed since, counted at query time.
--
-- Rollup rows: per hour (and per whole UTC day, summed from its hours) and per (status,
-- severity, source) the counts and the sums behind every mean; per hour and rule the alert
-- count; per hour of completion and status the finished enrichment jobs. The rollup
-- (calseta_metrics_rollup, run by the intake's housekeeping timer, one caller at a time) records
--   rolled_to      every whole hour before it is in the rollup rows;
--   changes_since  every alert or finished job the rollup did not see carries updated_at >= it:
--                  the start of the oldest transaction still open when the rollup began
--                  (now() otherwise), since every write path sets updated_at = now().
-- A query reads rollup rows for the whole hours of its window below rolled_to whose rows are
-- current, and counts from the tables themselves: the partial hours at the window's edges, the
-- tail from rolled_to on, and the "dirty" hours - those holding a row with updated_at >=
-- changes_since (status, severity, enrichment changes, late inserts, backfills) or a deleted
-- alert (noted by the delete statement in metrics_rollup_dirty). The figures are therefore exact
-- as of the request; the rollup period only bounds how much is counted live. Adds no trigger:
-- the ingest path pays one more index entry per alert (updated_at).

CREATE INDEX ix_alerts_updated_at ON alerts (updated_at) INCLUDE (created_at);
-- The queue block reads unfinished jobs from these alone (counts and the oldest, index-only).
CREATE INDEX ix_enrichment_jobs_unfinished ON enrichment_jobs (status, created_at)
    WHERE status IN ('pending', 'running');
-- Runs of a window with everything the metrics read (replaces the one without duration_ms).
DROP INDEX IF EXISTS ix_workflow_runs_created;
CREATE INDEX ix_workflow_runs_created ON workflow_runs (created_at)
    INCLUDE (workflow_id, status, duration_ms);
CREATE INDEX ix_agent_deliveries_unfinished ON agent_deliveries (status, created_at)
    WHERE status IN ('pending', 'running');
CREATE INDEX ix_agent_deliveries_finished ON agent_deliveries (completed_at)
    INCLUDE (status, created_at) WHERE status IN ('done', 'failed');
CREATE INDEX ix_enrichment_jobs_finished_updated ON enrichment_jobs (updated_at)
    INCLUDE (completed_at) WHERE status IN ('done', 'failed');

CREATE TABLE metrics_rollup_state (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    rolled_to TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    changes_since TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    rolled_at TIMESTAMPTZ,
    hours_recomputed BIGINT NOT NULL DEFAULT 0
);
INSERT INTO metrics_rollup_state DEFAULT VALUES;

-- Hours whose rollup rows lost a row that can no longer be found by updated_at (deleted).
CREATE TABLE metrics_rollup_dirty (
    kind TEXT NOT NULL CHECK (kind IN ('alert', 'enrichment')),
    bucket TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, bucket)
);

-- grain 'h': bucket is an hour; 'd': a UTC day (the sum of its 24 hours).
CREATE TABLE alert_metrics_rollup (
    grain CHAR(1) NOT NULL CHECK (grain IN ('h', 'd')),
    bucket TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    source_name TEXT NOT NULL,
    n BIGINT NOT NULL,
    fp BIGINT NOT NULL,
    enriched BIGINT NOT NULL,
    mtte_s NUMERIC, mtte_n BIGINT NOT NULL,
    mttd_s NUMERIC, mttd_n BIGINT NOT NULL,
    mtta_s NUMERIC, mtta_n BIGINT NOT NULL,
    mttt_s NUMERIC, mttt_n BIGINT NOT NULL,
    mttc_s NUMERIC, mttc_n BIGINT NOT NULL,
    PRIMARY KEY (grain, bucket, status, severity, source_name)
);

CREATE TABLE alert_rule_rollup (
    grain CHAR(1) NOT NULL CHECK (grain IN ('h', 'd')),
    bucket TIMESTAMPTZ NOT NULL,
    detection_rule_id BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (grain, bucket, detection_rule_id)
);

CREATE TABLE enrichment_job_rollup (
    bucket TIMESTAMPTZ NOT NULL, -- hour of completed_at
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    dur_s NUMERIC,
    dur_n BIGINT NOT NULL,
    PRIMARY KEY (bucket, status)
);

CREATE FUNCTION calseta_hour_ceil(t TIMESTAMPTZ) RETURNS TIMESTAMPTZ LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN date_trunc('hour', t, 'UTC') < t THEN date_trunc('hour', t, 'UTC') + interval '1 hour'
                ELSE date_trunc('hour', t, 'UTC') END
$$;
CREATE FUNCTION calseta_day_ceil(t TIMESTAMPTZ) RETURNS TIMESTAMPTZ LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN date_trunc('day', t, 'UTC') < t THEN date_trunc('day', t, 'UTC') + interval '1 day'
                ELSE date_trunc('day', t, 'UTC') END
$$;

-- ---- the rollup ------------------------------------------------------------------------------

-- The alert figures of one group of alerts, as rollup columns.
CREATE VIEW alert_metrics_terms AS
    SELECT a.created_at, a.status, a.severity, a.source_name, a.detection_rule_id,
           (a.status = 'Closed' AND a.close_classification LIKE 'False Positive%') AS is_fp,
           a.is_enriched,
           CASE WHEN a.is_enriched THEN extract(epoch FROM a.enriched_at - a.ingested_at) END AS tte,
           extract(epoch FROM a.created_at - a.occurred_at) AS ttd,
           extract(epoch FROM a.acknowledged_at - a.created_at) AS tta,
           extract(epoch FROM a.triaged_at - a.created_at) AS ttt,
           extract(epoch FROM a.closed_at - a.created_at) AS ttc
      FROM alerts a;

-- Recomputes the hourly rows of the given hours, then the daily rows of their whole days
-- (days ending at or before p_rolled_to).
CREATE FUNCTION calseta_alert_rollup_hours(p_hours TIMESTAMPTZ[], p_rolled_to TIMESTAMPTZ)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    days TIMESTAMPTZ[];
BEGIN
    DELETE FROM alert_metrics_rollup WHERE grain = 'h' AND bucket = ANY (p_hours);
    DELETE FROM alert_rule_rollup WHERE grain = 'h' AND bucket = ANY (p_hours);
    INSERT INTO alert_metrics_rollup
    SELECT 'h', h, t.status, t.severity, t.source_name, count(*), count(*) FILTER (WHERE t.is_fp),
           count(*) FILTER (WHERE t.is_enriched),
           sum(t.tte), count(t.tte), sum(t.ttd), count(t.ttd), sum(t.tta), count(t.tta),
           sum(t.ttt), count(t.ttt), sum(t.ttc), count(t.ttc)
      FROM unnest(p_hours) h
      JOIN alert_metrics_terms t ON t.created_at >= h AND t.created_at < h + interval '1 hour'
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 2; -- an hour's rows on adjacent pages: a window reads few pages
    INSERT INTO alert_rule_rollup
    SELECT 'h', h, a.detection_rule_id, count(*)
      FROM unnest(p_hours) h
      JOIN alerts a ON a.created_at >= h AND a.created_at < h + interval '1 hour'
     WHERE a.detection_rule_id IS NOT NULL
     GROUP BY 1, 2, 3
     ORDER BY 2;

    days := ARRAY(SELECT DISTINCT date_trunc('day', h, 'UTC') FROM unnest(p_hours) h
                   WHERE date_trunc('day', h, 'UTC') + interval '1 day' <= p_rolled_to);
    DELETE FROM alert_metrics_rollup WHERE grain = 'd' AND bucket = ANY (days);
    DELETE FROM alert_rule_rollup WHERE grain = 'd' AND bucket = ANY (days);
    INSERT INTO alert_metrics_rollup
    SELECT 'd', d, r.status, r.severity, r.source_name, sum(n), sum(fp), sum(enriched),
           sum(mtte_s), sum(mtte_n), sum(mttd_s), sum(mttd_n), sum(mtta_s), sum(mtta_n),
           sum(mttt_s), sum(mttt_n), sum(mttc_s), sum(mttc_n)
      FROM unnest(days) d
      JOIN alert_metrics_rollup r ON r.grain = 'h' AND r.bucket >= d AND r.bucket < d + interval '1 day'
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 2;
    INSERT INTO alert_rule_rollup
    SELECT 'd', d, r.detection_rule_id, sum(n)
      FROM unnest(days) d
      JOIN alert_rule_rollup r ON r.grain = 'h' AND r.bucket >= d AND r.bucket < d + interval '1 day'
     GROUP BY 1, 2, 3
     ORDER BY 2;
END $$;

CREATE FUNCTION calseta_job_rollup_hours(p_hours TIMESTAMPTZ[]) RETURNS VOID LANGUAGE sql AS $$
    DELETE FROM enrichment_job_rollup WHERE bucket = ANY (p_hours);
    INSERT INTO enrichment_job_rollup
    SELECT h, j.status, count(*),
           sum(extract(epoch FROM j.completed_at - j.created_at)) FILTER (WHERE j.status = 'done'),
           count(*) FILTER (WHERE j.status = 'done')
      FROM unnest(p_hours) h
      JOIN enrichment_jobs j ON j.completed_at >= h AND j.completed_at < h + interval '1 hour'
     WHERE j.status IN ('done', 'failed')
     GROUP BY 1, 2;
$$;

-- One rollup pass; returns the number of hours recomputed, or -1 when another session holds the
-- rollup. Cheap when nothing changed: two index range scans over the rows changed since the last
-- pass. The first pass (or one after a long pause) recomputes every hour since the oldest row.
CREATE FUNCTION calseta_metrics_rollup() RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    st metrics_rollup_state;
    c_new TIMESTAMPTZ;
    w_new TIMESTAMPTZ;
    first_alert TIMESTAMPTZ;
    first_job TIMESTAMPTZ;
    hours TIMESTAMPTZ[];
    jhours TIMESTAMPTZ[];
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('calseta_metrics_rollup')) THEN
        RETURN -1;
    END IF;
    SELECT * INTO st FROM metrics_rollup_state FOR UPDATE;
    -- A write this pass cannot see belongs to a transaction open now (its updated_at is at least
    -- its start) or to one that starts later. Read before any statement below takes its snapshot.
    SELECT least(now(), min(xact_start)) INTO c_new FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
       AND backend_type = 'client backend';
    w_new := date_trunc('hour', c_new, 'UTC');

    SELECT date_trunc('hour', min(created_at), 'UTC') INTO first_alert FROM alerts;
    hours := ARRAY(
        SELECT h FROM generate_series(greatest(st.rolled_to, coalesce(first_alert, w_new)),
                                      w_new - interval '1 hour', interval '1 hour') h
        UNION
        SELECT date_trunc('hour', created_at, 'UTC') FROM alerts
         WHERE updated_at >= st.changes_since AND created_at < w_new
        UNION
        SELECT bucket FROM metrics_rollup_dirty WHERE kind = 'alert' AND bucket < w_new);
    DELETE FROM metrics_rollup_dirty WHERE kind = 'alert' AND bucket < w_new;
    PERFORM calseta_alert_rollup_hours(hours, w_new);

    SELECT date_trunc('hour', min(completed_at), 'UTC') INTO first_job FROM enrichment_jobs
     WHERE status IN ('done', 'failed');
    jhours := ARRAY(
        SELECT h FROM generate_series(greatest(st.rolled_to, coalesce(first_job, w_new)),
                                      w_new - interval '1 hour', interval '1 hour') h
        UNION
        SELECT date_trunc('hour', completed_at, 'UTC') FROM enrichment_jobs
         WHERE status IN ('done', 'failed') AND updated_at >= st.changes_since
           AND completed_at < w_new
        UNION
        SELECT bucket FROM metrics_rollup_dirty WHERE kind = 'enrichment' AND bucket < w_new);
    DELETE FROM metrics_rollup_dirty WHERE kind = 'enrichment' AND bucket < w_new;
    PERFORM calseta_job_rollup_hours(jhours);

    UPDATE metrics_rollup_state SET rolled_to = w_new, changes_since = c_new, rolled_at = now(),
           hours_recomputed = hours_recomputed + cardinality(hours) + cardinality(jhours);
    RETURN cardinality(hours) + cardinality(jhours);
END $$;

-- ---- reading: rollup rows where current, the tables elsewhere ---------------------------------

-- How a window [p_from, p_to) is read, given the rollup's rolled_to and the dirty hours:
--   src 'd': daily rollup rows with bucket in [lo, hi), except the days in dirty_days;
--   src 'h': hourly rollup rows with bucket in [lo, hi), except the dirty hours;
--   src 'l': the table itself, rows in [lo, hi).
CREATE FUNCTION calseta_rollup_plan(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ, p_rolled_to TIMESTAMPTZ,
                                    p_dirty TIMESTAMPTZ[], p_days BOOLEAN)
RETURNS TABLE (src CHAR(1), lo TIMESTAMPTZ, hi TIMESTAMPTZ) LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    lo_h TIMESTAMPTZ := least(calseta_hour_ceil(p_from), p_to);
    hi_h TIMESTAMPTZ := greatest(lo_h, least(date_trunc('hour', p_to, 'UTC'), p_rolled_to));
    lo_d TIMESTAMPTZ;
    hi_d TIMESTAMPTZ;
    dd TIMESTAMPTZ;
BEGIN
    IF p_from < lo_h THEN
        RETURN QUERY SELECT 'l'::char(1), p_from, lo_h;
    END IF;
    IF hi_h < p_to THEN
        RETURN QUERY SELECT 'l'::char(1), hi_h, p_to;
    END IF;
    RETURN QUERY SELECT 'l'::char(1), h, h + interval '1 hour' FROM unnest(p_dirty) h
                  WHERE h >= lo_h AND h < hi_h;
    IF NOT p_days OR lo_h = hi_h THEN
        RETURN QUERY SELECT 'h'::char(1), lo_h, hi_h;
        RETURN;
    END IF;
    lo_d := least(calseta_day_ceil(lo_h), hi_h);
    hi_d := greatest(lo_d, date_trunc('day', hi_h, 'UTC'));
    RETURN QUERY SELECT 'h'::char(1), lo_h, lo_d;
    RETURN QUERY SELECT 'h'::char(1), hi_d, hi_h;
    RETURN QUERY SELECT 'd'::char(1), lo_d, hi_d;
    -- the clean hours of a day holding a dirty hour come from the hourly rows
    FOR dd IN SELECT DISTINCT date_trunc('day', h, 'UTC') FROM unnest(p_dirty) h
               WHERE h >= lo_d AND h < hi_d LOOP
        RETURN QUERY SELECT 'h'::char(1), dd, dd + interval '1 day';
    END LOOP;
END $$;

-- The hours of [p_from, p_to) whose rollup rows are out of date (kind 'alert' or 'enrichment').
-- Run as a one-off statement so the planner sees changes_since as a constant: the index range on
-- updated_at holds only what changed since the last rollup pass.
CREATE FUNCTION calseta_rollup_dirty_hours(p_kind TEXT, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ)
RETURNS TIMESTAMPTZ[] LANGUAGE plpgsql STABLE AS $$
DECLARE
    st metrics_rollup_state;
    hours TIMESTAMPTZ[];
BEGIN
    SELECT * INTO st FROM metrics_rollup_state;
    IF st.rolled_to = '-infinity' THEN
        RETURN '{}';
    END IF;
    IF p_kind = 'alert' THEN
        EXECUTE format('SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', created_at, ''UTC'') FROM alerts '
                       'WHERE updated_at >= %L AND created_at < %L AND created_at >= %L AND created_at < %L)',
                       st.changes_since, st.rolled_to, p_from, p_to) INTO hours;
    ELSE
        EXECUTE format('SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', completed_at, ''UTC'') '
                       'FROM enrichment_jobs WHERE status IN (''done'', ''failed'') AND updated_at >= %L '
                       'AND completed_at < %L AND completed_at >= %L AND completed_at < %L)',
                       st.changes_since, st.rolled_to, p_from, p_to) INTO hours;
    END IF;
    RETURN ARRAY(SELECT unnest(hours) UNION
                 SELECT bucket FROM metrics_rollup_dirty WHERE kind = p_kind);
END $$;

-- Same JSONB as before (migration 0012), from the rollup rows where they are current and from
-- alerts elsewhere (see calseta_rollup_plan).
CREATE OR REPLACE FUNCTION calseta_alert_stats(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ) RETURNS JSONB
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rolled_to TIMESTAMPTZ := (SELECT s.rolled_to FROM metrics_rollup_state s);
    dirty TIMESTAMPTZ[] := calseta_rollup_dirty_hours('alert', p_from, p_to);
    dirty_days TIMESTAMPTZ[] := ARRAY(SELECT DISTINCT date_trunc('day', h, 'UTC') FROM unnest(dirty) h);
    d_lo TIMESTAMPTZ[]; d_hi TIMESTAMPTZ[];
    h_lo TIMESTAMPTZ[]; h_hi TIMESTAMPTZ[];
    l_lo TIMESTAMPTZ[]; l_hi TIMESTAMPTZ[];
    out JSONB;
BEGIN
    SELECT array_agg(lo) FILTER (WHERE src = 'd'), array_agg(hi) FILTER (WHERE src = 'd'),
           array_agg(lo) FILTER (WHERE src = 'h'), array_agg(hi) FILTER (WHERE src = 'h'),
           array_agg(lo) FILTER (WHERE src = 'l'), array_agg(hi) FILTER (WHERE src = 'l')
      INTO d_lo, d_hi, h_lo, h_hi, l_lo, l_hi
      FROM calseta_rollup_plan(p_from, p_to, rolled_to, dirty, true)
     WHERE lo < hi;
    WITH parts AS (
        SELECT r.* FROM unnest(d_lo, d_hi) p(lo, hi)
          JOIN alert_metrics_rollup r ON r.grain = 'd' AND r.bucket >= p.lo AND r.bucket < p.hi
         WHERE r.bucket <> ALL (dirty_days)
        UNION ALL
        SELECT r.* FROM unnest(h_lo, h_hi) p(lo, hi)
          JOIN alert_metrics_rollup r ON r.grain = 'h' AND r.bucket >= p.lo AND r.bucket < p.hi
         WHERE r.bucket <> ALL (dirty)
        UNION ALL
        SELECT 'h', date_trunc('day', t.created_at, 'UTC'), t.status, t.severity, t.source_name,
               count(*), count(*) FILTER (WHERE t.is_fp), count(*) FILTER (WHERE t.is_enriched),
               sum(t.tte), count(t.tte), sum(t.ttd), count(t.ttd), sum(t.tta), count(t.tta),
               sum(t.ttt), count(t.ttt), sum(t.ttc), count(t.ttc)
          FROM unnest(l_lo, l_hi) p(lo, hi)
          JOIN alert_metrics_terms t ON t.created_at >= p.lo AND t.created_at < p.hi
         GROUP BY 2, 3, 4, 5),
    rules AS (
        SELECT x.detection_rule_id, sum(x.n) AS n FROM (
            SELECT r.detection_rule_id, r.n FROM unnest(d_lo, d_hi) p(lo, hi)
              JOIN alert_rule_rollup r ON r.grain = 'd' AND r.bucket >= p.lo AND r.bucket < p.hi
             WHERE r.bucket <> ALL (dirty_days)
            UNION ALL
            SELECT r.detection_rule_id, r.n FROM unnest(h_lo, h_hi) p(lo, hi)
              JOIN alert_rule_rollup r ON r.grain = 'h' AND r.bucket >= p.lo AND r.bucket < p.hi
             WHERE r.bucket <> ALL (dirty)
            UNION ALL
            SELECT a.detection_rule_id, 1 FROM unnest(l_lo, l_hi) p(lo, hi)
              JOIN alerts a ON a.created_at >= p.lo AND a.created_at < p.hi
             WHERE a.detection_rule_id IS NOT NULL) x
         GROUP BY 1),
    g AS (
        SELECT GROUPING(status, severity, source_name, d, active) AS gs,
               status, severity, source_name, d, active,
               sum(n) AS n,
               sum(n) FILTER (WHERE status = 'Closed') AS closed,
               sum(fp) AS fp, sum(enriched) AS enriched,
               sum(mtte_s) / nullif(sum(mtte_n), 0) AS mtte,
               sum(mttd_s) / nullif(sum(mttd_n), 0) AS mttd,
               sum(mtta_s) / nullif(sum(mtta_n), 0) AS mtta,
               sum(mttt_s) / nullif(sum(mttt_n), 0) AS mttt,
               sum(mttc_s) / nullif(sum(mttc_n), 0) AS mttc
          FROM (SELECT p.*, (p.bucket AT TIME ZONE 'UTC')::date AS d,
                       p.status IN ('Open', 'Triaging', 'Escalated') AS active
                  FROM parts p) a
         GROUP BY GROUPING SETS ((), (status), (severity), (source_name), (d), (active, severity))),
    tot AS (SELECT * FROM g WHERE gs = 31)
    SELECT jsonb_build_object(
        'total', coalesce((SELECT n FROM tot), 0),
        'closed', coalesce((SELECT closed FROM tot), 0),
        'fp', coalesce((SELECT fp FROM tot), 0),
        'enriched', coalesce((SELECT enriched FROM tot), 0),
        'mtte', (SELECT mtte::float8 FROM tot),
        'mttd', (SELECT mttd::float8 FROM tot),
        'mtta', (SELECT mtta::float8 FROM tot),
        'mttt', (SELECT mttt::float8 FROM tot),
        'mttc', (SELECT mttc::float8 FROM tot),
        'by_status', (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM g WHERE gs = 15),
        'by_severity', (SELECT coalesce(jsonb_object_agg(severity, n), '{}') FROM g WHERE gs = 23),
        'by_source', (SELECT coalesce(jsonb_object_agg(source_name, n), '{}') FROM g WHERE gs = 27),
        'over_time', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'date', to_char(d, 'YYYY-MM-DD'), 'count', n) ORDER BY d), '[]')
                        FROM g WHERE gs = 29),
        'active_by_severity', (SELECT coalesce(jsonb_object_agg(severity, n), '{}')
                                 FROM g WHERE gs = 22 AND active),
        'top_rules', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'uuid', r.uuid, 'name', r.name, 'count', t.n)
                          ORDER BY t.n DESC, r.name), '[]')
                        FROM (SELECT detection_rule_id, n FROM rules
                               ORDER BY n DESC, detection_rule_id LIMIT 10) t
                        JOIN detection_rules r ON r.id = t.detection_rule_id))
      INTO out;
    RETURN out;
END $$;

-- The finished enrichment jobs since p_since: {succeeded_30d, failed_30d, avg_duration_seconds}.
CREATE FUNCTION calseta_enrichment_finished(p_since TIMESTAMPTZ) RETURNS JSONB
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rolled_to TIMESTAMPTZ := (SELECT s.rolled_to FROM metrics_rollup_state s);
    dirty TIMESTAMPTZ[] := calseta_rollup_dirty_hours('enrichment', p_since, 'infinity');
    h_lo TIMESTAMPTZ[]; h_hi TIMESTAMPTZ[];
    l_lo TIMESTAMPTZ[]; l_hi TIMESTAMPTZ[];
    out JSONB;
BEGIN
    SELECT array_agg(lo) FILTER (WHERE src = 'h'), array_agg(hi) FILTER (WHERE src = 'h'),
           array_agg(lo) FILTER (WHERE src = 'l'), array_agg(hi) FILTER (WHERE src = 'l')
      INTO h_lo, h_hi, l_lo, l_hi
      FROM calseta_rollup_plan(p_since, 'infinity', rolled_to, dirty, false)
     WHERE lo < hi;
    WITH parts AS (
        SELECT r.status, r.n, r.dur_s, r.dur_n FROM unnest(h_lo, h_hi) p(lo, hi)
          JOIN enrichment_job_rollup r ON r.bucket >= p.lo AND r.bucket < p.hi
         WHERE r.bucket <> ALL (dirty)
        UNION ALL
        SELECT j.status, 1,
               CASE WHEN j.status = 'done' THEN extract(epoch FROM j.completed_at - j.created_at) END,
               CASE WHEN j.status = 'done' THEN 1 ELSE 0 END
          FROM unnest(l_lo, l_hi) p(lo, hi)
          JOIN enrichment_jobs j ON j.completed_at >= p.lo AND j.completed_at < p.hi
         WHERE j.status IN ('done', 'failed'))
    SELECT jsonb_build_object(
        'succeeded_30d', coalesce(sum(n) FILTER (WHERE status = 'done'), 0),
        'failed_30d', coalesce(sum(n) FILTER (WHERE status = 'failed'), 0),
        'avg_duration_seconds', (sum(dur_s) / nullif(sum(dur_n), 0))::float8)
      INTO out FROM parts;
    RETURN out;
END $$;

-- The queue block as before (migration 0012), the enrichment jobs finished in 30 days from the
-- rollup; pending and in-progress counts from the partial index on unfinished jobs.
CREATE OR REPLACE FUNCTION calseta_queue_stats() RETURNS JSONB LANGUAGE plpgsql STABLE AS $$
DECLARE
    since TIMESTAMPTZ := now() - interval '30 days';
    q JSONB := '[]';
BEGIN
    -- one index-only count per status, the oldest pending from the first index entry
    q := q || jsonb_build_array(jsonb_build_object(
        'queue', 'enrichment',
        'pending', (SELECT count(*) FROM enrichment_jobs WHERE status = 'pending'),
        'in_progress', (SELECT count(*) FROM enrichment_jobs WHERE status = 'running'),
        'oldest_pending_age_seconds', extract(epoch FROM now() - (
            SELECT min(created_at) FROM enrichment_jobs WHERE status = 'pending'))::float8)
        || calseta_enrichment_finished(since));
    q := q || jsonb_build_array(jsonb_build_object(
        'queue', 'workflow_runs',
        'pending', (SELECT count(*) FROM workflow_runs WHERE status = 'queued'),
        'in_progress', (SELECT count(*) FROM workflow_runs WHERE status = 'running'),
        'oldest_pending_age_seconds', extract(epoch FROM now() - (
            SELECT min(created_at) FROM workflow_runs WHERE status = 'queued'))::float8)
        || (SELECT jsonb_build_object(
        'succeeded_30d', count(*) FILTER (WHERE status = 'success'),
        'failed_30d', count(*) FILTER (WHERE status IN ('failed', 'timed_out')),
        'avg_duration_seconds', (avg(duration_ms) / 1000.0)::float8)
        FROM workflow_runs WHERE created_at >= since AND status IN ('success', 'failed', 'timed_out')));
    q := q || jsonb_build_array(jsonb_build_object(
        'queue', 'agent_deliveries',
        'pending', (SELECT count(*) FROM agent_deliveries WHERE status = 'pending'),
        'in_progress', (SELECT count(*) FROM agent_deliveries WHERE status = 'running'),
        'oldest_pending_age_seconds', extract(epoch FROM now() - (
            SELECT min(created_at) FROM agent_deliveries WHERE status = 'pending'))::float8)
        || (SELECT jsonb_build_object(
        'succeeded_30d', count(*) FILTER (WHERE status = 'done'),
        'failed_30d', count(*) FILTER (WHERE status = 'failed'),
        'avg_duration_seconds', avg(extract(epoch FROM completed_at - created_at))
                                FILTER (WHERE status = 'done')::float8)
        FROM agent_deliveries WHERE status IN ('done', 'failed') AND completed_at >= since));
    RETURN jsonb_build_object(
        'queues', q,
        'total_pending', (SELECT sum((e->>'pending')::bigint) FROM jsonb_array_elements(q) e),
        'total_in_progress', (SELECT sum((e->>'in_progress')::bigint) FROM jsonb_array_elements(q) e),
        'total_failed_30d', (SELECT sum((e->>'failed_30d')::bigint) FROM jsonb_array_elements(q) e),
        'total_succeeded_30d', (SELECT sum((e->>'succeeded_30d')::bigint) FROM jsonb_array_elements(q) e),
        'oldest_pending_age_seconds', (SELECT max((e->>'oldest_pending_age_seconds')::float8)
                                         FROM jsonb_array_elements(q) e));
END $$;

-- Deletes one alert, noting the hours its figures and its finished jobs' figures leave.
CREATE FUNCTION calseta_alert_delete(p_uuid UUID) RETURNS BOOLEAN LANGUAGE sql AS $$
    WITH a AS (DELETE FROM alerts WHERE uuid = p_uuid RETURNING id, created_at),
    h AS (INSERT INTO metrics_rollup_dirty (kind, bucket)
          SELECT 'alert', date_trunc('hour', created_at, 'UTC') FROM a
          UNION
          SELECT 'enrichment', date_trunc('hour', j.completed_at, 'UTC')
            FROM a JOIN enrichment_jobs j ON j.alert_id = a.id
           WHERE j.status IN ('done', 'failed') AND j.completed_at IS NOT NULL
          ON CONFLICT DO NOTHING)
    SELECT count(*) > 0 FROM a
$$;

-- The planner's generic estimates for these statements (ranges only known at run time) exceed
-- the JIT threshold; compiling would cost more than the few thousand rows they read.
ALTER FUNCTION calseta_alert_stats(TIMESTAMPTZ, TIMESTAMPTZ) SET jit = off;
ALTER FUNCTION calseta_enrichment_finished(TIMESTAMPTZ) SET jit = off;
ALTER FUNCTION calseta_queue_stats() SET jit = off;
ALTER FUNCTION calseta_metrics_alerts(TIMESTAMPTZ, TIMESTAMPTZ) SET jit = off;
ALTER FUNCTION calseta_metrics_workflows(TIMESTAMPTZ, TIMESTAMPTZ) SET jit = off;
ALTER FUNCTION calseta_metrics_summary() SET jit = off;
