/*
 * catalogue.c - body validation from a field table and the one-statement reply helpers of the
 * catalogue routes (see catalogue.h).
 */
#include "catalogue.h"
#include "fernet.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

int str_in(const char *s, const char *const *set)
{
    for (; s && *set; set++)
        if (!strcmp(s, *set))
            return 1;
    return 0;
}

int encrypt_auth_config(struct reqctx *rc, const char *key, json_t *holder)
{
    struct fernet_key k;
    if (!key || !*key || fernet_key_parse(key, &k) != 0) {
        reply_error(rc, 400, "ENCRYPTION_NOT_CONFIGURED",
                    "ENCRYPTION_KEY must be set (a valid Fernet key) to store auth_config "
                    "securely. Set ENCRYPTION_KEY in your environment and restart the service.",
                    NULL);
        return -1;
    }
    /* The original's json.dumps form: ", " and ": " separators, ASCII only. */
    char *plain = json_dumps(json_object_get(holder, "auth_config"),
                             JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    char *token = NULL;
    int r = fernet_encrypt(&k, plain, strlen(plain), &token);
    explicit_bzero(plain, strlen(plain));
    free(plain);
    explicit_bzero(&k, sizeof k);
    if (r != 0) {
        reply_error(rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
        return -1;
    }
    json_object_set_new(holder, "auth_config", json_pack("{s:s}", "_encrypted", token));
    free(token);
    return 0;
}

int is_string_list(const json_t *v)
{
    size_t i;
    json_t *t;
    if (!json_is_array(v))
        return 0;
    json_array_foreach(v, i, t) if (!json_is_string(t)) return 0;
    return 1;
}

json_t *comma_list(const char *list)
{
    json_t *arr = json_array();
    char *copy = xstrdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t n = strlen(t);
        while (n && t[n - 1] == ' ')
            t[--n] = 0;
        if (*t)
            json_array_append_new(arr, json_string(t));
    }
    free(copy);
    return arr;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* A string PostgreSQL can store: no NUL inside. */
static int text_ok(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static int refuse(struct reqctx *rc, const char *type, const char *field, const char *msg)
{
    reply_validation_error(rc, type, "body", field, msg);
    return -1;
}

static int check_string(struct reqctx *rc, const struct field_spec *f, const json_t *v)
{
    char msg[256];
    if (!text_ok(v))
        return refuse(rc, "string_type", f->name, "Input should be a valid string");
    size_t n = utf8_chars(json_string_value(v));
    if (f->minlen && n < f->minlen) {
        snprintf(msg, sizeof msg, "String should have at least %zu character%s", f->minlen,
                 f->minlen == 1 ? "" : "s");
        return refuse(rc, "string_too_short", f->name, msg);
    }
    if (f->maxlen && n > f->maxlen) {
        snprintf(msg, sizeof msg, "String should have at most %zu characters", f->maxlen);
        return refuse(rc, "string_too_long", f->name, msg);
    }
    if (f->one_of && !str_in(json_string_value(v), f->one_of)) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "Input should be one of:");
        for (const char *const *o = f->one_of; *o; o++)
            buf_printf(&b, "%s '%s'", o == f->one_of ? "" : ",", *o);
        refuse(rc, "enum", f->name, b.data);
        buf_destroy(&b);
        return -1;
    }
    return 0;
}

static int check_field(struct reqctx *rc, const struct field_spec *f, const json_t *v)
{
    size_t i;
    json_t *x;
    switch (f->kind) {
    case F_STR:
        return check_string(rc, f, v);
    case F_BOOL:
        return json_is_boolean(v) ? 0 : refuse(rc, "bool_type", f->name, "Input should be a valid boolean");
    case F_INT:
        return json_is_integer(v) ? 0 : refuse(rc, "int_type", f->name, "Input should be a valid integer");
    case F_OBJ:
        return json_is_object(v) ? 0 : refuse(rc, "dict_type", f->name, "Input should be a valid dictionary");
    case F_STRARR:
        if (!json_is_array(v))
            return refuse(rc, "list_type", f->name, "Input should be a valid list");
        json_array_foreach(v, i, x) if (!text_ok(x)) return refuse(
            rc, "string_type", f->name, "Input should be a list of strings");
        return 0;
    }
    return 0;
}

int validate_body(struct reqctx *rc, const json_t *body, const struct field_spec *spec, int patch)
{
    for (const struct field_spec *f = spec; f->name; f++) {
        const json_t *v = json_object_get(body, f->name);
        if (!v || json_is_null(v)) {
            if (f->required && !patch)
                return refuse(rc, v ? "string_type" : "missing", f->name,
                              v ? "Input should not be null" : "Field required");
            continue;
        }
        if (check_field(rc, f, v) != 0)
            return -1;
    }
    return 0;
}

size_t param_add(json_t *params, const char *value)
{
    json_array_append_new(params, value ? json_string(value) : json_null());
    return json_array_size(params);
}

const char **param_values(json_t *params)
{
    size_t n = json_array_size(params);
    const char **pv = xcalloc(n ? n : 1, sizeof *pv);
    for (size_t i = 0; i < n; i++)
        pv[i] = json_string_value(json_array_get(params, i)); /* NULL for json null */
    return pv;
}

int query_bool(struct reqctx *rc, const char *name)
{
    char v[16];
    if (!query_param(rc, name, v, sizeof v))
        return -1;
    if (!strcmp(v, "true") || !strcmp(v, "1"))
        return 1;
    if (!strcmp(v, "false") || !strcmp(v, "0"))
        return 0;
    reply_validation_error(rc, "bool_parsing", "query", name, "Input should be a valid boolean");
    return -2;
}

/* ---- one-statement replies ---------------------------------------------------------------- */

struct cat_op {
    struct reqctx *rc;
    int status;
    int list, page, page_size;
    const char *not_found, *conflict;
};

void *cat_reply_new(struct reqctx *rc, int status, const char *not_found)
{
    struct cat_op *op = xcalloc(1, sizeof *op);
    *op = (struct cat_op){.rc = rc, .status = status, .not_found = not_found};
    return op;
}

void cat_reply_cb(void *arg, PGresult *res, const char *err)
{
    struct cat_op op = *(struct cat_op *)arg;
    free(arg);
    struct reqctx *rc = op.rc;
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (err && st && !strcmp(st, "23505")) {
        reply_error(rc, 409, "CONFLICT", op.conflict ? op.conflict : "The resource already exists.",
                    NULL);
        return;
    }
    if (reply_if_pg_failed(rc, res, err) != 0)
        return;
    int col = op.list ? 1 : 0;
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, col)) {
        reply_error(rc, 404, "NOT_FOUND", op.not_found ? op.not_found : "Not found.", NULL);
        return;
    }
    if (op.status == 204) {
        reply_empty(rc, 204);
        return;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, col), JSON_DECODE_ANY, NULL);
    if (op.list) {
        reply_list(rc, json_is_array(data) ? data : (json_decref(data), json_array()),
                   atoll(PQgetvalue(res, 0, 0)), op.page, op.page_size);
        return;
    }
    reply_data(rc, op.status, data ? data : json_object());
}

