/*
 * template.h - the original's {{...}} templates for provider HTTP steps.
 *
 * Syntax: {{ expr }} or {{ expr | urlencode }}, where expr is indicator.value, indicator.type
 * (or the shorthands value, type), auth.<field> or steps.<name>.response.<dot path>. Unknown
 * namespaces are left verbatim; a missing or null value renders as "". The urlencode filter
 * (and url mode, which encodes every substituted value, as the original does for URLs)
 * percent-encodes everything but A-Z a-z 0-9 _ . - ~.
 *
 * Auth values come through a callback so that they can stay in locked memory (creds.h) until
 * they are copied into the request; callers wipe rendered output that may hold them
 * (free_wiped()).
 */
#ifndef ENRICHER_TEMPLATE_H
#define ENRICHER_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

struct buf;

/* Returns the auth field's bytes (not NUL-terminated necessarily) or NULL when absent. */
typedef const char *(*tpl_auth_fn)(void *arg, const char *field, size_t *len);

struct tpl_ctx {
    const char *type;  /* indicator type */
    const char *value; /* indicator value */
    tpl_auth_fn auth;  /* may be NULL: no credentials */
    void *auth_arg;
    json_t *steps; /* {"<step>": {"response": body}}, may be NULL */
};

/* Renders tpl (NUL-terminated); url_mode encodes every substituted value. Caller frees the
 * result with free_wiped() (it may hold a credential). */
char *template_render(const char *tpl, const struct tpl_ctx *ctx, int url_mode);
/* As template_render(), appending to out (NUL-terminated after). */
void template_render_to(struct buf *out, const char *tpl, const struct tpl_ctx *ctx, int url_mode);
/* Renders every string inside a JSON value (object keys untouched); returns a new reference. */
json_t *template_render_json(json_t *v, const struct tpl_ctx *ctx);

#endif
