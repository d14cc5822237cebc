#!/usr/bin/env python3
"""ingest_bench.py - durable ingest throughput and latency of the real intake, and the ratio to
the ceiling measured in the same run: pgbench committing the same rows the same way
(calseta_ingest_batch, one alert per transaction, same concurrency) against the same server.

Run by hand (not in CI), with a release build and a PostgreSQL that fsyncs:
    make build
    export CALSETA_DATA_DIR=/tmp/calseta-bench; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build/bin/calseta migrate
    python3 tests/bench/ingest_bench.py [--seconds 15] [--connections 64] [--intake 2]
Needs wrk and pgbench (Debian: wrk, postgresql-contrib / postgresql).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("CALSETA_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))
import harness  # noqa: E402

WRK_LUA = r"""
local n = 0
local threads = 0
-- setup runs in the main Lua state; thread:set gives each thread its own global tid
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  n = n + 1
  local body = string.format('{"title":"bench %d-%d-%d","severity":"high","src_ip":"198.51.100.%d",'..
    '"indicators":[{"type":"domain","value":"d%d.example"}]}', tid, n, math.random(1, 1e9), n % 250, n % 1000)
  return wrk.format("POST", "/v1/ingest/generic", {["Authorization"]="Bearer KEY",
    ["Content-Type"]="application/json"}, body)
end
"""

PGBENCH_SQL = """\\set r random(1, 1000000000)
SELECT * FROM calseta_ingest_batch(jsonb_build_array(jsonb_build_object('title', 'pgb ' || :client_id || '-' || :r, 'severity', 'High', 'source_name', 'generic', 'description', NULL, 'occurred_at', now()::text, 'raw_payload', jsonb_build_object('title', 'pgb', 'severity', 'high', 'src_ip', '198.51.100.7'), 'tags', '[]'::jsonb, 'fingerprint', md5(:client_id || '-' || :r), 'indicators', jsonb_build_array(jsonb_build_object('type', 'ip', 'value', '198.51.100.7'), jsonb_build_object('type', 'domain', 'value', 'd' || (:r % 1000) || '.example')), 'rule_ref', NULL, 'actor_key_prefix', 'cai_pgbe')), 24);
"""


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for p in ("50", "75", "90", "99"):
        m = re.search(r"\s%s(?:\.000)?%%\s+([\d.]+)(us|ms|s)" % p, out)
        if m:
            v = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
            lat[p] = v
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, lat, int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--intake", type=int, default=2)
    a = ap.parse_args()

    s = harness.Stack("bench", services=("jobbus", "intake"), intake_processes=a.intake,
                      env={"LOG_LEVEL": "WARNING", "AUDIT_STDOUT": "false"})
    try:
        key = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000000"))
        lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        lua.write(WRK_LUA.replace("KEY", key))
        lua.close()
        out = subprocess.run(["wrk", "-t2", "-c%d" % a.connections, "-d%ds" % a.seconds, "--latency",
                              "-s", lua.name, "http://127.0.0.1:%d" % s.port],
                             capture_output=True, text=True).stdout
        rps, lat, bad = parse_wrk(out)
        stored = int(s.sql_value("SELECT count(*) FROM alerts"))
        dups = int(s.sql_value("SELECT coalesce(sum(duplicate_count), 0) FROM alerts"))

        f = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
        f.write(PGBENCH_SQL)
        f.close()
        pb = subprocess.run(["pgbench", "-n", "-c", str(a.connections), "-j", "2", "-T", str(a.seconds),
                             "-f", f.name, s.db], capture_output=True, text=True)
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", pb.stdout)
        ceiling = float(m.group(1)) if m else float("nan")
        lm = re.search(r"latency average = ([\d.]+) ms", pb.stdout)

        print("intake ingest (wrk, %d connections, %d s, %d intake processes):" % (a.connections, a.seconds, a.intake))
        print("  throughput  %.0f alerts/s (202s; non-2xx: %d; alerts stored: %d, deduplicated: %d)" % (rps, bad, stored, dups))
        print("  latency     p50 %.2f ms  p75 %.2f ms  p90 %.2f ms  p99 %.2f ms" %
              tuple(lat.get(p, float("nan")) for p in ("50", "75", "90", "99")))
        print("ceiling (pgbench, same rows, one alert per transaction, same concurrency):")
        print("  throughput  %.0f alerts/s, latency avg %s ms" % (ceiling, lm.group(1) if lm else "?"))
        print("ratio intake / ceiling: %.2f" % (rps / ceiling))
    finally:
        s.stop()


if __name__ == "__main__":
    main()
