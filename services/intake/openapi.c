/*
 * openapi.c - GET /openapi.json: an OpenAPI 3.1 document built from the route table.
 *
 * Every route of the table is one operation: its summary and tag, the scope it needs (bearer
 * security, or none for public routes), path parameters from the pattern, query parameters
 * and request/response bodies from the entry's documentation fields, and the error answers
 * every route can give (401, 403, 404, 422, 429 in the one error envelope). The original
 * declared no security scheme and documented none of these errors.
 */
#include "openapi.h"
#include "intake.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const char DESCRIPTION[] =
    "SOC data platform for security agent consumption. Every route except the public ones "
    "needs `Authorization: Bearer cai_...`; the scope each route needs is in its description "
    "(`admin` passes every scope check). Errors are `{\"error\": {\"code\", \"message\", "
    "\"details\"}}`.";

static json_t *ref(const char *kind, const char *name)
{
    char *s = xasprintf("#/components/%s/%s", kind, name);
    json_t *r = json_pack("{s:s}", "$ref", s);
    free(s);
    return r;
}

static json_t *json_content(json_t *schema)
{
    return json_pack("{s:{s:o}}", "application/json", "schema", schema);
}

/* The success answer of a route. */
static json_t *success(const struct route_def *r)
{
    const char *resp = r->response;
    json_t *out = json_pack("{s:s}", "description", "Success");
    if (resp && !strcmp(resp, "-"))
        return out;
    if (resp && (!strcmp(resp, "text/html") || !strcmp(resp, "text/plain") ||
                 !strcmp(resp, "text/css") || !strcmp(resp, "text/javascript"))) {
        json_object_set_new(out, "content",
                            json_pack("{s:{s:{s:s}}}", resp, "schema", "type", "string"));
        return out;
    }
    json_t *data;
    json_t *meta = ref("schemas", "ListMeta");
    size_t n = resp ? strlen(resp) : 0;
    if (n > 2 && !strcmp(resp + n - 2, "[]")) {
        char *name = xstrndup(resp, n - 2);
        data = json_pack("{s:s,s:o}", "type", "array", "items", ref("schemas", name));
        free(name);
    } else {
        data = ref("schemas", resp ? resp : "Object");
        json_decref(meta);
        meta = json_pack("{s:s}", "type", "object");
    }
    json_object_set_new(out, "content",
                        json_content(json_pack("{s:s,s:{s:o,s:o},s:[s]}", "type", "object",
                                               "properties", "data", data, "meta", meta,
                                               "required", "data")));
    return out;
}

static void add_param(json_t *params, const char *name, const char *in, const char *type)
{
    json_t *schema;
    if (!strcmp(type, "uuid") || !strcmp(type, "date-time"))
        schema = json_pack("{s:s,s:s}", "type", "string", "format", type);
    else
        schema = json_pack("{s:s}", "type", type);
    json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:o}", "name", name, "in", in,
                                            "required", !strcmp(in, "path"), "schema",
                                            schema));
}

/* Path parameters from "{name}" segments; "uuid" ones are UUIDs. Writes the OpenAPI path. */
static json_t *parameters(const struct route_def *r)
{
    json_t *params = json_array();
    for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
        const char *e = strchr(p, '}');
        if (!e)
            break;
        char *name = xstrndup(p + 1, (size_t)(e - p - 1));
        add_param(params, name, "path", !strcmp(name, "uuid") ? "uuid" : "string");
        free(name);
    }
    if (r->query) {
        char *q = xstrdup(r->query), *save = NULL;
        for (char *t = strtok_r(q, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            char *colon = strchr(t, ':');
            const char *type = "string";
            if (colon) {
                *colon = 0;
                type = !strcmp(colon + 1, "int")    ? "integer"
                       : !strcmp(colon + 1, "bool") ? "boolean"
                                                    : colon + 1;
            }
            add_param(params, t, "query", type);
        }
        free(q);
    }
    return params;
}

