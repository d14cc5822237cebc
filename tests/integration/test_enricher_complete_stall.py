"""test_enricher_complete_stall.py - a completing statement that waits on a lock holds up
neither the other jobs nor, for longer than its timeout, its own job; and a job whose completion
waits keeps its lease and its attempt.

A second session holds the row lock of one job's indicator (the completing statement updates
every indicator of its jobs), so that job's completing statement waits. The worker runs with the
default concurrency (8 jobs in flight): a full batch can never wait there, and before, every job
finishing afterwards waited behind the blocked statement, its slot taken, until claiming stopped.

  1. A long statement timeout (a lease of 600 s, half of it): the other jobs are completed beside
     the blocked statement while the lock is held; once it is released, the blocked job is
     completed by that same statement (first attempt).
  2. A lease of 4 s (a 1.5 s statement timeout) and the default ENRICH_JOB_MAX_ATTEMPTS (5): the
     blocked statement fails with a timeout, the others are completed meanwhile, and the lock is
     held for longer than five timeouts (and several leases). The worker keeps the finished job
     and tries its completion again and again, renewing its lease: the job is never claimed a
     second time (attempts stay 1; it would have failed for good if each timeout had cost an
     attempt) and is completed once the lock is gone.
  3. A lease of 3 s, and the blocked job in one statement with 12 others, after them in id
     order (the statement locks their job rows first, then waits for the blocked job's
     indicator): the statement gives up on the lock after half its timeout and is split in
     halves, the others are completed while the job is blocked, and no job's lease lapses while completion waits (no
     job is claimed twice, although a second worker runs, ready to take over a lapsed lease).

The stand-in provider answers every lookup after 100 ms. Waits are bounded, with generous
limits; nothing depends on how fast the box is.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enricher_stack import main, virustotal_stack  # noqa: E402
from harness import assert_eq, fernet_key  # noqa: E402
from standin import StandIn, virustotal  # noqa: E402


KEY = fernet_key()
VT_KEY = "vt-stall-secret-77c1"
OTHERS = 12

SLOW = "54.7.8."  # lookups of these IPs answer 200 ms later than the others


def slow_virustotal(handle):
    def slow(req):
        if SLOW in req.path:
            time.sleep(0.2)
        return handle(req)
    return slow


STANDIN = StandIn(slow_virustotal(virustotal(VT_KEY)), delay=0.1)
STACK = None


def setup():
    global STACK
    if STACK:
        return
    STACK = virustotal_stack("enrichstall", STANDIN, KEY, VT_KEY, {})


class Locker:
    """A session of its own holding the row lock of one indicator until release()."""

    def __init__(self, value, name="stall-locker"):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", STACK.db],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, PGAPPNAME=name))
        self.p.stdin.write("BEGIN;\nSELECT id FROM indicators WHERE type = 'ip' AND value = '%s' "
                           "FOR UPDATE;\n" % value)
        self.p.stdin.flush()
        deadline = time.time() + 30
        while STACK.sql_value("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING "
                              "(pid) WHERE a.application_name = '%s' AND l.mode = "
                              "'RowShareLock' AND l.granted AND a.state = "
                              "'idle in transaction'" % name) == "0":
            assert self.p.poll() is None, "locking session exited: " + self.p.stderr.read()
            assert time.time() < deadline, "the locking session did not take its lock"
            time.sleep(0.05)

    def release(self):
        if self.p.poll() is None:
            self.p.stdin.write("COMMIT;\n")
            self.p.stdin.close()
            self.p.wait(30)


def insert_indicator(value):
    STACK.sql("INSERT INTO indicators (type, value, first_seen, last_seen) "
              "VALUES ('ip', '%s', now(), now())" % value)


def insert_jobs(third, n):
    """n alerts with one IP each (54.7.<third>.<1..n>, stored already or not: an existing row,
    locked maybe, is not touched), and their jobs, in one transaction; returns the job ids in IP
    order."""
    STACK.sql("INSERT INTO indicators (type, value, first_seen, last_seen) "
              "SELECT 'ip', format('54.7.%d.%%s', g), now(), now() FROM generate_series(1, %d) g "
              "ON CONFLICT (type, value) DO NOTHING" % (third, n))
    rows = STACK.sql(
        "WITH a AS (INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload) "
        "SELECT 'stall %(t)d ' || g, 'High', 'generic', now(), '{}'::jsonb "
        "FROM generate_series(1, %(n)d) g RETURNING id, title), "
        "l AS (INSERT INTO alert_indicators (alert_id, indicator_id) SELECT a.id, i.id FROM a "
        "JOIN indicators i ON i.type = 'ip' AND i.value = format('54.7.%(t)d.%%s', "
        "split_part(a.title, ' ', 3))) "
        "INSERT INTO enrichment_jobs (alert_id) SELECT id FROM a ORDER BY id RETURNING id"
        % {"t": third, "n": n})
    assert_eq(len(rows), n, "jobs inserted")
    return [int(r[0]) for r in rows]


def job_status(job):
    return STACK.sql("SELECT status, attempts FROM enrichment_jobs WHERE id = %d" % job)[0]


def done_count(ids):
    return int(STACK.sql_value("SELECT count(*) FROM enrichment_jobs WHERE status = 'done' AND "
                               "id IN (%s)" % ",".join(str(i) for i in ids)))


def wait_for(what, cond, worker, timeout=60):
    deadline = time.time() + timeout
    while not cond():
        assert worker.alive(), "worker exited:\n" + worker.text()[-3000:]
        assert time.time() < deadline, "%s: not within %d s:\n%s" % (
            what, timeout, worker.text()[-5000:])
        time.sleep(0.1)


def start_worker(lease, concurrency=8):
    w = STACK.start("enricher", {"ENRICH_JOB_LEASE_SECONDS": lease,
                                 "ENRICHER_CONCURRENCY": concurrency})
    wait_for("providers loaded", lambda: "providers loaded" in w.text(), w, 20)
    return w


def blocked_statement_waits():
    return STACK.sql_value(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "wait_event_type = 'Lock' AND query LIKE '%calseta_enrich_complete_batch%'") != "0"


def only_lock_failures(text, blocked, lead=None):
    """Every failed completing statement failed on the held lock: a batch by its lock timeout
    or statement timeout, a job's own statement (the blocked job's, or the lead's held by the
    gate) by its timeout."""
    for reason in re.findall(r"completing \d+ jobs failed \((.*)\); completing", text):
        assert reason in ("query timeout", "canceling statement due to lock timeout"), text[-5000:]
    for job, reason in re.findall(r"job (\d+): completing failed: (.*?)(?:;| \(|$)", text, re.M):
        assert_eq((int(job) in (blocked, lead), reason), (True, "query timeout"),
                  "a failed completion of job %s" % job)


def jobs_completed(w):
    """Jobs w completed, from its drain summary: those it saw done, and those it found done
    after a statement's answer was lost (a timeout the statement outlived, then committed)."""
    m = re.search(r"drained: no job in flight \((\d+) done;.*\), (\d+) found done after a "
                  r"lost answer", w.text())
    assert m, "no drain summary in the worker's log:\n" + w.text()[-3000:]
    return int(m.group(1)) + int(m.group(2))


