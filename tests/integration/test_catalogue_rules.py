"""Detection rules and indicators: CRUD, filters and sorts, scopes, the unique
(source_name, source_rule_id) that keeps ingest linking alive, per-rule metrics, the analyst's
malice override, adding indicators with a committed enrichment job, and the relationship graph."""
import threading

from harness import Stack, assert_eq, run_tests

NIL = "00000000-0000-0000-0000-000000000000"


def test_detection_rules_crud_and_scopes():
    s = Stack("rules_crud")
    try:
        admin = s.create_key("admin", name="rule-admin")
        reader = s.create_key("alerts:read", name="reader")
        writer = s.create_key("alerts:write", name="writer")
        assert_eq(s.request("GET", "/v1/detection-rules").status, 401)
        assert_eq(s.request("GET", "/v1/detection-rules", key=writer).status, 403)
        body = {"name": "Brute force", "source_name": "generic", "source_rule_id": "R-1",
                "severity": "High", "mitre_tactics": ["TA0006"], "mitre_techniques": ["T1110"],
                "documentation": "# Runbook"}
        assert_eq(s.request("POST", "/v1/detection-rules", key=reader, body=body).status, 403)
        r = s.request("POST", "/v1/detection-rules", key=admin, body=body)
        assert_eq(r.status, 201, r.body)
        rule = r.json()["data"]
        assert_eq(rule["created_by"], "rule-admin")  # the key's name, never its prefix
        assert_eq(rule["mitre_tactics"], ["TA0006"])
        assert_eq(rule["mitre_subtechniques"], [])
        assert_eq(rule["is_active"], True)
        assert "is_system" not in rule and "id" not in rule
        # the same (source_name, source_rule_id) again: refused, not duplicated
        r = s.request("POST", "/v1/detection-rules", key=admin, body=body)
        assert_eq(r.status, 409, r.body)
        assert_eq(r.json()["error"]["code"], "CONFLICT")
        for bad in ({}, {"name": ""}, {"name": "x" * 501}, {"name": "a", "mitre_tactics": "TA1"},
                    {"name": "a", "is_active": "yes"}, {"name": None}):
            r = s.request("POST", "/v1/detection-rules", key=admin, body=bad)
            assert_eq(r.status, 422, bad)
            assert_eq(r.json()["error"]["code"], "VALIDATION_ERROR")
        r = s.request("POST", "/v1/detection-rules", key=admin, body={
            "name": "Anomalous transfer", "source_name": "splunk", "severity": "Low",
            "created_by": "alice", "is_active": False})
        assert_eq(r.json()["data"]["created_by"], "alice")
        s.request("POST", "/v1/detection-rules", key=admin, body={"name": "Critical thing",
                                                                   "severity": "Critical"})
        r = s.request("GET", "/v1/detection-rules?sort_by=severity&sort_order=desc", key=reader)
        assert_eq(r.status, 200, r.body)
        assert_eq([x["severity"] for x in r.json()["data"]], ["Critical", "High", "Low"])
        assert_eq(r.json()["meta"], {"total": 3, "page": 1, "page_size": 50, "total_pages": 1})
        r = s.request("GET", "/v1/detection-rules?sort_by=name&sort_order=asc&page_size=2", key=reader).json()
        assert_eq([x["name"] for x in r["data"]], ["Anomalous transfer", "Brute force"])
        assert_eq(r["meta"]["total_pages"], 2)
        r = s.request("GET", "/v1/detection-rules?source_name=generic,splunk&is_active=true", key=reader).json()
        assert_eq([x["name"] for x in r["data"]], ["Brute force"])
        r = s.request("GET", "/v1/detection-rules?severity=Low,Critical", key=reader).json()
        assert_eq(r["meta"]["total"], 2)
        r = s.request("GET", "/v1/detection-rules?sort_by=password", key=reader)
        assert_eq(r.status, 400)
        assert_eq(r.json()["error"]["message"],
                  "sort_by must be one of: ['created_at', 'name', 'severity', 'source_name']")
        assert_eq(s.request("GET", "/v1/detection-rules?sort_order=up", key=reader).status, 400)
        assert_eq(s.request("GET", "/v1/detection-rules?is_active=maybe", key=reader).status, 422)
        assert_eq(s.request("GET", "/v1/detection-rules?page=0", key=reader).status, 422)
        u = rule["uuid"]
        assert_eq(s.request("GET", "/v1/detection-rules/" + u, key=reader).json()["data"], rule)
        r = s.request("GET", "/v1/detection-rules/" + NIL, key=reader)
        assert_eq((r.status, r.json()["error"]["message"]), (404, "Detection rule not found."))
        assert_eq(s.request("GET", "/v1/detection-rules/nope", key=reader).status, 422)
        # PATCH: patchable fields only, null = unchanged
        r = s.request("PATCH", "/v1/detection-rules/" + u, key=admin, body={
            "name": "Brute force v2", "severity": None, "mitre_techniques": ["T1110.001"],
            "source_rule_id": "other", "created_by": "mallory"})
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq((d["name"], d["severity"], d["mitre_techniques"], d["source_rule_id"], d["created_by"]),
                  ("Brute force v2", "High", ["T1110.001"], "R-1", "rule-admin"))
        assert d["updated_at"] >= rule["updated_at"]
        assert_eq(s.request("PATCH", "/v1/detection-rules/" + u, key=admin, body={"name": ""}).status, 422)
        assert_eq(s.request("PATCH", "/v1/detection-rules/" + u, key=reader, body={"name": "x"}).status, 403)
        assert_eq(s.request("PATCH", "/v1/detection-rules/" + NIL, key=admin, body={"name": "x"}).status, 404)
        # ingest links to the admin's rule instead of making a stub
        a = s.ingest(admin, "login storm", rule_id="R-1")
        r = s.request("GET", "/v1/alerts/" + a, key=reader).json()["data"]
        assert_eq(r["detection_rule"]["uuid"], u)
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules WHERE source_rule_id = 'R-1'"), "1")
        # delete: 204, the alert stays with no rule
        assert_eq(s.request("DELETE", "/v1/detection-rules/" + u, key=reader).status, 403)
        assert_eq(s.request("DELETE", "/v1/detection-rules/" + u, key=admin).status, 204)
        assert_eq(s.request("DELETE", "/v1/detection-rules/" + u, key=admin).status, 404)
        assert_eq(s.request("GET", "/v1/alerts/" + a, key=reader).json()["data"]["detection_rule"], None)
    finally:
        s.stop()


