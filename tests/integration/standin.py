"""standin.py - a local HTTP server standing in for a third-party service in integration tests.

One StandIn is a ThreadingHTTPServer on a free loopback port (HTTP/1.1 keep-alive, one thread per
connection, a client hanging up is not an error). Each request is recorded (Request) and answered
by the test's handle(req) -> (status, body) or (status, body, headers): body is bytes, a str, or
an object sent as JSON. With delay > 0 every answer waits that long first, and the stand-in counts
the requests it holds at once (holding, max_holding) and the client connections they came on
(peers): what a test of concurrency caps measures.
"""
import http.server
import json
import socket
import threading
import time
import urllib.parse


class Request:
    """One request as the stand-in saw it (headers with lowercase names)."""

    def __init__(self, method, path, headers, body, peer):
        self.method = method
        self.path = path
        u = urllib.parse.urlsplit(path)
        self.route = u.path
        self.query = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        self.headers = headers
        self.body = body
        self.peer = peer
        self.time = time.time()
        self.nth = 0  # this is the nth request to its path (query included), from 1
        self.seq = 0  # and the seq-th request the stand-in got, from 1

    def h(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%s %s>" % (self.method, self.path)


def _encode(body, headers):
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode(), dict({"Content-Type": "application/json"}, **headers)
    if isinstance(body, str):
        return body.encode(), headers
    return body or b"", headers


class StandIn:
    def __init__(self, handle, delay=0.0, host="127.0.0.1"):
        self.handle = handle
        self.delay = delay
        self.lock = threading.Lock()
        self.reset()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                outer._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        class Server(http.server.ThreadingHTTPServer):
            # socketserver listens with a backlog of 5: a burst of new connections (a worker
            # without a per-host cap opens one per lookup) overflows the accept queue, the
            # kernel drops the handshake's last ACK, and the client, which believes it is
            # connected, resends its request with a doubling timeout that can outlast the
            # lookup's own (a lookup then times out with nothing received)
            request_queue_size = 1024
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        # an IPv6 address is loopback only too, as every stand-in
        self.server = Server((host, 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # clients may hang up
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d" % ("[%s]" % host if ":" in host else host, self.port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.requests = []
            self.per_path = {}
            self.holding = 0
            self.max_holding = 0
            self.peers = set()

    def of(self, route):
        """The requests made to route (the path without its query), in arrival order."""
        with self.lock:
            return [r for r in self.requests if r.route == route]

    def count(self, prefix):
        with self.lock:
            return sum(1 for r in self.requests if r.route.startswith(prefix))

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        req = Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()},
                      h.rfile.read(n) if n else b"", h.client_address)
        with self.lock:
            self.requests.append(req)
            req.seq = len(self.requests)
            req.nth = self.per_path[req.path] = self.per_path.get(req.path, 0) + 1
            self.holding += 1
            self.max_holding = max(self.max_holding, self.holding)
            self.peers.add(h.client_address)
        try:
            if self.delay:
                time.sleep(self.delay)
            answer = self.handle(req)
        finally:
            with self.lock:
                self.holding -= 1
        status, body, headers = answer if len(answer) == 3 else answer + ({},)
        data, headers = _encode(body, headers)
        try:
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
        except OSError:
            pass


VT_STATS = {"last_analysis_stats": {"malicious": 0, "suspicious": 0, "harmless": 50,
                                    "undetected": 5}}


def virustotal(api_key, attributes=VT_STATS):
    """A handle() answering like VirusTotal's lookups: the attributes for the right x-apikey,
    401 WrongCredentialsError for any other."""
    def handle(req):
        if req.headers.get("x-apikey") != api_key:
            return 401, {"error": {"code": "WrongCredentialsError"}}
        return 200, {"data": {"attributes": attributes}}
    return handle
