"""No platform secret in the workflow runner's memory, where a workflow could read it.

A workflow child is a copy of the memory of the process that forks it, and CPython offers ways
to read that memory from inside. So the runner must never hold the database URL, the encryption
key or any other secret of the platform, neither in its environment nor anywhere in its heap:
it re-executes itself with a minimal environment, and a single-threaded fork server, which never
sees a request, forks the children. This test starts the served runner the way `calseta up`
does (every secret in its environment, more in a .env file in its working directory), then
reads the memory of the runner, its fork server and a warm child through /proc/<pid>/mem and
looks for every secret value. It also checks /proc/<pid>/environ, and that runs still work.
Needs root or ptrace rights over the runner (as in CI); fails when it cannot read the memory.
"""
import os
import subprocess
import sys
import tempfile

from harness import free_port, memory_scan, wait_for

BIN = os.path.abspath(os.path.join(os.environ.get("CALSETA_BIN_DIR", "build/bin"), "calseta-runner"))
SECRETS = {
    "DATABASE_URL": "postgresql://calseta:Db-Pa55word-%s@db:5432/calseta" % os.urandom(6).hex(),
    "ENCRYPTION_KEY": "a2V5LWZvci10ZXN0aW5nLW9ubHktMzItYnl0ZXMhIQ%s=" % os.urandom(0).hex(),
    "SENTINEL_WEBHOOK_SECRET": "sentinel-secret-%s" % os.urandom(6).hex(),
    "CURVE_SERVER_SECRET_KEY": "curve-secret-%s" % os.urandom(6).hex(),
    "SLACK_BOT_TOKEN": "xoxb-slack-%s" % os.urandom(6).hex(),
}
DOTENV = {"SPLUNK_WEBHOOK_SECRET": "splunk-dotenv-secret-%s" % os.urandom(6).hex()}


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def main():
    work = tempfile.mkdtemp(prefix="calseta-runner-mem-")
    with open(os.path.join(work, ".env"), "w") as f:
        for k, v in DOTENV.items():
            f.write("%s=%s\n" % (k, v))
    env = dict(os.environ)
    env.update(SECRETS)
    env.update({"RUNNER_ENDPOINT": "tcp://127.0.0.1:%d" % free_port(), "LOG_FORMAT": "text",
                "RUNNER_CONCURRENCY": "2"})
    log = open(os.path.join(work, "runner.log"), "wb")
    p = subprocess.Popen([BIN], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    fails = []
    try:
        wait_for(lambda: "listening on" in open(log.name).read() or p.poll() is not None, 30,
                 what="the runner to listen or exit")
        text = open(log.name).read()
        if "listening on" not in text:
            print("runner did not start:\n" + text)
            return 1
        # warm children are forked after "listening on": wait for one under the fork server
        wait_for(lambda: [c for s in children(p.pid) for c in children(s)], 30,
                 what="a warm child under the fork server")
        needles = list(SECRETS.values()) + list(DOTENV.values())
        # the password alone, too: the URL may have been taken apart
        needles.append(SECRETS["DATABASE_URL"].split(":")[2].split("@")[0])
        environ = open("/proc/%d/environ" % p.pid, "rb").read().decode("utf-8", "replace")
        for k in list(SECRETS) + list(DOTENV):
            if k in environ:
                fails.append("%s in the runner's /proc environ" % k)
        server = children(p.pid)
        kids = [c for s in server for c in children(s)]
        print("runner %d, fork server %s, warm children %s" % (p.pid, server, kids))
        if len(server) != 1 or not kids:
            fails.append("expected one fork server with warm children, got %r / %r" % (server, kids))
        for pid, what in [(p.pid, "runner")] + [(s, "fork server") for s in server] + \
                         [(k, "warm child") for k in kids[:1]]:
            found = memory_scan(pid, needles)
            if found is None:
                fails.append("cannot read the memory of the %s (%d): run as root or with ptrace "
                             "rights" % (what, pid))
                continue
            for n in found:
                fails.append("a secret (%s...) is in the memory of the %s" % (n[:12], what))
        # positive control: the scan finds what is there
        ctl = memory_scan(os.getpid(), [SECRETS["DATABASE_URL"]])
        if ctl is not None and SECRETS["DATABASE_URL"] not in ctl:
            fails.append("the scan does not find a secret this test process holds")
    finally:
        p.terminate()
        p.wait(30)
        log.close()
    for f in fails:
        print("FAIL: " + f)
    print("%d failed" % len(fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
