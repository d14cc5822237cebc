/*
 * secrets_aws.c - load one AWS Secrets Manager secret (a JSON object of settings).
 *
 * Credentials come from the environment, else the container credentials endpoint, else the
 * EC2 instance metadata service (IMDSv2: PUT a session token first). The GetSecretValue call
 * is a SigV4-signed POST with the JSON 1.1 protocol. Any failure is an error naming the step;
 * credentials and the secret text are wiped after use.
 */
#include "secrets_aws.h"
#include "httpc.h"
#include "settings.h"
#include "sigv4.h"
#include "util.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define META_TIMEOUT_MS 5000
#define SM_TIMEOUT_MS 15000

struct creds {
    char *access_key;
    char *secret_key;
    char *token; /* may be NULL */
    const char *source;
};

struct aws {
    const struct settings *env;
    char *err;
    size_t errlen;
};

static int failf(struct aws *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int failf(struct aws *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, a->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *env_get(const struct aws *a, const char *name)
{
    const char *v = settings_get(a->env, name);
    return v && *v ? v : NULL;
}

static void creds_destroy(struct creds *c)
{
    free_wiped(c->access_key);
    free_wiped(c->secret_key);
    free_wiped(c->token);
    memset(c, 0, sizeof *c);
}

static int header_ok(const char *v)
{
    return !strpbrk(v, "\r\n");
}

static char *strip_slash(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    return xstrndup(s, n);
}

/* Error text from an AWS JSON error body: "<Type>: <message>" (type without namespace). */
static void describe_error(const struct httpc_response *r, char *out, size_t outlen)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "__type"));
    if (!type)
        type = json_string_value(json_object_get(j, "Code"));
    if (!type)
        type = httpc_response_header(r, "x-amzn-ErrorType");
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (!msg)
        msg = json_string_value(json_object_get(j, "Message"));
    if (type && strchr(type, '#'))
        type = strchr(type, '#') + 1;
    size_t tlen = type ? strcspn(type, ":") : 0;
    snprintf(out, outlen, "%.*s%s%.200s", (int)tlen, type ? type : "", tlen && msg ? ": " : "",
             msg ? msg : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    json_decref(j);
}

/* Takes AccessKeyId/SecretAccessKey/Token from a credentials JSON document. */
static int creds_from_json(struct aws *a, const struct httpc_response *r, const char *where,
                           struct creds *c)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *code = json_string_value(json_object_get(j, "Code"));
    const char *ak = json_string_value(json_object_get(j, "AccessKeyId"));
    const char *sk = json_string_value(json_object_get(j, "SecretAccessKey"));
    const char *tk = json_string_value(json_object_get(j, "Token"));
    int rc = 0;
    if (code && strcmp(code, "Success"))
        rc = failf(a, "%s returned credentials with Code \"%.64s\"", where, code);
    else if (!ak || !*ak || !sk || !*sk || !header_ok(ak) || (tk && !header_ok(tk)))
        rc = failf(a, "%s returned no usable AccessKeyId/SecretAccessKey", where);
    else {
        c->access_key = xstrdup(ak);
        c->secret_key = xstrdup(sk);
        c->token = tk && *tk ? xstrdup(tk) : NULL;
    }
    json_decref(j);
    return rc;
}

/* One metadata-style request; 0 with a 200 response in r, else -1 (r still destroyed by caller). */
static int meta_call(struct aws *a, const char *method, const char *url, const char *const *hdrs,
                     const char *where, struct httpc_response *r)
{
    struct httpc_request req = {method, url, hdrs, NULL, 0, META_TIMEOUT_MS, 64 << 10, 1};
    char why[512];
    if (httpc_perform(&req, r, why, sizeof why))
        return failf(a, "%s (%s): %s", where, url, why);
    if (r->status != 200) {
        describe_error(r, why, sizeof why);
        return failf(a, "%s (%s): HTTP %ld%s%s", where, url, r->status, why[0] ? ": " : "", why);
    }
    return 0;
}

static int container_url_ok(const struct httpc_url *u)
{
    if (!strcmp(u->scheme, "https") || httpc_host_is_loopback(u->host))
        return 1;
    return !strcmp(u->host, "169.254.170.2") || !strcmp(u->host, "169.254.170.23") ||
           !strcasecmp(u->host, "[fd00:ec2::23]");
}

