/*
 * tests/bench/pg_bench.c - queries per second of the async pool (libcommon/pg/pg.c) for a trivial
 * statement, to compare with pgbench on the same server (the ceiling).
 *
 *   pg_bench DATABASE_URL [connections=8] [seconds=10] [outstanding=64] [sql="SELECT 1"]
 *
 * Keeps `outstanding` queries queued at all times (each callback queues the next) for `seconds`
 * and prints the rate, then runs pgbench with the same statement, connections and duration
 * (extended protocol, like the pool; 2 threads) as the ceiling and prints the ratio. Not a ctest;
 * built on request as a CMake target of a Release build:
 *   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel --target bench_pg_bench
 *   build-rel/bench/bench_pg_bench "$DATABASE_URL" 8 10 64
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "pg.h"
#include "util.h"

struct bench {
    struct pg_pool *pool;
    const char *sql;
    uint64_t end_ms;
    long done;
    long errors;
    int stopping;
    int outstanding;
};

static void on_result(void *arg, PGresult *res, const char *err)
{
    struct bench *b = arg;
    (void)res;
    if (err)
        b->errors++;
    else
        b->done++;
    b->outstanding--;
    if (!b->stopping && now_mono_ms() < b->end_ms) {
        b->outstanding++;
        pg_exec(b->pool, b->sql, 0, NULL, on_result, b);
    } else if (!b->stopping && b->outstanding == 0) {
        b->stopping = 1;
        pg_pool_close(b->pool, NULL, NULL);
    }
}

static void on_warm(void *arg, PGresult *res, const char *err)
{
    int *n = arg;
    (void)res;
    (void)err;
    (*n)++;
}

/* Runs pgbench on the same statement and returns its tps, or -1. */
static double pgbench_tps(const char *url, const char *sql, int conns, int secs)
{
    char script[] = "/tmp/pg_bench_XXXXXX";
    int fd = mkstemp(script);
    double tps = -1;

    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "%s;\n", sql);
    fclose(f);
    char *cmd = xasprintf("pgbench -n -M extended -f %s -c %d -j 2 -T %d '%s' 2>&1", script, conns,
                          secs, url);
    FILE *p = popen(cmd, "r");
    char line[512];
    while (p && fgets(line, sizeof(line), p))
        if (sscanf(line, "tps = %lf", &tps) == 1)
            break;
    if (p)
        pclose(p);
    free(cmd);
    unlink(script);
    return tps;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATABASE_URL [conns] [seconds] [outstanding] [sql]\n", argv[0]);
        return 2;
    }
    int conns = argc > 2 ? atoi(argv[2]) : 8;
    int secs = argc > 3 ? atoi(argv[3]) : 10;
    int depth = argc > 4 ? atoi(argv[4]) : 64;
    struct bench b = {.sql = argc > 5 ? argv[5] : "SELECT 1"};
    uv_loop_t loop;

    log_init("pg_bench", 0, LOG_WARN);
    uv_loop_init(&loop);
    b.pool = pg_pool_new(&loop, argv[1], conns, 10000);

    /* Warm up: bring every connection up before timing. */
    int warm = 0;
    for (int i = 0; i < conns * 2; i++)
        pg_exec(b.pool, "SELECT pg_sleep(0.05)", 0, NULL, on_warm, &warm);
    while (warm < conns * 2)
        uv_run(&loop, UV_RUN_ONCE);

    uint64_t t0 = now_mono_ms();
    b.end_ms = t0 + (uint64_t)secs * 1000;
    for (int i = 0; i < depth; i++) {
        b.outstanding++;
        pg_exec(b.pool, b.sql, 0, NULL, on_result, &b);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    double el = (double)(now_mono_ms() - t0) / 1000.0;
    printf("pg_bench: %d connections, %d outstanding, \"%s\": %ld queries in %.2f s = %.0f q/s"
           " (%ld errors)\n",
           conns, depth, b.sql, b.done, el, (double)b.done / el, b.errors);
    uv_loop_close(&loop);
    double ceiling = pgbench_tps(argv[1], b.sql, conns, secs);
    if (ceiling > 0)
        printf("pgbench -M extended -c %d -j 2: %.0f tps; pool/pgbench = %.2f\n", conns, ceiling,
               (double)b.done / el / ceiling);
    return b.errors ? 1 : 0;
}
