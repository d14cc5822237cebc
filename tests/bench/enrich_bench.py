#!/usr/bin/env python3
"""enrich_bench.py - lookups per second of the enrichment worker (calseta-enricher) against a
stand-in provider that answers after a fixed latency, with 1 and then 2 workers, and from cache.

Load: N alerts with K distinct public IP indicators each (each IP is looked up at VirusTotal and
AbuseIPDB, so 2*K lookups per job), inserted with their enrichment_jobs rows in one transaction
while the workers are already running (they find the jobs by their claim poll). The seeded
VirusTotal and AbuseIPDB providers are pointed at the stand-in by rewriting their URL templates,
and their credentials are stored as Fernet tokens, as tests/integration/test_enricher.py does.
The per-process caps are raised through their settings (ENRICHER_CONCURRENCY,
ENRICHER_PROVIDER_MAX_CONCURRENCY, ENRICHER_PROVIDER_RATE_PER_SECOND).

The stand-in is a separate process (asyncio, raw HTTP/1.1 with keep-alive, one Protocol per
connection, the answer scheduled with call_later), so its CPU is its own and measurable. It
listens on two ports, one per provider, because the real providers are two hosts: the worker's
per-host cap (ENRICHER_HOST_CONNECTIONS) then applies to each as it would in production. With
both on one host:port, one worker's lookups are bound by that one cap: at most
host_connections / latency (256 / 50 ms = 5,120/s) whatever the CPU. --one-host measures that.

Phases:
  1. one worker, fresh indicators             provider lookups/s, jobs/s
  2. two workers, fresh indicators            same, in total and per worker
  2b. four workers, fresh indicators          same (ratios to one worker printed)
  3. one fresh worker, new jobs on phase 1's  cache hits from the shared PostgreSQL cache
     indicators                               (no provider call may happen)
  4. the same worker again, more such jobs    cache hits from the warm in-process cache
For each phase: elapsed, lookups/s, jobs/s, the CPU used in the phase by the worker(s), the
stand-in, PostgreSQL (all processes of the cluster), the audit writer and this script, as % of
one core; total machine CPU busy (other work on the host included); the load average; the
worker's peak RSS (VmHWM); and a `ps` snapshot.

Run by hand (not in CI), with a release build:
    cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
    export CALSETA_DATA_DIR=/tmp/calseta-bench; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build-rel/bin/calseta migrate
    CALSETA_BIN_DIR=build-rel/bin python3 tests/bench/enrich_bench.py [--jobs 2000]
        [--indicators 10] [--latency-ms 50] [--concurrency 256] [--db-connections 8]
        [--host-connections 256] [--one-host]
Python standard library, psql, openssl and wrk (the ceiling: the stand-in driven by wrk at the
same concurrency; every phase prints its ratio to it). --phases 1,2,4,cache picks phases.
"""
import argparse
import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("CALSETA_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))

VT_KEY = "bench-vt-key"
ABUSE_KEY = "bench-abuse-key"

VT_BODY = json.dumps({"data": {"id": "x", "type": "ip_address", "attributes": {
    "last_analysis_stats": {"malicious": 0, "suspicious": 1, "harmless": 60, "undetected": 10},
    "reputation": 3, "tags": ["cdn"], "country": "DE", "as_owner": "Example AS", "asn": 64500,
    "network": "23.0.0.0/8"}}}).encode()
ABUSE_BODY = json.dumps({"data": {"ipAddress": "x", "isPublic": True, "abuseConfidenceScore": 30,
                                  "countryCode": "DE", "usageType": "Data Center", "isp": "Example",
                                  "totalReports": 12, "numDistinctUsers": 4, "isTor": False,
                                  "isWhitelisted": False}}).encode()


# ---- the stand-in provider (run as its own process: --standin) -----------------------------

class Stats:
    requests = 0
    inflight = 0
    max_inflight = 0
    connections = 0
    max_connections = 0
    accepted = 0


def response(status, body, close=False):
    reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}.get(status, "X")
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (status, reason.encode(), len(body), b"Connection: close\r\n" if close else b"")) + body


