/*
 * http_router.c - method + path pattern routing for the HTTP server.
 *
 * A route is a pattern ("/v1/alerts/{uuid}/indicators") split into segments, each literal or a
 * parameter matching one non-empty segment, and a list of (method, handler, data). Matching
 * walks the routes in the order they were added: the first route whose pattern matches the path
 * and that has the method wins. When patterns match but none has the method, the answer is 405
 * with an Allow list (the union of the matching routes' methods; GET implies HEAD).
 */
#include "http_internal.h"
#include "log.h"

#include <string.h>

struct route_method {
    char method[16];
    http_handler fn;
    void *data;
};

struct route_seg {
    char *text; /* literal text, or the parameter name */
    size_t len;
    int param;
};

struct http_route {
    char *pattern;
    struct route_seg *segs;
    size_t nsegs;
    struct route_method *methods;
    size_t nmethods;
    char allow[160];
};

struct http_router {
    struct http_route **routes;
    size_t n;
};

struct http_router *http_router_new(void)
{
    return xcalloc(1, sizeof(struct http_router));
}

static void route_free(struct http_route *rt)
{
    for (size_t i = 0; i < rt->nsegs; i++)
        free(rt->segs[i].text);
    free(rt->segs);
    free(rt->methods);
    free(rt->pattern);
    free(rt);
}

void http_router_free(struct http_router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        route_free(r->routes[i]);
    free(r->routes);
    free(r);
}

static struct http_route *route_parse(const char *pattern)
{
    if (pattern[0] != '/')
        msg_fatal("http route pattern %s: must start with /", pattern);
    struct http_route *rt = xcalloc(1, sizeof *rt);
    rt->pattern = xstrdup(pattern);
    size_t nparams = 0;
    const char *p = pattern + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        rt->segs = xrealloc(rt->segs, (rt->nsegs + 1) * sizeof *rt->segs);
        struct route_seg *sg = &rt->segs[rt->nsegs++];
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if (len == 2 || ++nparams > HTTP_MAX_PARAMS)
                msg_fatal("http route pattern %s: bad or too many parameters", pattern);
            sg->param = 1;
            sg->text = xstrndup(p + 1, len - 2);
            sg->len = len - 2;
        } else {
            if (memchr(p, '{', len) || memchr(p, '}', len))
                msg_fatal("http route pattern %s: braces inside a segment", pattern);
            sg->param = 0;
            sg->text = xstrndup(p, len);
            sg->len = len;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return rt;
}

static void route_update_allow(struct http_route *rt)
{
    struct buf b;
    buf_init(&b);
    int has_head = 0;
    for (size_t i = 0; i < rt->nmethods; i++)
        has_head |= strcmp(rt->methods[i].method, "HEAD") == 0;
    for (size_t i = 0; i < rt->nmethods; i++) {
        buf_printf(&b, "%s%s", b.len ? ", " : "", rt->methods[i].method);
        if (strcmp(rt->methods[i].method, "GET") == 0 && !has_head)
            buf_puts(&b, ", HEAD");
    }
    if (b.len >= sizeof rt->allow)
        msg_fatal("http route %s: too many methods", rt->pattern);
    memcpy(rt->allow, b.data, b.len + 1);
    buf_destroy(&b);
}

void http_router_add(struct http_router *r, const char *method, const char *pattern,
                     http_handler fn, void *route_data)
{
    if (!method || !*method || strlen(method) >= sizeof(((struct route_method *)0)->method))
        msg_fatal("http route %s: bad method", pattern);
    struct http_route *rt = NULL;
    for (size_t i = 0; i < r->n && !rt; i++)
        if (strcmp(r->routes[i]->pattern, pattern) == 0)
            rt = r->routes[i];
    if (!rt) {
        rt = route_parse(pattern);
        r->routes = xrealloc(r->routes, (r->n + 1) * sizeof *r->routes);
        r->routes[r->n++] = rt;
    }
    for (size_t i = 0; i < rt->nmethods; i++)
        if (strcmp(rt->methods[i].method, method) == 0)
            msg_fatal("http route %s %s: added twice", method, pattern);
    rt->methods = xrealloc(rt->methods, (rt->nmethods + 1) * sizeof *rt->methods);
    struct route_method *m = &rt->methods[rt->nmethods++];
    snprintf(m->method, sizeof m->method, "%s", method);
    m->fn = fn;
    m->data = route_data;
    route_update_allow(rt);
}

