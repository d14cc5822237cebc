/*
 * limiter.c - slot count plus token bucket or leased tokens per provider, see limiter.h.
 */
#include "limiter.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FALLBACK_MS 1000

static double capacity(const struct limiter *l)
{
    return l->rate < 1.0 ? 1.0 : l->rate;
}

static void refill(struct limiter *l, uint64_t now_ms)
{
    if (now_ms > l->last_ms) {
        l->tokens += (double)(now_ms - l->last_ms) * l->rate / 1000.0;
        if (l->tokens > capacity(l))
            l->tokens = capacity(l);
    }
    l->last_ms = now_ms;
}

struct limiter *limiter_get(struct limiter **head, const char *name, int max_in_flight, double rate,
                            int global, uint64_t now_ms)
{
    struct limiter *l;
    for (l = *head; l; l = l->next)
        if (!strcmp(l->name, name))
            break;
    if (!l) {
        l = xcalloc(1, sizeof *l);
        l->name = xstrdup(name);
        l->last_ms = now_ms;
        l->tokens = rate < 1.0 ? 1.0 : rate;
        l->next = *head;
        *head = l;
    }
    l->max_in_flight = max_in_flight < 1 ? 1 : max_in_flight;
    l->global = global && rate > 0;
    l->rate = rate > 0 ? rate : 1e9;
    refill(l, now_ms);
    return l;
}

/* Global mode with a usable lease (or the local fallback): the token source to draw from. */
static int local_source(const struct limiter *l, uint64_t now_ms)
{
    return !l->global || (l->fallback && now_ms < l->retry_lease_ms);
}

int limiter_try(struct limiter *l, uint64_t now_ms)
{
    if (l->in_flight >= l->max_in_flight)
        return 0;
    if (local_source(l, now_ms)) {
        refill(l, now_ms);
        if (l->tokens < 1.0)
            return 0;
        l->tokens -= 1.0;
    } else {
        if (l->lease_left <= 0 || now_ms >= l->lease_until_ms)
            return 0;
        l->lease_left--;
    }
    l->in_flight++;
    return 1;
}

uint64_t limiter_wait_ms(struct limiter *l, uint64_t now_ms)
{
    if (local_source(l, now_ms)) {
        refill(l, now_ms);
        if (l->tokens >= 1.0)
            return 0;
        return (uint64_t)ceil((1.0 - l->tokens) * 1000.0 / l->rate);
    }
    if (l->lease_left > 0 && now_ms < l->lease_until_ms)
        return 0;
    if (l->leasing)
        return UINT64_MAX;
    return now_ms < l->retry_lease_ms ? l->retry_lease_ms - now_ms : 0;
}

void limiter_release(struct limiter *l)
{
    if (l->in_flight > 0)
        l->in_flight--;
}

void limiter_free_all(struct limiter **head)
{
    while (*head) {
        struct limiter *n = (*head)->next;
        free((*head)->name);
        free(*head);
        *head = n;
    }
}

uint64_t limiter_window_ms(const struct limiter *l)
{
    if (l->rate >= 1.0)
        return 1000;
    return (uint64_t)ceil(1000.0 / l->rate);
}

long limiter_window_limit(const struct limiter *l)
{
    double n = floor(l->rate * (double)limiter_window_ms(l) / 1000.0 + 1e-9);
    return n < 1 ? 1 : n > 1e9 ? 1000000000L : (long)n;
}

int limiter_needs_lease(const struct limiter *l, uint64_t now_ms)
{
    if (!l->global || l->leasing || local_source(l, now_ms) || now_ms < l->retry_lease_ms)
        return 0;
    return l->lease_left <= 0 || now_ms >= l->lease_until_ms;
}

long limiter_lease_block(const struct limiter *l)
{
    long b = limiter_window_limit(l) / 8;
    return b < 1 ? 1 : b;
}

void limiter_leased(struct limiter *l, long granted, uint64_t ms_left, int failed,
                    uint64_t asked_ms, uint64_t now_ms)
{
    l->leasing = 0;
    if (failed) {
        l->fallback = 1;
        l->retry_lease_ms = now_ms + FALLBACK_MS;
        return;
    }
    l->fallback = 0;
    uint64_t until = asked_ms + ms_left;
    if (granted > 0) {
        /* tokens left from the previous lease are of an older window: dropped */
        l->lease_left = granted;
        l->lease_until_ms = until;
        l->retry_lease_ms = 0;
    } else {
        l->lease_left = 0;
        l->retry_lease_ms = until > now_ms ? until : now_ms + 1;
    }
}
