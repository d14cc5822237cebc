/*
 * tests/unit/services/enricher/step.c - requests built from http_config steps (URL templates by
 * type, query parameters, headers without CR/LF injection, JSON and form bodies) and hostile
 * provider response bodies (invalid JSON, NUL escapes, invalid UTF-8, deep nesting, huge
 * numbers), plus the per-provider limiter and the in-process cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "services/enricher/cache.h"
#include "services/enricher/limiter.h"
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

static void test_build_query_and_bodies(void **state)
{
    (void)state;
    json_t *cfg = json_loads(
        "{\"steps\":[{\"name\":\"check\",\"method\":\"get\",\"url\":\"https://a/api/v2/check\","
        "\"query_params\":{\"ipAddress\":\"{{indicator.value}}\",\"maxAgeInDays\":\"90\"}},"
        "{\"name\":\"token\",\"method\":\"POST\",\"url\":\"https://l/{{auth.tenant}}/t\","
        "\"form_body\":{\"scope\":\"https://graph/.default x\",\"grant_type\":\"client_credentials\"}},"
        "{\"name\":\"j\",\"method\":\"put\",\"url\":\"https://a/x?y=1\",\"query_params\":{\"k\":\"v&w\"},"
        "\"json_body\":{\"v\":\"{{value}}\"},\"form_body\":{\"ignored\":\"1\"}}]}",
        0, NULL);
    struct tpl_ctx ctx = {"ip", "2001:db8::1", NULL, NULL, NULL};
    struct step_req r;
    char err[128];
    assert_int_equal(step_build(cfg, 0, &ctx, 30, &r, err, sizeof err), 0);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.url, "https://a/api/v2/check?ipAddress=2001%3Adb8%3A%3A1&maxAgeInDays=90");
    step_req_wipe(&r);
    assert_int_equal(step_build(cfg, 1, &ctx, 30, &r, err, sizeof err), 0);
    assert_string_equal(r.url, "https://l//t");
    assert_string_equal(r.body, "scope=https%3A%2F%2Fgraph%2F.default+x&grant_type=client_credentials");
    assert_string_equal(r.headers->data, "Content-Type: application/x-www-form-urlencoded");
    step_req_wipe(&r);
    assert_int_equal(step_build(cfg, 2, &ctx, 30, &r, err, sizeof err), 0);
    assert_string_equal(r.method, "PUT");
    assert_string_equal(r.url, "https://a/x?y=1&k=v%26w");
    assert_string_equal(r.body, "{\"v\":\"2001:db8::1\"}");
    step_req_wipe(&r);
    json_decref(cfg);
}

static void expect_raw_text(const char *data, size_t len, const char *want)
{
    json_t *v = body_parse(data, len);
    json_t *t = json_object_get(v, "_raw_text");
    assert_non_null(t);
    assert_string_equal(json_string_value(t), want);
    json_decref(v);
}

static void test_hostile_bodies(void **state)
{
    (void)state;
    json_t *v = body_parse("{\"a\":1,\"a\":2}", 13);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 2); /* last wins, as Python */
    json_decref(v);
    expect_raw_text("", 0, "");
    expect_raw_text("<html>nope</html>", 17, "<html>nope</html>");
    expect_raw_text("{\"a\":\"\\u0000\"}", 14, "{\"a\":\"\\u0000\"}"); /* jsonb refuses NUL */
    expect_raw_text("ab\0cd", 5, "abcd");
    expect_raw_text("x\xff\xfey", 4, "x\xef\xbf\xbd\xef\xbf\xbdy");
    expect_raw_text("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
    expect_raw_text("\xc3", 1, "\xef\xbf\xbd");                                /* truncated */
    expect_raw_text("{\"n\":123456789012345678901234567890}", 36,
                    "{\"n\":123456789012345678901234567890}");
    /* deep nesting: refused by the parser's depth limit, kept as text (first 2000 chars) */
    size_t n = 100000;
    char *deep = malloc(n);
    memset(deep, '[', n);
    v = body_parse(deep, n);
    assert_int_equal(json_string_length(json_object_get(v, "_raw_text")), 2000);
    json_decref(v);
    free(deep);
}

