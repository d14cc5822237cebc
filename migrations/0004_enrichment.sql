-- 0004_enrichment.sql - what the enrichment workers need beyond the reference schema:
-- the shared result cache, change notifications for provider configuration, the claim /
-- complete / release functions of the job outbox, the configuration document the workers (and
-- the intake's on-demand lookups) load, and the four built-in providers of the reference with
-- their field extractions (idempotent by provider_name; extractions by provider, type, path).

-- Shared cache: one successful result per provider and indicator, until expires_at. Written
-- in the job's completing transaction, read once per job. Only successes are stored.
CREATE TABLE enrichment_cache (
    provider_name TEXT NOT NULL,
    indicator_type TEXT NOT NULL,
    indicator_value TEXT NOT NULL,
    result JSONB NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_name, indicator_type, indicator_value)
);
CREATE INDEX ix_enrichment_cache_expires_at ON enrichment_cache (expires_at);

-- Any change to providers, extractions or indicator mappings tells every worker to reload
-- (the reference's worker kept stale configuration until restarted).
CREATE FUNCTION calseta_providers_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('calseta_providers', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER enrichment_providers_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON enrichment_providers
    FOR EACH STATEMENT EXECUTE FUNCTION calseta_providers_notify();
CREATE TRIGGER enrichment_field_extractions_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON enrichment_field_extractions
    FOR EACH STATEMENT EXECUTE FUNCTION calseta_providers_notify();
CREATE TRIGGER indicator_field_mappings_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON indicator_field_mappings
    FOR EACH STATEMENT EXECUTE FUNCTION calseta_providers_notify();

-- The configuration document: active providers (auth_config as stored: the Fernet envelope),
-- active field extractions, active pass-3 (raw_payload) indicator mappings.
CREATE FUNCTION calseta_enrichment_config() RETURNS JSONB LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'providers', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'name', p.provider_name, 'types', to_jsonb(p.supported_indicator_types),
                'http_config', p.http_config, 'auth_type', p.auth_type,
                'auth_config', p.auth_config, 'env_var_mapping', p.env_var_mapping,
                'default_ttl', p.default_cache_ttl_seconds, 'ttl_by_type', p.cache_ttl_by_type,
                'malice_rules', p.malice_rules, 'mock_responses', p.mock_responses)
                ORDER BY p.provider_name), '[]'::jsonb)
            FROM enrichment_providers p WHERE p.is_active),
        'extractions', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'provider', x.provider_name, 'type', x.indicator_type,
                'source_path', x.source_path, 'target_key', x.target_key,
                'value_type', x.value_type) ORDER BY x.id), '[]'::jsonb)
            FROM enrichment_field_extractions x WHERE x.is_active),
        'mappings', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'source_name', m.source_name, 'field_path', m.field_path,
                'indicator_type', m.indicator_type) ORDER BY m.id), '[]'::jsonb)
            FROM indicator_field_mappings m
            WHERE m.is_active AND m.extraction_target = 'raw_payload'))
$$;

