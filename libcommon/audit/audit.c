/*
 * audit.c - the audit producer: spool, send, acknowledge, replay (see audit.h); and the
 * aggregation of refusals that name no key, so a client without a key cannot turn every
 * refused request into a durable audit row.
 */
#include "audit.h"
#include "bus.h"
#include "config.h"
#include "log.h"
#include "proto/audit.h"
#include "proto/proto.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define MEM_MAX 4096             /* events held in memory (the send window) */
#define ACK_TIMEOUT_MS 2000      /* no acknowledgement for this long: send everything again */
#define TICK_MS 200
#define ADOPT_EVERY_MS 30000
#define COMPACT_AT (32LL << 20)  /* rewrite the spool when this much of it is dead */
#define REC_MAGIC 0x31445541u    /* "AUD1" little-endian */

#define REFUSAL_BUCKETS 1024
#define REFUSAL_MAX 4096 /* tracked (reason, client) pairs; beyond, one shared entry per reason */

/* One refusal window: per (reason, client IP) for refusals that name no valid key, per (reason,
 * key prefix, route) for a valid key refused (by_key). Its first refusal was written at once,
 * the next ones are only counted until the window ends. */
struct refusal {
    struct refusal *next;
    int by_key;
    char event[24]; /* the event type of the window's first refusal, and of its summary */
    char reason[24];
    char client_ip[64];  /* by IP: "" = the shared entry beyond REFUSAL_MAX; by key: the last */
    char key_prefix[16]; /* by key: "" = the shared entry beyond REFUSAL_MAX */
    char route[128];
    char required_scope[48];
    char method[12];
    char path[128];    /* of the last refusal counted */
    uint64_t start_ms; /* monotonic */
    char started_at[32];
    uint64_t count; /* refusals after the first, not written yet */
};

struct pending {
    char id[AUDIT_ID_LEN + 1];
    char *data;
    size_t len;
    off_t off; /* of its record in the spool, -1 when only in memory */
    int sent;
    int acked;
};

struct audit_client {
    char *service;
    int pid;
    uv_loop_t *loop;
    void *sock;
    struct bus_watch *watch;
    uv_timer_t timer;
    int timer_on;
    char *endpoint;
    char *spool_dir;
    char *spool_path;
    int spool_fd;
    off_t end_off;   /* size of the spool file */
    off_t load_off;  /* records before this are in q (or acknowledged) */
    size_t disk_backlog;
    struct pending *q; /* ring */
    size_t qhead, qlen, qcap;
    size_t ack_cursor;
    uint64_t last_progress_ms;
    uint64_t last_adopt_ms;
    int unreachable_logged;
    char *rxbuf;
    struct audit_client_stats st;
    /* refusal aggregation (only with a loop: the tick writes the summaries) */
    int refusal_window_ms; /* 0 = every refusal written on its own */
    struct refusal *refusals[REFUSAL_BUCKETS];
    size_t nrefusals;
};

/* ---- queue ---------------------------------------------------------------------------- */

static struct pending *qat(struct audit_client *ac, size_t i)
{
    return &ac->q[(ac->qhead + i) % ac->qcap];
}

static void qpush(struct audit_client *ac, const char *id, char *data, size_t len, off_t off)
{
    if (ac->qlen == ac->qcap) {
        size_t ncap = ac->qcap ? ac->qcap * 2 : 64;
        struct pending *nq = xcalloc(ncap, sizeof *nq);
        for (size_t i = 0; i < ac->qlen; i++)
            nq[i] = *qat(ac, i);
        free(ac->q);
        ac->q = nq;
        ac->qcap = ncap;
        ac->qhead = 0;
        ac->ack_cursor = 0;
    }
    struct pending *p = qat(ac, ac->qlen++);
    memset(p, 0, sizeof *p);
    memcpy(p->id, id, AUDIT_ID_LEN);
    p->data = data;
    p->len = len;
    p->off = off;
}

static void qpop_acked(struct audit_client *ac)
{
    while (ac->qlen > 0 && qat(ac, 0)->acked) {
        free(qat(ac, 0)->data);
        ac->qhead = (ac->qhead + 1) % ac->qcap;
        ac->qlen--;
        ac->ack_cursor = ac->ack_cursor ? ac->ack_cursor - 1 : 0;
    }
}

/* ---- spool file ----------------------------------------------------------------------- */

