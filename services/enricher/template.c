/*
 * template.c - {{...}} rendering, see template.h.
 */
#include "template.h"
#include "jpath.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void template_free_wipe(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

static void emit(struct buf *out, const char *v, size_t n, int encode)
{
    if (encode)
        urlencode_append(out, v, n);
    else
        buf_append(out, v, n);
}

/* Resolves one expression into out. Returns 0, or -1 for an unknown namespace. */
static int resolve(const char *expr, const struct tpl_ctx *ctx, int encode, struct buf *out)
{
    if (!strcmp(expr, "indicator.value") || !strcmp(expr, "value")) {
        if (ctx->value)
            emit(out, ctx->value, strlen(ctx->value), encode);
        return 0;
    }
    if (!strcmp(expr, "indicator.type") || !strcmp(expr, "type")) {
        if (ctx->type)
            emit(out, ctx->type, strlen(ctx->type), encode);
        return 0;
    }
    if (!strncmp(expr, "indicator.", 10))
        return 0; /* unknown indicator attribute: missing */
    if (!strncmp(expr, "auth.", 5)) {
        size_t n = 0;
        const char *v = ctx->auth ? ctx->auth(ctx->auth_arg, expr + 5, &n) : NULL;
        if (v)
            emit(out, v, n, encode);
        return 0;
    }
    if (!strncmp(expr, "steps.", 6)) {
        json_t *v = ctx->steps ? jpath_get(ctx->steps, expr + 6) : NULL;
        char *t = jvalue_text(v);
        if (t) {
            emit(out, t, strlen(t), encode);
            template_free_wipe(t);
        }
        return 0;
    }
    return -1;
}

/* One {{...}} body (between the braces): expression and optional filter. */
static void render_expr(const char *body, size_t n, const struct tpl_ctx *ctx, int url_mode,
                        struct buf *out, const char *whole, size_t whole_len)
{
    int encode = url_mode;
    const char *bar = memchr(body, '|', n);
    size_t en = bar ? (size_t)(bar - body) : n;
    const char *e = body;
    trim(&e, &en);
    if (bar) {
        const char *f = bar + 1;
        size_t fn = n - (size_t)(f - body);
        trim(&f, &fn);
        if (fn == 9 && !memcmp(f, "urlencode", 9))
            encode = 1;
    }
    char *expr = xstrndup(e, en);
    if (resolve(expr, ctx, encode, out) != 0)
        buf_append(out, whole, whole_len);
    free(expr);
}

char *template_render(const char *tpl, const struct tpl_ctx *ctx, int url_mode)
{
    struct buf out;
    buf_init(&out);
    const char *p = tpl;
    for (;;) {
        const char *open = strstr(p, "{{");
        if (!open)
            break;
        const char *q = open + 2;
        while (*q && *q != '}')
            q++;
        if (!*q)
            break; /* no '}' left: no match anywhere further on */
        if (q == open + 2 || q[1] != '}') {
            /* No match starting here, nor at any "{{" before q (each would stop at the same
             * q): go on from q. Keeps rendering linear on hostile input. */
            if (q == open + 2 && q[1] == '}') {
                buf_append(&out, p, (size_t)(open - p) + 1);
                p = open + 1;
            } else {
                buf_append(&out, p, (size_t)(q - p));
                p = q;
            }
            continue;
        }
        buf_append(&out, p, (size_t)(open - p));
        render_expr(open + 2, (size_t)(q - open - 2), ctx, url_mode, &out, open,
                    (size_t)(q + 2 - open));
        p = q + 2;
    }
    buf_puts(&out, p);
    if (!out.data)
        buf_append(&out, "", 0);
    return out.data;
}

json_t *template_render_json(json_t *v, const struct tpl_ctx *ctx)
{
    if (json_is_string(v)) {
        char *s = template_render(json_string_value(v), ctx, 0);
        json_t *r = json_string(s);
        template_free_wipe(s);
        return r ? r : json_string("");
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) json_object_set_new(o, k, template_render_json(x, ctx));
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(a, template_render_json(x, ctx));
        return a;
    }
    return json_incref(v);
}