def stop_worker(w, jobs):
    assert_eq(w.stop(), 0, "worker exit code\n" + w.text()[-3000:])
    assert_eq(jobs_completed(w), jobs, "jobs the worker completed")


def test_others_complete_beside_a_blocked_statement():
    setup()
    insert_indicator("54.7.1.1")
    lock = Locker("54.7.1.1")
    w = None
    try:
        w = start_worker(600)
        [blocked] = insert_jobs(1, 1)
        wait_for("the blocked job's completing statement waiting on the lock",
                 blocked_statement_waits, w, 30)
        others = insert_jobs(2, OTHERS)
        wait_for("the other jobs done while the lock is held",
                 lambda: done_count(others) == OTHERS, w)
        assert_eq(job_status(blocked)[0], "running", "the blocked job while the lock is held")
        assert "completing others beside it" in w.text(), w.text()[-3000:]
    except BaseException:
        if w:
            w.stop()  # a worker left running would take the next test's jobs
        raise
    finally:
        lock.release()
    wait_for("the blocked job done once the lock is released",
             lambda: done_count([blocked]) == 1, w)
    assert_eq(job_status(blocked)[1], "1", "attempts of the blocked job (its first statement)")
    stop_worker(w, OTHERS + 1)
    n = STACK.sql_value("SELECT count(*) FROM indicators WHERE type = 'ip' AND (value LIKE "
                        "'54.7.2.%' OR value = '54.7.1.1') AND enrichment_results ? 'virustotal'")
    assert_eq(int(n), OTHERS + 1, "indicators with a VirusTotal result")


