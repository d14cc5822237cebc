"""The uuids of new alerts and new indicators: the intake makes them (version 7, one request for
random bytes per batch) and calseta_ingest_columns() stores the ones it is given. No step waits
a fixed time: a lock a test holds is held by a psql it feeds on stdin and lets go when the
state it waits for is seen.

Through the intake, with calseta_uuid7() (the database's own generator) made to fail: every
batch still stores, so every uuid of a new alert or indicator came from the intake; each is
version 7, its time within seconds of the row's creation, distinct; an existing indicator keeps
its uuid; a fingerprint repeated in a batch is answered with its first alert's uuid. Directly:
NULL uuid columns and the previous 18-argument form draw uuid7 values in SQL; columns of the
wrong length or not from subscript 1 are refused (22023) with nothing written; a uuid given twice,
or one a row already has, fails the whole call (23505) with nothing written; the supplied uuids
go where they belong, in the general de-duplication form and in the new indicators' retry after
a concurrent batch committed one of them first."""
import os
import subprocess
import threading
import time
import uuid

import ingest_columns
from harness import Stack, assert_eq, run_tests, wait_for

# a uuid of version 7 and variant 10, as text
V7 = "%s::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'"
# its time in Unix milliseconds
MS = "('x' || substr(replace(%s::text, '-', ''), 1, 12))::bit(48)::bigint"
# the uuid's time within 5 s of the timestamp t
NEAR = "abs(" + MS + " - extract(epoch FROM %s) * 1000) < 5000"

FAILING_UUID7 = """CREATE OR REPLACE FUNCTION calseta_uuid7() RETURNS UUID LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'calseta_uuid7() called: a uuid was drawn in SQL';
END $$"""


def uuid7():
    """A version-7 uuid made here, as the intake makes them."""
    b = bytearray(int(time.time() * 1000).to_bytes(6, "big") + os.urandom(10))
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(b)))


class Held:
    """A session holding enrichment_jobs locked until release(): a batch waits on it (the job
    insert), so alerts posted meanwhile queue and go in batches of several. The lock is taken
    by a psql fed on stdin, and let go only when the test says, whatever the box's speed."""

    def __init__(self, s):
        self.p = subprocess.Popen(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.p.stdin.write("BEGIN;\nLOCK TABLE enrichment_jobs IN EXCLUSIVE MODE;\n")
        self.p.stdin.flush()
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                     "WHERE c.relname = 'enrichment_jobs' AND l.mode = 'ExclusiveLock' "
                                     "AND l.granted") == "1", what="the lock")

    def release(self):
        if self.p.stdin.closed:
            return
        self.p.stdin.write("COMMIT;\n")
        self.p.stdin.close()
        assert_eq(self.p.wait(timeout=30), 0, self.p.stderr.read())


METRICS = ("calseta_ingest_queued", "calseta_ingest_batch_size_sum", "calseta_ingest_batch_size_count")


def metrics(s, key):
    """The batcher's figures (METRICS) of the stack's one intake process."""
    m = s.request("GET", "/metrics", key=key).body.decode()
    out = {}
    for line in m.splitlines():
        name = line.split("{")[0]
        if name in METRICS:
            assert name not in out, "more than one intake process: " + name
            out[name] = float(line.split()[-1])
    assert_eq(sorted(out), sorted(METRICS))
    return out


def batches(s, key):
    return metrics(s, key)["calseta_ingest_batch_size_count"]


def arrived(s, key):
    """Alerts the intake has taken: queued, or sent in a batch (none answered while the lock is
    held: every batch waits on it)."""
    m = metrics(s, key)
    return m["calseta_ingest_queued"] + m["calseta_ingest_batch_size_sum"]


