/*
 * job.c - one enrichment job from claim to commit.
 *
 *   1. pass 3: custom raw_payload mappings add indicators to those linked at ingest
 *   2. pairs: every indicator x every active, configured provider that supports its type
 *      (indicators the original would not enrich get only a "_validation" skipped result)
 *   3. results from the in-process cache, then the shared cache (one query), the rest looked
 *      up by the engine, all at once
 *   4. one statement, calseta_enrich_complete(), writes everything and marks the job done
 *      (or a failure releases the job for another try)
 */
#include "jsonparse.h"
#include "creds.h"
#include "enricher.h"
#include "extract.h"
#include "log.h"
#include "malice.h"
#include "result.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lookup {
    struct job *job;
    size_t ind; /* index into job->indicators */
    const struct provider *p;
    json_t *result;
    int fresh; /* from the engine (not a cache) */
};

struct job {
    struct enricher *en;
    long long id, alert_id;
    int attempts;
    json_t *indicators; /* [{type, value, new}] */
    json_t *skipped;    /* index -> reason, for indicators not enrichable */
    struct provider_set *ps;
    uint64_t started_ms, deadline_ms;
    struct lookup *lk;
    size_t nlk, pending;
    struct job *prev, *next;
};

static void job_free(struct job *j)
{
    struct enricher *en = j->en;
    if (j->prev)
        j->prev->next = j->next;
    else
        en->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    for (size_t i = 0; i < j->nlk; i++)
        json_decref(j->lk[i].result);
    free(j->lk);
    json_decref(j->indicators);
    json_decref(j->skipped);
    provider_set_unref(j->ps);
    free(j);
    en->inflight--;
    claim_job_finished(en);
}

char *jobs_in_flight_array(const struct enricher *en)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    for (const struct job *j = en->jobs; j; j = j->next)
        buf_printf(&b, "%s%lld", j == en->jobs ? "" : ",", j->id);
    buf_puts(&b, "}");
    return b.data;
}

/* ---- step 4: the completing transaction ---- */

static void on_released(void *arg, PGresult *res, const char *err)
{
    struct job *j = arg;
    (void)res;
    if (err)
        msg_warn("job %lld: release failed (%s); its lease will expire", j->id, err);
    job_free(j);
}

static void release(struct job *j, const char *why)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", j->id);
    const char *params[3] = {id, j->en->owner, why};
    pg_exec(j->en->pg, "SELECT calseta_enrich_release($1, $2, $3)", 3, params, on_released, j);
}

static void on_completed(void *arg, PGresult *res, const char *err)
{
    struct job *j = arg;
    if (err) {
        msg_error("job %lld: completing failed: %s", j->id, err);
        release(j, err);
        return;
    }
    const char *outcome = PQntuples(res) ? PQgetvalue(res, 0, 0) : "?";
    if (!strcmp(outcome, "done")) {
        j->en->jobs_done++;
        msg_info("job %lld (alert %lld) done in %llu ms: %zu indicators, %zu lookups", j->id,
                 j->alert_id, (unsigned long long)(now_mono_ms() - j->started_ms),
                 json_array_size(j->indicators), j->nlk);
    } else {
        msg_warn("job %lld: not completed (%s)", j->id, outcome);
    }
    job_free(j);
}

static json_t *indicator_entry(struct job *j, size_t i, json_t *summary_counts, int *ok,
                               int *failed)
{
    json_t *ind = json_array_get(j->indicators, i);
    json_t *e =
        json_pack("{s:O,s:O,s:b}", "type", json_object_get(ind, "type"), "value",
                  json_object_get(ind, "value"), "new", json_is_true(json_object_get(ind, "new")));
    json_t *results = json_object();
    const char *worst = "Pending";
    json_t *reason = json_object_get(j->skipped, json_string_value(json_object_get(ind, "key")));
    if (reason) {
        char *msg = xasprintf("Enrichment skipped: %s", json_string_value(reason));
        json_object_set_new(results, "_validation",
                            result_new("_validation", "skipped", NULL, NULL, msg));
        free(msg);
    }
    for (size_t k = 0; k < j->nlk; k++) {
        struct lookup *l = &j->lk[k];
        if (l->ind != i || !l->result)
            continue;
        json_object_set(results, l->p->name, l->result);
        if (json_is_true(json_object_get(l->result, "success"))) {
            (*ok)++;
            const char *m = json_string_value(
                json_object_get(json_object_get(l->result, "extracted"), "malice"));
            if (m && malice_rank(m) >= 0)
                worst = malice_worst(worst, m);
        } else if (!strcmp(json_string_value(json_object_get(l->result, "status")), "failed")) {
            (*failed)++;
        }
    }
    json_object_set_new(e, "results", results);
    json_object_set_new(e, "malice", json_string(worst));
    json_t *cnt = json_object_get(summary_counts, worst);
    json_object_set_new(summary_counts, worst, json_integer(json_integer_value(cnt) + 1));
    return e;
}

