/*
 * tests/unit/libcommon/pg/pg.c - the asynchronous PostgreSQL pool against a real server.
 *
 * Needs DATABASE_URL and fails without it (a skipped database test has tested nothing). Covers
 * plain and parameterised queries (NULL, non-ASCII, invalid UTF-8, 2000 parameters, 16 MB of
 * parameters, the TCP cork around large ones always lifted), 1000 concurrent queries over 4
 * connections (answered once, in order per backend), SQL errors, re-entrant use from callbacks
 * (exec, close, retry storms), LISTEN/NOTIFY, backends killed server-side, the server vanishing
 * and coming back (a TCP proxy in a thread cuts it), an unreachable and a silent server, queue and
 * statement timeouts (the cancel is checked), a full queue, COPY refusal and closing in every
 * state. Every query records how many times its callback ran; tests check exactly once, after the
 * pool is closed and the loop drained, and that the loop then closes cleanly (no handle left
 * behind).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pg.h"
#include "pg_arr.h"
#include "util.h"

static const char *db_url;

/* main() refuses to run without a database, so this only documents the dependency. */
#define NEED_DB() assert_non_null(db_url)

/* ---- loop helpers ---- */

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag becomes non-zero; fails the test after timeout_ms. */
static void run_until(uv_loop_t *loop, const int *flag, int timeout_ms)
{
    uv_timer_t tick;
    uint64_t end = now_mono_ms() + (uint64_t)timeout_ms;

    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    while (!*flag && now_mono_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (!*flag)
        fail_msg("timed out after %d ms", timeout_ms);
}

static void run_for(uv_loop_t *loop, int ms);

/* Runs the loop until *v >= target; fails the test after timeout_ms. */
static void wait_count(uv_loop_t *loop, const int *v, int target, int timeout_ms)
{
    uint64_t end = now_mono_ms() + (uint64_t)timeout_ms;
    while (*v < target && now_mono_ms() < end)
        run_for(loop, 5);
    if (*v < target)
        fail_msg("timed out after %d ms waiting for %d (have %d)", timeout_ms, target, *v);
}

static void run_for(uv_loop_t *loop, int ms)
{
    uv_timer_t tick;
    uint64_t end = now_mono_ms() + (uint64_t)ms;

    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    while (now_mono_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

/* Closes the pool, waits for done, and checks the loop has nothing left. */
static void close_pool(uv_loop_t *loop, struct pg_pool *pool, int timeout_ms)
{
    int closed = 0;
    pg_pool_close(pool, on_closed, &closed);
    run_until(loop, &closed, timeout_ms);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* ---- query recording ---- */

struct rec {
    int calls;
    int ok;
    int status;
    char sqlstate[6];
    char err[256];
    char val[256];
    int val_null;
    int ncols;
    uint64_t at_ms;
    int *counter;
};

static void on_rec(void *arg, PGresult *res, const char *err)
{
    struct rec *r = arg;
    r->calls++;
    r->at_ms = now_mono_ms();
    if (r->counter)
        (*r->counter)++;
    if (err)
        snprintf(r->err, sizeof(r->err), "%s", err);
    if (res) {
        r->status = PQresultStatus(res);
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (st)
            snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", st);
    }
    r->ok = res && !err;
    if (r->ok && PQntuples(res) > 0) {
        r->ncols = PQnfields(res);
        r->val_null = PQgetisnull(res, 0, 0);
        snprintf(r->val, sizeof(r->val), "%s", PQgetvalue(res, 0, 0));
    }
}

static struct pg_pool *pool_open(uv_loop_t *loop, const char *url, int nconns, int qtimeout)
{
    assert_int_equal(uv_loop_init(loop), 0);
    return pg_pool_new(loop, url, nconns, qtimeout);
}

static void wait_up(uv_loop_t *loop, struct pg_pool *pool)
{
    uint64_t end = now_mono_ms() + 10000;
    while (!pg_pool_up(pool) && now_mono_ms() < end)
        run_for(loop, 10);
    assert_true(pg_pool_up(pool));
}

/* DATABASE_URL plus application_name, to find this pool's backends from another one. */
static char *url_with_app(const char *app)
{
    if (strncmp(db_url, "postgres", 8) == 0)
        return xasprintf("%s%capplication_name=%s", db_url, strchr(db_url, '?') ? '&' : '?', app);
    return xasprintf("%s application_name=%s", db_url, app);
}

static int closed_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A socket that listens but never accepts nor answers: connects hang in the startup phase. */
static int silent_server(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- a TCP proxy in front of the server, to take it away and bring it back ---- */

enum { PROXY_UP, PROXY_DOWN };
#define PROXY_MAX_PAIRS 64

struct proxy {
    int lfd;
    int port;
    struct sockaddr_storage target;
    socklen_t target_len;
    int mode;
    int stop;
    int pairs[PROXY_MAX_PAIRS][2];
    int npairs;
    pthread_t th;
};

static void proxy_drop_pair(struct proxy *p, int i)
{
    close(p->pairs[i][0]);
    close(p->pairs[i][1]);
    p->pairs[i][0] = p->pairs[p->npairs - 1][0];
    p->pairs[i][1] = p->pairs[p->npairs - 1][1];
    p->npairs--;
}

static int write_all(int fd, const char *b, ssize_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, (size_t)n);
        if (w <= 0)
            return -1;
        b += w;
        n -= w;
    }
    return 0;
}

static void proxy_accept(struct proxy *p)
{
    int fd = accept(p->lfd, NULL, NULL);
    if (fd < 0)
        return;
    if (__atomic_load_n(&p->mode, __ATOMIC_SEQ_CST) == PROXY_DOWN || p->npairs == PROXY_MAX_PAIRS) {
        close(fd); /* the server "is not there": the client sees the connection closed */
        return;
    }
    int up = socket(p->target.ss_family, SOCK_STREAM, 0);
    if (up < 0 || connect(up, (struct sockaddr *)&p->target, p->target_len) != 0) {
        close(fd);
        if (up >= 0)
            close(up);
        return;
    }
    p->pairs[p->npairs][0] = fd;
    p->pairs[p->npairs][1] = up;
    p->npairs++;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    char buf[65536];

    while (!__atomic_load_n(&p->stop, __ATOMIC_SEQ_CST)) {
        struct pollfd pf[1 + 2 * PROXY_MAX_PAIRS];
        int n = 0;
        if (__atomic_load_n(&p->mode, __ATOMIC_SEQ_CST) == PROXY_DOWN)
            while (p->npairs > 0)
                proxy_drop_pair(p, 0);
        pf[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (int i = 0; i < p->npairs; i++) {
            pf[n++] = (struct pollfd){.fd = p->pairs[i][0], .events = POLLIN};
            pf[n++] = (struct pollfd){.fd = p->pairs[i][1], .events = POLLIN};
        }
        if (poll(pf, (nfds_t)n, 10) <= 0)
            continue;
        /* Backwards, so that the pair moved into a dropped slot was already served. */
        for (int i = (n - 1) / 2 - 1; i >= 0; i--) {
            int drop = 0;
            for (int side = 0; side < 2 && !drop; side++) {
                if (!pf[1 + 2 * i + side].revents)
                    continue;
                ssize_t r = read(p->pairs[i][side], buf, sizeof(buf));
                drop = r <= 0 || write_all(p->pairs[i][!side], buf, r) != 0;
            }
            if (drop)
                proxy_drop_pair(p, i);
        }
        if (pf[0].revents)
            proxy_accept(p);
    }
    while (p->npairs > 0)
        proxy_drop_pair(p, 0);
    return NULL;
}

/* Starts a proxy to the server of db_url; returns a conninfo pointing at it, or NULL when the
 * server is not reached over TCP. */
static char *proxy_start(struct proxy *p)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(db_url, &errmsg);
    const char *host = "localhost", *port = "5432";
    struct buf ci;

    assert_non_null(opts);
    buf_init(&ci);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0) {
            host = o->val;
            continue;
        }
        if (strcmp(o->keyword, "port") == 0) {
            port = o->val;
            continue;
        }
        buf_printf(&ci, "%s='", o->keyword);
        for (const char *c = o->val; *c; c++) {
            if (*c == '\'' || *c == '\\')
                buf_puts(&ci, "\\");
            buf_append(&ci, c, 1);
        }
        buf_puts(&ci, "' ");
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (host[0] == '/' || getaddrinfo(host, port, &hints, &ai) != 0) {
        PQconninfoFree(opts);
        buf_destroy(&ci);
        return NULL;
    }
    memset(p, 0, sizeof(*p));
    memcpy(&p->target, ai->ai_addr, ai->ai_addrlen);
    p->target_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    PQconninfoFree(opts);
    p->lfd = silent_server(&p->port);
    buf_printf(&ci, "host=127.0.0.1 port=%d", p->port);
    assert_int_equal(pthread_create(&p->th, NULL, proxy_main, p), 0);
    return ci.data;
}

static void proxy_set(struct proxy *p, int mode)
{
    __atomic_store_n(&p->mode, mode, __ATOMIC_SEQ_CST);
}

static void proxy_stop(struct proxy *p)
{
    __atomic_store_n(&p->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(p->th, NULL);
    close(p->lfd);
}

/* Load that keeps `depth` queries outstanding until `total` have been issued. */
struct load {
    struct pg_pool *pool;
    int issued, total, answered;
    int ok, lost, unavailable, busy, other;
    int *calls; /* per query */
    uint64_t last_ok_ms;
};

struct load_q {
    struct load *l;
    int i;
};

static void load_issue(struct load *l);

static void on_load(void *arg, PGresult *res, const char *err)
{
    struct load_q *lq = arg;
    struct load *l = lq->l;
    l->calls[lq->i]++;
    l->answered++;
    if (!err) {
        assert_int_equal(atoi(PQgetvalue(res, 0, 0)), lq->i);
        l->ok++;
        l->last_ok_ms = now_mono_ms();
    } else if (strncmp(err, "connection lost", 15) == 0) {
        l->lost++;
    } else if (strcmp(err, "database unavailable") == 0) {
        l->unavailable++;
    } else if (strcmp(err, "database busy: queue timeout") == 0) {
        /* the pool was up for the whole wait but every connection was taken: on a loaded
         * machine the 40 queries in flight can outwait the 500 ms queue timeout */
        l->busy++;
    } else {
        print_message("unexpected error: %s\n", err);
        l->other++;
    }
    free(lq);
    load_issue(l);
}

static void load_issue(struct load *l)
{
    if (l->issued >= l->total)
        return;
    struct load_q *lq = xmalloc(sizeof(*lq));
    char num[16];
    const char *v[] = {num};
    lq->l = l;
    lq->i = l->issued++;
    snprintf(num, sizeof(num), "%d", lq->i);
    /* A mix of instant and slower queries, so outages catch some in flight. */
    const char *sql = lq->i % 7 == 0 ? "SELECT $1::int, pg_sleep(0.02)" : "SELECT $1::int";
    assert_int_equal(pg_exec(l->pool, sql, 1, v, on_load, lq), 0);
}

/* ---- tests ---- */

static void test_invalid_args(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, "host=127.0.0.1 port=1", 1, 100);
    struct rec r = {0};
    const char *v[1] = {"x"};
    assert_int_equal(pg_exec(pool, NULL, 0, NULL, on_rec, &r), -1);
    assert_int_equal(pg_exec(pool, "SELECT 1", 0, NULL, NULL, &r), -1);
    assert_int_equal(pg_exec(pool, "SELECT 1", -1, v, on_rec, &r), -1);
    assert_int_equal(pg_exec(pool, "SELECT 1", 1, NULL, on_rec, &r), -1);
    assert_int_equal(pg_exec(pool, "SELECT 1", PG_MAX_PARAMS + 1, v, on_rec, &r), -1);
    close_pool(&loop, pool, 2000);
    assert_int_equal(r.calls, 0);
}

static void test_simple(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 2, 5000);
    struct rec r = {0}, c = {0};

    assert_int_equal(pg_exec(pool, "SELECT 1 + 1", 0, NULL, on_rec, &r), 0);
    assert_int_equal(r.calls, 0); /* never synchronous */
    run_until(&loop, &r.calls, 10000);
    assert_true(r.ok);
    assert_int_equal(r.status, PGRES_TUPLES_OK);
    assert_string_equal(r.val, "2");
    assert_true(pg_pool_up(pool));

    assert_int_equal(pg_exec(pool, "CREATE TEMP TABLE t (x int)", 0, NULL, on_rec, &c), 0);
    run_until(&loop, &c.calls, 10000);
    assert_true(c.ok);
    assert_int_equal(c.status, PGRES_COMMAND_OK);
    assert_int_equal(pg_pool_queued(pool), 0);
    close_pool(&loop, pool, 5000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(c.calls, 1);
}

static void test_params(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 5000);
    const char *nasty =
        "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x9a\x80 '\"; DROP TABLE x; --\\";
    const char *v1[] = {nasty};
    const char *v2[] = {NULL};
    const char *v3[] = {nasty, NULL, "42"};
    const char *bad[] = {"not a number"};
    const char *badutf8[] = {"\xff\xfe"};
    struct rec a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    int n = 0;
    a.counter = b.counter = c.counter = d.counter = e.counter = &n;

    pg_exec(pool, "SELECT $1::text", 1, v1, on_rec, &a);
    pg_exec(pool, "SELECT $1::text", 1, v2, on_rec, &b);
    pg_exec(pool, "SELECT format('%s|%s|%s', length($1::text), $2::text IS NULL, $3::int + 1)", 3,
            v3, on_rec, &c);
    pg_exec(pool, "SELECT $1::int", 1, bad, on_rec, &d);
    pg_exec(pool, "SELECT $1::text", 1, badutf8, on_rec, &e);
    wait_count(&loop, &n, 5, 10000);

    assert_true(a.ok);
    assert_string_equal(a.val, nasty);
    assert_true(b.ok);
    assert_true(b.val_null);
    assert_true(c.ok);
    assert_string_equal(c.val, "37|t|43");
    assert_false(d.ok);
    assert_string_equal(d.sqlstate, "22P02");
    assert_non_null(strstr(d.err, "invalid input syntax"));
    assert_false(e.ok);
    assert_string_equal(e.sqlstate, "22021"); /* invalid byte sequence for UTF8 */
    close_pool(&loop, pool, 5000);
    assert_int_equal(a.calls + b.calls + c.calls + d.calls + e.calls, 5);
}

struct seqrec {
    int calls;
    int seq;
    int got;
    int pid;
    int order; /* position among all callbacks */
};

static int seq_counter;

static void on_seq(void *arg, PGresult *res, const char *err)
{
    struct seqrec *s = arg;
    s->calls++;
    s->order = seq_counter++;
    assert_null(err);
    assert_non_null(res);
    s->got = atoi(PQgetvalue(res, 0, 0));
    s->pid = atoi(PQgetvalue(res, 0, 1));
}

static void test_concurrent_1000(void **state)
{
    (void)state;
    NEED_DB();
    enum { N = 1000 };
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 4, 10000);
    struct seqrec *s = xcalloc(N, sizeof(*s));
    struct rec warm[8] = {{0}};
    int nwarm = 0;

    /* Warm up: 8 sleepers make all four connections come up. */
    for (int i = 0; i < 8; i++) {
        warm[i].counter = &nwarm;
        pg_exec(pool, "SELECT pg_sleep(0.05)", 0, NULL, on_rec, &warm[i]);
    }
    wait_count(&loop, &nwarm, 8, 10000);

    seq_counter = 0;
    for (int i = 0; i < N; i++) {
        char num[16];
        const char *v[] = {num};
        snprintf(num, sizeof(num), "%d", i);
        s[i].seq = i;
        assert_int_equal(pg_exec(pool, "SELECT $1::int, pg_backend_pid()", 1, v, on_seq, &s[i]), 0);
    }
    assert_true(pg_pool_queued(pool) >= N - 4);
    uint64_t t0 = now_mono_ms();
    while (seq_counter < N && now_mono_ms() - t0 < 30000)
        run_for(&loop, 10);
    assert_int_equal(seq_counter, N);

    /* Per backend, callbacks come in queue order. */
    int pids[8] = {0}, last[8], npids = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(s[i].calls, 1);
        assert_int_equal(s[i].got, i);
        int k;
        for (k = 0; k < npids && pids[k] != s[i].pid; k++)
            ;
        if (k == npids) {
            assert_true(npids < 4);
            pids[npids++] = s[i].pid;
            last[k] = -1;
        }
        assert_true(s[i].order > last[k]);
        last[k] = s[i].order;
    }
    print_message("1000 queries over %d backends in %llu ms\n", npids,
                  (unsigned long long)(now_mono_ms() - t0));
    assert_true(npids >= 2);
    close_pool(&loop, pool, 5000);
    for (int i = 0; i < N; i++)
        assert_int_equal(s[i].calls, 1);
    free(s);
}

