"""The workflow run and approval lists over a few thousand rows: every page is the slice of the
ordered list (newest first, ties by id) that PostgreSQL gives, filters narrow page and total,
and a page is read without building or copying every matching row: the intake's sessions may
not write temporary files (the lists used to materialise the JSON of every matching row)."""
from harness import Stack, assert_eq, run_tests

RUNS = 4000
APPROVALS = 3000


def load(s):
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


def ids(s, table, where, limit, offset):
    return [r[0] for r in s.sql("SELECT uuid FROM %s a WHERE %s ORDER BY created_at DESC, id DESC "
                                "LIMIT %d OFFSET %d" % (table, where, limit, offset))]


def page(s, k, path, n):
    r = s.request("GET", path, key=k)
    assert_eq(r.status, 200, (path, r.body[:300]))
    b = r.json()
    assert_eq(b["meta"]["total"], n, path)
    return [x["uuid"] for x in b["data"]]


def test_run_and_approval_pages():
    s = Stack("workflow_lists", env={"PGOPTIONS": "-c temp_file_limit=0 -c work_mem=1MB"})
    try:
        k = s.create_key("admin")
        load(s)
        wf = s.sql_value("SELECT uuid FROM workflows ORDER BY id LIMIT 1")
        wfid = "(SELECT id FROM workflows WHERE uuid = '%s')" % wf
        t = "workflow_runs"
        for p in (1, 7, 40):
            assert_eq(page(s, k, "/v1/workflow-runs?page=%d&page_size=50" % p, RUNS),
                      ids(s, t, "true", 50, (p - 1) * 50), p)
        n = int(s.sql_value("SELECT count(*) FROM workflow_runs WHERE status IN ('failed', 'timed_out')"))
        assert_eq(page(s, k, "/v1/workflow-runs?status=failed,timed_out&page=3&page_size=30", n),
                  ids(s, t, "status IN ('failed', 'timed_out')", 30, 60))
        n = int(s.sql_value("SELECT count(*) FROM workflow_runs WHERE workflow_id = " + wfid))
        assert_eq(page(s, k, "/v1/workflows/%s/runs?page=5&page_size=20" % wf, n),
                  ids(s, t, "workflow_id = " + wfid, 20, 80))
        assert_eq(page(s, k, "/v1/workflow-runs?workflow_uuid=%s&page=2&page_size=20" % wf, n),
                  ids(s, t, "workflow_id = " + wfid, 20, 20))
        seen = []
        for p in range(1, RUNS // 500 + 1):
            seen += page(s, k, "/v1/workflow-runs?page=%d&page_size=500" % p, RUNS)
        assert_eq(seen, ids(s, t, "true", RUNS, 0))
        r = s.request("GET", "/v1/workflows/00000000-0000-0000-0000-000000000000/runs", key=k)
        assert_eq(r.status, 404, r.body)

        t = "workflow_approval_requests"
        for p in (1, 30):
            assert_eq(page(s, k, "/v1/workflow-approvals?page=%d&page_size=50" % p, APPROVALS),
                      ids(s, t, "true", 50, (p - 1) * 50), p)
        expired = "status = 'pending' AND expires_at < now()"
        pending = "status = 'pending' AND expires_at >= now()"
        for status, where in (("expired", expired), ("pending", pending), ("approved", "status = 'approved'")):
            n = int(s.sql_value("SELECT count(*) FROM %s WHERE %s" % (t, where)))
            assert_eq(n, APPROVALS // 3)
            got = page(s, k, "/v1/workflow-approvals?status=%s&page=4&page_size=25" % status, n)
            assert_eq(got, ids(s, t, where, 25, 75), status)
            r = s.request("GET", "/v1/workflow-approvals?status=%s&page_size=5" % status, key=k).json()
            assert all(a["status"] == status for a in r["data"]), r["data"]
        n = int(s.sql_value("SELECT count(*) FROM %s WHERE workflow_id = %s AND %s" % (t, wfid, pending)))
        assert_eq(page(s, k, "/v1/workflow-approvals?status=pending&workflow_uuid=%s&page_size=10" % wf, n),
                  ids(s, t, "workflow_id = %s AND %s" % (wfid, pending), 10, 0))
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
