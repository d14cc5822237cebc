/*
 * rand_refuse.h - makes OpenSSL's RAND_bytes() fail on demand in a CMocka test, as a generator
 * with no entropy does: a legacy RAND_METHOD that refuses is the one way to do it (deprecated,
 * hence the pragmas). Include after <cmocka.h>.
 */
#ifndef CALSETA_RAND_REFUSE_H
#define CALSETA_RAND_REFUSE_H

#include <openssl/err.h>
#include <openssl/rand.h>

static int rand_refuse_bytes(unsigned char *buf, int num)
{
    (void)buf;
    (void)num;
    ERR_raise(ERR_LIB_RAND, RAND_R_ERROR_RETRIEVING_ENTROPY);
    return 0;
}

static int rand_refuse_status(void)
{
    return 0;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
/* From here every RAND_bytes() fails; returns the method to give back to rand_refuse_end(). */
static inline const RAND_METHOD *rand_refuse_begin(void)
{
    static const RAND_METHOD refuse = {.bytes = rand_refuse_bytes, .status = rand_refuse_status};
    const RAND_METHOD *was = RAND_get_rand_method();
    assert_int_equal(RAND_set_rand_method(&refuse), 1);
    return was;
}

static inline void rand_refuse_end(const RAND_METHOD *was)
{
    assert_int_equal(RAND_set_rand_method(was), 1);
}
#pragma GCC diagnostic pop

#endif
