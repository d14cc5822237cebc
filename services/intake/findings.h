/*
 * findings.h - agent findings on alerts, shared by the REST routes and the MCP tool.
 */
#ifndef CALSETA_INTAKE_FINDINGS_H
#define CALSETA_INTAKE_FINDINGS_H

#include "intake.h"

/* Checks a finding (agent_name 1..255, summary 1..50,000, confidence low|medium|high or null -
 * required when confidence_required -, recommended_action up to 50,000, evidence an object of
 * at most 64 KB). 0 with *out = the finding to store (caller frees), or -1 with the field and a
 * message. */
int finding_check(json_t *body, int confidence_required, json_t **out, const char **field,
                  char *msg, size_t msglen);

/* Appends the finding atomically and writes alert_finding_added. cb gets one row whose column 0
 * is the stored finding (JSON text) or NULL when the alert does not exist. -1 if not queued. */
int finding_add(struct intake *in, const char *alert_uuid, json_t *finding,
                const char *actor_type, const char *actor, pg_result_cb cb, void *arg);

#endif
