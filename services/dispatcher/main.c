/*
 * main.c - calseta-dispatcher: delivers agent webhooks. One per stack is enough; more are
 * safe (claims skip each other's rows), on any host that reaches PostgreSQL and the agents.
 *
 *   1. configuration, options, ENCRYPTION_KEY     config_load(), dispatcher_options_load();
 *                                                 the key into locked memory; not dumpable,
 *                                                 no core files, no new privileges
 *   2. loop, database pool, curl                  uv_default_loop(), pg_pool_new(),
 *                                                 curluv_new()
 *   3. claims: LISTEN calseta_agent_deliveries    claim_start(): NOTIFY wake-ups plus a sweep
 *      and a periodic sweep
 *   4. every claimed row                          delivery_start() (deliver.c); outcomes
 *                                                 recorded in batches (record.c)
 *   5. SIGTERM/SIGINT: drain                      stop claiming, let the attempts in flight
 *                                                 finish (each bounded by its timeout), exit
 *
 * The intake never sends webhooks: agent secrets are decrypted only here, at send time.
 */
#include "crypto.h"
#include "curluv.h"
#include "dispatcher.h"
#include "log.h"
#include "secmem.h"
#include "ssrf.h"
#include "util.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

/* This process holds decrypted secrets: no core dumps, no ptrace by same-uid processes, no
 * privilege gained through exec. */
static void harden(void)
{
    struct rlimit none = {0, 0};
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        msg_warn("prctl(PR_SET_DUMPABLE) failed");
    if (setrlimit(RLIMIT_CORE, &none) != 0)
        msg_warn("setrlimit(RLIMIT_CORE) failed");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        msg_warn("prctl(PR_SET_NO_NEW_PRIVS) failed");
}

static void on_pool_closed(void *arg)
{
    struct dispatcher *d = arg;
    d->pg = NULL;
}

static void on_curl_closed(void *arg)
{
    struct dispatcher *d = arg;
    d->cm = NULL;
    pg_pool_close(d->pg, on_pool_closed, d);
}

static void finish_drain(struct dispatcher *d)
{
    msg_info("drained: %lu delivered, %lu failed; stopping", d->delivered, d->failed);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    record_close(d);
    curluv_close(d->cm, on_curl_closed, d);
}

static uv_timer_t drain_timer;

static void on_drain_timer(uv_timer_t *t)
{
    struct dispatcher *d = t->data;
    if (d->inflight > 0 || d->claiming)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    finish_drain(d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct dispatcher *d = s->data;
    if (d->draining) {
        msg_warn("signal %d while draining: %d deliveries still in flight", signum, d->inflight);
        return;
    }
    msg_info("signal %d: draining %d deliveries in flight", signum, d->inflight);
    d->draining = 1;
    claim_stop(d);
    uv_timer_init(d->loop, &drain_timer);
    drain_timer.data = d;
    uv_timer_start(&drain_timer, on_drain_timer, 0, 50);
}

static void load_key(struct dispatcher *d)
{
    const char *k = d->cfg->encryption_key;
    d->key = secmem_alloc(sizeof *d->key);
    if (!k || !*k)
        msg_fatal("configuration error: ENCRYPTION_KEY is not set; the dispatcher needs it to "
                  "sign webhooks and decrypt agent headers");
    if (fernet_key_parse(k, d->key) != 0)
        msg_fatal("configuration error: ENCRYPTION_KEY is not a valid Fernet key (44 characters "
                  "of urlsafe base64 encoding 32 bytes)");
}

int main(void)
{
    static struct config cfg;
    static struct dispatcher d;
    char err[512];
    if (config_load(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-dispatcher: configuration error: %s\n", err);
        return 1;
    }
    config_init_log(&cfg, "dispatcher");
    if (!*cfg.database_url)
        msg_fatal("DATABASE_URL is not set");
    d.cfg = &cfg;
    if (dispatcher_options_load(&d.opt, cfg.settings, err, sizeof err) != 0)
        msg_fatal("configuration error: %s", err);
    harden();
    load_key(&d);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    d.loop = uv_default_loop();
    d.pg = pg_pool_new(d.loop, cfg.database_url, d.opt.db_connections, 30000);
    d.ssrf_flags = d.opt.allow_loopback ? SSRF_ALLOW_LOOPBACK : 0;
    if (d.opt.allow_loopback)
        msg_warn("AGENT_WEBHOOK_ALLOW_LOOPBACK=true: webhooks may reach loopback addresses (for "
                 "tests only; cloud-metadata addresses stay blocked)");
    d.cm = curluv_new(d.loop, delivery_curl_done, &d);
    crypto_owner_id(d.owner, sizeof d.owner, "dispatcher");
    record_init(&d);
    claim_start(&d);
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    msg_info("dispatcher %s: %d deliveries at a time, lease %d s beyond the agent timeout, "
             "sweep every %d ms",
             d.owner, d.opt.concurrency, d.opt.lease_seconds, d.opt.poll_ms);

    uv_run(d.loop, UV_RUN_DEFAULT);

    secmem_free(d.key);
    dispatcher_options_destroy(&d.opt);
    curl_global_cleanup();
    uv_loop_close(d.loop);
    config_destroy(&cfg);
    return 0;
}
