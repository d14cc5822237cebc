"""The MCP server through the official TypeScript SDK (@modelcontextprotocol/sdk), over
Streamable HTTP and the legacy SSE transport: initialize, every resource, every tool (success
and failure), scope refusal, the _meta.client_id spoof, unknown/expired/revoked keys (revoked in
the middle of a session) and an oversized message. The SDK is installed into
tests/integration/node/node_modules when missing; a failed install fails the test."""
import json
import os
import subprocess
import tempfile

from harness import Stack, assert_eq, run_tests

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


def ensure_sdk():
    if os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@modelcontextprotocol", "sdk")):
        return
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise AssertionError("npm install of the MCP SDK failed:\n%s\n%s" % (r.stdout, r.stderr))


def fixtures(s):
    admin = s.create_key("admin", name="admin")
    reader = s.create_key("alerts:read", name="reader")
    revokable = s.create_key("alerts:read", name="revokable")
    expired = s.create_key("alerts:read", name="expired")
    s.sql("UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE key_prefix = '%s'" % expired[:8])
    r = s.request("POST", "/v1/ingest/generic", key=admin,
                  body={"title": "SSH brute force", "severity": "high", "src_ip": "203.0.113.5"})
    assert_eq(r.status, 202, r.body)
    alert = r.json()["data"]["alert_uuid"]
    rule = s.sql_value(
        "INSERT INTO detection_rules (name, source_name, severity, mitre_tactics, documentation) "
        "VALUES ('Brute force', 'generic', 'High', '{TA0006}', repeat('Detects repeated failures. ', 20)) "
        "RETURNING uuid")
    s.sql("UPDATE alerts SET detection_rule_id = (SELECT id FROM detection_rules WHERE uuid = '%s') "
          "WHERE uuid = '%s'" % (rule, alert))
    doc = s.sql_value(
        "INSERT INTO context_documents (title, document_type, is_global, content) "
        "VALUES ('Global runbook', 'runbook', true, 'Escalate brute force.') RETURNING uuid")
    s.sql("INSERT INTO context_documents (title, document_type, is_global, targeting_rules, content) "
          "VALUES ('Sentinel only', 'sop', false, '{\"match_all\":[{\"field\":\"source_name\",\"op\":\"eq\",\"value\":\"sentinel\"}]}', 'x')")
    workflow = s.sql_value(
        "INSERT INTO workflows (name, workflow_type, indicator_types, code, state, approval_mode) "
        "VALUES ('Block IP', 'containment', '{ip}', 'async def run(ctx):\n    return None\n', "
        "'active', 'always') RETURNING uuid")
    indicator = s.sql_value(
        "INSERT INTO indicators (type, value, first_seen, last_seen) VALUES ('ip', '198.51.100.77', now(), now()) "
        "RETURNING uuid")
    s.sql("INSERT INTO alert_indicators (alert_id, indicator_id) SELECT a.id, i.id FROM alerts a, indicators i "
          "WHERE a.uuid = '%s' AND i.uuid = '%s'" % (alert, indicator))
    key_uuid = s.sql_value("SELECT uuid FROM api_keys WHERE key_prefix = '%s'" % revokable[:8])
    return {"admin": admin, "reader": reader, "revokable": revokable, "expired": expired,
            "alert": alert, "rule": rule, "doc": doc, "workflow": workflow, "indicator": indicator,
            "revoke_url": "http://127.0.0.1:%d/v1/api-keys/%s" % (s.port, key_uuid)}


def run_sdk(kind):
    ensure_sdk()
    s = Stack("mcp_sdk_" + kind, env={"RATE_LIMIT_DEFAULT_PER_MINUTE": "1000"})
    try:
        fx = fixtures(s)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(fx, f)
            path = f.name
        try:
            r = subprocess.run(["node", os.path.join(NODE_DIR, "mcp_sdk_check.mjs"),
                                "http://127.0.0.1:%d" % s.port, kind, path],
                               cwd=NODE_DIR, capture_output=True, text=True, timeout=90)
        finally:
            os.unlink(path)
        lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        if r.returncode != 0 or not lines or lines[-1].get("msg") != "done":
            raise AssertionError("SDK check failed (%d):\n%s\n%s\n%s" % (
                r.returncode, r.stdout[-4000:], r.stderr[-3000:], s.logs()[-3000:]))
        assert len(lines) > 50, len(lines)
        # The finding posted through MCP is visible through REST.
        r = s.request("GET", "/v1/alerts/%s/findings" % fx["alert"], key=fx["admin"])
        items = r.json()["data"]
        assert_eq([i["summary"] for i in items], ["Looks like brute force"])
        assert_eq(s.sql_value("SELECT actor_type FROM activity_events WHERE event_type = 'alert_finding_added'"), "mcp")
        # Events only on change: malice set then reset = 2 events, status once.
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE event_type = 'alert_status_updated'"), "1")
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE event_type = 'alert_malice_updated'"), "2")
    finally:
        s.stop()


def test_sdk_streamable_http():
    run_sdk("streamable")


def test_sdk_legacy_sse():
    run_sdk("sse")


if __name__ == "__main__":
    run_tests(globals())
