/*
 * main.c - calseta-workflowd: the workflow service (see workflowd.h).
 *
 *   1. hardening, configuration      secure_process_init() before any secret is read (the
 *                                    Slack bot token and the Teams webhook URL are secrets)
 *   2. loop, database pool, audit    uv_default_loop(), pg_pool_new(), audit_client_new()
 *   3. notifier, queue               notifier_init(); LISTEN calseta_workflowd and a sweep
 *   4. SIGTERM/SIGINT: drain         stop taking rows, close the pool; transfers in flight end
 *                                    within their timeout, sends waiting for a retry are
 *                                    abandoned (logged)
 */
#include "audit.h"
#include "bus.h"
#include "log.h"
#include "notifier.h"
#include "procsec.h"
#include "settings_table.h"
#include "util.h"
#include "workflowd.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_pool_closed(void *arg)
{
    (void)arg;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct workflowd *wd = s->data;
    if (wd->draining)
        return;
    wd->draining = 1;
    msg_info("received %s: stopping (%lu notifications taken)", strsignal(signum), wd->taken);
    queue_stop(wd);
    uv_close((uv_handle_t *)&wd->sigterm, NULL);
    uv_close((uv_handle_t *)&wd->sigint, NULL);
    struct pg_pool *pg = wd->pg;
    wd->pg = NULL; /* the notifier stores no more Slack message ids from here on */
    pg_pool_close(pg, on_pool_closed, wd);
}

static int options_load(struct workflowd *wd, char *err, size_t errlen)
{
    return setting_integer(wd->cfg->settings, "WORKFLOWD_POLL_INTERVAL_MS", 100, 600000,
                           &wd->poll_ms, err, errlen);
}

int main(void)
{
    static struct config cfg;
    static struct workflowd wd;
    char err[512];
    if (secure_process_init(err, sizeof err) != 0) /* before any secret is read */
        fprintf(stderr, "calseta-workflowd: %s\n", err);
    if (config_load(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-workflowd: configuration error: %s\n", err);
        return 1;
    }
    config_init_log(&cfg, "workflowd");
    if (!*cfg.database_url)
        msg_fatal("DATABASE_URL is not set");
    wd.cfg = &cfg;
    if (options_load(&wd, err, sizeof err) != 0)
        msg_fatal("configuration error: %s", err);
    signal(SIGPIPE, SIG_IGN);
    wd.loop = uv_default_loop();
    wd.pg = pg_pool_new(wd.loop, cfg.database_url, 2, 30000);
    wd.audit = audit_client_new(&cfg, "workflowd", wd.loop);
    notifier_init(&wd);
    queue_start(&wd);
    uv_signal_init(wd.loop, &wd.sigterm);
    uv_signal_init(wd.loop, &wd.sigint);
    wd.sigterm.data = wd.sigint.data = &wd;
    uv_signal_start(&wd.sigterm, on_signal, SIGTERM);
    uv_signal_start(&wd.sigint, on_signal, SIGINT);
    msg_info("workflowd: approval notifications from workflow_notifications, sweep every %d ms",
             wd.poll_ms);

    uv_run(wd.loop, UV_RUN_DEFAULT);

    notifier_free(&wd);
    uv_run(wd.loop, UV_RUN_NOWAIT);
    audit_client_flush(wd.audit, 3000);
    audit_client_free(wd.audit);
    uv_run(wd.loop, UV_RUN_NOWAIT);
    if (uv_loop_close(wd.loop) != 0)
        msg_warn("event loop closed with handles still open");
    bus_context_term();
    config_destroy(&cfg);
    return 0;
}