def test_concurrent_stubs_never_duplicate():
    s = Stack("rules_stubs")
    try:
        k = s.create_key("admin")
        out = []

        def post(i):
            out.append(s.request("POST", "/v1/ingest/generic", key=k,
                                 body={"title": "t%d" % i, "severity": "low", "rule_id": "NEW-RULE"}).status)

        def create():
            out.append(s.request("POST", "/v1/detection-rules", key=k, body={
                "name": "n", "source_name": "generic", "source_rule_id": "NEW-RULE"}).status)
        ts = [threading.Thread(target=post, args=(i,)) for i in range(12)] + [threading.Thread(target=create)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert_eq(sorted(set(out) - {201, 409}), [202], out)
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules WHERE source_rule_id = 'NEW-RULE'"), "1")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE detection_rule_id IS NULL"), "0")
        # the database refuses a second row whatever writes it
        s.sql("INSERT INTO detection_rules (name, source_name, source_rule_id) "
              "VALUES ('x', 'generic', 'NEW-RULE') ON CONFLICT DO NOTHING")
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules WHERE source_rule_id = 'NEW-RULE'"), "1")
    finally:
        s.stop()


def test_rule_metrics():
    s = Stack("rules_metrics")
    try:
        k = s.create_key("admin")
        reader = s.create_key("alerts:read")
        a1 = s.ingest(k, "m1", rule_id="M", src_ip="203.0.113.5")
        a2 = s.ingest(k, "m2", rule_id="M", src_ip="203.0.113.5", severity="low")
        s.ingest(k, "m3", rule_id="M")
        s.request("PATCH", "/v1/alerts/" + a1, key=k,
                  body={"status": "Closed", "close_classification": "False Positive - Inaccurate Data"})
        s.request("PATCH", "/v1/alerts/" + a2, key=k,
                  body={"status": "Closed", "close_classification": "True Positive - Suspicious Activity"})
        u = s.sql_value("SELECT uuid FROM detection_rules WHERE source_rule_id = 'M'")
        r = s.request("GET", "/v1/detection-rules/%s/metrics" % u, key=reader)
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq((d["total_alerts"], d["active_alerts"]), (3, 1))
        assert_eq(d["alerts_by_status"], {"Closed": 2, "Open": 1})
        assert_eq((d["false_positive_rate"], d["true_positive_rate"]), (0.5, 0.5))
        assert_eq(d["close_classifications"], {"False Positive - Inaccurate Data": 1,
                                               "True Positive - Suspicious Activity": 1})
        assert_eq(len(d["alerts_over_time"]), 1)
        assert_eq(d["alerts_over_time"][0]["count"], 3)
        assert_eq(d["fp_over_time"][0]["count"], 1)
        assert d["mttc_seconds"] is not None and d["mttc_seconds"] >= 0
        assert_eq(d["top_indicators"], [{"type": "ip", "value": "203.0.113.5", "count": 2, "malice": "Pending"}])
        assert_eq(d["alert_sources"], {"generic": 3})
        assert_eq(d["detection_rule_name"], "M")
        r = s.request("GET", "/v1/detection-rules/%s/metrics?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z" % u, key=reader)
        assert_eq(r.json()["data"]["total_alerts"], 0)
        assert_eq(r.json()["data"]["period_from"], "2000-01-01T00:00:00.000000Z")
        assert_eq(s.request("GET", "/v1/detection-rules/%s/metrics?from=yesterday" % u, key=reader).status, 422)
        assert_eq(s.request("GET", "/v1/detection-rules/%s/metrics" % NIL, key=reader).status, 404)
        assert_eq(s.request("GET", "/v1/detection-rules/%s/metrics" % u, key=s.create_key("alerts:write")).status, 403)
    finally:
        s.stop()


