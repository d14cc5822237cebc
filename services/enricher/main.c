/*
 * main.c - calseta-enricher: the enrichment worker. Start any number, on any hosts, pointed at
 * the same PostgreSQL and job bus.
 *
 *   1. configuration, logging, ENCRYPTION_KEY     config_load(), enricher_options_load(),
 *                                                 creds_ctx_new() (clear error naming it);
 *                                                 not dumpable, no new privileges
 *   2. loop, audit client, database pool          uv_default_loop(), audit_client_new(),
 *                                                 pg_pool_new()
 *   3. SSRF guard, result cache, HTTP engine      guard_new(), cache_new(), engine_new()
 *   4. providers (+ LISTEN calseta_providers)     providers_start()
 *   5. claim loop: job bus PULL, poll, leases     claim_start()
 *   6. SIGTERM/SIGINT: drain                      stop claiming, finish the jobs in flight
 *                                                 (bounded by their deadline), close, exit
 */
#include "audit.h"
#include "bus.h"
#include "creds.h"
#include "crypto.h"
#include "enricher.h"
#include "guard.h"
#include "log.h"
#include "procsec.h"
#include "secmem.h"
#include "util.h"

#include <curl/curl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

static void audit_decrypted(void *arg, const char *provider, long long job_id)
{
    struct enricher *en = arg;
    audit_emit(en->audit, "credentials_decrypted", NULL, NULL, NULL,
               json_pack("{s:s,s:I}", "provider", provider, "job_id", (json_int_t)job_id));
}

static void on_pool_closed(void *arg)
{
    struct enricher *en = arg;
    en->pg = NULL;
}

static void on_quota_pool_closed(void *arg)
{
    struct enricher *en = arg;
    en->quota_pg = NULL;
}

static void on_renew_pool_closed(void *arg)
{
    struct enricher *en = arg;
    en->renew_pg = NULL;
}

static void on_engine_closed(void *arg)
{
    struct enricher *en = arg;
    en->engine = NULL;
    pg_pool_close(en->pg, on_pool_closed, en);
    pg_pool_close(en->quota_pg, on_quota_pool_closed, en);
    pg_pool_close(en->renew_pg, on_renew_pool_closed, en);
}

static void on_drained(struct enricher *en)
{
    msg_info("drained: no job in flight (%lu done; %lu jobs claimed by %lu claims, %lu "
             "completed by %lu statements), %lu found done after a lost answer, stopping",
             en->jobs_done, en->claimed, en->claims, en->complete_jobs, en->complete_stmts,
             en->jobs_found_done);
    en->drained = NULL;
    claim_close(en);
    lookups_close(en);
    jobs_close(en);
    uv_close((uv_handle_t *)&en->sigterm, NULL);
    uv_close((uv_handle_t *)&en->sigint, NULL);
    engine_close(en->engine, on_engine_closed, en);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct enricher *en = s->data;
    if (en->draining) {
        msg_warn("signal %d while draining: %d jobs still finishing", signum, en->inflight);
        return;
    }
    msg_info("signal %d: draining %d jobs in flight", signum, en->inflight);
    en->draining = 1;
    en->drained = on_drained;
    claim_stop(en);
    jobs_drain(en);
    lookups_stop(en);
    providers_stop(en);
    if (en->inflight == 0 && !en->claiming)
        on_drained(en);
}

/* Every lookup allocates and frees a few kilobytes (request, answer, result); a job's results
 * are serialised into one buffer of tens of kilobytes. With glibc's defaults the top of the
 * heap is given back to the kernel and faulted in again over and over (each fault of a
 * multi-threaded process can flush the TLBs of the other cores): keep up to 64 MiB of free heap
 * and serve blocks up to 4 MiB from it. */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

static void start(struct enricher *en)
{
    struct config *c = en->cfg;
    char err[512];
    if (secure_process_init(err, sizeof err) != 0) /* it holds decrypted credentials */
        msg_warn("%s", err);
    tune_malloc();
    /* credentials are decrypted once per job and provider: reuse wiped locked pages, as many
     * as a full load of jobs at two providers each frees at once (fewer only kept pages get
     * unmapped and mapped again, with a TLB flush of every core each time) */
    secmem_keep(c->enricher_concurrency > 32 ? 2 * (size_t)c->enricher_concurrency : 64);
    en->creds = creds_ctx_new(c->encryption_key, c->settings, audit_decrypted, en, err, sizeof err);
    if (!en->creds)
        msg_fatal("configuration error: %s", err);
    en->loop = uv_default_loop();
    en->audit = audit_client_new(c, "enricher", en->loop);
    audit_emit_config_loaded(en->audit, c);
    en->pg = pg_pool_new(en->loop, c->database_url, en->opt.db_connections, 30000);
    en->quota_pg = pg_pool_new(en->loop, c->database_url, 1, 2000);
    en->renew_pg = pg_pool_new(en->loop, c->database_url, 1, 2000);
    en->guard = guard_new(c->ssrf_allowed_hosts, en->opt.allow_loopback);
    if (en->opt.allow_loopback)
        msg_warn("ENRICHER_ALLOW_LOOPBACK=true: provider requests may reach loopback addresses "
                 "(for tests only; cloud-metadata addresses stay blocked)");
    en->cache = cache_new((size_t)en->opt.cache_entries, (size_t)en->opt.cache_bytes);
    struct engine_opts eo = {en->creds,
                             en->guard,
                             (size_t)en->opt.max_response,
                             en->opt.idle_connections,
                             en->opt.host_connections,
                             en->opt.rate_global ? quota_lease : NULL,
                             en};
    en->engine = engine_new(en->loop, &eo);
    crypto_owner_id(en->owner, sizeof en->owner, NULL);
    jobs_init(en);
    providers_start(en);
    claim_start(en);
    lookups_start(en);
    uv_signal_init(en->loop, &en->sigterm);
    uv_signal_init(en->loop, &en->sigint);
    en->sigterm.data = en->sigint.data = en;
    uv_signal_start(&en->sigterm, on_signal, SIGTERM);
    uv_signal_start(&en->sigint, on_signal, SIGINT);
    msg_info("enricher %s: %d jobs at a time, lease %d s, deadline %d s, bus %s", en->owner,
             c->enricher_concurrency, c->enrich_job_lease_seconds, c->enrich_job_deadline_seconds,
             c->job_bus_pull);
}

static void stop(struct enricher *en)
{
    audit_client_flush(en->audit, 2000);
    audit_client_free(en->audit);
    uv_run(en->loop, UV_RUN_NOWAIT);
    provider_set_unref(en->providers);
    cache_free(en->cache);
    guard_free(en->guard);
    creds_ctx_free(en->creds);
    bus_context_term();
    if (uv_loop_close(en->loop) != 0)
        msg_warn("event loop closed with handles still open");
}

int main(void)
{
    struct config c;
    struct enricher en;
    char err[512];
    memset(&en, 0, sizeof en);
    if (config_load(&c, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-enricher: configuration error: %s\n", err);
        return 1;
    }
    config_init_log(&c, "enricher");
    en.cfg = &c;
    if (enricher_options_load(&en.opt, c.settings, err, sizeof err) != 0)
        msg_fatal("configuration error: %s", err);
    if (!*c.database_url)
        msg_fatal("configuration error: DATABASE_URL is not set");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        msg_fatal("libcurl initialisation failed");
    start(&en);
    uv_run(en.loop, UV_RUN_DEFAULT);
    stop(&en);
    curl_global_cleanup();
    config_destroy(&c);
    return 0;
}
