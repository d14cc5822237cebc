/*
 * server.c - the runner's ZeroMQ front end and the dispatch every request goes through.
 *
 * A ROUTER socket receives [identity][msgpack request] from intake DEALERs and queues it;
 * max_concurrent worker threads take requests in turn, call runner_dispatch() and hand
 * [identity][reply] back to the main thread over their own inproc PUSH, since ZeroMQ sockets
 * belong to one thread. Stopping drains: no new requests are read, and every request queued or
 * running is answered before runner_serve() returns.
 */
#include "runner.h"
#include "bus.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define RESULTS_ENDPOINT "inproc://runner-results"
#define MAX_REQUEST_BYTES (8 * 1024 * 1024)
#define MAX_REPLY_BYTES (32LL * 1024 * 1024)

struct job {
    struct job *next;
    void *identity;
    size_t identity_len;
    void *payload;
    size_t payload_len;
};

/* max_concurrent worker threads, each with its own PUSH to the main thread (a ZeroMQ socket
 * belongs to one thread), taking requests from one queue. */
struct server {
    struct zygote *z;
    int nworkers;
    pthread_mutex_t lock;
    pthread_cond_t more;
    struct job *head, *tail;
    int in_flight; /* queued or running, not yet answered */
    int quit;
};

int runner_dispatch(struct zygote *z, const void *req, size_t len, struct buf *reply)
{
    struct runner_msg msg;
    char err[256];
    if (runner_decode(req, len, &msg, err, sizeof err) != 0) {
        msg_warn("runner: refused a request: %s", err);
        return -1;
    }
    int rc = 0;
    if (msg.type == RUNNER_MSG_VALIDATE) {
        struct runner_validation v;
        zygote_validate(z, msg.code, &v);
        runner_encode_validation(msg.id, &v, reply);
        runner_validation_destroy(&v);
    } else if (msg.type == RUNNER_MSG_RUN) {
        struct runner_result r;
        zygote_run(z, &msg.run, &r);
        msg_info("runner: run %s finished: %s in %lld ms", msg.run.run_uuid,
                 runner_status_name(r.status), (long long)r.duration_ms);
        runner_encode_result(msg.id, &r, reply);
        runner_result_destroy(&r);
    } else {
        msg_warn("runner: refused a message of type %d (not a request)", (int)msg.type);
        rc = -1;
    }
    runner_msg_destroy(&msg);
    return rc;
}

static void job_free(struct job *j)
{
    free(j->identity);
    if (j->payload)
        explicit_bzero(j->payload, j->payload_len); /* a run request carries secrets */
    free(j->payload);
    free(j);
}

static struct job *next_job(struct server *s)
{
    pthread_mutex_lock(&s->lock);
    while (!s->head && !s->quit)
        pthread_cond_wait(&s->more, &s->lock);
    struct job *j = s->head;
    if (j) {
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    return j;
}

static void *worker(void *arg)
{
    struct server *s = arg;
    char err[256];
    struct bus_opts o = {.max_msg = MAX_REPLY_BYTES, .linger_ms = 1000};
    void *push = bus_client(ZMQ_PUSH, NULL, RESULTS_ENDPOINT, &o, err, sizeof err);
    if (!push)
        msg_fatal("runner: %s", err);
    struct job *j;
    while ((j = next_job(s)) != NULL) {
        struct buf reply;
        buf_init(&reply);
        if (runner_dispatch(s->z, j->payload, j->payload_len, &reply) == 0) {
            zmq_send(push, j->identity, j->identity_len, ZMQ_SNDMORE);
            zmq_send(push, reply.data, reply.len, 0);
        } else {
            zmq_send(push, "", 0, 0); /* counts the job as done, nothing to answer */
        }
        buf_destroy(&reply);
        job_free(j);
    }
    bus_close(push);
    return NULL;
}

static void *copy_msg(zmq_msg_t *m, size_t *len)
{
    *len = zmq_msg_size(m);
    void *p = xmalloc(*len + 1);
    memcpy(p, zmq_msg_data(m), *len);
    return p;
}

/* A run is never queued behind busy workers: its sender's wait and lease started when it sent
 * it, so a queued run could outlive them and be run twice. It is answered BUSY at once (not
 * started; the sender gives it back uncounted). Validations may queue: they are short. */
static int refuse_if_busy(struct server *s, void *router, zmq_msg_t *id, zmq_msg_t *body)
{
    pthread_mutex_lock(&s->lock);
    int full = s->in_flight >= s->nworkers;
    pthread_mutex_unlock(&s->lock);
    if (!full)
        return 0;
    struct runner_msg msg;
    char err[256];
    if (runner_decode(zmq_msg_data(body), zmq_msg_size(body), &msg, err, sizeof err) != 0)
        return 0; /* refused (and logged) by the worker */
    int busy = msg.type == RUNNER_MSG_RUN;
    if (busy) {
        struct runner_result r = {.status = RUNNER_BUSY};
        struct buf reply;
        buf_init(&reply);
        r.message = "every worker of this runner is busy";
        r.data_json = "{}";
        r.log_output = "";
        r.sandbox = "";
        runner_encode_result(msg.id, &r, &reply);
        zmq_send(router, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE);
        zmq_send(router, reply.data, reply.len, 0);
        buf_destroy(&reply);
    }
    runner_msg_destroy(&msg);
    return busy;
}

/* Reads [identity][payload] (extra frames: refused) and queues it for the workers. */
static void accept_request(struct server *s, void *router)
{
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&id, router, ZMQ_DONTWAIT) < 0)
        goto out;
    if (!zmq_msg_more(&id) || zmq_msg_recv(&body, router, 0) < 0)
        goto out;
    if (zmq_msg_more(&body)) {
        int more = 1;
        while (more) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            zmq_msg_recv(&extra, router, 0);
            more = zmq_msg_more(&extra);
            zmq_msg_close(&extra);
        }
        msg_warn("runner: refused a request with extra frames");
        goto out;
    }
    if (refuse_if_busy(s, router, &id, &body))
        goto out;
    struct job *j = xcalloc(1, sizeof *j);
    j->identity = copy_msg(&id, &j->identity_len);
    j->payload = copy_msg(&body, &j->payload_len);
    pthread_mutex_lock(&s->lock);
    s->in_flight++;
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    pthread_cond_signal(&s->more);
    pthread_mutex_unlock(&s->lock);
