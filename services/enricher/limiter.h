/*
 * limiter.h - per-provider caps: requests in flight and requests per second.
 *
 * Each provider name gets one limiter for the life of the process (a provider reload keeps
 * the counters; new caps apply from then on). A request needs a free slot (in flight, per
 * worker process) and a token (rate). Pure logic, with time passed in: the engine asks
 * limiter_try() and, when refused, waits limiter_wait_ms() or until a slot is released.
 *
 * Tokens come from one of two sources:
 *   - local: a token bucket of capacity max(1, rate) refilling at `rate` per second, per
 *     process (with W workers a provider sees up to W times the rate);
 *   - global: blocks of tokens leased from a counter shared by every worker (PostgreSQL, see
 *     quota.c), per fixed window of limiter_window_ms(); a lease is good until the end of its
 *     window, measured from the moment the lease was asked for, so no token is ever used after
 *     the window it was counted in. The engine asks for a lease when limiter_needs_lease() says
 *     so and hands the answer to limiter_leased().
 */
#ifndef ENRICHER_LIMITER_H
#define ENRICHER_LIMITER_H

#include <stdint.h>

struct limiter {
    char *name;
    int in_flight;
    int max_in_flight;
    double rate;
    double tokens;
    uint64_t last_ms;
    /* global mode */
    int global;
    int leasing;               /* a lease query is out */
    long lease_left;           /* tokens of the current lease not used yet */
    uint64_t lease_until_ms;   /* end of the current lease's window (local clock) */
    uint64_t retry_lease_ms;   /* window exhausted: ask again from then on */
    int fallback;              /* the shared counter failed: local bucket until retry_lease_ms */
    void *wait_head, *wait_tail; /* the engine's requests waiting for this provider, FIFO
                                    (limiter.c never touches them) */
    struct limiter *next;
};

/* Finds or creates the limiter of a provider in the list *head and applies the caps. global:
 * share the rate through leases (ignored for an unlimited rate). */
struct limiter *limiter_get(struct limiter **head, const char *name, int max_in_flight, double rate,
                            int global, uint64_t now_ms);
/* Takes a slot and a token and returns 1, or returns 0 and takes nothing. */
int limiter_try(struct limiter *l, uint64_t now_ms);
/* Milliseconds until a token may be available (0 if one is; a full slot set is not counted;
 * while a lease query is out: UINT64_MAX, the answer wakes the waiters). */
uint64_t limiter_wait_ms(struct limiter *l, uint64_t now_ms);
void limiter_release(struct limiter *l);
void limiter_free_all(struct limiter **head);

/* Global mode: the window (ms) and the requests allowed in it. Rates below 1/s get a window
 * long enough for one request (0.1/s: 10 s, 1 request). */
uint64_t limiter_window_ms(const struct limiter *l);
long limiter_window_limit(const struct limiter *l);
/* Global mode: 1 when a lease should be asked for now (no usable token, none being asked). */
int limiter_needs_lease(const struct limiter *l, uint64_t now_ms);
/* Tokens to ask for in one lease: an eighth of the window's limit (at least 1), so two busy
 * workers share a window instead of the first one taking all of it. */
long limiter_lease_block(const struct limiter *l);
/* The lease asked for at asked_ms came back: granted tokens until asked_ms + ms_left. failed:
 * the shared counter could not be reached; the local bucket is used for a second. */
void limiter_leased(struct limiter *l, long granted, uint64_t ms_left, int failed,
                    uint64_t asked_ms, uint64_t now_ms);

#endif
