"""test_agents_api.py - /v1/agents registrations: CRUD, validation, secrets at rest.

Create/get/list/patch/delete with the original's ranges and messages; the header pair rule on
PATCH is a 400 (the original answered 500); trigger_filter is validated like context-document
targeting rules at save time; header names that would replace Host, Content-Type,
Content-Length or the X-Calseta-* headers are refused; the endpoint goes through the SSRF guard
(metadata and, without the test setting, loopback refused); the header value and the signing
secret are stored only as Fernet tokens (the secret is shown once: create and rotate-secret),
never returned, never in the data directory or logs; 401/403/404/422 cases; ENCRYPTION_KEY
unset → 400 ENCRYPTION_NOT_CONFIGURED.
"""
import base64
import os
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, assert_eq, run_tests  # noqa: E402

KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
HEADER_VALUE = "agent-header-secret-5b1e77c9"
S = {}


def setup():
    if "stack" not in S:
        st = Stack("agentsapi", env={"ENCRYPTION_KEY": KEY, "AGENT_WEBHOOK_ALLOW_LOOPBACK": "true"})
        S["stack"] = st
        S["admin"] = st.create_key("admin")
        S["reader"] = st.create_key("agents:read", name="reader")
        S["alerts"] = st.create_key("alerts:read,alerts:write", name="alerts")
    return S["stack"], S["admin"]


def body(**kw):
    b = {"name": "triage-bot", "endpoint_url": "http://127.0.0.1:9/hook"}
    b.update(kw)
    return b


def decrypt(token):
    raw = base64.urlsafe_b64decode(token)
    key = base64.urlsafe_b64decode(KEY)
    iv, ct = raw[9:25], raw[25:-32]
    return subprocess.run(["openssl", "enc", "-d", "-aes-128-cbc", "-K", key[16:].hex(), "-iv", iv.hex()],
                          input=ct, capture_output=True, check=True).stdout.decode()


def test_crud():
    st, admin = setup()
    r = st.request("POST", "/v1/agents", key=admin, body=body(
        auth_header_name="X-Agent-Token", auth_header_value=HEADER_VALUE,
        trigger_on_sources=["sentinel"], trigger_on_severities=["High"],
        trigger_filter={"match_any": [{"field": "tags", "op": "contains", "value": "tor"}]},
        timeout_seconds=5, retry_count=2, documentation="doc"))
    assert_eq(r.status, 201, r.body)
    d = r.json()["data"]
    secret = d.pop("webhook_secret")
    assert secret.startswith("whsec_") and len(secret) == 49, secret
    assert "auth_header_value" not in r.body.decode() and HEADER_VALUE not in r.body.decode()
    assert_eq((d["name"], d["auth_header_name"], d["timeout_seconds"], d["retry_count"], d["is_active"]),
              ("triage-bot", "X-Agent-Token", 5, 2, True))
    u = d["uuid"]
    enc_value, enc_secret = st.sql("SELECT auth_header_value_encrypted, webhook_secret_encrypted "
                                   "FROM agent_registrations WHERE uuid = '%s'" % u)[0]
    assert enc_value.startswith("gAAAAA") and decrypt(enc_value) == HEADER_VALUE
    assert_eq(decrypt(enc_secret), secret)
    r = st.request("GET", "/v1/agents/" + u, key=S["reader"])
    assert_eq(r.status, 200)
    assert "webhook_secret" not in r.json()["data"] and HEADER_VALUE not in r.body.decode()
    r = st.request("GET", "/v1/agents", key=S["reader"])
    assert_eq((r.status, r.json()["meta"]["total"]), (200, 1))
    r = st.request("PATCH", "/v1/agents/" + u, key=admin, body={"name": "bot2", "description": None,
                                                                "trigger_on_sources": []})
    assert_eq(r.status, 200, r.body)
    assert_eq((r.json()["data"]["name"], r.json()["data"]["trigger_on_sources"]), ("bot2", []))
    # rotate: a new secret, the old one kept for the overlap
    r = st.request("POST", "/v1/agents/%s/rotate-secret" % u, key=admin)
    assert_eq(r.status, 200, r.body)
    new = r.json()["data"]["webhook_secret"]
    assert new != secret and r.json()["data"]["previous_secret_expires_at"]
    cur, prev = st.sql("SELECT webhook_secret_encrypted, previous_webhook_secret_encrypted FROM "
                       "agent_registrations WHERE uuid = '%s'" % u)[0]
    assert_eq((decrypt(cur), decrypt(prev)), (new, secret))
    r = st.request("GET", "/v1/agents/%s/runs" % u, key=S["reader"])
    assert_eq((r.status, r.json()["data"]), (200, []))
    r = st.request("DELETE", "/v1/agents/" + u, key=admin)
    assert_eq(r.status, 204)
    for m, p in [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/rotate-secret"), ("GET", "/runs"),
                 ("POST", "/test")]:
        r = st.request(m, "/v1/agents/%s%s" % (u, p), key=admin, body={"name": "x"} if m == "PATCH" else None)
        assert_eq((r.status, r.json()["error"]["message"]), (404, "Agent not found."), (m, p))
    # secrets never in the data directory or the logs
    logs = st.logs() + "".join(p.text() for p in st.procs)
    for s in (HEADER_VALUE, secret, new):
        assert s not in logs
        out = subprocess.run(["grep", "-rl", s, st.data_dir], capture_output=True, text=True)
        assert_eq(out.stdout, "", s)


