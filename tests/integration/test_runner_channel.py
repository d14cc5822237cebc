"""A hostile child on its channel cannot hold the runner.

With every OS layer on but the two Python layers off (as if a workflow had escaped them), a
child imports the channel module itself and floods the runner with ctx.http requests without
ever reading the replies, then sleeps; another sends garbage frames; another a frame header
announcing 4 GB. Each run must end by its deadline (or at once, killed for a protocol
violation), the runner must answer every request of the batch, and the next, well-behaved run
in the same runner must succeed. Drives calseta-runner --one-shot-run (the same dispatch path
as a ZeroMQ request).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

BIN = os.path.abspath(os.path.join(os.environ.get("CALSETA_BIN_DIR", "build/bin"),
                                   "calseta-runner"))
LAYERS = "netns,userns,landlock,seccomp,rlimit"

FLOOD = """
import _calseta_chan as c
async def run(ctx):
    msg = b'{"t":"http","method":"GET","url":"http://169.254.169.254/x"}'
    for i in range(20000):
        c.send(msg)
    import time
    time.sleep(3600)
"""
GARBAGE = """
import _calseta_chan as c
async def run(ctx):
    for i in range(1000):
        c.send(b'\\xff\\xfe not json at all')
    import time
    time.sleep(3600)
"""
HUGE_HEADER = """
import os
async def run(ctx):
    os.write(3, b'\\xff\\xff\\xff\\xff')
    import time
    time.sleep(3600)
"""
GOOD = ("from calseta.workflows import WorkflowResult\n"
        "async def run(ctx):\n    return WorkflowResult.ok('fine', {'v': ctx.indicator.value})\n")


def main():
    reqs = [{"code": c, "timeout_seconds": 2, "indicator": {"type": "ip", "value": "192.0.2.9"},
             "run_uuid": "00000000-0000-4000-8000-00000000000%d" % i}
            for i, c in enumerate((FLOOD, GARBAGE, HUGE_HEADER, GOOD))]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(reqs, f)
        path = f.name
    env = dict(os.environ, LOG_FORMAT="text")
    t0 = time.time()
    try:
        p = subprocess.run([BIN, "--layers=" + LAYERS, "--one-shot-run", path], env=env,
                           capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        print("FAIL: the runner did not answer within 60 s (a child held it)")
        return 1
    finally:
        os.unlink(path)
    took = time.time() - t0
    outs = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    fails = []
    if len(outs) != 4:
        fails.append("expected 4 answers, got %d: %s %s" % (len(outs), p.stdout, p.stderr[-2000:]))
    else:
        for name, o in zip(("flood", "garbage", "huge header"), outs[:3]):
            if o["status"] == "success":
                fails.append("%s: succeeded: %r" % (name, o))
            if o.get("duration_ms", 0) > 2000 + 250 + 1500:
                fails.append("%s: took %s ms, past its 2 s deadline" % (name, o["duration_ms"]))
        if outs[3]["status"] != "success" or outs[3]["data"] != {"v": "192.0.2.9"}:
            fails.append("the well-behaved run after them failed: %r" % outs[3])
    for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        if m in p.stderr:
            fails.append("sanitizer report: " + m)
    print("4 runs answered in %.1f s" % took)
    for f in fails:
        print("FAIL: " + f)
    print("%d failed" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
