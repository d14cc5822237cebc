"""The workflow REST API against a real intake, a real runner and PostgreSQL:
validation at save time by the runner (errors with their lines), versions, execute and the
run records, containment at run time (tampered code, memory bomb, timeout), ctx.secrets
(declared + admin-allowed only, never the platform's own), ctx.http SSRF, the approval gate
(REST, decide pages with their token, Slack callback with and without SLACK_SIGNING_SECRET),
and scopes."""
import base64
import hashlib
import hmac
import json
import os
import re
import time
import urllib.parse

from harness import Stack, assert_eq, free_port, run_tests, wait_for
from zmtp import Dealer, mp, unmp_map

PROTO_WORKFLOW_REQUEST, PROTO_WORKFLOW_REPLY, WF_OUT_REFUSED = 10, 11, 6

FERNET_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SERVICES = ("auditd", "runner", "intake")

OK_CODE = ("from calseta.workflows import WorkflowResult\n"
           "async def run(ctx):\n"
           "    ctx.log.info('hello from the workflow', value=ctx.indicator.value)\n"
           "    return WorkflowResult.ok('done', {'value': ctx.indicator.value})\n")


def wf_body(code=OK_CODE, **kw):
    b = {"name": "wf", "code": code, "state": "active", "approval_mode": "never",
         "timeout_seconds": 10, "indicator_types": ["ip"]}
    b.update(kw)
    return b


def create(s, k, **kw):
    r = s.request("POST", "/v1/workflows", key=k, body=wf_body(**kw))
    assert_eq(r.status, 201, r.body)
    return r.json()["data"]["uuid"]


def add_indicator(s, value="198.51.100.7", itype="ip"):
    s.sql("INSERT INTO indicators (type, value, first_seen, last_seen, malice) VALUES "
          "('%s', '%s', now(), now(), 'Pending') ON CONFLICT DO NOTHING" % (itype, value))


def execute(s, k, u, value="198.51.100.7", expect=202, **extra):
    body = {"indicator_type": "ip", "indicator_value": value}
    body.update(extra)
    r = s.request("POST", "/v1/workflows/%s/execute" % u, key=k, body=body)
    assert_eq(r.status, expect, r.body)
    return r.json()["data"] if expect == 202 else r.json()


def agent_key(s, scopes):
    k = s.create_key(scopes, name="agent")
    s.sql("UPDATE api_keys SET key_type = 'agent' WHERE key_prefix = '%s'" % k[:8])
    return k


