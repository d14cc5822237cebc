"""The alerts and API-key REST routes: envelopes, filters, pagination, the status lifecycle
with its timestamps and activity events, delete, and key management bodies."""
import json
import time

import test_mcp_http as mcp
from harness import Stack, assert_eq, fixture, run_tests


def test_list_filters_and_pagination():
    s = Stack("alerts_list")
    try:
        k = s.create_key("admin")
        uuids = [s.ingest(k, "alert %d" % i, severity=("high" if i % 2 else "low"), tags=["t%d" % (i % 3)])
                 for i in range(7)]
        r = s.request("GET", "/v1/alerts?page=1&page_size=3", key=k)
        assert_eq(r.status, 200)
        b = r.json()
        assert_eq(b["meta"], {"total": 7, "page": 1, "page_size": 3, "total_pages": 3})
        assert_eq(len(b["data"]), 3)
        assert_eq(b["data"][0]["uuid"], uuids[-1])  # newest first
        assert "raw_payload" not in b["data"][0] or b["data"][0]["raw_payload"] is None
        r = s.request("GET", "/v1/alerts?page=3&page_size=3", key=k).json()
        assert_eq(len(r["data"]), 1)
        r = s.request("GET", "/v1/alerts?severity=High", key=k).json()
        assert_eq(r["meta"]["total"], 3)
        r = s.request("GET", "/v1/alerts?severity=High,Low&sort_by=title&sort_order=asc", key=k).json()
        assert_eq([a["title"] for a in r["data"]], ["alert %d" % i for i in range(7)])
        r = s.request("GET", "/v1/alerts?tags=t0", key=k).json()
        assert_eq(r["meta"]["total"], 3)
        r = s.request("GET", "/v1/alerts?source_name=sentinel", key=k).json()
        assert_eq(r["meta"]["total"], 0)
        for bad in ("page=0", "page_size=501", "page_size=x", "severity=Huge", "sort_by=password",
                    "sort_order=sideways", "is_enriched=maybe"):
            r = s.request("GET", "/v1/alerts?" + bad, key=k)
            assert_eq(r.status, 422, bad)
            assert_eq(r.json()["error"]["code"], "VALIDATION_ERROR")
        r = s.request("GET", "/v1/alerts/not-a-uuid", key=k)
        assert_eq(r.status, 422)
        r = s.request("GET", "/v1/alerts/00000000-0000-0000-0000-000000000000", key=k)
        assert_eq(r.status, 404)
        assert_eq(r.json()["error"]["code"], "NOT_FOUND")
    finally:
        s.stop()


def test_list_keeps_only_the_page_in_memory():
    """A list request reads the count and the page's sort keys, never a copy of every matching
    alert: with 30,000 alerts and temporary files forbidden to the intake's sessions
    (temp_file_limit = 0, work_mem = 1 MB), every sort still answers, in order. (The list was
    one materialised CTE of all matching rows, sorted on disk: 184 MB of temporary files and
    5-7 s per request at a million alerts, whatever the sort.)"""
    s = Stack("alerts_list_mem", env={"PGOPTIONS": "-c temp_file_limit=0 -c work_mem=1MB"})
    try:
        k = s.create_key("admin")
        s.sql("INSERT INTO alerts (title, severity, source_name, occurred_at, created_at, updated_at, "
              "ingested_at, status) SELECT 'bulk ' || g, (ARRAY['Low', 'High', 'Critical'])[1 + g % 3], "
              "'generic', now() - g * interval '1 minute', now() - g * interval '1 minute', "
              "now() - ((g * 7919) % 30000) * interval '1 second', now() - g * interval '1 minute', "
              "'Open' FROM generate_series(1, 30000) g")
        s.sql("ANALYZE alerts")
        for sort in ("created_at", "updated_at", "occurred_at", "ingested_at", "severity", "status",
                     "title"):
            for order in ("desc", "asc"):
                r = s.request("GET", "/v1/alerts?page=3&page_size=20&sort_by=%s&sort_order=%s"
                              % (sort, order), key=k)
                assert_eq(r.status, 200, (sort, order, r.body[:300]))
                b = r.json()
                assert_eq(b["meta"]["total"], 30000)
                assert_eq(len(b["data"]), 20)
        col = "updated_at"
        want = [row[0] for row in s.sql("SELECT uuid FROM alerts ORDER BY %s DESC, id DESC "
                                        "LIMIT 20 OFFSET 40" % col)]
        r = s.request("GET", "/v1/alerts?page=3&page_size=20&sort_by=%s" % col, key=k).json()
        assert_eq([a["uuid"] for a in r["data"]], want)
        r = s.request("GET", "/v1/alerts?page=2&page_size=5&sort_by=severity&severity=Critical",
                      key=k).json()
        assert_eq(r["meta"]["total"], 10000)
        # the MCP search_alerts tool lists the same way
        sid, _ = mcp.init(s, k)
        for sort in ("occurred_at", "severity", "title", "status", "source_name", "created_at"):
            res = mcp.call(s, k, sid, "search_alerts", {"sort_by": sort, "page": 2, "page_size": 10})
            assert not res.get("isError"), (sort, res)
            page = json.loads(res["content"][0]["text"])
            assert_eq(len(page["alerts"]), 10, (sort, page))
    finally:
        s.stop()


