"""test_runner_sandbox.py - the workflow runner's validation and sandbox, layer by layer.

Drives build/bin/calseta-runner through --one-shot-validate / --one-shot-run, which encode the
request as the wire message and go through the same dispatch as a ZeroMQ request. For every
basic escape (file read, fork, execve, subprocess, socket) each layer that is meant to stop it
is enabled alone (--layers=X) and must stop it on its own; a run with no layer at all shows the
attempt really works, so the test can fail. Then: memory and CPU limits per run, the deadline,
validation errors with line numbers, secrets, and ctx.http through the SSRF guard against a
local stand-in server (loopback allowed only with the test flag).
Standard library only.
"""
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.join(os.environ.get("CALSETA_BIN_DIR", "build/bin"), "calseta-runner")
SANITIZER = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
FAILS = []
PASSED = [0]


def check(cond, what, detail=""):
    if cond:
        PASSED[0] += 1
    else:
        FAILS.append(what)
        print("FAIL: %s\n  %s" % (what, str(detail)[:1500]), flush=True)


def runner(args, payload, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.update({"LOG_FORMAT": "text", "DATABASE_URL": "postgresql://calseta:hunter2@db/calseta",
                "ENCRYPTION_KEY": "x" * 43 + "="})
    env.update(env_extra or {})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(payload)
        path = f.name
    try:
        p = subprocess.run([BIN] + args + [path], capture_output=True, text=True, env=env,
                           timeout=timeout)
    finally:
        os.unlink(path)
    for m in SANITIZER:
        check(m not in p.stderr, "no sanitizer report (%s)" % " ".join(args), p.stderr)
    return p


def run(code, layers="all", timeout_seconds=10, flags=(), many=None, **req):
    reqs = many if many is not None else [dict(req, code=code, timeout_seconds=timeout_seconds)]
    p = runner(["--layers=" + layers] + list(flags) + ["--one-shot-run"], json.dumps(reqs))
    outs = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    check(p.returncode == 0 and len(outs) == len(reqs), "runner answered every request",
          p.stdout + p.stderr)
    return outs if many is not None else (outs[0] if outs else {"message": p.stderr})


def validate(code):
    p = runner(["--one-shot-validate"], code)
    return json.loads(p.stdout.splitlines()[0])


def wf(body):
    """Wraps statements into a workflow that reports what happened as its result."""
    lines = "\n".join("        " + l for l in body.strip().splitlines())
    return ("async def run(ctx):\n    try:\n%s\n    except BaseException as e:\n"
            "        return WorkflowResult.fail('blocked: %%r' %% (e,))\n"
            "    return WorkflowResult.ok('escaped')\n" % lines)


def wf_import(body):
    return "from calseta.workflows import WorkflowResult\n" + wf(body)


# ---- the layer matrix --------------------------------------------------------------------

def escape_matrix():
    v = validate(wf_import("x = 1"))
    check(v["ok"], "the test wrapper itself passes validation", v)
    attacks = {
        "read /etc/passwd": ("data = open('/etc/passwd').read()",
                             ["ast", "pyguard", "landlock", "seccomp", "rlimit"]),
        "os.listdir('/')": ("import os\nos.listdir('/')", ["ast", "pyguard", "landlock", "seccomp",
                                                            "rlimit"]),
        "fork": ("import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)",
                 ["ast", "pyguard", "seccomp", "rlimit"]),
        "subprocess": ("import subprocess\nsubprocess.run(['/bin/true'], check=True)",
                       ["ast", "pyguard", "landlock", "seccomp", "rlimit"]),
    }
    for name, (body, layers) in attacks.items():
        code = wf_import(body)
        control = run(code, layers="none")
        check(control.get("message") == "escaped", "control: %s works with no layer" % name, control)
        for layer in layers:
            r = run(code, layers=layer)
            check(r.get("status") == "failed" and r.get("message") != "escaped",
                  "%s stopped by %s alone" % (name, layer), r)
            if layer == "ast":
                check("failed validation" in r.get("message", ""), "%s refused by validation" % name, r)
            else:
                check("blocked:" in r.get("message", ""), "%s fails cleanly under %s" % (name, layer), r)


def python_level_escapes():
    """Escapes that the Python-side layers alone do not stop are contained by the OS layers."""
    os_layers = "netns,userns,landlock,seccomp,rlimit"
    attacks = {
        "asyncio subprocess": "import asyncio\np = await asyncio.create_subprocess_exec('/bin/true')\n"
                              "await p.wait()",
        "frame globals to os.system":
            "import inspect\nb = inspect.currentframe().f_back.f_globals['__builtins__']\n"
            "osm = b['__import__']('os') if isinstance(b, dict) else b.__import__('os')\n"
            "if osm.system('id; echo garbage-on-stdout') != 0:\n    raise OSError('system failed')\n"
            "(b['open'] if isinstance(b, dict) else b.open)('/etc/passwd').read()",
    }
    for name, body in attacks.items():
        code = wf_import(body)
        control = run(code, layers="pyguard")
        check(control.get("message") == "escaped", "control: %s gets past pyguard alone" % name,
              control)
        r = run(code, layers="pyguard," + os_layers)
        check(r.get("status") == "failed" and "blocked:" in r.get("message", ""),
              "%s contained by the OS layers" % name, r)
        r = run(code)
        check(r.get("status") == "failed" and ("failed validation" in r.get("message", "") or
                                               "blocked:" in r.get("message", "")),
              "%s stopped with every layer on" % name, r)


def execve_matrix():
    code = wf_import("import os\nos.execv('/bin/true', ['true'])")
    control = run(code, layers="none")
    check("without a result" in control.get("message", ""), "control: execve replaces the child",
          control)
    for layer in ("ast", "pyguard", "landlock", "seccomp"):
        r = run(code, layers=layer)
        check(r.get("status") == "failed" and "without a result" not in r.get("message", ""),
              "execve stopped by %s alone" % layer, r)


def socket_matrix():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.3)
    port = srv.getsockname()[1]

    def connections():
        n = 0
        while True:
            try:
                c, _ = srv.accept()
                c.close()
                n += 1
            except socket.timeout:
                return n

    code = wf_import("import socket\ns = socket.create_connection(('127.0.0.1', %d), timeout=2)\n"
                     "s.sendall(b'x')" % port)
    control = run(code, layers="none")
    check(control.get("message") == "escaped" and connections() == 1,
          "control: a socket reaches the host with no layer", control)
    for layer in ("ast", "pyguard", "seccomp", "landlock", "netns", "rlimit"):
        r = run(code, layers=layer)
        check(r.get("status") == "failed" and connections() == 0,
              "socket stopped by %s alone" % layer, r)
    srv.close()