def wait_run(s, k, run_uuid, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = s.request("GET", "/v1/workflow-runs?page_size=500", key=k).json()
        for run in r["data"]:
            if run["uuid"] == run_uuid and run["status"] not in ("queued", "running"):
                return run
        time.sleep(0.2)
    raise AssertionError("run %s did not finish:\n%s" % (run_uuid, s.logs()))


def test_save_time_validation_and_versions():
    s = Stack("wf_validate", services=SERVICES)
    try:
        k = s.create_key("admin")
        r = s.request("POST", "/v1/workflows", key=k, body=wf_body())
        assert_eq(r.status, 201, r.body)
        d = r.json()["data"]
        u = d["uuid"]
        assert_eq(d["code_version"], 1)
        assert_eq(d["code"], OK_CODE)
        bad = {
            "import os": ("import os\nasync def run(ctx):\n    pass\n", [1]),
            "__globals__ via getattr": ("async def run(ctx):\n    x = 1\n"
                                        "    return getattr(x, '__globals__')\n", [3]),
            "dunder attribute": ("async def run(ctx):\n\n    return ctx.__class__\n", [3]),
            "no async run": ("def run(ctx):\n    pass\n", [1]),
            "syntax error": ("async def run(ctx)\n    pass\n", [1]),
        }
        for what, (code, lines) in bad.items():
            r = s.request("POST", "/v1/workflows", key=k, body=wf_body(code=code))
            assert_eq(r.status, 400, (what, r.body))
            e = r.json()["error"]
            assert_eq(e["code"], "WORKFLOW_CODE_INVALID", what)
            assert e["details"]["errors"], (what, e)
            got = sorted({loc["line"] for loc in e["details"]["locations"]})
            for line in lines:
                assert line in got, (what, got, e)
        assert_eq(s.sql_value("SELECT count(*) FROM workflows WHERE NOT is_system"), "1")
        # every error is reported, each with its own line
        code = "import os\nimport subprocess\nasync def run(ctx):\n    return ctx.__dict__\n"
        e = s.request("POST", "/v1/workflows", key=k, body=wf_body(code=code)).json()["error"]
        assert {1, 2, 4} <= {l["line"] for l in e["details"]["locations"]}, e
        for body, field in (({"code": OK_CODE}, "name"), (wf_body(state="running"), "state"),
                            (wf_body(timeout_seconds=0), "timeout_seconds"),
                            (wf_body(secret_names=["DATABASE_URL"]), "secret_names"),
                            (wf_body(code=7), "code")):
            r = s.request("POST", "/v1/workflows", key=k, body=body)
            assert_eq(r.status, 422, (field, r.body))
        # PATCH: invalid code changes nothing; valid code bumps the version and keeps the old one
        r = s.request("PATCH", "/v1/workflows/" + u, key=k, body={"code": "import socket\n"})
        assert_eq(r.status, 400, r.body)
        code2 = OK_CODE.replace("'done'", "'done2'")
        r = s.request("PATCH", "/v1/workflows/" + u, key=k, body={"code": code2, "state": "inactive"})
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq((d["code_version"], d["code"], d["is_active"]), (2, code2, False))
        v = s.request("GET", "/v1/workflows/%s/versions" % u, key=k).json()
        assert_eq([x["version"] for x in v["data"]], [1])
        assert_eq(v["data"][0]["code_preview"], OK_CODE[:120])
        lst = s.request("GET", "/v1/workflows?state=inactive", key=k).json()
        assert_eq(lst["meta"]["total"], 1)
        assert "code" not in lst["data"][0]
        assert_eq(s.request("GET", "/v1/workflows?state=bogus", key=k).status, 422)
        assert_eq(s.request("POST", "/v1/workflows/generate", key=k, body={}).status, 501)
        # scopes
        ro = s.create_key("workflows:read", name="ro")
        assert_eq(s.request("GET", "/v1/workflows/" + u, key=ro).status, 200)
        assert_eq(s.request("POST", "/v1/workflows", key=ro, body=wf_body()).status, 403)
        r = s.request("POST", "/v1/workflows/%s/execute" % u, key=ro,
                      body={"indicator_type": "ip", "indicator_value": "1.2.3.4"})
        assert_eq(r.status, 403, r.body)
        assert_eq(s.request("GET", "/v1/workflow-approvals", key=ro).status, 403)
        audit = s.sql_value("SELECT count(*) FROM audit_events WHERE event_type = 'workflow_saved'")
        assert audit is None or int(audit) >= 0
        assert_eq(s.request("DELETE", "/v1/workflows/" + u, key=k).status, 204)
        assert_eq(s.request("GET", "/v1/workflows/" + u, key=k).status, 404)
    finally:
        s.stop()


def test_execute_and_containment():
    s = Stack("wf_exec", services=SERVICES)
    try:
        k = s.create_key("admin")
        add_indicator(s)
        u = create(s, k)
        d = execute(s, k, u)
        assert_eq(d["status"], "queued")
        run = wait_run(s, k, d["run_uuid"])
        assert_eq(run["status"], "success", run)
        assert_eq(run["result"], {"success": True, "message": "done",
                                  "data": {"value": "198.51.100.7"}})
        assert "hello from the workflow" in run["log_output"], run
        assert run["started_at"] and run["completed_at"] and run["duration_ms"] is not None
        assert_eq(run["code_version_executed"], 1)
        n = s.sql_value("SELECT count(*) FROM activity_events WHERE event_type = "
                        "'workflow_executed' AND \"references\"->>'run_uuid' = '%s'" % d["run_uuid"])
        assert_eq(n, "1")
        # an indicator the platform does not know: a failed run, as the original
        run = wait_run(s, k, execute(s, k, u, value="203.0.113.99")["run_uuid"])
        assert_eq(run["status"], "failed")
        assert "not found in database" in run["result"]["message"], run
        # tampered code (bypassing save-time validation) is re-checked and contained at run time
        evil = s.create_key("admin", name="evil")
        t = create(s, evil, name="tampered")
        s.sql("UPDATE workflows SET code = 'from calseta.workflows import WorkflowResult\n"
              "async def run(ctx):\n    return WorkflowResult.ok(open(''/etc/passwd'').read())\n'"
              " WHERE uuid = '%s'" % t)
        run = wait_run(s, k, execute(s, k, t)["run_uuid"])
        assert_eq(run["status"], "failed", run)
        assert "root:" not in json.dumps(run), run
        # memory bomb
        m = create(s, k, name="bomb", code="from calseta.workflows import WorkflowResult\n"
                   "async def run(ctx):\n    x = bytearray(4 * 1024 * 1024 * 1024)\n"
                   "    return WorkflowResult.ok('allocated %d' % len(x))\n")
        run = wait_run(s, k, execute(s, k, m)["run_uuid"])
        assert_eq(run["status"], "failed", run)
        # timeout
        slow = create(s, k, name="slow", timeout_seconds=2,
                      code="import asyncio\nfrom calseta.workflows import WorkflowResult\n"
                           "async def run(ctx):\n    await asyncio.sleep(30)\n"
                           "    return WorkflowResult.ok('late')\n")
        run = wait_run(s, k, execute(s, k, slow)["run_uuid"])
        assert_eq(run["status"], "timed_out", run)
        # the runner survived all of it
        run = wait_run(s, k, execute(s, k, u)["run_uuid"])
        assert_eq(run["status"], "success", run)
        # not executable / unknown
        dr = create(s, k, name="draft", state="draft")
        r = execute(s, k, dr, expect=400)
        assert_eq(r["error"]["code"], "WORKFLOW_NOT_EXECUTABLE")
        execute(s, k, "00000000-0000-0000-0000-000000000000", expect=404)
        execute(s, k, u, expect=404, alert_uuid="00000000-0000-0000-0000-000000000000")
        execute(s, k, u, expect=422, confidence=3)
        agent = agent_key(s, "workflows:execute")
        r = s.request("POST", "/v1/workflows/%s/execute" % u, key=agent,
                      body={"indicator_type": "ip", "indicator_value": "198.51.100.7"})
        assert_eq(r.status, 422, r.body)
        # per-workflow and global run lists
        r = s.request("GET", "/v1/workflows/%s/runs" % u, key=k).json()
        assert_eq(r["meta"]["total"], 3)
        r = s.request("GET", "/v1/workflow-runs?status=timed_out", key=k).json()
        assert_eq(r["meta"]["total"], 1)
        # /test runs synchronously and stores nothing
        before = s.sql_value("SELECT count(*) FROM workflow_runs")
        r = s.request("POST", "/v1/workflows/%s/test" % u, key=k,
                      body={"indicator_type": "ip", "indicator_value": "192.0.2.1"})
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json()["data"]["data"], {"value": "192.0.2.1"})
        assert_eq(s.sql_value("SELECT count(*) FROM workflow_runs"), before)
    finally:
        s.stop()