/* Parameters bigger than the socket buffers (PQflush returns 1) and a big result. */
static void test_large(void **state)
{
    (void)state;
    NEED_DB();
    enum { BIG = 8 * 1024 * 1024 };
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 2, 10000);
    char *big = xmalloc(BIG + 1);
    struct rec a = {0}, b = {0}, c = {0};
    int n = 0;

    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('a' + i % 26);
    big[BIG] = 0;
    const char *v[] = {big, big};
    a.counter = b.counter = c.counter = &n;
    pg_exec(pool, "SELECT length($1) + length($2)", 2, v, on_rec, &a);
    pg_exec(pool, "SELECT length(repeat('x', 8000000))", 0, NULL, on_rec, &b);
    pg_exec(pool, "SELECT md5($1) = md5($2)", 2, v, on_rec, &c);
    free(big); /* the pool copied it */
    wait_count(&loop, &n, 3, 30000);
    assert_true(a.ok);
    assert_int_equal(atoi(a.val), 2 * BIG);
    assert_true(b.ok);
    assert_string_equal(b.val, "8000000");
    assert_true(c.ok);
    assert_string_equal(c.val, "t");
    close_pool(&loop, pool, 5000);
}

/* A query of 8 KB or more of taken parameters goes corked (TCP_CORK), so the uncork must follow
 * every one, also when PQflush() leaves 8 MB to the write watcher: a cork left on holds each
 * later write up to 200 ms in the kernel. Twenty rounds of a large prepared query (two of them
 * 8 MB, the rest 64 KB) each followed by a small one: the small ones' round trips together
 * stay far below the 4 s that twenty such holds would take. */
