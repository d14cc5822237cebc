/*
 * deliver.c - one attempt of one delivery, from claimed row to recorded outcome:
 *
 *   1. SSRF guard on the libuv thread pool (it resolves): the address it checked is the target
 *      (CURLOPT_CONNECT_TO) and the only address a socket may connect to (curluv's pin), so a
 *      DNS answer that changed since the agent was saved (or since the last attempt) cannot
 *      send the request anywhere else; refused → recorded, not retried
 *   2. headers: X-Calseta-Delivery (the row's uuid, the same on every attempt),
 *      X-Calseta-Timestamp, X-Calseta-Signature = sha256=HMAC-SHA256(secret, ts "." body),
 *      one signature per valid secret (two during a rotation overlap), and the agent's own
 *      header; secrets are decrypted into locked memory here and wiped once the request is
 *      built, and curl's copies of the header lines are wiped when the transfer ends
 *   3. POST through curl multi on libuv: no redirects, no proxy, timeout_seconds as the total
 *      time of the attempt, the response read up to AGENT_RESPONSE_MAX_BYTES (kept truncated)
 *   4. calseta_agent_attempt() records it (agent_runs row, retry schedule or final state,
 *      activity event) in one transaction, if this dispatcher still holds the lease
 */
#include "crypto.h"
#include "curluv.h"
#include "dispatcher.h"
#include "httpc.h"
#include "log.h"
#include "secmem.h"
#include "ssrf.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct delivery {
    struct dispatcher *d;
    long long id;
    char uuid[37];
    int test;
    int attempt;
    json_t *agent;
    char *payload;
    size_t payload_len;
    const char *url;
    int timeout_s;
    struct ssrf_target target; /* the checked address: the connect-to entry and the socket pin */
    struct curluv_pin sockpin; /* the checked address: no connection goes anywhere else */
    int blocked;
    char reason[300];
    uv_work_t work;
    CURL *easy;
    struct curl_slist *headers;
    struct buf resp;
    int truncated;
    char curl_err[CURL_ERROR_SIZE];
    char started[32];
    uint64_t started_ms;
    struct delivery *prev, *next;
};

static void delivery_free(struct delivery *v)
{
    struct dispatcher *d = v->d;
    if (v->prev)
        v->prev->next = v->next;
    else
        d->list = v->next;
    if (v->next)
        v->next->prev = v->prev;
    json_decref(v->agent);
    free(v->payload);
    buf_destroy(&v->resp);
    free(v);
    dispatcher_delivery_finished(d);
}

/* ---- 4. record ------------------------------------------------------------------------------ */

/* Response bytes as text PostgreSQL accepts: invalid UTF-8 and NUL become '?'. */
static char *utf8_clean(const char *s, size_t n)
{
    char *o = xmalloc(n + 1);
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                               : (c & 0xF8) == 0xF0 ? 4 : 0;
        int ok = len && c != 0 && i + len <= n && !(len == 2 && c < 0xC2);
        for (size_t j = 1; ok && j < len; j++)
            ok = ((unsigned char)s[i + j] & 0xC0) == 0x80;
        if (ok && len == 3) {
            unsigned cp = ((c & 0x0Fu) << 12) | (((unsigned char)s[i + 1] & 0x3Fu) << 6);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        } else if (ok && len == 4) {
            unsigned cp = ((c & 0x07u) << 18) | (((unsigned char)s[i + 1] & 0x3Fu) << 12);
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (!ok) {
            o[k++] = '?';
            i++;
            continue;
        }
        memcpy(o + k, s + i, len);
        k += len;
        i += len;
    }
    o[k] = 0;
    return o;
}

void delivery_recorded(struct delivery *v, const char *outcome, const char *err)
{
    struct dispatcher *d = v->d;
    if (!outcome) {
        msg_warn("delivery %s: attempt %d not recorded (%s); it will be retried when its lease "
                 "expires", v->uuid, v->attempt, err ? err : "no result");
    } else if (!strcmp(outcome, "lease_lost")) {
        msg_warn("delivery %s: lease lost, another dispatcher took it over", v->uuid);
    } else {
        if (!strcmp(outcome, "done"))
            d->delivered++;
        else if (!strcmp(outcome, "failed"))
            d->failed++;
        msg_debug("delivery %s to agent %s: attempt %d %s", v->uuid,
                  json_string_value(json_object_get(v->agent, "name")), v->attempt, outcome);
    }
    delivery_free(v);
}

