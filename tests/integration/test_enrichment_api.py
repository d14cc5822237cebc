"""The enrichment REST routes: provider and field-extraction CRUD
with builtin protection and secrets that never come back, the SSRF guard at save time, real
lookups (on-demand, cache-first; provider test) against small stand-in HTTP servers speaking the
VirusTotal and AbuseIPDB formats on 127.0.0.1, re-enrichment jobs, scopes and audit events.

The stand-ins live on loopback, which the SSRF guard blocks; the stacks here set the test-only
allowance ENRICHER_ALLOW_LOOPBACK=true (cloud-metadata addresses stay blocked whatever it says).
"""
import base64
import json
import time
import urllib.parse

from harness import Stack, assert_eq, gen_encryption_key, run_tests
from standin import StandIn

VT_KEY = "vt-secret-0123456789abcdef"
ABUSE_KEY = "abuse-secret-fedcba9876543210"
IP = "185.220.101.34"


def vt_and_abuse(req):
    """VirusTotal v3 /ip_addresses and AbuseIPDB v2 /check, checking the auth headers."""
    if req.route.startswith("/api/v3/ip_addresses/"):
        if req.headers.get("x-apikey") != VT_KEY:
            return 401, {"error": {"code": "WrongCredentialsError"}}
        ip = urllib.parse.unquote(req.route.rsplit("/", 1)[1])
        return 200, {"data": {"id": ip, "type": "ip_address", "attributes": {
            "last_analysis_stats": {"malicious": 7, "suspicious": 1, "harmless": 60},
            "reputation": -12, "country": "DE", "tags": ["tor"]}}}
    if req.route == "/api/v2/check":
        if req.headers.get("key") != ABUSE_KEY:
            return 401, {"errors": [{"detail": "Authentication failed"}]}
        return 200, {"data": {"ipAddress": req.query["ipAddress"], "abuseConfidenceScore": 30,
                              "totalReports": 4, "isTor": True}}
    return 404, {"error": "not found"}


def vt_provider(port, name="vt_standin", key=VT_KEY):
    return {
        "provider_name": name, "display_name": "VT stand-in", "description": "test",
        "supported_indicator_types": ["ip"], "auth_type": "api_key",
        "auth_config": {"api_key": key},
        "http_config": {"steps": [{
            "name": "lookup", "method": "GET",
            "url": "http://127.0.0.1:%d/api/v3/ip_addresses/{{indicator.value}}" % port,
            "headers": {"x-apikey": "{{auth.api_key}}"}, "expected_status": [200],
            "not_found_status": [404]}]},
        "malice_rules": {"rules": [{"field": "data.attributes.last_analysis_stats.malicious",
                                    "operator": ">", "value": 0, "verdict": "Malicious"}],
                         "default_verdict": "Benign", "not_found_verdict": "Pending"},
        "default_cache_ttl_seconds": 600, "cache_ttl_by_type": {"ip": 600},
    }


def abuse_provider(port):
    return {
        "provider_name": "abuse_standin", "display_name": "AbuseIPDB stand-in",
        "supported_indicator_types": ["ip"], "auth_type": "api_key",
        "auth_config": {"api_key": ABUSE_KEY},
        "http_config": {"steps": [{
            "name": "check", "method": "GET", "url": "http://127.0.0.1:%d/api/v2/check" % port,
            "query_params": {"ipAddress": "{{indicator.value}}", "maxAgeInDays": "90"},
            "headers": {"Key": "{{auth.api_key}}", "Accept": "application/json"}}]},
        "malice_rules": {"rules": [
            {"field": "data.abuseConfidenceScore", "operator": ">=", "value": 75, "verdict": "Malicious"},
            {"field": "data.abuseConfidenceScore", "operator": ">=", "value": 25, "verdict": "Suspicious"}],
            "default_verdict": "Benign"},
    }


