/*
 * html2md.h - HTML to Markdown, for uploaded context documents.
 *
 * A small one-pass converter of the structure runbooks use: headings, paragraphs, line breaks,
 * bold/italic, links, lists (nested), code and pre blocks, block quotes, horizontal rules,
 * tables as rows of cells. Scripts, styles, comments and the head are dropped; entities are
 * decoded; unknown tags keep their text. Never fails: bad HTML gives its text.
 */
#ifndef INTAKE_HTML2MD_H
#define INTAKE_HTML2MD_H

#include <stddef.h>

/* Markdown (NUL-terminated, malloc'ed) of html[0..len). */
char *html_to_markdown(const char *html, size_t len);

#endif
