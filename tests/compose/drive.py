"""drive.py - the HTTP side of tests/compose/run.sh, standard library only.

Sub-commands (each prints what it saw and exits non-zero on a failed check):
  standin PORT                  a VirusTotal stand-in on 0.0.0.0:PORT that answers every lookup
                                after 150 ms in VirusTotal's v3 shape (runs until killed)
  fernet KEY TEXT               prints a Fernet token of TEXT under KEY (the stored credential form)
  ingest URL KEY N              posts the five fixtures signed through /v1/ingest/{source}, then
                                N generic alerts with distinct public addresses; prints the count of
                                202s (every other status fails)
  wait-health URL SECONDS       waits until GET /health answers 200
"""
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "data", "fixtures")
SECRETS = {"sentinel": "compose-sentinel-secret", "elastic": "compose-elastic-secret",
           "splunk": "compose-splunk-secret"}
VT_KEY = "compose-vt-key-5b1e"


def standin(port):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            time.sleep(0.15)
            if self.headers.get("x-apikey") != VT_KEY:
                code, doc = 401, {"error": {"code": "WrongCredentialsError"}}
            else:
                code, doc = 200, {"data": {"attributes": {
                    "last_analysis_stats": {"malicious": 1, "suspicious": 0, "harmless": 60},
                    "reputation": -3, "tags": ["compose"], "asn": 64500, "country": "NL"}}}
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("0.0.0.0", int(port)), H)
    srv.daemon_threads = True
    srv.serve_forever()


def fernet(key_b64, text):
    key = base64.urlsafe_b64decode(key_b64)
    iv = os.urandom(16)
    ct = subprocess.run(["openssl", "enc", "-aes-128-cbc", "-K", key[16:].hex(), "-iv", iv.hex()],
                        input=text.encode(), capture_output=True, check=True).stdout
    body = b"\x80" + struct.pack(">Q", int(time.time())) + iv + ct
    mac = hmac.new(key[:16], body, hashlib.sha256).digest()
    print(base64.urlsafe_b64encode(body + mac).decode())


def post(conn, path, key, body, headers=None):
    h = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    h.update(headers or {})
    conn.request("POST", path, body=body, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


def ingest(url, key, n):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    ok = 0
    for name in sorted(os.listdir(FIXTURES)):
        source = name.split("_")[1]
        body = open(os.path.join(FIXTURES, name), "rb").read()
        sig = "sha256=" + hmac.new(SECRETS[source].encode(), body, hashlib.sha256).hexdigest()
        header = "X-Splunk-Signature" if source == "splunk" else "X-Webhook-Signature"
        st, text = post(conn, "/v1/ingest/" + source, key, body, {header: sig})
        if st != 202:
            sys.exit("ingest %s: %d %s" % (name, st, text[:300]))
        ok += 1
    for i in range(int(n)):
        ip = "185.%d.%d.%d" % (40 + i // 60000, (i // 250) % 250 + 1, i % 250 + 1)
        doc = {"title": "compose load %d" % i, "severity": "Medium",
               "description": "connection from %s" % ip, "src_ip": ip,
               "occurred_at": "2026-12-01T10:00:00Z", "source_name": "generic"}
        st, text = post(conn, "/v1/ingest/generic", key, json.dumps(doc).encode())
        if st != 202:
            sys.exit("generic alert %d: %d %s" % (i, st, text[:300]))
        ok += 1
    print(ok)


def workflow(url, key):
    """Saves a workflow (its code checked by a runner through workflowd) and test-runs it: both
    cross the intake -> workflowd -> runner links."""
    u = urllib.parse.urlsplit(url)
    code = ("from calseta.workflows import WorkflowResult\n"
            "async def run(ctx):\n"
            "    return WorkflowResult.ok('compose', {'value': ctx.indicator.value})\n")
    body = {"name": "compose check", "code": code, "state": "active", "approval_mode": "never",
            "timeout_seconds": 10, "indicator_types": ["ip"]}
    deadline = time.time() + 60
    while True:  # the runner may still be starting its fork server
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        st, raw = post(c, "/v1/workflows", key, json.dumps(body))
        if st != 503 or time.time() > deadline:
            break
        time.sleep(1)
    if st != 201:
        sys.exit("saving a workflow: %s %r" % (st, raw))
    wf = json.loads(raw)["data"]["uuid"]
    st, raw = post(c, "/v1/workflows/%s/test" % wf, key,
                   json.dumps({"indicator_type": "ip", "indicator_value": "192.0.2.7"}))
    if st != 200 or json.loads(raw)["data"]["data"] != {"value": "192.0.2.7"}:
        sys.exit("test run: %s %r" % (st, raw))
    print(json.loads(raw)["data"]["status"])


def wait_health(url, seconds):
    u = urllib.parse.urlsplit(url)
    deadline = time.time() + float(seconds)
    last = None
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
            c.request("GET", "/health")
            r = c.getresponse()
            last = (r.status, r.read()[:200])
            if r.status == 200:
                return
        except OSError as e:
            last = e
        time.sleep(1)
    sys.exit("no healthy intake at %s after %ss: %r" % (url, seconds, last))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"standin": standin, "fernet": fernet, "ingest": ingest, "wait-health": wait_health,
     "workflow": workflow}[cmd](*args)