static void test_large_owned_uncorked(void **state)
{
    (void)state;
    NEED_DB();
    enum { ROUNDS = 20, BIG = 8 * 1024 * 1024, MID = 64 * 1024 };
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 10000);
    /* only a TCP session is corked: over a Unix socket this test would check nothing */
    struct rec tcp = {0};
    int m = 0;
    tcp.counter = &m;
    assert_int_equal(pg_exec(pool, "SELECT inet_server_addr() IS NOT NULL", 0, NULL, on_rec, &tcp), 0);
    wait_count(&loop, &m, 1, 30000);
    assert_true(tcp.ok);
    if (strcmp(tcp.val, "t") != 0)
        fail_msg("the test database is not reached over TCP: nothing is corked, nothing to check");
    uint64_t small_ms = 0, slowest = 0;
    int slow = 0;
    for (int i = 0; i < ROUNDS; i++) {
        size_t len = i % 10 == 0 ? BIG : MID;
        char *v[1] = {xmalloc(len + 1)};
        memset(v[0], 'a' + i % 26, len);
        v[0][len] = 0;
        struct rec big = {0}, small = {0};
        int n = 0;
        big.counter = small.counter = &n;
        assert_int_equal(pg_exec_prepared_owned(pool, "unit_large_owned", "SELECT length($1)", 1, v,
                                                on_rec, &big), 0);
        wait_count(&loop, &n, 1, 30000);
        assert_true(big.ok);
        assert_int_equal(atoi(big.val), (int)len);
        uint64_t t0 = now_mono_ms();
        assert_int_equal(pg_exec(pool, "SELECT 7", 0, NULL, on_rec, &small), 0);
        wait_count(&loop, &n, 2, 30000);
        uint64_t took = small.at_ms - t0;
        small_ms += took;
        slowest = took > slowest ? took : slowest;
        slow += took >= 150; /* a cork left on holds each small query ~200 ms */
        assert_true(small.ok);
        assert_string_equal(small.val, "7");
    }
    printf("%d small queries after corked ones: %llu ms in all, slowest %llu ms, %d of 150 ms or more\n",
           ROUNDS, (unsigned long long)small_ms, (unsigned long long)slowest, slow);
    /* counted per round, so one stall of a loaded box cannot fail it, a cork left on always does */
    assert_true(slow < ROUNDS / 2);
    close_pool(&loop, pool, 5000);
}

/* pg_exec_owned takes its parameters: they are sent as given and freed by the pool (ASan's leak
 * check fails the test otherwise), also when the arguments are refused. */
static void test_owned_params(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 10000);
    struct rec a = {0}, bad = {0};
    int n = 0;
    a.counter = &n;
    char *v[3] = {xstrdup("[1, 2, 3]"), NULL, xstrdup("tail")};
    assert_int_equal(pg_exec_owned(pool, "SELECT jsonb_array_length($1::jsonb) || "
                                         "coalesce($2, '-') || $3", 3, v, on_rec, &a), 0);
    char *refused[1] = {xstrdup("x")};
    assert_int_equal(pg_exec_owned(pool, "SELECT $1", 1, refused, NULL, &bad), -1);
    wait_count(&loop, &n, 1, 30000);
    assert_true(a.ok);
    assert_string_equal(a.val, "3-tail");
    assert_int_equal(bad.calls, 0);
    close_pool(&loop, pool, 5000);
}

/* pg_exec_prepared_owned: the connection prepares the statement once (it is then in the
 * session's pg_prepared_statements) and runs it with each call's parameters; a new session
 * (the backend killed) prepares it again; a bad statement fails its query, and a missing name is
 * refused with the parameters freed. */
static void exec_wait(uv_loop_t *loop, struct pg_pool *pool, const char *sql, struct rec *r)
{
    static int n;
    n = 0;
    memset(r, 0, sizeof *r);
    r->counter = &n;
    assert_int_equal(pg_exec(pool, sql, 0, NULL, on_rec, r), 0);
    wait_count(loop, &n, 1, 30000);
}

static void run_prepared(uv_loop_t *loop, struct pg_pool *pool, const char *name, const char *sql,
                         const char *arg, struct rec *r)
{
    static int n;
    n = 0;
    memset(r, 0, sizeof *r);
    r->counter = &n;
    char *v[2] = {xstrdup("[1, 2]"), xstrdup(arg)};
    assert_int_equal(pg_exec_prepared_owned(pool, name, sql, 2, v, on_rec, r), 0);
    wait_count(loop, &n, 1, 30000);
    run_for(loop, 50); /* a second answer would show now */
    assert_int_equal(r->calls, 1);
}

