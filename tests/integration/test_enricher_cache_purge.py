"""test_enricher_cache_purge.py - expired shared-cache entries are purged in bulk, off the
completion path.

calseta_enrich_cache_purge(after, span) against real PostgreSQL: it visits at most `span` keys
after `after` in key order, deletes the expired ones among them and nothing else, returns where
the next call starts (NULL at the end of the table), and skips a row another transaction holds
instead of waiting for it. Then a running worker, whose poll calls it, empties the expired rows
of a table while the fresh ones stay.
"""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Stack, assert_eq, fernet_key, run_tests, wait_for  # noqa: E402
from test_enricher_complete import Session, state  # noqa: E402

STACK = None


def stack():
    global STACK
    if STACK is None:
        STACK = Stack("enrich_purge", services=(), env={
            "ENCRYPTION_KEY": fernet_key(),
            "ENRICHER_POLL_INTERVAL_MS": "100",
            "LOG_LEVEL": "DEBUG",
        })
    return STACK


def fill(s, provider, n):
    """n entries of provider, v00.., the even ones expired an hour ago, the odd ones fresh."""
    s.sql("INSERT INTO enrichment_cache (provider_name, indicator_type, indicator_value, result, "
          "expires_at) SELECT '%s', 'ip', 'v' || lpad(g::text, 2, '0'), NULL, now() + "
          "CASE WHEN g %% 2 = 0 THEN interval '-1 hour' ELSE interval '1 hour' END "
          "FROM generate_series(0, %d) g" % (provider, n - 1))


def purge(s, after, span):
    arg = "NULL" if after is None else "'{%s}'" % ",".join(after)
    row = s.sql("SET statement_timeout = '10s'; SELECT purged, next_after[1], next_after[2], "
                "next_after[3] FROM calseta_enrich_cache_purge(%s, %d)" % (arg, span))
    return [int(row[-1][0]), row[-1][1:] if row[-1][1] else None]


def left(s, provider):
    return [r[0] for r in s.sql("SELECT indicator_value FROM enrichment_cache WHERE provider_name "
                                "= '%s' ORDER BY 1" % provider)]


def test_purge_walks_bounded_spans():
    s = stack()
    s.sql("DELETE FROM enrichment_cache")
    fill(s, "pa", 12)
    # the first span: v00..v04, of which v00, v02, v04 expired
    assert_eq(purge(s, None, 5), [3, ["pa", "ip", "v04"]])
    assert_eq(left(s, "pa"), ["v01", "v03", "v05", "v06", "v07", "v08", "v09", "v10", "v11"])

    # v06 held by another transaction (a completion refreshing it): skipped, not waited for
    holder = Session(s, "purge-holder")
    holder.send("BEGIN; SELECT 1 FROM enrichment_cache WHERE indicator_value = 'v06' FOR UPDATE;")
    wait_for(lambda: state(s, "purge-holder") == ["idle in transaction", "Client"], 30,
             what="the holder")
    try:
        assert_eq(purge(s, ["pa", "ip", "v04"], 5), [1, ["pa", "ip", "v09"]])
    finally:
        holder.send("ROLLBACK;")
        holder.finish()
    # the last span is short: the walk is over, the next one starts from the first key
    assert_eq(purge(s, ["pa", "ip", "v09"], 5), [1, None])
    assert_eq(left(s, "pa"), ["v01", "v03", "v05", "v06", "v07", "v09", "v11"])
    assert_eq(purge(s, None, 100), [1, None])
    assert_eq(left(s, "pa"), ["v01", "v03", "v05", "v07", "v09", "v11"])
    # nothing expired: nothing deleted, whatever the span
    assert_eq(purge(s, None, 3), [0, ["pa", "ip", "v05"]])
    assert_eq(purge(s, None, 1000), [0, None])
    assert_eq(len(left(s, "pa")), 6)


def test_purge_keeps_entry_refreshed_meanwhile():
    """A completion refreshing an expired entry while the purge waits... never: the purge skips
    it; and once refreshed (committed), the entry is fresh and stays."""
    s = stack()
    s.sql("DELETE FROM enrichment_cache")
    fill(s, "pb", 2)  # v00 expired, v01 fresh
    refresher = Session(s, "purge-refresher")
    refresher.send("BEGIN; UPDATE enrichment_cache SET expires_at = now() + interval '1 hour' "
                   "WHERE indicator_value = 'v00';")
    wait_for(lambda: state(s, "purge-refresher") == ["idle in transaction", "Client"], 30,
             what="the refresher")
    done = []
    t = threading.Thread(target=lambda: done.append(purge(s, None, 10)))
    t.start()
    try:
        t.join(15)
        assert_eq(done, [[0, None]], "purge skipped the row being refreshed without waiting")
    finally:
        refresher.send("COMMIT;")
        refresher.finish()
    assert_eq(purge(s, None, 10), [0, None])
    assert_eq(left(s, "pb"), ["v00", "v01"])


def test_worker_purges_on_its_poll():
    s = stack()
    s.sql("DELETE FROM enrichment_cache")
    fill(s, "pc", 60)
    s.sql("INSERT INTO enrichment_cache (provider_name, indicator_type, indicator_value, result, "
          "expires_at) SELECT 'pd', 'domain', 'e' || g || '.example.com', NULL, now() - interval "
          "'1 minute' FROM generate_series(1, 300) g")
    w = s.start("enricher")
    try:
        wait_for(lambda: s.sql_value("SELECT count(*) FROM enrichment_cache WHERE expires_at <= "
                                     "now()") == "0", 30, what="expired entries purged")
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_cache"), "30")
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_cache WHERE provider_name = 'pc' "
                              "AND expires_at > now()"), "30")
        assert "expired entries purged" in w.text(), w.text()[-2000:]
    finally:
        w.stop()


def test_zz_stop():
    if STACK:
        STACK.stop()


if __name__ == "__main__":
    run_tests(globals())