-- Claims up to p_limit jobs: pending ones, and running ones whose lease expired (their worker
-- died or stalled). FOR UPDATE SKIP LOCKED lets any number of workers claim at once without
-- waiting on each other. Jobs that already used p_max_attempts claims are marked failed (with
-- their alert's enrichment_status) instead of being retried forever.
-- Each row carries what the worker needs: the alert's source and raw payload, and the
-- indicators already linked to the alert (passes 1 and 2 ran at ingest).
CREATE FUNCTION calseta_enrich_claim(p_owner TEXT, p_lease_seconds INTEGER, p_limit INTEGER,
                                     p_max_attempts INTEGER)
RETURNS TABLE (job_id BIGINT, alert_id BIGINT, attempts INTEGER, doc JSONB)
LANGUAGE plpgsql AS $$
BEGIN
    WITH dead AS (
        UPDATE enrichment_jobs j
           SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL,
               completed_at = now(), updated_at = now(),
               last_error = coalesce(j.last_error, 'lease expired') || ' (gave up after '
                            || j.attempts || ' attempts)'
         WHERE j.id IN (SELECT d.id FROM enrichment_jobs d
                         WHERE (d.status = 'pending'
                                OR (d.status = 'running' AND d.lease_expires_at < now()))
                           AND d.attempts >= p_max_attempts
                         ORDER BY d.id LIMIT 100 FOR UPDATE SKIP LOCKED)
        RETURNING j.alert_id)
    UPDATE alerts a SET enrichment_status = 'Failed', updated_at = now()
      FROM dead WHERE a.id = dead.alert_id AND a.enrichment_status <> 'Enriched';

    RETURN QUERY
    WITH c AS (
        SELECT j.id FROM enrichment_jobs j
         WHERE (j.status = 'pending' OR (j.status = 'running' AND j.lease_expires_at < now()))
           AND j.attempts < p_max_attempts
         ORDER BY j.id LIMIT p_limit FOR UPDATE SKIP LOCKED),
    u AS (
        UPDATE enrichment_jobs j
           SET status = 'running', attempts = j.attempts + 1, lease_owner = p_owner,
               lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               updated_at = now()
          FROM c WHERE j.id = c.id
        RETURNING j.id, j.alert_id, j.attempts)
    SELECT u.id, u.alert_id, u.attempts,
           jsonb_build_object(
               'source_name', a.source_name, 'raw_payload', a.raw_payload,
               'indicators', coalesce((SELECT jsonb_agg(jsonb_build_object('type', i.type,
                                                                           'value', i.value)
                                                        ORDER BY i.id)
                                         FROM alert_indicators ai
                                         JOIN indicators i ON i.id = ai.indicator_id
                                        WHERE ai.alert_id = u.alert_id), '[]'::jsonb))
      FROM u JOIN alerts a ON a.id = u.alert_id;
END $$;

-- Cached results for a job's lookups: p_keys = [{provider, type, value}, ...].
CREATE FUNCTION calseta_enrich_cache_get(p_keys JSONB)
RETURNS TABLE (provider_name TEXT, indicator_type TEXT, indicator_value TEXT, result JSONB,
               ttl_left INTEGER)
LANGUAGE sql STABLE AS $$
    SELECT c.provider_name, c.indicator_type, c.indicator_value, c.result,
           greatest(1, floor(extract(epoch FROM c.expires_at - now())))::integer
      FROM jsonb_to_recordset(p_keys) AS k(provider TEXT, type TEXT, value TEXT)
      JOIN enrichment_cache c ON c.provider_name = k.provider AND c.indicator_type = k.type
                             AND c.indicator_value = k.value
     WHERE c.expires_at > now()
$$;

-- Merges a run's results into indicators.enrichment_results (shallow, per provider, as the
-- reference). A provider's entry that only differs by enriched_at keeps the stored one, so
-- running a job again with the same outcome leaves the row as it was.
CREATE FUNCTION calseta_merge_results(old JSONB, fresh JSONB) RETURNS JSONB
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(old, '{}'::jsonb) || coalesce((
        SELECT jsonb_object_agg(e.k, CASE WHEN old ? e.k AND jsonb_typeof(old->e.k) = 'object'
                                               AND jsonb_typeof(e.v) = 'object'
                                               AND (old->e.k) - 'enriched_at' = e.v - 'enriched_at'
                                          THEN old->e.k ELSE e.v END)
          FROM jsonb_each(coalesce(fresh, '{}'::jsonb)) AS e(k, v)), '{}'::jsonb)
$$;

-- Completes a job in one transaction, if this worker still holds its lease:
--   doc = {"indicators": [{type, value, new, malice, results: {provider: result}}],
--          "cache": [{provider, type, value, ttl, result}],
--          "summary": {indicator_count, providers_succeeded, providers_failed, malice_counts}}
-- Pass-3 indicators ("new") are upserted and linked; results are merged into
-- indicators.enrichment_results per provider (shallow, as the reference); malice is the worst
-- verdict of this run unless an analyst set it; the alert is marked Enriched; successes go to
-- the shared cache; the job is marked done. Rows are only rewritten when something changed,
-- and in a fixed order (no deadlocks between workers), so running a job again with the same
-- provider answers changes nothing. Returns 'done', or 'lease_lost' (another worker took the
-- job over; nothing is written) or 'gone' (the job or its alert was deleted).
CREATE FUNCTION calseta_enrich_complete(p_job BIGINT, p_owner TEXT, doc JSONB)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    j enrichment_jobs;
    a_ingested TIMESTAMPTZ;
    changed INTEGER := 0;
    n INTEGER;
