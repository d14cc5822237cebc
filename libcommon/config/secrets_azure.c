/*
 * secrets_azure.c - load every enabled secret of an Azure Key Vault using a managed identity.
 *
 * 1. Token for resource https://vault.azure.net: from IDENTITY_ENDPOINT (App Service,
 *    api-version 2019-08-01, X-IDENTITY-HEADER) when set, else from the instance metadata
 *    endpoint (/metadata/identity/oauth2/token, api-version 2018-02-01, Metadata: true).
 * 2. GET {vault}/secrets?api-version=7.4, following nextLink (same origin only, so the
 *    bearer token never goes elsewhere), then GET {vault}/secrets/<name> for each enabled one.
 * Any failure is an error; the token and values are wiped after use.
 */
#include "secrets_azure.h"
#include "httpc.h"
#include "settings.h"
#include "util.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define KV_API "7.4"
#define KV_MAX_PAGES 1000
#define TOKEN_TIMEOUT_MS 5000
#define VAULT_TIMEOUT_MS 15000

struct azure {
    const struct settings *env;
    struct httpc_url vault_url;
    char *vault; /* base URL without trailing '/' */
    char *auth;  /* "Authorization: Bearer ..." */
    char *err;
    size_t errlen;
};

static int failf(struct azure *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int failf(struct azure *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, a->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *env_get(const struct azure *a, const char *name)
{
    const char *v = settings_get(a->env, name);
    return v && *v ? v : NULL;
}

char *secrets_azure_map_name(const char *secret_name)
{
    char *r = xstrdup(secret_name);
    for (char *p = r; *p; p++)
        *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    return r;
}

/* Copies a short, printable description of an error body ({"error":{...}} or text). */
static void describe_error(const struct httpc_response *r, char *out, size_t outlen)
{
    out[0] = 0;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *code = NULL, *msg = NULL;
    if (j) {
        json_t *e = json_object_get(j, "error");
        if (json_is_object(e)) {
            code = json_string_value(json_object_get(e, "code"));
            msg = json_string_value(json_object_get(e, "message"));
        } else if (json_is_string(e)) {
            code = json_string_value(e);
            msg = json_string_value(json_object_get(j, "error_description"));
        }
    }
    snprintf(out, outlen, "%s%s%.200s", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    json_decref(j);
}

static int header_ok(const char *v)
{
    return !strpbrk(v, "\r\n");
}

static char *token_url(struct azure *a, const char *resource, const char **hdr_name,
                       const char **hdr_value)
{
    const char *ep = env_get(a, "IDENTITY_ENDPOINT");
    const char *client = env_get(a, "AZURE_CLIENT_ID");
    char *res = httpc_escape(resource);
    char *cid = client ? httpc_escape(client) : NULL;
    char *url;
    if (ep) {
        *hdr_name = "X-IDENTITY-HEADER";
        *hdr_value = env_get(a, "IDENTITY_HEADER");
        url = xasprintf("%s%sapi-version=2019-08-01&resource=%s%s%s", ep,
                        strchr(ep, '?') ? "&" : "?", res, cid ? "&client_id=" : "", cid ? cid : "");
    } else {
        const char *imds = env_get(a, "AZURE_IMDS_ENDPOINT");
        if (!imds)
            imds = "http://169.254.169.254";
        size_t n = strlen(imds);
        while (n > 0 && imds[n - 1] == '/')
            n--;
        *hdr_name = "Metadata";
        *hdr_value = "true";
        url =
            xasprintf("%.*s/metadata/identity/oauth2/token?api-version=2018-02-01&resource=%s%s%s",
                      (int)n, imds, res, cid ? "&client_id=" : "", cid ? cid : "");
    }
    free(res);
    free(cid);
    return url;
}

static int retryable(long status)
{
    return status == 404 || status == 410 || status == 429 || status >= 500;
}

/* Sends the token request, retrying statuses the identity endpoints document as transient. */
static int request_token(struct azure *a, const char *url, const char *hdr, const char *where,
                         struct httpc_response *r)
{
    const char *hdrs[] = {hdr, NULL};
    struct httpc_request req = {"GET", url, hdrs, NULL, 0, TOKEN_TIMEOUT_MS, 64 << 10, 1};
    char why[512];
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt) {
            httpc_response_destroy(r);
            usleep(250000u << attempt);
        }
        if (httpc_perform(&req, r, why, sizeof why))
            return failf(a, "managed identity token request to the %s failed: %s", where, why);
        if (r->status == 200 || !retryable(r->status))
            break;
    }
    if (r->status != 200) {
        describe_error(r, why, sizeof why);
        return failf(a, "managed identity token request to the %s failed: HTTP %ld%s%s", where,
                     r->status, why[0] ? ": " : "", why);
    }
    return 0;
}

static int get_token(struct azure *a, const char *resource)
{
    const char *hname, *hvalue;
    const char *where = env_get(a, "IDENTITY_ENDPOINT") ? "identity endpoint (IDENTITY_ENDPOINT)"
                                                        : "instance metadata identity endpoint";
    char *url = token_url(a, resource, &hname, &hvalue);
    if (!hvalue || !header_ok(hvalue)) {
        free(url);
        return failf(a, "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is missing or invalid");
    }
    char *hdr = xasprintf("%s: %s", hname, hvalue);
    struct httpc_response r;
    int rc = request_token(a, url, hdr, where, &r);
    if (rc == 0) {
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        const char *tok = json_string_value(json_object_get(j, "access_token"));
        if (!tok || !*tok || !header_ok(tok))
            rc = failf(a, "the %s answered without an access_token", where);
        else
            a->auth = xasprintf("Authorization: Bearer %s", tok);
        json_decref(j);
    }
    httpc_response_destroy(&r);
    explicit_bzero(hdr, strlen(hdr));
    free(hdr);
    free(url);
    return rc;
}

/* GET url from the vault with the bearer token; 0 and a parsed JSON body, or -1. */
static int vault_get(struct azure *a, const char *url, const char *what, json_t **out)
{
    const char *hdrs[] = {a->auth, "Accept: application/json", NULL};
    struct httpc_request req = {"GET", url, hdrs, NULL, 0, VAULT_TIMEOUT_MS, 4 << 20, 0};
    struct httpc_response r;
    char why[512];
    int rc = -1;
    *out = NULL;
    if (httpc_perform(&req, &r, why, sizeof why)) {
        failf(a, "%s: %s", what, why);
    } else if (r.status != 200) {
        describe_error(&r, why, sizeof why);
        failf(a, "%s: HTTP %ld%s%s", what, r.status, why[0] ? ": " : "", why);
    } else if (!(*out = json_loadb(r.body, r.body_len, 0, NULL)) || !json_is_object(*out)) {
        failf(a, "%s: the answer is not a JSON object", what);
        json_decref(*out);
        *out = NULL;
    } else {
        rc = 0;
    }
    httpc_response_destroy(&r);
    return rc;
}

static int valid_secret_name(const char *n)
{
    if (!*n || strlen(n) > 127)
        return 0;
    for (; *n; n++)
        if (!isalnum((unsigned char)*n) && *n != '-')
            return 0;
    return 1;
}

static int fetch_secret(struct azure *a, const char *name, struct settings *out)
{
    char *url = xasprintf("%s/secrets/%s?api-version=" KV_API, a->vault, name);
    char *what = xasprintf("reading secret \"%s\"", name);
    json_t *j;
    int rc = vault_get(a, url, what, &j);
    if (rc == 0) {
        const char *v = json_string_value(json_object_get(j, "value"));
        if (!v) {
            rc = failf(a, "%s: the answer has no string \"value\"", what);
        } else {
            char *key = secrets_azure_map_name(name);
            settings_set(out, key, v);
            free(key);
        }
    }
    json_decref(j);
    free(what);
    free(url);
    return rc;
}

/* One page of the listing: fetches each enabled secret; *next gets nextLink or NULL. */
static int list_page(struct azure *a, const char *url, struct settings *out, char **next)
{
    json_t *j;
    *next = NULL;
    if (vault_get(a, url, "listing secrets", &j))
        return -1;
    int rc = 0;
    json_t *items = json_object_get(j, "value"), *it;
    size_t i;
    if (!json_is_array(items))
        rc = failf(a, "listing secrets: the answer has no \"value\" array");
    json_array_foreach(items, i, it)
    {
        if (rc)
            break;
        const char *id = json_string_value(json_object_get(it, "id"));
        const char *slash = id ? strstr(id, "/secrets/") : NULL;
        if (!slash || !valid_secret_name(slash + 9)) {
            rc = failf(a, "listing secrets: item %zu has no valid secret id", i);
            break;
        }
        json_t *enabled = json_object_get(json_object_get(it, "attributes"), "enabled");
        if (json_is_false(enabled))
            continue;
        rc = fetch_secret(a, slash + 9, out);
    }
    const char *nl = json_string_value(json_object_get(j, "nextLink"));
    if (!rc && nl && *nl)
        *next = xstrdup(nl);
    json_decref(j);
    return rc;
}

static int check_next_link(struct azure *a, const char *link)
{
    struct httpc_url u;
    char why[256];
    if (httpc_url_parse(link, &u, why, sizeof why))
        return failf(a, "listing secrets: nextLink is not a valid URL (%s)", why);
    int same = httpc_url_same_origin(&u, &a->vault_url);
    httpc_url_destroy(&u);
    if (!same)
        return failf(a, "listing secrets: nextLink points outside the vault; refusing to "
                        "send the token there");
    return 0;
}

static int list_all(struct azure *a, struct settings *out)
{
    char *url = xasprintf("%s/secrets?api-version=" KV_API, a->vault), *next = NULL;
    int rc = 0;
    for (int page = 0; url; page++) {
        if (page == KV_MAX_PAGES) {
            rc = failf(a, "listing secrets: more than %d pages", KV_MAX_PAGES);
            break;
        }
        if ((rc = list_page(a, url, out, &next)) != 0)
            break;
        free(url);
        url = next;
        next = NULL;
        if (url && (rc = check_next_link(a, url)) != 0)
            break;
    }
    free(url);
    free(next);
    return rc;
}

/* Token audience for the vault's cloud; the public cloud unless the host says otherwise. */
static const char *vault_resource(const char *host)
{
    static const char *const clouds[][2] = {
        {".vault.azure.cn", "https://vault.azure.cn"},
        {".vault.usgovcloudapi.net", "https://vault.usgovcloudapi.net"},
        {".vault.microsoftazure.de", "https://vault.microsoftazure.de"},
    };
    size_t hl = strlen(host);
    for (size_t i = 0; i < sizeof clouds / sizeof clouds[0]; i++) {
        size_t sl = strlen(clouds[i][0]);
        if (hl > sl && !strcasecmp(host + hl - sl, clouds[i][0]))
            return clouds[i][1];
    }
    return "https://vault.azure.net";
}

static int open_vault(struct azure *a, const char *url)
{
    char why[256];
    if (httpc_url_parse(url, &a->vault_url, why, sizeof why))
        return failf(a, "AZURE_KEY_VAULT_URL: %s", why);
    if (strcmp(a->vault_url.scheme, "https") && !httpc_host_is_loopback(a->vault_url.host))
        return failf(a, "AZURE_KEY_VAULT_URL must use https (http only for a loopback host)");
    if (*a->vault_url.query || strcmp(a->vault_url.path, "/"))
        return failf(a, "AZURE_KEY_VAULT_URL must be the vault's base URL, without a path");
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    a->vault = xstrndup(url, n);
    return 0;
}

int secrets_azure_load(const struct settings *env, struct settings *out, char *err, size_t errlen)
{
    struct azure a = {.env = env, .err = err, .errlen = errlen};
    const char *url = settings_get(env, "AZURE_KEY_VAULT_URL");
    int rc = -1;
    if (!url || !*url) {
        failf(&a, "AZURE_KEY_VAULT_URL is not set");
        goto out;
    }
    if (open_vault(&a, url) || get_token(&a, vault_resource(a.vault_url.host)))
        goto out;
    rc = list_all(&a, out);
out:
    if (a.auth) {
        explicit_bzero(a.auth, strlen(a.auth));
        free(a.auth);
    }
    free(a.vault);
    httpc_url_destroy(&a.vault_url);
    return rc;
}