def test_status_lifecycle_and_activity():
    s = Stack("alerts_patch")
    try:
        k = s.create_key("admin")
        u = s.ingest(k, "lifecycle", "low", src_ip="198.51.100.9")
        r = s.request("PATCH", "/v1/alerts/" + u, key=k, body={"status": "Triaging"})
        assert_eq(r.status, 200, r.body)
        d = r.json()["data"]
        assert_eq(d["status"], "Triaging")
        assert d["acknowledged_at"] and d["triaged_at"] and d["closed_at"] is None
        r = s.request("PATCH", "/v1/alerts/" + u, key=k, body={"status": "Closed"})
        assert_eq(r.status, 422)
        r = s.request("PATCH", "/v1/alerts/" + u, key=k, body={"status": "Closed", "close_classification": "Duplicate"})
        d = r.json()["data"]
        assert d["closed_at"] and d["close_classification"] == "Duplicate"
        r = s.request("PATCH", "/v1/alerts/" + u, key=k, body={"status": "Open"})
        d = r.json()["data"]
        assert d["closed_at"] is None and d["close_classification"] is None
        r = s.request("PATCH", "/v1/alerts/" + u, key=k, body={"severity": "Critical", "tags": ["x", "y"]})
        assert_eq(r.json()["data"]["severity"], "Critical")
        assert_eq(r.json()["data"]["tags"], ["x", "y"])
        for bad in ({"status": "Done"}, {"severity": "urgent"}, {"tags": "x"}, {"malice_override": "Evil"}):
            assert_eq(s.request("PATCH", "/v1/alerts/" + u, key=k, body=bad).status, 422, bad)
        acts = s.request("GET", "/v1/alerts/%s/activity" % u, key=k).json()
        types = [a["event_type"] for a in acts["data"]]
        assert_eq(types[-1], "alert_ingested")
        for t in ("alert_status_updated", "alert_closed", "alert_severity_updated"):
            assert t in types, types
        ind = s.request("GET", "/v1/alerts/%s/indicators" % u, key=k).json()
        assert_eq([(i["type"], i["value"]) for i in ind["data"]], [("ip", "198.51.100.9")])
        reader = s.create_key("alerts:read")
        assert_eq(s.request("PATCH", "/v1/alerts/" + u, key=reader, body={"status": "Open"}).status, 403)
        aid = s.sql_value("SELECT id FROM alerts WHERE uuid = '%s'" % u)
        assert_eq(s.request("DELETE", "/v1/alerts/" + u, key=k).status, 204)
        assert_eq(s.request("GET", "/v1/alerts/" + u, key=k).status, 404)
        assert_eq(s.request("DELETE", "/v1/alerts/" + u, key=k).status, 404)
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_jobs"), "0")
        # links and jobs go with the alert, its events stay without it (triggers, not keys)
        assert_eq(s.sql_value("SELECT count(*) FROM alert_indicators WHERE alert_id = %s" % aid), "0")
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE alert_id = %s" % aid), "0")
        assert int(s.sql_value("SELECT count(*) FROM activity_events WHERE alert_id IS NULL"
                               " AND event_type = 'alert_ingested'")) >= 1
        # a row naming a missing alert is refused outside the ingest function
        for q in ("INSERT INTO activity_events (event_type, actor_type, alert_id) VALUES ('alert_status_updated', 'api', %s)",
                  "INSERT INTO enrichment_jobs (alert_id) VALUES (%s)"):
            try:
                s.sql(q % aid)
                raise AssertionError("accepted: " + q)
            except RuntimeError as e:
                assert "violates the reference to alerts" in str(e), e
    finally:
        s.stop()



