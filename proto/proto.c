/*
 * proto.c - envelope encode/decode and the bounded msgpack validator (see proto.h).
 */
#include "proto/proto.h"
#include "util.h"

#include <string.h>

#define ENVELOPE_MAX_FIELDS 32

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * Reads one header at *p. Returns -1 on a malformed or refused code, else 0 with *skip = payload
 * bytes to jump over (strings, binaries, numbers) and *items = elements that follow (arrays: n,
 * maps: 2n).
 */
static int header(const unsigned char **p, const unsigned char *end, uint64_t *skip,
                  uint64_t *items)
{
    unsigned c = *(*p)++;
    int lenbytes = 0;
    *skip = 0;
    *items = 0;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
        return 0;
    if (c >= 0x80 && c <= 0x8f) {
        *items = 2 * (uint64_t)(c & 0x0f);
        return 0;
    }
    if (c >= 0x90 && c <= 0x9f) {
        *items = c & 0x0f;
        return 0;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        *skip = c & 0x1f;
        return 0;
    }
    switch (c) {
    case 0xcc: case 0xd0: *skip = 1; return 0;
    case 0xcd: case 0xd1: *skip = 2; return 0;
    case 0xca: case 0xce: case 0xd2: *skip = 4; return 0;
    case 0xcb: case 0xcf: case 0xd3: *skip = 8; return 0;
    case 0xc4: case 0xd9: lenbytes = 1; break;
    case 0xc5: case 0xda: case 0xdc: case 0xde: lenbytes = 2; break;
    case 0xc6: case 0xdb: case 0xdd: case 0xdf: lenbytes = 4; break;
    default: return -1; /* 0xc1 (never used) and every ext type: we send none */
    }
    if (end - *p < lenbytes)
        return -1;
    uint64_t n = be(*p, lenbytes);
    *p += lenbytes;
    if (c == 0xdc || c == 0xdd)
        *items = n;
    else if (c == 0xde || c == 0xdf)
        *items = 2 * n;
    else
        *skip = n;
    return 0;
}

int proto_validate(const void *buf, size_t len)
{
    return proto_validate_max(buf, len, PROTO_MAX_MSG);
}

int proto_validate_max(const void *buf, size_t len, size_t max)
{
    if (!buf || len == 0 || len > max)
        return -1;
    const unsigned char *p = buf, *end = p + len;
    uint64_t left[PROTO_MAX_DEPTH + 1];
    int depth = 0;
    left[0] = 1;
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        left[depth]--;
        if (p >= end)
            return -1;
        uint64_t skip, items;
        if (header(&p, end, &skip, &items) != 0)
            return -1;
        if (skip > (uint64_t)(end - p))
            return -1;
        p += skip;
        if (items == 0)
            continue;
        /* Every element needs at least one byte: counts cannot outrun the buffer. */
        if (items > 2 * (uint64_t)PROTO_MAX_ITEMS || items > (uint64_t)(end - p))
            return -1;
        if (depth + 1 > PROTO_MAX_DEPTH)
            return -1;
        left[++depth] = items;
    }
    return p == end ? 0 : -1;
}

static int key_is(const msgpack_object *k, const char *key)
{
    size_t n = strlen(key);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && !memcmp(k->via.str.ptr, key, n);
}

static const msgpack_object *map_get(const msgpack_object_map *map, const char *key)
{
    for (uint32_t i = 0; i < map->size; i++)
        if (key_is(&map->ptr[i].key, key))
            return &map->ptr[i].val;
    return NULL;
}

static int keys_ok(const msgpack_object_map *map)
{
    if (map->size < 2 || map->size > ENVELOPE_MAX_FIELDS)
        return -1;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size == 0 || k->via.str.size > 64)
            return -1;
        for (uint32_t j = 0; j < i; j++) {
            const msgpack_object *o = &map->ptr[j].key;
            if (o->via.str.size == k->via.str.size &&
                !memcmp(o->via.str.ptr, k->via.str.ptr, k->via.str.size))
                return -1; /* duplicate keys: refuse rather than pick one */
        }
    }
    return 0;
}

