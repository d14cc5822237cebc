-- 0024: the metrics rollup without an index on alerts.updated_at, and /v1/metrics/summary as one
-- cached plan per statement over pre-aggregated figures.
--
-- Which rolled-up hours of alerts are out of date is now known without indexing updated_at
-- (an index every duplicate's UPDATE had to maintain, which kept those updates from being HOT):
--   - the analyst's changes (status, severity, close classification: calseta_alert_patch, for
--     REST and MCP) note the alert's hour in metrics_rollup_dirty in the same transaction, as a
--     delete already does;
--   - enrichment sets enriched_at = now(): a partial index on enriched_at finds the alerts
--     enriched since a pass (new alerts are not enriched yet, so ingest adds no entry to it);
--   - ingest inserts with created_at = now(), inside the part always counted from the table.
-- Workflow runs get the same treatment (workflow_run_rollup: per hour and whole day of creation,
-- workflow and status), found changed by their updated_at, which every run transition sets; a
-- deleted workflow's runs go with it, and its rollup rows are left out by joining workflows.
-- A change made behind the platform's back (hand-written SQL, a backfill with old created_at) is
-- not seen by any of these: SELECT calseta_metrics_invalidate(from, to) makes the hours of that
-- span count from the tables until the next pass recomputes them.

-- Changes since the last pass were to be found by updated_at: noted now, while its index exists.
INSERT INTO metrics_rollup_dirty (kind, bucket)
SELECT DISTINCT 'alert', date_trunc('hour', a.created_at, 'UTC')
  FROM alerts a, metrics_rollup_state st
 WHERE isfinite(st.rolled_to) AND a.updated_at >= st.changes_since AND a.created_at < st.rolled_to
ON CONFLICT DO NOTHING;
DROP INDEX IF EXISTS ix_alerts_updated_at;
CREATE INDEX ix_alerts_enriched_at ON alerts (enriched_at) INCLUDE (created_at)
    WHERE enriched_at IS NOT NULL;
-- The summary's approvals block: the window's rows index-only, pending ones from a partial index.
DROP INDEX IF EXISTS ix_approvals_created;
CREATE INDEX ix_approvals_created ON workflow_approval_requests (created_at)
    INCLUDE (status, responded_at);
CREATE INDEX ix_approvals_pending ON workflow_approval_requests (created_at) WHERE status = 'pending';

CREATE INDEX ix_workflow_runs_updated ON workflow_runs (updated_at) INCLUDE (created_at);
ALTER TABLE metrics_rollup_dirty DROP CONSTRAINT metrics_rollup_dirty_kind_check,
    ADD CONSTRAINT metrics_rollup_dirty_kind_check CHECK (kind IN ('alert', 'enrichment', 'run'));

-- grain 'h': bucket is an hour of created_at; 'd': a UTC day (the sum of its 24 hours).
CREATE TABLE workflow_run_rollup (
    grain CHAR(1) NOT NULL CHECK (grain IN ('h', 'd')),
    bucket TIMESTAMPTZ NOT NULL,
    workflow_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    dur_ms BIGINT,
    dur_n BIGINT NOT NULL,
    PRIMARY KEY (grain, bucket, workflow_id, status)
);

-- Recomputes the hourly rows of the given hours, then the daily rows of their whole days.
CREATE FUNCTION calseta_run_rollup_hours(p_hours TIMESTAMPTZ[], p_rolled_to TIMESTAMPTZ)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    days TIMESTAMPTZ[];
BEGIN
    DELETE FROM workflow_run_rollup WHERE grain = 'h' AND bucket = ANY (p_hours);
    INSERT INTO workflow_run_rollup
    SELECT 'h', h, r.workflow_id, r.status, count(*), sum(r.duration_ms), count(r.duration_ms)
      FROM unnest(p_hours) h
      JOIN workflow_runs r ON r.created_at >= h AND r.created_at < h + interval '1 hour'
     GROUP BY 1, 2, 3, 4;
    days := ARRAY(SELECT DISTINCT date_trunc('day', h, 'UTC') FROM unnest(p_hours) h
                   WHERE date_trunc('day', h, 'UTC') + interval '1 day' <= p_rolled_to);
    DELETE FROM workflow_run_rollup WHERE grain = 'd' AND bucket = ANY (days);
    INSERT INTO workflow_run_rollup
    SELECT 'd', d, r.workflow_id, r.status, sum(r.n), sum(r.dur_ms), sum(r.dur_n)
      FROM unnest(days) d
      JOIN workflow_run_rollup r ON r.grain = 'h' AND r.bucket >= d AND r.bucket < d + interval '1 day'
     GROUP BY 1, 2, 3, 4;
