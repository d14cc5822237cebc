"""Authentication, scopes, expiry, rate limits, client IP, webhook signatures, source
restrictions and the auth-failure log."""
import hashlib
import hmac
import json
import os
import time

from harness import Stack, assert_eq, fixture, run_tests, wait_for, wait_window_start, SHARED

GENERIC = {"title": "Test alert", "severity": "high", "src_ip": "203.0.113.7"}


def auth_lines(stack):
    out = []
    for p in stack.intakes:
        for line in p.text().splitlines():
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if o.get("event") == "auth_failure":
                out.append(o)
    return out


def test_missing_and_bad_header():
    s = Stack("s1")
    try:
        r = s.request("GET", "/v1/alerts")
        assert_eq(r.status, 401)
        assert_eq(r.json()["error"]["code"], "UNAUTHORIZED")
        assert "Bearer cai_" in r.json()["error"]["message"]
        assert_eq(s.request("GET", "/v1/alerts", headers={"Authorization": "bearer cai_x"}).status, 401)
        r = s.request("GET", "/v1/alerts", headers={"Authorization": "Bearer xyz_1234567"})
        assert_eq(r.status, 401)
        assert_eq(r.json()["error"]["message"], "Invalid API key format.")
        r = s.request("GET", "/v1/alerts", key="cai_" + "A" * 43)
        assert_eq(r.status, 401)
        assert_eq(r.json()["error"]["message"], "Invalid API key.")
        assert_eq(s.request("GET", "/health").status, 200)
        assert "www-authenticate" not in r.headers
    finally:
        s.stop()


def test_bcrypt_hashes_and_original_keys():
    s = Stack("s2")
    try:
        key = s.create_key("admin")
        h = s.sql_value("SELECT key_hash FROM api_keys WHERE key_prefix = '%s'" % key[:8])
        assert h.startswith("$2b$12$") and len(h) == 60, h
        assert key not in s.sql_value("SELECT row_to_json(k)::text FROM api_keys k")
        # A key and hash made by the original's bcrypt library verify here.
        vectors = json.load(open(os.path.join(SHARED, "vectors", "bcrypt.json")))
        good = [v for v in vectors if v["matches"]][0]
        s.sql("INSERT INTO api_keys (name, key_prefix, key_hash, scopes) VALUES "
              "('orig', '%s', '%s', '{alerts:read}')" % (good["key"][:8], good["hash"]))
        assert_eq(s.request("GET", "/v1/alerts", key=good["key"]).status, 200)
        bad = good["key"][:-1] + ("B" if good["key"][-1] != "B" else "C")
        assert_eq(s.request("GET", "/v1/alerts", key=bad).status, 401)
        # Fix 4: a token longer than bcrypt's 72-byte input with a valid prefix is 401, not 500.
        r = s.request("GET", "/v1/alerts", key=key + "A" * 200)
        assert_eq(r.status, 401)
        r = s.request("GET", "/v1/alerts", key=key[:8] + "x" * 5000)
        assert r.status in (401, 431), r
    finally:
        s.stop()


def test_key_shown_once():
    s = Stack("s3")
    try:
        admin = s.create_key("admin")
        r = s.request("POST", "/v1/api-keys", key=admin, body={"name": "siem", "scopes": ["alerts:write"]})
        assert_eq(r.status, 201, r.body)
        d = r.json()["data"]
        full = d["key"]
        assert full.startswith("cai_") and len(full) == 47
        assert_eq(d["key_prefix"], full[:8])
        g = s.request("GET", "/v1/api-keys/" + d["uuid"], key=admin)
        assert_eq(g.status, 200)
        assert full not in g.body.decode()
        l = s.request("GET", "/v1/api-keys", key=admin)
        assert full not in l.body.decode()
        assert "key_hash" not in l.body.decode()
        s.request("GET", "/v1/alerts", key=full)
        s.request("GET", "/v1/alerts", key=full[:-1] + "x")
        for p in s.procs:
            assert full not in p.text(), "full key leaked to %s log" % p.name
    finally:
        s.stop()


