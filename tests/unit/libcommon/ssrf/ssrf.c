/*
 * tests/unit/libcommon/ssrf/ssrf.c - the outbound URL guard.
 *
 * A table of URLs with the verdict each must get under a given allowlist and flags: schemes,
 * metadata hosts and addresses (still blocked when allowlisted or with loopback allowed),
 * internal suffixes, every private/reserved range, odd IPv4 spellings (decimal, octal, hex,
 * short forms), IPv6 forms embedding IPv4, userinfo tricks, DNS failure (blocked). Allowed URLs
 * must come back with the right port, pinned address and CURLOPT_CONNECT_TO entry (none for an
 * IPv6 literal, which curl connects to as named). Then a table
 * of addresses for the pure classifier. Only literal addresses, /etc/hosts names and the
 * reserved .invalid domain are used, so the test needs no network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "ssrf.h"

#define LB SSRF_ALLOW_LOOPBACK

struct url_case {
    const char *url;
    const char *allow; /* allowlist csv */
    unsigned flags;
    int ok;             /* 1 allowed, 0 blocked */
    const char *expect; /* allowed: connect-to entry; blocked: substring of the reason (or NULL) */
};

static const struct url_case cases[] = {
    /* allowed: public literals */
    {"http://8.8.8.8/", NULL, 0, 1, "8.8.8.8:80:8.8.8.8:80"},
    {"https://1.1.1.1/", "", 0, 1, "1.1.1.1:443:1.1.1.1:443"},
    {"HTTPS://93.184.216.34:8443/p?q=1#f", NULL, 0, 1, "93.184.216.34:8443:93.184.216.34:8443"},
    {"http://user:pw@8.8.4.4:81/", NULL, 0, 1, "8.8.4.4:81:8.8.4.4:81"},
    {"http://[2606:4700:4700::1111]/", NULL, 0, 1, ""},
    {"http://[::ffff:8.8.8.8]/", NULL, 0, 1, ""},
    {"http://[2002:0808:0808::1]/", NULL, 0, 1, ""}, /* 6to4 of a public address */
    /* schemes and shapes */
    {"ftp://8.8.8.8/", NULL, 0, 0, "scheme"},
    {"file:///etc/passwd", NULL, 0, 0, NULL},
    {"gopher://8.8.8.8:70/_x", NULL, 0, 0, "scheme"},
    {"dict://8.8.8.8:11211/", NULL, 0, 0, "scheme"},
    {"javascript:alert(1)", NULL, 0, 0, NULL},
    {"//8.8.8.8/", NULL, 0, 0, NULL},
    {"8.8.8.8", NULL, 0, 0, NULL},
    {"", NULL, 0, 0, NULL},
    {"http://", NULL, 0, 0, NULL},
    {"http:///path", NULL, 0, 0, NULL},
    {"http://8.8.8.8:0/", NULL, 0, 0, NULL},
    {"http://8.8.8.8:65536/", NULL, 0, 0, NULL},
    {"http://8.8.8.8\r\n.evil/", NULL, 0, 0, NULL},
    {"http://b\xc3\xbc"
     "cher.example/",
     NULL, 0, 0, "characters"}, /* IDN: curl would use punycode */
    {"http://xn--bcher-kva.example/", NULL, 0, 0, "DNS"},
    {"http://exa%6dple.com/", NULL, 0, 0, NULL},
    {"http://127.0.0.1%00.example.com/", NULL, LB, 0, NULL},
    /* cloud metadata: always blocked */
    {"http://169.254.169.254/latest/meta-data/", NULL, 0, 0, "metadata"},
    {"http://169.254.169.254/", "169.254.169.254", 0, 0, "metadata"},
    {"http://169.254.169.254/", "169.254.169.254", LB, 0, "metadata"},
    {"http://169.254.170.2/v2/credentials", "169.254.170.2", LB, 0, "metadata"},
    {"http://100.100.100.200/latest/meta-data", "100.100.100.200", LB, 0, "metadata"},
    {"http://[fd00:ec2::254]/latest/", "fd00:ec2::254", LB, 0, "metadata"},
    {"http://[fd00:ec2::254]/latest/", "[fd00:ec2::254]", 0, 0, "metadata"},
    {"http://168.63.129.16/", NULL, 0, 0, "metadata"},
    {"http://168.63.129.16/machine?comp=goalstate", "168.63.129.16", LB, 0, "metadata"},
    {"http://[fd20:ce::254]/computeMetadata/v1/", "fd20:ce::254", LB, 0, "metadata"},
    {"http://[fd00:c1::a9fe:a9fe]/opc/v2/", "fd00:c1::a9fe:a9fe", LB, 0, "metadata"},
    {"http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254", 0, 0, "metadata"},
    {"http://[64:ff9b::a9fe:a9fe]/", NULL, 0, 0, "metadata"}, /* NAT64 of 169.254.169.254 */
    {"http://[2002:a9fe:a9fe::]/", NULL, 0, 0, "metadata"},   /* 6to4 of 169.254.169.254 */
    {"http://2852039166/", NULL, 0, 0, "metadata"},           /* 169.254.169.254 in decimal */
    {"http://0xa9fea9fe/", NULL, 0, 0, "metadata"},
    {"http://0251.0376.0251.0376/", NULL, 0, 0, "metadata"},
    {"http://8.8.8.8@169.254.169.254/", "8.8.8.8", 0, 0, "metadata"},
    {"http://metadata.google.internal/computeMetadata/v1/", NULL, 0, 0, "metadata"},
    {"http://metadata.google.internal/", "metadata.google.internal", LB, 0, "metadata"},
    {"http://METADATA.Google.Internal./", "metadata.google.internal", 0, 0, "metadata"},
    {"http://metadata.goog/", "metadata.goog", 0, 0, "metadata"},
    {"http://metadata/", "metadata", 0, 0, "metadata"},
    {"http://instance-data/", "instance-data", 0, 0, "metadata"},
    {"http://x.metadata.google.internal/", "x.metadata.google.internal", 0, 0, "metadata"},
    /* loopback, all spellings */
    {"http://127.0.0.1/", NULL, 0, 0, "loopback"},
    {"http://localhost:8080/", NULL, 0, 0, "loopback"},
    {"http://2130706433/", NULL, 0, 0, "loopback"},
    {"http://0x7f000001/", NULL, 0, 0, "loopback"},
    {"http://017700000001/", NULL, 0, 0, "loopback"},
    {"http://0177.0.0.1/", NULL, 0, 0, "loopback"},
    {"http://0x7f.0x0.0x0.0x1/", NULL, 0, 0, "loopback"},
    {"http://127.1/", NULL, 0, 0, "loopback"},
    {"http://127.255.255.254/", NULL, 0, 0, "loopback"},
    {"http://[::1]/", NULL, 0, 0, "loopback"},
    {"http://[::ffff:127.0.0.1]/", NULL, 0, 0, "loopback"},
    {"http://[::ffff:7f00:1]/", NULL, 0, 0, "loopback"},
    {"http://[64:ff9b::127.0.0.1]/", NULL, 0, 0, "loopback"},
    {"http://[2002:7f00:1::]/", NULL, 0, 0, "loopback"},
    {"http://[::127.0.0.1]/", NULL, LB, 0, "reserved"}, /* IPv4-compatible: deprecated */
    /* loopback allowed by flag (tests) or allowlist */
    {"http://127.0.0.1:9000/x", NULL, LB, 1, "127.0.0.1:9000:127.0.0.1:9000"},
    {"http://localhost:9000/", NULL, LB, 1, "localhost:9000:127.0.0.1:9000"},
    {"http://LOCALHOST:9000/", NULL, LB, 1, "localhost:9000:127.0.0.1:9000"},
    {"http://[::1]:9000/", NULL, LB, 1, ""},
    {"http://localhost:9000/", "localhost", 0, 1, "localhost:9000:127.0.0.1:9000"},
    {"http://localhost:9/", "LocalHost.", 0, 1, "localhost:9:127.0.0.1:9"},
    /* private ranges: blocked, allowed only for allowlisted hosts, never by the LB flag */
    {"http://10.0.0.1/", NULL, 0, 0, "private"},
    {"http://10.0.0.1/", NULL, LB, 0, "private"},
    {"http://10.255.255.255/", "10.0.0.1", 0, 0, "private"},
    {"http://10.0.0.5/", "10.0.0.5", 0, 1, "10.0.0.5:80:10.0.0.5:80"},
    {"http://192.168.1.1:8080/", " other.example , 192.168.1.1 ", 0, 1,
     "192.168.1.1:8080:192.168.1.1:8080"},
    {"http://172.16.0.1/", NULL, 0, 0, "private"},
    {"http://172.31.255.255/", NULL, 0, 0, "private"},
    {"http://172.32.0.1/", NULL, 0, 1, "172.32.0.1:80:172.32.0.1:80"},
    {"http://172.15.255.255/", NULL, 0, 1, NULL},
    {"http://192.168.0.1/", NULL, 0, 0, "private"},
    {"http://100.64.0.1/", NULL, 0, 0, "private"},
    {"http://100.127.255.255/", NULL, 0, 0, "private"},
    {"http://100.128.0.1/", NULL, 0, 1, NULL},
    {"http://[fc00::1]/", NULL, 0, 0, "private"},
    {"http://[fd12:3456::1]/", NULL, 0, 0, "private"},
    {"http://[::ffff:10.1.2.3]/", NULL, 0, 0, "private"},
    {"http://[::ffff:0:10.1.2.3]/", NULL, 0, 0, "private"},
    /* link-local, reserved, multicast, unspecified: blocked even when allowlisted */
    {"http://169.254.1.1/", "169.254.1.1", LB, 0, "link-local"},
    {"http://[fe80::1]/", "fe80::1", 0, 0, "link-local"},
    {"http://[fe80::1%25eth0]/", NULL, 0, 0, "zone"},
    /* a zone id is refused even where the address alone is allowed */
    {"http://[fd12:3456::1]/", "fd12:3456::1", 0, 1, ""},
    {"http://[fd12:3456::1%25eth0]/", "fd12:3456::1", 0, 0, "zone"},
    {"http://[::1%25lo]:9000/", NULL, LB, 0, "zone"},
    {"http://0.0.0.0/", "0.0.0.0", LB, 0, "reserved"},
    {"http://0/", NULL, LB, 0, "reserved"},
    {"http://[::]/", NULL, LB, 0, "reserved"},
    {"http://224.0.0.1/", NULL, 0, 0, "reserved"},
    {"http://239.255.255.250/", NULL, 0, 0, "reserved"},
    {"http://255.255.255.255/", NULL, 0, 0, "reserved"},
    {"http://240.0.0.1/", NULL, 0, 0, "reserved"},
    {"http://192.0.2.1/", NULL, 0, 0, "reserved"},
    {"http://198.51.100.7/", NULL, 0, 0, "reserved"},
    {"http://203.0.113.9/", NULL, 0, 0, "reserved"},
    {"http://198.18.0.1/", NULL, 0, 0, "reserved"},
    {"http://[ff02::1]/", NULL, 0, 0, "reserved"},
    {"http://[2001:db8::1]/", NULL, 0, 0, "reserved"},
    {"http://[2001::1]/", NULL, 0, 0, "reserved"}, /* Teredo */
    {"http://[fec0::1]/", NULL, 0, 0, "reserved"},
    {"http://[100::1]/", NULL, 0, 0, "reserved"},
    /* internal suffixes; an allowlist exempts the suffix but DNS must still work */
    {"http://db.internal/", NULL, 0, 0, ".internal"},
    {"http://printer.local/", NULL, 0, 0, ".local"},
    {"http://printer.LOCAL./", NULL, 0, 0, ".local"},
    {"http://git.corp/", NULL, 0, 0, ".corp"},
    {"http://nas.lan/", NULL, 0, 0, ".lan"},
    {"http://router.home.arpa/", NULL, 0, 0, ".home.arpa"},
    {"http://app.localhost/", NULL, LB, 0, ".localhost"},
    {"http://internal/", NULL, 0, 0, ".internal"},
    {"http://db.internal/", "db.internal", 0, 0, "DNS"},
    {"http://does-not-exist.invalid/", NULL, 0, 0, "DNS"},
    {"http://does-not-exist.invalid/", "does-not-exist.invalid", LB, 0, "DNS"},
    {"https://does-not-exist.invalid:8443/", NULL, 0, 0, "DNS"},
};

