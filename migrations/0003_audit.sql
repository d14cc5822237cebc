-- 0003_audit.sql - the append-only audit trail written by calseta-auditd.
--
-- event_id is made by the producer and is the de-duplication key: a replayed event is
-- inserted once (INSERT ... ON CONFLICT (event_id) DO NOTHING). Rows can be added, never
-- changed or removed: UPDATE, DELETE and TRUNCATE raise. Retention, if wanted, is an operator
-- decision taken by dropping the triggers on purpose.
CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL UNIQUE,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    service TEXT NOT NULL,
    pid INT,
    event_type TEXT NOT NULL,
    request_id TEXT,
    actor_key_prefix TEXT,
    client_ip TEXT,
    fields JSONB NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_type_time ON audit_events (event_type, occurred_at);
CREATE INDEX audit_events_prefix_time ON audit_events (actor_key_prefix, occurred_at);
CREATE INDEX audit_events_time ON audit_events (occurred_at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
