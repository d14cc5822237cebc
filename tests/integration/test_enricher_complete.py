"""test_enricher_complete.py - the statements that complete enrichment jobs, against real
PostgreSQL, without the worker: several jobs in one calseta_enrich_complete_batch() call, the
outcome of each (done, lease_lost, gone), what a second completion changes (nothing), and two
sessions completing jobs that share indicators while a third holds a lock between their steps:
an ordering that deadlocked when new indicators were locked in (type, value) order by their
upsert and then all of them in id order (PostgreSQL aborted one completion). Also the lease
renewals: the periodic one skips held rows, the one before a retry counts from the row.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, assert_eq, run_tests, wait_for  # noqa: E402

STACK = None


def stack():
    global STACK
    if STACK is None:
        STACK = Stack("enrich_complete", services=())
    return STACK


def new_alert(s, title):
    return s.sql_value("INSERT INTO alerts (title, source_name, occurred_at) "
                       "VALUES ('%s', 'generic', now()) RETURNING id" % title)


def new_job(s, alert, owner):
    """A job of alert, running under owner's lease."""
    return s.sql_value("INSERT INTO enrichment_jobs (alert_id, status, attempts, lease_owner, "
                       "lease_expires_at) VALUES (%s, 'running', 1, '%s', now() + interval '5 min') "
                       "RETURNING id" % (alert, owner))


def result(provider, malicious):
    return {"provider_name": provider, "success": True, "status": "success",
            "extracted": {"malice": "Malicious" if malicious else "Benign", "score": malicious},
            "enriched_at": "2026-01-01T00:00:00Z"}


def sql_json(s, q):
    return json.loads(s.sql_value(q))


