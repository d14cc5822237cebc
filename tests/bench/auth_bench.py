#!/usr/bin/env python3
"""auth_bench.py - what authentication, scopes, limits and /health cost on the intake, against
the route that does none of it and against nginx, in the same run on the same host.

wrk --latency, keep-alive, 64 connections, 2 threads, each for --seconds:
  GET /bench-no-such                 unknown route: 404 JSON, no authentication (the ceiling of
                                     our own HTTP path)
  GET /v1/alerts?page_size=1, 403    valid key without alerts:read: key row, verification, scope
                                     from memory, no handler (goal: >= 0.8 x the 404 route)
  GET /v1/alerts?page_size=1         valid key (alerts:read, rate_limit_per_minute 100000000):
                                     the same plus the leased rate-limit window and the list query
  GET /health                        readiness from memory (goal: >= 0.8 x nginx)
  nginx GET /health                  nginx on loopback answering the intake's /health bytes with
                                     the intake's headers (a static `return 200`)
Then the flood: wrk with 64 connections sending well-formed unknown keys for --seconds while one
keep-alive client sends the authenticated list request every 20 ms; its p50/p99/max latency
(goal: p99 < 100 ms) and the flood's 401 rate.
Printed: requests/s, p50/p99, ratios, load average before each run (the box may be shared), and
for the intake's runs the CPU time per request of the intake and of auditd (from /proc, which
the machine's load does not inflate the way it does throughput).

Run by hand (not in CI), with a release build:
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2
    export CALSETA_DATA_DIR=/tmp/bench-pg; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build-bench/bin/calseta migrate
    CALSETA_BIN_DIR=build-bench/bin python3 tests/bench/auth_bench.py [--seconds 10] [--intake 1]
--refusal-window 0 audits every refusal on its own (as before scope refusals were aggregated),
for comparison in the same build.
Needs wrk and nginx (apt-get install nginx-light).
"""
import argparse
import hashlib
import hmac
import http.client
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import http_bench  # noqa: E402  (sets up harness and CALSETA_BIN_DIR)
from http_bench import harness  # noqa: E402

SECRET = "bench-secret"
PATH = "/v1/alerts?page_size=1"
MISSING = "/bench-no-such"
UNKNOWN_KEY = "cai_" + "A" * 43


def cpu_seconds(pids):
    """User + system CPU time of these processes so far (load-independent cost per request)."""
    t = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        t += int(fields[11]) + int(fields[12])
    return t / os.sysconf("SC_CLK_TCK")


def ingest_one(s):
    key = s.create_key("alerts:write", name="bench-writer")
    body = harness.fixture("01_sentinel_brute_force_tor.json")
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = s.request("POST", "/v1/ingest/sentinel", key=key, body=body,
                  headers={"Content-Type": "application/json", "X-Webhook-Signature": sig})
    if r.status != 202:
        raise RuntimeError("ingest failed: %r" % r)
    deadline = time.time() + 20
    while int(s.sql_value("SELECT count(*) FROM alerts")) < 1:
        if time.time() > deadline:
            raise RuntimeError("the ingested alert never appeared")
        time.sleep(0.1)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))]


