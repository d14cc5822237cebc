"""Where an ingest stream's latency tail comes from: a 10 ms timeline of the database (used by
ingest_bench.py --trace).

One server-side loop samples pg_stat_activity (active client backends: wait class and event,
how long the current call has run; autovacuum workers: what they do) and pg_locks (waiters by
lock type) every 10 ms into a temporary table, clearing the statistics snapshot each time (a
transaction otherwise keeps seeing its first one). Afterwards the samples are grouped into
100 ms slices, and the slices where some call has run longer than a threshold are printed with
what every backend was doing then, beside the totals of each wait class over the whole stream
and over those slow slices alone. autoanalyze/autovacuum runs and checkpoints are events of the
same timeline.
"""
import collections
import os
import subprocess
import threading

SETUP = """
CREATE TEMP TABLE trace (t TIMESTAMPTZ, kind TEXT, pid INT, w TEXT, age_ms FLOAT8, q TEXT);
"""

LOOP = """
DO $$
DECLARE
    stop TIMESTAMPTZ := clock_timestamp() + make_interval(secs => %f);
BEGIN
    WHILE clock_timestamp() < stop LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO trace
        SELECT clock_timestamp(), 'b', a.pid,
               coalesce(a.wait_event_type, 'CPU') || ':' || coalesce(a.wait_event, '-'),
               1e3 * extract(epoch FROM clock_timestamp() - a.query_start), left(a.query, 40)
          FROM pg_stat_activity a
         WHERE a.state = 'active' AND a.backend_type = 'client backend'
           AND a.pid <> pg_backend_pid() AND a.datname = current_database()
           AND a.application_name <> 'ingest_trace'
        UNION ALL
        SELECT clock_timestamp(), 'av', a.pid, coalesce(a.wait_event_type, 'CPU') || ':' ||
               coalesce(a.wait_event, '-'), 1e3 * extract(epoch FROM clock_timestamp() - a.xact_start),
               left(a.query, 60)
          FROM pg_stat_activity a WHERE a.backend_type = 'autovacuum worker' AND a.query <> ''
        UNION ALL
        SELECT clock_timestamp(), 'lock', NULL, l.locktype || ':' || l.mode, count(*), NULL
          FROM pg_locks l WHERE NOT l.granted GROUP BY l.locktype, l.mode
        UNION ALL
        SELECT clock_timestamp(), 'tick', NULL, NULL, NULL, NULL;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
"""

DUMP = """
\\copy (SELECT extract(epoch FROM t), kind, coalesce(pid, 0), coalesce(w, ''), coalesce(age_ms, 0), coalesce(replace(q, E'\\t', ' '), '') FROM trace ORDER BY t) TO STDOUT
"""

STATE = ("SELECT extract(epoch FROM now()) || '|' || (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) "
         "|| '|' || coalesce((SELECT string_agg(relname || '=' || coalesce(extract(epoch FROM last_autoanalyze)::text, '') "
         "|| '/' || coalesce(extract(epoch FROM last_autovacuum)::text, '') || '/' || autoanalyze_count || '/' || "
         "autovacuum_count, ' ' ORDER BY relname) FROM pg_stat_user_tables WHERE relname IN "
         "('alerts', 'indicators', 'indicator_sightings', 'enrichment_jobs', 'activity_events')), '')")