def audit_types(s, k, want, timeout=15):
    """Waits until every event type in want shows up in /v1/audit-events; returns the events."""
    deadline = time.time() + timeout
    while True:
        r = s.request("GET", "/v1/audit-events?page_size=500&event_type=" + ",".join(want), key=k)
        assert_eq(r.status, 200, r.body)
        evs = r.json()["data"]
        if set(want) <= {e["event_type"] for e in evs} or time.time() > deadline:
            return evs
        time.sleep(0.3)


def provider_uuid(s, k, name):
    r = s.request("GET", "/v1/enrichment-providers?page_size=500", key=k)
    for p in r.json()["data"]:
        if p["provider_name"] == name:
            return p["uuid"]
    raise AssertionError("no provider " + name)


# On-demand lookups are answered by an enricher over the bus (the intake holds no provider
# credential), through the job bus's lookup broker.
LOOKUP_SERVICES = ("auditd", "jobbus", "enricher", "intake")


def wait_for_enricher(s, timeout=30):
    deadline = time.time() + timeout
    enricher = [p for p in s.procs if p.name == "enricher"][0]
    while "jobs at a time" not in enricher.text():
        if time.time() > deadline or not enricher.alive():
            raise AssertionError("the enricher did not start:\n" + enricher.text()[-3000:])
        time.sleep(0.1)
    time.sleep(0.3)  # its lookup socket has connected to the job bus