static int spool_append(int fd, const void *data, size_t len)
{
    struct buf b;
    buf_init(&b);
    uint32_t hdr[2] = {REC_MAGIC, (uint32_t)len};
    buf_append(&b, hdr, sizeof hdr);
    buf_append(&b, data, len);
    size_t done = 0;
    int rc = 0;
    while (done < b.len) {
        ssize_t w = write(fd, b.data + done, b.len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = -1;
            break;
        }
        done += (size_t)w;
    }
    buf_destroy(&b);
    return rc;
}

/* Reads the record at *off; 0 with *data (malloc'd) and *off advanced, 1 at the end or at a
 * torn tail, -1 on an I/O error. */
static int spool_read(int fd, off_t *off, off_t end, char **data, size_t *len)
{
    uint32_t hdr[2];
    if (end - *off < (off_t)sizeof hdr)
        return 1;
    if (pread(fd, hdr, sizeof hdr, *off) != (ssize_t)sizeof hdr)
        return -1;
    if (hdr[0] != REC_MAGIC || hdr[1] == 0 || hdr[1] > PROTO_MAX_MSG ||
        end - *off - (off_t)sizeof hdr < (off_t)hdr[1])
        return 1;
    char *d = xmalloc(hdr[1]);
    if (pread(fd, d, hdr[1], *off + (off_t)sizeof hdr) != (ssize_t)hdr[1]) {
        free(d);
        return -1;
    }
    *off += (off_t)sizeof hdr + hdr[1];
    *data = d;
    *len = hdr[1];
    return 0;
}

static int record_id(const char *data, size_t len, char id[AUDIT_ID_LEN + 1])
{
    struct audit_event e;
    if (audit_event_decode(data, len, &e) != 0)
        return -1;
    memcpy(id, e.event_id, AUDIT_ID_LEN + 1);
    audit_event_destroy(&e);
    return 0;
}

/* Moves records from the file into memory, in order, while there is room. */
static void refill(struct audit_client *ac)
{
    while (ac->qlen < MEM_MAX && ac->load_off < ac->end_off && ac->spool_fd >= 0) {
        char *data;
        size_t len;
        off_t at = ac->load_off;
        int r = spool_read(ac->spool_fd, &ac->load_off, ac->end_off, &data, &len);
        if (r != 0) {
            if (r > 0)
                msg_error("audit spool %s: unreadable record at %lld, skipping the rest",
                          ac->spool_path, (long long)at);
            ac->load_off = ac->end_off;
            ac->disk_backlog = 0;
            return;
        }
        if (ac->disk_backlog)
            ac->disk_backlog--;
        char id[AUDIT_ID_LEN + 1];
        if (record_id(data, len, id) != 0) {
            msg_error("audit spool %s: invalid event at %lld dropped", ac->spool_path,
                      (long long)at);
            free(data);
            continue;
        }
        qpush(ac, id, data, len, at);
    }
}

/* Drops the acknowledged prefix of the spool file: truncation when all is done, or a rewrite
 * of the live tail when the dead head has grown large. */
static void spool_trim(struct audit_client *ac)
{
    if (ac->spool_fd < 0)
        return;
    if (ac->qlen == 0 && ac->load_off == ac->end_off) {
        if (ac->end_off > 0 && ftruncate(ac->spool_fd, 0) == 0)
            ac->end_off = ac->load_off = 0;
        return;
    }
    off_t live = ac->load_off;
    for (size_t i = 0; i < ac->qlen; i++)
        if (qat(ac, i)->off >= 0) {
            live = qat(ac, i)->off;
            break;
        }
    if (live < COMPACT_AT)
        return;
    char *tmp = xasprintf("%s.tmp", ac->spool_path);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0)
        goto fail;
    char chunk[65536];
    for (off_t o = live; o < ac->end_off;) {
        ssize_t n = pread(ac->spool_fd, chunk, sizeof chunk, o);
        if (n <= 0 || write(fd, chunk, (size_t)n) != n)
            goto fail;
        o += n;
    }
    if (rename(tmp, ac->spool_path) != 0)
        goto fail;
    close(ac->spool_fd);
    ac->spool_fd = fd;
    ac->end_off -= live;
    ac->load_off -= live;
    for (size_t i = 0; i < ac->qlen; i++)
        if (qat(ac, i)->off >= 0)
            qat(ac, i)->off -= live;
    free(tmp);
    return;
