"""The intake's batching policy: with INGEST_FLUSH_WAIT_MS an alert held back beside a running
batch (its queue below INGEST_BATCH_MIN) goes to the database once it has waited that long,
instead of waiting for the running batch to return; without it, it waits.

A batch is held in the database by a transaction of the test that inserted (and has not
committed) the one new indicator of the first alert: the batch's insert of that value waits for
it, a documented wait of the write path."""
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


def run(flush_wait_ms):
    """Posts A (blocked in the database), then B; returns (B answered before A was released,
    A still unanswered when B's wait ended)."""
    s = Stack("flush%d" % flush_wait_ms, env={"INGEST_MAX_INFLIGHT": "2", "INGEST_BATCH_MIN": "1000",
                                              "INGEST_FLUSH_WAIT_MS": str(flush_wait_ms)})
    blocker = None
    try:
        k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000"))
        blocker = Blocker(s)
        got = {}
        ta = threading.Thread(target=lambda: got.__setitem__(
            "a", s.request("POST", "/v1/ingest/generic", key=k, body=alert("A", BLOCKED_IP))))
        ta.start()
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock'") == "1",
                 10, what="A's batch waits in the database")
        b_early = None
        try:
            # the deadline of the case without a flush wait: B must still be queued then
            b_early = s.request("POST", "/v1/ingest/generic", key=k, body=alert("B", "198.51.100.78"),
                                timeout=3 if flush_wait_ms == 0 else 20)
        except OSError:
            pass
        a_blocked = "a" not in got
        blocker.release()
        ta.join(20)
        assert_eq(got["a"].status, 202, got.get("a"))
        if b_early is not None:
            assert_eq(b_early.status, 202, b_early.body)
        # whatever the policy, B is committed once A's batch is back
        wait_for(lambda: s.sql_value("SELECT count(*) FROM alerts WHERE title = 'B'") == "1", 10,
                 what="B committed")
        return b_early is not None, a_blocked
    finally:
        if blocker:
            blocker.release()
        s.stop()


def test_flush_wait_sends_beside_a_stuck_batch():
    assert_eq(run(100), (True, True))


def test_without_flush_wait_the_queue_waits_for_the_running_batch():
    assert_eq(run(0), (False, True))


if __name__ == "__main__":
    run_tests(globals())
