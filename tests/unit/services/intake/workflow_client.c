/*
 * tests/unit/services/intake/workflow_client.c - the intake's requests to workflowd, against a
 * ROUTER in this process playing workflowd: a request workflowd could not decode is not sent
 * but ends at once as WF_OUT_REFUSED with the reason (it used to wait out its deadline), a
 * decodable one is sent and its reply delivered, and workflowd's own refusal of a request
 * reaches the caller as WF_OUT_REFUSED.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bus.h"
#include "config.h"
#include "proto/workflow.h"
#include "services/intake/workflow_client.h"
#include "settings.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

struct fixture {
    struct config c;
    char dir[64];
    uv_loop_t loop;
    void *router; /* plays workflowd */
    struct workflow_client *wc;
};

struct answer {
    int done;
    char error[256];
    int outcome;
    char message[256];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[256];
    snprintf(f->dir, sizeof f->dir, "/tmp/wfclient-unit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    struct settings *s = settings_load("/nonexistent/.env", err, sizeof err);
    assert_non_null(s);
    settings_set(s, "CALSETA_DATA_DIR", f->dir); /* the link's ipc socket goes here */
    assert_int_equal(config_from_settings(&f->c, s, err, sizeof err), 0);
    struct bus_opts o = {.link = "workflow", .max_msg = WF_MAX_MSG};
    f->router = bus_server(ZMQ_ROUTER, &f->c, f->c.workflow_endpoint, &o, err, sizeof err);
    if (!f->router)
        fail_msg("router: %s", err);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->wc = workflow_client_new(&f->loop, &f->c, err, sizeof err);
    if (!f->wc)
        fail_msg("workflow client: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    workflow_client_free(f->wc);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    bus_close(f->router);
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    config_destroy(&f->c);
    free(f);
    return 0;
}

static void on_answer(void *arg, const char *error, int outcome, json_t *body)
{
    struct answer *a = arg;
    const char *m = json_string_value(json_object_get(body, "message"));
    a->done++;
    snprintf(a->error, sizeof a->error, "%s", error ? error : "");
    a->outcome = outcome;
    snprintf(a->message, sizeof a->message, "%s", m ? m : "");
}

/* One message the fake workflowd received within ms: 1 and its identity and body, or 0. */
static int router_recv(struct fixture *f, int ms, struct buf *id, struct buf *msg)
{
    zmq_pollitem_t it = {.socket = f->router, .events = ZMQ_POLLIN};
    struct buf parts[2];
    size_t n = 0;
    if (zmq_poll(&it, 1, ms) <= 0)
        return 0;
    buf_init(&parts[0]);
    buf_init(&parts[1]);
    assert_int_equal(bus_recv_msg(f->router, parts, 2, &n), 0);
    assert_int_equal(n, 2);
    *id = parts[0];
    *msg = parts[1];
    return 1;
}

/* Runs the loop until the answer came or ms passed; the milliseconds it took. */
static uint64_t run_until(struct fixture *f, struct answer *a, uint64_t ms)
{
    uint64_t t0 = now_mono_ms();
    while (!a->done && now_mono_ms() - t0 < ms) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    return now_mono_ms() - t0;
}

static void reply(struct fixture *f, const struct buf *id, uint64_t rid, int outcome,
                  const char *body)
{
    struct wf_reply r = {.id = rid, .outcome = outcome, .body_json = (char *)body};
    struct buf b;
    buf_init(&b);
    wf_encode_reply(&r, &b);
    assert_int_equal(bus_send(f->router, id->data, id->len, 1), 0);
    assert_int_equal(bus_send(f->router, b.data, b.len, 0), 0);
    buf_destroy(&b);
}

static void test_undecodable_request_is_refused_at_once(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    struct buf id, msg;
    /* not valid UTF-8: workflowd's decoder refuses it, so it would never be answered */
    workflow_client_validate(f->wc, "print('\xff\xfe')", on_answer, &a);
    assert_int_equal(a.done, 0); /* never inside the call */
    uint64_t took = run_until(f, &a, 5000);
    assert_int_equal(a.done, 1);
    assert_string_equal(a.error, "");
    assert_int_equal(a.outcome, WF_OUT_REFUSED);
    assert_non_null(strstr(a.message, "cannot be passed to the workflow service"));
    if (took > 1000)
        fail_msg("the refusal took %llu ms", (unsigned long long)took);
    assert_int_equal(router_recv(f, 200, &id, &msg), 0); /* nothing was sent */
}

static void test_decodable_request_is_sent_and_answered(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    struct buf id, msg;
    struct wf_request r;
    workflow_client_validate(f->wc, "async def run(ctx):\r\n    pass\n", on_answer, &a);
    uint64_t t0 = now_mono_ms();
    int got = 0;
    while (!got && now_mono_ms() - t0 < 5000) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        got = router_recv(f, 10, &id, &msg);
    }
    assert_true(got);
    assert_int_equal(wf_decode_request(msg.data, msg.len, &r), 0);
    reply(f, &id, r.id, WF_OUT_OK, "{\"ok\":true,\"errors\":[]}");
    run_until(f, &a, 5000);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.outcome, WF_OUT_OK);
    /* workflowd's own refusal (a request it could not read, but whose id it could) */
    struct answer b = {0};
    workflow_client_test(f->wc, "00000000-0000-4000-8000-000000000001", "ip", "192.0.2.1",
                         &(struct workflow_caller){"cai_abcd", "req-1", "127.0.0.1"}, on_answer,
                         &b);
    struct buf id2, msg2;
    struct wf_request r2;
    got = 0;
    t0 = now_mono_ms();
    while (!got && now_mono_ms() - t0 < 5000) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        got = router_recv(f, 10, &id2, &msg2);
    }
    assert_true(got);
    assert_int_equal(wf_decode_request(msg2.data, msg2.len, &r2), 0);
    reply(f, &id2, r2.id, WF_OUT_REFUSED, "{\"message\":\"workflowd could not read it\"}");
    uint64_t took = run_until(f, &b, 5000);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.outcome, WF_OUT_REFUSED);
    assert_string_equal(b.message, "workflowd could not read it");
    assert_true(took < 1000);
    wf_request_destroy(&r);
    wf_request_destroy(&r2);
    buf_destroy(&id);
    buf_destroy(&msg);
    buf_destroy(&id2);
    buf_destroy(&msg2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_undecodable_request_is_refused_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_decodable_request_is_sent_and_answered, setup,
                                        teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bus_context_term();
    return rc;
}
