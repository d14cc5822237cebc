/*
 * provider.c - provider snapshots from the configuration document, see provider.h.
 */
#include "provider.h"
#include "indicator_types.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char PROVIDER_CONFIG_SQL[] = "SELECT calseta_enrichment_config()::text";

static char *dup_or_null(json_t *v)
{
    return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

static json_t *ref_or_null(json_t *v)
{
    return v && !json_is_null(v) ? json_incref(v) : NULL;
}

static int int_in(json_t *v, int def, int lo, int hi)
{
    if (!json_is_number(v))
        return def;
    double d = json_number_value(v);
    return d < lo ? lo : d > hi ? hi : (int)d;
}

static void parse_auth(struct provider *p, json_t *auth)
{
    if (!json_is_object(auth) || json_object_size(auth) == 0)
        return;
    json_t *tok = json_object_get(auth, "_encrypted");
    if (json_is_string(tok) && json_string_length(tok) > 0)
        p->encrypted_auth = xstrdup(json_string_value(tok));
    else
        p->plaintext_auth = 1;
}

static void parse_provider(struct provider *p, json_t *o, const struct provider_defaults *d)
{
    p->name = xstrdup(json_string_value(json_object_get(o, "name")));
    json_t *types = json_object_get(o, "types");
    p->types = xcalloc(json_array_size(types) + 1, sizeof *p->types);
    size_t i;
    json_t *t;
    json_array_foreach(types, i, t)
    {
        if (json_is_string(t) && indicator_type_valid(json_string_value(t)))
            p->types[p->ntypes++] = xstrdup(json_string_value(t));
    }
    p->http_config = ref_or_null(json_object_get(o, "http_config"));
    if (!p->http_config)
        p->http_config = json_object();
    p->auth_type = dup_or_null(json_object_get(o, "auth_type"));
    if (!p->auth_type)
        p->auth_type = xstrdup("no_auth");
    parse_auth(p, json_object_get(o, "auth_config"));
    p->env_var_mapping = ref_or_null(json_object_get(o, "env_var_mapping"));
    p->default_ttl = int_in(json_object_get(o, "default_ttl"), 3600, 0, 86400);
    p->ttl_by_type = ref_or_null(json_object_get(o, "ttl_by_type"));
    p->malice_rules = ref_or_null(json_object_get(o, "malice_rules"));
    json_t *mock = json_object_get(o, "mock_responses");
    if (d->mock_mode && json_is_object(mock) && json_object_size(mock) > 0)
        p->mock_responses = json_incref(mock);
    p->max_concurrency =
        int_in(json_object_get(p->http_config, "max_concurrency"), d->max_concurrency, 1, 1000);
    json_t *rps = json_object_get(p->http_config, "rate_limit_per_second");
    p->rate_per_second = json_is_number(rps) && json_number_value(rps) > 0 ? json_number_value(rps)
                                                                           : d->rate_per_second;
    p->timeout_seconds =
        int_in(json_object_get(p->http_config, "timeout_seconds"), d->timeout_seconds, 1, 600);
}

static void add_rule(struct provider_set *s, json_t *e)
{
    const char *pn = json_string_value(json_object_get(e, "provider"));
    struct provider *p = pn ? (struct provider *)provider_find(s, pn) : NULL;
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *path = json_string_value(json_object_get(e, "source_path"));
    const char *key = json_string_value(json_object_get(e, "target_key"));
    const char *vt = json_string_value(json_object_get(e, "value_type"));
    if (!p || !type || !path || !key)
        return;
    p->rules = xrealloc(p->rules, (p->nrules + 1) * sizeof *p->rules);
    struct field_rule *r = &p->rules[p->nrules++];
    r->indicator_type = xstrdup(type);
    r->source_path = xstrdup(path);
    r->target_key = xstrdup(key);
    r->value_type = xstrdup(vt ? vt : "string");
}

static void add_mapping(struct provider_set *s, json_t *e)
{
    const char *path = json_string_value(json_object_get(e, "field_path"));
    const char *type = json_string_value(json_object_get(e, "indicator_type"));
    if (!path || !type || !indicator_type_valid(type))
        return;
    s->mappings = xrealloc(s->mappings, (s->nmappings + 1) * sizeof *s->mappings);
    struct raw_mapping *m = &s->mappings[s->nmappings++];
    m->source_name = dup_or_null(json_object_get(e, "source_name"));
    m->field_path = xstrdup(path);
    m->indicator_type = xstrdup(type);
}

struct provider_set *provider_set_parse(json_t *doc, const struct provider_defaults *d, char *err,
                                        size_t errlen)
{
    json_t *provs = json_object_get(doc, "providers");
    if (!json_is_array(provs)) {
        snprintf(err, errlen, "configuration document has no providers list");
        return NULL;
    }
    struct provider_set *s = xcalloc(1, sizeof *s);
    s->refs = 1;
    s->p = xcalloc(json_array_size(provs) + 1, sizeof *s->p);
    size_t i;
    json_t *o;
    json_array_foreach(provs, i, o)
    {
        if (json_is_object(o) && json_is_string(json_object_get(o, "name")))
            parse_provider(&s->p[s->n++], o, d);
    }
    json_array_foreach(json_object_get(doc, "extractions"), i, o) add_rule(s, o);
    json_array_foreach(json_object_get(doc, "mappings"), i, o) add_mapping(s, o);
    return s;
}

struct provider_set *provider_set_ref(struct provider_set *s)
{
    s->refs++;
    return s;
}

static void provider_destroy(struct provider *p)
{
    free(p->name);
    for (size_t i = 0; i < p->ntypes; i++)
        free(p->types[i]);
    free(p->types);
    json_decref(p->http_config);
    free(p->auth_type);
    if (p->encrypted_auth) {
        explicit_bzero(p->encrypted_auth, strlen(p->encrypted_auth));
        free(p->encrypted_auth);
    }
    json_decref(p->env_var_mapping);
    json_decref(p->ttl_by_type);
    json_decref(p->malice_rules);
    json_decref(p->mock_responses);
    for (size_t i = 0; i < p->nrules; i++) {
        free(p->rules[i].indicator_type);
        free(p->rules[i].source_path);
        free(p->rules[i].target_key);
        free(p->rules[i].value_type);
    }
    free(p->rules);
}

void provider_set_unref(struct provider_set *s)
{
    if (!s || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->n; i++)
        provider_destroy(&s->p[i]);
    free(s->p);
    for (size_t i = 0; i < s->nmappings; i++) {
        free(s->mappings[i].source_name);
        free(s->mappings[i].field_path);
        free(s->mappings[i].indicator_type);
    }
    free(s->mappings);
    free(s);
}

const struct provider *provider_find(const struct provider_set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->p[i].name, name))
            return &s->p[i];
    return NULL;
}

