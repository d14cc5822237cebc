/*
 * health.c - GET /health (public), answered from memory.
 *
 * A timer checks readiness every HEALTH_INTERVAL_MS (the database and the providers'
 * configuration, one query with the original's 2 s timeout) and keeps the answer as two pieces of
 * JSON text around the one field that changes per request, "age_ms": how old the check is. So a
 * request costs no database work and no JSON building. The queue depth is a count of every
 * unfinished enrichment job, whose cost grows with the backlog (150,000 pending jobs: 17-39 ms of
 * a backend), and the backlog grows when enrichment falls behind ingest, when the server is
 * busiest; so a check counts only when the last count is older than DEPTH_MIN_INTERVAL_MS and
 * DEPTH_DUTY times its own duration (at most 1/DEPTH_DUTY of a backend's time per process), never
 * older than DEPTH_MAX_INTERVAL_MS. The body keeps the original's fields; the answer is 503
 * ("down") when the last check failed or when the last good one is older than HEALTH_STALE_MS (a
 * hung database). Requests that come before the first check has finished wait for it. Only the
 * built-in enrichment providers are listed: the names of custom ones are not for anyone without
 * a key (the route is public).
 */
#include "intake.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define HEALTH_INTERVAL_MS 250
#define HEALTH_TIMEOUT_MS 2000
#define HEALTH_STALE_MS 3000
#define DEPTH_MIN_INTERVAL_MS 1000
#define DEPTH_MAX_INTERVAL_MS 30000
#define DEPTH_DUTY 100

/* Both return the depth, or NULL when not counted, the providers' states, and how long the
 * backend spent on the statement in microseconds (the count runs before the last column is
 * evaluated; connection set-up and queueing in the pool are not the count's cost). */
#define PROVIDERS_SQL                                                                            \
    "coalesce((SELECT json_object_agg(provider_name, "                                           \
    "    CASE WHEN is_active AND (auth_type = 'no_auth' "                                        \
    "         OR auth_config IS NOT NULL OR env_var_mapping IS NOT NULL) "                       \
    "    THEN 'configured' ELSE 'unconfigured' END) "                                            \
    "  FROM enrichment_providers WHERE is_builtin), '{}'::json)::text"
static const char COUNT_SQL[] = "SELECT (SELECT count(*) FROM enrichment_jobs "
                                "         WHERE status IN ('pending', 'running')), " PROVIDERS_SQL
                                ", (extract(epoch FROM clock_timestamp() - statement_timestamp())"
                                "   * 1000000)::bigint";
static const char NO_COUNT_SQL[] = "SELECT NULL::bigint, " PROVIDERS_SQL ", 0::bigint";

struct health {
    struct intake *in;
    uv_timer_t timer;
    int checking;
    int ok;              /* the last finished check succeeded */
    uint64_t checked_ms; /* when the last finished check was sent (0: none yet) */
    uint64_t sent_ms;
    int counting;          /* the check on its way counts the queue */
    int depth_known;       /* a count has come back */
    long long depth;       /* the last count */
    uint64_t depth_due_ms; /* when the next check counts */
    char *head, *tail; /* body text before and after the age */
    size_t head_len, tail_len;
    struct reqctx **early; /* requests that came before the first check finished */
    size_t nearly, capearly;
};

static void answer(struct health *h, struct reqctx *rc);

/* Splits the body at the "age_ms" placeholder so requests only print the number. */
static void set_body(struct health *h, json_t *body)
{
    json_object_set_new(body, "age_ms", json_integer(-1));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *at = strstr(text, "\"age_ms\":-1");
    free(h->head);
    free(h->tail);
    at += strlen("\"age_ms\":");
    h->head_len = (size_t)(at - text);
    h->head = xmalloc(h->head_len + 1);
    memcpy(h->head, text, h->head_len);
    h->head[h->head_len] = 0;
    h->tail = xstrdup(at + 2);
    h->tail_len = strlen(h->tail);
    free(text);
}

static json_t *body_new(struct health *h, int ok, long long depth, json_t *providers)
{
    json_t *body = json_object();
    json_object_set_new(body, "status", json_string(ok ? "ok" : "down"));
    json_object_set_new(body, "version", json_string(h->in->cfg.app_version));
    json_object_set_new(body, "database", json_string(ok ? "ok" : "error"));
    json_object_set_new(body, "queue", json_string(ok ? "ok" : "error"));
    json_object_set_new(body, "queue_depth", json_integer(depth));
    json_object_set_new(body, "enrichment_providers", providers ? providers : json_object());
    return body;
}

