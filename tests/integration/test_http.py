"""The intake's HTTP front door over real sockets: routing errors, security headers and request
ids on every status, body and header limits, slow clients, pipelining, TLS, drain on SIGTERM,
health."""
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import harness
from harness import Stack, assert_eq, run_tests

SEC = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
       "x-xss-protection": "1; mode=block", "referrer-policy": "no-referrer",
       "content-security-policy": "default-src 'none'; frame-ancestors 'none'"}


def check_security_headers(headers, what=""):
    for k, v in SEC.items():
        assert_eq(headers.get(k), v, (what, k))
    assert headers.get("x-request-id"), what


def parse_raw(out):
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def test_routing_404_405_and_headers_everywhere():
    s = Stack("routing", env={"MAX_REQUEST_BODY_SIZE_MB": 1, "MAX_INGEST_PAYLOAD_SIZE_MB": 1})
    try:
        k = s.create_key("admin")
        r = s.request("GET", "/v1/nope", key=k)
        assert_eq(r.status, 404)
        assert_eq(r.json()["error"]["code"], "NOT_FOUND")
        check_security_headers(r.headers, "404")
        r = s.request("PUT", "/v1/alerts", key=k)
        assert_eq(r.status, 405)
        allow = {m.strip() for m in r.headers["allow"].split(",")}
        assert {"GET", "POST"} <= allow, allow
        check_security_headers(r.headers, "405")
        for path, key in (("/health", None), ("/v1/alerts", None), ("/v1/alerts", k)):
            r = s.request("GET", path, key=key)
            check_security_headers(r.headers, path)
        # 413 by Content-Length, before the body is sent
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(b"POST /v1/ingest/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + k.encode() +
                     b"\r\nContent-Length: %d\r\n\r\n" % (2 * 1024 * 1024))
        status, hdrs, body = parse_raw(sock.recv(65536))
        sock.close()
        assert_eq(status, 413)
        assert b"PAYLOAD_TOO_LARGE" in body and b"1MB limit for ingest" in body, body
        check_security_headers(hdrs, "413")
        # 413 by counting a chunked body
        chunk = b"x" * 65536
        req = (b"POST /v1/ingest/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + k.encode() +
               b"\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"10000\r\n" + chunk + b"\r\n") * 40 + b"0\r\n\r\n")
        try:
            out = s.raw(req)
        except OSError as e:
            out = b""
        assert out.startswith(b"HTTP/1.1 413"), out[:100]
        # client-supplied request id: echoed when sane, replaced when not
        r = s.request("GET", "/health", headers={"X-Request-ID": "abc-123"})
        assert_eq(r.headers["x-request-id"], "abc-123")
        r = s.request("GET", "/health", headers={"X-Request-ID": "<script>" + "x" * 300})
        assert r.headers["x-request-id"] != "<script>" and len(r.headers["x-request-id"]) == 36
        # 431
        r = s.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        st, hdrs, _ = parse_raw(r)
        assert_eq(st, 431)
        check_security_headers(hdrs, "431")
        # malformed request line
        st, hdrs, _ = parse_raw(s.raw(b"GARBAGE\r\n\r\n"))
        assert_eq(st, 400)
        check_security_headers(hdrs, "400")
        # non-ASCII header bytes never crash
        st, _, _ = parse_raw(s.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-W: \xff\xfe\x80\r\nConnection: close\r\n\r\n"))
        assert st in (200, 400), st
        assert_eq(s.request("GET", "/health").status, 200)
    finally:
        s.stop()


def test_pipelining_keepalive_chunked():
    s = Stack("pipeline")
    try:
        k = s.create_key("admin").encode()
        reqs = (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: one\r\n\r\n"
                b"GET /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + k + b"\r\nX-Request-ID: two\r\n\r\n"
                b"GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-ID: three\r\nConnection: close\r\n\r\n")
        out = s.raw(reqs)
        ids = [l.split(b":")[1].strip() for l in out.split(b"\r\n") if l.lower().startswith(b"x-request-id")]
        assert_eq(ids, [b"one", b"two", b"three"])
        assert_eq(out.count(b"HTTP/1.1 "), 3)
        body = b'{"title": "chunked alert", "severity": "low"}'
        req = (b"POST /v1/ingest/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + k +
               b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
               b"%x\r\n" % 10 + body[:10] + b"\r\n" + b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\n\r\n")
        out = s.raw(req)
        assert out.startswith(b"HTTP/1.1 202"), out[:300]
        # Expect: 100-continue
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(b"POST /v1/ingest/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + k +
                     b"\r\nContent-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(body))
        first = sock.recv(100)
        assert first.startswith(b"HTTP/1.1 100"), first
        sock.sendall(body)
        rest = b""
        while True:
            d = sock.recv(65536)
            if not d:
                break
            rest += d
        assert b"HTTP/1.1 202" in first + rest, first + rest
        sock.close()
    finally:
        s.stop()


def test_slow_clients_get_408():
    s = Stack("slow", env={"HTTP_HEADER_TIMEOUT_MS": 800, "HTTP_BODY_TIMEOUT_MS": 800})
    try:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        t0 = time.time()
        out = sock.recv(65536)
        assert out.startswith(b"HTTP/1.1 408"), out[:100]
        assert time.time() - t0 < 4
        check_security_headers(parse_raw(out)[1], "408")
        sock.close()
        # a body is read only after authentication; then it must keep coming
        k = s.create_key("admin")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + k.encode() +
                     b"\r\nContent-Length: 100\r\n\r\n{")
        out = sock.recv(65536)
        assert out.startswith(b"HTTP/1.1 408"), out[:100]
        sock.close()
        assert_eq(s.request("GET", "/health").status, 200)
    finally:
        s.stop()


def read_answer(sock):
    """One whole answer (Content-Length framed) from a raw socket."""
    out = b""
    while b"\r\n\r\n" not in out:
        chunk = sock.recv(65536)
        assert chunk, out
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    n = int(parse_raw(out)[1]["content-length"])
    while len(body) < n:
        chunk = sock.recv(65536)
        assert chunk, out
        body += chunk
    return head


def closed_after(sock, quiet):
    """Seconds until the server closes the idle connection; it must stay silent and open for
    quiet seconds first."""
    t0 = time.time()
    sock.settimeout(quiet)
    try:
        got = sock.recv(1)
        raise AssertionError("idle connection closed or answered after %.2f s: %r" % (time.time() - t0, got))
    except socket.timeout:
        pass
    sock.settimeout(10)
    assert_eq(sock.recv(1), b"")
    return time.time() - t0


def test_idle_keepalive_closes_on_its_own_deadline():
    """A connection's timer is re-armed only when its deadline moves earlier: an idle deadline
    later than the header deadline it was armed for is waited out, an earlier one is kept."""
    for idle_ms, header_ms in ((1500, 400), (300, 3000)):
        s = Stack("idle%d" % idle_ms, env={"HTTP_IDLE_TIMEOUT_MS": idle_ms, "HTTP_HEADER_TIMEOUT_MS": header_ms})
        try:
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            for _ in range(2):  # two requests: the deadlines move with each
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_answer(sock).startswith(b"HTTP/1.1 200")
            quiet = idle_ms / 1000 * 0.8
            took = closed_after(sock, quiet)
            print("idle %d ms, header %d ms: closed after %.2f s" % (idle_ms, header_ms, took))
            assert took < idle_ms / 1000 + 1.5, took
            sock.close()
        finally:
            s.stop()


def test_client_that_never_reads_is_paused():
    """A client that pipelines requests and never reads the answers: once its answers back up the
    intake stops parsing, and once the unparsed input passes its pause threshold it stops reading
    too, so what the client can push in is bounded by the kernel's buffers and those thresholds
    (not by the idle timeout). When the client reads, the intake reads and answers again: every
    request pushed gets its answer."""
    s = Stack("noread")
    try:
        req = b"GET /no-such-route HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 1900 + b"\r\n\r\n"
        chunk = req * 32
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", s.port))
        sock.setblocking(False)
        sent, off, limit = 0, 0, 256 << 20
        deadline = time.time() + 20
        stalled, quiet = False, 0
        while sent < limit and time.time() < deadline:
            _, w, _ = select.select([], [sock], [], 2.0)
            if not w:
                quiet += 1  # nothing taken for 2 s twice running: the intake stopped reading
                if quiet == 2:  # (once could be an intake short of CPU on a loaded box)
                    stalled = True
                    break
                continue
            quiet = 0
            try:
                n = sock.send(chunk[off:])
            except BlockingIOError:
                continue
            sent += n
            off = (off + n) % len(chunk)
        print("pushed %.1f MB before the intake stopped reading" % (sent / 1e6))
        assert stalled, "the intake kept reading: %d bytes pushed" % sent
        assert sent < 128 << 20, sent
        # Finish the request cut in the middle, then read every answer.
        sock.setblocking(True)
        sock.settimeout(60)
        rest = (len(req) - sent % len(req)) % len(req)
        want = (sent + rest) // len(req)
        got = []

        def reader():
            n, tail = 0, b""
            while n < want:
                d = sock.recv(1 << 20)
                if not d:
                    break
                buf = tail + d
                n += buf.count(b"HTTP/1.1 404 ")
                tail = buf[-12:]
            got.append(n)

        t = threading.Thread(target=reader)
        t.start()
        if rest:
            sock.sendall(req[len(req) - rest:])
        t.join(90)
        assert not t.is_alive(), "answers stopped coming"
        assert_eq(got[0], want)
        sock.close()
        assert s.intakes[0].alive(), s.logs()
    finally:
        s.stop()


def test_unread_closing_answer_is_dropped_after_the_idle_timeout():
    """A client that asks for a large answer with Connection: close and never reads it: the
    answer cannot drain, so the connection never reaches its linger; the idle timeout closes it
    instead of it staying open for as long as the client likes."""
    s = Stack("unreadclose", env={"HTTP_IDLE_TIMEOUT_MS": 1000})
    try:
        socks = []
        for _ in range(4):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", s.port))
            # pipelined copies so the answers outgrow the kernel's buffers on both sides
            sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 40 +
                         b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            socks.append(sock)

        def established():
            """The intake's established connections on its port, from /proc/net/tcp (state 01)."""
            n = 0
            with open("/proc/net/tcp") as f:
                for line in f.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if int(local.split(":")[1], 16) == s.port and state == "01":
                        n += 1
            return n

        time.sleep(0.5)
        assert_eq(established(), 4)
        deadline = time.time() + 15
        while established() and time.time() < deadline:
            time.sleep(0.2)
        assert_eq(established(), 0)
        for sock in socks:
            sock.close()
        assert s.intakes[0].alive(), s.logs()
    finally:
        s.stop()


def test_connection_limit():
    s = Stack("connlimit", env={"MAX_CONNECTIONS": 4})
    try:
        # busy connections (a request under way) hold their slots; idle ones would make room
        held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(4)]
        for h in held:
            h.sendall(b"GET /health HTTP/1.1\r\n")
        time.sleep(1.0)  # the server has read them (a loaded machine may take a while)
        extra = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        out = extra.recv(65536)
        assert out.startswith(b"HTTP/1.1 503"), out[:100]
        extra.close()
        held[0].sendall(b"Host: x\r\n\r\n")
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200")
        # held[0] is idle now: a new client takes its slot instead of getting a 503
        extra = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(65536).startswith(b"HTTP/1.1 200")
        assert_eq(held[0].recv(65536), b"")
        extra.close()
        for h in held:
            h.close()
    finally:
        s.stop()


def test_tls_and_hsts():
    d = tempfile.mkdtemp()
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    s = Stack("tls", services=("auditd",), env={"TLS_CERT_FILE": cert, "TLS_KEY_FILE": key, "HTTPS_ENABLED": "true"})
    try:
        s.start_intake()
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False

        def tls_health():
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
                t = ctx.wrap_socket(raw)
                assert t.version() in ("TLSv1.2", "TLSv1.3"), t.version()
                t.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                out = b""
                while True:
                    dd = t.recv(65536)
                    if not dd:
                        break
                    out += dd
            st, hdrs, _ = parse_raw(out)
            return (st, hdrs) if st == 200 else None
        # the port opens before the intake's database pool is ready (/health is 503 until then)
        st, hdrs = harness.wait_for(tls_health, 30, 0.1, "GET /health = 200 over TLS")
        assert_eq(hdrs["strict-transport-security"], "max-age=63072000; includeSubDomains")
        # TLS 1.1 is refused. Python's OpenSSL may be unable to offer TLS 1.1 at all (then its own
        # handshake fails and proves nothing), so the hellos are written by hand: the same hello
        # as TLS 1.2 gets a ServerHello (the probe works), as TLS 1.1 a protocol_version alert.
        assert_eq(tls_probe(s.port, 0x0303)[:2], (0x16, 2), "a hand-made TLS 1.2 hello")
        assert_eq(tls_probe(s.port, 0x0302), (0x15, 2, 70), "a TLS 1.1 hello")
        assert_eq(tls_probe(s.port, 0x0301), (0x15, 2, 70), "a TLS 1.0 hello")
        # plain HTTP on the TLS port is not answered as HTTP
        out = s.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not out.startswith(b"HTTP/1.1 200")
    finally:
        s.stop()


def client_hello(version):
    """A ClientHello offering only `version` (no supported_versions extension), with ECDHE and
    RSA suites and the extensions a TLS 1.2 server needs."""
    def ext(kind, data):
        return struct.pack(">HH", kind, len(data)) + data
    suites = [0xc02f, 0xc02b, 0xc030, 0x009c, 0xc013, 0xc009, 0x002f, 0x0035]
    exts = (ext(0x000a, struct.pack(">HHH", 4, 0x001d, 0x0017)) +        # supported groups
            ext(0x000b, b"\x01\x00") +                                     # point formats
            ext(0x000d, struct.pack(">HHHHH", 8, 0x0804, 0x0401, 0x0403, 0x0201)) +
            ext(0xff01, b"\x00"))                                          # renegotiation info
    body = (struct.pack(">H", version) + os.urandom(32) + b"\x00" +
            struct.pack(">H", 2 * len(suites)) + b"".join(struct.pack(">H", c) for c in suites) +
            b"\x01\x00" + struct.pack(">H", len(exts)) + exts)
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def tls_probe(port, version):
    """Sends a hand-made hello; returns (record type, first two bytes of the record): a
    ServerHello is (0x16, 2, ...), an alert (0x15, level, description); () when closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(client_hello(version))
        out = b""
        while len(out) < 7:
            d = c.recv(4096)
            if not d:
                break
            out += d
    return (out[0], out[5], out[6]) if len(out) >= 7 else ()


def test_drain_on_sigterm_finishes_in_flight():
    s = Stack("drain")
    try:
        k = s.create_key("admin").encode()
        # a request whose body is still arriving when SIGTERM comes
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        body = b'{"title": "in flight", "severity": "low"}'
        sock.sendall(b"POST /v1/ingest/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + k +
                     b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:5])
        time.sleep(0.3)  # the request is under way (headers read, body incomplete) at SIGTERM
        s.intakes[0].p.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the rest of the body arrives after the drain began: the point
        sock.sendall(body[5:])
        out = sock.recv(65536)
        assert out.startswith(b"HTTP/1.1 202"), out[:200]
        assert b"connection: close" in out.lower()
        sock.close()
        rc = s.intakes[0].p.wait(timeout=20)
        assert_eq(rc, 0)
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE title = 'in flight'"), "1")
        # the listener is closed
        try:
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        assert refused
    finally:
        s.stop()


def test_cors_off_by_default_and_exact_origin():
    s = Stack("cors0")
    s2 = Stack("cors1", env={"CORS_ALLOWED_ORIGINS": "https://soc.example.com, https://b.example"})
    try:
        r = s.request("GET", "/health", headers={"Origin": "https://soc.example.com"})
        assert "access-control-allow-origin" not in r.headers
        r = s2.request("GET", "/health", headers={"Origin": "https://soc.example.com"})
        assert_eq(r.headers.get("access-control-allow-origin"), "https://soc.example.com")
        assert_eq(r.headers.get("access-control-allow-credentials"), "true")
        r = s2.request("GET", "/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = s2.request("OPTIONS", "/v1/alerts", headers={"Origin": "https://b.example",
                                                          "Access-Control-Request-Method": "POST"})
        assert_eq(r.status, 200)
        assert "POST" in r.headers["access-control-allow-methods"]
        assert_eq(r.headers.get("access-control-max-age"), "600")
        r = s2.request("OPTIONS", "/v1/alerts", headers={"Origin": "https://evil.example",
                                                          "Access-Control-Request-Method": "POST"})
        assert_eq(r.status, 400)
    finally:
        s.stop()
        s2.stop()


def test_health_reports_database_down():
    s = Stack("healthdown", services=(), env={"DATABASE_URL": "postgresql://x:y@127.0.0.1:%d/none" % harness.free_port()})
    try:
        s.start_intake()
        deadline = time.time() + 20
        while True:
            try:
                r = s.request("GET", "/health")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        assert_eq(r.status, 503)
        b = r.json()
        assert_eq((b["status"], b["database"]), ("down", "error"))
        check_security_headers(r.headers, "503")
        r = s.request("GET", "/v1/alerts", key="cai_" + "A" * 43)
        assert_eq(r.status, 503)
        assert_eq(r.json()["error"]["code"], "SERVICE_UNAVAILABLE")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
