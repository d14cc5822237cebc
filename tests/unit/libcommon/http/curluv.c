/*
 * curluv.c - tests of libcommon/http/curluv: transfers on a libuv loop, and the address pin
 * that keeps a transfer off any address but the one an SSRF check approved, whatever curl
 * resolves or whichever connect-to entry it applies or skips.
 *
 * Two small HTTP/1.1 keep-alive listeners run on the same loop (127.0.0.1, port 0); each counts
 * the connections it accepted and the requests it answered, so a test can tell which address a
 * transfer really reached. The blocking-transfer test uses plain listening sockets instead.
 */
#include "curluv.h"
#include "httpc.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* ---------- the listeners ---------- */

struct listener {
    uv_tcp_t tcp;
    int port;
    int accepted;
    int answered;
};

struct peer {
    uv_tcp_t tcp;
    struct listener *l;
    char buf[4096];
    size_t len;
};

static const char ANSWER[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

static void on_peer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct peer *p = h->data;
    (void)hint;
    *b = uv_buf_init(p->buf + p->len, (unsigned)(sizeof p->buf - p->len - 1));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct peer *p = s->data;
    (void)b;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_peer_closed);
        return;
    }
    p->len += (size_t)n;
    p->buf[p->len] = 0;
    char *end;
    while ((end = strstr(p->buf, "\r\n\r\n"))) { /* bodiless requests only */
        size_t used = (size_t)(end + 4 - p->buf);
        memmove(p->buf, p->buf + used, p->len - used + 1);
        p->len -= used;
        p->l->answered++;
        uv_write_t *w = malloc(sizeof *w);
        uv_buf_t out = uv_buf_init((char *)ANSWER, sizeof ANSWER - 1);
        uv_write(w, s, &out, 1, on_written);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct listener *l = server->data;
    assert_int_equal(status, 0);
    struct peer *p = calloc(1, sizeof *p);
    p->l = l;
    uv_tcp_init(server->loop, &p->tcp);
    p->tcp.data = p;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&p->tcp), 0);
    l->accepted++;
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
}

static void listen_on(uv_loop_t *loop, struct listener *l)
{
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int len = sizeof got;
    memset(l, 0, sizeof *l);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = l;
    assert_int_equal(uv_tcp_bind(&l->tcp, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&l->tcp, 16, on_connection), 0);
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&got, &len);
    l->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

/* ---------- the fixture: a loop, a curluv, two listeners ---------- */

struct fx {
    uv_loop_t loop;
    struct curluv *cm;
    struct listener a, b;
    int done;
    CURLcode rc;
    long status;
};

static void on_done(void *arg, CURL *easy, CURLcode rc)
{
    struct fx *f = arg;
    f->rc = rc;
    f->status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &f->status);
    curluv_remove(f->cm, easy);
    f->done = 1;
    uv_stop(&f->loop); /* reported from a timer: uv_run(ONCE) would go on to block in poll */
}

static size_t discard(char *d, size_t size, size_t n, void *u)
{
    (void)d;
    (void)u;
    return size * n;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    f->cm = curluv_new(&f->loop, on_done, f);
    listen_on(&f->loop, &f->a);
    listen_on(&f->loop, &f->b);
    *state = f;
    return 0;
}

