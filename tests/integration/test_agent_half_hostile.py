#!/usr/bin/env python3
"""test_agent_half_hostile.py - hostile input against the routes agents use: agent registrations
and their test delivery, findings, context documents, detection rules, the catalogue (indicator
mappings, sources, indicators) and MCP.

- Every create/patch route answers malformed JSON, non-objects, bad UTF-8, NUL, deep nesting,
  wrong types, unknown enum values, non-ASCII and overlong strings, and an 11 MB body with the
  reference's status and error code, never a 5xx, and creates nothing from a refused body.
- Out-of-range, malformed and unknown list parameters, and manual dispatch with a missing,
  malformed or unknown agent, an unknown alert or an inactive agent, answer their 4xx.
- Missing, malformed, overlong, unknown, expired and revoked keys and a missing scope answer
  401/403 with their codes on each of those routes.
- MCP tools/call and resources/read with wrong types, unknown names and oversized values answer
  JSON-RPC errors on a live session.
- An answer that comes after a drain closed its connection (a test delivery that waits for a
  dispatcher) does not touch the freed connection: the intake exits 0 and ASan reports nothing.
- A test delivery answered "not delivered" is retired, so a dispatcher started later never
  sends it.
"""
import json
import signal
import socket

from harness import Stack, assert_eq, fernet_key, run_tests, wait_for
from standin import StandIn
from test_mcp_http import init, rpc

NIL = "00000000-0000-0000-0000-000000000000"
ENV = {"ENCRYPTION_KEY": fernet_key(), "AGENT_WEBHOOK_ALLOW_LOOPBACK": "true", "RATE_LIMIT_DEFAULT_PER_MINUTE": "100000",
       "RATE_LIMIT_UNAUTHED_PER_MINUTE": "100000"}

NOT_JSON = {
    "malformed": b'{"name":', "empty": b"", "string": b'"x"', "null": b"null",
    "bad_utf8": b'{"name":"\xff\xfe"}', "nul": b'{"name":"a\\u0000b","title":"a\\u0000b"}',
    "deep": b"[" * 5000 + b"]" * 5000,
}
HUGE = b'{"name":"' + b"a" * (11 * 1024 * 1024) + b'"}'


def wrong_types():
    return {"name": 5, "title": [], "endpoint_url": {}, "document_type": 7, "content": 3,
            "source_name": [], "display_name": 1, "field_path": 2, "indicator_type": 3,
            "trigger_on_sources": "generic", "tags": "x", "is_active": "yes", "summary": 1,
            "confidence": "x", "malice": 5}


def check_error(r, status, code, what):
    assert_eq(r.status, status, "%s: %r" % (what, r.body[:300]))
    err = r.json()["error"]
    assert_eq(err["code"], code, what)
    assert err["message"], what