BEGIN
    SELECT * INTO j FROM enrichment_jobs WHERE id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    IF j.status <> 'running' OR j.lease_owner IS DISTINCT FROM p_owner THEN
        RETURN 'lease_lost';
    END IF;
    SELECT ingested_at INTO a_ingested FROM alerts WHERE id = j.alert_id;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;

    INSERT INTO indicators AS ind (type, value, first_seen, last_seen)
    SELECT x->>'type', x->>'value', a_ingested, a_ingested
      FROM jsonb_array_elements(doc->'indicators') x
     WHERE coalesce((x->>'new')::boolean, false)
     ORDER BY 1, 2
    ON CONFLICT (type, value) DO UPDATE SET last_seen = EXCLUDED.last_seen, updated_at = now()
     WHERE ind.last_seen < EXCLUDED.last_seen;

    INSERT INTO alert_indicators (alert_id, indicator_id)
    SELECT j.alert_id, i.id
      FROM jsonb_array_elements(doc->'indicators') x
      JOIN indicators i ON i.type = x->>'type' AND i.value = x->>'value'
     ORDER BY i.id
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed + n;

    PERFORM 1 FROM indicators i
      JOIN jsonb_array_elements(doc->'indicators') x
        ON i.type = x->>'type' AND i.value = x->>'value'
     ORDER BY i.id FOR UPDATE OF i;

    UPDATE indicators i
       SET enrichment_results = calseta_merge_results(i.enrichment_results, x->'results'),
           malice = CASE WHEN i.malice_source = 'analyst' THEN i.malice ELSE x->>'malice' END,
           is_enriched = true, updated_at = now()
      FROM jsonb_array_elements(doc->'indicators') x
     WHERE i.type = x->>'type' AND i.value = x->>'value'
       AND (NOT i.is_enriched
            OR i.enrichment_results IS DISTINCT FROM
               calseta_merge_results(i.enrichment_results, x->'results')
            OR (i.malice_source <> 'analyst' AND i.malice IS DISTINCT FROM x->>'malice'));
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed + n;

    UPDATE alerts SET is_enriched = true, enriched_at = now(), enrichment_status = 'Enriched',
                      updated_at = now()
     WHERE id = j.alert_id
       AND (changed > 0 OR NOT is_enriched OR enrichment_status <> 'Enriched');
    IF FOUND THEN
        INSERT INTO activity_events (event_type, actor_type, alert_id, "references")
        VALUES ('alert_enrichment_completed', 'system', j.alert_id,
                coalesce(doc->'summary', '{}'::jsonb)
                    || jsonb_build_object('enriched_at', calseta_ts(now())));
    END IF;

    INSERT INTO enrichment_cache AS c (provider_name, indicator_type, indicator_value, result,
                                       expires_at)
    SELECT x->>'provider', x->>'type', x->>'value', x->'result',
           now() + make_interval(secs => (x->>'ttl')::integer)
      FROM jsonb_array_elements(doc->'cache') x
     WHERE (x->>'ttl')::integer > 0
     ORDER BY 1, 2, 3
    ON CONFLICT (provider_name, indicator_type, indicator_value)
    DO UPDATE SET result = EXCLUDED.result, expires_at = EXCLUDED.expires_at,
                  created_at = now();

    UPDATE enrichment_jobs SET status = 'done', completed_at = now(), lease_owner = NULL,
                               lease_expires_at = NULL, last_error = NULL, updated_at = now()
     WHERE id = p_job;
    RETURN 'done';
END $$;

-- Gives a job back (this worker could not finish it): it is claimable again at once.
CREATE FUNCTION calseta_enrich_release(p_job BIGINT, p_owner TEXT, p_error TEXT)
RETURNS VOID LANGUAGE sql AS $$
    UPDATE enrichment_jobs SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                               last_error = left(p_error, 1000), updated_at = now()
     WHERE id = p_job AND lease_owner = p_owner AND status = 'running'
$$;