fail:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
}

/* Takes over the spool files of dead producers: appends their records to ours, then removes
 * them. A file is dead when its flock can be taken. */
static void adopt_orphans(struct audit_client *ac)
{
    ac->last_adopt_ms = now_mono_ms();
    if (ac->spool_fd < 0)
        return;
    DIR *d = opendir(ac->spool_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 7 || strcmp(de->d_name + n - 6, ".spool"))
            continue;
        char *path = xasprintf("%s/%s", ac->spool_dir, de->d_name);
        if (!strcmp(path, ac->spool_path)) {
            free(path);
            continue;
        }
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        struct stat sb;
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &sb) != 0 ||
            sb.st_nlink == 0 || !S_ISREG(sb.st_mode)) {
            if (fd >= 0)
                close(fd);
            free(path);
            continue;
        }
        off_t off = 0;
        char *data;
        size_t len;
        size_t count = 0;
        int ok = 1;
        while (spool_read(fd, &off, sb.st_size, &data, &len) == 0) {
            if (spool_append(ac->spool_fd, data, len) != 0)
                ok = 0;
            else {
                ac->end_off += (off_t)(sizeof(uint32_t) * 2 + len);
                ac->disk_backlog++;
                count++;
            }
            free(data);
            if (!ok)
                break;
        }
        if (ok && fdatasync(ac->spool_fd) == 0) {
            unlink(path);
            ac->st.adopted += count;
            if (count)
                msg_info("audit: replaying %zu events spooled by a dead process (%s)", count,
                         de->d_name);
        }
        close(fd);
        free(path);
    }
    closedir(d);
}

/* Records a dead process with our pid left under our spool name are copied into fd (they are
 * replayed first) and that file removed; an adopter holding it is waited for. */
