"""The metrics routes (/v1/metrics/alerts, /workflows, /summary with its queue block) and the
Prometheus endpoint, scraped and parsed as the text exposition format 0.0.4."""
import json
import re
import subprocess
import time

from harness import Stack, assert_eq, run_tests, wait_for

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_prometheus(text):
    """Strict reader of the text format: returns {name: type}, [(name, {labels}, value)]."""
    types, samples, helped = {}, [], set()
    assert text.endswith("\n"), "the exposition ends with a line feed"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, "TYPE twice: " + name
            types[name] = typ
            continue
        assert line and not line.startswith("#"), repr(line)
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels = m.group(1), {}
        if m.group(3):
            rest = m.group(3)
            while rest:
                lm = LABEL.match(rest)
                assert lm, "bad labels in %r" % line
                labels[lm.group(1)] = lm.group(2)
                rest = rest[lm.end():]
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, "sample before its TYPE: " + line
        samples.append((name, labels, float(m.group(4))))
    for name, typ in types.items():
        assert name in helped, "no HELP for " + name
        if typ == "counter":
            assert name.endswith("_total"), name
    return types, samples


def value(samples, name, **labels):
    found = [v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items())]
    assert found, "no sample %s %r" % (name, labels)
    return sum(found)


def test_metrics_routes():
    s = Stack("metrics_routes")
    try:
        k = s.create_key("admin")
        wf = s.create_key("workflows:read")
        a1 = s.ingest(k, "one", rule_id="R1")
        s.ingest(k, "two", rule_id="R1", severity="low")
        s.ingest(k, "three", source="x")
        s.request("PATCH", "/v1/alerts/" + a1, key=k,
                  body={"status": "Closed", "close_classification": "False Positive - Inaccurate Data"})
        r = s.request("GET", "/v1/metrics/alerts", key=k)
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq(d["total_alerts"], 3)
        assert_eq(d["alerts_by_status"], {"Open": 2, "Closed": 1})
        assert_eq(d["alerts_by_severity"], {"High": 2, "Low": 1})
        assert_eq(d["alerts_by_source"], {"generic": 3})
        assert_eq(d["active_alerts_by_severity"], {"High": 1, "Low": 1})
        assert_eq(d["false_positive_rate"], 1.0)
        assert_eq(d["enrichment_coverage"], 0.0)
        assert_eq(d["mean_time_to_enrich"], None)
        assert d["mean_time_to_conclusion"] is not None and d["mean_time_to_acknowledge"] is not None
        assert_eq(sum(x["count"] for x in d["alerts_over_time"]), 3)
        assert_eq([(x["name"], x["count"]) for x in d["top_detection_rules"]], [("R1", 2)])
        for f in ("period_from", "period_to", "mean_time_to_detect", "mean_time_to_triage"):
            assert f in d, f
        r = s.request("GET", "/v1/metrics/alerts?from_time=2000-01-01T00:00:00Z&to_time=2000-02-01T00:00:00Z", key=k)
        assert_eq((r.json()["data"]["total_alerts"], r.json()["data"]["period_from"]), (0, "2000-01-01T00:00:00.000000Z"))
        # only one bound: both replaced by the last 30 days, as the original
        assert_eq(s.request("GET", "/v1/metrics/alerts?from_time=2000-01-01T00:00:00Z", key=k).json()["data"]["total_alerts"], 3)
        assert_eq(s.request("GET", "/v1/metrics/alerts?from_time=soon&to_time=later", key=k).status, 422)
        assert_eq(s.request("GET", "/v1/metrics/alerts", key=wf).status, 403)
        assert_eq(s.request("GET", "/v1/metrics/alerts").status, 401)
        r = s.request("GET", "/v1/metrics/workflows", key=wf)
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        for f in ("total_configured", "workflows_by_type", "workflow_run_count", "workflow_success_rate",
                  "workflow_runs_over_time", "time_saved_hours", "most_executed_workflows"):
            assert f in d, f
        assert_eq(s.request("GET", "/v1/metrics/workflows", key=s.create_key("alerts:read")).status, 403)
        r = s.request("GET", "/v1/metrics/summary", key=k)
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq(d["period"], "last_30_days")
        assert_eq((d["alerts"]["total"], d["alerts"]["active"]), (3, 2))
        assert_eq(d["alerts"]["by_severity"], {"High": 1, "Low": 1})  # active alerts only
        for f in ("by_status", "by_source", "enrichment_coverage", "mean_time_to_enrich_seconds",
                  "false_positive_rate", "mttd_seconds", "mtta_seconds", "mttt_seconds", "mttc_seconds"):
            assert f in d["alerts"], f
        assert_eq(sorted(d["workflows"]), ["estimated_time_saved_hours", "executions", "success_rate", "total_configured"])
        assert_eq(sorted(d["approvals"]), ["approval_rate", "approved_last_30_days", "median_response_time_minutes", "pending"])
        assert_eq(d["platform"]["detection_rules"], 1)
        assert_eq(d["platform"]["indicator_mappings"], 14)
        for f in ("context_documents", "enrichment_providers", "enrichment_providers_by_indicator_type", "agents", "workflows"):
            assert f in d["platform"], f
        q = d["queue"]
        assert q is not None  # the original's was always null
        assert_eq([x["queue"] for x in q["queues"]], ["enrichment", "workflow_runs", "agent_deliveries"])
        enr = q["queues"][0]
        assert_eq((enr["pending"], enr["in_progress"]), (3, 0))  # no enricher runs in this test
        assert enr["oldest_pending_age_seconds"] > 0
        for x in q["queues"]:
            assert_eq(sorted(x), ["avg_duration_seconds", "failed_30d", "in_progress", "oldest_pending_age_seconds",
                                  "pending", "queue", "succeeded_30d"])
        assert_eq((q["total_pending"], q["total_in_progress"]), (3, 0))
        s.sql("UPDATE enrichment_jobs SET status = 'done', completed_at = now() WHERE id = (SELECT min(id) FROM enrichment_jobs)")
        q = s.request("GET", "/v1/metrics/summary", key=k).json()["data"]["queue"]
        assert_eq((q["queues"][0]["pending"], q["queues"][0]["succeeded_30d"], q["total_succeeded_30d"]), (2, 1, 1))
    finally:
        s.stop()


