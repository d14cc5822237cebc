"""The plans of the group-commit function: every table is reached by index, whatever the table
sizes were when the connection made its (kept) generic plan. A plan made on empty tables used to
join a batch to indicators and alerts with hash joins over sequential scans, and kept them while
the tables grew, so every batch read whole tables."""
import json
import re
import subprocess

from harness import Stack, run_tests

TABLES = ("alerts", "indicators", "detection_rules", "alert_indicators", "enrichment_jobs")


def batch(tag, n, repeat=True):
    """n alerts sharing one IP, each with a domain of its own, two rules (one new), one repeat
    (so the duplicates' statement runs as well: with every other alert new, or, where the test
    stored alerts of these fingerprints first, with every alert a duplicate). Without the repeat
    (every fingerprint once), the de-duplication looks the originals up in its lean form."""
    out = []
    for i in range(n):
        out.append({"title": "Plan %s %d" % (tag, i), "severity": "High", "source_name": "generic",
                    "description": None, "occurred_at": "2026-01-01T00:00:00Z", "raw_payload": {"i": i},
                    "tags": ["plan"], "fingerprint": "plan-%s-%d" % (tag, i % (n - 1) if repeat else i),
                    "indicators": [{"type": "ip", "value": "198.51.100.7"},
                                   {"type": "domain", "value": "d%d.%s.example" % (i, tag)}],
                    "rule_ref": "plan-rule-%s" % ("old" if i % 2 else tag), "actor_key_prefix": "cai_plan"})
    return json.dumps(out)


def call(doc, hours):
    return "SELECT count(*) FROM calseta_ingest_batch($json$%s$json$::jsonb, %d);\n" % (doc, hours)


def plans_of_second_call(s, grow):
    """One session: a first call on the tables as they are (the connection makes its plans), then
    grow (SQL), then a second call whose nested statement plans auto_explain reports. Returns the
    report of the second call."""
    script = ("SET client_min_messages = warning;\n" + call(batch("first", 4), 24) + call(batch("first0", 4), 0) +
              call(batch("first1", 4, repeat=False), 24) +
              grow + "LOAD 'auto_explain';\nSET auto_explain.log_min_duration = 0;\n"
              "SET auto_explain.log_nested_statements = on;\nSET auto_explain.log_level = notice;\n"
              "SET client_min_messages = notice;\n" + call(batch("second", 12), 24) + call(batch("second0", 12), 0) +
              call(batch("second1", 12, repeat=False), 24))
    r = subprocess.run(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=script, capture_output=True,
                       text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert "calseta_ingest_batch" in r.stderr, "auto_explain reported nothing:\n" + r.stderr[:2000]
    return r.stderr


def assert_index_only(report, what):
    scans = re.findall(r"Seq Scan on (\w+)", report)
    bad = sorted({t for t in scans if t in TABLES})
    assert not bad, "%s: sequential scans of %s in the ingest plans:\n%s" % (what, bad, report[:6000])
    assert re.search(r"Index (Only )?Scan using uq_indicator_type_value", report), report[:4000]
    assert re.search(r"Index Scan using ix_alerts_fingerprint_key", report), report[:4000]
    # the duplicates' counts: each original updated through its key, and no row lock per alert
    # or per event (a check of each duplicate's event against its alert locked the alert's row)
    assert re.search(r"Update on alerts", report), report[:4000]
    assert re.search(r"Index Scan using alerts_pkey on alerts", report), report[:4000]
    assert "LockRows" not in report, "%s: a row lock per alert in the ingest plans:\n%s" % (what, report[:6000])
    # both forms of the originals' lookup reach alerts through the fingerprint's key
    for form in (r"jsonb_object_agg\(e\.fp", r"jsonb_object_agg\(t\.fp"):
        plans = [p for p in report.split("Query Text:") if re.match(r"\s*SELECT " + form, p)]
        assert plans, "%s: no plan of the lookup %s:\n%s" % (what, form, report[:6000])
        for p in plans:
            assert re.search(r"Index Scan using ix_alerts_fingerprint_key", p), p[:3000]


def test_plan_made_on_empty_tables_stays_indexed_as_they_grow():
    s = Stack("ingest_plans", services=())
    try:
        # alerts of six of the second batch's eleven fingerprints: its de-duplicated call is a
        # mix (duplicates of these, the other five new), so the statements of a mix that read
        # tables - the lookup, the insert, the duplicates' update - are explained on the grown
        # tables with the plans made when they were empty (its 24 indicator references are few
        # enough that its sightings row is found by a loop and written by a plain INSERT ...
        # VALUES, which reads no table; the statement that finds it in a bigger mix reads none
        # either)
        grow = ("INSERT INTO indicators (type, value, first_seen, last_seen) SELECT 'domain', 'g' || g || '.example', now(), now() "
                "FROM generate_series(1, 20000) g;\n"
                "INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload, tags, fingerprint) "
                "SELECT 'g', 'Low', 'generic', now(), '{}', '{}', 'plan-second-' || (g % 6) "
                "FROM generate_series(1, 20000) g;\n")
        report = plans_of_second_call(s, grow)
        assert_index_only(report, "plan kept from empty tables")
        assert re.search(r"Insert on alerts", report) and re.search(r"Insert on indicator_sightings", report), report[:4000]
        # the de-duplicated second call: plan-second-6..10 new, 0..5 and the repeat counted
        rows = s.sql_value("SELECT count(*) FROM alerts WHERE title LIKE 'Plan second %'")
        assert rows == "5", rows
        assert s.sql_value("SELECT sum(duplicate_count) FROM alerts WHERE fingerprint LIKE 'plan-second-%' "
                           "AND title = 'g'") == "7", "the second call's duplicates"
    finally:
        s.stop()


def test_plan_made_on_analyzed_mid_size_tables_is_indexed():
    s = Stack("ingest_plans_mid", services=())
    try:
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) SELECT 'domain', 'm' || g || '.example', now(), now() "
              "FROM generate_series(1, 5000) g")
        s.sql("INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload, tags, fingerprint) "
              "SELECT 'm', 'Low', 'generic', now(), '{}', '{}', 'm-' || g FROM generate_series(1, 5000) g")
        s.sql("ANALYZE indicators")
        s.sql("ANALYZE alerts")
        assert_index_only(plans_of_second_call(s, ""), "plan made on analyzed tables")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