static int take_over_same_pid(struct audit_client *ac, int fd)
{
    int old = open(ac->spool_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (old < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat sb;
    int rc = 0;
    if (flock(old, LOCK_EX) == 0 && fstat(old, &sb) == 0 && sb.st_nlink > 0) {
        off_t off = 0;
        char *data;
        size_t len;
        while (rc == 0 && spool_read(old, &off, sb.st_size, &data, &len) == 0) {
            rc = spool_append(fd, data, len);
            free(data);
        }
        if (rc == 0 && fdatasync(fd) == 0)
            unlink(ac->spool_path);
    }
    close(old);
    return rc;
}

static void spool_open(struct audit_client *ac, const struct config *c)
{
    ac->spool_fd = -1;
    ac->spool_dir = *c->audit_spool_dir ? xstrdup(c->audit_spool_dir)
                                        : xasprintf("%s/audit-spool", c->data_dir);
    ac->spool_path = xasprintf("%s/%s-%d.spool", ac->spool_dir, ac->service, ac->pid);
    mkdir(c->data_dir, 0700);
    if (mkdir(ac->spool_dir, 0700) != 0 && errno != EEXIST) {
        msg_error("audit spool %s: %s (events kept in memory only)", ac->spool_dir,
                  strerror(errno));
        return;
    }
    /* The spool appears under its name already locked (created as .new, locked, renamed):
     * another process's adopt_orphans() must never see it unlocked and take it for a dead
     * producer's. */
    char *tmp = xasprintf("%s.new", ac->spool_path);
    unlink(tmp); /* left by a process with our pid that died before its rename */
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0 || take_over_same_pid(ac, fd) != 0 ||
        rename(tmp, ac->spool_path) != 0) {
        msg_error("audit spool %s: %s (events kept in memory only)", ac->spool_path,
                  strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        return;
    }
    free(tmp);
    ac->spool_fd = fd;
    /* A dead process that had our pid may have left records: they are replayed first. */
    struct stat sb;
    if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
        off_t off = 0;
        char *data;
        size_t len;
        while (spool_read(fd, &off, sb.st_size, &data, &len) == 0) {
            free(data);
            ac->disk_backlog++;
        }
        ac->end_off = sb.st_size;
    }
}

/* ---- sending and acknowledgements ----------------------------------------------------- */

static void pump(struct audit_client *ac)
{
    if (!ac->sock)
        return;
    refill(ac);
    int sent_any = 0;
    for (size_t i = 0; i < ac->qlen; i++) {
        struct pending *p = qat(ac, i);
        if (p->sent || p->acked)
            continue;
        if (zmq_send(ac->sock, p->data, p->len, ZMQ_DONTWAIT) < 0)
            break; /* not connected or HWM: the tick tries again */
        if (ac->last_progress_ms == 0)
            ac->last_progress_ms = now_mono_ms();
        p->sent = 1;
        sent_any = 1;
        ac->st.sends++;
    }
    if (sent_any)
        bus_watch_kick(ac->watch);
}

static void mark_acked(struct audit_client *ac, const char *id)
{
    for (size_t k = 0; k < ac->qlen; k++) {
        size_t i = (ac->ack_cursor + k) % ac->qlen;
        struct pending *p = qat(ac, i);
        if (!p->acked && !memcmp(p->id, id, AUDIT_ID_LEN)) {
            p->acked = 1;
            ac->st.acked++;
            ac->ack_cursor = (i + 1) % ac->qlen;
            return;
        }
    }
}

static void on_ack_message(struct audit_client *ac, const void *data, size_t len)
{
    char(*ids)[AUDIT_ID_LEN + 1] = xmalloc(AUDIT_ACK_MAX * sizeof *ids);
    size_t n = 0;
    if (audit_ack_decode(data, len, ids, &n) != 0) {
        msg_warn("audit: ignoring a malformed acknowledgement (%zu bytes)", len);
        free(ids);
        return;
    }
    for (size_t i = 0; i < n; i++)
        mark_acked(ac, ids[i]);
    free(ids);
    ac->last_progress_ms = now_mono_ms();
    if (ac->unreachable_logged) {
        ac->unreachable_logged = 0;
        msg_info("audit writer reachable again: replaying the spool");
    }
    qpop_acked(ac);
    pump(ac);
    spool_trim(ac);
}

/* Receives one message (the watch's callback, and the flush loop's). */
static void on_readable(void *arg)
{
    struct audit_client *ac = arg;
    if (!ac->rxbuf)
        ac->rxbuf = xmalloc(PROTO_MAX_MSG);
    int more = 0;
    int n = bus_recv_frame(ac->sock, ac->rxbuf, PROTO_MAX_MSG, &more);
    if (n >= 0 && !more && n <= PROTO_MAX_MSG)
        on_ack_message(ac, ac->rxbuf, (size_t)n);
    else if (n >= 0)
        bus_skip_rest(ac->sock);
}

static size_t outstanding(const struct audit_client *ac)
{
    size_t n = ac->disk_backlog;
    if (n == 0 && ac->load_off < ac->end_off)
        n = 1; /* records not yet read back, count unknown */
    for (size_t i = 0; i < ac->qlen; i++)
        if (!ac->q[(ac->qhead + i) % ac->qcap].acked)
            n++;
    return n;
}

/* No acknowledgement for a while: whatever was sent may have died with a connection. */
static void check_progress(struct audit_client *ac, int timeout_ms)
{
    if (ac->qlen == 0) {
        ac->last_progress_ms = 0;
        return;
    }
    uint64_t now = now_mono_ms();
    if (ac->last_progress_ms && now - ac->last_progress_ms < (uint64_t)timeout_ms)
        return;
    int resend = 0;
    for (size_t i = 0; i < ac->qlen; i++) {
        struct pending *p = qat(ac, i);
        if (p->sent && !p->acked) {
            p->sent = 0;
            resend = 1;
        }
    }
    if (resend) {
        ac->st.resends++;
        if (!ac->unreachable_logged) {
            ac->unreachable_logged = 1;
            msg_warn("audit writer %s not acknowledging: %zu events kept in %s", ac->endpoint,
                     outstanding(ac), ac->spool_path);
        }
    }
    ac->last_progress_ms = now;
}

static void refusals_sweep(struct audit_client *ac, int all);

static void on_tick(uv_timer_t *t)
{
    struct audit_client *ac = t->data;
    refusals_sweep(ac, 0);
    check_progress(ac, ACK_TIMEOUT_MS);
    pump(ac);
    if (now_mono_ms() - ac->last_adopt_ms >= ADOPT_EVERY_MS) {
        adopt_orphans(ac);
        pump(ac);
    }
}

/* A copy of s fit for the wire: at most max bytes, cut on a character boundary, with invalid
 * UTF-8 and control characters replaced by '?'. NULL stays NULL. */
static char *clean_str(const char *s, size_t max)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *o = xstrndup(s, n > max ? max : n);
    n = strlen(o);
    for (size_t i = 0; i < n;) {
        size_t k = 1;
        while (k <= 4 && i + k <= n && !proto_utf8_ok(o + i, k, 0))
            k++;
        if (k > 4 || i + k > n) {
            o[i++] = '?';
            continue;
        }
        i += k;
    }
    return o;
}

