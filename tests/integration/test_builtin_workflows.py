"""The nine built-in Okta/Entra workflows and ctx.integrations, full stack.

Real auditd, runner and intake; local stand-ins for the Okta API, the Microsoft login endpoint
and Microsoft Graph, reached through ctx.http (so through the runner's SSRF guard, with
SSRF_ALLOWED_HOSTS=localhost). The stand-ins check every request (method, path, auth header,
body) and answer like the real APIs. Checks: the 9 are seeded once (migrating again, even
re-running 0008, adds none); is_active follows the configuration at intake start; the approval
gate applies (approval_mode always: pending, no call; approved over REST: the run executes and
the stand-in sees the call); every Okta and Entra action; an unknown user → a failed run with
the HTTP status; no configuration → "... integration is not configured"; the clients' requests
go through the runner's SSRF guard (a metadata or loopback address is refused); a user workflow and a
built-in whose code a user replaced see ctx.integrations.okta/entra None; no token or secret in
any run record, activity event, audit line or process log.
"""
import glob
import json
import os
import time
import urllib.parse

from harness import BIN, Stack, assert_eq, run_tests
from standin import StandIn

SERVICES = ("auditd", "runner", "intake")
OKTA_TOKEN = "okta-ssws-bi-7c1f00d2e9"
ENTRA_TENANT = "tenant-bi-0042"
ENTRA_CLIENT = "client-bi-0099"
ENTRA_SECRET = "entra-secret-bi-5e5e77aa"
ENTRA_ACCESS = "graph-access-bi-31d4c0ffee"
SECRETS = (OKTA_TOKEN, ENTRA_SECRET, ENTRA_ACCESS)
ALICE = "alice@example.com"
NOBODY = "nobody@example.com"
OKTA_IDS = {ALICE: "00ualice0001"}
ENTRA_USERS = {ALICE}

OKTA_NAMES = ["Okta — Revoke All Sessions", "Okta — Suspend User", "Okta — Unsuspend User",
              "Okta — Reset Password", "Okta — Force Password Expiry"]
ENTRA_NAMES = ["Entra — Revoke Sign-in Sessions", "Entra — Disable Account",
               "Entra — Enable Account", "Entra — Force MFA Re-registration"]
RISK = {"Okta — Revoke All Sessions": "low", "Okta — Suspend User": "high",
        "Okta — Unsuspend User": "medium", "Okta — Reset Password": "medium",
        "Okta — Force Password Expiry": "low", "Entra — Revoke Sign-in Sessions": "low",
        "Entra — Disable Account": "high", "Entra — Enable Account": "medium",
        "Entra — Force MFA Re-registration": "high"}

MFA_METHODS = [
    {"@odata.type": "#microsoft.graph.passwordAuthenticationMethod", "id": "pw-0001"},
    {"@odata.type": "#microsoft.graph.phoneAuthenticationMethod", "id": "ph-0002"},
    {"@odata.type": "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod", "id": "ma-0003"},
    {"@odata.type": "#microsoft.graph.fido2AuthenticationMethod", "id": "fi-0004"},
]


