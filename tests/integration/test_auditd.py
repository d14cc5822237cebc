"""test_auditd.py - calseta-auditd and the audit producer client, as real processes.

Needs DATABASE_URL (a server where databases can be created) and python3-zmq (Debian package)
for the hostile-input test. Each test gets a fresh database with migrations/0003_audit.sql and
its own spool and log folders. Producers are `calseta-auditd produce N [RATE]`, which drive the
real libcommon/audit/audit.c client; they tag events with fields {"run", "seq"} so the tests can count
every event: each must be in the file and in the table exactly once, whatever was killed.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

from harness import free_port

BIN = os.environ.get("CALSETA_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
SRC = os.environ.get("CALSETA_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
BASE_URL = os.environ.get("DATABASE_URL", "")
AUDITD = os.path.join(BIN, "calseta-auditd")
SAN = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def psql(url, sql, check=True):
    r = subprocess.run(["psql", url, "-X", "-q", "-t", "-A", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                        "-c", sql], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError("psql: %s\n%s" % (sql, r.stderr))
    return [l.split("\t") for l in r.stdout.splitlines() if l]


def url_for(db):
    u = urllib.parse.urlsplit(BASE_URL)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + db, u.query, u.fragment))


class Env:
    """A fresh database, folders and endpoint for one test."""

    def __init__(self, name, migrate=True, **extra):
        self.dir = tempfile.mkdtemp(prefix="auditd-%s-" % name)
        self.db = "audit_%s_%d" % (name, os.getpid())
        psql(BASE_URL, "DROP DATABASE IF EXISTS %s" % self.db)
        psql(BASE_URL, "CREATE DATABASE %s" % self.db)
        self.url = url_for(self.db)
        if migrate:
            self.migrate()
        self.log = os.path.join(self.dir, "audit.log")
        self.env = dict(os.environ)
        self.env.update({
            "DATABASE_URL": self.url,
            "AUDIT_LOG_FILE": self.log,
            "AUDIT_STDOUT": "false",
            "CALSETA_DATA_DIR": self.dir,
            "AUDIT_SPOOL_DIR": os.path.join(self.dir, "spool"),
            "LOG_LEVEL": "INFO",
        })
        self.env.update(extra)
        self.procs = []

    def migrate(self):
        r = subprocess.run(["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f",
                            os.path.join(SRC, "migrations/0003_audit.sql")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    def start_auditd(self, **extra):
        env = dict(self.env)
        env.update(extra)
        err = open(os.path.join(self.dir, "auditd-%d.err" % len(self.procs)), "wb")
        out = open(os.path.join(self.dir, "auditd-%d.out" % len(self.procs)), "wb")
        p = subprocess.Popen([AUDITD], env=env, stdout=out, stderr=err)
        self.procs.append((p, err.name))
        deadline = time.time() + 30
        while "audit writer on" not in open(err.name).read() + open(out.name).read():
            assert p.poll() is None, open(err.name).read()
            assert time.time() < deadline, "auditd did not start: " + open(err.name).read()
            time.sleep(0.05)
        return p

    def produce(self, n, rate=0, **extra):
        env = dict(self.env)
        env.update(extra)
        err = open(os.path.join(self.dir, "produce-%d.err" % len(self.procs)), "wb")
        p = subprocess.Popen([AUDITD, "produce", str(n), str(rate)], env=env,
                             stdout=subprocess.PIPE, stderr=err)
        self.procs.append((p, err.name))
        return p

    def finish(self, p, timeout=180):
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, "producer exited %d" % p.returncode
        return json.loads(out.decode().strip().splitlines()[-1])

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)

    def file_lines(self):
        lines = []
        names = [self.log + ".%d" % i for i in range(5, 0, -1)] + [self.log]
        for n in names:
            if os.path.exists(n):
                with open(n) as f:
                    lines += [l for l in f.read().splitlines() if l]
        return lines

    def close(self):
        for p, errname in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            with open(errname, errors="replace") as f:
                text = f.read()
            for m in SAN:
                assert m not in text, "sanitizer report in %s:\n%s" % (errname, text[-4000:])
        psql(BASE_URL, "DROP DATABASE IF EXISTS %s" % self.db, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def count_runs(e, runs, n_each):
    """Asserts every (run, seq) is in the file and the table exactly once."""
    seen = {}
    for l in e.file_lines():
        o = json.loads(l)
        f = o["fields"]
        if o["event_type"] == "loadgen":
            k = (f["run"], f["seq"])
            seen[k] = seen.get(k, 0) + 1
    rows = psql(e.url, "SELECT fields->>'run', fields->>'seq', count(*) FROM audit_events "
                       "WHERE event_type = 'loadgen' GROUP BY 1, 2")
    table = {(r[0], int(r[1])): int(r[2]) for r in rows}
    for run in runs:
        for s in range(n_each):
            assert seen.get((run, s)) == 1, "file: %s/%d seen %r times" % (run, s, seen.get((run, s)))
            assert table.get((run, s)) == 1, "table: %s/%d seen %r times" % (run, s, table.get((run, s)))
    assert len(seen) == len(runs) * n_each, (len(seen), len(runs) * n_each)
    assert len(table) == len(runs) * n_each
    assert sum(seen.values()) == len(seen) and sum(table.values()) == len(table)


def test_basic_json_and_table():
    e = Env("basic")
    try:
        a = e.start_auditd(AUDIT_STDOUT="true")
        st = e.finish(e.produce(300))
        assert st["acked"] == 300 and st["pending"] == 0, st
        e.stop(a)
        count_runs(e, [st["run"]], 300)
        first = json.loads(e.file_lines()[0])
        assert first["event_type"] == "config_loaded" and first["service"] == "auditd"
        assert "protections_off" in first["fields"]
        o = json.loads(e.file_lines()[1])
        for k in ("timestamp", "event_id", "event_type", "service", "pid", "request_id",
                  "actor_key_prefix", "client_ip", "fields"):
            assert k in o, k
        assert o["actor_key_prefix"] == "cai_load" and o["client_ip"] == "127.0.0.1"
        out = open(os.path.join(e.dir, "auditd-0.out")).read().splitlines()
        assert len(out) == 301, len(out)
        # The table is append-only.
        r = subprocess.run(["psql", e.url, "-X", "-c", "DELETE FROM audit_events"],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "append-only" in r.stderr, r.stderr
        assert not os.listdir(os.path.join(e.dir, "spool")), "spool left behind"
    finally:
        e.close()


def test_text_format():
    e = Env("text", LOG_FORMAT="text")
    try:
        a = e.start_auditd()
        e.finish(e.produce(20))
        e.stop(a)
        lines = e.file_lines()
        assert len(lines) == 21
        assert all(" event_id=" in l and "[audit" in l for l in lines), lines[:2]
        assert sum("loadgen" in l and " seq=" in l for l in lines) == 20
    finally:
        e.close()


def test_kill9_under_load():
    """auditd is killed -9 twice while three producers emit; nothing is lost or doubled."""
    for fsync_ms in ("0", "20"):
        e = Env("kill" + fsync_ms, AUDIT_FSYNC_MS=fsync_ms)
        try:
            a = e.start_auditd()
            n = 6000
            prods = [e.produce(n, 3000) for _ in range(3)]
            for _ in range(2):
                time.sleep(0.8)  # the kill lands while the producers are mid-stream: the test
                a.kill()
                a.wait()
                time.sleep(0.5)  # producers keep emitting (spooling) while no auditd listens
                a = e.start_auditd()
            stats = [e.finish(p) for p in prods]
            for st in stats:
                assert st["pending"] == 0 and st["emitted"] == n, st
            e.stop(a)
            count_runs(e, [st["run"] for st in stats], n)
            print("  fsync_ms=%s: %s" % (fsync_ms, [(s["resends"], s["events_per_s"]) for s in stats]))
        finally:
            e.close()


def test_partial_last_line_is_cut():
    """A writer killed mid-write leaves a partial line; the next auditd cuts it, so the file
    stays one JSON object per line and the event it held is written whole when sent again."""
    e = Env("partial")
    try:
        a = e.start_auditd()
        st = e.finish(e.produce(50))
        e.stop(a)
        whole = open(e.log, "rb").read()
        last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        with open(e.log, "ab") as f:
            f.write(last[:len(last) // 2])  # half of an event, no newline
        a = e.start_auditd()
        st2 = e.finish(e.produce(50))
        e.stop(a)
        for l in e.file_lines():
            json.loads(l)  # every line is a whole event
        assert open(e.log, "rb").read().startswith(whole)
        count_runs(e, [st["run"], st2["run"]], 50)
        err = "".join(open(os.path.join(e.dir, n)).read() for n in sorted(os.listdir(e.dir))
                      if n.startswith("auditd-") and n.endswith(".err"))
        assert "cut a partial last line" in err, err[-2000:]
    finally:
        e.close()


def test_producer_kill9_spool_adopted():
    """A producer killed -9 while auditd is down leaves its spool; the next one replays it."""
    e = Env("orphan")
    try:
        p = e.produce(400, 0, PRODUCE_WAIT_MS="600000")
        errname = e.procs[-1][1]
        deadline = time.time() + 30
        while "emitted 400" not in open(errname).read():
            assert time.time() < deadline, "producer did not emit"
            time.sleep(0.05)
        p.kill()
        p.wait()
        assert len(os.listdir(os.path.join(e.dir, "spool"))) == 1
        a = e.start_auditd()
        st = e.finish(e.produce(0))
        assert st["adopted"] == 400 and st["pending"] == 0, st
        e.stop(a)
        runs = {json.loads(l)["fields"].get("run") for l in e.file_lines()} - {None}
        count_runs(e, list(runs), 400)
        assert not os.listdir(os.path.join(e.dir, "spool"))
    finally:
        e.close()


def test_table_missing_holds_acks():
    """While events cannot be inserted they are not acknowledged; once the table exists they
    arrive once."""
    e = Env("hold", migrate=False)
    try:
        a = e.start_auditd()
        p = e.produce(200)
        time.sleep(2.5)  # a while without the table: nothing may be acknowledged meanwhile
        assert p.poll() is None, "producer finished without the table"
        assert e.file_lines() == [] or all("loadgen" not in l for l in e.file_lines())
        e.migrate()
        st = e.finish(p)
        assert st["pending"] == 0, st
        e.stop(a)
        count_runs(e, [st["run"]], 200)
    finally:
        e.close()


def test_rotation_and_sighup():
    e = Env("rotate", AUDIT_ROTATE_BYTES="40000")
    try:
        a = e.start_auditd()
        st1 = e.finish(e.produce(600))
        assert os.path.exists(e.log + ".1"), os.listdir(e.dir)
        # logrotate style: move the file away, then SIGHUP.
        os.rename(e.log, e.log + ".moved")
        a.send_signal(signal.SIGHUP)
        deadline = time.time() + 10  # reopened: the file exists again (not a fixed sleep)
        while not os.path.exists(e.log) and time.time() < deadline:
            time.sleep(0.05)
        st2 = e.finish(e.produce(50))
        assert os.path.exists(e.log)
        moved = open(e.log + ".moved").read()
        assert st2["run"] not in moved
        e.stop(a)
        total = e.file_lines() + [l for l in moved.splitlines() if l]
        assert sum(1 for l in total if '"loadgen"' in l) == 650, len(total)
        count_table = int(psql(e.url, "SELECT count(*) FROM audit_events WHERE event_type='loadgen'")[0][0])
        assert count_table == 650
        assert st1["pending"] == 0
    finally:
        e.close()


def test_hostile_input():
    try:
        import zmq
    except ImportError:
        raise AssertionError("python3-zmq is required (apt-get install python3-zmq)")
    e = Env("hostile")
    try:
        a = e.start_auditd()
        ctx = zmq.Context()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect("ipc://%s/bus/audit.sock" % e.dir)  # the default endpoint: no CURVE on ipc
        rnd = random.Random(7)
        bad = [b"", b"\xc1", b"\x82\xa1v\x01", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
               b"\x91" * 100000, b"\x81\xa1v" + b"\x91" * 5000 + b"\x00",
               b"\xdb\xff\xff\xff\xff" + b"x" * 10,
               b"\x82\xa1v\x02\xa1t\x01",  # unknown version
               b"\x82\xa1v\x01\xa1t\x63",  # unknown type
               ]
        bad += [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300))) for _ in range(300)]
        for b in bad:
            s.send(b)
        s.send_multipart([b"\x82\xa1v\x01\xa1t\x01", b"extra frame"])
        s.send(b"x" * (300 * 1024))  # above ZMQ_MAXMSGSIZE: the peer is dropped
        assert a.poll() is None, "auditd died on hostile input"
        st = e.finish(e.produce(50))
        assert st["pending"] == 0
        e.stop(a)
        count_runs(e, [st["run"]], 50)
        s.close()
        ctx.term()
    finally:
        e.close()


def main():
    if not BASE_URL:
        print("test_auditd: DATABASE_URL is not set")
        return 1
    tests = [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    only = sys.argv[1:]
    passed = failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        t0 = time.time()
        try:
            fn()
            passed += 1
            print("ok   %s (%.1fs)" % (name, time.time() - t0))
        except Exception:
            import traceback
            traceback.print_exc()
            failed += 1
            print("FAIL %s" % name)
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