def test_secrets_and_ssrf():
    s = Stack("wf_secrets", services=SERVICES, env={"ENCRYPTION_KEY": FERNET_KEY})
    try:
        k = s.create_key("admin")
        add_indicator(s)
        code = ("from calseta.workflows import WorkflowResult\nasync def run(ctx):\n"
                "    g = ctx.secrets.get\n"
                "    return WorkflowResult.ok('s', {'tok': g('API_TOKEN'), 'other': g('OTHER'),"
                " 'undeclared': g('UNDECLARED'), 'db': g('DATABASE_URL'),"
                " 'key': g('ENCRYPTION_KEY')})\n")
        u = create(s, k, code=code, secret_names=["API_TOKEN", "OTHER"])
        for name, value in (("API_TOKEN", "t0k-s3cret"), ("UNDECLARED", "nope")):
            r = s.request("PUT", "/v1/workflows/%s/secrets/%s" % (u, name), key=k,
                          body={"value": value})
            assert_eq(r.status, 200, r.body)
        r = s.request("PUT", "/v1/workflows/%s/secrets/DATABASE_URL" % u, key=k, body={"value": "x"})
        assert_eq(r.status, 422, r.body)
        writer = s.create_key("workflows:write,workflows:read", name="writer")
        r = s.request("PUT", "/v1/workflows/%s/secrets/OTHER" % u, key=writer, body={"value": "x"})
        assert_eq(r.status, 403, r.body)
        stored = s.sql_value("SELECT value_encrypted FROM workflow_secrets WHERE name = 'API_TOKEN'")
        assert "t0k-s3cret" not in stored and stored.startswith("gAAAAA"), stored
        r = s.request("GET", "/v1/workflows/%s/secrets" % u, key=writer)
        assert_eq(r.status, 200, r.body)
        assert "t0k-s3cret" not in r.body.decode()
        names = {x["name"]: (x["declared"], x["allowed"]) for x in r.json()["data"]}
        assert_eq(names, {"API_TOKEN": (True, True), "OTHER": (True, False),
                          "UNDECLARED": (False, True)})
        assert "t0k-s3cret" not in s.request("GET", "/v1/workflows/" + u, key=k).body.decode()
        run = wait_run(s, k, execute(s, k, u)["run_uuid"])
        assert_eq(run["result"]["data"], {"tok": "t0k-s3cret", "other": None, "undeclared": None,
                                          "db": None, "key": None})
        assert_eq(s.request("DELETE", "/v1/workflows/%s/secrets/API_TOKEN" % u, key=k).status, 204)
        run = wait_run(s, k, execute(s, k, u)["run_uuid"])
        assert_eq(run["result"]["data"]["tok"], None)
        for proc in s.procs:
            assert "t0k-s3cret" not in proc.text(), proc.name
        # ctx.http to the metadata endpoint is blocked by the runner's SSRF guard
        h = create(s, k, name="http", code=(
            "from calseta.workflows import WorkflowResult, SSRFBlockedError\n"
            "async def run(ctx):\n    try:\n"
            "        await ctx.http.get('http://169.254.169.254/latest/meta-data/')\n"
            "    except SSRFBlockedError as e:\n"
            "        return WorkflowResult.fail('blocked: ' + str(e))\n"
            "    return WorkflowResult.ok('reached')\n"))
        run = wait_run(s, k, execute(s, k, h)["run_uuid"])
        assert_eq(run["status"], "failed", run)
        assert run["result"]["message"].startswith("blocked:"), run
    finally:
        s.stop()


