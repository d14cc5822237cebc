/*
 * bus_zap.c - the process's ZAP handler: which CURVE clients a bus server accepts.
 *
 * CURVE alone only proves the server to the client; any process that reaches a tcp:// endpoint
 * and knows the (public) server key could otherwise connect and push jobs or ask a runner to
 * run code. libzmq asks a ZAP handler (ZeroMQ RFC 27: a REP socket bound to
 * inproc://zeromq.zap.01 in the socket's context) about every handshake of a socket that has a
 * ZAP domain; each server socket's domain is its link's name, and the handler accepts a client
 * only when its long-term public key is on that link's allow-list.
 *
 * The handler socket is bound by the thread that makes the first CURVE server socket, before
 * that socket binds (a handshake that found no handler would be let through), then handed to a
 * thread of its own that answers requests until the context is terminated. Refusals are
 * logged at most once per REFUSAL_LOG_SECONDS with the count of those not logged.
 */
#include "bus.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define KEY_LEN 32
#define MAX_DOMAINS 16
#define MAX_FRAMES 8
#define FRAME_CAP 256
#define REFUSAL_LOG_SECONDS 10

struct domain {
    char name[32];
    uint8_t *keys; /* KEY_LEN bytes each */
    size_t nkeys;
};

static pthread_mutex_t zap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct domain domains[MAX_DOMAINS];
static size_t ndomains;
static void *zap_sock;
static pthread_t zap_thread;
static int zap_running;
static time_t last_logged;
static unsigned long not_logged;

static int key_allowed(const char *domain, const uint8_t *key)
{
    int ok = 0;
    pthread_mutex_lock(&zap_lock);
    for (size_t i = 0; i < ndomains && !ok; i++) {
        if (strcmp(domains[i].name, domain))
            continue;
        for (size_t k = 0; k < domains[i].nkeys && !ok; k++)
            ok = !memcmp(domains[i].keys + k * KEY_LEN, key, KEY_LEN);
    }
    pthread_mutex_unlock(&zap_lock);
    return ok;
}

static void log_refusal(const char *domain, const char *address, const char *mechanism,
                        const uint8_t *key)
{
    time_t now = time(NULL);
    if (last_logged && now - last_logged < REFUSAL_LOG_SECONDS) {
        not_logged++;
        return;
    }
    char z85[41] = "";
    if (key)
        zmq_z85_encode(z85, key, KEY_LEN);
    msg_warn("bus: refused a %s client of the %s link from %s%s%s (%lu more refused and not "
             "logged in the last %d s)",
             mechanism, domain, address[0] ? address : "an unknown address",
             key ? ": its CURVE key is not allowed: " : "", z85, not_logged,
             REFUSAL_LOG_SECONDS);
    last_logged = now;
    not_logged = 0;
}

/* A frame as a NUL-terminated string (ZAP's text frames are short). */
static void frame_text(const struct buf *f, char *out, size_t cap)
{
    size_t n = f->len < cap - 1 ? f->len : cap - 1;
    if (n)
        memcpy(out, f->data, n);
    out[n] = 0;
}