/* ---- public --------------------------------------------------------------------------- */

struct audit_client *audit_client_new(const struct config *c, const char *service,
                                      uv_loop_t *loop)
{
    struct audit_client *ac = xcalloc(1, sizeof *ac);
    ac->service = xstrdup(service);
    ac->pid = (int)getpid();
    ac->loop = loop;
    ac->endpoint = xstrdup(c->audit_endpoint);
    spool_open(ac, c);
    adopt_orphans(ac);
    char err[256];
    struct bus_opts o = {.link = "audit", .hwm = 2 * MEM_MAX + 16};
    ac->sock = bus_client(ZMQ_DEALER, c, c->audit_endpoint, &o, err, sizeof err);
    if (!ac->sock)
        msg_error("audit: %s (events are spooled in %s)", err, ac->spool_path);
    if (loop && ac->sock) {
        ac->refusal_window_ms = c->audit_refusal_window_seconds * 1000;
        ac->watch = bus_watch_new(loop, ac->sock, on_readable, ac);
        uv_timer_init(loop, &ac->timer);
        ac->timer.data = ac;
        uv_timer_start(&ac->timer, on_tick, TICK_MS, TICK_MS);
        uv_unref((uv_handle_t *)&ac->timer);
        ac->timer_on = 1;
    }
    pump(ac);
    return ac;
}

void audit_emit(struct audit_client *ac, const char *event_type, const char *request_id,
                const char *actor_key_prefix, const char *client_ip, json_t *fields)
{
    if (fields && !json_is_object(fields)) {
        json_t *o = json_pack("{s:O}", "value", fields);
        json_decref(fields);
        fields = o;
    }
    struct audit_event e = {
        .ts_us = now_wall_us(),
        .service = ac ? ac->service : (char *)"unknown",
        .pid = (int)getpid(),
        .event_type = (char *)event_type,
        .request_id = clean_str(request_id, 128),
        .actor_key_prefix = clean_str(actor_key_prefix, 64),
        .client_ip = clean_str(client_ip, 64),
        .fields = fields,
    };
    audit_id_new(e.event_id);
    struct buf b;
    buf_init(&b);
    if (!ac || audit_event_encode(&e, &b) != 0) {
        json_t *l = json_pack("{s:s,s:s?,s:O?}", "event_type", event_type ? event_type : "?",
                              "request_id", request_id, "fields", fields);
        log_event(LOG_ERROR, ac ? "audit_event_unencodable" : "audit_event_no_client", l);
        json_decref(l);
        goto out;
    }
    ac->st.emitted++;
    off_t off = -1;
    if (ac->spool_fd >= 0 && spool_append(ac->spool_fd, b.data, b.len) == 0) {
        off = ac->end_off;
        ac->end_off += (off_t)(sizeof(uint32_t) * 2 + b.len);
    } else if (ac->spool_fd >= 0) {
        msg_error("audit spool %s: %s (event %s kept in memory)", ac->spool_path,
                  strerror(errno), e.event_id);
    }
    if (off >= 0 && (ac->load_off != off || ac->qlen >= MEM_MAX)) {
        ac->disk_backlog++; /* behind older spooled events: read back in order */
        buf_destroy(&b);
    } else {
        if (off >= 0)
            ac->load_off = ac->end_off;
        qpush(ac, e.event_id, b.data, b.len, off);
        b.data = NULL;
    }
    pump(ac);
out:
    buf_destroy(&b);
    free(e.request_id);
    free(e.actor_key_prefix);
    free(e.client_ip);
    if (fields)
        json_decref(fields);
}

/* ---- refusal aggregation ---------------------------------------------------------------- */

/* Who a window belongs to: the client IP, or (by_key) the key prefix and route. */
struct refusal_id {
    int by_key;
    const char *reason, *ip, *key_prefix, *route;
};

static unsigned refusal_hash(const struct refusal_id *id)
{
    uint32_t h = 2166136261u ^ (uint32_t)id->by_key;
    const char *parts[] = {id->reason, id->by_key ? id->key_prefix : id->ip,
                           id->by_key ? id->route : ""};
    for (size_t i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;
    }
    return h % REFUSAL_BUCKETS;
}