static void test_result(void **state)
{
    (void)state;
    json_t *r = result_new("virustotal", "failed", NULL, NULL, "bad \xff byte");
    assert_false(json_is_true(json_object_get(r, "success")));
    assert_string_equal(json_string_value(json_object_get(r, "error_message")),
                        "bad \xef\xbf\xbd byte");
    assert_non_null(json_string_value(json_object_get(r, "enriched_at")));
    assert_true(json_is_null(json_object_get(r, "raw")));
    json_decref(r);
    r = result_new("x", "success", json_object(), json_array(), NULL);
    assert_true(json_is_true(json_object_get(r, "success")));
    assert_true(json_is_null(json_object_get(r, "error_message")));
    json_decref(r);
}

static void test_limiter(void **state)
{
    (void)state;
    struct limiter *head = NULL;
    struct limiter *l = limiter_get(&head, "vt", 2, 4.0, 1000);
    assert_true(limiter_try(l, 1000));
    assert_true(limiter_try(l, 1000));
    assert_false(limiter_try(l, 1000)); /* two in flight */
    limiter_release(l);
    limiter_release(l);
    assert_true(limiter_try(l, 1000));
    assert_true(limiter_try(l, 1000));
    limiter_release(l);
    limiter_release(l);
    assert_false(limiter_try(l, 1000)); /* bucket of 4 is empty */
    assert_int_equal(limiter_wait_ms(l, 1000), 250);
    assert_true(limiter_try(l, 1250));
    limiter_release(l);
    assert_ptr_equal(limiter_get(&head, "vt", 1, 0.5, 5000), l); /* same provider, new caps */
    assert_true(limiter_try(l, 5000));
    limiter_release(l);
    assert_false(limiter_try(l, 5000));
    assert_int_equal(limiter_wait_ms(l, 5000), 2000);
    assert_ptr_not_equal(limiter_get(&head, "abuseipdb", 1, 1, 0), l);
    limiter_free_all(&head);
    assert_null(head);
}

static void test_cache(void **state)
{
    (void)state;
    struct cache *c = cache_new(3, 1000);
    json_t *a = json_string("a"), *b = json_string("b");
    cache_put(c, "vt", "ip", "1.1.1.1", a, 10, 0, 1000);
    cache_put(c, "vt", "ip", "1.1.1.1", b, 10, 0, 1000); /* replaces */
    cache_put(c, "vt", "ip", "2.2.2.2", a, 10, 0, 0);    /* ttl 0: not stored */
    cache_put(c, "vt", "ip", "3.3.3.3", a, 251, 0, 1000); /* over a quarter of the bytes */
    assert_int_equal(cache_size(c), 1);
    json_t *g = cache_get(c, "vt", "ip", "1.1.1.1", 999);
    assert_ptr_equal(g, b);
    json_decref(g);
    assert_null(cache_get(c, "vt", "ip", "1.1.1.1", 1000)); /* expired */
    assert_null(cache_get(c, "vt", "domain", "1.1.1.1", 0));
    for (int i = 0; i < 10; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        cache_put(c, "p", "ip", v, a, 10, 0, 100000);
    }
    assert_int_equal(cache_size(c), 3); /* bounded, oldest gone */
    cache_put(c, "p", "ip", "big1", a, 250, 0, 100000);
    cache_put(c, "p", "ip", "big2", a, 250, 0, 100000);
    cache_put(c, "p", "ip", "big3", a, 250, 0, 100000);
    cache_put(c, "p", "ip", "big4", a, 250, 0, 100000);
    assert_int_equal(cache_size(c), 3); /* 750 + 10s would pass 1000 bytes: oldest went */
    assert_null(cache_get(c, "p", "ip", "big1", 1));
    assert_null(cache_get(c, "p", "ip", "v0", 1));
    g = cache_get(c, "p", "ip", "big4", 1);
    assert_non_null(g);
    json_decref(g);
    cache_clear(c);
    assert_int_equal(cache_size(c), 0);
    cache_free(c);
    json_decref(a);
    json_decref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_vt),  cmocka_unit_test(test_build_query_and_bodies),
        cmocka_unit_test(test_hostile_bodies), cmocka_unit_test(test_result),
        cmocka_unit_test(test_limiter),   cmocka_unit_test(test_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