END $$;

-- The hours of creation before p_before of the runs changed at or after p_since (one-off
-- statement: the planner reads only the recent range of the updated_at index).
CREATE FUNCTION calseta_run_changed_hours(p_since TIMESTAMPTZ, p_from TIMESTAMPTZ,
                                          p_before TIMESTAMPTZ) RETURNS TIMESTAMPTZ[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    hours TIMESTAMPTZ[];
BEGIN
    IF p_since = '-infinity' THEN
        RETURN '{}';
    END IF;
    EXECUTE format('SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', created_at, ''UTC'') FROM workflow_runs '
                   'WHERE updated_at >= %L AND created_at >= %L AND created_at < %L)',
                   p_since, p_from, p_before) INTO hours;
    RETURN hours;
END $$;

-- Every rolled-up hour of [p_from, p_to) counts from the tables until the next pass: for changes
-- made with SQL outside the platform. Returns the number of hours noted.
CREATE FUNCTION calseta_metrics_invalidate(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    lo TIMESTAMPTZ := date_trunc('hour', greatest(p_from, least((SELECT min(created_at) FROM alerts),
                                                          (SELECT min(created_at) FROM workflow_runs))), 'UTC');
    hi TIMESTAMPTZ := least(p_to, (SELECT rolled_to FROM metrics_rollup_state));
    n INTEGER;
BEGIN
    IF lo IS NULL OR hi IS NULL OR NOT isfinite(lo) OR NOT isfinite(hi) OR lo >= hi THEN
        RETURN 0;
    END IF;
    INSERT INTO metrics_rollup_dirty (kind, bucket)
    SELECT k, h FROM unnest(ARRAY['alert', 'enrichment', 'run']) k,
                     generate_series(lo, hi - interval '1 microsecond', interval '1 hour') h
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- The hours before p_before holding an alert enriched at or after p_since. One-off statement:
-- the planner sees the bounds as constants and reads only the partial index's recent range.
CREATE FUNCTION calseta_alert_enriched_hours(p_since TIMESTAMPTZ, p_from TIMESTAMPTZ,
                                             p_before TIMESTAMPTZ) RETURNS TIMESTAMPTZ[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    hours TIMESTAMPTZ[];
BEGIN
    IF p_since = '-infinity' THEN
        RETURN '{}';
    END IF;
    EXECUTE format('SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', created_at, ''UTC'') FROM alerts '
                   'WHERE enriched_at >= %L AND created_at >= %L AND created_at < %L)',
                   p_since, p_from, p_before) INTO hours;
    RETURN hours;
END $$;

-- The hours of completion before p_before of the enrichment jobs finished (or changed after
-- finishing) at or after p_since; one-off statement as above.
CREATE FUNCTION calseta_job_finished_hours(p_since TIMESTAMPTZ, p_from TIMESTAMPTZ,
                                           p_before TIMESTAMPTZ) RETURNS TIMESTAMPTZ[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
    hours TIMESTAMPTZ[];
BEGIN
    IF p_since = '-infinity' THEN
        RETURN '{}';
    END IF;
    EXECUTE format('SELECT ARRAY(SELECT DISTINCT date_trunc(''hour'', completed_at, ''UTC'') '
                   'FROM enrichment_jobs WHERE status IN (''done'', ''failed'') AND updated_at >= %L '
                   'AND completed_at >= %L AND completed_at < %L)',
                   p_since, p_from, p_before) INTO hours;
    RETURN hours;
END $$;

-- The pass of 0020; an alert's hour is recomputed when it was enriched since the last pass or
-- noted in metrics_rollup_dirty (analyst changes, deletes, calseta_metrics_invalidate); workflow
-- runs are rolled up as well.
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
    hours := ARRAY(
        SELECT h FROM generate_series(greatest(st.rolled_to, coalesce(first_alert, w_new)),
                                      w_new - interval '1 hour', interval '1 hour') h
        UNION
        SELECT unnest(calseta_alert_enriched_hours(st.changes_since, '-infinity', w_new))
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
        SELECT unnest(calseta_job_finished_hours(st.changes_since, '-infinity', w_new))
        UNION
        SELECT bucket FROM metrics_rollup_dirty WHERE kind = 'enrichment' AND bucket < w_new);
    DELETE FROM metrics_rollup_dirty WHERE kind = 'enrichment' AND bucket < w_new;
    PERFORM calseta_job_rollup_hours(jhours);

    SELECT date_trunc('hour', min(created_at), 'UTC') INTO first_run FROM workflow_runs;
    rhours := ARRAY(
        SELECT h FROM generate_series(greatest(st.rolled_to, coalesce(first_run, w_new)),
                                      w_new - interval '1 hour', interval '1 hour') h
        UNION
        SELECT unnest(calseta_run_changed_hours(st.changes_since, '-infinity', w_new))
        UNION
        SELECT bucket FROM metrics_rollup_dirty WHERE kind = 'run' AND bucket < w_new);
    DELETE FROM metrics_rollup_dirty WHERE kind = 'run' AND bucket < w_new;
    PERFORM calseta_run_rollup_hours(rhours, w_new);

    UPDATE metrics_rollup_state SET rolled_to = w_new, changes_since = c_new, rolled_at = now(),
           hours_recomputed = hours_recomputed + cardinality(hours) + cardinality(jhours)
                              + cardinality(rhours);
    RETURN cardinality(hours) + cardinality(jhours) + cardinality(rhours);
END $$;


-- The hours of [p_from, p_to) whose rollup rows are out of date (kind 'alert', 'enrichment', 'run').
CREATE OR REPLACE FUNCTION calseta_rollup_dirty_hours(p_kind TEXT, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ)
RETURNS TIMESTAMPTZ[] LANGUAGE plpgsql STABLE AS $$
DECLARE
    st metrics_rollup_state;
BEGIN
    SELECT * INTO st FROM metrics_rollup_state;
    IF st.rolled_to = '-infinity' THEN
        RETURN '{}';
    END IF;
    RETURN ARRAY(SELECT unnest(CASE p_kind
                                   WHEN 'alert' THEN calseta_alert_enriched_hours(
                                       st.changes_since, p_from, least(p_to, st.rolled_to))
                                   WHEN 'run' THEN calseta_run_changed_hours(
                                       st.changes_since, p_from, least(p_to, st.rolled_to))
                                   ELSE calseta_job_finished_hours(
                                       st.changes_since, p_from, least(p_to, st.rolled_to)) END)
                 UNION
                 SELECT bucket FROM metrics_rollup_dirty WHERE kind = p_kind);
END $$;

-- The alert figures of 0020; the ten top rules are taken among rules that still exist (a deleted
-- rule's alerts are unlinked, its rollup rows stay until their hours are recomputed).
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
                          'uuid', t.uuid, 'name', t.name, 'count', t.n)
                          ORDER BY t.n DESC, t.name), '[]')
                        FROM (SELECT r.uuid, r.name, x.n FROM rules x
                                JOIN detection_rules r ON r.id = x.detection_rule_id
                               ORDER BY x.n DESC, r.name LIMIT 10) t))
      INTO out;
    RETURN out;
