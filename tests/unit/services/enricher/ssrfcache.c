/*
 * tests/unit/services/enricher/ssrfcache.c - the per host:port cache of SSRF check results:
 * keys agree with the guard's own parse (and its target), entries expire, the table is
 * bounded, blocked results stay blocked, a target for another host:port is refused, nasty URLs
 * are never keyed; names, IPv4 and IPv6 literals carry their checked target through the cache.
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
#include "libcommon/ssrf/ssrf.h"
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
    assert_int_equal(ssrf_cache_key("http://[::1]:8080/x", k, sizeof k), 0);
    assert_string_equal(k, "[::1]:8080");
    assert_int_equal(ssrf_cache_key("https://[FD00:EC2::254]/", k, sizeof k), 0);
    assert_string_equal(k, "[fd00:ec2::254]:443");
    /* not keyed: these always get the full check */
    const char *bad[] = {NULL,
                         "",
                         "ftp://example.com/",
                         "file:///etc/passwd",
                         "gopher://127.0.0.1:70/",
                         "http://[::1/",
                         "http://[::g]/",
                         "http://[fe80::1%25eth0]/",
                         "http://[fd12::1%25eth0]:8080/",
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

/* A target as the guard builds it for url (which it must allow). */
static struct ssrf_target checked(struct guard *g, const char *url)
{
    struct ssrf_target t;
    char reason[256];
    assert_int_equal(guard_check(g, url, &t, reason, sizeof reason), 0);
    return t;
}

/* The key of a URL the real guard allows is exactly the host:port its target is written for,
 * and the cache takes that target under that key. */
static void test_key_matches_guard(void **state)
{
    (void)state;
    struct guard *g = guard_new("", 1);
    struct ssrf_cache *c = ssrf_cache_new(16, 30000, 5000);
    const char *urls[] = {
        "http://127.0.0.1:8080/vt/x", "HTTP://127.0.0.1/a", "https://127.1.2.3:0443/b",
        "http://2130706433:81/c",     "http://8.8.8.8/",    "http://[::1]:8081/d",
        "http://[0:0::1]:8082/e"};
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++) {
        char reason[256], k[300];
        struct ssrf_target t = checked(g, urls[i]), got;
        assert_int_equal(ssrf_cache_key(urls[i], k, sizeof k), 0);
        size_t kn = strlen(k);
        if (k[0] == '[') {
            assert_string_equal(t.connect_to, "");
        } else {
            assert_true(strlen(t.connect_to) > kn + 1);
            assert_memory_equal(t.connect_to, k, kn);
            assert_int_equal(t.connect_to[kn], ':');
        }
        assert_int_equal(ssrf_cache_put(c, k, 1000, 0, &t, NULL), 1);
        assert_int_equal(ssrf_cache_get(c, k, 1001, &got, reason, sizeof reason),
                         SSRF_CACHE_ALLOWED);
        assert_string_equal(got.connect_to, t.connect_to);
        assert_string_equal(got.addr, t.addr);
        assert_int_equal(got.port, t.port);
    }
    /* a blocked URL gives no target */
    struct ssrf_target t;
    char reason[256];
    memset(&t, 'x', sizeof t);
    assert_int_equal(guard_check(g, "http://169.254.169.254/", &t, reason, sizeof reason), -1);
    assert_string_equal(t.addr, "");
    assert_string_equal(t.connect_to, "");
    assert_int_equal(guard_check(g, "http://[::1]:1/", NULL, reason, sizeof reason), 0);
    ssrf_cache_free(c);
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

/* A target by hand: connect_to, addr, port. */
static struct ssrf_target tg(const char *connect_to, const char *addr, int port)
{
    struct ssrf_target t;
    memset(&t, 0, sizeof t);
    snprintf(t.connect_to, sizeof t.connect_to, "%s", connect_to);
    snprintf(t.addr, sizeof t.addr, "%s", addr);
    t.port = port;
    return t;
}

static void test_expiry_and_blocked(void **state)
{
    (void)state;
    struct ssrf_cache *c = ssrf_cache_new(8, 30000, 5000);
    struct ssrf_target t, a = tg("a.example:443:93.184.216.34:443", "93.184.216.34", 443);
    char reason[256];
    assert_int_equal(ssrf_cache_get(c, "a.example:443", 1000, &t, reason, sizeof reason),
                     SSRF_CACHE_MISS);
    assert_int_equal(ssrf_cache_put(c, "a.example:443", 1000, 0, &a, NULL), 1);
    assert_int_equal(ssrf_cache_get(c, "a.example:443", 30999, &t, reason, sizeof reason),
                     SSRF_CACHE_ALLOWED);
    assert_string_equal(t.connect_to, "a.example:443:93.184.216.34:443");
    assert_string_equal(t.addr, "93.184.216.34");
    assert_int_equal(t.port, 443);
    /* another port is another entry */
    assert_int_equal(ssrf_cache_get(c, "a.example:80", 2000, &t, reason, sizeof reason),
                     SSRF_CACHE_MISS);
    /* expired after the TTL */
    assert_int_equal(ssrf_cache_get(c, "a.example:443", 31000, &t, reason, sizeof reason),
                     SSRF_CACHE_MISS);
    assert_int_equal(ssrf_cache_count(c, 31000), 0);

    /* a blocked result comes back blocked with its reason, for its own (shorter) TTL */
    assert_int_equal(ssrf_cache_put(c, "169.254.169.254:80", 40000, 1, NULL,
                                    "169.254.169.254 is a cloud metadata endpoint"),
                     1);
    memset(&t, 0, sizeof t);
    strcpy(t.addr, "junk");
    assert_int_equal(ssrf_cache_get(c, "169.254.169.254:80", 44999, &t, reason, sizeof reason),
                     SSRF_CACHE_BLOCKED);
    assert_string_equal(reason, "169.254.169.254 is a cloud metadata endpoint");
    assert_string_equal(t.addr, "junk"); /* no target handed out for a blocked host */
    assert_int_equal(ssrf_cache_get(c, "169.254.169.254:80", 45000, &t, reason, sizeof reason),
                     SSRF_CACHE_MISS); /* expired: the full check runs (and blocks) again */

    /* an allowed result never carries a target for another host, port or address */
    const struct ssrf_target wrong[] = {
        tg("169.254.169.254:80:1.2.3.4:80", "1.2.3.4", 80),
        tg("b.example:4430:1.2.3.4:4430", "1.2.3.4", 4430),
        tg("b.example:443:1.2.3.4:443", "1.2.3.4", 4430),
        tg("b.example:443:1.2.3.4:443", "1.2.3.5", 443),
        tg("b.example:443:1.2.3.4:80", "1.2.3.4", 443),
        tg("b.example:443::443", "", 443),
        tg("b.example:443:1.2.3.4:443", "b.example", 443),
        tg("b.example:443:1.2.3.4:443x", "1.2.3.4", 443),
        tg("", "1.2.3.4", 443), /* no connect-to entry: only an IPv6 literal goes as named */
        tg("", "", 0),
    };
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        assert_int_equal(ssrf_cache_put(c, "b.example:443", 50000, 0, &wrong[i], NULL), 0);
        assert_int_equal(ssrf_cache_target_fits("b.example:443", &wrong[i]), 0);
    }
    const struct ssrf_target right = tg("b.example:443:1.2.3.4:443", "1.2.3.4", 443);
    assert_int_equal(ssrf_cache_target_fits("b.example:443", &right), 1);
    assert_int_equal(ssrf_cache_target_fits(NULL, &right), 0);
    assert_int_equal(ssrf_cache_put(c, "b.example:443", 50000, 0, NULL, NULL), 0);
    assert_int_equal(ssrf_cache_put(c, "", 50000, 1, NULL, "x"), 0);
    assert_int_equal(ssrf_cache_get(c, "b.example:443", 50000, &t, reason, sizeof reason),
                     SSRF_CACHE_MISS);
    assert_int_equal(ssrf_cache_get(c, "", 50000, &t, reason, sizeof reason), SSRF_CACHE_MISS);

    /* an IPv4 literal is pinned like a name; with no entry it is not stored */
    struct ssrf_target v4 = tg("127.0.0.1:8080:127.0.0.1:8080", "127.0.0.1", 8080);
    assert_int_equal(ssrf_cache_put(c, "127.0.0.1:8080", 50000, 0, &v4, NULL), 1);
    assert_int_equal(ssrf_cache_get(c, "127.0.0.1:8080", 50000, &t, reason, sizeof reason),
                     SSRF_CACHE_ALLOWED);
    assert_string_equal(t.connect_to, "127.0.0.1:8080:127.0.0.1:8080");
    assert_string_equal(t.addr, "127.0.0.1");
    struct ssrf_target bare4 = tg("", "127.0.0.1", 8081);
    assert_int_equal(ssrf_cache_put(c, "127.0.0.1:8081", 50000, 0, &bare4, NULL), 0);

    /* an IPv6 literal has no entry (curl connects to it as named): its address is the key's */
    struct ssrf_target v6 = tg("", "::1", 8080);
    assert_int_equal(ssrf_cache_put(c, "[::1]:8080", 50000, 0, &v6, NULL), 1);
    memset(&t, 'x', sizeof t);
    assert_int_equal(ssrf_cache_get(c, "[::1]:8080", 50000, &t, reason, sizeof reason),
                     SSRF_CACHE_ALLOWED);
    assert_string_equal(t.connect_to, "");
    assert_string_equal(t.addr, "::1");
    assert_int_equal(t.port, 8080);
    assert_null(ssrf_target_list(&t));
    struct ssrf_target v6long = tg("", "0:0::1", 8082);
    assert_int_equal(ssrf_cache_put(c, "[::1]:8082", 50000, 0, &v6long, NULL), 1);
    const struct ssrf_target wrong6[] = {
        tg("", "::2", 8083),
        tg("", "::1", 8084),
        tg("", "127.0.0.1", 8083),
        tg("[::1]:8083:[::2]:8083", "::1", 8083),
    };
    for (size_t i = 0; i < sizeof wrong6 / sizeof *wrong6; i++)
        assert_int_equal(ssrf_cache_put(c, "[::1]:8083", 50000, 0, &wrong6[i], NULL), 0);
    /* a name that resolved to IPv6 has an entry with the address in brackets */
    struct ssrf_target n6 = tg("v6.example:443:[2001:db8::1]:443", "2001:db8::1", 443);
    assert_int_equal(ssrf_cache_put(c, "v6.example:443", 50000, 0, &n6, NULL), 1);
    struct ssrf_target n6bad = tg("v6.example:443:2001:db8::1:443", "2001:db8::1", 443);
    assert_int_equal(ssrf_cache_put(c, "v6.example:444", 50000, 0, &n6bad, NULL), 0);
    assert_int_equal(ssrf_cache_get(c, "v6.example:443", 50000, &t, reason, sizeof reason),
                     SSRF_CACHE_ALLOWED);
    assert_string_equal(ssrf_target_list(&t)->data, "v6.example:443:[2001:db8::1]:443");

    /* a later blocked result replaces an allowed one at once */
    struct ssrf_target ce = tg("c.example:443:1.2.3.4:443", "1.2.3.4", 443);
    assert_int_equal(ssrf_cache_put(c, "c.example:443", 60000, 0, &ce, NULL), 1);
    assert_int_equal(ssrf_cache_put(c, "c.example:443", 60001, 1, NULL, "DNS resolution failed"),
                     1);
    assert_int_equal(ssrf_cache_get(c, "c.example:443", 60002, &t, reason, sizeof reason),
                     SSRF_CACHE_BLOCKED);
    assert_int_equal(ssrf_cache_count(c, 60002), 5); /* and the literals' and v6.example's */
    ssrf_cache_free(c);
    ssrf_cache_free(NULL);
}