/* Matches path against the route's segments, filling params; 1 on a match. */
static int route_match_path(const struct http_route *rt, const char *path, const char **params,
                            size_t *lens, size_t *nparams)
{
    if (path[0] != '/')
        return 0;
    const char *p = path + 1;
    size_t np = 0;
    for (size_t i = 0; i < rt->nsegs; i++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const struct route_seg *sg = &rt->segs[i];
        if (sg->param) {
            if (len == 0)
                return 0;
            params[np] = p;
            lens[np++] = len;
        } else if (len != sg->len || memcmp(p, sg->text, len) != 0) {
            return 0;
        }
        if (i + 1 == rt->nsegs)
            return end == NULL ? (*nparams = np, 1) : 0;
        if (!end)
            return 0;
        p = end + 1;
    }
    return 0;
}

static const struct route_method *route_find_method(const struct http_route *rt, const char *method)
{
    for (size_t i = 0; i < rt->nmethods; i++)
        if (strcmp(rt->methods[i].method, method) == 0)
            return &rt->methods[i];
    if (strcmp(method, "HEAD") == 0)
        return route_find_method(rt, "GET");
    return NULL;
}

/* Adds the methods of rt's Allow list that are not yet in the union. */
static void allow_union_add(char *u, size_t cap, const char *allow)
{
    const char *p = allow;
    while (*p) {
        const char *end = strstr(p, ", ");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int present = 0;
        for (const char *q = u; *q && !present;) {
            const char *qe = strstr(q, ", ");
            size_t ql = qe ? (size_t)(qe - q) : strlen(q);
            present = ql == len && memcmp(q, p, len) == 0;
            q = qe ? qe + 2 : q + ql;
        }
        size_t ul = strlen(u);
        if (!present && ul + len + 3 < cap)
            snprintf(u + ul, cap - ul, "%s%.*s", ul ? ", " : "", (int)len, p);
        p = end ? end + 2 : p + len;
    }
}

enum route_result http_router_match(const struct http_router *r, struct http_request *req,
                                    http_handler *fn, char *allow, size_t allowcap)
{
    const struct http_route *first_path = NULL;
    const char *params[HTTP_MAX_PARAMS];
    size_t lens[HTTP_MAX_PARAMS], np = 0;
    int nmatch = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct http_route *rt = r->routes[i];
        if (!route_match_path(rt, req->path, params, lens, &np))
            continue;
        const struct route_method *m = route_find_method(rt, req->method);
        if (m) {
            memcpy(req->params, params, np * sizeof params[0]);
            memcpy(req->param_lens, lens, np * sizeof lens[0]);
            req->nparams = np;
            req->route = rt;
            req->route_pattern = rt->pattern;
            req->route_data = m->data;
            *fn = m->fn;
            return ROUTE_FOUND;
        }
        if (nmatch++ == 0) {
            first_path = rt;
            allow[0] = '\0';
        }
        allow_union_add(allow, allowcap, rt->allow);
    }
    return first_path ? ROUTE_BAD_METHOD : ROUTE_NONE;
}

const char *http_request_param(const struct http_request *req, const char *name, size_t *len_out)
{
    const struct http_route *rt = req->route;
    if (!rt)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < rt->nsegs && k < req->nparams; i++) {
        if (!rt->segs[i].param)
            continue;
        if (strcmp(rt->segs[i].text, name) == 0) {
            if (len_out)
                *len_out = req->param_lens[k];
            return req->params[k];
        }
        k++;
    }
    return NULL;
}
