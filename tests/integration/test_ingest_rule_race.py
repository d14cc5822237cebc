#!/usr/bin/env python3
"""test_ingest_rule_race.py - an alert's reference to its detection rule stays sound without a
foreign key: a rule's deletion waits for the ingest batch naming the rule and then clears the
alert's reference; other writers of the reference are still checked."""
import subprocess
import time

import harness
from harness import assert_eq, run_tests, wait_for

ELEMENT = ('[{"title": "rule race", "severity": "High", "source_name": "generic", "description": "d", '
           '"occurred_at": "2026-01-01T00:00:00Z", "tags": [], "fingerprint": "fp-rule-race", '
           '"indicators": [{"type": "ip", "value": "198.51.100.77"}], "rule_ref": "RACE-1", '
           '"actor_key_prefix": "cai_test", "raw_payload": {"x": 1}}]')


class Session:
    """A psql session kept open, fed statements one at a time (a transaction held across them)."""

    def __init__(self, url):
        self.p = subprocess.Popen(["psql", url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, bufsize=1)

    def send(self, sql):
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()

    def read_line(self, timeout=20.0):
        """The next output line (the caller sends a SELECT that prints one)."""
        deadline = time.time() + timeout
        line = self.p.stdout.readline()
        assert time.time() < deadline and line, "no answer from psql: %s" % self.p.stderr.read()
        return line.strip()

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=20)
        return self.p.returncode


def test_rule_deletion_waits_for_the_batch_and_clears_the_reference():
    s = harness.Stack("ingest_rule_race", services=())
    try:
        rule = s.sql_value("INSERT INTO detection_rules (name, source_rule_id, source_name) "
                           "VALUES ('RACE-1', 'RACE-1', 'generic') RETURNING id")
        a = Session(s.db)
        a.send("BEGIN;")
        a.send("SELECT count(*) FROM calseta_ingest_batch('%s'::jsonb, 0);" % ELEMENT)
        assert_eq(a.read_line(), "1")
        a.send("SELECT count(*) FROM alerts WHERE detection_rule_id = %s;" % rule)
        assert_eq(a.read_line(), "1")
        # the batch linked the rule and holds it until its commit: the deletion waits
        b = Session(s.db)
        b.send("DELETE FROM detection_rules WHERE id = %s; SELECT 'deleted';" % rule)
        wait_for(lambda: s.sql_value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                     "AND NOT granted AND database = (SELECT oid FROM pg_database "
                                     "WHERE datname = current_database())") == "1", 20, 0.05, "the deletion waiting for the batch")
        a.send("COMMIT; SELECT 'committed';")
        assert_eq(a.read_line(), "committed")
        assert_eq(b.read_line(), "deleted")
        assert_eq(a.close(), 0)
        assert_eq(b.close(), 0)
        # the alert committed with its rule, then lost the reference with the rule
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE title = 'rule race'"), "1")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE detection_rule_id IS NOT NULL"), "0")
        # a batch after the deletion makes the stub again and links it
        assert_eq(s.sql_value("SELECT count(*) FROM calseta_ingest_batch('%s'::jsonb, 0)" % ELEMENT), "1")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts a JOIN detection_rules d ON d.id = a.detection_rule_id "
                              "WHERE d.source_rule_id = 'RACE-1'"), "1")
        # any other writer of the reference is checked as the foreign key did
        try:
            harness.psql(s.db, "UPDATE alerts SET detection_rule_id = -5 WHERE title = 'rule race'")
            raise AssertionError("an alert named a rule that does not exist")
        except RuntimeError as e:
            assert "violates the reference to detection_rules" in str(e), e
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE detection_rule_id = -5"), "0")
    finally:
        s.stop()


def expect_error(db, sql, text):
    try:
        harness.psql(db, sql)
    except RuntimeError as e:
        assert text in str(e), e
        return
    raise AssertionError("no error from: %s" % sql)


