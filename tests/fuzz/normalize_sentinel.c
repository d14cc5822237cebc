/*
 * normalize_sentinel.c - libFuzzer target for the sentinel alert source (validate, normalize, the
 * three extraction passes, the fingerprint); see normalize_common.h. Seeds:
 * corpus/normalize_sentinel/.
 */
#include "normalize_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_source("sentinel", data, size);
}
