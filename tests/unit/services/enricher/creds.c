/*
 * tests/unit/services/enricher/creds.c - credentials at the moment of use: the ENCRYPTION_KEY
 * checks, tokens made under another key, the in-place parsing of decrypted auth_config
 * (escapes, non-string values, malformed objects), the env_var_mapping fallback, the audit
 * hook, and that values live in locked memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fernet.h"
#include "secmem.h"
#include "settings.h"
#include "services/enricher/creds.h"
#include "libcommon/providers/provider.h"

static char key_text[45];
static int audited;
static char audited_provider[64];

static void on_audit(void *arg, const char *provider, long long job_id)
{
    (void)arg;
    audited++;
    strncpy(audited_provider, provider, sizeof audited_provider - 1);
    assert_int_equal(job_id, 77);
}

static char *token_for(const char *key, const char *plain)
{
    struct fernet_key k;
    assert_int_equal(fernet_key_parse(key, &k), 0);
    char *tok = NULL;
    assert_int_equal(fernet_encrypt(&k, plain, strlen(plain), &tok), 0);
    return tok;
}

static struct provider prov(const char *auth_type, char *token, const char *env_json)
{
    struct provider p;
    memset(&p, 0, sizeof p);
    p.name = "virustotal";
    p.auth_type = (char *)auth_type;
    p.encrypted_auth = token;
    p.env_var_mapping = env_json ? json_loads(env_json, 0, NULL) : NULL;
    return p;
}

static const char *get(struct creds *c, const char *field)
{
    static char out[256];
    size_t n = 0;
    const char *v = creds_get(c, field, &n);
    if (!v)
        return NULL;
    assert_true(n < sizeof out);
    memcpy(out, v, n);
    out[n] = 0;
    return out;
}

static void test_key_errors(void **state)
{
    (void)state;
    char err[256];
    assert_null(creds_ctx_new("", NULL, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "ENCRYPTION_KEY"));
    assert_null(creds_ctx_new(NULL, NULL, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "ENCRYPTION_KEY"));
    assert_null(creds_ctx_new("not-a-key", NULL, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "ENCRYPTION_KEY"));
    assert_null(creds_ctx_new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, NULL, NULL, err,
                              sizeof err)); /* 43 chars */
}

static void test_decrypt_and_parse(void **state)
{
    (void)state;
    char err[256];
    struct creds_ctx *cc = creds_ctx_new(key_text, NULL, on_audit, NULL, err, sizeof err);
    assert_non_null(cc);
    /* json.dumps of the original: ", " and ": " separators, \u escapes for non-ASCII */
    char *tok = token_for(key_text, "{\"api_key\": \"k\\\"q\\\\\\u00fc\\ud83d\\ude00/x\", "
                                    "\"n\": 42, \"nested\": {\"a\": [1, \"}\"]}, \"b\": true, "
                                    "\"domain\": \"corp.okta.com\"}");
    assert_int_equal(creds_token_matches(cc, tok), 0);
    struct provider p = prov("api_key", tok, NULL);
    audited = 0;
    struct creds *c = creds_open(cc, &p, 77, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(audited, 1);
    assert_string_equal(audited_provider, "virustotal");
    assert_string_equal(get(c, "api_key"), "k\"q\\\xc3\xbc\xf0\x9f\x98\x80/x");
    assert_string_equal(get(c, "n"), "42");
    assert_string_equal(get(c, "b"), "true");
    assert_string_equal(get(c, "domain"), "corp.okta.com");
    assert_null(get(c, "missing"));
    /* the value lives inside the locked buffer */
    size_t n;
    const char *v = creds_get(c, "domain", &n);
    assert_non_null(v);
    creds_close(c);
    free(tok);
    creds_ctx_free(cc);
}

static void test_wrong_key_and_fallback(void **state)
{
    (void)state;
    char err[256], other[45];
    fernet_generate_key(other);
    struct settings *s = settings_load("/nonexistent/.env", err, sizeof err);
    assert_non_null(s);
    settings_set(s, "TEST_VT_KEY", "from-env");
    struct creds_ctx *cc = creds_ctx_new(key_text, s, on_audit, NULL, err, sizeof err);
    char *tok = token_for(other, "{\"api_key\": \"x\"}");
    assert_int_equal(creds_token_matches(cc, tok), -1);
    /* wrong key: no decryption, the env_var_mapping fallback applies */
    struct provider p = prov("api_key", tok, "{\"api_key\": \"TEST_VT_KEY\"}");
    audited = 0;
    struct creds *c = creds_open(cc, &p, 77, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(audited, 0);
    assert_string_equal(get(c, "api_key"), "from-env");
    creds_close(c);
    /* nothing at all: an error naming the provider */
    json_decref(p.env_var_mapping);
    p = prov("api_key", tok, "{\"api_key\": \"UNSET_VARIABLE_X\"}");
    assert_null(creds_open(cc, &p, 77, err, sizeof err));
    assert_non_null(strstr(err, "virustotal"));
    json_decref(p.env_var_mapping);
    /* no_auth needs nothing */
    p = prov("no_auth", NULL, NULL);
    c = creds_open(cc, &p, 77, err, sizeof err);
    assert_non_null(c);
    assert_null(get(c, "api_key"));
    creds_close(c);
    free(tok);
    creds_ctx_free(cc);
    settings_free(s);
}

static void test_malformed_plaintexts(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "[]",
                         "\"str\"",
                         "{",
                         "{\"a\"",
                         "{\"a\":",
                         "{\"a\": \"x",
                         "{\"a\": \"\\q\"}",
                         "{\"a\": \"\\u12\"}",
                         "{\"a\" \"b\"}",
                         "{,}",
                         "{}",
                         "null",
                         "{\"a\": \"\\"};
    /* lenient but harmless: a trailing comma, trailing bytes */
    const char *odd[] = {"{\"a\": 1,}", "{\"a\": \"b\"} trailing"};
    char err[256];
    struct creds_ctx *cc = creds_ctx_new(key_text, NULL, on_audit, NULL, err, sizeof err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *tok = token_for(key_text, bad[i]);
        struct provider p = prov("api_key", tok, NULL);
        assert_null(creds_open(cc, &p, 77, err, sizeof err));
        free(tok);
    }
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        char *tok = token_for(key_text, odd[i]);
        struct provider p = prov("api_key", tok, NULL);
        struct creds *c = creds_open(cc, &p, 77, err, sizeof err);
        assert_non_null(c);
        assert_non_null(get(c, "a"));
        creds_close(c);
        free(tok);
    }
    creds_ctx_free(cc);
}

int main(void)
{
    fernet_generate_key(key_text);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_errors),
        cmocka_unit_test(test_decrypt_and_parse),
        cmocka_unit_test(test_wrong_key_and_fallback),
        cmocka_unit_test(test_malformed_plaintexts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