END $$;

-- The analyst's alert patch of 0017, noting the alert's hour for the metrics rollup.
CREATE OR REPLACE FUNCTION calseta_alert_patch(p_uuid UUID, p JSONB, actor TEXT, p_actor_type TEXT)
RETURNS JSON LANGUAGE plpgsql AS $$
DECLARE
    a alerts;
    old_status TEXT;
    old_sev TEXT;
    old_malice TEXT;
BEGIN
    SELECT * INTO a FROM alerts WHERE uuid = p_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- its hour is read from the table until the next rollup pass recomputes it
    INSERT INTO metrics_rollup_dirty (kind, bucket)
    VALUES ('alert', date_trunc('hour', a.created_at, 'UTC')) ON CONFLICT DO NOTHING;
    old_status := a.status;
    old_sev := a.severity;
    old_malice := a.malice_override;
    IF p ? 'status' AND p->>'status' <> old_status THEN
        a.status := p->>'status';
        IF old_status = 'Open' AND a.acknowledged_at IS NULL THEN
            a.acknowledged_at := now();
        END IF;
        IF a.status = 'Triaging' AND a.triaged_at IS NULL THEN
            a.triaged_at := now();
        END IF;
        IF a.status = 'Closed' THEN
            a.closed_at := now();
            a.close_classification := p->>'close_classification';
        ELSIF old_status = 'Closed' THEN
            a.closed_at := NULL;
            a.close_classification := NULL;
        END IF;
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_status_updated', p_actor_type, actor, a.id,
                jsonb_build_object('from_status', old_status, 'to_status', a.status));
        IF a.status = 'Closed' THEN
            INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
            VALUES ('alert_closed', p_actor_type, actor, a.id,
                    jsonb_build_object('from_status', old_status,
                                       'close_classification', a.close_classification));
        END IF;
    ELSIF p ? 'close_classification' AND a.status = 'Closed'
          AND a.close_classification IS DISTINCT FROM p->>'close_classification' THEN
        a.close_classification := p->>'close_classification';
    END IF;
    IF p ? 'severity' AND p->>'severity' <> old_sev THEN
        a.severity := p->>'severity';
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_severity_updated', p_actor_type, actor, a.id,
                jsonb_build_object('from_severity', old_sev, 'to_severity', a.severity));
    END IF;
    IF p ? 'tags' THEN
        a.tags := ARRAY(SELECT jsonb_array_elements_text(p->'tags'));
    END IF;
    IF p ? 'malice_override' AND (p->>'malice_override') IS DISTINCT FROM old_malice THEN
        a.malice_override := p->>'malice_override';
        a.malice_override_source := CASE WHEN p->>'malice_override' IS NULL THEN NULL ELSE 'analyst' END;
        a.malice_override_at := CASE WHEN p->>'malice_override' IS NULL THEN NULL ELSE now() END;
        INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, "references")
        VALUES ('alert_malice_updated', p_actor_type, actor, a.id,
                jsonb_build_object('malice_override', p->'malice_override',
                                   'from_malice', old_malice, 'to_malice', p->'malice_override',
                                   'malice_source', CASE WHEN p->>'malice_override' IS NULL
                                                         THEN 'reset' ELSE 'analyst' END));
    END IF;
    a.updated_at := now();
    UPDATE alerts SET status = a.status, severity = a.severity, tags = a.tags,
           acknowledged_at = a.acknowledged_at, triaged_at = a.triaged_at,
           closed_at = a.closed_at, close_classification = a.close_classification,
           malice_override = a.malice_override, malice_override_source = a.malice_override_source,
           malice_override_at = a.malice_override_at, updated_at = a.updated_at
     WHERE id = a.id;
    RETURN calseta_alert_json(a, false);
