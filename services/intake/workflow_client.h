/*
 * workflow_client.h - code checks and test runs asked of workflowd over the bus (see
 * workflow_client.c).
 */
#ifndef INTAKE_WORKFLOW_CLIENT_H
#define INTAKE_WORKFLOW_CLIENT_H

#include <jansson.h>
#include <uv.h>

struct config;
struct workflow_client;

/* error NULL: outcome (WF_OUT_*, proto/workflow.h) and its body, borrowed for the call;
 * otherwise why nothing came back (workflowd unreachable, silent, or the client stopping),
 * outcome -1 and body NULL. Always called from the loop, exactly once, never inside the call
 * that asked. */
typedef void (*workflow_client_cb)(void *arg, const char *error, int outcome, json_t *body);

/* Who asked, forwarded for workflowd's audit record (each may be NULL). */
struct workflow_caller {
    const char *key_prefix, *request_id, *client_ip;
};

struct workflow_client *workflow_client_new(uv_loop_t *loop, const struct config *cfg, char *err,
                                            size_t errlen);
/* Requests still waiting get "the service is stopping"; memory goes with the loop's close
 * callbacks. */
void workflow_client_free(struct workflow_client *c);
/* Checks code (the runner's VALIDATE). */
void workflow_client_validate(struct workflow_client *c, const char *code, workflow_client_cb cb,
                              void *arg);
/* Test-runs a workflow on a synthetic indicator; nothing is stored. */
void workflow_client_test(struct workflow_client *c, const char *workflow_uuid,
                          const char *indicator_type, const char *indicator_value,
                          const struct workflow_caller *who, workflow_client_cb cb, void *arg);

#endif
