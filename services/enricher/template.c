/*
 * template.c - {{...}} rendering, see template.h.
 */
#include "template.h"
#include "jpath.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

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

static int expr_is(const char *e, size_t n, const char *name)
{
    return strlen(name) == n && !memcmp(e, name, n);
}

static int expr_starts(const char *e, size_t n, const char *prefix, size_t plen)
{
    return n >= plen && !memcmp(e, prefix, plen);
}

/* Resolves one expression (e, n bytes) into out. Returns 0, or -1 for an unknown namespace. */
static int resolve(const char *e, size_t n, const struct tpl_ctx *ctx, int encode, struct buf *out)
{
    if (expr_is(e, n, "indicator.value") || expr_is(e, n, "value")) {
        if (ctx->value)
            emit(out, ctx->value, strlen(ctx->value), encode);
        return 0;
    }
    if (expr_is(e, n, "indicator.type") || expr_is(e, n, "type")) {
        if (ctx->type)
            emit(out, ctx->type, strlen(ctx->type), encode);
        return 0;
    }
    if (expr_starts(e, n, "indicator.", 10))
        return 0; /* unknown indicator attribute: missing */
    if (!expr_starts(e, n, "auth.", 5) && !expr_starts(e, n, "steps.", 6))
        return -1;
    /* the callbacks take a NUL-terminated name: copy it (on the stack when it is short) */
    char small[128];
    char *expr = n < sizeof small ? small : xmalloc(n + 1);
    memcpy(expr, e, n);
    expr[n] = 0;
    if (expr[0] == 'a') {
        size_t vn = 0;
        const char *v = ctx->auth ? ctx->auth(ctx->auth_arg, expr + 5, &vn) : NULL;
        if (v)
            emit(out, v, vn, encode);
    } else {
        json_t *v = ctx->steps ? jpath_get(ctx->steps, expr + 6) : NULL;
        char *t = jvalue_text(v);
        if (t) {
            emit(out, t, strlen(t), encode);
            free_wiped(t);
        }
    }
    if (expr != small)
        free(expr);
    return 0;
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
    if (resolve(e, en, ctx, encode, out) != 0)
        buf_append(out, whole, whole_len);
}

char *template_render(const char *tpl, const struct tpl_ctx *ctx, int url_mode)
{
    struct buf out;
    buf_init(&out);
    template_render_to(&out, tpl, ctx, url_mode);
    return out.data;
}

void template_render_to(struct buf *o, const char *tpl, const struct tpl_ctx *ctx, int url_mode)
{
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
                buf_append(o, p, (size_t)(open - p) + 1);
                p = open + 1;
            } else {
                buf_append(o, p, (size_t)(q - p));
                p = q;
            }
            continue;
        }
        buf_append(o, p, (size_t)(open - p));
        render_expr(open + 2, (size_t)(q - open - 2), ctx, url_mode, o, open,
                    (size_t)(q + 2 - open));
        p = q + 2;
    }
    buf_puts(o, p);
}

json_t *template_render_json(json_t *v, const struct tpl_ctx *ctx)
{
    if (json_is_string(v)) {
        char *s = template_render(json_string_value(v), ctx, 0);
        json_t *r = json_string(s);
        free_wiped(s);
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