static void test_prepared_owned(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 10000);
    const char *sql = "SELECT jsonb_array_length($1::jsonb) || $2::text";
    const char *when = "SELECT count(*) || ' ' || max(prepare_time) FROM pg_prepared_statements "
                       "WHERE name = 'unit_prep'";
    struct rec a, b;
    char first[256];
    run_prepared(&loop, pool, "unit_prep", sql, "x", &a);
    assert_true(a.ok);
    assert_string_equal(a.val, "2x");
    exec_wait(&loop, pool, when, &b);
    assert_true(b.ok);
    snprintf(first, sizeof first, "%s", b.val);
    assert_true(!strncmp(first, "1 ", 2));
    run_prepared(&loop, pool, "unit_prep", sql, "y", &a);
    assert_true(a.ok);
    assert_string_equal(a.val, "2y");
    /* prepared once: the second call ran the statement the first prepared */
    exec_wait(&loop, pool, when, &b);
    assert_true(b.ok);
    assert_string_equal(b.val, first);
    /* a statement the session lost (DISCARD) is prepared again on a new session */
    exec_wait(&loop, pool, "DEALLOCATE unit_prep", &b);
    assert_true(b.ok);
    run_prepared(&loop, pool, "unit_prep", sql, "w", &a);
    assert_false(a.ok);
    assert_string_equal(a.sqlstate, "26000");
    run_prepared(&loop, pool, "unit_prep", sql, "v", &a);
    assert_true(a.ok);
    assert_string_equal(a.val, "2v");
    /* the session ends: the next call prepares again on the new one */
    exec_wait(&loop, pool, "SELECT pg_terminate_backend(pg_backend_pid())", &b);
    assert_false(b.ok);
    run_prepared(&loop, pool, "unit_prep", sql, "z", &a);
    assert_true(a.ok);
    assert_string_equal(a.val, "2z");
    close_pool(&loop, pool, 5000);

    pool = pool_open(&loop, db_url, 1, 10000);
    run_prepared(&loop, pool, "unit_prep", "SELECT no_such_function($1::jsonb, $2::text)", "x", &a);
    assert_false(a.ok);
    assert_string_equal(a.sqlstate, "42883");
    /* the failed prepare left the connection in order: the next queries run once each */
    exec_wait(&loop, pool, "SELECT 'plain'", &b);
    assert_true(b.ok);
    assert_string_equal(b.val, "plain");
    run_prepared(&loop, pool, "unit_prep2", sql, "u", &a);
    assert_true(a.ok);
    assert_string_equal(a.val, "2u");
    memset(&b, 0, sizeof b);
    char *refused[1] = {xstrdup("x")};
    assert_int_equal(pg_exec_prepared_owned(pool, NULL, "SELECT $1", 1, refused, on_rec, &b), -1);
    char *refused2[1] = {xstrdup("x")};
    char longname[80];
    memset(longname, 'n', 64);
    longname[64] = 0;
    assert_int_equal(pg_exec_prepared_owned(pool, longname, "SELECT $1", 1, refused2, on_rec, &b), -1);
    assert_int_equal(b.calls, 0);
    close_pool(&loop, pool, 5000);
}

/* pg_exec_prepared_bin: binary arrays (text with U+0001, U+FFFF, a 4-byte character, quotes
 * and backslashes, NULL elements, an empty array; int4, int8, bool, timestamptz) and a text
 * parameter beside them reach the server exactly, twice on one prepared statement; NULL is SQL
 * NULL; bad formats are refused with the values freed (ASan's leak check). */
static void run_bin(uv_loop_t *loop, struct pg_pool *pool, const char *name, const char *sql,
                    int nparams, struct buf *vals, const int *null, const int *formats, struct rec *r)
{
    static int n;
    n = 0;
    memset(r, 0, sizeof *r);
    r->counter = &n;
    char *v[8];
    int len[8];
    for (int i = 0; i < nparams; i++) {
        len[i] = (int)vals[i].len;
        v[i] = null[i] ? NULL : xmalloc(vals[i].len + 1);
        if (v[i])
            memcpy(v[i], vals[i].data, vals[i].len + 1);
    }
    assert_int_equal(pg_exec_prepared_bin(pool, name, sql, nparams, v, len, formats, on_rec, r), 0);
    wait_count(loop, &n, 1, 30000);
    run_for(loop, 50);
    assert_int_equal(r->calls, 1);
}

