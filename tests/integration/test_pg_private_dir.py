"""test_pg_private_dir.py - the embedded PostgreSQL starts, answers and stops when the data folder
is private to its owner (mode 0700, as under /root), which is what `make run` does first.

Run as root (as CI does), the server runs as `postgres`, which cannot enter such a folder: the
cluster and its log must then live in a folder of their own."""
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("CALSETA_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))


def main():
    data = tempfile.mkdtemp(prefix="calseta-private-")
    os.chmod(data, 0o700)
    env = dict(os.environ, CALSETA_DATA_DIR=data)
    env.pop("DATABASE_URL", None)
    pg = os.path.join(SRC, "scripts", "pg.sh")
    try:
        r = subprocess.run([pg, "start"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, "pg.sh start failed in a 0700 folder: %s" % r.stderr
        url = r.stdout.strip().splitlines()[-1]
        q = subprocess.run(["psql", url, "-XtAc", "SELECT 40 + 2"], capture_output=True, text=True,
                           timeout=30)
        assert q.stdout.strip() == "42", "query through the started cluster failed: %r %r" % (q.stdout, q.stderr)
        if os.geteuid() == 0:
            loc = os.path.join(data, "pg.location")
            assert os.path.exists(loc), "as root the cluster should have moved out of the private folder"
    finally:
        subprocess.run([pg, "stop"], env=env, capture_output=True, timeout=60)
        loc = os.path.join(data, "pg.location")
        if os.path.exists(loc):
            moved = open(loc).read().strip()
            shutil.rmtree(moved, ignore_errors=True)
            try:
                os.unlink(moved + ".log")
            except FileNotFoundError:
                pass
        shutil.rmtree(data, ignore_errors=True)
    print("ok: embedded PostgreSQL in a 0700 data folder")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAIL:", e)
        sys.exit(1)
