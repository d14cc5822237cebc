"""Ingestion end to end over real sockets: normalisation into PostgreSQL, de-duplication,
error codes, nasty bodies, database outage and recovery, and the kill -9 durability test."""
import hashlib
import json
import os
import signal
import socket
import threading
import time

import harness
from harness import Stack, assert_eq, fixture, run_tests, wait_for

GENERIC = {"title": "Suspicious login", "severity": "high", "src_ip": "203.0.113.7",
           "indicators": [{"type": "domain", "value": "evil.example"}]}


def test_fixtures_are_normalised_and_committed():
    s = Stack("fixtures")
    try:
        k = s.create_key("alerts:write,alerts:read")
        cases = [("sentinel", "01_sentinel_brute_force_tor.json"), ("elastic", "02_elastic_malware_hash.json"),
                 ("splunk", "03_splunk_anomalous_data_transfer.json"),
                 ("sentinel", "04_sentinel_impossible_travel.json"),
                 ("elastic", "05_elastic_suspicious_powershell.json")]
        for src, name in cases:
            body = fixture(name)
            r = s.request("POST", "/v1/ingest/" + src, key=k, body=body)
            assert_eq(r.status, 202, (name, r.body))
            d = r.json()["data"]
            assert_eq(d["status"], "queued")
            assert_eq(d["is_duplicate"], False)
            assert_eq(d["duplicate_count"], None)
            row = s.sql("SELECT a.source_name, a.severity, a.status, a.enrichment_status, "
                        "(SELECT count(*) FROM enrichment_jobs j WHERE j.alert_id = a.id), "
                        "(SELECT count(*) FROM alert_indicators ai WHERE ai.alert_id = a.id), "
                        "(SELECT count(*) FROM alert_activity e WHERE e.alert_id = a.id "
                        "   AND e.event_type = 'alert_ingested'), a.raw_payload::jsonb::text, md5(a.raw_payload::text) "
                        "FROM alerts a WHERE a.uuid = '%s'" % d["alert_uuid"])[0]
            assert_eq(row[0], src)
            assert row[1] in ("Informational", "Low", "Medium", "High", "Critical", "Pending"), row
            assert_eq(row[2:4], ["Open", "Pending"])
            assert_eq(row[4], "1")
            assert int(row[5]) >= 1, (name, row)
            assert_eq(row[6], "1")
            assert_eq(json.loads(row[7]), json.loads(body))
            # stored as sent: the request's own text, byte for byte (the space around it aside)
            assert_eq(row[8], hashlib.md5(body.strip()).hexdigest())
            # duplicate
            r = s.request("POST", "/v1/ingest/" + src, key=k, body=body)
            d2 = r.json()["data"]
            assert_eq((d2["status"], d2["is_duplicate"], d2["duplicate_count"], d2["alert_uuid"]),
                      ("deduplicated", True, 1, d["alert_uuid"]))
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "5")
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_jobs"), "5")
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE event_type='alert_deduplicated'"), "5")
        # the generic route
        r = s.request("POST", "/v1/alerts", key=k, body={"source_name": "generic", "payload": GENERIC})
        assert_eq(r.status, 202, r.body)
        u = r.json()["data"]["alert_uuid"]
        got = s.request("GET", "/v1/alerts/" + u, key=k).json()["data"]
        assert_eq(got["title"], "Suspicious login")
        assert_eq(got["severity"], "High")
        assert_eq(got["raw_payload"], GENERIC)
        vals = sorted((i["type"], i["value"]) for i in got["indicators"])
        assert_eq(vals, [("domain", "evil.example"), ("ip", "203.0.113.7")])
    finally:
        s.stop()