def test_scopes():
    s = Stack("s4")
    try:
        admin = s.create_key("admin")
        reader = s.create_key("alerts:read")
        r = s.request("POST", "/v1/alerts", key=reader, body={"source_name": "generic", "payload": GENERIC})
        assert_eq(r.status, 403)
        e = r.json()["error"]
        assert_eq(e["code"], "FORBIDDEN")
        assert_eq(e["details"]["required_scopes"], ["alerts:write"])
        assert_eq(s.request("GET", "/v1/alerts", key=reader).status, 200)
        assert_eq(s.request("GET", "/v1/api-keys", key=reader).status, 403)
        # admin is a superscope
        r = s.request("POST", "/v1/alerts", key=admin, body={"source_name": "generic", "payload": GENERIC})
        assert_eq(r.status, 202, r.body)
        # unknown scopes are rejected at creation
        r = s.request("POST", "/v1/api-keys", key=admin, body={"name": "x", "scopes": ["alerts:read", "root"]})
        assert_eq(r.status, 422)
        assert_eq(r.json()["error"]["code"], "VALIDATION_ERROR")
        r = s.cli("create-api-key", "--name", "x", "--scopes", "superuser", check=False)
        assert r.returncode != 0 and "invalid scope" in r.stderr
    finally:
        s.stop()


def test_expiry():
    s = Stack("s5")
    try:
        admin = s.create_key("admin")
        t0 = time.monotonic()
        r = s.request("POST", "/v1/api-keys", key=admin,
                      body={"name": "short", "scopes": ["alerts:read"], "expires_in_seconds": 8})
        assert_eq(r.status, 201, r.body)
        k = r.json()["data"]["key"]
        r = s.request("GET", "/v1/alerts", key=k)
        # valid until it expires: a 401 is only right once 8 s have passed (a loaded machine
        # can take that long between the two requests)
        assert r.status == 200 or time.monotonic() - t0 >= 8, (r.status, r.body)
        r = wait_for(lambda: (lambda x: x if x.status != 200 else None)(
            s.request("GET", "/v1/alerts", key=k)), 30, 0.5, "the key to expire")
        assert_eq(r.status, 401)
        assert_eq(r.json()["error"]["code"], "KEY_EXPIRED")
        r = s.request("POST", "/v1/api-keys", key=admin,
                      body={"name": "past", "scopes": ["alerts:read"], "expires_at": "2020-01-01T00:00:00Z"})
        past = r.json()["data"]["key"]
        r = s.request("GET", "/v1/alerts", key=past)
        assert_eq(r.json()["error"]["code"], "KEY_EXPIRED")
    finally:
        s.stop()


def eventually(stack, key, want, port=None, limit=1.0):
    """The status another process answers within limit seconds (key changes reach every process
    through a notification: at once in the process that made the change, within a second in the
    others)."""
    deadline = time.time() + limit
    while True:
        st = stack.request("GET", "/v1/alerts", key=key, port=port).status
        if st == want or time.time() > deadline:
            return st


def test_revocation_takes_effect_on_next_request():
    s = Stack("revoke", intake_processes=1)
    other = None
    try:
        import harness
        port2 = harness.free_port()
        other = s.start_intake({"HTTP_PORT": port2})
        s.wait_healthy(port=port2)
        admin = s.create_key("admin")
        r = s.request("POST", "/v1/api-keys", key=admin, body={"name": "victim", "scopes": ["alerts:read"]})
        d = r.json()["data"]
        k = d["key"]
        # warm both processes' caches
        assert_eq(s.request("GET", "/v1/alerts", key=k).status, 200)
        assert_eq(s.request("GET", "/v1/alerts", key=k, port=port2).status, 200)
        assert_eq(s.request("DELETE", "/v1/api-keys/" + d["uuid"], key=admin).status, 204)
        assert_eq(s.request("GET", "/v1/alerts", key=k).status, 401)
        assert_eq(eventually(s, k, 401, port=port2), 401)
        # scope change takes effect at once too
        r = s.request("POST", "/v1/api-keys", key=admin, body={"name": "w", "scopes": ["alerts:read"]})
        d2 = r.json()["data"]
        assert_eq(s.request("GET", "/v1/alerts", key=d2["key"], port=port2).status, 200)
        r = s.request("PATCH", "/v1/api-keys/" + d2["uuid"], key=admin, body={"scopes": ["workflows:read"]})
        assert_eq(r.status, 200, r.body)
        assert_eq(eventually(s, d2["key"], 403, port=port2), 403)
        # CLI revoke
        k3 = s.create_key("alerts:read")
        assert_eq(s.request("GET", "/v1/alerts", key=k3).status, 200)
        s.cli("revoke-api-key", k3[:8])
        assert_eq(eventually(s, k3, 401), 401)
    finally:
        s.stop()


