/*
 * tests/unit/services/enricher/template.c - {{...}} rendering: namespaces, url mode, the
 * urlencode filter, unknown namespaces, missing values, broken braces, hostile input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "services/enricher/template.h"
#include "util.h"

static const char *fake_auth(void *arg, const char *field, size_t *len)
{
    (void)arg;
    if (!strcmp(field, "api_key")) {
        *len = 6;
        return "k3y/+=XXXX"; /* only the first 6 bytes count */
    }
    if (!strcmp(field, "domain")) {
        *len = strlen("corp.okta.com");
        return "corp.okta.com";
    }
    return NULL;
}

static char *render(const char *tpl, int url_mode)
{
    json_t *steps = json_loads("{\"user_lookup\":{\"response\":{\"id\":\"00u1 x\",\"n\":42,"
                               "\"b\":true,\"list\":[{\"a\":\"first\"}],\"nul\":null}}}",
                               0, NULL);
    struct tpl_ctx ctx = {"account", "j.doe@ex ample.com", fake_auth, NULL, steps};
    char *s = template_render(tpl, &ctx, url_mode);
    json_decref(steps);
    return s;
}

#define EXPECT(tpl, mode, want)                                                                    \
    do {                                                                                           \
        char *got_ = render(tpl, mode);                                                            \
        assert_string_equal(got_, want);                                                           \
        free(got_);                                                                                \
    } while (0)

static void test_namespaces(void **state)
{
    (void)state;
    EXPECT("{{indicator.value}}", 0, "j.doe@ex ample.com");
    EXPECT("{{ value }}|{{type}}", 0, "j.doe@ex ample.com|account");
    EXPECT("{{indicator.type}}", 0, "account");
    EXPECT("x-apikey {{auth.api_key}}", 0, "x-apikey k3y/+=");
    EXPECT("{{steps.user_lookup.response.id}}", 0, "00u1 x");
    EXPECT("{{steps.user_lookup.response.n}}", 0, "42");
    EXPECT("{{steps.user_lookup.response.b}}", 0, "True");
    EXPECT("{{steps.user_lookup.response.list.0.a}}", 0, "first");
}

static void test_missing_and_unknown(void **state)
{
    (void)state;
    EXPECT("a{{auth.nope}}b", 0, "ab");
    EXPECT("a{{steps.user_lookup.response.nul}}b", 0, "ab");
    EXPECT("a{{steps.other.response.id}}b", 0, "ab");
    EXPECT("a{{indicator.colour}}b", 0, "ab");
    EXPECT("{{env.HOME}}", 0, "{{env.HOME}}");
    EXPECT("{{ secrets.x | urlencode }}", 1, "{{ secrets.x | urlencode }}");
}

static void test_url_mode_and_filter(void **state)
{
    (void)state;
    EXPECT("https://h/api/v1/users/{{indicator.value}}", 1,
           "https://h/api/v1/users/j.doe%40ex%20ample.com");
    EXPECT("{{value | urlencode}}", 0, "j.doe%40ex%20ample.com");
    EXPECT("{{auth.api_key|urlencode}}", 0, "k3y%2F%2B%3D");
    /* url mode encodes every value once, filter or not (the original's base_url problem) */
    EXPECT("https://{{auth.domain}}/x", 1, "https://corp.okta.com/x");
    EXPECT("{{steps.user_lookup.response.id | urlencode}}", 1, "00u1%20x");
}

static void test_braces(void **state)
{
    (void)state;
    EXPECT("", 0, "");
    EXPECT("no templates", 0, "no templates");
    EXPECT("{{", 0, "{{");
    EXPECT("{{}}", 0, "{{}}");
    EXPECT("{{value}", 0, "{{value}");
    EXPECT("{{{value}}", 0, "{{{value}}"); /* expression "{value": unknown, verbatim */
    EXPECT("{{value}}}", 0, "j.doe@ex ample.com}");
    EXPECT("{{va}lue}}", 0, "{{va}lue}}");
    EXPECT("{{ {{value}} }}", 0, "{{ {{value}} }}");
}

static void test_hostile(void **state)
{
    (void)state;
    /* a long run of openers and a huge template do not blow up */
    size_t n = 200000;
    char *t = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        t[i] = (i % 3 == 2) ? 'x' : '{';
    t[n] = 0;
    char *s = render(t, 1);
    assert_int_equal(strlen(s), n);
    free(s);
    free(t);
    /* non-ASCII bytes are percent-encoded byte by byte */
    json_t *steps = json_object();
    struct tpl_ctx ctx = {"domain", "b\xc3\xbc\x63her.de", NULL, NULL, steps};
    s = template_render("{{value}}", &ctx, 1);
    assert_string_equal(s, "b%C3%BCcher.de");
    free_wiped(s);
    /* no auth callback: auth values are missing */
    s = template_render("[{{auth.api_key}}]", &ctx, 0);
    assert_string_equal(s, "[]");
    free_wiped(s);
    json_decref(steps);
}

static void test_render_json(void **state)
{
    (void)state;
    json_t *body = json_loads("{\"q\":\"{{value}}\",\"n\":5,\"l\":[\"{{type}}\",null]}", 0, NULL);
    struct tpl_ctx ctx = {"ip", "1.2.3.4", NULL, NULL, NULL};
    json_t *r = template_render_json(body, &ctx);
    char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"l\":[\"ip\",null],\"n\":5,\"q\":\"1.2.3.4\"}");
    free(s);
    json_decref(r);
    json_decref(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_missing_and_unknown),
        cmocka_unit_test(test_url_mode_and_filter),
        cmocka_unit_test(test_braces),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_render_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