def test_a_stuck_statement_times_out_and_its_job_is_retried():
    setup()
    insert_indicator("54.7.3.1")
    lock = Locker("54.7.3.1")
    w = None
    try:
        w = start_worker(4)  # statements time out after 2 s
        [blocked] = insert_jobs(3, 1)
        others = insert_jobs(4, OTHERS)
        wait_for("the other jobs done while the lock is held",
                 lambda: done_count(others) == OTHERS, w)
        failed = "job %d: completing failed: query timeout" % blocked
        wait_for("the blocked job's statement timing out", lambda: failed in w.text(), w)
        # held for more than ENRICH_JOB_MAX_ATTEMPTS (5) statement timeouts, and several leases
        deadline = time.time() + 60
        while w.text().count(failed) < 6:
            assert_eq(job_status(blocked), ["running", "1"],
                      "the blocked job while the lock is held (status, attempts)")
            assert w.alive(), "worker exited:\n" + w.text()[-3000:]
            assert time.time() < deadline, "six timeouts not within 60 s:\n" + w.text()[-3000:]
            time.sleep(0.3)
        assert "released" not in w.text(), w.text()[-3000:]
    except BaseException:
        if w:
            w.stop()  # a worker left running would take the next test's jobs
        raise
    finally:
        lock.release()
    wait_for("the blocked job done once the lock is released",
             lambda: done_count([blocked]) == 1, w)
    assert_eq(job_status(blocked), ["done", "1"], "the blocked job (status, attempts)")
    only_lock_failures(w.text(), blocked)
    stop_worker(w, OTHERS + 1)


def test_a_blocked_job_claimed_last_keeps_every_lease():
    setup()
    insert_indicator("54.7.8.13")
    insert_indicator("54.7.9.1")
    lock = Locker("54.7.8.13")
    gate = Locker("54.7.9.1", "stall-gate")
    workers = []
    try:
        # 13 jobs, the last (highest id) blocked; then a lead job, claimed first and finished
        # first (its lookup is not slowed), whose statement waits on the gate: the 13 finish
        # meanwhile and go together in one statement, which locks their jobs' rows in id order
        # and then waits for the blocked job's indicator
        batch = insert_jobs(8, OTHERS + 1)
        others, blocked = batch[:-1], batch[-1]
        [lead] = insert_jobs(9, 1)
        # one worker claims them all (1.1 s statements, leases renewed every second); a second
        # one would take over any job whose lease lapsed
        workers = [start_worker(3, 32)]
        wait_for("the shared statement failing on the lock", lambda: re.search(
            r"completing %d jobs failed \(canceling statement due to lock timeout\)"
            % (OTHERS + 1), workers[0].text()), workers[0], 30)
        gate.release()
        workers.append(start_worker(3))
        both = Both(workers)
        wait_for("the other jobs done while the lock is held",
                 lambda: done_count(others + [lead]) == OTHERS + 1, both)
        held_until = time.time() + 10  # over three leases
        while time.time() < held_until:
            assert_eq(job_status(blocked), ["running", "1"],
                      "the blocked job while the lock is held (status, attempts)")
            assert both.alive(), "worker exited:\n" + both.text()[-3000:]
            time.sleep(0.3)
    except BaseException:
        for w in workers:
            w.stop()  # a worker left running would take the next test's jobs
        raise
    finally:
        gate.release()
        lock.release()
    wait_for("the blocked job done once the lock is released",
             lambda: done_count([blocked]) == 1, both)
    attempts = STACK.sql("SELECT id, attempts FROM enrichment_jobs WHERE id IN (%s) AND "
                         "attempts <> 1" % ",".join(str(i) for i in batch + [lead]))
    assert_eq(attempts, [], "jobs claimed more than once")
    only_lock_failures(both.text(), blocked, lead)
    text = both.text()
    assert "completing them in halves" in text, text[-5000:]
    # 13 -> 7 -> 4 -> 2 -> the blocked job alone: a failed statement per halving
    failed = len(re.findall(r"completing \d+ jobs failed", text))
    assert failed <= 6, "%d failed statements of several jobs:\n%s" % (failed, text[-5000:])
    done = 0
    for w in workers:
        assert_eq(w.stop(), 0, "worker exit code\n" + w.text()[-3000:])
        done += jobs_completed(w)
    assert_eq(done, OTHERS + 2, "jobs the workers completed")


class Both:
    """Two workers seen as one by wait_for()."""

    def __init__(self, workers):
        self.workers = workers

    def alive(self):
        return all(w.alive() for w in self.workers)

    def text(self):
        return "\n".join(w.text() for w in self.workers)


if __name__ == "__main__":
    main(globals(), STANDIN)
