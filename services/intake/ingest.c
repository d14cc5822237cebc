/*
 * ingest.c - POST /v1/ingest/{source} and POST /v1/alerts: check, normalise, extract,
 * fingerprint, then group-commit.
 *
 * Durability: the 202 goes out only after calseta_ingest_batch() committed the alert, its
 * indicators, its enrichment job and its activity event in one transaction. Concurrent ingests
 * are batched into one call (group commit): while a batch is in the database the next one
 * fills up, so throughput is many alerts per fsync. After the commit a JOB_READY message goes
 * to the job bus; it is only a wake-up signal (PostgreSQL is the truth), so a lost message
 * delays a job until the enrichers' poll and loses nothing.
 *
 * Failure handling of a batch: serialisation failure or deadlock → retried; any other SQL error
 * → the batch is split and each alert retried alone, so one bad alert cannot fail others; a
 * lost or unreachable database → 503 for everything in the batch (nothing was committed).
 */
#include "audit.h"
#include "indicators.h"
#include "intake.h"
#include "prom.h"
#include "proto/job.h"
#include "log.h"
#include "signature.h"
#include "source.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include "bus.h"

#include <zmq.h>

#define MAX_INFLIGHT 2
#define MAX_BATCH_BYTES (16u << 20)
#define MAX_RETRIES 3
#define ALERT_PAYLOAD_MAX 1048576

struct pending {
    struct reqctx *rc;
    json_t *elem; /* one element of the batch document */
    size_t bytes;
    int retries;
    int solo; /* retry alone after a batch-level SQL error */
};

struct ingest_batcher {
    struct intake *in;
    struct pending *q;
    size_t n, cap;
    int inflight;
};

struct batch {
    struct ingest_batcher *b;
    struct pending *items;
    size_t n;
};

static void flush(struct ingest_batcher *b);

struct ingest_batcher *ingest_batcher_new(struct intake *in)
{
    struct ingest_batcher *b = xcalloc(1, sizeof *b);
    b->in = in;
    return b;
}

void ingest_batcher_free(struct ingest_batcher *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        json_decref(b->q[i].elem);
    free(b->q);
    free(b);
}

static void enqueue(struct ingest_batcher *b, struct pending p, int front)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->q = xrealloc(b->q, b->cap * sizeof *b->q);
    }
    if (front) {
        memmove(b->q + 1, b->q, b->n * sizeof *b->q);
        b->q[0] = p;
    } else {
        b->q[b->n] = p;
    }
    b->n++;
}

void push_job_ready(struct intake *in, long long job_id, long long alert_id)
{
    if (!in->job_push)
        return;
    uint8_t msg[128];
    size_t len = 0;
    if (job_ready_encode(job_id, alert_id, msg, sizeof msg, &len) != 0)
        return;
    /* Never block the loop: a full or absent bus only delays the job until the poll. */
    bus_send(in->job_push, msg, len, 0);
}

static void reply_accepted(struct reqctx *rc, PGresult *res, int row)
{
    int dup = !strcmp(PQgetvalue(res, row, 4), "t");
    json_t *data = json_object();
    json_object_set_new(data, "alert_uuid", json_string(PQgetvalue(res, row, 1)));
    json_object_set_new(data, "status", json_string(dup ? "deduplicated" : "queued"));
    json_object_set_new(data, "is_duplicate", json_boolean(dup));
    json_object_set_new(data, "duplicate_count",
                        dup ? json_integer(atoi(PQgetvalue(res, row, 5))) : json_null());
    reply_data(rc, 202, data);
}

static int sqlstate_is(PGresult *res, const char *state)
{
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return s && !strcmp(s, state);
}