# ---- validation --------------------------------------------------------------------------

def validation():
    v = validate("import os\nimport subprocess\nimport socket\nasync def run(ctx):\n    pass\n")
    lines = {(e["line"], "'%s'" % m in e["message"]) for e in v["errors"]
             for m in ("os", "subprocess", "socket") if "'%s'" % m in e["message"]}
    check(not v["ok"] and lines == {(1, True), (2, True), (3, True)},
          "os/subprocess/socket imports rejected with their lines", v)
    v = validate("async def run(ctx):\n    x = 1\n    y = ().__class__.__bases__[0].__subclasses__()\n")
    check(not v["ok"] and all(e["line"] == 3 for e in v["errors"]) and
          any("__subclasses__" in e["message"] for e in v["errors"]),
          "__subclasses__ chain rejected at line 3", v)
    v = validate("async def run(ctx):\n    f = run\n\n    g = getattr(f, '__globals__')\n")
    check(not v["ok"] and {e["line"] for e in v["errors"]} == {4} and
          any("getattr" in e["message"] for e in v["errors"]), "getattr(x, '__globals__') rejected", v)
    for bad, word in (("vars()", "vars"), ("globals()", "globals"), ("locals()", "locals"),
                      ("type(ctx)", "type"), ("setattr(ctx, 'a', 1)", "setattr"),
                      ("eval('1')", "eval"), ("exec('1')", "exec"), ("__import__('os')", "__import__"),
                      ("ctx.log.info.__self__", "__self__"), ("ctx.f_globals", "f_globals"),
                      ("from . import x", "relative"), ("import importlib", "importlib"),
                      ("import ctypes", "ctypes"), ("import requests", "allowed imports")):
        v = validate("async def run(ctx):\n    %s\n" % bad)
        check(not v["ok"] and any(word in e["message"] and e["line"] == 2 for e in v["errors"]),
              "validation rejects %s" % bad, v)
    v = validate("def run(ctx):\n    pass\n")
    check(not v["ok"] and "async function named 'run'" in v["errors"][0]["message"],
          "sync run rejected", v)
    v = validate("async def run(ctx):\n    x = (\n")
    check(not v["ok"] and v["errors"][0]["message"].startswith("Line 2: Syntax error") and
          v["errors"][0]["line"] == 2, "syntax error reported with its line", v)
    v = validate("async def run(ctx):\n    return " + "(" * 5000 + "1" + ")" * 5000 + "\n")
    check(not v["ok"], "deeply nested code refused, runner alive", v)
    v = validate("import json, re, urllib.parse, datetime, hashlib\n"
                 "from app.workflows.context import WorkflowContext, WorkflowResult\n"
                 "from calseta.workflows import WorkflowResult as R\n"
                 "async def run(ctx):\n    return R.ok('x')\n")
    check(v["ok"] and v["errors"] == [], "good code accepted", v)