def test_intake_makes_the_uuids():
    s = Stack("ingest_uuids_intake", env={"ALERT_DEDUP_WINDOW_HOURS": 24})
    try:
        key = s.create_key("alerts:write,alerts:read")
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) "
              "VALUES ('ip', '192.0.2.200', now() - interval '1 day', now() - interval '1 day')")
        known = s.sql_value("SELECT uuid FROM indicators WHERE value = '192.0.2.200'")
        s.sql(FAILING_UUID7)
        bodies = []
        for i in range(6):
            bodies.append({"title": "uuid alert %d" % i, "severity": "high",
                           "indicators": [{"type": "ip", "value": "198.51.100.%d" % i},
                                          {"type": "domain", "value": "h%d.uuid.example" % (i // 2)},
                                          {"type": "ip", "value": "192.0.2.200"}]})
        # a repeat of the fourth, queued with it behind the first batch: a fingerprint repeated in
        # one batch, whose repeat counts on the uuid the intake made for the first of the two
        bodies.append(dict(bodies[3]))
        results = [None] * len(bodies)

        def post(i):
            results[i] = s.request("POST", "/v1/ingest/generic", key=key, body=bodies[i])

        held = Held(s)
        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        try:
            # the first alone in a batch that waits on the lock; the others queue behind it,
            # together; the lock goes once the intake has them all
            threads[0].start()
            wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND query LIKE '%calseta_ingest_columns%'") == "1", what="the first batch")
            for t in threads[1:]:
                t.start()
            wait_for(lambda: arrived(s, key) == len(bodies), what="every alert in the intake")
        finally:
            held.release()
        for t in threads:
            t.join()
        for r in results:
            assert_eq(r.status, 202, r.body)
        assert batches(s, key) < len(bodies), "every alert went alone"
        data = [r.json()["data"] for r in results]
        # whichever of the two was queued first is the alert, the other its duplicate
        assert_eq([d["is_duplicate"] for d in data[:3] + data[4:6]], [False] * 5)
        assert_eq(sorted([data[3]["is_duplicate"], data[6]["is_duplicate"]]), [False, True])
        assert_eq(data[6]["alert_uuid"], data[3]["alert_uuid"])
        rows = s.sql("SELECT uuid, %s, %s, duplicate_count FROM alerts ORDER BY id"
                     % (V7 % "uuid", NEAR % ("uuid", "created_at")))
        assert_eq(len(rows), 6)
        assert_eq(sorted(r[0] for r in rows), sorted(d["alert_uuid"] for d in data[:6]))
        assert_eq([r[1:3] for r in rows], [["t", "t"]] * 6)
        assert_eq(sorted(r[3] for r in rows), ["0"] * 5 + ["1"])
        # the repeat went in its original's batch (the alert written once, with its count: the
        # row is the version its job's transaction wrote)
        assert_eq(s.sql("SELECT a.duplicate_count, a.xmin = j.xmin FROM alerts a JOIN enrichment_jobs j "
                        "ON j.alert_id = a.id WHERE a.uuid = '%s'" % data[3]["alert_uuid"]), [["1", "t"]])
        # the new indicators: 6 IPs and 3 domains, each a uuid of its own; the known one kept its own
        rows = s.sql("SELECT value, uuid, %s, %s FROM indicators WHERE value <> '192.0.2.200' ORDER BY id"
                     % (V7 % "uuid", NEAR % ("uuid", "first_seen")))
        assert_eq(len(rows), 9)
        assert_eq([r[2:] for r in rows], [["t", "t"]] * 9)
        assert_eq(s.sql_value("SELECT uuid FROM indicators WHERE value = '192.0.2.200'"), known)
        assert_eq(s.sql_value("SELECT count(DISTINCT uuid) FROM (SELECT uuid FROM alerts UNION ALL "
                              "SELECT uuid FROM indicators) u"), "16")
    finally:
        s.stop()


def el(fp, inds, rule="rule-u"):
    return {"title": "T " + fp, "severity": "High", "source_name": "generic", "description": "d",
            "occurred_at": "2026-01-01T00:00:00Z", "tags": ["x"], "fingerprint": fp,
            "indicators": [{"type": t, "value": v} for t, v in inds], "rule_ref": rule,
            "actor_key_prefix": "cai_uuids"}


def call(elems, hours, uuids=None):
    """calseta_ingest_columns(...) for the batch (a FROM item), with the uuid columns when given."""
    return "calseta_ingest_columns(%s)" % ingest_columns.columns(elems, ["{}"] * len(elems), hours, uuids=uuids)


def test_null_columns_and_the_old_form_draw_in_sql():
    s = Stack("ingest_uuids_null", services=())
    try:
        one = [el("n1", [("ip", "192.0.2.1"), ("domain", "n1.example")]), el("n2", [("ip", "192.0.2.1")])]
        s.sql("SELECT count(*) FROM %s" % call(one, 24, uuids=(None, None)))
        old = [el("o1", [("ip", "192.0.2.2")]), el("o1", [("ip", "192.0.2.2")])]
        answers = s.sql("SELECT is_duplicate, alert_uuid FROM %s ORDER BY idx" % call(old, 24))
        assert_eq([a[0] for a in answers], ["f", "t"])
        assert_eq(answers[1][1], answers[0][1])
        assert_eq(s.sql("SELECT fingerprint, %s, %s FROM alerts ORDER BY id" % (V7 % "uuid", NEAR % ("uuid", "created_at"))),
                  [["n1", "t", "t"], ["n2", "t", "t"], ["o1", "t", "t"]])
        assert_eq(s.sql("SELECT value, %s FROM indicators ORDER BY id" % (V7 % "uuid")),
                  [["192.0.2.1", "t"], ["n1.example", "t"], ["192.0.2.2", "t"]])
        # the previous signature is there, and is the wrapper (no settings of its own)
        assert_eq(s.sql("SELECT pronargs, proconfig IS NULL FROM pg_proc WHERE proname = 'calseta_ingest_columns' "
                        "ORDER BY pronargs"), [["18", "t"], ["20", "f"]])
    finally:
        s.stop()


def test_supplied_uuids_stored():
    """Each new alert gets its element's uuid and each new indicator its pair's; a known
    indicator keeps its own; in the general de-duplication form (a fingerprint repeated in the
    batch) every repeat is answered with its first element's uuid, and the repeats' own go
    unused."""
    s = Stack("ingest_uuids_supplied", services=())
    try:
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) "
              "VALUES ('ip', '192.0.2.9', now() - interval '1 day', now() - interval '1 day')")
        known = s.sql_value("SELECT uuid FROM indicators WHERE value = '192.0.2.9'")
        s.sql(FAILING_UUID7)
        elems = [el("s1", [("ip", "192.0.2.9"), ("domain", "s1.example")]),
                 el("s2", [("domain", "s2.example")]),
                 el("s1", [("ip", "192.0.2.9")]),
                 el("s3", [("domain", "s1.example"), ("ip", "192.0.2.10")]),
                 el("s1", [])]
        pairs = ingest_columns.pairs_of(elems)
        for hours in (24, 0):  # then the same batch, de-duplication off: every element new
            au, iu = [uuid7() for _ in elems], [uuid7() for _ in pairs]
            answers = s.sql("SELECT idx, alert_uuid, is_duplicate FROM %s ORDER BY idx" % call(elems, hours, (au, iu)))
            if hours == 24:
                assert_eq(answers, [["0", au[0], "f"], ["1", au[1], "f"], ["2", au[0], "t"], ["3", au[3], "f"],
                                    ["4", au[0], "t"]])
                assert_eq(s.sql("SELECT uuid::text, fingerprint, duplicate_count FROM alerts ORDER BY id"),
                          [[au[0], "s1", "2"], [au[1], "s2", "0"], [au[3], "s3", "0"]])
                got = dict((r[0], r[1]) for r in s.sql("SELECT value, uuid FROM indicators"))
                assert_eq(got, {"192.0.2.9": known, "s1.example": iu[pairs.index(("domain", "s1.example"))],
                                "s2.example": iu[pairs.index(("domain", "s2.example"))],
                                "192.0.2.10": iu[pairs.index(("ip", "192.0.2.10"))]})
            else:
                assert_eq(answers, [[str(i), au[i], "f"] for i in range(5)])
                assert_eq(s.sql("SELECT uuid::text FROM alerts ORDER BY id OFFSET 3"), [[u] for u in au])
    finally:
        s.stop()