END $$;

-- The workflow runs created in [p_from, p_to) per workflow, status and UTC day of creation, from
-- the rollup rows where current and from workflow_runs elsewhere (see calseta_rollup_plan); runs
-- of deleted workflows (gone with them) leave their rollup rows out through the join.
CREATE FUNCTION calseta_run_figures(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ)
RETURNS TABLE (workflow_id BIGINT, status TEXT, d DATE, n BIGINT, dur_ms NUMERIC, dur_n BIGINT)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rolled_to TIMESTAMPTZ := (SELECT s.rolled_to FROM metrics_rollup_state s);
    dirty TIMESTAMPTZ[] := calseta_rollup_dirty_hours('run', p_from, p_to);
    dirty_days TIMESTAMPTZ[] := ARRAY(SELECT DISTINCT date_trunc('day', h, 'UTC') FROM unnest(dirty) h);
    d_lo TIMESTAMPTZ[]; d_hi TIMESTAMPTZ[];
    h_lo TIMESTAMPTZ[]; h_hi TIMESTAMPTZ[];
    l_lo TIMESTAMPTZ[]; l_hi TIMESTAMPTZ[];
BEGIN
    SELECT array_agg(lo) FILTER (WHERE src = 'd'), array_agg(hi) FILTER (WHERE src = 'd'),
           array_agg(lo) FILTER (WHERE src = 'h'), array_agg(hi) FILTER (WHERE src = 'h'),
           array_agg(lo) FILTER (WHERE src = 'l'), array_agg(hi) FILTER (WHERE src = 'l')
      INTO d_lo, d_hi, h_lo, h_hi, l_lo, l_hi
      FROM calseta_rollup_plan(p_from, p_to, rolled_to, dirty, true)
     WHERE lo < hi;
    RETURN QUERY
    SELECT x.workflow_id, x.status, (x.bucket AT TIME ZONE 'UTC')::date, sum(x.n)::bigint,
           sum(x.dur_ms), sum(x.dur_n)::bigint
      FROM (SELECT r.workflow_id, r.status, r.bucket, r.n, r.dur_ms, r.dur_n
              FROM unnest(d_lo, d_hi) p(lo, hi)
              JOIN workflow_run_rollup r ON r.grain = 'd' AND r.bucket >= p.lo AND r.bucket < p.hi
             WHERE r.bucket <> ALL (dirty_days)
            UNION ALL
            SELECT r.workflow_id, r.status, r.bucket, r.n, r.dur_ms, r.dur_n
              FROM unnest(h_lo, h_hi) p(lo, hi)
              JOIN workflow_run_rollup r ON r.grain = 'h' AND r.bucket >= p.lo AND r.bucket < p.hi
             WHERE r.bucket <> ALL (dirty)
            UNION ALL
            SELECT r.workflow_id, r.status, date_trunc('day', r.created_at, 'UTC'), 1, r.duration_ms,
                   CASE WHEN r.duration_ms IS NULL THEN 0 ELSE 1 END
              FROM unnest(l_lo, l_hi) p(lo, hi)
              JOIN workflow_runs r ON r.created_at >= p.lo AND r.created_at < p.hi) x
      JOIN workflows w ON w.id = x.workflow_id
     GROUP BY 1, 2, 3;