def mcp_activity(s, key, uuid):
    sid, _ = mcp.init(s, key)
    r = mcp.rpc(s, key, {"jsonrpc": "2.0", "id": 3, "method": "resources/read",
                         "params": {"uri": "calseta://alerts/%s/activity" % uuid}}, session=sid)
    assert_eq(r.status, 200, r.body)
    return json.loads(r.json()["result"]["contents"][0]["text"])


def test_ingest_event_as_it_was_at_ingest():
    """An alert's alert_ingested event, read through the API and MCP, carries what the alert
    was at ingest: a severity PATCHed since still shows the ingest-time one; the event keeps
    its uuid from read to read, its place under later events of the same timestamp, its count
    and paging. An alert stored the old way (its event a row of its own) shows exactly one, and a
    deleted alert's ingest event stays, without the alert, under the uuid it was read with."""
    s = Stack("alerts_ingest_event")
    try:
        k = s.create_key("admin")
        prefix = s.sql_value("SELECT key_prefix FROM api_keys")
        assert k.startswith(prefix), (k, prefix)
        u = s.ingest(k, "sev at ingest", severity="high")
        created = s.request("GET", "/v1/alerts/" + u, key=k).json()["data"]["created_at"]
        want = {"event_type": "alert_ingested", "actor_type": "api", "actor_key_prefix": prefix,
                "references": {"source_name": "generic", "severity": "High", "title": "sev at ingest"},
                "created_at": created}
        first = s.request("GET", "/v1/alerts/%s/activity" % u, key=k).json()
        assert_eq(first["meta"]["total"], 1)
        ev = first["data"][0]
        assert_eq({f: ev[f] for f in want}, want)
        for sev in ("Low", "Critical"):
            r = s.request("PATCH", "/v1/alerts/" + u, key=k, body={"severity": sev})
            assert_eq(r.status, 200, r.body)
        r = s.request("PATCH", "/v1/alerts/" + u, key=k, body={"status": "Triaging"})
        assert_eq(r.status, 200, r.body)
        assert_eq(s.request("GET", "/v1/alerts/" + u, key=k).json()["data"]["severity"], "Critical")
        acts = s.request("GET", "/v1/alerts/%s/activity" % u, key=k).json()
        assert_eq(acts["meta"]["total"], 4)
        assert_eq([a["event_type"] for a in acts["data"]],
                  ["alert_status_updated", "alert_severity_updated", "alert_severity_updated", "alert_ingested"])
        assert_eq(acts["data"][-1], ev)  # same uuid, same fields, after the PATCHes
        assert_eq([a["references"]["to_severity"] for a in acts["data"][1:3]], ["Critical", "Low"])
        # paging counts and places it as a stored event
        pages = [s.request("GET", "/v1/alerts/%s/activity?page=%d&page_size=3" % (u, n), key=k).json()
                 for n in (1, 2)]
        assert_eq([p["meta"]["total"] for p in pages], [4, 4])
        assert_eq(pages[0]["data"] + pages[1]["data"], acts["data"])
        m = mcp_activity(s, k, u)
        assert_eq(m["count"], 4)
        assert_eq([a["event_type"] for a in m["activity"]], [a["event_type"] for a in acts["data"]])
        assert_eq(m["activity"][-1], {"source_name": "generic", "severity": "High", "title": "sev at ingest",
                                      "event_type": "alert_ingested", "actor_type": "api",
                                      "actor_key_prefix": prefix, "created_at": created})

        # a duplicate in the ingest's own transaction has the alert's timestamp: it sorts above
        el = ('{"title": "same ts", "severity": "Low", "source_name": "generic", '
              '"occurred_at": "2026-01-01T00:00:00Z", "fingerprint": "same-ts", "actor_key_prefix": "cai_sql"}')
        s.sql("SELECT count(*) FROM calseta_ingest_batch('[%s, %s]', 24)" % (el, el))
        u2 = s.sql_value("SELECT uuid FROM alerts WHERE fingerprint = 'same-ts'")
        acts2 = s.request("GET", "/v1/alerts/%s/activity" % u2, key=k).json()
        assert_eq([(a["event_type"], a["actor_key_prefix"]) for a in acts2["data"]],
                  [("alert_deduplicated", "cai_sql"), ("alert_ingested", "cai_sql")])
        assert_eq(acts2["data"][0]["created_at"], acts2["data"][1]["created_at"])
        assert_eq([a["event_type"] for a in mcp_activity(s, k, u2)["activity"]],
                  ["alert_deduplicated", "alert_ingested"])

        # an alert stored before the derived event: its own row, shown once
        old = s.sql_value(
            "WITH a AS (INSERT INTO alerts (title, severity, source_name, occurred_at) "
            "VALUES ('old way', 'Medium', 'generic', now()) RETURNING id, uuid), "
            "e AS (INSERT INTO activity_events (event_type, actor_type, actor_key_prefix, alert_id, \"references\") "
            "SELECT 'alert_ingested', 'api', 'cai_old', a.id, jsonb_build_object('source_name', 'generic', "
            "'severity', 'Medium', 'title', 'old way') FROM a) SELECT uuid FROM a")
        r = s.request("PATCH", "/v1/alerts/" + old, key=k, body={"severity": "High"})
        assert_eq(r.status, 200, r.body)
        acts3 = s.request("GET", "/v1/alerts/%s/activity" % old, key=k).json()
        assert_eq([a["event_type"] for a in acts3["data"]], ["alert_severity_updated", "alert_ingested"])
        assert_eq(acts3["data"][1]["references"], {"source_name": "generic", "severity": "Medium",
                                                   "title": "old way"})
        assert_eq(acts3["data"][1]["uuid"],
                  s.sql_value("SELECT uuid FROM activity_events WHERE event_type = 'alert_ingested'"))
        assert_eq(mcp_activity(s, k, old)["count"], 2)

        # deleted: the events stay without the alert, the ingest event as it was read
        assert_eq(s.request("DELETE", "/v1/alerts/" + u, key=k).status, 204)
        assert_eq(s.sql("SELECT uuid, actor_key_prefix, \"references\"->>'severity', calseta_ts(created_at) "
                        "FROM activity_events WHERE alert_id IS NULL AND event_type = 'alert_ingested'"),
                  [[ev["uuid"], prefix, "High", created]])
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE alert_id IS NULL"), "4")
    finally:
        s.stop()


