"""The intake's batching policy: a batch goes beside the process's live batches only when the
queue holds INGEST_BATCH_MIN alerts (or fills INGEST_BATCH_MAX), or once the running batches
have been out INGEST_STALL_MS (a stalled batch must not stop the process's ingest), as long as
fewer than INGEST_MAX_INFLIGHT of them are stalled.

With de-duplication on, an alert whose fingerprint is in one of the process's batches in flight
is held in the intake until that batch is back, instead of queueing in the database behind it.

A batch is held in the database by a psql session of the test holding the advisory lock that
the write path takes on the fingerprint of the alert it de-duplicates: a repeat of a stored
alert waits for it. Every wait is for a condition, with a deadline."""
import os
import re
import subprocess
import threading
import time

from harness import Stack, assert_eq, free_port, run_tests, wait_for


def alert(title, ip):
    return {"title": title, "severity": "high", "src_ip": ip}


class FingerprintLock:
    """A psql session holding the write path's lock on one fingerprint (session level, so a
    batch's transaction-level lock of the same key waits for it)."""

    def __init__(self, s, fingerprint):
        self.s = s
        app = "fingerprint-lock-" + fingerprint[:16]  # one per lock: a test may hold two
        self.p = subprocess.Popen(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                  env=dict(os.environ, PGAPPNAME=app))
        self.p.stdin.write("SELECT pg_advisory_lock(hashtextextended('%s', 727274));\n" % fingerprint)
        self.p.stdin.flush()
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                     "WHERE a.application_name = '%s' "
                                     "AND l.locktype = 'advisory' AND l.granted" % app) == "1",
                 10, what="the test's session holds the fingerprint's lock")

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("SELECT pg_advisory_unlock_all();\n")
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
    def post():
        r = s.request("POST", "/v1/ingest/generic", key=key, body=body, timeout=60)
        got[name] = (r, time.monotonic())
    t = threading.Thread(target=post)
    t.start()
    return t


class Stalled:
    """A stack of one intake process whose batch holding a repeat of alert A is stuck in the
    database on A's fingerprint lock."""

    def __init__(self, name, env, locked=()):
        """locked: more (title, ip) alerts stored first, whose fingerprints the test also holds
        (self.locks[title]), so that a repeat of one is held in the database as well."""
        self.s = Stack(name, env=dict({"ALERT_DEDUP_WINDOW_HOURS": "24"}, **env))
        self.lock = None
        self.locks = {}
        self.got = {}
        self.threads = []
        s = self.s
        self.k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000"))
        self.mk = s.create_key("alerts:read", name="metrics", extra=("--rate-limit-per-minute", "100000"))
        for title, ip in (("A", "198.51.100.77"),) + tuple(locked):
            r = s.request("POST", "/v1/ingest/generic", key=self.k, body=alert(title, ip))
            assert_eq(r.status, 202, r.body)
        for title, _ in locked:
            self.locks[title] = FingerprintLock(
                s, s.sql_value("SELECT fingerprint FROM alerts WHERE title = '%s'" % title))
        self.lock = FingerprintLock(s, s.sql_value("SELECT fingerprint FROM alerts WHERE title = 'A'"))
        # A2's batch goes out after this moment: the stall bound counts from no earlier
        self.a2_posted = time.monotonic()
        self.post("a2", alert("A", "198.51.100.77"))
        wait_for(lambda: lock_waiters(s) == "1", 10, what="A2's batch waits in the database")

    def post(self, name, body):
        self.threads.append(post_in_thread(self.s, self.k, self.got, name, body))

    def finish(self):
        """Releases the lock; A2 is then answered as A's duplicate."""
        self.lock.release()
        for t in self.threads:
            t.join(60)
        r = self.got["a2"][0]
        assert_eq(r.status, 202, r.body)
        assert_eq(r.json()["data"]["status"], "deduplicated")

    def stop(self):
        for lock in self.locks.values():
            lock.release()
        if self.lock:
            self.lock.release()
        self.s.stop()


