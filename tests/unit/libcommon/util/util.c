/*
 * tests/unit/libcommon/util/util.c - file_read(): a file's bytes come back whole (past one read
 * chunk, NUL bytes included) and NUL-terminated, an empty file is "", a missing one is NULL
 * with errno. format_iso8601_us() writes what gmtime_r and strftime write, across leap days,
 * centuries, negative times and microseconds, and the years outside 1000-9999 (unpadded or five
 * digits) the same way; the test runs with TZ=UTC, as format_iso8601_us() writes POSIX time
 * whatever TZ says (a leap-second zone would move gmtime_r's answer, never its own). A buffer
 * asked to grow past what size_t holds ends the process as an allocation failure does, instead
 * of wrapping the size and writing past its end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* A temporary file holding data[0..n); its path is written to path. */
static void temp_file(char path[64], const void *data, size_t n)
{
    snprintf(path, 64, "/tmp/calseta-util-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(fd_write_full(fd, data, n), 0);
    close(fd);
}

static void test_file_read_whole(void **state)
{
    (void)state;
    size_t n = 50000; /* several read chunks */
    char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7);
    char path[64];
    temp_file(path, data, n);
    size_t len = 0;
    char *got = file_read(path, &len);
    unlink(path);
    assert_non_null(got);
    assert_int_equal(len, n);
    assert_memory_equal(got, data, n);
    assert_int_equal(got[n], 0);
    free(got);
    free(data);
}

static void test_file_read_empty_and_missing(void **state)
{
    (void)state;
    char path[64];
    temp_file(path, "", 0);
    size_t len = 99;
    char *got = file_read(path, &len);
    assert_non_null(got);
    assert_int_equal(len, 0);
    assert_string_equal(got, "");
    free(got);
    got = file_read(path, NULL); /* len is optional */
    assert_non_null(got);
    free(got);
    unlink(path);

    errno = 0;
    assert_null(file_read(path, &len));
    assert_int_equal(errno, ENOENT);
}

/* The reference: the C library's own calendar. */
static void iso_reference(int64_t wall_us, char out[32])
{
    time_t secs = (time_t)(wall_us / 1000000);
    long us = (long)(wall_us % 1000000);
    if (us < 0) {
        us += 1000000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char date[24];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%06ldZ", date, us);
}

static void iso_check(int64_t wall_us)
{
    char got[32], want[32];
    format_iso8601_us(wall_us, got);
    iso_reference(wall_us, want);
    if (strcmp(got, want) != 0)
        fail_msg("%lld: %s, expected %s", (long long)wall_us, got, want);
}

static void test_format_iso8601_us(void **state)
{
    (void)state;
    char out[32];
    format_iso8601_us(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000000Z");
    format_iso8601_us(951782400123456LL, out); /* a leap day of a century divisible by 400 */
    assert_string_equal(out, "2000-02-29T00:00:00.123456Z");
    format_iso8601_us(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59.999999Z");
    static const int64_t edges[] = {
        0, 1, -1, 999999, 1000000, -1000000, -1000001, 86399999999LL, 86400000000LL,
        -62167219200000000LL,  /* 0000-01-01: strftime writes the year as 0 */
        -30610224000000000LL, -30610224000000001LL, /* 1000-01-01 and the microsecond before */
        -62167219200000001LL,  /* the microsecond before: year -1, the C library's way */
        253402300799999999LL,  /* 9999-12-31T23:59:59.999999 */
        253402300800000000LL,  /* 10000-01-01 */
        4102444800000000LL,    /* 2100-01-01: a century without a leap day */
        4107542400000000LL, 1709164800000000LL, 1740787199999999LL,
    };
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++)
        iso_check(edges[i]);
    /* every day from 1600 to 2500, at a time of day that moves */
    for (int64_t day = -135140; day <= 193000; day++)
        iso_check(day * 86400000000LL + (day * 7919 % 86400) * 1000000LL + day % 1000000);
    uint64_t x = 88172645463325252ULL; /* xorshift over years -7500 to 11500 */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        iso_check((int64_t)(x % 600000000000000000ULL) - 300000000000000000LL);
    }
}

/* buf_reserve(b, extra) on a buffer holding "abc", in a child: its exit status (-1: a signal). */
static int reserve_in_child(size_t extra)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct buf b;
        buf_init(&b);
        buf_append(&b, "abc", 3);
        buf_reserve(&b, extra);
        buf_destroy(&b);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_buf_size_overflow_is_fatal(void **state)
{
    (void)state;
    /* len + extra + 1 wraps to 0, 1 and 2: each would pass as "room enough" */
    assert_int_equal(reserve_in_child(SIZE_MAX - 3), 1);
    assert_int_equal(reserve_in_child(SIZE_MAX - 2), 1);
    assert_int_equal(reserve_in_child(SIZE_MAX), 1);
    assert_int_equal(reserve_in_child(1000), 0);
    struct buf b;
    buf_init(&b);
    buf_reserve(&b, 0);
    assert_true(b.cap >= 1);
    buf_append(&b, "x", 1);
    buf_reserve(&b, b.cap - b.len - 1); /* exactly what is left: no growth */
    size_t cap = b.cap;
    buf_reserve(&b, cap - b.len - 1);
    assert_int_equal(b.cap, cap);
    buf_reserve(&b, cap - b.len); /* one more: grows */
    assert_true(b.cap > cap);
    buf_destroy(&b);
}

/* took * duty, in ms, bounded; a negative time counts as nothing, a huge one does not overflow. */
static void test_duty_wait(void **state)
{
    (void)state;
    assert_int_equal(duty_wait_ms(0, 100, 1000, 30000), 1000);
    assert_int_equal(duty_wait_ms(-5000000, 100, 1000, 30000), 1000);
    assert_int_equal(duty_wait_ms(9999, 100, 1000, 30000), 1000);
    assert_int_equal(duty_wait_ms(25000, 100, 1000, 30000), 2500);
    assert_int_equal(duty_wait_ms(299999, 100, 1000, 30000), 29999);
    assert_int_equal(duty_wait_ms(300000, 100, 1000, 30000), 30000);
    assert_int_equal(duty_wait_ms(LLONG_MAX, 100, 1000, 30000), 30000);
    assert_int_equal(duty_wait_ms(200000, 100, 5000, 60000), 20000);
}

/* fmt_ll / fmt_ull write what printf would, with the NUL, and say how long it is. */
static void test_fmt_decimal(void **state)
{
    (void)state;
    const long long s[] = {0, 1, -1, 9, 10, -10, 2147483647LL, -2147483648LL, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        char want[32], got[24];
        int n = snprintf(want, sizeof want, "%lld", s[i]);
        memset(got, 'x', sizeof got);
        assert_int_equal(fmt_ll(got, s[i]), (size_t)n);
        assert_string_equal(got, want);
    }
    const unsigned long long u[] = {0, 7, 1000, ULLONG_MAX};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        char want[32], got[24];
        int n = snprintf(want, sizeof want, "%llu", u[i]);
        memset(got, 'x', sizeof got);
        assert_int_equal(fmt_ull(got, u[i]), (size_t)n);
        assert_string_equal(got, want);
    }
}

int main(void)
{
    /* gmtime_r under a leap-second zone (right/...) counts leap seconds; the tested code does not */
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_read_whole),
        cmocka_unit_test(test_file_read_empty_and_missing),
        cmocka_unit_test(test_format_iso8601_us),
        cmocka_unit_test(test_fmt_decimal),
        cmocka_unit_test(test_duty_wait),
        cmocka_unit_test(test_buf_size_overflow_is_fatal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
