#!/usr/bin/env python3
"""http_bench.py - the intake's HTTP server core against nginx, in the same run on the same host.

Throughput: wrk --latency, keep-alive, 64 connections, 2 threads, for each of
  intake GET /health           (public route; one PostgreSQL round trip per request)
  nginx  GET /health           (fixed 200 JSON body the size of the intake's)
  intake GET /bench-no-such    (404 answered by the server core: no database, no auth)
  nginx  GET /bench-no-such    (fixed 404 JSON body the size of the intake's)
Printed: requests/s, p50/p99 latency, intake/nginx ratio (goal: >= 0.8), load average.
nginx runs with as many worker processes as there are intake processes (--intake).

Memory: RSS of the intake process(es) idle, then with --idle-conns keep-alive connections held
open from this script (raw sockets): first only connected (accepted, no request yet), then
after one request each (idle keep-alive). RSS per connection = growth / connections. nginx is
measured the same way for comparison.

Run by hand (not in CI), with a release build:
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench -j2
    export CALSETA_DATA_DIR=/tmp/bench-pg; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build-bench/bin/calseta migrate
    CALSETA_BIN_DIR=build-bench/bin python3 tests/bench/http_bench.py [--seconds 15] [--intake 1]
        [--connections 64] [--idle-conns 10000] [--no-memory]
Needs wrk and nginx (apt-get install nginx-light); nginx is started by this script with its own
configuration in a temporary directory on a loopback port and stopped at the end.
"""
import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("CALSETA_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))
import harness  # noqa: E402

MISSING = "/bench-no-such-route"


# -- small tools shared with auth_bench.py ---------------------------------------------------------
def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def raise_nofile(want):
    """Raises this process's descriptor limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_wrk(out):
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise RuntimeError("wrk output not understood:\n" + out)
    total = int(m.group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    lat = {}
    for p in ("50", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+([\d.]+)(us|ms|s)\s*$" % p, out, re.M)
        if m:
            lat[p] = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    return {"total": total, "rps": rps, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errs.group(1).strip() if errs else "", "p50": lat.get("50", float("nan")),
            "p99": lat.get("99", float("nan"))}


def run_wrk(url, seconds, connections, threads=2, headers=()):
    argv = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "--latency", "--timeout", "10s"]
    for h in headers:
        argv += ["-H", h]
    load = loadavg()
    out = subprocess.run(argv + [url], capture_output=True, text=True).stdout
    r = parse_wrk(out)
    r["load"] = load
    return r


def fmt_row(name, r):
    extra = ""
    if r.get("non2xx"):
        extra += " non2xx=%d" % r["non2xx"]
    if r.get("errors"):
        extra += " sockerr(%s)" % r["errors"]
    return "  %-34s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  load %s%s" % (
        name, r["rps"], r["p50"], r["p99"], r["load"], extra)


def raw_response(port, path, headers=""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, headers)).encode())
        return read_response(s)
    finally:
        s.close()


def read_response(s):
    """Reads one response with a Content-Length body from a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed mid-response: %r" % data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    need = int(m.group(1)) if m else 0
    while len(body) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed mid-body")
        body += chunk
    return head, body


# -- processes' memory -------------------------------------------------------------------------------
def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError):
                pass
    return out


