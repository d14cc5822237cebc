-- 0090_metrics_summary_one_queue_scan.sql - calseta_metrics_summary() reads the unfinished
-- enrichment jobs once.
--
-- 0024's body, restated with one change: the enrichment queue's pending count, in-progress count
-- and oldest pending job came from three scans of the partial index on unfinished jobs (each a
-- full pass over it, at every poll of GET /v1/metrics/summary or the MCP resource); they are now
-- three aggregates of one index-only scan. The figures are the same.
--
-- Locks: replacing the function takes none.

CREATE OR REPLACE FUNCTION calseta_metrics_summary() RETURNS JSONB LANGUAGE plpgsql STABLE AS $$
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
    -- pending, in progress and the oldest pending: one index-only read of the partial index on
    -- unfinished jobs (it holds both states and their created_at), not one read per figure
    q := jsonb_build_array(
        (SELECT jsonb_build_object(
            'queue', 'enrichment',
            'pending', count(*) FILTER (WHERE j.status = 'pending'),
            'in_progress', count(*) FILTER (WHERE j.status = 'running'),
            'oldest_pending_age_seconds', extract(epoch FROM now() - min(j.created_at)
                                                  FILTER (WHERE j.status = 'pending'))::float8)
           FROM enrichment_jobs j WHERE j.status IN ('pending', 'running'))
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
-- (CREATE OR REPLACE drops the function's settings: 0024's again)
ALTER FUNCTION calseta_metrics_summary() SET jit = off;
