"""The intake's batching policy: with INGEST_FLUSH_WAIT_MS an alert held back beside a running
batch (its queue below INGEST_BATCH_MIN) goes to the database once it has waited that long,
instead of waiting for the running batch to return; without it, it waits.

With de-duplication on, an alert whose fingerprint is in one of the process's batches in flight
is held in the intake until that batch is back, instead of queueing in the database behind it.

A batch is held in the database by a transaction of the test that inserted (and has not
committed) the one new indicator of the first alert: the batch's insert of that value waits for
it, a documented wait of the write path. Every wait is for a condition, with a deadline."""
import re
import subprocess
import threading

from harness import Stack, assert_eq, run_tests, wait_for

BLOCKED_IP = "198.51.100.77"


def alert(title, ip):
    return {"title": title, "severity": "high", "src_ip": ip}


class Blocker:
    """A psql session holding an uncommitted insert of one indicator value."""

    def __init__(self, s):
        self.s = s
        self.p = subprocess.Popen(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.p.stdin.write("BEGIN;\nINSERT INTO indicators (type, value, first_seen, last_seen) "
                           "VALUES ('ip', '%s', now(), now());\n" % BLOCKED_IP)
        self.p.stdin.flush()
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND state = 'idle in transaction'") == "1",
                 10, what="the blocking transaction holds its insert")

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("ROLLBACK;\n")
            self.p.stdin.close()
            self.p.wait(20)


def gauges(s, key):
    """The batcher's gauges of the stack's one intake process."""
    r = s.request("GET", "/metrics", key=key)
    assert_eq(r.status, 200, r.body)
    out = {}
    for line in r.body.decode().splitlines():
        m = re.match(r'^(calseta_ingest_(?:queued|held|held_total|batches_in_flight))\{[^}]*\} (\S+)$', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def lock_waiters(s):
    return s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock'")


def post_in_thread(s, key, got, name, body):
    t = threading.Thread(target=lambda: got.__setitem__(
        name, s.request("POST", "/v1/ingest/generic", key=key, body=body)))
    t.start()
    return t


def run(flush_wait_ms):
    """Posts A (blocked in the database), then B; returns (B answered before A was released,
    A still unanswered when B's wait ended).

    Without a flush wait, B is seen held: queued in the intake beside the one running batch
    while a slot for a second one is free (the policy decides as B is queued, so this state is
    the decision, not a moment before it), and not in the database."""
    s = Stack("flush%d" % flush_wait_ms, env={"INGEST_MAX_INFLIGHT": "2", "INGEST_BATCH_MIN": "1000",
                                              "INGEST_FLUSH_WAIT_MS": str(flush_wait_ms)})
    blocker = None
    try:
        k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000"))
        mk = s.create_key("alerts:read", name="metrics", extra=("--rate-limit-per-minute", "100000"))
        blocker = Blocker(s)
        got = {}
        ta = post_in_thread(s, k, got, "a", alert("A", BLOCKED_IP))
        wait_for(lambda: lock_waiters(s) == "1", 10, what="A's batch waits in the database")
        if flush_wait_ms == 0:
            tb = post_in_thread(s, k, got, "b", alert("B", "198.51.100.78"))
            wait_for(lambda: gauges(s, mk).get("calseta_ingest_queued") == 1, 10,
                     what="B queued in the intake")
            g = gauges(s, mk)
            assert_eq((g["calseta_ingest_queued"], g["calseta_ingest_batches_in_flight"]), (1, 1), g)
            assert_eq(lock_waiters(s), "1")
            b_early = "b" in got
        else:
            tb = post_in_thread(s, k, got, "b", alert("B", "198.51.100.78"))
            wait_for(lambda: "b" in got, 20, what="B answered beside the stuck batch")
            b_early = True
        a_blocked = "a" not in got
        blocker.release()
        ta.join(20)
        tb.join(20)
        assert_eq(got["a"].status, 202, got.get("a"))
        assert_eq(got["b"].status, 202, got.get("b"))
        # whatever the policy, B is committed once A's batch is back
        wait_for(lambda: s.sql_value("SELECT count(*) FROM alerts WHERE title = 'B'") == "1", 10,
                 what="B committed")
        return b_early, a_blocked
    finally:
        if blocker:
            blocker.release()
        s.stop()


def test_flush_wait_sends_beside_a_stuck_batch():
    assert_eq(run(100), (True, True))


def test_without_flush_wait_the_queue_waits_for_the_running_batch():
    assert_eq(run(0), (False, True))


def test_a_fingerprint_waits_for_its_own_batch_not_in_a_second_one():
    """With de-duplication on, A2 (identical to A, whose batch is stuck in the database) is held
    in the intake rather than sent in a batch of its own that would queue behind A's in the
    database; B, posted after it, goes out beside A's batch and is answered. Once A's batch is
    back, A2 goes and is counted as A's duplicate."""
    s = Stack("flushfp", env={"INGEST_MAX_INFLIGHT": "4", "INGEST_BATCH_MIN": "1",
                              "INGEST_FLUSH_WAIT_MS": "0", "ALERT_DEDUP_WINDOW_HOURS": "24"})
    blocker = None
    try:
        k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000"))
        mk = s.create_key("alerts:read", name="metrics", extra=("--rate-limit-per-minute", "100000"))
        blocker = Blocker(s)
        got = {}
        ta = post_in_thread(s, k, got, "a", alert("A", BLOCKED_IP))
        wait_for(lambda: lock_waiters(s) == "1", 10, what="A's batch waits in the database")
        ta2 = post_in_thread(s, k, got, "a2", alert("A", BLOCKED_IP))
        wait_for(lambda: gauges(s, mk).get("calseta_ingest_held") == 1, 10,
                 what="A2 held behind A's batch")
        b = s.request("POST", "/v1/ingest/generic", key=k, body=alert("B", "198.51.100.79"), timeout=20)
        assert_eq(b.status, 202, b.body)
        assert_eq(("a" in got, "a2" in got), (False, False))
        g = gauges(s, mk)
        assert_eq((g["calseta_ingest_held"], g["calseta_ingest_held_total"],
                   g["calseta_ingest_batches_in_flight"]), (1, 1, 1), g)
        assert_eq(lock_waiters(s), "1")
        blocker.release()
        ta.join(20)
        ta2.join(20)
        a, a2 = got["a"], got["a2"]
        assert_eq((a.status, a2.status), (202, 202), (a.body, a2.body))
        da, da2 = a.json()["data"], a2.json()["data"]
        assert_eq((da["status"], da2["status"]), ("queued", "deduplicated"))
        assert_eq(da2["alert_uuid"], da["alert_uuid"])
        assert_eq(s.sql_value("SELECT duplicate_count FROM alerts WHERE title = 'A'"), "1")
        g = gauges(s, mk)
        assert_eq((g["calseta_ingest_queued"], g["calseta_ingest_held"]), (0, 0), g)
    finally:
        if blocker:
            blocker.release()
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
