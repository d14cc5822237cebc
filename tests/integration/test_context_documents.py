"""test_context_documents.py - /v1/context-documents and an alert's applicable documents.

CRUD with filters and sorting, targeting-rule validation (every malformed body is a 4xx, never
a 500), uploads (text, Markdown, HTML converted to Markdown; PDF and DOCX refused with 422
UNSUPPORTED_FORMAT), applicability (global first, targeted by source/severity/tags) through
GET /v1/alerts/{uuid}/context and GET /v1/alerts/{uuid}, and 401/403/404/422 cases.
"""
import json
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, assert_eq, fixture, run_tests  # noqa: E402

S = {}


def setup():
    if "stack" not in S:
        st = Stack("ctxdocs")
        S["stack"] = st
        S["admin"] = st.create_key("admin")
        S["reader"] = st.create_key("alerts:read", name="reader")
        S["agents"] = st.create_key("agents:read", name="agents")
    return S["stack"], S["admin"]


def create(body, key=None):
    st, admin = setup()
    return st.request("POST", "/v1/context-documents", body=body, key=key or admin)


def multipart(fields, files, key=None):
    st, admin = setup()
    boundary = "----calsetatest" + uuid.uuid4().hex
    out = b""
    for k, v in fields.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, k, v)).encode()
    for k, (name, data) in files.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n" % (boundary, k, name)).encode()
        out += data + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return st.request("POST", "/v1/context-documents", body=out, key=key or admin,
                      headers={"Content-Type": "multipart/form-data; boundary=" + boundary})


def test_crud_and_filters():
    st, admin = setup()
    r = create({"title": "Brute force runbook", "document_type": "runbook", "content": "# Steps\n1. Lock",
                "tags": ["identity"], "description": "d"})
    assert_eq(r.status, 201, r.body)
    d = r.json()["data"]
    assert_eq(d["version"], 1)
    assert_eq(d["targeting_rules"], None)
    assert_eq(d["content"], "# Steps\n1. Lock")
    u = d["uuid"]
    r = st.request("GET", "/v1/context-documents/" + u, key=S["reader"])
    assert_eq(r.status, 200)
    assert_eq(r.json()["data"]["title"], "Brute force runbook")
    # PATCH: content bumps the version, null leaves a field unchanged
    r = st.request("PATCH", "/v1/context-documents/" + u, key=admin,
                   body={"content": "new", "description": None, "tags": ["a", "b"]})
    assert_eq(r.status, 200, r.body)
    d = r.json()["data"]
    assert_eq((d["version"], d["content"], d["description"], d["tags"]), (2, "new", "d", ["a", "b"]))
    r = st.request("PATCH", "/v1/context-documents/" + u, key=admin, body={"title": "T2"})
    assert_eq(r.json()["data"]["version"], 2)
    create({"title": "A sop", "document_type": "sop", "content": "x", "is_global": True})
    r = st.request("GET", "/v1/context-documents?document_type=sop,playbook", key=S["reader"])
    assert_eq(r.status, 200)
    items = r.json()["data"]
    assert all(i["document_type"] == "sop" for i in items) and items, items
    assert "content" not in items[0]
    r = st.request("GET", "/v1/context-documents?is_global=true&sort_by=title&sort_order=asc", key=S["reader"])
    assert all(i["is_global"] for i in r.json()["data"])
    r = st.request("GET", "/v1/context-documents?sort_by=nope", key=S["reader"])
    assert_eq(r.status, 400)
    assert_eq(r.json()["error"]["message"],
              "sort_by must be one of: ['created_at', 'document_type', 'title', 'updated_at']")
    r = st.request("GET", "/v1/context-documents?sort_order=up", key=S["reader"])
    assert_eq((r.status, r.json()["error"]["message"]), (400, "sort_order must be 'asc' or 'desc'"))
    r = st.request("GET", "/v1/context-documents?page_size=1", key=S["reader"])
    assert_eq(len(r.json()["data"]), 1)
    assert r.json()["meta"]["total"] >= 2
    r = st.request("DELETE", "/v1/context-documents/" + u, key=admin)
    assert_eq(r.status, 204)
    r = st.request("GET", "/v1/context-documents/" + u, key=admin)
    assert_eq((r.status, r.json()["error"]["message"]), (404, "Context document not found."))


