/*
 * audit.h (proto) - the audit event message (producer -> auditd) and its acknowledgement
 * (auditd -> producer).
 *
 * PROTO_AUDIT_EVENT fields: "id" (UUID string made by the producer, the de-duplication key),
 * "ts" (wall-clock microseconds), "svc", "pid", "type" (event type), optional "rid" (request
 * id), "kp" (actor key prefix), "ip" (client IP), "f" (the event's fields: a JSON object
 * carried as a string). PROTO_AUDIT_ACK carries "ids": an array of event ids now durable.
 * Decoding validates every field: formats, lengths, UTF-8, and that "f" is a JSON object, so
 * whatever passes can be written and inserted without surprises.
 */
#ifndef CALSETA_PROTO_AUDIT_H
#define CALSETA_PROTO_AUDIT_H

#include "util.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_ID_LEN 36
#define AUDIT_FIELDS_MAX (64 * 1024) /* bytes of the fields JSON */
#define AUDIT_ACK_MAX 1024           /* ids per acknowledgement */

struct audit_event {
    char event_id[AUDIT_ID_LEN + 1]; /* lowercase canonical UUID */
    int64_t ts_us;
    char *service;
    int pid;
    char *event_type;
    char *request_id;       /* may be NULL */
    char *actor_key_prefix; /* may be NULL */
    char *client_ip;        /* may be NULL */
    json_t *fields;         /* a JSON object, never NULL after decode */
};

/* Appends the encoded message to out. -1 (nothing appended) when a field would be refused by
 * the decoder (bad id, empty service/type, fields not an object or too large). */
int audit_event_encode(const struct audit_event *e, struct buf *out);
/* 0 and a filled event (free with audit_event_destroy) or -1 with nothing to free. */
int audit_event_decode(const void *data, size_t len, struct audit_event *e);
void audit_event_destroy(struct audit_event *e);

/* 1 when s is a canonical 8-4-4-4-12 hex UUID. */
int audit_id_valid(const char *s, size_t n);
/* A fresh random (version 4) UUID from the kernel's CSPRNG. */
void audit_id_new(char out[AUDIT_ID_LEN + 1]);

int audit_ack_encode(char (*ids)[AUDIT_ID_LEN + 1], size_t n, struct buf *out);
/* Fills up to AUDIT_ACK_MAX ids; 0 or -1. */
int audit_ack_decode(const void *data, size_t len, char (*ids)[AUDIT_ID_LEN + 1], size_t *n);

#endif
