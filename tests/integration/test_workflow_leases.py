"""Workflow runs as leased jobs: committed by the intake, sent to a runner over ZeroMQ under a
lease held by the workflowd process that took them, never lost when a runner or a workflowd dies.

Real intake, workflowd(s), runner(s), real PostgreSQL. Failures are made with kill -9 at chosen
moments; short timeouts (WORKFLOW_RUN_GRACE_SECONDS=3, its minimum) keep the test fast. Checks: a run with
no runner connected stays queued and runs once a runner appears (the attempt is not counted);
a runner killed mid-run → the run is given back and completes on the next runner (attempt 2);
a workflowd killed mid-run → its lease expires and another workflowd takes the run over; a
workflowd stopped with SIGTERM records its runs before it exits; the attempt
limit fails a run that keeps losing its runner; a late outcome from a lost lease changes
nothing; more runs than free slots all complete through the sweep; two runners share the load.
"""
import signal
import time

import harness
from harness import Stack, assert_eq, free_port, run_tests

SLEEPY = ("import asyncio\nfrom calseta.workflows import WorkflowResult\n"
          "async def run(ctx):\n    await asyncio.sleep(%s)\n"
          "    return WorkflowResult.ok('slept', {'v': ctx.indicator.value})\n")
ENV = {"WORKFLOW_RUN_GRACE_SECONDS": 3}


def setup(s):
    k = s.create_key("admin")
    s.sql("INSERT INTO indicators (type, value, first_seen, last_seen, malice) VALUES "
          "('ip', '198.51.100.7', now(), now(), 'Pending') ON CONFLICT DO NOTHING")
    return k


def create(s, k, code, timeout=4, name="wf"):
    r = s.request("POST", "/v1/workflows", key=k, body={
        "name": name, "code": code, "state": "active", "approval_mode": "never",
        "timeout_seconds": timeout, "indicator_types": ["ip"]})
    assert_eq(r.status, 201, r.body)
    return r.json()["data"]["uuid"]


def execute(s, k, u, port=None):
    r = s.request("POST", "/v1/workflows/%s/execute" % u, key=k, port=port,
                  body={"indicator_type": "ip", "indicator_value": "198.51.100.7"})
    assert_eq(r.status, 202, r.body)
    return r.json()["data"]["run_uuid"]


def row(s, run):
    v = s.sql_value("SELECT status || '|' || attempt_count || '|' || coalesce(lease_owner, '') "
                    "FROM workflow_runs WHERE uuid = '%s'" % run)
    st, attempts, owner = v.split("|", 2)
    return st, int(attempts), owner