def test_batch_outcomes_and_second_completion():
    s = stack()
    a1, a2, a3 = new_alert(s, "b1"), new_alert(s, "b2"), new_alert(s, "b3")
    s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) VALUES "
          "('ip', '203.0.113.10', now() - interval '2 days', now() - interval '2 days')")
    s.sql("INSERT INTO alert_indicators (alert_id, indicator_id) SELECT %s, id FROM indicators "
          "WHERE value = '203.0.113.10'" % a1)
    j1, j2 = new_job(s, a1, "w1"), new_job(s, a2, "w1")
    j3 = new_job(s, a3, "w2")  # another worker's lease
    j4 = new_job(s, a3, "w1")
    s.sql("DELETE FROM enrichment_jobs WHERE id = %s" % j4)  # gone
    shared = {"type": "domain", "value": "shared.example.org", "new": True}
    doc = {"jobs": [
        {"id": int(j1), "indicators": [
            {"type": "ip", "value": "203.0.113.10", "new": False, "malice": "Benign",
             "results": {"virustotal": result("virustotal", 0)}, "ttl": {"virustotal": 600}},
            dict(shared, malice="Benign", results={"virustotal": result("virustotal", 0)})],
         "summary": {"indicator_count": 2}},
        {"id": int(j2), "indicators": [
            dict(shared, malice="Malicious", results={"abuseipdb": result("abuseipdb", 7)},
                 ttl={"abuseipdb": 300})],
         "summary": {"indicator_count": 1}},
        {"id": int(j3), "indicators": [], "summary": {}},
        {"id": int(j4), "indicators": [], "summary": {}}]}
    text = json.dumps(doc).replace("'", "''")
    rows = s.sql("SELECT job_id, outcome FROM calseta_enrich_complete_batch('w1', '%s') "
                 "ORDER BY job_id" % text)
    assert_eq(rows, [[j1, "done"], [j2, "done"], [j3, "lease_lost"], [j4, "gone"]])

    # the shared new indicator: stored once, linked to both alerts, results of both jobs merged,
    # the verdict of the later job
    ind = sql_json(s, "SELECT row_to_json(i) FROM indicators i WHERE value = 'shared.example.org'")
    assert_eq(sorted(ind["enrichment_results"]), ["abuseipdb", "virustotal"])
    assert_eq((ind["malice"], ind["is_enriched"]), ("Malicious", True))
    assert_eq(s.sql("SELECT alert_id FROM alert_indicators ai JOIN indicators i ON i.id = ai.indicator_id "
                    "WHERE i.value = 'shared.example.org' ORDER BY 1"), [[a1], [a2]])
    # the linked indicator's last_seen is not moved by a job it was not new in
    assert_eq(s.sql_value("SELECT last_seen < now() - interval '1 day' FROM indicators "
                          "WHERE value = '203.0.113.10'"), "t")
    assert_eq(s.sql("SELECT id, enrichment_status, is_enriched, enriched_at IS NOT NULL FROM alerts "
                    "WHERE id IN (%s, %s, %s) ORDER BY id" % (a1, a2, a3)),
              [[a1, "Enriched", "t", "t"], [a2, "Enriched", "t", "t"], [a3, "Pending", "f", "f"]])
    assert_eq(s.sql("SELECT alert_id, \"references\"->>'indicator_count' FROM activity_events "
                    "WHERE event_type = 'alert_enrichment_completed' AND alert_id IN (%s, %s, %s) "
                    "ORDER BY alert_id" % (a1, a2, a3)), [[a1, "2"], [a2, "1"]])
    assert_eq(s.sql("SELECT provider_name, indicator_value, result->'extracted'->>'score', "
                    "extract(epoch FROM expires_at - now()) BETWEEN 250 AND 300 "
                    "OR extract(epoch FROM expires_at - now()) BETWEEN 550 AND 600 "
                    "FROM enrichment_cache_results ORDER BY 1, 2"),
              [["abuseipdb", "shared.example.org", "7", "t"], ["virustotal", "203.0.113.10", "0", "t"]])
    assert_eq(s.sql("SELECT id, status, lease_owner FROM enrichment_jobs WHERE id IN (%s, %s, %s) "
                    "ORDER BY id" % (j1, j2, j3)),
              [[j1, "done", ""], [j2, "done", ""], [j3, "running", "w2"]])

    # completing the same jobs again changes nothing
    snap = ("SELECT string_agg(t || ':' || x, ',' ORDER BY t, x) FROM ("
            "SELECT 'i' t, xmin::text x FROM indicators UNION ALL "
            "SELECT 'a', xmin::text FROM alerts UNION ALL "
            "SELECT 'j', xmin::text FROM enrichment_jobs UNION ALL "
            "SELECT 'e', count(*)::text FROM activity_events) s")
    before = s.sql_value(snap)
    rows = s.sql("SELECT job_id, outcome FROM calseta_enrich_complete_batch('w1', '%s') "
                 "ORDER BY job_id" % text)
    assert_eq([r[1] for r in rows], ["lease_lost", "lease_lost", "lease_lost", "gone"])
    assert_eq(s.sql_value(snap), before)

    # a new job of an alert with the same answers: the job is done, no row is rewritten
    j5 = new_job(s, a2, "w1")
    before = s.sql_value(snap.replace("SELECT 'j', xmin::text FROM enrichment_jobs UNION ALL ", ""))
    one = dict(doc["jobs"][1])
    del one["id"]
    assert_eq(s.sql_value("SELECT calseta_enrich_complete(%s, 'w1', '%s')"
                          % (j5, json.dumps(one).replace("'", "''"))), "done")
    assert_eq(s.sql_value(snap.replace("SELECT 'j', xmin::text FROM enrichment_jobs UNION ALL ", "")),
              before)


def test_single_job_older_document():
    """calseta_enrich_complete(job, owner, doc) with the older "cache" array, both forms."""
    s = stack()
    a = new_alert(s, "older")
    j = new_job(s, a, "w9")
    doc = {"indicators": [
        {"type": "domain", "value": "older-%s.example.net" % a, "new": True, "malice": "Benign",
         "results": {"virustotal": result("virustotal", 0), "abuseipdb": result("abuseipdb", 1)}},
        {"type": "domain", "value": "other-%s.example.net" % a, "new": True, "malice": "Benign",
         "results": {"virustotal": result("virustotal", 2)}}],
        "cache": [{"provider": "virustotal", "i": 0, "ttl": 100},
                  {"provider": "virustotal", "type": "domain", "value": "other-%s.example.net" % a,
                   "ttl": 200, "result": result("virustotal", 2)}],
        "summary": {"indicator_count": 2}}
    assert_eq(s.sql_value("SELECT calseta_enrich_complete(%s, 'w9', '%s')"
                          % (j, json.dumps(doc).replace("'", "''"))), "done")
    assert_eq(s.sql("SELECT provider_name, indicator_value, result->'extracted'->>'score', "
                    "ceil(extract(epoch FROM expires_at - now()) / 100) FROM enrichment_cache_results "
                    "WHERE indicator_value LIKE '%%-%s.example.net' ORDER BY 2, 1" % a),
              [["virustotal", "older-%s.example.net" % a, "0", "1"],
               ["virustotal", "other-%s.example.net" % a, "2", "2"]])
    assert_eq(s.sql_value("SELECT count(*) FROM alert_indicators WHERE alert_id = %s" % a), "2")
    assert_eq(s.sql_value("SELECT calseta_enrich_complete(%s, 'w9', '%s')"
                          % (j, json.dumps(doc).replace("'", "''"))), "lease_lost")
    assert_eq(s.sql_value("SELECT calseta_enrich_complete(0, 'w9', '{}')"), "gone")


