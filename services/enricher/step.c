/*
 * step.c - request building from http_config steps.
 */
#include "step.h"
#include "httpc.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t step_count(json_t *http_config)
{
    return json_array_size(json_object_get(http_config, "steps"));
}

int status_listed(json_t *list, long status)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i,
                       v) if (json_is_integer(v) && json_integer_value(v) == status) return 1;
    return 0;
}

void step_req_wipe(struct step_req *r)
{
    free_wiped(r->url);
    httpc_slist_free_wiped(r->headers);
    if (r->body) {
        explicit_bzero(r->body, r->body_len);
        free(r->body);
    }
    memset(r, 0, sizeof *r);
}

/* Form encoding (application/x-www-form-urlencoded): spaces as '+'. */
static void form_append(struct buf *b, const char *s)
{
    size_t n = strlen(s), start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == ' ') {
            urlencode_append(b, s + start, i - start);
            if (i < n)
                buf_puts(b, "+");
            start = i + 1;
        }
    }
}

static char *render_value(json_t *v, const struct tpl_ctx *ctx)
{
    if (json_is_string(v))
        return template_render(json_string_value(v), ctx, 0);
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *r = xstrdup(json_is_null(v) || !s ? "" : s);
    free(s);
    return r;
}

static void add_query(struct buf *url, json_t *params, const struct tpl_ctx *ctx)
{
    const char *k;
    json_t *v;
    int first = strchr(url->data, '?') == NULL;
    json_object_foreach(params, k, v)
    {
        char *val = render_value(v, ctx);
        buf_puts(url, first ? "?" : "&");
        first = 0;
        urlencode_append(url, k, strlen(k));
        buf_puts(url, "=");
        urlencode_append(url, val, strlen(val));
        free_wiped(val);
    }
}

/* Renders a non-string value (number, boolean, null, object) as its JSON text. */
static void render_value_to(struct buf *b, json_t *v, const struct tpl_ctx *ctx)
{
    if (json_is_string(v)) {
        template_render_to(b, json_string_value(v), ctx, 0);
        return;
    }
    char *s = render_value(v, ctx);
    buf_puts(b, s);
    free_wiped(s);
}

/* Each line is rendered into one buffer (wiped after: it may hold a credential) and copied
 * into the list. */
static void add_headers(struct step_req *r, json_t *headers, const struct tpl_ctx *ctx)
{
    const char *k;
    json_t *v;
    struct buf line;
    buf_init(&line);
    buf_reserve(&line, 256);
    json_object_foreach(headers, k, v)
    {
        if (!*k || strpbrk(k, ":\r\n \t"))
            continue;
        buf_reset(&line);
        buf_puts(&line, k);
        buf_puts(&line, ": ");
        size_t at = line.len;
        render_value_to(&line, v, ctx);
        for (char *p = line.data + at; *p; p++)
            if (*p == '\r' || *p == '\n')
                *p = ' ';
        if (line.len == at) { /* "Name:" alone would remove a header; "Name;" sends it empty */
            line.len = at - 2;
            buf_puts(&line, ";");
        }
        r->headers = curl_slist_append(r->headers, line.data);
        explicit_bzero(line.data, line.len);
    }
    buf_destroy_wiped(&line);
}

static void add_body(struct step_req *r, json_t *step, const struct tpl_ctx *ctx)
{
    json_t *jb = json_object_get(step, "json_body");
    json_t *fb = json_object_get(step, "form_body");
    if (jb && !json_is_null(jb)) {
        json_t *rendered = template_render_json(jb, ctx);
        r->body = json_dumps(rendered, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(rendered);
        r->body_len = r->body ? strlen(r->body) : 0;
        r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
    } else if (json_is_object(fb)) {
        struct buf b;
        buf_init(&b);
        const char *k;
        json_t *v;
        json_object_foreach(fb, k, v)
        {
            char *val = render_value(v, ctx);
            if (b.len)
                buf_puts(&b, "&");
            form_append(&b, k);
            buf_puts(&b, "=");
            form_append(&b, val);
            free_wiped(val);
        }
        buf_append(&b, "", 0);
        r->body = b.data;
        r->body_len = b.len;
        r->headers =
            curl_slist_append(r->headers, "Content-Type: application/x-www-form-urlencoded");
    }
}

int step_build(json_t *http_config, size_t index, const struct tpl_ctx *ctx, int default_timeout,
               struct step_req *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *step = json_array_get(json_object_get(http_config, "steps"), index);
    if (!json_is_object(step)) {
        snprintf(err, errlen, "step %zu is not an object", index);
        return -1;
    }
    const char *name = json_string_value(json_object_get(step, "name"));
    if (!name)
        snprintf(out->name_buf, sizeof out->name_buf, "step_%zu", index);
    out->name = name ? name : out->name_buf;
    const char *method = json_string_value(json_object_get(step, "method"));
    method = method ? method : "GET";
    if (strlen(method) >= sizeof out->method) {
        snprintf(err, errlen, "Step '%s' has a method longer than %zu characters", out->name,
                 sizeof out->method - 1);
        return -1;
    }
    for (size_t i = 0; method[i]; i++)
        out->method[i] = (char)toupper((unsigned char)method[i]);
    const char *url = json_string_value(json_object_get(step, "url"));
    if (index == 0) {
        json_t *byt = json_object_get(json_object_get(http_config, "url_templates_by_type"),
                                      ctx->type ? ctx->type : "");
        if (json_is_string(byt))
            url = json_string_value(byt);
    }
    if (!url) {
        snprintf(err, errlen, "Step '%s' has no url", out->name);
        return -1;
    }
    struct buf u;
    buf_init(&u);
    /* usually one allocation; a URL that outgrows it (a long credential or indicator) leaves
     * its smaller block freed unwiped, as a header line longer than 256 bytes does below */
    buf_reserve(&u, strlen(url) + 256);
    template_render_to(&u, url, ctx, 1);
    add_query(&u, json_object_get(step, "query_params"), ctx);
    out->url = u.data;
    add_headers(out, json_object_get(step, "headers"), ctx);
    add_body(out, step, ctx);
    json_t *t = json_object_get(step, "timeout_seconds");
    out->timeout_s = json_is_number(t) && json_number_value(t) > 0
                         ? (int)(json_number_value(t) < 600 ? json_number_value(t) + 0.999 : 600)
                         : default_timeout;
    out->optional = json_is_true(json_object_get(step, "optional"));
    out->expected = json_object_get(step, "expected_status");
    out->not_found = json_object_get(step, "not_found_status");
    return 0;
}
