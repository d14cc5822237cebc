/*
 * main.c - calseta-workflowd: the workflow service (see workflowd.h).
 *
 *   1. hardening, configuration      secure_process_init() before any secret is read (the
 *                                    Slack bot token and the Teams webhook URL are secrets)
 *   2. loop, database pool, audit    uv_default_loop(), pg_pool_new(), audit_client_new()
 *   3. runs, requests, notifier,     runs_init() (runner client), requests_init() (code
 *      queue                         checks and test runs for intakes), notifier_init(); LISTEN
 *                                    calseta_workflowd and a sweep
 *   4. SIGTERM/SIGINT: drain         stop taking, let runs and tests in flight finish and be
 *                                    recorded or answered (up to DRAIN_TIMEOUT_MS; later runs
 *                                    are taken over when their lease expires), close the
 *                                    request socket, the runner clients and the pool;
 *                                    notification transfers in flight end within their
 *                                    timeout, sends waiting for a retry are abandoned (logged)
 */
#include "audit.h"
#include "bus.h"
#include "crypto.h"
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
#include <unistd.h>

static void on_pool_closed(void *arg)
{
    (void)arg;
}

static void on_drain_wait(uv_timer_t *t)
{
    struct workflowd *wd = t->data;
    uint64_t waited = uv_now(wd->loop) - wd->drain_started_ms;
    if ((wd->inflight > 0 || wd->req_pending > 0) &&
        waited < (uint64_t)wd->cfg->drain_timeout_ms)
        return;
    if (wd->inflight > 0)
        msg_warn("drain: %d workflow run(s) still in flight; their leases will expire and "
                 "another workflowd will take them over", wd->inflight);
    uv_close((uv_handle_t *)t, NULL);
    requests_close(wd);
    runs_close(wd);
    struct pg_pool *pg = wd->pg;
    wd->pg = NULL; /* the notifier stores no more Slack message ids from here on */
    pg_pool_close(pg, on_pool_closed, wd);
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
    if (wd->inflight > 0)
        msg_info("drain: waiting for %d workflow run(s) in flight", wd->inflight);
    wd->drain_started_ms = uv_now(wd->loop);
    uv_timer_init(wd->loop, &wd->drain_wait);
    wd->drain_wait.data = wd;
    uv_timer_start(&wd->drain_wait, on_drain_wait, 0, 100);
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
    crypto_owner_id(wd.owner, sizeof wd.owner, "workflowd");
    runs_init(&wd);
    requests_init(&wd);
    notifier_init(&wd);
    queue_start(&wd);
    uv_signal_init(wd.loop, &wd.sigterm);
    uv_signal_init(wd.loop, &wd.sigint);
    wd.sigterm.data = wd.sigint.data = &wd;
    uv_signal_start(&wd.sigterm, on_signal, SIGTERM);
    uv_signal_start(&wd.sigint, on_signal, SIGINT);
    msg_info("workflowd %s: %d runs at a time, lease %d s beyond a run's timeout, sweep every "
             "%d ms, requests on %s",
             wd.owner, wd.max_inflight, wd.run_grace_seconds, wd.poll_ms, cfg.workflow_endpoint);

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
