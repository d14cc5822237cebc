/*
 * json_read_bench.c - CPU per parse of the five SIEM fixtures: json_read() (what the intake
 * parses request bodies with) against jansson's json_loadb() on the same bytes, same flags,
 * and the limit walk (json_scan_bytes) that runs before it.
 *
 * Thread CPU time, so the figure holds on a loaded machine. Run by hand:
 *   cmake --build build --target bench_json_read_bench && build/bench/bench_json_read_bench [dir]
 * dir: the fixtures folder (default tests/data/fixtures).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonparse.h"
#include "jsonread.h"
#include "util.h"

static const char *const FIXTURES[] = {
    "01_sentinel_brute_force_tor.json", "02_elastic_malware_hash.json",
    "03_splunk_anomalous_data_transfer.json", "04_sentinel_impossible_travel.json",
    "05_elastic_suspicious_powershell.json",
};
#define NFIX (sizeof FIXTURES / sizeof FIXTURES[0])
#define ROUNDS 20000
#define FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data/fixtures";
    char *doc[NFIX];
    size_t len[NFIX], bytes = 0;
    for (size_t i = 0; i < NFIX; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, FIXTURES[i]);
        if (!(doc[i] = file_read(path, &len[i]))) {
            fprintf(stderr, "cannot read %s\n", path);
            return 1;
        }
        bytes += len[i];
    }
    double t[2] = {0, 0};
    for (int pass = 0; pass < 2; pass++) {
        for (int which = 0; which < 2; which++) {
            double t0 = cpu_ns();
            for (int r = 0; r < ROUNDS; r++) {
                for (size_t i = 0; i < NFIX; i++) {
                    json_error_t je;
                    json_t *v = which ? json_read(doc[i], len[i], FLAGS, NULL, 0)
                                      : json_loadb(doc[i], len[i], FLAGS, &je);
                    if (!v)
                        return 1;
                    json_decref(v);
                }
            }
            if (pass) /* the first pass warms caches and the allocator */
                t[which] = (cpu_ns() - t0) / ((double)ROUNDS * NFIX);
        }
    }
    double t0 = cpu_ns();
    for (int r = 0; r < ROUNDS; r++)
        for (size_t i = 0; i < NFIX; i++) {
            struct json_scan sc;
            if (json_scan_bytes(doc[i], len[i], NULL, &sc) != JSONP_OK)
                return 1;
        }
    double tscan = (cpu_ns() - t0) / ((double)ROUNDS * NFIX);
    printf("fixtures: %zu documents, %.0f bytes on average, %d rounds\n", NFIX,
           (double)bytes / NFIX, ROUNDS);
    printf("json_loadb (jansson)   %7.2f us per document  %6.0f MB/s\n", t[0] / 1e3,
           bytes / NFIX / t[0] * 1e3);
    printf("json_read              %7.2f us per document  %6.0f MB/s\n", t[1] / 1e3,
           bytes / NFIX / t[1] * 1e3);
    printf("ratio                  %7.2f (json_read CPU / jansson CPU)\n", t[1] / t[0]);
    printf("json_scan_bytes        %7.2f us per document (the limit walk before parsing)\n",
           tscan / 1e3);
    for (size_t i = 0; i < NFIX; i++)
        free(doc[i]);
    return 0;
}
