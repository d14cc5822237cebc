/*
 * agents_api.h - the agent side of the REST API: agent registrations (agents_api.c), context
 * documents (context_docs.c) and the alert routes that queue deliveries or show documents.
 *
 * The intake never holds an agent's credentials in clear beyond the request that sets them:
 * header values and signing secrets are Fernet-encrypted before they are written, and every
 * delivery (tests included) is a job that calseta-dispatcher runs.
 */
#ifndef INTAKE_AGENTS_API_H
#define INTAKE_AGENTS_API_H

#include "intake.h"

struct agents_api;

void agents_api_init(struct intake *in);
void agents_api_free(struct intake *in);

void route_list_agents(struct reqctx *rc);
void route_create_agent(struct reqctx *rc);
void route_get_agent(struct reqctx *rc);
void route_patch_agent(struct reqctx *rc);
void route_delete_agent(struct reqctx *rc);
void route_rotate_agent_secret(struct reqctx *rc);
void route_agent_runs(struct reqctx *rc);
void route_test_agent(struct reqctx *rc);
void route_trigger_agents(struct reqctx *rc);
void route_dispatch_agent(struct reqctx *rc);

void route_list_context_documents(struct reqctx *rc);
void route_create_context_document(struct reqctx *rc);
void route_get_context_document(struct reqctx *rc);
void route_patch_context_document(struct reqctx *rc);
void route_delete_context_document(struct reqctx *rc);
void route_alert_context(struct reqctx *rc);

#endif