class Tracer(threading.Thread):
    def __init__(self, url, seconds, slow_ms=100.0):
        super().__init__(daemon=True)
        self.url, self.seconds, self.slow_ms = url, seconds, slow_ms
        self.rows = []
        self.err = ""

    def run(self):
        r = subprocess.run(["psql", self.url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"],
                           env=dict(os.environ, PGAPPNAME="ingest_trace"),
                           input=SETUP + LOOP % self.seconds + DUMP, capture_output=True, text=True,
                           timeout=self.seconds + 120)
        self.err = r.stderr
        for line in r.stdout.splitlines():
            f = line.split("\t")
            if len(f) == 6:
                self.rows.append((float(f[0]), f[1], int(f[2]), f[3], float(f[4]), f[5]))

    def report(self, t0, state0, state1, out=print):
        """Prints the timeline; t0 is the stream's start (epoch seconds)."""
        if not self.rows:
            out("trace: no samples (%s)" % self.err.strip()[:300])
            return
        ticks = [r[0] for r in self.rows if r[1] == "tick"]
        out("trace: %d samples over %.1f s (every %.1f ms)" %
            (len(ticks), ticks[-1] - ticks[0], 1e3 * (ticks[-1] - ticks[0]) / max(1, len(ticks) - 1)))
        slices = collections.defaultdict(lambda: {"ticks": 0, "waits": collections.Counter(), "maxage": 0.0,
                                                  "locks": collections.Counter(), "av": set(), "q": collections.Counter()})
        total, slow = collections.Counter(), collections.Counter()
        for t, kind, pid, w, age, q in self.rows:
            s = slices[int((t - t0) * 10)]
            if kind == "tick":
                s["ticks"] += 1
            elif kind == "b":
                s["waits"][w] += 1
                total[w] += 1
                if age > s["maxage"]:
                    s["maxage"] = age
                s["q"][q[:30]] += 1
            elif kind == "lock":
                s["locks"][w] += int(age)
            elif kind == "av":
                s["av"].add(q)
        for k in sorted(slices):
            s = slices[k]
            if s["maxage"] >= self.slow_ms or s["av"]:
                n = max(1, s["ticks"])
                out("  t=%5.1fs  longest call %6.0f ms  %4.1f active  %s%s%s" % (
                    k / 10.0, s["maxage"], sum(s["waits"].values()) / n,
                    ", ".join("%s %.1f" % (w, c / n) for w, c in s["waits"].most_common(4)),
                    ("  lock waiters: " + ", ".join("%s %.1f" % (w, c / n) for w, c in s["locks"].most_common(3)))
                    if s["locks"] else "",
                    ("  autovacuum: " + "; ".join(sorted(s["av"]))) if s["av"] else ""))
            if s["maxage"] >= self.slow_ms:
                slow.update(s["waits"])
        calls = [s["maxage"] for s in slices.values() if s["ticks"]]
        avs = [s["maxage"] for s in slices.values() if s["ticks"] and s["av"]]
        out("trace calls: longest %.0f ms; %d of %d slices had a call >= %.0f ms; autovacuum busy in %d slices "
            "(longest call in them %.0f ms)" % (max(calls or [0]), sum(1 for c in calls if c >= self.slow_ms),
                                                len(calls), self.slow_ms, len(avs), max(avs or [0])))
        for label, c in (("whole stream", total), ("slices with a call >= %.0f ms" % self.slow_ms, slow)):
            n = sum(c.values())
            out("trace waits, %s: %s" % (label, ", ".join("%s %.0f%%" % (w, 100.0 * v / n) for w, v in c.most_common(8))
                                          if n else "(none)"))
        out("trace state before: %s" % describe_state(state0, t0))
        out("trace state after:  %s" % describe_state(state1, t0))


def state(url):
    r = subprocess.run(["psql", url, "-X", "-q", "-t", "-A", "-c", STATE], capture_output=True, text=True)
    return r.stdout.strip()


def describe_state(s, t0):
    """checkpoints so far, and per table: last autoanalyze / autovacuum relative to t0, counts."""
    try:
        now, ckpt, tables = s.split("|", 2)
    except ValueError:
        return s
    parts = []
    for item in tables.split():
        name, _, v = item.partition("=")
        an, vac, nan, nvac = v.split("/")
        rel = lambda x: ("%+.1fs" % (float(x) - t0)) if x else "never"  # noqa: E731
        parts.append("%s analyze %s (%s) vacuum %s (%s)" % (name, rel(an), nan, rel(vac), nvac))
    return "checkpoints %s; %s" % (ckpt, "; ".join(parts))
