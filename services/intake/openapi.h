/*
 * openapi.h - the OpenAPI 3.1 document of the intake, generated from the route table (so it
 * cannot drift from the routes the server answers), and the offline documentation page.
 */
#ifndef INTAKE_OPENAPI_H
#define INTAKE_OPENAPI_H

#include <jansson.h>
#include <stddef.h>

struct route_def;
struct reqctx;

/* The component schemas (openapi_schemas.c), one JSON object text. */
extern const char OPENAPI_SCHEMAS[];

/* New document for routes[0..n) (version = info.version). */
json_t *openapi_document(const struct route_def *routes, size_t n, const char *version);

void route_openapi(struct reqctx *rc);
void route_docs(struct reqctx *rc);
void route_docs_js(struct reqctx *rc);
void route_docs_css(struct reqctx *rc);

#endif