class IdentityAPIs(StandIn):
    """/okta/api/v1/... (Okta), /login/{tenant}/oauth2/v2.0/token, /graph/v1.0/... (Graph).
    Every request is recorded as (method, path, query, auth, body) with problems, if any."""

    def __init__(self):
        self.seen = []
        self.problems = []
        super().__init__(self.answer)

    def _reply(self, status, obj=None):
        return status, (b"" if obj is None else obj)

    def answer(self, req):
        u = urllib.parse.urlsplit(req.path)
        rec = {"method": req.method, "path": u.path, "query": u.query,
               "auth": req.h("Authorization") or "", "body": req.body.decode("utf-8", "replace"),
               "ctype": req.h("Content-Type") or ""}
        with self.lock:
            self.seen.append(rec)
        if u.path.startswith("/okta/api/v1/"):
            return self._okta(rec, u.path[len("/okta/api/v1"):])
        if u.path.startswith("/login/"):
            return self._login(rec, u.path[len("/login"):])
        if u.path.startswith("/graph/v1.0/"):
            return self._graph(rec, u.path[len("/graph/v1.0"):])
        self._problem(rec, "unexpected path")
        return self._reply(404, {"error": "no such path"})

    def _problem(self, rec, what):
        with self.lock:
            self.problems.append((what, rec))

    def _okta(self, rec, path):
        if rec["auth"] != "SSWS " + OKTA_TOKEN:
            self._problem(rec, "bad Okta auth")
            return self._reply(401, {"errorCode": "E0000011", "errorSummary": "Invalid token"})
        parts = path.split("/")  # ['', 'users', x, ...]
        if len(parts) < 3 or parts[1] != "users":
            self._problem(rec, "unexpected Okta path")
            return self._reply(404, {"errorCode": "E0000022"})
        if len(parts) == 3 and rec["method"] == "GET":
            login = urllib.parse.unquote(parts[2])
            if login not in OKTA_IDS:
                return self._reply(404, {"errorCode": "E0000007",
                                         "errorSummary": "Not found: Resource not found: %s (User)" % login})
            return self._reply(200, {"id": OKTA_IDS[login], "status": "ACTIVE",
                                     "profile": {"login": login}})
        uid = parts[2]
        if uid not in OKTA_IDS.values():
            self._problem(rec, "Okta action on an unresolved id")
            return self._reply(404, {"errorCode": "E0000007"})
        rest = "/".join(parts[3:])
        if rec["method"] == "DELETE" and rest == "sessions":
            return self._reply(204)
        if rec["method"] == "POST" and rest in ("lifecycle/suspend", "lifecycle/unsuspend"):
            return self._reply(200, {})
        if rec["method"] == "POST" and rest == "lifecycle/reset_password":
            if rec["query"] != "sendEmail=true":
                self._problem(rec, "reset_password without sendEmail=true")
            return self._reply(200, {})  # Okta answers {} when it e-mails the link
        if rec["method"] == "POST" and rest == "lifecycle/expire_password":
            return self._reply(200, {"id": uid, "status": "PASSWORD_EXPIRED"})
        self._problem(rec, "unexpected Okta call")
        return self._reply(404, {"errorCode": "E0000022"})

    def _login(self, rec, path):
        if rec["method"] != "POST" or path != "/%s/oauth2/v2.0/token" % ENTRA_TENANT:
            self._problem(rec, "unexpected login call")
            return self._reply(400, {"error": "invalid_request"})
        form = urllib.parse.parse_qs(rec["body"])
        want = {"grant_type": ["client_credentials"], "client_id": [ENTRA_CLIENT],
                "client_secret": [ENTRA_SECRET], "scope": ["https://graph.microsoft.com/.default"]}
        if form != want or not rec["ctype"].startswith("application/x-www-form-urlencoded"):
            self._problem(rec, "bad token request")
            return self._reply(401, {"error": "invalid_client"})
        return self._reply(200, {"token_type": "Bearer", "expires_in": 3599,
                                 "access_token": ENTRA_ACCESS})

    def _graph(self, rec, path):
        if rec["auth"] != "Bearer " + ENTRA_ACCESS:
            self._problem(rec, "bad Graph auth")
            return self._reply(401, {"error": {"code": "InvalidAuthenticationToken"}})
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "users":
            self._problem(rec, "unexpected Graph path")
            return self._reply(400, {"error": {"code": "BadRequest"}})
        user = urllib.parse.unquote(parts[2])
        if user not in ENTRA_USERS:
            return self._reply(404, {"error": {"code": "Request_ResourceNotFound",
                                               "message": "Resource '%s' does not exist" % user}})
        rest = "/".join(parts[3:])
        m = rec["method"]
        if m == "POST" and rest == "revokeSignInSessions":
            return self._reply(200, {"value": True})
        if m == "PATCH" and rest == "":
            try:
                b = json.loads(rec["body"])
            except ValueError:
                b = None
            if b not in ({"accountEnabled": False}, {"accountEnabled": True}) or \
                    not rec["ctype"].startswith("application/json"):
                self._problem(rec, "bad PATCH body")
                return self._reply(400, {"error": {"code": "BadRequest"}})
            return self._reply(204)
        if m == "GET" and rest == "authentication/methods":
            return self._reply(200, {"value": MFA_METHODS})
        if m == "DELETE" and rest in ("authentication/phoneMethods/ph-0002",
                                      "authentication/microsoftAuthenticatorMethods/ma-0003",
                                      "authentication/fido2Methods/fi-0004"):
            return self._reply(204)
        self._problem(rec, "unexpected Graph call")
        return self._reply(400, {"error": {"code": "BadRequest"}})