-- Extends the leases a worker holds on jobs still in progress.
CREATE FUNCTION calseta_enrich_renew(p_jobs BIGINT[], p_owner TEXT, p_lease_seconds INTEGER)
RETURNS INTEGER LANGUAGE sql AS $$
    WITH r AS (
        UPDATE enrichment_jobs
           SET lease_expires_at = now() + make_interval(secs => p_lease_seconds),
               updated_at = now()
         WHERE id = ANY (p_jobs) AND lease_owner = p_owner AND status = 'running'
        RETURNING 1)
    SELECT count(*)::integer FROM r
$$;

---------------------------------------------------------------------------------------------
-- Built-in providers as the original seeds them. Seeding is idempotent by
-- provider_name; like the reference, an existing row gets its http_config refreshed and keeps
-- everything an operator may change (is_active, auth_config, malice_rules, TTLs).
-- Deliberate change: Entra's optional user_manager step has no not_found_status, so a user
-- without a manager is still found (the reference stopped the whole lookup as "not found").
---------------------------------------------------------------------------------------------
INSERT INTO enrichment_providers AS p (provider_name, display_name, description, is_builtin,
    is_active, supported_indicator_types, http_config, auth_type, env_var_mapping,
    default_cache_ttl_seconds, cache_ttl_by_type, malice_rules)
VALUES
('virustotal', 'VirusTotal', 'VirusTotal v3 reputation for IPs, domains and file hashes.', true,
 true, ARRAY['ip', 'domain', 'hash_md5', 'hash_sha1', 'hash_sha256'],
 '{"url_templates_by_type": {
     "ip": "https://www.virustotal.com/api/v3/ip_addresses/{{indicator.value}}",
     "domain": "https://www.virustotal.com/api/v3/domains/{{indicator.value}}",
     "hash_md5": "https://www.virustotal.com/api/v3/files/{{indicator.value}}",
     "hash_sha1": "https://www.virustotal.com/api/v3/files/{{indicator.value}}",
     "hash_sha256": "https://www.virustotal.com/api/v3/files/{{indicator.value}}"},
   "steps": [{"name": "lookup", "method": "GET",
              "url": "https://www.virustotal.com/api/v3/ip_addresses/{{indicator.value}}",
              "headers": {"x-apikey": "{{auth.api_key}}", "Accept": "application/json"},
              "timeout_seconds": 30, "expected_status": [200], "not_found_status": [404]}]}',
 'api_key', '{"api_key": "VIRUSTOTAL_API_KEY"}', 3600,
 '{"ip": 3600, "domain": 21600, "hash_md5": 86400, "hash_sha1": 86400, "hash_sha256": 86400}',
 '{"rules": [
     {"field": "data.attributes.last_analysis_stats.malicious", "operator": ">", "value": 0,
      "verdict": "Malicious"},
     {"field": "data.attributes.last_analysis_stats.suspicious", "operator": ">", "value": 0,
      "verdict": "Suspicious"}],
   "default_verdict": "Benign", "not_found_verdict": "Pending"}'),
('abuseipdb', 'AbuseIPDB', 'AbuseIPDB abuse confidence for IP addresses.', true, true,
 ARRAY['ip'],
 '{"steps": [{"name": "check", "method": "GET", "url": "https://api.abuseipdb.com/api/v2/check",
              "query_params": {"ipAddress": "{{indicator.value}}", "maxAgeInDays": "90"},
              "headers": {"Key": "{{auth.api_key}}", "Accept": "application/json"},
              "timeout_seconds": 30, "expected_status": [200]}]}',
 'api_key', '{"api_key": "ABUSEIPDB_API_KEY"}', 3600, '{"ip": 3600}',
 '{"rules": [
     {"field": "data.abuseConfidenceScore", "operator": ">=", "value": 75, "verdict": "Malicious"},
     {"field": "data.abuseConfidenceScore", "operator": ">=", "value": 25, "verdict": "Suspicious"}],
   "default_verdict": "Benign", "not_found_verdict": "Pending"}'),
