"""harness.py - helpers for the integration tests: real processes, real sockets, real PostgreSQL.

Each test module builds a Stack: a fresh database cloned from the migrated template database
(`calseta`, migrated by scripts/test.sh), the service programs from CALSETA_BIN_DIR started as
helper processes on free loopback ports, and small clients (HTTP over raw sockets, psql).
Every process's stderr is kept; a sanitizer report in any of them fails the test.
Standard library only.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

BIN = os.environ.get("CALSETA_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build-test/bin"))
SRC = os.environ.get("CALSETA_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
SHARED = os.path.join(SRC, "tests", "data")  # copies of the shared fixtures and vectors
BASE_URL = os.environ.get("DATABASE_URL", "")

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: UndefinedBehaviorSanitizer")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def db_url_for(dbname):
    u = urllib.parse.urlsplit(BASE_URL)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))


def psql(url, sql, check=True):
    """Runs SQL, returns rows as lists of strings (tab separated output)."""
    r = subprocess.run(["psql", url, "-X", "-q", "-t", "-A", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError("psql failed: %s\n%s" % (sql, r.stderr))
    rows = [line.split("\t") for line in r.stdout.splitlines() if line != ""]
    return rows


def psql_value(url, sql):
    rows = psql(url, sql)
    return rows[0][0] if rows else None


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lowercase names -> last value
        self.header_list = []
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


class Proc:
    def __init__(self, name, argv, env):
        self.name = name
        self.log_path = tempfile.mktemp(prefix="calseta-%s-" % name, suffix=".log")
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.p.poll() is None

    def text(self):
        if not self.log.closed:
            self.log.flush()
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:  # removed after its stack passed
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


class Stack:
    """A database plus the services a test asks for."""

    def __init__(self, name, env=None, services=("auditd", "intake"), intake_processes=1):
        if not BASE_URL:
            raise RuntimeError("DATABASE_URL is not set (run through `make test`)")
        self.dbname = "t_%s_%s" % (re.sub(r"[^a-z0-9]", "_", name.lower())[:30], uuid.uuid4().hex[:8])
        for attempt in range(50):
            try:
                psql(db_url_for("postgres"), "CREATE DATABASE %s TEMPLATE calseta" % self.dbname)
                break
            except RuntimeError as e:
                # another test is cloning the template at this moment
                if "being accessed by other users" not in str(e) or attempt == 49:
                    raise
                time.sleep(0.2)
        self.db = db_url_for(self.dbname)
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="calseta-stack-")
        self.env = dict(os.environ)
        self.env.update({
            "DATABASE_URL": self.db,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "CALSETA_DATA_DIR": self.data_dir,
            "LOG_FORMAT": "json",
            "AUDIT_SPOOL_DIR": os.path.join(self.data_dir, "spool"),
        })
        if env:
            self.env.update({k: str(v) for k, v in env.items()})
        self.procs = []
        self.intakes = []
        services = list(services)
        if "runner" in services and "intake" in services and "workflowd" not in services:
            # queued runs are taken by workflowd: a stack with runners runs its workflows
            services.insert(services.index("intake"), "workflowd")
        try:
            for svc in services:
                if svc == "intake":
                    for _ in range(intake_processes):
                        self.start_intake()
                else:
                    self.start(svc)
            if "intake" in services:
                self.wait_healthy()
        except BaseException:
            self.stop()  # a stack that never came up leaves no process behind
            raise

    # -- processes -----------------------------------------------------------------------
    def start(self, svc, extra_env=None):
        env = dict(self.env)
        if extra_env:
            env.update({k: str(v) for k, v in extra_env.items()})
        prog = os.path.join(BIN, "calseta-" + svc)
        p = Proc(svc, [prog], env)
        self.procs.append(p)
        return p

    def proc(self, name):
        """The first process of service name this stack started (e.g. "workflowd")."""
        for p in self.procs:
            if p.name == name:
                return p
        raise AssertionError("this stack started no %s" % name)

    def endpoint(self, name):
        """The default (ipc) endpoint of an internal link: audit, jobs-in, jobs-out, runner,
        lookup-in, lookup-out."""
        return "ipc://%s/bus/%s.sock" % (self.data_dir, name)

    def start_intake(self, extra_env=None):
        p = self.start("intake", extra_env)
        self.intakes.append(p)
        return p

    def wait_healthy(self, timeout=30, port=None):
        """Until /health answers 200 (on port, else the stack's port); an intake that exits
        meanwhile fails at once with its log."""
        last = [None]

        def healthy():
            for p in self.intakes:
                if not p.alive():
                    raise RuntimeError("intake exited early:\n" + p.text()[-4000:])
            try:
                r = self.request("GET", "/health", port=port)
            except OSError as e:
                last[0] = e
                return False
            last[0] = r
            return r.status == 200
        try:
            wait_for(healthy, timeout, 0.1, "GET /health = 200")
        except AssertionError:
            raise RuntimeError("stack not healthy: %r" % (last[0],))

    def cli(self, *args, check=True):
        r = subprocess.run([os.path.join(BIN, "calseta")] + list(args), env=self.env,
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError("calseta %s failed (%d): %s %s" % (args, r.returncode, r.stdout, r.stderr))
        return r

    def create_key(self, scopes="admin", name="test", extra=()):
        r = self.cli("create-api-key", "--name", name, "--scopes", scopes, *extra)
        m = re.search(r"^(cai_[A-Za-z0-9_-]{43})$", r.stdout, re.M)
        assert m, r.stdout
        return m.group(1)

    def ingest(self, key, title, severity="high", via="generic", **fields):
        """Ingests one alert (title, severity and any other fields) through /v1/ingest/<via>,
        asserts the 202 and returns the alert's uuid."""
        body = {"title": title, "severity": severity}
        body.update(fields)
        r = self.request("POST", "/v1/ingest/" + via, key=key, body=body)
        assert_eq(r.status, 202, r.body)
        return r.json()["data"]["alert_uuid"]

    def sql(self, q):
        return psql(self.db, q)

    def sql_value(self, q):
        return psql_value(self.db, q)

    # -- HTTP -------------------------------------------------------------------------------
    def request(self, method, path, headers=None, body=None, key=None, port=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        hdrs = dict(headers or {})
        if key:
            hdrs["Authorization"] = "Bearer " + key
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
            resp.header_list = r.getheaders()
            return resp
        finally:
            conn.close()

    def raw(self, data, read_timeout=5, port=None):
        """Sends raw bytes, returns everything read until close or timeout."""
        s = socket.create_connection(("127.0.0.1", port or self.port), timeout=read_timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    # -- teardown -------------------------------------------------------------------------
    def stop(self):
        problems = []
        for p in reversed(self.procs):
            p.stop()
        for p in self.procs:
            t = p.text()
            for m in SANITIZER_MARKERS:
                if m in t:
                    problems.append("%s: sanitizer report:\n%s" % (p.name, t[-6000:]))
                    break
        try:
            psql(db_url_for("postgres"), "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.dbname, check=False)
        except Exception:
            pass
        if problems:
            raise AssertionError("\n".join(problems))
        for p in self.procs:  # kept only when something went wrong
            try:
                p.log.close()
                os.unlink(p.log_path)
            except OSError:
                pass

    def logs(self):
        return "\n".join("== %s ==\n%s" % (p.name, p.text()[-3000:]) for p in self.procs)


def wait_for(condition, timeout=20.0, interval=0.05, what=None):
    """Polls condition() until it returns something true, and returns that. Raises
    AssertionError after timeout seconds, naming what was awaited and the last value seen.
    Use it wherever a test waits for something to happen; a fixed sleep is either too short on a
    loaded machine or wastes time on an idle one. Exceptions of condition() count as not yet."""
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except (OSError, ValueError, KeyError, IndexError) as e:
            last = e
        if time.time() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, what or getattr(condition, "__name__", "condition"),
                                    last))
        time.sleep(interval)


def fernet_key():
    """A new Fernet key (what ENCRYPTION_KEY holds), made without the code under test."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def gen_encryption_key():
    """A new ENCRYPTION_KEY made by `calseta gen-encryption-key` (its output checked)."""
    r = subprocess.run([os.path.join(BIN, "calseta"), "gen-encryption-key"], capture_output=True,
                       text=True, timeout=30, check=True)
    k = r.stdout.strip().splitlines()[-1].strip()
    assert len(k) == 44, r.stdout
    return k


def fernet_encrypt(key_b64, plaintext):
    """A Fernet token of plaintext (bytes) in the original's format, made with the openssl
    command rather than the code under test, for rows a test writes into the database directly."""
    key = base64.urlsafe_b64decode(key_b64)
    signing, enc = key[:16], key[16:]
    iv = os.urandom(16)
    ct = subprocess.run(["openssl", "enc", "-aes-128-cbc", "-K", enc.hex(), "-iv", iv.hex()],
                        input=plaintext, capture_output=True, check=True).stdout
    body = b"\x80" + struct.pack(">Q", int(time.time())) + iv + ct
    mac = hmac.new(signing, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + mac).decode()


def wait_window_start(min_left=12):
    """When fewer than min_left seconds are left in this wall-clock minute, waits for the next
    minute, so that a test of a per-minute budget does not straddle two windows. The wait is for
    the clock itself, which no condition can stand in for."""
    left = 60 - (time.time() % 60)
    if left < min_left:
        time.sleep(left + 0.5)


def memory_scan(pid, needles):
    """The needles (strings) found in the readable memory of process pid, through /proc/PID/mem;
    None when that memory cannot be read (the test must run as root or with ptrace rights over
    the process). A test that scans for secrets also scans its own process for one it holds, so
    that a scan which finds nothing is known to be able to find something."""
    found = set()
    try:
        maps = open("/proc/%d/maps" % pid).read().splitlines()
        mem = open("/proc/%d/mem" % pid, "rb", 0)
    except OSError:
        return None
    with mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            lo, hi, perms = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            if perms[0] != "r" or hi - lo > (1 << 30) or "[vvar]" in line or "[vsyscall]" in line:
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            for n in needles:
                if n.encode() in data:
                    found.add(n)
    return found


def run_tests(module_globals):
    """Runs every function named test_* in definition order; exits non-zero on failure."""
    only = sys.argv[1:] if len(sys.argv) > 1 else None
    tests = [(n, f) for n, f in module_globals.items() if n.startswith("test_") and callable(f)]
    failed = []
    for name, fn in tests:
        if only and name not in only:
            continue
        t0 = time.time()
        try:
            fn()
            print("PASS %s (%.2fs)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed.append(name)
            print("FAIL %s (%.2fs)\n%s" % (name, time.time() - t0, traceback.format_exc()), flush=True)
    print("%d passed, %d failed" % (len(tests) - len(failed) if not only else len(only) - len(failed), len(failed)))
    sys.exit(1 if failed else 0)


def assert_eq(a, b, msg=""):
    if a != b:
        raise AssertionError("%r != %r %s" % (a, b, msg))


def fixture(name):
    with open(os.path.join(SHARED, "fixtures", name), "rb") as f:
        return f.read()