static void test_url_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct url_case *c = &cases[i];
        struct ssrf_result r;
        char reason[256] = "untouched";
        int rc = ssrf_check(c->url, c->allow, c->flags, &r, reason, sizeof reason);
        if (c->ok && rc != 0)
            fail_msg("case %zu %s: blocked (%s), want allowed", i, c->url, reason);
        if (!c->ok && rc == 0)
            fail_msg("case %zu %s: allowed (pin %s), want blocked", i, c->url, r.addr);
        if (!c->ok) {
            assert_true(reason[0] != 0 && strcmp(reason, "untouched") != 0);
            if (c->expect && !strstr(reason, c->expect))
                fail_msg("case %zu %s: reason '%s' lacks '%s'", i, c->url, reason, c->expect);
            assert_string_equal(r.addr, "");
            assert_string_equal(r.host, "");
        } else {
            struct ssrf_target t;
            assert_true(r.addr[0] != 0);
            assert_true(r.port > 0);
            assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), 0);
            assert_string_equal(t.addr, r.addr);
            assert_int_equal(t.port, r.port);
            if (c->expect && strcmp(t.connect_to, c->expect) != 0)
                fail_msg("case %zu %s: connect-to '%s', want '%s'", i, c->url, t.connect_to,
                         c->expect);
        }
    }
}

