/*
 * ratelimit.h - fixed one-minute windows counted in PostgreSQL, shared by every intake process
 * on every host, with an in-process fallback while the database is unreachable.
 *
 * Per-key counting happens in auth.c together with the key re-read (one round trip); this
 * module holds the per-IP budget for unauthenticated requests and the local fallback.
 */
#ifndef CALSETA_RATELIMIT_H
#define CALSETA_RATELIMIT_H

struct intake;

struct rl_decision {
    long limit;
    long count;         /* requests in this window, this one included */
    long reset_seconds; /* until the window ends: the true Retry-After */
};

/* Charges one request to the client IP's unauthenticated budget. cb gets the decision; err is
 * non-NULL when the shared counter was unreachable (the decision then comes from the local
 * fallback counter). */
void rl_charge_ip(struct intake *in, const char *ip,
                  void (*cb)(void *arg, const struct rl_decision *d, const char *err), void *arg);

/* Reads the client IP's unauthenticated count without charging it (before bcrypt work for a
 * key that may well be valid: only requests that end without a valid key are charged). The
 * decision's count is what the next charge would make it. */
void rl_peek_ip(struct intake *in, const char *ip,
                void (*cb)(void *arg, const struct rl_decision *d, const char *err), void *arg);

/* Local fallback: counts in this process only. Returns 0 if allowed, -1 if over the limit. The
 * first fallback decision of an outage is audited (rate_limiter_fallback). */
int rl_local_hit(struct intake *in, const char *who, const char *cls, long limit,
                 struct rl_decision *d);

/* Drops counters of windows that ended (housekeeping). */
void rl_cleanup(struct intake *in);

#endif