static void run(struct reqctx *rc, const char *sql, json_t *params, struct cat_op *op)
{
    const char **pv = param_values(params);
    pg_exec(rc->in->pg, sql, (int)json_array_size(params), pv, cat_reply_cb, op);
    free(pv);
    json_decref(params);
}

void cat_exec(struct reqctx *rc, const char *sql, json_t *params, int status,
              const char *not_found, const char *conflict)
{
    struct cat_op *op = xcalloc(1, sizeof *op);
    *op = (struct cat_op){.rc = rc, .status = status, .not_found = not_found,
                          .conflict = conflict};
    run(rc, sql, params, op);
}

void cat_list(struct reqctx *rc, const char *sql, json_t *params, int page, int page_size)
{
    struct cat_op *op = xcalloc(1, sizeof *op);
    *op = (struct cat_op){.rc = rc, .status = 200, .list = 1, .page = page,
                          .page_size = page_size};
    run(rc, sql, params, op);
}

void cat_exec_uuid(struct reqctx *rc, const char *sql, int status, const char *not_found)
{
    char uuid[37];
    if (require_uuid_param(rc, 0, uuid) != 0)
        return;
    json_t *params = json_array();
    param_add(params, uuid);
    cat_exec(rc, sql, params, status, not_found, NULL);
}

json_t *cat_patch_input(struct reqctx *rc, const struct field_spec *spec, char uuid[37])
{
    if (require_uuid_param(rc, 0, uuid) != 0)
        return NULL;
    json_t *body = body_json_object(rc);
    if (body && validate_body(rc, body, spec, 1) != 0) {
        json_decref(body);
        body = NULL;
    }
    return body;
}

void cat_save(struct reqctx *rc, const char *uuid, json_t *body, const char *sql, int status,
              const char *not_found, const char *conflict)
{
    char *doc = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_t *params = json_array();
    param_add(params, uuid);
    param_add(params, doc);
    free_wiped(doc);
    cat_exec(rc, sql, params, status, not_found, conflict);
}