def test_shared_cache_result_stored_once():
    """A worker's cache entry holds the key and expiry only; its result is the indicator's. It
    is served while that result is a success and becomes a miss once a failure is stored over
    it; an entry with its own result (the intake's) is served as it is."""
    s = stack()
    a = new_alert(s, "once")
    value = "once-%s.example.net" % a
    j = new_job(s, a, "w7")
    doc = {"jobs": [{"id": int(j), "summary": {"indicator_count": 1}, "indicators": [
        {"type": "domain", "value": value, "new": True, "malice": "Malicious",
         "results": {"virustotal": result("virustotal", 3), "abuseipdb": result("abuseipdb", 4)},
         "ttl": {"virustotal": 300}}]}]}
    text = json.dumps(doc).replace("'", "''")
    assert_eq(s.sql("SELECT outcome FROM calseta_enrich_complete_batch('w7', '%s')" % text),
              [["done"]])
    # one row, no copy of the result
    assert_eq(s.sql("SELECT provider_name, result IS NULL FROM enrichment_cache "
                    "WHERE indicator_value = '%s'" % value), [["virustotal", "t"]])
    keys = json.dumps([["virustotal", "domain", value], ["abuseipdb", "domain", value]])
    got = s.sql("SELECT k, result->'extracted'->>'score', ttl_left BETWEEN 250 AND 300 "
                "FROM calseta_enrich_cache_get_many('%s') ORDER BY k" % keys)
    assert_eq(got, [["1", "3", "t"]])
    # the intake's reader sees it too
    assert_eq(s.sql_value("SELECT result->'extracted'->>'score' FROM enrichment_cache_results "
                          "WHERE provider_name = 'virustotal' AND indicator_value = '%s'" % value), "3")

    # a later job stores a failure for the provider: the entry is a miss from then on
    j2 = new_job(s, a, "w7")
    failed = {"provider_name": "virustotal", "success": False, "status": "failed",
              "error_message": "HTTP 500", "enriched_at": "2026-01-01T00:00:01Z"}
    doc["jobs"][0].update(id=int(j2))
    doc["jobs"][0]["indicators"][0].update(results={"virustotal": failed}, ttl={})
    text = json.dumps(doc).replace("'", "''")
    assert_eq(s.sql("SELECT outcome FROM calseta_enrich_complete_batch('w7', '%s')" % text),
              [["done"]])
    assert_eq(s.sql("SELECT k FROM calseta_enrich_cache_get_many('%s')" % keys), [])

    # an entry written with its result (on-demand lookups) is served as written
    s.sql("UPDATE enrichment_cache SET result = '{\"success\": true, \"status\": \"success\", "
          "\"extracted\": {\"score\": 9}}' WHERE indicator_value = '%s'" % value)
    assert_eq(s.sql("SELECT k, result->'extracted'->>'score' FROM calseta_enrich_cache_get_many('%s')"
                    % keys), [["1", "9"]])


def test_older_result_never_replaces_a_newer_one():
    """A job completed with a result looked up before the one stored (a worker's in-process
    cache) keeps the stored, newer result, in the indicator and so in the shared cache; a newer
    result still replaces it."""
    s = stack()
    a = new_alert(s, "forward")
    value = "forward-%s.example.net" % a

    def complete(score, at, ttl):
        j = new_job(s, a, "w8")
        r = dict(result("virustotal", score), enriched_at=at)
        doc = {"jobs": [{"id": int(j), "summary": {"indicator_count": 1}, "indicators": [
            {"type": "domain", "value": value, "new": True, "malice": "Malicious",
             "results": {"virustotal": r}, "ttl": ttl}]}]}
        text = json.dumps(doc).replace("'", "''")
        assert_eq(s.sql("SELECT outcome FROM calseta_enrich_complete_batch('w8', '%s')" % text),
                  [["done"]])

    def stored():
        return s.sql_value("SELECT enrichment_results->'virustotal'->'extracted'->>'score' "
                           "FROM indicators WHERE value = '%s'" % value)

    keys = json.dumps([["virustotal", "domain", value]])
    complete(5, "2026-03-01T10:00:00.000000Z", {"virustotal": 300})
    complete(2, "2026-03-01T09:59:00.000000Z", {})  # looked up earlier, completed later
    assert_eq(stored(), "5")
    assert_eq(s.sql("SELECT result->'extracted'->>'score' FROM calseta_enrich_cache_get_many('%s')"
                    % keys), [["5"]])
    complete(8, "2026-03-01T10:00:00.000001Z", {"virustotal": 300})
    assert_eq(stored(), "8")


