/*
 * step.h - one http_config step turned into a request.
 *
 * step_build() renders a step of a provider's http_config for one indicator: URL (step 0 takes
 * url_templates_by_type[type] when present; every substituted value URL-encoded), query
 * parameters, headers, and a JSON (preferred) or form body, as the original engine does.
 * Header values lose any CR/LF (no header injection from provider responses). The rendered
 * request may hold credentials: step_req_wipe() zeroes it before freeing.
 */
#ifndef ENRICHER_STEP_H
#define ENRICHER_STEP_H

#include "result.h"
#include "template.h"

#include <curl/curl.h>
#include <jansson.h>

struct step_req {
    const char *name;  /* the step's (borrowed from it) or name_buf */
    char name_buf[32]; /* "step_<index>" for a step without a name */
    char method[32];   /* upper case */
    char *url;
    struct curl_slist *headers;
    char *body; /* NULL: none */
    size_t body_len;
    int timeout_s;
    int optional;
    json_t *expected;  /* borrowed from the step */
    json_t *not_found; /* borrowed from the step */
};

/* Returns 0, or -1 with err (a malformed step). */
int step_build(json_t *http_config, size_t index, const struct tpl_ctx *ctx, int default_timeout,
               struct step_req *out, char *err, size_t errlen);
void step_req_wipe(struct step_req *r);
/* Number of steps (0 when http_config has none). */
size_t step_count(json_t *http_config);
/* 1 when status is listed in the JSON array of status codes. */
int status_listed(json_t *list, long status);

#endif