('okta', 'Okta', 'Okta user directory: profile, status, groups and manager of an account.', true,
 true, ARRAY['account'],
 '{"steps": [
    {"name": "user_lookup", "method": "GET",
     "url": "https://{{auth.domain}}/api/v1/users/{{indicator.value}}",
     "headers": {"Authorization": "SSWS {{auth.api_token}}", "Accept": "application/json"},
     "timeout_seconds": 30, "expected_status": [200], "not_found_status": [404]},
    {"name": "user_groups", "method": "GET",
     "url": "https://{{auth.domain}}/api/v1/users/{{steps.user_lookup.response.id}}/groups",
     "headers": {"Authorization": "SSWS {{auth.api_token}}", "Accept": "application/json"},
     "timeout_seconds": 30, "expected_status": [200], "optional": true},
    {"name": "user_manager", "method": "GET",
     "url": "https://{{auth.domain}}/api/v1/users/{{steps.user_lookup.response.id}}/linkedObjects/manager",
     "headers": {"Authorization": "SSWS {{auth.api_token}}", "Accept": "application/json"},
     "timeout_seconds": 30, "expected_status": [200], "optional": true}]}',
 'api_token', '{"api_token": "OKTA_API_TOKEN", "domain": "OKTA_DOMAIN"}', 900,
 '{"account": 900}', NULL),
('entra', 'Microsoft Entra ID', 'Microsoft Graph user directory: profile, groups and manager of an account.',
 true, true, ARRAY['account'],
 '{"steps": [
    {"name": "token", "method": "POST",
     "url": "https://login.microsoftonline.com/{{auth.tenant_id}}/oauth2/v2.0/token",
     "form_body": {"client_id": "{{auth.client_id}}", "client_secret": "{{auth.client_secret}}",
                   "scope": "https://graph.microsoft.com/.default",
                   "grant_type": "client_credentials"},
     "timeout_seconds": 30, "expected_status": [200]},
    {"name": "user_lookup", "method": "GET",
     "url": "https://graph.microsoft.com/v1.0/users/{{indicator.value}}?$select=id,displayName,userPrincipalName,mail,accountEnabled,department,jobTitle,lastPasswordChangeDateTime",
     "headers": {"Authorization": "Bearer {{steps.token.response.access_token}}",
                 "Accept": "application/json"},
     "timeout_seconds": 30, "expected_status": [200], "not_found_status": [404]},
    {"name": "user_groups", "method": "GET",
     "url": "https://graph.microsoft.com/v1.0/users/{{steps.user_lookup.response.id}}/memberOf?$select=displayName",
     "headers": {"Authorization": "Bearer {{steps.token.response.access_token}}",
                 "Accept": "application/json"},
     "timeout_seconds": 30, "expected_status": [200], "optional": true},
    {"name": "user_manager", "method": "GET",
     "url": "https://graph.microsoft.com/v1.0/users/{{steps.user_lookup.response.id}}/manager?$select=displayName,mail,jobTitle",
     "headers": {"Authorization": "Bearer {{steps.token.response.access_token}}",
                 "Accept": "application/json"},
     "timeout_seconds": 30, "expected_status": [200], "optional": true}]}',
 'oauth2_client_credentials',
 '{"tenant_id": "ENTRA_TENANT_ID", "client_id": "ENTRA_CLIENT_ID", "client_secret": "ENTRA_CLIENT_SECRET"}',
 900, '{"account": 900}', NULL)
ON CONFLICT (provider_name) DO UPDATE SET http_config = EXCLUDED.http_config, updated_at = now();

