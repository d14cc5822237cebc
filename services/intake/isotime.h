/*
 * isotime.h - the timestamp parsers the alert normalisers need, with the original's semantics.
 *
 *   isotime_parse()       Python 3.11/3.12 datetime.fromisoformat() (CPython's C parser, quirks
 *                         included: any separator character, week dates, "Z", offsets with
 *                         seconds and fractions, "HH:MM:SS:ff" read as a fraction, 7+ fraction
 *                         digits truncated). A naive value is taken as UTC, as the original
 *                         stores it in a UTC container.
 *   isotime_parse_zfix()  the Sentinel/Elastic form: every "Z" replaced by "+00:00" first.
 *   isotime_from_epoch()  Splunk's _time: float(value) seconds since 1970, UTC, rounded to the
 *                         microsecond half-to-even like datetime.fromtimestamp().
 *
 * All return 0 and store wall-clock microseconds since 1970 UTC, or -1 when Python would raise
 * (callers then fall back to now). Results outside 0001-01-01..9999-12-31 UTC are refused too:
 * the original could not store them either. Input strings are NUL-terminated; a string with an
 * embedded NUL is therefore read up to its first NUL.
 */
#ifndef INTAKE_ISOTIME_H
#define INTAKE_ISOTIME_H

#include <stdint.h>

int isotime_parse(const char *s, int64_t *out_us);
int isotime_parse_zfix(const char *s, int64_t *out_us);
/* Text as Python's float() reads it ("1709305200", " 1.5e9 ", "1_000"); -1 if not a number. */
int isotime_from_epoch_text(const char *s, int64_t *out_us);
int isotime_from_epoch(double seconds, int64_t *out_us);

#endif
