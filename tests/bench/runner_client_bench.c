/*
 * tests/bench/runner_client_bench.c - runs/s and request-to-result latency of a served
 * calseta-runner (RUNNER_ENDPOINT, ZeroMQ ROUTER), through the intake's own client
 * (libcommon/bus/runner_client.c: DEALER on a libuv loop).
 *
 *   runner_client_bench ENDPOINT CODE_FILE [runs=200] [outstanding=1] [warmup=5]
 *
 * Sends `warmup` runs one by one (not counted), then keeps `outstanding` run requests in flight
 * until `runs` have been answered. Each latency is from runner_run() to its callback. Prints one
 * JSON object: {"runs", "ok", "failed", "elapsed_s", "runs_per_s", "p50_ms", "p90_ms",
 * "p99_ms", "max_ms", "min_ms", "mean_runner_duration_ms"}. Not a ctest; tests/bench/runner_bench.py
 * builds it as the CMake target bench_runner_client_bench of the Release build:
 *   cmake --build build-rel --target bench_runner_client_bench
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"
#include "runner_client.h"
#include "util.h"

struct bench {
    struct runner_client *client;
    struct runner_run_req req;
    int total;    /* runs to send after the warm-up */
    int warmup;   /* warm-up runs still to send */
    int sent;
    int answered;
    int ok;
    int failed;
    int outstanding;
    uint64_t t_start;
    uint64_t t_end;
    double *lat_ms;
    double runner_ms_sum;
    int busy;     /* BUSY answers (the runner had no free worker), sent again at once */
    int pause_ms; /* idle time between a result and the next run (latency at a light load) */
    uv_timer_t pause;
    uint64_t idle_ns; /* pauses, left out of runs/s */
};

struct one {
    struct bench *b;
    uint64_t t0;
    int counted;
};

static void send_one(struct bench *b, int counted);

static void on_pause(uv_timer_t *t)
{
    send_one(t->data, 1);
}

static void on_result(void *arg, int status, const struct runner_result *r)
{
    struct one *o = arg;
    struct bench *b = o->b;
    if (status == RUNNER_CLIENT_OK && r->status == RUNNER_BUSY) { /* not started: send again */
        b->busy++;
        runner_run(b->client, &b->req, on_result, o);
        return;
    }
    double ms = (double)(uv_hrtime() - o->t0) / 1e6;
    int good = status == RUNNER_CLIENT_OK && r->status == RUNNER_SUCCESS && r->success;
    if (!good && status == RUNNER_CLIENT_OK)
        fprintf(stderr, "run not successful: %s\n", r->message ? r->message : "");
    else if (!good)
        fprintf(stderr, "run not answered: status %d\n", status);
    if (!o->counted) {
        free(o);
        if (b->warmup > 0)
            send_one(b, 0);
        else {
            b->t_start = uv_hrtime();
            for (int i = 0; i < b->outstanding && b->sent < b->total; i++)
                send_one(b, 1);
        }
        return;
    }
    b->lat_ms[b->answered++] = ms;
    if (good) {
        b->ok++;
        b->runner_ms_sum += (double)r->duration_ms;
    } else {
        b->failed++;
    }
    free(o);
    if (b->sent < b->total && b->pause_ms > 0) {
        b->idle_ns += (uint64_t)b->pause_ms * 1000000ULL;
        uv_timer_start(&b->pause, on_pause, (uint64_t)b->pause_ms, 0);
    } else if (b->sent < b->total)
        send_one(b, 1);
    else if (b->answered == b->total) {
        b->t_end = uv_hrtime();
        runner_client_free(b->client);
        b->client = NULL;
    }
}

static void send_one(struct bench *b, int counted)
{
    struct one *o = xcalloc(1, sizeof *o);
    o->b = b;
    o->counted = counted;
    if (counted)
        b->sent++;
    else
        b->warmup--;
    o->t0 = uv_hrtime();
    runner_run(b->client, &b->req, on_result, o);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
    int i = (int)(p / 100.0 * (n - 1) + 0.5);
    return n ? v[i < n ? i : n - 1] : 0;
}

int main(int argc, char **argv)
{
    struct bench b;
    char err[256];
    if (argc < 3) {
        fprintf(stderr, "usage: runner_client_bench ENDPOINT CODE_FILE [runs] [outstanding] "
                        "[warmup] [pause_ms]\n");
        return 2;
    }
    memset(&b, 0, sizeof b);
    log_init("bench", 0, LOG_WARN);
    b.total = argc > 3 ? atoi(argv[3]) : 200;
    b.outstanding = argc > 4 ? atoi(argv[4]) : 1;
    b.warmup = argc > 5 ? atoi(argv[5]) : 5;
    b.pause_ms = argc > 6 ? atoi(argv[6]) : 0;
    if (b.total < 1 || b.outstanding < 1 || b.warmup < 1 || b.pause_ms < 0) {
        fprintf(stderr, "runs, outstanding and warmup must be positive\n");
        return 2;
    }
    b.req.code = file_read(argv[2], NULL);
    if (!b.req.code) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 2;
    }
    b.req.run_uuid = xstrdup("00000000-0000-4000-8000-000000000001");
    b.req.timeout_seconds = 30;
    b.req.indicator_json = xstrdup("{\"type\":\"ip\",\"value\":\"23.1.2.3\"}");
    b.req.secrets = xcalloc(1, sizeof *b.req.secrets);
    b.lat_ms = xcalloc((size_t)b.total, sizeof *b.lat_ms);
    uv_loop_t *loop = uv_default_loop();
    b.client = runner_client_new(loop, NULL, argv[1], err, sizeof err);
    if (!b.client) {
        fprintf(stderr, "runner client: %s\n", err);
        return 1;
    }
    uv_timer_init(loop, &b.pause);
    b.pause.data = &b;
    uv_unref((uv_handle_t *)&b.pause);
    send_one(&b, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&b.pause, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    double el = (double)(b.t_end - b.t_start - b.idle_ns) / 1e9;
    qsort(b.lat_ms, (size_t)b.answered, sizeof *b.lat_ms, cmp_double);
    printf("{\"runs\": %d, \"ok\": %d, \"failed\": %d, \"elapsed_s\": %.3f, \"runs_per_s\": %.1f, "
           "\"min_ms\": %.2f, \"p50_ms\": %.2f, \"p90_ms\": %.2f, \"p99_ms\": %.2f, "
           "\"max_ms\": %.2f, \"mean_runner_duration_ms\": %.2f, \"busy_answers\": %d}\n",
           b.answered, b.ok, b.failed, el, el > 0 ? b.answered / el : 0, pct(b.lat_ms, b.answered, 0),
           pct(b.lat_ms, b.answered, 50), pct(b.lat_ms, b.answered, 90),
           pct(b.lat_ms, b.answered, 99), pct(b.lat_ms, b.answered, 100),
           b.ok ? b.runner_ms_sum / b.ok : 0, b.busy);
    uv_loop_close(loop);
    runner_run_req_destroy(&b.req);
    free(b.lat_ms);
    return b.failed ? 1 : 0;
}
