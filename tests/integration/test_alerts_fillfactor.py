"""A duplicate's update of an alert on a page ingest has filled stays on that page (heap-only).

alerts keeps 10 % of each page free (fillfactor 90): calseta_ingest_batch() fills pages only to
90 %, so when a duplicate later bumps its original's duplicate_count / last_seen_at (no indexed
column), the new row version fits beside the old one and no index of alerts gets an entry. At
fillfactor 100 the pages ingest leaves are full and these updates go to another page, writing an
entry in all six indexes (the GIN index of links among them): this test fails then."""
import json

from harness import Stack, assert_eq, run_tests, wait_for


def assert_true(cond, msg):
    if not cond:
        raise AssertionError(msg)


def alert(i):
    # a row of ~500 B: well within the 10 % a page keeps (a row's new version of up to ~800 B
    # always fits; larger ones only when the page's rows happen to leave enough)
    return {"title": "Fill %d" % i, "severity": "High", "source_name": "generic", "description": None,
            "occurred_at": "2026-01-01T00:00:00Z", "raw_payload": {"i": i, "pad": "%04d" % i * 75},
            "tags": ["fill"], "fingerprint": "fill-%d" % i,
            "indicators": [{"type": "ip", "value": "198.51.100.%d" % (i % 250)}],
            "rule_ref": "fill-rule", "actor_key_prefix": "cai_fill"}


def updates(s):
    v = s.sql_value("SELECT n_tup_upd || ',' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'alerts'")
    return tuple(int(x) for x in v.split(","))


def test_storage_parameter_in_place():
    s = Stack("alerts_fillfactor_opt", services=())
    try:
        assert_eq(s.sql_value("SELECT coalesce('fillfactor=90' = ANY (reloptions), false) FROM pg_class "
                              "WHERE oid = 'alerts'::regclass"), "t",
                  s.sql_value("SELECT reloptions FROM pg_class WHERE oid = 'alerts'::regclass") or "")
    finally:
        s.stop()


def test_duplicate_update_of_a_filled_page_is_heap_only():
    s = Stack("alerts_fillfactor", services=())
    try:
        n = 100
        batch = json.dumps([alert(i) for i in range(n)])
        assert_eq(s.sql_value("SELECT count(*) FROM calseta_ingest_batch($j$%s$j$::jsonb, 24)" % batch), str(n))
        # ingest filled these pages as far as it ever does: the last page may still take inserts
        pages = s.sql("SELECT (ctid::text::point)[0]::int AS page, min(id), count(*) FROM alerts "
                      "GROUP BY 1 ORDER BY 1")
        full = pages[:-1]
        assert_true(len(full) >= 3, "the alerts fill at least 3 pages: %r" % (pages,))
        assert_true(all(int(p[2]) >= 3 for p in full), "several alerts per page: %r" % (pages,))
        upd0 = updates(s)
        # one duplicate per full page, each in its own batch (a transaction's own earlier version
        # on the page is not yet dead, so two in one batch would need room for two)
        for page, first_id, _ in full:
            fp = s.sql_value("SELECT fingerprint FROM alerts WHERE id = %s" % first_id)
            i = int(fp.split("-")[1])
            r = s.sql("SELECT is_duplicate, alert_id FROM calseta_ingest_batch($j$%s$j$::jsonb, 24)"
                      % json.dumps([alert(i)]))
            assert_eq(r[0][0], "t", "the repeat of alert %s is a duplicate" % first_id)
            assert_eq(r[0][1], first_id)
        want = upd0[0] + len(full)
        wait_for(lambda: updates(s)[0] >= want, timeout=10, what="update counters")
        total, hot = updates(s)
        assert_eq(total - upd0[0], len(full))
        assert_eq(hot - upd0[1], total - upd0[0],
                  "duplicates' updates that left their page: %d of %d" % ((total - upd0[0]) - (hot - upd0[1]),
                                                                         total - upd0[0]))
        moved = s.sql("SELECT id, (ctid::text::point)[0]::int FROM alerts WHERE id IN (%s)"
                      % ",".join(p[1] for p in full))
        assert_eq(sorted((r[0], r[1]) for r in moved), sorted((p[1], p[0]) for p in full),
                  "every updated alert is still on its page")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
