/*
 * tests/unit/libcommon/bus/run_request.c - RUN requests built from a claim document: secrets
 * decrypted into locked memory (undecryptable ones skipped), integration credentials only for a
 * system workflow's own integration, contexts passed through, and everything cleared by
 * run_request_destroy().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "libcommon/bus/run_request.h"
#include "libcommon/config/settings.h"
#include "libcommon/crypto/secmem.h"

#define KEY "cCj_dyHnvazlGSGBeRS37Ef-NJvMZOXFDCLZXH-wTa0="

static json_t *claim(const struct fernet_key *k, int is_system, const char *integration)
{
    char *tok = NULL;
    assert_int_equal(fernet_encrypt(k, "s3cret-value", 12, &tok), 0);
    json_t *doc = json_pack("{s:s,s:{s:s},s:{s:s,s:s},s:n,s:{s:s,s:s},s:b,s:s?}", "code",
                            "async def run(ctx): pass", "trigger_context", "trigger_source",
                            "api", "indicator", "type", "ip", "value", "198.51.100.7", "alert",
                            "secrets", "API_TOKEN", tok, "BROKEN", "not-a-token", "is_system",
                            is_system, "integration", integration);
    free(tok);
    return doc;
}

static struct settings *okta_settings(void)
{
    struct settings *s = settings_new();
    settings_set(s, "OKTA_DOMAIN", "acme.okta.com");
    settings_set(s, "OKTA_API_TOKEN", "okta-token-1");
    settings_set(s, "ENTRA_TENANT_ID", "t");
    return s;
}

static void test_secrets_and_contexts(void **state)
{
    (void)state;
    struct fernet_key k;
    assert_int_equal(fernet_key_parse(KEY, &k), 0);
    struct settings *s = okta_settings();
    json_t *doc = claim(&k, 0, "okta");
    struct runner_run_req r;
    run_request_init(&r, doc, "6f1c1a53-8d0e-4c9a-9b7e-0d7d2f0f6a11", 30, &k, s);
    assert_string_equal(r.run_uuid, "6f1c1a53-8d0e-4c9a-9b7e-0d7d2f0f6a11");
    assert_int_equal(r.timeout_seconds, 30);
    assert_non_null(strstr(r.indicator_json, "198.51.100.7"));
    assert_null(r.alert_json); /* null context: none */
    assert_non_null(strstr(r.trigger_context_json, "\"api\""));
    assert_int_equal(r.nsecrets, 1); /* BROKEN is skipped */
    assert_string_equal(r.secrets[0].name, "API_TOKEN");
    assert_string_equal(r.secrets[0].value, "s3cret-value");
    assert_true(secmem_size(r.secrets[0].value) >= 13); /* in a secmem region */
    assert_null(r.integrations_json); /* a user workflow never gets integration credentials */
    run_request_destroy(&r);
    assert_null(r.secrets);
    assert_int_equal(r.nsecrets, 0);
    json_decref(doc);

    /* without a key, no secret at all */
    doc = claim(&k, 0, NULL);
    run_request_init(&r, doc, "6f1c1a53-8d0e-4c9a-9b7e-0d7d2f0f6a11", 30, NULL, s);
    assert_int_equal(r.nsecrets, 0);
    run_request_destroy(&r);
    json_decref(doc);
    settings_free(s);
}

static void test_system_integrations(void **state)
{
    (void)state;
    struct fernet_key k;
    assert_int_equal(fernet_key_parse(KEY, &k), 0);
    struct settings *s = okta_settings();
    json_t *doc = claim(&k, 1, "okta");
    struct runner_run_req r;
    run_request_init(&r, doc, "6f1c1a53-8d0e-4c9a-9b7e-0d7d2f0f6a11", 30, &k, s);
    assert_non_null(r.integrations_json);
    assert_non_null(strstr(r.integrations_json, "okta-token-1"));
    assert_null(strstr(r.integrations_json, "entra"));
    run_request_destroy(&r);
    json_decref(doc);
    /* Entra is not fully configured: an empty object, the workflow then fails by itself */
    doc = claim(&k, 1, "entra");
    run_request_init(&r, doc, "6f1c1a53-8d0e-4c9a-9b7e-0d7d2f0f6a11", 30, &k, s);
    assert_string_equal(r.integrations_json, "{}");
    run_request_destroy(&r);
    json_decref(doc);
    settings_free(s);
}

static void test_result_json(void **state)
{
    (void)state;
    struct runner_result res = {.status = RUNNER_SUCCESS, .success = 1, .message = "done",
                                .data_json = "{\"n\":1}"};
    json_t *j = run_result_json(&res);
    assert_true(json_is_true(json_object_get(j, "success")));
    assert_string_equal(json_string_value(json_object_get(j, "message")), "done");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "data"), "n")), 1);
    json_decref(j);
    res.data_json = "[1]"; /* not an object: {} */
    res.message = NULL;
    j = run_result_json(&res);
    assert_int_equal(json_object_size(json_object_get(j, "data")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "message")), "");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secrets_and_contexts),
        cmocka_unit_test(test_system_integrations),
        cmocka_unit_test(test_result_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