# The alert figures of a window counted straight from the alerts table: what the rollup-backed
# routes must equal at every moment (before a rollup pass, after one, after changes since one).
DIRECT = """
SELECT jsonb_build_object(
  'total_alerts', count(*),
  'alerts_by_status', coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT status k, count(*) n FROM w GROUP BY 1) x), '{}'),
  'alerts_by_severity', coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT severity k, count(*) n FROM w GROUP BY 1) x), '{}'),
  'alerts_by_source', coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT source_name k, count(*) n FROM w GROUP BY 1) x), '{}'),
  'active_alerts_by_severity', coalesce((SELECT jsonb_object_agg(k, n) FROM (SELECT severity k, count(*) n FROM w
       WHERE status IN ('Open', 'Triaging', 'Escalated') GROUP BY 1) x), '{}'),
  'alerts_over_time', coalesce((SELECT jsonb_agg(jsonb_build_object('date', to_char(d, 'YYYY-MM-DD'), 'count', n) ORDER BY d)
       FROM (SELECT (created_at AT TIME ZONE 'UTC')::date d, count(*) n FROM w GROUP BY 1) x), '[]'),
  'top_detection_rules', coalesce((SELECT jsonb_agg(jsonb_build_object('name', r.name, 'count', x.n) ORDER BY x.n DESC, r.name)
       FROM (SELECT detection_rule_id, count(*) n FROM w WHERE detection_rule_id IS NOT NULL GROUP BY 1) x
       JOIN detection_rules r ON r.id = x.detection_rule_id), '[]'),
  'fp', count(*) FILTER (WHERE status = 'Closed' AND close_classification LIKE 'False Positive%%'),
  'closed', count(*) FILTER (WHERE status = 'Closed'),
  'enriched', count(*) FILTER (WHERE is_enriched),
  'mean_time_to_enrich', avg(extract(epoch FROM enriched_at - ingested_at)) FILTER (WHERE is_enriched)::float8,
  'mean_time_to_detect', avg(extract(epoch FROM created_at - occurred_at))::float8,
  'mean_time_to_conclusion', avg(extract(epoch FROM closed_at - created_at))::float8,
  'mean_time_to_acknowledge', avg(extract(epoch FROM acknowledged_at - created_at))::float8)
FROM w
"""


def direct(s, frm, to):
    q = ("WITH w AS (SELECT * FROM alerts WHERE created_at >= '%s' AND created_at < '%s') " % (frm, to)) + DIRECT
    return json.loads(s.sql_value(q.replace("%%", "%")))