# route → (method, path, valid-looking body with one unknown enum value or overlong string,
#          status/code for a body that is not a JSON object, for unknown values, for overlong)
def routes(alert, agent, doc, rule):
    v422 = (422, "VALIDATION_ERROR")
    return [
        ("POST", "/v1/agents", v422,
         {"name": "a", "endpoint_url": "http://127.0.0.1:9/", "trigger_on_severities": ["Nope"],
          "timeout_seconds": 100000}, v422, {"name": "é" * 300, "endpoint_url": "http://127.0.0.1:9/"}, v422),
        ("PATCH", "/v1/agents/" + agent, v422, {"retry_count": "many"}, v422,
         {"name": "\U0001F600" * 300}, v422),
        ("POST", "/v1/alerts/%s/findings" % alert, v422,
         {"agent_name": "x", "summary": "s", "confidence": "certain"}, v422,
         {"agent_name": "x" * 1000, "summary": "s"}, v422),
        ("POST", "/v1/context-documents", (400, "INVALID_JSON"),
         {"title": "t", "document_type": "novel", "content": "c"}, v422,
         {"title": "t", "document_type": "runbook", "content": "c", "targeting_rules": {"match_any": [{"field": "x" * 5000, "op": "eq", "value": 1}]}}, v422),
        ("PATCH", "/v1/context-documents/" + doc, (400, "INVALID_JSON"),
         {"document_type": "novel"}, v422, {"tags": ["ü" * 10, 5]}, v422),
        ("POST", "/v1/detection-rules", v422, {"name": "r", "is_active": "perhaps"}, v422,
         {"name": "é" * 501}, v422),
        ("PATCH", "/v1/detection-rules/" + rule, v422, {"mitre_tactics": "TA0001"}, v422,
         {"name": "\U0001F600" * 501}, v422),
        ("POST", "/v1/indicator-mappings", v422,
         {"source_name": "generic", "field_path": "a.b", "indicator_type": "nope",
          "extraction_target": "raw_payload"}, v422,
         {"source_name": "generic", "field_path": "a" * 100000, "indicator_type": "ip",
          "extraction_target": "raw_payload"}, v422),
        ("POST", "/v1/sources", v422, {"source_name": "nope", "display_name": "d"},
         (400, "INVALID_SOURCE"), {"source_name": "generic", "display_name": "é" * 256}, v422),
        ("PATCH", "/v1/indicators/" + NIL, v422, {"malice": "Evil"}, v422,
         {"malice": "M" * 100000}, v422),
    ]


def test_hostile_bodies():
    s = Stack("hostile_bodies", env=ENV)
    try:
        admin = s.create_key("admin", name="adm")
        alert = s.ingest(admin, "hostile", src_ip="198.51.100.4")
        r = s.request("POST", "/v1/agents", key=admin,
                      body={"name": "base", "endpoint_url": "http://127.0.0.1:9/"})
        assert_eq(r.status, 201, r.body)
        agent = r.json()["data"]["uuid"]
        r = s.request("POST", "/v1/context-documents", key=admin,
                      body={"title": "d", "document_type": "runbook", "content": "x"})
        assert_eq(r.status, 201, r.body)
        doc = r.json()["data"]["uuid"]
        r = s.request("POST", "/v1/detection-rules", key=admin, body={"name": "base"})
        assert_eq(r.status, 201, r.body)
        rule = r.json()["data"]["uuid"]
        counts = ("SELECT (SELECT count(*) FROM agent_registrations) || '/' || "
                  "(SELECT count(*) FROM context_documents) || '/' || "
                  "(SELECT count(*) FROM detection_rules) || '/' || "
                  "(SELECT count(*) FROM indicator_field_mappings) || '/' || "
                  "(SELECT count(*) FROM source_integrations) || '/' || "
                  "(SELECT count(*) FROM activity_events WHERE event_type = 'alert_finding_added')")
        before = s.sql_value(counts)
        hdr = {"Content-Type": "application/json"}
        for m, path, not_obj, unknown, unknown_err, long_, long_err in routes(alert, agent, doc, rule):
            what = m + " " + path
            for name, body in NOT_JSON.items():
                check_error(s.request(m, path, key=admin, body=body, headers=hdr), *not_obj,
                            what="%s %s" % (what, name))
            check_error(s.request(m, path, key=admin, body=b"[1,2]", headers=hdr), 422,
                        "VALIDATION_ERROR", what + " array")
            check_error(s.request(m, path, key=admin, body=HUGE, headers=hdr), 413,
                        "PAYLOAD_TOO_LARGE", what + " huge")
            check_error(s.request(m, path, key=admin, body=wrong_types()), 422,
                        "VALIDATION_ERROR", what + " wrong types")
            check_error(s.request(m, path, key=admin, body=unknown), *unknown_err,
                        what=what + " unknown value")
            check_error(s.request(m, path, key=admin, body=long_), *long_err,
                        what=what + " overlong")
        assert_eq(s.sql_value(counts), before, "a refused body changed nothing")
        # Non-ASCII that fits is stored as sent.
        name = "\U0001F600 r\u00e9gle \u202e"
        r = s.request("PATCH", "/v1/detection-rules/" + rule, key=admin, body={"name": name})
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json()["data"]["name"], name)
        assert s.proc("intake").alive()
    finally:
        s.stop()


