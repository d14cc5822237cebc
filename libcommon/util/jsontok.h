/*
 * jsontok.h - untrusted JSON read into a flat token index instead of a jansson tree.
 *
 * One array of tokens (type, byte range in the input, sibling link, child count, decoded string
 * text) and one side buffer for the strings that had escapes: no allocation per value, and the
 * raw bytes of any value stay at hand to copy. The grammar is json_read()'s with
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY: what it refuses is refused here with the same status,
 * and every value reads back (jtok_json()) as json_read() would have read it. \u0000 is refused
 * (PostgreSQL text cannot hold it), so a decoded string never contains a NUL byte.
 *
 * Layout: token 0 is the root. A container with count > 0 has its first child right after it;
 * an object's children are key, value, key, value ... and a key's next is the following key
 * (its value is the token after it); an array element's next is the following element.
 * JTOK_NONE stands for "absent" everywhere, and every accessor accepts it (as jansson's
 * accessors accept NULL).
 */
#ifndef CALSETA_JSONTOK_H
#define CALSETA_JSONTOK_H

#include "jsonparse.h"
#include "util.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define JTOK_NONE UINT32_MAX

enum jtok_type { JT_NONE, JT_OBJECT, JT_ARRAY, JT_STRING, JT_NUMBER, JT_TRUE, JT_FALSE, JT_NULL };

struct jtok {
    uint32_t start, end; /* the value's bytes in the input: [start, end) */
    uint32_t next;       /* next sibling (see above), or JTOK_NONE */
    uint32_t count;      /* containers: elements, or members of an object (object keys: a hash) */
    uint32_t str, slen;  /* strings: decoded text at str (in the input, or in text if escaped);
                            objects with many keys: their key table, slen slots at slots + str */
    uint8_t type;        /* enum jtok_type */
    uint8_t escaped;     /* strings: the decoded text is in the side buffer */
};

struct jtok_doc {
    const char *data; /* the input, borrowed */
    size_t len;
    struct jtok *t;
    size_t n, cap;
    struct buf text; /* decoded text of the strings with escapes */
    uint32_t *slots; /* key tables of the objects with many keys (open addressing) */
    size_t nslots, slots_cap;
    size_t probes; /* slots the duplicate-key check stepped past: stays near the key count
                      unless keys collide, which tests check */
};

/*
 * Reads data[0..len) with the limits of json_parse_limited() (NULL: the defaults), with the same
 * statuses, error texts and scan counts. 0 and d filled, or -1 with *status and err set (d is
 * then empty but must still be released). Inputs of 4 GB or more are refused as too big.
 */
int jtok_parse_limited(struct jtok_doc *d, const char *data, size_t len,
                       const struct json_limits *lim, struct json_scan *scan,
                       enum json_parse_status *status, char *err, size_t errlen);
void jtok_free(struct jtok_doc *d);

enum jtok_type jtok_type(const struct jtok_doc *d, uint32_t i);
/* obj[key] (decoded keys compared), or JTOK_NONE when obj is no object or has no such key. */
uint32_t jtok_getn(const struct jtok_doc *d, uint32_t obj, const char *key, size_t n);
/* Inline so that a literal key's length is folded at compile time (the sources look about 30
 * literal names up per alert). */
static inline uint32_t jtok_get(const struct jtok_doc *d, uint32_t obj, const char *key)
{
    return jtok_getn(d, obj, key, strlen(key));
}
/* arr[k], or JTOK_NONE. */
uint32_t jtok_index(const struct jtok_doc *d, uint32_t arr, size_t k);
/* First child (an array's first element, an object's first key) and the next sibling. */
uint32_t jtok_first(const struct jtok_doc *d, uint32_t i);
uint32_t jtok_next(const struct jtok_doc *d, uint32_t i);
/* The decoded text of a string (no NUL inside, not terminated) and its length, or NULL. */
const char *jtok_str(const struct jtok_doc *d, uint32_t i, size_t *len);
/* Whether i is a string equal to s. */
int jtok_streq(const struct jtok_doc *d, uint32_t i, const char *s);
/* NUL-terminated copy of a string's text, or NULL when i is not a string. Caller frees. */
char *jtok_strdup(const struct jtok_doc *d, uint32_t i);
/* Python truthiness of the value json_read() would have built: null, false, 0, 0.0, "", []
 * and {} are false, and so is JTOK_NONE. */
int jtok_truthy(const struct jtok_doc *d, uint32_t i);
/* Python `a or b`: a when truthy, else b when truthy, else JTOK_NONE. */
uint32_t jtok_or(const struct jtok_doc *d, uint32_t a, uint32_t b);
/* The value as json_read() builds it (new reference), or NULL for JTOK_NONE. For the rare
 * paths that need a number's value or Python's str() of a container. */
json_t *jtok_json(const struct jtok_doc *d, uint32_t i);

#endif
