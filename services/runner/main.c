/*
 * main.c - calseta-runner: validates and runs workflow code in sandboxed children.
 *
 *   calseta-runner                         serve RUNNER_ENDPOINT (ZeroMQ ROUTER)
 *   calseta-runner --one-shot-validate F   validate the code in F, JSON on stdout
 *   calseta-runner --one-shot-run F        run the request in F, JSON on stdout
 * Test-only switches (refused without a one-shot mode):
 *   --layers=LIST       sandbox layers to apply (ast,pyguard,netns,userns,landlock,seccomp,
 *                       rlimit, all, none); default all
 *   --allow-loopback    ctx.http may reach 127.0.0.0/8 and ::1 (a local stand-in server)
 *   --cpu-seconds=N     RLIMIT_CPU for the child instead of timeout_seconds + 1
 *
 * Start-up, in two images. The first reads the configuration the way every service does
 * (environment, .env, a secrets backend) and re-executes this program with an environment that
 * holds only the few settings the runner uses and no secret at all: a workflow child is a copy
 * of the runner's memory, so the runner must never have held the database URL, the encryption
 * key or anything else a child must not read — wiping is not enough (freed heap, the initial
 * environment block). The second image reads only that environment (no .env, no backend),
 * starts the fork server (forkserver.c: probes the kernel, initialises the interpreter) and
 * logs every sandbox layer that is missing.
 */
#include "bus.h"
#include "config.h"
#include "procsec.h"
#include "log.h"
#include "runner.h"
#include "settings.h"
#include "settings_table.h"

#include <curl/curl.h>
#include <jansson.h>
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLEAN_MARK "CALSETA_RUNNER_CLEAN_ENV"

/* What the second image may see: settings the runner uses; the one secret among them is the
 * runner link's own CURVE key (never the stack-wide CURVE_SERVER_* pair). */
static const char *const PASSED_ON[] = {
    "RUNNER_ENDPOINT", "CALSETA_DATA_DIR", "CURVE_RUNNER_PUBLIC_KEY", "CURVE_RUNNER_SECRET_KEY",
    "WORKFLOW_MAX_MEMORY_MB", "SSRF_ALLOWED_HOSTS", "RUNNER_CONCURRENCY",
    "LOG_LEVEL",       "LOG_FORMAT",             "APP_VERSION",        "TZ",
    "ASAN_OPTIONS",    "UBSAN_OPTIONS",          "LSAN_OPTIONS",       NULL,
};

extern char **environ;

struct args {
    const char *validate_file;
    const char *run_file;
    int layers;
    int allow_loopback;
    int cpu_seconds;
    int test_flags;
};

static volatile int stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Child processes under AddressSanitizer must see allocation failure as MemoryError. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->layers = LAYER_ALL;
    for (int i = 1; i < argc; i++) {
        long long n;
        if (!strcmp(argv[i], "--one-shot-validate") && i + 1 < argc) {
            a->validate_file = argv[++i];
        } else if (!strcmp(argv[i], "--one-shot-run") && i + 1 < argc) {
            a->run_file = argv[++i];
        } else if (!strncmp(argv[i], "--layers=", 9)) {
            if (sandbox_layers_parse(argv[i] + 9, &a->layers) != 0)
                return -1;
            a->test_flags = 1;
        } else if (!strcmp(argv[i], "--allow-loopback")) {
            a->allow_loopback = a->test_flags = 1;
        } else if (!strncmp(argv[i], "--cpu-seconds=", 14) &&
                   parse_ll(argv[i] + 14, 1, 86400, &n) == 0) {
            a->cpu_seconds = (int)n;
            a->test_flags = 1;
        } else {
            return -1;
        }
    }
    if (a->test_flags && !a->validate_file && !a->run_file)
        return -1;
    return 0;
}

static void wipe(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
}

/* The runner needs none of the platform's secrets; nothing of them survives into a child. */
static void forget_platform_secrets(struct config *c)
{
    wipe(c->database_url);
    wipe(c->encryption_key);
    wipe(c->sentinel_webhook_secret);
    wipe(c->elastic_webhook_secret);
    wipe(c->splunk_webhook_secret);
    wipe(c->curve_server_secret_key);
    clearenv();
}

/* RUNNER_CONCURRENCY: runs at once, and warm children kept ready (default 4). */
static int runner_concurrency(const struct config *c)
{
    char err[256];
    long long n;
    if (setting_ll(c->settings, "RUNNER_CONCURRENCY", 1, 256, &n, err, sizeof err))
        msg_fatal("configuration error: %s", err);
    return (int)n;
}

