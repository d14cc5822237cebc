-- 0018_workflowd.sql - approval notifications leave the intake: what is to be sent is queued as
-- rows that calseta-workflowd takes (FOR UPDATE SKIP LOCKED, deleted as they are taken), woken
-- by NOTIFY calseta_workflowd. Triggers queue them, so every path that makes, decides or ends
-- an approved run (REST, decide pages, Slack, MCP, the sweep) is covered without the intake
-- knowing about notifications at all.

CREATE TABLE workflow_notifications (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('approval_request', 'decision_update', 'result')),
    subject UUID NOT NULL, -- the approval request's uuid; the run's for 'result'
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION calseta_workflow_notification_queue(p_kind TEXT, p_subject UUID)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_notifications (kind, subject) VALUES (p_kind, p_subject);
    PERFORM pg_notify('calseta_workflowd', '');
END $$;

CREATE FUNCTION calseta_approval_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.status = 'pending' THEN
        PERFORM calseta_workflow_notification_queue('approval_request', NEW.uuid);
    ELSIF TG_OP = 'UPDATE' AND OLD.status = 'pending' AND NEW.status IN ('approved', 'rejected') THEN
        PERFORM calseta_workflow_notification_queue('decision_update', NEW.uuid);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER workflow_approval_requests_notify
    AFTER INSERT OR UPDATE OF status ON workflow_approval_requests
    FOR EACH ROW EXECUTE FUNCTION calseta_approval_notify();

-- The result message follows a run that an approved request started, whatever ended it.
CREATE FUNCTION calseta_run_result_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('success', 'failed', 'timed_out') AND OLD.status IS DISTINCT FROM NEW.status
       AND EXISTS (SELECT 1 FROM workflow_approval_requests a
                   WHERE a.workflow_run_id = NEW.id AND a.status = 'approved') THEN
        PERFORM calseta_workflow_notification_queue('result', NEW.uuid);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER workflow_runs_result_notify
    AFTER UPDATE OF status ON workflow_runs
    FOR EACH ROW EXECUTE FUNCTION calseta_run_result_notify();