def test_a_stalled_batch_does_not_stop_the_process():
    """With the default stall bound, B (another fingerprint) is stored and answered while A2's
    batch is still stuck, within the bound plus a commit."""
    st = Stalled("stall", {})
    try:
        t0 = time.monotonic()
        st.post("b", alert("B", "198.51.100.78"))
        wait_for(lambda: "b" in st.got, 20, what="B answered beside the stuck batch")
        r, t1 = st.got["b"]
        assert_eq(r.status, 202, r.body)
        assert_eq(st.s.sql_value("SELECT count(*) FROM alerts WHERE title = 'B'"), "1")
        assert_eq(("a2" in st.got, lock_waiters(st.s)), (False, "1"))
        took = t1 - t0
        print("B answered %.0f ms after it was posted, beside a stalled batch (bound: 20 ms)" % (took * 1000))
        # the bound (20 ms) and one commit, with room for a sanitiser build on a loaded box
        assert took < 2.0, took
        st.finish()
    finally:
        st.stop()


def test_a_live_batch_holds_the_next_until_the_stall_bound():
    """With a long stall bound, B is first held in the intake beside the running batch (the
    policy decides as B is queued, so this is the decision, not a moment before it), not sent
    to the database; after the bound it goes, before A2's batch is back. C, queued beside B
    halfway through, goes with it: the bound counts from when A2's batch went out, not from the
    last alert queued (restarting a whole bound per queued alert would answer both at 1.5 times
    the bound). Times are counted from just before A2 was posted, which is no later than the
    moment the bound counts from; the upper bound leaves 2 s for the commit and the answers on
    a loaded box (restarting the bound per queued alert answers half a bound, 3 s, past it)."""
    bound = 6.0
    st = Stalled("stallwait", {"INGEST_STALL_MS": str(int(bound * 1000)), "INGEST_MAX_INFLIGHT": "2"})
    try:
        st.post("b", alert("B", "198.51.100.78"))
        wait_for(lambda: "b" in st.got or gauges(st.s, st.mk).get("calseta_ingest_queued") == 1
                 or time.monotonic() - st.a2_posted >= bound, 10, what="B queued in the intake")
        g = gauges(st.s, st.mk)
        b_answered = "b" in st.got
        seen = time.monotonic() - st.a2_posted
        # Inside the bound B must still be queued; a box so slow that this check ran past it
        # cannot tell, and fails rather than pass without the check.
        assert seen < bound / 2, "the check ran %.0f ms after A2 was posted, past half the %.0f ms bound" % (
            seen * 1000, bound * 1000)
        assert_eq((g["calseta_ingest_queued"], g["calseta_ingest_batches_in_flight"], b_answered),
                  (1, 1, False), g)
        time.sleep(max(0.0, st.a2_posted + bound / 2 - time.monotonic()))
        st.post("c", alert("C", "198.51.100.79"))
        wait_for(lambda: "b" in st.got and "c" in st.got, 20, what="B and C answered once A2's batch stalled")
        for name in ("b", "c"):
            r, t1 = st.got[name]
            assert_eq(r.status, 202, r.body)
            took = t1 - st.a2_posted
            print("%s answered %.0f ms after A2 was posted (bound: %.0f ms)" % (name.upper(), took * 1000, bound * 1000))
            assert bound <= took < bound + 2.0, (name, took)
        assert_eq("a2" in st.got, False)
        st.finish()
    finally:
        st.stop()


def test_the_stall_timer_follows_the_youngest_live_batch():
    """The queue waits for the youngest live batch to stall, and when that one returns, for the
    next youngest: A2 goes out at t0 and is stuck; at t0 + bound/2 C2 (a repeat of C, whose
    fingerprint the test holds too) and D fill the floor of two and go out as batch Z beside it;
    B, queued next, waits for Z to stall (t0 + 1.5 bound). Z is released and returns soon after,
    so A2 is the youngest live batch again and B must go when A2 stalls, at t0 + bound - not
    when Z would have (t0 + 1.5 bound at the earliest), as a timer kept from before Z returned
    would do. With a bound of 8 s the upper bound leaves 2 s for the commit and the answer on a
    loaded box and still fails such a timer by 2 s."""
    bound = 8.0
    st = Stalled("stallnext", {"INGEST_STALL_MS": str(int(bound * 1000)), "INGEST_MAX_INFLIGHT": "4",
                               "INGEST_BATCH_MIN": "2"}, locked=(("C", "198.51.100.80"),))
    s, mk = st.s, st.mk
    try:
        time.sleep(max(0.0, st.a2_posted + bound / 2 - time.monotonic()))
        st.post("c2", alert("C", "198.51.100.80"))
        st.post("d", alert("D", "198.51.100.81"))
        wait_for(lambda: lock_waiters(s) == "2", 10, what="batch Z (C2 and D) waits in the database beside A2's")
        st.post("b", alert("B", "198.51.100.78"))
        wait_for(lambda: gauges(s, mk).get("calseta_ingest_queued") == 1, 10, what="B queued in the intake")
        st.locks.pop("C").release()
        wait_for(lambda: "c2" in st.got and "d" in st.got, 10, what="batch Z back")
        back = max(st.got["c2"][1], st.got["d"][1]) - st.a2_posted
        # Z must be back while A2's batch is still live, or this cannot tell the two timers apart
        assert back < bound - 0.5, "batch Z was back %.0f ms after A2 was posted, too close to the %.0f ms bound" % (
            back * 1000, bound * 1000)
        assert_eq(st.got["c2"][0].json()["data"]["status"], "deduplicated")
        assert_eq(st.got["d"][0].status, 202, st.got["d"][0].body)
        assert_eq("b" in st.got, False)
        wait_for(lambda: "b" in st.got, 20, what="B answered once A2's batch stalled")
        r, t1 = st.got["b"]
        assert_eq(r.status, 202, r.body)
        took = t1 - st.a2_posted
        print("B answered %.0f ms after A2 was posted (A2 stalls at %.0f ms; Z at %.0f ms or later)"
              % (took * 1000, bound * 1000, (bound + bound / 2) * 1000))
        assert bound <= took < bound + 2.0, took
        assert_eq(("a2" in st.got, lock_waiters(s)), (False, "1"))
        st.finish()
    finally:
        st.stop()


