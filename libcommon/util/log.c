/*
 * log.c - line-oriented logging to stderr in JSON or text form.
 *
 * Each line is written with a single write(2) so lines from several processes sharing a
 * terminal or pipe do not interleave.
 */
#include "log.h"
#include "util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static struct {
    char service[32];
    int json;
    enum log_level level;
    pid_t pid; /* 0 until the first line, and again in a forked child */
} L = {"calseta", 1, LOG_INFO, 0};

static void forget_pid(void)
{
    L.pid = 0;
}

static void reset_pid_on_fork(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

/* The process id of each line without a system call per line (a busy worker logs often); a
 * child made by fork() asks again (every fork here goes through glibc, which runs the handler). */
static pid_t log_pid(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, reset_pid_on_fork);
    if (!L.pid)
        L.pid = getpid();
    return L.pid;
}

static const char *level_name[] = {"debug", "info", "warning", "error"};

void log_init(const char *service, int json, enum log_level level)
{
    snprintf(L.service, sizeof L.service, "%s", service);
    L.json = json;
    L.level = level;
}

enum log_level log_level_parse(const char *s)
{
    if (!s)
        return LOG_INFO;
    if (!strcasecmp(s, "debug"))
        return LOG_DEBUG;
    if (!strcasecmp(s, "warning") || !strcasecmp(s, "warn"))
        return LOG_WARN;
    if (!strcasecmp(s, "error") || !strcasecmp(s, "critical"))
        return LOG_ERROR;
    return LOG_INFO;
}

const char *log_service(void)
{
    return L.service;
}

int log_is_json(void)
{
    return L.json;
}

int log_enabled(enum log_level level)
{
    return level >= L.level;
}

static void write_line(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

void log_event(enum log_level level, const char *event, json_t *fields)
{
    if (level < L.level)
        return;
    char ts[32];
    format_iso8601_us(now_wall_us(), ts);
    if (L.json) {
        json_t *o = json_object();
        json_object_set_new(o, "timestamp", json_string(ts));
        json_object_set_new(o, "level", json_string(level_name[level]));
        json_object_set_new(o, "service", json_string(L.service));
        json_object_set_new(o, "pid", json_integer(log_pid()));
        json_object_set_new(o, "event", json_string(event));
        if (fields)
            json_object_update_missing(o, fields);
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (s) {
            size_t n = strlen(s);
            s = xrealloc(s, n + 2);
            s[n] = '\n';
            write_line(s, n + 1);
            free(s);
        }
        return;
    }
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "%s [%-7s] %s[%d] %s", ts, level_name[level], L.service, (int)log_pid(), event);
    if (fields) {
        const char *k;
        json_t *v;
        json_object_foreach(fields, k, v)
        {
            if (json_is_string(v)) {
                buf_printf(&b, " %s=%s", k, json_string_value(v));
            } else {
                char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                buf_printf(&b, " %s=%s", k, s ? s : "?");
                free(s);
            }
        }
    }
    buf_puts(&b, "\n");
    write_line(b.data, b.len);
    buf_destroy(&b);
}

static void vmsg(enum log_level level, const char *fmt, va_list ap)
{
    if (level < L.level)
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (!L.json) {
        log_event(level, msg, NULL);
        return;
    }
    json_t *f = json_pack("{s:s}", "message", msg);
    log_event(level, "log", f);
    json_decref(f);
}

#define DEFINE_MSG(name, lvl)                                                                      \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vmsg(lvl, fmt, ap);                                                                        \
        va_end(ap);                                                                                \
    }
DEFINE_MSG(msg_debug, LOG_DEBUG)
DEFINE_MSG(msg_info, LOG_INFO)
DEFINE_MSG(msg_warn, LOG_WARN)
DEFINE_MSG(msg_error, LOG_ERROR)

void msg_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum log_level saved = L.level;
    L.level = LOG_DEBUG;
    vmsg(LOG_ERROR, fmt, ap);
    L.level = saved;
    va_end(ap);
    exit(1);
}