/* The container authorization token: from the token file if given, else the variable. */
static int container_token(struct aws *a, char **out)
{
    *out = NULL;
    const char *file = env_get(a, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *tok = env_get(a, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    if (file) {
        FILE *f = fopen(file, "r");
        char buf[8192];
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        if (!f)
            return failf(a, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s", file);
        while (n > 0 && isspace((unsigned char)buf[n - 1]))
            n--;
        buf[n] = 0;
        *out = xstrdup(buf);
        explicit_bzero(buf, sizeof buf);
    } else if (tok) {
        *out = xstrdup(tok);
    }
    if (*out && !header_ok(*out)) {
        free_wiped(*out);
        *out = NULL;
        return failf(a, "the container authorization token contains a line break");
    }
    return 0;
}

static int creds_container(struct aws *a, struct creds *c)
{
    const char *full = env_get(a, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    const char *rel = env_get(a, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    char *url, *tok = NULL, *hdr = NULL;
    if (rel) {
        if (rel[0] != '/')
            return failf(a, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/'");
        const char *host = env_get(a, "AWS_CONTAINER_CREDENTIALS_ENDPOINT");
        char *base = strip_slash(host ? host : "http://169.254.170.2");
        url = xasprintf("%s%s", base, rel);
        free(base);
    } else {
        url = xstrdup(full);
    }
    struct httpc_url u;
    char why[256];
    int rc = -1;
    if (httpc_url_parse(url, &u, why, sizeof why)) {
        failf(a, "container credentials URL: %s", why);
        free(url);
        return -1;
    }
    if (!rel && !container_url_ok(&u)) {
        failf(a, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be https, loopback or the ECS/EKS "
                 "link-local address");
        goto out;
    }
    if (container_token(a, &tok))
        goto out;
    if (tok)
        hdr = xasprintf("Authorization: %s", tok);
    const char *hdrs[] = {hdr, NULL};
    struct httpc_response r;
    rc = meta_call(a, "GET", url, hdr ? hdrs : NULL, "container credentials endpoint", &r);
    if (rc == 0)
        rc = creds_from_json(a, &r, "the container credentials endpoint", c);
    httpc_response_destroy(&r);
    c->source = "container";
out:
    free_wiped(tok);
    free_wiped(hdr);
    httpc_url_destroy(&u);
    free(url);
    return rc;
}

static int role_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("+=,.@_-", *s))
            return 0;
    return 1;
}

static int creds_imds(struct aws *a, struct creds *c)
{
    const char *ep = env_get(a, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    char *base = strip_slash(ep ? ep : "http://169.254.169.254");
    char *url = xasprintf("%s/latest/api/token", base), *thdr = NULL, *role = NULL;
    const char *put_hdrs[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
    struct httpc_response r;
    int rc = meta_call(a, "PUT", url, put_hdrs, "instance metadata IMDSv2 token request", &r);
    if (rc == 0 && (!r.body_len || !header_ok(r.body)))
        rc = failf(a, "instance metadata service returned an empty IMDSv2 token");
    if (rc == 0)
        thdr = xasprintf("X-aws-ec2-metadata-token: %s", r.body);
    httpc_response_destroy(&r);
    const char *hdrs[] = {thdr, NULL};
    if (rc == 0) {
        free(url);
        url = xasprintf("%s/latest/meta-data/iam/security-credentials/", base);
        rc = meta_call(a, "GET", url, hdrs, "instance metadata IAM role lookup", &r);
        if (rc == 0) {
            role = xstrndup(r.body, strcspn(r.body, "\r\n"));
            if (!role_ok(role))
                rc = failf(a, "no usable IAM role is attached to this instance");
        }
        httpc_response_destroy(&r);
    }
    if (rc == 0) {
        free(url);
        url = xasprintf("%s/latest/meta-data/iam/security-credentials/%s", base, role);
        rc = meta_call(a, "GET", url, hdrs, "instance metadata role credentials", &r);
        if (rc == 0)
            rc = creds_from_json(a, &r, "the instance metadata service", c);
        httpc_response_destroy(&r);
    }
    c->source = "instance metadata";
    free_wiped(thdr);
    free(role);
    free(url);
    free(base);
    return rc;
}

static int get_creds(struct aws *a, struct creds *c)
{
    const char *ak = env_get(a, "AWS_ACCESS_KEY_ID"), *sk = env_get(a, "AWS_SECRET_ACCESS_KEY");
    if (ak || sk) {
        if (!ak || !sk)
            return failf(a, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together");
        const char *tk = env_get(a, "AWS_SESSION_TOKEN");
        if (!header_ok(ak) || (tk && !header_ok(tk)))
            return failf(a, "AWS credentials in the environment contain a line break");
        c->access_key = xstrdup(ak);
        c->secret_key = xstrdup(sk);
        c->token = tk ? xstrdup(tk) : NULL;
        c->source = "environment";
        return 0;
    }
    if (env_get(a, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") ||
        env_get(a, "AWS_CONTAINER_CREDENTIALS_FULL_URI"))
        return creds_container(a, c);
    const char *off = env_get(a, "AWS_EC2_METADATA_DISABLED");
    if (off && !strcasecmp(off, "true"))
        return failf(a, "no credentials: none in the environment, no container endpoint, and "
                        "AWS_EC2_METADATA_DISABLED=true");
    return creds_imds(a, c);
}

static int region_ok(const char *r)
{
    for (const char *p = r; *p; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
            return 0;
    return *r != 0;
}

/* Builds the signed header list for GetSecretValue; returns "Name: value" strings. */
static char **signed_headers(const struct httpc_url *u, const char *region, const struct creds *c,
                             const char *body, char **err_out)
{
    char date[17];
    sigv4_amz_date(time(NULL), date);
    char *host = *u->port ? xasprintf("%s:%s", u->host, u->port) : xstrdup(u->host);
    struct sigv4_header h[5] = {
        {"Content-Type", "application/x-amz-json-1.1"},
        {"Host", host},
        {"X-Amz-Date", date},
        {"X-Amz-Target", "secretsmanager.GetSecretValue"},
        {"X-Amz-Security-Token", c->token},
    };
    size_t nh = c->token ? 5 : 4;
    struct sigv4_input in = {
        "POST", u->path,       u->query,     h, nh, body, strlen(body), region, "secretsmanager",
        date,   c->access_key, c->secret_key};
    struct sigv4_result res;
    char **out = NULL;
    if (sigv4_sign(&in, &res) == 0) {
        out = xcalloc(nh + 2, sizeof *out);
        for (size_t i = 0; i < nh; i++)
            out[i] = xasprintf("%s: %s", h[i].name, h[i].value);
        out[nh] = xasprintf("Authorization: %s", res.authorization);
    } else {
        *err_out = "cannot sign the request";
    }
    sigv4_result_destroy(&res);
    free(host);
    return out;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free_wiped(v[i]);
    free(v);
}

/* Stores each member of the secret's JSON object as a setting. */
static int store_secret(struct aws *a, const char *text, struct settings *out)
{
    json_t *j = json_loads(text, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return failf(a, "SecretString is not a JSON object");
    }
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(j, k, v)
    {
        if (!*k || strchr(k, '=')) {
            rc = failf(a, "SecretString has an unusable key \"%.64s\"", k);
            break;
        }
        if (json_is_null(v))
            continue;
        if (json_is_object(v) || json_is_array(v)) {
            rc = failf(a,
                       "SecretString key \"%.64s\" holds an object or array; only strings, "
                       "numbers and booleans are allowed",
                       k);
            break;
        }
        if (json_is_string(v)) {
            settings_set(out, k, json_string_value(v));
        } else {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
            settings_set(out, k, s);
            free_wiped(s);
        }
    }
    json_decref(j);
    return rc;
}

static int get_secret_value(struct aws *a, const char *endpoint, const char *region,
                            const char *name, const struct creds *c, struct settings *out)
{
    struct httpc_url u;
    char why[512];
    if (httpc_url_parse(endpoint, &u, why, sizeof why))
        return failf(a, "endpoint %s: %s", endpoint, why);
    int rc = -1;
    char *body = NULL, **hdrs = NULL, *serr = NULL;
    struct httpc_response r = {0};
    if (strcmp(u.scheme, "https") && !httpc_host_is_loopback(u.host)) {
        failf(a, "endpoint %s must use https (http only for a loopback host)", endpoint);
        goto out;
    }
    json_t *req = json_pack("{s:s}", "SecretId", name);
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!(hdrs = signed_headers(&u, region, c, body, &serr))) {
        failf(a, "%s", serr);
        goto out;
    }
    struct httpc_request hr = {
        "POST", endpoint, (const char *const *)hdrs, body, strlen(body), SM_TIMEOUT_MS, 1 << 20, 0};
    if (httpc_perform(&hr, &r, why, sizeof why)) {
        failf(a, "GetSecretValue for \"%s\" at %s: %s", name, endpoint, why);
        goto out;
    }
    if (r.status != 200) {
        describe_error(&r, why, sizeof why);
        failf(a, "GetSecretValue for \"%s\" failed (credentials from %s): HTTP %ld%s%s", name,
              c->source, r.status, why[0] ? ": " : "", why);
        goto out;
    }
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    const char *ss = json_string_value(json_object_get(j, "SecretString"));
    if (!ss)
        failf(a, "secret \"%s\" has no SecretString (binary secrets are not supported)", name);
    else
        rc = store_secret(a, ss, out);
    json_decref(j);
out:
    httpc_response_destroy(&r);
    free_strv(hdrs);
    free(body);
    httpc_url_destroy(&u);
    return rc;
}

int secrets_aws_load(const struct settings *env, struct settings *out, char *err, size_t errlen)
{
    struct aws a = {env, err, errlen};
    const char *name = env_get(&a, "AWS_SECRETS_MANAGER_SECRET_NAME");
    const char *region = env_get(&a, "AWS_REGION");
    if (!region)
        region = env_get(&a, "AWS_DEFAULT_REGION");
    if (!name)
        return failf(&a, "AWS_SECRETS_MANAGER_SECRET_NAME is not set");
    if (!region || !region_ok(region))
        return failf(&a, "AWS_REGION (or AWS_DEFAULT_REGION) must be set to a region name");
    const char *ep = env_get(&a, "AWS_SECRETS_MANAGER_ENDPOINT");
    char *endpoint = ep ? xstrdup(ep)
                        : xasprintf("https://secretsmanager.%s.amazonaws.com%s", region,
                                    strncmp(region, "cn-", 3) ? "" : ".cn");
    struct creds c = {0};
    int rc = get_creds(&a, &c);
    if (rc == 0)
        rc = get_secret_value(&a, endpoint, region, name, &c, out);
    creds_destroy(&c);
    free(endpoint);
    return rc;
}