def legit_during_flood(port, key, seconds, interval=0.02):
    """One keep-alive client, one authenticated request every interval; latencies in ms."""
    lat, bad = [], []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    end = time.time() + seconds
    while time.time() < end:
        t0 = time.time()
        c.request("GET", PATH, headers={"Authorization": "Bearer " + key})
        r = c.getresponse()
        r.read()
        lat.append((time.time() - t0) * 1000)
        if r.status != 200:
            bad.append(r.status)
        time.sleep(max(0.0, interval - (time.time() - t0)))
    c.close()
    return lat, bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--intake", type=int, default=1)
    ap.add_argument("--refusal-window", type=int, default=None,
                    help="AUDIT_REFUSAL_WINDOW_SECONDS for the run (0: every refusal audited on its own)")
    a = ap.parse_args()

    env = {"LOG_LEVEL": "WARNING", "SENTINEL_WEBHOOK_SECRET": SECRET,
           "RATE_LIMIT_UNAUTHED_PER_MINUTE": 100000000}
    if a.refusal_window is not None:
        env["AUDIT_REFUSAL_WINDOW_SECONDS"] = a.refusal_window
    s = harness.Stack("authbench", env=env, services=(), intake_processes=0)
    ng = None
    try:
        s.start("auditd")
        s.start("jobbus")
        for _ in range(a.intake):
            s.start_intake()
        s.wait_healthy()
        ingest_one(s)
        key = s.create_key("alerts:read", name="bench-reader", extra=("--rate-limit-per-minute", "100000000"))
        wrong = s.create_key("workflows:read", name="bench-wrong-scope")
        checks = {"list": s.request("GET", PATH, key=key).status,
                  "wrong scope": s.request("GET", PATH, key=wrong).status,
                  "unknown": s.request("GET", PATH, key=UNKNOWN_KEY).status,
                  "404": s.request("GET", MISSING).status, "health": s.request("GET", "/health").status}
        if checks != {"list": 200, "wrong scope": 403, "unknown": 401, "404": 404, "health": 200}:
            raise RuntimeError("unexpected answers before the runs: %r" % checks)

        h_head, h_body = http_bench.raw_response(s.port, "/health")
        n_head, _ = http_bench.raw_response(s.port, MISSING)
        extra = [tuple(x.strip() for x in line.split(":", 1)) for line in n_head.decode().split("\r\n")[1:]]
        extra = [(n, v) for n, v in extra if n.lower() not in
                 ("content-type", "content-length", "date", "connection", "x-request-id")]
        ng = http_bench.Nginx(a.intake, {"/health": (200, h_body.decode()), "default": (404, "{}")}, 1024, extra)

        print("host: %d cores; %d intake process(es), nginx with %d worker(s); PostgreSQL %s" %
              (os.cpu_count(), a.intake, a.intake, s.sql_value("SHOW server_version")))
        print("wrk: %d keep-alive connections, %d threads, %d s each" % (a.connections, a.threads, a.seconds),
              flush=True)
        url = "http://127.0.0.1:%d" % s.port
        runs = [("404 unknown route (no auth)", url + MISSING, ()),
                ("403 valid key, wrong scope", url + PATH, ("Authorization: Bearer " + wrong,)),
                ("200 alerts list, valid key", url + PATH, ("Authorization: Bearer " + key,)),
                ("/health", url + "/health", ()),
                ("nginx /health (same bytes)", "http://127.0.0.1:%d/health" % ng.port_hdrs, ())]
        res = {}
        intake_pids = [p.p.pid for p in s.intakes]
        auditd_pids = [p.p.pid for p in s.procs if "auditd" in p.name]
        for name, u, hdrs in runs:
            before = (cpu_seconds(intake_pids), cpu_seconds(auditd_pids))
            res[name] = http_bench.run_wrk(u, a.seconds, a.connections, a.threads, hdrs)
            line = http_bench.fmt_row(name, res[name])
            if "nginx" not in name and res[name]["total"]:
                n = res[name]["total"]
                line += "  cpu/req: intake %.1f us, auditd %.1f us" % (
                    (cpu_seconds(intake_pids) - before[0]) * 1e6 / n, (cpu_seconds(auditd_pids) - before[1]) * 1e6 / n)
            print(line, flush=True)

        # The flood, with a legitimate client beside it.
        out = {}
        t = threading.Thread(target=lambda: out.update(legit=legit_during_flood(s.port, key, a.seconds - 1)))
        load = http_bench.loadavg()
        flood = subprocess.Popen(["wrk", "-t%d" % a.threads, "-c%d" % a.connections, "-d%ds" % a.seconds,
                                  "--latency", "--timeout", "10s", "-H", "Authorization: Bearer " + UNKNOWN_KEY,
                                  url + PATH], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        t.start()
        t.join()
        fl = http_bench.parse_wrk(flood.communicate()[0])
        fl["load"] = load
        print(http_bench.fmt_row("401 unknown-key flood", fl))
        lat, bad = out["legit"]
        print("  legitimate list request during the flood: %d requests, p50 %.2f ms, p99 %.2f ms, max %.2f ms%s"
              % (len(lat), pct(lat, 50), pct(lat, 99), max(lat), ", non-200: %r" % bad[:5] if bad else ""))

        r403 = res["403 valid key, wrong scope"]["rps"] / res["404 unknown route (no auth)"]["rps"]
        rh = res["/health"]["rps"] / res["nginx /health (same bytes)"]["rps"]
        print("ratios: 403/404 %.2f (goal >= 0.8), /health / nginx %.2f (goal >= 0.8), list/404 %.2f; "
              "legit p99 during flood %.1f ms (goal < 100)"
              % (r403, rh, res["200 alerts list, valid key"]["rps"] / res["404 unknown route (no auth)"]["rps"],
                 pct(lat, 99)))
        for n in res:
            want_non2xx = "404" in n or "403" in n
            if want_non2xx and res[n]["non2xx"] != res[n]["total"]:
                print("WARNING: %s: only %d of %d answers were non-2xx" % (n, res[n]["non2xx"], res[n]["total"]))
            if not want_non2xx and res[n]["non2xx"]:
                print("WARNING: %s: %d non-2xx answers" % (n, res[n]["non2xx"]))
        if fl["non2xx"] != fl["total"]:
            print("WARNING: flood: only %d of %d answers were non-2xx" % (fl["non2xx"], fl["total"]))
        print("load average after: %s" % http_bench.loadavg())
        for p in s.intakes:
            if not p.alive():
                raise RuntimeError("intake died during the run:\n" + p.text()[-3000:])
    finally:
        if ng:
            ng.stop()
        s.stop()


if __name__ == "__main__":
    main()
