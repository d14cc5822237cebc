/*
 * prom.c - GET /metrics in the Prometheus text exposition format 0.0.4.
 *
 * Series (names follow the Prometheus conventions: base units, _total for counters):
 *   calseta_http_requests_total{pid,method,route,code}           counter
 *   calseta_http_request_duration_seconds{pid,method,route}      histogram
 *   calseta_rate_limit_refusals_total{pid,class}                 counter
 *   calseta_auth_cache_lookups_total{pid,result="hit"|"miss"}    counter
 *   calseta_ingest_batches_total{pid}, calseta_ingest_batch_size{pid} (histogram of alerts)
 *   calseta_ingest_wait_seconds{pid,phase="queued"|"database"} histogram per ingested alert:
 *                                            waiting for its batch to go out, the batch's
 *                                            round trip (the rest of a request is the intake's)
 *   calseta_ingest_queued{pid}, calseta_ingest_held{pid} gauges: alerts waiting for a batch, of
 *                                            them those held behind an in-flight batch of
 *                                            their fingerprint; calseta_ingest_batches_in_flight
 *                                            {pid}; calseta_ingest_held_total{pid} counter
 *   calseta_audit_events_pending{pid}, calseta_audit_spool_bytes{pid}
 *   calseta_enrichment_lookups_total{pid,provider,outcome}   lookups this process made for
 *                                            the API (on-demand, provider tests)
 *   calseta_queue_pending{queue}, calseta_queue_in_progress{queue},
 *   calseta_queue_oldest_pending_age_seconds{queue}, calseta_workflow_runs{status}
 *                                            gauges read from PostgreSQL, cached for 5 s or
 *                                            100 times the read's own time (60 s at most);
 *                                            calseta_queue_figures_age_seconds{pid} their age
 *   calseta_process_start_time_seconds{pid}
 * Queues: enrichment (enrichment_jobs), workflow_runs, agent_deliveries. The statement reads
 * only the partial indexes of unfinished jobs and the runs-by-status index.
 */
#include "prom.h"
#include "audit.h"
#include "intake.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fine between 10 and 100 ms, where an ingest's tail is judged against its 50 ms goal. */
#define NBUCKETS 18
static const double LATENCY_BUCKETS[NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.015, 0.02,
                                                 0.025, 0.03,   0.04,  0.05, 0.06,  0.075,
                                                 0.1,   0.25,   0.5,   1,    2.5,   10};
#define NSIZES 8
static const double SIZE_BUCKETS[NSIZES] = {1, 2, 5, 10, 25, 50, 100, 250};
#define NCODES 12
/* The PostgreSQL series are read again once they are CACHE_MS old and older than DB_DUTY times
 * the backend's own time for the last read (its counts grow with the backlogs), DB_MAX_MS at
 * most; a failed read is tried again as long after it as DB_DUTY times its own duration (at
 * least CACHE_MS, at most DB_MAX_MS), the last figures served meanwhile. */
#define CACHE_MS 5000
#define DB_MAX_MS 60000
#define DB_DUTY 100

struct code_count {
    int code;
    uint64_t n;
};

struct route_stats {
    struct code_count codes[NCODES];
    uint64_t buckets[NBUCKETS + 1]; /* last = +Inf */
    double sum;
    uint64_t count;
};

#define NPROVIDERS 32

struct lookup_count {
    char provider[64];
    uint64_t n[3]; /* success, failure, cache_hit */
};

static const char *const OUTCOMES[3] = {"success", "failure", "cache_hit"};