def slack_post(s, body, ts=None, secret=SLACK_SECRET, sig=None):
    ts = str(int(time.time()) if ts is None else ts)
    if sig is None:
        sig = "v0=" + hmac.new(secret.encode(), ("v0:%s:%s" % (ts, body)).encode(),
                               hashlib.sha256).hexdigest()
    return s.request("POST", "/v1/approvals/callback/slack", body=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded",
                              "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig})


def slack_body(action):
    return "payload=" + urllib.parse.quote(json.dumps(
        {"actions": [{"action_id": action}], "user": {"id": "U123"}}))


def test_approval_gate():
    s = Stack("wf_approval", services=SERVICES, env={"SLACK_SIGNING_SECRET": SLACK_SECRET})
    try:
        k = s.create_key("admin")
        add_indicator(s)
        u = create(s, k, approval_mode="always")
        d = execute(s, k, u, reason="contain it", confidence=0.9)
        assert_eq(d["status"], "pending_approval")
        a = d["approval_request_uuid"]
        assert d["expires_at"]
        assert_eq(s.sql_value("SELECT count(*) FROM workflow_runs"), "0")
        lst = s.request("GET", "/v1/workflow-approvals?status=pending", key=k).json()
        assert_eq([x["uuid"] for x in lst["data"]], [a])
        assert "decide_token" not in json.dumps(lst)
        r = s.request("POST", "/v1/workflow-approvals/%s/approve" % a, key=k, body={})
        assert_eq(r.status, 200, r.body)
        ap = r.json()["data"]
        assert_eq(ap["status"], "approved")
        run = wait_run(s, k, ap["workflow_run_uuid"])
        assert_eq(run["status"], "success", run)
        r = s.request("POST", "/v1/workflow-approvals/%s/approve" % a, key=k, body={})
        assert_eq(r.status, 409, r.body)
        assert_eq(r.json()["error"]["code"], "APPROVAL_ALREADY_DECIDED")
        ap = s.request("GET", "/v1/workflow-approvals/" + a, key=k).json()["data"]
        assert_eq(ap["execution_result"]["success"], True)
        # reject
        b = execute(s, k, u)["approval_request_uuid"]
        r = s.request("POST", "/v1/workflow-approvals/%s/reject" % b, key=k, body={"reason": "no"})
        assert_eq((r.status, r.json()["data"]["status"]), (200, "rejected"))
        assert_eq(s.request("POST", "/v1/workflow-approvals/%s/approve" % b, key=k).status, 409)
        # expired: persisted and refused
        c = execute(s, k, u)["approval_request_uuid"]
        s.sql("UPDATE workflow_approval_requests SET expires_at = now() - interval '1 minute' "
              "WHERE uuid = '%s'" % c)
        r = s.request("POST", "/v1/workflow-approvals/%s/approve" % c, key=k)
        assert_eq((r.status, r.json()["error"]["code"]), (409, "APPROVAL_EXPIRED"))
        assert_eq(s.sql_value("SELECT status FROM workflow_approval_requests WHERE uuid = '%s'" % c),
                  "expired")
        # decide pages: token in constant time, HTML
        e = execute(s, k, u)["approval_request_uuid"]
        token = s.sql_value("SELECT decide_token FROM workflow_approval_requests WHERE uuid = '%s'" % e)
        assert token and len(token) == 43
        r = s.request("GET", "/v1/approvals/%s/decide?token=%s" % (e, "x" * 43))
        assert_eq(r.status, 403)
        assert r.headers["content-type"].startswith("text/html") and b"Invalid approval token" in r.body
        r = s.request("GET", "/v1/approvals/%s/decide?token=%s" % (e, token[:-1]))
        assert_eq(r.status, 403)
        assert_eq(s.request("GET", "/v1/approvals/%s/decide" % e).status, 422)
        r = s.request("GET", "/v1/approvals/00000000-0000-0000-0000-000000000000/decide?token=x")
        assert_eq(r.status, 404)
        r = s.request("GET", "/v1/approvals/%s/decide?token=%s" % (e, token))
        assert_eq(r.status, 200, r.body)
        assert b'name="decision"' in r.body and b"198.51.100.7" in r.body
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        r = s.request("POST", "/v1/approvals/%s/decide" % e, headers=form,
                      body="token=%s&decision=maybe" % token)
        assert_eq(r.status, 400)
        r = s.request("POST", "/v1/approvals/%s/decide" % e, headers=form,
                      body="token=%s&decision=approve" % ("y" * 43))
        assert_eq(r.status, 403)
        r = s.request("POST", "/v1/approvals/%s/decide" % e, headers=form,
                      body="token=%s&decision=approve" % urllib.parse.quote(token))
        assert_eq(r.status, 200, r.body)
        assert b"Approved" in r.body
        ap = s.request("GET", "/v1/workflow-approvals/" + e, key=k).json()["data"]
        assert_eq((ap["status"], ap["responder_id"]), ("approved", "browser"))
        wait_run(s, k, ap["workflow_run_uuid"])
        r = s.request("GET", "/v1/approvals/%s/decide?token=%s" % (e, token))
        assert_eq(r.status, 200)
        assert b"already been approved" in r.body
        # Slack: valid signature decides; stale or forged ones are refused
        f = execute(s, k, u)["approval_request_uuid"]
        body = slack_body("approve:" + f)
        assert_eq(slack_post(s, body, ts=int(time.time()) - 301).status, 403)
        assert_eq(slack_post(s, body, secret="wrong").status, 403)
        assert_eq(slack_post(s, body, ts="abc").status, 403)
        assert_eq(slack_post(s, body, sig="v0=" + "0" * 64).status, 403)
        assert_eq(s.sql_value("SELECT status FROM workflow_approval_requests WHERE uuid = '%s'" % f),
                  "pending")
        r = slack_post(s, body)
        assert_eq((r.status, r.body), (200, b"ok"))
        ap = s.request("GET", "/v1/workflow-approvals/" + f, key=k).json()["data"]
        assert_eq((ap["status"], ap["responder_id"]), ("approved", "U123"))
        g = execute(s, k, u)["approval_request_uuid"]
        assert_eq(slack_post(s, slack_body("reject:" + g)).status, 200)
        assert_eq(s.sql_value("SELECT status FROM workflow_approval_requests WHERE uuid = '%s'" % g),
                  "rejected")
        assert_eq(slack_post(s, "nothing=here").status, 400)
        # agent_only gates agent keys only
        ao = create(s, k, name="agent-only", approval_mode="agent_only")
        assert_eq(execute(s, k, ao)["status"], "queued")
        agent = agent_key(s, "workflows:execute")
        r = s.request("POST", "/v1/workflows/%s/execute" % ao, key=agent,
                      body={"indicator_type": "ip", "indicator_value": "198.51.100.7",
                            "reason": "r", "confidence": 0.5})
        assert_eq((r.status, r.json()["data"]["status"]), (202, "pending_approval"))
        for ev in ("workflow_approved", "workflow_rejected", "workflow_run", "workflow_saved"):
            deadline = time.time() + 10
            while time.time() < deadline:
                n = s.sql_value("SELECT count(*) FROM audit_events WHERE event_type = '%s'" % ev)
                if n and int(n) > 0:
                    break
                time.sleep(0.2)
            assert int(n) > 0, ev
    finally:
        s.stop()


def test_slack_refused_without_secret():
    s = Stack("wf_slack_off", services=("auditd", "intake"))
    try:
        k = s.create_key("admin")
        a = "00000000-0000-0000-0000-000000000001"
        r = slack_post(s, slack_body("approve:" + a))
        assert_eq(r.status, 403, r.body)
        assert b"SLACK_SIGNING_SECRET" in r.body
        # without a runner, saving code is refused rather than unchecked
        r = s.request("POST", "/v1/workflows", key=k, body=wf_body())
        assert_eq(r.status, 503, r.body)
        assert_eq(s.sql_value("SELECT count(*) FROM workflows WHERE NOT is_system"), "0")
    finally:
        s.stop()


def test_workflowd_down_is_a_clear_503():
    """Code checks and test runs are workflowd's: without it they are refused at once with 503
    (nothing saved), never left hanging, and they work again when it is back."""
    s = Stack("wf_wfd_down", services=SERVICES)
    try:
        k = s.create_key("admin")
        u = create(s, k)
        s.proc("workflowd").stop()
        body = {"indicator_type": "ip", "indicator_value": "192.0.2.1"}
        t0 = time.time()
        r = s.request("POST", "/v1/workflows/%s/test" % u, key=k, body=body)
        assert_eq(r.status, 503, r.body)
        assert_eq(r.json()["error"]["code"], "SERVICE_UNAVAILABLE")
        assert time.time() - t0 < 10, "a test without workflowd took %.1f s" % (time.time() - t0)
        r = s.request("POST", "/v1/workflows", key=k, body=wf_body(name="unchecked"))
        assert_eq(r.status, 503, r.body)
        assert_eq(r.json()["error"]["code"], "SERVICE_UNAVAILABLE")
        assert_eq(s.sql_value("SELECT count(*) FROM workflows WHERE name = 'unchecked'"), "0")
        # what the intake answers itself does not need workflowd
        r = s.request("POST", "/v1/workflows/00000000-0000-0000-0000-000000000000/test", key=k,
                      body=body)
        assert_eq(r.status, 404, r.body)
        s.start("workflowd")
        wait_for(lambda: s.request("POST", "/v1/workflows/%s/test" % u, key=k,
                                   body=body).status == 200, 30, 0.2, "a test run once back")
        r = s.request("POST", "/v1/workflows", key=k, body=wf_body(name="checked"))
        assert_eq(r.status, 201, r.body)
    finally:
        s.stop()


def test_workflowd_link_over_tcp_is_curve_with_allowed_clients():
    """Over tcp:// the intake -> workflowd link speaks CURVE: the stack's intake is served, an
    intake holding a client pair workflowd does not allow is not (its saves are a 503)."""
    ep = "tcp://127.0.0.1:%d" % free_port()
    s = Stack("wf_tcp", services=SERVICES, env={"WORKFLOW_REQUEST_ENDPOINT": ep})
    try:
        k = s.create_key("admin")
        u = create(s, k)
        r = s.request("POST", "/v1/workflows/%s/test" % u, key=k,
                      body={"indicator_type": "ip", "indicator_value": "192.0.2.3"})
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json()["data"]["data"], {"value": "192.0.2.3"})
        assert os.path.exists(os.path.join(s.data_dir, "curve", "workflow.key"))
        out = s.cli("gen-curve-keys", "--link", "workflow").stdout
        pair = dict(re.findall(r"^(CURVE_WORKFLOW_CLIENT_[A-Z]+_KEY)='([^']{40})'$", out, re.M))
        assert_eq(len(pair), 2, out)
        port = free_port()
        rogue = s.start_intake(dict(pair, HTTP_PORT=port))
        s.wait_healthy(port=port)
        r = s.request("POST", "/v1/workflows", key=k, port=port, body=wf_body(name="rogue"))
        assert_eq(r.status, 503, r.body)
        assert_eq(s.sql_value("SELECT count(*) FROM workflows WHERE name = 'rogue'"), "0")
        wait_for(lambda: "refused a CURVE client of the workflow link" in
                 s.proc("workflowd").text(), 20, 0.1, "workflowd logging the refused client")
        assert rogue.alive(), rogue.text()[-2000:]
    finally:
        s.stop()


