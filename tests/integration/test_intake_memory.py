"""test_intake_memory.py - the internet-facing intake never holds a provider credential nor a
workflow secret.

A provider is saved with an API key (through a first intake, which must see it once to encrypt
it), that intake is replaced by a fresh one, and on-demand lookups and provider tests run
through the fresh intake against a loopback stand-in that checks the key. The lookups succeed
(an enricher answered them with the decrypted key), and the fresh intake's whole readable
memory holds no trace of the key. A positive control checks that the scan finds a secret that is
there.

The same for a workflow secret: saved through a first intake, then test runs through a fresh
one. Each run proves it had the secret (it answers the secret reversed, never the secret), and
the fresh intake's memory holds no trace of it: workflowd decrypted it and gave it to the runner.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Stack, assert_eq, free_port, gen_encryption_key, memory_scan, run_tests, wait_for  # noqa: E402
from standin import StandIn, virustotal  # noqa: E402

KEY = "vt-secret-%s" % os.urandom(8).hex()
IP = "185.220.101.34"


def provider(port):
    return {
        "provider_name": "vt_standin", "display_name": "VT stand-in",
        "supported_indicator_types": ["ip"], "auth_type": "api_key",
        "auth_config": {"api_key": KEY},
        "http_config": {"steps": [{
            "name": "lookup", "method": "GET",
            "url": "http://127.0.0.1:%d/api/v3/ip_addresses/{{indicator.value}}" % port,
            "headers": {"x-apikey": "{{auth.api_key}}"}, "expected_status": [200]}]},
        "default_cache_ttl_seconds": 600,
    }


def provider_uuid(s, k, name):
    r = s.request("GET", "/v1/enrichment-providers?page_size=500", key=k)
    for p in r.json()["data"]:
        if p["provider_name"] == name:
            return p["uuid"]
    raise AssertionError("no provider " + name)


def test_no_provider_secret_in_the_intake():
    stand = StandIn(virustotal(KEY, {"reputation": -3}))  # a lookup succeeds only with the key
    s = Stack("intake_mem", env={"ENCRYPTION_KEY": gen_encryption_key(), "ENRICHER_ALLOW_LOOPBACK": "true"},
              services=("auditd", "jobbus", "enricher", "intake"))
    try:
        enricher = [p for p in s.procs if p.name == "enricher"][0]
        wait_for(lambda: "jobs at a time" in enricher.text(), 30, what="the enricher")
        k = s.create_key("admin")
        r = s.request("POST", "/v1/enrichment-providers", key=k, body=provider(stand.port))
        assert_eq(r.status, 201, r.body)
        assert KEY not in r.body.decode()
        uuid = provider_uuid(s, k, "vt_standin")

        # a fresh intake: it never saw the key in a request body
        s.intakes[0].stop()
        s.intakes.clear()
        port = free_port()
        fresh = s.start_intake({"HTTP_PORT": port})
        s.port = port
        s.wait_healthy()
        for i in range(3):
            r = s.request("POST", "/v1/enrichments", key=k, body={"type": "ip", "value": "185.220.101.%d" % (40 + i)})
            assert_eq(r.status, 200, r.body)
            res = r.json()["data"]["results"]["vt_standin"]
            assert_eq((res["success"], res["cache_hit"]), (True, False), res)
            r = s.request("POST", "/v1/enrichment-providers/%s/test" % uuid, key=k,
                          body={"type": "ip", "value": IP})
            assert_eq(r.status, 200, r.body)
            assert_eq(r.json()["data"]["success"], True, r.body)
        hits = sum(1 for q in stand.requests if q.h("x-apikey") == KEY)
        assert hits >= 6, hits  # the key reached the provider every time
        found = memory_scan(fresh.p.pid, [KEY])
        assert found is not None, "cannot read the intake's memory (the test must run as root)"
        assert KEY not in found, "the provider's API key is in the intake's memory"
        ctl = memory_scan(os.getpid(), [KEY])
        assert ctl is not None and KEY in ctl, "the scan does not find a secret that is there"
    finally:
        s.stop()
        stand.close()


WF_SECRET = "wf-secret-%s" % os.urandom(8).hex()
WF_CODE = ("from calseta.workflows import WorkflowResult\n"
           "async def run(ctx):\n"
           "    t = ctx.secrets.get('API_TOKEN') or ''\n"
           "    return WorkflowResult.ok('had it', {'rev': t[::-1], 'len': len(t),\n"
           "                                        'echo': t[::-1] + '@' + ctx.indicator.value})\n")


def test_no_workflow_secret_in_the_intake():
    s = Stack("intake_wf_mem", env={"ENCRYPTION_KEY": gen_encryption_key()},
              services=("auditd", "runner", "intake"))  # the harness adds workflowd
    try:
        k = s.create_key("admin")
        r = s.request("POST", "/v1/workflows", key=k, body={
            "name": "uses a secret", "code": WF_CODE, "state": "active", "approval_mode": "never",
            "timeout_seconds": 10, "indicator_types": ["ip"], "secret_names": ["API_TOKEN"]})
        assert_eq(r.status, 201, r.body)
        u = r.json()["data"]["uuid"]
        r = s.request("PUT", "/v1/workflows/%s/secrets/API_TOKEN" % u, key=k,
                      body={"value": WF_SECRET})
        assert_eq(r.status, 200, r.body)

        # a fresh intake: it never saw the secret in a request body
        s.intakes[0].stop()
        s.intakes.clear()
        port = free_port()
        fresh = s.start_intake({"HTTP_PORT": port})
        s.port = port
        s.wait_healthy()
        for i in range(3):
            r = s.request("POST", "/v1/workflows/%s/test" % u, key=k,
                          body={"indicator_type": "ip", "indicator_value": "192.0.2.%d" % (10 + i)})
            assert_eq(r.status, 200, r.body)
            d = r.json()["data"]
            echo = "%s@192.0.2.%d" % (WF_SECRET[::-1], 10 + i)
            assert_eq((d["status"], d["data"]), ("success", {"rev": WF_SECRET[::-1],
                                                             "len": len(WF_SECRET),
                                                             "echo": echo}), r.body)
        # What the workflow made of its secret went back to the caller; every copy the intake
        # made of a result on the way (decoded reply, JSON tree, response buffers) is wiped. The
        # latest reply may still sit in libzmq's receive buffer, reused by the next message and
        # not ours to wipe: so the two earlier results must be gone, the latest is not checked.
        earlier = ["%s@192.0.2.%d" % (WF_SECRET[::-1], 10 + i) for i in range(2)]
        found = memory_scan(fresh.p.pid, [WF_SECRET] + earlier)
        assert found is not None, "cannot read the intake's memory (the test must run as root)"
        assert WF_SECRET not in found, "a workflow secret is in the intake's memory"
        assert not found & set(earlier), "a test result is left in the intake's memory: %s" % found
        ctl = memory_scan(os.getpid(), [WF_SECRET])
        assert ctl is not None and WF_SECRET in ctl, "the scan does not find a secret that is there"
        # workflowd audited each test with the caller's key, as the one that decrypted
        q = ("SELECT count(*) FROM audit_events WHERE event_type = 'workflow_tested' AND "
             "service = 'workflowd' AND actor_key_prefix = '%s' AND fields->>'workflow_uuid' = "
             "'%s' AND request_id IS NOT NULL AND client_ip IS NOT NULL" % (k[:8], u))
        wait_for(lambda: int(s.sql_value(q)) == 3, 30, what="the workflow_tested audit events")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
