/*
 * targeting.h - validation of targeting rules, the small language shared by context documents
 * (targeting_rules) and agent registrations (trigger_filter):
 *   {"match_any": [rule, ...], "match_all": [rule, ...]}, rule = {"field", "op", "value"},
 *   field in severity | source_name | tags, op in contains | eq | gte | in | lte.
 * Evaluation is in SQL (calseta_targeting_match); rules are checked here when they are saved,
 * so a malformed filter is refused at once and can never break matching for others.
 */
#ifndef INTAKE_TARGETING_H
#define INTAKE_TARGETING_H

#include <jansson.h>
#include <stddef.h>

#define TARGETING_MAX_BYTES 65536

/* 0 if rules (an object) is valid; else -1 with every problem joined by "; " in err.
 * what names the field in the size message ("targeting_rules", "trigger_filter"). */
int targeting_validate(json_t *rules, const char *what, char *err, size_t errlen);

#endif
