#!/usr/bin/env python3
"""test_ingest_big_batch.py - one large batch with many new indicators per alert goes through
calseta_ingest_batch in about linear time (the function runs with hash and merge joins off, so
a join of the batch's indicators to the new ones once compared every pair: about 9 s for this
batch, 1 s without it), and every alert links exactly its indicators, old and new."""
import json
import subprocess
import time

import ingest_columns  # noqa: E402
from harness import Stack, assert_eq, run_tests, wait_for
from test_ingest_rule_race import Session

ALERTS = 400
NEW_PER_ALERT = 20
OLD = [("ip", "203.0.113.1"), ("domain", "old.big-batch.example")]
SHARED_NEW = ("ip", "203.0.113.200")


def indicators_of(i):
    own = [("domain", "n%d-%d.big-batch.example" % (i, k)) for k in range(NEW_PER_ALERT)]
    return own + OLD + [SHARED_NEW]


def batch():
    out = []
    for i in range(ALERTS):
        out.append({"title": "Big %d" % i, "severity": "High", "source_name": "generic",
                    "description": None, "occurred_at": "2026-01-01T00:00:00Z", "raw_payload": {"i": i},
                    "tags": [], "fingerprint": "big-%d" % i,
                    "indicators": [{"type": t, "value": v} for t, v in indicators_of(i)],
                    "rule_ref": "big-rule", "actor_key_prefix": "cai_big"})
    return json.dumps(out)


def psql_script(url, sql):
    r = subprocess.run(["psql", url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"],
                       input=sql, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_large_batch_of_new_indicators_is_fast_and_links_right():
    s = Stack("ingest_big_batch", services=())
    try:
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) VALUES "
              + ", ".join("('%s', '%s', now() - interval '1 day', now() - interval '1 day')" % o for o in OLD))
        doc = batch()
        started = time.monotonic()
        out = psql_script(s.db, "SELECT count(*) FROM calseta_ingest_batch($json$%s$json$::jsonb, 24);\n" % doc)
        took = time.monotonic() - started
        print("batch took %.2f s" % took)
        assert_eq(out, str(ALERTS))
        assert took < 5.0, "a batch of %d alerts x %d new indicators took %.1f s" % (ALERTS, NEW_PER_ALERT, took)

        ids = {(t, v): int(i) for t, v, i in s.sql("SELECT type, value, id FROM indicators")}
        assert_eq(len(ids), ALERTS * NEW_PER_ALERT + len(OLD) + 1)
        # the document form sends each distinct pair once (SHARED_NEW, in every element, too):
        # one id drawn per new indicator, none for a repeat, so the batch needed no second lookup
        assert_eq(s.sql_value("SELECT last_value FROM indicators_id_seq"), str(max(ids.values())))
        assert_eq(sorted(ids.values()), list(range(1, len(ids) + 1)))
        rows = s.sql("SELECT title, indicator_ids FROM alerts")
        assert_eq(len(rows), ALERTS)
        for title, links in rows:
            i = int(title.split()[1])
            want = sorted(ids[k] for k in indicators_of(i))
            got = [int(x) for x in links.strip("{}").split(",")]
            assert_eq(got, want, title)
        # the indicators known before the batch are sighted again once, the new ones not at all
        old_ids = sorted(ids[o] for o in OLD)
        assert_eq(s.sql_value("SELECT count(*) FROM indicator_sightings"), "1")
        assert_eq(s.sql_value("SELECT indicator_ids::text FROM indicator_sightings"),
                  "{%s}" % ",".join(map(str, old_ids)))
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE detection_rule_id IS NULL"), "0")
    finally:
        s.stop()


def one(title, value):
    return json.dumps([{"title": title, "severity": "High", "source_name": "generic", "description": None,
                        "occurred_at": "2026-01-01T00:00:00Z", "raw_payload": {}, "tags": [],
                        "fingerprint": title, "indicators": [{"type": "ip", "value": value},
                                                             {"type": "ip", "value": title + ".x"}],
                        "actor_key_prefix": "cai_big"}])