def test_provider_crud_builtins_and_secrets():
    key = gen_encryption_key()
    s = Stack("enr_crud", env={"ENCRYPTION_KEY": key, "ENRICHER_ALLOW_LOOPBACK": "true"})
    try:
        k = s.create_key("admin")
        r = s.request("POST", "/v1/enrichment-providers", key=k, body=vt_provider(9))
        assert_eq(r.status, 201, r.body)
        p = r.json()["data"]
        u = p["uuid"]
        assert "auth_config" not in p and VT_KEY not in r.body.decode()
        assert p["has_credentials"] is True and p["is_configured"] is True
        assert_eq(p["is_builtin"], False)
        assert_eq(p["supported_indicator_types"], ["ip"])
        # stored only as a Fernet token under ENCRYPTION_KEY
        stored = json.loads(s.sql_value("SELECT auth_config::text FROM enrichment_providers "
                                        "WHERE uuid = '%s'" % u))
        assert_eq(list(stored), ["_encrypted"])
        raw = base64.urlsafe_b64decode(stored["_encrypted"])
        assert raw[0] == 0x80 and len(raw) >= 1 + 8 + 16 + 16 + 32, len(raw)
        assert VT_KEY.encode() not in raw
        # ... which decrypts under the key (the rotation CLI refuses tokens it cannot open)
        r = s.cli("rotate-encryption-key", "--old-key", key, "--new-key", gen_encryption_key(), "--dry-run")
        assert "enrichment_providers" in r.stdout and "1 re-encrypted" in r.stdout, r.stdout
        bad = s.cli("rotate-encryption-key", "--old-key", gen_encryption_key(), "--new-key", gen_encryption_key(),
                    "--dry-run", check=False)
        assert bad.returncode != 0
        for path in ("/v1/enrichment-providers/" + u, "/v1/enrichment-providers"):
            body = s.request("GET", path, key=k).body.decode()
            assert VT_KEY not in body and "_encrypted" not in body, path
        # validation
        for bad_body, field in (
                (dict(vt_provider(9), provider_name="Bad-Name"), "provider_name"),
                (dict(vt_provider(9), provider_name=""), "provider_name"),
                (dict(vt_provider(9), provider_name="x" * 101), "provider_name"),
                (dict(vt_provider(9), provider_name="ok", default_cache_ttl_seconds=86401), "default_cache_ttl_seconds"),
                (dict(vt_provider(9), provider_name="ok", default_cache_ttl_seconds=-1), "default_cache_ttl_seconds"),
                (dict(vt_provider(9), provider_name="ok", supported_indicator_types=["ipv9"]), "supported_indicator_types"),
                (dict(vt_provider(9), provider_name="ok", http_config={"steps": []}), "http_config"),
                (dict(vt_provider(9), provider_name="ok", http_config="x"), "http_config"),
                (dict(vt_provider(9), provider_name="ok", auth_config={"api_key": 5}), "auth_config"),
                (dict(vt_provider(9), provider_name="ok", cache_ttl_by_type={"ip": 90000}), "cache_ttl_by_type")):
            r = s.request("POST", "/v1/enrichment-providers", key=k, body=bad_body)
            assert_eq(r.status, 422, (field, r.body))
            assert_eq(r.json()["error"]["details"]["errors"][0]["loc"], ["body", field])
        r = s.request("POST", "/v1/enrichment-providers", key=k, body={"provider_name": "x"})
        assert_eq(r.status, 422)
        r = s.request("POST", "/v1/enrichment-providers", key=k, body="[1]")
        assert_eq(r.status, 422)
        r = s.request("POST", "/v1/enrichment-providers", key=k, body=vt_provider(9))
        assert_eq(r.status, 409, r.body)
        # patch: fields change, secrets can be cleared
        r = s.request("PATCH", "/v1/enrichment-providers/" + u, key=k,
                      body={"display_name": "Renamed", "default_cache_ttl_seconds": 0})
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json()["data"]["display_name"], "Renamed")
        assert_eq(r.json()["data"]["default_cache_ttl_seconds"], 0)
        assert_eq(r.json()["data"]["has_credentials"], True)
        r = s.request("PATCH", "/v1/enrichment-providers/" + u, key=k, body={"auth_config": None})
        assert_eq(r.json()["data"]["has_credentials"], False)
        assert_eq(r.json()["data"]["is_configured"], False)
        assert_eq(s.sql_value("SELECT auth_config IS NULL FROM enrichment_providers WHERE uuid = '%s'" % u), "t")
        r = s.request("PATCH", "/v1/enrichment-providers/" + u, key=k, body={"auth_config": {"api_key": "k2"}})
        assert_eq(r.json()["data"]["has_credentials"], True)
        assert_eq(s.request("PATCH", "/v1/enrichment-providers/" + u, key=k,
                            body={"default_cache_ttl_seconds": 86401}).status, 422)
        # activate / deactivate
        r = s.request("POST", "/v1/enrichment-providers/%s/deactivate" % u, key=k)
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json()["data"]["is_active"], False)
        assert_eq(r.json()["data"]["is_configured"], False)
        r = s.request("GET", "/v1/enrichment-providers?is_active=false", key=k).json()
        assert_eq([x["provider_name"] for x in r["data"]], ["vt_standin"])
        r = s.request("POST", "/v1/enrichment-providers/%s/activate" % u, key=k)
        assert_eq(r.json()["data"]["is_active"], True)
        # builtins: no delete, PATCH only the original's fields
        vt = provider_uuid(s, k, "virustotal")
        r = s.request("DELETE", "/v1/enrichment-providers/" + vt, key=k)
        assert_eq(r.status, 400, r.body)
        assert_eq(r.json()["error"]["code"], "BUILTIN_PROVIDER_PROTECTED")
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_providers WHERE provider_name = 'virustotal'"), "1")
        for body in ({"http_config": {"steps": [{"url": "https://example.com/"}]}},
                     {"display_name": "x"}, {"supported_indicator_types": ["ip"]}, {"auth_type": "no_auth"}):
            r = s.request("PATCH", "/v1/enrichment-providers/" + vt, key=k, body=body)
            assert_eq(r.status, 400, (body, r.body))
        r = s.request("PATCH", "/v1/enrichment-providers/" + vt, key=k,
                      body={"description": "mine", "cache_ttl_by_type": {"ip": 60},
                            "auth_config": {"api_key": "zzz"}, "is_active": True})
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json()["data"]["description"], "mine")
        assert_eq(r.json()["data"]["has_credentials"], True)
        # summary of active providers
        r = s.request("GET", "/v1/enrichments/providers", key=k)
        assert_eq(r.status, 200, r.body)
        names = {x["provider_name"]: x for x in r.json()["data"]}
        assert {"virustotal", "abuseipdb", "okta", "entra", "vt_standin"} <= set(names)
        assert names["virustotal"]["is_configured"] is True
        # delete a custom provider
        r = s.request("DELETE", "/v1/enrichment-providers/" + u, key=k)
        assert_eq(r.status, 204, r.body)
        assert_eq(s.request("GET", "/v1/enrichment-providers/" + u, key=k).status, 404)
        assert_eq(s.request("DELETE", "/v1/enrichment-providers/" + u, key=k).status, 404)
        assert_eq(s.request("GET", "/v1/enrichment-providers/nope", key=k).status, 422)
        evs = audit_types(s, k, ["provider_created", "provider_updated", "provider_deleted"])
        assert {"provider_created", "provider_updated", "provider_deleted"} <= {e["event_type"] for e in evs}, evs
        blob = json.dumps(evs)
        assert "zzz" not in blob and VT_KEY not in blob
    finally:
        s.stop()