struct prom {
    struct lookup_count lookups[NPROVIDERS];
    struct intake *in;
    const struct route_def *routes;
    size_t nroutes;
    struct route_stats *rs;
    uint64_t refusals[5]; /* by rate class */
    uint64_t cache_hit, cache_miss;
    uint64_t batches, batch_buckets[NSIZES + 1];
    double batch_sum;
    uint64_t wait_buckets[2][NBUCKETS + 1], wait_count[2];
    double wait_sum[2];
    double started_s;
    char *db_text;      /* cached PostgreSQL series */
    uint64_t db_at_ms;  /* when db_text was read */
    uint64_t db_ttl_ms; /* how long it is served */
    uint64_t retry_ms;  /* after a failed read: no new one before this */
    uint64_t sent_ms;   /* when the read in flight was sent */
    struct reqctx **waiting; /* scrapes waiting for the read in flight */
    size_t nwaiting;
    int reading;
};

struct prom *prom_new(struct intake *in)
{
    struct prom *p = xcalloc(1, sizeof *p);
    p->in = in;
    p->routes = routes_table(&p->nroutes);
    p->rs = xcalloc(p->nroutes, sizeof *p->rs);
    p->started_s = (double)now_wall_us() / 1e6;
    return p;
}

void prom_free(struct prom *p)
{
    if (!p)
        return;
    free(p->rs);
    free(p->db_text);
    free(p->waiting);
    free(p);
}

static void observe(uint64_t *buckets, const double *bounds, size_t n, double v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    buckets[i]++;
}

void prom_request(struct intake *in, const struct reqctx *rc, int status)
{
    struct prom *p = in->prom;
    if (!p || !rc->route || rc->route < p->routes || rc->route >= p->routes + p->nroutes)
        return;
    struct route_stats *s = &p->rs[rc->route - p->routes];
    for (size_t i = 0; i < NCODES; i++) {
        if (s->codes[i].code == status || s->codes[i].code == 0) {
            s->codes[i].code = status;
            s->codes[i].n++;
            break;
        }
    }
    double secs = (double)(uv_hrtime() - rc->started_ns) / 1e9;
    observe(s->buckets, LATENCY_BUCKETS, NBUCKETS, secs);
    s->sum += secs;
    s->count++;
    if (status == 429 && rc->route->rate < 5)
        p->refusals[rc->route->rate]++;
}

void prom_auth_cache(struct intake *in, int hit)
{
    if (!in->prom)
        return;
    if (hit)
        in->prom->cache_hit++;
    else
        in->prom->cache_miss++;
}

void prom_ingest_batch(struct intake *in, size_t n)
{
    struct prom *p = in->prom;
    if (!p)
        return;
    p->batches++;
    p->batch_sum += (double)n;
    observe(p->batch_buckets, SIZE_BUCKETS, NSIZES, (double)n);
}

void prom_ingest_waits(struct intake *in, double queued_s, double database_s)
{
    struct prom *p = in->prom;
    if (!p)
        return;
    double v[2] = {queued_s, database_s};
    for (int k = 0; k < 2; k++) {
        observe(p->wait_buckets[k], LATENCY_BUCKETS, NBUCKETS, v[k]);
        p->wait_sum[k] += v[k];
        p->wait_count[k]++;
    }
}

void prom_enrichment_lookup(struct intake *in, const char *provider, const char *outcome)
{
    struct prom *p = in->prom;
    if (!p || !provider)
        return;
    int o = !strcmp(outcome, "success") ? 0 : !strcmp(outcome, "failure") ? 1 : 2;
    for (size_t i = 0; i < NPROVIDERS; i++) {
        struct lookup_count *l = &p->lookups[i];
        if (!l->provider[0])
            snprintf(l->provider, sizeof l->provider, "%s", provider);
        if (!strncmp(l->provider, provider, sizeof l->provider - 1)) {
            l->n[o]++;
            return;
        }
    }
}

/* A label value: backslash, quote and line feed escaped. */
static void label_value(struct buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            buf_puts(b, "\\n");
        else
            buf_append(b, v, 1);
    }
}

/* ---- exposition ----------------------------------------------------------------------------- */

static void help(struct buf *b, const char *name, const char *type, const char *text)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void histogram(struct buf *b, const char *name, const char *labels, const uint64_t *bk,
                      const double *bounds, size_t n, double sum, uint64_t count)
{
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += bk[i];
        buf_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bounds[i],
                   (unsigned long long)cum);
    }
    cum += bk[n];
    buf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    buf_printf(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, sum, name, labels,
               (unsigned long long)count);
}