def test_api_key_management_bodies():
    s = Stack("keys_api")
    try:
        admin = s.create_key("admin")
        r = s.request("POST", "/v1/api-keys", key=admin,
                      body={"name": "agent-1", "scopes": ["alerts:read", "workflows:execute"], "key_type": "agent",
                            "allowed_sources": ["sentinel"]})
        assert_eq(r.status, 201, r.body)
        d = r.json()["data"]
        for f in ("uuid", "name", "key_prefix", "key", "scopes", "key_type", "is_active", "created_at",
                  "expires_at", "allowed_sources"):
            assert f in d, f
        assert_eq(d["key_type"], "agent")
        assert d["created_at"].endswith("Z")
        for bad in ({"scopes": ["admin"]}, {"name": "", "scopes": ["admin"]}, {"name": "x", "scopes": []},
                    {"name": "x", "scopes": ["admin"], "key_type": "robot"},
                    {"name": "x", "scopes": ["admin"], "rate_limit_per_minute": 0},
                    {"name": "x", "scopes": "admin"}):
            assert_eq(s.request("POST", "/v1/api-keys", key=admin, body=bad).status, 422, bad)
        r = s.request("PATCH", "/v1/api-keys/" + d["uuid"], key=admin, body={"allowed_sources": None})
        assert_eq(r.json()["data"]["allowed_sources"], None)
        r = s.request("PATCH", "/v1/api-keys/" + d["uuid"], key=admin, body={"is_active": False})
        assert_eq(r.json()["data"]["is_active"], False)
        past = s.request("GET", "/v1/api-keys?page=50&page_size=10", key=admin).json()
        assert_eq((past["data"], past["meta"]["total"] >= 1, past["meta"]["page"]), ([], True, 50))
        lst = s.request("GET", "/v1/api-keys", key=admin).json()
        assert d["uuid"] not in [x["uuid"] for x in lst["data"]]
        assert_eq(s.request("GET", "/v1/api-keys/" + d["uuid"], key=admin).json()["data"]["is_active"], False)
        assert_eq(s.request("DELETE", "/v1/api-keys/" + d["uuid"], key=admin).status, 204)
        assert_eq(s.request("GET", "/v1/api-keys/00000000-0000-0000-0000-000000000000", key=admin).status, 404)
        out = s.cli("list-api-keys").stdout
        assert admin[:8] in out and admin not in out
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