/* First image: the full configuration in, a clean image of this program out. */
static __attribute__((noreturn)) void reexec_clean(char **argv)
{
    struct config c;
    char err[512];
    if (config_load(&c, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-runner: configuration error: %s\n", err);
        exit(1);
    }
    size_t n = 0;
    char *env[sizeof PASSED_ON / sizeof PASSED_ON[0] + 1];
    for (const char *const *name = PASSED_ON; *name; name++) {
        const char *v = settings_get(c.settings, *name);
        if (v)
            env[n++] = xasprintf("%s=%s", *name, v);
    }
    env[n++] = xstrdup(CLEAN_MARK "=1");
    env[n] = NULL;
    config_destroy(&c);
    execve("/proc/self/exe", argv, env);
    fprintf(stderr, "calseta-runner: cannot re-execute itself: %s\n", strerror(errno));
    exit(1);
}

/* Second image: only the environment it was given (no .env file, no secrets backend). */
static int load_clean_config(struct config *c, char *err, size_t errlen)
{
    struct settings *s = settings_load_env("", environ, err, errlen);
    if (!s)
        return -1;
    for (char **e = environ; *e; e++) { /* nothing but what reexec_clean() passes on */
        int ok = !strncmp(*e, CLEAN_MARK "=", sizeof CLEAN_MARK);
        for (const char *const *name = PASSED_ON; *name && !ok; name++)
            ok = !strncmp(*e, *name, strlen(*name)) && (*e)[strlen(*name)] == '=';
        if (!ok) {
            snprintf(err, errlen, "unexpected variable in the clean image's environment "
                                  "(%s was set from outside?)", CLEAN_MARK);
            settings_free(s);
            return -1;
        }
    }
    if (config_from_settings(c, s, err, errlen) != 0) {
        config_destroy(c);
        return -1;
    }
    return 0;
}

static void report_layers(struct zygote *z, int requested)
{
    char in_force[128], missing[128];
    const struct sandbox_probe *p = zygote_probe(z);
    sandbox_layers_string(zygote_layers(z), in_force, sizeof in_force);
    msg_info("runner: sandbox layers in force: %s (landlock ABI %d)", in_force, p->landlock_abi);
    int lost = requested & ~zygote_layers(z);
    if (lost) {
        sandbox_layers_string(lost, missing, sizeof missing);
        msg_warn("runner: sandbox layers unavailable on this kernel: %s (%s)", missing, p->notes);
    }
    if (requested != LAYER_ALL)
        msg_warn("runner: TEST MODE: only these layers were requested: %s", in_force);
}

int main(int argc, char **argv)
{
    struct args a;
    struct config c;
    char err[512];
    if (parse_args(argc, argv, &a) != 0) {
        fprintf(stderr, "usage: calseta-runner [--one-shot-validate FILE | --one-shot-run FILE "
                        "[--layers=LIST] [--allow-loopback] [--cpu-seconds=N]]\n");
        return 2;
    }
    /* jansson holds run requests (secrets, integration credentials) and ctx.http traffic:
     * every block it frees is zeroed first */
    json_set_alloc_funcs(malloc, free_wiped);
    const char *mark = getenv(CLEAN_MARK);
    if (!mark || strcmp(mark, "1") != 0)
        reexec_clean(argv);
    prctl(PR_SET_NAME, "calseta-runner"); /* not "exe", after the re-execution */
    if (secure_process_init(err, sizeof err) != 0) /* runs carry decrypted secrets */
        fprintf(stderr, "calseta-runner: %s\n", err);
    if (load_clean_config(&c, err, sizeof err) != 0) {
        fprintf(stderr, "calseta-runner: configuration error: %s\n", err);
        return 1;
    }
    config_init_log(&c, "runner");
    int concurrency = runner_concurrency(&c);
    forget_platform_secrets(&c);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct zygote_opts zo = {
        .layers = a.layers,
        .default_memory_mb = c.workflow_max_memory_mb,
        .validate_timeout_seconds = 10,
        .allow_loopback = a.allow_loopback,
        .ssrf_allowed_hosts = c.ssrf_allowed_hosts,
        .max_response_bytes = 10LL * 1024 * 1024,
        .max_http_requests = 100,
        .cpu_seconds = a.cpu_seconds,
        .warm_children = a.validate_file ? 0 : concurrency,
    };
    struct zygote *z = zygote_new(&zo, err, sizeof err);
    if (!z)
        msg_fatal("runner: %s", err);
    report_layers(z, a.layers);
    int rc;
    if (a.validate_file) {
        rc = runner_oneshot_validate(z, a.validate_file);
    } else if (a.run_file) {
        rc = runner_oneshot_run(z, a.run_file);
    } else {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        rc = runner_serve(z, &c, c.runner_endpoint, concurrency, &stop_requested) ? 1 : 0;
        bus_context_term();
    }
    zygote_free(z);
    curl_global_cleanup();
    config_destroy(&c);
    return rc;
}
