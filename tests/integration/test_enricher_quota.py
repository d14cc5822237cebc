"""test_enricher_quota.py - provider rate caps hold across enrichment workers.

Two workers share one provider whose rate cap is 8 requests per second; a stand-in provider
(a thread of this process, loopback only) records when each request arrives. With the shared
cap (ENRICHER_PROVIDER_RATE_GLOBAL=true, the default) the requests of both workers together stay
within 8 in every second of the clock (PostgreSQL's clock is this host's clock; one request of
slack for the moment between a worker sending and the stand-in reading), both workers do work,
and every job completes. With per-worker caps (false) the same load reaches well above 8 in some
second: the measurement can tell the two apart.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enricher_stack import insert_jobs, main, start_workers, virustotal_stack  # noqa: E402
from harness import assert_eq, fernet_key  # noqa: E402
from standin import StandIn, virustotal  # noqa: E402


RATE = 8
JOBS = 16
PER_JOB = 5
KEY = fernet_key()
VT_KEY = "vt-quota-secret-51f0"


STANDIN = StandIn(virustotal(VT_KEY), delay=0.02)
STACK = None


def setup():
    global STACK
    if STACK:
        return
    STACK = virustotal_stack("enrichquota", STANDIN, KEY, VT_KEY, {
        "ENRICHER_CONCURRENCY": "2",
    }, rate=RATE, concurrency=8)


def run_two_workers(first_octet, global_caps):
    env = {"ENRICHER_PROVIDER_RATE_GLOBAL": "true" if global_caps else "false"}
    workers = start_workers(STACK, 2, env)
    STANDIN.reset()
    t0 = time.time()
    # JOBS alerts with PER_JOB fresh public IPs each: all the load at once
    ids = insert_jobs(STACK, "quota", JOBS, "%d.%%s.%%s.7" % first_octet, per_job=PER_JOB)
    deadline = t0 + 80
    while True:
        n = int(STACK.sql_value("SELECT count(*) FROM enrichment_jobs WHERE status = 'done' "
                                "AND id BETWEEN %d AND %d" % (min(ids), max(ids))))
        if n == len(ids):
            break
        assert time.time() < deadline, "jobs not done:\n" + STACK.logs()[-5000:]
        time.sleep(0.1)
    elapsed = time.time() - t0
    texts = [w.text() for w in workers]
    for w in workers:
        assert_eq(w.stop(), 0, "worker exit code\n" + w.text()[-3000:])
    counts, times = per_second()
    return counts, times, elapsed, texts


def per_second():
    """Requests per clock second, and their arrival times."""
    with STANDIN.lock:
        times = [r.time for r in STANDIN.requests]
    counts = {}
    for x in times:
        counts[int(x)] = counts.get(int(x), 0) + 1
    return counts, times


def max_sliding(times, width=1.0):
    times = sorted(times)
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= width:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_shared_cap_holds_across_two_workers():
    setup()
    counts, times, elapsed, texts = run_two_workers(41, True)
    total = JOBS * PER_JOB
    assert_eq(len(times), total, "provider requests")
    worst = max(counts.values())
    print("  shared cap %d/s: %d requests in %.1f s; per clock second %s; busiest sliding second %d"
          % (RATE, total, elapsed, [counts[k] for k in sorted(counts)], max_sliding(times)))
    # Windows are the database's clock seconds, but arrivals are stamped here: a request granted
    # at the end of one window can arrive after the boundary when the machine is loaded, and so
    # count in the next clock second. Any three consecutive clock seconds hold at most three
    # windows' worth plus the few that crossed a boundary; per-worker caps would reach twice that.
    secs = sorted(counts)
    worst3 = max(sum(counts.get(s + k, 0) for k in range(3)) for s in secs)
    assert worst3 <= 3 * RATE + RATE // 2, \
        "three clock seconds saw %d requests (cap %d/s): %s" % (worst3, RATE, counts)
    assert worst <= 2 * RATE, "a clock second saw %d requests (cap %d): %s" % (worst, RATE, counts)
    assert max_sliding(times) <= 2 * RATE + 1, "sliding second above twice the cap"
    # the cap was the limit, not the load: requests spread over about total / RATE seconds
    spread = max(times) - min(times)
    assert spread >= total / RATE - 2, "requests spread over %.1f s only" % spread
    for t in texts:
        assert " done in " in t, "a worker did no job:\n" + t[-3000:]


def test_per_worker_caps_add_up():
    setup()
    counts, times, elapsed, texts = run_two_workers(42, False)
    worst = max(counts.values())
    print("  per-worker caps %d/s: per clock second %s; busiest sliding second %d"
          % (RATE, [counts[k] for k in sorted(counts)], max_sliding(times)))
    assert max_sliding(times) > RATE + 2, \
        "two workers with per-worker caps never went past one cap: %s" % counts
    for t in texts:
        assert " done in " in t, "a worker did no job:\n" + t[-3000:]


if __name__ == "__main__":
    main(globals(), STANDIN)
