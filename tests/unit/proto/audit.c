/*
 * tests/unit/proto/audit.c - audit event and ack messages: round trips, and hostile bytes
 * (truncations, wrong types, huge lengths, nesting bombs, random bytes) that must be refused
 * without crashing or allocating wildly. Also covers the envelope code in proto/proto.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/audit.h"
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

static void sample(struct audit_event *e)
{
    memset(e, 0, sizeof *e);
    strcpy(e->event_id, "0b8e7a52-1f3c-4d2e-9a7b-6c5d4e3f2a10");
    e->ts_us = 1760000000123456LL;
    e->service = "intake";
    e->pid = 4242;
    e->event_type = "auth_failure";
    e->request_id = "req-1";
    e->actor_key_prefix = "cai_abcd";
    e->client_ip = "10.0.0.1";
    e->fields = json_pack("{s:s,s:s,s:[i,i],s:{s:s}}", "reason", "invalid_key", "path",
                          "/v1/alerts \xc3\xa9\n", "n", 1, 2, "nested", "a", "b");
}

static void encode(struct audit_event *e, struct buf *b)
{
    buf_init(b);
    assert_int_equal(audit_event_encode(e, b), 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct audit_event e, d;
    struct buf b;
    sample(&e);
    encode(&e, &b);
    assert_int_equal(audit_event_decode(b.data, b.len, &d), 0);
    assert_string_equal(d.event_id, e.event_id);
    assert_true(d.ts_us == e.ts_us);
    assert_string_equal(d.service, "intake");
    assert_int_equal(d.pid, 4242);
    assert_string_equal(d.event_type, "auth_failure");
    assert_string_equal(d.request_id, "req-1");
    assert_string_equal(d.actor_key_prefix, "cai_abcd");
    assert_string_equal(d.client_ip, "10.0.0.1");
    assert_true(json_equal(d.fields, e.fields));
    audit_event_destroy(&d);
    /* Optional fields absent. */
    e.request_id = e.actor_key_prefix = e.client_ip = NULL;
    json_decref(e.fields);
    e.fields = NULL;
    buf_reset(&b);
    assert_int_equal(audit_event_encode(&e, &b), 0);
    assert_int_equal(audit_event_decode(b.data, b.len, &d), 0);
    assert_null(d.request_id);
    assert_null(d.client_ip);
    assert_int_equal(json_object_size(d.fields), 0);
    audit_event_destroy(&d);
    buf_destroy(&b);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    struct audit_event e;
    struct buf b;
    buf_init(&b);
    sample(&e);
    strcpy(e.event_id, "not-a-uuid");
    assert_int_equal(audit_event_encode(&e, &b), -1);
    json_decref(e.fields);
    sample(&e);
    json_decref(e.fields);
    e.event_type = "bad type";
    assert_int_equal(audit_event_encode(&e, &b), -1);
    e.event_type = "ok";
    e.fields = json_array();
    assert_int_equal(audit_event_encode(&e, &b), -1);
    json_decref(e.fields);
    e.fields = json_pack("{s:s}", "big", "");
    char *big = malloc(AUDIT_FIELDS_MAX + 10);
    memset(big, 'a', AUDIT_FIELDS_MAX + 9);
    big[AUDIT_FIELDS_MAX + 9] = 0;
    json_object_set_new(e.fields, "big", json_string(big));
    free(big);
    assert_int_equal(audit_event_encode(&e, &b), -1);
    json_decref(e.fields);
    assert_int_equal((int)b.len, 0);
    buf_destroy(&b);
}

static void test_truncations_refused(void **state)
{
    (void)state;
    struct audit_event e, d;
    struct buf b;
    sample(&e);
    encode(&e, &b);
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(audit_event_decode(b.data, n, &d), -1);
    /* A trailing byte is refused too. */
    buf_append(&b, "\x00", 1);
    assert_int_equal(audit_event_decode(b.data, b.len, &d), -1);
    json_decref(e.fields);
    buf_destroy(&b);
}

/* Packs an envelope by hand with one field whose value is given raw. */
static void raw_event(struct buf *b, const char *key, const char *raw, size_t rawlen)
{
    static const char base[] =
        "\x89\xa1v\x01\xa1t\x01\xa2id\xd9\x24"
        "0b8e7a52-1f3c-4d2e-9a7b-6c5d4e3f2a10"
        "\xa2ts\x01\xa3svc\xa1x\xa3pid\x01\xa4type\xa1y\xa1" "f\xa2{}";
    buf_init(b);
    buf_append(b, base, sizeof base - 1);
    size_t k = strlen(key);
    char h = (char)(0xa0 | k);
    buf_append(b, &h, 1);
    buf_append(b, key, k);
    buf_append(b, raw, rawlen);
}

