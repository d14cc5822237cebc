/*
 * tests/unit/services/enricher/limiter.c - per-provider caps: slots in flight, the token
 * bucket's refill and wait time, caps changed by a provider reload; global mode: leases asked
 * only when no token is left, tokens never used past their window, a refused window waited
 * out, the local bucket while the shared counter is unreachable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/enricher/limiter.h"

static void test_limiter(void **state)
{
    (void)state;
    struct limiter *head = NULL;
    struct limiter *l = limiter_get(&head, "vt", 2, 4.0, 0, 1000);
    assert_true(limiter_try(l, 1000));
    assert_true(limiter_try(l, 1000));
    assert_false(limiter_try(l, 1000)); /* two in flight */
    limiter_release(l);
    limiter_release(l);
    assert_true(limiter_try(l, 1000));
    assert_true(limiter_try(l, 1000));
    limiter_release(l);
    limiter_release(l);
    assert_false(limiter_try(l, 1000)); /* bucket of 4 is empty */
    assert_int_equal(limiter_wait_ms(l, 1000), 250);
    assert_true(limiter_try(l, 1250));
    limiter_release(l);
    assert_ptr_equal(limiter_get(&head, "vt", 1, 0.5, 0, 5000), l); /* same provider, new caps */
    assert_true(limiter_try(l, 5000));
    limiter_release(l);
    assert_false(limiter_try(l, 5000));
    assert_int_equal(limiter_wait_ms(l, 5000), 2000);
    assert_ptr_not_equal(limiter_get(&head, "abuseipdb", 1, 1, 0, 0), l);
    limiter_free_all(&head);
    assert_null(head);
}

static void test_global(void **state)
{
    (void)state;
    struct limiter *head = NULL;
    struct limiter *l = limiter_get(&head, "vt", 100, 16.0, 1, 1000);
    assert_int_equal(limiter_window_ms(l), 1000);
    assert_int_equal(limiter_window_limit(l), 16);
    assert_int_equal(limiter_lease_block(l), 2);
    assert_false(limiter_try(l, 1000)); /* no lease yet: no token */
    assert_true(limiter_needs_lease(l, 1000));
    l->leasing = 1;
    assert_false(limiter_needs_lease(l, 1000));
    assert_true(limiter_wait_ms(l, 1000) == UINT64_MAX);
    /* asked at 1000, answered at 1010: 2 tokens until 1000 + 300 */
    limiter_leased(l, 2, 300, 0, 1000, 1010);
    assert_false(limiter_needs_lease(l, 1010));
    assert_true(limiter_try(l, 1010));
    assert_true(limiter_try(l, 1299));
    assert_false(limiter_try(l, 1299));
    assert_true(limiter_needs_lease(l, 1299));
    limiter_leased(l, 2, 5, 0, 1295, 1299);
    assert_false(limiter_try(l, 1300)); /* past its window: the lease is void */
    assert_true(limiter_needs_lease(l, 1300));
    /* window exhausted: nothing granted, wait for the next one */
    limiter_leased(l, 0, 700, 0, 1300, 1302);
    assert_false(limiter_needs_lease(l, 1500));
    assert_int_equal(limiter_wait_ms(l, 1500), 500);
    assert_true(limiter_needs_lease(l, 2000));
    /* the shared counter failed: the local bucket for a second */
    limiter_leased(l, 0, 0, 1, 2000, 2000);
    assert_false(limiter_needs_lease(l, 2000));
    assert_true(limiter_try(l, 2000));
    assert_true(limiter_needs_lease(l, 3000));
    assert_false(limiter_try(l, 3000));
    /* rates below one a second: a window long enough for one request */
    l = limiter_get(&head, "slow", 4, 0.25, 1, 0);
    assert_int_equal(limiter_window_ms(l), 4000);
    assert_int_equal(limiter_window_limit(l), 1);
    assert_int_equal(limiter_lease_block(l), 1);
    /* an unlimited rate never leases */
    l = limiter_get(&head, "free", 4, 0, 1, 0);
    assert_false(limiter_needs_lease(l, 0));
    assert_true(limiter_try(l, 0));
    limiter_free_all(&head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_limiter),
                                       cmocka_unit_test(test_global)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