CURRENT = [None]  # the stand-in of the test in progress


def standin():
    CURRENT[0] = IdentityAPIs()
    return CURRENT[0], CURRENT[0].port


def configured_env(port):
    return {"OKTA_DOMAIN": "bi-test.okta.example", "OKTA_API_TOKEN": OKTA_TOKEN,
            "OKTA_BASE_URL": "http://localhost:%d/okta/api/v1" % port,
            "ENTRA_TENANT_ID": ENTRA_TENANT, "ENTRA_CLIENT_ID": ENTRA_CLIENT,
            "ENTRA_CLIENT_SECRET": ENTRA_SECRET,
            "ENTRA_LOGIN_URL": "http://localhost:%d/login" % port,
            "ENTRA_GRAPH_URL": "http://localhost:%d/graph/v1.0" % port,
            "SSRF_ALLOWED_HOSTS": "localhost",
            "RATE_LIMIT_WORKFLOW_EXECUTE_PER_MINUTE": 100000}


def add_accounts(s):
    for v in (ALICE, NOBODY):
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen, malice) VALUES "
              "('account', '%s', now(), now(), 'Pending') ON CONFLICT DO NOTHING" % v)


def builtins(s):
    rows = s.sql("SELECT name, uuid, is_active::text, state, approval_mode, risk_level, "
                 "timeout_seconds, array_to_json(indicator_types)::text, workflow_type "
                 "FROM workflows WHERE is_system ORDER BY name")
    return {r[0]: r[1:] for r in rows}


def wait_active(s, okta, entra, timeout=15):
    want = {n: ("true" if (n in OKTA_NAMES and okta) or (n in ENTRA_NAMES and entra) else "false")
            for n in OKTA_NAMES + ENTRA_NAMES}
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = {n: v[1] for n, v in builtins(s).items()}
        if got == want:
            return
        time.sleep(0.1)
    raise AssertionError("is_active %r != %r" % (got, want))


