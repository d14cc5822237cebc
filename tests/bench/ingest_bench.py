#!/usr/bin/env python3
"""ingest_bench.py - durable ingest through the real intake, and the ceiling measured in the same
run on the same PostgreSQL.

Load: the five fixtures round-robin, each signed (X-Webhook-Signature / X-Splunk-Signature) and
authenticated with a high-limit key, over 64 keep-alive connections for 30 s (wrk). De-duplication
is off (ALERT_DEDUP_WINDOW_HOURS=0) so every 202 is a new row, and the run checks that the number
of rows equals the number of 202s. Printed: accepted alerts/s, p50/p99/p99.9 latency.

Ceiling: the same rows (the normalised documents the intake stored, read back from the table)
committed straight into the same PostgreSQL the same way - calseta_ingest_batch() with the
average batch size the intake achieved (from pg_stat_user_functions) and the same number of
concurrent batches the intake can have in flight (intake processes x 2) - with pgbench.
Printed: alerts/s and intake/ceiling.

Run by hand (not in CI), with a release build and a PostgreSQL that fsyncs:
    make build
    export CALSETA_DATA_DIR=/tmp/calseta-bench; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build/bin/calseta migrate
    python3 tests/bench/ingest_bench.py [--seconds 30] [--connections 64] [--intake 2]
Needs wrk and pgbench.
"""
import argparse
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("CALSETA_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))
import harness  # noqa: E402

SECRET = "bench-secret"
FIXTURES = [("sentinel", "01_sentinel_brute_force_tor.json"), ("elastic", "02_elastic_malware_hash.json"),
            ("splunk", "03_splunk_anomalous_data_transfer.json"), ("sentinel", "04_sentinel_impossible_travel.json"),
            ("elastic", "05_elastic_suspicious_powershell.json")]


def lua_string(b):
    return '"' + "".join("\\%d" % c for c in b) + '"'


def wrk_script(key):
    reqs = []
    for src, name in FIXTURES:
        body = harness.fixture(name)
        sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        hdr = "X-Splunk-Signature" if src == "splunk" else "X-Webhook-Signature"
        reqs.append('wrk.format("POST", "/v1/ingest/%s", {["Authorization"]="Bearer %s", '
                    '["Content-Type"]="application/json", ["%s"]="%s"}, %s)' % (src, key, hdr, sig, lua_string(body)))
    return ("local reqs = {}\n" + "".join("reqs[%d] = %s\n" % (i + 1, r) for i, r in enumerate(reqs)) +
            "local n = 0\nrequest = function()\n  n = n + 1\n  return reqs[(n %% %d) + 1]\nend\n" % len(reqs) +
            "done = function(summary, latency, requests)\n"
            "  io.write(string.format(\"p999_us %d\\n\", latency:percentile(99.9)))\nend\n")


def parse_wrk(out):
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    lat = {}
    m = re.search(r"p999_us (\d+)", out)
    if m:
        lat["99.9"] = int(m.group(1)) / 1000.0
    for p in ("50", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+([\d.]+)(us|ms|s)\s*$" % re.escape(p), out, re.M)
        if m:
            lat[p] = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    return total, int(non2xx.group(1)) if non2xx else 0, lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--intake", type=int, default=2)
    a = ap.parse_args()

    env = {"LOG_LEVEL": "WARNING", "ALERT_DEDUP_WINDOW_HOURS": 0, "SENTINEL_WEBHOOK_SECRET": SECRET,
           "ELASTIC_WEBHOOK_SECRET": SECRET, "SPLUNK_WEBHOOK_SECRET": SECRET}
    s = harness.Stack("bench", services=(), env=env)
    try:
        s.sql("ALTER DATABASE %s SET track_functions = 'pl'" % s.dbname)
        s.start("auditd")
        s.start("jobbus")
        for _ in range(a.intake):
            s.start_intake()
        s.wait_healthy()
        key = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000000"))
        lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        lua.write(wrk_script(key))
        lua.close()
        out = subprocess.run(["wrk", "-t2", "-c%d" % a.connections, "-d%ds" % a.seconds, "--latency",
                              "--timeout", "10s", "-s", lua.name, "http://127.0.0.1:%d" % s.port],
                             capture_output=True, text=True).stdout
        total, bad, lat = parse_wrk(out)
        accepted = total - bad
        rows = int(s.sql_value("SELECT count(*) FROM alerts"))
        calls = int(s.sql_value("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                                "WHERE funcname = 'calseta_ingest_batch'") or 0)
        batch = max(1, round(rows / calls)) if calls else 1

        # The ceiling: the very documents the intake stored, committed the same way.
        s.sql("CREATE TABLE bench_elems AS SELECT row_number() OVER () - 1 AS i, jsonb_build_object("
              "'title', a.title, 'severity', a.severity, 'source_name', a.source_name, 'description', "
              "a.description, 'occurred_at', a.occurred_at::text, 'raw_payload', a.raw_payload, 'tags', "
              "to_jsonb(a.tags), 'fingerprint', a.fingerprint, 'indicators', coalesce((SELECT jsonb_agg("
              "jsonb_build_object('type', i.type, 'value', i.value)) FROM alert_indicators ai JOIN indicators i "
              "ON i.id = ai.indicator_id WHERE ai.alert_id = a.id), '[]'), 'rule_ref', NULL, "
              "'actor_key_prefix', 'cai_bench') AS e FROM (SELECT DISTINCT ON (source_name, title) * "
              "FROM alerts ORDER BY source_name, title) a")
        n_elems = int(s.sql_value("SELECT count(*) FROM bench_elems"))
        f = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
        f.write("SELECT count(*) FROM calseta_ingest_batch((SELECT jsonb_agg(b.e) FROM generate_series(0, "
                ":batch - 1) g JOIN bench_elems b ON b.i = g %% %d), 0);\n" % n_elems)
        f.close()
        clients = a.intake * 2
        pb = subprocess.run(["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(a.seconds),
                             "-D", "batch=%d" % batch, "-f", f.name, s.db], capture_output=True, text=True)
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", pb.stdout)
        ceiling = float(m.group(1)) * batch if m else float("nan")

        print("intake: %d connections, %d s, %d intake processes, five fixtures round-robin, signed" %
              (a.connections, a.seconds, a.intake))
        print("  accepted    %.0f alerts/s (%d x 202, %d non-2xx)" % (accepted / a.seconds, accepted, bad))
        print("  latency     p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms" %
              tuple(lat.get(p, float("nan")) for p in ("50", "99", "99.9")))
        # Requests still in flight when wrk stops are committed but their 202 is never read:
        # at most one per connection.
        consistent = 0 <= rows - accepted <= a.connections
        print("  rows        %d in alerts for %d x 202 (%d committed while wrk stopped reading): %s" %
              (rows, accepted, rows - accepted, "consistent" if consistent else "INCONSISTENT"))
        print("  batching    %d group commits, %d alerts per commit on average" % (calls, batch))
        print("ceiling: pgbench, calseta_ingest_batch of %d documents, %d concurrent, same server" % (batch, clients))
        print("  throughput  %.0f alerts/s" % ceiling)
        print("ratio intake / ceiling: %.2f" % ((accepted / a.seconds) / ceiling))
        if not consistent:
            sys.exit(1)
    finally:
        s.stop()


if __name__ == "__main__":
    main()