static void reply(void *s, const struct buf *request_id, const char *code, const char *text)
{
    zmq_send(s, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(s, request_id->data, request_id->len, ZMQ_SNDMORE);
    zmq_send(s, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(s, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(s, "", 0, ZMQ_SNDMORE); /* user id */
    zmq_send(s, "", 0, 0);           /* metadata */
}

/* One request: version, request id, domain, address, routing id, mechanism, credentials. */
static void answer(void *s, struct buf *f, size_t n)
{
    char version[8], domain[32], address[64], mechanism[16];
    if (n < 6) {
        struct buf none = {0};
        reply(s, n >= 2 ? &f[1] : &none, "500", "malformed ZAP request");
        return;
    }
    frame_text(&f[0], version, sizeof version);
    frame_text(&f[2], domain, sizeof domain);
    frame_text(&f[3], address, sizeof address);
    frame_text(&f[5], mechanism, sizeof mechanism);
    if (strcmp(version, "1.0")) {
        reply(s, &f[1], "500", "unsupported ZAP version");
        return;
    }
    const uint8_t *key = n >= 7 && f[6].len == KEY_LEN ? (const uint8_t *)f[6].data : NULL;
    if (!strcmp(mechanism, "CURVE") && key && key_allowed(domain, key)) {
        reply(s, &f[1], "200", "OK");
        return;
    }
    log_refusal(domain, address, mechanism, key);
    reply(s, &f[1], "400", "client key not allowed");
}

static void *zap_main(void *arg)
{
    void *s = arg;
    struct buf f[MAX_FRAMES];
    for (size_t i = 0; i < MAX_FRAMES; i++)
        buf_init(&f[i]);
    for (;;) {
        size_t n = 0;
        int more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s, 0) < 0) {
                zmq_msg_close(&m);
                if (errno == EINTR)
                    continue;
                goto out; /* ETERM: the context is going away */
            }
            more = zmq_msg_more(&m);
            if (n < MAX_FRAMES) {
                size_t len = zmq_msg_size(&m);
                buf_reset(&f[n]);
                buf_append(&f[n], zmq_msg_data(&m), len < FRAME_CAP ? len : FRAME_CAP);
            }
            n++;
            zmq_msg_close(&m);
        }
        answer(s, f, n < MAX_FRAMES ? n : MAX_FRAMES);
    }
out:
    for (size_t i = 0; i < MAX_FRAMES; i++)
        buf_destroy(&f[i]);
    zmq_close(s);
    return NULL;
}

/* Binds the handler and starts its thread; zap_lock held. */
static int start_handler(char *err, size_t errlen)
{
    void *s = zmq_socket(bus_context(), ZMQ_REP);
    int linger = 0;
    if (!s || zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(s, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "cannot start the CURVE client check (%s): %s", ZAP_ENDPOINT,
                 zmq_strerror(errno));
        if (s)
            zmq_close(s);
        return -1;
    }
    if (pthread_create(&zap_thread, NULL, zap_main, s) != 0) {
        snprintf(err, errlen, "cannot start the CURVE client check thread");
        zmq_close(s);
        return -1;
    }
    zap_sock = s;
    zap_running = 1;
    return 0;
}

int bus_zap_allow(const char *domain, const uint8_t *keys, size_t nkeys, char *err,
                  size_t errlen)
{
    int rc = -1;
    pthread_mutex_lock(&zap_lock);
    if (!zap_running && start_handler(err, errlen) != 0)
        goto out;
    struct domain *d = NULL;
    for (size_t i = 0; i < ndomains && !d; i++)
        if (!strcmp(domains[i].name, domain))
            d = &domains[i];
    if (!d) {
        if (ndomains == MAX_DOMAINS || strlen(domain) >= sizeof d->name) {
            snprintf(err, errlen, "too many bus links or a link name too long: %s", domain);
            goto out;
        }
        d = &domains[ndomains++];
        snprintf(d->name, sizeof d->name, "%s", domain);
    }
    for (size_t k = 0; k < nkeys; k++) {
        int seen = 0;
        for (size_t j = 0; j < d->nkeys && !seen; j++)
            seen = !memcmp(d->keys + j * KEY_LEN, keys + k * KEY_LEN, KEY_LEN);
        if (seen)
            continue;
        d->keys = xrealloc(d->keys, (d->nkeys + 1) * KEY_LEN);
        memcpy(d->keys + d->nkeys * KEY_LEN, keys + k * KEY_LEN, KEY_LEN);
        d->nkeys++;
    }
    rc = 0;
out:
    pthread_mutex_unlock(&zap_lock);
    return rc;
}

void bus_zap_stopped(void)
{
    pthread_mutex_lock(&zap_lock);
    int running = zap_running;
    zap_running = 0;
    zap_sock = NULL;
    for (size_t i = 0; i < ndomains; i++)
        free(domains[i].keys);
    memset(domains, 0, sizeof domains);
    ndomains = 0;
    pthread_mutex_unlock(&zap_lock);
    if (running)
        pthread_join(zap_thread, NULL);
}
