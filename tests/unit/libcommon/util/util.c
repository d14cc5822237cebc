/*
 * tests/unit/libcommon/util/util.c - file_read(): a file's bytes come back whole (past one read
 * chunk, NUL bytes included) and NUL-terminated, an empty file is "", a missing one is NULL
 * with errno.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_read_whole),
        cmocka_unit_test(test_file_read_empty_and_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
