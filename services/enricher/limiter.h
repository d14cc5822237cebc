/*
 * limiter.h - per-provider caps: requests in flight and requests per second.
 *
 * Each provider name gets one limiter for the life of the process (a provider reload keeps
 * the counters; new caps apply from then on). A token bucket of capacity max(1, rate) refills
 * at `rate` tokens per second; a request needs a free slot and a token. Pure logic, with time
 * passed in: the engine asks limiter_try() and, when refused, waits limiter_wait_ms() or until
 * a slot is released. The caps are per worker process; with W workers a provider sees at most
 * W times the cap (see docs/enrichment.md).
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
    struct limiter *next;
};

/* Finds or creates the limiter of a provider in the list *head and applies the caps. */
struct limiter *limiter_get(struct limiter **head, const char *name, int max_in_flight, double rate,
                            uint64_t now_ms);
/* Takes a slot and a token and returns 1, or returns 0 and takes nothing. */
int limiter_try(struct limiter *l, uint64_t now_ms);
/* Milliseconds until a token is available (0 if one is; a full slot set is not counted). */
uint64_t limiter_wait_ms(struct limiter *l, uint64_t now_ms);
void limiter_release(struct limiter *l);
void limiter_free_all(struct limiter **head);

#endif
