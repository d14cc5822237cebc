"""The metrics add no index entry to an alert's later updates, and still see them.

Alerts ingested by calseta_ingest_batch() on a page with room, then changed through the platform's
own statements - an analyst's triage and close (calseta_alert_patch) and the enricher's claim and
completion - are updated heap-only (HOT): no index of alerts carries a column those updates change.
A covering index for the metrics (INCLUDE status, timestamps, ...) or an index on enriched_at
makes every one of them write an entry in every index, and this test fail. And the rollup pass
still finds an alert enriched since it ran, through the alert's finished job."""
import json

from harness import Stack, assert_eq, run_tests, wait_for


def batch(n):
    return json.dumps([{"title": "Cost %d" % i, "severity": "High", "source_name": "generic", "description": None,
                        "occurred_at": "2026-01-01T00:00:00Z", "raw_payload": {"i": i}, "tags": ["cost"],
                        "fingerprint": "cost-%d" % i, "indicators": [{"type": "ip", "value": "198.51.100.%d" % i}],
                        "rule_ref": "cost-rule", "actor_key_prefix": "cai_cost"} for i in range(n)])


def updates(s):
    """(all updates, heap-only ones) of alerts, once the counters of finished sessions are in."""
    v = s.sql_value("SELECT n_tup_upd || ',' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'alerts'")
    return tuple(int(x) for x in v.split(","))


def test_platform_updates_of_an_alert_are_heap_only():
    s = Stack("metrics_write_cost", services=())
    try:
        n = 6
        assert_eq(s.sql_value("SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 0)" % batch(n)), str(n))
        uuids = [r[0] for r in s.sql("SELECT uuid FROM alerts ORDER BY id")]
        for u in uuids:
            for body in ({"status": "Triaging"}, {"status": "Closed", "close_classification": "Duplicate"}):
                out = s.sql_value("SELECT calseta_alert_patch('%s', '%s', 'cai_cost', 'api')" % (u, json.dumps(body)))
                assert_eq(json.loads(out)["status"], body["status"])
        jobs = [r[0] for r in s.sql("SELECT job_id FROM calseta_enrich_claim('cost-test', 60, 100, 5)")]
        assert_eq(len(jobs), n)
        for j in jobs:
            assert_eq(s.sql_value("SELECT calseta_enrich_complete(%s, 'cost-test', "
                                  "'{\"indicators\": [], \"cache\": []}')" % j), "done")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE is_enriched AND status = 'Closed' "
                              "AND triaged_at IS NOT NULL AND closed_at IS NOT NULL"), str(n))
        # three updates per alert: triage, close, enrichment
        wait_for(lambda: updates(s)[0] >= 3 * n, 20, 0.1, "the update counters of alerts")
        total, hot = updates(s)
        assert_eq(total, 3 * n)
        assert_eq(hot, total, "updates of alerts that wrote index entries: %d of %d" % (total - hot, total))
    finally:
        s.stop()


def test_rollup_finds_alerts_enriched_since_through_their_jobs():
    s = Stack("metrics_enriched_hours", services=())
    try:
        assert_eq(s.sql_value("SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 0)" % batch(3)), "3")
        # as if ingested two days ago, before the last rollup pass
        s.sql("UPDATE alerts SET created_at = created_at - interval '2 days'")
        since = s.sql_value("SELECT now()")
        hour = s.sql_value("SELECT date_trunc('hour', min(created_at), 'UTC') FROM alerts")
        changed = "SELECT calseta_changed_hours('alert', '%s', '-infinity', now())::text" % since
        assert_eq(s.sql_value(changed), "{}")
        job = s.sql_value("SELECT job_id FROM calseta_enrich_claim('cost-test', 60, 1, 5)")
        assert_eq(s.sql_value("SELECT calseta_enrich_complete(%s, 'cost-test', "
                              "'{\"indicators\": [], \"cache\": []}')" % job), "done")
        got = s.sql_value("SELECT calseta_changed_hours('alert', '%s', '-infinity', now()) = ARRAY['%s'::timestamptz]"
                          % (since, hour))
        assert_eq(got, "t", s.sql_value(changed))
        # nothing before the first pass, nothing outside the asked hours
        assert_eq(s.sql_value("SELECT calseta_changed_hours('alert', '-infinity', '-infinity', now())::text"), "{}")
        assert_eq(s.sql_value("SELECT calseta_changed_hours('alert', '%s', now() - interval '1 day', now())::text"
                              % since), "{}")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
