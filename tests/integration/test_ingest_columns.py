"""The batch as typed columns: calseta_ingest_columns() stores every string exactly, and writes and
answers what the document form it replaced (0070's calseta_ingest_batch_joined()) did.

The intake sends each field of a batch as a binary array (array_recv reads it; no separator
joins the strings, which may hold any character but NUL). This posts alerts whose title,
description, tags and indicator value hold U+0001, U+FFFF, a 4-byte character, a quote and a
backslash, through the intake, and reads them back from the table and the API; then runs one
sequence of batches (new alerts, a storm, mixes of new alerts and duplicates, elements with no
indicators, no tags, NULL fields, a rule to stub) through calseta_ingest_columns() on one
database and through the previous body, loaded from its migration file, on another, and
compares every answer and every row written."""
import json
import os
import threading

import ingest_columns  # noqa: E402
from harness import Stack, assert_eq, run_tests

ODD = "a\u0001b\uffffc\U0001F600d\"e\\f'g"


def read_json(s, q):
    """One text value read back exactly (as a JSON string: psql's rows cannot carry every
    character)."""
    return json.loads(s.sql_value("SELECT to_json((%s))::text" % q))


def test_strings_exact_through_the_intake():
    s = Stack("ingest_columns_odd", env={"ALERT_DEDUP_WINDOW_HOURS": 24})
    try:
        key = s.create_key("alerts:write,alerts:read")
        uuids = []
        results = [None] * 6

        def post(i):
            body = {"kibana.alert.rule.name": ODD + " %d" % i, "kibana.alert.severity": "high",
                    "kibana.alert.rule.description": "desc " + ODD,
                    "kibana.alert.rule.tags": [ODD, "\u0001", "\uffff", "\U0001F600", "plain %d" % i],
                    "kibana.alert.rule.uuid": "rule " + ODD, "user.name": ODD + " acct", "n": i}
            if i == 5:  # no tags, no indicators, no description, no rule
                body = {"kibana.alert.rule.name": ODD + " bare", "kibana.alert.severity": "low"}
            results[i] = s.request("POST", "/v1/ingest/elastic", key=key, body=body)

        # at once, so that several go in one batch
        threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            assert_eq(r.status, 202, r.body)
            uuids.append(r.json()["data"]["alert_uuid"])
        for i, u in enumerate(uuids[:5]):
            a = "(SELECT %%s FROM alerts WHERE uuid = '%s')" % u
            assert_eq(read_json(s, a % "title"), ODD + " %d" % i)
            assert_eq(read_json(s, a % "description"), "desc " + ODD)
            assert_eq(json.loads(s.sql_value(a % "array_to_json(tags)::text")),
                      [ODD, "\u0001", "\uffff", "\U0001F600", "plain %d" % i])
            assert_eq(json.loads(s.sql_value(a % "(SELECT json_agg(i.value) FROM unnest(indicator_ids) l(id) "
                                                 "JOIN indicators i ON i.id = l.id)")), [ODD + " acct"])
            assert_eq(json.loads(s.sql_value(a % "raw_payload::text"))["n"], i)
            assert_eq(read_json(s, a % "(SELECT source_rule_id FROM detection_rules d WHERE d.id = detection_rule_id)"),
                      "rule " + ODD)
            got = s.request("GET", "/v1/alerts/" + u, key=key).json()["data"]
            assert_eq((got["title"], got["description"], got["tags"]),
                      (ODD + " %d" % i, "desc " + ODD, [ODD, "\u0001", "\uffff", "\U0001F600", "plain %d" % i]))
        a = "(SELECT %%s FROM alerts WHERE uuid = '%s')" % uuids[5]
        assert_eq(s.sql(a % "title IS NOT NULL, description IS NULL, tags = '{}', indicator_ids = '{}', "
                            "detection_rule_id IS NULL"), [["t", "t", "t", "t", "t"]])
        # one indicator row for the value all five carry
        assert_eq(s.sql_value("SELECT count(*) FROM indicators"), "1")
        # a repeat is a duplicate of its alert, found by the fingerprint of those strings
        results[0] = None
        post(0)
        assert_eq(results[0].status, 202, results[0].body)
        assert_eq(results[0].json()["data"]["is_duplicate"], True)
        assert_eq(results[0].json()["data"]["alert_uuid"], uuids[0])
    finally:
        s.stop()


IND = [("ip", "198.51.100.%d" % i) for i in range(8)] + [("domain", "h\u0001\U0001F600.example"),
                                                          ("account", "q\"\\'")]


def el(fp, inds, rule="rule-c", tags=("x",), title=None, desc="d"):
    return {"title": title or "T " + fp, "severity": "High", "source_name": "generic", "description": desc,
            "occurred_at": "2026-01-01T00:00:00Z", "tags": list(tags) if tags is not None else None,
            "fingerprint": fp, "indicators": [{"type": t, "value": v} for t, v in (IND[i] for i in inds)],
            "rule_ref": rule, "actor_key_prefix": "cai_cols"}


