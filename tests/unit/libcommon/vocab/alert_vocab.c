/*
 * alert_vocab.c - tests of libcommon/vocab/alert_vocab.c: the lists hold the original's
 * spellings, exact matches only (no case folding, no prefixes), and NULL is never a member.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "alert_vocab.h"

static size_t count(const char *const *set)
{
    size_t n = 0;
    while (set[n])
        n++;
    return n;
}

static void test_lists(void **state)
{
    (void)state;
    assert_int_equal(count(ALERT_STATUSES), 4);
    assert_int_equal(count(ALERT_SEVERITIES), 6);
    assert_int_equal(count(ENRICHMENT_STATUSES), 3);
    assert_int_equal(count(MALICE_LEVELS), 4);
    assert_int_equal(count(CLOSE_CLASSIFICATIONS), 7);
    assert_true(vocab_has(ALERT_STATUSES, "Triaging"));
    assert_true(vocab_has(CLOSE_CLASSIFICATIONS, "False Positive - Inaccurate Data"));
    assert_true(vocab_has(MALICE_LEVELS, "Pending"));
}

static void test_exact_only(void **state)
{
    (void)state;
    assert_false(vocab_has(ALERT_STATUSES, "open"));
    assert_false(vocab_has(ALERT_STATUSES, "Ope"));
    assert_false(vocab_has(ALERT_STATUSES, "Open "));
    assert_false(vocab_has(ALERT_SEVERITIES, ""));
    assert_false(vocab_has(MALICE_LEVELS, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_exact_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
