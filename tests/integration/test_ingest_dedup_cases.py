"""De-duplication on: what calseta_ingest_batch() stores and answers for each kind of batch.

The function writes a batch of new alerts only, of duplicates only (a storm of one alert) and a
mix of both through different statements; this calls it straight from SQL with one batch of
each kind, in order on one database, and checks every answer (index, uuid, id, job,
is_duplicate, duplicate_count) and every row written: the alerts' counts, last_seen_at and
updated_at (the batch's transaction time), links and rule, the jobs, the alert_deduplicated
events' references, and the sighting row (the known indicators the batch's new alerts carry,
never a duplicate's)."""
import json
import os
import subprocess
import threading

import ingest_columns  # noqa: E402
from harness import Stack, assert_eq, run_tests, wait_for

IND = [("ip", "192.0.2.%d" % i) for i in range(20)]


def el(fp, inds, rule="rule-a"):
    return {"title": "T " + fp, "severity": "High", "source_name": "generic", "description": None,
            "occurred_at": "2026-01-01T00:00:00Z", "raw_payload": {"fp": fp}, "tags": ["x"],
            "fingerprint": fp, "indicators": [{"type": t, "value": v} for t, v in (IND[i] for i in inds)],
            "rule_ref": rule, "actor_key_prefix": "cai_case"}


class Db:
    def __init__(self, s):
        self.s = s

    def call(self, hours, elems):
        """The answers as [idx, alert fingerprint, own uuid?, job?, is_duplicate, duplicate_count]
        and the transaction time of the batch."""
        # the answers kept in a table and read in a statement of their own, which sees the rows
        # the call wrote (one transaction: now() is the batch's time)
        rows = self.s.sql(
            "CREATE TEMP TABLE r AS SELECT * FROM calseta_ingest_batch($j$%s$j$::jsonb, %d); "
            "SELECT now()::text, r.idx, a.fingerprint, r.alert_uuid = a.uuid, "
            "r.job_id IS NOT NULL AND r.job_id = (SELECT j.id FROM enrichment_jobs j WHERE j.alert_id = r.alert_id), "
            "r.is_duplicate, coalesce(r.duplicate_count::text, '-'), r.alert_id "
            "FROM r LEFT JOIN alerts a ON a.id = r.alert_id ORDER BY r.idx" % (json.dumps(elems), hours))
        return [r[1:] for r in rows], rows[0][0]

    def alert(self, aid):
        """count, last_seen_at, updated_at = created_at?, the linked indicators (values), rule."""
        return self.s.sql(
            "SELECT a.duplicate_count, coalesce(a.last_seen_at::text, '-'), a.updated_at::text, "
            "(SELECT coalesce(string_agg(i.value, ' ' ORDER BY i.id), '') FROM unnest(a.indicator_ids) l(id) "
            " JOIN indicators i ON i.id = l.id), coalesce(d.source_rule_id, '-') "
            "FROM alerts a LEFT JOIN detection_rules d ON d.id = a.detection_rule_id WHERE a.id = %s" % aid)[0]

    def events(self, aid):
        return [r[0] for r in self.s.sql(
            "SELECT (\"references\"->>'duplicate_count') || ' ' || (\"references\"->>'fingerprint') || ' ' "
            "|| (\"references\"->>'title') || ' ' || actor_key_prefix FROM activity_events "
            "WHERE alert_id = %s AND event_type = 'alert_deduplicated' ORDER BY 1" % aid)]

    def sightings(self):
        return self.s.sql("SELECT seen_at::text, (SELECT string_agg(i.value, ' ' ORDER BY i.id) "
                          "FROM unnest(indicator_ids) l(id) JOIN indicators i ON i.id = l.id) "
                          "FROM indicator_sightings ORDER BY seen_at")


def ip(*ns):
    return " ".join(IND[n][1] for n in ns)