int provider_supports(const struct provider *p, const char *type)
{
    for (size_t i = 0; i < p->ntypes; i++)
        if (!strcmp(p->types[i], type))
            return 1;
    return 0;
}

int provider_configured(const struct provider *p, const char *(*get_env)(void *, const char *),
                        void *arg)
{
    if (p->mock_responses || !strcmp(p->auth_type, "no_auth"))
        return 1;
    if (p->encrypted_auth)
        return 1;
    const char *k;
    json_t *v;
    json_object_foreach(p->env_var_mapping, k, v)
    {
        const char *val = json_is_string(v) && get_env ? get_env(arg, json_string_value(v)) : NULL;
        if (val && *val)
            return 1;
    }
    return 0;
}

int provider_cache_ttl(const struct provider *p, const char *type)
{
    static const struct {
        const char *type;
        int ttl;
    } defaults[] = {{"ip", 3600},         {"domain", 21600},      {"hash_md5", 86400},
                    {"hash_sha1", 86400}, {"hash_sha256", 86400}, {"url", 1800},
                    {"email", 3600},      {"account", 900}};
    json_t *v = json_object_get(p->ttl_by_type, type);
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 86400 * 30)
        return (int)json_integer_value(v);
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (!strcmp(defaults[i].type, type))
            return defaults[i].ttl;
    return p->default_ttl;
}
