/*
 * runner.c - msgpack encoding and hostile-input decoding of the intake <-> runner messages.
 */
#include "proto/runner.h"
#include "proto/proto.h"

#include <msgpack.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* ---- encoding ---------------------------------------------------------------------------- */

static int buf_write(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    pack_cstr(pk, k);
    if (v)
        pack_cstr(pk, v);
    else
        msgpack_pack_nil(pk);
}

static void pack_kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    pack_cstr(pk, k);
    msgpack_pack_int64(pk, v);
}

/* The common envelope ("v", "t") and the request id that pairs a reply with its request. */
static void pack_head(msgpack_packer *pk, size_t nfields, unsigned type, uint64_t id)
{
    proto_pack_begin(pk, type, (uint32_t)nfields + 1);
    pack_cstr(pk, "id");
    msgpack_pack_uint64(pk, id);
}

void runner_encode_validate(uint64_t id, const char *code, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    pack_head(&pk, 1, PROTO_RUNNER_VALIDATE, id);
    pack_kv_str(&pk, "code", code);
}

void runner_encode_validation(uint64_t id, const struct runner_validation *v, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    pack_head(&pk, 2, PROTO_RUNNER_VALIDATION, id);
    pack_cstr(&pk, "ok");
    if (v->ok)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    pack_cstr(&pk, "errors");
    msgpack_pack_array(&pk, v->nerrors);
    for (size_t i = 0; i < v->nerrors; i++) {
        msgpack_pack_map(&pk, 2);
        pack_kv_int(&pk, "line", v->errors[i].line);
        pack_kv_str(&pk, "message", v->errors[i].message);
    }
}

void runner_encode_run(uint64_t id, const struct runner_run_req *r, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    pack_head(&pk, r->integrations_json ? 9 : 8, PROTO_RUNNER_RUN, id);
    pack_kv_str(&pk, "run_uuid", r->run_uuid ? r->run_uuid : "");
    pack_kv_str(&pk, "code", r->code ? r->code : "");
    pack_kv_int(&pk, "timeout_seconds", r->timeout_seconds);
    pack_kv_int(&pk, "max_memory_mb", r->max_memory_mb);
    pack_kv_str(&pk, "trigger_context", r->trigger_context_json);
    pack_kv_str(&pk, "indicator", r->indicator_json);
    pack_kv_str(&pk, "alert", r->alert_json);
    pack_cstr(&pk, "secrets");
    msgpack_pack_map(&pk, r->nsecrets);
    for (size_t i = 0; i < r->nsecrets; i++) {
        pack_cstr(&pk, r->secrets[i].name);
        pack_cstr(&pk, r->secrets[i].value);
    }
    if (r->integrations_json) /* absent for user workflows */
        pack_kv_str(&pk, "integrations", r->integrations_json);
}

void runner_encode_result(uint64_t id, const struct runner_result *r, struct buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    pack_head(&pk, 7, PROTO_RUNNER_RESULT, id);
    pack_kv_str(&pk, "status", runner_status_name(r->status));
    pack_cstr(&pk, "success");
    if (r->success)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    pack_kv_str(&pk, "message", r->message ? r->message : "");
    pack_kv_str(&pk, "data", r->data_json ? r->data_json : "{}");
    pack_kv_str(&pk, "log_output", r->log_output ? r->log_output : "");
    pack_kv_int(&pk, "duration_ms", r->duration_ms);
    pack_kv_str(&pk, "sandbox", r->sandbox ? r->sandbox : "");
}

const char *runner_status_name(enum runner_status s)
{
    switch (s) {
    case RUNNER_SUCCESS:
        return "success";
    case RUNNER_TIMED_OUT:
        return "timed_out";
    case RUNNER_BUSY:
        return "busy";
    default:
        return "failed";
    }
}

int runner_status_parse(const char *s, enum runner_status *out)
{
    if (!strcmp(s, "success"))
        *out = RUNNER_SUCCESS;
    else if (!strcmp(s, "failed"))
        *out = RUNNER_FAILED;
    else if (!strcmp(s, "timed_out"))
        *out = RUNNER_TIMED_OUT;
    else if (!strcmp(s, "busy"))
        *out = RUNNER_BUSY;
    else
        return -1;
    return 0;
}

/* ---- decoding ---------------------------------------------------------------------------- */

struct dec {
    const msgpack_object_map *map;
    char *err;
    size_t errlen;
};

static const msgpack_object *field(const struct dec *d, const char *name)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < d->map->size; i++) {
        const msgpack_object *k = &d->map->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            !memcmp(k->via.str.ptr, name, n))
            return &d->map->ptr[i].val;
    }
    return NULL;
}

