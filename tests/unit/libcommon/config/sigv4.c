/*
 * tests/unit/libcommon/config/sigv4.c - SigV4 against AWS's published signing examples.
 *
 * Vectors: the IAM ListUsers example of the SigV4 documentation (canonical request, its hash,
 * string to sign, signing key and signature), the signing-key derivation example
 * (20120215/us-east-1/iam), and the test-suite cases get-vanilla, post-vanilla and
 * get-vanilla-query-order-key-case (AKIDEXAMPLE, 20150830T123600Z, us-east-1, "service").
 * Plus header canonicalisation rules (case, trimming, repeats) and rejected inputs.
 *
 * Why a signer of our own rather than libcurl's CURLOPT_AWS_SIGV4: curl_sigv4_* sends the same
 * AWS test-suite requests through libcurl's signer to a loopback listener and compares the
 * Authorization header it produced with AWS's expected signature. With the libcurl this project
 * builds against (Debian 12: 7.88), the query-order case fails: that signer does not sort the
 * query parameters, so any request with two of them is refused by AWS. The test records what
 * libcurl does; if a newer libcurl passes it, the hand-written signer can go.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypto.h"
#include "sigv4.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void hexkey(const unsigned char k[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", k[i]);
}

static void signing_key_examples(void **state)
{
    (void)state;
    unsigned char k[32];
    char h[65];
    sigv4_signing_key(SECRET, "20120215", "us-east-1", "iam", k);
    hexkey(k, h);
    assert_string_equal(h, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    sigv4_signing_key(SECRET, "20150830", "us-east-1", "iam", k);
    hexkey(k, h);
    assert_string_equal(h, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

static void iam_list_users_example(void **state)
{
    (void)state;
    struct sigv4_header h[] = {
        {"Host", "iam.amazonaws.com"},
        {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
        {"X-Amz-Date", "20150830T123600Z"},
    };
    struct sigv4_input in = {"GET",
                             "/",
                             "Action=ListUsers&Version=2010-05-08",
                             h,
                             3,
                             "",
                             0,
                             "us-east-1",
                             "iam",
                             "20150830T123600Z",
                             AKID,
                             SECRET};
    struct sigv4_result r;
    assert_int_equal(sigv4_sign(&in, &r), 0);
    assert_string_equal(r.canonical_request,
                        "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
                        "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
                        "host:iam.amazonaws.com\n"
                        "x-amz-date:20150830T123600Z\n\n"
                        "content-type;host;x-amz-date\n" EMPTY_HASH);
    char ch[65];
    crypto_sha256_hex(r.canonical_request, strlen(r.canonical_request), ch);
    assert_string_equal(ch, "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
    assert_string_equal(r.string_to_sign,
                        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
                        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
    assert_string_equal(r.signature,
                        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    assert_string_equal(
        r.authorization,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/"
        "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    sigv4_result_destroy(&r);
}

static void suite_case(const char *method, const char *query, const char *want_creq,
                       const char *want_sts_hash, const char *want_sig)
{
    struct sigv4_header h[] = {
        {"Host", "example.amazonaws.com"},
        {"X-Amz-Date", "20150830T123600Z"},
    };
    struct sigv4_input in = {method, "/",   query,       h,         2,
                             NULL,   0,     "us-east-1", "service", "20150830T123600Z",
                             AKID,   SECRET};
    struct sigv4_result r;
    assert_int_equal(sigv4_sign(&in, &r), 0);
    if (want_creq)
        assert_string_equal(r.canonical_request, want_creq);
    if (want_sts_hash) {
        char sts[256];
        snprintf(sts, sizeof sts,
                 "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n%s",
                 want_sts_hash);
        assert_string_equal(r.string_to_sign, sts);
    }
    assert_string_equal(r.signature, want_sig);
    char auth[512];
    snprintf(auth, sizeof auth,
             "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
             "SignedHeaders=host;x-amz-date, Signature=%s",
             want_sig);
    assert_string_equal(r.authorization, auth);
    sigv4_result_destroy(&r);
}

static void get_vanilla(void **state)
{
    (void)state;
    suite_case("GET", NULL,
               "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
               "host;x-amz-date\n" EMPTY_HASH,
               "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
               "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

static void post_vanilla(void **state)
{
    (void)state;
    suite_case("POST", "", NULL, NULL,
               "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

static void get_vanilla_query_order_key_case(void **state)
{
    (void)state;
    suite_case("GET", "Param2=value2&Param1=value1",
               "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
               "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_HASH,
               NULL, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

/* ---- libcurl's signer on the same examples ---- */

struct capture {
    int listener;
    char request[4096];
};

