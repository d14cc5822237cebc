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
import subprocess
import threading

import ingest_columns  # noqa: E402
from harness import Stack, assert_eq, run_tests, wait_for

ODD = "a\u0001b\uffffc\U0001F600d\"e\\f'g"


def read_json(s, q):
    """One text value read back exactly (as a JSON string: psql's rows cannot carry every
    character)."""
    return json.loads(s.sql_value("SELECT to_json((%s))::text" % q))


def hold_jobs(s, seconds=1.5):
    """A session holding enrichment_jobs locked for a while, started now: the first batch
    waits on it, so alerts posted meanwhile queue and go in batches of several."""
    p = subprocess.Popen(["psql", s.db, "-X", "-q", "-c", "BEGIN; LOCK TABLE enrichment_jobs IN EXCLUSIVE MODE; "
                          "SELECT pg_sleep(%s); COMMIT;" % seconds], stdout=subprocess.DEVNULL)
    wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                 "WHERE c.relname = 'enrichment_jobs' AND l.mode = 'ExclusiveLock' "
                                 "AND l.granted") == "1", what="the lock")
    return p


def batches(s, key):
    """The intake's ingest transactions so far, from /metrics."""
    m = s.request("GET", "/metrics", key=key).body.decode()
    count = [float(x.split()[-1]) for x in m.splitlines() if x.startswith("calseta_ingest_batch_size_count")]
    assert len(count) == 1, [x for x in m.splitlines() if "batch_size" in x]
    return count[0]


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

        # at once, behind a lock, so that several go in one batch
        held = hold_jobs(s)
        threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        held.wait()
        for r in results:
            assert_eq(r.status, 202, r.body)
            uuids.append(r.json()["data"]["alert_uuid"])
        assert batches(s, key) < len(results), "every alert went alone"
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


def test_raw_payload_bytes_through_the_intake():
    """A body sent as raw UTF-8 (not \\u escapes: U+FFFF, a 4-byte character, an accented
    letter as their bytes), with quotes, backslashes and escapes inside its strings and odd
    spacing, is stored as its exact bytes, trimmed of the whitespace around it; several at once,
    and at least one batch held more than one of them."""
    s = Stack("ingest_columns_raw", env={"ALERT_DEDUP_WINDOW_HOURS": 0})
    try:
        key = s.create_key("alerts:write,alerts:read")
        bodies = [('{"title":  "raw \uffff \U0001F600 é \\"q\\" b\\\\s %d", "severity":"low",\n'
                   ' "k" : ["\\u0001", "\\\\", "\\"", "é\\u00e9", 1e19, {"x":  [ ]}]}' % i)
                  for i in range(12)]
        for b in bodies:
            json.loads(b)  # valid JSON, as sent
        results = [None] * len(bodies)

        def post(i):
            results[i] = s.request("POST", "/v1/ingest/generic", key=key, body=(" \n" + bodies[i] + "\t ").encode(),
                                   headers={"Content-Type": "application/json"})

        held = hold_jobs(s)
        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        held.wait()
        for i, r in enumerate(results):
            assert_eq(r.status, 202, r.body)
            u = r.json()["data"]["alert_uuid"]
            got = bytes.fromhex(s.sql_value("SELECT encode(convert_to(raw_payload::text, 'UTF8'), 'hex') "
                                            "FROM alerts WHERE uuid = '%s'" % u))
            assert_eq(got, bodies[i].encode())
        # some batch held more than one alert (else this tested single-alert batches only)
        assert batches(s, key) < len(bodies), "every alert went alone"
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

# An indicator's id is not compared: since 0080 a new indicator's id is drawn in the batch's order
# of pairs, before 0080 in their sorted order. Links are compared as the (type, value) pairs they
# name, an id that names no row as "missing" (an id drawn for a pair and never written, say), and
# each list of ids is checked to be sorted and distinct.
NAMED = ("(SELECT coalesce(array_agg(coalesce(i.type || ':' || i.value, 'missing') "
         "ORDER BY coalesce(i.type || ':' || i.value, 'missing')), '{}') "
         "FROM unnest(%s) l(id) LEFT JOIN indicators i ON i.id = l.id)")
