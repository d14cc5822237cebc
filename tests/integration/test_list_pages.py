"""The list routes that grow with use, over a few thousand rows each: audit events, workflow runs
and approvals, detection rules and context documents. Every page (each sort, each direction)
is the slice of PostgreSQL's own order of the table (ties by id), walking all pages yields every
row once, filters narrow page and total, and no page needs a copy of every matching row: the
intake's sessions may not write temporary files and have a small work_mem (each of these lists
used to materialise every matching row, JSON or content included, before cutting the page)."""
import json

from harness import Stack, assert_eq, run_tests

NO_TEMP_FILES = {"PGOPTIONS": "-c temp_file_limit=0 -c work_mem=1MB"}


def ordered(s, table, where, limit, offset, key="created_at", order="desc", col="uuid"):
    """col of the rows PostgreSQL puts at [offset, offset + limit) of the list's order."""
    return [r[0] for r in s.sql("SELECT %s FROM %s WHERE %s ORDER BY %s %s, id %s LIMIT %d OFFSET %d"
                                % (col, table, where, key, order, order, limit, offset))]


def listed(s, k, path, total=None, col="uuid"):
    """col of each item of the page path answers, after checking meta.total when given."""
    r = s.request("GET", path, key=k)
    assert_eq(r.status, 200, (path, r.body[:300]))
    b = r.json()
    if total is not None:
        assert_eq(b["meta"]["total"], total, path)
    return [x[col] for x in b["data"]]


def count(s, table, where):
    return int(s.sql_value("SELECT count(*) FROM %s WHERE %s" % (table, where)))


# ---- audit events ------------------------------------------------------------------------------

AUDIT_ROWS = 6000
# Old enough that no event the stack writes while the test runs falls inside to_time.
TO = "2021-01-01T00:00:00Z"
OLD = "occurred_at <= '%s'" % TO


def load_audit(s):
    # 40 events share each second (ties ordered by id), four types, three key prefixes, and a
    # fields document large enough that a copy of the rows would not fit in work_mem.
    s.sql("INSERT INTO audit_events (event_id, occurred_at, service, pid, event_type, request_id, "
          "actor_key_prefix, client_ip, fields) SELECT gen_random_uuid(), "
          "timestamptz '2020-06-01 00:00:00+00' + (g / 40) * interval '1 second', 'intake', g, "
          "'bulk.' || (g %% 4), 'req-' || g, 'cai_p' || (g %% 3), '10.0.0.' || (g %% 250), "
          "jsonb_build_object('n', g, 'pad', repeat('x', 300)) FROM generate_series(1, %d) g"
          % AUDIT_ROWS)
    s.sql("ANALYZE audit_events")


def audit_ids(s, where, limit, offset):
    return ordered(s, "audit_events", where, limit, offset, key="occurred_at", col="event_id")


def audit_page(s, k, query, total=None):
    return listed(s, k, "/v1/audit-events?to_time=%s&%s" % (TO, query), total, col="event_id")


