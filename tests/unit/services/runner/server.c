/*
 * server.c - tests of services/runner/server.c with the real client (libcommon/bus/runner_client.c):
 * a zygote and runner_serve() on a loopback port in a thread, the client on a libuv loop.
 * Validation errors, a successful run with secrets and logs, a run killed at its deadline,
 * concurrent requests matched to their ids, a garbage request that is refused while the server
 * keeps serving, UNSENT against an endpoint nobody serves, and free with requests
 * pending (callbacks run with CLOSED).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>
#include <zmq.h>

#include "bus.h"
#include "config.h"
#include "runner.h"
#include "runner_client.h"

static struct zygote *zyg;
static char endpoint[64];
static char data_dir[] = "/tmp/calseta-runner-unit-XXXXXX";
static struct config cfg; /* only data_dir: the runner link's CURVE pair is made there */
static volatile int stop;
static pthread_t server_thread;

struct outcome {
    int done;
    int status;
    int ok;
    int nerrors;
    int first_line;
    char message[512];
    char data[512];
    char log[2048];
    enum runner_status run_status;
};

static void on_validate(void *arg, int status, const struct runner_validation *v)
{
    struct outcome *o = arg;
    o->done = 1;
    o->status = status;
    if (v) {
        o->ok = v->ok;
        o->nerrors = (int)v->nerrors;
        o->first_line = v->nerrors ? v->errors[0].line : -1;
        snprintf(o->message, sizeof o->message, "%s", v->nerrors ? v->errors[0].message : "");
    }
}

static void on_run(void *arg, int status, const struct runner_result *r)
{
    struct outcome *o = arg;
    o->done = 1;
    o->status = status;
    if (r) {
        o->ok = r->success;
        o->run_status = r->status;
        snprintf(o->message, sizeof o->message, "%s", r->message);
        snprintf(o->data, sizeof o->data, "%s", r->data_json);
        snprintf(o->log, sizeof o->log, "%s", r->log_output);
    }
}

static void wait_all(uv_loop_t *loop, struct outcome *o, int n)
{
    for (int spins = 0; spins < 3000; spins++) {
        int all = 1;
        for (int i = 0; i < n; i++)
            all &= o[i].done;
        if (all)
            return;
        uv_run(loop, UV_RUN_ONCE);
    }
    fail_msg("requests did not complete");
}

static void *serve(void *arg)
{
    (void)arg;
    runner_serve(zyg, &cfg, endpoint, 4, &stop);
    return NULL;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(0x7f000001);
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &len);
    close(s);
    return ntohs(a.sin_port);
}