def check_window(s, k, frm, to, what):
    got = s.request("GET", "/v1/metrics/alerts?from_time=%s&to_time=%s" % (frm, to), key=k)
    assert_eq(got.status, 200, got.body)
    got = got.json()["data"]
    want = direct(s, frm, to)
    for f in ("total_alerts", "alerts_by_status", "alerts_by_severity", "alerts_by_source",
              "active_alerts_by_severity", "alerts_over_time"):
        assert_eq(got[f], want[f], (what, f))
    assert_eq([{"name": r["name"], "count": r["count"]} for r in got["top_detection_rules"]],
              want["top_detection_rules"][:10], (what, "top_detection_rules"))
    fpr = want["fp"] / want["closed"] if want["closed"] else 0.0
    cov = want["enriched"] / want["total_alerts"] if want["total_alerts"] else 0.0
    assert abs(got["false_positive_rate"] - fpr) < 1e-9, (what, got["false_positive_rate"], fpr)
    assert abs(got["enrichment_coverage"] - cov) < 1e-9, (what, got["enrichment_coverage"], cov)
    for f in ("mean_time_to_enrich", "mean_time_to_detect", "mean_time_to_conclusion", "mean_time_to_acknowledge"):
        if want[f] is None:
            assert_eq(got[f], None, (what, f))
        else:
            assert abs(got[f] - want[f]) < 1e-6, (what, f, got[f], want[f])
    return got


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def test_metrics_rollup_exact_through_changes():
    """Figures equal a direct count of the table before any rollup, after one, after changes to
    rolled-up hours through the platform (status, severity and classification patches, enrichment
    completed by the enricher's own statement, deletes of alerts and of a detection rule), after a
    hand-made backfill noted with calseta_metrics_invalidate, and after the next pass; windows
    with odd edges; the summary's alert, workflow, approval and queue blocks likewise; no index on
    alerts.updated_at is needed; and the intake runs the rollup itself."""
    s = Stack("metrics_rollup")
    try:
        k = s.create_key("admin", extra=("--rate-limit-per-minute", "100000"))
        assert_eq(s.sql_value("SELECT count(*) FROM pg_indexes WHERE tablename = 'alerts' "
                              "AND indexdef LIKE '%(updated_at)%'"), "0")
        s.sql("INSERT INTO detection_rules (name, source_name, source_rule_id) "
              "SELECT 'rule ' || g, 'generic', 'RR' || g FROM generate_series(1, 4) g")
        # 3,000 alerts over the last 20 days (several per hour), mixed everything
        s.sql("""INSERT INTO alerts (title, severity, source_name, occurred_at, created_at, ingested_at,
                     enriched_at, is_enriched, status, close_classification, acknowledged_at, closed_at,
                     detection_rule_id)
                 SELECT 'a' || g, (ARRAY['Low','Medium','High','Critical'])[1 + g % 4],
                        (ARRAY['sentinel','elastic','generic'])[1 + g % 3], c - (g % 50) * interval '1 second',
                        c, c, c + interval '20 seconds', g % 3 <> 0,
                        (ARRAY['Open','Triaging','Escalated','Closed','Closed'])[1 + g % 5],
                        CASE WHEN g % 5 >= 3 THEN (ARRAY['False Positive - Inaccurate Data', 'Duplicate'])[1 + g % 2] END,
                        CASE WHEN g % 5 > 0 THEN c + (g % 70) * interval '1 second' END,
                        CASE WHEN g % 5 >= 3 THEN c + (g % 600) * interval '1 second' END,
                        CASE WHEN g % 7 < 4 THEN (SELECT min(id) FROM detection_rules WHERE source_rule_id LIKE 'RR%%') + g % 7 END
                   FROM (SELECT g, now() - interval '20 days' * g / 3000.0 - interval '1 minute' AS c
                           FROM generate_series(1, 3000) g) x""".replace("%%", "%"))
        s.sql("INSERT INTO enrichment_jobs (alert_id, status, created_at, completed_at) "
              "SELECT id, CASE WHEN id % 9 = 0 THEN 'failed' ELSE 'done' END, created_at, "
              "created_at + (id % 40) * interval '1 second' FROM alerts")
        # This load is itself a backfill behind the platform's back: the intake's first rollup
        # pass may already have run (on a slow machine it does), so it is noted as the operations
        # doc says; before any pass this notes nothing.
        s.sql("SELECT calseta_metrics_invalidate(now() - interval '21 days', now())")
        now = time.time()
        windows = [(iso(now - 30 * 86400), iso(now + 60)),
                   (iso(now - 10.3 * 86400), iso(now - 2.71 * 86400)),
                   (iso(now - 5 * 3600 - 17), iso(now - 3600 - 1234))]

        # workflow runs and approval requests in and out of the summary's 30 days
        wf_id, saved = s.sql("SELECT id, coalesce(time_saved_minutes, 0) FROM workflows ORDER BY id LIMIT 1")[0]
        s.sql("UPDATE workflows SET time_saved_minutes = 7 WHERE id = %s" % wf_id)
        s.sql("UPDATE workflows SET time_saved_minutes = 3 WHERE id IN (SELECT id FROM workflows WHERE id > %s "
              "ORDER BY id LIMIT 2)" % wf_id)
        s.sql("INSERT INTO workflow_runs (workflow_id, trigger_type, code_version_executed, status, duration_ms, "
              "created_at) SELECT (SELECT id FROM workflows WHERE id >= %s ORDER BY id OFFSET g %% 3 LIMIT 1), "
              "'manual', 1, (ARRAY['success','success','failed','timed_out','queued',"
              "'running'])[1 + g %% 6], CASE WHEN g %% 6 < 4 THEN 100 * g END, "
              "now() - g * interval '7 hours' FROM generate_series(1, 150) g" % wf_id)
        s.sql("INSERT INTO workflow_approval_requests (workflow_id, trigger_type, trigger_agent_key_prefix, "
              "reason, confidence, status, responded_at, expires_at, created_at) "
              "SELECT %s, 'manual', 'cai_test', 'r', 0.5, (ARRAY['approved','rejected','pending'])[1 + g %% 3], "
              "CASE WHEN g %% 3 < 2 THEN c + g * interval '1 minute' END, c + interval '1 hour', c "
              "FROM (SELECT g, now() - g * interval '9 hours' AS c FROM generate_series(1, 100) g) x" % wf_id)

        def check_summary(what):
            d = s.request("GET", "/v1/metrics/summary", key=k).json()["data"]
            w = json.loads(s.sql_value("""
                WITH r AS (SELECT * FROM workflow_runs WHERE created_at >= now() - interval '30 days'),
                ap AS (SELECT * FROM workflow_approval_requests WHERE created_at >= now() - interval '30 days'),
                a AS (SELECT * FROM alerts WHERE created_at >= now() - interval '30 days')
                SELECT jsonb_build_object(
                  'total', (SELECT count(*) FROM a),
                  'active', (SELECT count(*) FROM a WHERE status IN ('Open', 'Triaging', 'Escalated')),
                  'by_status', (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) n FROM a GROUP BY 1) x),
                  'executions', (SELECT count(*) FROM r),
                  'ok', (SELECT count(*) FROM r WHERE status = 'success'),
                  'saved_min', (SELECT coalesce(sum(w.time_saved_minutes), 0) FROM r JOIN workflows w ON w.id = r.workflow_id
                                 WHERE r.status = 'success'),
                  'runs', (SELECT jsonb_build_array(count(*) FILTER (WHERE status = 'queued'),
                                  count(*) FILTER (WHERE status = 'running')) FROM workflow_runs),
                  'runs_30d', (SELECT jsonb_build_array(count(*) FILTER (WHERE status = 'success'),
                                  count(*) FILTER (WHERE status IN ('failed', 'timed_out')),
                                  avg(duration_ms) FILTER (WHERE status IN ('success', 'failed', 'timed_out')) / 1000.0)
                               FROM r),
                  'ap_pending', (SELECT count(*) FROM workflow_approval_requests WHERE status = 'pending'),
                  'ap_approved', (SELECT count(*) FROM ap WHERE status = 'approved'),
                  'ap_median', (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM responded_at - created_at) / 60)
                                FROM ap WHERE responded_at IS NOT NULL),
                  'enr', (SELECT jsonb_build_array(count(*) FILTER (WHERE status = 'pending'),
                                 count(*) FILTER (WHERE status = 'running')) FROM enrichment_jobs),
                  'enr_30d', (SELECT jsonb_build_array(count(*) FILTER (WHERE status = 'done'),
                                     count(*) FILTER (WHERE status = 'failed'))
                              FROM enrichment_jobs WHERE completed_at >= now() - interval '30 days'))"""))
            al = d["alerts"]
            assert_eq((al["total"], al["active"], al["by_status"]), (w["total"], w["active"], w["by_status"]), what)
            wf = d["workflows"]
            assert_eq(wf["executions"], w["executions"], what)
            assert abs(wf["success_rate"] - w["ok"] / w["executions"]) < 1e-9, what
            assert abs(wf["estimated_time_saved_hours"] - w["saved_min"] / 60.0) < 1e-9, what
            ap = d["approvals"]
            assert_eq((ap["pending"], ap["approved_last_30_days"]), (w["ap_pending"], w["ap_approved"]), what)
            assert abs(ap["median_response_time_minutes"] - w["ap_median"]) < 1e-9, what
            enr, runs = d["queue"]["queues"][0], d["queue"]["queues"][1]
            assert_eq([enr["pending"], enr["in_progress"]], w["enr"], what)
            assert_eq([enr["succeeded_30d"], enr["failed_30d"]], w["enr_30d"], what)
            assert_eq([runs["pending"], runs["in_progress"]], w["runs"], what)
            assert_eq([runs["succeeded_30d"], runs["failed_30d"]], w["runs_30d"][:2], what)
            assert abs(runs["avg_duration_seconds"] - w["runs_30d"][2]) < 1e-9, what
            assert_eq(d["queue"]["total_pending"], sum(x["pending"] for x in d["queue"]["queues"]), what)

        def check_workflows(what):
            for frm, to in windows:
                d = s.request("GET", "/v1/metrics/workflows?from_time=%s&to_time=%s" % (frm, to), key=k).json()["data"]
                w = json.loads(s.sql_value("""
                    WITH r AS (SELECT r.* FROM workflow_runs r WHERE created_at >= '%s' AND created_at < '%s')
                    SELECT jsonb_build_object(
                      'n', (SELECT count(*) FROM r), 'ok', (SELECT count(*) FROM r WHERE status = 'success'),
                      'days', (SELECT coalesce(jsonb_agg(jsonb_build_object('date', to_char(d, 'YYYY-MM-DD'), 'count', n)
                                                         ORDER BY d), '[]')
                               FROM (SELECT (created_at AT TIME ZONE 'UTC')::date d, count(*) n FROM r GROUP BY 1) x),
                      'saved', (SELECT coalesce(sum(w.time_saved_minutes), 0) FROM r JOIN workflows w ON w.id = r.workflow_id
                                WHERE r.status = 'success'),
                      'top', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'run_count', n) ORDER BY n DESC, name), '[]')
                              FROM (SELECT w.name, count(*) n FROM r JOIN workflows w ON w.id = r.workflow_id
                                     GROUP BY 1) x))""" % (frm, to)))
                assert_eq((d["workflow_run_count"], d["workflow_runs_over_time"]), (w["n"], w["days"]), (what, frm))
                assert abs(d["workflow_success_rate"] - (w["ok"] / w["n"] if w["n"] else 0.0)) < 1e-9, (what, frm)
                assert abs(d["time_saved_hours"] - w["saved"] / 60.0) < 1e-9, (what, frm)
                assert_eq([{"name": x["name"], "run_count": x["run_count"]} for x in d["most_executed_workflows"]],
                          w["top"][:10], (what, frm))

        def check_all(what):
            for frm, to in windows:
                check_window(s, k, frm, to, what)
            check_summary(what)
            check_workflows(what)

        check_all("before any rollup")
        roll = lambda: wait_for(lambda: int(s.sql_value("SELECT calseta_metrics_rollup()")) >= 0, 30, 0.2,
                                "a rollup pass (the intake's may hold the lock)")
        roll()
        assert int(s.sql_value("SELECT count(*) FROM alert_metrics_rollup WHERE grain = 'd'")) > 0
        check_all("after a rollup")
        # changes to rolled-up hours: through the API and behind its back
        olds = s.sql("SELECT uuid FROM alerts WHERE created_at < now() - interval '3 days' ORDER BY id LIMIT 40")
        for (u,) in olds[:20]:
            r = s.request("PATCH", "/v1/alerts/" + u, key=k, body={"status": "Closed",
                          "close_classification": "False Positive - Incorrect Detection Logic"})
            assert_eq(r.status, 200, r.body)
        for (u,) in olds[20:25]:
            assert_eq(s.request("PATCH", "/v1/alerts/" + u, key=k, body={"severity": "Critical"}).status, 200)
        for (u,) in olds[25:30]:
            assert_eq(s.request("DELETE", "/v1/alerts/" + u, key=k).status, 204)
        for (u,) in olds[30:34]:  # a classification change alone (no status change, no event)
            assert_eq(s.request("PATCH", "/v1/alerts/" + u, key=k, body={"status": "Closed",
                      "close_classification": "Duplicate"}).status, 200)
            assert_eq(s.request("PATCH", "/v1/alerts/" + u, key=k, body={
                      "close_classification": "False Positive - Inaccurate Data"}).status, 200)
        # enrichment of old, unenriched alerts through the enricher's statements (claim, complete)
        s.sql("INSERT INTO enrichment_jobs (alert_id) SELECT id FROM alerts WHERE NOT is_enriched "
              "AND created_at < now() - interval '2 days' ORDER BY id LIMIT 25")
        for (jid,) in s.sql("SELECT job_id FROM calseta_enrich_claim('metrics-test', 60, 100, 5)"):
            assert_eq(s.sql_value("SELECT calseta_enrich_complete(%s, 'metrics-test', "
                                  "'{\"indicators\": [], \"cache\": []}')" % jid), "done")
        # a rule deleted: its alerts are unlinked without their rows being written
        rule = s.sql_value("SELECT uuid FROM detection_rules WHERE source_rule_id = 'RR2'")
        assert_eq(s.request("DELETE", "/v1/detection-rules/" + rule, key=k).status, 204)
        # runs finishing (every run transition stamps updated_at), and a workflow deleted with its runs
        s.sql("UPDATE workflow_runs SET status = 'success', duration_ms = 4321, updated_at = now() "
              "WHERE id IN (SELECT id FROM workflow_runs WHERE status IN ('queued', 'running') "
              "AND created_at < now() - interval '2 days' ORDER BY id LIMIT 8)")
        # (built-in workflows refuse DELETE /v1/workflows; the cascade is the same)
        s.sql("DELETE FROM workflows WHERE id = (SELECT id FROM workflows WHERE id > %s ORDER BY id LIMIT 1)" % wf_id)
        # a backfill behind the platform's back is noted by hand, as the operations doc says
        s.sql("INSERT INTO alerts (title, severity, source_name, occurred_at, created_at, status) "
              "SELECT 'late' || g, 'Medium', 'splunk', now() - interval '9 days', "
              "now() - interval '9 days' + g * interval '1 minute', 'Escalated' FROM generate_series(1, 30) g")
        assert int(s.sql_value("SELECT calseta_metrics_invalidate(now() - interval '9 days', "
                               "now() - interval '9 days' + interval '31 minutes')")) >= 2
        s.sql("UPDATE enrichment_jobs SET status = 'failed', updated_at = now() "
              "WHERE id IN (SELECT id FROM enrichment_jobs WHERE status = 'done' ORDER BY id LIMIT 7)")
        s.ingest(k, "fresh")
        check_all("changes since the rollup")
        roll()
        check_all("after the next rollup")
        assert_eq(s.sql_value("SELECT count(*) FROM metrics_rollup_dirty"), "0")
        # the intake runs the rollup itself (housekeeping), one process at a time
        before = s.sql_value("SELECT rolled_at FROM metrics_rollup_state")
        wait_for(lambda: s.sql_value("SELECT rolled_at FROM metrics_rollup_state") != before, 40, 0.5,
                 "the intake's rollup pass")
        check_all("after the intake's pass")

        # A patch open while a pass runs, to an hour that already has a note: the pass must not
        # take the patch's note (it cannot see it) nor count the hour as clean when it commits.
        u1, u2 = s.sql("SELECT a.uuid, b.uuid FROM alerts a JOIN alerts b ON a.id < b.id AND "
                       "date_trunc('hour', a.created_at, 'UTC') = date_trunc('hour', b.created_at, 'UTC') "
                       "WHERE a.created_at < now() - interval '4 days' AND b.status <> 'Closed' "
                       "ORDER BY a.id LIMIT 1")[0]
        assert_eq(s.request("PATCH", "/v1/alerts/" + u1, key=k, body={"severity": "Low"}).status, 200)
        open_tx = subprocess.Popen(["psql", s.db, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            open_tx.stdin.write("BEGIN;\nSELECT calseta_alert_patch('%s', '{\"status\": \"Closed\", "
                                "\"close_classification\": \"Duplicate\"}', 'test', 'user') IS NOT NULL;\n"
                                % u2)
            open_tx.stdin.flush()
            assert_eq(open_tx.stdout.readline().strip(), "t", "patch in the open transaction")
            roll()
            open_tx.stdin.write("COMMIT;\n")
            open_tx.stdin.close()
            assert_eq(open_tx.wait(30), 0, "open transaction committed")
        finally:
            if open_tx.poll() is None:
                open_tx.kill()
        check_all("a patch committed after a pass that ran while it was open")
        roll()
        check_all("the pass after it")
    finally:
        s.stop()


def test_prometheus_scrape():
    from cryptography.fernet import Fernet
    # On-demand lookups are answered by an enricher over the job bus; it is stopped before the
    # alerts are ingested so that their jobs stay pending for the queue gauges.
    s = Stack("prometheus", env={"ENCRYPTION_KEY": Fernet.generate_key().decode(),
                                 "ENRICHMENT_MOCK_MODE": "true"},
              services=("auditd", "jobbus", "enricher", "intake"))
    try:
        enricher = [p for p in s.procs if p.name == "enricher"][0]
        wait_for(lambda: "jobs at a time" in enricher.text(), 30, what="the enricher to start")
        k = s.create_key("admin")
        assert_eq(s.request("GET", "/metrics").status, 401)
        assert_eq(s.request("GET", "/metrics", key=s.create_key("workflows:read")).status, 403)
        r = None
        for _ in range(50):  # until the enricher's lookup socket has reached the job bus
            r = s.request("POST", "/v1/enrichments", key=k, body={"type": "ip", "value": "185.220.101.34"})
            if r.status == 200 and r.json()["data"]["results"]["virustotal"]["success"]:
                break
            time.sleep(0.2)
        assert_eq(r.status, 200, r.body)
        s.request("POST", "/v1/enrichments", key=k, body={"type": "ip", "value": "185.220.101.34"})
        enricher.stop()
        for i in range(3):
            s.ingest(k, "p%d" % i)
        s.request("GET", "/v1/alerts/00000000-0000-0000-0000-000000000000", key=k)
        slow = s.create_key("alerts:read", extra=("--rate-limit-per-minute", "3"))
        codes = [s.request("GET", "/v1/alerts", key=slow).status for _ in range(5)]
        assert 429 in codes, codes
        r = s.request("GET", "/metrics", key=k)
        assert_eq(r.status, 200, r.body)
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
        types, samples = parse_prometheus(r.body.decode())
        assert_eq(types["calseta_http_request_duration_seconds"], "histogram")
        assert_eq(types["calseta_queue_pending"], "gauge")
        pids = {l["pid"] for n, l, v in samples if "pid" in l}
        assert_eq(len(pids), 1)
        assert_eq(value(samples, "calseta_http_requests_total", route="/v1/ingest/{source}", method="POST", code=202), 3)
        assert_eq(value(samples, "calseta_http_requests_total", route="/v1/alerts/{uuid}", code=404), 1)
        assert value(samples, "calseta_http_requests_total", route="/v1/alerts", code=429) >= 1
        assert value(samples, "calseta_rate_limit_refusals_total", **{"class": "default"}) >= 1
        # histogram: cumulative buckets, +Inf = count
        b = [(l["le"], v) for n, l, v in samples
             if n == "calseta_http_request_duration_seconds_bucket" and l["route"] == "/v1/ingest/{source}"]
        assert_eq(b[-1][0], "+Inf")
        assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), b
        assert_eq(b[-1][1], value(samples, "calseta_http_request_duration_seconds_count", route="/v1/ingest/{source}"))
        assert value(samples, "calseta_auth_cache_lookups_total", result="hit") >= 2
        assert value(samples, "calseta_auth_cache_lookups_total", result="miss") >= 1
        assert value(samples, "calseta_ingest_batches_total") >= 1
        assert_eq(value(samples, "calseta_ingest_batch_size_sum"), 3)
        # every committed alert's two waits, each within the whole request's duration
        for phase in ("queued", "database"):
            assert_eq(value(samples, "calseta_ingest_wait_seconds_count", phase=phase), 3)
        assert value(samples, "calseta_ingest_wait_seconds_sum", phase="database") > 0
        assert (value(samples, "calseta_ingest_wait_seconds_sum", phase="queued") +
                value(samples, "calseta_ingest_wait_seconds_sum", phase="database") <=
                value(samples, "calseta_http_request_duration_seconds_sum", route="/v1/ingest/{source}"))
        assert_eq(value(samples, "calseta_queue_pending", queue="enrichment"), 3)
        assert value(samples, "calseta_queue_oldest_pending_age_seconds", queue="enrichment") > 0
        assert_eq(value(samples, "calseta_queue_in_progress", queue="agent_deliveries"), 0)
        assert_eq(value(samples, "calseta_enrichment_lookups_total", provider="virustotal", outcome="success"), 1)
        assert_eq(value(samples, "calseta_enrichment_lookups_total", provider="virustotal", outcome="cache_hit"), 1)
        value(samples, "calseta_audit_events_pending")
        value(samples, "calseta_audit_spool_bytes")
        assert_eq(sorted({l["queue"] for n, l, v in samples if n == "calseta_queue_pending"}),
                  ["agent_deliveries", "enrichment", "workflow_runs"])
        assert_eq(types["calseta_queue_figures_age_seconds"], "gauge")
        assert 0 <= value(samples, "calseta_queue_figures_age_seconds") < 5, samples
        # the queue figures are cached for a few seconds, not read on every scrape
        s.sql("DELETE FROM enrichment_jobs")
        _, again = parse_prometheus(s.request("GET", "/metrics", key=k).body.decode())
        assert_eq(value(again, "calseta_queue_pending", queue="enrichment"), 3)
        assert_eq(value(again, "calseta_http_requests_total", route="/metrics", code=200), 1)
    finally:
        s.stop()


def test_changed_hours_is_one_function_for_every_kind():
    """Which rolled-up hours changed since a pass is found by one function for alerts (enriched
    since), enrichment jobs (finished since) and workflow runs (changed since), each by the hour
    its rollup groups by, within [from, before); the three per-kind copies are gone; an unknown
    kind is an error, not a silent empty answer."""
    s = Stack("metrics_changed_hours")
    try:
        names = {r[0] for r in s.sql("SELECT proname FROM pg_proc WHERE proname LIKE 'calseta_%hours'")}
        assert "calseta_changed_hours" in names, names
        for gone in ("calseta_alert_enriched_hours", "calseta_job_finished_hours",
                     "calseta_run_changed_hours"):
            assert gone not in names, names
        s.sql("INSERT INTO alerts (title, severity, source_name, occurred_at, created_at, ingested_at, "
              "enriched_at, is_enriched) VALUES "
              "('old, enriched now', 'Low', 'generic', '2026-01-02 03:04:05+00', '2026-01-02 03:04:05+00', "
              " '2026-01-02 03:04:05+00', now(), true), "
              "('old, enriched long ago', 'Low', 'generic', '2026-01-03 05:00:00+00', "
              " '2026-01-03 05:00:00+00', '2026-01-03 05:00:00+00', '2026-01-03 05:01:00+00', true)")
        s.sql("INSERT INTO enrichment_jobs (alert_id, status, created_at, completed_at, updated_at) "
              "SELECT id, 'done', created_at, '2026-01-04 07:30:00+00', now() FROM alerts "
              "WHERE title = 'old, enriched now'")
        s.sql("INSERT INTO enrichment_jobs (alert_id, status, created_at, updated_at) "
              "SELECT id, 'pending', created_at, now() FROM alerts WHERE title = 'old, enriched long ago'")
        s.sql("INSERT INTO workflow_runs (workflow_id, trigger_type, code_version_executed, status, "
              "created_at, updated_at) SELECT min(id), 'manual', 1, 'success', "
              "'2026-01-05 09:15:00+00', now() FROM workflows")

        def hours(kind, since="now() - interval '1 hour'", frm="'-infinity'", before="now()"):
            return s.sql_value("SELECT array_to_string(ARRAY(SELECT to_char(h AT TIME ZONE 'UTC', "
                               "'YYYY-MM-DD HH24') FROM unnest(calseta_changed_hours('%s', %s, %s, %s)) h "
                               "ORDER BY 1), ',')" % (kind, since, frm, before)) or ""
        assert_eq(hours("alert"), "2026-01-02 03")
        assert_eq(hours("enrichment"), "2026-01-04 07")  # the pending job is not finished
        assert_eq(hours("run"), "2026-01-05 09")
        assert_eq(hours("alert", frm="'2026-01-02 04:00+00'"), "")
        assert_eq(hours("run", before="'2026-01-05 09:00+00'"), "")
        assert_eq(hours("alert", since="'-infinity'"), "")  # before the first pass
        try:
            s.sql("SELECT calseta_changed_hours('alerts', now(), '-infinity', now())")
            raise AssertionError("an unknown kind was answered")
        except RuntimeError as e:
            assert "unknown kind" in str(e), e
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
