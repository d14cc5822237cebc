/*
 * workflows_api.h - the workflow side of the intake: workflows CRUD with validation
 * by a runner at save time, declared/admin-allowed secrets, execute (queues a run for
 * workflowd) and test, run records, and the approval gate (REST, token-authenticated decide
 * pages, Slack callback). Runs, code checks, test runs and approval notifications are
 * workflowd's (services/workflowd): the intake writes rows and wakes it, or asks it over the
 * bus (workflow_client.h). The intake encrypts a secret it is given but never decrypts one.
 *
 * workflows_api.c   module state, CRUD, versions, run lists, secrets routes
 * workflows_run.c   execute, test
 * workflow_client.c requests to workflowd
 * approvals.c      /v1/workflow-approvals, /v1/approvals/{uuid}/decide, Slack callback
 *
 * Settings read here (not in struct config): SLACK_SIGNING_SECRET (unset: Slack callbacks are
 * refused, unlike the original), APPROVAL_DEFAULT_TIMEOUT_SECONDS (3600), CALSETA_BASE_URL
 * (decide links).
 */
#ifndef CALSETA_WORKFLOWS_API_H
#define CALSETA_WORKFLOWS_API_H

#include "fernet.h"
#include "intake.h"

struct workflow_client;

struct workflows {
    struct intake *in;
    struct workflow_client *wfd; /* code checks and test runs, asked of workflowd */
    struct fernet_key key;       /* ENCRYPTION_KEY, to encrypt the workflow secrets it is given */
    int have_key;
    char *slack_signing_secret; /* NULL: Slack callbacks refused */
    char *base_url;
    int approval_default_timeout;
    uv_signal_t sigterm, sigint; /* stop the workflowd client when the intake drains */
    uv_timer_t stop_wait;
    uv_timer_t activate_retry; /* built-ins' is_active, until the database answers */
    int activate_tries;
    int stopping, open_handles, freed;
    uint64_t stop_started_ms; /* loop time of the stop signal */
};

/* Once, after mappings_refresh(): workflowd client (code checks, tests), settings. */
void workflows_api_init(struct intake *in);
/* After uv_run() returned; leaves no handle open (run the loop once more afterwards). */
void workflows_api_free(struct intake *in);

/* workflows_api.c */
void route_list_workflows(struct reqctx *rc);
void route_create_workflow(struct reqctx *rc);
void route_generate_workflow(struct reqctx *rc);
void route_get_workflow(struct reqctx *rc);
void route_patch_workflow(struct reqctx *rc);
void route_delete_workflow(struct reqctx *rc);
void route_workflow_versions(struct reqctx *rc);
void route_workflow_runs(struct reqctx *rc);
void route_list_workflow_runs(struct reqctx *rc);
void route_list_workflow_secrets(struct reqctx *rc);
void route_put_workflow_secret(struct reqctx *rc);
void route_delete_workflow_secret(struct reqctx *rc);

/* workflows_run.c */
void route_execute_workflow(struct reqctx *rc);
/* One execution through the approval gate, for REST and MCP alike: p = {indicator_type,
 * indicator_value, alert_uuid?, reason?, confidence?} (checked by the caller). Audits, starts
 * the run or sends the approval notification, then cb gets the outcome document (status
 * queued|pending_approval, or {"error": not_found|alert_not_found|agent_fields_required|
 * not_executable, "state"}), or doc NULL with the failed statement's res/err. */
typedef void (*wf_execute_cb)(void *arg, PGresult *res, const char *err, json_t *doc);
void wf_execute(struct intake *in, const char *wf_uuid, json_t *p, const char *key_prefix,
                const char *request_id, const char *client_ip, wf_execute_cb cb, void *arg);
void route_test_workflow(struct reqctx *rc);
/* After a run was committed queued: NOTIFY calseta_workflowd (workflowd takes it). */
void wf_runs_wake(struct intake *in);

/* approvals.c */
void route_list_approvals(struct reqctx *rc);
void route_get_approval(struct reqctx *rc);
void route_approve(struct reqctx *rc);
void route_reject(struct reqctx *rc);
void route_decide_page(struct reqctx *rc);
void route_decide_submit(struct reqctx *rc);
void route_slack_callback(struct reqctx *rc);
void route_teams_callback(struct reqctx *rc);

/* Shared helpers (workflows_api.c). */

/* Generic SQL completion: NULL/error → 503/422/500 and returns -1 (replied). */

#endif
