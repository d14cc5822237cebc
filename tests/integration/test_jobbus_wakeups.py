"""JOB_READY wake-ups: an intake sends one message per commit; the job bus splits a commit of
many jobs into wake-ups of at most four jobs each, handed to the enrichers in turn, so a large
commit wakes several enrichers and every committed job is announced exactly once.

One commit of many alerts is made certain by holding the first batch in the database (a test
transaction holds an uncommitted insert of its one new indicator) while the other alerts queue
behind it in the intake (the first batch stays live for a minute, and the queue is below a
whole batch, so nothing goes beside it); released, they go as one batch. The
enrichers log every wake-up they receive (LOG_LEVEL=DEBUG), with its job count."""
import re
import subprocess
import threading

from harness import Stack, assert_eq, fernet_key, run_tests, wait_for

BLOCKED_IP = "198.51.100.77"
QUEUED = 11
WAKEUP = re.compile(r"(\d+) job\(s\) ready from job (\d+)")


def hold_indicator(s):
    p = subprocess.Popen(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    p.stdin.write("BEGIN;\nINSERT INTO indicators (type, value, first_seen, last_seen) "
                  "VALUES ('ip', '%s', now(), now());\n" % BLOCKED_IP)
    p.stdin.flush()
    wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND state = 'idle in transaction'") == "1",
             10, what="the blocking transaction holds its insert")
    return p


def release(p):
    if p.poll() is None:
        p.stdin.write("ROLLBACK;\n")
        p.stdin.close()
        p.wait(20)


def queued(s, key):
    r = s.request("GET", "/metrics", key=key)
    m = re.search(r'^calseta_ingest_queued\{[^}]*\} (\S+)$', r.body.decode(), re.M)
    return float(m.group(1)) if m else -1


def wakeups(enrichers):
    return [int(m.group(1)) for e in enrichers for m in WAKEUP.finditer(e.text())]


def test_a_large_commit_wakes_several_enrichers():
    s = Stack("jobwake", services=(), env={"LOG_LEVEL": "DEBUG", "ENRICHER_POLL_INTERVAL_MS": "60000", "ENCRYPTION_KEY": fernet_key(),
                                            "INGEST_STALL_MS": "60000", "INGEST_BATCH_MIN": "128"})
    holder = None
    try:
        s.start("jobbus")
        enrichers = [s.start("enricher"), s.start("enricher")]
        for e in enrichers:
            wait_for(lambda: "providers loaded" in e.text() or not e.alive(), 10, what="an enricher's start")
            assert e.alive(), e.text()
        s.start_intake()
        s.wait_healthy()
        k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000"))
        mk = s.create_key("alerts:read", name="metrics", extra=("--rate-limit-per-minute", "100000"))
        holder = hold_indicator(s)
        got, threads = {}, []

        def post(i, ip):
            got[i] = s.request("POST", "/v1/ingest/generic", key=k, timeout=30,
                               body={"title": "wake %d" % i, "severity": "high", "src_ip": ip})

        threads.append(threading.Thread(target=post, args=(0, BLOCKED_IP)))
        threads[0].start()
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock'") == "1", 10, what="the first batch waits")
        for i in range(1, QUEUED + 1):
            threads.append(threading.Thread(target=post, args=(i, "198.51.100.%d" % (100 + i))))
            threads[-1].start()
        wait_for(lambda: queued(s, mk) == QUEUED, 10, what="the other alerts queued behind it")
        release(holder)
        for t in threads:
            t.join(30)
        assert_eq(sorted(r.status for r in got.values()), [202] * (QUEUED + 1), got)
        # one commit of 1 job, one of QUEUED: wake-ups of 1, then 4 + 4 + 3, spread by PUSH
        wait_for(lambda: sum(wakeups(enrichers)) >= QUEUED + 1, 10, what="every job announced")
        counts = wakeups(enrichers)
        assert_eq(sorted(counts), [1, 3, 4, 4], counts)
        for e in enrichers:
            assert WAKEUP.search(e.text()), "an enricher was never woken:\n" + e.text()[-2000:]
    finally:
        if holder:
            release(holder)
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