-- Mock answers for ENRICHMENT_MOCK_MODE=true (as the original's): static per type, the verdicts
-- the original seeds. Entry: {"raw": response, "malice": verdict}; extracted fields come from
-- the provider's field extractions over raw.
UPDATE enrichment_providers SET mock_responses = m.mock, updated_at = now()
  FROM (VALUES
    ('virustotal', '{
       "ip": {"malice": "Malicious", "raw": {"data": {"id": "185.220.101.34", "type": "ip_address",
              "attributes": {"last_analysis_stats": {"malicious": 14, "suspicious": 2, "harmless": 50, "undetected": 10},
                             "reputation": -45, "tags": ["tor"], "country": "DE", "as_owner": "Tor exit relay operator",
                             "asn": 60729, "network": "185.220.101.0/24", "categories": {}}}}},
       "domain": {"malice": "Malicious", "raw": {"data": {"id": "evil-c2.example.com", "type": "domain",
                  "attributes": {"last_analysis_stats": {"malicious": 9, "suspicious": 1, "harmless": 40, "undetected": 20},
                                 "reputation": -30, "tags": [], "registrar": "Example Registrar",
                                 "creation_date": 1700000000, "categories": {"vendor": "command and control"}}}}},
       "hash_sha256": {"malice": "Malicious", "raw": {"data": {"type": "file",
                  "attributes": {"last_analysis_stats": {"malicious": 58, "suspicious": 0, "harmless": 0, "undetected": 12},
                                 "reputation": -80, "tags": ["emotet", "peexe"], "meaningful_name": "svchost_update.exe",
                                 "type_description": "Win32 EXE", "size": 482304}}}}}'::jsonb),
    ('abuseipdb', '{"ip": {"malice": "Malicious", "raw": {"data": {"ipAddress": "185.220.101.34",
       "isPublic": true, "abuseConfidenceScore": 100, "countryCode": "DE", "usageType": "Data Center/Web Hosting/Transit",
       "isp": "Tor exit relay operator", "totalReports": 1423, "numDistinctUsers": 312, "isTor": true,
       "isWhitelisted": false, "lastReportedAt": "2026-01-01T00:00:00+00:00"}}}}'::jsonb),
    ('okta', '{"account": {"malice": "Pending", "raw": {
       "user_lookup": {"id": "00u1jmartinez", "status": "ACTIVE", "created": "2023-02-01T09:00:00.000Z",
                       "lastLogin": "2026-01-01T08:00:00.000Z", "passwordChanged": "2025-10-01T08:00:00.000Z",
                       "profile": {"login": "j.martinez@contoso.com", "email": "j.martinez@contoso.com",
                                   "firstName": "Jordan", "lastName": "Martinez", "department": "Finance",
                                   "title": "Senior Accountant"}},
       "user_groups": [{"profile": {"name": "Everyone"}}, {"profile": {"name": "Finance"}},
                       {"profile": {"name": "VPN Users"}}],
       "user_manager": [{"profile": {"displayName": "Sunita Patel"}}]}}}'::jsonb),
    ('entra', '{"account": {"malice": "Pending", "raw": {
       "user_lookup": {"id": "6f1c2a9e-0000-4000-8000-00000000a001", "displayName": "Jordan Martinez",
                       "userPrincipalName": "j.martinez@contoso.com", "mail": "j.martinez@contoso.com",
                       "accountEnabled": true, "department": "Finance", "jobTitle": "Senior Accountant",
                       "lastPasswordChangeDateTime": "2025-10-01T08:00:00Z"},
       "user_groups": {"value": [{"displayName": "Finance"}, {"displayName": "GlobalAdmins"}]},
       "user_manager": {"displayName": "Sunita Patel", "mail": "s.patel@contoso.com", "jobTitle": "Finance Director"}}}}'::jsonb)
  ) AS m(name, mock)
 WHERE enrichment_providers.provider_name = m.name;
UPDATE enrichment_providers
   SET mock_responses = jsonb_set(jsonb_set(mock_responses, '{hash_md5}', mock_responses->'hash_sha256'),
                                  '{hash_sha1}', mock_responses->'hash_sha256')
 WHERE provider_name = 'virustotal';

INSERT INTO enrichment_field_extractions (provider_name, indicator_type, source_path, target_key,
                                          value_type, is_system, description)
SELECT 'virustotal', t.type, r.path, r.key, r.vt, true, r.descr
  FROM (VALUES ('ip'), ('domain'), ('hash_md5'), ('hash_sha1'), ('hash_sha256')) AS t(type)
 CROSS JOIN (VALUES
    ('data.attributes.last_analysis_stats.malicious', 'malicious_count', 'int', 'Engines flagging malicious'),
    ('data.attributes.last_analysis_stats.suspicious', 'suspicious_count', 'int', 'Engines flagging suspicious'),
    ('data.attributes.reputation', 'reputation', 'int', 'Community reputation score'),
    ('data.attributes.tags', 'tags', 'list', 'VirusTotal tags')) AS r(path, key, vt, descr)
