#!/usr/bin/env python3
"""runner_bench.py - runs/s and request-to-result time of the workflow runner (calseta-runner),
for a trivial workflow and for one that makes one ctx.http call to a local stand-in.

Served mode (the production path): calseta-runner serves RUNNER_ENDPOINT (ZeroMQ ROUTER) with
every sandbox layer the kernel has, and tests/bench/runner_client_bench.c - the intake's own
client (libcommon/bus/runner_client.c), built here as a CMake target of the Release build -
sends runs: one at a time with 20 ms between runs (latency at a light load: the runner's warm
children are ready), one at a time back to back, and 4 and 8 in flight (throughput; the runner
runs at most RUNNER_CONCURRENCY=4 at once and answers BUSY beyond that, which the client, like
the intake, answers by sending the run again — counted in "busy answers"). The ctx.http workflow
is also measured served, against the stand-in allowed by SSRF_ALLOWED_HOSTS=localhost.

One-shot mode (--one-shot-run with a JSON array: the same runner_dispatch() path, one process,
runs in turn). ctx.http may reach loopback only there (--allow-loopback is refused in served
mode), so the ctx.http workflow is measured this way, and the trivial one too for comparison.
Per-run time is the gap between consecutive result lines on stdout (the first line, which
includes process start-up and the zygote's set-up, is not counted); runs/s over the same span.

--sweep adds the trivial workflow one-shot with no sandbox layer and with each layer alone, to
see what each layer costs per run.

For each figure: the load average at the time (the host is shared), and the runner's own
duration_ms (measured inside the runner around the child) for comparison.

Run by hand (not in CI), with a release build:
    cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
    CALSETA_BIN_DIR=build-rel/bin python3 tests/bench/runner_bench.py [--runs 300] [--sweep]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import free_port  # noqa: E402
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(os.environ.get("CALSETA_BIN_DIR", os.path.join(SRC, "build", "bin")))
RUNNER = os.path.join(BIN, "calseta-runner")

TRIVIAL = ("from calseta.workflows import WorkflowResult\n"
           "async def run(ctx):\n"
           "    return WorkflowResult.ok('ok', {'n': 1})\n")
HTTP = ("from calseta.workflows import WorkflowResult\n"
        "async def run(ctx):\n"
        "    r = await ctx.http.get('%s/vt/api/v3/ip_addresses/23.1.2.3')\n"
        "    return WorkflowResult.ok('ok', {'status': r.status_code})\n")

ENV = {"LOG_FORMAT": "text", "DATABASE_URL": "postgresql://calseta:unused@db/calseta",
       "ENCRYPTION_KEY": "x" * 43 + "=", "LOG_LEVEL": "WARNING"}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pct(v, p):
    v = sorted(v)
    if not v:
        return 0.0
    i = int(p / 100.0 * (len(v) - 1) + 0.5)
    return v[min(i, len(v) - 1)]


def build_client():
    """Builds runner_client_bench.c (CMake target bench_runner_client_bench) in the build folder
    that holds CALSETA_BIN_DIR."""
    build = os.path.dirname(BIN)
    subprocess.run(["cmake", "--build", build, "--target", "bench_runner_client_bench"], check=True)
    return os.path.join(build, "bench", "bench_runner_client_bench")


def standin():
    """The asyncio stand-in of enrich_bench.py, answering at once."""
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "enrich_bench.py"), "--standin",
                          "--latency-ms", "0"], stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


def served(client, code, runs, outstanding, results, name, extra_env=None):
    port = free_port()
    endpoint = "tcp://127.0.0.1:%d" % port
    env = dict(os.environ, **ENV)
    env.update(extra_env or {})
    env["RUNNER_ENDPOINT"] = endpoint
    env["LOG_LEVEL"] = "INFO"
    log = tempfile.NamedTemporaryFile(prefix="calseta-runner-bench-", suffix=".log", delete=False)
    p = subprocess.Popen([RUNNER], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            with open(log.name) as f:
                text = f.read()
            if "sandbox layers in force" in text:
                break
            if p.poll() is not None:
                raise RuntimeError("runner exited:\n" + text)
            time.sleep(0.05)
        layers = [l for l in text.splitlines() if "sandbox layers" in l]
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(code)
            code_path = f.name
        for n_out, pause in outstanding:
            la = loadavg()
            r = subprocess.run([client, endpoint, code_path, str(runs), str(n_out), "10",
                                str(pause)], capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                print(r.stderr[-2000:])
            d = json.loads(r.stdout)
            what = "%s, served (ZeroMQ), %d in flight" % (name, n_out)
            if pause:
                what = "%s, served, one every %d ms" % (name, pause)
            row = {"what": what, "runs": d["runs"],
                   "failed": d["failed"], "runs/s": d["runs_per_s"], "p50 ms": d["p50_ms"],
                   "p99 ms": d["p99_ms"], "max ms": d["max_ms"],
                   "runner duration_ms (mean)": d["mean_runner_duration_ms"],
                   "busy answers (sent again)": d.get("busy_answers", 0),
                   "load before": la, "load after": loadavg()}
            results.append(row)
            print(json.dumps(row), flush=True)
        os.unlink(code_path)
        return layers
    finally:
        p.terminate()
        p.wait(30)
        os.unlink(log.name)


def oneshot(code, runs, flags, results, name):
    reqs = [{"code": code, "timeout_seconds": 30, "indicator": {"type": "ip", "value": "23.1.2.3"},
             "run_uuid": "00000000-0000-4000-8000-%012d" % i} for i in range(runs + 1)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(reqs, f)
        path = f.name
    env = dict(os.environ, **ENV)
    la = loadavg()
    t_start = time.perf_counter()
    p = subprocess.Popen([RUNNER] + flags + ["--one-shot-run", path], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stamps, outs = [], []
    for line in p.stdout:
        stamps.append(time.perf_counter())
        outs.append(json.loads(line))
    err = p.stderr.read().decode("utf-8", "replace")
    p.wait()
    os.unlink(path)
    failed = sum(1 for o in outs if o.get("status") != "success")
    if failed or len(outs) != runs + 1:
        print("one-shot: %d of %d results, %d not successful: %s\n%s"
              % (len(outs), runs + 1, failed, outs[:1], err[-2000:]))
    gaps = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])]
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0
    dur = [o.get("duration_ms", 0) for o in outs[1:]]
    row = {"what": "%s, one-shot array, in turn" % name, "runs": len(gaps), "failed": failed,
           "runs/s": round(len(gaps) / span, 1) if span else 0, "p50 ms": round(pct(gaps, 50), 2),
           "p99 ms": round(pct(gaps, 99), 2), "max ms": round(max(gaps), 2) if gaps else 0,
           "runner duration_ms (mean)": round(sum(dur) / len(dur), 2) if dur else 0,
           "first result after start ms": round((stamps[0] - t_start) * 1000, 1) if stamps else None,
           "load before": la, "load after": loadavg()}
    results.append(row)
    print(json.dumps(row), flush=True)
    return [l for l in err.splitlines() if "sandbox layers" in l]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--layers", default="all", help="one-shot runs only (served mode is always all)")
    ap.add_argument("--http-served", action="store_true", default=True,
                    help="also the ctx.http workflow served (stand-in allowed by SSRF_ALLOWED_HOSTS)")
    ap.add_argument("--sweep", action="store_true",
                    help="also: the trivial workflow one-shot with no layer, then each layer alone")
    args = ap.parse_args()
    results = []
    client = build_client()
    sp, port = standin()
    try:
        # one run at a time with 20 ms between runs: the latency a run sees when the runner
        # is not saturated (its warm children are ready); then back to back, and 4 and 8 at once
        layers = served(client, TRIVIAL, args.runs, ((1, 20), (1, 0), (4, 0), (8, 0)), results,
                        "trivial")
        if args.http_served:
            served(client, HTTP % ("http://localhost:%d" % port), args.runs, ((1, 20),), results,
                   "one ctx.http GET", {"SSRF_ALLOWED_HOSTS": "localhost"})
        print("served runner: " + " | ".join(layers))
        lf = ["--layers=" + args.layers] if args.layers != "all" else []
        # --allow-loopback counts as a test switch: give the layers explicitly with it
        layers = oneshot(TRIVIAL, args.runs, lf, results, "trivial")
        oneshot(HTTP % ("http://127.0.0.1:%d" % port), args.runs,
                ["--layers=" + args.layers, "--allow-loopback"], results, "one ctx.http GET")
        print("one-shot runner: " + " | ".join(layers))
        if args.sweep:
            for l in ("none", "ast", "pyguard", "netns", "userns", "landlock", "seccomp", "rlimit"):
                oneshot(TRIVIAL, max(50, args.runs // 3), ["--layers=" + l], results,
                        "trivial, layers=" + l)
    finally:
        sp.terminate()
        sp.wait()
        os.unlink(client)
    print("\n%-52s %6s %6s %8s %8s %8s %8s %10s   %s" % ("what", "runs", "failed", "runs/s", "p50 ms",
                                                         "p99 ms", "max ms", "runner ms", "load before -> after"))
    for r in results:
        print("%-52s %6d %6d %8.1f %8.2f %8.2f %8.2f %10.2f   %s -> %s" % (
            r["what"], r["runs"], r["failed"], r["runs/s"], r["p50 ms"], r["p99 ms"], r["max ms"],
            r["runner duration_ms (mean)"], r["load before"], r["load after"]))


if __name__ == "__main__":
    main()
