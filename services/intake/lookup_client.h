/*
 * lookup_client.h - on-demand lookups asked of the enrichers over the bus (see lookup_client.c).
 */
#ifndef INTAKE_LOOKUP_CLIENT_H
#define INTAKE_LOOKUP_CLIENT_H

#include <jansson.h>
#include <uv.h>

struct config;
struct lookup_client;

/* error NULL and results ({provider: result}, borrowed for the call) on success; otherwise an
 * error text and results NULL. Always called from the loop, exactly once, possibly inside
 * lookup_client_ask() itself when nothing could be sent. */
typedef void (*lookup_client_cb)(void *arg, const char *error, json_t *results);

struct lookup_client *lookup_client_new(uv_loop_t *loop, const struct config *cfg, char *err,
                                        size_t errlen);
/* Requests still waiting get "the service is stopping"; memory goes with the loop's close
 * callbacks. */
void lookup_client_free(struct lookup_client *c);
/* Runs the providers named in providers_json (a JSON array) of config_json for one indicator;
 * the enricher stops at timeout_ms. */
void lookup_client_ask(struct lookup_client *c, const char *type, const char *value,
                       const char *config_json, const char *providers_json, int timeout_ms,
                       lookup_client_cb cb, void *arg);

#endif