static void test_result_fields(void **state)
{
    (void)state;
    struct ssrf_result r;
    char reason[128];
    assert_int_equal(
        ssrf_check("https://[2606:4700:4700::1111]/dns-query", NULL, 0, &r, reason, sizeof reason),
        0);
    assert_string_equal(r.host, "2606:4700:4700::1111");
    assert_int_equal(r.port, 443);
    assert_int_equal(r.family, AF_INET6);
    assert_string_equal(r.addr, "2606:4700:4700::1111");

    assert_int_equal(ssrf_check("http://2130706433:8000/", NULL, LB, &r, reason, sizeof reason), 0);
    assert_int_equal(r.family, AF_INET);
    assert_string_equal(r.addr, "127.0.0.1");
    assert_int_equal(r.port, 8000);
    assert_string_equal(r.host, "127.0.0.1");

    /* NULL url, NULL/zero reason buffer */
    assert_int_equal(ssrf_check(NULL, NULL, 0, &r, reason, sizeof reason), -1);
    assert_int_equal(ssrf_check("http://10.0.0.1/", NULL, 0, &r, NULL, 0), -1);
    reason[0] = 'x';
    assert_int_equal(ssrf_check("http://10.0.0.1/", NULL, 0, &r, reason, 1), -1);
    assert_int_equal(reason[0], 0);

    /* a host name of 300 characters */
    char big[400] = "http://";
    memset(big + 7, 'a', 300);
    strcpy(big + 307, ".com/");
    assert_int_equal(ssrf_check(big, NULL, 0, &r, reason, sizeof reason), -1);
}