static void on_batch_done(void *arg, PGresult *res, const char *err)
{
    struct batch *bt = arg;
    struct ingest_batcher *b = bt->b;
    struct intake *in = b->in;
    b->inflight--;
    if (res && !err) {
        int rows = PQntuples(res);
        for (int r = 0; r < rows; r++) {
            int idx = atoi(PQgetvalue(res, r, 0));
            if (idx < 0 || (size_t)idx >= bt->n || !bt->items[idx].rc)
                continue;
            struct pending *p = &bt->items[idx];
            if (!PQgetisnull(res, r, 3))
                push_job_ready(in, atoll(PQgetvalue(res, r, 3)), atoll(PQgetvalue(res, r, 2)));
            reply_accepted(p->rc, res, r);
            p->rc = NULL;
        }
        for (size_t i = 0; i < bt->n; i++) {
            if (bt->items[i].rc) /* no row came back for it: cannot happen, never hang */
                reply_error(bt->items[i].rc, 500, "INTERNAL_ERROR",
                            "An unexpected error occurred.", NULL);
            json_decref(bt->items[i].elem);
        }
    } else if (res && (sqlstate_is(res, "40P01") || sqlstate_is(res, "40001") || bt->n > 1)) {
        /* Retry: the whole batch after a deadlock, else each alert alone. */
        int split = !(sqlstate_is(res, "40P01") || sqlstate_is(res, "40001"));
        for (size_t i = bt->n; i-- > 0;) {
            struct pending p = bt->items[i];
            p.retries++;
            p.solo = split;
            if (p.retries > MAX_RETRIES) {
                reply_error(p.rc, 503, "SERVICE_UNAVAILABLE",
                            "The database could not store the alert; nothing was stored. Retry "
                            "later.",
                            NULL);
                json_decref(p.elem);
                continue;
            }
            enqueue(b, p, 1);
        }
    } else {
        int is_data = res && PQresultErrorField(res, PG_DIAG_SQLSTATE) &&
                      !strncmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22", 2);
        if (res)
            msg_warn("ingest batch of %zu failed: %s", bt->n, err);
        else
            msg_warn("ingest batch of %zu not stored: %s", bt->n, err);
        for (size_t i = 0; i < bt->n; i++) {
            struct pending *p = &bt->items[i];
            if (is_data)
                reply_error(p->rc, 422, "INVALID_PAYLOAD",
                            "The alert contains a value the database cannot store.", NULL);
            else if (res)
                reply_error(p->rc, 500, "INTERNAL_ERROR", "An unexpected error occurred.", NULL);
            else if (err && (!strncmp(err, "connection lost", 15) ||
                             !strncmp(err, "query timeout", 13)))
                reply_error(p->rc, 503, "SERVICE_UNAVAILABLE",
                            "The database connection was lost while storing the alert; it may "
                            "or may not be stored. Retrying is safe: a repeat is de-duplicated.",
                            NULL);
            else
                reply_db_unavailable(p->rc);
            json_decref(p->elem);
        }
    }
    free(bt->items);
    free(bt);
    flush(b);
}

static void send_batch(struct ingest_batcher *b)
{
    struct intake *in = b->in;
    size_t take = 0, bytes = 0;
    if (b->q[0].solo) {
        take = 1;
    } else {
        while (take < b->n && take < (size_t)in->cfg.ingest_batch_max && !b->q[take].solo &&
               (take == 0 || bytes + b->q[take].bytes <= MAX_BATCH_BYTES)) {
            bytes += b->q[take].bytes;
            take++;
        }
    }
    struct batch *bt = xcalloc(1, sizeof *bt);
    bt->b = b;
    bt->n = take;
    bt->items = xmalloc(take * sizeof *bt->items);
    memcpy(bt->items, b->q, take * sizeof *bt->items);
    memmove(b->q, b->q + take, (b->n - take) * sizeof *b->q);
    b->n -= take;

    json_t *arr = json_array();
    for (size_t i = 0; i < take; i++)
        json_array_append(arr, bt->items[i].elem);
    char *doc = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    char hours[16];
    snprintf(hours, sizeof hours, "%d", in->cfg.alert_dedup_window_hours);
    const char *params[2] = {doc, hours};
    b->inflight++;
    prom_ingest_batch(in, take);
    pg_exec(in->pg,
            "SELECT idx, alert_uuid, alert_id, job_id, is_duplicate, duplicate_count "
            "FROM calseta_ingest_batch($1::jsonb, $2::int)",
            2, params, on_batch_done, bt);
    free(doc);
}

