/*
 * tests/unit/services/enricher/ssrfcache.c - the per host:port cache of SSRF check results:
 * keys agree with the guard's own parse (and its pin), entries expire, the table is bounded,
 * blocked results stay blocked, a pin for another host:port is refused, nasty URLs are never
 * keyed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/providers/guard.h"
#include "services/enricher/ssrfcache.h"

static void test_key(void **state)
{
    (void)state;
    char k[300];
    assert_int_equal(ssrf_cache_key("https://www.VirusTotal.com/api/v3/ip/1.2.3.4", k, sizeof k),
                     0);
    assert_string_equal(k, "www.virustotal.com:443");
    assert_int_equal(ssrf_cache_key("HTTP://127.0.0.1:0080/x?y=1#z", k, sizeof k), 0);
    assert_string_equal(k, "127.0.0.1:80");
    assert_int_equal(ssrf_cache_key("http://user:pw@api.example.com:8443/", k, sizeof k), 0);
    assert_string_equal(k, "api.example.com:8443");
    /* not keyed: these always get the full check */
    const char *bad[] = {NULL,
                         "",
                         "ftp://example.com/",
                         "file:///etc/passwd",
                         "gopher://127.0.0.1:70/",
                         "http://[::1]:80/",
                         "http://[fd00:ec2::254]/",
                         "http://ex\xc3\xa4mple.com/",
                         "http://a b.com/",
                         "http://example.com:0/",
                         "http://example.com:65536/",
                         "not a url"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        strcpy(k, "junk");
        assert_int_equal(ssrf_cache_key(bad[i], k, sizeof k), -1);
        assert_string_equal(k, "");
    }
    /* curl reads "http:///x" as host "x", and so does the guard (same parser) */
    assert_int_equal(ssrf_cache_key("http:///path", k, sizeof k), 0);
    assert_string_equal(k, "path:80");
    char small[8];
    assert_int_equal(ssrf_cache_key("http://example.com/", small, sizeof small), -1);
}

/* The key of a URL the real guard allows is exactly the host:port its pin is written for. */
static void test_key_matches_guard(void **state)
{
    (void)state;
    struct guard *g = guard_new("", 1);
    const char *urls[] = {"http://127.0.0.1:8080/vt/x", "HTTP://127.0.0.1/a",
                          "https://127.1.2.3:0443/b", "http://2130706433:81/c", "http://8.8.8.8/"};
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        char pin[512], reason[256], k[300];
        assert_int_equal(guard_check(g, urls[i], pin, sizeof pin, reason, sizeof reason), 0);
        assert_int_equal(ssrf_cache_key(urls[i], k, sizeof k), 0);
        size_t kn = strlen(k);
        assert_true(strlen(pin) > kn + 1);
        assert_memory_equal(pin, k, kn);
        assert_int_equal(pin[kn], ':');
    }
    guard_free(g);
}

/* The remembered key of a URL is always the one the parser gives for that very URL, whatever
 * came before it (same origin, other paths; origins curl reads in surprising ways). */
static void test_key_memo(void **state)
{
    (void)state;
    struct ssrf_cache *c = ssrf_cache_new(4, 30000, 5000);
    const char *urls[] = {"https://www.VirusTotal.com/api/v3/ip/1.2.3.4",
                          "https://www.VirusTotal.com/api/v3/ip/5.6.7.8",
                          "https://www.VirusTotal.com?x=1",
                          "https://www.virustotal.com:8443/a",
                          "HTTP://127.0.0.1:0080/x?y=1#z",
                          "http://127.0.0.1:0080#z",
                          "http://user:pw@api.example.com:8443/",
                          "http://user:pw@other.example.com:8443/",
                          "http:///path",
                          "http:///other",
                          "http://example.com:0/",
                          "http://example.com:65536/",
                          "http://a b.com/",
                          "http://a.com\\@b.com/",
                          "http://a.com\\@c.com/",
                          "ftp://example.com/",
                          "http://[::1]:80/",
                          "http://2130706433:81/c",
                          "http://2130706433:81/d",
                          "not a url",
                          ""};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
            char want[300], got[300];
            int rw = ssrf_cache_key(urls[i], want, sizeof want);
            int rg = ssrf_cache_key_of(c, urls[i], got, sizeof got);
            assert_int_equal(rg, rw);
            if (rw == 0)
                assert_string_equal(got, want);
        }
    char small[8];
    assert_int_equal(ssrf_cache_key_of(c, "https://www.VirusTotal.com/x", small, sizeof small), -1);
    ssrf_cache_free(c);
}