/* A result as ssrf_check() leaves it, for ssrf_target_of(). */
static struct ssrf_result result(const char *host, int port, int family, const char *addr)
{
    struct ssrf_result r = {.port = port, .family = family};
    snprintf(r.host, sizeof r.host, "%s", host);
    snprintf(r.addr, sizeof r.addr, "%s", addr);
    return r;
}

static void test_target(void **state)
{
    (void)state;
    struct ssrf_target t;
    char reason[128];

    /* IPv4: host and port to the checked address and the same port */
    struct ssrf_result r = result("api.example.com", 8443, AF_INET, "93.184.216.34");
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), 0);
    assert_string_equal(t.connect_to, "api.example.com:8443:93.184.216.34:8443");
    assert_string_equal(t.addr, "93.184.216.34");
    assert_int_equal(t.port, 8443);
    struct curl_slist *l = ssrf_target_list(&t);
    assert_non_null(l);
    assert_ptr_equal(l->data, t.connect_to);
    assert_null(l->next);

    /* IPv6 address of a name: in brackets in the entry, bare for the pin */
    r = result("v6.example.com", 443, AF_INET6, "2606:4700:4700::1111");
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), 0);
    assert_string_equal(t.connect_to, "v6.example.com:443:[2606:4700:4700::1111]:443");
    assert_string_equal(t.addr, "2606:4700:4700::1111");
    assert_int_equal(t.port, 443);

    /* an IPv6 literal host: no entry (curl connects to it as named), the pin still set */
    r = result("2606:4700:4700::1111", 80, AF_INET6, "2606:4700:4700::1111");
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), 0);
    assert_string_equal(t.connect_to, "");
    assert_null(ssrf_target_list(&t));
    assert_string_equal(t.addr, "2606:4700:4700::1111");
    assert_int_equal(t.port, 80);

    /* straight from a check */
    assert_int_equal(ssrf_check("http://2130706433:8000/x", NULL, LB, &r, reason, sizeof reason),
                     0);
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), 0);
    char want[300];
    snprintf(want, sizeof want, "%s:8000:127.0.0.1:8000", r.host);
    assert_string_equal(t.connect_to, want);

    /* the longest host a result holds still fits whole */
    char host[256];
    memset(host, 'a', 255);
    host[255] = 0;
    r = result(host, 65535, AF_INET6, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), 0);
    assert_int_equal(strlen(t.connect_to), 255 + 1 + 5 + 1 + 40 + 1 + 5);

    /* an overlong (unterminated) host, no address, a bad port or family: refused, nothing set */
    memset(r.host, 'a', sizeof r.host);
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), -1);
    assert_non_null(strstr(reason, "cannot pin the checked address of aaa"));
    assert_string_equal(t.connect_to, "");
    assert_string_equal(t.addr, "");
    assert_null(ssrf_target_list(&t));
    r = result("example.com", 80, AF_INET, "");
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), -1);
    r = result("example.com", 0, AF_INET, "93.184.216.34");
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), -1);
    r = result("example.com", 65536, AF_INET, "93.184.216.34");
    assert_int_equal(ssrf_target_of(&r, &t, NULL, 0), -1);
    r = result("example.com", 80, AF_UNIX, "93.184.216.34");
    assert_int_equal(ssrf_target_of(&r, &t, reason, sizeof reason), -1);
}