static int refusal_is(const struct refusal *e, const struct refusal_id *id)
{
    if (e->by_key != id->by_key || strcmp(e->reason, id->reason) != 0)
        return 0;
    if (!id->by_key)
        return !strcmp(e->client_ip, id->ip);
    return !strcmp(e->key_prefix, id->key_prefix) && !strcmp(e->route, id->route);
}

/* Writes the summary of a window that counted refusals after its first: one event and one
 * log line carrying the count. */
static void refusal_summary(struct audit_client *ac, const struct refusal *r)
{
    if (r->count == 0)
        return;
    const char *ip = r->client_ip[0] ? r->client_ip : NULL;
    const char *prefix = r->key_prefix[0] ? r->key_prefix : NULL;
    const char *route = r->route[0] ? r->route : NULL;
    const char *scope = r->required_scope[0] ? r->required_scope : NULL;
    json_t *line = json_pack("{s:s,s:s?,s:I,s:i,s:s,s:s,s:s}", "reason", r->reason, "client_ip",
                             ip, "count", (json_int_t)r->count, "window_seconds",
                             ac->refusal_window_ms / 1000, "window_start", r->started_at,
                             "last_method", r->method, "last_path", r->path);
    if (!ip)
        json_object_set_new(line, "client_ip", json_null());
    if (r->by_key) {
        json_object_set_new(line, "key_prefix", prefix ? json_string(prefix) : json_null());
        json_object_set_new(line, "route", route ? json_string(route) : json_null());
        json_object_set_new(line, "required_scope", scope ? json_string(scope) : json_null());
    }
    log_event(LOG_WARN, "auth_failure_summary", line);
    json_decref(line);
    json_t *fields = json_pack("{s:s,s:b,s:I,s:i,s:s,s:s,s:s}", "reason", r->reason, "aggregated",
                               1, "count", (json_int_t)r->count, "window_seconds",
                               ac->refusal_window_ms / 1000, "window_start", r->started_at,
                               "method", r->method, "path", r->path);
    if (route)
        json_object_set_new(fields, "route", json_string(route));
    if (scope)
        json_object_set_new(fields, "required_scope", json_string(scope));
    audit_emit(ac, r->event[0] ? r->event : "auth_failure", NULL, prefix, ip, fields);
}

/* Ends the windows that are over (all: every window, at shutdown). */
static void refusals_sweep(struct audit_client *ac, int all)
{
    uint64_t now = now_mono_ms();
    for (size_t b = 0; b < REFUSAL_BUCKETS; b++) {
        struct refusal **pp = &ac->refusals[b];
        while (*pp) {
            struct refusal *r = *pp;
            if (all || now - r->start_ms >= (uint64_t)ac->refusal_window_ms) {
                refusal_summary(ac, r);
                *pp = r->next;
                free(r);
                ac->nrefusals--;
            } else {
                pp = &r->next;
            }
        }
    }
}

static void refusal_note_last(struct refusal *r, const char *method, const char *path,
                              const char *client_ip)
{
    snprintf(r->method, sizeof r->method, "%s", method ? method : "");
    snprintf(r->path, sizeof r->path, "%s", path ? path : "");
    if (r->by_key)
        snprintf(r->client_ip, sizeof r->client_ip, "%s", client_ip ? client_ip : "");
}

/* 1 if this refusal is only counted (its window already wrote one); 0 if it is to be written
 * now, as the first of a new window. */