class StandinProtocol(asyncio.Protocol):
    latency = 0.05

    def connection_made(self, transport):
        self.tr = transport
        self.buf = b""
        self.ready_at = 0.0  # answers on one connection leave in order
        self.loop = asyncio.get_running_loop()
        Stats.connections += 1
        Stats.accepted += 1
        Stats.max_connections = max(Stats.max_connections, Stats.connections)

    def connection_lost(self, exc):
        Stats.connections -= 1
        self.tr = None

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.tr.close()
                return
            head = self.buf[:end]
            clen = 0
            low = head.lower()
            i = low.find(b"\r\ncontent-length:")
            if i >= 0:
                j = low.find(b"\r\n", i + 2)
                clen = int(low[i + 17:j if j >= 0 else len(low)].strip() or 0)
            if len(self.buf) < end + 4 + clen:
                return
            self.buf = self.buf[end + 4 + clen:]
            line = head.split(b"\r\n", 1)[0].split(b" ")
            target = line[1] if len(line) > 1 else b"/"
            self.request(target)

    def request(self, target):
        if target.startswith(b"/__stats"):
            body = json.dumps({"requests": Stats.requests, "inflight": Stats.inflight,
                               "max_inflight": Stats.max_inflight,
                               "max_connections": Stats.max_connections,
                               "accepted": Stats.accepted}).encode()
            self.tr.write(response(200, body))
            return
        if target.startswith(b"/__reset"):
            Stats.max_inflight = Stats.inflight
            Stats.max_connections = Stats.connections
            self.tr.write(response(200, b"{}"))
            return
        if target.startswith(b"/vt/"):
            out = response(200, VT_BODY)
        elif target.startswith(b"/abuse/"):
            out = response(200, ABUSE_BODY)
        else:
            out = response(404, b'{"error":"no route"}')
        Stats.inflight += 1
        Stats.max_inflight = max(Stats.max_inflight, Stats.inflight)
        at = max(self.loop.time() + self.latency, self.ready_at)
        self.ready_at = at
        self.loop.call_at(at, self.answer, out)

    def answer(self, out):
        Stats.inflight -= 1
        Stats.requests += 1
        if self.tr is not None and not self.tr.is_closing():
            self.tr.write(out)


def standin_main(latency_ms):
    StandinProtocol.latency = latency_ms / 1000.0

    async def serve():
        loop = asyncio.get_running_loop()
        # one port per provider (both answer every route); the counters are the process's
        srvs = [await loop.create_server(StandinProtocol, "127.0.0.1", 0, backlog=4096)
                for _ in range(2)]
        print(" ".join(str(s.sockets[0].getsockname()[1]) for s in srvs), flush=True)
        await asyncio.gather(*(s.serve_forever() for s in srvs))

    asyncio.run(serve())


# ---- helpers --------------------------------------------------------------------------------

def cpu_ticks(pid, reaped=False):
    """utime + stime of a process in clock ticks (0 when it is gone); reaped: plus the CPU of
    its children that exited and were waited for (a postmaster's short-lived backends)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    except (OSError, IndexError, ValueError):
        return 0


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def sched_ns(pid):
    """(ns on a CPU, ns runnable but waiting for a CPU) of a process's main thread."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            v = f.read().split()
        return int(v[0]), int(v[1])
    except (OSError, IndexError, ValueError):
        return 0, 0