def test_indicator_inserted_by_a_concurrent_batch_is_linked():
    # the second batch waits for the first's commit on the shared new value, inserts nothing for
    # it and reads it again in a statement of its own
    s = Stack("ingest_big_concurrent", services=())
    try:
        a, b = Session(s.db), Session(s.db)
        a.send("BEGIN; SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 0);" % one("cc-a", "192.0.2.55"))
        assert_eq(a.read_line(), "1")
        b.send("SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 0);" % one("cc-b", "192.0.2.55"))
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND datname = current_database()") == "1", 20, 0.05, "the second batch waiting")
        a.send("COMMIT; SELECT 'committed';")
        assert_eq(a.read_line(), "committed")
        assert_eq(b.read_line(), "1")
        assert_eq(a.close(), 0)
        assert_eq(b.close(), 0)
        shared = s.sql_value("SELECT id FROM indicators WHERE value = '192.0.2.55'")
        # the second batch's own new value went in after its first insert gave way, once
        assert_eq(s.sql_value("SELECT count(*) FROM indicators WHERE value IN ('cc-a.x', 'cc-b.x')"), "2")
        # the shared value, new to the second batch's lookup and found after its insert with the
        # first batch's last_seen, is sighted by the second batch
        assert_eq(s.sql_value("SELECT count(*) FROM indicator_sightings WHERE indicator_ids = ARRAY[%s]::bigint[]"
                              % shared), "1")
        for title in ("cc-a", "cc-b"):
            own = s.sql_value("SELECT id FROM indicators WHERE value = '%s.x'" % title)
            assert_eq(s.sql_value("SELECT indicator_ids::text FROM alerts WHERE title = '%s'" % title),
                      "{%s}" % ",".join(sorted([shared, own], key=int)), title)
    finally:
        s.stop()


def element(fp, values):
    return {"title": fp, "severity": "High", "source_name": "generic", "description": None,
            "occurred_at": "2026-01-01T00:00:00Z", "raw_payload": {}, "tags": [], "fingerprint": fp,
            "indicators": [{"type": "ip", "value": v} for v in values], "actor_key_prefix": "cai_big"}


def test_concurrent_fallback_beside_known_indicators_and_duplicates():
    # the second batch's insert gives way to the first's commit of a shared new value and every
    # pair is looked up again: its sightings row is rebuilt from that second lookup, so it must
    # hold exactly the indicators known before the batch that its new alerts carry (one known
    # all along, the shared one the other batch wrote), never a duplicate's, and each alert links
    # exactly its pairs' rows; alone (de-duplication off) and in a mix of a new alert and a
    # duplicate (de-duplication on, every fingerprint once: the lean lookup)
    for hours in (0, 24):
        s = Stack("ingest_big_fallback_%d" % hours, services=())
        try:
            s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) VALUES "
                  "('ip', '192.0.2.70', now() - interval '1 day', now() - interval '1 day'), "
                  "('ip', '192.0.2.71', now() - interval '1 day', now() - interval '1 day')")
            if hours:
                # the original of the duplicate, carrying 192.0.2.71 (known: sighted by nothing else)
                s.sql("SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 24)"
                      % json.dumps([element("fb-dup", ["192.0.2.71"])]))
                s.sql("DELETE FROM indicator_sightings; "
                      "UPDATE indicators SET last_seen = now() - interval '1 day' WHERE value = '192.0.2.71'")
            a, b = Session(s.db), Session(s.db)
            a.send("BEGIN; SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, %d);"
                   % (json.dumps([element("fb-a", ["192.0.2.56", "fb-a.x"])]), hours))
            assert_eq(a.read_line(), "1")
            second = [element("fb-b", ["fb-b.x", "192.0.2.70", "192.0.2.56"])]
            if hours:
                second.append(element("fb-dup", ["192.0.2.71", "192.0.2.70", "fb-dup.x"]))
            b.send("SELECT string_agg(is_duplicate::text, ',' ORDER BY idx) FROM calseta_ingest_batch($j$%s$j$::jsonb, %d);"
                   % (json.dumps(second), hours))
            wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND datname = current_database()") == "1", 20, 0.05,
                     "the second batch waiting")
            a.send("COMMIT; SELECT 'committed';")
            assert_eq(a.read_line(), "committed")
            assert_eq(b.read_line(), "false,true" if hours else "false")
            assert_eq(a.close(), 0)
            assert_eq(b.close(), 0)
            ids = {v: i for v, i in s.sql("SELECT value, id FROM indicators")}
            # each value once; the duplicate's own new value is stored, unlinked
            assert_eq(sorted(ids), sorted(["192.0.2.56", "192.0.2.70", "192.0.2.71", "fb-a.x", "fb-b.x"]
                                          + (["fb-dup.x"] if hours else [])))

            def links(*vs):
                return "{%s}" % ",".join(sorted((ids[v] for v in vs), key=int))
            assert_eq(s.sql_value("SELECT indicator_ids::text FROM alerts WHERE title = 'fb-a'"),
                      links("192.0.2.56", "fb-a.x"))
            assert_eq(s.sql_value("SELECT indicator_ids::text FROM alerts WHERE title = 'fb-b'"),
                      links("192.0.2.56", "192.0.2.70", "fb-b.x"))
            if hours:
                assert_eq(s.sql("SELECT indicator_ids::text, duplicate_count FROM alerts WHERE title = 'fb-dup'"),
                          [[links("192.0.2.71"), "1"]])
            # one row, the second batch's: the first batch's values were all new to it
            assert_eq(s.sql("SELECT indicator_ids::text FROM indicator_sightings"),
                      [[links("192.0.2.56", "192.0.2.70")]])
        finally:
            s.stop()