static int refusal_counted(struct audit_client *ac, const char *event, struct refusal_id id,
                           const char *method, const char *path, const char *client_ip,
                           const char *required_scope)
{
    if (!ac || ac->refusal_window_ms <= 0)
        return 0;
    struct refusal *r = NULL;
    for (int pass = 0; pass < 2 && !r; pass++) {
        unsigned b = refusal_hash(&id);
        for (struct refusal *e = ac->refusals[b]; e && !r; e = e->next)
            if (refusal_is(e, &id))
                r = e;
        if (!r && ac->nrefusals >= REFUSAL_MAX)
            id.ip = id.key_prefix = id.route = ""; /* too many: one shared entry per reason */
        else
            break;
    }
    uint64_t now = now_mono_ms();
    if (r && now - r->start_ms < (uint64_t)ac->refusal_window_ms) {
        r->count++;
        refusal_note_last(r, method, path, client_ip);
        return 1;
    }
    if (r) { /* the tick has not ended it yet: end it now */
        refusal_summary(ac, r);
    } else {
        r = xcalloc(1, sizeof *r);
        r->by_key = id.by_key;
        snprintf(r->event, sizeof r->event, "%s", event ? event : "auth_failure");
        snprintf(r->reason, sizeof r->reason, "%s", id.reason);
        if (id.by_key) {
            snprintf(r->key_prefix, sizeof r->key_prefix, "%s", id.key_prefix);
            snprintf(r->route, sizeof r->route, "%s", id.route);
        } else {
            snprintf(r->client_ip, sizeof r->client_ip, "%s", id.ip);
        }
        /* the stored, possibly truncated, strings are the identity from now on */
        struct refusal_id stored = {r->by_key, r->reason, r->client_ip, r->key_prefix, r->route};
        unsigned b = refusal_hash(&stored);
        r->next = ac->refusals[b];
        ac->refusals[b] = r;
        ac->nrefusals++;
    }
    snprintf(r->required_scope, sizeof r->required_scope, "%s",
             required_scope ? required_scope : "");
    r->start_ms = now;
    r->count = 0;
    format_iso8601_us(now_wall_us(), r->started_at);
    refusal_note_last(r, method, path, client_ip);
    return 0;
}

static int reason_aggregated(const char *reason)
{
    return reason && (!strcmp(reason, "missing_header") || !strcmp(reason, "invalid_format") ||
                      !strcmp(reason, "rate_limited"));
}

static void auth_failure_write(struct audit_client *ac, const char *event, const char *method,
                               const char *path, const char *client_ip, const char *key_prefix,
                               const char *reason, const char *required_scope,
                               const char *request_id);

void audit_auth_refusal(struct audit_client *ac, const char *method, const char *path,
                        const char *client_ip, const char *key_prefix, const char *reason,
                        const char *required_scope, const char *request_id)
{
    audit_auth_refusal_as(ac, "auth_failure", method, path, client_ip, key_prefix, reason,
                          required_scope, request_id);
}

void audit_auth_refusal_as(struct audit_client *ac, const char *event, const char *method,
                           const char *path, const char *client_ip, const char *key_prefix,
                           const char *reason, const char *required_scope,
                           const char *request_id)
{
    struct refusal_id id = {0, reason, client_ip ? client_ip : "", "", ""};
    if (reason && refusal_counted(ac, event, id, method, path, client_ip, NULL))
        return;
    auth_failure_write(ac, event, method, path, client_ip, key_prefix, reason, required_scope,
                       request_id);
}

void audit_key_refusal_as(struct audit_client *ac, const char *event, const char *method,
                          const char *route, const char *path, const char *client_ip,
                          const char *key_prefix, const char *reason, const char *required_scope,
                          const char *request_id)
{
    struct refusal_id id = {1, reason, "", key_prefix ? key_prefix : "", route ? route : ""};
    if (reason && refusal_counted(ac, event, id, method, path, client_ip, required_scope))
        return;
    auth_failure_write(ac, event, method, path, client_ip, key_prefix, reason, required_scope,
                       request_id);
}

void audit_auth_failure(struct audit_client *ac, const char *method, const char *path,
                        const char *client_ip, const char *key_prefix, const char *reason,
                        const char *required_scope, const char *request_id)
{
    audit_auth_failure_as(ac, "auth_failure", method, path, client_ip, key_prefix, reason,
                          required_scope, request_id);
}

void audit_auth_failure_as(struct audit_client *ac, const char *event, const char *method,
                           const char *path, const char *client_ip, const char *key_prefix,
                           const char *reason, const char *required_scope,
                           const char *request_id)
{
    if (reason_aggregated(reason)) {
        audit_auth_refusal_as(ac, event, method, path, client_ip, key_prefix, reason,
                              required_scope, request_id);
        return;
    }
    auth_failure_write(ac, event, method, path, client_ip, key_prefix, reason, required_scope,
                       request_id);
}