UNION ALL
SELECT 'virustotal', 'ip', path, key, vt, true, descr FROM (VALUES
    ('data.attributes.country', 'country', 'string', 'Country'),
    ('data.attributes.as_owner', 'as_owner', 'string', 'Autonomous system owner'),
    ('data.attributes.asn', 'asn', 'int', 'Autonomous system number'),
    ('data.attributes.network', 'network', 'string', 'Network (CIDR)'),
    ('data.attributes.categories', 'categories', 'dict', 'Categories by vendor')) AS r(path, key, vt, descr)
UNION ALL
SELECT 'virustotal', 'domain', path, key, vt, true, descr FROM (VALUES
    ('data.attributes.registrar', 'registrar', 'string', 'Registrar'),
    ('data.attributes.creation_date', 'creation_date', 'int', 'Creation date (unix time)'),
    ('data.attributes.categories', 'categories', 'dict', 'Categories by vendor')) AS r(path, key, vt, descr)
UNION ALL
SELECT 'virustotal', t.type, r.path, r.key, r.vt, true, r.descr
  FROM (VALUES ('hash_md5'), ('hash_sha1'), ('hash_sha256')) AS t(type)
 CROSS JOIN (VALUES
    ('data.attributes.meaningful_name', 'meaningful_name', 'string', 'Most meaningful file name'),
    ('data.attributes.type_description', 'type_description', 'string', 'File type'),
    ('data.attributes.size', 'size', 'int', 'File size in bytes')) AS r(path, key, vt, descr)
UNION ALL
SELECT 'abuseipdb', 'ip', path, key, vt, true, descr FROM (VALUES
    ('data.abuseConfidenceScore', 'abuse_confidence_score', 'int', 'Abuse confidence (0-100)'),
    ('data.totalReports', 'total_reports', 'int', 'Reports in the period'),
    ('data.countryCode', 'country_code', 'string', 'Country code'),
    ('data.isp', 'isp', 'string', 'ISP'),
    ('data.usageType', 'usage_type', 'string', 'Usage type'),
    ('data.isWhitelisted', 'is_whitelisted', 'bool', 'On the AbuseIPDB allow list'),
    ('data.isTor', 'is_tor', 'bool', 'Tor exit node'),
    ('data.isPublic', 'is_public', 'bool', 'Public address'),
    ('data.numDistinctUsers', 'num_distinct_users', 'int', 'Distinct reporters'),
    ('data.lastReportedAt', 'last_reported_at', 'string', 'Last report time')) AS r(path, key, vt, descr)
UNION ALL
SELECT 'okta', 'account', path, key, vt, true, descr FROM (VALUES
    ('user_lookup.id', 'user_id', 'string', 'Okta user id'),
    ('user_lookup.profile.login', 'login', 'string', 'Login'),
    ('user_lookup.profile.email', 'email', 'string', 'Email'),
    ('user_lookup.profile.firstName', 'first_name', 'string', 'First name'),
    ('user_lookup.profile.lastName', 'last_name', 'string', 'Last name'),
    ('user_lookup.profile.department', 'department', 'string', 'Department'),
    ('user_lookup.profile.title', 'title', 'string', 'Title'),
    ('user_lookup.status', 'status', 'string', 'Account status'),
    ('user_lookup.created', 'created', 'string', 'Created'),
    ('user_lookup.lastLogin', 'last_login', 'string', 'Last login'),
    ('user_lookup.passwordChanged', 'password_changed', 'string', 'Password changed')) AS r(path, key, vt, descr)
UNION ALL
SELECT 'entra', 'account', path, key, vt, true, descr FROM (VALUES
    ('user_lookup.id', 'object_id', 'string', 'Entra object id'),
    ('user_lookup.userPrincipalName', 'user_principal_name', 'string', 'User principal name'),
    ('user_lookup.displayName', 'display_name', 'string', 'Display name'),
    ('user_lookup.mail', 'mail', 'string', 'Mail'),
    ('user_lookup.accountEnabled', 'account_enabled', 'bool', 'Account enabled'),
    ('user_lookup.department', 'department', 'string', 'Department'),
    ('user_lookup.jobTitle', 'job_title', 'string', 'Job title'),
    ('user_lookup.lastPasswordChangeDateTime', 'last_password_change', 'string', 'Password changed')) AS r(path, key, vt, descr)
ON CONFLICT (provider_name, indicator_type, source_path) DO NOTHING;