def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def children_of(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == ppid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def postgres_pids(harness):
    """The postmaster of DATABASE_URL's cluster and its children."""
    try:
        ddir = harness.psql_value(harness.db_url_for("postgres"), "SHOW data_directory")
        with open(os.path.join(ddir, "postmaster.pid")) as f:
            pm = int(f.readline())
        return [pm] + children_of(pm)
    except Exception as e:  # not readable: fall back to every process named postgres
        print("note: cluster pids via data_directory failed (%s); counting every postgres process" % e)
        pids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/comm" % d) as f:
                        if f.read().strip() == "postgres":
                            pids.append(int(d))
                except OSError:
                    pass
        return pids


class CpuWindow:
    """CPU used by groups of processes between start() and stop(), as % of one core. A child
    of a reaped pid that exits inside the window brings all its CPU into its parent's count,
    what it used before start() too: the window must not start while such a child is ending
    (the bench's statements go through one session kept open, PsqlSession)."""

    def __init__(self, groups, reaped=()):
        self.groups = groups  # name -> callable returning pids
        self.reaped = set(reaped)  # pids whose exited children count too (the postmaster)

    def start(self):
        self.t0 = time.time()
        self.m0 = machine_ticks()
        self.self0 = os.times()
        self.c0 = {}
        for name, fn in self.groups.items():
            for pid in fn():
                self.c0[(name, pid)] = cpu_ticks(pid, pid in self.reaped)

    def stop(self):
        dt = time.time() - self.t0
        hz = os.sysconf("SC_CLK_TCK")
        m1 = machine_ticks()
        out = {}
        for name, fn in self.groups.items():
            ticks = 0
            for pid in set(fn()) | {p for (n, p) in self.c0 if n == name}:
                ticks += max(0, cpu_ticks(pid, pid in self.reaped) - self.c0.get((name, pid), 0))
            out[name] = 100.0 * ticks / hz / dt
        s1 = os.times()
        out["bench script"] = 100.0 * ((s1.user - self.self0.user) + (s1.system - self.self0.system)) / dt
        busy = (m1[0] - self.m0[0]) / max(1, (m1[1] - self.m0[1]))
        out["machine busy (all cores, all work)"] = 100.0 * busy * os.cpu_count()
        return out


class PsqlSession:
    """One psql kept open for the phases' inserts and progress polls: a connection per poll
    costs about 4 ms of a backend's CPU (its start and password exchange), and the backend of
    a phase's insert, exiting just after it, would bring the insert's CPU into the window's."""

    def __init__(self, url):
        self.p = subprocess.Popen(["psql", url, "-X", "-q", "-t", "-A", "-F", "\t", "-v",
                                   "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def rows(self, sql):
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo __done__\n")
        self.p.stdin.flush()
        out = []
        for line in self.p.stdout:
            line = line.rstrip("\n")
            if line == "__done__":
                return out
            if line:
                out.append(line.split("\t"))
        raise RuntimeError("psql session ended")

    def close(self):
        self.p.stdin.close()
        self.p.wait()


# ---- the benchmark --------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        import harness
        self.h = harness
        self.args = args
        self.key = harness.fernet_key()
        self.standin = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--standin",
                                         "--latency-ms", str(args.latency_ms)],
                                        stdout=subprocess.PIPE, text=True)
        self.ports = [int(x) for x in self.standin.stdout.readline().split()]
        self.port = self.ports[0]
        # the VirusTotal and AbuseIPDB stand-ins: two host:ports, or one with --one-host
        self.provider_ports = self.ports[:1] * 2 if args.one_host else self.ports
        self.env = {
            "ENCRYPTION_KEY": self.key,
            "ENRICHER_ALLOW_LOOPBACK": "true",
            "ENRICHER_POLL_INTERVAL_MS": "100",
            "ENRICHER_CONCURRENCY": str(args.concurrency),
            "ENRICHER_PROVIDER_MAX_CONCURRENCY": str(args.provider_concurrency),
            "ENRICHER_PROVIDER_RATE_PER_SECOND": "100000",
            "ENRICHER_DB_CONNECTIONS": str(args.db_connections),
            # per host:port: each provider has its own (one shared with --one-host)
            "ENRICHER_HOST_CONNECTIONS": str(args.host_connections),
            "ENRICHER_IDLE_CONNECTIONS": str(args.idle_connections),
            "ENRICHER_CACHE_ENTRIES": "1000000",
            "ENRICHER_CACHE_MAX_BYTES": str(1 << 30),
            "ENRICH_JOB_DEADLINE_SECONDS": "300",
            "ENRICH_JOB_LEASE_SECONDS": "300",
            "LOG_LEVEL": args.log_level,
        }
        self.stack = self.h.Stack("enrichbench", services=("auditd",), env=self.env)
        self.configure()
        self.pg = postgres_pids(self.h)
        self.poll = PsqlSession(self.stack.db)
        self.workers = []
        self.results = []

    def configure(self):
        vt, abuse = ("http://127.0.0.1:%d" % p for p in self.provider_ports)
        s = self.stack
        for old, new in (("https://www.virustotal.com", vt + "/vt"),
                         ("https://api.abuseipdb.com", abuse + "/abuse")):
            s.sql("UPDATE enrichment_providers SET http_config = "
                  "replace(http_config::text, '%s', '%s')::jsonb" % (old, new))
        for name, c in (("virustotal", {"api_key": VT_KEY}), ("abuseipdb", {"api_key": ABUSE_KEY})):
            tok = self.h.fernet_encrypt(self.key, json.dumps(c).encode())
            s.sql("UPDATE enrichment_providers SET auth_config = '%s'::jsonb WHERE provider_name = '%s'"
                  % (json.dumps({"_encrypted": tok}), name))
        s.sql("UPDATE enrichment_providers SET is_active = (provider_name IN ('virustotal', 'abuseipdb'))")

    def backends(self, app):
        rows = self.stack.sql("SELECT pid FROM pg_stat_activity WHERE application_name = '%s'" % app)
        return [int(r[0]) for r in rows]

    def worker_backends(self):
        return self.backends("enrich-bench-worker")

    def standin_stats(self, reset=False):
        path = "/__reset" if reset else "/__stats"
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=10) as r:
            return json.loads(r.read())

    def stop_workers(self):
        """Stops the workers; prints what each says when drained (the completing statements
        it sent and the jobs they carried, over every phase it ran)."""
        for w in self.workers:
            w.stop()
            for line in w.text().splitlines():
                if "drained:" in line:
                    print("  worker %d: %s" % (w.p.pid, line.split("drained:", 1)[1].strip()))
        self.workers = []

    def start_workers(self, n):
        self.stop_workers()
        # PGAPPNAME tells the workers' database sessions apart (their CPU is measured)
        env = {"PGAPPNAME": "enrich-bench-worker"}
        env.update(kv.split("=", 1) for kv in self.args.worker_env)
        self.workers = [self.stack.start("enricher", env) for _ in range(n)]
        deadline = time.time() + 20
        while time.time() < deadline:
            if all("providers loaded" in w.text() for w in self.workers):
                return
            for w in self.workers:
                if not w.alive():
                    raise RuntimeError("worker exited:\n" + w.text()[-3000:])
            time.sleep(0.05)
        raise RuntimeError("workers did not load their providers:\n" + self.stack.logs())

    def insert(self, tag, first_octet, jobs, k, fresh=True):
        """N alerts titled '<tag> <i>' with K IPs each, and their jobs; returns (lo, hi) job ids.
        fresh=False links the (existing) indicators of the same numbers again."""
        ip = ("(%d || '.' || ((n >> 16) & 255) || '.' || ((n >> 8) & 255) || '.' || (n & 255))"
              % first_octet)
        sql = (
            "BEGIN;"
            "CREATE TEMP TABLE b ON COMMIT DROP AS SELECT g AS a_no, (g - 1) * %(k)d + j AS n FROM generate_series(1, %(jobs)d) g, "
            "generate_series(1, %(k)d) j;"
            "INSERT INTO indicators (type, value, first_seen, last_seen) SELECT DISTINCT 'ip', %(ip)s, now(), now() FROM b "
            "ON CONFLICT (type, value) DO UPDATE SET last_seen = now();"
            "CREATE TEMP TABLE a ON COMMIT DROP AS WITH ins AS (INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload) "
            "SELECT '%(tag)s ' || g, 'High', 'generic', now(), '{}'::jsonb FROM generate_series(1, %(jobs)d) g "
            "RETURNING id, title) SELECT id, split_part(title, ' ', 2)::int AS a_no FROM ins;"
            "INSERT INTO alert_indicators (alert_id, indicator_id) SELECT a.id, i.id FROM a JOIN b USING (a_no) "
            "JOIN indicators i ON i.type = 'ip' AND i.value = %(ip)s;"
            "INSERT INTO enrichment_jobs (alert_id) SELECT id FROM a ORDER BY id;"
            "SELECT min(j.id), max(j.id) FROM enrichment_jobs j JOIN a ON a.id = j.alert_id;"
            "COMMIT;" % {"k": k, "jobs": jobs, "ip": ip, "tag": tag})
        rows = self.poll.rows(sql)
        lo, hi = rows[-1]
        return int(lo), int(hi)

    def wait_done(self, lo, hi, timeout):
        deadline = time.time() + timeout
        n = hi - lo + 1
        peak = {}
        self.activity = {}
        samples = 0
        while time.time() < deadline:
            rows = self.poll.rows("SELECT 'jobs', count(*) FILTER (WHERE status = 'done'), "
                                  "count(*) FILTER (WHERE status = 'failed') FROM enrichment_jobs "
                                  "WHERE id BETWEEN %d AND %d UNION ALL "
                                  "SELECT state || ' ' || coalesce(wait_event_type || ':' || wait_event, 'on CPU'), "
                                  "count(*), 0 FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND pid <> pg_backend_pid() AND backend_type = 'client backend' GROUP BY 1"
                                  % (lo, hi))
            row = rows[0][1:]
            samples += 1
            for r in rows[1:]:
                self.activity[r[0]] = self.activity.get(r[0], 0) + int(r[1])
            for w in self.workers:
                peak[w.p.pid] = max(peak.get(w.p.pid, 0), vm_hwm_kb(w.p.pid))
            done, failed = int(row[0]), int(row[1])
            if done + failed >= n:
                self.activity = {k: round(v / samples, 1) for k, v in
                                 sorted(self.activity.items(), key=lambda kv: -kv[1])}
                return done, failed, peak
            for w in self.workers:
                if not w.alive():
                    raise RuntimeError("a worker died:\n" + w.text()[-3000:])
            time.sleep(0.1)
        raise RuntimeError("jobs not done in %ds:\n%s" % (timeout, self.stack.logs()))

    def decryptions_audited(self, settle=False):
        """credentials_decrypted events auditd has committed; settle: wait (up to 5 s) until the
        count stops moving, as auditd commits a little after the workers emit."""
        q = "SELECT count(*) FROM audit_events WHERE event_type = 'credentials_decrypted'"
        n = int(self.stack.sql_value(q))
        deadline = time.time() + (5 if settle else 0)
        while time.time() < deadline:
            time.sleep(0.3)
            m = int(self.stack.sql_value(q))
            if m == n:
                break
            n = m
        return n

    def phase(self, name, nworkers, first_octet, jobs, k, fresh, restart=True):
        a = self.args
        if restart:
            self.start_workers(nworkers)
        self.standin_stats(reset=True)
        st0 = self.standin_stats()
        before, accepted0 = st0["requests"], st0["accepted"]
        cache_before = int(self.stack.sql_value("SELECT count(*) FROM enrichment_cache"))
        audit_before = self.decryptions_audited()
        cpu = CpuWindow({
            "worker(s)": lambda: [w.p.pid for w in self.workers],
            "stand-in provider": lambda: [self.standin.pid],
            "postgresql (cluster)": lambda: self.pg + children_of(self.pg[0]) if self.pg else [],
            "postgresql (worker sessions)": self.worker_backends,
            "postgresql (auditd session)": lambda: self.backends("calseta-auditd"),
            # what the postmaster reaped: autovacuum workers and short sessions (this script's
            # psql polls, a connection each), not the long-lived sessions
            "postgresql (exited processes)": lambda: self.pg[:1],
            "auditd": lambda: [p.p.pid for p in self.stack.procs if p.name == "auditd"],
        }, reaped=self.pg[:1])
        tag = "%s-%d" % (name.split()[0], int(time.time() * 1000) % 100000000)
        t_ins = time.time()
        lo, hi = self.insert(tag, first_octet, jobs, k, fresh)
        t0 = time.time()
        cpu.start()
        log0 = {w.p.pid: len(w.text()) for w in self.workers}
        s0 = {w.p.pid: sched_ns(w.p.pid) for w in self.workers}
        prof = self.profile_start(name)
        done, failed, peak = self.wait_done(lo, hi, a.timeout)
        t1 = time.time()
        usage = cpu.stop()
        self.profile_stop(prof)
        s1 = {w.p.pid: sched_ns(w.p.pid) for w in self.workers}
        el_ns = (t1 - t0) * 1e9
        sched = ["on CPU %d%%, runnable but waiting for a CPU %d%%"
                 % (100 * (s1[p][0] - s0[p][0]) / el_ns, 100 * (s1[p][1] - s0[p][1]) / el_ns) for p in s0]
        ps = subprocess.run(["ps", "-o", "pid,pcpu,rss,etimes,comm", "-p",
                             ",".join(str(p) for p in [w.p.pid for w in self.workers] + [self.standin.pid])],
                            capture_output=True, text=True).stdout
        st = self.standin_stats()
        calls = st["requests"] - before
        # claim to commit of each job this phase (the workers log it): with jobs/s, Little's
        # law gives the jobs really in flight, against ENRICHER_CONCURRENCY per worker
        took = sorted(int(m) for w in self.workers
                      for m in re.findall(r" done in (\d+) ms", w.text()[log0[w.p.pid]:]))
        cache_after = int(self.stack.sql_value("SELECT count(*) FROM enrichment_cache"))
        lookups = jobs * k * 2
        el = t1 - t0
        audited = self.decryptions_audited(settle=True) - audit_before
        r = {
            "phase": name, "workers": nworkers, "jobs": jobs, "indicators/job": k,
            "lookups": lookups, "provider calls": calls, "cache rows added": cache_after - cache_before,
            "done": done, "failed": failed, "insert s": round(t0 - t_ins, 2), "elapsed s": round(el, 2),
            "lookups/s": round(lookups / el), "provider calls/s": round(calls / el),
            "jobs/s": round(jobs / el, 1),
            "lookups/s per worker": round(lookups / el / nworkers),
            "ratio to wrk ceiling": round(lookups / el / self.ceiling, 2) if self.ceiling else None,
            "job claim to commit ms (mean / median / p99)": "%.0f / %d / %d" % (
                sum(took) / len(took), took[len(took) // 2], took[len(took) * 99 // 100])
                if took else None,
            "jobs in flight (jobs/s x mean time; cap)": "%.0f; %d" % (
                jobs / (t1 - t0) * sum(took) / len(took) / 1000, a.concurrency * nworkers)
                if took else None,
            "lookups in flight (lookups/s x latency)": round(lookups / (t1 - t0) * a.latency_ms / 1000),
            "max provider requests in flight": st["max_inflight"],
            "max provider connections": st["max_connections"],
            "provider connections opened": st["accepted"] - accepted0,
            "peak RSS MiB (VmHWM, per worker)": [round(v / 1024, 1) for v in peak.values()],
            "cpu % of one core": {kk: round(v) for kk, v in usage.items()},
            "worker main thread (schedstat)": sched,
            "worker CPU us per lookup": round(usage["worker(s)"] / 100 * el * 1e6 / lookups, 1),
            "postgresql CPU us per lookup (worker sessions / whole cluster / auditd session / "
            "exited processes)":
                "%.1f / %.1f / %.1f / %.1f" % (
                usage["postgresql (worker sessions)"] / 100 * el * 1e6 / lookups,
                usage["postgresql (cluster)"] / 100 * el * 1e6 / lookups,
                usage["postgresql (auditd session)"] / 100 * el * 1e6 / lookups,
                usage["postgresql (exited processes)"] / 100 * el * 1e6 / lookups),
            "stand-in CPU us per provider call":
                round(usage["stand-in provider"] / 100 * el * 1e6 / calls, 1) if calls else None,
            "implied lookups/s per worker at 100% of one core":
                round(lookups / (usage["worker(s)"] / 100 * el)) if usage["worker(s)"] else None,
            "credential decryptions audited (per lookup)": "%d (%.3f)" % (audited, audited / lookups),
            "db sessions (mean per sample)": self.activity,
            "load average (1/5/15)": loadavg(),
            "_cpu": usage,
        }
        self.results.append(r)
        print("\n== %s ==" % name)
        for kk, v in r.items():
            if not kk.startswith("_"):
                print("  %-34s %s" % (kk, v))
        print("  ps:\n    " + ps.strip().replace("\n", "\n    "), flush=True)
        if failed:
            print("  WARNING: %d jobs failed" % failed)
        if fresh and calls != lookups:
            print("  WARNING: provider calls %d != lookups %d (failures or retries)" % (calls, lookups))
        if not fresh and calls:
            print("  WARNING: %d provider calls in a cache phase" % calls)
        return r

    def profile_start(self, name):
        """--perf DIR: `perf record -g` of the worker(s) for the phase; --strace: syscall counts
        (`strace -c`) of the first worker's main thread for --strace seconds (it slows the worker: the
        phase's figures are then not comparable)."""
        a = self.args
        prof = []
        pids = ",".join(str(w.p.pid) for w in self.workers)
        if a.perf:
            os.makedirs(a.perf, exist_ok=True)
            out = os.path.join(a.perf, "phase-%s.data" % name.split()[0].replace(":", ""))
            prof.append(("perf", out, subprocess.Popen(
                ["perf", "record", "-q"] + (["--call-graph", "dwarf,16384", "-F", "499"] if a.perf_dwarf else ["-g"]) + ["-o", out, "-p", pids],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        if a.strace:
            # every thread (-f: the SSRF checks and name lookups run on libuv's thread pool); the
            # stand-in's request count over the same window turns the counts into per-call figures
            window = {"calls0": self.standin_stats()["requests"]}
            p = subprocess.Popen(["timeout", "-s", "INT", str(a.strace), "strace", "-f", "-c", "-p",
                                  str(self.workers[0].p.pid)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            t = threading.Timer(a.strace, lambda: window.update(calls1=self.standin_stats()["requests"]))
            t.start()
            prof.append(("strace", window, p))
        return prof

    def profile_stop(self, prof):
        for kind, out, p in prof:
            if kind == "perf":
                p.send_signal(signal.SIGINT)
                p.wait()
                for sort in ("dso", "dso,symbol"):
                    rep = subprocess.run(["perf", "report", "-i", out, "--no-children", "-g", "none",
                                          "--percent-limit", "0.7", "--sort", sort],
                                         capture_output=True, text=True).stdout
                    lines = [l for l in rep.splitlines() if l.strip() and not l.startswith("#")]
                    print("  perf (self, by %s), %s:\n    %s" % (sort, out, "\n    ".join(lines[:25])))
            else:
                err = p.communicate()[1]
                calls = out.get("calls1", self.standin_stats()["requests"]) - out["calls0"]
                lines = []
                for l in err.splitlines():
                    f = l.split()
                    if len(f) >= 5 and f[3].isdigit():
                        lines.append("%-14s %8s calls  %6.2f per provider call" % (
                            f[-1], f[3], int(f[3]) / calls if calls else 0))
                print("  strace -f -c of the first worker, all threads, %d provider calls in the "
                      "window:\n    %s" % (calls, "\n    ".join(lines[:25])))

    def in_flight_bound(self):
        """Lookups one worker can have in flight, as docs/enrichment.md's sizing formula puts
        it: per provider, the jobs in flight times their lookups at it, at most its
        max_concurrency (ENRICHER_PROVIDER_MAX_CONCURRENCY); both providers together at most
        ENRICHER_HOST_CONNECTIONS per provider host:port (each request holds one connection
        until its answer)."""
        a = self.args
        hosts = len(set(self.provider_ports))
        n = 2 * min(a.concurrency * a.indicators, a.provider_concurrency)
        if a.host_connections > 0:
            n = min(n, hosts * a.host_connections)
        return hosts, n

    def wrk_ceiling(self):
        """The stand-in driven by wrk (not our code) with as many connections as one worker may
        open (one wrk per provider port, at the same time): the most requests per second this
        stand-in and loopback give at this latency."""
        a = self.args
        hosts, n = self.in_flight_bound()
        per = max(1, n // hosts)
        # each connection is a descriptor of wrk's (and one of the stand-in's, which serves
        # every port): keep both well inside the open-files limit
        fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        room = max(1, (fds - 64) // hosts)
        if per > room:
            print("ceiling: %d connections per port capped to %d by the open-files limit (%d)"
                  % (per, room, fds))
            per = room
        t0 = cpu_ticks(self.standin.pid)
        w0 = time.time()
        runs = [subprocess.Popen(["wrk", "-t1", "-c%d" % per, "-d%ds" % a.ceiling_seconds,
                                  "--latency", "http://127.0.0.1:%d/vt/23.0.0.1" % port],
                                 stdout=subprocess.PIPE, text=True)
                for port in sorted(set(self.provider_ports))]
        outs = [r.communicate()[0] for r in runs]
        el = time.time() - w0
        standin = 100.0 * (cpu_ticks(self.standin.pid) - t0) / os.sysconf("SC_CLK_TCK") / el
        rps = 0.0
        for out in outs:
            for line in out.splitlines():
                if line.startswith("Requests/sec:"):
                    rps += float(line.split()[1])
        print("ceiling: %d x wrk -t1 -c%d against the stand-in (one per provider port): %.0f "
              "requests/s, stand-in CPU %.0f%% of one core, load average %s"
              % (hosts, per, rps, standin, loadavg()))
        print("  theoretical for one worker: min(2 providers x min(%d jobs x %d lookups, "
              "max_concurrency %d), %d host(s) x %s connections) = %d in flight / %d ms = "
              "%.0f lookups/s"
              % (a.concurrency, a.indicators, a.provider_concurrency, hosts,
                 a.host_connections or "unlimited", n, a.latency_ms, n * 1000.0 / a.latency_ms),
              flush=True)
        return rps

    def run(self):
        a = self.args
        print("stand-in on port(s) %s (VirusTotal, AbuseIPDB), latency %d ms; database %s; "
              "load average %s" % ("/".join(map(str, self.provider_ports)), a.latency_ms,
                                   self.stack.dbname, loadavg()), flush=True)
        self.ceiling = self.wrk_ceiling()
        want = set(a.phases.split(","))
        if "1" in want:
            self.phase("1 worker, fresh indicators", 1, 23, a.jobs, a.indicators, True)
        if "2" in want:
            self.phase("2 workers, fresh indicators", 2, 24, a.jobs, a.indicators, True)
        if "4" in want:
            self.phase("4 workers, fresh indicators", 4, 25, a.jobs, a.indicators, True)
        if "cache" in want:
            self.phase("cache: 1 fresh worker, shared PostgreSQL cache", 1, 23, a.jobs,
                       a.indicators, False)
            self.phase("cache: same worker, warm in-process cache", 1, 23, a.jobs, a.indicators,
                       False, restart=False)
        one = [r for r in self.results if r["phase"].startswith("1 worker")]
        if one:
            base = one[0]["lookups/s"]
            for r in self.results:
                if r["phase"][0] in "24" and base:
                    print("  %s: %.2fx one worker" % (r["phase"], r["lookups/s"] / base))
        print("\nsummary (CPU in µs per lookup: worker, PostgreSQL sessions of the workers, whole "
              "cluster; @1core: lookups/s one worker could do on a core of its own):")
        print("  %-48s %9s %8s %7s %9s %5s %6s %4s %7s %7s %7s %7s   %s" % (
            "phase", "lookups/s", "per wkr", "jobs/s", "RSS MiB", "wkr%", "stand%", "pg%",
            "wkr us", "pg us", "pgall", "@1core", "load"))
        for r in self.results:
            c = r["_cpu"]
            el, n = r["elapsed s"], r["lookups"]
            print("  %-48s %9d %8d %7.1f %9s %5.0f %6.0f %4.0f %7.1f %7.1f %7.1f %7s   %s" % (
                r["phase"], r["lookups/s"], r["lookups/s per worker"], r["jobs/s"],
                "/".join(str(x) for x in r["peak RSS MiB (VmHWM, per worker)"]), c["worker(s)"],
                c["stand-in provider"], c["postgresql (cluster)"], r["worker CPU us per lookup"],
                c["postgresql (worker sessions)"] / 100 * el * 1e6 / n,
                c["postgresql (cluster)"] / 100 * el * 1e6 / n,
                r["implied lookups/s per worker at 100% of one core"], r["load average (1/5/15)"]))

    def close(self):
        try:
            self.stop_workers()
            self.poll.close()
            self.stack.stop()
        finally:
            self.standin.terminate()
            self.standin.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--standin", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--indicators", type=int, default=10, help="IP indicators per job")
    ap.add_argument("--concurrency", type=int, default=256, help="ENRICHER_CONCURRENCY")
    ap.add_argument("--provider-concurrency", type=int, default=1000,
                    help="ENRICHER_PROVIDER_MAX_CONCURRENCY (requests in flight per provider and "
                    "worker, and so about the provider connections a worker opens)")
    ap.add_argument("--idle-connections", type=int, default=2048,
                    help="ENRICHER_IDLE_CONNECTIONS (kept-alive provider connections kept idle)")
    ap.add_argument("--db-connections", type=int, default=8, help="ENRICHER_DB_CONNECTIONS")
    ap.add_argument("--host-connections", type=int, default=256,
                    help="ENRICHER_HOST_CONNECTIONS: requests in flight per host:port and worker "
                    "(0: no cap)")
    ap.add_argument("--one-host", action="store_true",
                    help="both providers on one stand-in host:port (one ENRICHER_HOST_CONNECTIONS "
                    "cap for both)")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--ceiling-seconds", type=int, default=5, help="wrk run against the stand-in")
    ap.add_argument("--phases", default="1,2,4,cache",
                    help="comma-separated subset of 1,2,4,cache (fresh-indicator phases by worker count)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds a phase may take")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment of the workers (e.g. LD_PRELOAD=... to try an "
                         "allocator); repeatable")
    ap.add_argument("--perf", metavar="DIR", help="perf record -g the workers of each phase into DIR "
                    "and print the top symbols")
    ap.add_argument("--perf-dwarf", action="store_true",
                    help="with --perf: DWARF call graphs (callers through libc and libcurl)")
    ap.add_argument("--strace", type=int, metavar="SECONDS",
                    help="count the first worker's system calls for SECONDS in each phase")
    args = ap.parse_args()
    if args.standin:
        return standin_main(args.latency_ms)
    b = Bench(args)
    try:
        b.run()
    finally:
        b.close()


if __name__ == "__main__":
    main()
