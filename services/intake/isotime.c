/*
 * isotime.c - fromisoformat(), the "Z"-replacing variant and float epoch seconds.
 *
 * The ISO parser follows the behaviour of CPython's C implementation of
 * datetime.fromisoformat() step by step (separator position by the shape of the date, the time
 * zone at the first 'Z', '+' or '-' of the time part, the component loop that lets a fourth
 * two-digit group become the fraction), because alerts that the original accepts must get
 * the same occurred_at here and alerts it refuses must fall back to now the same way.
 */
#include "isotime.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIN_UTC_SECONDS (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_UTC_SECONDS 253402300799LL   /* 9999-12-31T23:59:59Z */

struct isoparts {
    int year, month, day;
    int hour, minute, second, usec;
    int has_tz;
    long long tz_seconds; /* signed offset east of UTC */
    long long tz_usec;    /* signed, same sign as the offset */
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Exactly n digits at p; returns the position after them or NULL. */
static const char *parse_digits(const char *p, int *out, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return NULL;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return p + n;
}

static int is_leap(int y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (any year). */
static long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(long long z, int *y, int *m, int *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* Monday = 0, as date.weekday(). 1970-01-01 was a Thursday. */
static int weekday(long long days)
{
    long long w = (days + 3) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

static int iso_week_to_ymd(int iso_year, int week, int wday, struct isoparts *t)
{
    if (iso_year < 1 || iso_year > 9999)
        return -1;
    long long jan1 = days_from_civil(iso_year, 1, 1);
    int first = weekday(jan1);
    if (week <= 0 || week >= 53) {
        if (week != 53 || !(first == 3 || (first == 2 && is_leap(iso_year))))
            return -1;
    }
    if (wday <= 0 || wday >= 8)
        return -1;
    long long monday1 = jan1 - first + (first > 3 ? 7 : 0);
    civil_from_days(monday1 + (week - 1) * 7 + wday - 1, &t->year, &t->month, &t->day);
    return 0;
}

/* Where the date ends and the separator sits, from the shape of the date; -1 if malformed. */
static long separator_position(const char *s, size_t len)
{
    if (len == 7)
        return 7;
    if (s[4] == '-') {
        if (s[5] != 'W')
            return 10;
        if (len > 8 && s[8] == '-') {
            if (len == 9)
                return -1;
            return len > 10 && is_digit(s[10]) ? 8 : 10;
        }
        return 8;
    }
    if (s[4] != 'W')
        return 8;
    size_t idx = 7;
    while (idx < len && is_digit(s[idx]))
        idx++;
    if (idx < 9)
        return (long)idx;
    return idx % 2 == 0 ? 7 : 8;
}

static int parse_date(const char *s, size_t len, struct isoparts *t)
{
    const char *p = parse_digits(s, &t->year, 4);
    if (!p)
        return -1;
    int dash = *p == '-';
    p += dash;
    if (*p == 'W') {
        int week, wday = 1;
        if (!(p = parse_digits(p + 1, &week, 2)))
            return -1;
        if ((size_t)(p - s) < len) {
            if (dash && *p++ != '-')
                return -1;
            if (!parse_digits(p, &wday, 1))
                return -1;
        }
        return iso_week_to_ymd(t->year, week, wday, t);
    }
    if (!(p = parse_digits(p, &t->month, 2)))
        return -1;
    if (dash && *p++ != '-')
        return -1;
    return parse_digits(p, &t->day, 2) ? 0 : -1;
}

/*
 * HH[:MM[:SS[.ffffff]]] (or without colons) between p and end; the byte at end is the time
 * zone marker or the terminating NUL. <0 error, 0 done, 1 more text follows.
 */
static int parse_hms(const char *p, const char *end, int *h, int *mi, int *se, int *us)
{
    int *vals[3] = {h, mi, se};
    int colon = 1;
    *h = *mi = *se = *us = 0;
    for (int i = 0; i < 3; i++) {
        if (!(p = parse_digits(p, vals[i], 2)))
            return -1;
        char c = *p++;
        if (i == 0)
            colon = c == ':';
        if (p >= end)
            return c != '\0';
        if (colon && c == ':')
            continue;
        if (c == '.' || c == ',')
            break;
        if (colon)
            return -1;
        p--;
    }
    size_t n = (size_t)(end - p);
    if (n > 6)
        n = 6;
    if (n == 0)
        return -1; /* CPython indexes before its table here; nothing valid gets this far */
    if (!parse_digits(p, us, n))
        return -1;
    static const int scale[6] = {100000, 10000, 1000, 100, 10, 1};
    *us *= scale[n - 1];
    p += n;
    while (is_digit(*p))
        p++;
    return *p != '\0';
}

static int parse_time(const char *s, struct isoparts *t)
{
    const char *end = s + strlen(s);
    const char *tz = s;
    while (tz < end && *tz != 'Z' && *tz != '+' && *tz != '-')
        tz++;
    int rv = parse_hms(s, tz, &t->hour, &t->minute, &t->second, &t->usec);
    if (rv < 0)
        return -1;
    if (tz == end)
        return rv == 1 ? -1 : 0;
    t->has_tz = 1;
    if (*tz == 'Z')
        return tz[1] == '\0' ? 0 : -1;
    int sign = *tz == '-' ? -1 : 1;
    int th, tm, ts, tus;
    if (parse_hms(tz + 1, end, &th, &tm, &ts, &tus) != 0)
        return -1;
    t->tz_seconds = sign * (th * 3600LL + tm * 60LL + ts);
    t->tz_usec = sign * (long long)tus;
    return 0;
}

static int parts_to_us(const struct isoparts *t, int64_t *out_us)
{
    if (t->year < 1 || t->year > 9999 || t->month < 1 || t->month > 12 || t->day < 1 ||
        t->day > days_in_month(t->year, t->month) || t->hour > 23 || t->minute > 59 ||
        t->second > 59)
        return -1;
    long long off_us = 0;
    if (t->has_tz && t->tz_seconds != 0) { /* a zero-second offset is UTC, fraction ignored */
        off_us = t->tz_seconds * 1000000LL + t->tz_usec;
        if (off_us <= -86400000000LL || off_us >= 86400000000LL)
            return -1;
    }
    long long secs = days_from_civil(t->year, t->month, t->day) * 86400LL + t->hour * 3600LL +
                     t->minute * 60LL + t->second;
    long long us = secs * 1000000LL + t->usec - off_us;
    long long floor_secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    if (floor_secs < MIN_UTC_SECONDS || floor_secs > MAX_UTC_SECONDS)
        return -1;
    *out_us = us;
    return 0;
}

int isotime_parse(const char *s, int64_t *out_us)
{
    if (!s)
        return -1;
    size_t len = strlen(s);
    if (len < 7)
        return -1;
    long sep = separator_position(s, len);
    if (sep < 0)
        return -1;
    /* The separator is any one character, non-ASCII included; the rest is read as bytes. */
    size_t after = (size_t)sep + 1;
    if ((size_t)sep < len && (unsigned char)s[sep] >= 0xc0)
        while (after < len && ((unsigned char)s[after] & 0xc0) == 0x80)
            after++;
    struct isoparts t = {0};
    if (parse_date(s, (size_t)sep, &t) != 0)
        return -1;
    if (len > (size_t)sep && parse_time(s + after, &t) != 0)
        return -1;
    return parts_to_us(&t, out_us);
}

int isotime_parse_zfix(const char *s, int64_t *out_us)
{
    if (!s)
        return -1;
    struct buf b;
    buf_init(&b);
    for (const char *p = s; *p; p++) {
        if (*p == 'Z')
            buf_puts(&b, "+00:00");
        else
            buf_append(&b, p, 1);
    }
    int rv = isotime_parse(b.data ? b.data : "", out_us);
    buf_destroy(&b);
    return rv;
}

int isotime_from_epoch(double seconds, int64_t *out_us)
{
    if (!isfinite(seconds))
        return -1;
    double ipart;
    double frac = modf(seconds, &ipart) * 1e6;
    double r = round(frac);
    if (fabs(frac - r) == 0.5)
        r = 2.0 * round(frac / 2.0); /* half to even, as CPython's _PyTime_Round */
    if (r >= 1e6) {
        r -= 1e6;
        ipart += 1.0;
    } else if (r < 0) {
        r += 1e6;
        ipart -= 1.0;
    }
    if (ipart < (double)MIN_UTC_SECONDS || ipart > (double)MAX_UTC_SECONDS)
        return -1;
    *out_us = (int64_t)ipart * 1000000 + (int64_t)r;
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* digit (["_"] digit)*; returns the position after it or NULL when there is none. */
static const char *digitpart(const char *p, struct buf *out)
{
    if (!is_digit(*p))
        return NULL;
    while (is_digit(*p) || (*p == '_' && is_digit(p[1]))) {
        if (*p != '_')
            buf_append(out, p, 1);
        p++;
    }
    return p;
}

/* Python float() syntax without underscores into out; 0 if s is a finite decimal number. */
static int float_syntax(const char *p, struct buf *out)
{
    if (*p == '+' || *p == '-')
        buf_append(out, p++, 1);
    const char *q = digitpart(p, out);
    if (q)
        p = q;
    if (*p == '.') {
        buf_append(out, p++, 1);
        const char *f = digitpart(p, out);
        if (!q && !f)
            return -1;
        if (f)
            p = f;
    } else if (!q) {
        return -1; /* "inf", "nan" and garbage: fromtimestamp() refuses the first two */
    }
    if (*p == 'e' || *p == 'E') {
        buf_append(out, p++, 1);
        if (*p == '+' || *p == '-')
            buf_append(out, p++, 1);
        if (!(p = digitpart(p, out)))
            return -1;
    }
    while (is_space(*p))
        p++;
    return *p ? -1 : 0;
}

int isotime_from_epoch_text(const char *s, int64_t *out_us)
{
    if (!s)
        return -1;
    while (is_space(*s))
        s++;
    struct buf b;
    buf_init(&b);
    int rv = -1;
    if (float_syntax(s, &b) == 0 && b.data)
        rv = isotime_from_epoch(strtod(b.data, NULL), out_us);
    buf_destroy(&b);
    return rv;
}
