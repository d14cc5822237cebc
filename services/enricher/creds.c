/*
 * creds.c - provider credentials decrypted into locked memory at the moment of use, see
 * creds.h. The decrypted JSON object ({"api_key": "...", ...}, as the original stores
 * json.dumps(auth_config)) is parsed in place inside the locked buffer: string values are
 * unescaped where they lie, and only their positions are kept elsewhere.
 */
#include "creds.h"
#include "fernet.h"
#include "log.h"
#include "provider.h"
#include "secmem.h"
#include "settings.h"
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct creds_ctx {
    struct fernet_key key;
    const struct settings *settings;
    creds_audit_fn audit;
    void *audit_arg;
};

struct field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct creds {
    uint8_t *plain; /* locked (secmem), NULL when values come from the settings */
    size_t plain_len;
    struct field *f;
    size_t n;
};

struct creds_ctx *creds_ctx_new(const char *key_b64, const struct settings *settings,
                                creds_audit_fn audit, void *audit_arg, char *err, size_t errlen)
{
    if (!key_b64 || !*key_b64) {
        snprintf(err, errlen,
                 "ENCRYPTION_KEY is not set: provider credentials cannot be "
                 "decrypted (generate one with `calseta gen-encryption-key`)");
        return NULL;
    }
    struct creds_ctx *cc = xcalloc(1, sizeof *cc);
    if (fernet_key_parse(key_b64, &cc->key) != 0) {
        free(cc);
        snprintf(err, errlen,
                 "ENCRYPTION_KEY is not a valid Fernet key (44 characters of "
                 "url-safe base64 encoding 32 bytes; generate one with `calseta "
                 "gen-encryption-key`)");
        return NULL;
    }
    cc->settings = settings;
    cc->audit = audit;
    cc->audit_arg = audit_arg;
    return cc;
}

void creds_ctx_free(struct creds_ctx *cc)
{
    if (!cc)
        return;
    explicit_bzero(cc, sizeof *cc);
    free(cc);
}

int creds_token_matches(const struct creds_ctx *cc, const char *token)
{
    uint8_t *pt = NULL;
    size_t len = 0;
    if (fernet_decrypt(&cc->key, token, &pt, &len) != 0)
        return -1;
    secmem_free(pt);
    return 0;
}

/* ---- in-place parsing of the decrypted object ---- */

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Unescapes the string starting after the opening quote at s[i], in place. Returns the index
 * after the closing quote, or 0 on malformed input. */
static size_t parse_string(char *s, size_t i, size_t n, const char **out, size_t *out_len)
{
    size_t w = i;
    *out = s + i;
    while (i < n && s[i] != '"') {
        if (s[i] != '\\') {
            s[w++] = s[i++];
            continue;
        }
        if (++i >= n)
            return 0;
        char c = s[i++];
        const char *simple = "\"\\/bfnrt", *repl = "\"\\/\b\f\n\r\t";
        const char *k = strchr(simple, c);
        if (c && k) {
            s[w++] = repl[k - simple];
        } else if (c == 'u' && i + 4 <= n) {
            unsigned cp;
            if (hex4(s + i, &cp))
                return 0;
            i += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u') {
                unsigned lo;
                if (!hex4(s + i + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
            }
            w += put_utf8(s + w, cp); /* never longer than the escape it replaces */
        } else {
            return 0;
        }
    }
    if (i >= n)
        return 0;
    *out_len = (size_t)(s + w - *out);
    return i + 1;
}

/* Skips a non-string value (number, literal, nested object/array). */
static size_t skip_value(const char *s, size_t i, size_t n)
{
    int depth = 0, in_str = 0;
    for (; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0)
                return i;
            depth--;
        } else if (c == ',' && depth == 0)
            return i;
    }
    return i;
}

static int parse_object(struct creds *c)
{
    char *s = (char *)c->plain;
    size_t n = c->plain_len, i = skip_ws(s, 0, n);
    if (i >= n || s[i++] != '{')
        return -1;
    for (;;) {
        i = skip_ws(s, i, n);
        if (i < n && s[i] == '}')
            return 0;
        if (i >= n || s[i] != '"')
            return -1;
        struct field f = {0};
        if (!(i = parse_string(s, i + 1, n, &f.name, &f.name_len)))
            return -1;
        i = skip_ws(s, i, n);
        if (i >= n || s[i++] != ':')
            return -1;
        i = skip_ws(s, i, n);
        if (i < n && s[i] == '"') {
            if (!(i = parse_string(s, i + 1, n, &f.value, &f.value_len)))
                return -1;
        } else {
            size_t end = skip_value(s, i, n);
            f.value = s + i;
            f.value_len = end - i;
            while (f.value_len && strchr(" \t\r\n", f.value[f.value_len - 1]))
                f.value_len--;
            i = end;
        }
        c->f = xrealloc(c->f, (c->n + 1) * sizeof *c->f);
        c->f[c->n++] = f;
        i = skip_ws(s, i, n);
        if (i < n && s[i] == ',') {
            i++;
            continue;
        }
        return i < n && s[i] == '}' ? 0 : -1;
    }
}

/* ---- opening ---- */

static int from_env(struct creds_ctx *cc, const struct provider *p, struct creds *c)
{
    const char *k;
    json_t *v;
    json_object_foreach(p->env_var_mapping, k, v)
    {
        const char *val =
            json_is_string(v) ? settings_get(cc->settings, json_string_value(v)) : NULL;
        if (!val || !*val)
            continue;
        c->f = xrealloc(c->f, (c->n + 1) * sizeof *c->f);
        c->f[c->n++] = (struct field){k, strlen(k), val, strlen(val)};
    }
    return c->n ? 0 : -1;
}

struct creds *creds_open(struct creds_ctx *cc, const struct provider *p, long long job_id,
                         char *err, size_t errlen)
{
    struct creds *c = xcalloc(1, sizeof *c);
    if (!strcmp(p->auth_type, "no_auth"))
        return c;
    if (p->encrypted_auth) {
        if (fernet_decrypt(&cc->key, p->encrypted_auth, &c->plain, &c->plain_len) != 0) {
            msg_warn("provider %s: auth_config does not decrypt under ENCRYPTION_KEY", p->name);
            c->plain = NULL;
        } else {
            if (cc->audit)
                cc->audit(cc->audit_arg, p->name, job_id);
            if (parse_object(c) == 0 && c->n)
                return c;
            msg_warn("provider %s: decrypted auth_config is not a JSON object of fields", p->name);
            creds_close(c);
            c = xcalloc(1, sizeof *c);
        }
    }
    if (from_env(cc, p, c) == 0)
        return c;
    creds_close(c);
    snprintf(err, errlen, "Provider %s has no usable credentials", p->name);
    return NULL;
}

const char *creds_get(void *creds, const char *field, size_t *len)
{
    struct creds *c = creds;
    size_t fl = strlen(field);
    for (size_t i = 0; c && i < c->n; i++)
        if (c->f[i].name_len == fl && !memcmp(c->f[i].name, field, fl)) {
            *len = c->f[i].value_len;
            return c->f[i].value;
        }
    return NULL;
}

void creds_close(struct creds *c)
{
    if (!c)
        return;
    if (c->plain)
        secmem_free(c->plain); /* wipes, unlocks, frees */
    free(c->f);
    free(c);
}
