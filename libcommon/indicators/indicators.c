/*
 * indicators.c - the de-duplicating indicator set, passes 2 and 3, the fingerprint.
 */
#include "indicators.h"
#include "crypto.h"
#include "siphash.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Python whitespace ---- */

static int py_isspace(unsigned cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* Code point of the UTF-8 sequence at p (n bytes available); its length in *clen. */
static unsigned utf8_at(const unsigned char *p, size_t n, size_t *clen)
{
    size_t need = p[0] < 0x80 ? 1 : p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 1;
    if (need > n || need == 1) {
        *clen = 1;
        return p[0] < 0x80 ? p[0] : 0xfffd; /* stray bytes are never whitespace */
    }
    unsigned cp = p[0] & (0x7f >> need);
    for (size_t i = 1; i < need; i++)
        cp = (cp << 6) | (p[i] & 0x3f);
    *clen = need;
    return cp;
}

size_t py_strip(const char **s, size_t len)
{
    const unsigned char *p = (const unsigned char *)*s;
    size_t clen;
    while (len && py_isspace(utf8_at(p, len, &clen))) {
        p += clen;
        len -= clen;
    }
    while (len) {
        size_t start = len - 1;
        while (start > 0 && (p[start] & 0xc0) == 0x80 && len - start < 4)
            start--;
        if (!py_isspace(utf8_at(p + start, len - start, &clen)) || start + clen != len)
            break;
        len = start;
    }
    *s = (const char *)p;
    return len;
}

/* ---- the set ---- */

void indicator_set_init(struct indicator_set *s)
{
    memset(s, 0, sizeof *s);
}

/* The items' strings are copied into blocks that are never moved or freed before the set is:
 * two allocations per indicator (type and value) were most of an alert's allocations. A regular
 * block is twice the last regular one's size (512 bytes to 64 KiB), so a set of n strings takes
 * O(log n) blocks up to there. A string bigger than half the next regular block gets a block of
 * its own, put behind the one being filled: doubling from it would make every later small
 * string cost a block twice the sender's largest value. */
struct indicator_text {
    struct indicator_text *prev;
    size_t used, cap;
    int own; /* holds one large string; never filled further */
    char data[];
};

#define TEXT_BLOCK_MIN 512
#define TEXT_BLOCK_MAX (64 * 1024)

static char *text_copy(struct indicator_set *s, const char *p, size_t n)
{
    struct indicator_text *t = s->text;
    if (n >= SIZE_MAX - sizeof *t - 1)
        abort(); /* no string of the body can be this long */
    if (!t || t->cap - t->used < n + 1) {
        size_t cap = t && !t->own ? 2 * t->cap : TEXT_BLOCK_MIN;
        if (cap > TEXT_BLOCK_MAX)
            cap = TEXT_BLOCK_MAX;
        int own = n + 1 > cap / 2;
        if (own)
            cap = n + 1;
        struct indicator_text *b = xmalloc(sizeof *b + cap);
        b->used = 0;
        b->cap = cap;
        b->own = own;
        if (own && t) {
            b->prev = t->prev; /* behind the block being filled, which stays the head */
            t->prev = b;
        } else {
            b->prev = t;
            s->text = b;
        }
        t = b;
    }
    char *d = t->data + t->used;
    memcpy(d, p, n);
    d[n] = '\0';
    t->used += n + 1;
    return d;
}

void indicator_set_destroy(struct indicator_set *s)
{
    for (struct indicator_text *t = s->text, *prev; t; t = prev) {
        prev = t->prev;
        free(t);
    }
    free(s->items);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* Values come from the sender (a generic body may list thousands), so they are hashed with the
 * process's SipHash key: an unkeyed hash would let a sender pick values sharing one slot and make
 * every insert walk all the others. The type is one of a few fixed names. */
static size_t hash_pair(const char *type, const char *value, size_t vlen)
{
    uint64_t h = siphash13(siphash_process_key(), value, vlen);
    for (const char *p = type; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (size_t)h;
}

static void rehash(struct indicator_set *s)
{
    free(s->slots);
    s->nslots = s->nslots ? s->nslots * 2 : 64;
    s->slots = xcalloc(s->nslots, sizeof *s->slots);
    for (size_t i = 0; i < s->n; i++) {
        const struct indicator *it = &s->items[i];
        size_t h = hash_pair(it->type, it->value, strlen(it->value)) & (s->nslots - 1);
        while (s->slots[h])
            h = (h + 1) & (s->nslots - 1);
        s->slots[h] = i + 1;
    }
}

int indicator_set_add(struct indicator_set *s, const char *type, const char *value, size_t len)
{
    if (!type || !value)
        return 0;
    const char *nul = memchr(value, '\0', len);
    if (nul)
        len = (size_t)(nul - value);
    len = py_strip(&value, len);
    if (len == 0)
        return 0;
    if ((s->n + 1) * 2 > s->nslots)
        rehash(s);
    size_t h = hash_pair(type, value, len) & (s->nslots - 1);
    for (; s->slots[h]; h = (h + 1) & (s->nslots - 1)) {
        const struct indicator *it = &s->items[s->slots[h] - 1];
        if (!strcmp(it->type, type) && !strncmp(it->value, value, len) && !it->value[len])
            return 0;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->items = xrealloc(s->items, s->cap * sizeof *s->items);
    }
    s->items[s->n].type = text_copy(s, type, strlen(type));
    s->items[s->n].value = text_copy(s, value, len);
    s->slots[h] = ++s->n;
    return 1;
}

int indicator_set_add_json(struct indicator_set *s, const char *type, const json_t *v)
{
    if (!json_is_string(v))
        return 0;
    return indicator_set_add(s, type, json_string_value(v), json_string_length(v));
}

/* ---- passes 2 and 3 ---- */

static int mapping_applies(const struct indicator_mapping *m, const char *source_name)
{
    if (!m->field_path || !m->indicator_type)
        return 0;
    return !m->source_name || (source_name && !strcmp(m->source_name, source_name));
}

void indicators_extract_normalized(const json_t *fields, const char *source_name,
                                   const struct indicator_mapping *m, size_t n,
                                   struct indicator_set *out)
{
    if (!json_is_object(fields))
        return;
    for (size_t i = 0; i < n; i++)
        if (mapping_applies(&m[i], source_name))
            indicator_set_add_json(out, m[i].indicator_type,
                                   json_object_get(fields, m[i].field_path));
}

/* fields[a][b]... for "a.b..."; NULL when a step is not an object or the key is missing. */
static const json_t *walk_objects(const json_t *root, const char *path)
{
    const json_t *cur = root;
    const char *seg = path;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        if (!json_is_object(cur))
            return NULL;
        cur = json_object_getn(cur, seg, n);
        if (!cur || !dot)
            return cur;
        seg = dot + 1;
    }
}

void indicators_extract_raw(const json_t *raw, const char *source_name,
                            const struct indicator_mapping *m, size_t n, struct indicator_set *out)
{
    for (size_t i = 0; i < n; i++)
        if (mapping_applies(&m[i], source_name))
            indicator_set_add_json(out, m[i].indicator_type, walk_objects(raw, m[i].field_path));
}

/* ---- fingerprint and JSON ---- */

static int cmp_indicator(const void *a, const void *b)
{
    const struct indicator *x = *(const struct indicator *const *)a;
    const struct indicator *y = *(const struct indicator *const *)b;
    int c = strcmp(x->type, y->type);
    return c ? c : strcmp(x->value, y->value);
}

/* Sorted pointers and the digest's input stay on the stack up to these sizes (an alert has a
 * few indicators and a few hundred bytes of input); a larger set takes heap blocks. */
#define FP_STACK_ITEMS 64
#define FP_STACK_BYTES 2048

void indicators_fingerprint(const char *title, const char *source_name,
                            const struct indicator_set *s, char out[33])
{
    const struct indicator *sorted_small[FP_STACK_ITEMS];
    const struct indicator **sorted =
        s->n <= FP_STACK_ITEMS ? sorted_small : xmalloc(s->n * sizeof *sorted);
    for (size_t i = 0; i < s->n; i++)
        sorted[i] = &s->items[i];
    qsort(sorted, s->n, sizeof *sorted, cmp_indicator);

    /* the digest's input in one piece: title, NUL, source, NUL, then type:value joined by | */
    title = title ? title : "";
    source_name = source_name ? source_name : "";
    size_t tlen = strlen(title), slen = strlen(source_name), need = tlen + slen + 2;
    for (size_t i = 0; i < s->n; i++)
        need += strlen(sorted[i]->type) + strlen(sorted[i]->value) + 2;
    char in_small[FP_STACK_BYTES];
    char *in = need <= sizeof in_small ? in_small : xmalloc(need);
    char *p = in;
    memcpy(p, title, tlen + 1);
    p += tlen + 1;
    memcpy(p, source_name, slen + 1);
    p += slen + 1;
    for (size_t i = 0; i < s->n; i++) {
        size_t a = strlen(sorted[i]->type), b = strlen(sorted[i]->value);
        if (i)
            *p++ = '|';
        memcpy(p, sorted[i]->type, a);
        p += a;
        *p++ = ':';
        memcpy(p, sorted[i]->value, b);
        p += b;
    }
    if (sorted != sorted_small)
        free(sorted);
    crypto_md5_hex(in, (size_t)(p - in), out);
    if (in != in_small)
        free(in);
}

json_t *indicators_to_json(const struct indicator_set *s)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s->n; i++)
        json_array_append_new(
            a, json_pack("{s:s,s:s}", "type", s->items[i].type, "value", s->items[i].value));
    return a;
}
