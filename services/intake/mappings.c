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
    unsigned char *own; /* own[i]: m[i] names one of the alert's own fields (see below) */
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

static const char *keep(struct mapping_cache *c, PGresult *res, int r, int col)
{
    if (PQgetisnull(res, r, col))
        return NULL;
    char *s = xstrdup(PQgetvalue(res, r, col));
    c->strings[c->nstrings++] = s;
    return s;
}

/* The names normalized_alert_field() answers from the alert itself; any other name can only be
 * found in normalized_fields. */
static unsigned char names_own_field(const char *path)
{
    return path && (!strcmp(path, "title") || !strcmp(path, "severity") ||
                    !strcmp(path, "source_name") || !strcmp(path, "description"));
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
    cache_clear(c);
    int rows = PQntuples(res);
    c->m = xcalloc((size_t)rows + 1, sizeof *c->m);
    c->own = xcalloc((size_t)rows + 1, sizeof *c->own);
    c->strings = xcalloc((size_t)rows * 3 + 1, sizeof *c->strings);
    for (int r = 0; r < rows; r++) {
        c->m[c->n].source_name = keep(c, res, r, 0);
        c->m[c->n].field_path = keep(c, res, r, 1);
        c->m[c->n].indicator_type = keep(c, res, r, 2);
        c->own[c->n] = names_own_field(c->m[c->n].field_path);
        c->n++;
    }
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