/* Accepts one connection, keeps its request head, answers 200. */
static void *capture_one(void *arg)
{
    struct capture *c = arg;
    int fd = accept(c->listener, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t n = 0;
    while (n < sizeof c->request - 1 && !strstr(c->request, "\r\n\r\n")) {
        ssize_t r = read(fd, c->request + n, sizeof c->request - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        c->request[n] = 0;
    }
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    ssize_t w = write(fd, ok, sizeof ok - 1);
    (void)w;
    close(fd);
    return NULL;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* The Signature= value libcurl's signer put on GET http://example.amazonaws.com/?query. */
static void curl_signature(const char *query, char out[65])
{
    struct capture c = {0};
    c.listener = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c.listener >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    assert_int_equal(bind(c.listener, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(c.listener, 1), 0);
    assert_int_equal(getsockname(c.listener, (struct sockaddr *)&a, &alen), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, capture_one, &c), 0);

    char url[128], connect_to[128];
    snprintf(url, sizeof url, "http://example.amazonaws.com/%s%s", query ? "?" : "",
             query ? query : "");
    snprintf(connect_to, sizeof connect_to, "example.amazonaws.com:80:127.0.0.1:%d",
             ntohs(a.sin_port));
    CURL *h = curl_easy_init();
    assert_non_null(h);
    struct curl_slist *to = curl_slist_append(NULL, connect_to);
    struct curl_slist *hdrs = curl_slist_append(NULL, "X-Amz-Date: 20150830T123600Z");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, to);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:service");
    curl_easy_setopt(h, CURLOPT_USERPWD, AKID ":" SECRET);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "");
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    curl_slist_free_all(to);
    curl_slist_free_all(hdrs);
    pthread_join(t, NULL);
    close(c.listener);
    assert_int_equal(rc, CURLE_OK);
    const char *sig = strstr(c.request, "Signature=");
    assert_non_null(sig);
    snprintf(out, 65, "%.64s", sig + strlen("Signature="));
}

static void curl_sigv4_get_vanilla(void **state)
{
    (void)state;
    char sig[65];
    curl_signature(NULL, sig);
    assert_string_equal(sig, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

static void curl_sigv4_query_order(void **state)
{
    (void)state;
    char sig[65];
    curl_signature("Param2=value2&Param1=value1", sig);
    fprintf(stderr, "libcurl %s signs the query-order example as %s (AWS expects b97d918c...)\n",
            curl_version_info(CURLVERSION_NOW)->version, sig);
    /* AWS expects b97d918c... (get_vanilla_query_order_key_case above); libcurl 7.88 signs the
     * query as written. When this fails, libcurl signs correctly: replace sigv4.c with
     * CURLOPT_AWS_SIGV4 in secrets_aws.c and delete this test. */
    assert_string_not_equal(sig, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

static void header_rules(void **state)
{
    (void)state;
    struct sigv4_header h[] = {
        {"X-Amz-Date", "20150830T123600Z"},
        {"My-Header1", "  a   b \t c  "},
        {"HOST", "example.amazonaws.com"},
        {"my-header1", "second"},
    };
    struct sigv4_input in = {"GET",       "/",       "b=2&a=&a=1&c",     h,    4,     "x", 1,
                             "us-east-1", "service", "20150830T123600Z", AKID, SECRET};
    struct sigv4_result r;
    assert_int_equal(sigv4_sign(&in, &r), 0);
    char want[512];
    char xh[65];
    crypto_sha256_hex("x", 1, xh);
    snprintf(want, sizeof want,
             "GET\n/\na=&a=1&b=2&c=\nhost:example.amazonaws.com\nmy-header1:a b c,second\n"
             "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n%s",
             xh);
    assert_string_equal(r.canonical_request, want);
    assert_string_equal(r.signed_headers, "host;my-header1;x-amz-date");
    sigv4_result_destroy(&r);
}

static void bad_inputs(void **state)
{
    (void)state;
    struct sigv4_header h[] = {{"Host", "h"}};
    const char *dates[] = {
        "", "20150830", "20150830T123600", "2015083XT123600Z", "20150830T123600ZZ", NULL};
    for (int i = 0; dates[i]; i++) {
        struct sigv4_input in = {"GET", "/", NULL, h, 1, NULL, 0, "r", "s", dates[i], AKID, SECRET};
        struct sigv4_result r;
        assert_int_equal(sigv4_sign(&in, &r), -1);
        sigv4_result_destroy(&r);
    }
    struct sigv4_input in = {"GET", "/",   NULL, h, 1, NULL, 0, "r", "s", "20150830T123600Z",
                             NULL,  SECRET};
    struct sigv4_result r;
    assert_int_equal(sigv4_sign(&in, &r), -1);
    sigv4_result_destroy(&r);
}

static void amz_date_format(void **state)
{
    (void)state;
    char d[17];
    sigv4_amz_date(1440938160, d); /* 2015-08-30T12:36:00Z */
    assert_string_equal(d, "20150830T123600Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signing_key_examples),
        cmocka_unit_test(iam_list_users_example),
        cmocka_unit_test(get_vanilla),
        cmocka_unit_test(post_vanilla),
        cmocka_unit_test(get_vanilla_query_order_key_case),
        cmocka_unit_test(header_rules),
        cmocka_unit_test(bad_inputs),
        cmocka_unit_test(amz_date_format),
        cmocka_unit_test(curl_sigv4_get_vanilla),
        cmocka_unit_test(curl_sigv4_query_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
