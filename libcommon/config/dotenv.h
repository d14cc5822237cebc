/*
 * dotenv.h - parser for `.env` files as the common dotenv tools read them.
 *
 * Syntax accepted, one assignment per line:
 *   [export] NAME=value        NAME is [A-Za-z_][A-Za-z0-9_.]*; spaces around '=' allowed
 *   NAME=                      empty value
 *   NAME='literal'             single quotes: taken as is, only \' and \\ are escapes
 *   NAME="a\n\"b\""            double quotes: \n \r \t \" \\ \$ \' escapes; may span lines
 *   NAME=plain value # note    unquoted: trailing space and a " #..." comment are dropped
 *   # comment, blank lines     ignored; a UTF-8 BOM and CRLF line ends are tolerated
 *   NAME                       a bare name (no '=') assigns nothing, as python-dotenv does
 * No ${VAR} interpolation: values are taken literally. Anything else is an error naming
 * the line number (never the value, which may be a secret).
 */
#ifndef CALSETA_DOTENV_H
#define CALSETA_DOTENV_H

#include <stddef.h>

typedef void (*dotenv_fn)(void *arg, const char *name, const char *value);

/* Parses text (len bytes); calls fn for each assignment in file order. 0 or -1 with err. */
int dotenv_parse(const char *text, size_t len, dotenv_fn fn, void *arg, char *err, size_t errlen);
/* Reads and parses path. A missing file is not an error (returns 0, no calls). */
int dotenv_load(const char *path, dotenv_fn fn, void *arg, char *err, size_t errlen);

#endif