int proto_decode(const void *buf, size_t len, unsigned want_type, struct proto_msg *m)
{
    return proto_decode_max(buf, len, PROTO_MAX_MSG, want_type, m);
}

int proto_decode_max(const void *buf, size_t len, size_t max, unsigned want_type,
                     struct proto_msg *m)
{
    memset(m, 0, sizeof *m);
    if (proto_validate_max(buf, len, max) != 0)
        return -1;
    msgpack_unpacked_init(&m->up);
    size_t off = 0;
    if (msgpack_unpack_next(&m->up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        goto fail;
    if (m->up.data.type != MSGPACK_OBJECT_MAP)
        goto fail;
    m->map = &m->up.data.via.map;
    if (keys_ok(m->map) != 0)
        goto fail;
    const msgpack_object *v = map_get(m->map, "v"), *t = map_get(m->map, "t");
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != PROTO_VERSION)
        goto fail;
    if (!t || t->type != MSGPACK_OBJECT_POSITIVE_INTEGER || t->via.u64 < PROTO_AUDIT_EVENT ||
        t->via.u64 > PROTO_TYPE_MAX)
        goto fail;
    m->type = (unsigned)t->via.u64;
    if (want_type && m->type != want_type)
        goto fail;
    return 0;
fail:
    msgpack_unpacked_destroy(&m->up);
    memset(m, 0, sizeof *m);
    return -1;
}

void proto_msg_destroy(struct proto_msg *m)
{
    if (m->map)
        msgpack_unpacked_destroy(&m->up);
    memset(m, 0, sizeof *m);
}

const msgpack_object *proto_get(const struct proto_msg *m, const char *key)
{
    return m->map ? map_get(m->map, key) : NULL;
}

int proto_utf8_ok(const char *s, size_t n, int allow_ctl)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            if (c == 0 || (allow_ctl != PROTO_CTL_ANY &&
                           (c == 0x7f || (c < 0x20 && !(allow_ctl && (c == '\t' || c == '\n'))))))
                return 0;
            p++;
            continue;
        }
        int extra;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (end - p <= extra)
            return 0;
        for (int i = 1; i <= extra; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        p += extra + 1;
    }
    return 1;
}

int proto_get_str(const struct proto_msg *m, const char *key, size_t maxlen, int allow_ctl,
                  char **out)
{
    const msgpack_object *o = proto_get(m, key);
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return 1;
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > maxlen ||
        !proto_utf8_ok(o->via.str.ptr, o->via.str.size, allow_ctl))
        return -1;
    *out = xstrndup(o->via.str.ptr, o->via.str.size);
    return 0;
}

int proto_get_i64(const struct proto_msg *m, const char *key, int64_t min, int64_t max,
                  int64_t *out)
{
    const msgpack_object *o = proto_get(m, key);
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return 1;
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return -1;
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = o->via.i64;
    } else {
        return -1;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int proto_get_u64(const struct proto_msg *m, const char *key, uint64_t *out)
{
    const msgpack_object *o = proto_get(m, key);
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return 1;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -1;
    *out = o->via.u64;
    return 0;
}

void proto_pack_key(msgpack_packer *pk, const char *key)
{
    size_t n = strlen(key);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, key, n);
}

void proto_pack_begin(msgpack_packer *pk, unsigned type, uint32_t nfields)
{
    msgpack_pack_map(pk, nfields + 2);
    proto_pack_key(pk, "v");
    msgpack_pack_unsigned_int(pk, PROTO_VERSION);
    proto_pack_key(pk, "t");
    msgpack_pack_unsigned_int(pk, type);
}

void proto_pack_str(msgpack_packer *pk, const char *key, const char *val)
{
    proto_pack_key(pk, key);
    if (!val) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = strlen(val);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, val, n);
}

void proto_pack_i64(msgpack_packer *pk, const char *key, int64_t val)
{
    proto_pack_key(pk, key);
    msgpack_pack_int64(pk, val);
}

void proto_pack_u64(msgpack_packer *pk, const char *key, uint64_t val)
{
    proto_pack_key(pk, key);
    msgpack_pack_uint64(pk, val);
}
