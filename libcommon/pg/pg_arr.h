/*
 * pg_arr.h - one-dimensional PostgreSQL arrays in their binary form (array_send's), built in a
 * struct buf, for the binary parameters of pg_exec_prepared_bin() (pg.h).
 */
#ifndef CALSETA_PG_ARR_H
#define CALSETA_PG_ARR_H

#include <stddef.h>
#include <stdint.h>

/* An array appended to a struct buf (util.h):
 * pg_arr_begin, one pg_arr_* per element, pg_arr_end (which returns the array's bytes, the
 * length to give pg_exec_prepared_bin). elem_oid: the element type, e.g. PG_OID_TEXT. Elements
 * are in the type's binary form: text its UTF-8 bytes (no NUL), int4/int8 big-endian,
 * timestamptz an int8 of microseconds since 2000-01-01 UTC, bool one byte, uuid its 16 bytes.
 * A NULL pointer is a NULL element. The buffer may move while an array is written; the array
 * is b's bytes from its start (b->len before pg_arr_begin) on. */
#define PG_OID_BOOL 16
#define PG_OID_INT8 20
#define PG_OID_INT4 23
#define PG_OID_TEXT 25
#define PG_OID_TIMESTAMPTZ 1184
#define PG_OID_UUID 2950
/* microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch */
#define PG_EPOCH_OFFSET_US 946684800000000LL
struct buf;
struct pg_arr {
    struct buf *b;
    size_t start;
    uint32_t n;
};
/* A 4-byte big-endian word (an array's header fields and element lengths) at p. */
static inline void pg_be32_put(void *p, uint32_t v)
{
    unsigned char *x = p;
    x[0] = (unsigned char)(v >> 24);
    x[1] = (unsigned char)(v >> 16);
    x[2] = (unsigned char)(v >> 8);
    x[3] = (unsigned char)v;
}

static inline uint32_t pg_be32_get(const void *p)
{
    const unsigned char *x = p;
    return (uint32_t)x[0] << 24 | (uint32_t)x[1] << 16 | (uint32_t)x[2] << 8 | x[3];
}

void pg_arr_begin(struct pg_arr *a, struct buf *b, uint32_t elem_oid);
void pg_arr_elem(struct pg_arr *a, const void *p, size_t len);
void pg_arr_text(struct pg_arr *a, const char *s);
void pg_arr_int4(struct pg_arr *a, int32_t v);
void pg_arr_int8(struct pg_arr *a, int64_t v);
void pg_arr_bool(struct pg_arr *a, int v);
size_t pg_arr_end(struct pg_arr *a);

#endif
