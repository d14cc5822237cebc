/*
 * config.c - tests for libcommon/config/config.c: the database URL built from the compose-style
 * POSTGRES_* settings, and DATABASE_URL winning over them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "config.h"
#include "settings.h"

#include <stdlib.h>
#include <string.h>

static char *url_for(const char *const *kv)
{
    struct settings *s = settings_new();
    for (; *kv; kv += 2)
        settings_set(s, kv[0], kv[1]);
    struct config c;
    char err[256];
    assert_int_equal(config_from_settings(&c, s, err, sizeof err), 0);
    char *url = strdup(c.database_url);
    config_destroy(&c);
    return url;
}

static void test_url_from_parts_is_percent_encoded(void **state)
{
    (void)state;
    const char *kv[] = {"POSTGRES_HOST", "db", "POSTGRES_PASSWORD", "p@ss:w/rd#%?&x y", NULL};
    char *url = url_for(kv);
    assert_string_equal(url, "postgresql://calseta:p%40ss%3Aw%2Frd%23%25%3F%26x%20y@db:5432/calseta");
    free(url);
}

static void test_every_part_used(void **state)
{
    (void)state;
    const char *kv[] = {"POSTGRES_HOST", "pg.internal", "POSTGRES_PORT", "6543", "POSTGRES_USER",
                        "ops", "POSTGRES_PASSWORD", "s", "POSTGRES_DB", "sec", NULL};
    char *url = url_for(kv);
    assert_string_equal(url, "postgresql://ops:s@pg.internal:6543/sec");
    free(url);
}

static void test_database_url_wins(void **state)
{
    (void)state;
    const char *kv[] = {"DATABASE_URL", "postgresql+asyncpg://a:b@h/d", "POSTGRES_HOST", "db",
                        "POSTGRES_PASSWORD", "x", NULL};
    char *url = url_for(kv);
    assert_string_equal(url, "postgresql://a:b@h/d");
    free(url);
}

static void test_no_host_no_url(void **state)
{
    (void)state;
    const char *kv[] = {"POSTGRES_PASSWORD", "x", NULL};
    char *url = url_for(kv);
    assert_string_equal(url, "");
    free(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_from_parts_is_percent_encoded),
        cmocka_unit_test(test_every_part_used),
        cmocka_unit_test(test_database_url_wins),
        cmocka_unit_test(test_no_host_no_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
