/*
 * main.c - calseta-auditd: the audit writer.
 *
 * Producers (libcommon/audit/audit.c) send audit events over DEALER sockets to our ROUTER at
 * AUDIT_ENDPOINT. Events are handled in groups:
 *   1. receive what is queued (up to 1000 messages), decode each (hostile input: refused
 *      unless valid);
 *   2. in one open transaction, INSERT them into audit_events (ON CONFLICT (event_id) DO
 *      NOTHING RETURNING event_id): rows that were new and whose id is not among the ids
 *      recently written are written as lines, in arrival order, to stdout and AUDIT_LOG_FILE;
 *   3. when the group closes - at once with AUDIT_FSYNC_MS=0, else after that many ms - the
 *      file is fsynced, the transaction committed, and only then are the ids acknowledged.
 * The file is written (and fsynced) before the table commits, so every row in the table is in
 * the file; an event written but not committed when we died is in the file's tail, whose ids
 * are loaded at start: a replayed event is written exactly once and inserted exactly once.
 * If PostgreSQL goes away the group is kept, acknowledgements are held (producers keep their
 * spool) and the group is applied again once a connection is back.
 * SIGHUP reopens the file (logrotate), AUDIT_ROTATE_BYTES rotates it by size, SIGTERM drains.
 */
#include "audit.h"
#include "auditd.h"
#include "bus.h"
#include "config.h"
#include "log.h"
#include "procsec.h"
#include "proto/proto.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define CHUNK_MAX 1000
#define GROUP_MAX 20000
#define SEEN_MAX 262144
#define SEEN_LOAD_BYTES (64u << 20)
#define IDENT_MAX 255

struct gev {
    struct audit_event ev;
    unsigned char ident[IDENT_MAX];
    size_t identlen; /* 0: our own event, nobody to acknowledge */
};

struct auditd {
    struct config cfg;
    void *router;
    struct sink sink;
    struct seen *seen;
    struct store *db;
    struct gev *grp;
    size_t glen, gcap, gapplied;
    int gopen, broken;
    uint64_t gdeadline;
    uint64_t written, duplicates, rejected;
};

static volatile sig_atomic_t stop_requested, reopen_requested;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reopen_requested = 1;
    else
        stop_requested = 1;
}

static void signals_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- the group ------------------------------------------------------------------------ */

static struct gev *group_push(struct auditd *d)
{
    if (d->glen == d->gcap) {
        d->gcap = d->gcap ? d->gcap * 2 : 256;
        d->grp = xrealloc(d->grp, d->gcap * sizeof *d->grp);
    }
    struct gev *g = &d->grp[d->glen++];
    memset(g, 0, sizeof *g);
    return g;
}

static void group_clear(struct auditd *d)
{
    for (size_t i = 0; i < d->glen; i++)
        audit_event_destroy(&d->grp[i].ev);
    d->glen = d->gapplied = 0;
    d->gopen = 0;
}

/* Inserts grp[from..glen) and writes the new ones. 0, or -1 (the group must be replayed). */
static int group_apply(struct auditd *d, size_t from)
{
    size_t n = d->glen - from;
    if (n == 0)
        return 0;
    if (!d->gopen) {
        if (store_begin(d->db) != 0)
            return -1;
        d->gopen = 1;
        d->gdeadline = now_mono_ms() + (uint64_t)d->cfg.audit_fsync_ms;
    }
    struct audit_event **ev = xmalloc(n * sizeof *ev);
    char *inserted = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        ev[i] = &d->grp[from + i].ev;
    int rc = store_insert(d->db, ev, n, inserted);
    if (rc == 0) {
        struct buf b;
        buf_init(&b);
        size_t fresh = 0;
        for (size_t i = 0; i < n; i++) {
            if (inserted[i] && !seen_has(d->seen, ev[i]->event_id)) {
                sink_format(&d->sink, ev[i], &b);
                seen_add(d->seen, ev[i]->event_id); /* also keeps in-batch duplicates out */
                fresh++;
            }
        }
        if (sink_write(&d->sink, &b) != 0)
            rc = -1;
        d->written += fresh;
        d->duplicates += n - fresh;
        buf_destroy(&b);
    }
    free(ev);
    free(inserted);
    d->gapplied = d->glen;
    return rc == 0 ? 0 : -1;
}

