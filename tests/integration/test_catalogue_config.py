"""Indicator mappings (CRUD, checked types and targets, system mappings read-only except
is_active, changes live in every intake within a second), the dry-run extraction, the source
plugin fields, source integrations (auth_config encrypted and never returned) and the approval
defaults setting."""
import datetime
import json
import time

from cryptography.fernet import Fernet

from harness import Stack, assert_eq, run_tests

NIL = "00000000-0000-0000-0000-000000000000"


def test_mappings_crud_and_system_readonly():
    s = Stack("mappings")
    try:
        admin = s.create_key("admin")
        reader = s.create_key("alerts:read,alerts:write,enrichments:read")
        assert_eq(s.request("GET", "/v1/indicator-mappings").status, 401)
        assert_eq(s.request("GET", "/v1/indicator-mappings", key=reader).status, 403)
        r = s.request("GET", "/v1/indicator-mappings?is_system=true&page_size=500", key=admin)
        assert_eq(r.status, 200, r.body)
        system = r.json()["data"]
        assert_eq(len(system), 14)
        assert_eq(system[0]["field_path"], "src_ip")  # created_at order
        r = s.request("POST", "/v1/indicator-mappings", key=admin, body={
            "source_name": "generic", "field_path": "alert.host", "indicator_type": "domain",
            "extraction_target": "raw_payload", "description": "host of the alert"})
        assert_eq(r.status, 201, r.body)
        m = r.json()["data"]
        assert_eq((m["is_system"], m["is_active"], m["extraction_target"]), (False, True, "raw_payload"))
        for bad in ({"field_path": "x", "indicator_type": "ipv6"},
                    {"field_path": "x", "indicator_type": "ip", "extraction_target": "headers"},
                    {"indicator_type": "ip"}, {"field_path": "", "indicator_type": "ip"},
                    {"field_path": "x", "indicator_type": "ip", "source_name": "qradar"},
                    {"field_path": "x", "indicator_type": "ip", "is_active": "yes"}):
            r = s.request("POST", "/v1/indicator-mappings", key=admin, body=bad)
            assert_eq(r.status, 422, bad)
        r = s.request("GET", "/v1/indicator-mappings?is_system=false&extraction_target=raw_payload", key=admin).json()
        assert_eq([x["uuid"] for x in r["data"]], [m["uuid"]])
        assert_eq(s.request("GET", "/v1/indicator-mappings?source_name=generic", key=admin).json()["meta"]["total"], 1)
        assert_eq(s.request("GET", "/v1/indicator-mappings?is_active=nah", key=admin).status, 422)
        assert_eq(s.request("GET", "/v1/indicator-mappings/" + m["uuid"], key=admin).json()["data"], m)
        r = s.request("GET", "/v1/indicator-mappings/" + NIL, key=admin)
        assert_eq((r.status, r.json()["error"]["message"]), (404, "Indicator field mapping not found."))
        r = s.request("PATCH", "/v1/indicator-mappings/" + m["uuid"], key=admin,
                      body={"indicator_type": "url", "description": None})
        assert_eq(r.status, 200, r.body)
        assert_eq((r.json()["data"]["indicator_type"], r.json()["data"]["description"]), ("url", "host of the alert"))
        assert_eq(s.request("PATCH", "/v1/indicator-mappings/" + m["uuid"], key=admin,
                            body={"indicator_type": "nope"}).status, 422)
        # system mappings: is_active only, truly
        sm = system[0]["uuid"]
        for body in ({"indicator_type": "domain"}, {"field_path": "x"}, {"description": "mine"}):
            r = s.request("PATCH", "/v1/indicator-mappings/" + sm, key=admin, body=body)
            assert_eq((r.status, r.json()["error"]["code"]), (422, "SYSTEM_MAPPING_READONLY"), body)
        assert_eq(s.sql_value("SELECT indicator_type FROM indicator_field_mappings WHERE uuid = '%s'" % sm), "ip")
        r = s.request("PATCH", "/v1/indicator-mappings/" + sm, key=admin, body={"is_active": False, "indicator_type": None})
        assert_eq((r.status, r.json()["data"]["is_active"]), (200, False))
        r = s.request("DELETE", "/v1/indicator-mappings/" + sm, key=admin)
        assert_eq((r.status, r.json()["error"]["message"]),
                  (422, "System mappings cannot be deleted. Set is_active=false to disable."))
        assert_eq(s.request("DELETE", "/v1/indicator-mappings/" + m["uuid"], key=admin).status, 204)
        assert_eq(s.request("DELETE", "/v1/indicator-mappings/" + m["uuid"], key=admin).status, 404)
        # the database refuses what the API refuses
        try:
            s.sql("INSERT INTO indicator_field_mappings (field_path, indicator_type) VALUES ('x', 'bogus')")
            raise AssertionError("bogus indicator_type stored")
        except RuntimeError:
            pass
        # source plugin fields: static, every plugin
        r = s.request("GET", "/v1/indicator-mappings/source-plugin-fields", key=admin)
        assert_eq(r.status, 200)
        d = r.json()["data"]
        assert_eq([x for x in ("sentinel", "elastic", "splunk", "generic") if any(f["source_name"] == x for f in d)],
                  ["sentinel", "elastic", "splunk", "generic"])
        assert all(f["extraction_target"] == "source_plugin" and f["is_system"] for f in d)
        assert any(f["field_path"] == "dns.question.name" for f in d)
    finally:
        s.stop()


