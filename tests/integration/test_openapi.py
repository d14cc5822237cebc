"""GET /openapi.json and GET /docs: the document covers exactly the route table (a route without
its documentation, or a documented route the server does not answer, fails here), declares the
bearer scheme and the error answers, resolves every $ref, and passes a real OpenAPI 3.1
validator (an npm package installed by this test into tests/.npm, git-ignored; a failed install
fails the test). The documentation page loads only same-origin files its CSP allows."""
import json
import os
import re
import subprocess

from harness import SRC, Stack, assert_eq, run_tests

NPM_DIR = os.path.join(SRC, "tests", ".npm")
VALIDATOR = "@seriousme/openapi-schema-validator@2.11.0"
ROUTER_404 = "The requested resource was not found."


def route_table():
    """(METHOD, pattern) of every entry of the route table in routes.c."""
    src = open(os.path.join(SRC, "services", "intake", "routes.c")).read()
    table = src[src.index("ROUTES[] = {"):]
    table = table[:table.index("\n};")]
    return set(re.findall(r'\{"([A-Z]+)",\s*"([^"]+)"', table))


def install_validator():
    mod = os.path.join(NPM_DIR, "node_modules", "@seriousme", "openapi-schema-validator")
    if os.path.isdir(mod):
        return
    os.makedirs(NPM_DIR, exist_ok=True)
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", NPM_DIR, VALIDATOR],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and os.path.isdir(mod), "npm install failed: %s %s" % (r.stdout, r.stderr)


def validate_with_node(doc):
    path = os.path.join(NPM_DIR, "doc.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    script = """
import { Validator } from '@seriousme/openapi-schema-validator';
const v = new Validator();
const r = await v.validate(process.argv[1]);
console.log(JSON.stringify({valid: r.valid, version: v.version, errors: r.errors || null}));
"""
    r = subprocess.run(["node", "--input-type=module", "-e", script, path], capture_output=True,
                       text=True, timeout=60, cwd=NPM_DIR)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def refs(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                out.add(v)
            else:
                refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)
    return out


def test_document_covers_the_route_table_and_validates():
    install_validator()
    s = Stack("openapi")
    try:
        r = s.request("GET", "/openapi.json")
        assert_eq(r.status, 200, r.body)
        doc = r.json()
        assert_eq(doc["openapi"], "3.1.0")
        assert_eq(doc["info"]["title"], "Calseta")
        ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
        table = route_table()
        assert_eq(set(ops) - table, set(), "documented but not in the route table")
        assert_eq(table - set(ops), set(), "in the route table but not documented")
        scheme = doc["components"]["securitySchemes"]["bearerAuth"]
        assert_eq((scheme["type"], scheme["scheme"]), ("http", "bearer"))
        for name in ("Unauthorized", "Forbidden", "NotFound", "ValidationError", "RateLimited"):
            assert_eq(doc["components"]["responses"][name]["content"]["application/json"]["schema"],
                      {"$ref": "#/components/schemas/Error"})
        undocumented = []
        for (m, p), op in sorted(ops.items()):
            if not op.get("summary") or not op.get("tags"):
                undocumented.append("%s %s" % (m, p))
                continue
            codes = set(op["responses"])
            if op["security"]:
                assert "401" in codes, (m, p)
            if "x-required-scope" in op:
                assert "403" in codes and op["x-required-scope"] in op["description"], (m, p)
            if "{" in p:
                assert "404" in codes and "422" in codes, (m, p)
            assert any(c.startswith("2") for c in codes), (m, p)
        assert_eq(undocumented, [], "routes without summary/tag in their route table entry")
        # every $ref points at a defined component
        for ref in refs(doc, set()):
            kind, name = ref.split("/")[2:4]
            assert name in doc["components"][kind], "dangling %s" % ref
        # the scopes of the document are the ones the server enforces
        rules = ops[("POST", "/v1/detection-rules")]
        assert_eq(rules["x-required-scope"], "admin")
        assert_eq(rules["security"], [{"bearerAuth": []}])
        assert_eq(ops[("GET", "/health")]["security"], [])
        assert "429" in rules["responses"]
        # every documented operation is answered by the server (not the router's 404/405)
        for (m, p) in sorted(ops):
            path = p.replace("{uuid}", "00000000-0000-0000-0000-000000000000")
            path = re.sub(r"\{source\}", "generic", path)
            path = re.sub(r"\{[^}]+\}", "x", path)
            r = s.request(m, path, body=b"{}" if m in ("POST", "PATCH", "PUT") else None)
            assert r.status != 405, (m, p, r.status)
            if r.status == 404:
                msg = r.json().get("error", {}).get("message") if r.body.startswith(b"{") else ""
                assert msg != ROUTER_404, (m, p)
        res = validate_with_node(doc)
        assert res["valid"], json.dumps(res["errors"])[:4000]
        assert_eq(res["version"], "3.1")
        # a broken document is refused by the same validator (it is really validating)
        bad = json.loads(json.dumps(doc))
        bad["paths"]["/health"]["get"]["responses"] = {"200": {"content": {}}}
        assert not validate_with_node(bad)["valid"]
    finally:
        s.stop()


def test_docs_page_is_self_contained():
    s = Stack("docs_page")
    try:
        r = s.request("GET", "/docs")
        assert_eq(r.status, 200)
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert_eq(csp, "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        page = r.body.decode()
        loaded = re.findall(r"(?:src|href)='([^']+)'", page)
        assert "/docs/docs.js" in loaded and "/docs/docs.css" in loaded, loaded
        assert "<script>" not in page and "style=" not in page  # nothing inline
        for url in loaded:
            assert url.startswith("/"), url  # same origin only
            r = s.request("GET", url)
            assert_eq(r.status, 200, url)
        js = s.request("GET", "/docs/docs.js")
        assert js.headers["content-type"].startswith("text/javascript")
        fetched = re.findall(r"fetch\('([^']+)'\)", js.body.decode())
        assert_eq(fetched, ["/openapi.json"])
        assert not re.search(r"https?:", js.body.decode())  # no other origin anywhere
        assert s.request("GET", "/docs/docs.css").headers["content-type"].startswith("text/css")
        # the API itself keeps the strict API policy
        assert_eq(s.request("GET", "/health").headers["content-security-policy"],
                  "default-src 'none'; frame-ancestors 'none'")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