static int fail(const struct dec *d, const char *what, const char *name)
{
    snprintf(d->err, d->errlen, "%s: %s", name, what);
    return -1;
}

/* Copies a msgpack string; NUL bytes and sizes above max are refused. */
static int obj_str(const struct dec *d, const msgpack_object *o, const char *name, size_t max,
                   char **out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return fail(d, "not a string", name);
    if (o->via.str.size > max)
        return fail(d, "too long", name);
    if (memchr(o->via.str.ptr, 0, o->via.str.size))
        return fail(d, "contains a NUL byte", name);
    *out = xstrndup(o->via.str.ptr, o->via.str.size);
    return 0;
}

static int get_str(const struct dec *d, const char *name, size_t max, int optional, char **out)
{
    const msgpack_object *o = field(d, name);
    *out = NULL;
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return optional ? 0 : fail(d, "missing", name);
    return obj_str(d, o, name, max, out);
}

static int get_int(const struct dec *d, const char *name, int64_t min, int64_t max, int64_t *out)
{
    const msgpack_object *o = field(d, name);
    if (!o)
        return fail(d, "missing", name);
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return fail(d, "out of range", name);
        *out = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
    } else {
        return fail(d, "not an integer", name);
    }
    if (*out < min || *out > max)
        return fail(d, "out of range", name);
    return 0;
}

static int get_bool(const struct dec *d, const char *name, int *out)
{
    const msgpack_object *o = field(d, name);
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN)
        return fail(d, "missing or not a boolean", name);
    *out = o->via.boolean;
    return 0;
}

static int decode_validation(const struct dec *d, struct runner_validation *v)
{
    if (get_bool(d, "ok", &v->ok) != 0)
        return -1;
    const msgpack_object *o = field(d, "errors");
    if (!o || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > 10000)
        return fail(d, "missing or not a list", "errors");
    v->errors = xcalloc(o->via.array.size + 1, sizeof *v->errors);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_MAP)
            return fail(d, "entry is not a map", "errors");
        struct dec sub = {&e->via.map, d->err, d->errlen};
        int64_t line;
        if (get_int(&sub, "line", 0, INT32_MAX, &line) != 0)
            return -1;
        v->errors[i].line = (int)line;
        v->nerrors = i + 1;
        if (get_str(&sub, "message", 4096, 0, &v->errors[i].message) != 0)
            return -1;
    }
    return 0;
}

static int decode_secrets(const struct dec *d, struct runner_run_req *r)
{
    const msgpack_object *o = field(d, "secrets");
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size > RUNNER_MAX_SECRETS)
        return fail(d, "not a map or too many entries", "secrets");
    r->secrets = xcalloc(o->via.map.size + 1, sizeof *r->secrets);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        r->nsecrets = i + 1;
        if (obj_str(d, &kv->key, "secrets key", 256, &r->secrets[i].name) != 0 ||
            obj_str(d, &kv->val, "secrets value", 65536, &r->secrets[i].value) != 0)
            return -1;
    }
    return 0;
}

static int decode_run(const struct dec *d, struct runner_run_req *r)
{
    int64_t t, mem;
    if (get_str(d, "run_uuid", 64, 0, &r->run_uuid) != 0 ||
        get_str(d, "code", RUNNER_MAX_CODE_BYTES, 0, &r->code) != 0 ||
        get_int(d, "timeout_seconds", 1, 86400, &t) != 0 ||
        get_int(d, "max_memory_mb", 0, 65536, &mem) != 0 ||
        get_str(d, "trigger_context", 1 << 20, 1, &r->trigger_context_json) != 0 ||
        get_str(d, "indicator", 4 << 20, 1, &r->indicator_json) != 0 ||
        get_str(d, "alert", 4 << 20, 1, &r->alert_json) != 0)
        return -1;
    r->timeout_seconds = (int)t;
    r->max_memory_mb = (int)mem;
    if (get_str(d, "integrations", RUNNER_MAX_INTEGRATIONS_BYTES, 1, &r->integrations_json) != 0)
        return -1;
    return decode_secrets(d, r);
}