static void on_curluv_closed(void *arg)
{
    (void)arg;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) /* peers carry their heap block in data, listeners NULL */
        uv_close(h, h->type == UV_TCP && h->data ? on_peer_closed : NULL);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    curluv_close(f->cm, on_curluv_closed, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    f->a.tcp.data = f->b.tcp.data = NULL; /* listeners are not heap peers */
    uv_walk(&f->loop, close_walk, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* One GET of url, pinned to pin (NULL: unpinned), connect_to applied when given. */
static void fetch(struct fx *f, const char *url, struct curluv_pin *pin, const char *connect_to)
{
    CURL *h = curl_easy_init();
    struct curl_slist *ct = connect_to ? curl_slist_append(NULL, connect_to) : NULL;
    httpc_harden(h, 1);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, ct);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    f->done = 0;
    if (pin)
        curluv_add_pinned(f->cm, h, pin);
    else
        curluv_add(f->cm, h);
    while (!f->done)
        uv_run(&f->loop, UV_RUN_ONCE);
    curl_easy_cleanup(h);
    curl_slist_free_all(ct);
}

static void pin_to(struct curluv_pin *pin, const struct listener *l)
{
    assert_int_equal(curluv_pin_set(pin, "127.0.0.1", 9, l->port), 0);
}

/* ---------- tests ---------- */

static void test_pin_set(void **state)
{
    struct curluv_pin p;
    (void)state;
    assert_int_equal(curluv_pin_set(&p, "93.184.216.34", 13, 443), 0);
    assert_int_equal(p.addr.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&p.addr)->sin_port), 443);
    assert_int_equal(curluv_pin_set(&p, "[2606:2800::1]", 14, 80), 0);
    assert_int_equal(p.addr.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&p.addr)->sin6_port), 80);
    assert_int_equal(curluv_pin_set(&p, "::1", 3, 8080), 0);
    assert_int_equal(p.addr.ss_family, AF_INET6);
    /* anything but a numeric address and a port in range is refused, never guessed at */
    const char *bad[] = {"", "[]", "name", "[1.2.3.4", "1.2.3.4]", "1.2.3.4.5", "::1%lo", "1.2.3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(curluv_pin_set(&p, bad[i], strlen(bad[i]), 443), -1);
    assert_int_equal(curluv_pin_set(&p, "1.2.3.4", 7, 0), -1);
    assert_int_equal(curluv_pin_set(&p, "1.2.3.4", 7, 65536), -1);
    assert_int_equal(curluv_pin_set(&p, "1.2.3.4x", 7, 443), 0); /* only addrlen bytes count */
}

static void test_pinned_reaches_its_address(void **state)
{
    struct fx *f = *state;
    struct curluv_pin pin;
    char url[64];
    pin_to(&pin, &f->a);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", f->a.port);
    fetch(f, url, &pin, NULL);
    assert_int_equal(f->rc, CURLE_OK);
    assert_int_equal(f->status, 200);
    assert_int_equal(pin.refused, 0);
    assert_int_equal(f->a.answered, 1);
    /* through a connect-to entry that matches, as the enricher sends */
    char ct[96];
    snprintf(url, sizeof url, "http://localhost:%d/y", f->b.port);
    snprintf(ct, sizeof ct, "localhost:%d:127.0.0.1:%d", f->b.port, f->a.port);
    fetch(f, url, &pin, ct);
    assert_int_equal(f->rc, CURLE_OK);
    assert_int_equal(f->a.answered, 2);
    assert_int_equal(f->b.accepted, 0);
    /* a pinned transfer reuses a kept-alive connection to its address */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/z", f->a.port);
    int before = f->a.accepted;
    fetch(f, url, &pin, NULL);
    fetch(f, url, &pin, NULL);
    assert_int_equal(f->rc, CURLE_OK);
    assert_int_equal(f->a.answered, 4);
    assert_true(f->a.accepted <= before + 1);
}

/* The URL names another address and nothing steers curl to the pinned one (a pin whose
 * connect-to or resolve entry was lost): the connection is refused before connect(). */
static void test_other_address_refused(void **state)
{
    struct fx *f = *state;
    struct curluv_pin pin;
    char url[64];
    pin_to(&pin, &f->a);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", f->b.port);
    fetch(f, url, &pin, NULL);
    assert_int_not_equal(f->rc, CURLE_OK);
    assert_int_equal(pin.refused, 1);
    assert_int_equal(f->b.accepted, 0);
    assert_int_equal(f->a.accepted, 0);
}

/* A connect-to entry that does not match the URL's host (another spelling of the name) is
 * skipped by curl, which then resolves the name itself: unpinned, that reaches the address the
 * name resolves to; pinned, it is refused. */
