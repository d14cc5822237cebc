/*
 * limiter.c - slot count plus token bucket per provider, see limiter.h.
 */
#include "limiter.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
                            uint64_t now_ms)
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
    l->rate = rate > 0 ? rate : 1e9;
    refill(l, now_ms);
    return l;
}

int limiter_try(struct limiter *l, uint64_t now_ms)
{
    refill(l, now_ms);
    if (l->in_flight >= l->max_in_flight || l->tokens < 1.0)
        return 0;
    l->in_flight++;
    l->tokens -= 1.0;
    return 1;
}

uint64_t limiter_wait_ms(struct limiter *l, uint64_t now_ms)
{
    refill(l, now_ms);
    if (l->tokens >= 1.0)
        return 0;
    return (uint64_t)ceil((1.0 - l->tokens) * 1000.0 / l->rate);
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