static int decode_result(const struct dec *d, struct runner_result *r)
{
    char *status = NULL;
    int64_t dur;
    if (get_str(d, "status", 32, 0, &status) != 0)
        return -1;
    int bad = runner_status_parse(status, &r->status);
    free(status);
    if (bad)
        return fail(d, "unknown status", "status");
    if (get_bool(d, "success", &r->success) != 0 ||
        get_str(d, "message", RUNNER_MAX_MESSAGE_BYTES, 0, &r->message) != 0 ||
        get_str(d, "data", RUNNER_MAX_DATA_BYTES, 0, &r->data_json) != 0 ||
        get_str(d, "log_output", RUNNER_MAX_LOG_BYTES, 0, &r->log_output) != 0 ||
        get_int(d, "duration_ms", 0, INT64_MAX, &dur) != 0 ||
        get_str(d, "sandbox", 1024, 1, &r->sandbox) != 0)
        return -1;
    r->duration_ms = dur;
    return 0;
}

static int decode_body(const struct dec *d, unsigned type, struct runner_msg *msg)
{
    const msgpack_object *id = field(d, "id");
    if (!id || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return fail(d, "missing or not an unsigned integer", "id");
    msg->id = id->via.u64;
    msg->type = (enum runner_msg_type)type;
    switch (type) {
    case PROTO_RUNNER_VALIDATE:
        return get_str(d, "code", RUNNER_MAX_CODE_BYTES, 0, &msg->code);
    case PROTO_RUNNER_VALIDATION:
        return decode_validation(d, &msg->validation);
    case PROTO_RUNNER_RUN:
        return decode_run(d, &msg->run);
    case PROTO_RUNNER_RESULT:
        return decode_result(d, &msg->result);
    default:
        return fail(d, "not a runner message", "t");
    }
}

int runner_decode(const void *data, size_t len, struct runner_msg *msg, char *err, size_t errlen)
{
    struct proto_msg pm;
    memset(msg, 0, sizeof *msg);
    /* The shared envelope check walks every byte first (sizes within the message, bounded
     * depth and counts, version, known type, no duplicate keys). */
    if (proto_decode_max(data, len, RUNNER_MAX_MSG, 0, &pm) != 0) {
        snprintf(err, errlen, "not a well-formed message envelope of this version");
        return -1;
    }
    struct dec d = {pm.map, err, errlen};
    int rc = decode_body(&d, pm.type, msg);
    proto_msg_destroy(&pm);
    if (rc != 0)
        runner_msg_destroy(msg);
    return rc;
}

/* ---- ownership --------------------------------------------------------------------------- */

void runner_validation_destroy(struct runner_validation *v)
{
    for (size_t i = 0; i < v->nerrors; i++)
        free(v->errors[i].message);
    free(v->errors);
    memset(v, 0, sizeof *v);
}

void runner_run_req_destroy(struct runner_run_req *r)
{
    free(r->run_uuid);
    free(r->code);
    free(r->trigger_context_json);
    free(r->indicator_json);
    free(r->alert_json);
    for (size_t i = 0; i < r->nsecrets; i++) {
        free(r->secrets[i].name);
        if (r->secrets[i].value) {
            explicit_bzero(r->secrets[i].value, strlen(r->secrets[i].value));
            free(r->secrets[i].value);
        }
    }
    free(r->secrets);
    if (r->integrations_json) {
        explicit_bzero(r->integrations_json, strlen(r->integrations_json));
        free(r->integrations_json);
    }
    memset(r, 0, sizeof *r);
}

void runner_result_destroy(struct runner_result *r)
{
    free(r->message);
    free(r->data_json);
    free(r->log_output);
    free(r->sandbox);
    memset(r, 0, sizeof *r);
}

void runner_msg_destroy(struct runner_msg *msg)
{
    free(msg->code);
    runner_validation_destroy(&msg->validation);
    runner_run_req_destroy(&msg->run);
    runner_result_destroy(&msg->result);
    msg->code = NULL;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void runner_run_req_copy(struct runner_run_req *dst, const struct runner_run_req *src)
{
    memset(dst, 0, sizeof *dst);
    dst->run_uuid = dup_or_null(src->run_uuid);
    dst->code = dup_or_null(src->code);
    dst->timeout_seconds = src->timeout_seconds;
    dst->max_memory_mb = src->max_memory_mb;
    dst->trigger_context_json = dup_or_null(src->trigger_context_json);
    dst->indicator_json = dup_or_null(src->indicator_json);
    dst->alert_json = dup_or_null(src->alert_json);
    dst->nsecrets = src->nsecrets;
    dst->secrets = xcalloc(src->nsecrets + 1, sizeof *dst->secrets);
    for (size_t i = 0; i < src->nsecrets; i++) {
        dst->secrets[i].name = xstrdup(src->secrets[i].name);
        dst->secrets[i].value = xstrdup(src->secrets[i].value);
    }
    dst->integrations_json = dup_or_null(src->integrations_json);
}
