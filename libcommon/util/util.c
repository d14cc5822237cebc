/*
 * util.c - fatal-on-failure allocation, byte buffers, integer parsing and clocks.
 */
#include "util.h"
#include "log.h"

#include <errno.h>
#include <unistd.h>
#include <stdarg.h>
#include <ctype.h>
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(size_t n)
{
    msg_fatal("out of memory allocating %zu bytes", n);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        oom(nmemb * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(strlen(fmt));
    return s;
}

void buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_destroy(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_destroy_wiped(struct buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    buf_destroy(b);
}

int fd_read_full(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

char *file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b);
    buf_append(&b, "", 0); /* an empty file is "" */
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        buf_destroy(&b);
        errno = EIO;
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.data;
}

int fd_write_full(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

void free_wiped(void *p)
{
    if (p) {
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
    }
}

static _Thread_local int wipe_frees;

void free_scoped(void *p)
{
    if (wipe_frees)
        free_wiped(p);
    else
        free(p);
}

void free_wiped_scope(int on)
{
    wipe_frees = on;
}

void buf_grow(struct buf *b, size_t extra)
{
    if (extra < b->cap - b->len)
        return;
    /* a size that does not fit size_t cannot be allocated either: fatal, as out of memory is */
    if (extra > SIZE_MAX - 1 - b->len)
        msg_fatal("buffer of %zu bytes cannot grow by %zu more", b->len, extra);
    size_t need = b->len + extra + 1, cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

int parse_ll(const char *s, long long min, long long max, long long *out)
{
    if (!s || !*s)
        return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int ascii_casecmp_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x += 32;
        if (y >= 'A' && y <= 'Z')
            y += 32;
        if (x != y)
            return x - y;
    }
    return 0;
}

uint64_t now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t duty_wait_ms(long long took_us, unsigned duty, uint64_t min_ms, uint64_t max_ms)
{
    uint64_t ms = max_ms;
    if (took_us < 0)
        took_us = 0;
    if (duty == 0 || (uint64_t)took_us < max_ms * 1000 / duty)
        ms = (uint64_t)took_us * duty / 1000;
    return ms < min_ms ? min_ms : ms;
}

int64_t now_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The civil date of a day count since 1970-01-01 (proleptic Gregorian, days of 400-year eras). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static char *put_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

/* Written digit by digit for the years 1000-9999 (every alert timestamp goes through here):
 * gmtime_r, strftime and snprintf cost more than the rest of an alert's element text. The
 * arithmetic is POSIX time (every day 86,400 s) by design, whatever TZ names: gmtime_r under a
 * leap-second zone (right/...) would count leap seconds, which the stored timestamps never do. */
void format_iso8601_us(int64_t wall_us, char out[32])
{
    int64_t secs = wall_us / 1000000;
    long us = (long)(wall_us % 1000000);
    if (us < 0) {
        us += 1000000;
        secs -= 1;
    }
    int64_t days = secs / 86400, sod = secs % 86400, y;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    if (y < 1000 || y > 9999) { /* strftime writes these without padding, or five digits */
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        char date[24];
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out, 32, "%.19s.%06ldZ", date, us);
        return;
    }
    char *p = put_digits(out, (unsigned)y, 4);
    *p++ = '-';
    p = put_digits(p, mo, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, (unsigned)(sod / 3600), 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)(sod / 60 % 60), 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)(sod % 60), 2);
    *p++ = '.';
    p = put_digits(p, (unsigned)us, 6);
    *p++ = 'Z';
    *p = '\0';
}

size_t fmt_ull(char *dst, unsigned long long v)
{
    char d[20]; /* 2^64 - 1 has 20 digits */
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(dst, d + i, sizeof d - i);
    dst[sizeof d - i] = '\0';
    return sizeof d - i;
}

size_t fmt_ll(char *dst, long long v)
{
    if (v >= 0)
        return fmt_ull(dst, (unsigned long long)v);
    dst[0] = '-';
    return 1 + fmt_ull(dst + 1, 0ULL - (unsigned long long)v);
}

void urlencode_append(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~') {
            buf_append(b, &s[i], 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(b, e, 3);
        }
    }
}