static enum ssrf_addr_class classify(const char *text)
{
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, text, &s4.sin_addr) == 1)
        return ssrf_addr_blocked((struct sockaddr *)&s4);
    if (inet_pton(AF_INET6, text, &s6.sin6_addr) == 1)
        return ssrf_addr_blocked((struct sockaddr *)&s6);
    fail_msg("bad test address %s", text);
    return SSRF_ADDR_RESERVED;
}

static void test_addr_table(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        enum ssrf_addr_class cls;
    } t[] = {
        {"8.8.8.8", SSRF_ADDR_PUBLIC},
        {"1.0.0.1", SSRF_ADDR_PUBLIC},
        {"9.255.255.255", SSRF_ADDR_PUBLIC},
        {"11.0.0.0", SSRF_ADDR_PUBLIC},
        {"126.255.255.255", SSRF_ADDR_PUBLIC},
        {"128.0.0.0", SSRF_ADDR_PUBLIC},
        {"169.253.255.255", SSRF_ADDR_PUBLIC},
        {"169.255.0.0", SSRF_ADDR_PUBLIC},
        {"192.167.255.255", SSRF_ADDR_PUBLIC},
        {"192.169.0.0", SSRF_ADDR_PUBLIC},
        {"223.255.255.255", SSRF_ADDR_PUBLIC},
        {"0.0.0.0", SSRF_ADDR_RESERVED},
        {"0.255.255.255", SSRF_ADDR_RESERVED},
        {"10.0.0.0", SSRF_ADDR_PRIVATE},
        {"10.255.255.255", SSRF_ADDR_PRIVATE},
        {"100.64.0.0", SSRF_ADDR_PRIVATE},
        {"100.127.255.255", SSRF_ADDR_PRIVATE},
        {"100.63.255.255", SSRF_ADDR_PUBLIC},
        {"100.100.100.200", SSRF_ADDR_METADATA},
        {"127.0.0.0", SSRF_ADDR_LOOPBACK},
        {"127.255.255.255", SSRF_ADDR_LOOPBACK},
        {"169.254.0.1", SSRF_ADDR_LINKLOCAL},
        {"169.254.169.254", SSRF_ADDR_METADATA},
        {"169.254.170.2", SSRF_ADDR_METADATA},
        {"172.16.0.0", SSRF_ADDR_PRIVATE},
        {"172.31.255.255", SSRF_ADDR_PRIVATE},
        {"172.32.0.0", SSRF_ADDR_PUBLIC},
        {"192.0.0.8", SSRF_ADDR_RESERVED},
        {"192.0.2.255", SSRF_ADDR_RESERVED},
        {"192.168.255.255", SSRF_ADDR_PRIVATE},
        {"198.19.255.255", SSRF_ADDR_RESERVED},
        {"198.20.0.0", SSRF_ADDR_PUBLIC},
        {"224.0.0.0", SSRF_ADDR_RESERVED},
        {"239.255.255.255", SSRF_ADDR_RESERVED},
        {"240.0.0.0", SSRF_ADDR_RESERVED},
        {"255.255.255.255", SSRF_ADDR_RESERVED},
        {"::", SSRF_ADDR_RESERVED},
        {"::1", SSRF_ADDR_LOOPBACK},
        {"::2", SSRF_ADDR_RESERVED},
        {"::ffff:8.8.8.8", SSRF_ADDR_PUBLIC},
        {"::ffff:127.0.0.1", SSRF_ADDR_LOOPBACK},
        {"::ffff:10.0.0.1", SSRF_ADDR_PRIVATE},
        {"::ffff:169.254.169.254", SSRF_ADDR_METADATA},
        {"::ffff:0.0.0.0", SSRF_ADDR_RESERVED},
        {"::ffff:0:127.0.0.1", SSRF_ADDR_LOOPBACK},
        {"::8.8.8.8", SSRF_ADDR_RESERVED},
        {"64:ff9b::8.8.8.8", SSRF_ADDR_PUBLIC},
        {"64:ff9b::10.0.0.1", SSRF_ADDR_PRIVATE},
        {"64:ff9b::169.254.169.254", SSRF_ADDR_METADATA},
        {"64:ff9b:1::1", SSRF_ADDR_RESERVED},
        {"2002:0808:0808::", SSRF_ADDR_PUBLIC},
        {"2002:0a00:0001::", SSRF_ADDR_PRIVATE},
        {"2002:a9fe:a9fe::1", SSRF_ADDR_METADATA},
        {"2001::1", SSRF_ADDR_RESERVED},
        {"2001:1ff:ffff::1", SSRF_ADDR_RESERVED},
        {"2001:200::1", SSRF_ADDR_PUBLIC},
        {"2001:db8::1", SSRF_ADDR_RESERVED},
        {"2001:4860:4860::8888", SSRF_ADDR_PUBLIC},
        {"2606:4700::1111", SSRF_ADDR_PUBLIC},
        {"3fff::1", SSRF_ADDR_RESERVED},
        {"3ffe::1", SSRF_ADDR_PUBLIC},
        {"4000::1", SSRF_ADDR_RESERVED},
        {"fc00::", SSRF_ADDR_PRIVATE},
        {"fdff:ffff::1", SSRF_ADDR_PRIVATE},
        {"fd00:ec2::254", SSRF_ADDR_METADATA},
        {"fd00:ec2::23", SSRF_ADDR_METADATA},
        {"fe80::1", SSRF_ADDR_LINKLOCAL},
        {"febf::1", SSRF_ADDR_LINKLOCAL},
        {"fec0::1", SSRF_ADDR_RESERVED},
        {"ff02::1", SSRF_ADDR_RESERVED},
        {"ff0e::1", SSRF_ADDR_RESERVED},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        enum ssrf_addr_class c = classify(t[i].addr);
        if (c != t[i].cls)
            fail_msg("%s: class %s, want %s", t[i].addr, ssrf_addr_class_name(c),
                     ssrf_addr_class_name(t[i].cls));
    }
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_int_equal(ssrf_addr_blocked(&other), SSRF_ADDR_RESERVED);
    assert_int_equal(ssrf_addr_blocked(NULL), SSRF_ADDR_RESERVED);
}

static void test_metadata_names(void **state)
{
    (void)state;
    assert_true(ssrf_metadata_host("metadata.google.internal"));
    assert_true(ssrf_metadata_host("Metadata.Google.Internal."));
    assert_true(ssrf_metadata_host("metadata.goog"));
    assert_true(ssrf_metadata_host("metadata"));
    assert_true(ssrf_metadata_host("instance-data.ec2.internal"));
    assert_false(ssrf_metadata_host("metadata.example.com"));
    assert_false(ssrf_metadata_host("notmetadata.goog"));
    assert_false(ssrf_metadata_host("metadata.google.internal.evil.com"));
    assert_false(ssrf_metadata_host(""));
    assert_false(ssrf_metadata_host(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_table),      cmocka_unit_test(test_result_fields),
        cmocka_unit_test(test_target),         cmocka_unit_test(test_addr_table),
        cmocka_unit_test(test_metadata_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