def test_default_limit_and_headers():
    s = Stack("s7", env={"RATE_LIMIT_DEFAULT_PER_MINUTE": 5})
    try:
        k = s.create_key("alerts:read")
        wait_window_start()
        codes = []
        for i in range(7):
            r = s.request("GET", "/v1/alerts", key=k)
            codes.append(r.status)
            if r.status == 200:
                assert_eq(r.headers["x-ratelimit-limit"], "5")
                assert_eq(r.headers["x-ratelimit-remaining"], str(4 - i))
        assert_eq(codes, [200] * 5 + [429] * 2)
        assert_eq(r.json()["error"]["code"], "RATE_LIMITED")
        ra = int(r.headers["retry-after"])
        expect = 60 - (time.time() % 60)
        assert abs(ra - expect) <= 2, (ra, expect)
        assert_eq(r.json()["error"]["details"]["retry_after_seconds"], ra)
        assert "x-content-type-options" in r.headers and "x-request-id" in r.headers
    finally:
        s.stop()


def test_per_key_override_and_ingest_limit():
    s = Stack("s7b", env={"RATE_LIMIT_INGEST_PER_MINUTE": 3, "RATE_LIMIT_DEFAULT_PER_MINUTE": 3})
    try:
        admin = s.create_key("admin")
        r = s.request("POST", "/v1/api-keys", key=admin,
                      body={"name": "siem", "scopes": ["alerts:write"], "rate_limit_per_minute": 8})
        siem = r.json()["data"]["key"]
        wait_window_start()
        plain = s.create_key("alerts:write")
        codes = [s.request("POST", "/v1/ingest/generic", key=plain,
                           body=dict(GENERIC, title="t%d" % i)).status for i in range(4)]
        assert_eq(codes, [202, 202, 202, 429])
        codes = [s.request("POST", "/v1/ingest/generic", key=siem,
                           body=dict(GENERIC, title="s%d" % i)).status for i in range(9)]
        assert_eq(codes, [202] * 8 + [429])
        # PATCH raises the limit at once
        uuid = s.sql_value("SELECT uuid FROM api_keys WHERE key_prefix = '%s'" % siem[:8])
        assert_eq(s.request("PATCH", "/v1/api-keys/" + uuid, key=admin,
                            body={"rate_limit_per_minute": 20}).status, 200)
        assert_eq(s.request("POST", "/v1/ingest/generic", key=siem, body=dict(GENERIC, title="z")).status, 202)
    finally:
        s.stop()


def test_limit_holds_across_processes():
    import harness
    s = Stack("s7c", env={"RATE_LIMIT_DEFAULT_PER_MINUTE": 20})
    try:
        port2 = harness.free_port()
        s.start_intake({"HTTP_PORT": port2})
        s.wait_healthy(port=port2)
        k = s.create_key("alerts:read")
        wait_window_start(20)
        ok = 0
        for i in range(40):
            r = s.request("GET", "/v1/alerts", key=k, port=(s.port if i % 2 else port2))
            ok += r.status == 200
        assert_eq(ok, 20)
    finally:
        s.stop()


def test_unauthenticated_ip_limit_before_bcrypt():
    s = Stack("s7d", env={"RATE_LIMIT_UNAUTHED_PER_MINUTE": 4})
    try:
        wait_window_start()
        codes = [s.request("GET", "/v1/alerts", key="cai_" + "Z" * 43).status for _ in range(6)]
        assert_eq(codes, [401] * 4 + [429] * 2)
        codes = [s.request("GET", "/v1/alerts").status for _ in range(2)]
        assert_eq(codes, [429, 429])
        lines = [l for l in auth_lines(s) if l.get("reason") == "rate_limited"]
        assert lines and lines[0]["client_ip"] == "127.0.0.1", lines[:1]
    finally:
        s.stop()