def test_validation_never_500():
    st, admin = setup()
    before = st.sql_value("SELECT count(*) FROM context_documents")
    bad_bodies = [b"{not json", b"", b"[1]", b"\xff\xfe"]
    for b in bad_bodies:
        r = st.request("POST", "/v1/context-documents", body=b, key=admin,
                       headers={"Content-Type": "application/json"})
        assert r.status in (400, 422), (b, r)
    r = st.request("POST", "/v1/context-documents", body=b"{bad", key=admin,
                   headers={"Content-Type": "application/json"})
    assert_eq((r.status, r.json()["error"]["code"]), (400, "INVALID_JSON"))
    cases = [
        ({"title": "t", "document_type": "memo", "content": "c"}, "document_type"),
        ({"title": "t", "document_type": "sop"}, "content: Field required"),
        ({"title": "t", "document_type": "sop", "content": "c", "tags": [1]}, "tags"),
        ({"title": "t", "document_type": "sop", "content": "c", "targeting_rules": []},
         "targeting_rules must be a JSON object"),
        ({"title": "t", "document_type": "sop", "content": "c", "targeting_rules": {"x": 1}},
         "targeting_rules has unknown keys: ['x']; targeting_rules must contain at least one of: match_any, match_all"),
        ({"title": "t", "document_type": "sop", "content": "c", "targeting_rules": {"match_any": "x"}},
         "targeting_rules.match_any must be an array"),
        ({"title": "t", "document_type": "sop", "content": "c", "targeting_rules": {"match_any": ["x"]}},
         "match_any[0]: rule must be an object"),
        ({"title": "t", "document_type": "sop", "content": "c",
          "targeting_rules": {"match_all": [{"field": "severity", "op": "eq"}]}},
         "match_all[0]: missing required key 'value'"),
        ({"title": "t", "document_type": "sop", "content": "c",
          "targeting_rules": {"match_all": [{"field": "title", "op": "like", "value": 1}]}},
         "match_all[0].field: 'title' not in ['severity', 'source_name', 'tags']; match_all[0].op: 'like' not in"),
        ({"title": "t", "document_type": "sop", "content": "c",
          "targeting_rules": {"match_any": [{"field": "tags", "op": "eq", "value": "x" * 70000}]}},
         "exceeds maximum size of 64 KB"),
    ]
    for body, needle in cases:
        r = create(body)
        assert_eq(r.status, 422, (body if len(json.dumps(body)) < 300 else "big", r.body[:300]))
        if needle:
            assert needle in r.json()["error"]["message"], (needle, r.json())
    r = create({"title": "t", "document_type": "sop", "content": "a\u0000b"})
    assert_eq(r.status, 400)  # PostgreSQL cannot store NUL: refused as invalid JSON text
    r = st.request("PATCH", "/v1/context-documents/" + str(uuid.uuid4()), body=b"{x", key=admin)
    assert_eq(r.status, 400)
    r = st.request("PATCH", "/v1/context-documents/" + str(uuid.uuid4()), body={"title": "x"}, key=admin)
    assert_eq(r.status, 404)
    r = st.request("GET", "/v1/context-documents/not-a-uuid", key=admin)
    assert_eq(r.status, 422)
    assert_eq(st.sql_value("SELECT count(*) FROM context_documents"), before)


def test_auth():
    st, admin = setup()
    assert_eq(st.request("GET", "/v1/context-documents").status, 401)
    assert_eq(st.request("GET", "/v1/context-documents", key=S["agents"]).status, 403)
    r = create({"title": "t", "document_type": "sop", "content": "c"}, key=S["reader"])
    assert_eq(r.status, 403)