static void test_prepared_bin(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 10000);
    const char *sql =
        "SELECT ($1::text[] IS NOT DISTINCT FROM ARRAY[E'a\\x01b', NULL, E'\\uFFFF', E'\\U0001F600', "
        "E'q\"\\\\''\\\\', '']::text[])::int::text || ($2::int4[] = '{-7,0,2147483647}')::int || "
        "($3::int8[] = '{-1,9007199254740993}')::int || ($4::bool[] IS NOT DISTINCT FROM '{t,f,NULL}')::int || "
        "($5::timestamptz[] = ARRAY['2024-05-01T12:34:56.789012Z', '1969-12-31T23:59:59Z']::timestamptz[])::int "
        "|| (cardinality($6::text[]) = 0 AND array_ndims($6) IS NULL)::int || coalesce($7::text, 'null') "
        "|| coalesce($8::text, 'null')";
    struct buf vals[8];
    struct pg_arr a;
    for (int i = 0; i < 8; i++)
        buf_init(&vals[i]);
    pg_arr_begin(&a, &vals[0], PG_OID_TEXT);
    pg_arr_text(&a, "a\x01" "b");
    pg_arr_text(&a, NULL);
    pg_arr_text(&a, "\xef\xbf\xbf");
    pg_arr_text(&a, "\xf0\x9f\x98\x80");
    pg_arr_text(&a, "q\"\\'\\");
    pg_arr_text(&a, "");
    assert_int_equal(pg_arr_end(&a), vals[0].len);
    pg_arr_begin(&a, &vals[1], PG_OID_INT4);
    pg_arr_int4(&a, -7);
    pg_arr_int4(&a, 0);
    pg_arr_int4(&a, 2147483647);
    pg_arr_end(&a);
    pg_arr_begin(&a, &vals[2], PG_OID_INT8);
    pg_arr_int8(&a, -1);
    pg_arr_int8(&a, 9007199254740993LL);
    pg_arr_end(&a);
    pg_arr_begin(&a, &vals[3], PG_OID_BOOL);
    pg_arr_bool(&a, 1);
    pg_arr_bool(&a, 0);
    pg_arr_elem(&a, NULL, 0);
    pg_arr_end(&a);
    pg_arr_begin(&a, &vals[4], PG_OID_TIMESTAMPTZ);
    pg_arr_int8(&a, 1714566896789012LL - PG_EPOCH_OFFSET_US);
    pg_arr_int8(&a, -1000000LL - PG_EPOCH_OFFSET_US);
    pg_arr_end(&a);
    pg_arr_begin(&a, &vals[5], PG_OID_TEXT);
    assert_int_equal(pg_arr_end(&a), 12);
    buf_puts(&vals[6], "text \x01 param");
    int formats[8] = {1, 1, 1, 1, 1, 1, 0, 1}, null[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    struct rec r;
    run_bin(&loop, pool, "unit_bin", sql, 8, vals, null, formats, &r);
    if (!r.ok)
        fail_msg("%s %s", r.sqlstate, r.err);
    assert_string_equal(r.val, "111111text \x01 paramnull");
    /* the same statement again, now prepared, with the text parameter NULL */
    null[6] = 1;
    run_bin(&loop, pool, "unit_bin", sql, 8, vals, null, formats, &r);
    assert_true(r.ok);
    assert_string_equal(r.val, "111111nullnull");
    /* an array whose element type is not the declared one fails its query in the server
     * (array_recv checks the element OID: 42804), and the statement stays usable */
    buf_reset(&vals[1]);
    buf_append(&vals[1], vals[0].data, vals[0].len); /* text[] where int4[] is declared */
    run_bin(&loop, pool, "unit_bin", sql, 8, vals, null, formats, &r);
    assert_false(r.ok);
    assert_string_equal(r.sqlstate, "42804");
    /* binary bytes where text is declared: not valid text (22021, the NUL bytes) */
    buf_reset(&vals[1]);
    pg_arr_begin(&a, &vals[1], PG_OID_INT4);
    pg_arr_int4(&a, -7);
    pg_arr_int4(&a, 0);
    pg_arr_int4(&a, 2147483647);
    pg_arr_end(&a);
    formats[6] = 1;
    null[6] = 0;
    buf_reset(&vals[6]);
    buf_append(&vals[6], vals[1].data, vals[1].len);
    run_bin(&loop, pool, "unit_bin", sql, 8, vals, null, formats, &r);
    assert_false(r.ok);
    assert_string_equal(r.sqlstate, "22021");
    formats[6] = 0;
    null[6] = 1;
    /* past the session's PG_MAX_PREPARED names a statement goes unprepared
     * (PQsendQueryParams), its binary formats with it */
    static const char *const fill[] = {"unit_fill0", "unit_fill1", "unit_fill2", "unit_fill3",
                                       "unit_fill4", "unit_fill5", "unit_fill6", "unit_fill7"};
    static int filled;
    filled = 0;
    struct rec fr[8];
    for (int i = 0; i < 8; i++) {
        memset(&fr[i], 0, sizeof fr[i]);
        fr[i].counter = &filled;
        assert_int_equal(pg_exec_prepared_owned(pool, fill[i], "SELECT 1", 0, NULL, on_rec, &fr[i]), 0);
    }
    wait_count(&loop, &filled, 8, 30000);
    run_bin(&loop, pool, "unit_bin_over", sql, 8, vals, null, formats, &r);
    if (!r.ok)
        fail_msg("%s %s", r.sqlstate, r.err);
    assert_string_equal(r.val, "111111nullnull");
    /* a statement the session lost fails once (26000), then the pool opens a new session and
     * the statement is prepared again there, binary formats and all */
    struct rec dr = {0};
    static int dealloc;
    dealloc = 0;
    dr.counter = &dealloc;
    assert_int_equal(pg_exec(pool, "DEALLOCATE ALL", 0, NULL, on_rec, &dr), 0);
    wait_count(&loop, &dealloc, 1, 30000);
    assert_true(dr.ok);
    run_bin(&loop, pool, "unit_bin", sql, 8, vals, null, formats, &r);
    assert_false(r.ok);
    assert_string_equal(r.sqlstate, "26000");
    run_bin(&loop, pool, "unit_bin", sql, 8, vals, null, formats, &r);
    if (!r.ok)
        fail_msg("%s %s", r.sqlstate, r.err);
    assert_string_equal(r.val, "111111nullnull");

    struct rec bad = {0};
    char *v1[1] = {xstrdup("x")};
    int len1[1] = {1}, fmt2[1] = {2}, fmt1[1] = {1}, neg[1] = {-1};
    assert_int_equal(pg_exec_prepared_bin(pool, "unit_bin2", "SELECT $1", 1, v1, len1, fmt2, on_rec, &bad), -1);
    char *v2[1] = {xstrdup("x")};
    assert_int_equal(pg_exec_prepared_bin(pool, "unit_bin2", "SELECT $1", 1, v2, neg, fmt1, on_rec, &bad), -1);
    char *v3[1] = {xstrdup("x")};
    assert_int_equal(pg_exec_prepared_bin(pool, NULL, "SELECT $1", 1, v3, len1, fmt1, on_rec, &bad), -1);
    char *v4[1] = {xstrdup("x")};
    assert_int_equal(pg_exec_prepared_bin(pool, "unit_bin2", "SELECT $1", 1, v4, len1, NULL, on_rec, &bad), -1);
    /* a NULL's format is checked too: the server's Bind refuses a bad one even for NULL */
    char *v5[2] = {xstrdup("x"), NULL};
    int len5[2] = {1, 0}, fmt5[2] = {0, 7};
    assert_int_equal(pg_exec_prepared_bin(pool, "unit_bin2", "SELECT $1, $2", 2, v5, len5, fmt5, on_rec, &bad), -1);
    run_for(&loop, 50);
    assert_int_equal(bad.calls, 0);
    for (int i = 0; i < 8; i++)
        buf_destroy(&vals[i]);
    close_pool(&loop, pool, 5000);
}

/* A LISTEN issued through pg_exec on a query connection: its notifications are dropped, not
 * leaked, and do not disturb the queries that follow. */
static void test_stray_notifications(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 5000);
    struct rec r[4] = {{0}};
    int n = 0;

    for (int i = 0; i < 4; i++)
        r[i].counter = &n;
    pg_exec(pool, "LISTEN pgtest_stray", 0, NULL, on_rec, &r[0]);
    pg_exec(pool, "NOTIFY pgtest_stray, 'a'", 0, NULL, on_rec, &r[1]);
    pg_exec(pool, "NOTIFY pgtest_stray, 'b'", 0, NULL, on_rec, &r[2]);
    pg_exec(pool, "SELECT 'next'", 0, NULL, on_rec, &r[3]);
    wait_count(&loop, &n, 4, 10000);
    for (int i = 0; i < 4; i++)
        assert_true(r[i].ok);
    assert_string_equal(r[3].val, "next");
    close_pool(&loop, pool, 5000);
}

static void test_sql_errors(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 5000);
    struct rec a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    int n = 0;
    a.counter = b.counter = c.counter = d.counter = e.counter = &n;

    pg_exec(pool, "SELECT * FROM no_such_table_pgtest", 0, NULL, on_rec, &a);
    pg_exec(pool, "SELEKT 1", 0, NULL, on_rec, &b);
    pg_exec(pool, "SELECT 1; SELECT 2", 0, NULL, on_rec, &c);
    pg_exec(pool, "", 0, NULL, on_rec, &d);
    pg_exec(pool, "SELECT 'still fine'", 0, NULL, on_rec, &e);
    wait_count(&loop, &n, 5, 10000);

    assert_false(a.ok);
    assert_string_equal(a.sqlstate, "42P01");
    assert_non_null(strstr(a.err, "does not exist"));
    assert_null(strchr(a.err, '\n'));
    assert_int_equal(a.status, PGRES_FATAL_ERROR);
    assert_string_equal(b.sqlstate, "42601");
    assert_string_equal(c.sqlstate, "42601");
    assert_false(d.ok);
    assert_true(d.err[0] != 0);
    assert_true(e.ok);
    assert_string_equal(e.val, "still fine");
    close_pool(&loop, pool, 5000);
    assert_int_equal(a.calls + b.calls + c.calls + d.calls + e.calls, 5);
}

/* Re-entrancy: a chain of queries each issued from the previous one's callback. */
struct chain {
    struct pg_pool *pool;
    int in_exec;
    int left;
    int calls;
    int sync_violations;
    int errors;
};

static void on_chain(void *arg, PGresult *res, const char *err)
{
    struct chain *ch = arg;
    ch->calls++;
    if (ch->in_exec)
        ch->sync_violations++;
    if (err || !res)
        ch->errors++;
    if (--ch->left > 0) {
        ch->in_exec = 1;
        assert_int_equal(pg_exec(ch->pool, "SELECT 1", 0, NULL, on_chain, ch), 0);
        ch->in_exec = 0;
    }
}

static void test_reentrant(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 2, 5000);
    struct chain ch = {.pool = pool, .left = 50};

    ch.in_exec = 1;
    pg_exec(pool, "SELECT 1", 0, NULL, on_chain, &ch);
    ch.in_exec = 0;
    uint64_t end = now_mono_ms() + 10000;
    while (ch.left > 0 && now_mono_ms() < end)
        run_for(&loop, 10);
    assert_int_equal(ch.calls, 50);
    assert_int_equal(ch.errors, 0);
    assert_int_equal(ch.sync_violations, 0);
    close_pool(&loop, pool, 5000);
    assert_int_equal(ch.calls, 50);
}