REFUSED = """DO $do$ BEGIN
    PERFORM count(*) FROM %s;
    RAISE EXCEPTION 'accepted';
EXCEPTION WHEN invalid_parameter_value THEN NULL;
END $do$"""


def test_wrong_uuid_columns_refused():
    s = Stack("ingest_uuids_refused", services=())
    try:
        elems = [el("r1", [("ip", "192.0.2.1"), ("domain", "r.example")]), el("r2", [("ip", "192.0.2.1")])]
        au, iu = [uuid7(), uuid7()], [uuid7(), uuid7()]
        from0 = "('[0:1]={%s,%s}')"
        bad = {
            "alert uuids short": ([au[0]], iu), "alert uuids long": (au + [uuid7()], iu),
            "alert uuids empty": ([], iu), "pair uuids short": (au, iu[:1]), "pair uuids long": (au, iu + [uuid7()]),
            "pair uuids empty": (au, []),
        }
        for what, uu in bad.items():
            try:
                s.sql(REFUSED % call(elems, 24, uu))
            except RuntimeError as e:
                raise AssertionError("%s: not refused with 22023: %s" % (what, e))
        args = ingest_columns.column_list(elems, ["{}", "{}"], 24, uuids=(au, iu))
        for k, u in ((18, au), (19, iu)):
            a = list(args)
            a[k] = from0 % tuple(u) + "::uuid[]"
            try:
                s.sql(REFUSED % ("calseta_ingest_columns(%s)" % ", ".join(a)))
            except RuntimeError as e:
                raise AssertionError("column %d from 0: not refused with 22023: %s" % (k + 1, e))
        for t in ("alerts", "indicators", "enrichment_jobs", "detection_rules", "indicator_sightings"):
            assert_eq(s.sql_value("SELECT count(*) FROM %s" % t), "0", t)
        s.sql("SELECT count(*) FROM calseta_ingest_columns(%s)" % ", ".join(args))
        assert_eq(s.sql("SELECT uuid::text FROM alerts ORDER BY id"), [[au[0]], [au[1]]])
    finally:
        s.stop()


