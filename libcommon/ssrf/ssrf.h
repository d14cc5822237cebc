/*
 * ssrf.h - the outbound URL guard: no request of ours reaches private or metadata addresses.
 *
 * ssrf_check() decides whether the platform may fetch a URL, in this order:
 *   1. scheme http or https (URL parsed by libcurl's own parser, so the guard and the transfer
 *      agree on the host);
 *   2. a hostname is required;
 *   3. cloud-metadata hostnames are blocked - always, whatever the allowlist says;
 *   4. internal suffixes (.internal .local .localhost .corp .lan .home.arpa) are blocked unless
 *      the host is in the allowlist (comma list, exact, case-insensitive);
 *   5. the host is resolved with getaddrinfo (numeric forms such as "2130706433", "0x7f.1" or
 *      "0177.0.0.1" included); a resolution failure blocks (fail closed);
 *   6. every resolved address must pass ssrf_addr_blocked(): metadata, link-local, reserved,
 *      multicast and unspecified addresses are always blocked; private/CGNAT/ULA and loopback
 *      addresses only pass for an allowlisted host, and loopback also with SSRF_ALLOW_LOOPBACK.
 * On success the result carries the host, the port and the checked address (an IPv4 one when
 * the host has any). ssrf_target_of() turns it into what a transfer installs: the
 * CURLOPT_CONNECT_TO entry and the address and port a socket-level pin (curluv_pin_set) allows;
 * the caller must install both (and follow no redirects without checking them again) so the
 * connection goes to exactly the address that was checked.
 * A connect-to target, unlike a resolve entry, is part of what curl matches when it picks a
 * kept-alive connection, so a connection opened to another checked address of the same host is
 * never reused for this one.
 */
#ifndef CALSETA_SSRF_H
#define CALSETA_SSRF_H

#include <stddef.h>
#include <sys/socket.h>

#include <curl/curl.h>

/* Flags of ssrf_check(). */
#define SSRF_ALLOW_LOOPBACK 1u /* tests only: 127.0.0.0/8 and ::1 pass (metadata never does) */

/* Classes of ssrf_addr_blocked(); anything but SSRF_ADDR_PUBLIC is blocked by default. */
enum ssrf_addr_class {
    SSRF_ADDR_PUBLIC = 0,
    SSRF_ADDR_LOOPBACK,  /* 127/8, ::1 */
    SSRF_ADDR_PRIVATE,   /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 */
    SSRF_ADDR_LINKLOCAL, /* 169.254/16, fe80::/10 */
    SSRF_ADDR_RESERVED,  /* 0/8, ::, multicast, 240/4, documentation, benchmarking, ... */
    SSRF_ADDR_METADATA,  /* 169.254.169.254, 169.254.170.2, 100.100.100.200, fd00:ec2::254 ... */
};

struct ssrf_result {
    char host[256];    /* as the URL names it (IPv6 literals without brackets), lowercase */
    int port;          /* explicit or the scheme's default (80/443) */
    int family;        /* AF_INET or AF_INET6 of addr */
    char addr[64];     /* the pinned numeric address */
};

/* 0: allowed (*out filled); -1: blocked, with a short human reason in reason[0..reasonlen).
 * allowed_hosts_csv may be NULL or "". flags: SSRF_ALLOW_LOOPBACK or 0. Blocks (resolves). */
int ssrf_check(const char *url, const char *allowed_hosts_csv, unsigned flags,
               struct ssrf_result *out, char *reason, size_t reasonlen);

/* Where the connection of an allowed check goes, as a transfer installs it. */
struct ssrf_target {
    char connect_to[400];   /* "host:port:addr:port" for CURLOPT_CONNECT_TO (IPv6 addr in
                               brackets); "" when the host is an IPv6 literal: curl connects to
                               it as named */
    char addr[64];          /* the checked address without brackets, for the socket pin */
    int port;               /* the port the socket pin allows */
    struct curl_slist node; /* ssrf_target_list()'s one entry (no allocation) */
};

/* Fills *t from an allowed result r. 0, or -1 (reason filled, *t cleared) when r holds no
 * usable address or its fields do not fit (never a truncated entry). */
int ssrf_target_of(const struct ssrf_result *r, struct ssrf_target *t, char *reason,
                   size_t reasonlen);
/* The CURLOPT_CONNECT_TO list of t: one entry over t->connect_to, or NULL when t has none.
 * Points into t: t must outlive the transfer and stay where it is; never free the list. */
struct curl_slist *ssrf_target_list(struct ssrf_target *t);

/* Pure classification of one address (AF_INET / AF_INET6; other families are RESERVED).
 * IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4 forms take the class of the
 * embedded IPv4 address. */
enum ssrf_addr_class ssrf_addr_blocked(const struct sockaddr *sa);
/* Short name of a class ("public", "loopback", "private", "link-local", ...). */
const char *ssrf_addr_class_name(enum ssrf_addr_class c);
/* 1 if host (any case, trailing dot ignored) is a cloud-metadata hostname. */
int ssrf_metadata_host(const char *host);

#endif
