#!/usr/bin/env python3
"""alert_write_cost.py - what the indexes of alerts cost each alert write, measured without a clock.

Captures the five fixture alerts as the intake hands them to calseta_ingest_batch(): they are
posted (signed) to a real intake, and each batch document element is rebuilt from the rows the
intake wrote (title, severity, source, description, occurred_at, payload, tags, fingerprint,
indicators, rule reference). Then, for each index layout, in a fresh database cloned from the
migrated template:

  before   the layout up to migration 0032: ix_alerts_created_metrics (created_at INCLUDE twelve
           columns) and ix_alerts_enriched_at (partial, enriched alerts), alerts at fillfactor 100
  after    the current index layout (ix_alerts_created on created_at alone, no enriched_at
           index), alerts at fillfactor 100 (as before migration 0075)
  after-ff90  (optional, --layouts) the current layout with alerts at fillfactor 90, as migration
           0075 sets it: room on each page for the next version of a row, so that updates can be
           heap-only

Each layout sets its own fillfactor whatever the template has, so the comparisons stay the same
after a migration changes the table's setting.

it runs, in one database session whose server process it watches:
  1. ingest: --batches calls of calseta_ingest_batch(<--batch fixture alerts as JSON text>, 0)
     (de-duplication off, as the intake sends them) - backend CPU us per alert (utime+stime of
     the backend from /proc), WAL bytes per alert (pg_current_wal_insert_lsn), index entries
     and index bytes per alert on alerts;
  2. the updates an alert's life makes, each over every alert in id order, 15 alerts per
     statement (the enricher's and an analyst's batches): enrichment (is_enriched, enriched_at,
     enrichment_status), triage (status, acknowledged_at, triaged_at), close (status, closed_at,
     close_classification) - heap-only (HOT) share from pg_stat_user_tables, backend CPU and
     WAL bytes per alert updated;
  3. after VACUUM ANALYZE: the rollup of the hour holding the alerts
     (calseta_alert_rollup_hours) and the live count of the same hour that a metrics request
     makes before the pass (calseta_alert_stats over the window), backend CPU ms each
     (mean of 10 calls).

  4. (--list-rows, both layouts) the filtered totals of GET /v1/alerts, which the covering index
     answered index-only: PostgreSQL's execution time of the count on synthetic alerts.

The ceiling, in the same run and not our code: a plain INSERT of the same documents as alert
rows into a scratch table with only a primary key and a created_at index (one statement per
batch), backend CPU and WAL per alert; at fillfactor 100, and again at 90 when an -ff90 layout
runs (each layout's ratio is to the ceiling of its own fillfactor).

Every figure is CPU time of one backend or bytes, so it does not depend on what else runs on the
machine; still run it under the benchmark lock:
    flock /work/bench.lock python3 tests/bench/alert_write_cost.py [--batches 1340] [--batch 15]
Needs DATABASE_URL (a migrated cluster), CALSETA_BIN_DIR, CALSETA_SOURCE_DIR as the integration
tests do.
"""
import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

SECRET = "bench-secret"
FIXTURES = [("sentinel", "01_sentinel_brute_force_tor.json"), ("elastic", "02_elastic_malware_hash.json"),
            ("splunk", "03_splunk_anomalous_data_transfer.json"), ("sentinel", "04_sentinel_impossible_travel.json"),
            ("elastic", "05_elastic_suspicious_powershell.json")]

BEFORE = """DROP INDEX IF EXISTS ix_alerts_created;
CREATE INDEX ix_alerts_created_metrics ON alerts (created_at)
    INCLUDE (status, severity, source_name, close_classification, is_enriched, detection_rule_id,
             occurred_at, ingested_at, enriched_at, acknowledged_at, triaged_at, closed_at);
CREATE INDEX ix_alerts_enriched_at ON alerts (enriched_at) INCLUDE (created_at) WHERE enriched_at IS NOT NULL;
"""

