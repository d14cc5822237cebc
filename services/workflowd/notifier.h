/*
 * notifier.h - approval notifications: Slack (Web API, Block Kit) or Microsoft Teams (incoming
 * webhook, Adaptive Card), with the messages the original sends.
 *
 * The intake never sends them: triggers queue a row in workflow_notifications when a request is
 * made, decided or its run ends, and workflowd takes the rows (queue.c).
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
#ifndef WORKFLOWD_NOTIFIER_H
#define WORKFLOWD_NOTIFIER_H

#include "workflowd.h"

struct notifier;

/* Once at start. Sets wd->notifier. */
void notifier_init(struct workflowd *wd);
/* After uv_run() returned: abandons sends waiting for a retry and closes every handle; the
 * caller runs the loop once more (UV_RUN_NOWAIT) so the handles are released. */
void notifier_free(struct workflowd *wd);

/* One row of workflow_notifications, taken by queue.c: kind is approval_request (the pending
 * request's message), decision_update (Slack chat.update replacing the buttons with the
 * outcome; Teams/none: nothing) or result (the outcome of a run an approved request started);
 * uuid is the approval request's, or the run's for result. */
void notifier_queued(struct workflowd *wd, const char *kind, const char *uuid);

#endif