/* The outcome of this attempt, queued for the next batch (record.c). */
static void record(struct delivery *v, const char *status, long code, const char *error)
{
    int shift = v->attempt - 1 < 9 ? v->attempt - 1 : 9;
    int delay = 1 << (shift < 0 ? 0 : shift);
    char *body = v->resp.len ? utf8_clean(v->resp.data, v->resp.len) : NULL;
    json_t *r = json_pack("{s:I,s:s,s:o,s:o,s:b,s:o,s:s,s:I,s:i}", "id", (json_int_t)v->id,
                          "status", status, "code", code ? json_integer(code) : json_null(),
                          "body", body ? json_string(body) : json_null(), "truncated",
                          v->truncated, "error", error ? json_string(error) : json_null(),
                          "started", v->started, "dur",
                          (json_int_t)(now_mono_ms() - v->started_ms), "retry",
                          delay > 300 ? 300 : delay);
    free(body);
    record_queue(v->d, v, r);
}

/* ---- 3. the transfer ----------------------------------------------------------------------- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct delivery *v = arg;
    size_t n = size * nmemb;
    size_t room = (size_t)v->d->opt.max_response - v->resp.len;
    if (n > room) {
        buf_append(&v->resp, ptr, room);
        v->truncated = 1;
        return 0; /* enough: stop reading */
    }
    buf_append(&v->resp, ptr, n);
    return n;
}

void delivery_curl_done(void *arg, CURL *easy, CURLcode rc)
{
    struct dispatcher *d = arg;
    struct delivery *v = NULL;
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&v);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    curluv_remove(d->cm, easy);
    curl_easy_cleanup(easy);
    v->easy = NULL;
    httpc_slist_free_wiped(v->headers);
    v->headers = NULL;
    char err[CURL_ERROR_SIZE + 64];
    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && v->truncated && code)) {
        if (code >= 200 && code < 300) {
            record(v, "success", code, NULL);
            return;
        }
        snprintf(err, sizeof err, "HTTP %ld", code);
        record(v, "failed", code, err);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(err, sizeof err, "Timeout: %s", v->curl_err[0] ? v->curl_err
                                                                : curl_easy_strerror(rc));
        record(v, "timeout", code, err);
    } else if (v->sockpin.refused) {
        record(v, "failed", code,
               "URL blocked by SSRF protection: connection to an address the check did not approve");
    } else {
        snprintf(err, sizeof err, "Connection error: %s",
                 v->curl_err[0] ? v->curl_err : curl_easy_strerror(rc));
        record(v, "failed", code, err);
    }
}

/* ---- 2. headers ------------------------------------------------------------------------------- */

/* Appends "sha256=<hex>" of HMAC(secret, msg) for the Fernet token; -1 if it does not decrypt. */
static int sign_with(struct dispatcher *d, const char *token, const char *msg, size_t n,
                     struct buf *sig)
{
    uint8_t *secret = NULL;
    size_t slen = 0;
    if (fernet_decrypt(d->key, token, &secret, &slen) != 0)
        return -1;
    uint8_t mac[32];
    char hex[65];
    crypto_hmac_sha256(secret, slen, msg, n, mac);
    secmem_free(secret);
    crypto_hex_encode(mac, sizeof mac, hex);
    buf_printf(sig, "%ssha256=%s", sig->len ? ", " : "", hex);
    return 0;
}

/* The header list, or NULL with err set (a secret that does not decrypt). */
static struct curl_slist *build_headers(struct delivery *v, char *err, size_t errlen)
{
    struct dispatcher *d = v->d;
    struct curl_slist *h = NULL;
    char line[256];
    long long ts = (long long)time(NULL);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "User-Agent: calseta-dispatcher");
    h = curl_slist_append(h, "Expect:");
    snprintf(line, sizeof line, "X-Calseta-Delivery: %s", v->uuid);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof line, "X-Calseta-Timestamp: %lld", ts);
    h = curl_slist_append(h, line);
    const char *secret = json_string_value(json_object_get(v->agent, "secret"));
    const char *prev = json_string_value(json_object_get(v->agent, "previous_secret"));
    if (secret || prev) {
        char *msg = xasprintf("%lld.", ts);
        size_t mlen = strlen(msg);
        msg = xrealloc(msg, mlen + v->payload_len + 1);
        memcpy(msg + mlen, v->payload, v->payload_len + 1);
        struct buf sigs;
        buf_init(&sigs);
        int bad = (secret && sign_with(d, secret, msg, mlen + v->payload_len, &sigs) != 0) ||
                  (prev && sign_with(d, prev, msg, mlen + v->payload_len, &sigs) != 0);
        free(msg);
        if (bad) {
            buf_destroy(&sigs);
            curl_slist_free_all(h);
            snprintf(err, errlen, "the agent's signing secret cannot be decrypted with this "
                                  "ENCRYPTION_KEY");
            return NULL;
        }
        char *l = xasprintf("X-Calseta-Signature: %s", sigs.data);
        h = curl_slist_append(h, l);
        free(l);
        buf_destroy(&sigs);
    } else {
        msg_warn("agent %s has no signing secret (rotate-secret gives it one): sending unsigned",
                 json_string_value(json_object_get(v->agent, "uuid")));
    }
    const char *hname = json_string_value(json_object_get(v->agent, "auth_header_name"));
    const char *hval = json_string_value(json_object_get(v->agent, "auth_header_value_encrypted"));
    if (hname && hval) {
        uint8_t *plain = NULL;
        size_t n = 0;
        if (fernet_decrypt(d->key, hval, &plain, &n) != 0) {
            httpc_slist_free_wiped(h);
            snprintf(err, errlen, "the agent's auth_header_value cannot be decrypted with this "
                                  "ENCRYPTION_KEY");
            return NULL;
        }
        size_t ll = strlen(hname) + 2 + n + 1;
        char *l = secmem_alloc(ll);
        snprintf(l, ll, "%s: %s", hname, (const char *)plain);
        secmem_free(plain);
        h = curl_slist_append(h, l);
        secmem_free(l);
    }
    return h;
}

