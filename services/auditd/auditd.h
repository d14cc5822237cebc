/*
 * auditd.h - the audit writer's parts: the output sink (stdout and a rotating file, fsync
 * policy), the bounded set of recently written event ids, and the audit table store.
 */
#ifndef CALSETA_AUDITD_H
#define CALSETA_AUDITD_H

#include "proto/audit.h"
#include "util.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <sys/types.h>

#define AUDITD_ROTATE_KEEP 5 /* rotated files kept: <file>.1 .. <file>.5 */

/* ---- sink.c: where lines go -------------------------------------------------------------- */
struct sink {
    int json;          /* LOG_FORMAT=json: JSON lines, else readable text */
    int to_stdout;
    char *path;        /* NULL: no file */
    int fd;
    off_t size;
    long long rotate_bytes; /* 0: never by size */
    int dirty;         /* written since the last fsync */
};
/* Opens the file (if any); -1 with err on failure. */
int sink_open(struct sink *s, int json, int to_stdout, const char *path, long long rotate_bytes,
              char *err, size_t errlen);
/* Formats one event as a line (with its newline) onto b. */
void sink_format(const struct sink *s, const struct audit_event *e, struct buf *b);
/* Writes b to the file and stdout; -1 when the file write failed. */
int sink_write(struct sink *s, const struct buf *b);
/* fsync(2) of the file when something was written since the last call; -1 on failure. */
int sink_sync(struct sink *s);
/* Reopens the file at its path (after logrotate moved it away). */
int sink_reopen(struct sink *s);
/* Rotates when the file has reached rotate_bytes: path -> path.1 -> ... -> path.KEEP. */
int sink_maybe_rotate(struct sink *s);
void sink_close(struct sink *s);

/* ---- seen.c: bounded set of event ids written to the file ------------------------------ */
struct seen;
struct seen *seen_new(size_t capacity);
int seen_has(const struct seen *s, const char *id);
void seen_add(struct seen *s, const char *id); /* evicts the oldest when full */
size_t seen_count(const struct seen *s);
/* Loads the ids found in the last max_bytes of a file written by sink (JSON or text). */
size_t seen_load_file(struct seen *s, const char *path, size_t max_bytes);
void seen_free(struct seen *s);

/* ---- store.c: the audit_events table (blocking libpq; the writer has its own thread) ---- */
struct store;
/* NULL conninfo or "": no table (file only). Connects lazily. */
struct store *store_new(const char *conninfo);
int store_enabled(const struct store *st);
/* Ensures a connection, trying once; 0 when up. */
int store_connect(struct store *st);
int store_begin(struct store *st);
/*
 * Inserts events[0..n) (ON CONFLICT (event_id) DO NOTHING) in the open transaction and sets
 * inserted[i] = 1 for the rows that were new. Returns 0, -1 on a lost connection, -2 on an
 * SQL error with the connection still up (the transaction is then aborted).
 */
int store_insert(struct store *st, struct audit_event **events, size_t n, char *inserted);
int store_commit(struct store *st);
void store_rollback(struct store *st);
/* Drops the connection (after an error). */
void store_reset(struct store *st);
void store_free(struct store *st);

/* ---- produce.c: the load generator mode (`calseta-auditd produce N [RATE]`) ------------ */
int auditd_produce(int argc, char **argv);

#endif