# -- nginx ---------------------------------------------------------------------------------------------
class Nginx:
    """Two servers: `port` answers with nginx's own headers; `port_hdrs` adds the intake's extra
    headers (X-Request-ID from $request_id, the security headers) so both send the same bytes."""

    def __init__(self, workers, bodies, max_conns, extra_headers):
        self.dir = tempfile.mkdtemp(prefix="calseta-bench-nginx-")
        self.port = harness.free_port()
        self.port_hdrs = harness.free_port()
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.mkdir(os.path.join(self.dir, d))
        os.chmod(self.dir, 0o755)

        def q(s):
            return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"

        for path, (status, body) in bodies.items():
            if "$" in body:
                raise RuntimeError("a body contains '$' (nginx variables): not supported")
        hdrs = "".join('        add_header %s "%s" always;\n' % (n, v.replace("\\", "\\\\").replace('"', '\\"'))
                       for n, v in extra_headers)
        locs = "".join("        location = %s { return %d %s; }\n" % (path, status, q(body))
                       for path, (status, body) in bodies.items() if path != "default")
        st, body = bodies["default"]
        conf = """daemon off;
worker_processes %(w)d;
worker_rlimit_nofile %(nofile)d;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections %(conns)d; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 1000000000;
    keepalive_timeout 3600s;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    default_type application/json;
    server {
        listen 127.0.0.1:%(port)d reuseport backlog=511;
%(locs)s        location / { return %(st)d %(body)s; }
    }
    server {
        listen 127.0.0.1:%(port2)d reuseport backlog=511;
        add_header X-Request-ID $request_id always;
%(hdrs)s%(locs)s        location / { return %(st)d %(body)s; }
    }
}
""" % {"port2": self.port_hdrs, "hdrs": hdrs,
       "w": workers, "nofile": max_conns + 1024, "d": self.dir, "port": self.port,
       # twice the held connections: nginx starts closing idle keep-alive connections well
       # before worker_connections is reached ("reusing connections")
       "conns": 2 * max_conns + 512,
       "locs": locs, "st": st, "body": q(body)}
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.log = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.p = subprocess.Popen(["nginx", "-p", self.dir, "-c", self.conf, "-e", os.path.join(self.dir, "error.log")],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            try:
                raw_response(self.port, "/health")
                break
            except OSError:
                if self.p.poll() is not None or time.time() > deadline:
                    raise RuntimeError("nginx did not start:\n" + self.errors())
                time.sleep(0.05)

    def errors(self):
        out = ""
        for n in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, n)) as f:
                    out += f.read()
            except OSError:
                pass
        return out

    def pids(self):
        return [self.p.pid] + children(self.p.pid)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGQUIT)  # graceful shutdown of master and workers
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- idle connections ----------------------------------------------------------------------------------
def hold_connections(port, n, pids, settle=2.0):
    """Opens n connections; returns (socks, rss after connect, rss after one request each).
    RSS is summed over pids; the connect phase waits until the servers hold the descriptors."""
    base_fds = sum(nfds(p) for p in pids)
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            socks.append(s)
        deadline = time.time() + 30
        while sum(nfds(p) for p in pids) < base_fds + n and time.time() < deadline:
            time.sleep(0.1)
        accepted = sum(nfds(p) for p in pids) - base_fds
        time.sleep(settle)
        rss_connected = sum(rss_kb(p) for p in pids)
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % MISSING).encode()
        for s in socks:
            s.sendall(req)
        for s in socks:
            read_response(s)
        time.sleep(settle)
        rss_idle_ka = sum(rss_kb(p) for p in pids)
        still = sum(nfds(p) for p in pids) - base_fds
        return socks, accepted, rss_connected, rss_idle_ka, still
    except BaseException:
        for s in socks:
            s.close()
        raise


def memory_row(name, pids, port, n):
    rss0 = sum(rss_kb(p) for p in pids)
    socks, accepted, rss1, rss2, still = hold_connections(port, n, pids)
    for s in socks:
        s.close()
    print("  %-8s idle %7.1f MiB | %d connected (%d accepted): %7.1f MiB, %5.2f KiB/conn | after one "
          "request each (%d open): %7.1f MiB, %5.2f KiB/conn | load %s" %
          (name, rss0 / 1024.0, n, accepted, rss1 / 1024.0, (rss1 - rss0) / float(n), still, rss2 / 1024.0,
           (rss2 - rss0) / float(n), loadavg()), flush=True)