def test_ssrf_guard_and_missing_key():
    s = Stack("enr_ssrf", env={"ENCRYPTION_KEY": ""})
    try:
        k = s.create_key("admin")

        def create(url, name="ssrf_p", **extra):
            b = vt_provider(1, name=name)
            b.pop("auth_config")
            b["http_config"]["steps"][0]["url"] = url
            b.update(extra)
            return s.request("POST", "/v1/enrichment-providers", key=k, body=b)

        for url in ("http://169.254.169.254/latest/meta-data/{{indicator.value}}",
                    "http://metadata.google.internal/x", "http://10.0.0.5/x",
                    "http://127.0.0.1:8080/x",  # no loopback allowance on this stack
                    "http://[::1]/x", "http://2130706433/x", "ftp://example.com/x",
                    "file:///etc/passwd", "gopher://x/"):
            r = create(url)
            assert_eq(r.status, 400, (url, r.body))
            assert_eq(r.json()["error"]["code"], "INVALID_PROVIDER_URL")
            assert "SSRF" in r.json()["error"]["message"], r.body
        # url_templates_by_type are checked too
        b = vt_provider(1, name="tpl_p")
        b.pop("auth_config")
        b["http_config"]["url_templates_by_type"] = {"ip": "http://169.254.169.254/{{indicator.value}}"}
        r = s.request("POST", "/v1/enrichment-providers", key=k, body=b)
        assert_eq(r.status, 400, r.body)
        # PATCH re-checks
        r = create("https://{{auth.host}}/api/{{indicator.value}}", name="templ_host")
        assert_eq(r.status, 201, r.body)  # host from a template: checked at lookup time
        u = r.json()["data"]["uuid"]
        r = s.request("PATCH", "/v1/enrichment-providers/" + u, key=k, body={"http_config": {
            "steps": [{"url": "http://169.254.169.254/x"}]}})
        assert_eq(r.status, 400, r.body)
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_providers WHERE provider_name LIKE 'ssrf%'"), "0")
        # ENCRYPTION_KEY missing: credentials cannot be stored
        r = s.request("POST", "/v1/enrichment-providers", key=k,
                      body=dict(vt_provider(1, name="needs_key"),
                                http_config={"steps": [{"url": "https://{{auth.h}}/x"}]}))
        assert_eq(r.status, 400, r.body)
        assert_eq(r.json()["error"]["code"], "ENCRYPTION_NOT_CONFIGURED")
        assert "ENCRYPTION_KEY" in r.json()["error"]["message"]
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_providers WHERE provider_name = 'needs_key'"), "0")
        r = s.request("PATCH", "/v1/enrichment-providers/" + u, key=k, body={"auth_config": {"a": "b"}})
        assert_eq(r.status, 400, r.body)
        assert_eq(r.json()["error"]["code"], "ENCRYPTION_NOT_CONFIGURED")
    finally:
        s.stop()


