/*
 * alert_vocab.h - the fixed vocabularies of an alert: statuses, severities, enrichment statuses,
 * malice verdicts and close classifications, the one copy the REST API and the MCP tools check.
 *
 * Each list is NULL-terminated and in the order the API documents it; the spelling is the
 * original's (title case, spaces and dashes included), which clients match exactly.
 */
#ifndef LIBCOMMON_ALERT_VOCAB_H
#define LIBCOMMON_ALERT_VOCAB_H

extern const char *const ALERT_STATUSES[];
extern const char *const ALERT_SEVERITIES[];
extern const char *const ENRICHMENT_STATUSES[];
extern const char *const MALICE_LEVELS[];
extern const char *const CLOSE_CLASSIFICATIONS[];

/* 1 if s is exactly one of the NULL-terminated set, 0 otherwise (NULL s included). */
int vocab_has(const char *const *set, const char *s);

#endif
