/*
 * audit.c (proto) - encode/decode of audit events and acknowledgements (see audit.h).
 */
#include "proto/audit.h"
#include "proto/proto.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define TS_MAX 253402300799999999LL /* 9999-12-31T23:59:59.999999Z */

static int buf_write(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

int audit_id_valid(const char *s, size_t n)
{
    if (!s || n != AUDIT_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

void audit_id_new(char out[AUDIT_ID_LEN + 1])
{
    unsigned char r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    r[6] = (r[6] & 0x0f) | 0x40;
    r[8] = (r[8] & 0x3f) | 0x80;
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[r[i] >> 4];
        out[o++] = hex[r[i] & 15];
    }
    out[o] = 0;
}

/* Names of services and event types: short identifiers. */
static int ident_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
            return 0;
    return 1;
}

int audit_event_encode(const struct audit_event *e, struct buf *out)
{
    if (!audit_id_valid(e->event_id, strlen(e->event_id)) || !ident_ok(e->service, 64) ||
        !ident_ok(e->event_type, 64) || e->ts_us < 0 || e->ts_us > TS_MAX || e->pid < 0)
        return -1;
    if (e->fields && !json_is_object(e->fields))
        return -1;
    char *f = e->fields ? json_dumps(e->fields, JSON_COMPACT | JSON_PRESERVE_ORDER)
                        : xstrdup("{}");
    if (!f || strlen(f) > AUDIT_FIELDS_MAX) {
        free(f);
        return -1;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    proto_pack_begin(&pk, PROTO_AUDIT_EVENT, 9);
    proto_pack_str(&pk, "id", e->event_id);
    proto_pack_i64(&pk, "ts", e->ts_us);
    proto_pack_str(&pk, "svc", e->service);
    proto_pack_i64(&pk, "pid", e->pid);
    proto_pack_str(&pk, "type", e->event_type);
    proto_pack_str(&pk, "rid", e->request_id);
    proto_pack_str(&pk, "kp", e->actor_key_prefix);
    proto_pack_str(&pk, "ip", e->client_ip);
    proto_pack_str(&pk, "f", f);
    free(f);
    return 0;
}

static int decode_fields(struct proto_msg *m, struct audit_event *e)
{
    char *f = NULL;
    int r = proto_get_str(m, "f", AUDIT_FIELDS_MAX, 1, &f);
    if (r < 0)
        return -1;
    if (r > 0) {
        e->fields = json_object();
        return 0;
    }
    json_error_t jerr;
    e->fields = json_loads(f, JSON_REJECT_DUPLICATES, &jerr);
    free(f);
    if (!e->fields || !json_is_object(e->fields))
        return -1;
    return 0;
}

int audit_event_decode(const void *data, size_t len, struct audit_event *e)
{
    memset(e, 0, sizeof *e);
    struct proto_msg m;
    if (proto_decode(data, len, PROTO_AUDIT_EVENT, &m) != 0)
        return -1;
    char *id = NULL;
    int64_t ts = 0, pid = 0;
    if (proto_get_str(&m, "id", AUDIT_ID_LEN, 0, &id) != 0 || !audit_id_valid(id, strlen(id)))
        goto fail;
    for (size_t i = 0; i < AUDIT_ID_LEN; i++)
        e->event_id[i] = (char)tolower((unsigned char)id[i]);
    if (proto_get_i64(&m, "ts", 0, TS_MAX, &ts) != 0 ||
        proto_get_i64(&m, "pid", 0, INT32_MAX, &pid) != 0)
        goto fail;
    e->ts_us = ts;
    e->pid = (int)pid;
    if (proto_get_str(&m, "svc", 64, 0, &e->service) != 0 || !ident_ok(e->service, 64) ||
        proto_get_str(&m, "type", 64, 0, &e->event_type) != 0 || !ident_ok(e->event_type, 64))
        goto fail;
    if (proto_get_str(&m, "rid", 128, 0, &e->request_id) < 0 ||
        proto_get_str(&m, "kp", 64, 0, &e->actor_key_prefix) < 0 ||
        proto_get_str(&m, "ip", 64, 0, &e->client_ip) < 0 || decode_fields(&m, e) != 0)
        goto fail;
    free(id);
    proto_msg_destroy(&m);
    return 0;
fail:
    free(id);
    proto_msg_destroy(&m);
    audit_event_destroy(e);
    return -1;
}

void audit_event_destroy(struct audit_event *e)
{
    free(e->service);
    free(e->event_type);
    free(e->request_id);
    free(e->actor_key_prefix);
    free(e->client_ip);
    if (e->fields)
        json_decref(e->fields);
    memset(e, 0, sizeof *e);
}

int audit_ack_encode(char (*ids)[AUDIT_ID_LEN + 1], size_t n, struct buf *out)
{
    if (n == 0 || n > AUDIT_ACK_MAX)
        return -1;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    proto_pack_begin(&pk, PROTO_AUDIT_ACK, 1);
    proto_pack_key(&pk, "ids");
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_str(&pk, AUDIT_ID_LEN);
        msgpack_pack_str_body(&pk, ids[i], AUDIT_ID_LEN);
    }
    return 0;
}

int audit_ack_decode(const void *data, size_t len, char (*ids)[AUDIT_ID_LEN + 1], size_t *n)
{
    struct proto_msg m;
    *n = 0;
    if (proto_decode(data, len, PROTO_AUDIT_ACK, &m) != 0)
        return -1;
    const msgpack_object *a = proto_get(&m, "ids");
    if (!a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size == 0 ||
        a->via.array.size > AUDIT_ACK_MAX)
        goto fail;
    for (uint32_t i = 0; i < a->via.array.size; i++) {
        const msgpack_object *s = &a->via.array.ptr[i];
        if (s->type != MSGPACK_OBJECT_STR || !audit_id_valid(s->via.str.ptr, s->via.str.size))
            goto fail;
        for (size_t j = 0; j < AUDIT_ID_LEN; j++)
            ids[i][j] = (char)tolower((unsigned char)s->via.str.ptr[j]);
        ids[i][AUDIT_ID_LEN] = 0;
    }
    *n = a->via.array.size;
    proto_msg_destroy(&m);
    return 0;
fail:
    proto_msg_destroy(&m);
    *n = 0;
    return -1;
}
