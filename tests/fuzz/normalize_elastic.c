/*
 * normalize_elastic.c - libFuzzer target for the elastic alert source (validate, normalize, the
 * three extraction passes, the fingerprint); see normalize_common.h. Seeds:
 * corpus/normalize_elastic/.
 */
#include "normalize_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_source("elastic", data, size);
}