static void test_connect_to_mismatch_refused(void **state)
{
    struct fx *f = *state;
    struct curluv_pin pin;
    char url[64], ct[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", f->b.port);
    snprintf(ct, sizeof ct, "127.0.0.2:%d:127.0.0.1:%d", f->b.port, f->a.port);
    fetch(f, url, NULL, ct); /* what the entry alone would do: curl goes to b */
    assert_int_equal(f->rc, CURLE_OK);
    assert_int_equal(f->b.answered, 1);
    int b_before = f->b.accepted;
    pin_to(&pin, &f->a);
    /* a different path, so only a new connection could serve it... */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/again", f->b.port);
    curluv_close(f->cm, on_curluv_closed, NULL); /* ...no connection to b kept alive */
    f->cm = curluv_new(&f->loop, on_done, f);
    fetch(f, url, &pin, ct);
    assert_int_not_equal(f->rc, CURLE_OK);
    assert_int_equal(pin.refused, 1);
    assert_int_equal(f->b.accepted, b_before);
    assert_int_equal(f->b.answered, 1);
    assert_int_equal(f->a.accepted, 0);
}

/* A kept-alive connection to another address (opened for an earlier pin) is not reused for
 * this transfer: its request never goes out. */
static void test_reused_connection_refused(void **state)
{
    struct fx *f = *state;
    struct curluv_pin pa, pb;
    char url[64];
    pin_to(&pa, &f->a);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", f->a.port);
    fetch(f, url, &pa, NULL);
    assert_int_equal(f->rc, CURLE_OK);
    assert_int_equal(f->a.answered, 1);
    pin_to(&pb, &f->b); /* the check now names b */
    fetch(f, url, &pb, NULL);
    assert_int_not_equal(f->rc, CURLE_OK);
    assert_int_equal(pb.refused, 1);
    assert_int_equal(f->a.answered, 1);
    assert_int_equal(f->a.accepted + f->b.accepted, 1);
    fetch(f, url, &pa, NULL); /* a itself still is */
    assert_int_equal(f->rc, CURLE_OK);
    assert_int_equal(pa.refused, 0);
    assert_int_equal(f->a.answered, 2);
    fetch(f, url, NULL, NULL);
    assert_int_equal(f->rc, CURLE_OK);
}

/* A plain listening socket on 127.0.0.1 (no loop): the kernel completes a handshake into its
 * queue, so a non-blocking accept tells whether anything connected. */
static int plain_listener(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int connected(int lfd)
{
    int c = accept(lfd, NULL, NULL);
    if (c < 0) {
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        return 0;
    }
    close(c);
    return 1;
}

static CURLcode connect_blocking(const char *url, const char *resolve, struct curluv_pin *pin)
{
    CURL *c = curl_easy_init();
    struct curl_slist *r = resolve ? curl_slist_append(NULL, resolve) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_RESOLVE, r);
    curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    httpc_harden(c, 1);
    if (pin)
        curluv_pin_easy(c, pin);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(r);
    return rc;
}

/* A blocking transfer (the workflow runner's broker) pinned with curluv_pin_easy: a resolve
 * entry that does not match the URL's host lets curl connect wherever the URL says; with the
 * pin, that connection is refused and only the pinned address is reached. */
static void test_blocking_transfer_pinned(void **state)
{
    int pa, pb;
    int la = plain_listener(&pa), lb = plain_listener(&pb);
    struct curluv_pin pin;
    char url[64], resolve[96];
    (void)state;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", pb);
    snprintf(resolve, sizeof resolve, "localhost:%d:127.0.0.1", pb); /* another host: skipped */
    assert_int_equal(connect_blocking(url, resolve, NULL), CURLE_OK);
    assert_int_equal(connected(lb), 1);
    assert_int_equal(curluv_pin_set(&pin, "127.0.0.1", 9, pa), 0);
    assert_int_not_equal(connect_blocking(url, resolve, &pin), CURLE_OK);
    assert_int_equal(pin.refused, 1);
    assert_int_equal(connected(lb), 0);
    assert_int_equal(connected(la), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", pa);
    assert_int_equal(connect_blocking(url, NULL, &pin), CURLE_OK);
    assert_int_equal(pin.refused, 0);
    assert_int_equal(connected(la), 1);
    close(la);
    close(lb);
}

int main(void)
{
    log_init("test", 1, LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pin_set),
        cmocka_unit_test_setup_teardown(test_pinned_reaches_its_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_address_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_to_mismatch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_connection_refused, setup, teardown),
        cmocka_unit_test(test_blocking_transfer_pinned),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
