#!/usr/bin/env python3
"""metrics_bench.py - latency of the metrics routes with a million alerts in the table.

Loads --alerts rows (default 1,000,000) into alerts with COPY, created_at spread evenly over the
last --days days (default 30: every row inside the routes' default window, the hardest case),
with mixed status, severity, source, close classification, timestamps, 50 detection rules, one
enrichment job per alert (mostly done), 20,000 workflow runs and 2,000 approval requests; VACUUM
ANALYZE; waits for the intake's metrics rollup pass over the loaded rows (and times one steady
pass); prints each route's first request (its statements planned on that database connection),
warms every connection of the intake's pool with concurrent requests, then requests each route
--requests times, one at a time over keep-alive, and prints p50/p99/max per route.

Ceiling in the same run (not our code): psql running the plainest aggregate any of these
answers needs - SELECT count(*) FROM alerts WHERE created_at >= now() - 30 days - timed by
PostgreSQL (EXPLAIN ANALYZE execution time), p50/p99 over the same number of runs. The ratio
route p99 / ceiling p99 says what the full answer (every breakdown, JSON, HTTP, auth) costs
beyond counting the window.

Run by hand (not in CI), with a release build:
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2
    export CALSETA_DATA_DIR=/tmp/bench-pg; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build-bench/bin/calseta migrate
    CALSETA_BIN_DIR=build-bench/bin CALSETA_SOURCE_DIR=$PWD python3 tests/bench/metrics_bench.py \
        [--alerts 1000000] [--days 30] [--requests 200] [--layout before]
--layout before puts back the alerts indexes of migration 0032 (a covering created_at index with
twelve columns, a partial enriched_at index) before loading, for a paired comparison.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

POOL = 8  # database connections per intake process (services/intake/main.c)
ROUTES = ["/v1/metrics/alerts", "/v1/metrics/summary", "/v1/metrics/workflows"]
STATUSES = ["Open", "Open", "Triaging", "Escalated", "Closed", "Closed", "Closed"]
SEVERITIES = ["Informational", "Low", "Medium", "High", "Critical", "Pending"]
SOURCES = ["sentinel", "elastic", "splunk", "generic"]
LAYOUT_BEFORE = """DROP INDEX IF EXISTS ix_alerts_created;
CREATE INDEX ix_alerts_created_metrics ON alerts (created_at)
    INCLUDE (status, severity, source_name, close_classification, is_enriched, detection_rule_id,
             occurred_at, ingested_at, enriched_at, acknowledged_at, triaged_at, closed_at);
