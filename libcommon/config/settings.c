/*
 * settings.c - name/value store merged from .env, the environment and one secrets backend.
 *
 * settings_load() reads `.env` (lowest), overlays the process environment, then, when the real
 * environment asks for one, loads the secrets backend into a separate store and overlays it.
 * While a backend runs, jansson allocates through a free() that wipes, so parsed secret
 * values do not linger in freed memory.
 */
#include "settings.h"
#include "dotenv.h"
#include "log.h"
#include "secrets_aws.h"
#include "secrets_azure.h"
#include "util.h"

#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

struct kv {
    char *name;
    char *value;
};

struct settings {
    struct kv *items;
    size_t n, cap;
    const char *backend;
};

struct backend {
    const char *trigger; /* environment variable that selects it */
    const char *name;    /* settings_backend() value */
    const char *label;   /* for people */
    int (*load)(const struct settings *env, struct settings *out, char *err, size_t errlen);
};

static const struct backend backends[] = {
    {"AZURE_KEY_VAULT_URL", "azure_key_vault", "Azure Key Vault", secrets_azure_load},
    {"AWS_SECRETS_MANAGER_SECRET_NAME", "aws_secrets_manager", "AWS Secrets Manager",
     secrets_aws_load},
};

struct settings *settings_new(void)
{
    struct settings *s = xcalloc(1, sizeof *s);
    s->backend = "environment";
    return s;
}

void settings_set(struct settings *s, const char *name, const char *value)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!strcmp(s->items[i].name, name)) {
            free_wiped(s->items[i].value);
            s->items[i].value = xstrdup(value);
            return;
        }
    }
    if (s->n == s->cap) {
        /* Grow by copy so no stale array of value pointers survives; values stay put. */
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct kv *items = xcalloc(cap, sizeof *items);
        if (s->n)
            memcpy(items, s->items, s->n * sizeof *items);
        free(s->items);
        s->items = items;
        s->cap = cap;
    }
    s->items[s->n].name = xstrdup(name);
    s->items[s->n].value = xstrdup(value);
    s->n++;
}

const char *settings_get(const struct settings *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->items[i].name, name))
            return s->items[i].value;
    return NULL;
}

size_t settings_count(const struct settings *s)
{
    return s->n;
}

const char *settings_backend(const struct settings *s)
{
    return s->backend;
}

void settings_free(struct settings *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].name);
        free_wiped(s->items[i].value);
    }
    free(s->items);
    free(s);
}

static void merge(struct settings *dst, const struct settings *src)
{
    for (size_t i = 0; i < src->n; i++)
        settings_set(dst, src->items[i].name, src->items[i].value);
}

static void from_environ(struct settings *s, char *const *envp)
{
    for (char *const *e = envp; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e)
            continue;
        char *name = xstrndup(*e, (size_t)(eq - *e));
        settings_set(s, name, eq + 1);
        free(name);
    }
}

static void dotenv_store(void *arg, const char *name, const char *value)
{
    settings_set(arg, name, value);
}


/* The backend chosen by the real environment, or NULL. */
static const struct backend *pick_backend(const struct settings *env)
{
    const struct backend *chosen = NULL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const char *v = settings_get(env, backends[i].trigger);
        if (!v || !*v)
            continue;
        if (!chosen)
            chosen = &backends[i];
        else
            msg_warn("both %s and %s are set; using %s and ignoring %s", chosen->trigger,
                     backends[i].trigger, chosen->label, backends[i].label);
    }
    return chosen;
}

static int run_backend(const struct backend *b, const struct settings *env, struct settings *s,
                       char *err, size_t errlen)
{
    json_malloc_t old_malloc;
    json_free_t old_free;
    json_get_alloc_funcs(&old_malloc, &old_free);
    json_set_alloc_funcs(malloc, free_wiped);
    struct settings *secrets = settings_new();
    char why[768] = "";
    int rc = b->load(env, secrets, why, sizeof why);
    json_set_alloc_funcs(old_malloc, old_free);
    if (rc) {
        snprintf(err, errlen, "%s load failed: %s", b->label, why[0] ? why : "unknown error");
    } else {
        merge(s, secrets);
        s->backend = b->name;
        json_t *f = json_pack("{s:s, s:I}", "secrets_source", b->name, "secrets_loaded",
                              (json_int_t)secrets->n);
        log_event(LOG_INFO, "secrets_loaded", f);
        json_decref(f);
    }
    settings_free(secrets);
    return rc;
}

struct settings *settings_load_env(const char *dotenv_path, char *const *envp, char *err,
                                   size_t errlen)
{
    struct settings *s = settings_new(), *env = settings_new();
    if ((!dotenv_path || *dotenv_path) &&
        dotenv_load(dotenv_path ? dotenv_path : ".env", dotenv_store, s, err, errlen))
        goto fail;
    from_environ(env, envp);
    merge(s, env);
    const struct backend *b = pick_backend(env);
    if (b && run_backend(b, env, s, err, errlen))
        goto fail;
    if (!b)
        msg_debug("secrets_source=environment");
    settings_free(env);
    return s;
fail:
    settings_free(env);
    settings_free(s);
    return NULL;
}

struct settings *settings_load(const char *dotenv_path, char *err, size_t errlen)
{
    return settings_load_env(dotenv_path, environ, err, errlen);
}