def test_on_demand_lookup_cache_and_provider_test():
    stand = StandIn(vt_and_abuse)
    s = Stack("enr_lookup", env={"ENCRYPTION_KEY": gen_encryption_key(), "ENRICHER_ALLOW_LOOPBACK": "true",
                                 "VIRUSTOTAL_API_KEY": "", "ABUSEIPDB_API_KEY": ""},
              services=LOOKUP_SERVICES)
    try:
        wait_for_enricher(s)
        k = s.create_key("admin")
        # the metadata block holds whatever the loopback allowance says
        b = vt_provider(stand.port, name="meta")
        b["http_config"]["steps"][0]["url"] = "http://169.254.169.254/{{indicator.value}}"
        assert_eq(s.request("POST", "/v1/enrichment-providers", key=k, body=b).status, 400)
        r = s.request("POST", "/v1/enrichment-providers", key=k, body=vt_provider(stand.port))
        assert_eq(r.status, 201, r.body)
        vt_uuid = r.json()["data"]["uuid"]
        r = s.request("POST", "/v1/enrichment-providers", key=k, body=abuse_provider(stand.port))
        assert_eq(r.status, 201, r.body)
        r = s.request("POST", "/v1/enrichment-providers", key=k,
                      body=vt_provider(stand.port, name="vt_wrongkey", key="nope"))
        assert_eq(r.status, 201, r.body)

        r = s.request("POST", "/v1/enrichments", key=k, body={"type": "ip", "value": IP})
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq((d["indicator_type"], d["indicator_value"]), ("ip", IP))
        res = d["results"]
        # builtins have no credentials here: not configured, not called
        assert_eq(sorted(res), ["abuse_standin", "vt_standin", "vt_wrongkey"])
        vt = res["vt_standin"]
        assert_eq((vt["status"], vt["success"], vt["cache_hit"]), ("success", True, False), vt)
        assert_eq(vt["extracted"]["malice"], "Malicious")
        assert "raw" not in vt
        ab = res["abuse_standin"]
        assert_eq((ab["success"], ab["cache_hit"], ab["extracted"]["malice"]), (True, False, "Suspicious"))
        wk = res["vt_wrongkey"]
        assert_eq((wk["status"], wk["success"]), ("failed", False))
        assert "401" in wk["error_message"], wk
        # the stand-ins saw the decrypted credentials in the right headers
        vt_hdrs = [r.headers for r in stand.of("/api/v3/ip_addresses/" + IP)]
        assert any(h.get("x-apikey") == VT_KEY for h in vt_hdrs), vt_hdrs
        assert any(r.headers.get("key") == ABUSE_KEY for r in stand.of("/api/v2/check"))
        n_vt, n_ab = stand.count("/api/v3/"), stand.count("/api/v2/")
        assert_eq(s.sql_value("SELECT string_agg(provider_name, ',' ORDER BY provider_name) FROM enrichment_cache "
                              "WHERE indicator_type = 'ip' AND indicator_value = '%s'" % IP),
                  "abuse_standin,vt_standin")
        ttl = int(s.sql_value("SELECT extract(epoch FROM expires_at - now())::int FROM enrichment_cache "
                              "WHERE provider_name = 'vt_standin'"))
        assert 500 < ttl <= 600, ttl

        # second time: from the shared cache, no HTTP for the cached providers
        r = s.request("POST", "/v1/enrichments", key=k,
                      body={"indicator_type": "ip", "indicator_value": IP})
        assert_eq(r.status, 200, r.body)
        res = r.json()["data"]["results"]
        assert_eq(res["vt_standin"]["cache_hit"], True)
        assert_eq(res["abuse_standin"]["cache_hit"], True)
        assert_eq(res["vt_standin"]["extracted"]["malice"], "Malicious")
        assert_eq(res["vt_wrongkey"]["cache_hit"], False)  # failures are never cached
        assert_eq((stand.count("/api/v3/"), stand.count("/api/v2/")), (n_vt + 1, n_ab))

        # not enrichable: only a _validation result, no provider called
        r = s.request("POST", "/v1/enrichments", key=k, body={"type": "ip", "value": "10.1.2.3"})
        assert_eq(list(r.json()["data"]["results"]), ["_validation"])
        assert_eq(r.json()["data"]["results"]["_validation"]["status"], "skipped")
        for bad in ({"type": "ipv4", "value": IP}, {"type": "ip"}, {"type": "ip", "value": ""},
                    {"type": "ip", "value": 5}, {"value": IP}):
            assert_eq(s.request("POST", "/v1/enrichments", key=k, body=bad).status, 422, bad)

        # provider test: a real lookup, raw included, field extractions applied
        r = s.request("POST", "/v1/enrichment-field-extractions", key=k, body={
            "provider_name": "vt_standin", "indicator_type": "ip",
            "source_path": "data.attributes.reputation", "target_key": "reputation", "value_type": "int"})
        assert_eq(r.status, 201, r.body)
        before = stand.count("/api/v3/")
        r = s.request("POST", "/v1/enrichment-providers/%s/test" % vt_uuid, key=k,
                      body={"indicator_type": "ip", "indicator_value": "8.8.8.8"})
        assert_eq(r.status, 200, r.body)
        t = r.json()["data"]
        assert_eq((t["success"], t["extracted"]["reputation"], t["extracted"]["malice"]), (True, -12, "Malicious"))
        assert_eq(t["raw"]["data"]["id"], "8.8.8.8")
        assert_eq(stand.count("/api/v3/"), before + 1)
        r = s.request("POST", "/v1/enrichment-providers/%s/test" % vt_uuid, key=k,
                      body={"indicator_type": "domain", "indicator_value": "example.org"})
        assert_eq(r.status, 400, r.body)
        r = s.request("POST", "/v1/enrichment-providers/00000000-0000-4000-8000-000000000000/test",
                      key=k, body={"type": "ip", "value": IP})
        assert_eq(r.status, 404)
        # an inactive provider can still be tested, and is skipped by on-demand lookups
        s.request("POST", "/v1/enrichment-providers/%s/deactivate" % vt_uuid, key=k)
        r = s.request("POST", "/v1/enrichment-providers/%s/test" % vt_uuid, key=k,
                      body={"type": "ip", "value": "1.1.1.1"})
        assert_eq(r.json()["data"]["success"], True)
        r = s.request("POST", "/v1/enrichments", key=k, body={"type": "ip", "value": "1.1.1.1"})
        assert "vt_standin" not in r.json()["data"]["results"]

        evs = audit_types(s, k, ["credentials_decrypted"])
        dec = [e for e in evs if e["event_type"] == "credentials_decrypted"]
        assert dec, evs
        blob = json.dumps(dec)
        assert VT_KEY not in blob and ABUSE_KEY not in blob
        assert "vt_standin" in blob and "abuse_standin" in blob, blob
    finally:
        s.stop()
        stand.close()


