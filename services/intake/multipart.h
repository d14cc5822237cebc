/*
 * multipart.h - a small multipart/form-data parser (RFC 7578) for document uploads.
 *
 * The body is already complete and size-limited by the HTTP server; parts point into it (no
 * copies), so the request body must outlive the parsed form.
 */
#ifndef INTAKE_MULTIPART_H
#define INTAKE_MULTIPART_H

#include <stddef.h>

#define MULTIPART_MAX_PARTS 32

struct multipart_part {
    char name[128];
    char filename[256]; /* "" when the part is not a file */
    int has_filename;
    const char *data;
    size_t len;
};

struct multipart_form {
    struct multipart_part parts[MULTIPART_MAX_PARTS];
    size_t nparts;
};

/* Parses body under the Content-Type header value ct. 0, or -1 with a reason in err. */
int multipart_parse(const char *ct, const char *body, size_t len, struct multipart_form *f,
                    char *err, size_t errlen);
/* The first part with this name, or NULL. */
const struct multipart_part *multipart_get(const struct multipart_form *f, const char *name);

#endif