def test_document_read_in_place():
    """The completing function reads each job where it lies in the document: a job listed twice
    counts once (its first entry: indicators and summary), a job whose indicators are not a list
    is completed with none, and a document whose jobs are not a list completes nothing."""
    s = stack()
    a1, a2 = new_alert(s, "place1"), new_alert(s, "place2")
    j1, j2 = new_job(s, a1, "w6"), new_job(s, a2, "w6")
    v1, v2 = "place-%s.example.net" % a1, "twice-%s.example.net" % a1

    def ind(value, score):
        return {"type": "domain", "value": value, "new": True, "malice": "Malicious",
                "results": {"virustotal": result("virustotal", score)}}

    assert_eq(s.sql("SELECT outcome FROM calseta_enrich_complete_batch('w6', '{\"jobs\": {}}')"),
              [])
    doc = {"jobs": [
        {"id": int(j1), "indicators": [ind(v1, 4)], "summary": {"indicator_count": 1}},
        {"id": int(j2), "indicators": "none", "summary": {"indicator_count": 0}},
        {"id": int(j1), "indicators": [ind(v2, 5)], "summary": {"indicator_count": 9}}]}
    text = json.dumps(doc).replace("'", "''")
    assert_eq(s.sql("SELECT job_id, outcome FROM calseta_enrich_complete_batch('w6', '%s') "
                    "ORDER BY job_id" % text), [[j1, "done"], [j2, "done"]])
    assert_eq(s.sql("SELECT value, enrichment_results->'virustotal'->'extracted'->>'score' "
                    "FROM indicators WHERE value IN ('%s', '%s')" % (v1, v2)), [[v1, "4"]])
    assert_eq(s.sql("SELECT alert_id, \"references\"->>'indicator_count' FROM activity_events "
                    "WHERE event_type = 'alert_enrichment_completed' AND alert_id IN (%s, %s) "
                    "ORDER BY alert_id" % (a1, a2)), [[a1, "1"], [a2, "0"]])


def test_merge_rule_in_one_function():
    """calseta_enrich_result_kept(stored, fresh), the rule the completing function applies per
    provider: the stored result stays when the fresh one is the same but for enriched_at or
    older; a newer or different one, or one with nothing stored, is taken."""
    s = stack()
    old = '{"success": true, "score": 1, "enriched_at": "2026-03-01T10:00:00.000000Z"}'
    cases = [
        (old, '{"success": true, "score": 1, "enriched_at": "2026-03-01T11:00:00.000000Z"}', "t"),
        (old, '{"success": true, "score": 2, "enriched_at": "2026-03-01T09:00:00.000000Z"}', "t"),
        (old, '{"success": true, "score": 2, "enriched_at": "2026-03-01T10:00:00.000001Z"}', "f"),
        (old, '{"success": true, "score": 2}', "f"),
        (None, '{"success": true, "score": 2}', "f"),
        (old, '"not an object"', "f"),
    ]
    for stored, fresh, want in cases:
        got = s.sql_value("SELECT calseta_enrich_result_kept(%s, '%s'::jsonb)"
                          % ("NULL" if stored is None else "'%s'::jsonb" % stored, fresh))
        assert_eq(got, want, "%s over %s" % (fresh, stored))