def test_alert_reenrich_job():
    s = Stack("enr_job", env={"ENCRYPTION_KEY": gen_encryption_key()})
    try:
        k = s.create_key("admin")
        r = s.request("POST", "/v1/ingest/generic", key=k, body={"title": "t", "severity": "low",
                                                                 "src_ip": IP})
        assert_eq(r.status, 202, r.body)
        u = r.json()["data"]["alert_uuid"]
        before = int(s.sql_value("SELECT count(*) FROM enrichment_jobs j JOIN alerts a ON a.id = j.alert_id "
                                 "WHERE a.uuid = '%s'" % u))
        r = s.request("POST", "/v1/alerts/%s/enrich" % u, key=k)
        assert_eq(r.status, 202, r.body)
        assert_eq(r.json()["data"], {"alert_uuid": u, "status": "queued"})
        assert "x-ratelimit-limit" in r.headers
        rows = s.sql("SELECT j.status, j.attempts FROM enrichment_jobs j JOIN alerts a ON a.id = j.alert_id "
                     "WHERE a.uuid = '%s' ORDER BY j.id" % u)
        assert_eq(len(rows), before + 1)
        assert_eq(rows[-1], ["pending", "0"])
        r = s.request("POST", "/v1/alerts/00000000-0000-4000-8000-000000000000/enrich", key=k)
        assert_eq(r.status, 404)
        assert_eq(s.request("POST", "/v1/alerts/xyz/enrich", key=k).status, 422)
        ro = s.create_key("alerts:read,enrichments:read")
        assert_eq(s.request("POST", "/v1/alerts/%s/enrich" % u, key=ro).status, 403)
    finally:
        s.stop()


