"""enricher_stack.py - the setup the enrichment worker tests share: a stack with no services
whose only active provider is VirusTotal, pointed at a stand-in on loopback, plus alerts and jobs
made in bulk and the runner that stops the stack and the stand-ins whatever the outcome.

Each test keeps its own settings (worker environment, the provider's rate and concurrency, the
stand-in's delay) in its file; what is here is what they all do the same way.
"""
import json
import time

from harness import Stack, assert_eq, fernet_encrypt, run_tests

# What every enricher test wants of its workers: providers on loopback allowed (the stand-in),
# a short poll so a test need not wait for a sweep, and a job deadline far above any wait here.
WORKER_ENV = {
    "ENRICHER_ALLOW_LOOPBACK": "true",
    "ENRICHER_POLL_INTERVAL_MS": "100",
    "ENRICH_JOB_DEADLINE_SECONDS": "90",
    "LOG_LEVEL": "INFO",
}


def virustotal_stack(name, standin, key, vt_key, env, rate=1000, concurrency=50):
    """A Stack with no services, its workers' environment WORKER_ENV with ENCRYPTION_KEY=key and
    env on top; VirusTotal (reached at standin's /vt, with vt_key stored encrypted under key, at
    most rate requests a second and concurrency at once) is the only active provider."""
    stack = Stack(name, services=(), env=dict(WORKER_ENV, ENCRYPTION_KEY=key, **env))
    stack.sql("UPDATE enrichment_providers SET http_config = replace(http_config::text, "
              "'https://www.virustotal.com', '%s')::jsonb" % (standin.url + "/vt"))
    stack.sql("UPDATE enrichment_providers SET http_config = http_config || "
              "'{\"rate_limit_per_second\": %d, \"max_concurrency\": %d}'::jsonb "
              "WHERE provider_name = 'virustotal'" % (rate, concurrency))
    tok = fernet_encrypt(key, json.dumps({"api_key": vt_key}).encode())
    stack.sql("UPDATE enrichment_providers SET auth_config = '%s'::jsonb WHERE provider_name = "
              "'virustotal'" % json.dumps({"_encrypted": tok}))
    stack.sql("UPDATE enrichment_providers SET is_active = (provider_name = 'virustotal')")
    return stack


def insert_jobs(stack, label, jobs, ip, per_job=1, first=0, octet=2):
    """jobs alerts titled '<label> <g>' for g from first on, each linked to per_job IPs made by
    format(ip, g, k) for k from 0 (the octet-th part of each IP is its alert's g), and one job
    each, in one statement (all the load at once); returns the job ids."""
    rows = stack.sql(
        "WITH a AS (INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload) "
        "SELECT '%(label)s ' || g, 'High', 'generic', now(), '{}'::jsonb "
        "FROM generate_series(%(first)d, %(first)d + %(jobs)d - 1) g RETURNING id, title), "
        "i AS (INSERT INTO indicators (type, value, first_seen, last_seen) "
        "SELECT 'ip', format('%(ip)s', g, k), now(), now() "
        "FROM generate_series(%(first)d, %(first)d + %(jobs)d - 1) g, "
        "generate_series(0, %(per)d - 1) k "
        "ON CONFLICT (type, value) DO UPDATE SET last_seen = now() RETURNING id, value), "
        "l AS (INSERT INTO alert_indicators (alert_id, indicator_id) SELECT a.id, i.id FROM a "
        "JOIN i ON split_part(i.value, '.', %(octet)d) = split_part(a.title, ' ', 2)) "
        "INSERT INTO enrichment_jobs (alert_id) SELECT id FROM a RETURNING id"
        % {"label": label, "jobs": jobs, "ip": ip, "per": per_job,
           "first": first, "octet": octet})
    assert_eq(len(rows), jobs, "jobs inserted")
    return [int(r[0]) for r in rows]


def start_workers(stack, n, env=None, timeout=20):
    """n enrichment workers, returned once each has loaded its providers."""
    workers = [stack.start("enricher", env or {}) for _ in range(n)]
    deadline = time.time() + timeout
    while not all("providers loaded" in w.text() for w in workers):
        for w in workers:
            assert w.alive(), "worker exited:\n" + w.text()[-3000:]
        assert time.time() < deadline, "workers did not load providers:\n" + stack.logs()
        time.sleep(0.05)
    return workers


def main(module_globals, *standins):
    """Runs the module's tests, then stops its STACK (made lazily, so looked up at the end) and
    closes the stand-ins, whether the tests passed or not."""
    try:
        run_tests(module_globals)
    finally:
        if module_globals.get("STACK"):
            module_globals["STACK"].stop()
        for s in standins:
            s.close()