/* Failures are never delivered synchronously either, even when the pool can not connect. */
static void test_reentrant_failures(void **state)
{
    (void)state;
    char *url = xasprintf("host=127.0.0.1 port=%d connect_timeout=2", closed_port());
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, url, 1, 50);
    struct chain ch = {.pool = pool, .left = 5};

    ch.in_exec = 1;
    pg_exec(pool, "SELECT 1", 0, NULL, on_chain, &ch);
    ch.in_exec = 0;
    uint64_t end = now_mono_ms() + 5000;
    while (ch.left > 0 && now_mono_ms() < end)
        run_for(&loop, 10);
    assert_int_equal(ch.calls, 5);
    assert_int_equal(ch.errors, 5);
    assert_int_equal(ch.sync_violations, 0);
    close_pool(&loop, pool, 2000);
    free(url);
}

struct notes {
    int resets;
    int count;
    char channel[64];
    char payload[256];
};

static void on_note(void *arg, const char *channel, const char *payload)
{
    struct notes *n = arg;
    if (!payload) {
        n->resets++;
        return;
    }
    n->count++;
    snprintf(n->channel, sizeof(n->channel), "%s", channel);
    snprintf(n->payload, sizeof(n->payload), "%s", payload);
}

static void test_listen_notify(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 5000);
    struct notes n1 = {0}, n2 = {0}, other = {0};
    const char *chan = "Calseta \"Chan\" x";
    const char *v[] = {chan, "payload \xc3\xbc 1"};
    struct rec r = {0};

    pg_pool_listen(pool, chan, on_note, &n1);
    pg_pool_listen(pool, "pgtest_other", on_note, &other);
    run_until(&loop, &n1.resets, 10000);
    assert_int_equal(n1.resets, 1);
    assert_int_equal(other.resets, 1);

    pg_exec(pool, "SELECT pg_notify($1, $2)", 2, v, on_rec, &r);
    run_until(&loop, &n1.count, 10000);
    run_until(&loop, &r.calls, 10000); /* the notification may come before the result */
    assert_true(r.ok);
    assert_string_equal(n1.channel, chan);
    assert_string_equal(n1.payload, "payload \xc3\xbc 1");
    assert_int_equal(other.count, 0);

    /* A second listener on the same channel, added later. */
    pg_pool_listen(pool, chan, on_note, &n2);
    run_until(&loop, &n2.resets, 10000);
    v[1] = "two";
    memset(&r, 0, sizeof(r));
    pg_exec(pool, "SELECT pg_notify($1, $2)", 2, v, on_rec, &r);
    run_until(&loop, &n2.count, 10000);
    wait_count(&loop, &n1.count, 2, 10000);
    assert_string_equal(n2.payload, "two");
    assert_string_equal(n1.payload, "two");
    assert_int_equal(n1.resets, 1);
    close_pool(&loop, pool, 5000);
    assert_int_equal(n1.count, 2);
    assert_int_equal(other.count, 0);
}

static void test_killed_backends(void **state)
{
    (void)state;
    NEED_DB();
    char *vurl = url_with_app("pgtest_victim");
    uv_loop_t loop;
    struct pg_pool *victim = pool_open(&loop, vurl, 2, 5000);
    struct pg_pool *killer = pg_pool_new(&loop, db_url, 1, 5000);
    struct rec sleeper = {0}, kill = {0};
    struct notes n = {0};

    pg_pool_listen(victim, "pgtest_kill", on_note, &n);
    run_until(&loop, &n.resets, 10000);
    wait_up(&loop, victim);

    pg_exec(victim, "SELECT pg_sleep(30)", 0, NULL, on_rec, &sleeper);
    run_for(&loop, 200);
    assert_int_equal(sleeper.calls, 0);
    pg_exec(killer,
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE application_name = 'pgtest_victim'",
            0, NULL, on_rec, &kill);
    run_until(&loop, &kill.calls, 10000);
    assert_true(kill.ok);
    assert_string_equal(kill.val, "3"); /* two query connections and the listener */
    run_until(&loop, &sleeper.calls, 5000);
    assert_false(sleeper.ok);
    assert_null(strchr(sleeper.err, '\n'));
    assert_memory_equal(sleeper.err, "connection lost", 15);

    /* The pool comes back by itself; a later query succeeds. */
    uint64_t end = now_mono_ms() + 10000;
    struct rec after = {0};
    while (now_mono_ms() < end) {
        memset(&after, 0, sizeof(after));
        pg_exec(victim, "SELECT 'back'", 0, NULL, on_rec, &after);
        run_until(&loop, &after.calls, 10000);
        if (after.ok)
            break;
        assert_memory_equal(after.err, "connection lost", 15);
        run_for(&loop, 50);
    }
    assert_true(after.ok);
    assert_string_equal(after.val, "back");

    /* The listener is re-established and told that it may have missed notifications. */
    wait_count(&loop, &n.resets, 2, 10000);
    assert_int_equal(n.resets, 2);
    const char *v[] = {"pgtest_kill", "after"};
    struct rec r = {0};
    pg_exec(killer, "SELECT pg_notify($1, $2)", 2, v, on_rec, &r);
    run_until(&loop, &n.count, 10000);
    assert_string_equal(n.payload, "after");

    int closed = 0;
    pg_pool_close(killer, on_closed, &closed);
    run_until(&loop, &closed, 5000);
    close_pool(&loop, victim, 5000);
    assert_int_equal(sleeper.calls, 1);
    free(vurl);
}

static void test_unreachable(void **state)
{
    (void)state;
    char *url = xasprintf("postgresql://nobody@127.0.0.1:%d/none", closed_port());
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, url, 2, 500);
    struct rec r[3] = {{0}};
    int n = 0;
    uint64_t t0 = now_mono_ms();

    for (int i = 0; i < 3; i++) {
        r[i].counter = &n;
        assert_int_equal(pg_exec(pool, "SELECT 1", 0, NULL, on_rec, &r[i]), 0);
    }
    assert_int_equal(pg_pool_queued(pool), 3);
    while (n < 3 && now_mono_ms() - t0 < 5000)
        run_for(&loop, 10);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(r[i].err, "database unavailable");
        assert_true(r[i].at_ms - t0 >= 450);
        assert_true(r[i].at_ms - t0 < 1500);
    }
    assert_false(pg_pool_up(pool));
    assert_int_equal(pg_pool_queued(pool), 0);
    t0 = now_mono_ms();
    close_pool(&loop, pool, 2000);
    assert_true(now_mono_ms() - t0 < 1000);
    free(url);
}

/* A server that accepts TCP but never answers: the connect timeout abandons the attempt. */
static void test_silent_server(void **state)
{
    (void)state;
    int port;
    int fd = silent_server(&port);
    char *url = xasprintf("host=127.0.0.1 port=%d user=x dbname=y", port);
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, url, 1, 400);
    struct rec r = {0};

    pg_pool_set_connect_timeout(pool, 200);
    pg_exec(pool, "SELECT 1", 0, NULL, on_rec, &r);
    run_until(&loop, &r.calls, 3000);
    assert_string_equal(r.err, "database unavailable");
    run_for(&loop, 500); /* a few more timed-out attempts */
    assert_false(pg_pool_up(pool));
    uint64_t t0 = now_mono_ms();
    close_pool(&loop, pool, 2000); /* while a connect attempt is pending */
    assert_true(now_mono_ms() - t0 < 1000);
    close(fd);
    free(url);
}

