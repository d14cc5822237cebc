/*
 * audit.h - the audit producer: how every process hands audit events to calseta-auditd.
 *
 * Delivery without loss and without blocking the caller:
 *   1. audit_emit() encodes the event (proto/audit.h, with a fresh event id) and appends it to
 *      this process's spool file (AUDIT_SPOOL_DIR, default <CALSETA_DATA_DIR>/audit-spool,
 *      named <service>-<pid>.spool, held with flock) with one write(2) - write-ahead, before
 *      any send, so a producer killed -9 loses nothing either;
 *   2. it is sent over a DEALER socket to auditd's ROUTER (AUDIT_ENDPOINT) without waiting;
 *   3. auditd acknowledges ids once they are in its file (fsynced per AUDIT_FSYNC_MS) and
 *      committed in the audit_events table; only then does the producer forget them, and when
 *      nothing is left unacknowledged the spool file is truncated to zero;
 *   4. when no acknowledgement has come for 2 s while events are outstanding (auditd down,
 *      restarted, or a message lost with a dead connection) everything unacknowledged is sent
 *      again, in order; auditd drops the duplicates by event id.
 * At most 4096 events are held in memory; beyond that they wait in the spool file and are
 * read back in order. Spool files whose owner died (their flock is free) are adopted by the
 * next producer that starts or by a running one within 30 s, and replayed.
 *
 * With a libuv loop the socket is watched on the loop (handles unref'd: they never keep the
 * loop alive). Without one (CLI commands) events are sent at once and audit_client_flush()
 * waits for the acknowledgements; whatever is not acknowledged stays in the spool file.
 * The spool write is not fsynced: it survives the death of the process, not of the host.
 */
#ifndef CALSETA_AUDIT_H
#define CALSETA_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct config;
struct audit_client;

/* Never returns NULL. service names the producer ("intake", "cli"...). loop may be NULL. */
struct audit_client *audit_client_new(const struct config *c, const char *service,
                                      uv_loop_t *loop);

/* Never blocks the caller, never drops. fields (a JSON object or NULL) is stolen. Any string
 * argument may be NULL. A NULL client only logs the event to stderr. */
void audit_emit(struct audit_client *ac, const char *event_type, const char *request_id,
                const char *actor_key_prefix, const char *client_ip, json_t *fields);

/*
 * The one function every authentication failure goes through, so none is logged differently. Writes the process log
 * line (warning "auth_failure" with timestamp, method, path, client_ip, key_prefix, reason,
 * required_scope, request_id) and emits the audit event "auth_failure". reason is one of
 * missing_header invalid_format invalid_key key_expired insufficient_scope invalid_signature
 * source_not_allowed rate_limited. key_prefix, required_scope, request_id may be NULL.
 */
void audit_auth_failure(struct audit_client *ac, const char *method, const char *path,
                        const char *client_ip, const char *key_prefix, const char *reason,
                        const char *required_scope, const char *request_id);

/*
 * Refusals are aggregated per (reason, client IP) and window of AUDIT_REFUSAL_WINDOW_SECONDS
 * when the client runs on a loop: the first refusal of a window is written as above at once,
 * the following ones are only counted, and when the window ends one more "auth_failure" event
 * (fields aggregated=true, count, window_seconds, window_start, method/path of the last one)
 * and one log line "auth_failure_summary" carry their number. audit_auth_failure() does this
 * for the reasons that name no key (missing_header, invalid_format) and for rate_limited;
 * audit_auth_refusal() for any reason (a well-formed key whose prefix matches no key). Beyond
 * 4096 tracked clients, further ones share one entry per reason.
 */
void audit_auth_refusal(struct audit_client *ac, const char *method, const char *path,
                        const char *client_ip, const char *key_prefix, const char *reason,
                        const char *required_scope, const char *request_id);
/* audit_auth_failure() and audit_auth_refusal() under another event name (the MCP front end
 * records mcp_auth_failure). */
void audit_auth_failure_as(struct audit_client *ac, const char *event, const char *method,
                           const char *path, const char *client_ip, const char *key_prefix,
                           const char *reason, const char *required_scope,
                           const char *request_id);
void audit_auth_refusal_as(struct audit_client *ac, const char *event, const char *method,
                           const char *path, const char *client_ip, const char *key_prefix,
                           const char *reason, const char *required_scope,
                           const char *request_id);

/*
 * A valid key refused (insufficient_scope): aggregated per (reason, key prefix, route) and window
 * of AUDIT_REFUSAL_WINDOW_SECONDS, so a client repeating a request its key may not make costs one
 * event per window instead of one per request. The first refusal of a window is written as
 * audit_auth_failure() writes it; the summary event (of the same event type as the first) names
 * the key (actor_key_prefix) and carries count, window_seconds, window_start, route,
 * required_scope and the last method/path/client IP.
 * route is the route's pattern (e.g. "/v1/alerts/{uuid}"); path the request's.
 */
void audit_key_refusal_as(struct audit_client *ac, const char *event, const char *method,
                          const char *route, const char *path, const char *client_ip,
                          const char *key_prefix, const char *reason, const char *required_scope,
                          const char *request_id);

/* Emits "config_loaded": secrets backend, version, and which protections are off (never a
 * secret value). */
void audit_emit_config_loaded(struct audit_client *ac, const struct config *c);
/* The fields of that event (a new object). */
json_t *audit_config_fields(const struct config *c);

/* Waits up to timeout_ms for every outstanding event to be acknowledged (blocking; for
 * shutdown and CLI commands). Returns the number still unacknowledged (they stay spooled). */
size_t audit_client_flush(struct audit_client *ac, int timeout_ms);

/* Closes the client; unacknowledged events stay in the spool for a later producer. With a
 * loop, call after uv_run() has returned: the handles are closed by running the loop once. */
void audit_client_free(struct audit_client *ac);

struct audit_client_stats {
    uint64_t emitted;  /* audit_emit calls */
    uint64_t acked;    /* events acknowledged */
    uint64_t sends;    /* messages handed to ZeroMQ, resends included */
    uint64_t resends;  /* times the outstanding window was sent again */
    uint64_t adopted;  /* events taken over from dead producers' spool files */
    size_t pending;    /* unacknowledged events, in memory and spooled */
};
void audit_client_get_stats(const struct audit_client *ac, struct audit_client_stats *st);
/* The spool file's path (for tests). */
const char *audit_client_spool_path(const struct audit_client *ac);

#endif