def test_hostile_keys():
    s = Stack("hostile_keys", env=ENV)
    try:
        admin = s.create_key("admin", name="adm")
        reader = s.create_key("alerts:read", name="reader")
        expired = s.create_key("admin", name="exp", extra=("--expires-in-seconds", "1"))
        revoked = s.create_key("admin", name="rev")
        s.cli("revoke-api-key", revoked[:8])
        alert = s.ingest(admin, "keys", src_ip="198.51.100.5")
        wait_for(lambda: s.request("GET", "/v1/alerts", key=expired).status == 401,
                 timeout=10, what="the short key to expire")
        bearer = "Bearer {}".format
        cases = [  # (Authorization header, status, code)
            (None, 401, "UNAUTHORIZED"), ("Basic abc", 401, "UNAUTHORIZED"),
            (bearer("nope"), 401, "UNAUTHORIZED"), (bearer("cai_" + "x" * 200), 401, "UNAUTHORIZED"),
            (bearer(admin[:8] + "x" * 100), 401, "UNAUTHORIZED"),  # past bcrypt's 72 bytes
            (bearer("cai_" + "A" * 43), 401, "UNAUTHORIZED"),
            (bearer(admin[:-1] + "\u00e9"), 401, "UNAUTHORIZED"),
            (bearer(expired), 401, "KEY_EXPIRED"), (bearer(revoked), 401, "UNAUTHORIZED"),
        ]
        paths = [("POST", "/v1/agents"), ("GET", "/v1/agents"), ("POST", "/v1/alerts/%s/findings" % alert),
                 ("POST", "/v1/context-documents"), ("GET", "/v1/context-documents/" + NIL),
                 ("POST", "/v1/detection-rules"), ("POST", "/v1/indicator-mappings"),
                 ("POST", "/v1/sources"), ("POST", "/v1/alerts/%s/trigger-agents" % alert)]
        for m, p in paths:
            for auth, status, code in cases:
                hdrs = {"Content-Type": "application/json"}
                if auth:
                    hdrs["Authorization"] = auth
                r = s.request(m, p, headers=hdrs, body=b"{}")
                check_error(r, status, code, "%s %s with %r" % (m, p, (auth or "")[:20]))
        scoped = {"POST /v1/agents": "agents:write", "GET /v1/agents": "agents:read",
                  "POST /v1/detection-rules": "admin", "POST /v1/sources": "admin"}
        for route, scope in scoped.items():
            m, p = route.split(" ")
            r = s.request(m, p, key=reader, body={})
            check_error(r, 403, "FORBIDDEN", route)
            assert scope in r.json()["error"]["message"], r.body
        # MCP: the same keys get the RFC 9728 401, never a 500.
        for key in ("cai_" + "x" * 200, admin[:8] + "x" * 100, expired, revoked):
            r = rpc(s, key, {"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert_eq(r.status, 401, r.body)
            assert "resource_metadata" in r.headers.get("www-authenticate", ""), r.headers
    finally:
        s.stop()


def test_hostile_mcp_params():
    s = Stack("hostile_mcp", env=ENV)
    try:
        k = s.create_key("admin")
        alert = s.ingest(k, "mcp hostile", src_ip="198.51.100.6")
        sid, _ = init(s, k)
        n = 10
        odd = [None, 5, -1, 1e308, "", "é" * 70000, [], {}, True, "not-a-uuid", NIL]
        tools = {"post_alert_finding": ("alert_uuid", "summary", "confidence", "agent_name"),
                 "update_alert_status": ("alert_uuid", "status", "close_classification"),
                 "search_alerts": ("status", "page", "page_size", "from_time", "tags", "sort_by"),
                 "update_alert_malice": ("alert_uuid", "malice"),
                 "search_detection_rules": ("name", "page_size", "is_active"),
                 "enrich_indicator": ("type", "value"),
                 "update_indicator_malice": ("indicator_uuid", "malice"),
                 "execute_workflow": ("workflow_uuid", "alert_uuid", "reason", "confidence")}
        for tool, fields in tools.items():
            for f in fields:
                for v in odd:
                    args = {x: (alert if x == "alert_uuid" else "x") for x in fields}
                    args[f] = v
                    n += 1
                    r = rpc(s, k, {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                                   "params": {"name": tool, "arguments": args}}, session=sid)
                    assert_eq(r.status, 200, "%s %s=%r: %r" % (tool, f, v, r.body[:200]))
                    msg = r.json()
                    assert_eq(msg["id"], n)
                    assert "result" in msg or msg["error"]["code"] in (-32602, -32600), msg
        for method, params, code in [
                ("tools/call", {"name": 5}, -32602), ("tools/call", {"name": "nope"}, -32602),
                ("tools/call", {"name": "search_alerts", "arguments": []}, -32602),
                ("resources/read", {"uri": 5}, -32602), ("resources/read", {}, -32602),
                ("resources/read", {"uri": "calseta://alerts/" + "x" * 100000}, -32602),
                ("resources/read", {"uri": "calseta://enrichments/ip/%ff"}, -32602),
                ("resources/read", {"uri": "calseta://nothing/here"}, -32002),  # resource not found
                ("nope/method", {}, -32601)]:
            n += 1
            r = rpc(s, k, {"jsonrpc": "2.0", "id": n, "method": method, "params": params},
                    session=sid)
            assert_eq(r.status, 200, r.body[:200])
            assert_eq(r.json()["error"]["code"], code, "%s %s" % (method, json.dumps(params)[:80]))
            assert len(r.body) < 4096, "an error echoes at most a bounded part of its input"
        assert_eq(s.request("GET", "/health").status, 200)
    finally:
        s.stop()


def test_hostile_queries_and_dispatch():
    s = Stack("hostile_queries", env=ENV)
    try:
        k = s.create_key("admin")
        alert = s.ingest(k, "queries", src_ip="198.51.100.7")
        r = s.request("POST", "/v1/agents", key=k,
                      body={"name": "idle", "endpoint_url": "http://127.0.0.1:9/", "is_active": False})
        assert_eq(r.status, 201, r.body)
        idle = r.json()["data"]["uuid"]
        lists = ["/v1/agents", "/v1/context-documents", "/v1/detection-rules", "/v1/indicator-mappings",
                 "/v1/sources", "/v1/agents/%s/runs" % idle]
        for p in lists:
            for q in ("page=0", "page=-1", "page=abc", "page=99999999999999999999", "page_size=0",
                      "page_size=501", "page_size=%ff"):
                check_error(s.request("GET", p + "?" + q, key=k), 422, "VALIDATION_ERROR", p + "?" + q)
        for p, q in (("/v1/context-documents", "sort_by=nope"), ("/v1/context-documents", "sort_order=up"),
                     ("/v1/detection-rules", "sort_by=%00"), ("/v1/detection-rules", "sort_order=UP")):
            check_error(s.request("GET", p + "?" + q, key=k), 400, "VALIDATION_ERROR", p + "?" + q)
        check_error(s.request("GET", "/v1/context-documents?is_global=maybe", key=k), 422,
                    "VALIDATION_ERROR", "is_global=maybe")
        base = "/v1/alerts/%s/dispatch-agent" % alert
        for q in ("", "?agent_uuid=", "?agent_uuid=not-a-uuid", "?agent_uuid=" + "a" * 5000):
            check_error(s.request("POST", base + q, key=k), 422, "VALIDATION_ERROR", "dispatch " + q[:30])
        check_error(s.request("POST", base + "?agent_uuid=" + NIL, key=k), 404, "NOT_FOUND", "no agent")
        check_error(s.request("POST", "/v1/alerts/%s/dispatch-agent?agent_uuid=%s" % (NIL, idle), key=k),
                    404, "NOT_FOUND", "no alert")
        check_error(s.request("POST", base + "?agent_uuid=" + idle, key=k), 422, "AGENT_INACTIVE",
                    "inactive agent")
        check_error(s.request("POST", "/v1/alerts/not-a-uuid/trigger-agents", key=k), 422,
                    "VALIDATION_ERROR", "trigger-agents bad uuid")
        check_error(s.request("POST", "/v1/alerts/%s/trigger-agents" % NIL, key=k), 404, "NOT_FOUND",
                    "trigger-agents no alert")
        assert_eq(s.sql_value("SELECT count(*) FROM agent_deliveries"), "0", "nothing was queued")
    finally:
        s.stop()


def test_answer_after_drain_closed_the_connection():
    # No dispatcher runs: a test delivery waits timeout_seconds plus a grace, then answers
    # "not delivered". A SIGTERM meanwhile drains the intake, which closes the waiting
    # connection after DRAIN_TIMEOUT_MS; the late answer then meets a closed connection.
    s = Stack("hostile_drain", env=dict(ENV, DRAIN_TIMEOUT_MS="500"))
    c = None
    try:
        k = s.create_key("admin")
        r = s.request("POST", "/v1/agents", key=k,
                      body={"name": "late", "endpoint_url": "http://127.0.0.1:9/",
                            "timeout_seconds": 1})
        assert_eq(r.status, 201, r.body)
        agent = r.json()["data"]["uuid"]
        c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        c.sendall(("POST /v1/agents/%s/test HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: 0\r\n\r\n" % (agent, k)).encode())
        wait_for(lambda: s.sql_value("SELECT count(*) FROM agent_deliveries WHERE kind = 'test'") == "1",
                 timeout=10, what="the test delivery queued")
        intake = s.proc("intake")
        intake.p.send_signal(signal.SIGTERM)
        rc = intake.p.wait(60)
        text = intake.text()
        assert "AddressSanitizer" not in text, text[-4000:]
        assert '"path":"/v1/agents/%s/test"' % agent in text, "the late answer was written"
        assert_eq(rc, 0, text[-2000:])
    finally:
        if c:
            c.close()
        s.stop()


def test_unanswered_test_is_never_sent_later():
    # The test route answers "not delivered" when no dispatcher ran in time; that delivery must
    # then be retired, so that a dispatcher started later does not send a stale test.
    hits = StandIn(lambda req: (200, b""))  # an agent endpoint: records what it was sent
    s = Stack("hostile_late_test", env=ENV)
    try:
        k = s.create_key("admin")
        url = hits.url + "/"
        r = s.request("POST", "/v1/agents", key=k,
                      body={"name": "late", "endpoint_url": url + "stale", "timeout_seconds": 1})
        stale_agent = r.json()["data"]["uuid"]
        r = s.request("POST", "/v1/agents/%s/test" % stale_agent, key=k, timeout=60)
        assert_eq((r.status, r.json()["data"]["delivered"]), (200, False), r.body)
        state = "SELECT status || '/' || attempts FROM agent_deliveries WHERE agent_id = " \
                "(SELECT id FROM agent_registrations WHERE uuid = '%s')" % stale_agent
        wait_for(lambda: s.sql_value(state) == "failed/0", timeout=10,
                 what="the unanswered test retired")
        s.start("dispatcher")
        r = s.request("POST", "/v1/agents", key=k,
                      body={"name": "fresh", "endpoint_url": url + "fresh", "timeout_seconds": 5})
        r = s.request("POST", "/v1/agents/%s/test" % r.json()["data"]["uuid"], key=k, timeout=60)
        assert_eq(r.json()["data"]["delivered"], True, r.body)
        assert_eq([r.path for r in hits.requests], ["/fresh"])
        assert_eq(s.sql_value(state), "failed/0")
    finally:
        s.stop()
        hits.close()


if __name__ == "__main__":
    run_tests(globals())
