/*
 * sink.c - audit lines to stdout and to a file that rotates by size or is reopened on SIGHUP,
 * with an explicit fsync the writer calls according to its policy.
 */
#include "auditd.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * A writer killed in the middle of a write() leaves a partial last line. Its events were not
 * acknowledged (acknowledgements follow the write and its fsync), so the producers send them
 * again: the partial line is cut off, so that the file stays one event per line and the events
 * sent again are not taken for ones already written.
 */
static void cut_partial_line(struct sink *s)
{
    char tail[4096];
    off_t end = s->size;
    while (end > 0) {
        size_t n = end < (off_t)sizeof tail ? (size_t)end : sizeof tail;
        if (pread(s->fd, tail, n, end - (off_t)n) != (ssize_t)n)
            return;
        size_t i = n;
        while (i > 0 && tail[i - 1] != '\n')
            i--;
        if (i > 0) {
            end = end - (off_t)n + (off_t)i;
            break;
        }
        end -= (off_t)n;
    }
    if (end == s->size)
        return;
    if (ftruncate(s->fd, end) != 0) {
        msg_error("audit file %s: cannot cut a partial last line: %s", s->path, strerror(errno));
        return;
    }
    msg_warn("audit file %s: cut a partial last line of %lld bytes (a writer stopped mid-write; "
             "its events are sent again)", s->path, (long long)(s->size - end));
    s->size = end;
}

static int open_file(struct sink *s, char *err, size_t errlen)
{
    s->fd = open(s->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (s->fd < 0) {
        snprintf(err, errlen, "AUDIT_LOG_FILE %s: %s", s->path, strerror(errno));
        return -1;
    }
    struct stat sb;
    s->size = fstat(s->fd, &sb) == 0 ? sb.st_size : 0;
    cut_partial_line(s);
    return 0;
}

int sink_open(struct sink *s, int json, int to_stdout, const char *path, long long rotate_bytes,
              char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->json = json;
    s->to_stdout = to_stdout;
    s->rotate_bytes = rotate_bytes;
    s->fd = -1;
    if (!path || !*path)
        return 0;
    s->path = xstrdup(path);
    return open_file(s, err, errlen);
}

static void opt_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, v ? json_string(v) : json_null());
}

/* A value in the text form: bare when it is a plain token, else JSON-quoted. */
static void text_value(struct buf *b, json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        int plain = *s != 0;
        for (const char *p = s; *p && plain; p++)
            if ((unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\')
                plain = 0;
        if (plain) {
            buf_puts(b, s);
            return;
        }
    }
    if (json_is_null(v)) {
        buf_puts(b, "None");
        return;
    }
    char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    buf_puts(b, d ? d : "?");
    free(d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void format_text(const struct audit_event *e, const char *ts, struct buf *b)
{
    buf_printf(b, "%s [audit   ] %-22s event_id=%s service=%s pid=%d", ts, e->event_type,
               e->event_id, e->service, e->pid);
    const char *names[] = {"request_id", "actor_key_prefix", "client_ip"};
    const char *vals[] = {e->request_id, e->actor_key_prefix, e->client_ip};
    for (int i = 0; i < 3; i++)
        if (vals[i]) {
            json_t *v = json_string(vals[i]);
            buf_printf(b, " %s=", names[i]);
            text_value(b, v);
            json_decref(v);
        }
    size_t n = json_object_size(e->fields), i = 0;
    const char **keys = xcalloc(n ? n : 1, sizeof *keys);
    const char *k;
    json_t *v;
    json_object_foreach(e->fields, k, v) keys[i++] = k;
    qsort(keys, n, sizeof *keys, cmp_str);
    for (i = 0; i < n; i++) {
        buf_printf(b, " %s=", keys[i]);
        text_value(b, json_object_get(e->fields, keys[i]));
    }
    free(keys);
    buf_puts(b, "\n");
}

void sink_format(const struct sink *s, const struct audit_event *e, struct buf *b)
{
    char ts[32];
    format_iso8601_us(e->ts_us, ts);
    if (!s->json) {
        format_text(e, ts, b);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "timestamp", json_string(ts));
    json_object_set_new(o, "event_id", json_string(e->event_id));
    json_object_set_new(o, "event_type", json_string(e->event_type));
    json_object_set_new(o, "service", json_string(e->service));
    json_object_set_new(o, "pid", json_integer(e->pid));
    opt_str(o, "request_id", e->request_id);
    opt_str(o, "actor_key_prefix", e->actor_key_prefix);
    opt_str(o, "client_ip", e->client_ip);
    json_object_set(o, "fields", e->fields);
    char *d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    buf_puts(b, d);
    buf_puts(b, "\n");
    free(d);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int sink_write(struct sink *s, const struct buf *b)
{
    if (b->len == 0)
        return 0;
    if (s->to_stdout)
        write_all(STDOUT_FILENO, b->data, b->len); /* a closed stdout must not stop the file */
    if (s->fd < 0)
        return s->path ? -1 : 0;
    if (write_all(s->fd, b->data, b->len) != 0) {
        msg_error("audit file %s: write: %s", s->path, strerror(errno));
        return -1;
    }
    s->size += (off_t)b->len;
    s->dirty = 1;
    return 0;
}

int sink_sync(struct sink *s)
{
    if (s->fd < 0 || !s->dirty)
        return 0;
    if (fdatasync(s->fd) != 0) {
        msg_error("audit file %s: fsync: %s", s->path, strerror(errno));
        return -1;
    }
    s->dirty = 0;
    return 0;
}

int sink_reopen(struct sink *s)
{
    if (!s->path)
        return 0;
    sink_sync(s);
    if (s->fd >= 0)
        close(s->fd);
    char err[512];
    if (open_file(s, err, sizeof err) != 0) {
        msg_error("%s", err);
        return -1;
    }
    /* The new directory entry must survive a crash too. */
    char *dir = xstrdup(s->path);
    char *slash = strrchr(dir, '/');
    int dfd = open(slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
    return 0;
}

int sink_maybe_rotate(struct sink *s)
{
    if (!s->path || s->rotate_bytes <= 0 || s->size < s->rotate_bytes)
        return 0;
    sink_sync(s);
    for (int i = AUDITD_ROTATE_KEEP - 1; i >= 1; i--) {
        char *from = xasprintf("%s.%d", s->path, i), *to = xasprintf("%s.%d", s->path, i + 1);
        rename(from, to);
        free(from);
        free(to);
    }
    char *to = xasprintf("%s.1", s->path);
    int rc = rename(s->path, to);
    free(to);
    if (rc != 0) {
        msg_error("audit file %s: rotate: %s", s->path, strerror(errno));
        return -1;
    }
    return sink_reopen(s);
}

void sink_close(struct sink *s)
{
    sink_sync(s);
    if (s->fd >= 0)
        close(s->fd);
    free(s->path);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}