def test_error_codes_and_nothing_changes():
    s = Stack("errors")
    try:
        k = s.create_key("alerts:write")
        def post(path, body, **kw):
            return s.request("POST", path, key=k, body=body, **kw)
        cases = [
            ("/v1/ingest/nosuch", GENERIC, 404, "UNKNOWN_SOURCE"),
            ("/v1/ingest/generic", b"{not json", 400, "INVALID_JSON"),
            ("/v1/ingest/generic", b"", 400, "INVALID_JSON"),
            ("/v1/ingest/generic", b'{"title": "a", "title": "b"}', 400, "INVALID_JSON"),
            ("/v1/ingest/generic", b"[1,2,3]", 422, "INVALID_PAYLOAD"),
            ("/v1/ingest/generic", {"no_title": 1}, 422, "INVALID_PAYLOAD"),
            ("/v1/ingest/sentinel", {"properties": []}, 422, "INVALID_PAYLOAD"),
            ("/v1/ingest/splunk", {"result": "x", "sid": "1"}, 422, "INVALID_PAYLOAD"),
            ("/v1/ingest/generic", b'{"title": "nul \\u0000 inside"}', 400, "INVALID_JSON"),
            ("/v1/ingest/generic", b'{"title": "truncated', 400, "INVALID_JSON"),
            ("/v1/ingest/generic", b"\xff\xfe{}", 400, "INVALID_JSON"),
            ("/v1/alerts", {"payload": GENERIC}, 422, "VALIDATION_ERROR"),
            ("/v1/alerts", {"source_name": "generic"}, 422, "VALIDATION_ERROR"),
            ("/v1/alerts", {"source_name": "generic", "payload": [1]}, 422, "VALIDATION_ERROR"),
            ("/v1/alerts", {"source_name": 5, "payload": GENERIC}, 422, "VALIDATION_ERROR"),
            ("/v1/alerts", b"nonsense", 422, "VALIDATION_ERROR"),
            ("/v1/alerts", {"source_name": "nosuch", "payload": GENERIC}, 404, "UNKNOWN_SOURCE"),
            ("/v1/alerts", {"source_name": "generic", "payload": {"x": 1}}, 422, "INVALID_PAYLOAD"),
        ]
        for path, body, status, code in cases:
            r = post(path, body)
            assert_eq(r.status, status, (path, body, r.body))
            e = r.json()["error"]
            assert_eq(e["code"], code, (path, body))
            assert "message" in e and "details" in e
        big = {"source_name": "generic", "payload": {"title": "big", "blob": "x" * (1024 * 1024 + 10)}}
        r = post("/v1/alerts", big)
        assert_eq(r.status, 422)
        assert "1 MB" in json.dumps(r.json())
        deep = b'{"title": "deep", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        r = post("/v1/ingest/generic", deep)
        assert r.status in (400, 422), r
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "0")
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_jobs"), "0")
        assert_eq(s.sql_value("SELECT count(*) FROM indicators"), "0")
        # a large but valid alert with many indicators and unicode
        many = {"title": "Unicode \u2603 \U0001f525 tit\u00e9", "severity": "critical",
                "indicators": [{"type": "ip", "value": "198.51.100.%d" % (i % 250)} for i in range(5000)]}
        r = post("/v1/ingest/generic", many)
        assert_eq(r.status, 202, r.body)
        assert_eq(s.sql_value("SELECT title FROM alerts"), many["title"])
        assert_eq(s.sql_value("SELECT count(*) FROM alert_indicators"), "250")
        # an indicator value too long to index still makes a stored alert (without it)
        r = post("/v1/ingest/generic", {"title": "long url", "url": "http://x.example/" + "a" * 5000,
                                        "src_ip": "192.0.2.55"})
        assert_eq(r.status, 202, r.body)
        assert_eq(s.sql_value("SELECT count(*) FROM indicators WHERE value = '192.0.2.55'"), "1")
    finally:
        s.stop()


def test_concurrent_identical_posts_make_one_alert():
    s = Stack("concurrent", intake_processes=2)
    try:
        k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000"))
        body = dict(GENERIC, title="same every time")
        results = []
        lock = threading.Lock()
        def worker():
            for _ in range(10):
                r = s.request("POST", "/v1/ingest/generic", key=k, body=body)
                with lock:
                    results.append(r)
        ts = [threading.Thread(target=worker) for _ in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert all(r.status == 202 for r in results), [r for r in results if r.status != 202][:2]
        assert_eq(len({r.json()["data"]["alert_uuid"] for r in results}), 1)
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "1")
        assert_eq(s.sql_value("SELECT duplicate_count FROM alerts"), "79")
        assert_eq(sum(1 for r in results if not r.json()["data"]["is_duplicate"]), 1)
    finally:
        s.stop()


