#!/usr/bin/env python3
"""test_links_merge_timeout.py - the intake's periodic merge of the alert links index's pending
list is cancelled after LINKS_MERGE_TIMEOUT_MS instead of holding a pool connection for as long
as something blocks it, and works again once the block is gone."""
import subprocess

import harness
from harness import run_tests, wait_for


def merge_waiting(s):
    return s.sql_value("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND query LIKE '%calseta_links_pending_merge%' AND wait_event_type = 'Lock'")


def test_blocked_merge_is_cancelled_and_resumes():
    s = harness.Stack("links_merge_timeout", env={"LINKS_MERGE_TIMEOUT_MS": 300, "LOG_LEVEL": "INFO"})
    locker = None
    try:
        intake = s.proc("intake")
        # a session holding the index (a drop not yet committed, rolled back below): the merge
        # waits for its lock
        locker = subprocess.Popen(["psql", s.db, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        locker.stdin.write("BEGIN; DROP INDEX ix_alerts_indicator_ids; SELECT 'locked';\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "locked"
        wait_for(lambda: "links pending-list merge failed" in intake.text() and "query timeout" in intake.text(),
                 20, 0.1, "the blocked merge cancelled by its timeout")
        # cancelled: no merge is left waiting on the lock once the back-off holds the next try
        wait_for(lambda: merge_waiting(s) == "0", 20, 0.1, "no merge waiting on the lock")
        locker.stdin.write("ROLLBACK;\n")
        locker.stdin.close()
        locker.wait(timeout=20)
        locker = None
        wait_for(lambda: "links pending-list merge works again" in intake.text(), 30, 0.2,
                 "the merge working again once unblocked")
    finally:
        if locker:
            locker.kill()
            locker.wait()
        s.stop()


if __name__ == "__main__":
    run_tests(globals())
