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
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, assert_eq, fernet_encrypt, fernet_key, run_tests  # noqa: E402
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
    STACK = Stack("enrichbatch", services=(), env={
        "ENCRYPTION_KEY": KEY,
        "ENRICHER_ALLOW_LOOPBACK": "true",
        "ENRICHER_POLL_INTERVAL_MS": "100",
        "ENRICHER_CONCURRENCY": str(JOBS),
        "ENRICHER_DB_CONNECTIONS": "8",
        "ENRICH_JOB_DEADLINE_SECONDS": "90",
        "LOG_LEVEL": "INFO",
    })
    STACK.sql("UPDATE enrichment_providers SET http_config = replace(http_config::text, "
              "'https://www.virustotal.com', '%s')::jsonb" % (STANDIN.url + "/vt"))
    STACK.sql("UPDATE enrichment_providers SET http_config = http_config || "
              "'{\"rate_limit_per_second\": 1000, \"max_concurrency\": 50}'::jsonb "
              "WHERE provider_name = 'virustotal'")
    tok = fernet_encrypt(KEY, json.dumps({"api_key": VT_KEY}).encode())
    STACK.sql("UPDATE enrichment_providers SET auth_config = '%s'::jsonb WHERE provider_name = "
              "'virustotal'" % json.dumps({"_encrypted": tok}))
    STACK.sql("UPDATE enrichment_providers SET is_active = (provider_name = 'virustotal')")


def insert_jobs():
    """JOBS alerts with one distinct IP each, and their jobs, in one transaction."""
    rows = STACK.sql(
        "WITH a AS (INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload) "
        "SELECT 'batch ' || g, 'High', 'generic', now(), '{}'::jsonb "
        "FROM generate_series(1, %(jobs)d) g RETURNING id, title), "
        "i AS (INSERT INTO indicators (type, value, first_seen, last_seen) "
        "SELECT 'ip', format('54.1.2.%%s', g), now(), now() FROM generate_series(1, %(jobs)d) g "
        "ON CONFLICT (type, value) DO UPDATE SET last_seen = now() RETURNING id, value), "
        "l AS (INSERT INTO alert_indicators (alert_id, indicator_id) SELECT a.id, i.id FROM a "
        "JOIN i ON split_part(i.value, '.', 4) = split_part(a.title, ' ', 2)) "
        "INSERT INTO enrichment_jobs (alert_id) SELECT id FROM a RETURNING id"
        % {"jobs": JOBS})
    assert_eq(len(rows), JOBS, "jobs inserted")
    return [int(r[0]) for r in rows]


def test_jobs_finishing_together_share_statements():
    setup()
    w = STACK.start("enricher")
    deadline = time.time() + 20
    while "providers loaded" not in w.text():
        assert w.alive(), "worker exited:\n" + w.text()[-3000:]
        assert time.time() < deadline, "worker did not load providers:\n" + STACK.logs()
        time.sleep(0.05)
    ids = insert_jobs()
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
    try:
        run_tests(globals())
    finally:
        if STACK:
            STACK.stop()
        STANDIN.close()