def test_field_extractions():
    s = Stack("enr_ext", env={"ENCRYPTION_KEY": gen_encryption_key()})
    try:
        k = s.create_key("admin")
        base = "/v1/enrichment-field-extractions"
        r = s.request("GET", base + "?provider_name=abuseipdb&page_size=500", key=k)
        assert_eq(r.status, 200)
        assert_eq(r.json()["meta"]["total"], 10)
        sys_row = r.json()["data"][0]
        assert sys_row["is_system"] is True
        r = s.request("POST", base, key=k, body={"provider_name": "custom_p", "indicator_type": "ip",
                                                 "source_path": "a.b", "target_key": "ab"})
        assert_eq(r.status, 201, r.body)
        one = r.json()["data"]
        assert_eq((one["value_type"], one["is_system"], one["is_active"]), ("string", False, True))
        r = s.request("POST", base, key=k, body={"provider_name": "custom_p", "indicator_type": "ip",
                                                 "source_path": "a.b", "target_key": "other"})
        assert_eq(r.status, 409, r.body)
        for bad in ({"provider_name": "p", "indicator_type": "nope", "source_path": "a", "target_key": "b"},
                    {"provider_name": "p", "indicator_type": "ip", "source_path": "", "target_key": "b"},
                    {"provider_name": "p", "indicator_type": "ip", "source_path": "a", "target_key": "b",
                     "value_type": "number"},
                    {"provider_name": "p", "indicator_type": "ip", "source_path": "a"}):
            assert_eq(s.request("POST", base, key=k, body=bad).status, 422, bad)
        rows = [{"provider_name": "custom_p", "indicator_type": "ip", "source_path": "c%d" % i,
                 "target_key": "c%d" % i, "value_type": "int"} for i in range(3)]
        r = s.request("POST", base + "/bulk", key=k, body=rows)
        assert_eq(r.status, 201, r.body)
        assert_eq([x["source_path"] for x in r.json()["data"]], ["c0", "c1", "c2"])
        # all or nothing
        r = s.request("POST", base + "/bulk", key=k, body={"extractions": [
            {"provider_name": "custom_p", "indicator_type": "ip", "source_path": "new1", "target_key": "n"},
            {"provider_name": "custom_p", "indicator_type": "ip", "source_path": "c0", "target_key": "dup"}]})
        assert_eq(r.status, 409, r.body)
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_field_extractions WHERE source_path = 'new1'"), "0")
        assert_eq(s.request("POST", base + "/bulk", key=k, body=[]).status, 422)
        assert_eq(s.request("POST", base + "/bulk", key=k, body=[{"provider_name": "x"}]).status, 422)
        r = s.request("GET", base + "?provider_name=custom_p", key=k).json()
        assert_eq(r["meta"]["total"], 4)
        r = s.request("PATCH", base + "/" + one["uuid"], key=k, body={"target_key": "ab2", "is_active": False,
                                                                       "value_type": "list"})
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq((d["target_key"], d["is_active"], d["value_type"]), ("ab2", False, "list"))
        assert_eq(s.request("PATCH", base + "/" + one["uuid"], key=k, body={"value_type": "x"}).status, 422)
        r = s.request("GET", base + "?provider_name=custom_p&is_active=false", key=k).json()
        assert_eq(r["meta"]["total"], 1)
        assert_eq(s.request("GET", base + "/" + one["uuid"], key=k).json()["data"]["target_key"], "ab2")
        r = s.request("DELETE", base + "/" + sys_row["uuid"], key=k)
        assert_eq(r.status, 400, r.body)
        r = s.request("PATCH", base + "/" + sys_row["uuid"], key=k, body={"is_active": False})
        assert_eq(r.status, 200)
        assert_eq(s.request("DELETE", base + "/" + one["uuid"], key=k).status, 204)
        assert_eq(s.request("GET", base + "/" + one["uuid"], key=k).status, 404)
        assert_eq(s.request("DELETE", base + "/" + one["uuid"], key=k).status, 404)
        evs = audit_types(s, k, ["field_extraction_created", "field_extraction_updated",
                                 "field_extraction_deleted"])
        assert_eq({e["event_type"] for e in evs}, {"field_extraction_created", "field_extraction_updated",
                                                   "field_extraction_deleted"})
    finally:
        s.stop()