def test_valid_keys_never_spend_the_ip_budget():
    # No verification cache: every request pays bcrypt, and still only keyless failures count.
    s = Stack("s7e", env={"RATE_LIMIT_UNAUTHED_PER_MINUTE": 2, "AUTH_CACHE_TTL_SECONDS": 0})
    try:
        k = s.create_key("alerts:read")
        wait_window_start()
        codes = [s.request("GET", "/v1/alerts", key=k).status for _ in range(5)]
        assert_eq(codes, [200] * 5)
        codes = [s.request("GET", "/v1/alerts", key="cai_" + "Y" * 43).status for _ in range(3)]
        assert_eq(codes, [401, 401, 429])
        # the IP is over its budget now, and a valid key still passes (bcrypt runs, then the
        # request is judged by its key, not by its IP's junk)
        assert_eq(s.request("GET", "/v1/alerts", key=k).status, 200)
        # junk with an unknown prefix from that IP is refused from memory
        assert_eq(s.request("GET", "/v1/alerts", key="cai_" + "X" * 43).status, 429)
    finally:
        s.stop()


def test_trusted_proxy_count():
    s = Stack("s8", env={"RATE_LIMIT_UNAUTHED_PER_MINUTE": 2, "TRUSTED_PROXY_COUNT": 1})
    s0 = Stack("s8z", env={"RATE_LIMIT_UNAUTHED_PER_MINUTE": 2, "TRUSTED_PROXY_COUNT": 0})
    try:
        wait_window_start()
        # N=1: the right-most X-Forwarded-For entry is the client; entries to its left are ignored.
        for ip in ("198.51.100.1", "198.51.100.2"):
            codes = [s.request("GET", "/v1/alerts", headers={"X-Forwarded-For": "10.9.9.%d, %s" % (i, ip)}).status
                     for i in range(3)]
            assert_eq(codes, [401, 401, 429])
        fails = auth_lines(s)
        assert any(l.get("client_ip") == "198.51.100.2" for l in fails), fails[-1:]
        assert not any(l.get("client_ip", "").startswith("10.9.9.") for l in fails)
        # N=0: X-Forwarded-For is ignored, the socket peer is the client.
        codes = [s0.request("GET", "/v1/alerts", headers={"X-Forwarded-For": "198.51.100.%d" % i}).status
                 for i in range(3)]
        assert_eq(codes, [401, 401, 429])
        assert all(l.get("client_ip") == "127.0.0.1" for l in auth_lines(s0))
    finally:
        s.stop()
        s0.stop()


