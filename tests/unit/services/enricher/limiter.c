/*
 * tests/unit/services/enricher/limiter.c - per-provider caps: slots in flight, the token
 * bucket's refill and wait time, caps changed by a provider reload.
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
    struct limiter *l = limiter_get(&head, "vt", 2, 4.0, 1000);
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
    assert_ptr_equal(limiter_get(&head, "vt", 1, 0.5, 5000), l); /* same provider, new caps */
    assert_true(limiter_try(l, 5000));
    limiter_release(l);
    assert_false(limiter_try(l, 5000));
    assert_int_equal(limiter_wait_ms(l, 5000), 2000);
    assert_ptr_not_equal(limiter_get(&head, "abuseipdb", 1, 1, 0), l);
    limiter_free_all(&head);
    assert_null(head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_limiter)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
