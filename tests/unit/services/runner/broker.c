/*
 * broker.c - tests of services/runner/broker.c with hostile ctx.http frames: every malformed
 * field is an http_err reply (never a crash, never a request), blocked destinations say so,
 * and a real request to a loopback listener works only with allow_loopback, honouring the
 * size cap and the timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runner.h"

static int listen_fd, port;

static void *serve_one(void *arg)
{
    const char *reply = arg;
    int c = accept(listen_fd, NULL, NULL);
    char buf[4096];
    ssize_t n = read(c, buf, sizeof buf);
    (void)n;
    if (reply) {
        ssize_t w = write(c, reply, strlen(reply));
        (void)w;
    } else {
        sleep(2); /* never answers in time */
    }
    close(c);
    return NULL;
}

static char *ask(int loopback, long long max, const char *frame, int remaining)
{
    struct broker_opts o = {loopback, "", max};
    return broker_http(&o, frame, remaining);
}

static void assert_err(const char *frame, const char *kind)
{
    char *r = ask(1, 1 << 20, frame, 2000);
    assert_non_null(r);
    char want[64];
    snprintf(want, sizeof want, "\"kind\":\"%s\"", kind);
    if (!strstr(r, "\"t\":\"http_err\"") || !strstr(r, want))
        fail_msg("frame %s gave %s", frame, r);
    free(r);
}

static void test_hostile_frames(void **state)
{
    (void)state;
    assert_err("", "error");
    assert_err("[]", "error");
    assert_err("{\"t\":\"http\"}", "error");
    assert_err("{\"method\":\"TRACE\",\"url\":\"http://example.com/\"}", "error");
    assert_err("{\"method\":7,\"url\":\"http://example.com/\"}", "error");
    assert_err("{\"method\":\"GET\",\"url\":[1]}", "error");
    assert_err("{\"method\":\"GET\",\"url\":\"gopher://example.com/\"}", "blocked");
    assert_err("{\"method\":\"GET\",\"url\":\"http://169.254.169.254/latest\"}", "blocked");
    assert_err("{\"method\":\"GET\",\"url\":\"http://[fd00:ec2::254]/\"}", "blocked");
    assert_err("{\"method\":\"GET\",\"url\":\"http://0x7f.1:1/\",\"body_b64\":\"\"}", "error");
    char frame[512];
    snprintf(frame, sizeof frame,
             "{\"method\":\"GET\",\"url\":\"http://127.0.0.1:%d/\",\"headers\":[[\"X\",\"a\\r\\nB: "
             "c\"]]}",
             port);
    assert_err(frame, "error");
    snprintf(frame, sizeof frame,
             "{\"method\":\"POST\",\"url\":\"http://127.0.0.1:%d/\",\"body_b64\":\"***\"}", port);
    assert_err(frame, "error");
    snprintf(frame, sizeof frame, "{\"method\":\"GET\",\"url\":\"http://127.0.0.1:%d/\"}", port);
    char *r = ask(0, 1 << 20, frame, 2000); /* loopback without the test flag */
    assert_non_null(strstr(r, "\"kind\":\"blocked\""));
    free(r);
}

static void test_real_request_and_limits(void **state)
{
    (void)state;
    char frame[512];
    pthread_t t;
    snprintf(frame, sizeof frame,
             "{\"method\":\"POST\",\"url\":\"http://127.0.0.1:%d/x\",\"headers\":[[\"X-A\",\"1\"]],"
             "\"body_b64\":\"aGk=\",\"timeout\":5}",
             port);
    pthread_create(&t, NULL, serve_one,
                   "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-B: two\r\n\r\nhello");
    char *r = ask(1, 1 << 20, frame, 5000);
    pthread_join(t, NULL);
    assert_non_null(strstr(r, "\"status\":201"));
    assert_non_null(strstr(r, "[\"X-B\",\"two\"]"));
    assert_non_null(strstr(r, "\"body_b64\":\"aGVsbG8=\""));
    free(r);
    pthread_create(&t, NULL, serve_one, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
    r = ask(1, 4, frame, 5000); /* response cap of 4 bytes */
    pthread_join(t, NULL);
    assert_non_null(strstr(r, "size limit"));
    free(r);
    pthread_create(&t, NULL, serve_one, NULL);
    r = ask(1, 1 << 20, frame, 300); /* the run has 300 ms left */
    pthread_join(t, NULL);
    assert_non_null(strstr(r, "\"kind\":\"timeout\""));
    free(r);
}

static int setup(void **state)
{
    (void)state;
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(0x7f000001);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(listen_fd, 8) != 0)
        return -1;
    getsockname(listen_fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(listen_fd);
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_frames),
        cmocka_unit_test(test_real_request_and_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
