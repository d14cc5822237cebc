/*
 * curluv.h - libcurl's multi interface driven by a libuv loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: one uv_poll per socket) and
 * when to call it back (CURLMOPT_TIMERFUNCTION: one uv_timer); we hand socket events and timer
 * expiries to curl_multi_socket_action() and report finished transfers through done(). Any
 * number of transfers share the loop; none waits for another.
 */
#ifndef CALSETA_CURLUV_H
#define CALSETA_CURLUV_H

#include <curl/curl.h>
#include <uv.h>

struct curluv;

/* A transfer finished (rc: its result). The callee owns easy again: it must call
 * curluv_remove() before curl_easy_cleanup(). May add new transfers. */
typedef void (*curluv_done_fn)(void *arg, CURL *easy, CURLcode rc);

struct curluv *curluv_new(uv_loop_t *loop, curluv_done_fn done, void *arg);
/* Keeps at most n idle connections alive for reuse (CURLMOPT_MAXCONNECTS). Without it curl keeps
 * four per transfer in progress, so a lull closes connections a burst then opens again. */
void curluv_max_connections(struct curluv *m, long n);
/* At most n connections to one host:port at a time (CURLMOPT_MAX_HOST_CONNECTIONS; 0: no
 * limit); transfers beyond it wait inside curl for a connection to come free, so a burst reuses
 * a bounded pool instead of opening one connection per transfer in flight. */
void curluv_max_host_connections(struct curluv *m, long n);
/* Starts a transfer. Sets CURLOPT_CLOSESOCKETFUNCTION/DATA on easy (curluv closes sockets). */
void curluv_add(struct curluv *m, CURL *easy);
void curluv_remove(struct curluv *m, CURL *easy);
/* Call with no transfer left; closed(arg) runs from the loop when every handle is closed. */
void curluv_close(struct curluv *m, void (*closed)(void *), void *arg);

#endif