def test_finished_jobs_dispatched_once_per_statement():
    """The dispatch trigger runs per statement: every job one statement finishes gets its
    deliveries (in id order), jobs it does not finish get none, and finishing again adds none."""
    s = stack()
    s.sql("INSERT INTO agent_registrations (name, endpoint_url, trigger_on_sources, "
          "trigger_on_severities, is_active) VALUES ('dispatch-once', 'http://127.0.0.1:9/', "
          "'{generic}', '{}', true)")
    try:
        alerts = [new_alert(s, "d%d" % i) for i in range(3)]
        jobs = [new_job(s, x, "w8") for x in alerts]
        ids = ",".join(jobs)
        s.sql("UPDATE enrichment_jobs SET status = CASE WHEN id = %s THEN 'running' ELSE 'done' END "
              "WHERE id IN (%s)" % (jobs[2], ids))
        rows = s.sql("SELECT source_job_id FROM agent_deliveries d JOIN agent_registrations g "
                     "ON g.id = d.agent_id WHERE g.name = 'dispatch-once' ORDER BY d.id")
        assert_eq(rows, [[jobs[0]], [jobs[1]]])
        s.sql("UPDATE enrichment_jobs SET status = 'failed' WHERE id IN (%s)" % ids)
        rows = s.sql("SELECT source_job_id FROM agent_deliveries d JOIN agent_registrations g "
                     "ON g.id = d.agent_id WHERE g.name = 'dispatch-once' ORDER BY d.id")
        assert_eq(rows, [[jobs[0]], [jobs[1]], [jobs[2]]])
    finally:
        s.sql("DELETE FROM agent_deliveries WHERE agent_id IN (SELECT id FROM agent_registrations "
              "WHERE name = 'dispatch-once');"
              "DELETE FROM agent_registrations WHERE name = 'dispatch-once'")


def test_claim_order_attempts_and_leases():
    s = stack()
    s.sql("UPDATE enrichment_jobs SET status = 'done', lease_owner = NULL WHERE status <> 'done'")
    alerts = [new_alert(s, "c%d" % i) for i in range(5)]
    s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) VALUES "
          "('ip', '192.0.2.77', now(), now()) ON CONFLICT DO NOTHING")
    s.sql("INSERT INTO alert_indicators (alert_id, indicator_id) SELECT %s, id FROM indicators "
          "WHERE value = '192.0.2.77'" % alerts[1])
    specs = ((alerts[0], "'pending', 5, NULL, NULL"),                         # spent: given up
             (alerts[1], "'pending', 0, NULL, NULL"),
             (alerts[2], "'running', 1, 'other', now() + interval '5 min'"),  # leased: skipped
             (alerts[3], "'running', 2, 'dead', now() - interval '1 s'"),     # expired: taken over
             (alerts[4], "'pending', 0, NULL, NULL"))
    ids = [s.sql_value("INSERT INTO enrichment_jobs (alert_id, status, attempts, lease_owner, "
                       "lease_expires_at) VALUES (%s, %s) RETURNING id" % (a, v)) for a, v in specs]
    # the oldest two claimable: the spent one is given up (and counts), the next is claimed
    rows = s.sql("SELECT job_id, alert_id, attempts, doc->'indicators' FROM "
                 "calseta_enrich_claim('me', 60, 2, 5)")
    assert_eq(rows, [[ids[1], alerts[1], "1", '[{"type": "ip", "value": "192.0.2.77"}]']])
    assert_eq(s.sql_value("SELECT enrichment_status FROM alerts WHERE id = %s" % alerts[0]), "Failed")
    rows = s.sql("SELECT job_id, attempts FROM calseta_enrich_claim('me', 60, 10, 5) ORDER BY 1")
    assert_eq(rows, [[ids[3], "3"], [ids[4], "1"]])
    assert_eq(s.sql("SELECT id, status, lease_owner, last_error FROM enrichment_jobs WHERE id IN (%s) "
                    "ORDER BY id" % ",".join(ids)),
              [[ids[0], "failed", "", "lease expired (gave up after 5 attempts)"],
               [ids[1], "running", "me", ""], [ids[2], "running", "other", ""],
               [ids[3], "running", "me", ""], [ids[4], "running", "me", ""]])
    assert_eq(s.sql("SELECT job_id FROM calseta_enrich_claim('me', 60, 10, 5)"), [])


