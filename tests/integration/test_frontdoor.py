"""The front door under attack by clients without a key: trickling connections from one address
cannot lock others out, unauthenticated uploads are refused before their body is read (memory
stays flat), refusals are aggregated in the audit log, and the smaller framing and routing
points (duplicate Authorization, transfer codings, chunk extensions, encoded slashes, /health)."""
import json
import os
import resource
import select
import selectors
import socket
import subprocess
import sys
import threading
import time

from harness import Stack, assert_eq, run_tests, wait_for

OTHER_CLIENT = "127.0.0.2"  # a second loopback address: "another client" for per-address caps


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= want, "RLIMIT_NOFILE %d < %d: cannot run this test here" % (soft, want)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def intake_pid(s):
    return s.intakes[0].p.pid


def nb_connect(port, n):
    """n non-blocking connections to 127.0.0.1:port (connects may still be in progress)."""
    socks = []
    for _ in range(n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        socks.append(c)
    return socks


def wait_connected(socks, timeout=20):
    """Until every non-blocking connect has completed (the socket is writable)."""
    pending = list(socks)
    deadline = time.time() + timeout
    while pending:
        assert time.time() < deadline, "%d connects still in progress" % len(pending)
        _, writable, _ = select.select([], pending, [], 0.1)
        pending = [c for c in pending if c not in writable]


def try_send(c, data):
    try:
        return c.send(data)
    except BlockingIOError:
        return 0
    except OSError:
        return -1


def health_probe(s, stop, failures, latencies):
    """GET /health from OTHER_CLIENT every 200 ms; every answer must be 200 within 1 s."""
    start = time.time()
    while not stop.is_set():
        t0 = time.time()
        phase = "connect"
        try:
            c = socket.create_connection(("127.0.0.1", s.port), timeout=1.0,
                                         source_address=(OTHER_CLIENT, 0))
            try:
                phase = "answer"
                c.settimeout(max(0.01, 1.0 - (time.time() - t0)))
                c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                out = b""
                while b"\r\n\r\n" not in out:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    out += chunk
            finally:
                c.close()
            dt = time.time() - t0
            latencies.append(dt)
            if not out.startswith(b"HTTP/1.1 200") or dt > 1.0:
                failures.append((round(t0 - start, 1), round(dt, 3), out[:40]))
        except OSError as e:
            failures.append((round(t0 - start, 1), round(time.time() - t0, 3), phase, repr(e)))
        stop.wait(0.2)


# The attacker runs in its own process (the probe must not wait for it on the GIL): it keeps
# `count` connections from 127.0.0.1 open (then says "ready") for `secs` seconds more, half trickling their headers and
# half a body announced with Content-Length, one byte per connection per second, and replaces
# every connection the server closes (up to 1,000 a second).
ATTACKER = r"""
import resource, socket, sys, time
port, count, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
head = b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
socks, n = [], 0
def send(c, data):
    try:
        return c.send(data)
    except BlockingIOError:
        return 0
    except OSError:
        return -1
def open_some(k):
    global n
    wave = []
    for _ in range(k):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        wave.append(c)
    time.sleep(0.05)  # the attacker's pace: a wave of connects, then the next
    for c in wave:
        n += 1
        if send(c, head if n % 2 else head + b"Content-Length: 10000\r\n\r\n") < 0:
            c.close()
        else:
            socks.append(c)
while len(socks) < count:
    open_some(500)
print("ready", flush=True)
t_end = time.time() + secs
peak = len(socks)
tick = 0
while time.time() < t_end:  # in ten slices per second: each connection gets a byte a second
    alive = []
    for i, c in enumerate(socks):
        if (i + tick) % 10 == 0 and send(c, b"{") < 0:
            c.close()
        else:
            alive.append(c)
    socks[:] = alive
    if len(socks) < count:  # replace the closed ones, 100 per slice
        open_some(min(100, count - len(socks)))
    peak = max(peak, len(socks))
    tick += 1
    time.sleep(0.1)  # the trickle's pace (the slowness is the attack)
print("attacker: %d connections opened, at most %d at once" % (n, peak), flush=True)
"""


def test_a_trickling_connections_cannot_lock_out_others():
    raise_nofile(20000)
    s = Stack("fd_trickle", env={"LOG_LEVEL": "ERROR"})
    attacker = None
    stop = threading.Event()
    failures, latencies = [], []
    try:
        attacker = subprocess.Popen([sys.executable, "-c", ATTACKER, str(s.port), "9000", "20"],
                                    stdout=subprocess.PIPE, text=True)
        assert_eq(attacker.stdout.readline().strip(), "ready")  # 9,000 connections opened
        time.sleep(1.0)  # the opening burst is queued in the kernel; then the trickle phase
        probe = threading.Thread(target=health_probe, args=(s, stop, failures, latencies))
        probe.start()
        attacker.wait(timeout=50)
        stop.set()
        probe.join()
        print("   " + attacker.stdout.read().strip())
        print("   %d health probes, slowest %.3f s" % (len(latencies), max(latencies or [0])))
        assert_eq(attacker.returncode, 0)
        assert len(latencies) >= 10, "the probe ran %d times" % len(latencies)
        assert not failures, "health from another client failed %d of %d times: %r" % (
            len(failures), len(latencies) + len(failures), failures[:5])
        assert s.intakes[0].alive(), s.logs()
    finally:
        stop.set()
        if attacker and attacker.poll() is None:
            attacker.kill()
            attacker.wait()
        s.stop()


def test_b_unauthenticated_uploads_keep_memory_flat():
    raise_nofile(4096)
    s = Stack("fd_uploads", env={"LOG_LEVEL": "ERROR"})
    socks = []
    try:
        pid = intake_pid(s)
        base = rss_kb(pid)
        size = 10 * 1024 * 1024
        chunk = b"x" * (256 * 1024)
        socks = nb_connect(s.port, 200)
        wait_connected(socks)
        sent = {}
        for c in socks:
            hdr = (b"POST /v1/workflows HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % size)
            sent[c] = 0 if try_send(c, hdr) == len(hdr) else -1
        peak = base
        answers = {}
        deadline = time.time() + 15
        sel = selectors.DefaultSelector()
        for c in socks:
            if sent[c] >= 0:
                sel.register(c, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while time.time() < deadline and sel.get_map():
            for key, ev in sel.select(timeout=0.2):
                c = key.fileobj
                if ev & selectors.EVENT_READ:
                    try:
                        data = c.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        answers.setdefault(c, data)
                    else:
                        sel.unregister(c)
                        continue
                if ev & selectors.EVENT_WRITE and sent[c] < size:
                    n = try_send(c, chunk[:min(len(chunk), size - sent[c])])
                    if n < 0:
                        sel.unregister(c)
                    else:
                        sent[c] += n
            peak = max(peak, rss_kb(pid))
        sel.close()
        growth_mb = (peak - base) / 1024.0
        statuses = sorted({a[:12] for a in answers.values()})
        total_sent = sum(v for v in sent.values() if v > 0)
        print("   rss %d kB -> peak %d kB (+%.1f MB); %.0f MB sent; answers %s" % (
            base, peak, growth_mb, total_sent / 1e6, statuses))
        assert answers, "no connection got an answer"
        for a in answers.values():
            assert a[:12] in (b"HTTP/1.1 401", b"HTTP/1.1 429", b"HTTP/1.1 503"), a[:80]
        assert growth_mb < 100, "intake RSS grew by %.1f MB" % growth_mb
        out = request_from(s, OTHER_CLIENT, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200"), out[:80]
    finally:
        for c in socks:
            c.close()
        s.stop()


def audit_rows(s, where):
    rows = s.sql("SELECT fields::text FROM audit_events WHERE event_type = 'auth_failure' AND " + where)
    return [json.loads(r[0]) for r in rows]


def wait_audit(s, where, want, timeout=20):
    deadline = time.time() + timeout
    while True:
        rows = audit_rows(s, where)
        if want(rows) or time.time() > deadline:
            return rows
        time.sleep(0.3)


def test_c_refusals_are_aggregated_in_the_audit_log():
    s = Stack("fd_audit", env={"AUDIT_REFUSAL_WINDOW_SECONDS": 3, "AUDIT_FSYNC_MS": 10})
    try:
        # a valid key refused for its scope: aggregated per key and route (the first refusal of
        # a window written at once, with the key; the rest counted in one summary naming it)
        k = s.create_key("alerts:read")
        for _ in range(3):
            assert_eq(s.request("GET", "/v1/api-keys", key=k).status, 403)
        assert_eq(s.request("GET", "/v1/workflows", key=k).status, 403)

        def scope_rows():
            return [dict(json.loads(r[1]), actor=r[0]) for r in s.sql(
                "SELECT actor_key_prefix, fields::text FROM audit_events WHERE event_type = "
                "'auth_failure' AND fields->>'reason' = 'insufficient_scope' ORDER BY id")]
        deadline = time.time() + 20
        while True:
            rows = scope_rows()
            n = sum(r.get("count", 0) if r.get("aggregated") else 1 for r in rows)
            if n >= 4 or time.time() > deadline:
                break
            time.sleep(0.3)
        assert_eq(n, 4, rows)
        assert_eq(len(rows), 3, rows)
        assert all(r["actor"] == k[:8] for r in rows), rows
        assert_eq([r["path"] for r in rows if not r.get("aggregated")], ["/v1/api-keys", "/v1/workflows"])
        summary = [r for r in rows if r.get("aggregated")]
        assert_eq(len(summary), 1, rows)
        assert_eq((summary[0]["count"], summary[0]["route"], summary[0]["required_scope"]),
                  (2, "/v1/api-keys", "admin"))
        n_threads, per = 4, 500

        def hammer():
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            f = c.makefile("rb")
            try:
                for _ in range(per):
                    c.sendall(b"GET /v1/alerts HTTP/1.1\r\nHost: x\r\n\r\n")
                    status = f.readline()
                    assert status.split()[1] in (b"401", b"429"), status
                    length = 0
                    while True:
                        line = f.readline()
                        if line in (b"\r\n", b""):
                            break
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    f.read(length)
            finally:
                f.close()
                c.close()

        threads = [threading.Thread(target=hammer) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = n_threads * per

        def counted(rows):
            return sum(r.get("count", 0) if r.get("aggregated") else 1 for r in rows)

        rows = wait_audit(s, "client_ip = '127.0.0.1' AND fields->>'reason' <> 'insufficient_scope'",
                          lambda rows: counted(rows) >= total)
        print("   %d refusals -> %d audit events" % (total, len(rows)))
        assert len(rows) <= 30, "%d audit events for %d refusals" % (len(rows), total)
        assert_eq(counted(rows), total, rows)
        summaries = [r for r in rows if r.get("aggregated")]
        assert summaries and max(r["count"] for r in summaries) >= 100, rows
        for r in summaries:
            assert r["reason"] in ("missing_header", "rate_limited"), r
            assert r["window_seconds"] == 3, r
        # unknown keys (well-formed, every prefix different) from another client: aggregated
        # like missing ones (then its unauthenticated budget runs out: rate_limited)
        for i in range(20):
            out = request_from(s, OTHER_CLIENT, b"GET /v1/alerts HTTP/1.1\r\nHost: x\r\n"
                               b"Authorization: Bearer cai_%02dZZ" % i + b"Q" * 39 + b"\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 401") or out.startswith(b"HTTP/1.1 429"), out[:80]
        rows = wait_audit(s, "client_ip = '%s'" % OTHER_CLIENT, lambda rows: counted(rows) >= 20)
        assert_eq(counted(rows), 20, rows)
        assert len(rows) <= 4, rows
        assert {r["reason"] for r in rows} <= {"invalid_key", "rate_limited"}, rows
    finally:
        s.stop()


def request_from(s, source_ip, data):
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5, source_address=(source_ip, 0))
    try:
        c.sendall(data)
        return read_answer(c)
    finally:
        c.close()


def read_answer(sock, timeout=20):  # generous: ASan builds on a loaded CI box are slow
    sock.settimeout(timeout)
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def test_d_body_not_read_before_authentication():
    s = Stack("fd_noread")
    try:
        # Expect: 100-continue without a key: refused at once, no 100 Continue, connection closed
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(b"POST /v1/workflows HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 5000000\r\n\r\n")
        out = read_answer(c)
        assert out.startswith(b"HTTP/1.1 401"), out[:80]
        assert b"connection: close" in out.lower(), out
        c.settimeout(5)
        rest = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                rest += d
        except OSError:
            pass
        assert b"100 Continue" not in rest, rest
        c.close()
        # with a key the body is read as before
        k = s.create_key("admin")
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        body = b'{"title": "t", "severity": "low"}'
        c.sendall(b"POST /v1/ingest/generic HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Authorization: Bearer " + k.encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        out = read_answer(c)
        assert out.startswith(b"HTTP/1.1 100"), out[:80]
        c.sendall(body)
        out = out.split(b"\r\n\r\n", 1)[1] + read_answer(c)
        assert out.startswith(b"HTTP/1.1 202"), out[:200]
        c.close()
    finally:
        s.stop()


def test_d_framing_and_routing_points():
    s = Stack("fd_small")
    try:
        k = s.create_key("admin")
        auth = b"Authorization: Bearer " + k.encode() + b"\r\n"
        # two Authorization headers: 400, whichever comes first
        out = s.raw(b"GET /v1/alerts HTTP/1.1\r\nHost: x\r\n" + auth +
                    b"Authorization: Bearer cai_" + b"Q" * 43 + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400"), out[:100]
        out = s.raw(b"GET /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n" + auth + b"\r\n")
        assert out.startswith(b"HTTP/1.1 400"), out[:100]
        # transfer codings other than a single chunked: 501, in any order
        for te in (b"gzip, chunked", b"chunked, identity", b"identity", b"gzip"):
            out = s.raw(b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\n" + auth +
                        b"Transfer-Encoding: " + te + b"\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 501"), (te, out[:100])
            assert b"NOT_IMPLEMENTED" in out, out
        out = s.raw(b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\n" + auth +
                    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 501") or out.startswith(b"HTTP/1.1 400"), out[:100]
        # chunk extensions have a length limit
        body = b'{"title": "x", "severity": "low"}'
        ext = b";a=" + b"b" * 2000
        out = s.raw(b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\n" + auth +
                    b"Transfer-Encoding: chunked\r\n\r\n%x" % len(body) + ext + b"\r\n" + body +
                    b"\r\n0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400"), out[:100]
        out = s.raw(b"POST /v1/ingest/generic HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth +
                    b"Transfer-Encoding: chunked\r\n\r\n%x;ok=1\r\n" % len(body) + body +
                    b"\r\n0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 202"), out[:200]
        # %2F is not a path separator: it never reaches the activity route
        r = s.request("POST", "/v1/ingest/generic", key=k, body={"title": "slash", "severity": "low"})
        assert_eq(r.status, 202, r.body)
        u = r.json()["data"]["alert_uuid"]
        assert_eq(s.request("GET", "/v1/alerts/%s/activity" % u, key=k).status, 200)
        for enc in ("%2factivity", "%2Factivity"):
            r = s.request("GET", "/v1/alerts/%s%s" % (u, enc), key=k)
            assert r.status in (404, 422), (enc, r.status, r.body)
        # /health lists built-in providers only, never custom names
        s.sql("INSERT INTO enrichment_providers (provider_name, display_name, http_config) "
              "VALUES ('acme_internal_secret_intel', 'Acme', '{}')")
        r = s.request("GET", "/health")
        assert_eq(r.status, 200)
        assert b"acme_internal_secret_intel" not in r.body, r.body
        assert_eq(s.request("GET", "/health", key=k).body.count(b"acme_internal"), 0)
    finally:
        s.stop()


def closed_unanswered(s):
    """True when a new connection is closed at once, without an answer (over its address's
    cap)."""
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        try:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = c.recv(65536)
        except ConnectionResetError:
            out = b""
        return out == b""
    finally:
        c.close()


def assert_closed_unanswered(s):
    """Once the server has accepted the held connections (a loaded machine may take a while),
    the next one is closed unanswered."""
    wait_for(lambda: closed_unanswered(s), 20, 0.1, "a connection over the cap closed unanswered")


def test_d_per_address_caps_and_proxy_setting():
    s = Stack("fd_caps", env={"MAX_CONNECTIONS_PER_IP": 5, "MAX_BODIES_PER_IP": 2})
    held = []
    try:
        k = s.create_key("admin")
        held = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(5)]
        for h in held:
            h.sendall(b"GET /health HTTP/1.1\r\n")
        assert_closed_unanswered(s)
        other = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                         source_address=(OTHER_CLIENT, 0))
        other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(other).startswith(b"HTTP/1.1 200")
        # bodies under way from one address: two, the third is refused before its body
        uploads = []
        for h in held[:3]:
            h.sendall(b"Host: x\r\n\r\n")
            assert read_answer(h).startswith(b"HTTP/1.1 200")
        for h in held[:3]:
            h.sendall(b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\n" + b"Authorization: Bearer " +
                      k.encode() + b"\r\nContent-Length: 100\r\n\r\n{")
            uploads.append(h)
            time.sleep(0.3)  # in this order: the third body is the one over the cap
        out = read_answer(uploads[2])
        assert out.startswith(b"HTTP/1.1 503"), out[:100]
        other.close()
    finally:
        for h in held:
            h.close()
        s.stop()
    # behind a proxy every connection comes from the proxy: MAX_CONNECTIONS_PER_PROXY applies
    s = Stack("fd_proxy", env={"TRUSTED_PROXY_COUNT": 1, "MAX_CONNECTIONS_PER_IP": 2,
                               "MAX_CONNECTIONS_PER_PROXY": 6})
    held = []
    try:
        held = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(6)]
        for h in held:
            h.sendall(b"GET /health HTTP/1.1\r\n")
        assert_closed_unanswered(s)
        for h in held:
            h.sendall(b"Host: x\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")
            assert read_answer(h).startswith(b"HTTP/1.1 200")
    finally:
        for h in held:
            h.close()
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
