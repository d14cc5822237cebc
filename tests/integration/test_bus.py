"""test_bus.py - the internal links: per-stack endpoints and CURVE.

1. Two stacks on one machine with their default endpoints (ipc sockets in their own data
   folders): each audit log and audit table holds only its own processes' events.
2. A TCP audit link speaks CURVE with a key pair made at first start in the data folder (0600):
   an intake holding the right server key is heard, one with a wrong server key is not (its
   events stay in its spool).
3. Clients authenticate too: a client that knows the right server key but whose client key
   the link does not allow gets no service, and the refusal is logged (rate-limited); a key
   listed in CURVE_AUDIT_ALLOWED_CLIENT_KEYS (made by `calseta gen-curve-keys`) is served.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Stack, assert_eq, free_port, run_tests, wait_for  # noqa: E402


def wait_until(what, fn, timeout=30):
    return wait_for(fn, timeout, 0.1, what)


def pids_in_table(s):
    return {int(r[0]) for r in s.sql("SELECT DISTINCT pid FROM audit_events WHERE pid IS NOT NULL")}


def pids_in_log(path):
    out = set()
    try:
        with open(path) as f:
            for line in f:
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                if "pid" in o:
                    out.add(int(o["pid"]))
    except FileNotFoundError:
        pass
    return out


Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def z85(raw):
    out = ""
    for i in range(0, len(raw), 4):
        v = int.from_bytes(raw[i:i + 4], "big")
        out += "".join(Z85[(v // 85 ** k) % 85] for k in (4, 3, 2, 1, 0))
    return out


def healthy(s, proc, port):
    if not proc.alive():
        raise AssertionError("intake exited:\n" + proc.text()[-3000:])
    try:
        return s.request("GET", "/health", port=port).status == 200
    except OSError:
        return False


def spooled(s, proc):
    try:
        return os.path.getsize(os.path.join(s.data_dir, "spool", "intake-%d.spool" % proc.p.pid))
    except FileNotFoundError:
        return 0


def refuse_some(s, n=5):
    # refused (401, or 429 once this address has failed too often): audited either way
    for _ in range(n):
        r = s.request("GET", "/v1/alerts", key="cai_" + "x" * 43)
        assert r.status in (401, 429), r.status


def test_two_stacks_keep_their_events():
    stacks = []
    try:
        for name in ("bus_a", "bus_b"):
            env = {"AUDIT_STDOUT": "false"}
            s = Stack(name, env=env, services=())
            s.env["AUDIT_LOG_FILE"] = os.path.join(s.data_dir, "audit.log")
            s.start("auditd")
            s.start_intake()
            s.wait_healthy()
            stacks.append(s)
        assert stacks[0].endpoint("audit") != stacks[1].endpoint("audit")
        for s in stacks:
            assert os.path.exists(s.endpoint("audit")[len("ipc://"):]), "no ipc socket in the data folder"
            refuse_some(s)
        for s, other in ((stacks[0], stacks[1]), (stacks[1], stacks[0])):
            mine = s.intakes[0].p.pid
            theirs = other.intakes[0].p.pid
            wait_until("the intake's events in its own audit table", lambda: mine in pids_in_table(s))
            log = s.env["AUDIT_LOG_FILE"]
            wait_until("the intake's events in its own audit log", lambda: mine in pids_in_log(log))
            assert theirs not in pids_in_table(s), "the other stack's events reached this audit table"
            assert theirs not in pids_in_log(log), "the other stack's events reached this audit log"
    finally:
        for s in stacks:
            s.stop()


def test_curve_on_tcp():
    ep = "tcp://127.0.0.1:%d" % free_port()
    s = Stack("bus_curve", env={"AUDIT_ENDPOINT": ep}, services=())
    try:
        s.start("auditd")
        good = s.start_intake()
        s.wait_healthy()
        key_file = os.path.join(s.data_dir, "curve", "audit.key")
        assert os.path.exists(key_file), "no CURVE key pair made in the data folder"
        assert_eq(os.stat(key_file).st_mode & 0o777, 0o600)
        refuse_some(s)
        wait_until("events over the CURVE link", lambda: good.p.pid in pids_in_table(s))

        wrong_pub = z85(os.urandom(32))  # any 32 bytes are a Curve25519 public key
        bad_port = free_port()
        bad = s.start_intake({"CURVE_AUDIT_PUBLIC_KEY": wrong_pub, "HTTP_PORT": bad_port})
        wait_until("the second intake", lambda: healthy(s, bad, bad_port))
        for _ in range(5):
            r = s.request("GET", "/v1/alerts", key="cai_" + "y" * 43, port=bad_port)
            assert_eq(r.status, 401)

        # the bad intake's events wait in its spool, unacknowledged, while the good intake's are
        # acknowledged (its spool empties) and in the table
        wait_until("the bad intake's events held in its spool", lambda: spooled(s, bad) > 0)
        refuse_some(s, 1)
        wait_until("the good intake's events acknowledged", lambda: spooled(s, good) == 0)
        assert spooled(s, bad) > 0, "the bad intake's events were acknowledged"
        assert bad.p.pid not in pids_in_table(s), "a client with the wrong server key was heard"
        assert good.p.pid in pids_in_table(s)
        assert bad.alive(), bad.text()[-2000:]
    finally:
        s.stop()


def new_keys(s, *args):
    out = s.cli("gen-curve-keys", *args).stdout
    return dict(re.findall(r"^(CURVE_[A-Z_]+)='([^']{40})'$", out, re.M))


def test_curve_clients_must_be_allowed():
    ep = "tcp://127.0.0.1:%d" % free_port()
    s = Stack("bus_client_auth", env={"AUDIT_ENDPOINT": ep}, services=())
    try:
        extra = new_keys(s, "--link", "audit")
        assert_eq(len(extra), 4, "gen-curve-keys --link audit: %r" % extra)
        s.start("auditd", {"CURVE_AUDIT_ALLOWED_CLIENT_KEYS": extra["CURVE_AUDIT_CLIENT_PUBLIC_KEY"]})
        good = s.start_intake()
        s.wait_healthy()
        refuse_some(s, 2)
        wait_until("events of the intake holding the stack's client key",
                   lambda: good.p.pid in pids_in_table(s))
        client_file = os.path.join(s.data_dir, "curve", "audit-client.key")
        assert_eq(os.stat(client_file).st_mode & 0o777, 0o600)

        # right server key (from the data folder), client key nobody allowed
        rogue_port = free_port()
        rogue = s.start_intake({"CURVE_AUDIT_CLIENT_SECRET_KEY": z85(os.urandom(32)),
                                "HTTP_PORT": rogue_port})
        wait_until("the rogue intake", lambda: healthy(s, rogue, rogue_port))
        for _ in range(3):
            r = s.request("GET", "/v1/alerts", key="cai_" + "z" * 43, port=rogue_port)
            assert_eq(r.status, 401)
        auditd = s.procs[0]
        wait_until("auditd logging the refused client",
                   lambda: "refused a CURVE client of the audit link" in auditd.text())

        # a host with its own allowed pair is served
        listed_port = free_port()
        listed = s.start_intake({"CURVE_AUDIT_CLIENT_PUBLIC_KEY": extra["CURVE_AUDIT_CLIENT_PUBLIC_KEY"],
                                 "CURVE_AUDIT_CLIENT_SECRET_KEY": extra["CURVE_AUDIT_CLIENT_SECRET_KEY"],
                                 "HTTP_PORT": listed_port})
        wait_until("the listed intake", lambda: healthy(s, listed, listed_port))
        for _ in range(2):
            r = s.request("GET", "/v1/alerts", key="cai_" + "w" * 43, port=listed_port)
            assert_eq(r.status, 401)
        wait_until("events of the intake with a listed key", lambda: listed.p.pid in pids_in_table(s))

        # the rogue client kept retrying all this time: it was never served, and its refusals
        # were logged once per window, not once per handshake
        assert rogue.alive(), rogue.text()[-2000:]
        assert rogue.p.pid not in pids_in_table(s), "a client with an unlisted key was served"
        refusals = auditd.text().count("refused a CURVE client of the audit link")
        assert 1 <= refusals <= 3, "refusal log lines: %d" % refusals
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
