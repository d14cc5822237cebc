/*
 * multipart.c - multipart/form-data parsing (see multipart.h). Only what forms send: a
 * boundary parameter, parts with a Content-Disposition naming the field (and a file name for
 * files), CRLF line ends. Anything else is refused with a reason rather than guessed at.
 */
#include "multipart.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *memmem_s(const char *h, size_t hl, const char *n, size_t nl)
{
    return memmem(h, hl, n, nl);
}

/* Copies the value of parameter `key` (quoted or token) from a header value into out. */
static int header_param(const char *v, size_t vlen, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < vlen; i++) {
        if ((i == 0 || v[i - 1] == ';' || v[i - 1] == ' ' || v[i - 1] == '\t') &&
            !strncasecmp(v + i, key, kl) && v[i + kl] == '=') {
            size_t p = i + kl + 1, o = 0;
            if (p < vlen && v[p] == '"') {
                p++;
                while (p < vlen && v[p] != '"' && o + 1 < outlen) {
                    if (v[p] == '\\' && p + 1 < vlen)
                        p++;
                    out[o++] = v[p++];
                }
            } else {
                while (p < vlen && v[p] != ';' && v[p] != ' ' && o + 1 < outlen)
                    out[o++] = v[p++];
            }
            out[o] = 0;
            return 1;
        }
    }
    return 0;
}

static int parse_part(const char *p, size_t len, struct multipart_part *part, char *err,
                      size_t errlen)
{
    const char *end = memmem_s(p, len, "\r\n\r\n", 4);
    if (!end) {
        snprintf(err, errlen, "a part has no header section");
        return -1;
    }
    memset(part, 0, sizeof *part);
    const char *h = p;
    int named = 0;
    while (h < end) {
        const char *eol = memmem_s(h, (size_t)(end - h) + 2, "\r\n", 2);
        size_t hl = (size_t)((eol ? eol : end) - h);
        if (hl > 20 && !strncasecmp(h, "content-disposition:", 20)) {
            named = header_param(h + 20, hl - 20, "name", part->name, sizeof part->name);
            part->has_filename =
                header_param(h + 20, hl - 20, "filename", part->filename, sizeof part->filename);
        }
        if (!eol)
            break;
        h = eol + 2;
    }
    if (!named) {
        snprintf(err, errlen, "a part has no Content-Disposition name");
        return -1;
    }
    part->data = end + 4;
    part->len = len - (size_t)(end + 4 - p);
    return 0;
}

int multipart_parse(const char *ct, const char *body, size_t len, struct multipart_form *f,
                    char *err, size_t errlen)
{
    char boundary[80];
    char delim[96];
    memset(f, 0, sizeof *f);
    if (!ct || !header_param(ct, strlen(ct), "boundary", boundary, sizeof boundary) ||
        !*boundary) {
        snprintf(err, errlen, "multipart/form-data without a boundary");
        return -1;
    }
    int dl = snprintf(delim, sizeof delim, "--%s", boundary);
    const char *cur = memmem_s(body, len, delim, (size_t)dl);
    if (!cur) {
        snprintf(err, errlen, "the multipart body does not contain its boundary");
        return -1;
    }
    /* From here every delimiter is preceded by CRLF. */
    dl = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    cur += dl - 2;
    const char *stop = body + len;
    for (;;) {
        if (stop - cur >= 2 && cur[0] == '-' && cur[1] == '-')
            return 0; /* closing delimiter */
        if (stop - cur < 2 || cur[0] != '\r' || cur[1] != '\n') {
            snprintf(err, errlen, "malformed multipart delimiter");
            return -1;
        }
        cur += 2;
        const char *next = memmem_s(cur, (size_t)(stop - cur), delim, (size_t)dl);
        if (!next) {
            snprintf(err, errlen, "the multipart body is not terminated");
            return -1;
        }
        if (f->nparts == MULTIPART_MAX_PARTS) {
            snprintf(err, errlen, "too many parts (at most %d)", MULTIPART_MAX_PARTS);
            return -1;
        }
        if (parse_part(cur, (size_t)(next - cur), &f->parts[f->nparts], err, errlen) != 0)
            return -1;
        f->nparts++;
        cur = next + dl;
    }
}

const struct multipart_part *multipart_get(const struct multipart_form *f, const char *name)
{
    for (size_t i = 0; i < f->nparts; i++)
        if (!strcmp(f->parts[i].name, name))
            return &f->parts[i];
    return NULL;
}