static void test_expiry_and_blocked(void **state)
{
    (void)state;
    struct ssrf_cache *c = ssrf_cache_new(8, 30000, 5000);
    char pin[512], reason[256];
    assert_int_equal(ssrf_cache_get(c, "a.example:443", 1000, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_MISS);
    assert_int_equal(ssrf_cache_put(c, "a.example:443", 1000, 0, "a.example:443:93.184.216.34",
                                    NULL),
                     1);
    assert_int_equal(ssrf_cache_get(c, "a.example:443", 30999, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_ALLOWED);
    assert_string_equal(pin, "a.example:443:93.184.216.34");
    /* another port is another entry */
    assert_int_equal(ssrf_cache_get(c, "a.example:80", 2000, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_MISS);
    /* expired after the TTL */
    assert_int_equal(ssrf_cache_get(c, "a.example:443", 31000, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_MISS);
    assert_int_equal(ssrf_cache_count(c, 31000), 0);

    /* a blocked result comes back blocked with its reason, for its own (shorter) TTL */
    assert_int_equal(ssrf_cache_put(c, "169.254.169.254:80", 40000, 1, NULL,
                                    "169.254.169.254 is a cloud metadata endpoint"),
                     1);
    strcpy(pin, "junk");
    assert_int_equal(ssrf_cache_get(c, "169.254.169.254:80", 44999, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_BLOCKED);
    assert_string_equal(reason, "169.254.169.254 is a cloud metadata endpoint");
    assert_string_equal(pin, "junk"); /* no pin handed out for a blocked host */
    assert_int_equal(ssrf_cache_get(c, "169.254.169.254:80", 45000, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_MISS); /* expired: the full check runs (and blocks) again */

    /* an allowed result never carries a pin for another host or port */
    assert_int_equal(ssrf_cache_put(c, "b.example:443", 50000, 0, "169.254.169.254:80:1.2.3.4",
                                    NULL),
                     0);
    assert_int_equal(ssrf_cache_put(c, "b.example:443", 50000, 0, "b.example:4430:1.2.3.4", NULL),
                     0);
    assert_int_equal(ssrf_cache_put(c, "b.example:443", 50000, 0, "b.example:443:", NULL), 0);
    assert_int_equal(ssrf_cache_put(c, "b.example:443", 50000, 0, "", NULL), 0);
    assert_int_equal(ssrf_cache_put(c, "b.example:443", 50000, 0, NULL, NULL), 0);
    assert_int_equal(ssrf_cache_put(c, "", 50000, 1, NULL, "x"), 0);
    /* an address literal resolves nothing: allowed with no pin, a pin for another host not */
    assert_int_equal(ssrf_cache_put(c, "127.0.0.1:8080", 50000, 0, "", NULL), 1);
    assert_int_equal(ssrf_cache_get(c, "127.0.0.1:8080", 50000, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_ALLOWED);
    assert_string_equal(pin, "");
    assert_int_equal(ssrf_cache_put(c, "127.0.0.1:8081", 50000, 0, "b.example:443:1.2.3.4", NULL),
                     0);
    assert_int_equal(ssrf_cache_put(c, "127.0.0.1:8082", 50000, 0, NULL, NULL), 0);
    assert_int_equal(ssrf_cache_put(c, "127.0.0.1x:8082", 50000, 0, "", NULL), 0);
    assert_int_equal(ssrf_cache_get(c, "b.example:443", 50000, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_MISS);
    assert_int_equal(ssrf_cache_get(c, "", 50000, pin, sizeof pin, reason, sizeof reason),
                     SSRF_CACHE_MISS);

    /* a later blocked result replaces an allowed one at once */
    assert_int_equal(ssrf_cache_put(c, "c.example:443", 60000, 0, "c.example:443:1.2.3.4", NULL),
                     1);
    assert_int_equal(ssrf_cache_put(c, "c.example:443", 60001, 1, NULL, "DNS resolution failed"),
                     1);
    assert_int_equal(ssrf_cache_get(c, "c.example:443", 60002, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_BLOCKED);
    assert_int_equal(ssrf_cache_count(c, 60002), 2); /* and the address literal's */

    /* a pin that does not fit the caller's buffer is a miss, not a truncated pin */
    char tiny[8];
    assert_int_equal(ssrf_cache_put(c, "d.example:443", 60000, 0, "d.example:443:1.2.3.4", NULL),
                     1);
    assert_int_equal(ssrf_cache_get(c, "d.example:443", 60001, tiny, sizeof tiny, reason,
                                     sizeof reason),
                     SSRF_CACHE_MISS);
    ssrf_cache_free(c);
    ssrf_cache_free(NULL);
}

static void test_size_bound(void **state)
{
    (void)state;
    struct ssrf_cache *c = ssrf_cache_new(4, 30000, 5000);
    char key[64], want[96], pin[512], reason[256];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "h%d.example:443", i);
        snprintf(want, sizeof want, "%s:1.2.3.%d", key, i % 250);
        assert_int_equal(ssrf_cache_put(c, key, 1000 + (uint64_t)i, 0, want, NULL), 1);
        assert_true(ssrf_cache_count(c, 1000 + (uint64_t)i) <= 4);
    }
    assert_int_equal(ssrf_cache_count(c, 1100), 4);
    /* the four newest are kept, the oldest were evicted */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "h%d.example:443", i);
        snprintf(want, sizeof want, "%s:1.2.3.%d", key, i % 250);
        enum ssrf_cache_hit h =
            ssrf_cache_get(c, key, 1100, pin, sizeof pin, reason, sizeof reason);
        if (i >= 96) {
            assert_int_equal(h, SSRF_CACHE_ALLOWED);
            assert_string_equal(pin, want);
        } else {
            assert_int_equal(h, SSRF_CACHE_MISS);
        }
    }
    /* re-storing a key updates its entry instead of taking a second slot */
    assert_int_equal(ssrf_cache_put(c, "h99.example:443", 1200, 0, "h99.example:443:9.9.9.9",
                                    NULL),
                     1);
    assert_int_equal(ssrf_cache_count(c, 1200), 4);
    assert_int_equal(ssrf_cache_get(c, "h99.example:443", 1200, pin, sizeof pin, reason,
                                     sizeof reason),
                     SSRF_CACHE_ALLOWED);
    assert_string_equal(pin, "h99.example:443:9.9.9.9");
    /* a one-entry cache still works */
    struct ssrf_cache *one = ssrf_cache_new(0, 1000, 1000);
    assert_int_equal(ssrf_cache_put(one, "x:1", 5, 0, "x:1:1.1.1.1", NULL), 1);
    assert_int_equal(ssrf_cache_put(one, "y:1", 6, 0, "y:1:1.1.1.1", NULL), 1);
    assert_int_equal(ssrf_cache_count(one, 6), 1);
    assert_int_equal(ssrf_cache_get(one, "x:1", 6, pin, sizeof pin, reason, sizeof reason),
                     SSRF_CACHE_MISS);
    ssrf_cache_free(one);
    ssrf_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_key_matches_guard),
        cmocka_unit_test(test_key_memo),
        cmocka_unit_test(test_expiry_and_blocked),
        cmocka_unit_test(test_size_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