# -- main ------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--intake", type=int, default=1, help="intake processes (nginx gets as many workers)")
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--no-memory", action="store_true")
    a = ap.parse_args()

    nofile = raise_nofile(2 * a.idle_conns + 4096)
    if not a.no_memory and nofile < a.idle_conns + 256:
        sys.exit("RLIMIT_NOFILE is %d; %d idle connections need more (raise the hard limit)" % (nofile, a.idle_conns))

    env = {"LOG_LEVEL": "WARNING", "MAX_CONNECTIONS": a.idle_conns + 1024,
           "HTTP_IDLE_TIMEOUT_MS": 3600000, "HTTP_HEADER_TIMEOUT_MS": 600000}
    s = harness.Stack("httpbench", env=env, intake_processes=a.intake)
    ng = None
    try:
        intake_pids = [p.p.pid for p in s.intakes]
        rss_fresh = sum(rss_kb(p) for p in intake_pids)
        h_head, h_body = raw_response(s.port, "/health")
        n_head, n_body = raw_response(s.port, MISSING)
        if b" 200 " not in h_head.split(b"\r\n")[0] or b" 404 " not in n_head.split(b"\r\n")[0]:
            raise RuntimeError("unexpected intake answers: %r / %r" % (h_head, n_head))
        extra = [tuple(x.strip() for x in line.split(":", 1)) for line in n_head.decode().split("\r\n")[1:]]
        extra = [(n, v) for n, v in extra if n.lower() not in
                 ("content-type", "content-length", "date", "connection", "x-request-id")]
        ng = Nginx(a.intake, {"/health": (200, h_body.decode()), "default": (404, n_body.decode())},
                   a.idle_conns, extra)
        g_head, g_body = raw_response(ng.port, "/health")
        gh_head, gh_body = raw_response(ng.port_hdrs, "/health")
        gn_head, gn_body = raw_response(ng.port, MISSING)

        print("host: %d cores, RLIMIT_NOFILE %d; %d intake process(es), nginx %s with %d worker(s)" %
              (os.cpu_count(), nofile, a.intake, subprocess.run(["nginx", "-v"], capture_output=True,
                                                                text=True).stderr.strip().split("/")[-1], a.intake))
        print("response bytes (head+body): /health intake %d+%d, nginx %d+%d, nginx+hdrs %d+%d | "
              "404 intake %d+%d, nginx %d+%d" %
              (len(h_head) + 4, len(h_body), len(g_head) + 4, len(g_body), len(gh_head) + 4, len(gh_body),
               len(n_head) + 4, len(n_body), len(gn_head) + 4, len(gn_body)))
        print("wrk: %d keep-alive connections, %d threads, %d s each" % (a.connections, a.threads, a.seconds),
              flush=True)
        res = {}
        for key, port, path in (("intake /health", s.port, "/health"), ("nginx /health", ng.port, "/health"),
                                ("intake 404 (server core)", s.port, MISSING),
                                ("nginx 404", ng.port, MISSING),
                                ("nginx 404 + intake's headers", ng.port_hdrs, MISSING)):
            res[key] = run_wrk("http://127.0.0.1:%d%s" % (port, path), a.seconds, a.connections, a.threads)
            print(fmt_row(key, res[key]), flush=True)
        print("ratio intake/nginx: /health %.2f | 404 (server core) %.2f, vs nginx with the same headers %.2f "
              "(goal >= 0.80)" %
              (res["intake /health"]["rps"] / res["nginx /health"]["rps"],
               res["intake 404 (server core)"]["rps"] / res["nginx 404"]["rps"],
               res["intake 404 (server core)"]["rps"] / res["nginx 404 + intake's headers"]["rps"]), flush=True)
        for p in s.intakes:
            if not p.alive():
                raise RuntimeError("intake died during the run:\n" + p.text()[-3000:])

        if not a.no_memory:
            print("memory (RSS; summed over processes; nginx = master + workers); intake just after start %.1f MiB:" %
                  (rss_fresh / 1024.0))
            memory_row("intake", intake_pids, s.port, a.idle_conns)
            memory_row("nginx", ng.pids(), ng.port, a.idle_conns)
    finally:
        if ng:
            ng.stop()
        s.stop()


if __name__ == "__main__":
    main()