def test_shared_new_indicators_from_two_processes():
    """Distinct alerts that all carry one indicator nobody has seen yet, posted at once to two
    processes: every alert is linked to it and to its own, and the shared one exists once."""
    s = Stack("sharedind", intake_processes=2)
    try:
        k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000"))
        results = []
        lock = threading.Lock()
        def worker(w):
            for i in range(10):
                body = {"title": "shared %d-%d" % (w, i), "severity": "low",
                        "indicators": [{"type": "ip", "value": "198.51.100.200"},
                                       {"type": "domain", "value": "own-%d-%d.example" % (w, i)}]}
                r = s.request("POST", "/v1/ingest/generic", key=k, body=body)
                with lock:
                    results.append(r)
        ts = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert all(r.status == 202 for r in results), [r for r in results if r.status != 202][:2]
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "80")
        assert_eq(s.sql_value("SELECT count(*) FROM indicators WHERE value = '198.51.100.200'"), "1")
        assert_eq(s.sql_value("SELECT count(*) FROM alert_indicators"), "160")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts a WHERE (SELECT count(*) FROM alert_indicators ai "
                              "WHERE ai.alert_id = a.id) <> 2"), "0")
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_jobs"), "80")
        assert_eq(s.sql_value("SELECT count(*) FROM alert_activity WHERE event_type = 'alert_ingested'"), "80")
    finally:
        s.stop()


def test_indicator_last_seen_follows_within_bound():
    """Ingest never updates a known indicator; its last_seen catches up with the latest alert
    carrying it within the housekeeping interval (15 s), through the committed sighting rows."""
    s = Stack("lastseen")
    try:
        k = s.create_key("alerts:write")
        body = {"title": "first", "indicators": [{"type": "domain", "value": "seen.example"}]}
        assert_eq(s.request("POST", "/v1/ingest/generic", key=k, body=body).status, 202)
        first = s.sql("SELECT first_seen, last_seen FROM indicators WHERE value = 'seen.example'")[0]
        assert_eq(first[0], first[1])
        time.sleep(1.0)
        body["title"] = "second"
        assert_eq(s.request("POST", "/v1/ingest/generic", key=k, body=body).status, 202)
        created = s.sql_value("SELECT created_at FROM alerts WHERE title = 'second'")
        deadline = time.time() + 25
        while time.time() < deadline:
            row = s.sql("SELECT first_seen, last_seen, last_seen = '%s'::timestamptz FROM indicators "
                        "WHERE value = 'seen.example'" % created)[0]
            if row[2] == "t":
                break
            time.sleep(0.5)
        assert_eq(row[2], "t", (row, created))
        assert_eq(row[0], first[0])
        assert_eq(s.sql_value("SELECT count(*) FROM indicator_sightings"), "0")
    finally:
        s.stop()



def test_duplicate_touches_no_indicator():
    """A duplicate, as in the original, neither links nor sights its indicators (they are its
    original's): after the fold, last_seen is still the original's time."""
    s = Stack("dupind")
    try:
        k = s.create_key("alerts:write")
        body = {"title": "dup ind", "indicators": [{"type": "domain", "value": "dup.example"}]}
        first = s.request("POST", "/v1/ingest/generic", key=k, body=body)
        assert_eq(first.status, 202)
        again = s.request("POST", "/v1/ingest/generic", key=k, body=body)
        assert_eq((again.status, again.json()["data"]["status"]), (202, "deduplicated"))
        # the fold, as an intake runs it (after any fold of the intake's own: same lock)
        s.sql("SELECT pg_advisory_xact_lock(727276); SELECT calseta_indicator_sightings_apply()")
        row = s.sql("SELECT first_seen = last_seen, (SELECT count(*) FROM alert_indicators ai "
                    "WHERE ai.indicator_id = i.id) FROM indicators i WHERE value = 'dup.example'")[0]
        assert_eq(row, ["t", "1"])
    finally:
        s.stop()


