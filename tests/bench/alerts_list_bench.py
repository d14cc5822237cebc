#!/usr/bin/env python3
"""alerts_list_bench.py - GET /v1/alerts with a million alerts in the table, per sort.

Loads --alerts rows (default 1,000,000) with COPY through metrics_bench.py's loader (created_at
spread over --days days), then gives updated_at the shape ingest and analysts leave: most rows
updated within minutes of creation, one in fifty days later (a duplicate or an analyst's change).
VACUUM ANALYZE. Then, one request at a time over keep-alive, --requests requests per case:
page 1 (50 alerts) sorted by created_at, updated_at, occurred_at and severity, updated_at with a
status filter, and a deep page (page 200) by updated_at; p50/p99/max per case, and the temporary
file bytes PostgreSQL wrote during the whole run (pg_stat_database.temp_bytes: the old list query
materialised and sorted every matching row on disk).

Ceiling in the same run (not our code), PostgreSQL alone, EXPLAIN ANALYZE execution time, p50/p99
over the same number of runs: (a) SELECT count(*) FROM alerts, which every list answer carries
as meta.total; (b) SELECT id FROM alerts ORDER BY updated_at DESC, id DESC LIMIT 50, the bare
top-N read a sort without an index needs. Ratio: route p99 / (a + b) p99.

Run by hand (not in CI), with a release build:
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j2
    export CALSETA_DATA_DIR=/tmp/bench-pg; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build/bin/calseta migrate
    CALSETA_BIN_DIR=build/bin CALSETA_SOURCE_DIR=$PWD flock /work/bench.lock \\
        python3 tests/bench/alerts_list_bench.py [--alerts 1000000] [--requests 30]
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
import metrics_bench as mb  # noqa: E402

CASES = [
    ("sort_by=created_at", "/v1/alerts?page_size=50&sort_by=created_at"),
    ("sort_by=updated_at", "/v1/alerts?page_size=50&sort_by=updated_at"),
    ("sort_by=occurred_at", "/v1/alerts?page_size=50&sort_by=occurred_at"),
    ("sort_by=severity", "/v1/alerts?page_size=50&sort_by=severity"),
    ("updated_at, status=Open", "/v1/alerts?page_size=50&sort_by=updated_at&status=Open"),
    ("updated_at, page 200", "/v1/alerts?page_size=50&page=200&sort_by=updated_at"),
]


def explain_ms(db, q):
    out = subprocess.run(["psql", db, "-X", "-At", "-c", "EXPLAIN (ANALYZE, FORMAT JSON) " + q],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["Execution Time"]


def temp_bytes(s):
    return int(s.sql_value("SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=1000000)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--requests", type=int, default=30)
    a = ap.parse_args()
    s = harness.Stack("alerts_list_bench")
    try:
        db = s.db
        t0 = time.time()
        mb.copy(db, "alerts", ["title", "severity", "source_name", "occurred_at", "created_at",
                               "ingested_at", "enriched_at", "is_enriched", "status",
                               "close_classification", "acknowledged_at", "triaged_at", "closed_at",
                               "detection_rule_id"],
                (r[:-1] + (None,) for r in mb.alert_rows(a.alerts, a.days, 50)))
        # COPY stamped every updated_at with the load's time: give it the shape of real use
        mb.sql(db, "UPDATE alerts SET updated_at = CASE WHEN id % 50 = 0 "
                   "THEN created_at + (id % 20) * interval '1 day' "
                   "ELSE created_at + (id % 600) * interval '1 second' END")
        mb.sql(db, "VACUUM ANALYZE alerts")
        print("loaded %d alerts in %.1f s" % (a.alerts, time.time() - t0))
        key = s.create_key("admin", extra=("--rate-limit-per-minute", "100000000"))

        def get(conn, route):
            t = time.perf_counter()
            conn.request("GET", route, headers={"Authorization": "Bearer " + key})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (route, r.status, body[:300])
            return (time.perf_counter() - t) * 1000

        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=300)
        get(conn, "/v1/settings/approval-defaults")  # bcrypt once
        tb0 = temp_bytes(s)
        print("%-26s %9s %9s %9s" % ("GET /v1/alerts", "p50 ms", "p99 ms", "max ms"))
        p99s = {}
        for name, route in CASES:
            get(conn, route)  # plan made on this connection
            lat = [get(conn, route) for _ in range(a.requests)]
            p99s[name] = mb.percentile(lat, 99)
            print("%-26s %9.1f %9.1f %9.1f" % (name, mb.percentile(lat, 50), p99s[name], max(lat)))
        time.sleep(1.5)  # backends publish their statistics at most once a second
        tb = temp_bytes(s) - tb0
        print("temporary files written by PostgreSQL during the requests: %d bytes" % tb)
        cnt = [explain_ms(db, "SELECT count(*) FROM alerts") for _ in range(a.requests)]
        top = [explain_ms(db, "SELECT id FROM alerts ORDER BY updated_at DESC, id DESC LIMIT 50")
               for _ in range(a.requests)]
        c99, t99 = mb.percentile(cnt, 99), mb.percentile(top, 99)
        print("%-26s %9.1f %9.1f %9.1f   (PostgreSQL alone)" % ("ceiling: count(*)", mb.percentile(cnt, 50), c99, max(cnt)))
        print("%-26s %9.1f %9.1f %9.1f   (PostgreSQL alone)" % ("ceiling: top-50 updated_at", mb.percentile(top, 50), t99, max(top)))
        for name, _ in CASES:
            print("ratio p99 %-24s %.2f x (count + top-N ceiling)" % (name, p99s[name] / (c99 + t99)))
        print("load average:", os.getloadavg())
        print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        s.stop()


if __name__ == "__main__":
    main()
