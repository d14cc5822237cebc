/*
 * pg_arr.c - one-dimensional arrays written in PostgreSQL's binary form (as array_send writes
 * them, as array_recv reads them), for binary parameters of pg_exec_prepared_bin().
 */
#include "log.h"
#include "pg_arr.h"
#include "util.h"

#include <stdint.h>
#include <string.h>

static void put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4];
    pg_be32_put(x, v);
    buf_append(b, x, 4);
}

/* Header: ndim 1, has-nulls 0 (array_recv works out the null bitmap itself), the element type,
 * then the one dimension's length (patched by pg_arr_end) and lower bound 1. */
void pg_arr_begin(struct pg_arr *a, struct buf *b, uint32_t elem_oid)
{
    a->b = b;
    a->start = b->len;
    a->n = 0;
    put_u32(b, 1);
    put_u32(b, 0);
    put_u32(b, elem_oid);
    put_u32(b, 0);
    put_u32(b, 1);
}

void pg_arr_elem(struct pg_arr *a, const void *p, size_t len)
{
    if (!p) {
        put_u32(a->b, 0xffffffffu);
    } else {
        if (len > INT32_MAX) /* its length word would read as NULL or negative */
            msg_fatal("pg_arr: an array element of %zu bytes", len);
        put_u32(a->b, (uint32_t)len);
        buf_append(a->b, p, len);
    }
    a->n++;
}

void pg_arr_text(struct pg_arr *a, const char *s)
{
    pg_arr_elem(a, s, s ? strlen(s) : 0);
}

void pg_arr_int4(struct pg_arr *a, int32_t v)
{
    unsigned char x[4];
    pg_be32_put(x, (uint32_t)v);
    pg_arr_elem(a, x, 4);
}

void pg_arr_int8(struct pg_arr *a, int64_t v)
{
    unsigned char x[8];
    pg_be32_put(x, (uint32_t)((uint64_t)v >> 32));
    pg_be32_put(x + 4, (uint32_t)v);
    pg_arr_elem(a, x, 8);
}

void pg_arr_bool(struct pg_arr *a, int v)
{
    unsigned char x = v ? 1 : 0;
    pg_arr_elem(a, &x, 1);
}

/* An empty array is sent with no dimension, as array_send writes it. Returns the array's bytes. */
size_t pg_arr_end(struct pg_arr *a)
{
    if (a->n == 0) {
        pg_be32_put(a->b->data + a->start, 0);
        a->b->len = a->start + 12;
        a->b->data[a->b->len] = 0;
    } else {
        pg_be32_put(a->b->data + a->start + 12, a->n);
    }
    return a->b->len - a->start;
}
