/*
 * malice.h - the original's malice verdicts.
 *
 * malice_evaluate(): rules {"rules":[{field, operator, value, verdict}], "default_verdict",
 * "not_found_verdict"} run in order against the raw provider response; the first match wins;
 * no match (or no rules) gives default_verdict; a NULL config gives "Pending". Operators:
 * > >= < <= (both sides coerced to float; failure = no match), == != (Python equality,
 * 1 == 1.0 == true), contains (substring / list member / object key), in (actual is a member of
 * the expected list or a substring of the expected string). A missing/null actual never matches.
 *
 * malice_worst(): Malicious > Suspicious > Benign > Pending.
 */
#ifndef ENRICHER_MALICE_H
#define ENRICHER_MALICE_H

#include <jansson.h>

/* Returns a verdict string (borrowed from rules, or a static string). */
const char *malice_evaluate(json_t *rules, json_t *raw);
const char *malice_not_found(json_t *rules);
/* Rank of a verdict (0..3); unknown strings rank -1. */
int malice_rank(const char *verdict);
/* The worse of two verdicts (either may be NULL). */
const char *malice_worst(const char *a, const char *b);

#endif