static void test_size_bound(void **state)
{
    (void)state;
    struct ssrf_cache *c = ssrf_cache_new(4, 30000, 5000);
    char key[64], want[128], addr[32], reason[256];
    struct ssrf_target t, w;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "h%d.example:443", i);
        snprintf(addr, sizeof addr, "1.2.3.%d", i % 250);
        snprintf(want, sizeof want, "%s:%s:443", key, addr);
        w = tg(want, addr, 443);
        assert_int_equal(ssrf_cache_put(c, key, 1000 + (uint64_t)i, 0, &w, NULL), 1);
        assert_true(ssrf_cache_count(c, 1000 + (uint64_t)i) <= 4);
    }
    assert_int_equal(ssrf_cache_count(c, 1100), 4);
    /* the four newest are kept, the oldest were evicted */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "h%d.example:443", i);
        snprintf(want, sizeof want, "%s:1.2.3.%d:443", key, i % 250);
        enum ssrf_cache_hit h = ssrf_cache_get(c, key, 1100, &t, reason, sizeof reason);
        if (i >= 96) {
            assert_int_equal(h, SSRF_CACHE_ALLOWED);
            assert_string_equal(t.connect_to, want);
        } else {
            assert_int_equal(h, SSRF_CACHE_MISS);
        }
    }
    /* re-storing a key updates its entry instead of taking a second slot */
    w = tg("h99.example:443:9.9.9.9:443", "9.9.9.9", 443);
    assert_int_equal(ssrf_cache_put(c, "h99.example:443", 1200, 0, &w, NULL), 1);
    assert_int_equal(ssrf_cache_count(c, 1200), 4);
    assert_int_equal(ssrf_cache_get(c, "h99.example:443", 1200, &t, reason, sizeof reason),
                     SSRF_CACHE_ALLOWED);
    assert_string_equal(t.addr, "9.9.9.9");
    /* a one-entry cache still works */
    struct ssrf_cache *one = ssrf_cache_new(0, 1000, 1000);
    struct ssrf_target x = tg("x:1:1.1.1.1:1", "1.1.1.1", 1), y = tg("y:1:1.1.1.1:1", "1.1.1.1", 1);
    assert_int_equal(ssrf_cache_put(one, "x:1", 5, 0, &x, NULL), 1);
    assert_int_equal(ssrf_cache_put(one, "y:1", 6, 0, &y, NULL), 1);
    assert_int_equal(ssrf_cache_count(one, 6), 1);
    assert_int_equal(ssrf_cache_get(one, "x:1", 6, &t, reason, sizeof reason), SSRF_CACHE_MISS);
    ssrf_cache_free(one);
    ssrf_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),        cmocka_unit_test(test_key_matches_guard),
        cmocka_unit_test(test_key_memo),   cmocka_unit_test(test_expiry_and_blocked),
        cmocka_unit_test(test_size_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