def test_pair_sent_twice_is_one_indicator():
    # calseta_ingest_columns() draws a new pair's id at its lookup, one per position: a pair sent
    # at two positions (the intake sends each once; another caller may not) is written once, and
    # both positions then read that row's id
    s = Stack("ingest_pair_twice", services=())
    try:
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) "
              "VALUES ('ip', '198.51.100.1', now() - interval '1 day', now() - interval '1 day')")
        elems = [{"title": "twice-%d" % i, "severity": "High", "source_name": "generic", "description": None,
                  "occurred_at": "2026-01-01T00:00:00Z", "tags": [], "fingerprint": "twice-%d" % i,
                  "actor_key_prefix": "cai_big"} for i in range(2)]
        args = ingest_columns.column_list(elems, ["{}", "{}"], 0)
        # 198.51.100.7 at two positions of two alerts, in.example at two positions of one
        pairs = [("ip", "198.51.100.7"), ("ip", "198.51.100.7"), ("ip", "198.51.100.1"),
                 ("domain", "twice.example"), ("domain", "in.example"), ("domain", "in.example")]
        args[13] = ingest_columns.arr([t for t, _ in pairs]) + "::text[]"
        args[14] = ingest_columns.arr([v for _, v in pairs]) + "::text[]"
        args[15] = "'{0,2,6}'::int4[]"
        args[16] = "'{1,3,2,4,5,6}'::int4[]"
        assert_eq(s.sql_value("SELECT count(*) FROM calseta_ingest_columns(%s)" % ", ".join(args)), "2")
        ids = {v: i for v, i in s.sql("SELECT value, id FROM indicators")}
        assert_eq(sorted(ids), ["198.51.100.1", "198.51.100.7", "in.example", "twice.example"])
        for title, want in (("twice-0", ["198.51.100.7", "198.51.100.1"]),
                            ("twice-1", ["198.51.100.7", "twice.example", "in.example"])):
            assert_eq(s.sql_value("SELECT indicator_ids::text FROM alerts WHERE title = '%s'" % title),
                      "{%s}" % ",".join(sorted((ids[v] for v in want), key=int)), title)
        # the known one sighted, the new ones not
        assert_eq(s.sql("SELECT indicator_ids::text FROM indicator_sightings"), [["{%s}" % ids["198.51.100.1"]]])
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