def test_new_storm_and_mixed_batches():
    s = Stack("ingest_dedup_cases", services=())
    try:
        db = Db(s)
        # new alerts only; nothing known before the batch, so no sighting row
        r, ts0 = db.call(24, [el("f1", [0, 1]), el("f2", [1]), el("f3", [2], "rule-b"), el("f4", [])])
        assert_eq([x[:6] for x in r], [[str(i), "f%d" % (i + 1), "t", "t", "f", "-"] for i in range(4)])
        ids = {"f%d" % (i + 1): r[i][6] for i in range(4)}
        assert_eq([int(x[6]) for x in r], sorted(int(x[6]) for x in r), "ids in the batch's order")
        assert_eq(db.alert(ids["f1"]), ["0", "-", ts0, ip(0, 1), "rule-a"])
        assert_eq(db.alert(ids["f3"]), ["0", "-", ts0, ip(2), "rule-b"])
        assert_eq(db.sightings(), [])

        # duplicates only: each original counted once per duplicate, nothing inserted, linked
        # or sighted (their new indicators are stored, unlinked)
        r, ts1 = db.call(24, [el("f1", [0, 3]), el("f2", [4]), el("f1", [5])])
        assert_eq(r, [["0", "f1", "t", "f", "t", "1", ids["f1"]], ["1", "f2", "t", "f", "t", "1", ids["f2"]],
                      ["2", "f1", "t", "f", "t", "2", ids["f1"]]])
        assert_eq(db.alert(ids["f1"]), ["2", ts1, ts1, ip(0, 1), "rule-a"])
        assert_eq(db.alert(ids["f2"]), ["1", ts1, ts1, ip(1), "rule-a"])
        assert_eq(db.events(ids["f1"]), ["1 f1 T f1 cai_case", "2 f1 T f1 cai_case"])
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "4")
        assert_eq(s.sql_value("SELECT count(*) FROM enrichment_jobs"), "4")
        assert_eq(s.sql_value("SELECT count(*) FROM indicators WHERE value IN ('%s', '%s', '%s')"
                              % (IND[3][1], IND[4][1], IND[5][1])), "3")
        assert_eq(db.sightings(), [])

        # a mix: duplicates of an older alert, a new alert repeated in the batch, new alerts
        r, ts2 = db.call(24, [el("f3", [2, 6]), el("f5", [0, 7]), el("f5", [1, 8]), el("f6", [2], "rule-c"),
                              el("f3", [9]), el("f7", [3])])
        ids.update({"f5": r[1][6], "f6": r[3][6], "f7": r[5][6]})
        assert_eq(r, [["0", "f3", "t", "f", "t", "1", ids["f3"]], ["1", "f5", "t", "t", "f", "-", ids["f5"]],
                      ["2", "f5", "t", "f", "t", "1", ids["f5"]], ["3", "f6", "t", "t", "f", "-", ids["f6"]],
                      ["4", "f3", "t", "f", "t", "2", ids["f3"]], ["5", "f7", "t", "t", "f", "-", ids["f7"]]])
        assert int(ids["f5"]) < int(ids["f6"]) < int(ids["f7"]), ids
        assert_eq(db.alert(ids["f3"]), ["2", ts2, ts2, ip(2), "rule-b"])
        assert_eq(db.alert(ids["f5"]), ["1", ts2, ts2, ip(0, 7), "rule-a"])
        assert_eq(db.alert(ids["f6"]), ["0", "-", ts2, ip(2), "rule-c"])
        assert_eq(db.alert(ids["f7"]), ["0", "-", ts2, ip(3), "rule-a"])
        assert_eq(db.events(ids["f5"]), ["1 f5 T f5 cai_case"])
        assert_eq(db.events(ids["f3"]), ["1 f3 T f3 cai_case", "2 f3 T f3 cai_case"])
        # known before the batch and carried by a new alert: 0 (f5), 2 (f6), 3 (f7, stored by
        # the storm); not 1 (only the repeat of f5 names it) nor the new 6-9
        assert_eq(db.sightings(), [[ts2, ip(0, 2, 3)]])

        # new alerts only, but one repeated in the batch: counted on the alert just made
        r, ts3 = db.call(24, [el("f8", [0]), el("f8", [10]), el("f8", [0, 11])])
        assert_eq([x[:6] for x in r], [["0", "f8", "t", "t", "f", "-"], ["1", "f8", "t", "f", "t", "1"],
                                       ["2", "f8", "t", "f", "t", "2"]])
        assert_eq(len({x[6] for x in r}), 1)
        assert_eq(db.alert(r[0][6]), ["2", ts3, ts3, ip(0), "rule-a"])
        assert_eq(db.sightings()[-1], [ts3, ip(0)])

        # new alerts whose fingerprints' text order is not the batch's: ids in the batch's
        # order, alone and beside duplicates (f3, stored above)
        r, _ = db.call(24, [el("fz", [0]), el("fa", [0]), el("fm", [1])])
        assert_eq([x[:6] for x in r], [[str(i), fp, "t", "t", "f", "-"] for i, fp in enumerate(["fz", "fa", "fm"])])
        assert_eq([int(x[6]) for x in r], sorted(int(x[6]) for x in r), "ids in the batch's order")
        r, _ = db.call(24, [el("fy", [0]), el("f3", [0]), el("fb", [1])])
        assert_eq([x[:6] for x in r], [["0", "fy", "t", "t", "f", "-"], ["1", "f3", "t", "f", "t", "3"],
                                       ["2", "fb", "t", "t", "f", "-"]])
        assert int(r[0][6]) < int(r[2][6]), r

        # de-duplication off: a repeat is a new alert of its own
        r, _ = db.call(0, [el("f1", [0]), el("f1", [12])])
        assert_eq([x[:6] for x in r], [["0", "f1", "t", "t", "f", "-"], ["1", "f1", "t", "t", "f", "-"]])
        assert r[0][6] != ids["f1"] and r[1][6] != r[0][6], r

        # outside the window nothing is a duplicate: the original is two hours old, the window one
        s.sql("UPDATE alerts SET created_at = created_at - interval '2 hours' WHERE fingerprint = 'f7'")
        r, _ = db.call(1, [el("f7", [3]), el("f7", [3])])
        assert_eq([x[:6] for x in r], [["0", "f7", "t", "t", "f", "-"], ["1", "f7", "t", "f", "t", "1"]])
        assert r[0][6] != ids["f7"], r

        # the same through the lean lookup (every fingerprint of the batch once, so no window
        # functions over the batch): a lone f7 whose alerts are all outside the window is new
        s.sql("UPDATE alerts SET created_at = created_at - interval '2 hours' WHERE fingerprint = 'f7'")
        lone, _ = db.call(1, [el("f7", [3])])
        assert_eq([x[:6] for x in lone], [["0", "f7", "t", "t", "f", "-"]])
        assert lone[0][6] not in (ids["f7"], r[0][6]), lone
        # and counts on the newest of several alerts of its fingerprint in the window, neither the
        # first nor the last made: ages now 4 h (the first f7), 2 h (the one the general form made
        # above, count 1) and 3 h (the lone one)
        s.sql("UPDATE alerts SET created_at = now() - interval '3 hours' WHERE id = %s" % lone[0][6])
        r2, _ = db.call(24, [el("f7", [3]), el("fq", [0])])
        assert_eq([x[:6] for x in r2], [["0", "f7", "t", "f", "t", "2"], ["1", "fq", "t", "t", "f", "-"]])
        assert_eq(r2[0][6], r[0][6])
        assert_eq(s.sql("SELECT duplicate_count FROM alerts WHERE fingerprint = 'f7' ORDER BY id"),
                  [["0"], ["2"], ["0"]])
    finally:
        s.stop()


