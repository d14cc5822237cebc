/*
 * upload.c - libFuzzer target for what parses uploaded context documents: the
 * multipart/form-data parser and the HTML-to-Markdown converter.
 *
 * The first byte picks a boundary length (1..64); the rest is the body, copied to a buffer of
 * exactly its size so any over-read is an ASan report. Every part the parser returns must lie
 * inside the body. The body is also converted as HTML; the Markdown must be a NUL-terminated
 * string that ends with a newline. Seeds: corpus/upload/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "html2md.h"
#include "log.h"
#include "multipart.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("fuzz", 0, LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t blen = 1 + data[0] % 64;
    char ct[128] = "multipart/form-data; boundary=";
    memset(ct + strlen(ct), 'b', blen);
    char *body = malloc(size - 1 ? size - 1 : 1);
    memcpy(body, data + 1, size - 1);
    struct multipart_form *f = malloc(sizeof *f);
    char err[200];
    if (multipart_parse(ct, body, size - 1, f, err, sizeof err) == 0) {
        for (size_t i = 0; i < f->nparts; i++) {
            const struct multipart_part *p = &f->parts[i];
            if (p->data < body || p->data + p->len > body + size - 1)
                abort();
        }
    }
    free(f);
    char *md = html_to_markdown(body, size - 1);
    size_t n = strlen(md);
    if (n == 0 || md[n - 1] != '\n')
        abort();
    free(md);
    free(body);
    return 0;
}
