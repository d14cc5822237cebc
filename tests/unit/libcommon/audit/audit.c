/*
 * tests/unit/libcommon/audit/audit.c - the audit producer client against a real ROUTER socket in
 * this process playing auditd: spooling while nobody listens, delivery and acknowledgement,
 * resend after a lost acknowledgement, adoption of a dead producer's spool, and sanitising of
 * hostile strings so that every emitted event stays decodable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "audit.h"
#include "bus.h"
#include "config.h"
#include "proto/audit.h"
#include "settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

struct fixture {
    struct config c;
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[256];
    snprintf(f->dir, sizeof f->dir, "/tmp/audit-unit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    struct settings *s = settings_load("/nonexistent/.env", err, sizeof err);
    assert_non_null(s);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 20000 + getpid() % 20000);
    settings_set(s, "AUDIT_ENDPOINT", ep);
    settings_set(s, "AUDIT_SPOOL_DIR", f->dir);
    settings_set(s, "CALSETA_DATA_DIR", f->dir); /* the audit link's CURVE pair is made here */
    assert_int_equal(config_from_settings(&f->c, s, err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    config_destroy(&f->c);
    free(f);
    return 0;
}

static void *router(struct fixture *f)
{
    char err[256];
    struct bus_opts o = {.link = "audit"};
    void *r = bus_server(ZMQ_ROUTER, &f->c, f->c.audit_endpoint, &o, err, sizeof err);
    if (!r)
        fail_msg("audit router: %s", err);
    return r;
}

/* Receives up to max events within ms; acks them when ack is set. Returns the count. */
static int serve(void *r, int max, int ms, int ack, char (*ids)[AUDIT_ID_LEN + 1])
{
    int n = 0;
    uint64_t end = now_mono_ms() + (uint64_t)ms;
    while (n < max && now_mono_ms() < end) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        char ident[256], msg[65536];
        int il = zmq_recv(r, ident, sizeof ident, 0);
        int ml = zmq_recv(r, msg, sizeof msg, 0);
        assert_true(il > 0 && ml > 0);
        struct audit_event e;
        assert_int_equal(audit_event_decode(msg, (size_t)ml, &e), 0);
        if (ids)
            memcpy(ids[n], e.event_id, AUDIT_ID_LEN + 1);
        if (ack) {
            struct buf b;
            buf_init(&b);
            char one[1][AUDIT_ID_LEN + 1];
            memcpy(one[0], e.event_id, AUDIT_ID_LEN + 1);
            assert_int_equal(audit_ack_encode(one, 1, &b), 0);
            zmq_send(r, ident, (size_t)il, ZMQ_SNDMORE);
            zmq_send(r, b.data, b.len, 0);
            buf_destroy(&b);
        }
        audit_event_destroy(&e);
        n++;
    }
    return n;
}

static off_t file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? sb.st_size : -1;
}

static void test_spool_then_deliver(void **state)
{
    struct fixture *f = *state;
    struct audit_client *ac = audit_client_new(&f->c, "dead", NULL);
    char *path = strdup(audit_client_spool_path(ac));
    for (int i = 0; i < 10; i++)
        audit_emit(ac, "thing_done", "rid", "cai_x", "::1", json_pack("{s:i}", "i", i));
    assert_true(file_size(path) > 0);
    assert_int_equal((int)audit_client_flush(ac, 300), 10); /* nobody listening */
    audit_client_free(ac); /* leaves the spool: an orphan now */
    assert_true(file_size(path) > 0);

    void *r = router(f);
    ac = audit_client_new(&f->c, "unit", NULL); /* adopts the orphan */
    struct audit_client_stats st;
    audit_client_get_stats(ac, &st);
    assert_int_equal((int)st.adopted, 10);
    assert_int_equal(file_size(path), -1);
    audit_client_flush(ac, 200); /* sends */
    assert_int_equal(serve(r, 10, 3000, 1, NULL), 10);
    assert_int_equal((int)audit_client_flush(ac, 3000), 0);
    char *mine = strdup(audit_client_spool_path(ac));
    audit_client_free(ac);
    assert_int_equal(file_size(mine), -1); /* all acknowledged: removed */
    zmq_close(r);
    free(mine);
    free(path);
}

static void test_resend_after_lost_ack(void **state)
{
    struct fixture *f = *state;
    void *r = router(f);
    struct audit_client *ac = audit_client_new(&f->c, "unit", NULL);
    audit_emit(ac, "x", NULL, NULL, NULL, NULL);
    audit_client_flush(ac, 100);
    char first[1][AUDIT_ID_LEN + 1], again[1][AUDIT_ID_LEN + 1];
    assert_int_equal(serve(r, 1, 2000, 0, first), 1); /* received, never acknowledged */
    assert_int_equal((int)audit_client_flush(ac, 1500), 1);
    /* The flush re-sent it: same id. */
    assert_int_equal(serve(r, 1, 2000, 1, again), 1);
    assert_string_equal(first[0], again[0]);
    assert_int_equal((int)audit_client_flush(ac, 3000), 0);
    audit_client_free(ac);
    zmq_close(r);
}

static void test_hostile_strings_stay_decodable(void **state)
{
    struct fixture *f = *state;
    void *r = router(f);
    struct audit_client *ac = audit_client_new(&f->c, "unit", NULL);
    char longid[400];
    memset(longid, 'A', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    audit_auth_failure(ac, "GET", "/v1/alerts", "1.2.3.4\n\x1b[31m", "cai_\xff\xfe", "invalid_key",
                       NULL, longid);
    audit_emit(ac, "y", NULL, NULL, NULL, json_string("not an object"));
    audit_client_flush(ac, 100);
    assert_int_equal(serve(r, 2, 3000, 1, NULL), 2); /* serve() asserts they decode */
    assert_int_equal((int)audit_client_flush(ac, 3000), 0);
    audit_client_free(ac);
    zmq_close(r);
}

static void test_config_loaded_has_no_secrets(void **state)
{
    struct fixture *f = *state;
    free(f->c.encryption_key);
    f->c.encryption_key = strdup("super-secret-value");
    json_t *j = audit_config_fields(&f->c);
    char *s = json_dumps(j, 0);
    assert_null(strstr(s, "super-secret-value"));
    assert_non_null(strstr(s, "webhook_signature_not_required"));
    assert_null(strstr(s, "encryption_key_unset"));
    free(s);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spool_then_deliver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resend_after_lost_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_strings_stay_decodable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_loaded_has_no_secrets, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bus_context_term();
    return rc;
}
