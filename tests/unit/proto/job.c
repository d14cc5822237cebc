/*
 * tests/unit/proto/job.c - JOB_READY: round trips, buffer bounds, hostile bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/job.h"
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

static void test_round_trip(void **state)
{
    (void)state;
    unsigned char buf[128];
    size_t len = 0;
    struct job_ready j;
    assert_int_equal(job_ready_encode(42, INT64_MAX, buf, sizeof buf, &len), 0);
    assert_int_equal(job_ready_decode(buf, len, &j), 0);
    assert_true(j.job_id == 42 && j.alert_id == INT64_MAX);
    assert_string_equal(j.alert_uuid, "");
    struct job_ready in = {7, 9, "0B8E7A52-1F3C-4D2E-9A7B-6C5D4E3F2A10", 1};
    assert_int_equal(job_ready_encode_msg(&in, buf, sizeof buf, &len), 0);
    assert_int_equal(job_ready_decode(buf, len, &j), 0);
    assert_string_equal(j.alert_uuid, "0b8e7a52-1f3c-4d2e-9a7b-6c5d4e3f2a10");
    assert_true(j.count == 1);
    /* One message for the jobs of a whole group commit. */
    struct job_ready many = {.job_id = 100, .alert_id = 200, .count = 15};
    assert_int_equal(job_ready_encode_msg(&many, buf, sizeof buf, &len), 0);
    assert_int_equal(job_ready_decode(buf, len, &j), 0);
    assert_true(j.job_id == 100 && j.alert_id == 200 && j.count == 15);
    /* Every truncation is refused. */
    for (size_t n = 0; n < len; n++)
        assert_int_equal(job_ready_decode(buf, n, &j), -1);
}

static void test_encode_bounds(void **state)
{
    (void)state;
    unsigned char buf[128];
    size_t len = 0;
    assert_int_equal(job_ready_encode(0, 1, buf, sizeof buf, &len), -1);
    assert_int_equal(job_ready_encode(1, -5, buf, sizeof buf, &len), -1);
    assert_int_equal(job_ready_encode(1, 1, buf, 5, &len), -1);
    struct job_ready bad = {1, 1, "nope", 1};
    assert_int_equal(job_ready_encode_msg(&bad, buf, sizeof buf, &len), -1);
    struct job_ready neg = {.job_id = 1, .alert_id = 1, .count = -1};
    assert_int_equal(job_ready_encode_msg(&neg, buf, sizeof buf, &len), -1);
    struct job_ready huge = {.job_id = 1, .alert_id = 1, .count = PROTO_MAX_ITEMS + 1};
    assert_int_equal(job_ready_encode_msg(&huge, buf, sizeof buf, &len), -1);
}

static void test_hostile(void **state)
{
    (void)state;
    struct job_ready j;
    const struct {
        const char *b;
        size_t n;
    } bad[] = {
        {"\x84\xa1v\x01\xa1t\x03\xa3job\xa1" "1\xa5" "alert\x01", 20}, /* job is a string */
        {"\x84\xa1v\x01\xa1t\x03\xa3job\x00\xa5" "alert\x01", 19},       /* job = 0 */
        {"\x84\xa1v\x01\xa1t\x03\xa3job\xff\xa5" "alert\x01", 19},       /* job = -1 */
        {"\x84\xa1v\x01\xa1t\x03\xa3job\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xa5" "alert\x01",
         27},                                                          /* > INT64_MAX */
        {"\x83\xa1v\x01\xa1t\x03\xa3job\x01", 12},                     /* alert missing */
        {"\x84\xa1v\x01\xa1t\x01\xa3job\x01\xa5" "alert\x01", 19},       /* wrong type */
        {"\x85\xa1v\x01\xa1t\x03\xa3job\x01\xa5" "alert\x01\xa4uuid\xa3" "abc", 28},
        {"\xdd\xff\xff\xff\xff", 5},
        {"\x85\xa1v\x01\xa1t\x03\xa3job\x01\xa5" "alert\x01\xa5" "count\x00", 26}, /* count 0 */
        {"\x85\xa1v\x01\xa1t\x03\xa3job\x01\xa5" "alert\x01\xa5" "count\xa1" "2", 27},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(job_ready_decode(bad[i].b, bad[i].n, &j), -1);
    assert_int_equal(job_ready_decode("\x84\xa1v\x01\xa1t\x03\xa3job\x01\xa5" "alert\x02", 19, &j),
                     0);
    assert_true(j.job_id == 1 && j.alert_id == 2);
    srand(99);
    unsigned char buf[64];
    for (int r = 0; r < 50000; r++) {
        size_t n = (size_t)(rand() % 64);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)rand();
        if (r % 3 == 0 && n > 7)
            memcpy(buf, "\x84\xa1v\x01\xa1t\x03", 7);
        job_ready_decode(buf, n, &j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_bounds),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
