/*
 * ratelimit.h - fixed one-minute windows shared by every intake process on every host, counted
 * in memory from blocks leased from PostgreSQL, with an in-process fallback while the database
 * is unreachable.
 *
 * A window's row in rate_limit_counters holds how many requests were GRANTED to processes, and
 * never exceeds the limit: a process leases a block (limit/100, 1..10000), counts it down
 * locally, leases the next block ahead of need, and gives back what it has not used after a
 * second of idleness. So no window ever admits more than its limit across all processes (no
 * overshoot while the database is reachable); a process may refuse while another still holds
 * unused requests (at most one block per other process, for at most about a second).
 */
#ifndef CALSETA_RATELIMIT_H
#define CALSETA_RATELIMIT_H

struct intake;

struct rl_decision {
    long limit;
    long count;         /* requests in this window as far as known here; > limit = refused */
    long remaining;     /* requests still allowed in this window */
    long reset_seconds; /* until the window ends: the true Retry-After */
};

/* Called with the decision; err is non-NULL when the shared counter was unreachable (the decision
 * then comes from the local fallback counter). May be called before the function that takes it
 * returns. */
typedef void (*rl_cb)(void *arg, const struct rl_decision *d, const char *err);

/* The limiter of one intake process (timers for give-backs and clean-up). */
struct ratelimit *rl_new(struct intake *in);
/* Gives back unused leases and stops the timer (drain); rl_free() after the loop ends. */
void rl_stop(struct ratelimit *rl);
void rl_free(struct ratelimit *rl);

/* Counts one request against bucket (e.g. "k:42:default") limited to limit per minute. */
void rl_take(struct intake *in, const char *bucket, long limit, rl_cb cb, void *arg);

/* Charges one request to the client IP's unauthenticated budget (RATE_LIMIT_UNAUTHED_PER_MINUTE).
 * An IP over its budget is refused from memory for the rest of the window. */
void rl_charge_ip(struct intake *in, const char *ip, rl_cb cb, void *arg);

/* 1 when this process knows the IP went over its unauthenticated budget in this window. */
int rl_ip_over(struct intake *in, const char *ip);

/* Local fallback: counts in this process only. Returns 0 if allowed, -1 if over the limit. The
 * first fallback decision of an outage is audited (rate_limiter_fallback). */
int rl_local_hit(struct intake *in, const char *who, const char *cls, long limit,
                 struct rl_decision *d);

/* Drops counters of windows that ended (housekeeping). */
void rl_cleanup(struct intake *in);

#endif