DANGLING = ("SELECT (SELECT count(*) FROM alerts a, unnest(a.indicator_ids) l(id) "
            "WHERE NOT EXISTS (SELECT 1 FROM indicators i WHERE i.id = l.id)) + "
            "(SELECT count(*) FROM indicator_sightings g, unnest(g.indicator_ids) l(id) "
            "WHERE NOT EXISTS (SELECT 1 FROM indicators i WHERE i.id = l.id))")
SORTED = "coalesce(%s = (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(%s) x), cardinality(%s) = 0)"
COMPARED = [
    ("alerts", "SELECT id, title, severity, source_name, description, occurred_at, raw_payload::text, tags, "
               "fingerprint, (SELECT source_rule_id FROM detection_rules d WHERE d.id = detection_rule_id), "
               "%s, %s, ingest_event, ingest_key_prefix, duplicate_count, last_seen_at IS NOT NULL "
               "FROM alerts ORDER BY id" % (NAMED % "indicator_ids", SORTED % (("indicator_ids",) * 3))),
    ("indicators", "SELECT type, value, first_seen = last_seen FROM indicators ORDER BY type, value"),
    ("sightings", "SELECT %s, %s FROM indicator_sightings ORDER BY seen_at, 1"
                  % (NAMED % "indicator_ids", SORTED % (("indicator_ids",) * 3))),
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
        # every link names a row that exists
        for st in (new, wrap, old):
            assert_eq(st.sql_value(DANGLING), "0")
        # the sequence went through every path: duplicates, repeats in a batch, stubs, sightings
        assert int(new.sql_value("SELECT count(*) FROM activity_events WHERE event_type = 'alert_deduplicated'")) >= 5
        assert int(new.sql_value("SELECT count(*) FROM indicator_sightings")) >= 3
        assert_eq(new.sql_value("SELECT count(*) FROM detection_rules WHERE source_rule_id = 'rule-new'"), "1")
        assert_eq(read_json(new, "SELECT value FROM indicators WHERE type = 'domain'"), IND[8][1])
    finally:
        new.stop()
        old.stop()
        wrap.stop()


REFUSED = """DO $do$ BEGIN
    PERFORM count(*) FROM %s;
    RAISE EXCEPTION 'accepted';
EXCEPTION WHEN invalid_parameter_value THEN NULL;
END $do$"""


def test_wrong_lengths_refused():
    """Columns of different lengths, or offsets that do not start at 0 and end at the number of
    tags and of indicator references, store nothing (invalid_parameter_value; the intake answers
    500, the columns being its own). Each case would otherwise store a field on the wrong alert,
    none or the wrong one, or fail later with another error."""
    s = Stack("ingest_columns_refused", services=())
    try:
        good = ingest_columns.column_list([el("a", [0], tags=("x",)), el("b", [1], tags=("y", "z"))],
                                          ['{}', '{}'], 24)
        assert_eq(good[11], "'{0,1,3}'::int4[]")
        assert_eq(good[15], "'{0,1,2}'::int4[]")
        bad = {
            "a short title column": (0, ingest_columns.arr(["T a"]) + "::text[]"),
            "NULL titles": (0, "NULL::text[]"),
            "ind_values shorter than ind_types": (14, ingest_columns.arr([IND[0][1]]) + "::text[]"),
            "tag_offs of length n": (11, "'{0,1}'::int4[]"),
            "tag_offs not from 0": (11, "'{1,2,3}'::int4[]"),
            "tag_offs short of the tags": (11, "'{0,1,2}'::int4[]"),
            "tag_offs past the tags": (11, "'{0,2,4}'::int4[]"),
            "NULL tag_vals": (12, "NULL::text[]"),
            "ind_offs not from 0": (15, "'{1,1,2}'::int4[]"),
            "ind_offs short of the references": (15, "'{0,1,1}'::int4[]"),
            "NULL ind_refs": (16, "NULL::int4[]"),
        }
        for what, (k, value) in bad.items():
            args = list(good)
            args[k] = value
            try:
                s.sql(REFUSED % ("calseta_ingest_columns(%s)" % ", ".join(args)))
            except RuntimeError as e:
                raise AssertionError("%s: not refused with 22023: %s" % (what, e))
        # the refusal names the function (the intake tells its own encoding's errors by it)
        try:
            s.sql("SELECT * FROM calseta_ingest_columns(%s)" % ", ".join(good[:11] + ["'{0,1,2}'::int4[]"] + good[12:]))
            raise AssertionError("accepted")
        except RuntimeError as e:
            assert "calseta_ingest_columns: " in str(e), e
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "0")
        assert_eq(s.sql_value("SELECT count(*) FROM indicators"), "0")
        s.sql("SELECT * FROM calseta_ingest_columns(%s)" % ", ".join(good))
        assert_eq(s.sql("SELECT fingerprint, tags, cardinality(indicator_ids) FROM alerts ORDER BY id"),
                  [["a", "{x}", "1"], ["b", "{y,z}", "1"]])
    finally:
        s.stop()


