/*
 * notifier.h - approval notifications: Slack (Web API, Block Kit) or Microsoft Teams (incoming
 * webhook, Adaptive Card), with the messages the original sends.
 *
 *   approval requested  Slack chat.postMessage with Approve/Reject buttons and the decide link
 *                       (its `ts` and channel are stored on the approval request), or a Teams
 *                       card with "Review & Decide" / "Approve via API" / "Reject via API"
 *   decision taken      Slack chat.update: the buttons are replaced by the outcome
 *   approved run ended  a result message (Slack, threaded under the request) or card (Teams,
 *                       colour Good/Attention); rejections send none
 *
 * Every hook is a cheap no-op when APPROVAL_NOTIFIER is none/unset, loads what it needs from
 * the database itself, never blocks the loop (the SSRF check runs on the thread pool, HTTP on
 * curl multi driven by the loop) and never fails the request that called it. A send is tried
 * up to 3 times, NOTIFIER_RETRY_SECONDS apart; each attempt is logged and the final outcome
 * audited (approval_notification_sent / approval_notification_failed). The bot token, the
 * webhook URL and the decide token never reach a log line or an audit event.
 *
 * Settings (read once at start): APPROVAL_NOTIFIER (none|slack|teams, case-insensitive;
 * unknown → none with a warning), SLACK_BOT_TOKEN, SLACK_API_URL (https://slack.com/api),
 * APPROVAL_DEFAULT_CHANNEL, TEAMS_WEBHOOK_URL, CALSETA_BASE_URL (http://localhost:8000),
 * NOTIFIER_RETRY_SECONDS (30), SSRF_ALLOWED_HOSTS (struct config).
 */
#ifndef CALSETA_INTAKE_NOTIFIER_H
#define CALSETA_INTAKE_NOTIFIER_H

#include "intake.h"

struct notifier;

/* Once at start (after workflows_api_init). Sets in->notifier. */
void notifier_init(struct intake *in);
/* After uv_run() returned: abandons sends waiting for a retry and closes every handle; the
 * caller runs the loop once more (UV_RUN_NOWAIT) so the handles are released. */
void notifier_free(struct intake *in);

/* After the pending approval request is committed: sends the approval message. */
void notifier_approval_requested(struct intake *in, const char *approval_uuid);
/* After any run's outcome is committed: sends the result notification when the run came from
 * an approved approval request; otherwise nothing. */
void notifier_run_finished(struct intake *in, const char *run_uuid);
/* After a decision on an approval request is committed (any path): Slack chat.update of the
 * request's message, replacing the buttons with the outcome. Teams/none: nothing. */
void notifier_approval_decided(struct intake *in, const char *approval_uuid);

#endif
