/*
 * run_request.h - a RUN request for the workflow runner, built from the JSON document that
 * calseta_workflow_run_claim (a queued run) or the test route (a synthetic indicator) makes:
 * {code, trigger_context, indicator, alert, secrets: {name: Fernet token}, is_system,
 * integration}. Used by workflowd (runs) and the intake (test runs).
 *
 * Secrets are decrypted into locked memory (secmem) only here, and wiped by
 * run_request_destroy() as soon as the request has been encoded. A built-in (system) workflow
 * running its seeded code (the claim says is_system, and which integration) also gets that
 * integration's credentials from the settings in `integrations`
 * (OKTA_DOMAIN/OKTA_API_TOKEN[/OKTA_BASE_URL], ENTRA_TENANT_ID/ENTRA_CLIENT_ID/
 * ENTRA_CLIENT_SECRET[/ENTRA_LOGIN_URL/ENTRA_GRAPH_URL]); user workflows never.
 */
#ifndef CALSETA_RUN_REQUEST_H
#define CALSETA_RUN_REQUEST_H

#include "fernet.h"
#include "proto/runner.h"

#include <jansson.h>

struct settings;

/* key: ENCRYPTION_KEY, or NULL (every secret is then skipped and logged). */
void run_request_init(struct runner_run_req *r, json_t *doc, const char *run_uuid,
                      int timeout_seconds, const struct fernet_key *key,
                      const struct settings *settings);
/* Wipes the secrets and the integration credentials, frees everything. */
void run_request_destroy(struct runner_run_req *r);
/* {success, message, data} of a runner result, as stored and answered. */
json_t *run_result_json(const struct runner_result *r);

#endif
