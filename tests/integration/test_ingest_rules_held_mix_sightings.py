#!/usr/bin/env python3
"""test_ingest_rules_held_mix_sightings.py - calseta_ingest_columns() called straight from SQL: the
rules a batch names are all held (one shared lock each, existing and stub alike) whatever the mix
of existing, missing, blank and over-long references, and a mix's sightings row (the indicators
known before the batch that its new alerts carry, sorted by id) is the same whether the batch is
small (at most 64 elements and 64 indicator references: found by a loop) or not (found by a
statement), for well-formed columns and for interior offsets that are NULL or out of range."""
import json
import subprocess

import ingest_columns
from harness import Stack, assert_eq, run_tests


def el(fp, inds, rule="rule-a", source="generic"):
    return {"title": "T " + fp, "severity": "High", "source_name": source, "description": None,
            "occurred_at": "2026-01-01T00:00:00Z", "raw_payload": {"fp": fp}, "tags": ["x"],
            "fingerprint": fp, "indicators": [{"type": "ip", "value": v} for v in inds],
            "rule_ref": rule, "actor_key_prefix": "cai_fixed"}


def call(s, hours, elems, extra=""):
    """One transaction: the batch, then extra (SQL run before the commit, whose rows are returned
    after the batch's answers)."""
    return s.sql("SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, %d); %s"
                 % (json.dumps(elems), hours, extra))


def test_every_named_rule_held_and_stubs_made():
    s = Stack("ingest_rules_held", services=())
    try:
        a = s.sql_value("INSERT INTO detection_rules (name, source_rule_id, source_name) "
                        "VALUES ('A', 'A', 'generic') RETURNING id")
        b = s.sql_value("INSERT INTO detection_rules (name, source_rule_id, source_name) "
                        "VALUES ('B', 'B', 'generic') RETURNING id")
        long_ref = "L" * 501
        elems = [el("r1", ["192.0.2.1"], "B"), el("r2", ["192.0.2.2"], "A"), el("r3", [], "NEW-1"),
                 el("r4", [], "  "), el("r5", [], long_ref), el("r6", [], "A"), el("r7", [], "NEW-2"),
                 el("r8", [], "A", "elastic")]
        # inside the batch's transaction: the shared advisory locks this backend holds, as keys
        held = call(s, 0, elems,
                    "SELECT string_agg(((l.classid::bigint << 32) | l.objid::bigint)::text, ' ' ORDER BY 1) "
                    "FROM pg_locks l WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() "
                    "AND l.mode = 'ShareLock' AND l.granted")
        assert_eq(held[0], ["8"])
        rules = dict((r[0] + "/" + r[1], r[2]) for r in s.sql(
            "SELECT source_name, source_rule_id, id FROM detection_rules"))
        # the missing ones got stubs; blank and over-long references none
        assert_eq(sorted(rules), ["elastic/A", "generic/A", "generic/B", "generic/NEW-1", "generic/NEW-2"])
        assert_eq(rules["generic/A"], a)
        assert_eq(rules["generic/B"], b)
        # every rule the batch names held, the existing ones and the stubs (pg_locks shows a
        # bigint key as its two 32-bit halves)
        keys = s.sql_value("SELECT string_agg(hashint8extended(id, 727278)::text, ' ' ORDER BY 1) "
                           "FROM detection_rules")
        assert_eq(sorted(held[1][0].split(" "), key=int), sorted(keys.split(" "), key=int))
        links = dict(s.sql("SELECT a.fingerprint, coalesce(d.source_name || '/' || d.source_rule_id, '-') "
                           "FROM alerts a LEFT JOIN detection_rules d ON d.id = a.detection_rule_id"))
        assert_eq(links, {"r1": "generic/B", "r2": "generic/A", "r3": "generic/NEW-1", "r4": "-", "r5": "-",
                          "r6": "generic/A", "r7": "generic/NEW-2", "r8": "elastic/A"})
        # a batch naming only existing rules makes no stub and holds each once
        held = call(s, 0, [el("r9", [], "A"), el("r10", [], "NEW-1"), el("r11", [], "A")],
                    "SELECT count(*) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() "
                    "AND l.mode = 'ShareLock' AND l.granted")
        assert_eq(held, [["3"], ["2"]])
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules"), "5")
    finally:
        s.stop()


LOOP_ROW = "VALUES (resighted, ts)"    # the loop's insert of the row
STATEMENT_ROW = "SELECT s.ids, ts"       # the statement's


