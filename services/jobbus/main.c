/*
 * main.c - calseta-jobbus: the "work is ready" forwarder between intake and enrichers.
 *
 * Intake processes connect PUSH sockets to JOB_BUS_PUSH_ENDPOINT; enrichers, on this host or
 * any other, connect PULL sockets to JOB_BUS_PULL_ENDPOINT. The forwarder binds both and moves
 * messages between them, so neither side needs to know how many of the other there are.
 * Messages are only wake-up signals carrying ids: PostgreSQL is the truth, so a message lost
 * here (forwarder restart, full queue) delays a job until the enrichers' periodic claim poll,
 * and loses nothing. When CURVE_SERVER_SECRET_KEY is set the enricher-facing socket is a CURVE
 * server, so links across hosts are authenticated and encrypted.
 */
#include "config.h"
#include "log.h"

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

static void *bind_socket(void *zctx, int type, const char *endpoint, const struct config *c,
                         int curve)
{
    void *s = zmq_socket(zctx, type);
    int linger = 0, hwm = 100000, maxmsg = 4096;
    int64_t maxmsg64 = maxmsg;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg64, sizeof maxmsg64);
    if (curve && *c->curve_server_secret_key) {
        int one = 1;
        zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->curve_server_secret_key,
                       strlen(c->curve_server_secret_key));
    }
    if (zmq_bind(s, endpoint) != 0)
        msg_fatal("jobbus: cannot bind %s: %s", endpoint, zmq_strerror(errno));
    return s;
}

int main(void)
{
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

    void *zctx = zmq_ctx_new();
    void *front = bind_socket(zctx, ZMQ_PULL, c.job_bus_push, &c, 0);
    void *back = bind_socket(zctx, ZMQ_PUSH, c.job_bus_pull, &c, 1);
    msg_info("job bus forwarding %s -> %s", c.job_bus_push, c.job_bus_pull);

    zmq_pollitem_t items[] = {{front, 0, ZMQ_POLLIN, 0}};
    unsigned long forwarded = 0;
    while (!stop_requested) {
        int rc = zmq_poll(items, 1, 500);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            continue;
        for (;;) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, front, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            /* With no enricher connected the message is dropped: the claim poll covers it. */
            if (zmq_msg_send(&m, back, ZMQ_DONTWAIT) < 0)
                zmq_msg_close(&m);
            else
                forwarded++;
        }
    }
    msg_info("job bus stopping after forwarding %lu messages", forwarded);
    zmq_close(front);
    zmq_close(back);
    zmq_ctx_term(zctx);
    config_destroy(&c);
    return 0;
}