def test_original_deleted_under_the_batch_fails_it():
    """An original deleted after the batch looked it up, before the batch's update of it: the
    update waits for the deletion's commit and finds nothing, and the batch fails with a
    serialization failure (retryable: the intake sends the whole batch again), storing nothing;
    called again, the alert is new."""
    s = Stack("ingest_dedup_gone", services=())
    try:
        db = Db(s)
        r, _ = db.call(24, [el("g1", [0])])
        gone = r[0][6]
        # the deletion is held open, and committed only once the batch waits on the row: no
        # sleep decides the order, so a slow box cannot make the batch miss the original
        deleter = subprocess.Popen(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, env=dict(os.environ, PGAPPNAME="gone-deleter-sql"))
        batcher = None
        try:
            deleter.stdin.write("BEGIN;\nDELETE FROM alerts WHERE id = %s;\n" % gone)
            deleter.stdin.flush()
            wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                         "WHERE a.application_name = 'gone-deleter-sql' "
                                         "AND l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' "
                                         "AND a.state = 'idle in transaction'") == "1",
                     10, what="the deletion holds the row")
            batch = [el("g2", [1]), el("g1", [0])]
            # verbose errors: the SQLSTATE is what the intake reads
            batcher = subprocess.Popen(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                                        "-c", "SELECT * FROM calseta_ingest_batch($j$%s$j$::jsonb, 24)" % json.dumps(batch)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            # the batch found the alert (the deletion is not committed) and waits on its row
            wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                         "AND wait_event_type = 'Lock' AND wait_event = 'transactionid'") == "1",
                     10, what="the batch waits on the deleted row")
            deleter.stdin.write("COMMIT;\n")
            deleter.stdin.close()
            assert_eq(deleter.wait(20), 0, deleter.stderr.read())
            _, err = batcher.communicate(timeout=60)
            assert batcher.returncode != 0, "a batch counting a deleted alert was stored"
            assert "ERROR:  40001: original alert %s was deleted during the ingest batch" % gone in err, err
        finally:
            for proc in (deleter, batcher):
                if proc and proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "0")
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE event_type = 'alert_deduplicated'"), "0")
        r, _ = db.call(24, batch)
        assert_eq([x[:6] for x in r], [["0", "g2", "t", "t", "f", "-"], ["1", "g1", "t", "t", "f", "-"]])
    finally:
        s.stop()