static void send_acks(struct auditd *d)
{
    char(*ids)[AUDIT_ID_LEN + 1] = xmalloc(AUDIT_ACK_MAX * sizeof *ids);
    for (size_t i = 0; i < d->glen;) {
        struct gev *g = &d->grp[i];
        if (!g->identlen) {
            i++;
            continue;
        }
        size_t n = 0;
        while (i < d->glen && n < AUDIT_ACK_MAX && d->grp[i].identlen == g->identlen &&
               !memcmp(d->grp[i].ident, g->ident, g->identlen)) {
            memcpy(ids[n++], d->grp[i].ev.event_id, AUDIT_ID_LEN + 1);
            i++;
        }
        struct buf b;
        buf_init(&b);
        if (audit_ack_encode(ids, n, &b) == 0 &&
            zmq_send(d->router, g->ident, g->identlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
            zmq_send(d->router, b.data, b.len, ZMQ_DONTWAIT); /* a gone peer will resend */
        buf_destroy(&b);
    }
    free(ids);
}

/* fsync, commit, acknowledge. 0, or -1 (the group must be replayed). */
static int group_close(struct auditd *d)
{
    if (!d->gopen)
        return 0;
    if (sink_sync(&d->sink) != 0 || store_commit(d->db) != 0)
        return -1;
    send_acks(d);
    group_clear(d);
    if (reopen_requested) {
        reopen_requested = 0;
        sink_reopen(&d->sink);
        msg_info("audit file reopened");
    }
    sink_maybe_rotate(&d->sink);
    return 0;
}

/* After a failure: reconnect and apply the whole group again until it sticks. */
static void group_recover(struct auditd *d)
{
    int delay = 100;
    while (!stop_requested) {
        store_rollback(d->db);
        store_reset(d->db);
        d->gopen = 0;
        if (group_apply(d, 0) == 0 && group_close(d) == 0) {
            d->broken = 0;
            return;
        }
        usleep((useconds_t)delay * 1000);
        delay = delay < 5000 ? delay * 2 : 5000;
    }
}

/* ---- input ---------------------------------------------------------------------------- */

/* A message we refuse but whose id we can read is acknowledged, so a producer does not send
 * it for ever; it is logged in full on stderr instead. */
static void reject(struct auditd *d, const unsigned char *ident, size_t identlen,
                   const void *data, size_t len)
{
    d->rejected++;
    struct proto_msg m;
    char *id = NULL;
    if (proto_decode(data, len, PROTO_AUDIT_EVENT, &m) == 0) {
        if (proto_get_str(&m, "id", AUDIT_ID_LEN, 0, &id) == 0 &&
            audit_id_valid(id, strlen(id))) {
            char ids[1][AUDIT_ID_LEN + 1];
            memcpy(ids[0], id, AUDIT_ID_LEN + 1);
            struct buf b;
            buf_init(&b);
            if (audit_ack_encode(ids, 1, &b) == 0 &&
                zmq_send(d->router, ident, identlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
                zmq_send(d->router, b.data, b.len, ZMQ_DONTWAIT);
            buf_destroy(&b);
        }
        proto_msg_destroy(&m);
    }
    if (d->rejected <= 100 || d->rejected % 1000 == 0)
        msg_error("audit: refused a malformed message of %zu bytes (id %s; %llu refused so "
                  "far)", len, id ? id : "unknown", (unsigned long long)d->rejected);
    free(id);
}

static void receive_one(struct auditd *d, zmq_msg_t *part)
{
    unsigned char ident[IDENT_MAX];
    int more = 0;
    int n = bus_recv_frame(d->router, ident, sizeof ident, &more);
    if (n < 0)
        return;
    if (n > IDENT_MAX || !more) {
        bus_skip_rest(d->router);
        return;
    }
    if (zmq_msg_recv(part, d->router, ZMQ_DONTWAIT) < 0)
        return;
    int more2 = zmq_msg_more(part);
    if (more2) {
        bus_skip_rest(d->router);
        return;
    }
    struct gev *g = group_push(d);
    if (audit_event_decode(zmq_msg_data(part), zmq_msg_size(part), &g->ev) != 0) {
        d->glen--;
        reject(d, ident, (size_t)n, zmq_msg_data(part), zmq_msg_size(part));
        return;
    }
    memcpy(g->ident, ident, (size_t)n);
    g->identlen = (size_t)n;
}

static size_t receive_chunk(struct auditd *d)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    size_t before = d->glen;
    for (int i = 0; i < CHUNK_MAX && d->glen < GROUP_MAX; i++) {
        uint32_t ev = 0;
        size_t sz = sizeof ev;
        if (zmq_getsockopt(d->router, ZMQ_EVENTS, &ev, &sz) != 0 || !(ev & ZMQ_POLLIN))
            break;
        receive_one(d, &part);
    }
    zmq_msg_close(&part);
    return d->glen - before;
}

/* ---- main ----------------------------------------------------------------------------- */

static void emit_own_config(struct auditd *d)
{
    struct gev *g = group_push(d);
    audit_id_new(g->ev.event_id);
    g->ev.ts_us = now_wall_us();
    g->ev.service = xstrdup("auditd");
    g->ev.pid = (int)getpid();
    g->ev.event_type = xstrdup("config_loaded");
    g->ev.fields = audit_config_fields(&d->cfg);
    json_object_set_new(g->ev.fields, "audit_fsync_ms", json_integer(d->cfg.audit_fsync_ms));
    json_object_set_new(g->ev.fields, "audit_log_file", json_string(d->cfg.audit_log_file));
}

static void setup(struct auditd *d)
{
    char err[512];
    if (sink_open(&d->sink, d->cfg.log_json, d->cfg.audit_stdout, d->cfg.audit_log_file,
                  d->cfg.audit_rotate_bytes, err, sizeof err) != 0)
        msg_fatal("%s", err);
    d->seen = seen_new(SEEN_MAX);
    size_t n = seen_load_file(d->seen, d->cfg.audit_log_file, SEEN_LOAD_BYTES);
    d->db = store_new(d->cfg.database_url);
    if (!store_enabled(d->db))
        msg_warn("DATABASE_URL is not set: audit events go to the file/stdout only");
    struct bus_opts o = {.link = "audit", .hwm = 100000, .max_msg = PROTO_MAX_MSG};
    d->router = bus_server(ZMQ_ROUTER, &d->cfg, d->cfg.audit_endpoint, &o, err, sizeof err);
    if (!d->router)
        msg_fatal("audit endpoint: %s", err);
    msg_info("audit writer on %s (file %s, stdout %s, fsync %s, %zu recent ids loaded)",
             d->cfg.audit_endpoint, *d->cfg.audit_log_file ? d->cfg.audit_log_file : "off",
             d->cfg.audit_stdout ? "on" : "off",
             d->cfg.audit_fsync_ms ? "grouped" : "every batch", n);
}

static void run(struct auditd *d)
{
    while (!stop_requested) {
        long timeout = 1000;
        if (d->gopen) {
            uint64_t now = now_mono_ms();
            timeout = d->gdeadline > now ? (long)(d->gdeadline - now) : 0;
        }
        zmq_pollitem_t it = {d->router, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, timeout);
        size_t from = d->glen;
        receive_chunk(d);
        if (d->glen > from && group_apply(d, from) != 0)
            d->broken = 1;
        if (!d->broken && (d->glen > 0 || d->gopen) &&
            (d->cfg.audit_fsync_ms == 0 || now_mono_ms() >= d->gdeadline ||
             d->glen >= GROUP_MAX) &&
            group_close(d) != 0)
            d->broken = 1;
        if (d->broken)
            group_recover(d);
        if (reopen_requested && !d->gopen) {
            reopen_requested = 0;
            sink_reopen(&d->sink);
            msg_info("audit file reopened");
        }
    }
}

/* SIGTERM: take what is already queued, make it durable, acknowledge, leave. */
static void drain(struct auditd *d)
{
    size_t from = d->glen;
    receive_chunk(d);
    if (d->broken || group_apply(d, d->broken ? 0 : from) != 0 || group_close(d) != 0) {
        msg_warn("audit: exiting with %zu events unacknowledged (producers keep them)",
                 d->glen);
        store_rollback(d->db);
    }
    group_clear(d);
}

int main(int argc, char **argv)
{
    static struct auditd d; /* the service's one context */
    char perr[160];
    if (secure_process_init(perr, sizeof perr) != 0) /* before any secret is read */
        fprintf(stderr, "calseta-auditd: %s\n", perr);
    char err[512];
    if (argc > 1 && !strcmp(argv[1], "produce"))
        return auditd_produce(argc, argv);
    if (config_load(&d.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-auditd: configuration error: %s\n", err);
        return 1;
    }
    config_init_log(&d.cfg, "auditd");
    signals_init();
    setup(&d);
    emit_own_config(&d);
    if (group_apply(&d, 0) != 0 || group_close(&d) != 0)
        d.broken = 1;
    if (d.broken)
        group_recover(&d);
    run(&d);
    drain(&d);
    msg_info("audit writer stopped: %llu written, %llu duplicates dropped, %llu refused",
             (unsigned long long)d.written, (unsigned long long)d.duplicates,
             (unsigned long long)d.rejected);
    zmq_close(d.router);
    bus_context_term();
    store_free(d.db);
    seen_free(d.seen);
    sink_close(&d.sink);
    free(d.grp);
    config_destroy(&d.cfg);
    return 0;
}
