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
#include <sys/socket.h>
#include <uv.h>

struct curluv;

/* The one address a transfer may connect to (the address an SSRF check approved). A pinned
 * transfer fails closed: whatever name curl resolves or whichever connect-to entry it applies,
 * a new connection to any other address and port is refused before connect() (curl gets
 * CURL_SOCKET_BAD), and a kept-alive connection to another address is refused before the
 * request goes out (CURLOPT_PREREQFUNCTION). CURLOPT_RESOLVE or CURLOPT_CONNECT_TO still steer
 * curl to the address; the pin makes a mistake there an error instead of a bypass. */
struct curluv_pin {
    struct sockaddr_storage addr; /* family, address and port */
    int refused;                  /* set when a connection was refused for this transfer */
    struct curluv *m;             /* set by curluv_add_pinned() */
};

/* pin from a numeric address (IPv4, or IPv6 with or without brackets) and a port. 0 or -1. */
int curluv_pin_set(struct curluv_pin *pin, const char *addr, size_t addrlen, int port);

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
/* curluv_add() for a transfer that may reach pin's address only; pin (refused cleared here)
 * must stay valid until the transfer is removed. */
void curluv_add_pinned(struct curluv *m, CURL *easy, struct curluv_pin *pin);
/* The same pin for a transfer run outside curluv (curl_easy_perform): sets the easy's
 * open-socket and prerequest callbacks; pin must stay valid until the transfer ends. */
void curluv_pin_easy(CURL *easy, struct curluv_pin *pin);
void curluv_remove(struct curluv *m, CURL *easy);
/* Call with no transfer left; closed(arg) runs from the loop when every handle is closed. */
void curluv_close(struct curluv *m, void (*closed)(void *), void *arg);

#endif
