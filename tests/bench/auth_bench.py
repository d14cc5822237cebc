#!/usr/bin/env python3
"""auth_bench.py - what authentication costs on the intake: an authenticated list request beside
the public /health under the same load, in the same run.

wrk --latency, keep-alive, 64 connections, 2 threads, for each of
  GET /health                        public: one PostgreSQL round trip
  GET /v1/alerts?page_size=1         key (alerts:read, rate_limit_per_minute 100000000, so never
                                     429): verification cache hit, one round trip that re-reads
                                     the key row and counts the shared rate-limit window, then the
                                     list query (count + one row; one alert is ingested first)
  GET /v1/alerts?page_size=1, 401    (unless --no-401) without an Authorization header (the IP's
                                     unauthenticated budget is charged in the shared counter; the
                                     failure is logged), and with a well-formed unknown key
                                     (also a lookup by prefix). RATE_LIMIT_UNAUTHED_PER_MINUTE is
                                     raised so these stay 401 and never become 429.
Printed: requests/s, p50/p99, status check, ratio to /health, load average.

Run by hand (not in CI), with a release build:
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2
    export CALSETA_DATA_DIR=/tmp/bench-pg; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build-bench/bin/calseta migrate
    CALSETA_BIN_DIR=build-bench/bin python3 tests/bench/auth_bench.py [--seconds 15] [--intake 1]
        [--connections 64] [--no-401]
Needs wrk.
"""
import argparse
import hashlib
import hmac
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import http_bench  # noqa: E402  (sets up harness and CALSETA_BIN_DIR)
from http_bench import harness  # noqa: E402

SECRET = "bench-secret"
PATH = "/v1/alerts?page_size=1"
UNKNOWN_KEY = "cai_" + "A" * 43


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--intake", type=int, default=1)
    ap.add_argument("--no-401", action="store_true")
    a = ap.parse_args()

    env = {"LOG_LEVEL": "WARNING", "SENTINEL_WEBHOOK_SECRET": SECRET,
           "RATE_LIMIT_UNAUTHED_PER_MINUTE": 100000000}
    s = harness.Stack("authbench", env=env, services=(), intake_processes=0)
    try:
        s.start("auditd")
        s.start("jobbus")
        for _ in range(a.intake):
            s.start_intake()
        s.wait_healthy()
        ingest_one(s)
        key = s.create_key("alerts:read", name="bench-reader", extra=("--rate-limit-per-minute", "100000000"))
        auth = "Authorization: Bearer " + key
        r = s.request("GET", PATH, key=key)
        if r.status != 200 or not r.json().get("data"):
            raise RuntimeError("authenticated list does not answer one alert: %r" % r)
        checks = {"missing": s.request("GET", PATH).status, "unknown": s.request("GET", PATH, key=UNKNOWN_KEY).status}
        if not a.no_401 and checks != {"missing": 401, "unknown": 401}:
            raise RuntimeError("the unauthenticated requests do not get 401: %r" % checks)

        print("host: %d cores; %d intake process(es); PostgreSQL %s" %
              (os.cpu_count(), a.intake, s.sql_value("SHOW server_version")))
        print("wrk: %d keep-alive connections, %d threads, %d s each" % (a.connections, a.threads, a.seconds),
              flush=True)
        url = "http://127.0.0.1:%d" % s.port
        runs = [("/health (public)", "/health", ()), ("alerts list, valid key", PATH, (auth,))]
        if not a.no_401:
            runs += [("alerts list, no header -> 401", PATH, ()),
                     ("alerts list, unknown key -> 401", PATH, ("Authorization: Bearer " + UNKNOWN_KEY,))]
        res = {}
        for name, path, hdrs in runs:
            res[name] = http_bench.run_wrk(url + path, a.seconds, a.connections, a.threads, hdrs)
            print(http_bench.fmt_row(name, res[name]), flush=True)
        base = res["/health (public)"]["rps"]
        print("ratio to /health: " + ", ".join("%s %.2f" % (n, res[n]["rps"] / base) for n in res if n != runs[0][0]))
        ok = res["alerts list, valid key"]
        if ok["non2xx"]:
            print("WARNING: %d non-2xx answers on the authenticated route (rate limited?)" % ok["non2xx"])
        for n in res:
            if "401" in n and res[n]["non2xx"] != res[n]["total"]:
                print("WARNING: %s: %d of %d answers were non-2xx" % (n, res[n]["non2xx"], res[n]["total"]))
        after = {"valid": s.request("GET", PATH, key=key).status, "missing": s.request("GET", PATH).status}
        print("status after the runs: valid key %d, no header %d" % (after["valid"], after["missing"]))
        audit = s.sql_value("SELECT count(*) FROM audit_events") if not a.no_401 else None
        if audit is not None:
            print("audit_events rows after the runs: %s (auth failures are audited)" % audit)
        for p in s.intakes:
            if not p.alive():
                raise RuntimeError("intake died during the run:\n" + p.text()[-3000:])
    finally:
        s.stop()


if __name__ == "__main__":
    main()