static void on_checked(void *arg, PGresult *res, const char *err)
{
    struct health *h = arg;
    h->checking = 0;
    int ok = res && !err && PQntuples(res) == 1 && PQnfields(res) == 3;
    uint64_t now = now_mono_ms();
    if (ok && h->counting && !PQgetisnull(res, 0, 0)) {
        h->depth = atoll(PQgetvalue(res, 0, 0));
        h->depth_known = 1;
        h->depth_due_ms = now + duty_wait_ms(strtoll(PQgetvalue(res, 0, 2), NULL, 10), DEPTH_DUTY,
                                             DEPTH_MIN_INTERVAL_MS, DEPTH_MAX_INTERVAL_MS);
    } else if (!ok && h->counting && now - h->sent_ms >= HEALTH_TIMEOUT_MS) {
        /* The count itself may be what timed out (a huge backlog, a lock on the table): the
         * checks go on without it, so /health answers, and it is tried again later. */
        h->depth_due_ms = now + DEPTH_MAX_INTERVAL_MS;
    } else if (!ok) {
        /* The database was unreachable: the first good check counts, so a depth from before
         * an outage is not reported as fresh. */
        h->depth_known = 0;
    }
    if (ok) {
        json_t *prov = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
        set_body(h, body_new(h, 1, h->depth, prov));
    } else {
        if (h->ok)
            msg_warn("health check failed: %s", err ? err : "no result");
        set_body(h, body_new(h, 0, 0, NULL));
    }
    h->ok = ok;
    h->checked_ms = h->sent_ms;
    for (size_t i = 0; i < h->nearly; i++)
        answer(h, h->early[i]);
    free(h->early);
    h->early = NULL;
    h->nearly = h->capearly = 0;
}

static void on_tick(uv_timer_t *t)
{
    struct health *h = t->data;
    if (h->checking)
        return;
    h->checking = 1;
    h->sent_ms = now_mono_ms();
    h->counting = !h->depth_known || h->sent_ms >= h->depth_due_ms;
    pg_exec_timeout(h->in->pg, h->counting ? COUNT_SQL : NO_COUNT_SQL, 0, NULL, HEALTH_TIMEOUT_MS,
                    on_checked, h);
}

void health_start(struct intake *in)
{
    struct health *h = xcalloc(1, sizeof *h);
    h->in = in;
    set_body(h, body_new(h, 0, 0, NULL));
    in->health = h;
    uv_timer_init(in->loop, &h->timer);
    h->timer.data = h;
    uv_timer_start(&h->timer, on_tick, 0, HEALTH_INTERVAL_MS);
}

void health_stop(struct intake *in)
{
    uv_timer_stop(&in->health->timer);
    uv_close((uv_handle_t *)&in->health->timer, NULL);
}

void health_free(struct intake *in)
{
    struct health *h = in->health;
    if (!h)
        return;
    free(h->head);
    free(h->tail);
    free(h->early);
    free(h);
    in->health = NULL;
}

static void answer(struct health *h, struct reqctx *rc)
{
    uint64_t now = now_mono_ms();
    long long age = h->checked_ms ? (long long)(now - h->checked_ms) : -1;
    int up = h->ok && age >= 0 && age <= HEALTH_STALE_MS;
    if (!up && h->ok) {
        /* The last good answer is too old: report it as down without rebuilding it. */
        json_t *body = body_new(h, 0, 0, NULL);
        json_object_set_new(body, "age_ms", json_integer(age));
        reply_json(rc, 503, body);
        return;
    }
    char num[24];
    int nlen = snprintf(num, sizeof num, "%lld", age);
    struct buf b;
    buf_init(&b);
    buf_append(&b, h->head, h->head_len);
    buf_append(&b, num, (size_t)nlen);
    buf_append(&b, h->tail, h->tail_len);
    reply_body(rc, up ? 200 : 503, "application/json", b.data, b.len);
    buf_destroy(&b);
}

void route_health(struct reqctx *rc)
{
    struct health *h = rc->in->health;
    if (!h->checked_ms) {
        /* Just started: the first check is on its way (at most its timeout). */
        if (h->nearly == h->capearly) {
            h->capearly = h->capearly ? h->capearly * 2 : 16;
            h->early = xrealloc(h->early, h->capearly * sizeof *h->early);
        }
        h->early[h->nearly++] = rc;
        return;
    }
    answer(h, rc);
}