static const char *const RATE_NAMES[5] = {"none", "default", "ingest", "enrichment",
                                          "workflow_execute"};

static void process_series(struct prom *p, struct buf *b)
{
    long pid = (long)getpid();
    char lab[256];
    help(b, "calseta_process_start_time_seconds", "gauge", "Start time of this intake process.");
    buf_printf(b, "calseta_process_start_time_seconds{pid=\"%ld\"} %.3f\n", pid, p->started_s);
    help(b, "calseta_http_requests_total", "counter", "Requests answered, by route and status.");
    for (size_t r = 0; r < p->nroutes; r++)
        for (size_t i = 0; i < NCODES && p->rs[r].codes[i].code; i++)
            buf_printf(b,
                       "calseta_http_requests_total{pid=\"%ld\",method=\"%s\",route=\"%s\","
                       "code=\"%d\"} %llu\n",
                       pid, p->routes[r].method, p->routes[r].pattern, p->rs[r].codes[i].code,
                       (unsigned long long)p->rs[r].codes[i].n);
    help(b, "calseta_http_request_duration_seconds", "histogram",
         "Time from routing to the response, by route.");
    for (size_t r = 0; r < p->nroutes; r++) {
        if (!p->rs[r].count)
            continue;
        snprintf(lab, sizeof lab, "pid=\"%ld\",method=\"%s\",route=\"%s\"", pid,
                 p->routes[r].method, p->routes[r].pattern);
        histogram(b, "calseta_http_request_duration_seconds", lab, p->rs[r].buckets,
                  LATENCY_BUCKETS, NBUCKETS, p->rs[r].sum, p->rs[r].count);
    }
    help(b, "calseta_rate_limit_refusals_total", "counter",
         "Requests refused with 429, by rate class.");
    for (int k = 1; k < 5; k++)
        buf_printf(b, "calseta_rate_limit_refusals_total{pid=\"%ld\",class=\"%s\"} %llu\n", pid,
                   RATE_NAMES[k], (unsigned long long)p->refusals[k]);
    help(b, "calseta_auth_cache_lookups_total", "counter",
         "Key verifications answered by the cache (hit) or by bcrypt (miss).");
    buf_printf(b, "calseta_auth_cache_lookups_total{pid=\"%ld\",result=\"hit\"} %llu\n", pid,
               (unsigned long long)p->cache_hit);
    buf_printf(b, "calseta_auth_cache_lookups_total{pid=\"%ld\",result=\"miss\"} %llu\n", pid,
               (unsigned long long)p->cache_miss);
    help(b, "calseta_ingest_batches_total", "counter", "Ingest transactions (group commits).");
    buf_printf(b, "calseta_ingest_batches_total{pid=\"%ld\"} %llu\n", pid,
               (unsigned long long)p->batches);
    help(b, "calseta_ingest_batch_size", "histogram", "Alerts per ingest transaction.");
    snprintf(lab, sizeof lab, "pid=\"%ld\"", pid);
    histogram(b, "calseta_ingest_batch_size", lab, p->batch_buckets, SIZE_BUCKETS, NSIZES,
              p->batch_sum, p->batches);
    help(b, "calseta_ingest_wait_seconds", "histogram",
         "Per ingested alert: queued until its batch went out, then the batch's round trip.");
    static const char *const PHASES[2] = {"queued", "database"};
    for (int k = 0; k < 2; k++) {
        snprintf(lab, sizeof lab, "pid=\"%ld\",phase=\"%s\"", pid, PHASES[k]);
        histogram(b, "calseta_ingest_wait_seconds", lab, p->wait_buckets[k], LATENCY_BUCKETS,
                  NBUCKETS, p->wait_sum[k], p->wait_count[k]);
    }
    size_t queued, held;
    int inflight;
    uint64_t held_total;
    ingest_batcher_gauges(p->in->batcher, &queued, &held, &inflight, &held_total);
    help(b, "calseta_ingest_queued", "gauge", "Alerts waiting for their batch to go out.");
    buf_printf(b, "calseta_ingest_queued{pid=\"%ld\"} %zu\n", pid, queued);
    help(b, "calseta_ingest_held", "gauge",
         "Queued alerts held behind an in-flight batch of their fingerprint.");
    buf_printf(b, "calseta_ingest_held{pid=\"%ld\"} %zu\n", pid, held);
    help(b, "calseta_ingest_held_total", "counter",
         "Alerts held back on arrival behind an in-flight batch of their fingerprint.");
    buf_printf(b, "calseta_ingest_held_total{pid=\"%ld\"} %llu\n", pid,
               (unsigned long long)held_total);
    help(b, "calseta_ingest_batches_in_flight", "gauge", "Ingest transactions in the database.");
    buf_printf(b, "calseta_ingest_batches_in_flight{pid=\"%ld\"} %d\n", pid, inflight);
    help(b, "calseta_enrichment_lookups_total", "counter",
         "Provider lookups this process made for the API, by provider and outcome.");
    for (size_t i = 0; i < NPROVIDERS && p->lookups[i].provider[0]; i++)
        for (int o = 0; o < 3; o++) {
            buf_printf(b, "calseta_enrichment_lookups_total{pid=\"%ld\",provider=\"", pid);
            label_value(b, p->lookups[i].provider);
            buf_printf(b, "\",outcome=\"%s\"} %llu\n", OUTCOMES[o],
                       (unsigned long long)p->lookups[i].n[o]);
        }
    struct audit_client_stats st = {0};
    if (p->in->audit)
        audit_client_get_stats(p->in->audit, &st);
    help(b, "calseta_audit_events_pending", "gauge",
         "Audit events not yet acknowledged by the audit writer (memory and spool).");
    buf_printf(b, "calseta_audit_events_pending{pid=\"%ld\"} %zu\n", pid, st.pending);
    struct stat sb;
    const char *spool = p->in->audit ? audit_client_spool_path(p->in->audit) : NULL;
    help(b, "calseta_audit_spool_bytes", "gauge", "Size of this process's audit spool file.");
    buf_printf(b, "calseta_audit_spool_bytes{pid=\"%ld\"} %lld\n", pid,
               spool && stat(spool, &sb) == 0 ? (long long)sb.st_size : 0LL);
}

