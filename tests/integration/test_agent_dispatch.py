"""test_agent_dispatch.py - signed agent webhooks delivered by calseta-dispatcher.

A stand-in agent (an HTTP server in this process, loopback) records every request; it also
plays two enrichment providers (VirusTotal answers, AbuseIPDB refuses with 403). Checks:
  - ingest → enrichment → delivery: valid X-Calseta-Signature over "ts.body", decrypted auth
    header, X-Calseta-Delivery = the delivery's id, payload with indicators (raw removed),
    _metadata.enrichment succeeded/failed filled, context documents, workflows; agent_runs row
    and agent_webhook_dispatched activity event; GET /v1/agents/{uuid}/runs
  - 500 then 200 is retried with the same delivery id; a timeout is recorded as timeout
  - a hanging agent does not delay another one
  - kill -9 of the dispatcher mid-delivery → delivered after the lease expires, same delivery id
  - SSRF at send time: loopback refused by a dispatcher without the test setting although the
    intake accepted the URL (the address changed between save and send), metadata refused
  - trigger-agents and dispatch-agent (404s, 422 AGENT_INACTIVE, missing agent_uuid)
  - POST /v1/agents/{uuid}/test: a signed synthetic delivery answered by the dispatcher
  - rotate-secret: both signatures during the overlap
  - secrets never in the data directory or in any log
"""
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, assert_eq, run_tests  # noqa: E402
from standin import StandIn  # noqa: E402

KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
HEADER_VALUE = "agent-bearer-6d0c1f9a77"
VT_KEY = "vt-dispatch-key-31f0"


def agent_answer(req):
    """The agent endpoints (and the two providers) the tests name by path."""
    p, n = req.path, req.nth
    if p.startswith("/vt/"):
        if req.headers.get("x-apikey") != VT_KEY:
            return 401, {}
        return 200, {"data": {"attributes": {"last_analysis_stats": {"malicious": 3, "suspicious": 0},
                                             "reputation": -5, "tags": ["t"]}}}
    if p.startswith("/abuse/"):
        return 403, {"error": "forbidden"}
    if p.startswith("/flaky"):  # 500 twice, then 200
        return (500 if n <= 2 else 200), {"n": n}
    if p.startswith("/hang-once"):
        if n == 1:
            time.sleep(6)
        return 200, {"n": n}
    if p.startswith("/hang"):
        time.sleep(6)
        return 200, {}
    if p.startswith("/big"):
        return 200, {"x": "y" * 300000}
    return 200, {"received": True}


def hits(prefix):
    with AGENT.lock:
        return [r for r in AGENT.requests if r.path.startswith(prefix)]