END $$;

-- GET /v1/metrics/workflows: the answer of 0012, its runs from calseta_run_figures.
CREATE OR REPLACE FUNCTION calseta_metrics_workflows(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ) RETURNS JSONB
LANGUAGE plpgsql STABLE AS $$
DECLARE
    out JSONB;
BEGIN
    WITH r AS MATERIALIZED (SELECT * FROM calseta_run_figures(p_from, p_to))
    SELECT jsonb_build_object(
        'period_from', calseta_ts(p_from), 'period_to', calseta_ts(p_to),
        'total_configured', (SELECT count(*) FROM workflows),
        'workflows_by_type', (SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM
            (SELECT coalesce(workflow_type, 'unset') k, count(*) n FROM workflows GROUP BY 1) x),
        'workflow_run_count', (SELECT coalesce(sum(n), 0) FROM r),
        'workflow_success_rate', (SELECT calseta_rate(sum(n) FILTER (WHERE status = 'success'),
                                                      sum(n)) FROM r),
        'workflow_runs_over_time', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'date', to_char(d, 'YYYY-MM-DD'), 'count', n) ORDER BY d), '[]') FROM
            (SELECT d, sum(n) n FROM r GROUP BY 1) x),
        'time_saved_hours', (SELECT coalesce(sum(r.n * w.time_saved_minutes), 0)::float8 / 60
                               FROM r JOIN workflows w ON w.id = r.workflow_id
                              WHERE r.status = 'success'),
        'most_executed_workflows', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'uuid', x.uuid, 'name', x.name, 'run_count', x.n) ORDER BY x.n DESC, x.name), '[]')
            FROM (SELECT w.uuid, w.name, sum(r.n) n FROM r JOIN workflows w ON w.id = r.workflow_id
                   GROUP BY 1, 2 ORDER BY 3 DESC, 2 LIMIT 10) x))
      INTO out;
    RETURN out;
