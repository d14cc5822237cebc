/*
 * lookup.c - on-demand lookups for the intake: requests arrive through the job bus's lookup
 * broker (LOOKUP_WORKER_ENDPOINT) as [asker identity][LOOKUP_REQUEST], each named provider of
 * the configuration that came with it runs on the engine that runs jobs (credentials opened
 * just in time, SSRF guard, caps, deadline), and [identity][LOOKUP_REPLY] goes back.
 *
 * The intake, which faces the internet, thereby never decrypts a provider credential. A lookup
 * counts as work in flight: the drain waits for it like for a job.
 */
#include "audit.h"
#include "bus.h"
#include "enricher.h"
#include "log.h"
#include "proto/lookup.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_IDENTITY 256

struct lookup_one {
    struct lookup_op *op;
    const struct provider *p;
};

struct lookup_op {
    struct enricher *en;
    char identity[MAX_IDENTITY];
    size_t identity_len;
    struct lookup_req req;
    struct provider_set *ps;
    struct lookup_one *one;
    size_t n, pending;
    json_t *results;
};

static void send_reply(struct lookup_op *op, const char *error)
{
    struct lookup_reply r = {.id = op->req.id, .error = (char *)error};
    struct buf b;
    buf_init(&b);
    if (!error) {
        r.results_json = json_dumps(op->results, JSON_COMPACT);
        if (r.results_json && strlen(r.results_json) > LOOKUP_MAX_RESULTS) {
            const char *k; /* too large with the raw responses: send them without */
            json_t *v;
            json_object_foreach(op->results, k, v) json_object_del(v, "raw");
            free(r.results_json);
            r.results_json = json_dumps(op->results, JSON_COMPACT);
        }
    }
    lookup_encode_reply(&r, &b);
    free(r.results_json);
    void *sock = op->en->lookup_sock;
    if (sock && (bus_send(sock, op->identity, op->identity_len, 1) != 0 ||
                 bus_send(sock, b.data, b.len, 0) != 0))
        msg_warn("on-demand lookup %llu: the reply could not be sent",
                 (unsigned long long)op->req.id);
    if (op->en->lookup_watch)
        bus_watch_kick(op->en->lookup_watch);
    buf_destroy_wiped(&b);
}

static void op_free(struct lookup_op *op)
{
    struct enricher *en = op->en;
    lookup_req_destroy(&op->req);
    provider_set_unref(op->ps);
    free(op->one);
    json_decref(op->results);
    free(op);
    en->inflight--;
    claim_job_finished(en);
}

static void on_done(void *arg, json_t *result)
{
    struct lookup_one *one = arg;
    struct lookup_op *op = one->op;
    json_object_set_new(op->results, one->p->name, result);
    if (--op->pending == 0) {
        send_reply(op, NULL);
        op_free(op);
    }
}

/* Parses the configuration and the names; NULL error on success. */
static const char *prepare(struct lookup_op *op)
{
    char err[256];
    json_t *doc = json_loads(op->req.config_json, JSON_REJECT_DUPLICATES, NULL);
    op->ps = doc ? provider_set_parse(doc, &op->en->opt.provider, err, sizeof err) : NULL;
    json_decref(doc);
    if (!op->ps)
        return "unreadable provider configuration";
    json_t *names = json_loads(op->req.providers_json, JSON_REJECT_DUPLICATES, NULL);
    size_t i;
    json_t *name;
    op->one = xcalloc(json_array_size(names) + 1, sizeof *op->one);
    json_array_foreach(names, i, name) {
        const char *nm = json_string_value(name);
        const struct provider *p = nm ? provider_find(op->ps, nm) : NULL;
        if (!p || !provider_supports(p, op->req.type))
            continue;
        op->one[op->n].op = op;
        op->one[op->n].p = p;
        op->n++;
    }
    json_decref(names);
    return NULL;
}

static void start(struct enricher *en, const char *identity, size_t identity_len,
                  struct lookup_req *req)
{
    struct lookup_op *op = xcalloc(1, sizeof *op);
    op->en = en;
    memcpy(op->identity, identity, identity_len);
    op->identity_len = identity_len;
    op->req = *req;
    op->results = json_object();
    en->inflight++;
    const char *error = prepare(op);
    if (error || op->n == 0) {
        send_reply(op, error);
        op_free(op);
        return;
    }
    uint64_t deadline = now_mono_ms() + (uint64_t)op->req.timeout_ms;
    op->pending = op->n;
    for (size_t i = 0; i < op->n; i++)
        engine_lookup(en->engine, op->one[i].p, op->req.type, op->req.value, 0, deadline, on_done,
                      &op->one[i]);
}

static void on_readable(void *arg)
{
    struct enricher *en = arg;
    struct buf parts[2];
    size_t n;
    buf_init(&parts[0]);
    buf_init(&parts[1]);
    if (bus_recv_msg(en->lookup_sock, parts, 2, &n) == 0) {
        struct lookup_req req;
        if (n != 2 || parts[0].len == 0 || parts[0].len > MAX_IDENTITY ||
            lookup_decode_request(parts[1].data, parts[1].len, &req) != 0)
            msg_warn("on-demand lookups: refused a malformed request (%zu frames)", n);
        else if (en->draining)
            lookup_req_destroy(&req); /* the asker times out; another enricher may answer */
        else
            start(en, parts[0].data, parts[0].len, &req);
    }
    buf_destroy(&parts[0]);
    buf_destroy(&parts[1]);
}

void lookups_start(struct enricher *en)
{
    char err[256];
    struct bus_opts o = {.link = "lookup", .max_msg = LOOKUP_MAX_MSG, .hwm = 1000};
    en->lookup_sock = bus_client(ZMQ_DEALER, en->cfg, en->cfg->lookup_back, &o, err, sizeof err);
    if (!en->lookup_sock)
        msg_fatal("on-demand lookups: %s (LOOKUP_WORKER_ENDPOINT=%s)", err, en->cfg->lookup_back);
    en->lookup_watch = bus_watch_new(en->loop, en->lookup_sock, on_readable, en);
}

void lookups_stop(struct enricher *en)
{
    if (en->lookup_watch)
        bus_watch_free(en->lookup_watch);
    en->lookup_watch = NULL;
}

void lookups_close(struct enricher *en)
{
    lookups_stop(en);
    bus_close(en->lookup_sock);
    en->lookup_sock = NULL;
}