static void test_validate(void **state)
{
    (void)state;
    uv_loop_t loop;
    char err[128];
    uv_loop_init(&loop);
    struct runner_client *c = runner_client_new(&loop, &cfg, endpoint, err, sizeof err);
    assert_non_null(c);
    struct outcome o[3] = {{0}};
    runner_validate(c, "import os\nasync def run(ctx):\n    return 1\n", on_validate, &o[0]);
    runner_validate(c, "async def run(ctx):\n    x = 1\n    return ().__class__\n", on_validate,
                    &o[1]);
    runner_validate(c, "import json\nasync def run(ctx):\n    return json.dumps({})\n", on_validate,
                    &o[2]);
    wait_all(&loop, o, 3);
    assert_int_equal(o[0].status, RUNNER_CLIENT_OK);
    assert_false(o[0].ok);
    assert_int_equal(o[0].first_line, 1);
    assert_non_null(strstr(o[0].message, "'os'"));
    assert_int_equal(o[1].first_line, 3);
    assert_non_null(strstr(o[1].message, "__class__"));
    assert_true(o[2].ok);
    assert_int_equal(o[2].nerrors, 0);
    runner_client_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

static void test_runs(void **state)
{
    (void)state;
    uv_loop_t loop;
    char err[128];
    uv_loop_init(&loop);
    struct runner_client *c = runner_client_new(&loop, &cfg, endpoint, err, sizeof err);
    struct runner_secret sec[1] = {{"API_TOKEN", "s3cret"}};
    struct runner_run_req ok = {
        .run_uuid = "r1",
        .code = "from app.workflows.context import WorkflowResult\n"
                "async def run(ctx):\n    ctx.log('checking', who=ctx.indicator.value)\n"
                "    return WorkflowResult.ok('fine', {'t': ctx.secrets.get('API_TOKEN'),"
                " 'db': ctx.secrets.get('DATABASE_URL')})\n",
        .timeout_seconds = 10,
        .indicator_json = "{\"type\":\"account\",\"value\":\"alice\"}",
        .nsecrets = 1,
        .secrets = sec,
    };
    struct runner_run_req loop_req = {
        .run_uuid = "r2",
        .code = "async def run(ctx):\n    while True:\n        pass\n",
        .timeout_seconds = 1,
    };
    struct runner_run_req bad = {.run_uuid = "r3",
                                 .code = "import os\nasync def run(ctx):\n    pass\n",
                                 .timeout_seconds = 5};
    struct outcome o[3] = {{0}};
    runner_run(c, &loop_req, on_run, &o[1]);
    runner_run(c, &ok, on_run, &o[0]);
    runner_run(c, &bad, on_run, &o[2]);
    wait_all(&loop, o, 3);
    assert_int_equal(o[0].status, RUNNER_CLIENT_OK);
    assert_true(o[0].ok);
    assert_int_equal(o[0].run_status, RUNNER_SUCCESS);
    assert_string_equal(o[0].message, "fine");
    assert_string_equal(o[0].data, "{\"t\":\"s3cret\",\"db\":null}");
    assert_non_null(strstr(o[0].log, "\"message\":\"checking\""));
    assert_non_null(strstr(o[0].log, "\"who\":\"alice\""));
    assert_int_equal(o[1].run_status, RUNNER_TIMED_OUT);
    assert_non_null(strstr(o[1].message, "timed out after 1 seconds"));
    assert_int_equal(o[2].run_status, RUNNER_FAILED);
    assert_non_null(strstr(o[2].message, "failed validation"));
    runner_client_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

static void test_garbage_then_service(void **state)
{
    (void)state;
    char err[128];
    struct bus_opts bo = {.link = "runner", .linger_ms = 2000};
    void *d = bus_client(ZMQ_DEALER, &cfg, endpoint, &bo, err, sizeof err);
    assert_non_null(d);
    for (int i = 0; i < 200 && bus_send(d, "\xdd\xff\xff\xff\xff", 5, 0) != 0; i++)
        usleep(10000); /* until the CURVE handshake is done */
    zmq_send(d, "a", 1, ZMQ_SNDMORE);
    zmq_send(d, "b", 1, 0);
    bus_close(d);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct runner_client *c = runner_client_new(&loop, &cfg, endpoint, err, sizeof err);
    struct outcome o = {0};
    runner_validate(c, "async def run(ctx):\n    pass\n", on_validate, &o);
    wait_all(&loop, &o, 1);
    assert_int_equal(o.status, RUNNER_CLIENT_OK);
    assert_true(o.ok);
    runner_client_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

static void test_timeout_and_close(void **state)
{
    (void)state;
    uv_loop_t loop;
    char err[128], nobody[64];
    uv_loop_init(&loop);
    snprintf(nobody, sizeof nobody, "tcp://127.0.0.1:%d", free_port());
    struct runner_client *c = runner_client_new(&loop, &cfg, nobody, err, sizeof err);
    runner_client_set_timeouts(c, 300, 300);
    struct outcome o[2] = {{0}};
    struct runner_run_req r = {.run_uuid = "x", .code = "x", .timeout_seconds = 1};
    runner_validate(c, "async def run(ctx):\n    pass\n", on_validate, &o[0]);
    assert_false(o[0].done); /* never inside the call */
    wait_all(&loop, o, 1);
    assert_int_equal(o[0].status, RUNNER_CLIENT_UNSENT); /* nobody connected: never sent */
    runner_run(c, &r, on_run, &o[1]);
    assert_int_equal(runner_client_pending(c), 1);
    runner_client_free(c);
    assert_true(o[1].done);
    assert_int_equal(o[1].status, RUNNER_CLIENT_CLOSED);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    assert_null(runner_client_new(&loop, &cfg, "nonsense://", err, sizeof err));
}

static int setup(void **state)
{
    (void)state;
    struct zygote_opts zo = {.layers = LAYER_ALL,
                             .default_memory_mb = 256,
                             .validate_timeout_seconds = 10,
                             .max_response_bytes = 1 << 20,
                             .max_http_requests = 10};
    char err[256];
    zyg = zygote_new(&zo, err, sizeof err);
    if (!zyg) {
        fprintf(stderr, "zygote: %s\n", err);
        return -1;
    }
    if (!mkdtemp(data_dir))
        return -1;
    cfg.data_dir = data_dir;
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", free_port());
    pthread_create(&server_thread, NULL, serve, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop = 1;
    pthread_join(server_thread, NULL);
    zygote_free(zyg);
    bus_context_term();
    char path[128];
    snprintf(path, sizeof path, "%s/curve/runner.key", data_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/curve", data_dir);
    rmdir(path);
    rmdir(data_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_runs),
        cmocka_unit_test(test_garbage_then_service),
        cmocka_unit_test(test_timeout_and_close),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