def test_original_deleted_under_a_lone_alert_is_retried():
    """Through the intake: a lone repeat of alert A whose batch looked A up and then waits on
    A's row, held by an uncommitted deletion. When the deletion commits, the batch fails
    retryably, the intake sends it again, and the retry finds no original: 202 and a new alert
    (a lone alert's batch is never split, so any other error would be its answer)."""
    s = Stack("ingest_dedup_gone_http", env={"ALERT_DEDUP_WINDOW_HOURS": "24"})
    deleter = None
    try:
        k = s.create_key("alerts:write", extra=("--rate-limit-per-minute", "100000"))
        body = {"title": "gone", "severity": "high", "src_ip": "198.51.100.90"}
        r = s.request("POST", "/v1/ingest/generic", key=k, body=body)
        assert_eq(r.status, 202, r.body)
        old = s.sql("SELECT id, uuid, fingerprint FROM alerts")[0]
        deleter = subprocess.Popen(["psql", s.db, "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, env=dict(os.environ, PGAPPNAME="gone-deleter"))
        deleter.stdin.write("BEGIN;\nDELETE FROM alerts WHERE id = %s;\n" % old[0])
        deleter.stdin.flush()
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                     "WHERE a.application_name = 'gone-deleter' AND l.locktype = 'transactionid' "
                                     "AND l.mode = 'ExclusiveLock' AND a.state = 'idle in transaction'") == "1",
                 10, what="the deletion holds A's row")
        got = {}
        t = threading.Thread(target=lambda: got.update(r=s.request("POST", "/v1/ingest/generic", key=k,
                                                                     body=body, timeout=60)))
        t.start()
        # the batch found A (the deletion is not committed) and waits on A's row in its update
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock' AND wait_event = 'transactionid'") == "1",
                 10, what="the repeat's batch waits on the deleted row")
        deleter.stdin.write("COMMIT;\n")
        deleter.stdin.close()
        assert_eq(deleter.wait(20), 0, deleter.stderr.read())
        t.join(60)
        r = got["r"]
        assert_eq(r.status, 202, r.body)
        assert_eq(r.json()["data"]["status"], "queued", r.body)
        rows = s.sql("SELECT uuid, fingerprint, duplicate_count FROM alerts")
        assert_eq(len(rows), 1, rows)
        assert rows[0][0] != old[1] and rows[0][0] == r.json()["data"]["alert_uuid"], (rows, r.body)
        assert_eq(rows[0][1:], [old[2], "0"])
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE event_type = 'alert_deduplicated'"), "0")
    finally:
        if deleter and deleter.poll() is None:
            deleter.kill()
            deleter.wait(10)
        s.stop()


def test_new_alert_repeated_in_its_batch_is_written_once():
    """A batch [F, F, F] of a new F (the first batch of a storm) inserts F's alert with its count
    and last_seen_at and never updates it (no second row version); beside a duplicate of an
    older alert, only that one is updated."""
    s = Stack("ingest_dedup_once", services=())
    try:
        def written(elems):
            # the call and the table's counters of this transaction, in one transaction
            return s.sql("BEGIN; CREATE TEMP TABLE r AS SELECT * FROM calseta_ingest_batch($j$%s$j$::jsonb, 24); "
                         "SELECT pg_stat_get_xact_tuples_inserted('alerts'::regclass), "
                         "pg_stat_get_xact_tuples_updated('alerts'::regclass), now()::text, "
                         "string_agg(r.alert_uuid::text || ' ' || r.is_duplicate || ' ' || "
                         "coalesce(r.duplicate_count::text, '-'), ',' ORDER BY r.idx) FROM r; COMMIT;"
                         % json.dumps(elems))[0]
        ins, upd, ts, answers = written([el("s1", [0]), el("s1", [1]), el("s1", [0])])
        assert_eq([ins, upd], ["1", "0"], "the alert inserted once, never updated")
        row = s.sql("SELECT uuid, duplicate_count, last_seen_at::text, updated_at::text FROM alerts")
        assert_eq(row, [[row[0][0], "2", ts, ts]])
        u = row[0][0]
        assert_eq(answers, "%s false -,%s true 1,%s true 2" % (u, u, u))
        assert_eq(s.sql_value("SELECT string_agg((\"references\"->>'duplicate_count'), ' ' ORDER BY id) "
                              "FROM activity_events WHERE event_type = 'alert_deduplicated' "
                              "AND alert_id = (SELECT id FROM alerts)"), "1 2")

        # s1 is now an older alert: its duplicates update it (once), the new s2 is written once
        ins, upd, ts, _ = written([el("s2", [0]), el("s1", [0]), el("s2", [0]), el("s1", [1])])
        assert_eq([ins, upd], ["1", "1"], "one insert (s2), one update (s1)")
        assert_eq(s.sql("SELECT fingerprint, duplicate_count, last_seen_at::text FROM alerts ORDER BY id"),
                  [["s1", "4", ts], ["s2", "1", ts]])
    finally:
        s.stop()


