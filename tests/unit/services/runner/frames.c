/*
 * frames.c - tests of the channel frame decoder in services/runner/frames.c: frames come out
 * whole and in order however the bytes arrive, an oversized length is a protocol violation,
 * and a buffer packed with many frames decodes in time linear in its size (a child can write a
 * megabyte of empty frames in one read; a decoder that moves the rest of the buffer after each
 * frame would spend minutes on it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runner.h"

static void put_frame(struct buf *b, const char *p, size_t n)
{
    uint32_t be = htonl((uint32_t)n);
    buf_append(b, &be, 4);
    buf_append(b, p, n);
}

/* Frame i of the test streams: lengths 0 to 40, a content that names i. */
static size_t frame_text(size_t i, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%zu:%.*s", i, (int)(i % 31), "abcdefghijklmnopqrstuvwxyz01234");
    return i % 7 == 0 ? 0 : (size_t)n;
}

/* Decodes what in holds as the runner does (frames, then one consume); checks each frame
 * against frame_text() from *next on. */
static int drain(struct buf *in, size_t *next)
{
    const char *f;
    size_t len, off = 0;
    int rc;
    while ((rc = chan_frame_next(in, &off, &f, &len)) == 1) {
        char want[64];
        size_t n = frame_text((*next)++, want, sizeof want);
        assert_int_equal(len, n);
        assert_memory_equal(f, want, n);
    }
    buf_consume(in, off);
    return rc;
}

static void test_frames_whole_and_in_order(void **state)
{
    (void)state;
    struct buf all, in;
    buf_init(&all);
    buf_init(&in);
    for (size_t i = 0; i < 500; i++) {
        char t[64];
        put_frame(&all, t, frame_text(i, t, sizeof t));
    }
    /* all at once */
    size_t next = 0;
    buf_append(&in, all.data, all.len);
    assert_int_equal(drain(&in, &next), 0);
    assert_int_equal(next, 500);
    assert_int_equal(in.len, 0);
    /* in pieces of every size from 1 to 13 bytes, cutting lengths and bodies */
    for (size_t step = 1; step <= 13; step++) {
        next = 0;
        for (size_t at = 0; at < all.len; at += step) {
            size_t n = all.len - at < step ? all.len - at : step;
            buf_append(&in, all.data + at, n);
            assert_int_equal(drain(&in, &next), 0);
        }
        assert_int_equal(next, 500);
        assert_int_equal(in.len, 0);
    }
    buf_destroy(&in);
    buf_destroy(&all);
}

static void test_oversized_length(void **state)
{
    (void)state;
    struct buf in;
    buf_init(&in);
    const char *f;
    size_t len, off = 0;
    uint32_t be = htonl(CHAN_MAX_FRAME); /* the limit itself: just not complete yet */
    buf_append(&in, &be, 4);
    assert_int_equal(chan_frame_next(&in, &off, &f, &len), 0);
    assert_int_equal(off, 0);
    buf_reset(&in);
    put_frame(&in, "{}", 2);
    be = htonl(CHAN_MAX_FRAME + 1);
    buf_append(&in, &be, 4);
    assert_int_equal(chan_frame_next(&in, &off, &f, &len), 1);
    assert_int_equal(len, 2);
    assert_int_equal(chan_frame_next(&in, &off, &f, &len), -1);
    assert_int_equal(off, 6);
    buf_destroy(&in);
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(struct buf *b, size_t frames)
{
    buf_reset(b);
    for (size_t i = 0; i < frames; i++)
        put_frame(b, "{\"t\":\"log\"}", 11);
}

/* Decodes every frame of in as the runner does; fails once the CPU time passes budget. */
static void decode_all(struct buf *in, size_t frames, double budget)
{
    const char *f;
    size_t len, off = 0, seen = 0;
    double start = cpu_seconds();
    while (chan_frame_next(in, &off, &f, &len) == 1) {
        if (++seen % 256 == 0 && cpu_seconds() - start > budget)
            fail_msg("%zu of %zu frames took over %.3f s of CPU: not linear", seen, frames, budget);
    }
    buf_consume(in, off);
    assert_int_equal(seen, frames);
    assert_int_equal(in->len, 0);
}

static struct buf big; /* freed by the teardown even when a check fails */

static void test_many_frames_in_linear_time(void **state)
{
    (void)state;
    enum { SMALL = 256, BIG = 4096 * SMALL }; /* 4 KiB and 16 MiB of frames */
    /* the cost of one frame, from a small buffer (where even moving the rest after each frame
     * costs little) decoded often enough to measure */
    double spent = 0;
    size_t rounds = 0;
    while (spent < 0.05 || rounds < 100) {
        fill(&big, SMALL);
        double t = cpu_seconds();
        decode_all(&big, SMALL, 60);
        spent += cpu_seconds() - t;
        rounds++;
    }
    double per_frame = spent / ((double)rounds * SMALL);
    /* 4096 times the frames may cost 4096 times as much, with room for cache misses and a busy
     * machine; moving the rest of the buffer after each frame would cost a million times. */
    fill(&big, BIG);
    decode_all(&big, BIG, 6 * per_frame * BIG + 0.05);
}

static int teardown(void **state)
{
    (void)state;
    buf_destroy(&big);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_whole_and_in_order),
        cmocka_unit_test(test_oversized_length),
        cmocka_unit_test(test_many_frames_in_linear_time),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