def test_columns_not_from_1_refused():
    """A column whose subscripts do not start at 1 ('[0:1]={...}', which a direct caller can
    send) is refused like one of the wrong length: the new indicators' insert reads a pair by
    subscript at the position the lookup numbered it, so such a column paired one indicator's
    type with another's value under a new id (here: the new ip would have been written as
    (ip, x.example), and the alert linked to it), and every other column is read by subscript
    too. Nothing is stored; the same batch from 1 is stored right."""
    s = Stack("ingest_columns_bounds", services=())
    try:
        s.sql("INSERT INTO indicators (type, value, first_seen, last_seen) "
              "VALUES ('domain', 'x.example', now(), now())")
        elems = [{"title": "T b%d" % i, "severity": "High", "source_name": "generic", "description": "d",
                  "occurred_at": "2026-01-01T00:00:00Z", "tags": ["t%d" % i], "fingerprint": "b%d" % i,
                  "rule_ref": "rule-b", "actor_key_prefix": "cai_cols",
                  "indicators": [{"type": "ip", "value": "198.51.100.9"}, {"type": "domain", "value": "x.example"}][i:i + 1]}
                 for i in range(2)]
        good = ingest_columns.column_list(elems, ['{}', '{}'], 24)
        assert_eq(s.sql("SELECT %s, %s" % (good[13], good[14])), [["{ip,domain}", "{198.51.100.9,x.example}"]])

        def from0(k):  # column k, the same values with subscripts from 0
            return ("(SELECT ('[0:' || (cardinality(x) - 1) || ']=' || x::text)::%s FROM (SELECT %s AS x) q)"
                    % (good[k].rsplit("::", 1)[1], good[k]))

        names = ["titles", "severities", "source_names", "descriptions", "occurred", "fingerprints",
                 "rule_refs", "key_prefixes", "raw_members", "check_nums", "payloads", "tag_offs",
                 "tag_vals", "ind_types", "ind_values", "ind_offs", "ind_refs"]
        for k, name in enumerate(names):
            if good[k].startswith("NULL"):
                continue
            args = list(good)
            args[k] = from0(k)
            try:
                s.sql(REFUSED % ("calseta_ingest_columns(%s)" % ", ".join(args)))
            except RuntimeError as e:
                raise AssertionError("%s from 0: not refused with 22023: %s" % (name, e))
        # both indicator columns from 0 (positions and subscripts agree within them, not with the
        # references, which count from 1)
        args = list(good)
        args[13], args[14] = from0(13), from0(14)
        s.sql(REFUSED % ("calseta_ingest_columns(%s)" % ", ".join(args)))
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "0")
        assert_eq(s.sql("SELECT type, value FROM indicators ORDER BY id"), [["domain", "x.example"]])
        s.sql("SELECT * FROM calseta_ingest_columns(%s)" % ", ".join(good))
        assert_eq(s.sql("SELECT a.fingerprint, i.type, i.value FROM alerts a, unnest(a.indicator_ids) l(id) "
                        "JOIN indicators i ON i.id = l.id ORDER BY a.id"),
                  [["b0", "ip", "198.51.100.9"], ["b1", "domain", "x.example"]])
    finally:
        s.stop()