def test_audit_event_pages():
    s = Stack("audit_pages", env=NO_TEMP_FILES)
    try:
        k = s.create_key("admin")
        load_audit(s)
        r = s.request("GET", "/v1/audit-events?to_time=%s&page=1&page_size=50" % TO, key=k)
        b = r.json()
        assert_eq(b["meta"], {"total": AUDIT_ROWS, "page": 1, "page_size": 50,
                              "total_pages": AUDIT_ROWS // 50})
        assert_eq([e["event_id"] for e in b["data"]], audit_ids(s, OLD, 50, 0))
        # one item whole, as the table holds it
        first = b["data"][0]
        row = s.sql("SELECT event_id, event_type, service, pid, request_id, actor_key_prefix, "
                    "client_ip, fields::text, to_char(occurred_at AT TIME ZONE 'UTC', "
                    "'YYYY-MM-DD\"T\"HH24:MI:SS') FROM audit_events WHERE event_id = '%s'"
                    % first["event_id"])[0]
        assert_eq([first[f] for f in ("event_type", "service", "pid", "request_id",
                                      "actor_key_prefix", "client_ip")],
                  [row[1], row[2], int(row[3]), row[4], row[5], row[6]])
        assert_eq(first["fields"], json.loads(row[7]))
        assert first["occurred_at"].startswith(row[8]), (first["occurred_at"], row[8])
        assert_eq(sorted(first), sorted(["event_id", "event_type", "occurred_at", "service", "pid",
                                         "request_id", "actor_key_prefix", "client_ip", "fields"]))

        # deep pages are the same slice of the ordered list
        for page in (2, 17, 60, 120):
            assert_eq(audit_page(s, k, "page=%d&page_size=50" % page),
                      audit_ids(s, OLD, 50, (page - 1) * 50), page)
        assert_eq(audit_page(s, k, "page=121&page_size=50"), [])

        # walking every page yields every row once, in order
        seen = []
        for page in range(1, AUDIT_ROWS // 500 + 1):
            seen += audit_page(s, k, "page=%d&page_size=500" % page, AUDIT_ROWS)
        assert_eq(len(set(seen)), AUDIT_ROWS)
        assert_eq(seen, audit_ids(s, OLD, AUDIT_ROWS, 0))

        # filters narrow both the page and the total
        cases = [
            ("event_type=bulk.1", "event_type = 'bulk.1'"),
            ("event_type=bulk.1,bulk.3", "event_type IN ('bulk.1', 'bulk.3')"),
            ("key_prefix=cai_p2", "actor_key_prefix = 'cai_p2'"),
            ("from_time=2020-06-01T00:01:00Z", "occurred_at >= '2020-06-01T00:01:00Z'"),
            ("event_type=bulk.2&key_prefix=cai_p0&from_time=2020-06-01T00:00:30Z",
             "event_type = 'bulk.2' AND actor_key_prefix = 'cai_p0' AND "
             "occurred_at >= '2020-06-01T00:00:30Z'"),
        ]
        for query, where in cases:
            where = "%s AND %s" % (OLD, where)
            assert_eq(audit_page(s, k, query + "&page=3&page_size=25", count(s, "audit_events", where)),
                      audit_ids(s, where, 25, 50), query)
        assert_eq(audit_page(s, k, "event_type=nothing.here", 0), [])

        # bad input is refused
        r = s.request("GET", "/v1/audit-events?page_size=0", key=k)
        assert_eq(r.status, 422, r.body)
        for bad in ("from_time=yesterday", "to_time=2020-13-01T00:00:00Z", "from_time=garbage",
                    "from_time=-", "from_time=12abc"):
            r = s.request("GET", "/v1/audit-events?" + bad, key=k)
            assert_eq(r.status, 422, (bad, r.body))
            assert_eq(r.json()["error"]["code"], "VALIDATION_ERROR", r.body)
        # a naive time is UTC, an offset is honoured
        total = count(s, "audit_events", "occurred_at >= '2020-06-01T00:02:00Z' AND " + OLD)
        # and a number is Unix time, in seconds or (above 2e10) milliseconds, as the original reads it
        for t in ("2020-06-01T00:02:00", "2020-06-01T02:02:00%2B02:00", "1590969720", "1590969720.0",
                  "1590969720000"):
            audit_page(s, k, "from_time=" + t, total)
    finally:
        s.stop()


# ---- workflow runs and approvals ---------------------------------------------------------------

RUNS = 4000
APPROVALS = 3000


def load_workflows(s):
    s.sql("INSERT INTO workflows (name, code, state) SELECT 'wf ' || g, "
          "'async def run(ctx):\n    pass\n', 'active' FROM generate_series(1, 2) g")
    # ten runs share each second (ties by id), a fat log so that a copy would not fit work_mem
    s.sql("INSERT INTO workflow_runs (created_at, workflow_id, trigger_type, code_version_executed, "
          "log_output, status) SELECT timestamptz '2024-01-01 00:00:00+00' + (g / 10) * interval "
          "'1 second', (SELECT min(id) FROM workflows) + g %% 2, 'manual', 1, repeat('l', 400), "
          "(ARRAY['success', 'failed', 'timed_out'])[1 + g %% 3] FROM generate_series(1, %d) g"
          % RUNS)
    # a third pending and not expired, a third pending past expiry (reads "expired"), a third
    # approved
    s.sql("INSERT INTO workflow_approval_requests (created_at, workflow_id, trigger_type, "
          "trigger_agent_key_prefix, trigger_context, reason, confidence, status, expires_at) "
          "SELECT timestamptz '2024-01-01 00:00:00+00' + (g / 10) * interval '1 second', "
          "(SELECT min(id) FROM workflows) + g %% 2, 'agent', 'cai_x', "
          "jsonb_build_object('pad', repeat('p', 400)), 'because ' || g, 0.5, "
          "CASE WHEN g %% 3 = 2 THEN 'approved' ELSE 'pending' END, "
          "CASE WHEN g %% 3 = 1 THEN now() - interval '1 hour' ELSE now() + interval '1 day' END "
          "FROM generate_series(1, %d) g" % APPROVALS)
    s.sql("ANALYZE workflow_runs; ANALYZE workflow_approval_requests")


def test_run_and_approval_pages():
    s = Stack("workflow_pages", env=NO_TEMP_FILES)
    try:
        k = s.create_key("admin")
        load_workflows(s)
        wf = s.sql_value("SELECT uuid FROM workflows ORDER BY id LIMIT 1")
        mine = "workflow_id = (SELECT id FROM workflows WHERE uuid = '%s')" % wf
        t = "workflow_runs"
        for p in (1, 7, 40):
            assert_eq(listed(s, k, "/v1/workflow-runs?page=%d&page_size=50" % p, RUNS),
                      ordered(s, t, "true", 50, (p - 1) * 50), p)
        where = "status IN ('failed', 'timed_out')"
        assert_eq(listed(s, k, "/v1/workflow-runs?status=failed,timed_out&page=3&page_size=30",
                         count(s, t, where)), ordered(s, t, where, 30, 60))
        n = count(s, t, mine)
        assert_eq(listed(s, k, "/v1/workflows/%s/runs?page=5&page_size=20" % wf, n),
                  ordered(s, t, mine, 20, 80))
        assert_eq(listed(s, k, "/v1/workflow-runs?workflow_uuid=%s&page=2&page_size=20" % wf, n),
                  ordered(s, t, mine, 20, 20))
        seen = []
        for p in range(1, RUNS // 500 + 1):
            seen += listed(s, k, "/v1/workflow-runs?page=%d&page_size=500" % p, RUNS)
        assert_eq(seen, ordered(s, t, "true", RUNS, 0))
        r = s.request("GET", "/v1/workflows/00000000-0000-0000-0000-000000000000/runs", key=k)
        assert_eq(r.status, 404, r.body)

        t = "workflow_approval_requests"
        for p in (1, 30):
            assert_eq(listed(s, k, "/v1/workflow-approvals?page=%d&page_size=50" % p, APPROVALS),
                      ordered(s, t, "true", 50, (p - 1) * 50), p)
        expired = "status = 'pending' AND expires_at < now()"
        pending = "status = 'pending' AND expires_at >= now()"
        for status, where in (("expired", expired), ("pending", pending),
                              ("approved", "status = 'approved'")):
            assert_eq(count(s, t, where), APPROVALS // 3)
            path = "/v1/workflow-approvals?status=%s&page=4&page_size=25" % status
            assert_eq(listed(s, k, path, APPROVALS // 3), ordered(s, t, where, 25, 75), status)
            assert_eq(set(listed(s, k, path, col="status")), {status})
        where = "%s AND %s" % (mine, pending)
        path = "/v1/workflow-approvals?status=pending&workflow_uuid=%s&page_size=10" % wf
        assert_eq(listed(s, k, path, count(s, t, where)), ordered(s, t, where, 10, 0))
    finally:
        s.stop()


# ---- detection rules and context documents -----------------------------------------------------

RULES = 3000
DOCS = 2000


def load_catalogue(s):
    # created_at repeats every 10 rows (ties by id); a long documentation / content each
    s.sql("INSERT INTO detection_rules (created_at, name, source_rule_id, source_name, severity, "
          "is_active, documentation) SELECT timestamptz '2024-01-01 00:00:00+00' + "
          "(g / 10) * interval '1 minute', 'rule ' || (g * 7919 %% 1000), 'R' || g, "
          "(ARRAY['sentinel', 'elastic', 'splunk'])[1 + g %% 3], "
          "(ARRAY['Low', 'Medium', 'High', 'Critical'])[1 + g %% 4], g %% 5 <> 0, "
          "repeat('d', 600) FROM generate_series(1, %d) g" % RULES)
    s.sql("INSERT INTO context_documents (created_at, updated_at, title, document_type, is_global, "
          "content) SELECT timestamptz '2024-01-01 00:00:00+00' + (g / 10) * interval '1 minute', "
          "timestamptz '2024-02-01 00:00:00+00' + (g * 31 %% 500) * interval '1 minute', "
          "'doc ' || (g * 7919 %% 700), (ARRAY['runbook', 'sop', 'ir_plan'])[1 + g %% 3], "
          "g %% 4 = 0, repeat('c', 1500) FROM generate_series(1, %d) g" % DOCS)
    s.sql("ANALYZE detection_rules; ANALYZE context_documents")


def test_rule_and_document_pages():
    s = Stack("catalogue_pages", env=NO_TEMP_FILES)
    try:
        k = s.create_key("admin")
        load_catalogue(s)
        t = "detection_rules"
        every = count(s, t, "true")  # built-in rules too
        keys = {"created_at": "created_at", "name": "name", "source_name": "source_name",
                "severity": "calseta_severity_rank(severity)"}
        for sort, key in keys.items():
            for order in ("desc", "asc"):
                path = "/v1/detection-rules?sort_by=%s&sort_order=%s&page=7&page_size=40" % (sort, order)
                assert_eq(listed(s, k, path, every), ordered(s, t, "true", 40, 240, key, order), path)
        where = "source_name IN ('sentinel', 'splunk') AND is_active AND severity IN ('High', 'Critical')"
        n = count(s, t, where)
        assert n > 100, n
        path = ("/v1/detection-rules?source_name=sentinel,splunk&is_active=true&severity=High,Critical"
                "&page=3&page_size=25&sort_by=name&sort_order=asc")
        assert_eq(listed(s, k, path, n), ordered(s, t, where, 25, 50, "name", "asc"))

        t = "context_documents"
        for sort in ("created_at", "updated_at", "title", "document_type"):
            for order in ("desc", "asc"):
                path = "/v1/context-documents?sort_by=%s&sort_order=%s&page=5&page_size=30" % (sort, order)
                assert_eq(listed(s, k, path, DOCS), ordered(s, t, "true", 30, 120, sort, order), path)
        where = "document_type IN ('runbook', 'sop') AND NOT is_global"
        path = "/v1/context-documents?document_type=runbook,%20sop&is_global=false&page=4&page_size=50"
        assert_eq(listed(s, k, path, count(s, t, where)), ordered(s, t, where, 50, 150))
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
