/*
 * main.c - calseta-jobbus: the brokers between intakes and enrichers, so that neither side
 * needs to know how many of the other there are.
 *
 * 1. "Work is ready": intakes PUSH to JOB_BUS_PUSH_ENDPOINT, enrichers PULL from
 *    JOB_BUS_PULL_ENDPOINT. Messages are only wake-up signals carrying ids: PostgreSQL is the
 *    truth, so a message lost here (forwarder restart, full queue) delays a job until the
 *    enrichers' periodic claim poll, and loses nothing. An intake sends one message per
 *    commit; the bus splits it into one wake-up per JOBS_PER_WAKEUP jobs, which PUSH hands to
 *    the enrichers in turn, so a large commit wakes several of them.
 * 2. On-demand lookups: intakes send requests to LOOKUP_REQUEST_ENDPOINT (a ROUTER, which
 *    prefixes the sender's identity), enrichers take them from LOOKUP_WORKER_ENDPOINT (a
 *    DEALER, round robin) and answer with the identity in front, which the ROUTER uses to route
 *    the reply home. The intake, which holds no provider credential, never does a lookup.
 *
 * Every socket is made by the bus module: ipc:// in the data folder by default, CURVE on tcp://.
 */
#include "bus.h"
#include "config.h"
#include "log.h"
#include "proto/job.h"
#include "proto/lookup.h"
#include "util.h"
#include "procsec.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>


static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void *bind_or_die(int type, const struct config *c, const char *endpoint,
                         const char *link, int64_t max_msg)
{
    char err[512];
    struct bus_opts o = {.link = link, .max_msg = max_msg, .hwm = 100000};
    void *s = bus_server(type, c, endpoint, &o, err, sizeof err);
    if (!s)
        msg_fatal("jobbus: %s", err);
    return s;
}

/* Moves every ready message, all its frames, from one socket to the other. With no peer on
 * the far side a message is dropped: jobs are found by the claim poll, lookups time out. */
static unsigned long forward(void *from, void *to)
{
    unsigned long n = 0;
    while (bus_readable(from)) {
        int more = 1, ok = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, from, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                return n;
            }
            more = zmq_msg_more(&m);
            if (!ok || zmq_msg_send(&m, to, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) < 0) {
                ok = 0;
                zmq_msg_close(&m);
            }
        }
        n += ok;
    }
    return n;
}

/* An enricher claims as many jobs as it has free slots (ENRICHER_CONCURRENCY, 8 by default):
 * a wake-up per four jobs of a commit leaves none of them to wait for an enricher's poll. */
#define JOBS_PER_WAKEUP 4

/* "Work is ready" from intakes to enrichers: a JOB_READY of more than JOBS_PER_WAKEUP jobs goes
 * on as several wake-ups of at most that many; anything else is passed on as it came. (The
 * intake could send them itself, but every message costs it a wake-up of its ZeroMQ I/O thread
 * and several system calls, a large share of its work per alert.) */
static unsigned long forward_jobs(void *from, void *to)
{
    unsigned long n = 0;
    unsigned char msg[256];
    int more;
    for (int got; (got = bus_recv_frame(from, msg, sizeof msg, &more)) >= 0;) {
        if (more)
            bus_skip_rest(from); /* not ours: a JOB_READY is one frame */
        struct job_ready j;
        if (more || got > (int)sizeof msg || job_ready_decode(msg, (size_t)got, &j) != 0)
            continue; /* the enrichers would only log and drop it */
        if (j.count <= JOBS_PER_WAKEUP) {
            n += bus_send(to, msg, (size_t)got, 0) == 0;
            continue;
        }
        for (int64_t left = j.count; left > 0; left -= JOBS_PER_WAKEUP) {
            struct job_ready part = j;
            size_t len;
            part.count = left < JOBS_PER_WAKEUP ? left : JOBS_PER_WAKEUP;
            if (job_ready_encode_msg(&part, msg, sizeof msg, &len) != 0 ||
                bus_send(to, msg, len, 0) != 0)
                break; /* no enricher connected, or a full queue: the poll finds the jobs */
            n++;
        }
    }
    return n;
}

/* Lookups from intakes to enrichers: [identity][request] is passed on whole, or, when no
 * enricher is connected, answered at once with an error so the asker does not wait for its
 * deadline. */
static unsigned long forward_lookups(void *front, void *back)
{
    unsigned long n = 0;
    struct buf parts[2];
    size_t nparts;
    buf_init(&parts[0]);
    buf_init(&parts[1]);
    while (bus_recv_msg(front, parts, 2, &nparts) == 0) {
        if (nparts != 2)
            continue; /* not [identity][request]: dropped */
        if (bus_send(back, parts[0].data, parts[0].len, 1) == 0 &&
            bus_send(back, parts[1].data, parts[1].len, 0) == 0) {
            n++;
            continue;
        }
        struct lookup_req req;
        if (lookup_decode_request(parts[1].data, parts[1].len, &req) != 0)
            continue;
        struct lookup_reply r = {.id = req.id, .error = "no enricher is connected"};
        struct buf b;
        buf_init(&b);
        lookup_encode_reply(&r, &b);
        if (bus_send(front, parts[0].data, parts[0].len, 1) == 0)
            bus_send(front, b.data, b.len, 0);
        buf_destroy(&b);
        lookup_req_destroy(&req);
    }
    buf_destroy(&parts[0]);
    buf_destroy(&parts[1]);
    return n;
}

int main(void)
{
    char perr[160];
    if (secure_process_init(perr, sizeof perr) != 0) /* before any secret is read */
        fprintf(stderr, "calseta-jobbus: %s\n", perr);
    struct config c;
    char err[512];
    if (config_load(&c, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-jobbus: configuration error: %s\n", err);
        return 1;
    }
    config_init_log(&c, "jobbus");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    void *jobs_in = bind_or_die(ZMQ_PULL, &c, c.job_bus_push, "jobs", 4096);
    void *jobs_out = bind_or_die(ZMQ_PUSH, &c, c.job_bus_pull, "jobs", 4096);
    void *lookup_in = bind_or_die(ZMQ_ROUTER, &c, c.lookup_front, "lookup", LOOKUP_MAX_MSG);
    void *lookup_out = bind_or_die(ZMQ_DEALER, &c, c.lookup_back, "lookup", LOOKUP_MAX_MSG);
    msg_info("job bus forwarding %s -> %s, lookups %s <-> %s", c.job_bus_push, c.job_bus_pull,
             c.lookup_front, c.lookup_back);

    unsigned long jobs = 0, lookups = 0;
    while (!stop_requested) {
        zmq_pollitem_t items[] = {{jobs_in, 0, ZMQ_POLLIN, 0},
                                  {lookup_in, 0, ZMQ_POLLIN, 0},
                                  {lookup_out, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, 3, 500);
        if (rc <= 0)
            continue;
        jobs += forward_jobs(jobs_in, jobs_out);
        lookups += forward_lookups(lookup_in, lookup_out);
        forward(lookup_out, lookup_in);
    }
    msg_info("job bus stopping after sending %lu job wake-ups and %lu lookups", jobs, lookups);
    bus_close(jobs_in);
    bus_close(jobs_out);
    bus_close(lookup_in);
    bus_close(lookup_out);
    bus_context_term();
    config_destroy(&c);
    return 0;
}
