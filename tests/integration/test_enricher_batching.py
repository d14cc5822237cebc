"""test_enricher_batching.py - jobs that finish together are completed together: a worker sends
one completing statement at a time, and the jobs that finish while it runs go into the next one.

A stand-in provider (a thread of this process, loopback only) answers every lookup after 300 ms.
One worker claims 24 jobs of one indicator each at once, so their lookups leave together and
their answers come back within a few milliseconds of each other. When the worker is stopped it
logs the jobs it claimed and completed and the statements that carried them: every job is
completed exactly once (24 done, 24 carried), and the 24 are carried by at most 12 statements
(one per job would be the worker completing each job on its own, at about half as much again of
PostgreSQL's CPU per lookup). Every indicator has its result.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enricher_stack import insert_jobs, main, start_workers, virustotal_stack  # noqa: E402
from harness import assert_eq, fernet_key  # noqa: E402
from standin import StandIn, virustotal  # noqa: E402


JOBS = 24
KEY = fernet_key()
VT_KEY = "vt-batching-secret-41d8"

STANDIN = StandIn(virustotal(VT_KEY), delay=0.3)
STACK = None


def setup():
    global STACK
    if STACK:
        return
    STACK = virustotal_stack("enrichbatch", STANDIN, KEY, VT_KEY, {
        "ENRICHER_CONCURRENCY": str(JOBS),
        "ENRICHER_DB_CONNECTIONS": "8",
    })


def test_jobs_finishing_together_share_statements():
    setup()
    w, = start_workers(STACK, 1)
    # one distinct IP each, so every job makes one lookup
    ids = insert_jobs(STACK, "batch", JOBS, "54.1.2.%s", first=1, octet=4)
    span = "id BETWEEN %d AND %d" % (min(ids), max(ids))
    deadline = time.time() + 60
    while int(STACK.sql_value("SELECT count(*) FROM enrichment_jobs WHERE status = 'done' AND "
                              + span)) < JOBS:
        assert w.alive(), "worker exited:\n" + w.text()[-3000:]
        assert time.time() < deadline, "jobs not done:\n" + STACK.logs()[-5000:]
        time.sleep(0.1)
    assert_eq(w.stop(), 0, "worker exit code\n" + w.text()[-3000:])
    log = w.text()
    m = re.search(r"drained: no job in flight \((\d+) done; (\d+) jobs claimed by (\d+) claims, "
                  r"(\d+) completed by (\d+) statements\)", log)
    assert m, "no drain summary in the worker's log:\n" + log[-3000:]
    done, claimed, claims, carried, statements = (int(x) for x in m.groups())
    print("  %d jobs done: %d claimed by %d claims, %d completed by %d statements"
          % (done, claimed, claims, carried, statements))
    assert_eq(done, JOBS, "jobs done")
    assert_eq(claimed, JOBS, "jobs claimed")
    assert_eq(carried, JOBS, "jobs carried by completing statements (each once)")
    assert statements <= JOBS // 2, (
        "%d statements for %d jobs that finished together" % (statements, JOBS))
    with STANDIN.lock:
        assert_eq(len(STANDIN.requests), JOBS, "provider requests")
    n = STACK.sql_value("SELECT count(*) FROM indicators WHERE type = 'ip' AND value LIKE "
                        "'54.1.2.%' AND enrichment_results ? 'virustotal'")
    assert_eq(int(n), JOBS, "indicators with a VirusTotal result")


if __name__ == "__main__":
    main(globals(), STANDIN)
