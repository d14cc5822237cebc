/*
 * produce.c - `calseta-auditd produce N [RATE]`: a load generator made of the real producer
 * client, for the kill tests and the benchmark (tests/integration/test_auditd.py,
 * tests/bench/audit.py). Emits N "loadgen" events (fields {"run", "seq"}) at RATE per second
 * (0 = as fast as possible) from a libuv loop, then waits until all are acknowledged (or
 * PRODUCE_WAIT_MS, default 120000, passes) and prints one JSON line of statistics: counts,
 * events/s end to end, and the time audit_emit() took on the caller (p50/p99/max, µs).
 */
#include "audit.h"
#include "auditd.h"
#include "config.h"
#include "log.h"
#include "settings.h"
#include "settings_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

struct loadgen {
    struct audit_client *ac;
    long long total, done, rate;
    char run[AUDIT_ID_LEN + 1];
    uint64_t start_ms, emitted_ms;
    uint32_t *lat_ns; /* per event */
    uv_timer_t timer;
    int wait_ms;
    int announced;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void emit_one(struct loadgen *g)
{
    uint64_t t0 = now_ns();
    audit_emit(g->ac, "loadgen", NULL, "cai_load", "127.0.0.1",
               json_pack("{s:s,s:I}", "run", g->run, "seq", (json_int_t)g->done));
    uint64_t dt = now_ns() - t0;
    g->lat_ns[g->done++] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
}

static void on_tick(uv_timer_t *t)
{
    struct loadgen *g = t->data;
    uint64_t now = now_mono_ms();
    long long due = g->rate > 0 ? (long long)((now - g->start_ms) * (uint64_t)g->rate / 1000) + 1
                                : g->done + 2000;
    while (g->done < g->total && g->done < due)
        emit_one(g);
    if (g->done < g->total)
        return;
    if (!g->announced) {
        g->announced = 1;
        g->emitted_ms = now;
        fprintf(stderr, "produce: emitted %lld\n", g->total);
    }
    struct audit_client_stats st;
    audit_client_get_stats(g->ac, &st);
    if (st.pending == 0 || now - g->emitted_ms > (uint64_t)g->wait_ms)
        uv_timer_stop(t);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void report(struct loadgen *g)
{
    struct audit_client_stats st;
    audit_client_get_stats(g->ac, &st);
    uint64_t end = now_mono_ms();
    double secs = (double)(end - g->start_ms) / 1000.0;
    qsort(g->lat_ns, (size_t)g->total, sizeof *g->lat_ns, cmp_u32);
    double p50 = 0, p99 = 0, mx = 0;
    if (g->total > 0) {
        p50 = g->lat_ns[g->total / 2] / 1000.0;
        p99 = g->lat_ns[(g->total * 99) / 100] / 1000.0;
        mx = g->lat_ns[g->total - 1] / 1000.0;
    }
    printf("{\"run\":\"%s\",\"emitted\":%llu,\"acked\":%llu,\"adopted\":%llu,\"pending\":%zu,"
           "\"resends\":%llu,\"seconds\":%.3f,\"events_per_s\":%.0f,\"emit_us_p50\":%.2f,"
           "\"emit_us_p99\":%.2f,\"emit_us_max\":%.2f}\n",
           g->run, (unsigned long long)st.emitted, (unsigned long long)st.acked,
           (unsigned long long)st.adopted, st.pending, (unsigned long long)st.resends, secs,
           secs > 0 ? (double)st.acked / secs : 0.0, p50, p99, mx);
    fflush(stdout);
}

int auditd_produce(int argc, char **argv)
{
    struct config c;
    char err[512];
    if (config_load(&c, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-auditd: configuration error: %s\n", err);
        return 1;
    }
    config_init_log(&c, "loadgen");
    struct loadgen g = {0};
    g.total = argc > 2 ? atoll(argv[2]) : 1000;
    g.rate = argc > 3 ? atoll(argv[3]) : 0;
    g.wait_ms = atoi(setting_value(c.settings, "PRODUCE_WAIT_MS"));
    if (g.total < 0)
        g.total = 0;
    g.lat_ns = xcalloc((size_t)g.total + 1, sizeof *g.lat_ns);
    audit_id_new(g.run);
    uv_loop_t *loop = uv_default_loop();
    g.ac = audit_client_new(&c, "loadgen", loop);
    g.start_ms = now_mono_ms();
    uv_timer_init(loop, &g.timer);
    g.timer.data = &g;
    uv_timer_start(&g.timer, on_tick, 0, 1);
    uv_run(loop, UV_RUN_DEFAULT);
    report(&g);
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    audit_client_free(g.ac);
    uv_loop_close(loop);
    free(g.lat_ns);
    config_destroy(&c);
    return 0;
}
