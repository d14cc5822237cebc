#!/usr/bin/env python3
"""test_ingest_fixed18_rules_mix.py - calseta_ingest_columns() called straight from SQL: the rules
a batch names are all held (one shared lock each, existing and stub alike) whatever the mix of
existing, missing, blank and over-long references, and a mix's sightings row (the indicators
known before the batch that its new alerts carry) is the same whether the batch has few
indicator references (found by a loop) or many (found by a statement)."""
import json

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
    s = Stack("ingest_fixed18_rules", services=())
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


def mix_sightings(s, tag, pad):
    """A batch of new alerts, then a mix: duplicates of two of them, new alerts carrying some of
    the indicators known before it (and new ones), a known indicator named only by a duplicate.
    pad: new indicators added to every element of the mix (more references, none known). Returns
    the mix's sightings row as the values of its indicators."""
    def ipv(i):
        return "198.51.%d.%d" % (tag, i)

    def pads(k):
        return ["203.0.%d.%d" % (tag, 20 * k + j) for j in range(pad)]

    call(s, 24, [el("%d-a" % tag, [ipv(1), ipv(2)]), el("%d-b" % tag, [ipv(3)]),
                 el("%d-c" % tag, [ipv(4), ipv(5)])])
    before = s.sql_value("SELECT count(*) FROM indicator_sightings")
    call(s, 24, [el("%d-a" % tag, [ipv(5)] + pads(0)),             # a duplicate: names 5 only itself
                 el("%d-n1" % tag, [ipv(3), ipv(9)] + pads(1)),    # new: known 3, new 9
                 el("%d-b" % tag, [ipv(1)] + pads(2)),             # a duplicate naming 1, also named below
                 el("%d-n2" % tag, [ipv(1), ipv(2), ipv(3)] + pads(3)),
                 el("%d-n3" % tag, pads(4))])
    assert_eq(s.sql_value("SELECT count(*) FROM indicator_sightings"), str(int(before) + 1))
    return s.sql_value("SELECT string_agg(i.value, ' ' ORDER BY i.id) FROM indicator_sightings g, "
                       "unnest(g.indicator_ids) l(id) JOIN indicators i ON i.id = l.id "
                       "WHERE g.seen_at = (SELECT max(seen_at) FROM indicator_sightings)")


def test_mix_sightings_same_by_loop_and_statement():
    s = Stack("ingest_fixed18_mix", services=())
    try:
        # 7 references: the loop; 7 + 5 * 14 = 77, over 64: the statement
        few = mix_sightings(s, 1, 0)
        many = mix_sightings(s, 2, 14)
        assert_eq(few, "198.51.1.1 198.51.1.2 198.51.1.3")
        assert_eq(many, "198.51.2.1 198.51.2.2 198.51.2.3")
        # a mix whose new alerts carry no known indicator writes no row, either way
        for tag, pad in ((3, 0), (4, 14)):
            call(s, 24, [el("%d-a" % tag, ["198.51.%d.1" % tag])])
            n = s.sql_value("SELECT count(*) FROM indicator_sightings")
            call(s, 24, [el("%d-a" % tag, ["198.51.%d.1" % tag]),
                         el("%d-n" % tag, ["203.0.%d.%d" % (tag, j) for j in range(1 + pad * 5)])])
            assert_eq(s.sql_value("SELECT count(*) FROM indicator_sightings"), n)
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