def test_repeats_count_on_their_own_alert_by_identity():
    """The repeats of a new alert count on the alert the batch made, not on the newest alert of
    its fingerprint: here a trigger adds, in the batch's own transaction, a later alert of the
    same fingerprint (as a writer not taking the fingerprint lock could commit one meanwhile)."""
    s = Stack("ingest_dedup_identity", services=())
    try:
        s.sql("CREATE FUNCTION test_intruder() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
              "IF NEW.fingerprint = 'id1' AND NEW.title <> 'intruder' THEN "
              "INSERT INTO alerts (title, severity, source_name, occurred_at, raw_payload, tags, fingerprint, created_at) "
              "VALUES ('intruder', 'Low', 'generic', now(), '{}', '{}', 'id1', now() + interval '1 second'); "
              "END IF; RETURN NULL; END $$")
        s.sql("CREATE TRIGGER test_intruder AFTER INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION test_intruder()")
        r, ts = Db(s).call(24, [el("id1", [0]), el("id1", [1])])
        own = r[0][6]
        assert_eq([x[:7] for x in r], [["0", "id1", "t", "t", "f", "-", own], ["1", "id1", "t", "f", "t", "1", own]])
        assert_eq(s.sql("SELECT title, duplicate_count FROM alerts ORDER BY id"), [["T id1", "1"], ["intruder", "0"]])
    finally:
        s.stop()


def test_elements_without_a_fingerprint_are_never_duplicates():
    """Only a direct SQL caller can send an element without a fingerprint: each is a new alert."""
    s = Stack("ingest_dedup_nofp", services=())
    try:
        e = el("x", [0])
        del e["fingerprint"]
        r, _ = Db(s).call(24, [e, e, el("n1", [1]), e])
        assert_eq([x[:6] for x in r], [["0", "", "t", "t", "f", "-"], ["1", "", "t", "t", "f", "-"],
                                       ["2", "n1", "t", "t", "f", "-"], ["3", "", "t", "t", "f", "-"]])
        assert_eq(len({x[6] for x in r}), 4)
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE duplicate_count = 0 AND last_seen_at IS NULL"), "4")
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events WHERE event_type = 'alert_deduplicated'"), "0")
    finally:
        s.stop()


def test_mix_with_column_payloads():
    """The intake's form: the batch as columns, one payload per element, each stored as given. A
    mix (a duplicate of an older alert, a new alert repeated, another new alert) stores each
    new alert's own payload, byte for byte."""
    s = Stack("ingest_dedup_columns", services=())
    try:
        def call(elems, payloads):
            for e in elems:
                e.pop("raw_payload", None)
            # the answers read back in a statement of their own, which sees the rows written
            return s.sql("CREATE TEMP TABLE r AS %s; "
                         "SELECT r.idx, r.is_duplicate, a.fingerprint, a.raw_payload::text "
                         "FROM r JOIN alerts a ON a.id = r.alert_id ORDER BY r.idx"
                         % ingest_columns.call_sql(elems, payloads, 24, check_numbers=[True] * len(elems)))
        call([el("j0", [0])], ['{"old": 0}'])
        got = call([el("j0", [0]), el("j1", [1]), el("j1", [2]), el("j2", [3])],
                   ['{"dup":  "of j0"}', '{"n": 1,  "first": true}', '{"n": 1, "repeat": true}', '{ "n" : 2 }'])
        assert_eq(got, [["0", "t", "j0", '{"old": 0}'], ["1", "f", "j1", '{"n": 1,  "first": true}'],
                        ["2", "t", "j1", '{"n": 1,  "first": true}'], ["3", "f", "j2", '{ "n" : 2 }']])
    finally:
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