def tcp_established(port):
    """An established loopback TCP connection to port (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if int(parts[1].split(":")[1], 16) == port and parts[3] == "01":
                return True
    return False


def start_runner(s, extra=None):
    """Starts a runner and waits until it listens (it exits at once on a setup error)."""
    p = s.start("runner", extra)

    def listening():
        assert p.alive(), "runner exited:\n" + p.text()[-3000:]
        return "listening on" in p.text()
    harness.wait_for(listening, 30, 0.05, "the runner listening")
    return p


def wait_for(s, run, pred, timeout=40, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = row(s, run)
        if pred(r):
            return r
        time.sleep(0.1)
    raise AssertionError("run %s: %s not reached (last %r)\n%s" % (run, what, row(s, run), s.logs()))


def finished(r):
    return r[0] not in ("queued", "running")


def result(s, run):
    return s.sql_value("SELECT result->>'message' FROM workflow_runs WHERE uuid = '%s'" % run)


def runner_proc(s):
    return [p for p in s.procs if p.name == "runner" and p.alive()]


def workflowd_logs(s):
    return "".join(p.text() for p in s.procs if p.name == "workflowd")


def create_when_runner_up(s, k, code, timeout=4, name="wf"):
    """create(), once a runner is connected to validate the code (503 until then)."""
    body = {"name": name, "code": code, "state": "active", "approval_mode": "never",
            "timeout_seconds": timeout, "indicator_types": ["ip"]}
    deadline = time.time() + 20
    while True:
        r = s.request("POST", "/v1/workflows", key=k, body=body)
        if r.status != 503 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert_eq(r.status, 201, r.body)
    return r.json()["data"]["uuid"]


def patch_when_runner_up(s, k, u, body):
    deadline = time.time() + 20
    while True:
        r = s.request("PATCH", "/v1/workflows/" + u, key=k, body=body)
        if r.status != 503 or time.time() > deadline:
            return r
        time.sleep(0.1)


def wait_log(s, text, timeout=20):
    deadline = time.time() + timeout
    while text not in workflowd_logs(s):
        if time.time() > deadline:
            raise AssertionError("%r not logged by workflowd\n%s" % (text, s.logs()))
        time.sleep(0.05)


def test_no_runner_then_runner_arrives():
    s = Stack("lease_norunner", services=("auditd", "workflowd", "intake"), env=ENV)
    try:
        k = setup(s)
        # validation needs a runner: start one for the save, then stop it
        r = start_runner(s)
        u = create_when_runner_up(s, k, SLEEPY % 0)
        r.stop()
        run = execute(s, k, u)
        # taken, found no runner connected, given back uncounted; the sweep pauses meanwhile
        deadline = time.time() + 8
        seen = set()
        while time.time() < deadline:
            st, attempts, owner = row(s, run)
            assert st in ("queued", "running") and attempts <= 1, (st, attempts)
            seen.add((st, attempts))
            time.sleep(0.1)
        assert ("queued", 0) in seen, seen
        logs = workflowd_logs(s)
        assert "no runner connected" in logs, logs[-3000:]
        s.start("runner")
        st, attempts, _ = wait_for(s, run, finished, what="finished")
        assert_eq((st, attempts), ("success", 1))
    finally:
        s.stop()


def test_runner_killed_mid_run():
    s = Stack("lease_runnerkill", services=("auditd", "runner", "intake"), env=ENV)
    try:
        k = setup(s)
        u = create(s, k, SLEEPY % 2, timeout=4)
        run = execute(s, k, u)
        wait_for(s, run, lambda r: r[0] == "running", what="running")
        time.sleep(0.5)  # the kill must land while the child is asleep inside the runner
        runner_proc(s)[0].stop(signal.SIGKILL)
        s.start("runner")
        st, attempts, _ = wait_for(s, run, finished, what="finished")
        assert_eq((st, attempts), ("success", 2), result(s, run))
        out = s.sql_value("SELECT result::text FROM workflow_runs WHERE uuid = '%s'" % run)
        assert '"v": "198.51.100.7"' in out, out
        ev = s.sql_value("SELECT count(*) FROM activity_events WHERE event_type = "
                         "'workflow_executed' AND \"references\"->>'run_uuid' = '%s'" % run)
        assert_eq(ev, "1")  # one outcome recorded, once
        logs = workflowd_logs(s)
        assert "workflow_run_released" in logs, logs[-3000:]
    finally:
        s.stop()


def test_attempt_limit():
    s = Stack("lease_limit", services=("auditd", "runner", "intake"),
              env=dict(ENV, WORKFLOW_RUN_MAX_ATTEMPTS=1))
    try:
        k = setup(s)
        u = create(s, k, SLEEPY % 3, timeout=4)
        run = execute(s, k, u)
        wait_for(s, run, lambda r: r[0] == "running", what="running")
        runner_proc(s)[0].stop(signal.SIGKILL)
        s.start("runner")
        st, attempts, _ = wait_for(s, run, finished, what="finished")
        assert_eq(st, "failed")
        assert "not retried again" in result(s, run), result(s, run)
        # the runner that replaced the dead one serves the next run normally
        ok = create(s, k, SLEEPY % 0, name="quick")
        st, attempts, _ = wait_for(s, execute(s, k, ok), finished, what="finished")
        assert_eq((st, attempts), ("success", 1))
    finally:
        s.stop()


def test_workflowd_killed_mid_run():
    s = Stack("lease_wfdkill", services=("auditd", "runner", "intake"), env=ENV)
    try:
        k = setup(s)
        u = create(s, k, SLEEPY % 2, timeout=3)
        run = execute(s, k, u)
        _, _, owner1 = wait_for(s, run, lambda r: r[0] == "running", what="running")
        s.proc("workflowd").stop(signal.SIGKILL)
        s.start("workflowd")
        # lease = timeout 3 s + grace 3 s from the claim; then the new workflowd's sweep takes it
        st, attempts, _ = wait_for(s, run, finished, what="finished")
        assert_eq((st, attempts), ("success", 2), result(s, run))
        owners = s.sql_value("SELECT count(DISTINCT \"references\"->>'run_uuid') FROM "
                             "activity_events WHERE event_type = 'workflow_executed'")
        assert_eq(owners, "1")
        assert owner1.startswith("workflowd:"), owner1
    finally:
        s.stop()


def test_busy_runner_never_runs_a_run_twice():
    # one worker, three 1.5 s runs sent at once: the runner answers BUSY to what it cannot start
    # (never queues it behind its worker), workflowd gives those back uncounted and takes them
    # again; every run executes exactly once, with attempt 1
    s = Stack("lease_busy", services=("auditd", "workflowd", "intake"),
              env=dict(ENV, WORKFLOW_MAX_INFLIGHT=4))
    try:
        k = setup(s)
        runner = start_runner(s, {"RUNNER_CONCURRENCY": 1})
        u = create_when_runner_up(s, k, SLEEPY % 1.5, timeout=3)
        runs = [execute(s, k, u) for _ in range(3)]
        for run in runs:
            st, attempts, _ = wait_for(s, run, finished, what="finished")
            assert_eq((st, attempts), ("success", 1), result(s, run))
        assert_eq(runner.text().count("finished: success"), 3)
        assert "not started" in workflowd_logs(s)
    finally:
        s.stop()


def test_a_run_executes_the_version_it_was_queued_with():
    s = Stack("lease_version", services=("auditd", "workflowd", "intake"), env=ENV)
    try:
        k = setup(s)
        r = start_runner(s)
        v1 = ("from calseta.workflows import WorkflowResult\n"
              "async def run(ctx):\n    return WorkflowResult.ok('code v1')\n")
        u = create_when_runner_up(s, k, v1)
        r.stop()
        run = execute(s, k, u)  # queued: no runner
        wait_log(s, "no runner connected")  # the run sits queued with no runner: the point
        start_runner(s)
        resp = patch_when_runner_up(s, k, u, {"code": v1.replace("v1", "v2")})
        assert_eq(resp.status, 200, resp.body)
        wait_for(s, run, finished, what="finished")
        assert_eq(result(s, run), "code v1")
        run2 = execute(s, k, u)
        wait_for(s, run2, finished, what="finished")
        assert_eq(result(s, run2), "code v2")
    finally:
        s.stop()


def test_workflowd_drain_waits_for_its_runs():
    s = Stack("lease_drain", services=("auditd", "runner", "intake"), env=ENV)
    try:
        k = setup(s)
        u = create(s, k, SLEEPY % 2, timeout=4)
        run = execute(s, k, u)
        wait_for(s, run, lambda r: r[0] == "running", what="running")
        t0 = time.time()
        wfd = s.proc("workflowd")
        rc = wfd.stop(signal.SIGTERM)
        assert_eq(rc, 0)
        st, attempts, owner = row(s, run)
        assert_eq((st, attempts, owner), ("success", 1, ""))  # recorded before it exited
        assert time.time() - t0 < 10, time.time() - t0
        assert "waiting for 1 workflow run" in wfd.text(), wfd.text()[-2000:]
    finally:
        s.stop()


def test_late_outcome_of_a_lost_lease_changes_nothing():
    s = Stack("lease_late", services=("auditd", "runner", "intake"), env=ENV)
    try:
        k = setup(s)
        u = create(s, k, SLEEPY % 0)
        run = execute(s, k, u)
        wait_for(s, run, finished, what="finished")
        before = s.sql_value("SELECT result::text || status FROM workflow_runs WHERE uuid = '%s'" % run)
        for owner, attempt in (("workflowd:other:1:00000000", 1), ("", 1), ("x", 99)):
            v = s.sql_value("SELECT calseta_workflow_run_finish('%s', '%s', %d, 'failed', "
                            "'{\"success\": false}', 'late', 1) IS NULL" % (run, owner, attempt))
            assert_eq(v, "t")
        after = s.sql_value("SELECT result::text || status FROM workflow_runs WHERE uuid = '%s'" % run)
        assert_eq(after, before)
        # a release by someone who does not hold the lease changes nothing either
        v = s.sql_value("SELECT calseta_workflow_run_release('%s', 'x', 1, true)" % run)
        assert_eq(v, "f")
        # a queued run is taken by exactly one of two concurrent claimers
        s.sql("UPDATE workflow_runs SET status = 'queued' WHERE uuid = '%s'" % run)
        s.sql("UPDATE workflow_runs SET status = 'running', lease_owner = 'a', "
              "lease_expires_at = now() + interval '1 hour' WHERE uuid = '%s'" % run)
        v = s.sql_value("SELECT calseta_workflow_run_claim('%s', 'b', 2, 3) IS NULL" % run)
        assert_eq(v, "t")  # an unexpired lease is not taken over
    finally:
        s.stop()


def test_more_runs_than_slots_and_two_runners():
    s = Stack("lease_many", services=("auditd", "runner", "intake"),
              env=dict(ENV, WORKFLOW_MAX_INFLIGHT=2))
    try:
        k = setup(s)
        # a second runner on its own endpoint (TCP, so CURVE); workflowd connects to both
        ep2 = "tcp://127.0.0.1:%d" % free_port()
        s.start("runner", {"RUNNER_ENDPOINT": ep2})
        both = s.endpoint("runner") + "," + ep2
        s.proc("workflowd").stop()
        s.start("workflowd", {"RUNNER_ENDPOINT": both})
        # workflowd's TCP connection to the second runner is up (its CURVE handshake follows
        # within milliseconds); runs sent before that would all go to the first runner
        port2 = int(ep2.rsplit(":", 1)[1])
        harness.wait_for(lambda: tcp_established(port2), 20, 0.05, "workflowd connected to runner 2")
        u = create(s, k, SLEEPY % 0.2)
        runs = [execute(s, k, u) for _ in range(12)]
        for run in runs:
            st, attempts, _ = wait_for(s, run, finished, what="finished")
            assert_eq((st, attempts), ("success", 1))
        served = [p.text().count("finished: success") for p in s.procs if p.name == "runner"]
        assert_eq(sum(served), 12)
        assert min(served) > 0, served  # both runners took runs
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