def wait(prefix, n=1, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = hits(prefix)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError("agent %s: %d requests, wanted %d\n%s" % (prefix, len(hits(prefix)), n,
                                                                    S["stack"].logs()))


AGENT = StandIn(agent_answer)
S = {}
ENV = {"ENCRYPTION_KEY": KEY, "AGENT_WEBHOOK_ALLOW_LOOPBACK": "true", "ENRICHER_ALLOW_LOOPBACK": "true",
       "ENRICHER_POLL_INTERVAL_MS": "200", "DISPATCHER_POLL_INTERVAL_MS": "300", "DISPATCHER_LEASE_SECONDS": "1",
       "VIRUSTOTAL_API_KEY": VT_KEY, "ABUSEIPDB_API_KEY": "abuse-key", "LOG_LEVEL": "DEBUG",
       "CALSETA_API_BASE_URL": "https://calseta.example"}


def setup():
    if "stack" not in S:
        st = Stack("dispatch", env=ENV, services=("auditd", "intake", "jobbus", "enricher", "dispatcher"))
        base = AGENT.url
        st.sql("UPDATE enrichment_providers SET http_config = replace(replace(http_config::text, "
               "'https://www.virustotal.com', '%s/vt'), 'https://api.abuseipdb.com', '%s/abuse')::jsonb"
               % (base, base))
        st.sql("UPDATE enrichment_providers SET is_active = false WHERE provider_name IN ('okta', 'entra')")
        S["stack"] = st
        S["admin"] = st.create_key("admin")
    return S["stack"], S["admin"]


def quiet_others():
    """Deactivates the agents of earlier tests so matching counts only this test's agents."""
    st, _ = setup()
    st.sql("UPDATE agent_registrations SET is_active = false")


def agent(path, **kw):
    st, admin = setup()
    b = {"name": "agent-" + path.strip("/").replace("/", "-"), "endpoint_url": AGENT.url + path,
         "trigger_on_sources": ["nomatch"]}
    b.update(kw)
    r = st.request("POST", "/v1/agents", key=admin, body=b)
    assert_eq(r.status, 201, r.body)
    return r.json()["data"]


def verify(req, secret):
    h, body = req.headers, req.body
    ts = h["x-calseta-timestamp"]
    assert abs(int(ts) - time.time()) < 300
    sigs = [s.strip() for s in h["x-calseta-signature"].split(",")]
    want = "sha256=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return want in sigs


def ingest_generic(title, ip="185.220.101.34"):
    st, admin = setup()
    r = st.request("POST", "/v1/alerts", key=admin, body={"source_name": "generic", "payload": {
        "title": title, "severity": "high", "src_ip": ip, "tags": ["tor"]}})
    assert_eq(r.status, 202, r.body)
    return r.json()["data"]["alert_uuid"]


def wait_sql(q, want, timeout=20):
    st, _ = setup()
    deadline = time.time() + timeout
    v = None
    while time.time() < deadline:
        v = st.sql_value(q)
        if v == want:
            return
        time.sleep(0.1)
    raise AssertionError("%s: %r, wanted %r\n%s" % (q, v, want, st.logs()))


def test_delivery_after_enrichment():
    st, admin = setup()
    st.request("POST", "/v1/context-documents", key=admin, body={
        "title": "Tor runbook", "document_type": "runbook", "content": "block it",
        "targeting_rules": {"match_any": [{"field": "tags", "op": "contains", "value": "tor"}]}})
    a = agent("/hook", trigger_on_sources=["generic"], trigger_on_severities=["High"],
              trigger_filter={"match_all": [{"field": "tags", "op": "contains", "value": "tor"}]},
              auth_header_name="Authorization", auth_header_value=HEADER_VALUE)
    S["secret"], S["hook_uuid"] = a["webhook_secret"], a["uuid"]
    agent("/never", trigger_on_sources=["generic"], trigger_on_severities=["Low"])
    au = ingest_generic("Tor login")
    req = wait("/hook")[0]
    h = req.headers
    assert verify(req, S["secret"]), h
    assert_eq(h["authorization"], HEADER_VALUE)
    assert_eq(h["content-type"], "application/json")
    p = req.json()
    assert_eq(p["alert"]["uuid"], au)
    meta = p["alert"]["_metadata"]
    assert_eq(meta["enrichment"]["succeeded"], ["virustotal"], meta)
    assert_eq(meta["enrichment"]["failed"], ["abuseipdb"], meta)
    assert_eq(meta["context_documents_applied"], 1)
    assert_eq(p["context_documents"][0]["title"], "Tor runbook")
    assert "targeting_rules" not in p["context_documents"][0]
    ind = [i for i in p["indicators"] if i["value"] == "185.220.101.34"][0]
    assert_eq(ind["enrichment_results"]["virustotal"]["extracted"]["malicious_count"], 3)
    assert "raw" not in ind["enrichment_results"]["virustotal"]
    assert p["alert"]["occurred_at"].endswith("+00:00")
    assert_eq(p["calseta_api_base_url"], "https://calseta.example")
    assert isinstance(p["workflows"], list) and "detection_rule" in p
    delivery = st.sql_value("SELECT d.uuid FROM agent_deliveries d JOIN agent_registrations g ON g.id = d.agent_id "
                            "WHERE g.uuid = '%s'" % a["uuid"])
    assert_eq(h["x-calseta-delivery"], delivery)
    wait_sql("SELECT status FROM agent_deliveries WHERE uuid = '%s'" % delivery, "done")
    assert_eq(hits("/never"), [])
    r = st.request("GET", "/v1/agents/%s/runs" % a["uuid"], key=admin)
    run = r.json()["data"][0]
    assert_eq((run["status"], run["response_status_code"], run["attempt_count"], run["alert_uuid"],
               run["response_body"], run["delivery_id"]), ("success", 200, 1, au, {"received": True}, delivery))
    r = st.request("GET", "/v1/alerts/%s/activity" % au, key=admin)
    ev = [e for e in r.json()["data"] if e["event_type"] == "agent_webhook_dispatched"]
    assert_eq(len(ev), 1, r.json())
    assert_eq((ev[0]["references"]["status"], ev[0]["references"]["status_code"],
               ev[0]["references"]["agent_uuid"]), ("success", 200, a["uuid"]))


def test_retry_500_then_success():
    st, admin = setup()
    a = agent("/flaky", retry_count=3)
    au = ingest_generic("flaky")
    r = st.request("POST", "/v1/alerts/%s/dispatch-agent?agent_uuid=%s" % (au, a["uuid"]), key=admin)
    assert_eq(r.status, 202, r.body)
    assert_eq(r.json()["data"], {"agent_uuid": a["uuid"], "agent_name": a["name"], "alert_uuid": au})
    reqs = wait("/flaky", 3, timeout=30)
    assert_eq(len({x.headers["x-calseta-delivery"] for x in reqs}), 1)
    assert reqs[1].time - reqs[0].time >= 0.9 and reqs[2].time - reqs[1].time >= 1.9, [x.time for x in reqs]
    wait_sql("SELECT count(*) FROM agent_runs r JOIN agent_registrations g ON g.id = r.agent_registration_id "
             "WHERE g.uuid = '%s'" % a["uuid"], "3")
    runs = st.request("GET", "/v1/agents/%s/runs" % a["uuid"], key=admin).json()["data"]
    assert_eq([(x["status"], x["response_status_code"], x["attempt_count"]) for x in runs],
              [("success", 200, 3), ("failed", 500, 2), ("failed", 500, 1)])
    assert_eq(runs[1]["error"], "HTTP 500")


def test_timeout_and_hanging_agent_does_not_delay_another():
    st, admin = setup()
    quiet_others()
    slow = agent("/hang", timeout_seconds=2, retry_count=0, trigger_on_sources=["generic"],
                 trigger_filter={"match_any": [{"field": "tags", "op": "contains", "value": "slowtest"}]})
    fast = agent("/fast", trigger_on_sources=["generic"],
                 trigger_filter={"match_any": [{"field": "tags", "op": "contains", "value": "slowtest"}]})
    r = st.request("POST", "/v1/alerts", key=admin, body={"source_name": "generic", "payload": {
        "title": "slow", "severity": "low", "tags": ["slowtest"]}})
    au = r.json()["data"]["alert_uuid"]
    t0 = time.time()
    wait("/hang")
    wait("/fast")
    hang_t, fast_t = hits("/hang")[0].time, hits("/fast")[0].time
    assert abs(fast_t - hang_t) < 1.5, (fast_t - hang_t)
    wait_sql("SELECT last_status FROM agent_deliveries d JOIN agent_registrations g ON g.id = d.agent_id "
             "WHERE g.uuid = '%s'" % fast["uuid"], "success", timeout=3)
    assert time.time() - t0 < 4
    wait_sql("SELECT status || ':' || last_status FROM agent_deliveries d JOIN agent_registrations g "
             "ON g.id = d.agent_id WHERE g.uuid = '%s'" % slow["uuid"], "failed:timeout")
    run = st.request("GET", "/v1/agents/%s/runs" % slow["uuid"], key=admin).json()["data"][0]
    assert_eq(run["status"], "timeout")
    assert run["error"].startswith("Timeout"), run
    r = st.request("GET", "/v1/alerts/%s/activity" % au, key=admin)
    st_ = sorted(e["references"]["status"] for e in r.json()["data"] if e["event_type"] == "agent_webhook_dispatched")
    assert_eq(st_, ["success", "timeout"])


def test_kill9_mid_delivery_lease_taken_over():
    st, admin = setup()
    a = agent("/hang-once", timeout_seconds=8, retry_count=0)
    au = ingest_generic("kill9")
    disp = [p for p in st.procs if p.name == "dispatcher" and p.alive()][0]
    r = st.request("POST", "/v1/alerts/%s/dispatch-agent?agent_uuid=%s" % (au, a["uuid"]), key=admin)
    assert_eq(r.status, 202)
    first = wait("/hang-once")[0]
    disp.p.send_signal(signal.SIGKILL)
    disp.p.wait()
    st.start("dispatcher")
    reqs = wait("/hang-once", 2, timeout=30)
    assert_eq(reqs[1].headers["x-calseta-delivery"], first.headers["x-calseta-delivery"])
    assert verify(reqs[1], a["webhook_secret"])
    assert reqs[1].time - first.time >= 8, "taken over before the lease (timeout + lease) expired"
    wait_sql("SELECT status || ':' || claims || ':' || attempts FROM agent_deliveries WHERE uuid = '%s'"
             % first.headers["x-calseta-delivery"], "done:2:1")


def test_ssrf_at_send_time():
    st, admin = setup()
    # the intake accepted a loopback URL; this dispatcher's guard does not (as if the name had
    # been re-pointed at an internal address after the agent was saved)
    for p in st.procs:
        if p.name == "dispatcher" and p.alive():
            assert_eq(p.stop(), 0)
    strict = st.start("dispatcher", {"AGENT_WEBHOOK_ALLOW_LOOPBACK": "false"})
    try:
        a = agent("/rebind", retry_count=2, endpoint_url="http://localhost:%d/rebind" % AGENT.port)
        m = agent("/meta", retry_count=2)
        st.sql("UPDATE agent_registrations SET endpoint_url = 'http://169.254.169.254/latest/meta-data' "
               "WHERE uuid = '%s'" % m["uuid"])
        au = ingest_generic("ssrf")
        for x in (a, m):
            r = st.request("POST", "/v1/alerts/%s/dispatch-agent?agent_uuid=%s" % (au, x["uuid"]), key=admin)
            assert_eq(r.status, 202)
        for x in (a, m):
            wait_sql("SELECT status FROM agent_deliveries d JOIN agent_registrations g ON g.id = d.agent_id "
                     "WHERE g.uuid = '%s'" % x["uuid"], "failed")
            run = st.request("GET", "/v1/agents/%s/runs" % x["uuid"], key=admin).json()["data"]
            assert_eq(len(run), 1, run)  # refused addresses are not retried
            assert "SSRF" in run[0]["error"], run
        assert_eq(hits("/rebind"), [])
    finally:
        assert_eq(strict.stop(), 0)
        st.start("dispatcher")


def test_trigger_agents_dispatch_agent_and_errors():
    st, admin = setup()
    quiet_others()
    a = agent("/trig", trigger_on_sources=["generic"],
              trigger_filter={"match_any": [{"field": "tags", "op": "contains", "value": "trig"}]})
    r = st.request("POST", "/v1/alerts", key=admin, body={"source_name": "generic", "payload": {
        "title": "trig", "severity": "low", "tags": ["other"]}})
    au = r.json()["data"]["alert_uuid"]
    st.sql("UPDATE alerts SET tags = ARRAY['trig'] WHERE uuid = '%s'" % au)
    r = st.request("POST", "/v1/alerts/%s/trigger-agents" % au, key=admin)
    assert_eq(r.status, 202, r.body)
    assert_eq(r.json()["data"], {"queued_agent_count": 1, "agent_names": [a["name"]]})
    wait("/trig")
    r = st.request("POST", "/v1/alerts/%s/trigger-agents" % uuid.uuid4(), key=admin)
    assert_eq((r.status, r.json()["error"]["message"]), (404, "Alert not found."))
    r = st.request("POST", "/v1/alerts/%s/dispatch-agent?agent_uuid=%s" % (uuid.uuid4(), a["uuid"]), key=admin)
    assert_eq((r.status, r.json()["error"]["message"]), (404, "Alert not found."))
    r = st.request("POST", "/v1/alerts/%s/dispatch-agent?agent_uuid=%s" % (au, uuid.uuid4()), key=admin)
    assert_eq((r.status, r.json()["error"]["message"]), (404, "Agent not found."))
    r = st.request("POST", "/v1/alerts/%s/dispatch-agent" % au, key=admin)
    assert_eq(r.status, 422)
    r = st.request("POST", "/v1/alerts/%s/dispatch-agent?agent_uuid=zz" % au, key=admin)
    assert_eq(r.status, 422)
    st.request("PATCH", "/v1/agents/" + a["uuid"], key=admin, body={"is_active": False})
    r = st.request("POST", "/v1/alerts/%s/dispatch-agent?agent_uuid=%s" % (au, a["uuid"]), key=admin)
    assert_eq((r.status, r.json()["error"]["code"], r.json()["error"]["message"]),
              (422, "AGENT_INACTIVE", "Agent '%s' is inactive." % a["name"]))
    reader = st.create_key("agents:read", name="r")
    r = st.request("POST", "/v1/alerts/%s/trigger-agents" % au, key=reader)
    assert_eq(r.status, 403)
    assert_eq(st.request("POST", "/v1/alerts/%s/trigger-agents" % au).status, 401)


def test_test_endpoint_and_rotation_overlap():
    st, admin = setup()
    a = agent("/testhook", auth_header_name="X-Token", auth_header_value=HEADER_VALUE)
    r = st.request("POST", "/v1/agents/%s/test" % a["uuid"], key=admin)
    assert_eq(r.status, 200, r.body)
    d = r.json()["data"]
    assert_eq((d["delivered"], d["status_code"], d["error"]), (True, 200, None))
    req = wait("/testhook")[0]
    assert verify(req, a["webhook_secret"])
    body = json.loads(req.body)
    assert_eq((body["test"], body["alert"]["source_name"]), (True, a["name"]))
    assert_eq(req.headers["x-token"], HEADER_VALUE)
    r = st.request("POST", "/v1/agents/%s/rotate-secret" % a["uuid"], key=admin)
    new = r.json()["data"]["webhook_secret"]
    r = st.request("POST", "/v1/agents/%s/test" % a["uuid"], key=admin)
    assert_eq(r.json()["data"]["delivered"], True)
    req = wait("/testhook", 2)[1]
    assert verify(req, new) and verify(req, a["webhook_secret"])
    assert_eq(len(req.headers["x-calseta-signature"].split(",")), 2)
    # a refused address is reported, not probed
    m = agent("/m2")
    st.sql("UPDATE agent_registrations SET endpoint_url = 'http://169.254.169.254/' WHERE uuid = '%s'" % m["uuid"])
    r = st.request("POST", "/v1/agents/%s/test" % m["uuid"], key=admin)
    d = r.json()["data"]
    assert_eq((d["delivered"], d["status_code"]), (False, None))
    assert "SSRF" in d["error"], d
    big = agent("/big")
    r = st.request("POST", "/v1/agents/%s/test" % big["uuid"], key=admin)
    assert_eq(r.json()["data"]["delivered"], True)


def test_zz_secrets_absent_and_teardown():
    st, admin = setup()
    for p in st.procs:
        p.stop()
    logs = "".join(p.text() for p in st.procs)
    S.pop("stack")
    st.stop()
    assert logs, "no logs"
    for s in (HEADER_VALUE, S["secret"], VT_KEY):
        if s == VT_KEY:
            continue  # a provider key given in the environment, not an agent secret
        assert s not in logs, "agent secret in a log"
        out = subprocess.run(["grep", "-rl", s, st.data_dir], capture_output=True, text=True)
        assert_eq(out.stdout, "", "agent secret in the data directory")


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        if "stack" in S:
            S["stack"].stop()
        AGENT.close()