static void complete(struct job *j)
{
    json_t *doc = json_object(), *inds = json_array(), *cache = json_array();
    json_t *counts = json_object();
    int ok = 0, failed = 0;
    for (size_t i = 0; i < json_array_size(j->indicators); i++)
        json_array_append_new(inds, indicator_entry(j, i, counts, &ok, &failed));
    for (size_t k = 0; k < j->nlk; k++) {
        struct lookup *l = &j->lk[k];
        if (!l->fresh || !json_is_true(json_object_get(l->result, "success")))
            continue;
        /* the result itself is in indicators[i].results: sent (and parsed) once */
        json_t *ind = json_array_get(j->indicators, l->ind);
        json_array_append_new(
            cache,
            json_pack("{s:s,s:i,s:i}", "provider", l->p->name, "i", (int)l->ind, "ttl",
                      provider_cache_ttl(l->p, json_string_value(json_object_get(ind, "type")))));
    }
    json_object_set_new(doc, "indicators", inds);
    json_object_set_new(doc, "cache", cache);
    json_object_set_new(doc, "summary",
                        json_pack("{s:i,s:i,s:i,s:o}", "indicator_count",
                                  (int)json_array_size(j->indicators), "providers_succeeded", ok,
                                  "providers_failed", failed, "malice_counts", counts));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text) {
        msg_error("job %lld: results could not be serialised", j->id);
        release(j, "results could not be serialised");
        return;
    }
    char id[32];
    snprintf(id, sizeof id, "%lld", j->id);
    const char *params[3] = {id, j->en->owner, text};
    pg_exec(j->en->pg, "SELECT calseta_enrich_complete($1, $2, $3::jsonb)", 3, params, on_completed,
            j);
    free(text);
}

/* ---- step 3: caches and lookups ---- */

/* About the serialised size of v, without serialising it (the in-process cache's weight). */
static size_t json_weight(json_t *v)
{
    size_t w = 0, i;
    const char *k;
    json_t *x;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        w = 2;
        json_object_foreach(v, k, x) w += strlen(k) + 4 + json_weight(x);
        return w;
    case JSON_ARRAY:
        w = 2;
        json_array_foreach(v, i, x) w += 1 + json_weight(x);
        return w;
    case JSON_STRING:
        return json_string_length(v) + 2;
    case JSON_INTEGER:
    case JSON_REAL:
        return 24;
    default:
        return 5;
    }
}

static void lookup_done(struct job *j)
{
    if (--j->pending == 0)
        complete(j);
}

static void on_lookup(void *arg, json_t *result)
{
    struct lookup *l = arg;
    struct job *j = l->job;
    l->result = result;
    l->fresh = 1;
    if (json_is_true(json_object_get(result, "success"))) {
        json_t *ind = json_array_get(j->indicators, l->ind);
        const char *type = json_string_value(json_object_get(ind, "type"));
        cache_put(j->en->cache, l->p->name, type, json_string_value(json_object_get(ind, "value")),
                  result, json_weight(result), now_mono_ms(),
                  (int64_t)provider_cache_ttl(l->p, type) * 1000);
    } else {
        msg_warn("job %lld: %s lookup failed: %s", j->id, l->p->name,
                 json_string_value(json_object_get(result, "error_message")));
    }
    lookup_done(j);
}

static void run_lookups(struct job *j)
{
    j->pending = 1; /* held until every lookup has started */
    for (size_t k = 0; k < j->nlk; k++) {
        struct lookup *l = &j->lk[k];
        if (l->result)
            continue;
        json_t *ind = json_array_get(j->indicators, l->ind);
        j->pending++;
        engine_lookup(j->en->engine, l->p, json_string_value(json_object_get(ind, "type")),
                      json_string_value(json_object_get(ind, "value")), j->id, j->deadline_ms,
                      on_lookup, l);
    }
    lookup_done(j);
}

static struct lookup *find_lookup(struct job *j, const char *prov, const char *type,
                                  const char *value)
{
    for (size_t k = 0; k < j->nlk; k++) {
        json_t *ind = json_array_get(j->indicators, j->lk[k].ind);
        if (!j->lk[k].result && !strcmp(j->lk[k].p->name, prov) &&
            !strcmp(json_string_value(json_object_get(ind, "type")), type) &&
            !strcmp(json_string_value(json_object_get(ind, "value")), value))
            return &j->lk[k];
    }
    return NULL;
}