static void flush(struct ingest_batcher *b)
{
    while (b->n > 0 && b->inflight < MAX_INFLIGHT)
        send_batch(b);
}

/* ---- checks shared by both routes ------------------------------------------------------- */

static int source_allowed(const struct auth_info *a, const char *source)
{
    if (!a->allowed_sources)
        return 1;
    size_t i;
    json_t *v;
    json_array_foreach(a->allowed_sources, i, v)
    {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, source))
            return 1;
    }
    return 0;
}

/* Registry lookup and allowed_sources; replies and returns NULL on failure. */
static const struct alert_source *resolve_source(struct reqctx *rc, const char *name)
{
    const struct alert_source *src = source_lookup(name);
    if (!src) {
        char msg[160];
        snprintf(msg, sizeof msg, "Alert source '%.100s' is not registered.", name);
        reply_error(rc, 404, "UNKNOWN_SOURCE", msg, NULL);
        return NULL;
    }
    if (!source_allowed(&rc->auth, name)) {
        struct http_request *req = rc->req;
        audit_auth_failure(rc->in->audit, req->method, req->path, rc->client_ip,
                           rc->auth.key_prefix, "source_not_allowed", NULL, req->request_id);
        char msg[160];
        snprintf(msg, sizeof msg, "API key is not authorized to ingest from source '%s'.", name);
        reply_error(rc, 403, "SOURCE_NOT_ALLOWED", msg, NULL);
        return NULL;
    }
    return src;
}

static void reply_payload_mismatch(struct reqctx *rc, const char *name)
{
    char msg[160];
    snprintf(msg, sizeof msg, "Payload does not match expected structure for source '%s'.", name);
    reply_error(rc, 422, "INVALID_PAYLOAD", msg, NULL);
}

/* The indicators to store: all of them count for the fingerprint, but a value longer than
 * INDICATOR_STORE_MAX cannot be indexed (and is no indicator anyone looks up). */
#define INDICATOR_STORE_MAX 2048
static json_t *storable_indicators(const struct indicator_set *set)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < set->n; i++) {
        if (strlen(set->items[i].value) > INDICATOR_STORE_MAX)
            continue;
        json_array_append_new(arr, json_pack("{s:s,s:s}", "type", set->items[i].type, "value",
                                             set->items[i].value));
    }
    return arr;
}

/* Normalise, extract, fingerprint and queue; payload is borrowed. */
static void submit(struct reqctx *rc, const struct alert_source *src, json_t *payload)
{
    struct normalized_alert na;
    if (src->normalize(payload, &na) != 0) {
        reply_payload_mismatch(rc, src->name);
        return;
    }
    struct indicator_set set;
    indicator_set_init(&set);
    src->extract(payload, &set);
    mappings_apply(rc->in, &na, src->name, &set);
    char fp[33];
    indicators_fingerprint(na.title, src->name, &set, fp);
    char ts[32];
    format_iso8601_us(na.occurred_at_us, ts);

    json_t *e = json_object();
    json_object_set_new(e, "title", json_string(na.title));
    json_object_set_new(e, "severity", json_string(na.severity));
    json_object_set_new(e, "source_name", json_string(src->name));
    json_object_set_new(e, "description",
                        na.description ? json_string(na.description) : json_null());
    json_object_set_new(e, "occurred_at", json_string(ts));
    json_object_set(e, "raw_payload", payload);
    json_object_set(e, "tags", na.tags ? na.tags : json_array());
    json_object_set_new(e, "fingerprint", json_string(fp));
    json_object_set_new(e, "indicators", storable_indicators(&set));
    json_object_set_new(e, "rule_ref",
                        na.source_rule_ref ? json_string(na.source_rule_ref) : json_null());
    json_object_set_new(e, "actor_key_prefix", json_string(rc->auth.key_prefix));
    indicator_set_destroy(&set);
    normalized_alert_destroy(&na);

    struct ingest_batcher *b = rc->in->batcher;
    struct pending p = {.rc = rc, .elem = e, .bytes = rc->req->body.len + 512};
    enqueue(b, p, 0);
    flush(b);
}