def run_reported(s, sql):
    """Runs sql (one call) with auto_explain reporting every nested statement, under a statement
    timeout (a loop left unbounded by out-of-range offsets runs for minutes). Returns the form
    that wrote the mix's sightings row: "loop", "statement" or None (no row written by either)."""
    script = ("SET client_min_messages = warning;\nLOAD 'auto_explain';\n"
              "SET auto_explain.log_min_duration = 0;\nSET auto_explain.log_nested_statements = on;\n"
              "SET auto_explain.log_level = notice;\nSET statement_timeout = '30s';\n"
              "SET client_min_messages = notice;\n" + sql + ";\n")
    r = subprocess.run(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=script, capture_output=True,
                       text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "calseta_ingest" in r.stderr, "auto_explain reported nothing:\n" + r.stderr[:2000]
    loop, statement = LOOP_ROW in r.stderr, STATEMENT_ROW in r.stderr
    assert not (loop and statement), r.stderr[:3000]
    return "loop" if loop else "statement" if statement else None


def last_row(s):
    """The newest sightings row's indicators, as their values in the row's own order (an unsorted
    row reads back unsorted), after checking the row is sorted by id and distinct."""
    newest = "(SELECT max(seen_at) FROM indicator_sightings)"
    assert_eq(s.sql_value("SELECT count(*) FROM indicator_sightings WHERE seen_at = " + newest), "1")
    rows = s.sql("SELECT i.value, l.id FROM indicator_sightings g, "
                 "unnest(g.indicator_ids) WITH ORDINALITY l(id, o) JOIN indicators i ON i.id = l.id "
                 "WHERE g.seen_at = %s ORDER BY l.o" % newest)
    ids = [int(r[1]) for r in rows]
    assert ids == sorted(set(ids)), "sightings row not sorted and distinct: %s" % ids
    return " ".join(r[0] for r in rows)


def sightings_count(s):
    return int(s.sql_value("SELECT count(*) FROM indicator_sightings"))


def mix_sightings(s, tag, pad):
    """A batch of new alerts, then a mix: duplicates of two of them, new alerts carrying some of
    the indicators known before it (and new ones), a known indicator named only by a duplicate.
    pad: new indicators added to every element of the mix (more references, none known). Returns
    the mix's sightings row as the values of its indicators, and the form that wrote it."""
    def ipv(i):
        return "198.51.%d.%d" % (tag, i)

    def pads(k):
        return ["203.0.%d.%d" % (tag, 20 * k + j) for j in range(pad)]

    call(s, 24, [el("%d-a" % tag, [ipv(1), ipv(2)]), el("%d-b" % tag, [ipv(3)]),
                 el("%d-c" % tag, [ipv(4), ipv(5)])])
    before = sightings_count(s)
    # the new alerts name their known indicators out of id order (3, then 2 before 1)
    elems = [el("%d-a" % tag, [ipv(5)] + pads(0)),             # a duplicate: names 5 only itself
             el("%d-n1" % tag, [ipv(3), ipv(9)] + pads(1)),    # new: known 3, new 9
             el("%d-b" % tag, [ipv(1)] + pads(2)),             # a duplicate naming 1, also named below
             el("%d-n2" % tag, [ipv(2), ipv(1), ipv(3)] + pads(3)),
             el("%d-n3" % tag, pads(4))]
    form = run_reported(s, "SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 24)" % json.dumps(elems))
    assert_eq(sightings_count(s), before + 1)
    return last_row(s), form


def test_mix_sightings_same_by_loop_and_statement():
    s = Stack("ingest_mix_sightings", services=())
    try:
        # 7 references: the loop; 7 + 5 * 14 = 77, over 64: the statement
        assert_eq(mix_sightings(s, 1, 0), ("198.51.1.1 198.51.1.2 198.51.1.3", "loop"))
        assert_eq(mix_sightings(s, 2, 14), ("198.51.2.1 198.51.2.2 198.51.2.3", "statement"))
        # a mix whose new alerts carry no known indicator writes no row, either way
        for tag, pad in ((3, 0), (4, 14)):
            call(s, 24, [el("%d-a" % tag, ["198.51.%d.1" % tag])])
            n = s.sql_value("SELECT count(*) FROM indicator_sightings")
            call(s, 24, [el("%d-a" % tag, ["198.51.%d.1" % tag]),
                         el("%d-n" % tag, ["203.0.%d.%d" % (tag, j) for j in range(1 + pad * 5)])])
            assert_eq(s.sql_value("SELECT count(*) FROM indicator_sightings"), n)
    finally:
        s.stop()


def columns_mix(s, tag, news, offs=None, fill=0):
    """Through the columns form: alerts of fingerprints <tag>-o1..3 carrying K1..K4 stored first
    (K4 by the third), then a mix: a duplicate of <tag>-o1 naming K3 (second), and new alerts with
    the indicators news gives (lists of K<i> / P<i> labels; P: new). offs: the mix's ind_offs, its
    interior entries replaced by these (None: NULL) where given. fill: indicator-less new alerts
    appended (a batch of more elements). Returns the labels of the row written (None: no row),
    the form that wrote it, and the alerts' indicator links by fingerprint."""
    def value(label):
        return "%s.%d.%s" % ("198.51" if label[0] == "K" else "203.0", tag, label[1:])

    def label(v):
        return ("K" if v.startswith("198.51.") else "P") + v.rsplit(".", 1)[1]

    call(s, 24, [el("%d-o1" % tag, [value("K1"), value("K2")]), el("%d-o2" % tag, [value("K3")]),
                 el("%d-o3" % tag, [value("K4")])])
    elems = [el("%d-n%d" % (tag, i), [value(x) for x in xs]) for i, xs in enumerate(news)]
    elems.insert(1, el("%d-o1" % tag, [value("K3")]))
    elems += [el("%d-f%d" % (tag, i), []) for i in range(fill)]
    args = ingest_columns.column_list(elems, ['{"e": %d}' % i for i in range(len(elems))], 24)
    if offs is not None:
        full = args[15][len("'{"):-len("}'::int4[]")].split(",")
        full[:len(offs)] = ["NULL" if o is None else str(o) for o in offs]
        args[15] = "'{%s}'::int4[]" % ",".join(full)
    before = sightings_count(s)
    form = run_reported(s, "SELECT count(*) FROM calseta_ingest_columns(%s)" % ", ".join(args))
    assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE fingerprint LIKE '%d-%%'" % tag),
              str(3 + len(news) + fill))
    links = dict((r[0].split("-", 1)[1], " ".join(label(v) for v in r[1].split(",")) if r[1] else "")
                 for r in s.sql("SELECT a.fingerprint, string_agg(i.value, ',' ORDER BY i.value) FROM alerts a "
                                "LEFT JOIN indicators i ON i.id = ANY (a.indicator_ids) "
                                "WHERE a.fingerprint LIKE '%d-%%' AND a.fingerprint NOT LIKE '%d-f%%' "
                                "GROUP BY 1" % (tag, tag)))
    if sightings_count(s) == before:
        return None, form, links
    assert_eq(sightings_count(s), before + 1)
    return " ".join(label(v) for v in last_row(s).split(" ")), form, links


