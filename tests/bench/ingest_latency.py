#!/usr/bin/env python3
"""Where an ingest request's time goes, for choosing the intake's batching policy (run by hand).

One stream of tests/bench/ingest_bench.py (fixtures, de-duplication off; fixtures-dedup, the
same with de-duplication on, every post after the first five a duplicate; or hot: generic alerts
all sharing one IP, de-duplication on) over N keep-alive connections, with the batching settings
given by --set (INGEST_STALL_MS=20, INGEST_MAX_INFLIGHT=2, ...); then, from every intake
process's GET /metrics, the percentiles of each phase of a request:

  queued    an alert waiting for its batch to go out
  database  its batch's round trip (commit included)
  request   the whole request as the intake saw it (headers read -> answer queued)

beside wrk's client-side percentiles, the batch size, and the CPU per alert of PostgreSQL and of
the intake (load-independent). The ceiling of the comparison is the same stream with the
settings of another run: run it twice under `flock /work/bench.lock` and compare.

  python3 tests/bench/ingest_latency.py --stream fixtures --set INGEST_STALL_MS=10
"""
import argparse
import os
import re
import subprocess
import sys

# the release build unless told: harness reads CALSETA_BIN_DIR when imported
os.environ.setdefault("CALSETA_BIN_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
import ingest_bench as ib  # noqa: E402

SERIES = (("queued", "calseta_ingest_wait_seconds", {"phase": "queued"}),
          ("database", "calseta_ingest_wait_seconds", {"phase": "database"}),
          ("request", "calseta_http_request_duration_seconds", {"route": "/v1/ingest/{source}"}))
LINE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')


def scrape_all(s, key, n):
    """The /metrics text of each of n intake processes (one connection per GET: the kernel
    spreads them over the processes), keyed by pid."""
    seen = {}
    for _ in range(200):
        r = s.request("GET", "/metrics", key=key)
        assert r.status == 200, r.status
        text = r.body.decode()
        m = re.search(r'pid="(\d+)"', text)
        seen[m.group(1)] = text
        if len(seen) == n:
            return seen
    raise RuntimeError("saw only %d of %d intake processes on /metrics" % (len(seen), n))


def buckets(texts, name, want):
    """Summed cumulative buckets {le: count} of one histogram over every process."""
    out = {}
    for text in texts.values():
        for line in text.splitlines():
            m = LINE.match(line)
            if not m or m.group(1) != name + "_bucket":
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if all(labels.get(k) == v for k, v in want.items()):
                le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
                out[le] = out.get(le, 0) + float(m.group(3))
    return out


def percentile(cum, q):
    """The q-quantile of a cumulative histogram, interpolated inside its bucket (ms)."""
    les = sorted(cum)
    total = cum[les[-1]] if les else 0
    if not total:
        return float("nan")
    rank, prev_le, prev_n = q * total, 0.0, 0.0
    for le in les:
        if cum[le] >= rank:
            if le == float("inf"):
                return prev_le * 1e3
            return 1e3 * (prev_le + (le - prev_le) * (rank - prev_n) / max(1e-9, cum[le] - prev_n))
        prev_le, prev_n = le, cum[le]
    return float("nan")


def counter(text, name):
    """A per-process counter's value in one /metrics text (0 when absent)."""
    m = re.search(r'^%s\{[^}]*\} (\S+)$' % re.escape(name), text, re.M)
    return float(m.group(1)) if m else 0.0


def print_syscalls(table, alerts):
    """strace -c's table as calls per alert, largest first."""
    rows = []
    for line in table.splitlines():
        f = line.split()
        if len(f) >= 5 and re.match(r"^\d+\.\d+$", f[0]) and f[-1] != "total":
            rows.append((int(f[3]), f[-1]))
    total = sum(n for n, _ in rows)
    print("%-15s %.2f system calls per alert: %s" % ("syscalls", total / max(1, alerts), ", ".join(
        "%s %.2f" % (name, n / max(1, alerts)) for n, name in sorted(rows, reverse=True)[:8])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--intake", type=int, default=2)
    ap.add_argument("--stream", choices=("fixtures", "fixtures-dedup", "hot"), default="fixtures")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="an intake setting for this run (repeatable)")
    ap.add_argument("--trace", action="store_true",
                    help="a 10 ms timeline of the database during the stream (tests/bench/ingest_trace.py)")
    ap.add_argument("--perf", metavar="FILE", help="perf record every intake process during the stream and "
                    "print the top symbols")
    ap.add_argument("--strace", action="store_true",
                    help="count the intake processes' system calls during the stream (strace -c): calls per "
                    "alert (the tracing slows the intake: take the throughput of such a run as void)")
    a = ap.parse_args()
    a.inflight, a.show_errors = 0, False
    for kv in a.set:
        k, _, v = kv.partition("=")
        os.environ[k] = v
    print("%s, %d connections, %d s, %d intake processes, settings: %s; uptime: %s" %
          (a.stream, a.connections, a.seconds, a.intake, " ".join(a.set) or "defaults",
           open("/proc/loadavg").read().strip()))
    s, key = ib.stack(0 if a.stream == "fixtures" else 24, a)
    try:
        lua = ib.fixtures_script(key) if a.stream.startswith("fixtures") else ib.generic_script(key, 0.0, True)
        ib.warm_up(s, lua, a)
        if not a.stream.startswith("fixtures"):  # numbered apart from the warm-up's alerts, or
            lua = ib.generic_script(key, 0.0, True)  # the stream would repeat them as duplicates
        mkey = s.create_key("alerts:read", name="metrics",
                            extra=("--rate-limit-per-minute", "100000000"))
        before = scrape_all(s, mkey, a.intake)
        pids = ",".join(str(p.p.pid) for p in s.intakes)
        perf = strace = None
        if a.perf:
            graph = ["--call-graph", "dwarf,8192"] if os.environ.get("PERF_DWARF") else []
            perf = subprocess.Popen(["perf", "record", "-q", "-F", "1999"] + graph +
                                    ["-o", a.perf, "-p", pids, "--", "sleep", str(max(1, a.seconds - 2))],
                                    stdout=subprocess.DEVNULL)
        if a.strace:
            strace = subprocess.Popen(["strace", "-c", "-f", "-o", "/dev/stderr"] +
                                      [x for p in s.intakes for x in ("-p", str(p.p.pid))],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        rate, batch, good = ib.run_stream(s, a.stream, lua, a)[:3]
        if perf:
            perf.wait()
            top = subprocess.run(["perf", "report", "-i", a.perf, "--no-children", "--stdio", "--sort", "dso,sym"],
                                 capture_output=True, text=True).stdout
            rows = [x for x in top.splitlines() if re.match(r"^\s+\d+\.\d+%", x)]
            print("%-15s top symbols of the intake processes (perf, cpu-clock):" % "profile")
            for x in rows[:25]:
                print("%-15s %s" % ("", x.strip()[:110]))
        if strace:
            strace.send_signal(2)
            table = strace.communicate(timeout=30)[1]
            print_syscalls(table, rate * a.seconds)
        after = scrape_all(s, mkey, a.intake)
        for label, name, want in SERIES:
            b0, b1 = buckets(before, name, want), buckets(after, name, want)
            d = {le: b1[le] - b0.get(le, 0) for le in b1}
            print("%-15s %-8s p50 %6.1f ms  p90 %6.1f ms  p99 %6.1f ms  (server side, %d samples)" %
                  ("phase", label, percentile(d, 0.5), percentile(d, 0.9), percentile(d, 0.99),
                   max(d.values()) if d else 0))
        held = sum(counter(after[p], "calseta_ingest_held_total") - counter(before.get(p, ""), "calseta_ingest_held_total")
                   for p in after)
        print("%-15s %d alerts held behind a batch of their fingerprint in flight" % ("held", held))
    finally:
        s.stop()
    if not good:
        sys.exit(1)


if __name__ == "__main__":
    main()
