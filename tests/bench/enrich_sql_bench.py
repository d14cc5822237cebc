#!/usr/bin/env python3
"""enrich_sql_bench.py - what PostgreSQL spends on the enrichment workers' statements, per job and
per lookup, replayed by one session exactly as a worker sends them (no provider, no worker):
claim, shared-cache read, completion.

Paths, each over its own fresh jobs (N alerts with K linked IP indicators each, 2 providers, so
2*K lookups per job, results shaped as the worker writes them):
  before    the previous statements: a shared-cache read per job (calseta_enrich_cache_get) and
            the previous completing function, one job per statement (migration 0026's
            calseta_enrich_complete, loaded here under another name), with the shared cache's
            expires_at index and full table pages as they were
  0030/B    the previous batch path: migration 0030's calseta_enrich_complete_batch (each cache
            entry written with its whole result) and the row-level dispatch trigger on finished
            jobs, B = the largest batch given
  after/B   a shared-cache read per claim (calseta_enrich_cache_get_many) and
            calseta_enrich_complete_batch with B jobs per statement (B = 1 is a worker whose
            completions never overlap; a busy worker sends larger batches)
  ceiling   the same rows (K indicator results, 2*K cache entries and one job row per job)
            written by plain multi-row INSERTs into tables with only a primary key, B jobs per
            statement: what writing the data costs without any of our logic
For each: CPU of the session's backend per job and per lookup (/proc/PID/schedstat, so other load
on the machine does not count), CPU of the whole cluster per lookup (every process of the
postmaster: checkpointer, WAL writer, autovacuum... from /proc/PID/stat, exited children
included), WAL bytes per job, round trips per job and, when the server has
pg_stat_statements loaded, SQL statements executed per job (nested ones included). Claims take
64 jobs at a time, as a worker with free slots does.

Run by hand (not in CI), release build, under the benchmark lock:
    export CALSETA_DATA_DIR=/tmp/calseta-bench; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build/bin/calseta migrate
    flock /work/bench.lock python3 tests/bench/enrich_sql_bench.py [--jobs 640] [--indicators 10]
        [--batches 1,16,64] [--paths after] [--compare 0042_enrich_merge_rule_and_purge.sql]
        [--stmt-detail] [--wal-detail] [--perf /tmp/prof] [--setup "SQL"]
--compare runs another migration's completing function as path cmp/B in the same rounds (a
paired A/B, the only kind of comparison this shared box allows); --stmt-detail prints time per
job of the top statements (pg_stat_statements loaded); --wal-detail prints WAL per job by
relation (pg_walinspect; its own queries then count in the cluster CPU) and the HOT share of
updates; --perf records a profile of the session's backend per path; --setup runs SQL on the
bench's database first (a candidate migration, measured before it is applied).
Standard library, psql and (for --perf) perf only.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

VT_RAW = {"data": {"id": "x", "type": "ip_address", "attributes": {
    "last_analysis_stats": {"malicious": 0, "suspicious": 1, "harmless": 60, "undetected": 10},
    "reputation": 3, "tags": ["cdn"], "country": "DE", "as_owner": "Example AS", "asn": 64500,
    "network": "23.0.0.0/8"}}}
ABUSE_RAW = {"data": {"ipAddress": "x", "isPublic": True, "abuseConfidenceScore": 30,
                      "countryCode": "DE", "usageType": "Data Center", "isp": "Example",
                      "totalReports": 12, "numDistinctUsers": 4, "isTor": False,
                      "isWhitelisted": False}}
PROVIDERS = ("abuseipdb", "virustotal")


def result(provider, raw, extracted):
    return {"provider_name": provider, "status": "success", "success": True,
            "extracted": extracted, "raw": raw,
            "enriched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "error_message": None, "debug_steps": None}


RESULTS = {
    "virustotal": result("virustotal", VT_RAW, {
        "malicious_count": 0, "suspicious_count": 1, "reputation": 3, "tags": ["cdn"],
        "country": "DE", "as_owner": "Example AS", "asn": 64500, "network": "23.0.0.0/8",
        "malice": "Suspicious"}),
    "abuseipdb": result("abuseipdb", ABUSE_RAW, {
        "abuse_confidence_score": 30, "total_reports": 12, "country_code": "DE", "isp": "Example",
        "usage_type": "Data Center", "is_whitelisted": False, "is_tor": False, "is_public": True,
        "num_distinct_users": 4, "malice": "Suspicious"}),
}


def lit(s):
    return "'" + s.replace("'", "''") + "'"


class Session:
    """One psql session: statements in, rows out (tab-separated), one round trip each."""

    def __init__(self, url):
        self.p = subprocess.Popen(["psql", url, "-X", "-q", "-t", "-A", "-F", "\t",
                                   "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  bufsize=1 << 20)
        self.trips = 0
        self.pid = int(self.query("SELECT pg_backend_pid()")[0][0])

    def query(self, sql):
        self.trips += 1
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo __end__\n")
        self.p.stdin.flush()
        rows = []
        for line in self.p.stdout:
            line = line.rstrip("\n")
            if line == "__end__":
                return rows
            if line:
                rows.append(line.split("\t"))
        raise RuntimeError("psql ended (see its error above)")

    def cpu_ns(self):
        with open("/proc/%d/schedstat" % self.pid) as f:
            return int(f.read().split()[0])

    def cluster_cpu_ns(self):
        """CPU of every process of the cluster so far: the postmaster with its reaped children,
        and its live children."""
        def stat(pid):
            with open("/proc/%d/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        pm = int(stat(self.pid)[1])
        f = stat(pm)
        total = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                f = stat(int(d))
            except OSError:
                continue
            if int(f[1]) == pm:
                total += int(f[11]) + int(f[12])
        return total * 1e9 / tick

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


class Bench:
    def __init__(self, args):
        import harness
        self.h = harness
        self.a = args
        self.stack = harness.Stack("enrichsql", services=())
        self.db = self.stack.db
        self.sql = self.stack.sql
        self.next_octet = 11
        old = open(os.path.join(SRC, "migrations", "0026_enrich_complete_lean.sql")).read()
        self.h.psql(self.db, old.replace("FUNCTION calseta_enrich_complete(",
                                         "FUNCTION bench_enrich_complete_0026("))
        prev = open(os.path.join(SRC, "migrations", "0030_enrich_complete_batch.sql")).read()
        start = prev.index("CREATE FUNCTION calseta_enrich_complete_batch(")
        prev = prev[start:prev.index("END $$;", start) + len("END $$;")]
        self.h.psql(self.db, prev.replace("FUNCTION calseta_enrich_complete_batch(",
                                          "FUNCTION bench_enrich_complete_batch_0030("))
        if args.compare:
            # another migration's completing function, run beside the current one (A/B in one run)
            cmp = open(os.path.join(SRC, "migrations", args.compare)).read()
            start = cmp.index("FUNCTION calseta_enrich_complete_batch(")
            start = cmp.rindex("CREATE", 0, start)
            cmp = cmp[start:cmp.index("END $$;", start) + len("END $$;")]
            self.h.psql(self.db, cmp.replace("FUNCTION calseta_enrich_complete_batch(",
                                             "FUNCTION bench_enrich_complete_batch_cmp("))
        # the dispatch trigger as it was before 0036: one PL/pgSQL call per finished job
        self.sql("CREATE FUNCTION bench_dispatch_row() RETURNS trigger LANGUAGE plpgsql AS $$ "
                 "BEGIN PERFORM calseta_agent_enqueue(NEW.alert_id, NULL, 'enrichment', NEW.id); "
                 "RETURN NULL; END $$")
        self.sql("CREATE TABLE bench_ceiling_ind (id BIGSERIAL PRIMARY KEY, type TEXT, value TEXT, "
                 "results JSONB, malice TEXT);"
                 "CREATE TABLE bench_ceiling_cache (id BIGSERIAL PRIMARY KEY, provider TEXT, "
                 "type TEXT, value TEXT, result JSONB, expires_at TIMESTAMPTZ);"
                 "CREATE TABLE bench_ceiling_job (id BIGINT PRIMARY KEY, summary JSONB)")
        try:
            self.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.sql("SELECT count(*) FROM pg_stat_statements")
            self.sql("ALTER DATABASE %s SET pg_stat_statements.track = 'all'" % self.stack.dbname)
            self.pgss = True
        except RuntimeError:
            self.pgss = False
        if args.wal_detail:
            self.sql("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        if args.setup:
            self.sql(args.setup)  # an experiment's schema change, on this run's database only
        self.rows = []

    def insert(self, jobs, k):
        octet = self.next_octet
        self.next_octet += 1
        ip = "(%d || '.' || ((n >> 16) & 255) || '.' || ((n >> 8) & 255) || '.' || (n & 255))" % octet
        rows = self.h.psql(self.db, (
            "BEGIN;"
            "CREATE TEMP TABLE b AS SELECT g AS a_no, (g - 1) * %(k)d + j AS n "
            "FROM generate_series(1, %(jobs)d) g, generate_series(1, %(k)d) j;"
            "INSERT INTO indicators (type, value, first_seen, last_seen) "
            "SELECT DISTINCT 'ip', %(ip)s, now(), now() FROM b ON CONFLICT DO NOTHING;"
            "CREATE TEMP TABLE a AS WITH ins AS (INSERT INTO alerts (title, severity, source_name, "
            "occurred_at) SELECT 'sqlbench ' || g, 'High', 'generic', now() "
            "FROM generate_series(1, %(jobs)d) g RETURNING id, title) "
            "SELECT id, split_part(title, ' ', 2)::int AS a_no FROM ins;"
            "INSERT INTO alert_indicators (alert_id, indicator_id) SELECT a.id, i.id FROM a "
            "JOIN b USING (a_no) JOIN indicators i ON i.type = 'ip' AND i.value = %(ip)s;"
            "INSERT INTO enrichment_jobs (alert_id) SELECT id FROM a ORDER BY id;"
            "COMMIT;" % {"k": k, "jobs": jobs, "ip": ip}))
        del rows

    @staticmethod
    def indicator_doc(ind, i, old_format):
        e = {"type": ind["type"], "value": ind["value"], "new": False, "malice": "Suspicious",
             "results": {p: RESULTS[p] for p in PROVIDERS}}
        if not old_format:
            e["ttl"] = {p: 3600 for p in PROVIDERS}
        return e

    def job_doc(self, jid, doc, old_format):
        inds = doc["indicators"]
        d = {"indicators": [self.indicator_doc(x, i, old_format) for i, x in enumerate(inds)],
             "summary": {"indicator_count": len(inds), "providers_succeeded": 2 * len(inds),
                         "providers_failed": 0, "malice_counts": {"Suspicious": len(inds)}}}
        if old_format:
            d["cache"] = [{"provider": p, "i": i, "ttl": 3600}
                          for i in range(len(inds)) for p in PROVIDERS]
        else:
            d["id"] = jid
        return d

    def claim(self, s):
        rows = s.query("SELECT job_id, doc::text FROM calseta_enrich_claim('bench', 300, 64, 5)")
        return [(int(r[0]), json.loads(r[1])) for r in rows]

    def run_before(self, s):
        while True:
            claimed = self.claim(s)
            if not claimed:
                return
            for jid, doc in claimed:
                keys = [{"provider": p, "type": x["type"], "value": x["value"]}
                        for x in doc["indicators"] for p in PROVIDERS]
                s.query("SELECT provider_name, indicator_type, indicator_value, result::text, "
                        "ttl_left FROM calseta_enrich_cache_get(%s::jsonb)" % lit(json.dumps(keys)))
                out = s.query("SELECT bench_enrich_complete_0026(%d, 'bench', %s::jsonb)"
                              % (jid, lit(json.dumps(self.job_doc(jid, doc, True)))))
                assert out == [["done"]], out

    def run_after(self, s, batch, fn="calseta_enrich_complete_batch"):
        while True:
            claimed = self.claim(s)
            if not claimed:
                return
            keys = [[p, x["type"], x["value"]] for _, doc in claimed
                    for x in doc["indicators"] for p in PROVIDERS]
            s.query("SELECT k, result::text, ttl_left FROM calseta_enrich_cache_get_many(%s::jsonb)"
                    % lit(json.dumps(keys)))
            for i in range(0, len(claimed), batch):
                part = claimed[i:i + batch]
                doc = {"jobs": [self.job_doc(jid, d, False) for jid, d in part]}
                out = s.query("SELECT job_id, outcome FROM %s('bench', %s::jsonb)"
                              % (fn, lit(json.dumps(doc))))
                assert all(r[1] == "done" for r in out) and len(out) == len(part), out

    def run_0030(self, s, batch):
        self.sql("DROP TRIGGER enrichment_jobs_dispatch ON enrichment_jobs;"
                 "CREATE TRIGGER enrichment_jobs_dispatch AFTER UPDATE OF status ON enrichment_jobs "
                 "FOR EACH ROW WHEN (NEW.status IN ('done', 'failed') AND OLD.status IS DISTINCT "
                 "FROM NEW.status) EXECUTE FUNCTION bench_dispatch_row()")
        try:
            self.run_after(s, batch, "bench_enrich_complete_batch_0030")
        finally:
            self.sql("DROP TRIGGER enrichment_jobs_dispatch ON enrichment_jobs;"
                     "CREATE TRIGGER enrichment_jobs_dispatch AFTER UPDATE ON enrichment_jobs "
                     "REFERENCING OLD TABLE AS jobs_before NEW TABLE AS jobs_after "
                     "FOR EACH STATEMENT EXECUTE FUNCTION calseta_enrichment_jobs_dispatch()")

    def run_ceiling(self, s, batch):
        while True:
            claimed = self.claim(s)
            if not claimed:
                return
            for i in range(0, len(claimed), batch):
                part = claimed[i:i + batch]
                inds, cache, jobs = [], [], []
                for jid, d in part:
                    for x in d["indicators"]:
                        inds.append("(%s, %s, %s, 'Suspicious')" % (
                            lit(x["type"]), lit(x["value"]), lit(json.dumps(RESULTS))))
                        for p in PROVIDERS:
                            cache.append("(%s, %s, %s, %s, now() + interval '1 hour')" % (
                                lit(p), lit(x["type"]), lit(x["value"]), lit(json.dumps(RESULTS[p]))))
                    jobs.append("(%d, '{\"indicator_count\": %d}')" % (jid, len(d["indicators"])))
                s.query("WITH i AS (INSERT INTO bench_ceiling_ind (type, value, results, malice) "
                        "VALUES %s RETURNING 1), c AS (INSERT INTO bench_ceiling_cache (provider, "
                        "type, value, result, expires_at) VALUES %s RETURNING 1) "
                        "INSERT INTO bench_ceiling_job (id, summary) VALUES %s"
                        % (",".join(inds), ",".join(cache), ",".join(jobs)))
                # the jobs are finished as the other paths finish them
                s.query("UPDATE enrichment_jobs SET status = 'done', lease_owner = NULL, "
                        "completed_at = now() WHERE id IN (%s)" % ",".join(str(j) for j, _ in part))

    def phase(self, name, fn):
        a = self.a
        self.insert(a.jobs, a.indicators)
        self.sql("CHECKPOINT")  # full-page images after a checkpoint weigh the same in each path
        s = Session(self.db)
        if self.pgss:
            self.sql("SELECT pg_stat_statements_reset()")
        wal0 = self.h.psql_value(self.db, "SELECT pg_current_wal_lsn()")
        perf = None
        if a.perf:
            # the session's backend only: where its CPU goes, by function
            perf = subprocess.Popen(["perf", "record", "-q", "-g", "-p", str(s.pid), "-o",
                                     "%s.%s" % (a.perf, name.replace("/", "-"))],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # perf attaches before the path starts (a profile, not a wait)
        cpu0, t0, trips0, all0 = s.cpu_ns(), time.time(), s.trips, s.cluster_cpu_ns()
        fn(s)
        if perf:
            perf.send_signal(2)
            perf.wait(timeout=60)
        if a.wal_detail:  # before the checkpoint recycles the segments
            self.wal_detail(name, wal0, n=a.jobs)
        self.sql("CHECKPOINT")  # the checkpointer's share of writing this path's pages
        cpu, elapsed, trips = s.cpu_ns() - cpu0, time.time() - t0, s.trips - trips0
        allcpu = s.cluster_cpu_ns() - all0
        wal = int(self.h.psql_value(self.db, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '%s')"
                                    % wal0))
        stmts = None
        if self.pgss:
            stmts = int(self.h.psql_value(self.db, (
                "SELECT sum(calls) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM "
                "pg_database WHERE datname = current_database()) AND query !~* "
                "'pg_stat_statements|pg_current_wal_lsn|pg_backend_pid'")))
        if self.pgss and a.stmt_detail:
            rows = self.h.psql(self.db, (
                "SELECT calls, total_exec_time, rows, regexp_replace(left(query, 400), "
                "'\\s+', ' ', 'g') FROM pg_stat_statements WHERE dbid = (SELECT oid FROM "
                "pg_database WHERE datname = current_database()) AND query !~* "
                "'pg_stat_statements|pg_current_wal_lsn|pg_backend_pid|CHECKPOINT' "
                "ORDER BY total_exec_time DESC LIMIT 12"))
            print("    statements of %s (calls/job, us/job; nested ones inside their caller):"
                  % name)
            for calls, ms, _, q in rows:
                print("      %6.2f %8.0f  %s" % (int(calls) / a.jobs, float(ms) * 1e3 / a.jobs,
                                                q[:110]))
        s.close()
        left = self.h.psql_value(self.db, "SELECT count(*) FROM enrichment_jobs WHERE status <> 'done'")
        assert left == "0", "%s jobs not done after %s" % (left, name)
        n = a.jobs
        lookups = n * a.indicators * len(PROVIDERS)
        r = {"path": name, "jobs": n, "cpu_ms": cpu / 1e6, "us/job": cpu / 1e3 / n,
             "us/lookup": cpu / 1e3 / lookups, "wal/job": wal / n,
             "cluster us/lookup": allcpu / 1e3 / lookups,
             "trips/job": trips / n,
             "stmts/job": (stmts / n) if stmts is not None else None,
             "elapsed": elapsed}
        self.rows.append(r)
        print("  %-12s %8.0f us/job %7.1f us/lookup %7.1f cluster us/lookup %9.0f WAL B/job "
              "%6.3f trips/job %s  (%.1fs)"
              % (name, r["us/job"], r["us/lookup"], r["cluster us/lookup"], r["wal/job"], r["trips/job"],
                 ("%6.1f stmts/job" % r["stmts/job"]) if stmts is not None else "stmts n/a",
                 elapsed), flush=True)

    def wal_detail(self, name, since, n):
        """WAL bytes and records per job of this path, by relation (pg_walinspect): which
        tables and indexes a completion writes, and how many index entries."""
        rows = self.h.psql(self.db, (
            "SELECT coalesce(c.relname, r.rel), count(*), sum(r.bytes) FROM ("
            "SELECT (regexp_match(block_ref, 'rel \\d+/\\d+/(\\d+)'))[1] AS rel, "
            "record_length + fpi_length AS bytes FROM pg_get_wal_records_info_till_end_of_wal('%s'"
            ")) r LEFT JOIN pg_class c ON c.relfilenode::text = r.rel "
            "GROUP BY 1 ORDER BY 3 DESC LIMIT 14" % since))
        print("    WAL of %s by relation (records/job, bytes/job):" % name)
        for rel, cnt, b in rows:
            print("      %-40s %8.1f %9.0f" % (rel or "(none)", int(cnt) / n, int(b) / n))

    def want(self, name):
        return not self.a.paths or name.split("/")[0] in self.a.paths.split(",")

    def run(self):
        a = self.a
        batches = [int(b) for b in a.batches.split(",")]
        print("jobs %d x %d indicators x %d providers per path; uptime: %s"
              % (a.jobs, a.indicators, len(PROVIDERS), open("/proc/loadavg").read().strip()))
        for rnd in range(a.rounds):
            # "before" runs with the previous physical layout: the cache's expires_at index and
            # full pages
            self.sql("CREATE INDEX IF NOT EXISTS bench_cache_expires ON enrichment_cache (expires_at);"
                     "ALTER TABLE indicators SET (fillfactor = 100);"
                     "ALTER TABLE enrichment_cache SET (fillfactor = 100)")
            if self.want("before"):
                self.phase("before", self.run_before)
            self.sql("DROP INDEX bench_cache_expires;"
                     "ALTER TABLE indicators SET (fillfactor = 80);"
                     "ALTER TABLE enrichment_cache SET (fillfactor = 80)")
            if self.want("0030"):
                self.phase("0030/%d" % batches[-1], lambda s: self.run_0030(s, batches[-1]))
            for b in batches:
                if a.compare:
                    self.phase("cmp/%d" % b, lambda s, b=b: self.run_after(
                        s, b, "bench_enrich_complete_batch_cmp"))
                if self.want("after"):
                    self.phase("after/%d" % b, lambda s, b=b: self.run_after(s, b))
            self.phase("ceiling/%d" % batches[-1], lambda s: self.run_ceiling(s, batches[-1]))
        if a.wal_detail:
            # every path's sessions have ended (their statistics are flushed when they exit)
            rows = self.h.psql(self.db, (
                "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname "
                "IN ('indicators', 'enrichment_jobs', 'alerts', 'enrichment_cache') ORDER BY 1"))
            print("HOT updates, all paths of the run (updated rows, of which HOT):")
            for rel, upd, hot in rows:
                print("  %-20s %8s %8s  %5.1f %%" % (rel, upd, hot,
                                                   100.0 * int(hot) / max(1, int(upd))))
        print("uptime: %s" % open("/proc/loadavg").read().strip())
        print("\nsummary (medians over %d rounds)" % a.rounds)
        names = []
        for r in self.rows:
            if r["path"] not in names:
                names.append(r["path"])
        med = {}
        for nme in names:
            rs = sorted((r for r in self.rows if r["path"] == nme), key=lambda r: r["us/job"])
            med[nme] = rs[len(rs) // 2]
        ceil = med["ceiling/%d" % batches[-1]]["us/job"]
        print("%-12s %10s %11s %11s %11s %10s %10s %12s" % (
            "path", "us/job", "us/lookup", "cluster/lk", "WAL B/job", "trips/job", "stmts/job",
            "x ceiling"))
        for nme in names:
            r = med[nme]
            print("%-12s %10.0f %11.1f %11.1f %11.0f %10.3f %10s %12.2f" % (
                nme, r["us/job"], r["us/lookup"], r["cluster us/lookup"], r["wal/job"], r["trips/job"],
                "%.1f" % r["stmts/job"] if r["stmts/job"] is not None else "n/a",
                r["us/job"] / ceil))

    def close(self):
        self.stack.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=640)
    ap.add_argument("--indicators", type=int, default=10)
    ap.add_argument("--batches", default="1,16,64", help="jobs per completing statement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paths", default="", help="only these paths (before,0030,after); the "
                    "ceiling always runs")
    ap.add_argument("--compare", default="", help="a migration file name: its completing "
                    "function runs as path cmp/B beside after/B, in the same rounds")
    ap.add_argument("--setup", default="", help="SQL run on the bench's database first (to "
                    "measure a schema change before writing its migration)")
    ap.add_argument("--stmt-detail", action="store_true", help="time per job of the top "
                    "statements, nested ones included (needs pg_stat_statements loaded)")
    ap.add_argument("--wal-detail", action="store_true", help="WAL per job by relation "
                    "(pg_walinspect)")
    ap.add_argument("--perf", default="", help="record a perf profile of the session's backend "
                    "per path into PREFIX.<path>")
    a = ap.parse_args()
    if not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL is not set")
    if not re.fullmatch(r"[0-9,]+", a.batches):
        sys.exit("--batches: comma-separated numbers")
    b = Bench(a)
    try:
        b.run()
    finally:
        b.close()


if __name__ == "__main__":
    main()