def test_indicators_override_add_and_graph():
    s = Stack("indicators")
    try:
        admin = s.create_key("admin")
        writer = s.create_key("alerts:write")
        reader = s.create_key("alerts:read")
        er = s.create_key("enrichments:read")
        a = s.ingest(admin, "first", src_ip="198.51.100.7")
        b = s.ingest(admin, "second", src_ip="198.51.100.7")
        c = s.ingest(admin, "third", src_ip="198.51.100.7")
        iu = s.sql_value("SELECT uuid FROM indicators WHERE value = '198.51.100.7'")
        s.sql("UPDATE indicators SET enrichment_results = '{\"vt\": {\"success\": true, \"extracted\": "
              "{\"malice\": \"Suspicious\"}, \"raw\": {\"secret\": 1}}, \"odd\": 5}' WHERE uuid = '%s'" % iu)
        # GET needs enrichments:read and shows the raw answers
        assert_eq(s.request("GET", "/v1/indicators/" + iu, key=reader).status, 403)
        r = s.request("GET", "/v1/indicators/" + iu, key=er)
        assert_eq(r.status, 200, r.body)
        assert_eq(r.json()["data"]["enrichment_results"]["vt"]["raw"], {"secret": 1})
        assert_eq(s.request("GET", "/v1/indicators/" + NIL, key=er).json()["error"]["message"], "Indicator not found.")
        # PATCH override: analyst; raw withheld from a key without enrichments:read
        r = s.request("PATCH", "/v1/indicators/" + iu, key=writer, body={"malice": "Malicious"})
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq((d["malice"], d["malice_source"]), ("Malicious", "analyst"))
        assert d["malice_overridden_at"]
        assert "raw" not in d["enrichment_results"]["vt"]
        assert_eq(d["enrichment_results"]["odd"], 5)
        assert_eq(s.request("PATCH", "/v1/indicators/" + iu, key=writer, body={"malice": "Evil"}).status, 422)
        assert_eq(s.request("PATCH", "/v1/indicators/" + iu, key=reader, body={"malice": "Benign"}).status, 403)
        assert_eq(s.request("PATCH", "/v1/indicators/" + NIL, key=writer, body={}).status, 404)
        # reset ({} = null): recomputed from the stored results
        r = s.request("PATCH", "/v1/indicators/" + iu, key=admin, body={})
        d = r.json()["data"]
        assert_eq((d["malice"], d["malice_source"], d["malice_overridden_at"]), ("Suspicious", "enrichment", None))
        assert_eq(d["enrichment_results"]["vt"]["raw"], {"secret": 1})  # admin may read raw
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE event_type = 'indicator_malice_updated'"), "2")
        # add indicators: trimmed, linked, job committed with them
        jobs = int(s.sql_value("SELECT count(*) FROM enrichment_jobs"))
        r = s.request("POST", "/v1/alerts/%s/indicators" % a, key=writer, body={"indicators": [
            {"type": "domain", "value": "  evil.example  "}, {"type": "ip", "value": "198.51.100.7"}]})
        assert_eq(r.status, 201, r.body)
        d = r.json()["data"]
        assert_eq((d["added_count"], d["enrich_requested"]), (2, True))
        assert_eq([x["value"] for x in d["indicators"]], ["evil.example", "198.51.100.7"])
        assert "raw" not in d["indicators"][1]["enrichment_results"]["vt"]
        assert_eq(int(s.sql_value("SELECT count(*) FROM enrichment_jobs")), jobs + 1)
        r = s.request("POST", "/v1/alerts/%s/indicators?enrich=false" % b, key=writer,
                      body={"indicators": [{"type": "domain", "value": "evil.example"}]})
        assert_eq((r.status, r.json()["data"]["enrich_requested"]), (201, False))
        assert_eq(int(s.sql_value("SELECT count(*) FROM enrichment_jobs")), jobs + 1)
        for bad in ({"indicators": []}, {"indicators": [{"type": "ip", "value": "   "}]},
                    {"indicators": [{"type": "ipv9", "value": "x"}]},
                    {"indicators": [{"type": "ip", "value": "x" * 2049}]},
                    {"indicators": [{"type": "ip", "value": "1.1.1.1"}] * 101}, {}):
            r = s.request("POST", "/v1/alerts/%s/indicators" % a, key=writer, body=bad)
            assert_eq(r.status, 422, bad)
        assert_eq(s.request("POST", "/v1/alerts/%s/indicators" % NIL, key=writer,
                            body={"indicators": [{"type": "ip", "value": "1.1.1.1"}]}).status, 404)
        assert_eq(s.request("POST", "/v1/alerts/%s/indicators" % a, key=reader,
                            body={"indicators": [{"type": "ip", "value": "1.1.1.1"}]}).status, 403)
        assert_eq(s.sql_value("SELECT count(*) FROM indicators WHERE value = ''"), "0")
        ev = s.sql_value("SELECT \"references\"::text FROM activity_events WHERE event_type = 'alert_indicators_added' ORDER BY id LIMIT 1")
        assert '"indicator_count": 2' in ev, ev
        # relationship graph
        r = s.request("GET", "/v1/alerts/%s/relationship-graph?sibling_limit=1" % a, key=reader)
        assert_eq(r.status, 200, r.body)
        g = r.json()["data"]
        assert_eq(g["alert"]["uuid"], a)
        assert_eq(sorted(g["alert"]), ["occurred_at", "severity", "source_name", "status", "tags", "title", "uuid"])
        ind = {i["value"]: i for i in g["indicators"]}
        assert_eq(ind["198.51.100.7"]["total_alert_count"], 2)  # the other alerts only
        assert_eq(len(ind["198.51.100.7"]["sibling_alerts"]), 1)
        assert ind["198.51.100.7"]["sibling_alerts"][0]["uuid"] in (b, c)
        assert_eq(ind["198.51.100.7"]["enrichment_summary"], {"vt": "Suspicious"})
        assert_eq(ind["evil.example"]["total_alert_count"], 1)
        assert_eq(ind["evil.example"]["sibling_alerts"][0]["uuid"], b)
        assert_eq(s.request("GET", "/v1/alerts/%s/relationship-graph?sibling_limit=51" % a, key=reader).status, 422)
        assert_eq(s.request("GET", "/v1/alerts/%s/relationship-graph" % NIL, key=reader).status, 404)
        assert_eq(s.request("GET", "/v1/alerts/%s/relationship-graph" % a, key=er).status, 403)
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
