/*
 * guard.h - the SSRF guard as the enricher and the intake use it (a thin layer over
 * libcommon/ssrf/ssrf.h).
 *
 * guard_check() blocks (it resolves the host), so the engine runs it on the libuv thread pool.
 * On success it hands back the checked target (ssrf.h's struct ssrf_target: the
 * CURLOPT_CONNECT_TO entry and the address and port for the socket pin, IPv6 literals
 * included) so the request connects to exactly the address that was checked (no DNS rebinding
 * between check and connect). DNS failure blocks (fails closed). allow_loopback
 * (ENRICHER_ALLOW_LOOPBACK, tests only) admits 127.0.0.0/8 and ::1 and nothing else; cloud-metadata
 * addresses stay blocked whatever the allowlist says.
 */
#ifndef PROVIDERS_GUARD_H
#define PROVIDERS_GUARD_H

#include <stddef.h>

struct guard;
struct ssrf_target;

struct guard *guard_new(const char *allowed_hosts, int allow_loopback);
void guard_free(struct guard *g);
/* 0: allowed (*t filled when t is not NULL); -1: blocked, reason filled (*t cleared), also
 * when the checked address cannot be pinned. Thread-safe. */
int guard_check(const struct guard *g, const char *url, struct ssrf_target *t, char *reason,
                size_t reasonlen);

#endif