# ---- limits ------------------------------------------------------------------------------

def limits():
    def alloc(expr):
        return ("from calseta.workflows import WorkflowResult\nasync def run(ctx):\n"
                "    x = %s\n    return WorkflowResult.ok('escaped')\n" % expr)
    rs = run(None, layers="rlimit", many=[
        {"code": alloc("bytearray(1 << 30)"), "timeout_seconds": 20},
        {"code": alloc("bytearray(200 << 20)"), "timeout_seconds": 20},
        {"code": alloc("bytearray(200 << 20)"), "timeout_seconds": 20},
        {"code": alloc("bytearray(300 << 20)"), "timeout_seconds": 20},
        {"code": alloc("bytearray(300 << 20)"), "timeout_seconds": 20, "max_memory_mb": 400},
    ])
    if len(rs) == 5:
        check(rs[0]["status"] == "failed" and "memory limit" in rs[0]["message"],
              "memory bomb gives a clean memory limit result", rs[0])
        check(rs[1]["message"] == "escaped" and rs[2]["message"] == "escaped",
              "two runs in a row each get the full 256 MB budget", rs[1:3])
        check("memory limit" in rs[3]["message"], "300 MB over a 256 MB budget fails", rs[3])
        check(rs[4]["message"] == "escaped", "a run's own max_memory_mb applies", rs[4])
    t0 = time.time()
    r = run("async def run(ctx):\n    while True:\n        pass\n", timeout_seconds=2)
    took = time.time() - t0
    check(r.get("status") == "timed_out" and "timed out after 2 seconds" in r.get("message", "")
          and took < 15, "infinite loop killed at the deadline", (r, took))
    r = run("import asyncio\nasync def run(ctx):\n    await asyncio.sleep(30)\n", timeout_seconds=1)
    check(r.get("status") == "timed_out", "sleeping run killed at the deadline", r)
    r = run("async def run(ctx):\n    while True:\n        pass\n", layers="rlimit",
            timeout_seconds=30, flags=["--cpu-seconds=1"])
    check(r.get("status") == "timed_out" and "CPU time limit" in r.get("message", "") and
          r.get("duration_ms", 99999) < 10000, "CPU rlimit stops a busy loop", r)


# ---- secrets -----------------------------------------------------------------------------

def secrets():
    code = ("from calseta.workflows import WorkflowResult\nasync def run(ctx):\n"
            "    return WorkflowResult.ok('ok', {'db': ctx.secrets.get('DATABASE_URL'),"
            " 'key': ctx.secrets.get('ENCRYPTION_KEY'), 'tok': ctx.secrets.get('API_TOKEN')})\n")
    r = run(code, secrets={"API_TOKEN": "t0k"})
    check(r.get("data") == {"db": None, "key": None, "tok": "t0k"},
          "ctx.secrets answers only the allowed names", r)
    r = run(code)
    check(r.get("data") == {"db": None, "key": None, "tok": None}, "no secret unless allowed", r)
    leak = wf("import os\nreturn WorkflowResult.ok('env', {'env': dict(os.environ)})")
    r = run("from calseta.workflows import WorkflowResult\n" + leak, layers="none")
    check(r.get("data") == {"env": {}}, "the child's environment is empty even unsandboxed", r)
    check("hunter2" not in json.dumps(r), "no platform secret anywhere in a result", r)