COUNTS = ("SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM indicators), "
          "(SELECT count(*) FROM enrichment_jobs), (SELECT count(*) FROM detection_rules), "
          "(SELECT count(*) FROM indicator_sightings), (SELECT count(*) FROM activity_events)")


def test_uuid_twice_fails_the_call():
    """A uuid given twice in one call, or one a row already has, fails the whole call on the
    unique index: nothing of it is written (not its rule stub, indicators, alerts or jobs)."""
    s = Stack("ingest_uuids_twice", services=())
    try:
        first = [el("t0", [("ip", "192.0.2.50")])]
        fa, fi = [uuid7()], [uuid7()]
        s.sql("SELECT count(*) FROM %s" % call(first, 24, (fa, fi)))
        before = s.sql(COUNTS)
        elems = [el("t1", [("ip", "192.0.2.1"), ("domain", "t.example")], rule="rule-new"),
                 el("t2", [("ip", "192.0.2.50"), ("ip", "192.0.2.2")], rule="rule-new")]
        u = uuid7()
        cases = {
            "an alert uuid twice": ([u, u], [uuid7() for _ in range(4)]),
            "a pair uuid twice": ([uuid7(), uuid7()], [u, uuid7(), uuid7(), u]),
            "an existing alert's uuid": ([uuid7(), fa[0]], [uuid7() for _ in range(4)]),
            "an existing indicator's uuid": ([uuid7(), uuid7()], [uuid7(), uuid7(), uuid7(), fi[0]]),
        }
        for what, uu in cases.items():
            try:
                s.sql("SELECT count(*) FROM %s" % call(elems, 24, uu))
                raise AssertionError("%s: accepted" % what)
            except RuntimeError as e:
                assert "duplicate key value violates unique constraint" in str(e), (what, e)
            assert_eq(s.sql(COUNTS), before, what)
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules WHERE source_rule_id = 'rule-new'"), "0")
    finally:
        s.stop()


def test_new_indicator_retry_keeps_supplied_uuids():
    """A batch whose new indicator another batch commits first retries its insert (ON CONFLICT):
    the value keeps the other batch's uuid, and this batch's other new indicator gets the uuid
    this batch supplied for it."""
    s = Stack("ingest_uuids_retry", services=())
    try:
        s.sql(FAILING_UUID7)
        a_elems = [el("ra", [("ip", "192.0.2.77")])]
        a_uuids = ([uuid7()], [uuid7()])
        # the first batch's transaction left open (psql fed on stdin) until the second waits on it
        a = subprocess.Popen(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        a.stdin.write("BEGIN;\nSELECT count(*) FROM %s;\nSELECT 'first done' AS mark;\n" % call(a_elems, 24, a_uuids))
        a.stdin.flush()
        try:
            wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                                         "AND query LIKE '%first done%'") == "1", what="the first batch to hold its insert")
            b_elems = [el("rb", [("domain", "rb.example"), ("ip", "192.0.2.77")])]
            b_uuids = ([uuid7()], [uuid7(), uuid7()])
            second = {}

            def run_second():
                try:
                    s.sql("SELECT count(*) FROM %s" % call(b_elems, 24, b_uuids))
                    second["ok"] = True
                except Exception as e:  # reported below, in the test's thread
                    second["error"] = e

            t = threading.Thread(target=run_second)
            t.start()
            wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND query LIKE '%calseta_ingest_columns%'") == "1",
                     what="the second batch to wait for the first")
            assert "ok" not in second and "error" not in second, second
        finally:
            a.stdin.write("COMMIT;\n")
            a.stdin.close()
        assert_eq(a.wait(timeout=30), 0, a.stderr.read())
        t.join(timeout=60)
        assert not t.is_alive(), "the second batch did not finish"
        assert_eq(second, {"ok": True})
        got = dict((r[0], r[1]) for r in s.sql("SELECT value, uuid FROM indicators"))
        assert_eq(got, {"192.0.2.77": a_uuids[1][0], "rb.example": b_uuids[1][0]})
        assert_eq(s.sql("SELECT uuid::text, (SELECT array_agg(i.value ORDER BY i.value) FROM indicators i "
                        "WHERE i.id = ANY (a.indicator_ids)) FROM alerts a ORDER BY id"),
                  [[a_uuids[0][0], "{192.0.2.77}"], [b_uuids[0][0], "{192.0.2.77,rb.example}"]])
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
