/*
 * dotenv.c - `.env` parsing (see dotenv.h for the accepted syntax).
 *
 * A cursor walks the text once; every value is decoded into one scratch buffer as large as
 * the file (so it never grows and leaves no stray copies) which is wiped before returning.
 */
#include "dotenv.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DOTENV_MAX_BYTES (4u << 20)

struct cur {
    const char *p, *end;
    int line;
    char *val; /* scratch, len+1 bytes */
    size_t vlen;
    char *err;
    size_t errlen;
};

static int at_eol(const struct cur *c)
{
    return c->p >= c->end || *c->p == '\n' ||
           (*c->p == '\r' && (c->p + 1 >= c->end || c->p[1] == '\n'));
}

static void skip_blank(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* Moves past the end of the current line. */
static void next_line(struct cur *c)
{
    while (c->p < c->end && *c->p != '\n')
        c->p++;
    if (c->p < c->end)
        c->p++;
    c->line++;
}

static int fail(struct cur *c, int line, const char *why)
{
    snprintf(c->err, c->errlen, "line %d: %s", line, why);
    return -1;
}

static int is_name_start(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
}

static int is_name_char(char ch)
{
    return is_name_start(ch) || (ch >= '0' && ch <= '9') || ch == '.';
}

static char double_escape(char ch)
{
    switch (ch) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    case '"':
    case '\\':
    case '$':
    case '\'':
        return ch;
    default:
        return 0;
    }
}

static void put(struct cur *c, char ch)
{
    c->val[c->vlen++] = ch;
}

/* Reads a quoted value that may span lines; the cursor is on the opening quote. */
static int quoted(struct cur *c, char q)
{
    int start = c->line;
    c->p++;
    while (c->p < c->end && *c->p != q) {
        char ch = *c->p++;
        if (ch == '\n')
            c->line++;
        if (ch == '\\' && c->p < c->end) {
            char e = q == '"' ? double_escape(*c->p) : (*c->p == '\'' || *c->p == '\\' ? *c->p : 0);
            if (e) {
                put(c, e);
                c->p++;
                continue;
            }
        }
        put(c, ch);
    }
    if (c->p >= c->end)
        return fail(c, start,
                    q == '"' ? "unterminated double-quoted value"
                             : "unterminated single-quoted value");
    c->p++;
    skip_blank(c);
    if (!at_eol(c) && *c->p != '#')
        return fail(c, c->line, "unexpected characters after the closing quote");
    return 0;
}

/* Unquoted: up to the end of line; a '#' preceded by a blank starts a comment. */
static void unquoted(struct cur *c, int blank_before)
{
    while (!at_eol(c)) {
        char ch = *c->p;
        if (ch == '#' && blank_before)
            break;
        blank_before = ch == ' ' || ch == '\t';
        put(c, ch);
        c->p++;
    }
    while (c->vlen > 0 && (c->val[c->vlen - 1] == ' ' || c->val[c->vlen - 1] == '\t'))
        c->vlen--;
}

static int assignment(struct cur *c, dotenv_fn fn, void *arg)
{
    if (c->end - c->p > 6 && !memcmp(c->p, "export", 6) && (c->p[6] == ' ' || c->p[6] == '\t')) {
        c->p += 6;
        skip_blank(c);
    }
    if (c->p >= c->end || !is_name_start(*c->p))
        return fail(c, c->line, "expected a variable name");
    const char *name = c->p;
    while (c->p < c->end && is_name_char(*c->p))
        c->p++;
    size_t nlen = (size_t)(c->p - name);
    skip_blank(c);
    if (at_eol(c) || *c->p == '#')
        return 0; /* bare name: no value */
    if (*c->p != '=')
        return fail(c, c->line, "expected '=' after the variable name");
    c->p++;
    const char *before = c->p;
    skip_blank(c);
    c->vlen = 0;
    if (c->p < c->end && (*c->p == '"' || *c->p == '\'')) {
        if (quoted(c, *c->p))
            return -1;
    } else {
        unquoted(c, c->p != before);
    }
    c->val[c->vlen] = 0;
    char *n = xstrndup(name, nlen);
    fn(arg, n, c->val);
    free(n);
    explicit_bzero(c->val, c->vlen);
    return 0;
}

int dotenv_parse(const char *text, size_t len, dotenv_fn fn, void *arg, char *err, size_t errlen)
{
    struct cur c = {text, text + len, 1, xmalloc(len + 1), 0, err, errlen};
    int rc = 0;
    if (memchr(text, 0, len)) {
        const char *z = memchr(text, 0, len);
        int line = 1;
        for (const char *p = text; p < z; p++)
            line += *p == '\n';
        rc = fail(&c, line, "NUL byte in file");
        goto out;
    }
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        c.p += 3;
    while (c.p < c.end) {
        skip_blank(&c);
        if (!at_eol(&c) && *c.p != '#' && (rc = assignment(&c, fn, arg)) != 0)
            goto out;
        next_line(&c);
    }
out:
    explicit_bzero(c.val, len + 1);
    free(c.val);
    return rc;
}

int dotenv_load(const char *path, dotenv_fn fn, void *arg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || st.st_size > DOTENV_MAX_BYTES) {
        snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path, DOTENV_MAX_BYTES);
        fclose(f);
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *text = xmalloc(cap);
    n = fread(text, 1, cap, f);
    int rerr = ferror(f) || n == cap;
    fclose(f);
    int rc = -1;
    char why[256];
    if (rerr)
        snprintf(err, errlen, "%s: read error or file changed while reading", path);
    else if ((rc = dotenv_parse(text, n, fn, arg, why, sizeof why)) != 0)
        snprintf(err, errlen, "%s: %s", path, why);
    explicit_bzero(text, cap);
    free(text);
    return rc;
}
