-- 0038_audit_events_time_id.sql - the audit list's order, newest first and ties by id, as one
-- index: a page of GET /v1/audit-events is a backward walk of it that stops after the page,
-- instead of a sort of every matching event. It replaces the index on occurred_at alone, which
-- it covers.
CREATE INDEX audit_events_time_id ON audit_events (occurred_at, id);
DROP INDEX audit_events_time;
