#!/usr/bin/env python3
"""ingest_bench.py - durable ingest through the real intake, against a ceiling that is not our code,
both measured in the same run on the same PostgreSQL.

Streams (each over N keep-alive connections with wrk, for --seconds):
  fixtures    the five fixtures round-robin, signed (X-Webhook-Signature / X-Splunk-Signature),
              de-duplication off (ALERT_DEDUP_WINDOW_HOURS=0): every 202 is a new alert
  unique      distinct generic alerts (own IP, own domain each), de-duplication on (24 h)
  dup30       as unique, but 30 % of the posts repeat an alert posted before
  hot         as unique, but every alert carries the same IP indicator
  fixtures-dedup  the five fixtures with de-duplication on: every post after the first five is a
              duplicate of one of five alerts
  alerts      the five fixtures through POST /v1/alerts ({"source_name", "payload"}; no
              signature), de-duplication off (not in the default set: --streams fixtures,alerts)
Each stream checks that every 202 left a row: a new alert, or an alert_deduplicated event
(requests still in flight when wrk stops may be committed without their 202 being read: at most
one per connection).

Ceiling: pgbench inserting the five fixture documents (as the intake normalised them; the raw
payload as JSON text, parsed and compressed by PostgreSQL as when a client sends it, with the
compression method of alerts.raw_payload) as plain
alert + enrichment-job rows - one statement per batch (INSERT ... RETURNING feeding the job
INSERT), the batch size the intake achieved in the fixtures stream, 8 clients - into scratch
tables with the same columns and indexes in a scratch database on the same server. No
indicators, links, events, de-duplication or HTTP: what PostgreSQL itself can commit.

The plain-INSERT ceiling is measured again at the end of the run (same documents, same batch
size): on a shared box one sample of it moves by up to a seventh between runs a minute apart, as
much as a stream does. The summary at the end gives every stream's ratio to each sample and to
their mean.

Every stream and the ceiling print the server's CPU and WAL bytes per alert (load-independent),
and the client's CPU per request (wrk) or per alert (pgbench): the client runs on the same cores.
A stream's server CPU is also split by kind of process (client backends, walwriter, autovacuum
workers, ...; the processes that exited during the stream together).

While each stream runs, the wait events of the server's active backends are sampled (10 per
second) and printed: what the write path waits for. The load average is printed per stream.
With --trace, a 10 ms timeline of each stream (tests/bench/ingest_trace.py): the 100 ms slices in
which some call ran longer than 100 ms, what every backend waited for then, lock waiters,
autovacuum workers, and the tables' last autoanalyze/autovacuum and checkpoint counts.
Before each stream of the de-duplicating stack the ingest tables are vacuumed and analysed
(--no-settle: not), so autovacuum's pass over the previous streams' rows is not carried into
this one, and a CHECKPOINT is forced (--no-checkpoint: none). Each stream also prints the run-queue
wait of the server's processes (/proc/PID/schedstat): on a shared box, their time without a core.

Run by hand (not in CI), with a release build and a PostgreSQL that fsyncs:
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j2
    export CALSETA_DATA_DIR=/tmp/calseta-bench; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build/bin/calseta migrate
    python3 tests/bench/ingest_bench.py [--seconds 10] [--connections 64] [--intake 2] [--streams a,b]
Needs wrk and pgbench. --gin-sampler also samples the GIN pending list's size 10 times a second
(its queries take ~2 % of the server's CPU from each stream, which the ceiling does not share, so
it is off by default); that needs pageinspect (a contrib module, created by a superuser; without it
the bench runs on and prints that the list was not sampled). The load generator runs with
--wrk-threads threads (default 1: one wrk thread drives the 64 connections with a fraction of a
core, and every thread more takes CPU from the stack it measures).
"""
import argparse
import collections
import hashlib
import hmac
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("CALSETA_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))
import harness  # noqa: E402
sys.path.insert(0, HERE)
import ingest_trace  # noqa: E402

SECRET = "bench-secret"
FIXTURES = [("sentinel", "01_sentinel_brute_force_tor.json"), ("elastic", "02_elastic_malware_hash.json"),
            ("splunk", "03_splunk_anomalous_data_transfer.json"), ("sentinel", "04_sentinel_impossible_travel.json"),
            ("elastic", "05_elastic_suspicious_powershell.json")]
STREAMS = ("fixtures", "unique", "dup30", "hot", "fixtures-dedup", "alerts")

WRK_DONE = ("done = function(summary, latency, requests)\n"
            "  io.write(string.format(\"p999_us %d\\n\", latency:percentile(99.9)))\nend\n")


def lua_string(b):
    return '"' + "".join("\\%d" % c for c in b) + '"'


def fixtures_script(key):
    reqs = []
    for src, name in FIXTURES:
        body = harness.fixture(name)
        sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        hdr = "X-Splunk-Signature" if src == "splunk" else "X-Webhook-Signature"
        reqs.append('wrk.format("POST", "/v1/ingest/%s", {["Authorization"]="Bearer %s", '
                    '["Content-Type"]="application/json", ["%s"]="%s"}, %s)' % (src, key, hdr, sig, lua_string(body)))
    return ("local reqs = {}\n" + "".join("reqs[%d] = %s\n" % (i + 1, r) for i, r in enumerate(reqs)) +
            "local n = 0\nrequest = function()\n  n = n + 1\n  return reqs[(n %% %d) + 1]\nend\n" % len(reqs) +
            WRK_DONE)


def alerts_script(key):
    reqs = []
    for src, name in FIXTURES:
        body = b'{"source_name": "%s", "payload": %s}' % (src.encode(), harness.fixture(name))
        reqs.append('wrk.format("POST", "/v1/alerts", {["Authorization"]="Bearer %s", '
                    '["Content-Type"]="application/json"}, %s)' % (key, lua_string(body)))
    return ("local reqs = {}\n" + "".join("reqs[%d] = %s\n" % (i + 1, r) for i, r in enumerate(reqs)) +
            "local n = 0\nrequest = function()\n  n = n + 1\n  return reqs[(n %% %d) + 1]\nend\n" % len(reqs) +
            WRK_DONE)


RUNS = [0]


def generic_script(key, dup_share, hot):
    """Distinct generic alerts built per request (each wrk thread numbers its own), about the size
    of a fixture; dup_share of them repeat an earlier one of the same thread.

    The request is put together the way wrk.format() would, but with only the alert's own fields
    formatted per request: the head (request line, Host, Authorization, Content-Type) is built
    once, and the 1.5 KB filler is appended as a constant instead of going through
    string.format(), which copies its format string a character at a time. The server gets the
    same bytes; the load generator, which shares the cores with the stack, spends less per
    request (it prints its own CPU per request)."""
    filler = json.dumps("x" * 1500)
    RUNS[0] += 1  # every run numbers its alerts apart from the runs before
    return """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
local n = 0
local titles = {"Brute force from Tor exit", "Malware hash on endpoint", "Anomalous data transfer",
                "Impossible travel", "Suspicious PowerShell"}
local head = nil
local tail = '%s}'
request = function()
  if head == nil then
    head = "POST /v1/ingest/generic HTTP/1.1\\r\\nHost: " .. wrk.headers["Host"] ..
      "\\r\\nAuthorization: Bearer %s\\r\\nContent-Type: application/json\\r\\nContent-Length: "
  end
  n = n + 1
  local k = n
  if n > 20 and math.random() < %f then k = math.random(1, n - 1) end
  local u = %d + tid * 100000000 + k
  local ip = "%s"
  if ip == "" then
    ip = string.format("10.%%d.%%d.%%d", math.floor(u / 65536) %% 256, math.floor(u / 256) %% 256, u %% 256)
  end
  local fields = string.format('{"title": "%%s", "severity": "high", "rule_id": "bench-%%d", ' ..
    '"occurred_at": "2026-01-01T00:00:00Z", "src_ip": "%%s", "tags": ["bench"], ' ..
    '"indicators": [{"type": "domain", "value": "h%%.0f.bench.example"}], "raw": ',
    titles[(k %% 5) + 1], k %% 5, ip, u)
  return head .. (#fields + #tail) .. "\\r\\n\\r\\n" .. fields .. tail
end
""" % (filler, key, dup_share, RUNS[0] * 1000000000, "203.0.113.7" if hot else "") + WRK_DONE


def parse_wrk(out):
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError("wrk output not understood:\n" + out)
    total = int(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    lat = {}
    m = re.search(r"p999_us (\d+)", out)
    if m:
        lat["99.9"] = int(m.group(1)) / 1000.0
    for p in ("50", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+([\d.]+)(us|ms|s)\s*$" % re.escape(p), out, re.M)
        if m:
            lat[p] = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    return total, int(non2xx.group(1)) if non2xx else 0, lat, errs.group(0) if errs else ""


class WaitSampler(threading.Thread):
    """Samples wait_event_type/wait_event of the database's active backends 10 times a second."""
    SQL = ("SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '-') || '|' || "
           "CASE WHEN query LIKE '%calseta_ingest_batch%' OR query LIKE '%calseta_ingest_columns%' THEN 'ingest batches' "
           "WHEN query LIKE '%FROM enrichment_jobs%' AND query LIKE '%count(*)%' THEN 'health check' "
           "WHEN query LIKE '%links_pending_merge%' THEN 'links merge' "
           "WHEN query LIKE '%indicator_sightings_apply%' THEN 'sightings fold' "
           "ELSE left(regexp_replace(query, '\\s+', ' ', 'g'), 30) END FROM pg_stat_activity "
           "WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
           "AND datname = current_database() AND application_name <> 'ingest_trace'")

    def __init__(self, url, start_after, seconds):
        super().__init__(daemon=True)
        self.url, self.start_after, self.seconds = url, start_after, seconds
        self.counts = collections.Counter()
        self.kinds = collections.Counter()
        self.samples = 0

    def run(self):
        time.sleep(self.start_after)
        n = int(self.seconds * 10)
        # the pause is a sleep in the server, not psql's \! (a shell and a sleep process forked
        # per sample, ~3 % of a core the stream shared and the ceiling did not)
        script = "".join("\\i %s\nSELECT pg_sleep(0.1);\n" % self.qfile() for _ in range(n))
        r = subprocess.run(["psql", self.url, "-X", "-q", "-t", "-A"], input=script, capture_output=True,
                           text=True, timeout=self.seconds * 10 + 60)
        self.samples = n
        for line in r.stdout.splitlines():
            if line.strip():
                w, _, kind = line.strip().partition("|")
                self.counts[w] += 1
                self.kinds[kind] += 1

    def qfile(self):
        if not hasattr(self, "_q"):
            f = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
            f.write(self.SQL + ";\n")
            f.close()
            self._q = f.name
        return self._q

    def summary(self):
        total = sum(self.counts.values())
        if not total:
            return "(no active backend seen)"
        return ", ".join("%s %.0f%%" % (k, 100.0 * v / total) for k, v in self.counts.most_common(6)) + \
            " (%.1f active on average)" % (total / max(1, self.samples))

    def by_statement(self):
        """Which statements the active backends were running: each kind's share of the
        active-backend samples (the intakes' periodic health check, links merge and sightings
        fold run beside the ingest batches). A backend counts while active, whether on a core or
        waiting for a lock, I/O or its client: not a share of the server's CPU."""
        total = sum(self.kinds.values())
        if not total:
            return "(no active backend seen)"
        return ", ".join("%s %.0f%%" % (k, 100.0 * v / total) for k, v in self.kinds.most_common(5))


class GinSampler(threading.Thread):
    """Samples the pending list of the alerts' GIN index (ix_alerts_indicator_ids, fastupdate) 10
    times a second, from one psql session that sleeps in the server between samples (no process
    started per sample): its size, and each fall in it - the list being moved into the index,
    either by an inserting backend whose batch took the list past gin_pending_list_limit (inside
    that batch's transaction), or in the background by the intakes' calseta_links_pending_merge()
    or an autovacuum/autoanalyze worker on alerts. A fall is put down to the background when one
    of those was running at the sample before or after it; consecutive falling samples count as
    one fall (a long cleanup moves the list's head several times). A merge shorter than the
    100 ms between samples is not seen: an unseen fall from too far below the limit for the list
    to have passed it in between is put down to such a merge, and only one from near or past it
    to an insert (the size against the limit is the firmer figure: below it no insert merges).
    Needs pageinspect (an
    untrusted extension: superuser) in the database; without it, says so and samples nothing.
    Its own backend's CPU is read while the stream runs (pid), so the stream can leave it out."""
    SQL = ("SELECT m.n_pending_pages || ' ' || (SELECT count(*) FROM pg_stat_activity "
           "WHERE pid <> pg_backend_pid() AND datname = current_database() "
           "AND ((backend_type = 'autovacuum worker' AND query ~ '^autovacuum: .*public\\.alerts( |$)') "
           "OR (backend_type = 'client backend' AND state = 'active' "
           "AND query = 'SELECT calseta_links_pending_merge()'))) "
           "FROM gin_metapage_info(get_raw_page(%s, 0)) m")

    def __init__(self, url, seconds, index="ix_alerts_indicator_ids", unavailable=None):
        super().__init__(daemon=True)
        self.url, self.seconds, self.index, self.unavailable = url, seconds, index, unavailable
        self.samples = []
        self.pid = None
        self.started = threading.Event()
        self.error = ""

    def run(self):
        if self.unavailable:
            self.started.set()
            return
        n = int(self.seconds * 10)
        script = "SELECT 'pid ' || pg_backend_pid();\n" + \
            ("%s;\nSELECT pg_sleep(0.1);\n" % (self.SQL % ("'%s'" % self.index))) * n
        err = tempfile.TemporaryFile("w+")  # a file: a pipe not read until the end could fill up
        p = subprocess.Popen(["psql", self.url, "-X", "-q", "-t", "-A"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=err, text=True,
                             env=dict(os.environ, PGAPPNAME="ingest_trace"))
        # the script goes in from another thread: psql's answers are read as they come
        feeder = threading.Thread(target=lambda: (p.stdin.write(script), p.stdin.close()), daemon=True)
        feeder.start()
        try:
            for line in p.stdout:
                x = line.split()
                if len(x) == 2 and x[0] == "pid":
                    self.pid = int(x[1])
                    self.started.set()
                elif len(x) == 2:
                    self.samples.append((int(x[0]), int(x[1]) > 0))
            p.wait(timeout=60)
            feeder.join()
            err.seek(0)
            self.error = (err.read().strip().splitlines() or [""])[0]
        finally:
            self.started.set()
            err.close()
            if p.poll() is None:
                p.kill()
                p.wait()

    def backend_cpu(self):
        """CPU seconds of the sampler's own backend so far (0 when it runs none)."""
        return proc_ticks(self.pid) / os.sysconf("SC_CLK_TCK") if self.pid else 0.0

    def summary(self, block_size, limit_kb):
        if self.unavailable:
            return "not sampled: " + self.unavailable
        if not self.samples:
            return "no samples (%s)" % (self.error or "psql printed nothing")
        # an inserting backend moves the list once its pages' usable space (a block less the page
        # and GIN headers each) passes the limit
        limit_pages = limit_kb * 1024 // (block_size - 32)
        most = max(p for p, _ in self.samples)
        rise = max([0] + [p1 - p0 for (p0, _), (p1, _) in zip(self.samples, self.samples[1:])])
        falls = []  # [pages, a background merge seen, the list's size before, ended]
        for (p0, av0), (p1, av1) in zip(self.samples, self.samples[1:]):
            if p1 < p0:
                if not falls or falls[-1][3]:
                    falls.append([0, av0, p0, False])
                falls[-1][0] += p0 - p1
                falls[-1][1] = falls[-1][1] or av1
            elif falls:
                falls[-1][3] = True  # ended
        seen = [f[0] for f in falls if f[1]]
        # unseen and starting too far below the limit for the list to have passed it in between:
        # a merge shorter than the 100 ms between samples
        short = [f[0] for f in falls if not f[1] and f[2] + rise < limit_pages]
        insert = [f[0] for f in falls if not f[1] and f[2] + rise >= limit_pages]
        return ("at most %d pages (%.1f MB; an insert moves the list past gin_pending_list_limit %d kB, ~%d "
                "pages); falls of the list: %d with a merge or autovacuum of alerts seen running (%s pages), "
                "%d from too far below the limit for an insert's (a background merge between samples: %s "
                "pages), %d from near or past the limit with none seen (an inserting batch's: %s pages)" %
                (most, most * block_size / 1e6, limit_kb, limit_pages, len(seen), ",".join(map(str, seen)) or "-",
                 len(short), ",".join(map(str, short)) or "-", len(insert), ",".join(map(str, insert)) or "-"))


GIN_INDEX = "ix_alerts_indicator_ids"


def storage(s):
    """alerts' storage parameters and its GIN index's as the run had them, the block size, the
    index's pending list limit in kB (its own setting or the server's), and whether the index
    exists (renamed or dropped: no pending list to sample)."""
    r = s.sql_value(
        "SELECT coalesce((SELECT array_to_string(reloptions, ' ') FROM pg_class WHERE oid = 'alerts'::regclass), "
        "'defaults') || '|' || coalesce((SELECT coalesce(array_to_string(reloptions, ' '), 'defaults') FROM pg_class "
        "WHERE oid = to_regclass('{i}')), 'missing') || '|' || current_setting('block_size') || '|' || "
        "coalesce((SELECT option_value FROM pg_class c, pg_options_to_table(c.reloptions) WHERE c.oid = "
        "to_regclass('{i}') AND option_name = 'gin_pending_list_limit'), (SELECT setting FROM pg_settings "
        "WHERE name = 'gin_pending_list_limit'))".format(i=GIN_INDEX)).split("|")
    return {"alerts": r[0] or "defaults", "gin": r[1], "block_size": int(r[2]), "gin_limit_kb": int(r[3])}


def alerts_state(s):
    """Rows a stream's 202s leave (alerts + alert_deduplicated events), the highest alert id, and
    the heap and index bytes of alerts, in one statement."""
    r = s.sql_value("SELECT (SELECT count(*) FROM alerts) + (SELECT count(*) FROM activity_events "
                    "WHERE event_type = 'alert_deduplicated') || ',' || (SELECT coalesce(max(id), 0) FROM alerts) "
                    "|| ',' || pg_relation_size('alerts') || ',' || pg_indexes_size('alerts')")
    return tuple(int(x) for x in r.split(","))


def new_rows_heap(s, max0):
    """The heap taken by the alerts stored after id max0: the pages holding them, each page's bytes
    split among the live rows on it - so a page shared with earlier rows (space a VACUUM freed)
    counts in part, and a page the table was extended by ahead of need counts not at all. Returns
    (new alerts, pages' worth, pages holding new alerts, how many of those hold earlier rows too).
    Reads the whole table (outside the timed window)."""
    r = s.sql_value("SELECT coalesce(sum(n), 0) || ',' || coalesce(sum(n::float8 / t), 0) || ',' || count(*) || ',' "
                    "|| count(*) FILTER (WHERE n < t) FROM (SELECT count(*) FILTER (WHERE id > %d) AS n, "
                    "count(*) AS t FROM alerts GROUP BY (ctid::text::point)[0]) p WHERE n > 0" % max0).split(",")
    return int(r[0]), float(r[1]), int(r[2]), int(r[3])


def warm_up(s, lua, a):
    """Starts connections, fills caches and creates the rule stubs before anything is measured."""
    f = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    f.write(lua)
    f.close()
    subprocess.run(["wrk", "-t2", "-c%d" % a.connections, "-d2s", "-s", f.name, "http://127.0.0.1:%d" % s.port],
                   capture_output=True)
    os.unlink(f.name)


def proc_ticks(pid, children=False):
    """utime + stime of a process (with its reaped children's when asked), in clock ticks."""
    try:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    t = int(f[11]) + int(f[12])
    return t + int(f[13]) + int(f[14]) if children else t


def client_cpu():
    """CPU seconds (user + kernel) of the bench's finished child processes: wrk's or pgbench's
    when read around one run of it (the client shares the cores with the server)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def server_cpu(url):
    """CPU seconds the PostgreSQL server has used so far (all its processes, live and exited):
    the postmaster reaps every backend, so its children's times hold the exited ones."""
    pm = int(harness.psql_value(url, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))
    pm = int(open("/proc/%d/stat" % pm).read().rsplit(")", 1)[1].split()[1])
    kids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    total = proc_ticks(pm, True)
    for k in kids:
        try:
            if int(open("/proc/%d/stat" % k).read().rsplit(")", 1)[1].split()[1]) == pm:
                total += proc_ticks(k)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def server_kinds(url):
    """CPU ticks of each live PostgreSQL process by pid, with its kind (the title it gives
    itself: 'walwriter', 'autovacuum worker', a client backend's database and user...)."""
    pm = int(harness.psql_value(url, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))
    pm = int(open("/proc/%d/stat" % pm).read().rsplit(")", 1)[1].split()[1])
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if int(open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()[1]) != pm:
                continue
            title = open("/proc/%s/cmdline" % d).read().replace("\0", " ").strip()
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        t = title[len("postgres: "):] if title.startswith("postgres: ") else title
        for k in ("walwriter", "checkpointer", "background writer", "autovacuum worker", "autovacuum launcher",
                  "logical replication launcher", "walsender", "stats collector"):
            if t.startswith(k):
                kind = k
                break
        else:
            kind = "client backends"
        out[int(d)] = (kind, proc_ticks(int(d)))
    return out


def kinds_split(before, after, total_s):
    """The server's CPU of a stream split by kind of process: each live process's ticks since
    before (all of them for one started since), and what the others used (exited meanwhile)."""
    hz = os.sysconf("SC_CLK_TCK")
    per = collections.Counter()
    for pid, (kind, t) in after.items():
        per[kind] += t - before[pid][1] if pid in before and before[pid][0] == kind else t
    per["exited meanwhile"] = max(0, total_s * hz - sum(per.values()))
    return {k: v / hz for k, v in per.items() if v > 0}


def server_runq(url):
    """Seconds the live PostgreSQL processes have spent runnable but waiting for a core
    (/proc/PID/schedstat): on a shared box, how much of a call's time was someone else's CPU."""
    pm = int(harness.psql_value(url, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))
    pm = int(open("/proc/%d/stat" % pm).read().rsplit(")", 1)[1].split()[1])
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if int(open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()[1]) == pm:
                total += int(open("/proc/%s/schedstat" % d).read().split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return total / 1e9


def wal_lsn(url):
    return harness.psql_value(url, "SELECT pg_current_wal_insert_lsn()")


def wal_bytes_since(url, lsn):
    """WAL the whole server wrote since lsn (every database: the bench runs alone on it)."""
    return int(harness.psql_value(url, "SELECT pg_current_wal_insert_lsn() - '%s'::pg_lsn" % lsn))


def intake_cpu(s):
    return sum(proc_ticks(p.p.pid) for p in s.intakes) / os.sysconf("SC_CLK_TCK")


def intake_split(s):
    """The intake processes' user and kernel CPU seconds and context switches (every thread):
    what the kernel's share of an alert is (its TCP path, the loop's wake-ups), and how often a
    process gave up or lost its core, which the load of a shared box moves far less than the
    CPU time itself."""
    user = kern = switches = 0
    for p in s.intakes:
        try:
            f = open("/proc/%d/stat" % p.p.pid).read().rsplit(")", 1)[1].split()
            user += int(f[11])
            kern += int(f[12])
            for t in os.listdir("/proc/%d/task" % p.p.pid):
                for line in open("/proc/%d/task/%s/status" % (p.p.pid, t)):
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    tck = os.sysconf("SC_CLK_TCK")
    return user / tck, kern / tck, switches


def log_sizes(s):
    return [os.path.getsize(p.log_path) for p in s.intakes]


def log_warnings(s, sizes):
    """The warning and error lines the intake processes logged since sizes (what a non-2xx was)."""
    seen = collections.Counter()
    for p, off in zip(s.intakes, sizes):
        p.log.flush()
        with open(p.log_path, "rb") as f:
            f.seek(off)
            for line in f.read().decode("utf-8", "replace").splitlines():
                if re.search(r"warn|error|fatal", line, re.I):
                    seen[re.sub(r"\d+", "N", line.split("]", 1)[-1].strip())[:160]] += 1
    return seen


def hot_counts(s):
    r = s.sql_value("SELECT n_tup_upd || ',' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'alerts'")
    return tuple(int(x) for x in r.split(","))


def wait_hot_counts(s):
    """Table statistics reach the view within a second or so of the commits."""
    last, t = hot_counts(s), time.time()
    while time.time() - t < 2.5:
        time.sleep(0.5)
        now = hot_counts(s)
        if now == last:
            break
        last = now
    return last


SHOW_ERRORS = ("response = function(status, headers, body)\n"
               "  if status > 299 then io.write(string.format(\"non2xx %d %s\\n\", status, body)) end\nend\n")


# the functions an intake calls, one per batch (whichever its version calls), for the batch size
INGEST_FUNCTIONS = "'calseta_ingest_batch', 'calseta_ingest_batch_joined', 'calseta_ingest_columns'"


def run_stream(s, name, lua, a):
    logs0 = log_sizes(s)
    if a.show_errors:
        lua += SHOW_ERRORS
    f = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    f.write(lua)
    f.close()
    before, max0, heap0, idx0 = alerts_state(s)
    upd0 = hot_counts(s)
    st = storage(s)
    calls0 = int(s.sql_value("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                             "WHERE funcname IN (%s)" % INGEST_FUNCTIONS) or 0)
    load0 = open("/proc/loadavg").read().split()[0]
    pg0, in0 = server_cpu(s.db), intake_cpu(s)
    kinds0 = server_kinds(s.db)
    split0 = intake_split(s)
    rq0 = server_runq(s.db)
    wal0 = wal_lsn(s.db)
    sampler = WaitSampler(s.db, a.seconds * 0.3, a.seconds * 0.5)
    sampler.start()
    # off unless asked: its queries take ~2 % of the server's CPU from the stream, which the
    # ceiling does not share
    gin = GinSampler(s.db, a.seconds + 1, GIN_INDEX,
                     ("off (--gin-sampler samples it)" if not a.gin_sampler else None) or
                     getattr(s, "no_pageinspect", None) or
                     (None if st["gin"] != "missing" else "no index %s" % GIN_INDEX))
    gin.start()
    gin.started.wait(30)
    tracer = None
    if a.trace:
        state0, t0 = ingest_trace.state(s.db), time.time()
        tracer = ingest_trace.Tracer(s.db, a.seconds)
        tracer.start()
    cl0 = client_cpu()
    out = subprocess.run(["wrk", "-t%d" % a.wrk_threads, "-c%d" % a.connections, "-d%ds" % a.seconds, "--latency", "--timeout", "10s",
                          "-s", f.name, "http://127.0.0.1:%d" % s.port], capture_output=True, text=True).stdout
    if a.show_errors:  # the first answers that were not 2xx, as SHOW_ERRORS wrote them
        print("".join(l + "\n" for l in out.splitlines() if l.startswith("non2xx"))[:2000], end="")
    cl = client_cpu() - cl0
    pg1, in1 = server_cpu(s.db), intake_cpu(s)
    kinds1 = server_kinds(s.db)
    # the GIN sampler's backend, started after pg0 and alive until after the stream: its CPU so
    # far is the sampler's share of the server's, left out
    gin_cpu = gin.backend_cpu()
    pg1 -= gin_cpu
    split = [b - a for a, b in zip(split0, intake_split(s))]
    rq = server_runq(s.db) - rq0
    wal = wal_bytes_since(s.db, wal0)
    sampler.join()
    gin.join()
    if tracer:
        tracer.join()
    load1 = open("/proc/loadavg").read().split()[0]
    os.unlink(f.name)
    total, bad, lat, errs = parse_wrk(out)
    upd = wait_hot_counts(s)
    accepted = total - bad
    after, _, heap1, idx1 = alerts_state(s)
    calls = int(s.sql_value("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                            "WHERE funcname IN (%s)" % INGEST_FUNCTIONS) or 0) - calls0
    rows = after - before
    batch = rows / calls if calls else 0
    consistent = 0 <= rows - accepted <= a.connections and bad == 0
    rate = accepted / a.seconds
    print("%-15s %7.0f alerts/s  p50 %6.1f ms  p99 %7.1f ms  p99.9 %7.1f ms  batch %5.1f  load %s->%s" %
          (name, rate, lat.get("50", float("nan")), lat.get("99", float("nan")), lat.get("99.9", float("nan")),
           batch, load0, load1))
    print("%-15s rows %d for %d x 202 (%d non-2xx%s): %s" %
          ("", rows, accepted, bad, (", " + errs) if errs else "", "consistent" if consistent else "INCONSISTENT"))
    print("%-15s cpu per alert: PostgreSQL %.0f us, intake %.0f us; WAL per alert %.0f B (load-independent%s)" %
          ("", 1e6 * (pg1 - pg0) / max(1, accepted), 1e6 * (in1 - in0) / max(1, accepted), wal / max(1, accepted),
           "; the GIN sampler's own backend, %.1f us per alert, left out" % (1e6 * gin_cpu / max(1, accepted))
           if gin.pid else ""))
    split_k = kinds_split(kinds0, kinds1, pg1 + gin_cpu - pg0)
    print("%-15s PostgreSQL per alert by process: %s" % ("", ", ".join(
        "%s %.1f us" % (k, 1e6 * v / max(1, accepted)) for k, v in sorted(split_k.items(), key=lambda x: -x[1]))))
    print("%-15s intake per alert: user %.0f us, kernel %.0f us, %.2f context switches" %
          ("", 1e6 * split[0] / max(1, accepted), 1e6 * split[1] / max(1, accepted), split[2] / max(1, accepted)))
    print("%-15s load generator (wrk, same cores): %.0f us per request" % ("", 1e6 * cl / max(1, total)))
    print("%-15s waits: %s" % ("", sampler.summary()))
    print("%-15s active-backend samples by statement: %s" % ("", sampler.by_statement()))
    print("%-15s run-queue wait of the server's processes: %.2f s per second of stream, %.0f us per alert "
          "(time runnable without a core)" % ("", rq / a.seconds, 1e6 * rq / max(1, accepted)))
    if upd[0] > upd0[0]:
        print("%-15s alert updates (duplicates): %d, HOT %d%%" % ("", upd[0] - upd0[0],
                                                                 100 * (upd[1] - upd0[1]) // (upd[0] - upd0[0])))
    new, pages, held, shared = new_rows_heap(s, max0)
    if new:
        print("%-15s heap per new alert: %.0f B (%d new alerts on %d pages, %d of them shared with earlier rows: "
              "each page's bytes split among its live rows; alerts %s)" %
              ("", pages * st["block_size"] / new, new, held, shared, st["alerts"]))
        print("%-15s growth of alerts per new alert: heap %.0f B, indexes %.0f B (with the pages added ahead of "
              "need, the space VACUUM freed before and reused, and the versions moved by updates; %s %s)" %
              ("", (heap1 - heap0) / new, (idx1 - idx0) / new, GIN_INDEX, st["gin"]))
    print("%-15s GIN pending list: %s" % ("", gin.summary(st["block_size"], st["gin_limit_kb"])))
    for line, n in collections.Counter(re.findall(r"^non2xx (.*)$", out, re.M)).most_common(5):
        print("%-15s answer: %dx %s" % ("", n, line[:200]))
    for line, n in log_warnings(s, logs0).most_common(5):
        print("%-15s intake log: %dx %s" % ("", n, line))
    if tracer:
        tracer.report(t0, state0, ingest_trace.state(s.db))
    if getattr(a, "wal_detail", False):
        import ingest_sql_bench  # it imports this module: only once both are loaded
        ingest_sql_bench.wal_stats(s.db, (wal0, wal_lsn(s.db)), max(1, accepted))
    return rate, batch, consistent, lat.get("99", float("nan"))


CEILING_DDL = """
CREATE TABLE scratch_docs (i INT PRIMARY KEY, title TEXT, severity TEXT, source_name TEXT, description TEXT,
                           occurred_at TIMESTAMPTZ, raw_payload JSONB, tags TEXT[], fingerprint TEXT,
                           raw_text TEXT);
ALTER TABLE scratch_docs ALTER raw_text SET STORAGE PLAIN;
CREATE TABLE scratch_alerts (
    id BIGSERIAL PRIMARY KEY, uuid UUID NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    title TEXT NOT NULL, description TEXT, severity TEXT NOT NULL, source_name TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL, raw_payload JSONB NOT NULL, tags TEXT[] NOT NULL,
    fingerprint TEXT, duplicate_count INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'Open');
CREATE INDEX ON scratch_alerts (fingerprint, created_at DESC);
CREATE INDEX ON scratch_alerts (created_at DESC);
CREATE TABLE scratch_jobs (
    id BIGSERIAL PRIMARY KEY, alert_id BIGINT NOT NULL REFERENCES scratch_alerts(id),
    status TEXT NOT NULL DEFAULT 'pending', lease_expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX ON scratch_jobs (status, lease_expires_at) WHERE status IN ('pending', 'running');
CREATE INDEX ON scratch_jobs (alert_id);
"""

CEILING_SQL = """WITH a AS (
  INSERT INTO scratch_alerts (title, severity, source_name, description, occurred_at, raw_payload, tags, fingerprint)
  SELECT d.title, d.severity, d.source_name, d.description, d.occurred_at, %s, d.tags, d.fingerprint
    FROM generate_series(1, :batch) g JOIN scratch_docs d ON d.i = g %% 5
  RETURNING id)
INSERT INTO scratch_jobs (alert_id) SELECT id FROM a;
"""
# The document as a client sends it: text that PostgreSQL parses and compresses (the ceiling);
# and, for comparison with earlier runs, copied from a table as stored JSONB (already parsed and
# compressed, so neither is paid again).
CEILINGS = (("ceiling", "d.raw_text::{type}"), ("ceiling-copy", "d.raw_payload"))


def ceiling_storage(s, url):
    """The payload column stored as alerts stores it (type, compression method; the other text
    columns' compression too), so the ceiling compares the work of the write path, not a storage
    setting either side could use."""
    typ, comp = s.sql_value("SELECT format_type(atttypid, atttypmod) || ',' || attcompression::text FROM pg_attribute "
                            "WHERE attrelid = 'alerts'::regclass AND attname = 'raw_payload'").split(",")
    if typ != "jsonb":
        harness.psql(url, "ALTER TABLE scratch_alerts ALTER raw_payload TYPE %s; "
                     "ALTER TABLE scratch_docs ALTER raw_payload TYPE %s" % (typ, typ))
    if comp in ("l", "p"):
        harness.psql(url, "ALTER TABLE scratch_alerts ALTER raw_payload SET COMPRESSION %s" %
                     ("lz4" if comp == "l" else "pglz"))
    # the tables' storage parameters (fillfactor, toast_tuple_target, ...) and their TOAST
    # tables' (toast.*), likewise
    shown = []
    for table, scratch in (("alerts", "scratch_alerts"), ("enrichment_jobs", "scratch_jobs")):
        opts = s.sql_value(
            "SELECT concat_ws(', ', array_to_string(c.reloptions, ', '), (SELECT string_agg('toast.' || o, ', ') "
            "FROM pg_class t, unnest(t.reloptions) o WHERE t.oid = c.reltoastrelid)) FROM pg_class c "
            "WHERE c.oid = '%s'::regclass" % table)
        if opts:
            harness.psql(url, "ALTER TABLE %s SET (%s)" % (scratch, opts))
            shown.append("%s: %s" % (scratch, opts))
    # the other text columns the ceiling writes, likewise
    for col in ("title", "description", "tags"):
        c = s.sql_value("SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'alerts'::regclass "
                        "AND attname = '%s'" % col)
        if c in ("l", "p"):
            harness.psql(url, "ALTER TABLE scratch_alerts ALTER %s SET COMPRESSION %s" %
                         (col, "lz4" if c == "l" else "pglz"))
    return typ, "; ".join(shown) or "default storage parameters"


def ceiling(s, batch, a, name, expr, docs=None):
    """pgbench: the five documents as plain alert + job rows, one statement per batch. docs: the
    documents of an earlier call (the ceiling measured again at the end of the run writes the
    same five, whatever the stack holds then). Returns (alerts/s, docs)."""
    scratch = s.dbname + "_ceiling"
    harness.psql(harness.db_url_for("postgres"), "CREATE DATABASE %s" % scratch)
    url = harness.db_url_for(scratch)
    try:
        harness.psql(url, CEILING_DDL)
        typ, opts = ceiling_storage(s, url)
        docs = docs or s.sql_value("SELECT jsonb_agg(d) FROM (SELECT (row_number() OVER () - 1)::int AS i, title, severity, "
                           "source_name, description, occurred_at, raw_payload, tags, fingerprint FROM "
                           "(SELECT DISTINCT ON (source_name, title) * FROM alerts ORDER BY source_name, title) x "
                           "LIMIT 5) d")
        harness.psql(url, "INSERT INTO scratch_docs SELECT * FROM json_populate_recordset(NULL::scratch_docs, $$%s$$)"
                     % docs)
        harness.psql(url, "UPDATE scratch_docs SET raw_text = raw_payload::text")
        f = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
        f.write(CEILING_SQL % expr.format(type=typ))
        f.close()
        load0 = open("/proc/loadavg").read().split()[0]
        pg0, wal0 = server_cpu(url), wal_lsn(url)
        cl0 = client_cpu()
        pb = subprocess.run(["pgbench", "-n", "-c", str(a.ceiling_clients), "-j", "2", "-T", str(a.seconds),
                             "-D", "batch=%d" % batch, "-f", f.name, url], capture_output=True, text=True)
        pg1, wal = server_cpu(url), wal_bytes_since(url, wal0)
        cl = client_cpu() - cl0
        load1 = open("/proc/loadavg").read().split()[0]
        os.unlink(f.name)
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", pb.stdout)
        if not m:
            raise RuntimeError("pgbench failed:\n" + pb.stdout + pb.stderr)
        rows = int(harness.psql_value(url, "SELECT count(*) FROM scratch_alerts"))
        jobs = int(harness.psql_value(url, "SELECT count(*) FROM scratch_jobs"))
        rate = float(m.group(1)) * batch
        print("%-15s %7.0f alerts/s  (pgbench, %d clients, %d rows per statement, %d alerts + %d jobs written, "
              "load %s->%s)" % (name, rate, a.ceiling_clients, batch, rows, jobs, load0, load1))
        print("%-15s cpu per alert: PostgreSQL %.0f us, pgbench %.1f us; WAL per alert %.0f B (load-independent)" %
              ("", 1e6 * (pg1 - pg0) / max(1, rows), 1e6 * cl / max(1, rows), wal / max(1, rows)))
        # a ratio is comparable only with runs whose ceiling had the same parameters
        print("%-15s storage as the stream's tables: %s" % ("", opts))
        return rate, docs
    finally:
        harness.psql(harness.db_url_for("postgres"), "DROP DATABASE IF EXISTS %s" % scratch, check=False)


INGEST_TABLES = "alerts, indicators, indicator_sightings, enrichment_jobs, activity_events"


def settle(s, a):
    """Before a stream: the previous streams' rows vacuumed and analysed (unless --no-settle), so
    every stream starts from the same state and autovacuum's pass over the earlier streams' rows
    (3-4 s of a worker, measured costing the stream it lands in up to half again its server CPU
    per alert) is not carried into it; then a checkpoint, so every stream starts with the same
    full-page images to write. A stream inserting more than a fifth of the tables can still
    trigger a pass of its own, as in production."""
    if not a.no_settle:
        s.sql("VACUUM (ANALYZE) " + INGEST_TABLES)
    if not a.no_checkpoint:
        s.sql("CHECKPOINT")


NOTED = []


def stack(dedup_hours, a):
    # Every connection comes from one address, as from one SIEM forwarder: the per-address cap on
    # requests in their authentication or body phase (32 per process by default) is raised to
    # the connection count, or an uneven spread of the connections over the processes answers
    # some requests 503 "Too many uploads in progress from this address".
    env = {"LOG_LEVEL": "WARNING", "ALERT_DEDUP_WINDOW_HOURS": dedup_hours, "SENTINEL_WEBHOOK_SECRET": SECRET,
           "ELASTIC_WEBHOOK_SECRET": SECRET, "SPLUNK_WEBHOOK_SECRET": SECRET,
           "MAX_BODIES_PER_IP": max(32, a.connections)}
    if a.inflight:
        env["INGEST_MAX_INFLIGHT"] = a.inflight
    s = harness.Stack("bench", services=(), env=env)
    s.sql("ALTER DATABASE %s SET track_functions = 'pl'" % s.dbname)
    # the GIN pending list's size (GinSampler): pageinspect is untrusted (superuser) and a contrib
    # module; without it the bench runs on and says the list was not sampled
    r = subprocess.run(["psql", s.db, "-X", "-q", "-c", "CREATE EXTENSION IF NOT EXISTS pageinspect"],
                       capture_output=True, text=True)
    err = [x.split(":", 1)[1].strip() for x in r.stderr.splitlines() if x.startswith("ERROR:")]
    s.no_pageinspect = None if r.returncode == 0 else "pageinspect not available: %s" % (err or ["?"])[0]
    if s.no_pageinspect and not NOTED:
        NOTED.append(1)
        print("note: %s; the GIN pending list is not sampled" % s.no_pageinspect)
    s.start("auditd")
    s.start("jobbus")
    for _ in range(a.intake):
        s.start_intake()
    s.wait_healthy()
    key = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000000"))
    return s, key


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--intake", type=int, default=2)
    ap.add_argument("--gin-sampler", action="store_true",
                    help="sample the GIN pending list 10 times a second during each stream")
    ap.add_argument("--wrk-threads", type=int, default=1,
                    help="the load generator's threads (it shares the cores with the stack)")
    ap.add_argument("--inflight", type=int, default=0, help="INGEST_MAX_INFLIGHT (default: the intake's)")
    ap.add_argument("--ceiling-clients", type=int, default=8)
    ap.add_argument("--streams", default=",".join(STREAMS[:-1]))
    ap.add_argument("--trace", action="store_true",
                    help="a 10 ms timeline of wait events, lock waiters, autovacuum and checkpoints per stream")
    ap.add_argument("--wal-detail", action="store_true",
                    help="WAL records and full-page images per alert, per kind (pg_waldump --stats), per stream")
    ap.add_argument("--no-settle", action="store_true",
                    help="no VACUUM ANALYZE of the ingest tables before each stream (autovacuum may land in one)")
    ap.add_argument("--no-checkpoint", action="store_true", help="no forced CHECKPOINT before each stream")
    ap.add_argument("--show-errors", action="store_true", help="print the non-2xx answers (costs wrk CPU)")
    a = ap.parse_args()
    streams = [x for x in a.streams.split(",") if x]
    for x in streams:
        if x not in STREAMS:
            ap.error("unknown stream %s (known: %s)" % (x, ", ".join(STREAMS)))

    print("%d connections (wrk, %d thread%s), %d s per stream, %d intake processes, %d cores, PostgreSQL fsync=%s" %
          (a.connections, a.wrk_threads, "" if a.wrk_threads == 1 else "s", a.seconds, a.intake, os.cpu_count(),
           harness.psql_value(harness.db_url_for("postgres"), "SHOW fsync")))
    ok = True
    results = {}     # stream -> (alerts/s, p99 ms)
    ceilings = {}    # ceiling -> [alerts/s at the start of the run, at its end]
    batch, docs = 0, None
    s, key = stack(0, a)
    try:
        if "fixtures" in streams:
            warm_up(s, fixtures_script(key), a)
            rate, batch, good, p99 = run_stream(s, "fixtures", fixtures_script(key), a)
            results["fixtures"] = (rate, p99)
            ok &= good
        if "fixtures" in results:
            # the stream's rows vacuumed first: autovacuum's pass over them would otherwise run
            # during the ceiling and take the server's CPU from it (the ceiling at the end of
            # the run, after streams that settled likewise, measured up to a fifth higher)
            settle(s, a)
            for name, expr in CEILINGS:
                c, docs = ceiling(s, max(1, round(batch)), a, name, expr)
                ceilings[name] = [c]
                print("%-15s %.2f (fixtures / %s)" % ("ratio", results["fixtures"][0] / c, name))
        if "alerts" in streams:
            warm_up(s, alerts_script(key), a)
            rate, _, good, p99 = run_stream(s, "alerts", alerts_script(key), a)
            results["alerts"] = (rate, p99)
            ok &= good
    finally:
        s.stop()
    rest = [x for x in streams if x not in ("fixtures", "alerts")]
    if rest:
        s, key = stack(24, a)
        try:
            warm_up(s, generic_script(key, 0.0, False), a)
            warm_up(s, fixtures_script(key), a)
            for x in rest:
                settle(s, a)
                lua = fixtures_script(key) if x == "fixtures-dedup" else \
                    generic_script(key, 0.3 if x == "dup30" else 0.0, x == "hot")
                rate, _, good, p99 = run_stream(s, x, lua, a)
                results[x] = (rate, p99)
                ok &= good
            # The ceiling again, at the end of the run (same documents, same batch size): on a
            # shared box it moves between samples a minute apart as much as a stream does, so
            # each stream is compared with both samples and with their mean.
            if docs:
                settle(s, a)
                name, expr = CEILINGS[0]
                c, _ = ceiling(s, max(1, round(batch)), a, name + "-end", expr, docs)
                ceilings[name].append(c)
        finally:
            s.stop()
    if "hot" in results and "unique" in results:
        print("%-15s %.2f (hot / unique)" % ("hot ratio", results["hot"][0] / results["unique"][0]))
    if ceilings:
        name = CEILINGS[0][0]
        cs = ceilings[name]
        mean = sum(cs) / len(cs)
        print("summary: each stream / the plain-INSERT %s (%s alerts/s%s)" %
              (name, " and ".join("%.0f" % c for c in cs), ", at the start and at the end of the run; mean %.0f" % mean
                                                             if len(cs) > 1 else ""))
        print("  %-15s %9s %9s  %s" % ("stream", "alerts/s", "p99 ms", "  ".join(
            "%5s" % h for h in (("start", "end", "mean") if len(cs) > 1 else ("ratio",)))))
        for x in streams:
            if x in results:
                r, p99 = results[x]
                ratios = [r / c for c in cs] + ([r / mean] if len(cs) > 1 else [])
                print("  %-15s %9.0f %9.1f  %s" % (x, r, p99, "  ".join("%5.2f" % q for q in ratios)))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