def listen_times(s):
    """When each intake started listening (its periodic reload fires every 15 s from then)."""
    out = []
    for p in s.intakes:
        for line in p.text().splitlines():
            if '"listening on' in line:
                ts = json.loads(line)["timestamp"]
                out.append(datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
                           .replace(tzinfo=datetime.timezone.utc).timestamp())
    assert_eq(len(out), len(s.intakes))
    return out


def test_mapping_changes_reach_every_intake_within_a_second():
    s = Stack("mappings_live", intake_processes=2)
    try:
        k = s.create_key("admin")

        def extracted(tag):
            """Pass 2 runs at ingest: with the mapping, the title is also a domain indicator."""
            r = s.request("POST", "/v1/ingest/generic", key=k, body={"title": tag + ".example", "severity": "low"})
            a = r.json()["data"]["alert_uuid"]
            inds = s.request("GET", "/v1/alerts/%s/indicators" % a, key=k).json()["data"]
            return any(x["type"] == "domain" and x["value"] == tag + ".example" for x in inds)
        assert not extracted("before")
        r = s.request("POST", "/v1/indicator-mappings", key=k, body={
            "field_path": "title", "indicator_type": "domain", "source_name": "generic",
            "is_active": False})
        mapping = r.json()["data"]["uuid"]
        starts = listen_times(s)
        conclusive = 0
        for attempt in range(6):
            active = attempt % 2 == 0
            t_change = time.time()
            s.request("PATCH", "/v1/indicator-mappings/" + mapping, key=k, body={"is_active": active})
            time.sleep(1.0)
            # eight ingests: SO_REUSEPORT spreads the connections over both intakes
            got = [extracted("a%d-%d" % (attempt, j)) for j in range(8)]
            assert_eq(got, [active] * 8, "attempt %d" % attempt)
            t_end = time.time()
            # a periodic reload inside [t_change, t_end] could explain the result: not counted
            if all(int((t_end - t0) // 15) == int((t_change - t0) // 15) for t0 in starts):
                conclusive += 1
            if conclusive >= 2:
                break
        assert conclusive >= 2, "no attempt clear of the periodic reload"
    finally:
        s.stop()


def test_extraction_dry_run():
    s = Stack("extraction")
    try:
        k = s.create_key("admin")
        s.request("POST", "/v1/indicator-mappings", key=k, body={
            "field_path": "context.host", "indicator_type": "domain", "extraction_target": "raw_payload"})
        s.request("POST", "/v1/indicator-mappings", key=k, body={
            "field_path": "title", "indicator_type": "account", "source_name": "generic"})
        s.request("POST", "/v1/indicator-mappings", key=k, body={
            "field_path": "context.host", "indicator_type": "url", "source_name": "sentinel",
            "extraction_target": "raw_payload"})
        before = s.sql_value("SELECT count(*) FROM indicators")
        payload = {"title": "svc-backup", "severity": "high", "src_ip": "203.0.113.9",
                   "domain": "  dup.example ", "context": {"host": "dup.example"}}
        r = s.request("POST", "/v1/indicator-mappings/test-extraction", key=k,
                      body={"source_name": "generic", "raw_payload": payload})
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq([p["pass_name"] for p in d["passes"]], ["source_plugin", "normalized_mappings", "raw_payload_mappings"])
        assert_eq([p["pass_label"] for p in d["passes"]], ["Source Plugin", "Normalized Mappings", "Raw Payload Mappings"])
        p1, p2, p3 = d["passes"]
        assert {"type": "ip", "value": "203.0.113.9", "source_field": None} in p1["indicators"], p1
        assert_eq(p2["indicators"], [{"type": "account", "value": "svc-backup", "source_field": "normalized.title"}])
        assert_eq(p3["indicators"], [{"type": "domain", "value": "dup.example", "source_field": "raw_payload.context.host"}])
        values = [(x["type"], x["value"]) for x in d["deduplicated"]]
        assert_eq(values.count(("domain", "dup.example")), 1)  # first occurrence wins
        assert_eq(d["deduplicated_count"], len(d["deduplicated"]))
        assert_eq((d["success"], d["error_message"], d["source_name"]), (True, None, "generic"))
        assert_eq(d["normalization_preview"]["title"], "svc-backup")
        assert_eq(d["normalization_preview"]["severity"], "High")
        assert d["duration_ms"] >= 0
        assert_eq(s.sql_value("SELECT count(*) FROM indicators"), before)  # persists nothing
        r = s.request("POST", "/v1/indicator-mappings/test-extraction", key=k,
                      body={"source_name": "qradar", "raw_payload": {}})
        assert_eq((r.status, r.json()["error"]["code"], r.json()["error"]["message"]),
                  (422, "UNKNOWN_SOURCE", "Unknown alert source: qradar"))
        r = s.request("POST", "/v1/indicator-mappings/test-extraction", key=k,
                      body={"source_name": "generic", "raw_payload": {"no": "title"}})
        assert_eq((r.status, r.json()["error"]["code"]), (422, "INVALID_PAYLOAD"))
        assert_eq(s.request("POST", "/v1/indicator-mappings/test-extraction", key=k,
                            body={"source_name": "generic", "raw_payload": [1]}).status, 422)
        assert_eq(s.request("POST", "/v1/indicator-mappings/test-extraction", key=s.create_key("alerts:write"),
                            body={"source_name": "generic", "raw_payload": payload}).status, 403)
    finally:
        s.stop()


def test_sources_and_settings():
    key = Fernet.generate_key().decode()
    s = Stack("sources", env={"ENCRYPTION_KEY": key, "APPROVAL_NOTIFIER": "slack",
                              "SLACK_BOT_TOKEN": "xoxb-secret-token", "APPROVAL_DEFAULT_CHANNEL": "#soc",
                              "APPROVAL_DEFAULT_TIMEOUT_SECONDS": "900"})
    try:
        admin = s.create_key("admin")
        reader = s.create_key("alerts:read")
        secret = {"token": "very-secret-value", "nested": {"a": 1}}
        r = s.request("POST", "/v1/sources", key=admin, body={
            "source_name": "splunk", "display_name": "Splunk prod", "auth_type": "token",
            "auth_config": secret, "documentation": "HEC"})
        assert_eq(r.status, 201, r.body)
        src = r.json()["data"]
        assert "auth_config" not in src and "very-secret" not in r.body.decode()
        stored = json.loads(s.sql_value("SELECT auth_config::text FROM source_integrations"))
        assert_eq(list(stored), ["_encrypted"])
        assert_eq(json.loads(Fernet(key.encode()).decrypt(stored["_encrypted"].encode())), secret)
        assert_eq(s.request("POST", "/v1/sources", key=reader, body={"source_name": "splunk", "display_name": "x"}).status, 403)
        r = s.request("POST", "/v1/sources", key=admin, body={"source_name": "qradar", "display_name": "Q"})
        assert_eq((r.status, r.json()["error"]["code"]), (400, "INVALID_SOURCE"))
        assert "Registered sources: ['sentinel', 'elastic', 'splunk', 'generic']" in r.json()["error"]["message"]
        for bad in ({"source_name": "splunk"}, {"source_name": "splunk", "display_name": ""},
                    {"source_name": "splunk", "display_name": "x" * 256},
                    {"source_name": "splunk", "display_name": "x", "auth_config": "str"},
                    {"source_name": "splunk", "display_name": "x", "auth_config": {"k": "v" * 262200}}):
            assert_eq(s.request("POST", "/v1/sources", key=admin, body=bad).status, 422, str(bad)[:80])
        s.request("POST", "/v1/sources", key=admin, body={"source_name": "generic", "display_name": "Second"})
        r = s.request("GET", "/v1/sources", key=reader)
        assert_eq(r.status, 200)
        assert_eq([x["display_name"] for x in r.json()["data"]], ["Second", "Splunk prod"])  # newest first
        assert "auth_config" not in r.body.decode()
        assert_eq(s.request("GET", "/v1/sources/" + src["uuid"], key=reader).json()["data"], src)
        assert_eq(s.request("GET", "/v1/sources/" + NIL, key=reader).json()["error"]["message"],
                  "Source integration not found.")
        r = s.request("PATCH", "/v1/sources/" + src["uuid"], key=admin,
                      body={"display_name": "Splunk", "auth_config": {"token": "rotated"}, "auth_type": None})
        assert_eq(r.status, 200, r.body)
        assert_eq((r.json()["data"]["display_name"], r.json()["data"]["auth_type"]), ("Splunk", "token"))
        stored = json.loads(s.sql_value("SELECT auth_config::text FROM source_integrations WHERE uuid = '%s'" % src["uuid"]))
        assert_eq(json.loads(Fernet(key.encode()).decrypt(stored["_encrypted"].encode())), {"token": "rotated"})
        assert_eq(s.request("PATCH", "/v1/sources/" + src["uuid"], key=reader, body={}).status, 403)
        assert_eq(s.request("PATCH", "/v1/sources/" + NIL, key=admin, body={}).status, 404)
        assert_eq(s.request("DELETE", "/v1/sources/" + src["uuid"], key=admin).status, 204)
        assert_eq(s.request("DELETE", "/v1/sources/" + src["uuid"], key=admin).status, 404)
        # settings
        assert_eq(s.request("GET", "/v1/settings/approval-defaults", key=reader).status, 403)
        r = s.request("GET", "/v1/settings/approval-defaults", key=admin)
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json(), {"data": {"notifier": "slack", "default_channel": "#soc",
                                      "default_timeout_seconds": 900, "slack_configured": True,
                                      "teams_configured": False}, "meta": {}})
        assert "xoxb" not in r.body.decode()
    finally:
        s.stop()
    s = Stack("sources_nokey", env={"ENCRYPTION_KEY": ""})
    try:
        admin = s.create_key("admin")
        r = s.request("POST", "/v1/sources", key=admin, body={"source_name": "elastic", "display_name": "E",
                                                              "auth_config": {"k": "v"}})
        assert_eq((r.status, r.json()["error"]["code"]), (400, "ENCRYPTION_NOT_CONFIGURED"))
        assert_eq(s.sql_value("SELECT count(*) FROM source_integrations"), "0")
        r = s.request("POST", "/v1/sources", key=admin, body={"source_name": "elastic", "display_name": "E"})
        assert_eq(r.status, 201)
        r = s.request("GET", "/v1/settings/approval-defaults", key=admin).json()["data"]
        assert_eq((r["notifier"], r["default_channel"], r["slack_configured"]), ("none", None, False))
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