/* Strict JSON: duplicate keys are refused, and so is \u0000 (jansson's default), which
 * PostgreSQL could not store. */
static json_t *parse_strict(const char *data, size_t len)
{
    json_error_t jerr;
    return json_loadb(data ? data : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
}

void route_ingest_source(struct reqctx *rc)
{
    char name[64];
    path_param(rc, 0, name, sizeof name);
    const struct alert_source *src = resolve_source(rc, name);
    if (!src)
        return;
    struct http_request *req = rc->req;
    enum sig_result sr = webhook_verify(&rc->in->cfg, name, req);
    if (sr == SIG_MISSING || sr == SIG_BAD) {
        audit_auth_failure(rc->in->audit, req->method, req->path, rc->client_ip,
                           rc->auth.key_prefix, "invalid_signature", NULL, req->request_id);
        reply_error(rc, 401, "INVALID_SIGNATURE", "Webhook signature verification failed.", NULL);
        return;
    }
    json_t *payload = parse_strict(req->body.data, req->body.len);
    if (!payload) {
        reply_error(rc, 400, "INVALID_JSON", "Request body is not valid JSON.", NULL);
        return;
    }
    if (!json_is_object(payload)) {
        json_decref(payload);
        reply_error(rc, 422, "INVALID_PAYLOAD", "Request body must be a JSON object.", NULL);
        return;
    }
    if (!src->validate(payload)) {
        json_decref(payload);
        reply_payload_mismatch(rc, name);
        return;
    }
    submit(rc, src, payload);
    json_decref(payload);
}

static json_t *validation_error(const char *type, const char *field, const char *msg)
{
    return json_pack("{s:[{s:s,s:[s,s],s:s}]}", "errors", "type", type, "loc", "body", field,
                     "msg", msg);
}

void route_post_alert(struct reqctx *rc)
{
    struct http_request *req = rc->req;
    json_t *body = parse_strict(req->body.data, req->body.len);
    if (!body || !json_is_object(body)) {
        json_decref(body);
        reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                    validation_error("json_invalid", "body", "JSON object expected"));
        return;
    }
    json_t *sn = json_object_get(body, "source_name");
    json_t *payload = json_object_get(body, "payload");
    const char *err_field = NULL, *err_type = NULL, *err_msg = NULL;
    if (!sn) {
        err_field = "source_name", err_type = "missing", err_msg = "Field required";
    } else if (!json_is_string(sn)) {
        err_field = "source_name", err_type = "string_type",
        err_msg = "Input should be a valid string";
    } else if (!payload) {
        err_field = "payload", err_type = "missing", err_msg = "Field required";
    } else if (!json_is_object(payload)) {
        err_field = "payload", err_type = "dict_type",
        err_msg = "Input should be a valid dictionary";
    }
    if (err_field) {
        json_decref(body);
        reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                    validation_error(err_type, err_field, err_msg));
        return;
    }
    size_t size = json_dumpb(payload, NULL, 0, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (size > ALERT_PAYLOAD_MAX) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "Value error, payload exceeds maximum size of 1 MB (%zu bytes serialized)", size);
        json_decref(body);
        reply_error(rc, 422, "VALIDATION_ERROR", "Request validation failed.",
                    validation_error("value_error", "payload", msg));
        return;
    }
    const char *name = json_string_value(sn);
    const struct alert_source *src = resolve_source(rc, name);
    if (!src) {
        json_decref(body);
        return;
    }
    if (!src->validate(payload)) {
        reply_payload_mismatch(rc, src->name);
        json_decref(body);
        return;
    }
    submit(rc, src, payload);
    json_decref(body);
}
