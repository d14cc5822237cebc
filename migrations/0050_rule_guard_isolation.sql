-- 0050_rule_guard_isolation.sql - review fixes to 0049's rule guards.
--
-- 1. TRUNCATE of detection_rules had the snapshot problem 0049 fixed for DELETE: the statement
--    takes its snapshot before it waits for its lock, so under REPEATABLE READ or SERIALIZABLE
--    the check for alerts naming a rule missed the alerts of the ingest batch it waited behind,
--    and the truncate went through. It is refused outside READ COMMITTED now, like a delete.
-- 2. READ UNCOMMITTED runs as READ COMMITTED in PostgreSQL; both guards accept it.
--
-- Locks: replacing the two functions takes no table lock.

CREATE OR REPLACE FUNCTION calseta_detection_rule_require_fresh_snapshot(what TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
        RAISE EXCEPTION 'detection rules can only be % in a READ COMMITTED transaction (this one is %)',
                        what, upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The alerts naming a rule are checked after the ingest batches holding it commit; '
                         'a REPEATABLE READ or SERIALIZABLE snapshot cannot see those alerts.';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION calseta_detection_rule_delete_wait() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM calseta_detection_rule_require_fresh_snapshot('deleted');
    PERFORM pg_advisory_xact_lock(hashint8extended(OLD.id, 727278));
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION calseta_detection_rule_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM calseta_detection_rule_require_fresh_snapshot('truncated');
    IF EXISTS (SELECT 1 FROM alerts WHERE detection_rule_id IS NOT NULL) THEN
        RAISE EXCEPTION 'cannot truncate detection_rules while alerts name a detection rule'
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'TRUNCATE alerts first, or set alerts.detection_rule_id to NULL.';
    END IF;
    RETURN NULL;
END $$;
