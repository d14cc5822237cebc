#!/usr/bin/env python3
"""tests/bench/audit.py - audit pipeline throughput and the cost of audit_emit() on the caller.

Run by hand (not in CI), against a Release build and the project's PostgreSQL:

    cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
    export DATABASE_URL=$(scripts/pg.sh start)
    python3 tests/bench/audit.py build-rel/bin [EVENTS] [PRODUCERS]

For each fsync policy (AUDIT_FSYNC_MS=0: fsync per batch before acking; 5 and 20 ms groups) it
starts calseta-auditd on a fresh database (migrations/0003_audit.sql) with a log file, runs
PRODUCERS `calseta-auditd produce EVENTS` load generators at full speed, and prints:
  - events/s end to end: every event emitted, written to the file, fsynced, committed in the
    table and acknowledged back to its producer;
  - the time audit_emit() took on the caller (p50/p99/max µs): encode, spool write(2), send -
    what an intake request pays for emitting one event.
As a ceiling it also reports pg_test_fsync-like figure: fsyncs/s of the same disk (a loop of
4 KiB write + fdatasync), since a durable writer cannot beat one fsync per batch.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../integration"))
from harness import free_port  # noqa: E402


def psql(url, sql):
    subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   capture_output=True)


def fsyncs_per_s(d, seconds=1.0):
    p = os.path.join(d, "fsync.probe")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n, t0 = 0, time.time()
    while time.time() - t0 < seconds:
        os.write(fd, b"x" * 4096)
        os.fdatasync(fd)
        n += 1
    os.close(fd)
    os.unlink(p)
    return n / (time.time() - t0)


def main():
    bindir = sys.argv[1] if len(sys.argv) > 1 else "build/bin"
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    nprod = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    base = os.environ["DATABASE_URL"]
    src = os.path.join(os.path.dirname(__file__), "../..")
    auditd = os.path.join(bindir, "calseta-auditd")
    work = tempfile.mkdtemp(prefix="audit-bench-")
    print("disk ceiling: %.0f fsyncs/s in %s" % (fsyncs_per_s(work), work))
    for fsync_ms in ("0", "5", "20"):
        db = "audit_bench_%d" % os.getpid()
        psql(base, "DROP DATABASE IF EXISTS %s" % db)
        psql(base, "CREATE DATABASE %s" % db)
        u = urllib.parse.urlsplit(base)
        url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))
        subprocess.run(["psql", url, "-X", "-q", "-f", os.path.join(src, "migrations/0003_audit.sql")],
                       check=True, capture_output=True)
        env = dict(os.environ, DATABASE_URL=url, AUDIT_FSYNC_MS=fsync_ms, AUDIT_STDOUT="false",
                   AUDIT_LOG_FILE=os.path.join(work, "audit-%s.log" % fsync_ms),
                   AUDIT_ENDPOINT="tcp://127.0.0.1:%d" % free_port(), CALSETA_DATA_DIR=work,
                   LOG_LEVEL="WARNING")
        errpath = os.path.join(work, "auditd-%s.err" % fsync_ms)
        a = subprocess.Popen([auditd], env=env, stderr=open(errpath, "wb"))
        time.sleep(0.3)
        if a.poll() is not None:
            sys.exit("calseta-auditd did not start:\n" + open(errpath).read())
        t0 = time.time()
        ps = [subprocess.Popen([auditd, "produce", str(events)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL) for _ in range(nprod)]
        stats = [json.loads(p.communicate()[0].decode().strip().splitlines()[-1]) for p in ps]
        dt = time.time() - t0
        a.terminate()
        a.wait()
        psql(base, "DROP DATABASE IF EXISTS %s" % db)
        acked = sum(s["acked"] for s in stats)
        print("AUDIT_FSYNC_MS=%-3s %d producers x %d events: %.0f events/s end to end; "
              "audit_emit p50 %.1f us, p99 %.1f us, max %.0f us" % (
                  fsync_ms, nprod, events, acked / dt,
                  sum(s["emit_us_p50"] for s in stats) / nprod,
                  max(s["emit_us_p99"] for s in stats), max(s["emit_us_max"] for s in stats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
