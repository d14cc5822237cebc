/*
 * settings_api.c - GET /v1/settings/approval-defaults (admin): how approval requests are
 * notified by default, from the settings the intake started with. Says whether the Slack and
 * Teams credentials are configured, never what they are.
 */
#include "catalogue.h"
#include "settings.h"
#include "workflows_api.h"

#include <string.h>

static const char *setting(struct reqctx *rc, const char *name)
{
    const struct config *c = &rc->in->cfg;
    const char *v = c->settings ? settings_get(c->settings, name) : NULL;
    return v && *v ? v : NULL;
}

void route_approval_defaults(struct reqctx *rc)
{
    const char *notifier = setting(rc, "APPROVAL_NOTIFIER");
    const char *channel = setting(rc, "APPROVAL_DEFAULT_CHANNEL");
    int timeout = rc->in->workflows ? rc->in->workflows->approval_default_timeout : 3600;
    json_t *data = json_pack("{s:s,s:o,s:i,s:b,s:b}", "notifier", notifier ? notifier : "none",
                             "default_channel", channel ? json_string(channel) : json_null(),
                             "default_timeout_seconds", timeout, "slack_configured",
                             setting(rc, "SLACK_BOT_TOKEN") != NULL, "teams_configured",
                             setting(rc, "TEAMS_WEBHOOK_URL") != NULL);
    reply_data(rc, 200, data);
}
