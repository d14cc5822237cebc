/*
 * log.h - the one error/log idiom of every process.
 *
 * msg_debug/info/warn/error write one line to stderr; msg_fatal writes and exits(1).
 * With LOG_FORMAT=json (the default) each line is one JSON object with timestamp, level,
 * service, pid and message; otherwise a readable text line. log_event() writes a structured
 * event whose fields come from a jansson object.
 */
#ifndef CALSETA_LOG_H
#define CALSETA_LOG_H

#include <jansson.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* service: short name ("intake"); json: 1 for JSON lines; level: minimum level written. */
void log_init(const char *service, int json, enum log_level level);
/* Parses "DEBUG", "INFO", "WARNING"/"WARN", "ERROR" (any case); unknown gives LOG_INFO. */
enum log_level log_level_parse(const char *s);
const char *log_service(void);
int log_is_json(void);
/* 1 when a line of this level is written: lets a caller skip building one that would not be. */
int log_enabled(enum log_level level);

void msg_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void msg_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Writes event `event` with the members of `fields` (borrowed; may be NULL). */
void log_event(enum log_level level, const char *event, json_t *fields);

#endif