UPDATES = [
    ("enrichment", "is_enriched = true, enriched_at = now(), enrichment_status = 'Enriched', updated_at = now()"),
    ("triage", "status = 'Triaging', acknowledged_at = now(), triaged_at = now(), updated_at = now()"),
    ("close", "status = 'Closed', closed_at = now(), "
              "close_classification = 'False Positive - Incorrect Detection Logic', updated_at = now()"),
]

CEILING_TABLE = """CREATE TABLE scratch_alerts (
    id BIGSERIAL PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    title TEXT NOT NULL, description TEXT, severity TEXT NOT NULL, source_name TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL, raw_payload JSONB NOT NULL, tags TEXT[] NOT NULL, fingerprint TEXT);
ALTER TABLE scratch_alerts ALTER COLUMN raw_payload SET COMPRESSION lz4;
CREATE INDEX ON scratch_alerts (created_at);
"""


class Session:
    """One psql process (one backend) fed statement by statement; reads the backend's CPU."""

    def __init__(self, db):
        self.p = subprocess.Popen(["psql", db, "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = int(self.ask("SELECT pg_backend_pid()"))
        self.tick = os.sysconf("SC_CLK_TCK")

    def ask(self, q):
        self.p.stdin.write(q + ";\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("psql ended while running: " + q[:200])
        return line.strip()

    def run_quiet(self, script):
        """Runs statements whose results are discarded, then waits for them to finish."""
        self.p.stdin.write("\\o /dev/null\n" + script + "\\o\n")
        self.p.stdin.flush()
        assert self.ask("SELECT 'sync'") == "sync"

    def cpu_us(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1e6 / self.tick

    def wal(self):
        return self.ask("SELECT pg_current_wal_insert_lsn()")

    def wal_diff(self, a, b):
        return int(float(self.ask("SELECT pg_wal_lsn_diff('%s', '%s')" % (b, a))))

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=60)


def capture(args):
    """The batch document elements of the five fixtures, as the intake built them."""
    env = {"LOG_LEVEL": "WARNING", "ALERT_DEDUP_WINDOW_HOURS": 0, "SENTINEL_WEBHOOK_SECRET": SECRET,
           "ELASTIC_WEBHOOK_SECRET": SECRET, "SPLUNK_WEBHOOK_SECRET": SECRET}
    s = harness.Stack("write_cost_capture", services=("intake",), env=env)
    try:
        key = s.create_key("admin")
        for src, name in FIXTURES:
            body = harness.fixture(name)
            sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            hdr = "X-Splunk-Signature" if src == "splunk" else "X-Webhook-Signature"
            r = s.request("POST", "/v1/ingest/" + src, key=key, body=body,
                          headers={"Content-Type": "application/json", hdr: sig})
            assert r.status == 202, (src, r.status, r.body[:300])
        harness.wait_for(lambda: s.sql_value("SELECT count(*) FROM alerts") == str(len(FIXTURES)),
                         what="the five fixture alerts written")
        doc = s.sql_value(
            "SELECT jsonb_agg(jsonb_build_object("
            "'title', a.title, 'severity', a.severity, 'source_name', a.source_name, "
            "'description', a.description, 'occurred_at', a.occurred_at, 'raw_payload', a.raw_payload, "
            "'tags', to_jsonb(a.tags), 'fingerprint', a.fingerprint, 'actor_key_prefix', 'cai_bench', "
            "'rule_ref', (SELECT d.source_rule_id FROM detection_rules d WHERE d.id = a.detection_rule_id), "
            "'indicators', coalesce((SELECT jsonb_agg(jsonb_build_object('type', i.type, 'value', i.value) "
            "ORDER BY i.type, i.value) FROM indicators i WHERE i.id = ANY (a.indicator_ids)), '[]')) "
            "ORDER BY a.id) FROM alerts a")
    finally:
        s.stop()
    docs = json.loads(doc)
    assert len(docs) == len(FIXTURES), docs
    return docs


def batches(docs, n, size):
    """n batches of size fixture alerts round-robin, as JSON text literals."""
    out = []
    k = 0
    for _ in range(n):
        b = []
        for _ in range(size):
            b.append(docs[k % len(docs)])
            k += 1
        out.append(json.dumps(b))
    return out


def alert_index_bytes(sess):
    rows = sess.ask("SELECT string_agg(c.relname || '=' || pg_relation_size(c.oid), ',' ORDER BY c.relname) "
                    "FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                    "WHERE x.indrelid = 'alerts'::regclass")
    return dict((k, int(v)) for k, v in (p.split("=") for p in rows.split(",")))


def hot_stats(sess):
    sess.ask("SELECT pg_stat_force_next_flush()")
    # a new transaction of a new statement sees the flushed counters
    v = sess.ask("SELECT n_tup_upd || ',' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'alerts'")
    u, h = v.split(",")
    return int(u), int(h)


def mean_cpu_ms(sess, q, n=10):
    """Backend CPU per call over n calls (the clock-tick resolution of /proc divided by n)."""
    c0 = sess.cpu_us()
    sess.run_quiet((q + ";\n") * n)
    return (sess.cpu_us() - c0) / 1000 / n


def layout_fillfactor(layout):
    return 90 if layout.endswith("-ff90") else 100


def measure(layout, docs, a):
    s = harness.Stack("write_cost_" + layout, services=())
    res = {}
    try:
        if layout == "before":
            s.sql(BEFORE)
        s.sql("ALTER TABLE alerts SET (fillfactor = %d)" % layout_fillfactor(layout))
        sess = Session(s.db)
        texts = batches(docs, a.batches, a.batch)
        n = a.batches * a.batch
        # one warm-up batch (plans, caches), not counted
        sess.run_quiet("SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 0);\n" % texts[0])
        base = int(sess.ask("SELECT count(*) FROM alerts"))
        sess.run_quiet("CHECKPOINT;\n")  # every run starts with the same full-page images to write
        idx0 = alert_index_bytes(sess)
        w0, c0 = sess.wal(), sess.cpu_us()
        sess.run_quiet("".join("SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 0);\n" % t
                               for t in texts))
        c1, w1 = sess.cpu_us(), sess.wal()
        got = int(sess.ask("SELECT count(*) FROM alerts")) - base
        assert got == n, (got, n)
        idx1 = alert_index_bytes(sess)
        res["ingest_cpu_us"] = (c1 - c0) / n
        res["ingest_wal_b"] = sess.wal_diff(w0, w1) / n
        res["index_bytes"] = {k: (idx1[k] - idx0.get(k, 0)) / n for k in idx1}
        res["index_count"] = len(idx1)
        # index entries each new alert adds: one per index, but partial indexes only when the row
        # matches (ix_alerts_detection_rule: alerts with a rule; ix_alerts_enriched_at: none yet)
        res["entries"] = sess.ask(
            "SELECT count(*) + (SELECT count(*) FILTER (WHERE detection_rule_id IS NOT NULL)::float8 "
            "/ count(*) FROM alerts) FROM pg_index x WHERE x.indrelid = 'alerts'::regclass "
            "AND x.indpred IS NULL")
        ids = sess.ask("SELECT min(id) || ',' || max(id) FROM alerts").split(",")
        lo, hi = int(ids[0]), int(ids[1])
        res["updates"] = []
        for name, sets in UPDATES:
            sess.run_quiet("CHECKPOINT;\n")
            u0, h0 = hot_stats(sess)
            w0, c0 = sess.wal(), sess.cpu_us()
            sess.run_quiet("".join("UPDATE alerts SET %s WHERE id BETWEEN %d AND %d;\n" % (sets, i, i + 14)
                                   for i in range(lo, hi + 1, 15)))
            c1, w1 = sess.cpu_us(), sess.wal()
            u1, h1 = hot_stats(sess)
            nu = u1 - u0
            res["updates"].append((name, nu, (h1 - h0) / nu if nu else 0, (c1 - c0) / nu,
                                   sess.wal_diff(w0, w1) / nu))
        sess.run_quiet("VACUUM ANALYZE alerts;\n")
        hour = sess.ask("SELECT date_trunc('hour', min(created_at), 'UTC') FROM alerts")
        span = sess.ask("SELECT count(DISTINCT date_trunc('hour', created_at, 'UTC')) FROM alerts")
        res["hours"] = span
        res["rollup_ms"] = mean_cpu_ms(
            sess, "SELECT calseta_alert_rollup_hours(ARRAY(SELECT DISTINCT date_trunc('hour', created_at, "
                  "'UTC') FROM alerts), now())")
        res["live_ms"] = mean_cpu_ms(sess, "SELECT calseta_alert_stats('%s', 'infinity')" % hour)
        res["alerts"] = n
        sess.close()
    finally:
        s.stop()
    return res


LIST_COUNTS = ("status = 'Open'", "severity = 'High' AND is_enriched = false")


def list_counts(layout, a):
    """meta.total of GET /v1/alerts with filters (the route's count statement), on --list-rows
    synthetic alerts of ~900 bytes each: the one reader the covering index served beyond the
    metrics. PostgreSQL's execution time (EXPLAIN ANALYZE), median of 5, and the scan used."""
    s = harness.Stack("write_cost_list_" + layout, services=())
    out = []
    try:
        if layout == "before":
            s.sql(BEFORE)
        s.sql("ALTER TABLE alerts SET (fillfactor = %d)" % layout_fillfactor(layout))
        s.sql("INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload, tags, fingerprint, "
              "status, created_at) SELECT 'alert ' || g, (ARRAY['Low','Medium','High'])[1 + g %% 3], 'generic', "
              "now(), jsonb_build_object('d', repeat(md5(g::text), 20)), '{}', 'f' || g, "
              "(ARRAY['Open','Open','Triaging','Closed','Closed','Closed','Escalated'])[1 + g %% 7], "
              "now() - g * interval '1 second' FROM generate_series(1, %d) g" % a.list_rows)
        s.sql("VACUUM ANALYZE alerts")
        for cond in LIST_COUNTS:
            ts = []
            for _ in range(5):
                plan = json.loads(subprocess.run(
                    ["psql", s.db, "-XAt", "-c", "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM alerts a "
                     "WHERE TRUE AND a.%s" % cond], capture_output=True, text=True, check=True).stdout)[0]
                ts.append(plan["Execution Time"])
            scans, todo = [], [plan["Plan"]]
            while todo:
                n = todo.pop()
                todo.extend(n.get("Plans", []))
                if "Scan" in n["Node Type"]:
                    scans.append(n["Node Type"] + (" " + n["Index Name"] if "Index Name" in n else ""))
            out.append((cond, statistics.median(ts), ", ".join(scans)))
    finally:
        s.stop()
    return out


def ceiling(docs, a, fillfactor):
    s = harness.Stack("write_cost_ceiling", services=())
    try:
        s.sql(CEILING_TABLE)
        s.sql("ALTER TABLE scratch_alerts SET (fillfactor = %d)" % fillfactor)
        sess = Session(s.db)
        texts = batches(docs, a.batches, a.batch)
        stmt = ("INSERT INTO scratch_alerts (title, description, severity, source_name, occurred_at, raw_payload, "
                "tags, fingerprint) SELECT e->>'title', e->>'description', e->>'severity', e->>'source_name', "
                "(e->>'occurred_at')::timestamptz, e->'raw_payload', "
                "ARRAY(SELECT jsonb_array_elements_text(e->'tags')), e->>'fingerprint' "
                "FROM jsonb_array_elements($j$%s$j$::jsonb) e;\n")
        sess.run_quiet(stmt % texts[0])
        n = a.batches * a.batch
        w0, c0 = sess.wal(), sess.cpu_us()
        sess.run_quiet("".join(stmt % t for t in texts))
        c1, w1 = sess.cpu_us(), sess.wal()
        out = {"cpu_us": (c1 - c0) / n, "wal_b": sess.wal_diff(w0, w1) / n}
        sess.close()
        return out
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=1340)
    ap.add_argument("--batch", type=int, default=15)
    ap.add_argument("--layouts", default="before,after")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each layout, interleaved")
    ap.add_argument("--list-rows", type=int, default=300000,
                    help="alerts for the filtered list totals (0: skip them)")
    a = ap.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    t0 = time.time()
    docs = capture(a)
    runs = []
    for _ in range(a.repeat):
        for layout in a.layouts.split(","):
            runs.append((layout, measure(layout, docs, a)))
    # each layout's run of median ingest CPU is the one shown
    results = {}
    for layout in a.layouts.split(","):
        mine = sorted((r for k, r in runs if k == layout), key=lambda r: r["ingest_cpu_us"])
        results[layout] = mine[(len(mine) - 1) // 2]
    ceil = {ff: ceiling(docs, a, ff) for ff in sorted({layout_fillfactor(k) for k in results}, reverse=True)}
    counts = {k: list_counts(k, a) for k in ("before", "after")} if a.list_rows else {}
    print("%d alerts per layout (%d batches of %d fixture alerts), de-duplication off" %
          (a.batches * a.batch, a.batches, a.batch))
    print("ingest runs in order: " + ", ".join("%s %.0f us %.0f B" % (k, r["ingest_cpu_us"], r["ingest_wal_b"])
                                               for k, r in runs))
    print("%-8s %12s %12s %9s %12s" % ("layout", "CPU us/alert", "WAL B/alert", "indexes", "entries/alert"))
    for k, r in results.items():
        print("%-8s %12.0f %12.0f %9d %12s" % (k, r["ingest_cpu_us"], r["ingest_wal_b"], r["index_count"],
                                                r["entries"]))
    for ff, c in ceil.items():
        print("%-8s %12.0f %12.0f %9d %12s   (plain INSERT of the same alerts, pkey + created_at, fillfactor %d)" %
              ("ceiling" if ff == 100 else "ceil-ff%d" % ff, c["cpu_us"], c["wal_b"], 2, "2", ff))
    for k, r in results.items():
        c = ceil[layout_fillfactor(k)]
        print("ratio %-8s CPU %.2f x ceiling, WAL %.2f x ceiling (fillfactor %d both)" %
              (k, r["ingest_cpu_us"] / c["cpu_us"], r["ingest_wal_b"] / c["wal_b"], layout_fillfactor(k)))
    for k, r in results.items():
        print("index bytes per alert, %s: %s (total %.0f)" % (
            k, ", ".join("%s %.0f" % (i, b) for i, b in sorted(r["index_bytes"].items())),
            sum(r["index_bytes"].values())))
    print("%-8s %-11s %8s %6s %14s %12s" % ("layout", "update", "rows", "HOT", "CPU us/row", "WAL B/row"))
    for k, r in results.items():
        for name, nu, hot, cpu, wal in r["updates"]:
            print("%-8s %-11s %8d %5.0f%% %14.0f %12.0f" % (k, name, nu, hot * 100, cpu, wal))
    for k, r in results.items():
        print("%-8s rollup of %s hour(s) holding %d alerts: %.1f ms CPU; live count of them "
              "(calseta_alert_stats, before a pass): %.1f ms CPU" %
              (k, r["hours"], r["alerts"], r["rollup_ms"], r["live_ms"]))
    for k, rows in counts.items():
        for cond, ms, scans in rows:
            print("%-8s list total of %d alerts WHERE %s: %.1f ms (PostgreSQL execution, median of 5; %s)"
                  % (k, a.list_rows, cond, ms, scans))
    print("done in %.0f s" % (time.time() - t0))
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