static json_t *operation(const struct route_def *r)
{
    json_t *op = json_object();
    char *id = xasprintf("%s %s", r->method, r->pattern);
    for (char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    json_object_set_new(op, "operationId", json_string(id));
    free(id);
    if (r->summary)
        json_object_set_new(op, "summary", json_string(r->summary));
    if (r->tag)
        json_object_set_new(op, "tags", json_pack("[s]", r->tag));
    char *desc = !r->scope ? xstrdup("Public: no API key.")
                 : !strcmp(r->scope, "*")
                     ? xstrdup("Any valid API key.")
                     : xasprintf("Requires scope `%s` (or `admin`).", r->scope);
    json_object_set_new(op, "description", json_string(desc));
    free(desc);
    if (r->scope && strcmp(r->scope, "*"))
        json_object_set_new(op, "x-required-scope", json_string(r->scope));
    json_object_set_new(op, "security",
                        r->scope ? json_pack("[{s:[]}]", "bearerAuth") : json_array());
    json_t *params = parameters(r);
    int has_input = json_array_size(params) > 0 || r->request;
    if (json_array_size(params))
        json_object_set_new(op, "parameters", params);
    else
        json_decref(params);
    if (r->request)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b,s:o}", "required", 1, "content",
                                      json_content(ref("schemas", r->request))));
    json_t *resp = json_object();
    char status[8];
    snprintf(status, sizeof status, "%d", r->status ? r->status : 200);
    json_object_set_new(resp, status, success(r));
    if (r->scope)
        json_object_set_new(resp, "401", ref("responses", "Unauthorized"));
    if (r->scope && strcmp(r->scope, "*"))
        json_object_set_new(resp, "403", ref("responses", "Forbidden"));
    if (strchr(r->pattern, '{'))
        json_object_set_new(resp, "404", ref("responses", "NotFound"));
    if (has_input)
        json_object_set_new(resp, "422", ref("responses", "ValidationError"));
    if (r->rate != RATE_NONE)
        json_object_set_new(resp, "429", ref("responses", "RateLimited"));
    json_object_set_new(op, "responses", resp);
    return op;
}

static json_t *error_response(const char *description)
{
    return json_pack("{s:s,s:o}", "description", description, "content",
                     json_content(ref("schemas", "Error")));
}

static json_t *components(void)
{
    json_t *schemas = json_loads(OPENAPI_SCHEMAS, 0, NULL);
    json_t *rate = error_response("Rate limit exceeded (RATE_LIMITED); Retry-After says when to "
                                  "retry.");
    json_object_set_new(rate, "headers",
                        json_pack("{s:{s:s,s:{s:s}}}", "Retry-After", "description",
                                  "Seconds until a request would pass", "schema", "type",
                                  "integer"));
    return json_pack(
        "{s:{s:{s:s,s:s,s:s}},s:o,s:{s:o,s:o,s:o,s:o,s:o}}", "securitySchemes", "bearerAuth",
        "type", "http", "scheme", "bearer", "description",
        "An API key (cai_ followed by 43 base64url characters).", "schemas",
        schemas ? schemas : json_object(), "responses", "Unauthorized",
        error_response("Missing, malformed, unknown, revoked or expired key "
                       "(UNAUTHORIZED, KEY_EXPIRED)."),
        "Forbidden", error_response("The key lacks the scope (FORBIDDEN)."), "NotFound",
        error_response("No such resource (NOT_FOUND)."), "ValidationError",
        error_response("Invalid path, query or body (VALIDATION_ERROR, with the fields in "
                       "details.errors)."),
        "RateLimited", rate);
}

json_t *openapi_document(const struct route_def *routes, size_t n, const char *version)
{
    json_t *paths = json_object(), *tags = json_array(), *seen = json_object();
    for (size_t i = 0; i < n; i++) {
        const struct route_def *r = &routes[i];
        json_t *item = json_object_get(paths, r->pattern);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, r->pattern, item);
        }
        char method[16];
        size_t k = 0;
        for (; r->method[k] && k + 1 < sizeof method; k++)
            method[k] = (char)(r->method[k] | 0x20);
        method[k] = 0;
        json_object_set_new(item, method, operation(r));
        if (r->tag && !json_object_get(seen, r->tag)) {
            json_object_set_new(seen, r->tag, json_true());
            json_array_append_new(tags, json_pack("{s:s}", "name", r->tag));
        }
    }
    json_decref(seen);
    return json_pack("{s:s,s:{s:s,s:s,s:s},s:o,s:o,s:o}", "openapi", "3.1.0", "info", "title",
                     "Calseta", "version", version ? version : "dev", "description",
                     DESCRIPTION, "tags", tags, "paths", paths, "components", components());
}

void route_openapi(struct reqctx *rc)
{
    size_t n;
    const struct route_def *routes = routes_table(&n);
    reply_json(rc, 200, openapi_document(routes, n, rc->in->cfg.app_version));
}