def test_document_forms_refuse_and_store_exactly():
    """calseta_ingest_document() checks its own payload count (a public function: its callers'
    checks do not cover a direct call); the joined form (old intakes during an upgrade) refuses a
    wrong count and stores each piece byte for byte; an element whose "indicators" is JSON null is
    refused as before the columns; offsets built by the document forms put each tag and
    indicator on its own element in a batch of many."""
    s = Stack("ingest_columns_document", services=())
    try:
        two = json.dumps([el("j1", [0], tags=("a",)), el("j2", [1, 2], tags=("b", "c"))])
        for hours in (0, 24):
            s.sql(REFUSED % ("calseta_ingest_document('%s', %d, ARRAY['{}'])" % (two, hours)))
            s.sql(REFUSED % ("calseta_ingest_document('%s', %d, ARRAY['{}', '{}', '{}'])" % (two, hours)))
            s.sql(REFUSED % ("calseta_ingest_batch_joined('%s', %d, 'x')" % (two, hours)))
            s.sql(REFUSED % ("calseta_ingest_batch_joined('%s', %d, E'{}\\u0001{}\\u0001{}')" % (two, hours)))
            nul = json.dumps([dict(el("n1", []), indicators=None)])
            s.sql(REFUSED % ("calseta_ingest_batch('%s', %d)" % (nul, hours)))
            s.sql(REFUSED % ("calseta_ingest_batch_joined('%s', %d, '{}')" % (nul, hours)))
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "0")
        # a null entry in "indicators" names no indicator, as before the columns (not refused)
        for k, inds in enumerate(([None], [{"type": "ip", "value": "192.0.2.77"}, None])):
            entry = dict(el("nn%d" % k, []), indicators=inds)
            s.sql("SELECT * FROM calseta_ingest_batch('%s', 0)" % json.dumps([entry]))
            assert_eq(s.sql_value("SELECT cardinality(indicator_ids) FROM alerts WHERE fingerprint = 'nn%d'" % k),
                      str(k))
        # a missing "indicators" is none
        bare = el("ni", [])
        del bare["indicators"]
        s.sql("SELECT * FROM calseta_ingest_batch('%s', 0)" % json.dumps([bare]))
        assert_eq(s.sql_value("SELECT indicator_ids FROM alerts WHERE fingerprint = 'ni'"), "{}")
        # each piece of the joined form stored as given, whitespace and all
        pieces = [' {"p": 1}\n', '\t[1, 2 ,3]  ']
        ids = s.sql("SELECT alert_id FROM calseta_ingest_batch_joined('%s', 0, %s) ORDER BY idx"
                    % (two, "E'" + "\\u0001".join(p.replace("\\", "\\\\") for p in pieces) + "'"))
        got = [read_json(s, "SELECT raw_payload::text FROM alerts WHERE id = %s" % i[0]) for i in ids]
        assert_eq(got, pieces)
        # many elements, uneven tags and indicators: every one on its own alert
        many = [el("m%d" % i, list(range(i % 4)), tags=tuple("t%d-%d" % (i, k) for k in range(i % 3)))
                for i in range(60)]
        rows = s.sql("CREATE TEMP TABLE r AS SELECT * FROM calseta_ingest_batch('%s', 0); "
                     "SELECT a.fingerprint, array_to_string(a.tags, ','), (SELECT string_agg(x.value, ',' "
                     "ORDER BY x.value) FROM indicators x WHERE x.id = ANY (a.indicator_ids)) "
                     "FROM r JOIN alerts a ON a.id = r.alert_id ORDER BY r.idx" % json.dumps(many))
        assert_eq(rows, [["m%d" % i, ",".join("t%d-%d" % (i, k) for k in range(i % 3)),
                          ",".join(sorted(IND[k][1] for k in range(i % 4)))] for i in range(60)])
    finally:
        s.stop()