def test_a_queue_at_the_floor_goes_beside_a_live_batch():
    """A queue that reaches INGEST_BATCH_MIN goes at once beside the running batch."""
    st = Stalled("stallfull", {"INGEST_STALL_MS": "60000", "INGEST_BATCH_MIN": "2"})
    try:
        st.post("b", alert("B", "198.51.100.78"))
        wait_for(lambda: gauges(st.s, st.mk).get("calseta_ingest_queued") == 1, 10, what="B queued in the intake")
        st.post("c", alert("C", "198.51.100.79"))
        wait_for(lambda: "b" in st.got and "c" in st.got, 20, what="B and C answered")
        assert_eq((st.got["b"][0].status, st.got["c"][0].status), (202, 202))
        assert_eq("a2" in st.got, False)
        st.finish()
    finally:
        st.stop()


def test_a_fingerprint_waits_for_its_own_batch_not_in_a_second_one():
    """With de-duplication on, A3 (identical to A2, whose batch is stuck in the database) is held
    in the intake rather than sent in a batch of its own that would queue behind A2's in the
    database; B, posted after it, goes out beside A2's batch and is answered. Once A2's batch is
    back, A3 goes and is counted as a duplicate too."""
    st = Stalled("flushfp", {"INGEST_MAX_INFLIGHT": "4", "INGEST_STALL_MS": "1"})
    s, mk = st.s, st.mk
    try:
        st.post("a3", alert("A", "198.51.100.77"))
        wait_for(lambda: gauges(s, mk).get("calseta_ingest_held") == 1, 10, what="A3 held behind A2's batch")
        b = s.request("POST", "/v1/ingest/generic", key=st.k, body=alert("B", "198.51.100.79"), timeout=20)
        assert_eq(b.status, 202, b.body)
        assert_eq(("a2" in st.got, "a3" in st.got), (False, False))
        g = gauges(s, mk)
        assert_eq((g["calseta_ingest_held"], g["calseta_ingest_held_total"],
                   g["calseta_ingest_batches_in_flight"]), (1, 1, 1), g)
        assert_eq(lock_waiters(s), "1")
        st.finish()
        a3 = st.got["a3"][0]
        assert_eq(a3.status, 202, a3.body)
        assert_eq(a3.json()["data"]["status"], "deduplicated")
        assert_eq(a3.json()["data"]["alert_uuid"], st.got["a2"][0].json()["data"]["alert_uuid"])
        assert_eq(s.sql_value("SELECT duplicate_count FROM alerts WHERE title = 'A'"), "2")
        g = gauges(s, mk)
        assert_eq((g["calseta_ingest_queued"], g["calseta_ingest_held"]), (0, 0), g)
    finally:
        st.stop()


