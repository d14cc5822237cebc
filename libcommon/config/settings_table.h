/*
 * settings_table.h - every setting Calseta reads: name, default, the services that read it and
 * what it does. The one source of truth: config.c and every other reader take their defaults
 * from it, and docs/configuration.md is generated from it (`calseta settings-doc`, run by
 * scripts/config-doc.sh), so the documentation cannot drift from the code.
 *
 * Rule for every setting: unset or empty means the default. A reader asking for a name that
 * is not in the table is a programming error (msg_fatal): add the row first.
 */
#ifndef CALSETA_SETTINGS_TABLE_H
#define CALSETA_SETTINGS_TABLE_H

#include <stddef.h>

struct settings;

struct setting_doc {
    const char *group;       /* documentation section, e.g. "HTTP listener" */
    const char *name;        /* e.g. "HTTP_PORT" */
    const char *def;         /* value used when unset or empty; NULL = none */
    const char *services;    /* who reads it, e.g. "intake, enricher" */
    const char *description; /* one or two sentences, Markdown */
};

/* In documentation order, ended by a row whose name is NULL. */
extern const struct setting_doc SETTINGS_TABLE[];

/* The row of name, or NULL. */
const struct setting_doc *setting_doc_find(const char *name);

/* The value of name, or the table's default when it is unset or empty (NULL when there is none
 * either). s may be NULL (defaults only). */
const char *setting_value(const struct settings *s, const char *name);
/* setting_value() copied (caller frees), or NULL. */
char *setting_dup(const struct settings *s, const char *name);
/* setting_value() as an integer in [min, max]: 0, or -1 with err naming the setting. A setting
 * with no value and no default gives 0. */
int setting_ll(const struct settings *s, const char *name, long long min, long long max,
               long long *out, char *err, size_t errlen);
/* setting_ll() narrowed to an int; min and max must lie within int's range. */
int setting_integer(const struct settings *s, const char *name, int min, int max, int *out,
                    char *err, size_t errlen);
/* setting_value() as a boolean (true/false, 1/0, yes/no, on/off, t/f, y/n; any case). */
int setting_bool(const struct settings *s, const char *name, int *out, char *err, size_t errlen);

/* docs/configuration.md, generated from the table. Caller frees. */
char *settings_table_markdown(void);

#endif
