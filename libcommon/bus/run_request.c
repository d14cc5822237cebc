/*
 * run_request.c - RUN requests for the workflow runner, built from a claim or test document
 * (see run_request.h).
 */
#include "run_request.h"

#include "log.h"
#include "secmem.h"
#include "settings_table.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static char *dump_or_null(json_t *v)
{
    return json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
}

static const char *setting(const struct settings *s, const char *name)
{
    return setting_value(s, name);
}

/* Wipes every string inside v (credentials) before it is freed. */
static void json_wipe_strings(json_t *v)
{
    const char *k;
    json_t *x;
    if (json_is_string(v))
        explicit_bzero((char *)json_string_value(v), json_string_length(v));
    json_object_foreach(v, k, x)
    {
        json_wipe_strings(x);
    }
}

/* {"okta": {...}} or {"entra": {...}} for the built-in's own integration when every setting it
 * needs is there, else {} (the workflow then fails "... integration is not configured"). */
static char *integrations_json(const struct settings *s, const char *integration)
{
    json_t *o = json_object();
    if (integration && !strcmp(integration, "okta") && setting(s, "OKTA_DOMAIN") &&
        setting(s, "OKTA_API_TOKEN")) {
        const char *base = setting(s, "OKTA_BASE_URL");
        json_object_set_new(o, "okta",
                            json_pack("{s:s,s:s,s:s?}", "domain", setting(s, "OKTA_DOMAIN"),
                                      "api_token", setting(s, "OKTA_API_TOKEN"), "base_url",
                                      base));
    } else if (integration && !strcmp(integration, "entra") && setting(s, "ENTRA_TENANT_ID") &&
               setting(s, "ENTRA_CLIENT_ID") && setting(s, "ENTRA_CLIENT_SECRET")) {
        json_object_set_new(
            o, "entra",
            json_pack("{s:s,s:s,s:s,s:s?,s:s?}", "tenant_id", setting(s, "ENTRA_TENANT_ID"),
                      "client_id", setting(s, "ENTRA_CLIENT_ID"), "client_secret",
                      setting(s, "ENTRA_CLIENT_SECRET"), "login_url",
                      setting(s, "ENTRA_LOGIN_URL"), "graph_url", setting(s, "ENTRA_GRAPH_URL")));
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_wipe_strings(o);
    json_decref(o);
    return text;
}

void run_request_init(struct runner_run_req *r, json_t *doc, const char *run_uuid,
                      int timeout_seconds, const struct fernet_key *key,
                      const struct settings *settings)
{
    memset(r, 0, sizeof *r);
    r->run_uuid = xstrdup(run_uuid);
    r->code = xstrdup(json_string_value(json_object_get(doc, "code")) ?: "");
    r->timeout_seconds = timeout_seconds;
    r->trigger_context_json = dump_or_null(json_object_get(doc, "trigger_context"));
    r->indicator_json = dump_or_null(json_object_get(doc, "indicator"));
    r->alert_json = dump_or_null(json_object_get(doc, "alert"));
    json_t *secrets = json_object_get(doc, "secrets");
    size_t n = json_object_size(secrets);
    if (n > RUNNER_MAX_SECRETS)
        n = RUNNER_MAX_SECRETS;
    r->secrets = xcalloc(n ? n : 1, sizeof *r->secrets);
    const char *name;
    json_t *tok;
    json_object_foreach(secrets, name, tok)
    {
        uint8_t *pt = NULL;
        size_t ptlen;
        if (r->nsecrets >= n)
            break;
        if (!key || !json_is_string(tok) ||
            fernet_decrypt(key, json_string_value(tok), &pt, &ptlen) != 0) {
            json_t *f = json_pack("{s:s,s:s}", "run_uuid", run_uuid, "name", name);
            log_event(LOG_WARN, "workflow_secret_decrypt_failed", f);
            json_decref(f);
            continue;
        }
        r->secrets[r->nsecrets].name = xstrdup(name);
        r->secrets[r->nsecrets].value = (char *)pt; /* secmem, NUL-terminated */
        r->nsecrets++;
    }
    if (json_is_true(json_object_get(doc, "is_system"))) /* set by the claim only */
        r->integrations_json =
            integrations_json(settings, json_string_value(json_object_get(doc, "integration")));
}

void run_request_destroy(struct runner_run_req *r)
{
    for (size_t i = 0; i < r->nsecrets; i++) {
        free(r->secrets[i].name);
        secmem_free(r->secrets[i].value);
    }
    free(r->secrets);
    free(r->run_uuid);
    free(r->code);
    free(r->trigger_context_json);
    free(r->indicator_json);
    free(r->alert_json);
    if (r->integrations_json) {
        explicit_bzero(r->integrations_json, strlen(r->integrations_json));
        free(r->integrations_json);
    }
    memset(r, 0, sizeof *r);
}

json_t *run_result_json(const struct runner_result *r)
{
    json_t *data = r->data_json ? json_loads(r->data_json, 0, NULL) : NULL;
    if (!json_is_object(data)) {
        json_decref(data);
        data = json_object();
    }
    return json_pack("{s:b,s:s,s:o}", "success", r->success, "message",
                     r->message ? r->message : "", "data", data);
}
