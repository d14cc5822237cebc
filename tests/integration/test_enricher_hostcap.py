"""test_enricher_hostcap.py - a worker keeps at most ENRICHER_HOST_CONNECTIONS provider requests
in flight to one host:port, and so opens no more connections to it than that.

A stand-in provider (a thread of this process, loopback only, HTTP/1.1 keep-alive) answers after
100 ms and records how many requests it holds at once and which client connections they came
on. One worker gets far more lookups at once than the cap (provider concurrency 50); with the cap
at 3 the stand-in never holds more than 3, sees at most 3 connections, sees exactly 3 at some
point (the load did reach the cap), and every job completes. With the cap off (0) the same load
holds more than 3 at once: the measurement can tell the two apart. A provider named by an IPv6
address literal ([::1]) is pinned, capped the same way and answers all of its lookups.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enricher_stack import insert_jobs, main, start_workers, virustotal_stack  # noqa: E402
from harness import assert_eq, fernet_key  # noqa: E402
from standin import StandIn, virustotal  # noqa: E402


CAP = 3
JOBS = 8
PER_JOB = 5
KEY = fernet_key()
VT_KEY = "vt-hostcap-secret-7c21"


STANDIN = StandIn(virustotal(VT_KEY), delay=0.1)
STACK = None


def setup():
    global STACK
    if STACK:
        return
    STACK = virustotal_stack("enrichhostcap", STANDIN, KEY, VT_KEY, {
        "ENRICHER_CONCURRENCY": str(JOBS),
    })


def insert_hostcap_jobs(first_octet):
    """JOBS alerts with PER_JOB fresh IPs each (<first_octet>.<job>.<k>.9), and their jobs."""
    return insert_jobs(STACK, "hostcap", JOBS, "%d.%%s.%%s.9" % first_octet, per_job=PER_JOB)


def run_worker(first_octet, cap):
    w, = start_workers(STACK, 1, {"ENRICHER_HOST_CONNECTIONS": str(cap)})
    STANDIN.reset()
    ids = insert_hostcap_jobs(first_octet)
    deadline = time.time() + 80
    while True:
        n = int(STACK.sql_value("SELECT count(*) FROM enrichment_jobs WHERE status = 'done' "
                                "AND id BETWEEN %d AND %d" % (min(ids), max(ids))))
        if n == len(ids):
            break
        assert time.time() < deadline, "jobs not done:\n" + STACK.logs()[-5000:]
        time.sleep(0.1)
    assert_eq(w.stop(), 0, "worker exit code\n" + w.text()[-3000:])
    with STANDIN.lock:
        return len(STANDIN.requests), STANDIN.max_holding, len(STANDIN.peers)


def test_cap_holds_requests_and_connections():
    setup()
    requests, held, conns = run_worker(51, CAP)
    print("  cap %d: %d requests, at most %d held at once, %d connections"
          % (CAP, requests, held, conns))
    assert_eq(requests, JOBS * PER_JOB, "provider requests")
    assert held <= CAP, "%d requests in flight at once with a cap of %d" % (held, CAP)
    assert_eq(held, CAP, "the load reached the cap")
    assert conns <= CAP, "%d connections with a cap of %d" % (conns, CAP)


def test_no_cap_goes_past_it():
    setup()
    requests, held, conns = run_worker(52, 0)
    print("  no cap: %d requests, at most %d held at once, %d connections"
          % (requests, held, conns))
    assert_eq(requests, JOBS * PER_JOB, "provider requests")
    assert held > CAP, "without a cap only %d requests were in flight at once" % held


def test_ipv6_literal_provider():
    """A provider named by an IPv6 address literal is checked, pinned to that address at the
    socket, and answers every lookup; its verdict is cached under its bracketed host:port like a
    name's, so the per-host cap holds for it too."""
    setup()
    v6 = StandIn(virustotal(VT_KEY), delay=0.1, host="::1")
    try:
        STACK.sql("UPDATE enrichment_providers SET http_config = replace(http_config::text, "
                  "'%s', '%s')::jsonb WHERE provider_name = 'virustotal'"
                  % (STANDIN.url, v6.url))
        w = STACK.start("enricher", {"ENRICHER_HOST_CONNECTIONS": str(CAP)})
        ids = insert_hostcap_jobs(53)
        deadline = time.time() + 60
        while True:
            n = int(STACK.sql_value("SELECT count(*) FROM enrichment_jobs WHERE status = 'done' "
                                    "AND id BETWEEN %d AND %d" % (min(ids), max(ids))))
            if n == len(ids):
                break
            assert "SSRF blocked" not in w.text(), "IPv6 literal refused:\n" + w.text()[-3000:]
            assert time.time() < deadline, "jobs not done:\n" + STACK.logs()[-5000:]
            time.sleep(0.1)
        log = w.text()
        assert_eq(w.stop(), 0, "worker exit code\n" + log[-3000:])
        assert "SSRF blocked" not in log, "IPv6 literal refused:\n" + log[-3000:]
        with v6.lock:
            got, held, conns = len(v6.requests), v6.max_holding, len(v6.peers)
        print("  IPv6 literal provider: %d requests answered, at most %d held at once, "
              "%d connections" % (got, held, conns))
        assert_eq(got, JOBS * PER_JOB, "provider requests reaching the IPv6 stand-in")
        assert held <= CAP, "%d requests in flight at once with a cap of %d" % (held, CAP)
        assert conns <= CAP, "%d connections with a cap of %d" % (conns, CAP)
    finally:
        STACK.sql("UPDATE enrichment_providers SET http_config = replace(http_config::text, "
                  "'%s', '%s')::jsonb WHERE provider_name = 'virustotal'"
                  % (v6.url, STANDIN.url))
        v6.close()


if __name__ == "__main__":
    main(globals(), STANDIN)
