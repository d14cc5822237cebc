#!/usr/bin/env python3
"""dispatch_bench.py - signed webhook deliveries per second of one calseta-dispatcher against a
stand-in agent that answers after a fixed latency (50 ms by default).

Load: N alerts, one agent (signing secret and an auth header, both Fernet tokens as the API
stores them), N deliveries queued in one transaction by calseta_agent_enqueue() while the
dispatcher runs (it is woken by the NOTIFY of that commit). Every delivery goes the full way:
claim with a lease, payload built in SQL, SSRF check, secrets decrypted, HMAC signature, POST
over curl multi, attempt recorded (agent_runs row, delivery done, activity event).

Ceiling, measured in the same run with code that is not ours: a plain asyncio HTTP client
posting the same body to the same stand-in with the same number of connections (no database,
no signature). With C connections and L ms of latency neither can exceed C / L.

Output: elapsed, deliveries/s, latency percentiles (queued → recorded, from the rows), the
ceiling's requests/s and the ratio, and the dispatcher's CPU over the run.

Run by hand (not in CI), with a release build:
    cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
    export CALSETA_DATA_DIR=/tmp/calseta-bench; DATABASE_URL=$(scripts/pg.sh start); export DATABASE_URL
    build-rel/bin/calseta migrate
    CALSETA_BIN_DIR=build-rel/bin python3 tests/bench/dispatch_bench.py [--deliveries 2000]
        [--latency-ms 50] [--concurrency 64]
Python standard library, psql and openssl only.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
os.environ.setdefault("CALSETA_BIN_DIR", os.path.join(HERE, "..", "..", "build", "bin"))


class Standin(asyncio.Protocol):
    latency = 0.05
    requests = 0

    def connection_made(self, transport):
        self.tr = transport
        self.buf = b""
        self.ready_at = 0.0
        self.loop = asyncio.get_running_loop()

    def connection_lost(self, exc):
        self.tr = None

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            low = self.buf[:end].lower()
            clen = 0
            i = low.find(b"\r\ncontent-length:")
            if i >= 0:
                j = low.find(b"\r\n", i + 2)
                clen = int(low[i + 17:j if j >= 0 else len(low)].strip() or 0)
            if len(self.buf) < end + 4 + clen:
                return
            target = self.buf[:end].split(b" ", 2)[1]
            self.buf = self.buf[end + 4 + clen:]
            if target.startswith(b"/__stats"):
                body = json.dumps({"requests": Standin.requests}).encode()
                self.tr.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            at = max(self.loop.time() + self.latency, self.ready_at)
            self.ready_at = at
            self.loop.call_at(at, self.answer)

    def answer(self):
        Standin.requests += 1
        if self.tr is not None and not self.tr.is_closing():
            self.tr.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
                          b'{"received":1}\n')


def standin_main(latency_ms):
    Standin.latency = latency_ms / 1000.0

    async def serve():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Standin, "127.0.0.1", 0, backlog=4096)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await srv.serve_forever()

    asyncio.run(serve())


def fernet_encrypt(key_b64, plaintext):
    key = base64.urlsafe_b64decode(key_b64)
    iv = os.urandom(16)
    ct = subprocess.run(["openssl", "enc", "-aes-128-cbc", "-K", key[16:].hex(), "-iv", iv.hex()],
                        input=plaintext, capture_output=True, check=True).stdout
    body = b"\x80" + struct.pack(">Q", int(time.time())) + iv + ct
    return base64.urlsafe_b64encode(body + hmac.new(key[:16], body, hashlib.sha256).digest()).decode()


async def ceiling(port, n, conc, body):
    """Requests/s of a plain keep-alive asyncio client doing the same POSTs."""
    req = (b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    left = [n]

    async def worker():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        while left[0] > 0:
            left[0] -= 1
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            clen = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await r.readexactly(clen)
        w.close()

    t0 = time.time()
    await asyncio.gather(*[worker() for _ in range(conc)])
    return n / (time.time() - t0)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--standin", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.standin:
        return standin_main(args.latency_ms)
    from harness import Stack

    sp = subprocess.Popen([sys.executable, __file__, "--standin", "--latency-ms", str(args.latency_ms)],
                          stdout=subprocess.PIPE, text=True)
    port = int(sp.stdout.readline())
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    st = Stack("dispatchbench", services=(), env={
        "ENCRYPTION_KEY": key, "AGENT_WEBHOOK_ALLOW_LOOPBACK": "true", "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
        "DISPATCHER_CONCURRENCY": args.concurrency, "DISPATCHER_DB_CONNECTIONS": 8})
    try:
        secret = fernet_encrypt(key, b"whsec_bench")
        header = fernet_encrypt(key, b"Bearer bench")
        st.sql("INSERT INTO agent_registrations (name, endpoint_url, auth_header_name, "
               "auth_header_value_encrypted, webhook_secret_encrypted, timeout_seconds, retry_count) "
               "VALUES ('bench', 'http://127.0.0.1:%d/hook', 'Authorization', '%s', '%s', 10, 0)"
               % (port, header, secret))
        st.sql("INSERT INTO alerts (title, severity, source_name, occurred_at, tags) SELECT 'bench ' || g, "
               "'High', 'generic', now(), ARRAY['bench'] FROM generate_series(1, %d) g" % args.deliveries)
        disp = st.start("dispatcher")
        time.sleep(1.5)
        cpu0 = cpu_seconds(disp.p.pid)
        t0 = time.time()
        st.sql("SELECT count(*) FROM alerts a, agent_registrations g, "
               "calseta_agent_enqueue(a.id, g.id, 'bench', NULL)")
        while True:
            done = int(st.sql_value("SELECT count(*) FROM agent_deliveries WHERE status IN ('done', 'failed')"))
            if done >= args.deliveries:
                break
            if time.time() - t0 > 600:
                raise SystemExit("timed out with %d done" % done)
            time.sleep(0.05)
        elapsed = time.time() - t0
        cpu = cpu_seconds(disp.p.pid) - cpu0
        failed = st.sql_value("SELECT count(*) FROM agent_deliveries WHERE status <> 'done'")
        pct = st.sql("SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY "
                     "extract(epoch FROM completed_at - created_at) * 1000), max(extract(epoch FROM "
                     "completed_at - created_at) * 1000) FROM agent_deliveries")[0]
        body = st.sql_value("SELECT payload::text FROM agent_deliveries LIMIT 1").encode()
        rate = args.deliveries / elapsed
        ps = [float(x) for x in pct[0].strip("{}").split(",")]
        ceil = asyncio.run(ceiling(port, args.deliveries, args.concurrency, body))
        print("deliveries        %d (failed %s), payload %d bytes, concurrency %d, agent latency %d ms"
              % (args.deliveries, failed, len(body), args.concurrency, args.latency_ms))
        print("elapsed           %.2f s" % elapsed)
        print("throughput        %.0f deliveries/s" % rate)
        print("latency ms        p50 %.0f  p95 %.0f  p99 %.0f  max %.0f  (queued -> recorded)"
              % (ps[0], ps[1], ps[2], float(pct[1])))
        print("dispatcher CPU    %.0f%% of one core" % (100 * cpu / elapsed))
        print("ceiling           %.0f requests/s (plain asyncio client, same body, same connections; "
              "bound %d/s)" % (ceil, args.concurrency * 1000 // args.latency_ms))
        print("ratio             %.2f" % (rate / ceil))
    finally:
        if os.environ.get("BENCH_LOG_LEVEL"):
            with open("/tmp/dispatch_bench.log", "w") as f:
                f.write(disp.text())
        st.stop()
        sp.terminate()


if __name__ == "__main__":
    main()