static void send_attempt(struct delivery *v)
{
    struct dispatcher *d = v->d;
    char err[200];
    v->headers = build_headers(v, err, sizeof err);
    if (!v->headers) {
        record(v, "blocked", 0, err);
        return;
    }
    CURL *h = curl_easy_init();
    if (!h)
        msg_fatal("curl_easy_init failed");
    v->easy = h;
    long tmo = (long)v->timeout_s * 1000;
    curl_easy_setopt(h, CURLOPT_URL, v->url);
    httpc_harden(h, 1); /* pinned to the checked address: no proxy, no redirects */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, tmo);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, tmo < 10000 ? tmo : 10000L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, v->headers);
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, ssrf_target_list(&v->target));
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)v->payload_len);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, v->payload);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, v);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, v->curl_err);
    curl_easy_setopt(h, CURLOPT_PRIVATE, v);
    curluv_add_pinned(d->cm, h, &v->sockpin);
}

/* ---- 1. the guard ---------------------------------------------------------------------------- */

static void do_guard(uv_work_t *w)
{
    struct delivery *v = w->data;
    struct ssrf_result r;
    if (ssrf_check(v->url, v->d->cfg->ssrf_allowed_hosts, v->d->ssrf_flags, &r, v->reason,
                   sizeof v->reason) != 0) {
        v->blocked = 1;
        return;
    }
    /* a connect-to target (unlike a resolve entry) is part of what curl matches when it picks a
     * kept-alive connection, so a delivery checked as one address of a host never gets a
     * connection opened to another (which the socket pin would refuse: a spurious failure) */
    if (ssrf_target_of(&r, &v->target, v->reason, sizeof v->reason) != 0) {
        v->blocked = 1;
        return;
    }
    if (curluv_pin_set(&v->sockpin, v->target.addr, strlen(v->target.addr), v->target.port) != 0) {
        snprintf(v->reason, sizeof v->reason, "checked address %s cannot be pinned", r.addr);
        v->blocked = 1;
    }
}

static void after_guard(uv_work_t *w, int status)
{
    struct delivery *v = w->data;
    v->started_ms = now_mono_ms();
    format_iso8601_us(now_wall_us(), v->started);
    if (status != 0 || v->blocked) {
        char err[400];
        snprintf(err, sizeof err, "URL blocked by SSRF protection: %s",
                 status ? "check cancelled" : v->reason);
        msg_warn("delivery %s: %s", v->uuid, err);
        record(v, "blocked", 0, err);
        return;
    }
    send_attempt(v);
}

void delivery_start(struct dispatcher *d, PGresult *res, int row)
{
    struct delivery *v = xcalloc(1, sizeof *v);
    v->d = d;
    v->id = atoll(PQgetvalue(res, row, 0));
    snprintf(v->uuid, sizeof v->uuid, "%s", PQgetvalue(res, row, 1));
    v->test = !strcmp(PQgetvalue(res, row, 2), "test");
    v->attempt = atoi(PQgetvalue(res, row, 3));
    v->agent = json_loads(PQgetvalue(res, row, 4), 0, NULL);
    v->payload = xstrdup(PQgetvalue(res, row, 5));
    v->payload_len = strlen(v->payload);
    if (!v->agent)
        v->agent = json_object();
    v->url = json_string_value(json_object_get(v->agent, "endpoint_url"));
    v->timeout_s = (int)json_integer_value(json_object_get(v->agent, "timeout_seconds"));
    if (v->timeout_s <= 0)
        v->timeout_s = 30;
    buf_init(&v->resp);
    v->next = d->list;
    if (d->list)
        d->list->prev = v;
    d->list = v;
    d->inflight++;
    if (!v->url) {
        v->started_ms = now_mono_ms();
        format_iso8601_us(now_wall_us(), v->started);
        record(v, "blocked", 0, "the agent has no endpoint_url");
        return;
    }
    v->work.data = v;
    uv_queue_work(d->loop, &v->work, do_guard, after_guard);
}