def test_early_years_stored_exactly():
    """occurred_at of years 1-999 goes as a binary timestamp and is stored as the instant given
    (as text, an unpadded year 50 was read as 2050 or refused)."""
    s = Stack("ingest_columns_years", env={"ALERT_DEDUP_WINDOW_HOURS": 0})
    try:
        key = s.create_key("alerts:write")
        for ts in ("0050-06-01T12:00:00Z", "0999-01-02T03:04:05.123456Z", "0001-01-01T00:00:00Z"):
            r = s.request("POST", "/v1/ingest/generic", key=key,
                          body={"title": "year " + ts, "severity": "low", "occurred_at": ts})
            assert_eq(r.status, 202, r.body)
        assert_eq(s.sql("SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') "
                        "FROM alerts ORDER BY id"),
                  [["0050-06-01 12:00:00.000000"], ["0999-01-02 03:04:05.123456"], ["0001-01-01 00:00:00.000000"]])
    finally:
        s.stop()


def test_raw_member():
    """An element's raw_member stores that member of its payload (the intake never sends one;
    direct callers may): present, the member's text; missing, the batch is refused (the payload
    column is NOT NULL), as before the columns."""
    s = Stack("ingest_columns_member", services=())
    try:
        one = [dict(el("rm1", [0]), raw_member="inner"), dict(el("rm2", []), raw_member="inner",
                                                              check_numbers=True)]
        s.sql("SELECT * FROM calseta_ingest_batch('%s', 0, '[{\"inner\": {\"a\":  [1]}}, {\"inner\": 2}]')"
              % json.dumps(one))
        assert_eq(s.sql("SELECT fingerprint, raw_payload::text FROM alerts ORDER BY id"),
                  [["rm1", '{"a":  [1]}'], ["rm2", "2"]])
        gone = [dict(el("rm3", []), raw_member="gone")]
        try:
            s.sql("SELECT * FROM calseta_ingest_batch('%s', 0, '[{\"inner\": 3}]')" % json.dumps(gone))
            raise AssertionError("accepted")
        except RuntimeError as e:
            assert "raw_payload" in str(e) and "not-null" in str(e), e
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "2")
    finally:
        s.stop()


def test_intake_refuses_an_unmigrated_database():
    """An intake whose database lacks calseta_ingest_columns() with the types it sends stops at
    start-up, naming the migration to run, instead of answering 500 to every alert."""
    s = Stack("ingest_columns_unmigrated", services=())
    try:
        # the previous form (18 arguments, no uuids) is there: not enough
        s.sql("ALTER FUNCTION calseta_ingest_columns(text[], text[], text[], text[], timestamptz[], text[], "
              "text[], text[], text[], boolean[], text[], integer[], text[], text[], text[], integer[], "
              "integer[], integer, uuid[], uuid[]) RENAME TO calseta_ingest_columns_gone")
        p = s.start_intake()
        wait_for(lambda: not p.alive(), timeout=20, what="the intake to stop")
        assert p.p.returncode != 0, p.p.returncode
        assert "calseta migrate" in p.text() and "0084_ingest_uuids_supplied.sql" in p.text(), p.text()
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