static void on_shared_cache(void *arg, PGresult *res, const char *err)
{
    struct job *j = arg;
    if (err) {
        msg_warn("job %lld: shared cache unavailable (%s), looking everything up", j->id, err);
    } else {
        for (int r = 0; r < PQntuples(res); r++) {
            struct lookup *l =
                find_lookup(j, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
            json_t *v = l ? json_loads_wide(PQgetvalue(res, r, 3), 0) : NULL;
            if (!v)
                continue;
            l->result = v;
            cache_put(j->en->cache, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1),
                      PQgetvalue(res, r, 2), v, (size_t)PQgetlength(res, r, 3), now_mono_ms(),
                      atoll(PQgetvalue(res, r, 4)) * 1000);
        }
    }
    run_lookups(j);
}

static void consult_caches(struct job *j)
{
    json_t *keys = json_array();
    for (size_t k = 0; k < j->nlk; k++) {
        struct lookup *l = &j->lk[k];
        json_t *ind = json_array_get(j->indicators, l->ind);
        const char *type = json_string_value(json_object_get(ind, "type"));
        const char *value = json_string_value(json_object_get(ind, "value"));
        l->result = cache_get(j->en->cache, l->p->name, type, value, now_mono_ms());
        if (!l->result)
            json_array_append_new(keys, json_pack("{s:s,s:s,s:s}", "provider", l->p->name, "type",
                                                  type, "value", value));
    }
    if (json_array_size(keys) == 0) {
        json_decref(keys);
        run_lookups(j);
        return;
    }
    char *text = json_dumps(keys, JSON_COMPACT);
    json_decref(keys);
    const char *params[1] = {text};
    pg_exec(j->en->pg,
            "SELECT provider_name, indicator_type, indicator_value, result::text, ttl_left "
            "FROM calseta_enrich_cache_get($1::jsonb)",
            1, params, on_shared_cache, j);
    free(text);
}

/* ---- steps 1 and 2 ---- */

static void plan(struct job *j)
{
    struct enricher *en = j->en;
    size_t n = json_array_size(j->indicators);
    j->lk = xcalloc(n * (j->ps->n ? j->ps->n : 1) + 1, sizeof *j->lk);
    for (size_t i = 0; i < n; i++) {
        json_t *ind = json_array_get(j->indicators, i);
        const char *type = json_string_value(json_object_get(ind, "type"));
        const char *value = json_string_value(json_object_get(ind, "value"));
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        json_object_set_new(ind, "key", json_string(key));
        const char *reason;
        if (!is_enrichable(type, value, &reason)) {
            json_object_set_new(j->skipped, key, json_string(reason));
            continue;
        }
        for (size_t p = 0; p < j->ps->n; p++) {
            const struct provider *pr = &j->ps->p[p];
            if (!provider_supports(pr, type) ||
                !provider_configured(pr, provider_env_get, en->cfg->settings))
                continue;
            j->lk[j->nlk].job = j;
            j->lk[j->nlk].ind = i;
            j->lk[j->nlk].p = pr;
            j->nlk++;
        }
    }
}

static json_t *valid_indicators(json_t *in)
{
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(in, i, e)
    {
        json_t *t = json_object_get(e, "type"), *v = json_object_get(e, "value");
        if (json_is_string(t) && json_is_string(v) && json_string_length(v) > 0)
            json_array_append_new(out, json_pack("{s:O,s:O,s:b}", "type", t, "value", v, "new", 0));
    }
    return out;
}

void job_start(struct enricher *en, long long job_id, long long alert_id, int attempts, json_t *doc)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->en = en;
    j->id = job_id;
    j->alert_id = alert_id;
    j->attempts = attempts;
    j->started_ms = now_mono_ms();
    j->deadline_ms = j->started_ms + (uint64_t)en->cfg->enrich_job_deadline_seconds * 1000;
    j->ps = provider_set_ref(en->providers);
    j->skipped = json_object();
    j->indicators = valid_indicators(json_object_get(doc, "indicators"));
    size_t added = extract_pass3(json_object_get(doc, "raw_payload"),
                                 json_string_value(json_object_get(doc, "source_name")),
                                 j->ps->mappings, j->ps->nmappings, j->indicators);
    j->next = en->jobs;
    if (en->jobs)
        en->jobs->prev = j;
    en->jobs = j;
    en->inflight++;
    plan(j);
    msg_info("job %lld (alert %lld, attempt %d): %zu indicators (%zu from pass 3), %zu lookups",
             job_id, alert_id, attempts, json_array_size(j->indicators), added, j->nlk);
    consult_caches(j);
}
