/*
 * html2md.c - HTML to Markdown (see html2md.h). A tag scanner, not a full HTML parser: text
 * runs are written with whitespace collapsed (kept inside <pre>), tags switch formatting on
 * and off, and block tags put blank lines around their content. Output lines are trimmed of
 * trailing spaces and runs of blank lines are cut to one.
 */
#include "html2md.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct conv {
    struct buf out;
    int pre;             /* inside <pre> */
    int skip;            /* inside <script>/<style>/<head>/<title> */
    int list_depth;
    int ordered[16];     /* per depth: 0 bullet, >0 next number */
    char href[512];      /* of the open <a> */
    size_t link_start;   /* out.len when <a> opened */
    int in_link;
    int pending_space;
};

static int at_line_start(const struct conv *c)
{
    return c->out.len == 0 || c->out.data[c->out.len - 1] == '\n';
}

static void newline(struct conv *c, int blank)
{
    while (c->out.len && c->out.data[c->out.len - 1] == ' ')
        c->out.len--;
    if (c->out.len == 0)
        return;
    if (!at_line_start(c))
        buf_puts(&c->out, "\n");
    if (blank && c->out.len >= 1 && !(c->out.len >= 2 && c->out.data[c->out.len - 2] == '\n'))
        buf_puts(&c->out, "\n");
    c->pending_space = 0;
}

static void text(struct conv *c, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == 0)
            continue; /* the result is a C string (and PostgreSQL text) */
        if (!c->pre && isspace(ch)) {
            c->pending_space = 1;
            continue;
        }
        if (c->pending_space && !at_line_start(c))
            buf_puts(&c->out, " ");
        c->pending_space = 0;
        buf_append(&c->out, (const char *)&ch, 1);
    }
}

static void put_utf8(struct conv *c, unsigned long cp)
{
    char b[4];
    size_t n;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    text(c, b, n);
}

/* Decodes the entity at s (after '&'); returns the bytes consumed after '&', 0 if none. */
static size_t entity(struct conv *c, const char *s, size_t n)
{
    static const struct {
        const char *name;
        unsigned long cp;
    } names[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''},
                 {"nbsp", ' '}, {"mdash", 0x2014}, {"ndash", 0x2013}, {"hellip", 0x2026},
                 {"copy", 0xA9}, {"rsquo", 0x2019}, {"lsquo", 0x2018}, {"rdquo", 0x201D},
                 {"ldquo", 0x201C}};
    const char *semi = memchr(s, ';', n < 16 ? n : 16);
    if (!semi)
        return 0;
    size_t len = (size_t)(semi - s);
    if (len > 1 && s[0] == '#') {
        char num[20];
        memcpy(num, s + 1, len - 1); /* len <= 16, so it fits with its NUL */
        num[len - 1] = 0;
        int hex = num[0] == 'x' || num[0] == 'X';
        const char *digits = num + hex;
        if (!*digits || strspn(digits, hex ? "0123456789abcdefABCDEF" : "0123456789") !=
                            strlen(digits) || strlen(digits) != len - 1 - (size_t)hex)
            return 0;
        unsigned long cp = strtoul(digits, NULL, hex ? 16 : 10);
        put_utf8(c, cp);
        return len + 1;
    }
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strlen(names[i].name) == len && !strncmp(s, names[i].name, len)) {
            put_utf8(c, names[i].cp);
            return len + 1;
        }
    return 0;
}

static void text_run(struct conv *c, const char *s, size_t n)
{
    if (c->skip)
        return;
    size_t i = 0, start = 0;
    while (i < n) {
        if (s[i] == '&') {
            text(c, s + start, i - start);
            size_t used = entity(c, s + i + 1, n - i - 1);
            if (used) {
                i += used + 1;
            } else {
                text(c, "&", 1);
                i++;
            }
            start = i;
            continue;
        }
        i++;
    }
    text(c, s + start, n - start);
}

static void attr(const char *tag, size_t n, const char *name, char *out, size_t outlen)
{
    out[0] = 0;
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl < n; i++) {
        if (i > 0 && isspace((unsigned char)tag[i - 1]) && !strncasecmp(tag + i, name, nl) &&
            tag[i + nl] == '=') {
            size_t p = i + nl + 1, o = 0;
            char q = (p < n && (tag[p] == '"' || tag[p] == '\'')) ? tag[p++] : 0;
            while (p < n && o + 1 < outlen && (q ? tag[p] != q : !isspace((unsigned char)tag[p]) &&
                                                                    tag[p] != '>'))
                out[o++] = tag[p++];
            out[o] = 0;
            return;
        }
    }
}

static void inline_mark(struct conv *c, const char *m)
{
    if (c->pending_space && !at_line_start(c))
        buf_puts(&c->out, " ");
    c->pending_space = 0;
    buf_puts(&c->out, m);
}