static void auth_failure_write(struct audit_client *ac, const char *event, const char *method,
                               const char *path, const char *client_ip, const char *key_prefix,
                               const char *reason, const char *required_scope,
                               const char *request_id)
{
    json_t *line = json_pack("{s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?}", "reason", reason, "method",
                             method, "path", path, "client_ip", client_ip, "key_prefix",
                             key_prefix, "required_scope", required_scope, "request_id",
                             request_id);
    /* The original logs nulls explicitly. */
    const char *keys[] = {"key_prefix", "required_scope", "request_id", "client_ip"};
    for (size_t i = 0; i < 4; i++)
        if (!json_object_get(line, keys[i]))
            json_object_set_new(line, keys[i], json_null());
    log_event(LOG_WARN, event, line);
    json_decref(line);
    audit_emit(ac, event, request_id, key_prefix, client_ip,
               json_pack("{s:s?,s:s?,s:s?,s:s?}", "reason", reason, "method", method, "path",
                         path, "required_scope", required_scope));
}

json_t *audit_config_fields(const struct config *c)
{
    json_t *off = json_array();
    struct {
        const char *name;
        int off;
    } checks[] = {
        {"sentinel_webhook_secret_unset", !*c->sentinel_webhook_secret},
        {"elastic_webhook_secret_unset", !*c->elastic_webhook_secret},
        {"splunk_webhook_secret_unset", !*c->splunk_webhook_secret},
        {"webhook_signature_not_required", !c->webhook_signature_required},
        {"cors_allow_all_origins", c->cors_allow_all},
        {"tls_off", !*c->tls_cert_file},
        {"bus_curve_off", !*c->curve_server_public_key},
        {"encryption_key_unset", !*c->encryption_key},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (checks[i].off)
            json_array_append_new(off, json_string(checks[i].name));
    return json_pack("{s:s,s:s,s:o}", "secrets_backend",
                     c->secrets_backend ? c->secrets_backend : "environment", "app_version",
                     c->app_version ? c->app_version : "", "protections_off", off);
}

void audit_emit_config_loaded(struct audit_client *ac, const struct config *c)
{
    audit_emit(ac, "config_loaded", NULL, NULL, NULL, audit_config_fields(c));
}

size_t audit_client_flush(struct audit_client *ac, int timeout_ms)
{
    if (!ac)
        return 0;
    uint64_t deadline = now_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    int resend_ms = timeout_ms > 0 && timeout_ms < 2 * ACK_TIMEOUT_MS ? timeout_ms / 3 + 1
                                                                     : ACK_TIMEOUT_MS;
    pump(ac);
    while (ac->sock && outstanding(ac) > 0) {
        uint64_t now = now_mono_ms();
        if (now >= deadline)
            break;
        zmq_pollitem_t it = {ac->sock, 0, ZMQ_POLLIN, 0};
        long wait = (long)(deadline - now) < 50 ? (long)(deadline - now) : 50;
        zmq_poll(&it, 1, wait);
        uint32_t ev = 0;
        size_t sz = sizeof ev;
        while (zmq_getsockopt(ac->sock, ZMQ_EVENTS, &ev, &sz) == 0 && (ev & ZMQ_POLLIN))
            on_readable(ac);
        check_progress(ac, resend_ms);
        pump(ac);
    }
    return outstanding(ac);
}

void audit_client_free(struct audit_client *ac)
{
    if (!ac)
        return;
    refusals_sweep(ac, 1);
    if (ac->watch)
        bus_watch_free(ac->watch);
    if (ac->timer_on)
        uv_close((uv_handle_t *)&ac->timer, NULL);
    if (ac->loop && (ac->watch || ac->timer_on))
        uv_run(ac->loop, UV_RUN_NOWAIT);
    if (ac->sock)
        zmq_close(ac->sock);
    size_t left = outstanding(ac);
    if (ac->spool_fd >= 0) {
        if (left == 0 && ac->load_off == ac->end_off)
            unlink(ac->spool_path);
        else
            msg_warn("audit: %zu events left in %s for replay", left, ac->spool_path);
        close(ac->spool_fd);
    }
    for (size_t i = 0; i < ac->qlen; i++)
        free(qat(ac, i)->data);
    free(ac->q);
    free(ac->rxbuf);
    free(ac->service);
    free(ac->endpoint);
    free(ac->spool_dir);
    free(ac->spool_path);
    free(ac);
}

void audit_client_get_stats(const struct audit_client *ac, struct audit_client_stats *st)
{
    *st = ac->st;
    st->pending = outstanding(ac);
}

const char *audit_client_spool_path(const struct audit_client *ac)
{
    return ac->spool_path;
}