def test_scopes():
    s = Stack("enr_scopes", env={"ENCRYPTION_KEY": gen_encryption_key(), "ENRICHMENT_MOCK_MODE": "true"},
              services=LOOKUP_SERVICES)
    try:
        wait_for_enricher(s)
        admin = s.create_key("admin")
        ro = s.create_key("enrichments:read")
        other = s.create_key("alerts:read,alerts:write")
        vt = provider_uuid(s, admin, "virustotal")
        ext = s.request("GET", "/v1/enrichment-field-extractions", key=admin).json()["data"][0]["uuid"]
        for method, path in (("GET", "/v1/enrichment-providers"), ("GET", "/v1/enrichment-providers/" + vt),
                             ("GET", "/v1/enrichments/providers"),
                             ("GET", "/v1/enrichment-field-extractions"),
                             ("GET", "/v1/enrichment-field-extractions/" + ext)):
            assert_eq(s.request(method, path, key=ro).status, 200, path)
            assert_eq(s.request(method, path, key=other).status, 403, path)
            assert_eq(s.request(method, path).status, 401, path)
        writes = (("POST", "/v1/enrichment-providers", vt_provider(1, name="scoped")),
                  ("PATCH", "/v1/enrichment-providers/" + vt, {"description": "x"}),
                  ("DELETE", "/v1/enrichment-providers/" + vt, None),
                  ("POST", "/v1/enrichment-providers/%s/test" % vt, {"type": "ip", "value": IP}),
                  ("POST", "/v1/enrichment-providers/%s/deactivate" % vt, None),
                  ("POST", "/v1/enrichment-providers/%s/activate" % vt, None),
                  ("POST", "/v1/enrichment-field-extractions", {}),
                  ("POST", "/v1/enrichment-field-extractions/bulk", []),
                  ("PATCH", "/v1/enrichment-field-extractions/" + ext, {"is_active": False}),
                  ("DELETE", "/v1/enrichment-field-extractions/" + ext, None))
        for method, path, body in writes:
            assert_eq(s.request(method, path, key=ro, body=body).status, 403, (method, path))
        # on-demand lookups need only enrichments:read (mock mode: the seeded answers)
        r = s.request("POST", "/v1/enrichments", key=ro, body={"type": "ip", "value": IP})
        assert_eq(r.status, 200, r.body)
        res = r.json()["data"]["results"]
        assert "virustotal" in res, r.body
        assert_eq(res["virustotal"]["extracted"]["malice"], "Malicious")
        assert_eq(res["abuseipdb"]["success"], True)
        assert_eq(s.request("POST", "/v1/enrichments", key=other, body={"type": "ip", "value": IP}).status, 403)
        r = s.request("GET", "/v1/enrichments/providers", key=ro)
        assert all(p["is_configured"] for p in r.json()["data"]), r.body
        assert int(r.headers["x-ratelimit-limit"]) > 0
    finally:
        s.stop()


run_tests(globals())
