/*
 * mappings.c - the pass-2 mapping cache: active indicator_field_mappings with
 * extraction_target = 'normalized', loaded at start, reloaded as soon as PostgreSQL announces
 * a change of indicator_field_mappings (the 'calseta_providers' notification its trigger sends),
 * and every housekeeping tick as a safety net (the original loaded them once and never
 * refreshed them). Loads can overlap; a generation number keeps an older answer from
 * replacing a newer one.
 */
#include "indicators.h"
#include "intake.h"
#include "log.h"
#include "source.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct mapping_cache {
    struct indicator_mapping *m;
    unsigned char *own; /* own[i]: m[i] names one of the alert's own fields (see cache_fill) */
    char **strings; /* owned copies the mappings point into */
    size_t n, nstrings;
    uint64_t requested, applied; /* generations of loads */
};

struct load {
    struct intake *in;
    uint64_t generation;
};

static void cache_clear(struct mapping_cache *c)
{
    for (size_t i = 0; i < c->nstrings; i++)
        free(c->strings[i]);
    free(c->strings);
    free(c->m);
    free(c->own);
    c->m = NULL;
    c->own = NULL;
    c->strings = NULL;
    c->n = c->nstrings = 0;
}

static const char *keep(struct mapping_cache *c, const char *s)
{
    if (!s)
        return NULL;
    return c->strings[c->nstrings++] = xstrdup(s);
}

/* Replaces the cache's mappings with copies of m[0..n). Whether each names one of the alert's
 * own fields is settled here, once per load: any other name can only be found in
 * normalized_fields, so mappings_apply() skips it without a call when the alert has none. */
static void cache_fill(struct mapping_cache *c, const struct indicator_mapping *m, size_t n)
{
    cache_clear(c);
    c->m = xcalloc(n + 1, sizeof *c->m);
    c->own = xcalloc(n + 1, sizeof *c->own);
    c->strings = xcalloc(n * 3 + 1, sizeof *c->strings);
    for (size_t i = 0; i < n; i++) {
        c->m[i].source_name = keep(c, m[i].source_name);
        c->m[i].field_path = keep(c, m[i].field_path);
        c->m[i].indicator_type = keep(c, m[i].indicator_type);
        c->own[i] = normalized_alert_own_field(m[i].field_path) != ALERT_OWN_NONE;
    }
    c->n = n;
}

static void on_loaded(void *arg, PGresult *res, const char *err)
{
    struct load l = *(struct load *)arg;
    free(arg);
    struct intake *in = l.in;
    if (!res || err) {
        msg_warn("loading indicator field mappings failed: %s (keeping the previous set)", err);
        return;
    }
    struct mapping_cache *c = in->mappings;
    if (l.generation < c->applied)
        return; /* a newer load already answered */
    c->applied = l.generation;
    size_t rows = (size_t)PQntuples(res);
    struct indicator_mapping *m = xcalloc(rows + 1, sizeof *m);
    for (size_t r = 0; r < rows; r++) {
        const char **col[3] = {&m[r].source_name, &m[r].field_path, &m[r].indicator_type};
        for (int k = 0; k < 3; k++)
            *col[k] = PQgetisnull(res, (int)r, k) ? NULL : PQgetvalue(res, (int)r, k);
    }
    cache_fill(c, m, rows);
    free(m);
}

void mappings_set(struct intake *in, const struct indicator_mapping *m, size_t n)
{
    if (!in->mappings)
        in->mappings = xcalloc(1, sizeof *in->mappings);
    cache_fill(in->mappings, m, n);
}

void mappings_refresh(struct intake *in)
{
    if (!in->mappings)
        in->mappings = xcalloc(1, sizeof *in->mappings);
    struct load *l = xmalloc(sizeof *l);
    *l = (struct load){in, ++in->mappings->requested};
    pg_exec(in->pg,
            "SELECT source_name, field_path, indicator_type FROM indicator_field_mappings "
            "WHERE is_active AND extraction_target = 'normalized' ORDER BY id",
            0, NULL, on_loaded, l);
}

static void on_changed(void *arg, const char *channel, const char *payload)
{
    (void)channel;
    /* NULL: the listen connection was (re)opened and changes may have been missed */
    if (!payload || !strcmp(payload, "indicator_field_mappings"))
        mappings_refresh(arg);
}

void mappings_listen(struct intake *in)
{
    pg_pool_listen(in->pg, "calseta_providers", on_changed, in);
}

/* indicators_extract_normalized() over the fields of normalized_alert_fields(), read in place. */
void mappings_apply(struct intake *in, const struct normalized_alert *na, const char *source,
                    struct indicator_set *set)
{
    struct mapping_cache *c = in->mappings;
    if (!c || c->n == 0)
        return;
    for (size_t i = 0; i < c->n; i++) {
        const struct indicator_mapping *m = &c->m[i];
        /* the 14 default mappings name normalised fields, which no source sets yet: skipped
         * without a call each when the alert has none */
        if (!m->field_path || !m->indicator_type || (!c->own[i] && !na->normalized_fields) ||
            (m->source_name && (!source || strcmp(m->source_name, source))))
            continue;
        json_t *tmp;
        indicator_set_add_json(set, m->indicator_type, normalized_alert_field(na, source, m->field_path, &tmp));
        json_decref(tmp);
    }
}

void mappings_free(struct mapping_cache *c)
{
    if (!c)
        return;
    cache_clear(c);
    free(c);
}