class Session:
    """A psql session fed line by line (a transaction held open between steps)."""

    def __init__(self, s, name):
        self.name = name
        env = dict(os.environ, PGAPPNAME=name)
        self.p = subprocess.Popen(["psql", s.db, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=0"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=env)

    def send(self, sql):
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()

    def finish(self, timeout=30):
        out, _ = self.p.communicate(timeout=timeout)
        return out


def state(s, name):
    rows = s.sql("SELECT state, coalesce(wait_event_type, '') FROM pg_stat_activity "
                 "WHERE application_name = '%s'" % name)
    return rows[0] if rows else None


def test_completions_sharing_indicators_do_not_deadlock():
    s = stack()
    # P is older (smaller id) but sorts after Q by value; both were last seen before the alerts
    for v in ("198.51.100.9", "198.51.100.1"):
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) VALUES "
              "('ip', '%s', now() - interval '1 day', now() - interval '1 day')" % v)
    p_id = s.sql_value("SELECT id FROM indicators WHERE value = '198.51.100.9'")
    q_id = s.sql_value("SELECT id FROM indicators WHERE value = '198.51.100.1'")
    assert int(p_id) < int(q_id)
    a1, a2 = new_alert(s, "d1"), new_alert(s, "d2")
    # job 1 has Q new (pass 3) and P linked at ingest; job 2 has P new and Q linked
    s.sql("INSERT INTO alert_indicators (alert_id, indicator_id) VALUES (%s, %s), (%s, %s)"
          % (a1, p_id, a2, q_id))
    j1, j2 = new_job(s, a1, "w1"), new_job(s, a2, "w2")

    def doc(inds):
        return json.dumps({"indicators": [
            {"type": "ip", "value": v, "new": new, "malice": "Benign",
             "results": {"virustotal": result("virustotal", 0)}} for v, new in inds],
            "summary": {}})

    # a third session holds the link job 1 will write, so job 1 stops between its steps
    x = Session(s, "dl-x")
    x.send("BEGIN;")
    x.send("INSERT INTO alert_indicators (alert_id, indicator_id) VALUES (%s, %s);" % (a1, q_id))
    wait_for(lambda: state(s, "dl-x") == ["idle in transaction", "Client"], 60, what="the holder")
    s1 = Session(s, "dl-1")
    s1.send("SELECT 'one:' || calseta_enrich_complete(%s, 'w1', '%s');"
            % (j1, doc([("198.51.100.1", True), ("198.51.100.9", False)])))
    wait_for(lambda: state(s, "dl-1") == ["active", "Lock"], 60, what="job 1 waiting on the holder")
    s2 = Session(s, "dl-2")
    s2.send("SELECT 'two:' || calseta_enrich_complete(%s, 'w2', '%s');"
            % (j2, doc([("198.51.100.9", True), ("198.51.100.1", False)])))
    # job 2 waits on a lock job 1 holds (or, with no lock held by job 1 yet, finishes)
    wait_for(lambda: state(s, "dl-2") in (["active", "Lock"], ["idle", "Client"]), 60,
             what="job 2 blocked or done")
    x.send("ROLLBACK;")
    out = x.finish() + s1.finish() + s2.finish()
    assert "deadlock" not in out, out
    assert "one:done" in out and "two:done" in out, out
    assert_eq(s.sql("SELECT status FROM enrichment_jobs WHERE id IN (%s, %s)" % (j1, j2)),
              [["done"], ["done"]])
    assert_eq(s.sql("SELECT alert_id FROM alert_indicators WHERE indicator_id = %s ORDER BY 1"
                    % q_id), [[a1], [a2]])
    assert_eq(s.sql("SELECT alert_id FROM alert_indicators WHERE indicator_id = %s ORDER BY 1"
                    % p_id), [[a1], [a2]])
    # both moved last_seen of the indicator they had as new
    assert_eq(s.sql("SELECT value, last_seen > now() - interval '1 hour', is_enriched FROM indicators "
                    "WHERE id IN (%s, %s) ORDER BY value" % (p_id, q_id)),
              [["198.51.100.1", "t", "t"], ["198.51.100.9", "t", "t"]])