def wait_run(s, run_uuid, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = s.sql("SELECT status, result::text, coalesce(log_output, '') FROM workflow_runs "
                    "WHERE uuid = '%s'" % run_uuid)
        if row and row[0][0] not in ("queued", "running"):
            return row[0][0], json.loads(row[0][1]), row[0][2]
        time.sleep(0.1)
    raise AssertionError("run %s did not finish\n%s" % (run_uuid, s.logs()))


def execute_approved(s, k, wf_uuid, account):
    """Execute (gated: pending, no run, no call), approve over REST; the finished run."""
    before = len(CURRENT[0].seen)
    r = s.request("POST", "/v1/workflows/%s/execute" % wf_uuid, key=k,
                  body={"indicator_type": "account", "indicator_value": account})
    assert_eq(r.status, 202, r.body)
    d = r.json()["data"]
    assert_eq(d["status"], "pending_approval", d)
    time.sleep(0.3)
    assert_eq(len(CURRENT[0].seen), before, "a call before approval")
    assert_eq(s.sql_value("SELECT count(*) FROM workflow_runs r JOIN workflows w ON "
                          "w.id = r.workflow_id WHERE w.uuid = '%s' AND r.status IN "
                          "('queued', 'running')" % wf_uuid), "0")
    r = s.request("POST", "/v1/workflow-approvals/%s/approve" % d["approval_request_uuid"],
                  key=k, body={})
    assert_eq(r.status, 200, r.body)
    return wait_run(s, r.json()["data"]["workflow_run_uuid"])


def calls_since(n):
    return [(c["method"], c["path"], c["query"]) for c in CURRENT[0].seen[n:]]


def assert_no_secret(s):
    """No token or client secret anywhere a user or an operator could read."""
    texts = ["\n".join("\t".join(r) for r in s.sql(
        "SELECT coalesce(result::text, ''), coalesce(log_output, ''), "
        "coalesce(trigger_context::text, '') FROM workflow_runs"))]
    texts.append("\n".join(r[0] for r in s.sql("SELECT row_to_json(a)::text FROM activity_events a")))
    texts.append("\n".join(r[0] for r in s.sql("SELECT row_to_json(w)::text FROM workflows w")))
    has_audit = s.sql_value("SELECT to_regclass('audit_events') IS NOT NULL")
    if has_audit == "t":
        texts.append("\n".join(r[0] for r in s.sql("SELECT row_to_json(a)::text FROM audit_events a")))
    for p in s.procs:
        texts.append(p.text())
    for f in glob.glob(os.path.join(s.data_dir, "**", "*"), recursive=True):
        if os.path.isfile(f):
            with open(f, "rb") as fh:
                texts.append(fh.read().decode("utf-8", "replace"))
    blob = "\n".join(texts)
    for sec in SECRETS:
        assert sec not in blob, "secret %r leaked" % sec


# ---- tests -----------------------------------------------------------------------------------

def test_seeded_once_and_is_active_follows_configuration():
    s = Stack("bi_seed", services=("auditd", "intake"))
    try:
        b = builtins(s)
        assert_eq(sorted(b), sorted(OKTA_NAMES + ENTRA_NAMES))
        for name, (_, active, state, mode, risk, timeout, types, wtype) in b.items():
            assert_eq((state, mode, risk, timeout, json.loads(types), wtype),
                      ("active", "always", RISK[name], "60", ["account"], "indicator"), name)
        wait_active(s, False, False)
        # migrating again adds nothing; even re-running 0008 inserts no duplicate, changes none
        r = s.cli("migrate")
        assert "0 applied" in r.stdout + r.stderr, r.stdout + r.stderr
        s.sql("UPDATE workflows SET risk_level = 'critical' WHERE name = 'Okta — Suspend User'")
        s.sql("DELETE FROM schema_migrations WHERE version = '0008'")
        r = s.cli("migrate")
        assert "0008" in r.stdout + r.stderr, r.stdout + r.stderr
        assert_eq(s.sql_value("SELECT count(*) FROM workflows WHERE is_system"), "9")
        assert_eq(s.sql_value("SELECT risk_level FROM workflows WHERE name = "
                              "'Okta — Suspend User'"), "critical")  # insert only
        # every seeded code passes the runner's validator (it is checked again at run time);
        # the intake asks workflowd, which asks a runner
        s.start("runner")
        s.start("workflowd")
        k = s.create_key("admin")
        for name, v in builtins(s).items():
            code = json.loads(s.sql_value("SELECT to_json(code)::text FROM workflows "
                                          "WHERE uuid = '%s'" % v[0]))
            for _ in range(50):
                r = s.request("POST", "/v1/workflows", key=k, body={
                    "name": "copy of " + name, "code": code, "indicator_types": ["account"]})
                if r.status != 503:
                    break
                time.sleep(0.2)
            assert_eq(r.status, 201, (name, r.body))
        # intake restarts with Okta only, then with both, then with an incomplete Entra
        for env, okta, entra in (
                ({"OKTA_DOMAIN": "x.okta.example", "OKTA_API_TOKEN": OKTA_TOKEN}, True, False),
                (dict(configured_env(1)), True, True),
                ({"OKTA_DOMAIN": "x.okta.example", "ENTRA_TENANT_ID": "t",
                  "ENTRA_CLIENT_ID": "c"}, False, False)):
            for p in list(s.intakes):
                p.stop()
                s.intakes.remove(p)
            s.start_intake(env)
            s.wait_healthy()
            wait_active(s, okta, entra)
    finally:
        s.stop()


def test_not_configured_fails_clearly():
    srv, port = standin()
    s = Stack("bi_unconf", services=SERVICES)
    try:
        k = s.create_key("admin")
        add_accounts(s)
        b = builtins(s)
        wait_active(s, False, False)
        # executable anyway (execute checks state only), and it fails clearly
        for name in ("Okta — Suspend User", "Entra — Disable Account"):
            st, res, _ = execute_approved(s, k, b[name][0], ALICE)
            assert_eq(st, "failed", res)
            assert "integration is not configured" in res["message"], res
            assert_eq(res["data"], {"account": ALICE})
        assert_eq(CURRENT[0].seen, [])
    finally:
        s.stop()
        srv.close()


def test_builtins_call_the_apis():
    srv, port = standin()
    s = Stack("bi_calls", services=SERVICES, env=configured_env(port))
    try:
        k = s.create_key("admin")
        add_accounts(s)
        wait_active(s, True, True)
        b = builtins(s)
        uid = OKTA_IDS[ALICE]
        lookup = ("GET", "/okta/api/v1/users/alice%40example.com", "")
        okta_expect = {
            "Okta — Revoke All Sessions": ("DELETE", "/okta/api/v1/users/%s/sessions" % uid, ""),
            "Okta — Suspend User": ("POST", "/okta/api/v1/users/%s/lifecycle/suspend" % uid, ""),
            "Okta — Unsuspend User": ("POST", "/okta/api/v1/users/%s/lifecycle/unsuspend" % uid, ""),
            "Okta — Reset Password": ("POST", "/okta/api/v1/users/%s/lifecycle/reset_password" % uid,
                                      "sendEmail=true"),
            "Okta — Force Password Expiry": ("POST", "/okta/api/v1/users/%s/lifecycle/expire_password"
                                             % uid, ""),
        }
        for name, call in okta_expect.items():
            n = len(CURRENT[0].seen)
            st, res, _ = execute_approved(s, k, b[name][0], ALICE)
            assert_eq((st, res["data"]), ("success", {"account": ALICE}), (name, res))
            assert ALICE in res["message"], res
            assert_eq(calls_since(n), [lookup, call], name)
        g = "/graph/v1.0/users/alice%40example.com"
        token = ("POST", "/login/%s/oauth2/v2.0/token" % ENTRA_TENANT, "")
        entra_expect = {
            "Entra — Revoke Sign-in Sessions": [("POST", g + "/revokeSignInSessions", "")],
            "Entra — Disable Account": [("PATCH", g, "")],
            "Entra — Enable Account": [("PATCH", g, "")],
            "Entra — Force MFA Re-registration": [
                ("GET", g + "/authentication/methods", ""),
                ("DELETE", g + "/authentication/phoneMethods/ph-0002", ""),
                ("DELETE", g + "/authentication/microsoftAuthenticatorMethods/ma-0003", ""),
                ("DELETE", g + "/authentication/fido2Methods/fi-0004", "")],
        }
        for name, calls in entra_expect.items():
            n = len(CURRENT[0].seen)
            st, res, _ = execute_approved(s, k, b[name][0], ALICE)
            assert_eq((st, res["data"]), ("success", {"account": ALICE}), (name, res))
            assert_eq(calls_since(n), [token] + calls, name)  # one token per run, then reused
            if name.endswith("Account"):
                want = {"accountEnabled": name.endswith("Enable Account")}
                assert_eq(json.loads(CURRENT[0].seen[n + 1]["body"]), want)
        # an unknown user: a failed run with the HTTP status
        n = len(CURRENT[0].seen)
        st, res, _ = execute_approved(s, k, b["Okta — Suspend User"][0], NOBODY)
        assert_eq(st, "failed", res)
        assert "404" in res["message"] and NOBODY in res["message"], res
        assert_eq(res["data"], {"account": NOBODY})
        assert_eq(calls_since(n), [("GET", "/okta/api/v1/users/nobody%40example.com", "")])
        st, res, _ = execute_approved(s, k, b["Entra — Disable Account"][0], NOBODY)
        assert_eq(st, "failed", res)
        assert "404" in res["message"], res
        assert_eq(CURRENT[0].problems, [])
        assert_no_secret(s)
    finally:
        s.stop()
        srv.close()


def test_integration_calls_go_through_the_ssrf_guard():
    env = configured_env(1)
    env["OKTA_BASE_URL"] = "http://169.254.169.254/api/v1"  # the metadata address: refused
    env["ENTRA_LOGIN_URL"] = "http://127.0.0.1:1/login"     # loopback by address: refused
    s = Stack("bi_ssrf", services=SERVICES, env=env)
    try:
        k = s.create_key("admin")
        add_accounts(s)
        wait_active(s, True, True)
        b = builtins(s)
        for name in ("Okta — Revoke All Sessions", "Entra — Enable Account"):
            st, res, _ = execute_approved(s, k, b[name][0], ALICE)
            assert_eq(st, "failed", res)
            assert "blocked by SSRF guard" in res["message"], res
            assert "integration is not configured" not in res["message"], res
        assert_no_secret(s)
    finally:
        s.stop()


USER_PROBE = (
    "from calseta.workflows import WorkflowResult\n"
    "async def run(ctx):\n"
    "    i = ctx.integrations\n"
    "    return WorkflowResult.ok('probe', {'okta': repr(i.okta), 'entra': repr(i.entra),\n"
    "        'secrets': [ctx.secrets.get(n) for n in ('OKTA_API_TOKEN', 'ENTRA_CLIENT_SECRET',\n"
    "                                                 'OKTA_DOMAIN')]})\n")


def test_user_workflows_never_get_credentials():
    srv, port = standin()
    s = Stack("bi_user", services=SERVICES, env=configured_env(port))
    try:
        k = s.create_key("admin")
        add_accounts(s)
        wait_active(s, True, True)
        r = s.request("POST", "/v1/workflows", key=k, body={
            "name": "probe", "code": USER_PROBE, "state": "active", "approval_mode": "never",
            "indicator_types": ["account"]})
        assert_eq(r.status, 201, r.body)
        r = s.request("POST", "/v1/workflows/%s/execute" % r.json()["data"]["uuid"], key=k,
                      body={"indicator_type": "account", "indicator_value": ALICE})
        assert_eq(r.status, 202, r.body)
        st, res, _ = wait_run(s, r.json()["data"]["run_uuid"])
        assert_eq((st, res["data"]), ("success", {"okta": "None", "entra": "None",
                                                  "secrets": [None, None, None]}), res)
        # a built-in whose code a user replaced is a user workflow: no credentials either
        b = builtins(s)
        u = b["Okta — Revoke All Sessions"][0]
        r = s.request("PATCH", "/v1/workflows/%s" % u, key=k, body={"code": USER_PROBE})
        assert_eq(r.status, 200, r.body)
        st, res, _ = execute_approved(s, k, u, ALICE)
        assert_eq((st, res["data"]["okta"], res["data"]["entra"]), ("success", "None", "None"),
                  res)
        # the untouched built-ins still get their own integration only
        n = len(CURRENT[0].seen)
        st, res, _ = execute_approved(s, k, b["Okta — Suspend User"][0], ALICE)
        assert_eq(st, "success", res)
        assert all(c["path"].startswith("/okta/") for c in CURRENT[0].seen[n:]), CURRENT[0].seen[n:]
        # /test runs a synthetic indicator with no credentials
        r = s.request("POST", "/v1/workflows/%s/test" % b["Entra — Disable Account"][0], key=k,
                      body={"indicator_type": "account", "indicator_value": ALICE})
        assert_eq(r.status, 200, r.body)
        assert "integration is not configured" in r.json()["data"]["message"], r.body
        assert_eq(CURRENT[0].problems, [])
        assert_no_secret(s)
    finally:
        s.stop()
        srv.close()


if __name__ == "__main__":
    run_tests(globals())
