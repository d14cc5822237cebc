-- 0008_builtin_workflows.sql - the nine built-in Okta/Entra workflows the original ships.
--
-- * calseta_builtin_workflows: the seeded definitions (name, integration, risk, code). Kept as
--   a table so that the run claim can tell a built-in running its own code (gets the
--   integration credentials) from one whose code a user replaced (gets none).
-- * The nine system workflows are inserted when no system workflow of that name exists
--   (insert only, never updated): workflow_type indicator, indicator_types ["account"], state
--   active, approval_mode always, timeout 60 s, retry 0. is_active starts false; the intake
--   sets it at start from its settings (Okta ones when OKTA_DOMAIN and OKTA_API_TOKEN are set,
--   Entra ones when ENTRA_TENANT_ID, ENTRA_CLIENT_ID and ENTRA_CLIENT_SECRET are set).
-- * calseta_workflow_run_claim (0007) also returns is_system and the built-in's integration.

CREATE TABLE IF NOT EXISTS calseta_builtin_workflows (
    name TEXT PRIMARY KEY,
    integration TEXT NOT NULL CHECK (integration IN ('okta', 'entra')),
    risk_level TEXT NOT NULL,
    code TEXT NOT NULL,
    documentation TEXT NOT NULL
);

INSERT INTO calseta_builtin_workflows (name, integration, risk_level, code, documentation)
VALUES
    ('Okta — Revoke All Sessions', 'okta', 'low',
     '"""Built-in: revoke Okta sessions for the account indicator (ctx.integrations.okta.revoke_sessions)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.okta
    if client is None:
        return WorkflowResult.fail("Okta integration is not configured", {"account": account})
    try:
        await client.revoke_sessions(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not revoke Okta sessions for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Revoked all Okta sessions for %s" % account, {"account": account})
',
     'Revokes every active Okta session of the account (DELETE /api/v1/users/{id}/sessions).'),
    ('Okta — Suspend User', 'okta', 'high',
     '"""Built-in: suspend the Okta user for the account indicator (ctx.integrations.okta.suspend_user)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.okta
    if client is None:
        return WorkflowResult.fail("Okta integration is not configured", {"account": account})
    try:
        await client.suspend_user(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not suspend the Okta user for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Suspended Okta user %s" % account, {"account": account})
',
     'Suspends the Okta user (POST /api/v1/users/{id}/lifecycle/suspend).'),
    ('Okta — Unsuspend User', 'okta', 'medium',
     '"""Built-in: unsuspend the Okta user for the account indicator (ctx.integrations.okta.unsuspend_user)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.okta
    if client is None:
        return WorkflowResult.fail("Okta integration is not configured", {"account": account})
    try:
        await client.unsuspend_user(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not unsuspend the Okta user for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Unsuspended Okta user %s" % account, {"account": account})
',
     'Unsuspends the Okta user (POST /api/v1/users/{id}/lifecycle/unsuspend).'),
    ('Okta — Reset Password', 'okta', 'medium',
     '"""Built-in: reset the Okta password for the account indicator (ctx.integrations.okta.reset_password)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.okta
    if client is None:
        return WorkflowResult.fail("Okta integration is not configured", {"account": account})
    try:
        await client.reset_password(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not reset the Okta password for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Started an Okta password reset for %s" % account, {"account": account})
',
     'Starts an Okta password reset; Okta e-mails the user the reset link (POST /api/v1/users/{id}/lifecycle/reset_password?sendEmail=true).'),
    ('Okta — Force Password Expiry', 'okta', 'low',
     '"""Built-in: expire the Okta password for the account indicator (ctx.integrations.okta.expire_password)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.okta
    if client is None:
        return WorkflowResult.fail("Okta integration is not configured", {"account": account})
    try:
        await client.expire_password(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not expire the Okta password for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Expired the Okta password of %s" % account, {"account": account})
',
     'Expires the Okta password so that the user must change it at the next sign-in (POST /api/v1/users/{id}/lifecycle/expire_password).'),
    ('Entra — Revoke Sign-in Sessions', 'entra', 'low',
     '"""Built-in: revoke Entra sign-in sessions for the account indicator (ctx.integrations.entra.revoke_sessions)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.entra
    if client is None:
        return WorkflowResult.fail("Entra integration is not configured", {"account": account})
    try:
        await client.revoke_sessions(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not revoke Entra sign-in sessions for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Revoked all Entra sign-in sessions for %s" % account, {"account": account})
',
     'Revokes every Entra ID refresh token and session cookie of the user (POST /v1.0/users/{id}/revokeSignInSessions).'),
    ('Entra — Disable Account', 'entra', 'high',
     '"""Built-in: disable the Entra account for the account indicator (ctx.integrations.entra.disable_account)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.entra
    if client is None:
        return WorkflowResult.fail("Entra integration is not configured", {"account": account})
    try:
        await client.disable_account(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not disable the Entra account for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Disabled Entra account %s" % account, {"account": account})
',
     'Disables the Entra ID account (PATCH /v1.0/users/{id} {"accountEnabled": false}).'),
    ('Entra — Enable Account', 'entra', 'medium',
     '"""Built-in: enable the Entra account for the account indicator (ctx.integrations.entra.enable_account)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.entra
    if client is None:
        return WorkflowResult.fail("Entra integration is not configured", {"account": account})
    try:
        await client.enable_account(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not enable the Entra account for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Enabled Entra account %s" % account, {"account": account})
',
     'Enables the Entra ID account (PATCH /v1.0/users/{id} {"accountEnabled": true}).'),
    ('Entra — Force MFA Re-registration', 'entra', 'high',
     '"""Built-in: reset Entra MFA for the account indicator (ctx.integrations.entra.reset_mfa)."""
from calseta.workflows import WorkflowResult


async def run(ctx):
    account = ctx.indicator.value
    client = ctx.integrations.entra
    if client is None:
        return WorkflowResult.fail("Entra integration is not configured", {"account": account})
    try:
        await client.reset_mfa(account)
    except Exception as exc:
        return WorkflowResult.fail("Could not reset Entra MFA for %s: %s" % (account, exc),
                                   {"account": account})
    return WorkflowResult.ok("Removed the Entra MFA methods of %s" % account, {"account": account})
',
     'Deletes every authentication method of the user except the password, so MFA must be registered again (GET then DELETE /v1.0/users/{id}/authentication/methods/...).')
ON CONFLICT (name) DO NOTHING;

INSERT INTO workflows (name, workflow_type, indicator_types, code, state, timeout_seconds,
                       retry_count, is_active, is_system, approval_mode, risk_level,
                       documentation, tags)
SELECT b.name, 'indicator', ARRAY['account'], b.code, 'active', 60, 0, false, true, 'always',
       b.risk_level, b.documentation, ARRAY['builtin', b.integration]
FROM calseta_builtin_workflows b
WHERE NOT EXISTS (SELECT 1 FROM workflows w WHERE w.name = b.name AND w.is_system)
ORDER BY b.integration DESC, b.name;

-- Sets is_active of the system workflows from the intake's configuration (one statement).
CREATE OR REPLACE FUNCTION calseta_builtin_workflows_activate(p_okta BOOLEAN, p_entra BOOLEAN)
RETURNS INTEGER LANGUAGE sql AS $$
    WITH u AS (
        UPDATE workflows w SET is_active = w.state = 'active' AND
                                   CASE b.integration WHEN 'okta' THEN p_okta ELSE p_entra END,
               updated_at = now()
        FROM calseta_builtin_workflows b
        WHERE w.is_system AND w.name = b.name
          AND w.is_active IS DISTINCT FROM (w.state = 'active' AND
                                   CASE b.integration WHEN 'okta' THEN p_okta ELSE p_entra END)
        RETURNING 1)
    SELECT count(*)::int FROM u
$$;

CREATE OR REPLACE FUNCTION calseta_workflow_run_claim(p_run UUID, p_owner TEXT, p_grace INTEGER,
                                           p_max_attempts INTEGER)
RETURNS JSONB LANGUAGE plpgsql AS $$
DECLARE
    r workflow_runs;
    w workflows;
    ind indicators;
    al alerts;
    msg TEXT;
    code TEXT;
    run_code TEXT;
BEGIN
    UPDATE workflow_runs x SET status = 'running',
        started_at = coalesce(x.started_at, calseta_ts(clock_timestamp())),
        lease_owner = p_owner,
        lease_expires_at = now() + make_interval(secs => wf.timeout_seconds + p_grace),
        attempt_count = x.attempt_count + 1, updated_at = now()
    FROM workflows wf
    WHERE x.uuid = p_run AND wf.id = x.workflow_id
      AND (x.status = 'queued' OR (x.status = 'running' AND x.lease_expires_at < now()))
    RETURNING x.* INTO r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF r.attempt_count > p_max_attempts THEN
        msg := format('The run was sent to a runner %s times without an answer (the runner or '
                      'the intake stopped, or the run outlived its lease); it is not retried '
                      'again.', r.attempt_count - 1);
        PERFORM calseta_workflow_run_complete(r.uuid, 'failed',
            jsonb_build_object('success', false, 'message', msg, 'data', '{}'::jsonb), '', 0);
        RETURN jsonb_build_object('failed', msg);
    END IF;
    SELECT * INTO w FROM workflows WHERE id = r.workflow_id;
    -- the version the run was queued (or approved) with, not whatever was saved since
    IF w.code_version = r.code_version_executed THEN
        code := w.code;
    ELSE
        SELECT v.code INTO code FROM workflow_code_versions v
        WHERE v.workflow_id = w.id AND v.version = r.code_version_executed
        ORDER BY v.id DESC LIMIT 1;
    END IF;
    IF code IS NULL THEN
        msg := format('Version %s of the workflow code is no longer available',
                      r.code_version_executed);
        PERFORM calseta_workflow_run_complete(r.uuid, 'failed',
            jsonb_build_object('success', false, 'message', msg, 'data', '{}'::jsonb), '', 0);
        RETURN jsonb_build_object('failed', msg);
    END IF;
    SELECT * INTO ind FROM indicators
    WHERE type = r.trigger_context->>'indicator_type'
      AND value = r.trigger_context->>'indicator_value';
    IF NOT FOUND THEN
        msg := format('Indicator (%s, %L) not found in database',
                      r.trigger_context->>'indicator_type', r.trigger_context->>'indicator_value');
        PERFORM calseta_workflow_run_complete(r.uuid, 'failed',
            jsonb_build_object('success', false, 'message', msg, 'data', '{}'::jsonb), '', 0);
        RETURN jsonb_build_object('failed', msg);
    END IF;
    IF r.trigger_context->>'alert_id' IS NOT NULL THEN
        SELECT * INTO al FROM alerts WHERE id = (r.trigger_context->>'alert_id')::bigint;
    END IF;
    run_code := code;
    RETURN jsonb_build_object(
        'run_uuid', r.uuid, 'attempt', r.attempt_count, 'code', code,
        'timeout_seconds', w.timeout_seconds, 'trigger_context', r.trigger_context,
        'indicator', jsonb_build_object('uuid', ind.uuid, 'type', ind.type, 'value', ind.value,
            'malice', ind.malice, 'is_enriched', ind.is_enriched,
            'enrichment_results', ind.enrichment_results,
            'first_seen', calseta_ts(ind.first_seen), 'last_seen', calseta_ts(ind.last_seen),
            'created_at', calseta_ts(ind.created_at), 'updated_at', calseta_ts(ind.updated_at)),
        'alert', CASE WHEN al.id IS NULL THEN NULL ELSE jsonb_build_object('uuid', al.uuid,
            'title', al.title, 'severity', al.severity, 'source_name', al.source_name,
            'status', al.status, 'occurred_at', calseta_ts(al.occurred_at),
            'tags', to_jsonb(al.tags), 'raw_payload', al.raw_payload) END,
        'secrets', calseta_workflow_secret_tokens(w.id),
        -- credentials go only to a system workflow running its seeded code, never to code
        -- a user saved over it (PATCH) or to any user workflow: user code never gets them
        'is_system', w.is_system AND EXISTS (SELECT 1 FROM calseta_builtin_workflows b
                                             WHERE b.name = w.name AND b.code = run_code),
        'integration', (SELECT b.integration FROM calseta_builtin_workflows b
                        WHERE w.is_system AND b.name = w.name AND b.code = run_code));
END $$;