def test_rule_deletion_is_refused_outside_read_committed():
    # under REPEATABLE READ the clearing statement would reuse the deleter's snapshot and miss
    # the alerts of a batch it waited for
    s = harness.Stack("ingest_rule_iso", services=())
    try:
        rule = s.sql_value("INSERT INTO detection_rules (name, source_rule_id, source_name) "
                           "VALUES ('RACE-1', 'RACE-1', 'generic') RETURNING id")
        assert_eq(s.sql_value("SELECT count(*) FROM calseta_ingest_batch('%s'::jsonb, 0)" % ELEMENT), "1")
        for level in ("REPEATABLE READ", "SERIALIZABLE"):
            expect_error(s.db, "BEGIN ISOLATION LEVEL %s; DELETE FROM detection_rules WHERE id = %s; COMMIT;"
                         % (level, rule), "only be deleted in a READ COMMITTED transaction (this one is %s)" % level)
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules WHERE id = %s" % rule), "1")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE detection_rule_id = %s" % rule), "1")
        # READ UNCOMMITTED runs as READ COMMITTED: allowed
        s.sql("BEGIN ISOLATION LEVEL READ UNCOMMITTED; DELETE FROM detection_rules WHERE id = %s; COMMIT;" % rule)
        assert_eq(s.sql_value("SELECT count(*) FROM alerts WHERE detection_rule_id IS NOT NULL"), "0")
    finally:
        s.stop()


def test_rule_ids_cannot_change_and_truncate_keeps_alerts_sound():
    s = harness.Stack("ingest_rule_guards", services=())
    try:
        rule = s.sql_value("INSERT INTO detection_rules (name, source_rule_id, source_name) "
                           "VALUES ('RACE-1', 'RACE-1', 'generic') RETURNING id")
        assert_eq(s.sql_value("SELECT count(*) FROM calseta_ingest_batch('%s'::jsonb, 0)" % ELEMENT), "1")
        expect_error(s.db, "UPDATE detection_rules SET id = id + 1000 WHERE id = %s" % rule,
                     "the id of a detection rule cannot change")
        # other columns, and an id set to itself, still update
        s.sql("UPDATE detection_rules SET id = id, name = 'renamed' WHERE id = %s" % rule)
        assert_eq(s.sql_value("SELECT name FROM detection_rules WHERE id = %s" % rule), "renamed")
        expect_error(s.db, "TRUNCATE detection_rules CASCADE", "cannot truncate detection_rules while alerts name")
        assert_eq(s.sql_value("SELECT count(*) FROM alerts a JOIN detection_rules d ON d.id = a.detection_rule_id"), "1")
        # once no alert names a rule, the table can be emptied
        s.sql("UPDATE alerts SET detection_rule_id = NULL")
        # the check for alerts naming a rule needs a snapshot taken after the truncate's lock
        expect_error(s.db, "BEGIN ISOLATION LEVEL REPEATABLE READ; TRUNCATE detection_rules CASCADE; COMMIT;",
                     "only be truncated in a READ COMMITTED transaction (this one is REPEATABLE READ)")
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules"), "1")
        s.sql("TRUNCATE detection_rules CASCADE")
        assert_eq(s.sql_value("SELECT count(*) FROM detection_rules"), "0")
    finally:
        s.stop()


def test_alert_deletion_replicates_its_events():
    # activity_events has no primary key: a publication needs the full row to replicate a delete
    s = harness.Stack("ingest_rule_repl", services=())
    try:
        assert_eq(s.sql_value("SELECT relreplident FROM pg_class WHERE relname = 'activity_events'"), "f")
        s.sql("CREATE PUBLICATION calseta_test_pub FOR TABLE alerts, activity_events")
        aid = s.sql_value("SELECT alert_id FROM calseta_ingest_batch('%s'::jsonb, 0)" % ELEMENT)
        assert_eq(s.sql_value("SELECT count(*) FROM alert_activity WHERE alert_id = %s" % aid), "1")
        # a stored event of the alert: the deletion updates it (its alert_id to NULL) and writes
        # the ingest event out beside it
        s.sql("INSERT INTO activity_events (event_type, actor_type, alert_id) "
              "VALUES ('alert_status_updated', 'api', %s)" % aid)
        s.sql("DELETE FROM alerts WHERE id = %s" % aid)
        assert_eq(s.sql_value("SELECT count(*) FROM alerts"), "0")
        assert_eq(s.sql_value("SELECT string_agg(event_type, ' ' ORDER BY event_type) FROM activity_events "
                              "WHERE alert_id IS NULL"), "alert_ingested alert_status_updated")
        s.sql("DELETE FROM activity_events")
        assert_eq(s.sql_value("SELECT count(*) FROM activity_events"), "0")
    finally:
        s.sql("DROP PUBLICATION IF EXISTS calseta_test_pub")
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