def sign(secret, body):
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_webhook_signatures():
    env = {"SENTINEL_WEBHOOK_SECRET": "sentinel-secret", "ELASTIC_WEBHOOK_SECRET": "elastic-secret",
           "SPLUNK_WEBHOOK_SECRET": "splunk-secret"}
    s = Stack("s12", env=env)
    try:
        k = s.create_key("alerts:write")
        body = fixture("01_sentinel_brute_force_tor.json")
        n0 = int(s.sql_value("SELECT count(*) FROM alerts"))
        r = s.request("POST", "/v1/ingest/sentinel", key=k, body=body,
                      headers={"X-Webhook-Signature": sign("sentinel-secret", body)})
        assert_eq(r.status, 202, r.body)
        r = s.request("POST", "/v1/ingest/sentinel", key=k, body=body,
                      headers={"X-Sentinel-Signature": "sha256=" + sign("sentinel-secret", body)})
        assert_eq(r.status, 202, r.body)
        for hdrs in ({}, {"X-Webhook-Signature": sign("wrong", body)},
                     {"X-Webhook-Signature": "sha256=" + "0" * 64}, {"X-Webhook-Signature": "zz"}):
            r = s.request("POST", "/v1/ingest/sentinel", key=k, body=body, headers=hdrs)
            assert_eq(r.status, 401, hdrs)
            assert_eq(r.json()["error"]["code"], "INVALID_SIGNATURE")
        # Fix 4: non-ASCII bytes in the signature header are a 401, never a 500.
        raw = (b"POST /v1/ingest/sentinel HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + k.encode() +
               b"\r\nX-Webhook-Signature: \xc3\xa9\xff\xfe" + b"a" * 60 + b"\r\nContent-Length: " +
               str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        out = s.raw(raw)
        assert out.startswith(b"HTTP/1.1 401"), out[:200]
        eb = fixture("02_elastic_malware_hash.json")
        r = s.request("POST", "/v1/ingest/elastic", key=k, body=eb,
                      headers={"X-Elastic-Signature": sign("elastic-secret", eb)})
        assert_eq(r.status, 202, r.body)
        sb = fixture("03_splunk_anomalous_data_transfer.json")
        r = s.request("POST", "/v1/ingest/splunk", key=k, body=sb,
                      headers={"X-Splunk-Signature": sign("splunk-secret", sb)})
        assert_eq(r.status, 202, r.body)
        r = s.request("POST", "/v1/ingest/splunk", key=k, body=sb,
                      headers={"X-Splunk-Webhook-Secret": "splunk-secret"})
        assert_eq(r.status, 202, r.body)
        r = s.request("POST", "/v1/ingest/splunk", key=k, body=sb,
                      headers={"X-Splunk-Webhook-Secret": "splunk-secreT"})
        assert_eq(r.status, 401)
        # signature failures are audited with the client IP, so an attacker can be traced
        sig = [l for l in auth_lines(s) if l.get("reason") == "invalid_signature"]
        assert len(sig) >= 5 and sig[0]["client_ip"] == "127.0.0.1", sig[:1]
        # nothing was stored by the failures: 2 sentinel (one deduplicated), 1 elastic, 1 splunk
        n1 = int(s.sql_value("SELECT count(*) FROM alerts"))
        assert_eq(n1 - n0, 3)
        # the API key is required as well
        r = s.request("POST", "/v1/ingest/sentinel", body=body,
                      headers={"X-Webhook-Signature": sign("sentinel-secret", body)})
        assert_eq(r.status, 401)
    finally:
        s.stop()


def test_signature_required_fails_closed():
    s = Stack("s12b", env={"WEBHOOK_SIGNATURE_REQUIRED": "true"})
    try:
        k = s.create_key("alerts:write")
        body = fixture("02_elastic_malware_hash.json")
        r = s.request("POST", "/v1/ingest/elastic", key=k, body=body)
        assert_eq(r.status, 401)
        assert_eq(r.json()["error"]["code"], "INVALID_SIGNATURE")
        r = s.request("POST", "/v1/ingest/generic", key=k, body=GENERIC)
        assert_eq(r.status, 401)
        assert "ELASTIC_WEBHOOK_SECRET" in s.intakes[0].text()
    finally:
        s.stop()


def test_source_restrictions():
    s = Stack("s16")
    try:
        admin = s.create_key("admin")
        r = s.request("POST", "/v1/api-keys", key=admin,
                      body={"name": "splunk-only", "scopes": ["admin"], "allowed_sources": ["splunk"]})
        k = r.json()["data"]["key"]
        r = s.request("POST", "/v1/ingest/sentinel", key=k, body=fixture("01_sentinel_brute_force_tor.json"))
        assert_eq(r.status, 403)
        assert_eq(r.json()["error"]["code"], "SOURCE_NOT_ALLOWED")
        r = s.request("POST", "/v1/alerts", key=k, body={"source_name": "generic", "payload": GENERIC})
        assert_eq(r.status, 403)
        r = s.request("POST", "/v1/ingest/splunk", key=k, body=fixture("03_splunk_anomalous_data_transfer.json"))
        assert_eq(r.status, 202, r.body)
        # unknown source is 404 even for a restricted key
        r = s.request("POST", "/v1/ingest/qradar", key=k, body=GENERIC)
        assert_eq(r.status, 404)
        assert_eq(r.json()["error"]["code"], "UNKNOWN_SOURCE")
        lines = [l for l in auth_lines(s) if l.get("reason") == "source_not_allowed"]
        assert len(lines) == 2 and lines[0]["key_prefix"] == k[:8], lines
    finally:
        s.stop()


def test_auth_failure_log_fields():
    s = Stack("s13")
    try:
        s.request("GET", "/v1/alerts")
        s.request("GET", "/v1/alerts?x=1", key="cai_" + "Q" * 43)
        s.request("GET", "/v1/alerts", headers={"Authorization": "Bearer nope"})
        reader = s.create_key("alerts:read")
        s.request("GET", "/v1/api-keys", key=reader)
        lines = auth_lines(s)
        reasons = [l["reason"] for l in lines]
        for want in ("missing_header", "invalid_key", "invalid_format", "insufficient_scope"):
            assert want in reasons, reasons
        for l in lines:
            for f in ("timestamp", "method", "path", "client_ip", "reason"):
                assert f in l, (f, l)
            assert l["client_ip"] == "127.0.0.1"
        inv = [l for l in lines if l["reason"] == "invalid_key"][0]
        assert_eq(inv["key_prefix"], "cai_QQQQ")
        assert_eq(inv["path"], "/v1/alerts")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