def test_control_characters_reach_workflowd_and_back():
    """Code saved with CRLF line ends and a form feed, a test indicator holding a tab, and a
    result holding DEL cross the intake -> workflowd link both ways (the link refused them: the
    request or reply was dropped unanswered and the intake answered 503 after its deadline)."""
    s = Stack("wf_ctl", services=SERVICES)
    try:
        k = s.create_key("admin")
        code = ("from calseta.workflows import WorkflowResult\r\n\x0c\r\n"
                "async def run(ctx):\r\n"
                "    return WorkflowResult.ok('done', {'v': ctx.indicator.value + chr(127)})\r\n")
        r = s.request("POST", "/v1/workflows", key=k, body=wf_body(code=code))
        assert_eq(r.status, 201, r.body)
        assert_eq(r.json()["data"]["code"], code)
        u = r.json()["data"]["uuid"]
        r = s.request("POST", "/v1/workflows/%s/test" % u, key=k,
                      body={"indicator_type": "ip", "indicator_value": "192.0.2.9\tx"})
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json()["data"]["data"], {"v": "192.0.2.9\tx\x7f"})
    finally:
        s.stop()


def test_undecodable_requests_are_answered_at_once():
    """A request workflowd cannot decode is answered WF_OUT_REFUSED with its id when the id is
    readable (it was dropped unanswered, and the intake waited 21 s for a check, 51 s for a
    test); one without a readable id is dropped and workflowd keeps serving. (The intake checks
    its own requests with the same decoder before sending: unit test workflow_client.c.)"""
    s = Stack("wf_garbled", services=SERVICES)
    try:
        k = s.create_key("admin")
        d = Dealer(s.endpoint("workflow"))
        try:
            def request(rid, code):
                return mp([("v", 1), ("t", PROTO_WORKFLOW_REQUEST), ("id", rid), ("op", 1),
                           ("code", code)])
            cases = [(77, request(77, b"bad \xff\xfe utf-8")),  # code that is not valid text
                     (2 ** 63 + 5, mp([("v", 1), ("t", PROTO_WORKFLOW_REQUEST),
                                       ("id", 2 ** 63 + 5), ("op", 9)]))]  # no such op
            for rid, frame in cases:
                d.send(frame)
                parts = d.recv(5)
                assert parts is not None, "no answer to request %d:\n%s" % (rid, s.logs())
                rep = unmp_map(parts[0])
                assert_eq((rep["t"], rep["id"], rep["outcome"]),
                          (PROTO_WORKFLOW_REPLY, rid, WF_OUT_REFUSED), rep)
                assert "could not read" in rep["body"], rep
            d.send(b"\x00garbage")  # no envelope, no id: nobody to answer
            d.send(request(79, b"bad")[:-1])  # cut short: the envelope does not parse
            d.send(request(80, b"\xc0"))
            parts = d.recv(5)
            assert parts is not None and unmp_map(parts[0])["id"] == 80, parts
        finally:
            d.close()
        wait_for(lambda: "without a readable id" in s.proc("workflowd").text(), 10, 0.1,
                 "workflowd logging the unattributable message")
        assert s.proc("workflowd").alive()

        u = create(s, k)  # workflowd still serves checks and tests
        r = s.request("POST", "/v1/workflows/%s/test" % u, key=k,
                      body={"indicator_type": "ip", "indicator_value": "192.0.2.4"})
        assert_eq(r.status, 200, r.body)
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