static void test_queue_full(void **state)
{
    (void)state;
    char *url = xasprintf("host=127.0.0.1 port=%d", closed_port());
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, url, 1, 300);
    struct rec r[10] = {{0}};
    int n = 0;

    pg_pool_set_queue_max(pool, 5);
    for (int i = 0; i < 10; i++) {
        r[i].counter = &n;
        assert_int_equal(pg_exec(pool, "SELECT 1", 0, NULL, on_rec, &r[i]), 0);
    }
    assert_int_equal(pg_pool_queued(pool), 5);
    run_for(&loop, 50);
    assert_int_equal(n, 5);
    for (int i = 5; i < 10; i++)
        assert_string_equal(r[i].err, "queue full");
    wait_count(&loop, &n, 10, 5000);
    for (int i = 0; i < 5; i++)
        assert_string_equal(r[i].err, "database unavailable");
    close_pool(&loop, pool, 2000);
    free(url);
}

/* All connections busy longer than the queue timeout: "database busy", not "unavailable". */
static void test_queue_timeout_busy(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 300);
    struct rec slow = {0}, waiting = {0};

    wait_up(&loop, pool);
    uint64_t t0 = now_mono_ms();
    pg_exec(pool, "SELECT pg_sleep(1)", 0, NULL, on_rec, &slow);
    pg_exec(pool, "SELECT 1", 0, NULL, on_rec, &waiting);
    run_until(&loop, &waiting.calls, 5000);
    assert_string_equal(waiting.err, "database busy: queue timeout");
    assert_true(waiting.at_ms - t0 >= 290 && waiting.at_ms - t0 < 2000);
    run_until(&loop, &slow.calls, 5000);
    assert_true(slow.ok);
    close_pool(&loop, pool, 5000);
}

static void test_query_timeout(void **state)
{
    (void)state;
    NEED_DB();
    char *url = url_with_app("pgtest_timeout");
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, url, 1, 5000);
    struct pg_pool *watcher = pg_pool_new(&loop, db_url, 1, 5000);
    struct rec slow = {0}, fast = {0}, queued = {0};

    wait_up(&loop, pool);
    uint64_t t0 = now_mono_ms();
    pg_exec_timeout(pool, "SELECT pg_sleep(30)", 0, NULL, 300, on_rec, &slow);
    pg_exec(pool, "SELECT 'queued behind'", 0, NULL, on_rec, &queued);
    run_until(&loop, &slow.calls, 5000);
    assert_string_equal(slow.err, "query timeout");
    assert_true(slow.at_ms - t0 >= 290 && slow.at_ms - t0 < 2000);
    run_until(&loop, &queued.calls, 5000);
    assert_true(queued.ok);
    assert_string_equal(queued.val, "queued behind");

    pg_exec_timeout(pool, "SELECT 'fast'", 0, NULL, 5000, on_rec, &fast);
    run_until(&loop, &fast.calls, 5000);
    assert_true(fast.ok);

    /* The cancel request stopped the sleeping backend. */
    uint64_t end = now_mono_ms() + 5000;
    struct rec chk = {0};
    while (now_mono_ms() < end) {
        memset(&chk, 0, sizeof(chk));
        pg_exec(watcher,
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
                "AND application_name = 'pgtest_timeout'",
                0, NULL, on_rec, &chk);
        run_until(&loop, &chk.calls, 5000);
        if (strcmp(chk.val, "0") == 0)
            break;
        run_for(&loop, 50);
    }
    assert_string_equal(chk.val, "0");

    int closed = 0;
    pg_pool_close(watcher, on_closed, &closed);
    run_until(&loop, &closed, 5000);
    close_pool(&loop, pool, 5000);
    assert_int_equal(slow.calls, 1);
    free(url);
}

static void test_copy_refused(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 5000);
    struct rec a = {0}, b = {0};

    pg_exec(pool, "COPY (SELECT 1) TO STDOUT", 0, NULL, on_rec, &a);
    pg_exec(pool, "SELECT 'after copy'", 0, NULL, on_rec, &b);
    run_until(&loop, &a.calls, 5000);
    assert_string_equal(a.err, "COPY is not supported");
    run_until(&loop, &b.calls, 5000);
    assert_true(b.ok);
    assert_string_equal(b.val, "after copy");
    close_pool(&loop, pool, 5000);
}

/* Closing with work queued: running query finishes, queued ones and late ones are refused. */
struct closer {
    struct pg_pool *pool;
    struct rec late;
    int closed;
    int done_after_all;
    int *n;
};

static void on_late(void *arg, PGresult *res, const char *err)
{
    struct closer *cl = arg;
    on_rec(&cl->late, res, err);
}

static void on_first(void *arg, PGresult *res, const char *err)
{
    struct closer *cl = arg;
    (*cl->n)++;
    assert_null(err);
    assert_non_null(res);
    /* Re-entrant exec during shutdown gets "shutting down", later. */
    assert_int_equal(pg_exec(cl->pool, "SELECT 1", 0, NULL, on_late, cl), 0);
    assert_int_equal(cl->late.calls, 0);
}

static void on_close_done(void *arg)
{
    struct closer *cl = arg;
    cl->closed++;
    cl->done_after_all = *cl->n == 21 && cl->late.calls == 1;
}

static void test_close_with_queued(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 5000);
    struct closer cl = {.pool = pool};
    struct rec r[20] = {{0}};
    int n = 0;

    cl.n = &n;
    wait_up(&loop, pool);
    pg_exec(pool, "SELECT pg_sleep(0.2)", 0, NULL, on_first, &cl);
    for (int i = 0; i < 20; i++) {
        r[i].counter = &n;
        pg_exec(pool, "SELECT 1", 0, NULL, on_rec, &r[i]);
    }
    pg_pool_close(pool, on_close_done, &cl);
    assert_int_equal(n, 0);
    run_until(&loop, &cl.closed, 5000);
    assert_int_equal(cl.closed, 1);
    assert_true(cl.done_after_all);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_string_equal(r[i].err, "shutting down");
    }
    assert_string_equal(cl.late.err, "shutting down");
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* pg_pool_close from inside a result callback, with queries still running elsewhere. */
static void on_close_inside(void *arg, PGresult *res, const char *err)
{
    struct closer *cl = arg;
    (void)res;
    (void)err;
    (*cl->n)++;
    pg_pool_close(cl->pool, on_closed, &cl->closed);
}

static void test_close_from_callback(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 3, 5000);
    struct closer cl = {.pool = pool};
    struct rec r[10] = {{0}};
    int n = 0;

    cl.n = &n;
    wait_up(&loop, pool);
    pg_exec(pool, "SELECT 1", 0, NULL, on_close_inside, &cl);
    for (int i = 0; i < 10; i++) {
        r[i].counter = &n;
        pg_exec(pool, "SELECT pg_sleep(0.05)", 0, NULL, on_rec, &r[i]);
    }
    run_until(&loop, &cl.closed, 5000);
    assert_int_equal(n, 11);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_true(r[i].ok || strcmp(r[i].err, "shutting down") == 0);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Closing right after creation, before the loop ever ran, and with a bad conninfo. */
static void test_close_at_once(void **state)
{
    (void)state;
    const char *infos[] = {db_url ? db_url : "host=127.0.0.1 port=1", "postgresql://[bad",
                           "no_such_option=1"};
    for (size_t i = 0; i < sizeof(infos) / sizeof(infos[0]); i++) {
        uv_loop_t loop;
        struct pg_pool *pool = pool_open(&loop, infos[i], 3, 200);
        struct rec r = {0};
        pg_pool_listen(pool, "pgtest_at_once", on_note, &(struct notes){0});
        pg_exec(pool, "SELECT 1", 0, NULL, on_rec, &r);
        if (i > 0) { /* a conninfo that can never work fails like an unreachable server */
            run_until(&loop, &r.calls, 3000);
            assert_string_equal(r.err, "database unavailable");
        }
        close_pool(&loop, pool, 3000);
        assert_int_equal(r.calls, 1);
        if (i == 0)
            assert_string_equal(r.err, "shutting down");
    }
}