class TcpProxy:
    """A loopback TCP forwarder that the test can cut and restore (a database outage)."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = harness.free_port()
        self.up = True
        self.conns = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.up = False
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.up = True


def test_database_outage_503_and_recovery():
    import urllib.parse
    base = Stack("outage", services=("auditd",))
    u = urllib.parse.urlsplit(base.db)
    proxy = TcpProxy(u.port)
    proxied = urllib.parse.urlunsplit((u.scheme, "%s@127.0.0.1:%d" % (u.netloc.split("@")[0], proxy.port),
                                       u.path, u.query, u.fragment))
    base.env["DATABASE_URL"] = proxied
    base.start_intake()
    try:
        base.wait_healthy()
        k = base.create_key("alerts:write,alerts:read")
        assert_eq(base.request("POST", "/v1/ingest/generic", key=k, body=dict(GENERIC, title="before")).status, 202)
        proxy.cut()
        time.sleep(0.3)
        r = base.request("POST", "/v1/ingest/generic", key=k, body=dict(GENERIC, title="during"))
        assert_eq(r.status, 503, r.body)
        assert "x-request-id" in r.headers
        h = base.request("GET", "/health")
        assert_eq(h.status, 503)
        assert_eq(h.json()["database"], "error")
        proxy.restore()
        deadline = time.time() + 20
        while time.time() < deadline:
            r = base.request("POST", "/v1/ingest/generic", key=k, body=dict(GENERIC, title="after"))
            if r.status == 202:
                break
            time.sleep(0.3)
        assert_eq(r.status, 202, r.body)
        titles = sorted(x[0] for x in base.sql("SELECT title FROM alerts"))
        assert_eq(titles, ["after", "before"])
    finally:
        base.stop()


def test_kill9_intake_under_load():
    s = Stack("kill9")
    try:
        k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "1000000"))
        accepted, errors = [], []
        lock = threading.Lock()
        stop = threading.Event()
        def loader(n):
            i = 0
            while not stop.is_set():
                i += 1
                title = "load-%d-%d" % (n, i)
                try:
                    r = s.request("POST", "/v1/ingest/generic", key=k, timeout=10,
                                  body={"title": title, "severity": "low", "src_ip": "192.0.2.%d" % (i % 200)})
                    with lock:
                        (accepted if r.status == 202 else errors).append((title, r.status, r.body[:100]))
                except OSError as e:
                    with lock:
                        errors.append((title, None, str(e)))
                    stop.wait(0.02)  # the intake is down: back off instead of spinning
        def accepted_count():
            with lock:
                return len(accepted)
        ts = [threading.Thread(target=loader, args=(n,)) for n in range(6)]
        [t.start() for t in ts]
        try:
            # killed mid-stream: after 20 acknowledged alerts, however slow the machine is
            wait_for(lambda: accepted_count() >= 20, 60, 0.02, "20 alerts accepted before the kill")
            s.intakes[0].p.send_signal(signal.SIGKILL)
            s.intakes[0].p.wait()
            before_restart = accepted_count()
            s.intakes.clear()
            s.start_intake()
            s.wait_healthy()
            wait_for(lambda: accepted_count() >= before_restart + 20, 60, 0.02,
                     "20 alerts accepted after the restart")
        finally:
            stop.set()
            [t.join() for t in ts]
        assert len(accepted) >= 40, len(accepted)
        titles = {r[0] for r in s.sql("SELECT title FROM alerts")}
        missing = [a for a in accepted if a[0] not in titles]
        assert not missing, missing[:5]
        # every stored alert is whole: its job, its indicator link and its activity event
        broken = s.sql("SELECT a.title FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM enrichment_jobs j "
                       "WHERE j.alert_id = a.id) OR NOT EXISTS (SELECT 1 FROM alert_indicators ai "
                       "WHERE ai.alert_id = a.id) OR NOT EXISTS (SELECT 1 FROM alert_activity e "
                       "WHERE e.alert_id = a.id)")
        assert not broken, broken[:5]
        # the event is derived from the row (the view above always finds it): the row must say
        # so and carry the ingesting key's prefix, and no alert may also have a stored one
        unmarked = s.sql("SELECT a.title FROM alerts a WHERE NOT a.ingest_event OR a.ingest_key_prefix IS NULL "
                         "OR EXISTS (SELECT 1 FROM activity_events e WHERE e.alert_id = a.id "
                         "AND e.event_type = 'alert_ingested')")
        assert not unmarked, unmarked[:5]
        print("kill9: %d accepted, %d errors, %d stored" % (len(accepted), len(errors), len(titles)))
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