/* The PostgreSQL series, formatted by the statement itself. */
static const char DB_SQL[] =
    "WITH q AS ("
    " SELECT 'enrichment' AS k, count(*) FILTER (WHERE status = 'pending') AS p,"
    "  count(*) FILTER (WHERE status = 'running') AS r,"
    "  coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')),"
    "  0) AS o FROM enrichment_jobs WHERE status IN ('pending', 'running')"
    " UNION ALL SELECT 'workflow_runs', count(*) FILTER (WHERE status = 'queued'),"
    "  count(*) FILTER (WHERE status = 'running'),"
    "  coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'queued')), 0)"
    "  FROM workflow_runs WHERE status IN ('queued', 'running')"
    " UNION ALL SELECT 'agent_deliveries', count(*) FILTER (WHERE status = 'pending'),"
    "  count(*) FILTER (WHERE status = 'running'),"
    "  coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')),"
    "  0) FROM agent_deliveries WHERE status IN ('pending', 'running')),"
    " w AS (SELECT status, count(*) AS n FROM workflow_runs GROUP BY status)"
    "SELECT '# HELP calseta_queue_pending Jobs waiting, by queue.\n"
    "# TYPE calseta_queue_pending gauge\n' ||"
    " (SELECT string_agg(format('calseta_queue_pending{queue=\"%s\"} %s', k, p), E'\\n') FROM q)"
    " || E'\\n# HELP calseta_queue_in_progress Jobs leased by a worker, by queue.\\n'"
    " || E'# TYPE calseta_queue_in_progress gauge\\n' ||"
    " (SELECT string_agg(format('calseta_queue_in_progress{queue=\"%s\"} %s', k, r), E'\\n')"
    "  FROM q) || E'\\n# HELP calseta_queue_oldest_pending_age_seconds Age of the oldest "
    "waiting job (0 when none), by queue.\\n'"
    " || E'# TYPE calseta_queue_oldest_pending_age_seconds gauge\\n' ||"
    " (SELECT string_agg(format('calseta_queue_oldest_pending_age_seconds{queue=\"%s\"} %s', k,"
    "  round(o, 3)), E'\\n') FROM q)"
    " || E'\\n# HELP calseta_workflow_runs Workflow runs in the database, by status.\\n'"
    " || E'# TYPE calseta_workflow_runs gauge\\n' ||"
    " coalesce((SELECT string_agg(format('calseta_workflow_runs{status=\"%s\"} %s', status, n),"
    "  E'\\n' ORDER BY status) || E'\\n' FROM w), ''),"
    /* the backend's time for the statement, read after the text above is made */
    " (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000000)::bigint";