/* Closing while connections are still being attempted: queued queries get "shutting down". */
static void test_close_while_unreachable(void **state)
{
    (void)state;
    char *url = xasprintf("host=127.0.0.1 port=%d", closed_port());
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, url, 2, 5000);
    struct rec r[3] = {{0}};

    for (int i = 0; i < 3; i++)
        pg_exec(pool, "SELECT 1", 0, NULL, on_rec, &r[i]);
    run_for(&loop, 300); /* a few refused attempts and backoffs */
    assert_int_equal(r[0].calls, 0);
    close_pool(&loop, pool, 2000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_string_equal(r[i].err, "shutting down");
    }
    free(url);
}

/* A notification callback that closes the pool. */
struct note_closer {
    struct pg_pool *pool;
    int resets, notes, closed;
};

static void on_note_close(void *arg, const char *channel, const char *payload)
{
    struct note_closer *nc = arg;
    (void)channel;
    if (!payload) {
        nc->resets++;
        return;
    }
    nc->notes++;
    if (nc->notes == 1)
        pg_pool_close(nc->pool, on_closed, &nc->closed);
}

static void test_close_from_notification(void **state)
{
    (void)state;
    NEED_DB();
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 5000);
    struct note_closer nc = {.pool = pool};
    struct rec r = {0};

    pg_pool_listen(pool, "pgtest_close_note", on_note_close, &nc);
    run_until(&loop, &nc.resets, 10000);
    pg_exec(pool, "SELECT pg_notify('pgtest_close_note', 'a'), pg_notify('pgtest_close_note', 'b')",
            0, NULL, on_rec, &r);
    run_until(&loop, &nc.closed, 10000);
    assert_int_equal(r.calls, 1);
    assert_true(nc.notes >= 1);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Many parameters in one statement. */
static void test_many_params(void **state)
{
    (void)state;
    NEED_DB();
    enum { NP = 2000 };
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, db_url, 1, 5000);
    struct buf sql;
    char **vals = xcalloc(NP, sizeof(char *));
    struct rec r = {0};

    buf_init(&sql);
    buf_puts(&sql, "SELECT 0");
    for (int i = 0; i < NP; i++) {
        buf_printf(&sql, " + coalesce($%d::int, 0)", i + 1);
        vals[i] = i % 10 == 9 ? NULL : xasprintf("%d", i);
    }
    pg_exec(pool, sql.data, NP, (const char *const *)vals, on_rec, &r);
    for (int i = 0; i < NP; i++)
        free(vals[i]);
    free(vals);
    buf_destroy(&sql);
    run_until(&loop, &r.calls, 10000);
    assert_true(r.ok);
    long expect = 0;
    for (int i = 0; i < NP; i++)
        expect += i % 10 == 9 ? 0 : i;
    assert_int_equal(atol(r.val), expect);
    close_pool(&loop, pool, 5000);
}

/* A caller that retries at once on every failure must not keep the loop to itself. */
struct retrier {
    struct pg_pool *pool;
    int failures;
    int iterations_at_last;
};

static void on_check_count(uv_check_t *h)
{
    (*(int *)h->data)++;
}

static int loop_iterations;

static void on_retry(void *arg, PGresult *res, const char *err)
{
    struct retrier *rt = arg;
    (void)res;
    assert_non_null(err);
    rt->failures++;
    rt->iterations_at_last = loop_iterations;
    if (rt->failures < 200)
        pg_exec(rt->pool, "SELECT 1", 0, NULL, on_retry, rt);
}

static void test_retry_storm(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, "host=127.0.0.1 port=1", 1, 5000);
    struct retrier rt = {.pool = pool};
    uv_check_t check;
    int closed = 0;

    loop_iterations = 0;
    uv_check_init(&loop, &check);
    check.data = &loop_iterations;
    uv_check_start(&check, on_check_count);
    pg_exec(pool, "SELECT 1", 0, NULL, on_retry, &rt);
    pg_pool_close(pool, on_closed, &closed); /* every retry now fails with "shutting down" */
    run_until(&loop, &closed, 5000);
    assert_int_equal(rt.failures, 200);
    assert_true(rt.iterations_at_last >= 150); /* about one retry per loop iteration */
    uv_close((uv_handle_t *)&check, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_server_goes_away_and_back(void **state)
{
    (void)state;
    NEED_DB();
    /* On the heap: if an assertion fails, the proxy thread must not read a dead stack frame. */
    struct proxy *px = xcalloc(1, sizeof(*px));
    char *url = proxy_start(px);
    if (!url) {
        free(px);
        fail_msg("cannot start the local TCP proxy this test drives");
    }
    uv_loop_t loop;
    struct pg_pool *pool = pool_open(&loop, url, 4, 500);
    struct load l = {.pool = pool, .total = 6000};
    struct notes n = {0};

    l.calls = xcalloc((size_t)l.total, sizeof(int));
    pg_pool_listen(pool, "pgtest_proxy", on_note, &n);
    wait_count(&loop, &n.resets, 1, 10000);
    wait_up(&loop, pool);
    for (int i = 0; i < 40; i++)
        load_issue(&l);

    for (int round = 0; round < 3; round++) {
        run_for(&loop, 300);
        proxy_set(px, PROXY_DOWN);
        run_for(&loop, 150);
        assert_false(pg_pool_up(pool));
        run_for(&loop, 550 + 200 * round); /* longer than the queue timeout */
        proxy_set(px, PROXY_UP);
        /* Back within the longest backoff, the listener told it may have missed some. */
        wait_count(&loop, &n.resets, round + 2, PG_BACKOFF_MAX_MS + 2000);
        wait_up(&loop, pool); /* query connections back too (their own backoff) */
    }
    uint64_t tend = now_mono_ms() + 60000;
    while (l.answered < l.total && now_mono_ms() < tend)
        run_for(&loop, 100);
    if (l.answered < l.total)
        fail_msg("stalled: issued %d answered %d queued %zu up %d", l.issued, l.answered,
                 pg_pool_queued(pool), pg_pool_up(pool));
    print_message("%d ok, %d connection lost, %d unavailable, %d busy\n", l.ok, l.lost,
                  l.unavailable, l.busy);
    assert_int_equal(l.other, 0);
    assert_true(l.lost > 0);
    assert_true(l.unavailable > 0);
    assert_true(l.ok > l.total / 2);
    assert_true(pg_pool_up(pool));
    assert_int_equal(n.resets, 4);

    close_pool(&loop, pool, 5000);
    for (int i = 0; i < l.total; i++)
        assert_int_equal(l.calls[i], 1);
    proxy_stop(px);
    free(px);
    free(l.calls);
    free(url);
}

int main(void)
{
    db_url = getenv("DATABASE_URL");
    if (!db_url || !*db_url) {
        /* A database test that passes without a database has tested nothing. */
        fprintf(stderr, "pg tests: DATABASE_URL is not set (scripts/pg.sh start prints one)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_concurrent_1000),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_owned_params),
        cmocka_unit_test(test_large_owned_uncorked),
        cmocka_unit_test(test_prepared_owned),
        cmocka_unit_test(test_prepared_bin),
        cmocka_unit_test(test_stray_notifications),
        cmocka_unit_test(test_sql_errors),
        cmocka_unit_test(test_reentrant),
        cmocka_unit_test(test_reentrant_failures),
        cmocka_unit_test(test_listen_notify),
        cmocka_unit_test(test_killed_backends),
        cmocka_unit_test(test_server_goes_away_and_back),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_silent_server),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_queue_timeout_busy),
        cmocka_unit_test(test_query_timeout),
        cmocka_unit_test(test_copy_refused),
        cmocka_unit_test(test_close_with_queued),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_close_at_once),
        cmocka_unit_test(test_close_while_unreachable),
        cmocka_unit_test(test_close_from_notification),
        cmocka_unit_test(test_many_params),
        cmocka_unit_test(test_retry_storm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
