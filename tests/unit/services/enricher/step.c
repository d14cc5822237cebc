/*
 * tests/unit/services/enricher/step.c - requests built from http_config steps (URL templates by
 * type, query parameters, headers without CR/LF injection, JSON and form bodies).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "services/enricher/step.h"

static const char *auth(void *arg, const char *field, size_t *len)
{
    (void)arg;
    if (strcmp(field, "api_key"))
        return NULL;
    *len = 9;
    return "SECRET\r\nX";
}

static void test_build_vt(void **state)
{
    (void)state;
    json_t *cfg = json_loads(
        "{\"url_templates_by_type\":{\"domain\":\"https://vt/api/v3/domains/{{indicator.value}}\"},"
        "\"steps\":[{\"url\":\"https://vt/api/v3/ip_addresses/{{indicator.value}}\","
        "\"headers\":{\"x-apikey\":\"{{auth.api_key}}\",\"Bad Name\":\"x\",\"Empty\":\"\"},"
        "\"not_found_status\":[404],\"timeout_seconds\":2.5}]}",
        0, NULL);
    struct tpl_ctx ctx = {"domain", "a b.com", auth, NULL, NULL};
    struct step_req r;
    char err[128];
    assert_int_equal(step_build(cfg, 0, &ctx, 30, &r, err, sizeof err), 0);
    assert_string_equal(r.name, "step_0");
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.url, "https://vt/api/v3/domains/a%20b.com");
    assert_int_equal(r.timeout_s, 3);
    assert_non_null(r.headers);
    assert_string_equal(r.headers->data, "x-apikey: SECRET  X"); /* no header injection */
    assert_string_equal(r.headers->next->data, "Empty;");
    assert_null(r.headers->next->next);
    assert_true(status_listed(r.not_found, 404));
    assert_false(status_listed(r.expected, 200));
    assert_null(r.body);
    step_req_wipe(&r);
    /* step 1 does not exist */
    assert_int_equal(step_build(cfg, 1, &ctx, 30, &r, err, sizeof err), -1);
    step_req_wipe(&r);
    json_decref(cfg);
}

/* Names and methods are kept without allocating: a named step's name is the step's own, an
 * over-long method is refused; header values that are not strings are their JSON text. */
static void test_names_methods_values(void **state)
{
    (void)state;
    json_t *cfg =
        json_loads("{\"steps\":[{\"name\":\"lookup\",\"method\":\"purge\",\"url\":\"http://h/\","
                   "\"headers\":{\"X-N\":42,\"X-B\":true}},"
                   "{\"method\":\"abcdefghijklmnopqrstuvwxyzabcdefg\",\"url\":\"http://h/\"}]}",
                   0, NULL);
    struct tpl_ctx ctx = {"ip", "1.2.3.4", auth, NULL, NULL};
    struct step_req r;
    char err[128];
    assert_int_equal(step_build(cfg, 0, &ctx, 30, &r, err, sizeof err), 0);
    assert_string_equal(r.name, "lookup");
    assert_string_equal(r.method, "PURGE");
    assert_string_equal(r.headers->data, "X-N: 42");
    assert_string_equal(r.headers->next->data, "X-B: true");
    step_req_wipe(&r);
    assert_int_equal(step_build(cfg, 1, &ctx, 30, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "method longer than 31"));
    step_req_wipe(&r);
    json_decref(cfg);
}

static void test_build_query_and_bodies(void **state)
{
    (void)state;
    json_t *cfg = json_loads(
        "{\"steps\":[{\"name\":\"check\",\"method\":\"get\",\"url\":\"https://a/api/v2/check\","
        "\"query_params\":{\"ipAddress\":\"{{indicator.value}}\",\"maxAgeInDays\":\"90\"}},"
        "{\"name\":\"token\",\"method\":\"POST\",\"url\":\"https://l/{{auth.tenant}}/t\","
        "\"form_body\":{\"scope\":\"https://graph/.default "
        "x\",\"grant_type\":\"client_credentials\"}},"
        "{\"name\":\"j\",\"method\":\"put\",\"url\":\"https://a/"
        "x?y=1\",\"query_params\":{\"k\":\"v&w\"},"
        "\"json_body\":{\"v\":\"{{value}}\"},\"form_body\":{\"ignored\":\"1\"}}]}",
        0, NULL);
    struct tpl_ctx ctx = {"ip", "2001:db8::1", NULL, NULL, NULL};
    struct step_req r;
    char err[128];
    assert_int_equal(step_build(cfg, 0, &ctx, 30, &r, err, sizeof err), 0);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.url,
                        "https://a/api/v2/check?ipAddress=2001%3Adb8%3A%3A1&maxAgeInDays=90");
    step_req_wipe(&r);
    assert_int_equal(step_build(cfg, 1, &ctx, 30, &r, err, sizeof err), 0);
    assert_string_equal(r.url, "https://l//t");
    assert_string_equal(r.body,
                        "scope=https%3A%2F%2Fgraph%2F.default+x&grant_type=client_credentials");
    assert_string_equal(r.headers->data, "Content-Type: application/x-www-form-urlencoded");
    step_req_wipe(&r);
    assert_int_equal(step_build(cfg, 2, &ctx, 30, &r, err, sizeof err), 0);
    assert_string_equal(r.method, "PUT");
    assert_string_equal(r.url, "https://a/x?y=1&k=v%26w");
    assert_string_equal(r.body, "{\"v\":\"2001:db8::1\"}");
    step_req_wipe(&r);
    json_decref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_vt),
        cmocka_unit_test(test_build_query_and_bodies),
        cmocka_unit_test(test_names_methods_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