def test_mix_loop_edge_cases():
    s = Stack("ingest_mix_loop_edges", services=())
    tags = iter(range(10, 250))
    try:
        # a NULL value in a new alert's indicators (its position has no id), through the document
        # form, which the loop and the statement both skip
        for pad, form in ((0, "loop"), (14, "statement")):
            tag = next(tags)
            call(s, 24, [el("%d-a" % tag, ["198.51.%d.1" % tag, "198.51.%d.2" % tag])])
            elems = [el("%d-a" % tag, []), el("%d-n" % tag, ["198.51.%d.2" % tag]),
                     el("%d-m" % tag, ["203.0.%d.%d" % (tag, j) for j in range(pad * 5)])]
            elems[1]["indicators"].insert(0, {"type": "ip", "value": None})
            got = run_reported(s, "SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 24)"
                               % json.dumps(elems))
            assert_eq((last_row(s), got), ("198.51.%d.2" % tag, form))
        # one element naming the same known indicator twice (the columns form keeps both references)
        for fill, form in ((0, "loop"), (64, "statement")):
            row, got, links = columns_mix(s, next(tags), [["K2", "K2", "P1"], ["P2", "K4", "K4"]], fill=fill)
            assert_eq((row, got), ("K2 K4", form))
            assert_eq((links["n0"], links["n1"]), ("K2 P1", "K4 P2"))
        # exactly 64 references (the loop) and 65 (the statement): 2 + 1 + 61 or 62 new ones
        for extra, form in ((61, "loop"), (62, "statement")):
            row, got, links = columns_mix(s, next(tags), [["K1", "K4"], ["P%d" % j for j in range(extra)]])
            assert_eq((row, got), ("K1 K4", form))
        # 64 elements (the loop) and 65 (the statement), few references
        for fill, form in ((60, "loop"), (61, "statement")):
            row, got, links = columns_mix(s, next(tags), [["K1"], ["K4", "K2"], ["P1"]], fill=fill)
            assert_eq((row, got), ("K1 K2 K4", form))
        # malformed interior offsets (direct callers only: the intake sends running counts). The
        # mix's references: n0 K1 P1 (1, 2), the duplicate K3 (3), n1 K2 (4), n2 K4 P2 (5, 6);
        # well-formed {0,2,3,4,6}. Each element reads ind_refs[lo + 1 : hi], clipped, none when
        # either bound is NULL: the batch is stored, the same row either way, in bounded time.
        news = [["K1", "P1"], ["K2"], ["K4", "P2"]]
        for offs, row, n0, n1 in (
                ([0, 2, 3, 4, 6], "K1 K2 K4", "K1 P1", "K2"),
                ([0, None, 3, 4, 6], "K2 K4", "", "K2"),       # the first and the duplicate: none
                ([0, 2, None, 4, 6], "K1 K4", "K1 P1", ""),    # the duplicate and the second: none
                ([0, 2, -2000000000, 4, 6], "K1 K2 K3 K4", "K1 P1", "K1 K2 K3 P1"),  # the second: 1..4
                ([0, 2000000000, 3, 4, 6], "K1 K2 K3 K4", "K1 K2 K3 K4 P1 P2", "K2"),  # the first: all
                ([0, 2, 3, 2000000000, 6], "K1 K2 K4", "K1 P1", "K2 K4 P2")):  # the second: 4..6
            for fill, form in ((0, "loop"), (64, "statement")):
                got = columns_mix(s, next(tags), news, offs, fill)
                assert_eq(got[:2], (row, form))
                assert_eq((got[2]["n0"], got[2]["n1"]), (n0, n1))
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
