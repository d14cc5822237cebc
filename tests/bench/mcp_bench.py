#!/usr/bin/env python3
"""mcp_bench.py - MCP tools/call search_alerts over 32 sessions beside the REST list, in one run.

Three measurements, each for --seconds with 32 keep-alive connections (wrk, one thread and one
connection per MCP session):
  pgbench: the statement search_alerts runs (count + page of 20 alert summaries), straight to
           PostgreSQL with 32 clients - the ceiling that is not our code;
  REST:    GET /v1/alerts?page_size=20 with a key (auth cache hit, key re-read + rate count, list);
  MCP:     POST /mcp tools/call search_alerts {page_size: 20}, 32 sessions (one per connection):
           the same authentication plus the session lookup, JSON-RPC framing and the result as
           JSON text.
200 alerts are ingested first. Printed: requests/s, p50/p99 latency, non-2xx count, and the
ratios MCP/REST and each to the pgbench ceiling.

Run by hand (not in CI), with a release build:
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2
    export CALSETA_DATA_DIR=/tmp/bench-pg; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build-bench/bin/calseta migrate
    CALSETA_BIN_DIR=build-bench/bin python3 tests/bench/mcp_bench.py [--seconds 10] [--intake 1]
Needs wrk and pgbench.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import http_bench  # noqa: E402  (sets up harness and CALSETA_BIN_DIR)
from http_bench import harness  # noqa: E402

SESSIONS = 32
ACCEPT = "application/json, text/event-stream"

LUA = r"""
local sessions = {%s}
local n = 0
function setup(thread)
  n = n + 1
  thread:set("sid", sessions[n])
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "%s"
  wrk.headers["Authorization"] = "Bearer %s"
  wrk.headers["Mcp-Session-Id"] = sid
  wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_alerts","arguments":{"page_size":20}}}'
end
"""

PGBENCH_SQL = (
    "WITH f AS (SELECT a.* FROM alerts a WHERE TRUE) SELECT (SELECT count(*) FROM f), "
    "coalesce((SELECT json_agg(x.j ORDER BY x.rn) FROM (SELECT json_build_object('uuid', a.uuid, "
    "'title', a.title, 'severity', a.severity, 'status', a.status, 'enrichment_status', "
    "a.enrichment_status, 'source_name', a.source_name, 'occurred_at', calseta_ts(a.occurred_at), "
    "'is_enriched', a.is_enriched, 'tags', a.tags, 'created_at', calseta_ts(a.created_at)) AS j, "
    "row_number() OVER (ORDER BY a.occurred_at DESC, a.id DESC) AS rn FROM f a ORDER BY "
    "a.occurred_at DESC, a.id DESC LIMIT 20 OFFSET 0) x), '[]'::json)::text;\n")


def pgbench(db, seconds, clients):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(PGBENCH_SQL)
        path = f.name
    try:
        load = http_bench.loadavg()
        out = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
                              "-T", str(seconds), "-r", "-f", path, db],
                             capture_output=True, text=True)
        text = out.stdout + out.stderr
        tps = re.search(r"tps = ([\d.]+)", text)
        lat = re.search(r"latency average = ([\d.]+) ms", text)
        if not tps:
            raise RuntimeError("pgbench failed:\n" + text)
        return {"rps": float(tps.group(1)), "p50": float(lat.group(1)) if lat else 0.0,
                "p99": float("nan"), "load": load}
    finally:
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--intake", type=int, default=1)
    a = ap.parse_args()
    env = {"LOG_LEVEL": "WARNING", "MCP_MAX_SESSIONS_PER_KEY": 100}
    s = harness.Stack("mcpbench", env=env, services=(), intake_processes=0)
    try:
        s.start("auditd")
        for _ in range(a.intake):
            s.start_intake()
        s.wait_healthy()
        writer = s.create_key("alerts:write", name="bench-writer",
                              extra=("--rate-limit-per-minute", "100000000"))
        for i in range(200):
            r = s.request("POST", "/v1/ingest/generic", key=writer,
                          body={"title": "bench %d" % i, "severity": "high"})
            if r.status != 202:
                raise RuntimeError("ingest failed: %r" % r)
        key = s.create_key("alerts:read", name="bench-reader",
                           extra=("--rate-limit-per-minute", "100000000"))
        sids = []
        for _ in range(SESSIONS):
            r = s.request("POST", "/mcp", key=key, headers={"Accept": ACCEPT},
                          body={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                           "clientInfo": {"name": "bench", "version": "1"}}})
            if r.status != 200:
                raise RuntimeError("initialize failed: %r" % r)
            sids.append(r.headers["mcp-session-id"])
        r = s.request("POST", "/mcp", key=key,
                      headers={"Accept": ACCEPT, "Mcp-Session-Id": sids[0]},
                      body={"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                            "params": {"name": "search_alerts", "arguments": {"page_size": 20}}})
        res = json.loads(r.json()["result"]["content"][0]["text"])
        if res["total"] < 200 or len(res["alerts"]) != 20:
            raise RuntimeError("search_alerts does not answer a page of 20: %r" % res)
        print("host: %d cores; %d intake process(es); PostgreSQL %s; %d MCP sessions" %
              (os.cpu_count(), a.intake, s.sql_value("SHOW server_version"), SESSIONS), flush=True)
        rows = {}
        rows["pgbench (same SELECT)"] = pgbench(s.db, a.seconds, SESSIONS)
        print(http_bench.fmt_row("pgbench (same SELECT)", rows["pgbench (same SELECT)"]) +
              "  (p50 = mean)", flush=True)
        url = "http://127.0.0.1:%d" % s.port
        rows["REST GET /v1/alerts"] = http_bench.run_wrk(
            url + "/v1/alerts?page_size=20", a.seconds, SESSIONS, SESSIONS,
            ("Authorization: Bearer " + key,))
        print(http_bench.fmt_row("REST GET /v1/alerts", rows["REST GET /v1/alerts"]), flush=True)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(LUA % (",".join('"%s"' % x for x in sids), ACCEPT, key))
            lua = f.name
        try:
            load = http_bench.loadavg()
            out = subprocess.run(["wrk", "-t%d" % SESSIONS, "-c%d" % SESSIONS, "-d%ds" % a.seconds,
                                  "--latency", "--timeout", "10s", "-s", lua, url + "/mcp"],
                                 capture_output=True, text=True).stdout
            mcp = http_bench.parse_wrk(out)
            mcp["load"] = load
        finally:
            os.unlink(lua)
        rows["MCP tools/call search_alerts"] = mcp
        print(http_bench.fmt_row("MCP tools/call search_alerts", mcp), flush=True)
        ceiling = rows["pgbench (same SELECT)"]["rps"]
        rest = rows["REST GET /v1/alerts"]["rps"]
        print("ratios: MCP/REST %.2f, MCP/pgbench %.2f, REST/pgbench %.2f" %
              (mcp["rps"] / rest, mcp["rps"] / ceiling, rest / ceiling))
        for p in s.intakes:
            if not p.alive():
                raise RuntimeError("intake died during the run:\n" + p.text()[-3000:])
    finally:
        s.stop()


if __name__ == "__main__":
    main()