def test_uploads():
    r = multipart({"title": "Notes", "document_type": "sop", "tags": "a, b", "is_global": "yes"},
                  {"file": ("notes.txt", b"plain text\nline 2")})
    assert_eq(r.status, 201, r.body)
    d = r.json()["data"]
    assert_eq((d["content"], d["tags"], d["is_global"]), ("plain text\nline 2", ["a", "b"], True))
    r = multipart({"title": "MD", "document_type": "runbook", "tags": '["x"]'},
                  {"file": ("r.md", "# Title\n\n- é".encode())})
    assert_eq((r.status, r.json()["data"]["content"], r.json()["data"]["tags"]), (201, "# Title\n\n- é", ["x"]))
    html = (b"<html><head><title>x</title><style>p{}</style></head><body><h1>Phishing &amp; BEC</h1>"
            b"<p>Check the <b>sender</b> and <a href='https://example.com/x'>the link</a>.</p>"
            b"<ul><li>one</li><li>two<ol><li>nested</li></ol></li></ul><pre>code  here\n  x</pre>"
            b"<script>alert(1)</script></body></html>")
    r = multipart({"title": "H", "document_type": "playbook",
                   "targeting_rules": '{"match_any":[{"field":"severity","op":"eq","value":"High"}]}'},
                  {"file": ("p.html", html)})
    assert_eq(r.status, 201, r.body)
    md = r.json()["data"]["content"]
    for needle in ["# Phishing & BEC", "**sender**", "[the link](https://example.com/x)", "- one",
                   "  1. nested", "```\ncode  here\n  x"]:
        assert needle in md, (needle, md)
    assert "alert(1)" not in md and "p{}" not in md, md
    assert_eq(r.json()["data"]["targeting_rules"]["match_any"][0]["value"], "High")
    for name, data in [("r.pdf", b"%PDF-1.7\n..."), ("r.docx", b"PK\x03\x04....")]:
        r = multipart({"title": "P", "document_type": "sop"}, {"file": (name, data)})
        assert_eq(r.status, 422)
        e = r.json()["error"]
        assert_eq(e["code"], "UNSUPPORTED_FORMAT")
        assert "Supported formats: plain text" in e["message"] and "HTML" in e["message"], e
    r = multipart({"title": "P", "document_type": "sop"}, {"file": ("bin.txt", b"\xff\xfe\x00x")})
    assert_eq((r.status, r.json()["error"]["code"]), (422, "UNSUPPORTED_FORMAT"))
    r = multipart({"document_type": "sop"}, {"file": ("a.txt", b"x")})
    assert_eq(r.json()["error"]["message"], "title and document_type are required form fields")
    r = multipart({"title": "t", "document_type": "sop"}, {})
    assert_eq(r.json()["error"]["message"], "file field is required for multipart/form-data uploads")
    r = multipart({"title": "t", "document_type": "sop", "tags": "[1"}, {"file": ("a.txt", b"x")})
    assert_eq(r.status, 422)
    assert r.json()["error"]["message"].startswith("tags field must be a JSON array or comma-separated string")
    r = multipart({"title": "t", "document_type": "sop", "targeting_rules": "{bad"}, {"file": ("a.txt", b"x")})
    assert r.json()["error"]["message"].startswith("targeting_rules must be a JSON object"), r.body
    r = multipart({"title": "t", "document_type": "sop", "targeting_rules": '{"match_any":[1]}'},
                  {"file": ("a.txt", b"x")})
    assert_eq(r.status, 422)
    st, admin = setup()
    r = st.request("POST", "/v1/context-documents", body=b"--x\r\nbroken", key=admin,
                   headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert_eq(r.status, 400)


def test_applicability():
    st, admin = setup()
    st.sql("DELETE FROM context_documents")
    def mk(title, dtype, is_global=False, rules=None):
        body = {"title": title, "document_type": dtype, "content": title, "is_global": is_global}
        if rules is not None:
            body["targeting_rules"] = rules
        r = create(body)
        assert_eq(r.status, 201, r.body)
        return r.json()["data"]["uuid"]
    mk("g-sop", "sop", True, {"match_any": [{"field": "severity", "op": "eq", "value": "Nope"}]})
    mk("g-ir", "ir_plan", True)
    mk("t-sentinel-high", "runbook", False, {"match_all": [{"field": "source_name", "op": "eq", "value": "sentinel"},
                                                          {"field": "severity", "op": "in", "value": ["High", "Critical"]}]})
    mk("t-elastic", "playbook", False, {"match_any": [{"field": "source_name", "op": "eq", "value": "elastic"}]})
    mk("t-untargeted", "other", False)
    mk("t-tag", "detection_guide", False, {"match_any": [{"field": "tags", "op": "contains", "value": "tor"}]})
    mk("t-gte", "sop", False, {"match_any": [{"field": "severity", "op": "gte", "value": 1}]})
    ingest = st.create_key("alerts:write", name="ing")
    r = st.request("POST", "/v1/ingest/sentinel", body=fixture("01_sentinel_brute_force_tor.json"), key=ingest,
                   headers={"Content-Type": "application/json"})
    assert_eq(r.status, 202, r.body)
    au = r.json()["data"]["alert_uuid"]
    sev, tags = st.sql("SELECT severity, array_to_json(tags) FROM alerts WHERE uuid = '%s'" % au)[0]
    r = st.request("GET", "/v1/alerts/%s/context" % au, key=S["reader"])
    assert_eq(r.status, 200, r.body)
    titles = [d["title"] for d in r.json()["data"]]
    expect = ["g-ir", "g-sop"]
    targeted = []
    if sev in ("High", "Critical"):
        targeted.append(("runbook", "t-sentinel-high"))
    if "tor" in json.loads(tags):
        targeted.append(("detection_guide", "t-tag"))
    targeted.append(("other", "t-untargeted"))
    expect += [t for _, t in sorted(targeted)]
    assert_eq(titles, expect, (sev, tags))
    assert "content" in r.json()["data"][0]
    r = st.request("GET", "/v1/alerts/" + au, key=S["reader"])
    assert_eq([d["title"] for d in r.json()["data"]["context_documents"]], expect)
    meta = r.json()["data"]["_metadata"]
    assert_eq(meta["context_documents_applied"], len(expect))
    assert_eq(meta["alert_source"], "sentinel")
    r = st.request("GET", "/v1/alerts/%s/context" % uuid.uuid4(), key=S["reader"])
    assert_eq((r.status, r.json()["error"]["message"]), (404, "Alert not found."))


def test_zz_teardown():
    S.pop("stack").stop()


if __name__ == "__main__":
    run_tests(globals())