CREATE INDEX ix_alerts_enriched_at ON alerts (enriched_at) INCLUDE (created_at) WHERE enriched_at IS NOT NULL;
"""
CLASSES = ["True Positive - Suspicious Activity", "False Positive - Incorrect Detection Logic",
           "False Positive - Inaccurate Data", "Benign Positive - Suspicious but Expected", "Duplicate"]


def ts(t):
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(t))


def copy(db, table, cols, rows):
    p = subprocess.Popen(["psql", db, "-q", "-v", "ON_ERROR_STOP=1", "-c",
                          "\\copy %s (%s) FROM STDIN" % (table, ",".join(cols))],
                         stdin=subprocess.PIPE, text=True)
    for r in rows:
        p.stdin.write("\t".join("\\N" if v is None else str(v) for v in r) + "\n")
    p.stdin.close()
    assert p.wait() == 0, "COPY into %s failed" % table


def alert_rows(n, days, rules):
    now = time.time()
    span = days * 86400
    rnd = random.Random(7)
    for i in range(n):
        created = now - span * (i + 0.5) / n
        st = rnd.choice(STATUSES)
        closed = st == "Closed"
        enriched = rnd.random() < 0.9
        yield ("alert %d" % i, rnd.choice(SEVERITIES), rnd.choice(SOURCES), ts(created - rnd.randint(5, 600)),
               ts(created), ts(created), ts(created + 30) if enriched else None, "t" if enriched else "f",
               st, rnd.choice(CLASSES) if closed else None,
               ts(created + 300) if st != "Open" else None, ts(created + 900) if st in ("Triaging", "Closed") else None,
               ts(created + 3600) if closed else None, rnd.randint(1, rules) if rnd.random() < 0.8 else None)


def sql(db, q):
    subprocess.run(["psql", db, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", q], check=True, timeout=1800)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=1000000)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--layout", choices=("current", "before"), default="current",
                    help="before: the alerts indexes up to migration 0032 (the metrics' covering index "
                         "and the enriched_at index), to compare in the same conditions")
    a = ap.parse_args()
    s = harness.Stack("metrics_bench")
    try:
        db = s.db
        if a.layout == "before":
            s.sql(LAYOUT_BEFORE)
        print("alerts indexes: " + s.sql_value("SELECT string_agg(indexrelid::regclass::text, ', ' ORDER BY 1) "
                                               "FROM pg_index WHERE indrelid = 'alerts'::regclass"))
        t0 = time.time()
        s.sql("INSERT INTO detection_rules (name, source_name, source_rule_id) "
              "SELECT 'rule ' || g, 'generic', 'R' || g FROM generate_series(1, 50) g")
        first_rule = int(s.sql_value("SELECT min(id) FROM detection_rules"))
        copy(db, "alerts", ["title", "severity", "source_name", "occurred_at", "created_at", "ingested_at",
                            "enriched_at", "is_enriched", "status", "close_classification", "acknowledged_at",
                            "triaged_at", "closed_at", "detection_rule_id"],
             ((r[:-1] + ((first_rule + r[-1] - 1) if r[-1] else None,)) for r in alert_rows(a.alerts, a.days, 50)))
        sql(db, "INSERT INTO enrichment_jobs (alert_id, status, created_at, completed_at) "
              "SELECT id, CASE WHEN id % 100 = 0 THEN 'pending' WHEN id % 97 = 0 THEN 'failed' ELSE 'done' END, "
              "created_at, CASE WHEN id % 100 = 0 THEN NULL ELSE created_at + interval '30 seconds' END FROM alerts")
        sql(db, "INSERT INTO workflow_runs (workflow_id, trigger_type, code_version_executed, status, duration_ms, created_at) "
              "SELECT (SELECT min(id) FROM workflows), 'manual', 1, CASE WHEN g % 5 = 0 THEN 'failed' ELSE 'success' END, "
              "1200, now() - (g % 30) * interval '1 day' FROM generate_series(1, 20000) g")
        sql(db, "INSERT INTO workflow_approval_requests (workflow_id, trigger_type, trigger_agent_key_prefix, reason, "
              "confidence, status, responded_at, expires_at, created_at) "
              "SELECT (SELECT min(id) FROM workflows), 'agent', 'cai_benc', 'bench', 0.9, "
              "(ARRAY['approved', 'approved', 'rejected', 'pending', 'expired'])[1 + g % 5], "
              "CASE WHEN g % 5 < 3 THEN c + (g % 90) * interval '1 minute' END, c + interval '1 hour', c "
              "FROM (SELECT g, now() - (g % 30) * interval '1 day' - (g % 24) * interval '1 hour' AS c "
              "FROM generate_series(1, 2000) g) x")
        sql(db, "VACUUM ANALYZE")
        loaded = s.sql_value("SELECT now()")
        print("loaded %d alerts (+ as many enrichment jobs, 20,000 runs, 2,000 approval requests) in %.1f s"
              % (a.alerts, time.time() - t0))
        # the intake's housekeeping runs the rollup; wait for a pass that began after the load
        t1 = time.time()
        while s.sql_value("SELECT changes_since >= '%s' FROM metrics_rollup_state" % loaded) != "t":
            assert time.time() - t1 < 1800, "no rollup pass by the intake after the load"
            time.sleep(1)
        print("first rollup pass by the intake done %.1f s after the load (includes up to 15 s of "
              "housekeeping period)" % (time.time() - t1))
        sql(db, "VACUUM ANALYZE alert_metrics_rollup, alert_rule_rollup, enrichment_job_rollup")
        out = subprocess.run(["psql", db, "-X", "-At", "-c", "\\timing on"]
                             + ["-c", "SELECT calseta_metrics_rollup()"] * 3,
                             capture_output=True, text=True, check=True).stdout
        print("steady rollup passes (nothing changed, one session): %s"
              % ", ".join(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Time:")))
        key = s.create_key("admin", extra=("--rate-limit-per-minute", "100000000"))
        # The first request on each of the intake's database connections plans the route's
        # statements; a running intake has planned them long ago. Shown apart, then every pool
        # connection is warmed by concurrent requests (each takes its own connection).
        def get(conn, route):
            t = time.perf_counter()
            conn.request("GET", route, headers={"Authorization": "Bearer " + key})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, (route, r.status)
            return (time.perf_counter() - t) * 1000
        get(http.client.HTTPConnection("127.0.0.1", s.port, timeout=60), "/v1/settings/approval-defaults")  # bcrypt once
        first = {route: get(http.client.HTTPConnection("127.0.0.1", s.port, timeout=60), route) for route in ROUTES}
        print("first request on a new database connection (plans made): %s"
              % ", ".join("%s %.1f ms" % (r, ms) for r, ms in first.items()))

        def warm(_):
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
            for _ in range(3):
                for route in ROUTES:
                    get(c, route)
        with concurrent.futures.ThreadPoolExecutor(POOL) as ex:
            list(ex.map(warm, range(POOL)))
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        print("%-24s %9s %9s %9s" % ("route", "p50 ms", "p99 ms", "max ms"))
        p99s = {}
        for route in ROUTES:
            lat = []
            for i in range(a.requests):
                lat.append(get(conn, route))
            p99s[route] = percentile(lat, 99)
            print("%-24s %9.1f %9.1f %9.1f" % (route, percentile(lat, 50), p99s[route], max(lat)))
        ceil = []
        for i in range(a.requests):
            out = subprocess.run(["psql", db, "-X", "-At", "-c",
                                  "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM alerts "
                                  "WHERE created_at >= now() - interval '30 days'"],
                                 capture_output=True, text=True, check=True).stdout
            ceil.append(json.loads(out)[0]["Execution Time"])
        c99 = percentile(ceil, 99)
        print("%-24s %9.1f %9.1f %9.1f   (PostgreSQL alone: count(*) of the 30-day window)"
              % ("ceiling", percentile(ceil, 50), c99, max(ceil)))
        for route in ROUTES:
            print("ratio p99 %-22s %.2f x ceiling   %s 50 ms" % (route, p99s[route] / c99,
                                                             "within" if p99s[route] < 50 else "OVER"))
        print("load average:", os.getloadavg())
        print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        s.stop()


if __name__ == "__main__":
    main()