def test_with_every_slot_stalled_the_queue_waits_for_one():
    """The stall bound frees the queue only while a slot is left: with INGEST_MAX_INFLIGHT=2 and
    two stuck batches (A2's, and C2's on a second held fingerprint), B stays queued well past
    the 1 ms bound, and goes as soon as C2's batch is back."""
    st = Stalled("stallall", {"INGEST_MAX_INFLIGHT": "2", "INGEST_STALL_MS": "1"})
    s, mk = st.s, st.mk
    lock_c = None
    try:
        r = s.request("POST", "/v1/ingest/generic", key=st.k, body=alert("C", "198.51.100.80"), timeout=20)
        assert_eq(r.status, 202, r.body)
        lock_c = FingerprintLock(s, s.sql_value("SELECT fingerprint FROM alerts WHERE title = 'C'"))
        st.post("c2", alert("C", "198.51.100.80"))
        wait_for(lambda: lock_waiters(s) == "2", 10, what="C2's batch waits in the database beside A2's")
        st.post("b", alert("B", "198.51.100.78"))
        wait_for(lambda: gauges(s, mk).get("calseta_ingest_queued") == 1, 10, what="B queued in the intake")
        time.sleep(0.5)  # 500 times the bound
        g = gauges(s, mk)
        assert_eq((g["calseta_ingest_queued"], g["calseta_ingest_batches_in_flight"], "b" in st.got),
                  (1, 2, False), g)
        lock_c.release()
        wait_for(lambda: "b" in st.got and "c2" in st.got, 20, what="C2 and then B answered")
        assert_eq((st.got["c2"][0].status, st.got["b"][0].status), (202, 202))
        assert_eq(st.got["c2"][0].json()["data"]["status"], "deduplicated")
        assert_eq(("a2" in st.got, lock_waiters(s)), (False, "1"))
        st.finish()
    finally:
        if lock_c:
            lock_c.release()
        st.stop()


def test_a_queue_full_by_bytes_goes_beside_a_live_batch():
    """A whole batch is INGEST_BATCH_MAX alerts or the 16 MB byte cap, whichever comes first: four
    alerts of 4.5 MB beside a live batch (its stall bound a minute away) fill the cap, so three
    go at once (as many as fit) and the fourth waits for the running batch or the bound."""
    st = Stalled("stallbytes", {"INGEST_STALL_MS": "60000"})
    try:
        filler = "x" * (4500 * 1024)
        for i in range(4):
            st.post("big%d" % i, dict(alert("BIG%d" % i, "198.51.100.%d" % (90 + i)), note=filler))
        wait_for(lambda: sum(1 for n in st.got if n.startswith("big")) >= 3, 60, 0.1,
                 "three large alerts answered beside the live batch")
        time.sleep(0.5)
        big = sorted(n for n in st.got if n.startswith("big"))
        assert_eq(len(big), 3, big)
        for n in big:
            assert_eq(st.got[n][0].status, 202, st.got[n][0].body[:200])
        assert_eq(("a2" in st.got, lock_waiters(st.s)), (False, "1"))
        st.finish()
        assert_eq(st.s.sql_value("SELECT count(*) FROM alerts WHERE title LIKE 'BIG%'"), "4")
    finally:
        st.stop()


def test_retired_and_out_of_range_settings_are_not_silent():
    """INGEST_FLUSH_WAIT_MS, retired, is ignored with a warning at start (set empty, it is unset:
    no warning); INGEST_MAX_INFLIGHT=1, which would leave a stuck batch no escape, is read as 2
    with a warning (refusing it would stop every process of a deployment that set it); a value
    outside 1-7 is refused."""
    s = Stack("flushcfg", env={"INGEST_FLUSH_WAIT_MS": "5"})
    try:
        assert "INGEST_FLUSH_WAIT_MS is retired" in s.proc("intake").text(), s.proc("intake").text()
        one = s.start("intake", {"INGEST_MAX_INFLIGHT": "1", "INGEST_FLUSH_WAIT_MS": "",
                                 "HTTP_PORT": str(free_port())})
        wait_for(lambda: "INGEST_MAX_INFLIGHT=1 is read as 2" in one.text(), 30, 0.1,
                 "the intake warns that INGEST_MAX_INFLIGHT=1 is read as 2")
        assert one.p.poll() is None, one.text()
        assert "INGEST_FLUSH_WAIT_MS is retired" not in one.text(), one.text()
        bad = s.start("intake", {"INGEST_MAX_INFLIGHT": "8", "HTTP_PORT": str(free_port())})
        assert_eq(bad.p.wait(30), 1, bad.text())
        assert "INGEST_MAX_INFLIGHT" in bad.text(), bad.text()
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
