"""Alert links kept in the alert row (alerts.indicator_ids): written sorted and distinct by the
ingest, added to by the API under the alert's row lock, served in both directions, removed with
a deleted indicator, readable and writable through the alert_indicators view, and the GIN pending
list merged by the intake off the ingest path."""
import threading

from harness import Stack, assert_eq, run_tests, wait_for


def ids_of(s, uuid):
    return s.sql_value("SELECT indicator_ids::text FROM alerts WHERE uuid = '%s'" % uuid)


def test_links_in_row_both_directions_and_deletion():
    s = Stack("alert_links")
    try:
        admin = s.create_key("admin")
        a = s.ingest(admin, "one", src_ip="198.51.100.7", domain="a.example")
        b = s.ingest(admin, "two", src_ip="198.51.100.7")
        ia = s.sql_value("SELECT array_agg(id ORDER BY id)::text FROM indicators "
                         "WHERE value IN ('198.51.100.7', 'a.example')")
        assert_eq(ids_of(s, a), ia)
        # the view shows one row per link, as the table did
        assert_eq(s.sql_value("SELECT count(*) FROM alert_indicators l JOIN alerts x ON x.id = l.alert_id "
                              "WHERE x.uuid = '%s'" % a), "2")
        # forward: the alert's indicators in (type, value) order
        r = s.request("GET", "/v1/alerts/%s/indicators" % a, key=admin)
        assert_eq(r.status, 200, r.body)
        assert_eq([(x["type"], x["value"]) for x in r.json()["data"]],
                  [("domain", "a.example"), ("ip", "198.51.100.7")])
        assert_eq(r.json()["meta"]["total"], 2)
        # reverse: the shared IP's sibling alert through the GIN index
        g = s.request("GET", "/v1/alerts/%s/relationship-graph" % a, key=admin).json()["data"]
        shared = [x for x in g["indicators"] if x["value"] == "198.51.100.7"][0]
        assert_eq(shared["total_alert_count"], 1)
        assert_eq([x["uuid"] for x in shared["sibling_alerts"]], [b])
        # added through the API: appended, sorted, no duplicates; twice changes nothing
        for _ in range(2):
            r = s.request("POST", "/v1/alerts/%s/indicators" % b, key=admin, body={"indicators": [
                {"type": "ip", "value": "198.51.100.8"}, {"type": "ip", "value": "198.51.100.7"}]})
            assert_eq(r.status, 201, r.body)
        assert_eq(ids_of(s, b), s.sql_value("SELECT array_agg(id ORDER BY id)::text FROM indicators "
                                            "WHERE value IN ('198.51.100.7', '198.51.100.8')"))
        # a deleted indicator leaves every array that held it
        s.sql("DELETE FROM indicators WHERE value = '198.51.100.7'")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE indicator_ids @> ARRAY[(SELECT 0::bigint)] "
                              "OR array_length(indicator_ids, 1) IS NULL"), "0")
        assert_eq(ids_of(s, b), s.sql_value("SELECT array_agg(id)::text FROM indicators WHERE value = '198.51.100.8'"))
        # the view: an insert adds, a link to a missing alert is refused as the key refused it
        s.sql("INSERT INTO alert_indicators (alert_id, indicator_id) SELECT x.id, i.id FROM alerts x, indicators i "
              "WHERE x.uuid = '%s' AND i.value = 'a.example'" % b)
        assert_eq(s.sql_value("SELECT count(*) FROM alert_indicators l JOIN alerts x ON x.id = l.alert_id "
                              "WHERE x.uuid = '%s'" % b), "2")
        r = s.sql_value("DO $$ BEGIN INSERT INTO alert_indicators VALUES (-1, 1); "
                        "EXCEPTION WHEN foreign_key_violation THEN RAISE NOTICE 'refused'; END $$; SELECT 'ok'")
        assert_eq(r, "ok")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE id = -1"), "0")
        # a deleted alert takes its links with it
        assert_eq(s.request("DELETE", "/v1/alerts/" + a, key=admin).status, 204)
        assert_eq(s.sql_value("SELECT count(*) FROM alert_indicators l WHERE NOT EXISTS "
                              "(SELECT 1 FROM alerts x WHERE x.id = l.alert_id)"), "0")
    finally:
        s.stop()


def test_concurrent_adds_to_one_alert_keep_both():
    s = Stack("alert_links_conc")
    try:
        admin = s.create_key("admin")
        a = s.ingest(admin, "shared", src_ip="198.51.100.20")
        errs = []

        def add(n):
            for k in range(5):
                r = s.request("POST", "/v1/alerts/%s/indicators" % a, key=admin, body={"indicators": [
                    {"type": "domain", "value": "t%d-%d.example" % (n, k)}]})
                if r.status != 201:
                    errs.append(r.body)
        ts = [threading.Thread(target=add, args=(n,)) for n in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errs, errs
        # 1 ingested + 20 added, sorted and distinct
        assert_eq(s.sql_value("SELECT cardinality(indicator_ids) FROM alerts WHERE uuid = '%s'" % a), "21")
        assert_eq(s.sql_value("SELECT indicator_ids = ARRAY(SELECT DISTINCT x FROM unnest(indicator_ids) x ORDER BY 1) "
                              "FROM alerts WHERE uuid = '%s'" % a), "t")
    finally:
        s.stop()


def test_intake_merges_the_pending_list():
    s = Stack("alert_links_merge", services=("auditd",))
    try:
        # function calls counted for this database's sessions, the intake's included
        s.sql("ALTER DATABASE %s SET track_functions = 'all'" % s.dbname)
        s.start_intake()
        admin = s.create_key("admin")
        for i in range(30):
            s.ingest(admin, "merge %d" % i, src_ip="198.51.100.%d" % (i + 1))
        wait_for(lambda: int(s.sql_value("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                                         "WHERE funcname = 'calseta_links_pending_merge'")) >= 2,
                 30, 0.2, "the intake's periodic merge calls")
        assert int(s.sql_value("SELECT calseta_links_pending_merge()")) >= 0
        # the reverse lookup sees every alert, merged or pending
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE indicator_ids && "
                              "(SELECT array_agg(id) FROM indicators WHERE type = 'ip')"), "30")
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