# (de-duplication window, elements); each element's payload is {"k": its place in the sequence}
SEQUENCE = [
    (24, [el("a", [0, 1]), el("b", [1, 2], tags=()), el("c", [], tags=None, desc=None, rule=None)]),
    (24, [el("a", [0]), el("a", [0]), el("d", [3, 8, 9], title=ODD), el("d", [3]), el("e", [2, 4])]),
    (24, [el("a", []), el("b", [1]), el("c", [])]),
    (24, [el("f", [5], rule="rule-new"), el("f", [5], rule="rule-new"), el("g", [6, 0])]),
    (0, [el("a", [0, 7]), el("h", [], tags=("y", ODD)), el("a", [7])]),
    (24, [el("h", [1]), el("i", [9, 8], rule=None), el("h", [1])]),
]

COMPARED = [
    ("alerts", "SELECT id, title, severity, source_name, description, occurred_at, raw_payload::text, tags, "
               "fingerprint, (SELECT source_rule_id FROM detection_rules d WHERE d.id = detection_rule_id), "
               "indicator_ids, ingest_event, ingest_key_prefix, duplicate_count, last_seen_at IS NOT NULL "
               "FROM alerts ORDER BY id"),
    ("indicators", "SELECT id, type, value, first_seen = last_seen FROM indicators ORDER BY id"),
    ("sightings", "SELECT indicator_ids FROM indicator_sightings ORDER BY seen_at, indicator_ids"),
    ("jobs", "SELECT id, alert_id FROM enrichment_jobs ORDER BY id"),
    ("events", "SELECT event_type, actor_type, actor_key_prefix, alert_id, \"references\" FROM activity_events "
               "ORDER BY id"),
    ("rules", "SELECT id, name, source_rule_id, source_name FROM detection_rules ORDER BY id"),
]


def test_same_as_the_document_form():
    """The columns, the previous body and the previous intake's form (now a wrapper that converts
    its document into the columns) store and answer the same."""
    new = Stack("ingest_columns_new", services=())
    old = Stack("ingest_columns_old", services=())
    wrap = Stack("ingest_columns_wrap", services=())
    try:
        body = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "migrations",
                                 "0070_ingest_payload_by_position.sql")).read()
        old.sql(body)
        k = 0
        for hours, elems in SEQUENCE:
            pays = []
            for _ in elems:
                pays.append('{"k": %d}' % k)
                k += 1
            answers = []
            joined = ("SELECT * FROM calseta_ingest_batch_joined($j$%s$j$::jsonb, %d, $p$%s$p$)"
                      % (json.dumps(elems), hours, "\x01".join(pays)))
            for s, call in ((new, ingest_columns.call_sql(elems, pays, hours)), (old, joined), (wrap, joined)):
                answers.append(s.sql("CREATE TEMP TABLE r AS %s; "
                                     "SELECT r.idx, r.alert_id, r.job_id, r.is_duplicate, r.duplicate_count, "
                                     "r.alert_uuid = a.uuid FROM r JOIN alerts a ON a.id = r.alert_id "
                                     "ORDER BY r.idx" % call))
            assert_eq(answers[0], answers[1], "batch %r" % [e["fingerprint"] for e in elems])
            assert_eq(answers[2], answers[1], "batch %r (wrapper)" % [e["fingerprint"] for e in elems])
            assert_eq(len(answers[0]), len(elems))
        for name, q in COMPARED:
            assert_eq(new.sql(q), old.sql(q), name)
            assert_eq(wrap.sql(q), old.sql(q), name + " (wrapper)")
        # the sequence went through every path: duplicates, repeats in a batch, stubs, sightings
        assert int(new.sql_value("SELECT count(*) FROM activity_events WHERE event_type = 'alert_deduplicated'")) >= 5
        assert int(new.sql_value("SELECT count(*) FROM indicator_sightings")) >= 3
        assert_eq(new.sql_value("SELECT count(*) FROM detection_rules WHERE source_rule_id = 'rule-new'"), "1")
        assert_eq(read_json(new, "SELECT value FROM indicators WHERE type = 'domain'"), IND[8][1])
    finally:
        new.stop()
        old.stop()
        wrap.stop()


def test_wrong_lengths_refused():
    """Columns of different lengths store nothing (invalid_parameter_value, 422 at the intake)."""
    s = Stack("ingest_columns_refused", services=())
    try:
        args = ingest_columns.columns([el("a", [0]), el("b", [1])], ['{}', '{}'], 24)
        short = args.replace(ingest_columns.arr(["T a", "T b"]), ingest_columns.arr(["T a"]), 1)
        assert short != args
        try:
            s.sql("SELECT * FROM calseta_ingest_columns(%s)" % short)
            raise AssertionError("accepted")
        except RuntimeError as e:
            assert "columns of other lengths" in str(e), e
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "0")
        assert_eq(s.sql_value("SELECT count(*) FROM indicators"), "0")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