static void test_hand_made(void **state)
{
    (void)state;
    struct audit_event d;
    struct buf b;
    raw_event(&b, "rid", "\xa1r", 2);
    assert_int_equal(audit_event_decode(b.data, b.len, &d), 0);
    assert_string_equal(d.request_id, "r");
    audit_event_destroy(&d);
    buf_destroy(&b);
    const struct {
        const char *key, *raw;
        size_t len;
    } bad[] = {
        {"rid", "\x01", 1},                 /* wrong type */
        {"rid", "\xa2\x00x", 3},            /* NUL inside */
        {"rid", "\xa2\xc3\x28", 3},         /* invalid UTF-8 */
        {"rid", "\xa1\x1b", 2},             /* control character */
        {"rid", "\xdb\xff\xff\xff\xff", 5}, /* huge length */
        {"rid", "\xdd\xff\xff\xff\xff", 5}, /* array of 4 billion */
        {"rid", "\xdf\x7f\xff\xff\xff", 5}, /* map of 2 billion */
        {"rid", "\xc1", 1},                 /* never-used code */
        {"rid", "\xd4\x01\x00", 3},         /* ext */
        {"pid", "\xa1" "1", 2},             /* duplicate key */
        {"zz", "\x91\x91\x91\x91\x91\x00", 6}, /* too deep */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_event(&b, bad[i].key, bad[i].raw, bad[i].len);
        assert_int_equal(audit_event_decode(b.data, b.len, &d), -1);
        buf_destroy(&b);
    }
}

static void test_envelope(void **state)
{
    (void)state;
    struct proto_msg m;
    /* wrong version, unknown type, not a map, missing type */
    const char *bad[] = {"\x82\xa1v\x02\xa1t\x01", "\x82\xa1v\x01\xa1t\x63", "\x92\x01\x01",
                         "\x81\xa1v\x01", "\x82\xa1v\xa1" "1\xa1t\x01"};
    size_t lens[] = {7, 7, 3, 4, 8};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(proto_decode(bad[i], lens[i], 0, &m), -1);
    assert_int_equal(proto_decode("\x82\xa1v\x01\xa1t\x02", 7, 0, &m), 0);
    assert_int_equal((int)m.type, PROTO_AUDIT_ACK);
    proto_msg_destroy(&m);
    assert_int_equal(proto_decode("\x82\xa1v\x01\xa1t\x02", 7, PROTO_AUDIT_EVENT, &m), -1);
    /* A nesting bomb: 100000 nested arrays. */
    size_t n = 100000;
    char *bomb = malloc(n + 1);
    memset(bomb, 0x91, n);
    bomb[n] = 0;
    assert_int_equal(proto_validate(bomb, n + 1), -1);
    free(bomb);
    assert_int_equal(proto_validate(NULL, 0), -1);
    char *huge = calloc(1, PROTO_MAX_MSG + 1);
    assert_int_equal(proto_validate(huge, PROTO_MAX_MSG + 1), -1);
    free(huge);
}

static void test_random_bytes(void **state)
{
    (void)state;
    srand(12345);
    struct audit_event d;
    struct audit_event e;
    struct buf b;
    sample(&e);
    encode(&e, &b);
    unsigned char buf[512];
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand() % (int)sizeof buf);
        if (round % 2) {
            /* mutate a valid message */
            n = b.len < sizeof buf ? b.len : sizeof buf;
            memcpy(buf, b.data, n);
            for (int k = 0; k < 1 + rand() % 4; k++)
                buf[rand() % n] = (unsigned char)rand();
        } else {
            for (size_t i = 0; i < n; i++)
                buf[i] = (unsigned char)rand();
        }
        if (audit_event_decode(buf, n, &d) == 0)
            audit_event_destroy(&d);
    }
    json_decref(e.fields);
    buf_destroy(&b);
}

static void test_ack(void **state)
{
    (void)state;
    char ids[3][AUDIT_ID_LEN + 1];
    for (int i = 0; i < 3; i++)
        audit_id_new(ids[i]);
    assert_true(audit_id_valid(ids[0], strlen(ids[0])));
    assert_string_not_equal(ids[0], ids[1]);
    assert_int_equal(ids[0][14], '4');
    struct buf b;
    buf_init(&b);
    assert_int_equal(audit_ack_encode(ids, 3, &b), 0);
    char(*out)[AUDIT_ID_LEN + 1] = malloc(AUDIT_ACK_MAX * sizeof *out);
    size_t n = 0;
    assert_int_equal(audit_ack_decode(b.data, b.len, out, &n), 0);
    assert_int_equal((int)n, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(out[i], ids[i]);
    assert_int_equal(audit_ack_decode(b.data, b.len - 1, out, &n), -1);
    assert_int_equal(audit_ack_encode(ids, 0, &b), -1);
    /* An event is not an ack. */
    struct audit_event e;
    sample(&e);
    buf_reset(&b);
    assert_int_equal(audit_event_encode(&e, &b), 0);
    assert_int_equal(audit_ack_decode(b.data, b.len, out, &n), -1);
    json_decref(e.fields);
    free(out);
    buf_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_truncations_refused), cmocka_unit_test(test_hand_made),
        cmocka_unit_test(test_envelope),      cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_ack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