def test_renewal_skips_held_rows_and_claim_skips_own_jobs():
    s = stack()
    s.sql("UPDATE enrichment_jobs SET status = 'done', lease_owner = NULL WHERE status <> 'done'")
    held, free, mine = (new_job(s, new_alert(s, "r%d" % i), "me") for i in range(3))
    s.sql("UPDATE enrichment_jobs SET lease_expires_at = now() - interval '1 s' WHERE id IN "
          "(%s, %s, %s)" % (held, free, mine))
    # a completing statement of this worker holds one job's row
    locker = Session(s, "renew-locker")
    locker.send("BEGIN;\nSELECT 1 FROM enrichment_jobs WHERE id = %s FOR NO KEY UPDATE;" % held)
    deadline = time.time() + 30
    while state(s, "renew-locker") != ["idle in transaction", "Client"]:
        assert time.time() < deadline, "the locking session did not take its lock"
        time.sleep(0.05)
    try:
        # the renewal does not wait for the held row: it renews the other one
        assert_eq(s.sql_value("SET statement_timeout = '5s'; SELECT calseta_enrich_renew("
                              "ARRAY[%s, %s]::bigint[], 'me', 60)" % (held, free)), "1")
        assert_eq(s.sql("SELECT id, lease_expires_at > now() FROM enrichment_jobs WHERE id IN "
                        "(%s, %s) ORDER BY id" % (held, free)), [[held, "f"], [free, "t"]])
        # an expired lease held by a statement is not claimed; nor is a job of the claimer's own
        assert_eq(s.sql("SELECT job_id FROM calseta_enrich_claim('me', 60, 10, 5, "
                        "ARRAY[%s]::bigint[])" % mine), [])
        # a completing statement of several jobs gives up on a held row after its lock timeout
        t0 = time.time()
        try:
            s.sql("SET statement_timeout = '20s'; SELECT * FROM calseta_enrich_complete_batch_"
                  "bounded('me', '{\"jobs\": [{\"id\": %s, \"indicators\": []}, {\"id\": %s, "
                  "\"indicators\": []}]}', 300)" % (free, held))
            raise AssertionError("the bounded statement completed past a held row")
        except RuntimeError as e:
            assert "lock timeout" in str(e), str(e)
        assert time.time() - t0 < 10, "the bounded statement waited %.1f s" % (time.time() - t0)
        assert_eq(s.sql_value("SELECT status FROM enrichment_jobs WHERE id = %s" % free),
                  "running")
    finally:
        locker.send("COMMIT;")
        locker.finish()
    assert_eq(s.sql("SELECT job_id, attempts FROM calseta_enrich_claim('me', 60, 10, 5, "
                    "ARRAY[%s]::bigint[])" % mine), [[held, "2"]])
    assert_eq(s.sql_value("SELECT calseta_enrich_renew_one(%s, 'me', 60)" % mine), "running")
    assert_eq(s.sql_value("SELECT lease_expires_at > now() FROM enrichment_jobs WHERE id = %s"
                          % mine), "t")
    assert_eq(s.sql_value("SELECT calseta_enrich_renew_one(%s, 'other', 60)" % mine), "lease_lost")
    s.sql("UPDATE enrichment_jobs SET status = 'done', lease_owner = NULL WHERE id = %s" % mine)
    assert_eq(s.sql_value("SELECT calseta_enrich_renew_one(%s, 'me', 60)" % mine), "done")
    s.sql("UPDATE enrichment_jobs SET status = 'done', lease_owner = NULL WHERE status <> 'done'")


def test_renew_one_counts_the_lease_from_the_row():
    """renew_one waits for a row a statement still holds (one whose answer the worker lost):
    the lease it gives runs from the moment it has the row, not from when it was sent."""
    s = stack()
    job = new_job(s, new_alert(s, "r1"), "me")
    locker = Session(s, "renew-one-locker")
    locker.send("BEGIN;\nSELECT 1 FROM enrichment_jobs WHERE id = %s FOR NO KEY UPDATE;" % job)
    wait_for(lambda: state(s, "renew-one-locker") == ["idle in transaction", "Client"], 30,
             what="the locking session")
    renewer = Session(s, "renew-one")
    renewer.send("SELECT 'renewed:' || calseta_enrich_renew_one(%s, 'me', 4);" % job)
    wait_for(lambda: state(s, "renew-one") == ["active", "Lock"], 30,
             what="renew_one waiting for the row")
    time.sleep(3)  # most of the 4 s lease
    locker.send("COMMIT;")
    locker.finish()
    out = renewer.finish()
    assert "renewed:running" in out, out
    left = float(s.sql_value("SELECT extract(epoch FROM lease_expires_at - now()) "
                             "FROM enrichment_jobs WHERE id = %s" % job))
    assert left > 3, "%.1f s of a 4 s lease left just after renewal" % left
    s.sql("UPDATE enrichment_jobs SET status = 'done', lease_owner = NULL WHERE id = %s" % job)


def test_zz_stop():
    if STACK:
        STACK.stop()


if __name__ == "__main__":
    run_tests(globals())
