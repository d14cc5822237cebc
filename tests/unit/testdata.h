/*
 * testdata.h - helpers shared by the CMocka tests: the test data folder (fixtures and vectors,
 * $CALSETA_SHARED_DIR, set by CTest to tests/data) and strict JSON parsing of test literals.
 * Include after <cmocka.h>.
 */
#ifndef CALSETA_TESTDATA_H
#define CALSETA_TESTDATA_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* $CALSETA_SHARED_DIR/<subdir>/<name> parsed as JSON (duplicate keys rejected); fails the test
 * when it cannot be read. */
static inline json_t *test_data_json(const char *subdir, const char *name)
{
    const char *dir = getenv("CALSETA_SHARED_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", dir && *dir ? dir : "tests/data", subdir, name);
    json_error_t err;
    json_t *v = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!v)
        fail_msg("cannot load %s: %s", path, err.text);
    return v;
}

/* A JSON literal of the test, parsed with the intake's flags plus extra_flags. */
static inline json_t *test_json(const char *text, size_t extra_flags)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | extra_flags, &err);
    if (!v)
        fail_msg("bad test JSON: %s", err.text);
    return v;
}

#endif