# ---- ctx.http ----------------------------------------------------------------------------

class StandIn(http.server.BaseHTTPRequestHandler):
    def _reply(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        out = json.dumps({"method": self.command, "path": self.path,
                          "x_test": self.headers.get("X-Test"), "body": body}).encode()
        self.send_response(418 if "teapot" in self.path else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Reply", "yes")
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _reply

    def log_message(self, *a):
        pass


def http_broker():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % srv.server_address[1]
    code = ("from calseta.workflows import WorkflowResult\nasync def run(ctx):\n"
            "    r = await ctx.http.get('%s/q', params={'a': '1', 'b': 'x y'}, headers={'X-Test': 'h'})\n"
            "    p = await ctx.http.post('%s/p', json={'k': [1, 2]})\n"
            "    t = await ctx.http.put('%s/teapot', data={'f': 'v'})\n"
            "    try:\n        t.raise_for_status()\n        raised = False\n"
            "    except Exception:\n        raised = True\n"
            "    return WorkflowResult.ok('ok', {'get': r.json(), 'status': r.status_code,"
            " 'hdr': r.headers.get('x-reply'), 'post': p.json(), 'teapot': t.status_code,"
            " 'raised': raised, 'text': t.text[:1]})\n" % (base, base, base))
    r = run(code, flags=["--allow-loopback"])
    d = r.get("data", {})
    check(r.get("status") == "success" and d.get("get", {}).get("path") == "/q?a=1&b=x+y" and
          d["get"].get("x_test") == "h" and d.get("hdr") == "yes" and d.get("status") == 200,
          "ctx.http GET with params and headers via the stand-in", r)
    check(d.get("post", {}).get("body") == '{"k": [1, 2]}' and d["post"]["method"] == "POST",
          "ctx.http POST json", r)
    check(d.get("teapot") == 418 and d.get("raised") is True and d.get("text") == "{",
          "ctx.http PUT form data, status and raise_for_status", r)
    blocked = ("from calseta.workflows import WorkflowResult, SSRFBlockedError\n"
               "async def run(ctx):\n    try:\n        await ctx.http.get(%r)\n"
               "    except SSRFBlockedError as e:\n        return WorkflowResult.fail('blocked: ' + str(e))\n"
               "    return WorkflowResult.ok('reached')\n")
    for url, why in (("http://169.254.169.254/latest/meta-data/", "metadata endpoint"),
                     ("http://[::ffff:169.254.169.254]/", "mapped metadata endpoint"),
                     ("http://metadata.google.internal/", "metadata name"),
                     ("http://no-such-host.invalid/", "name that does not resolve"),
                     ("http://10.1.2.3/", "private address"),
                     ("file:///etc/passwd", "file scheme"),
                     (base + "/q", "loopback without the test flag")):
        r = run(blocked % url, timeout_seconds=20)
        check(r.get("message", "").startswith("blocked: blocked by SSRF guard"),
              "ctx.http to %s blocked" % why, r)
    r = run(blocked % "http://169.254.169.254/", timeout_seconds=20, flags=["--allow-loopback"])
    check(r.get("message", "").startswith("blocked:"), "metadata blocked in test mode too", r)
    srv.shutdown()


def main():
    if not os.path.exists(BIN):
        print("calseta-runner not built at %s" % BIN)
        return 1
    p = runner(["--one-shot-validate"], "async def run(ctx):\n    pass\n")
    print(p.stderr.strip().splitlines()[0] if p.stderr.strip() else "", flush=True)
    for t in (validation, escape_matrix, python_level_escapes, execve_matrix, socket_matrix, limits, secrets,
              http_broker):
        t0 = time.time()
        t()
        print("%s done in %.1fs" % (t.__name__, time.time() - t0), flush=True)
    print("%d passed, %d failed" % (PASSED[0], len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