def test_validation():
    st, admin = setup()
    before = st.sql_value("SELECT count(*) FROM agent_registrations")
    cases = [
        (body(name=""), "name"),
        ({"endpoint_url": "http://127.0.0.1:9/"}, "name"),
        (body(timeout_seconds=0), "timeout_seconds"),
        (body(timeout_seconds=301), "timeout_seconds"),
        (body(retry_count=11), "retry_count"),
        (body(auth_header_name="X-A"), "auth_header_name"),
        (body(auth_header_value="v"), "auth_header_name"),
        (body(auth_header_name="Host", auth_header_value="evil"), "auth_header_name"),
        (body(auth_header_name="content-length", auth_header_value="1"), "auth_header_name"),
        (body(auth_header_name="X-Calseta-Signature", auth_header_value="sha256=0"), "auth_header_name"),
        (body(auth_header_name="Bad Name", auth_header_value="v"), "auth_header_name"),
        (body(auth_header_name="X-A", auth_header_value="a\r\nX-Injected: 1"), "auth_header_value"),
        (body(trigger_filter={"match_any": ["x"]}), "trigger_filter"),
        (body(trigger_filter={"match_any": [{"field": "title", "op": "eq", "value": 1}]}), "trigger_filter"),
        (body(trigger_filter=[]), "trigger_filter"),
        (body(trigger_on_sources="sentinel"), "trigger_on_sources"),
        (body(is_active="yes"), "is_active"),
    ]
    for b, field in cases:
        r = st.request("POST", "/v1/agents", key=admin, body=b)
        assert_eq(r.status, 422, (b, r.body))
        assert_eq(r.json()["error"]["details"]["errors"][0]["loc"][1], field, r.body)
    r = st.request("POST", "/v1/agents", key=admin, body=b"{oops", headers={"Content-Type": "application/json"})
    assert_eq(r.status, 422)
    for url, why in [("http://169.254.169.254/latest", "metadata"), ("ftp://example.com/", "scheme"),
                     ("http://metadata.google.internal/", "metadata"), ("http://10.0.0.1/", "private")]:
        r = st.request("POST", "/v1/agents", key=admin, body=body(endpoint_url=url))
        assert_eq((r.status, r.json()["error"]["code"]), (400, "INVALID_ENDPOINT_URL"), url)
        assert r.json()["error"]["message"].startswith("endpoint_url blocked by SSRF protection: ")
    assert_eq(st.sql_value("SELECT count(*) FROM agent_registrations"), before)
    # PATCH: the pair rule is a 400 and changes nothing
    r = st.request("POST", "/v1/agents", key=admin, body=body())
    u = r.json()["data"]["uuid"]
    r = st.request("PATCH", "/v1/agents/" + u, key=admin, body={"auth_header_name": "X-Only"})
    assert_eq((r.status, r.json()["error"]["code"]), (400, "VALIDATION_ERROR"), r.body)
    r = st.request("PATCH", "/v1/agents/" + u, key=admin, body={"auth_header_value": "only"})
    assert_eq(r.status, 400, r.body)
    assert_eq(st.sql_value("SELECT auth_header_value_encrypted IS NULL FROM agent_registrations "
                           "WHERE uuid = '%s'" % u), "t")
    r = st.request("PATCH", "/v1/agents/" + u, key=admin, body={"auth_header_name": "X-K", "auth_header_value": "v"})
    assert_eq(r.status, 200, r.body)
    r = st.request("PATCH", "/v1/agents/" + u, key=admin, body={"auth_header_value": "v2"})
    assert_eq(r.status, 200, r.body)
    r = st.request("PATCH", "/v1/agents/" + u, key=admin, body={"trigger_filter": {"match_all": "x"}})
    assert_eq(r.status, 422)
    r = st.request("PATCH", "/v1/agents/" + u, key=admin, body={"endpoint_url": "http://169.254.169.254/"})
    assert_eq(r.status, 400)
    r = st.request("PATCH", "/v1/agents/" + u, key=admin, body={"name": ""})
    assert_eq(r.status, 422)
    r = st.request("GET", "/v1/agents/nope", key=admin)
    assert_eq(r.status, 422)


def test_auth():
    st, admin = setup()
    assert_eq(st.request("GET", "/v1/agents").status, 401)
    assert_eq(st.request("GET", "/v1/agents", key=S["alerts"]).status, 403)
    assert_eq(st.request("POST", "/v1/agents", key=S["reader"], body=body()).status, 403)
    r = st.request("POST", "/v1/alerts/%s/trigger-agents" % uuid.uuid4(), key=S["reader"])
    assert_eq(r.status, 403)


def test_loopback_refused_without_setting_and_no_key():
    st = Stack("agentsnokey", env={"ENCRYPTION_KEY": ""})
    try:
        k = st.create_key("agents:write")
        r = st.request("POST", "/v1/agents", key=k, body=body(endpoint_url="http://127.0.0.1:9/"))
        assert_eq((r.status, r.json()["error"]["code"]), (400, "INVALID_ENDPOINT_URL"))
        r = st.request("POST", "/v1/agents", key=k, body=body(endpoint_url="http://localhost:9/"))
        assert_eq(r.status, 400)
        r = st.request("POST", "/v1/agents", key=k, body=body(endpoint_url="https://93.184.216.34/"))
        assert_eq((r.status, r.json()["error"]["code"]), (400, "ENCRYPTION_NOT_CONFIGURED"))
    finally:
        st.stop()


def test_zz_teardown():
    S.pop("stack").stop()


if __name__ == "__main__":
    run_tests(globals())