static void tag(struct conv *c, const char *t, size_t n)
{
    int closing = n && t[0] == '/';
    const char *p = t + closing;
    size_t k = 0;
    char name[16];
    while (k < n - closing && k + 1 < sizeof name && isalnum((unsigned char)p[k])) {
        name[k] = (char)tolower((unsigned char)p[k]);
        k++;
    }
    name[k] = 0;
    if (!strcmp(name, "script") || !strcmp(name, "style") || !strcmp(name, "head") ||
        !strcmp(name, "title")) {
        c->skip = closing ? (c->skip ? c->skip - 1 : 0) : c->skip + 1;
        return;
    }
    if (c->skip)
        return;
    if (name[0] == 'h' && name[1] >= '1' && name[1] <= '6' && !name[2]) {
        newline(c, 1);
        if (!closing) {
            for (int i = 0; i < name[1] - '0'; i++)
                buf_puts(&c->out, "#");
            buf_puts(&c->out, " ");
        }
    } else if (!strcmp(name, "p") || !strcmp(name, "div") || !strcmp(name, "section") ||
               !strcmp(name, "article") || !strcmp(name, "table")) {
        newline(c, 1);
    } else if (!strcmp(name, "br")) {
        newline(c, 0);
    } else if (!strcmp(name, "tr")) {
        newline(c, 0);
        if (!closing)
            buf_puts(&c->out, "|");
    } else if ((!strcmp(name, "td") || !strcmp(name, "th")) && closing) {
        buf_puts(&c->out, " |");
    } else if (!strcmp(name, "hr")) {
        newline(c, 1);
        buf_puts(&c->out, "---");
        newline(c, 1);
    } else if (!strcmp(name, "strong") || !strcmp(name, "b")) {
        inline_mark(c, "**");
    } else if (!strcmp(name, "em") || !strcmp(name, "i")) {
        inline_mark(c, "*");
    } else if (!strcmp(name, "code") && !c->pre) {
        inline_mark(c, "`");
    } else if (!strcmp(name, "pre")) {
        newline(c, !closing);
        buf_puts(&c->out, "```\n");
        c->pre = !closing;
        if (closing)
            newline(c, 1);
    } else if (!strcmp(name, "blockquote")) {
        newline(c, 1);
        if (!closing)
            buf_puts(&c->out, "> ");
    } else if (!strcmp(name, "ul") || !strcmp(name, "ol")) {
        if (!closing && c->list_depth < 15)
            c->ordered[++c->list_depth] = !strcmp(name, "ol") ? 1 : 0;
        else if (closing && c->list_depth > 0)
            c->list_depth--;
        newline(c, c->list_depth == 0);
    } else if (!strcmp(name, "li") && !closing) {
        newline(c, 0);
        for (int i = 1; i < c->list_depth; i++)
            buf_puts(&c->out, "  ");
        int d = c->list_depth;
        if (d > 0 && c->ordered[d] > 0)
            buf_printf(&c->out, "%d. ", c->ordered[d]++);
        else
            buf_puts(&c->out, "- ");
    } else if (!strcmp(name, "a")) {
        if (!closing) {
            attr(t, n, "href", c->href, sizeof c->href);
            inline_mark(c, "[");
            c->in_link = 1;
        } else if (c->in_link) {
            buf_printf(&c->out, "](%s)", c->href);
            c->in_link = 0;
        }
    }
}

char *html_to_markdown(const char *html, size_t len)
{
    struct conv c;
    memset(&c, 0, sizeof c);
    buf_init(&c.out);
    size_t i = 0;
    while (i < len) {
        if (html[i] != '<') {
            const char *lt = memchr(html + i, '<', len - i);
            size_t n = lt ? (size_t)(lt - html) - i : len - i;
            text_run(&c, html + i, n);
            i += n;
            continue;
        }
        if (len - i >= 4 && !strncmp(html + i, "<!--", 4)) {
            const char *e = memmem(html + i + 4, len - i - 4, "-->", 3);
            i = e ? (size_t)(e - html) + 3 : len;
            continue;
        }
        const char *gt = memchr(html + i, '>', len - i);
        if (!gt) {
            text_run(&c, html + i, len - i);
            break;
        }
        if (html[i + 1] != '!' && html[i + 1] != '?')
            tag(&c, html + i + 1, (size_t)(gt - html) - i - 1);
        i = (size_t)(gt - html) + 1;
    }
    /* Trim trailing spaces per line and collapse blank-line runs. */
    struct buf o;
    buf_init(&o);
    int blanks = 0;
    size_t s = 0;
    const char *d = c.out.data ? c.out.data : "";
    for (size_t k = 0; k <= c.out.len; k++) {
        if (k < c.out.len && d[k] != '\n')
            continue;
        size_t e = k;
        while (e > s && d[e - 1] == ' ')
            e--;
        if (e == s) {
            if (o.len && !blanks)
                buf_puts(&o, "\n");
            blanks = 1;
        } else {
            buf_append(&o, d + s, e - s);
            buf_puts(&o, "\n");
            blanks = 0;
        }
        s = k + 1;
    }
    while (o.len && o.data[o.len - 1] == '\n')
        o.len--;
    buf_puts(&o, "\n");
    buf_destroy(&c.out);
    return o.data;
}