END $$;
ALTER FUNCTION calseta_metrics_workflows(TIMESTAMPTZ, TIMESTAMPTZ) SET jit = off;

-- GET /v1/metrics/summary (and the MCP resource): the last 30 days. plpgsql so that each
-- statement keeps its plan on the connection (the SQL function of 0012 was planned on every
-- call); the runs of the 30 days (from their rollup) serve the workflows and the queue blocks.
DROP FUNCTION calseta_metrics_summary();
DROP FUNCTION calseta_queue_stats();
CREATE FUNCTION calseta_metrics_summary() RETURNS JSONB LANGUAGE plpgsql STABLE AS $$
DECLARE
    since TIMESTAMPTZ := now() - interval '30 days';
    s JSONB;
    r RECORD;
    ap RECORD;
    q JSONB;
BEGIN
    s := calseta_alert_stats(since, 'infinity');
    SELECT coalesce(sum(x.n), 0) AS n,
           coalesce(sum(x.n) FILTER (WHERE x.status = 'success'), 0) AS ok,
           coalesce(sum(x.n) FILTER (WHERE x.status IN ('failed', 'timed_out')), 0) AS failed,
           coalesce(sum(x.n * w.time_saved_minutes) FILTER (WHERE x.status = 'success'), 0) AS saved,
           sum(x.dur) FILTER (WHERE x.status IN ('success', 'failed', 'timed_out'))
               / nullif(sum(x.dur_n) FILTER (WHERE x.status IN ('success', 'failed', 'timed_out')), 0)
               AS dur_ms
      INTO r
      FROM (SELECT f.workflow_id, f.status, sum(f.n) AS n, sum(f.dur_ms) AS dur, sum(f.dur_n) AS dur_n
              FROM calseta_run_figures(since, 'infinity') f GROUP BY 1, 2) x
      JOIN workflows w ON w.id = x.workflow_id;
    SELECT count(*) FILTER (WHERE status = 'approved') AS approved,
           count(*) FILTER (WHERE status = 'rejected' AND responded_at IS NOT NULL) AS rejected,
           count(*) FILTER (WHERE status = 'approved' AND responded_at IS NOT NULL) AS approved_resp,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM responded_at - created_at) / 60)
               FILTER (WHERE responded_at IS NOT NULL) AS median_min
      INTO ap
      FROM workflow_approval_requests WHERE created_at >= since;
    -- pending, in progress and the oldest pending: index-only reads of the partial indexes on
    -- unfinished jobs
    q := jsonb_build_array(
        jsonb_build_object(
            'queue', 'enrichment',
            'pending', (SELECT count(*) FROM enrichment_jobs WHERE status = 'pending'),
            'in_progress', (SELECT count(*) FROM enrichment_jobs WHERE status = 'running'),
            'oldest_pending_age_seconds', extract(epoch FROM now() - (
                SELECT min(created_at) FROM enrichment_jobs WHERE status = 'pending'))::float8)
            || calseta_enrichment_finished(since),
        jsonb_build_object(
            'queue', 'workflow_runs',
            'pending', (SELECT count(*) FROM workflow_runs WHERE status = 'queued'),
            'in_progress', (SELECT count(*) FROM workflow_runs WHERE status = 'running'),
            'oldest_pending_age_seconds', extract(epoch FROM now() - (
                SELECT min(created_at) FROM workflow_runs WHERE status = 'queued'))::float8,
            'succeeded_30d', r.ok, 'failed_30d', r.failed,
            'avg_duration_seconds', (r.dur_ms / 1000.0)::float8),
        (SELECT jsonb_build_object(
            'queue', 'agent_deliveries',
            'pending', (SELECT count(*) FROM agent_deliveries WHERE status = 'pending'),
            'in_progress', (SELECT count(*) FROM agent_deliveries WHERE status = 'running'),
            'oldest_pending_age_seconds', extract(epoch FROM now() - (
                SELECT min(created_at) FROM agent_deliveries WHERE status = 'pending'))::float8,
            'succeeded_30d', count(*) FILTER (WHERE status = 'done'),
            'failed_30d', count(*) FILTER (WHERE status = 'failed'),
            'avg_duration_seconds', avg(extract(epoch FROM completed_at - created_at))
                                    FILTER (WHERE status = 'done')::float8)
           FROM agent_deliveries WHERE status IN ('done', 'failed') AND completed_at >= since));
    RETURN jsonb_build_object(
        'period', 'last_30_days',
        'alerts', jsonb_build_object(
            'total', s->'total',
            'active', (SELECT coalesce(sum(value::bigint), 0) FROM jsonb_each_text(s->'active_by_severity')),
            'by_severity', s->'active_by_severity', 'by_status', s->'by_status',
            'by_source', s->'by_source',
            'enrichment_coverage', calseta_rate((s->>'enriched')::numeric, (s->>'total')::numeric),
            'mean_time_to_enrich_seconds', s->'mtte',
            'false_positive_rate', calseta_rate((s->>'fp')::numeric, (s->>'closed')::numeric),
            'mttd_seconds', s->'mttd', 'mtta_seconds', s->'mtta', 'mttt_seconds', s->'mttt',
            'mttc_seconds', s->'mttc'),
        'workflows', jsonb_build_object(
            'total_configured', (SELECT count(*) FROM workflows WHERE state = 'active'),
            'executions', r.n, 'success_rate', calseta_rate(r.ok, r.n),
            'estimated_time_saved_hours', (r.saved / 60.0)::float8),
        'approvals', jsonb_build_object(
            'pending', (SELECT count(*) FROM workflow_approval_requests WHERE status = 'pending'),
            'approved_last_30_days', ap.approved,
            'approval_rate', calseta_rate(ap.approved_resp, ap.approved_resp + ap.rejected),
            'median_response_time_minutes', ap.median_min),
        'platform', jsonb_build_object(
            'context_documents', (SELECT count(*) FROM context_documents),
            'detection_rules', (SELECT count(*) FROM detection_rules),
            'enrichment_providers', (SELECT count(*) FROM enrichment_providers WHERE is_active),
            'enrichment_providers_by_indicator_type', (SELECT coalesce(jsonb_object_agg(t, n), '{}')
                FROM (SELECT t, count(DISTINCT p.id) n FROM enrichment_providers p,
                             unnest(p.supported_indicator_types) t WHERE p.is_active GROUP BY 1) x),
            'agents', (SELECT count(*) FROM agent_registrations WHERE is_active),
            'workflows', (SELECT count(*) FROM workflows),
            'indicator_mappings', (SELECT count(*) FROM indicator_field_mappings)),
        'queue', jsonb_build_object(
            'queues', q,
            'total_pending', (SELECT sum((e->>'pending')::bigint) FROM jsonb_array_elements(q) e),
            'total_in_progress', (SELECT sum((e->>'in_progress')::bigint) FROM jsonb_array_elements(q) e),
            'total_failed_30d', (SELECT sum((e->>'failed_30d')::bigint) FROM jsonb_array_elements(q) e),
            'total_succeeded_30d', (SELECT sum((e->>'succeeded_30d')::bigint) FROM jsonb_array_elements(q) e),
            'oldest_pending_age_seconds', (SELECT max((e->>'oldest_pending_age_seconds')::float8)
                                             FROM jsonb_array_elements(q) e)));
END $$;
-- generic estimates of these statements would exceed the JIT threshold for a few thousand rows
ALTER FUNCTION calseta_metrics_summary() SET jit = off;
-- (CREATE OR REPLACE dropped the setting 0020 gave the alert figures)
ALTER FUNCTION calseta_alert_stats(TIMESTAMPTZ, TIMESTAMPTZ) SET jit = off;

-- A database rolled up before this migration gets the run rows of every hour already rolled up.
SELECT calseta_run_rollup_hours(
           ARRAY(SELECT generate_series(date_trunc('hour', x.first, 'UTC'),
                                        st.rolled_to - interval '1 hour', interval '1 hour')
                   FROM (SELECT min(created_at) AS first FROM workflow_runs) x
                  WHERE x.first IS NOT NULL),
           st.rolled_to)
  FROM metrics_rollup_state st
 WHERE isfinite(st.rolled_to);