out:
    zmq_msg_close(&id);
    zmq_msg_close(&body);
}

/* Moves one finished reply from the workers to the ROUTER. */
static void forward_reply(struct server *s, void *pull, void *router)
{
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&id, pull, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        return;
    }
    if (zmq_msg_more(&id) && zmq_msg_recv(&body, pull, 0) >= 0) {
        zmq_msg_send(&id, router, ZMQ_SNDMORE);
        zmq_msg_send(&body, router, 0);
    }
    pthread_mutex_lock(&s->lock);
    s->in_flight--;
    pthread_mutex_unlock(&s->lock);
    zmq_msg_close(&id);
    zmq_msg_close(&body);
}

static int in_flight(struct server *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->in_flight;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int runner_serve(struct zygote *z, const struct config *c, const char *endpoint,
                 int max_concurrent, volatile int *stop)
{
    int nworkers = max_concurrent > 0 ? max_concurrent : 1, started = 0;
    struct server s = {.z = z, .nworkers = nworkers};
    pthread_t *workers = xcalloc((size_t)nworkers, sizeof *workers);
    char err[512];
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.more, NULL);
    struct bus_opts ro = {.link = "runner", .max_msg = MAX_REQUEST_BYTES};
    struct bus_opts po = {.max_msg = MAX_REPLY_BYTES};
    void *pull = bus_server(ZMQ_PULL, NULL, RESULTS_ENDPOINT, &po, err, sizeof err);
    void *router = pull ? bus_server(ZMQ_ROUTER, c, endpoint, &ro, err, sizeof err) : NULL;
    int rc = 0;
    if (!router) {
        msg_error("runner: %s", err);
        rc = -1;
        goto out;
    }
    for (; started < nworkers; started++)
        if (pthread_create(&workers[started], NULL, worker, &s) != 0)
            msg_fatal("runner: cannot start worker threads");
    msg_info("runner listening on %s (%d at once)", endpoint, nworkers);
    while (!*stop || in_flight(&s) > 0) {
        zmq_pollitem_t items[] = {{pull, 0, ZMQ_POLLIN, 0}, {router, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, *stop ? 1 : 2, 200);
        if (n < 0 && errno != EINTR)
            break;
        if (n <= 0)
            continue;
        if (items[0].revents & ZMQ_POLLIN)
            forward_reply(&s, pull, router);
        if (!*stop && (items[1].revents & ZMQ_POLLIN))
            accept_request(&s, router);
    }
out:
    pthread_mutex_lock(&s.lock);
    s.quit = 1;
    pthread_cond_broadcast(&s.more);
    pthread_mutex_unlock(&s.lock);
    for (int i = 0; i < started; i++)
        pthread_join(workers[i], NULL);
    free(workers);
    bus_close(router);
    bus_close(pull);
    pthread_cond_destroy(&s.more);
    pthread_mutex_destroy(&s.lock);
    return rc;
}
