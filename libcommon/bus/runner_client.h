/*
 * runner_client.h - the intake's asynchronous client of the workflow runner (libuv + ZeroMQ).
 *
 * A DEALER socket connected to every runner of RUNNER_ENDPOINT (config->runner_endpoint, a
 * comma-separated list, default tcp://127.0.0.1:5561; requests go round-robin to the runners
 * connected at the time, never queued for one that is not) and watched from a libuv loop. Each
 * request carries an id; its callback runs exactly once on the loop, never inside the call: with
 * the reply (status RUNNER_CLIENT_OK), or when no reply came in time (RUNNER_CLIENT_TIMEOUT),
 * when no runner was connected (RUNNER_CLIENT_UNSENT), or when the client is freed first
 * (RUNNER_CLIENT_CLOSED).
 * Replies are decoded as hostile input (proto/runner.h); undecodable or unknown ones are
 * dropped and logged. Validation waits 15 s; a run waits its timeout_seconds + 15 s (settable).
 * A request that finds no runner connected is retried for 3 s before RUNNER_CLIENT_UNSENT.
 * Note: this module uses proto/runner.c, so programs that link it must link proto too.
 */
#ifndef CALSETA_RUNNER_CLIENT_H
#define CALSETA_RUNNER_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proto/runner.h"

enum {
    RUNNER_CLIENT_OK = 0,
    RUNNER_CLIENT_TIMEOUT = -1, /* sent, no answer in time (the runner may have died) */
    RUNNER_CLIENT_CLOSED = -2,  /* the client was freed first */
    RUNNER_CLIENT_UNSENT = -3,  /* no runner connected: the request never left */
};

struct runner_client;

/* The reply is borrowed for the duration of the callback (NULL unless status is OK). */
typedef void (*runner_validate_cb)(void *arg, int status, const struct runner_validation *v);
typedef void (*runner_run_cb)(void *arg, int status, const struct runner_result *r);

/* Connects to every runner of endpoint (a comma-separated list) through the bus module (cfg
 * gives the CURVE keys of tcp:// endpoints; may be NULL for ipc://). NULL with err on failure
 * (bad endpoint). */
struct config;
struct runner_client *runner_client_new(uv_loop_t *loop, const struct config *cfg,
                                        const char *endpoint, char *err, size_t errlen);
/* Pending callbacks run with RUNNER_CLIENT_CLOSED; the memory goes when the handles close. */
void runner_client_free(struct runner_client *c);
/* Waits in ms (validation; a run's extra over its timeout); 0 keeps the defaults. */
void runner_client_set_timeouts(struct runner_client *c, int validate_ms, int run_extra_ms);

/* Both return the request id (> 0). The code / request are copied; cb runs later, never inside
 * the call. */
uint64_t runner_validate(struct runner_client *c, const char *code, runner_validate_cb cb,
                         void *arg);
uint64_t runner_run(struct runner_client *c, const struct runner_run_req *req, runner_run_cb cb,
                    void *arg);
/* Requests still waiting for a reply. */
size_t runner_client_pending(const struct runner_client *c);

#endif
