/*
 * util.h - allocation that succeeds or does not return, and small string helpers.
 *
 * Postfix style: an out-of-memory condition is fatal, so callers never test for NULL from
 * xmalloc() and friends.
 */
#ifndef CALSETA_UTIL_H
#define CALSETA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Growable byte buffer; data is always NUL-terminated (the NUL is not counted in len). */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};
void buf_init(struct buf *b);
void buf_destroy(struct buf *b);
/* As buf_destroy(), zeroing the whole capacity first (the buffer held secrets). */
void buf_destroy_wiped(struct buf *b);
/* free() that zeroes the whole block first (malloc_usable_size); for allocators of libraries
 * that handle secrets, e.g. json_set_alloc_funcs(malloc, free_wiped). */
void free_wiped(void *p);
/* free() that zeroes the block first only while the calling thread has asked for it with
 * free_wiped_scope(1): installed once, before any thread starts, as jansson's free, it lets one
 * thread wipe what it decodes from a secret-bearing message while other threads parse and free
 * their own documents at full speed (jansson's allocator functions are process-wide; swapping
 * them at run time would race with those threads). */
void free_scoped(void *p);
void free_wiped_scope(int on);

/* A whole file's bytes, NUL-terminated (len, when not NULL, gets their count without the NUL);
 * NULL with errno set when it cannot be opened or read. Caller frees. */
char *file_read(const char *path, size_t *len);

/* Blocking read/write of exactly n bytes (EINTR retried); 0, or -1 on error or end of file. */
int fd_read_full(int fd, void *p, size_t n);
int fd_write_full(int fd, const void *p, size_t n);
/* Grows b to hold extra more bytes and the NUL (the out-of-line half of buf_reserve); a size
 * beyond size_t is fatal, like an allocation that fails. */
void buf_grow(struct buf *b, size_t extra);
/* Inline: the batch elements and answers are written in many short appends, where a call per
 * append and a strlen() of each constant string were a tenth of their cost. The test is
 * len + extra + 1 > cap written so that no sum can wrap (cap is 0 or above len). */
static inline void buf_reserve(struct buf *b, size_t extra)
{
    if (extra >= b->cap - b->len)
        buf_grow(b, extra);
}
static inline void buf_append(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}
static inline void buf_puts(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Appends n bytes of s percent-encoded: everything but A-Z a-z 0-9 _ . - ~. */
void urlencode_append(struct buf *b, const char *s, size_t n);

/* Parses a non-negative decimal integer that fits in a long long; 0 on success, -1 otherwise. */
int parse_ll(const char *s, long long min, long long max, long long *out);
/* Case-insensitive ASCII comparison of n bytes. */
int ascii_casecmp_n(const char *a, const char *b, size_t n);

/* Milliseconds since an arbitrary monotonic epoch, and wall-clock microseconds since 1970. */
uint64_t now_mono_ms(void);
int64_t now_wall_us(void);
/* How long to wait before repeating work whose last run took took_us microseconds so that it
 * takes at most 1/duty of the time: took_us * duty in milliseconds, between min_ms and max_ms (a
 * negative took_us, a clock stepped back, counts as nothing). */
uint64_t duty_wait_ms(long long took_us, unsigned duty, uint64_t min_ms, uint64_t max_ms);
/* ISO-8601 UTC with microseconds and trailing Z, as the original serialises datetimes. */
void format_iso8601_us(int64_t wall_us, char out[32]);
/* v in decimal into dst (room for 22 bytes), NUL-terminated; its length. Without printf:
 * answers' status lines, lengths and counts and every JSON integer written go through these,
 * where parsing a format cost more than the rest of the text. */
size_t fmt_ull(char *dst, unsigned long long v);
size_t fmt_ll(char *dst, long long v);

#endif