static void reply_scrape(struct reqctx *rc)
{
    struct prom *p = rc->in->prom;
    struct buf b;
    buf_init(&b);
    process_series(p, &b);
    if (p->db_text) {
        buf_puts(&b, p->db_text);
        if (b.len && b.data[b.len - 1] != '\n')
            buf_puts(&b, "\n");
        help(&b, "calseta_queue_figures_age_seconds", "gauge",
             "Age of the queue and workflow-run figures this process serves.");
        buf_printf(&b, "calseta_queue_figures_age_seconds{pid=\"%ld\"} %.3f\n", (long)getpid(),
                   (double)(now_mono_ms() - p->db_at_ms) / 1000.0);
    }
    reply_body(rc, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_destroy(&b);
}

static uint64_t db_wait_ms(long long took_us)
{
    return duty_wait_ms(took_us, DB_DUTY, CACHE_MS, DB_MAX_MS);
}

static void on_db(void *arg, PGresult *res, const char *err)
{
    struct prom *p = arg;
    p->reading = 0;
    uint64_t now = now_mono_ms();
    if (res && !err && PQntuples(res) == 1 && PQnfields(res) == 2 && !PQgetisnull(res, 0, 0)) {
        free(p->db_text);
        p->db_text = xstrdup(PQgetvalue(res, 0, 0));
        p->db_at_ms = now;
        p->db_ttl_ms = db_wait_ms(strtoll(PQgetvalue(res, 0, 1), NULL, 10));
        p->retry_ms = 0;
    } else {
        msg_warn("metrics: reading the queue figures failed: %s",
                 err ? err : "unexpected result shape");
        /* a read that timed out would cost as much again: wait as long as its cost asks */
        p->retry_ms = now + db_wait_ms((long long)(now - p->sent_ms) * 1000);
    }
    struct reqctx **w = p->waiting;
    size_t n = p->nwaiting;
    p->waiting = NULL;
    p->nwaiting = 0;
    for (size_t i = 0; i < n; i++)
        reply_scrape(w[i]);
    free(w);
}

void route_prometheus(struct reqctx *rc)
{
    struct prom *p = rc->in->prom;
    uint64_t now = now_mono_ms();
    if ((p->db_text && now - p->db_at_ms < p->db_ttl_ms) || now < p->retry_ms) {
        reply_scrape(rc);
        return;
    }
    p->waiting = xrealloc(p->waiting, (p->nwaiting + 1) * sizeof *p->waiting);
    p->waiting[p->nwaiting++] = rc;
    if (!p->reading) {
        p->reading = 1;
        p->sent_ms = now;
        if (pg_exec_timeout(rc->in->pg, DB_SQL, 0, NULL, 2000, on_db, p) != 0)
            on_db(p, NULL, "the pool is closing"); /* the waiting scrapes are answered */
    }
}
