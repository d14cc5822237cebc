/*
 * curve.c - `calseta gen-curve-keys`: the CURVE keys of the ZeroMQ links between hosts or
 * containers, printed as the settings that carry them (Z85, as libzmq expects).
 *
 *   calseta gen-curve-keys                new stack-wide server and client pairs
 *                                         (CURVE_SERVER_* and CURVE_CLIENT_*)
 *   calseta gen-curve-keys --link L       new pairs for one link (audit, jobs, lookup, runner,
 *                                         workflow)
 *   calseta gen-curve-keys --export ROLE  this stack's keys (configuration, else the data
 *                                         folder's, made when missing) that a host running
 *                                         ROLE (enricher or runner) needs, and nothing more
 *
 * Every tcp:// link authenticates both ends: a client needs the server's public key and a
 * client pair that the server allows. The output is meant for a file that only the stack's own
 * user can read (an .env file or the compose keys volume); secrets appear nowhere else.
 */
#include "bus.h"
#include "config.h"
#include "master.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zmq.h>

static const char *const LINKS[] = {"audit", "jobs", "lookup", "runner", "workflow"};

static void upper(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        out[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
    out[i] = 0;
}

/* Z85 uses $ # ( ) & and friends but never a single quote: quoted, the lines read the same in
 * a .env file and in a shell. */
static int print_new_pair(const char *prefix)
{
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "calseta gen-curve-keys: this libzmq has no CURVE support\n");
        return 1;
    }
    printf("%s_PUBLIC_KEY='%s'\n%s_SECRET_KEY='%s'\n", prefix, pub, prefix, sec);
    explicit_bzero(sec, sizeof sec);
    return 0;
}

static int gen_new(const char *link)
{
    char up[16], prefix[48];
    if (!link)
        return print_new_pair("CURVE_SERVER") || print_new_pair("CURVE_CLIENT");
    size_t i = 0;
    while (i < sizeof LINKS / sizeof LINKS[0] && strcmp(LINKS[i], link))
        i++;
    if (i == sizeof LINKS / sizeof LINKS[0]) {
        fprintf(stderr,
                "calseta gen-curve-keys: unknown link %s (audit, jobs, lookup, runner, workflow)\n",
                link);
        return 2;
    }
    upper(link, up, sizeof up);
    snprintf(prefix, sizeof prefix, "CURVE_%s", up);
    if (print_new_pair(prefix))
        return 1;
    snprintf(prefix, sizeof prefix, "CURVE_%s_CLIENT", up);
    return print_new_pair(prefix);
}

/* What a client of the link on another host needs: the server's public key, the client pair. */
static int export_client(const struct config *c, const char *link)
{
    char up[16], pub[41], sec[41], err[512];
    upper(link, up, sizeof up);
    int rc = bus_curve_keys(c, link, pub, sec, err, sizeof err);
    explicit_bzero(sec, sizeof sec);
    if (rc == 0) {
        printf("CURVE_%s_PUBLIC_KEY='%s'\n", up, pub);
        rc = bus_curve_client_keys(c, link, pub, sec, err, sizeof err);
    }
    if (rc == 0 && !sec[0]) {
        snprintf(err, sizeof err, "the %s link's client secret key is not on this host", link);
        rc = -1;
    }
    if (rc == 0)
        printf("CURVE_%s_CLIENT_PUBLIC_KEY='%s'\nCURVE_%s_CLIENT_SECRET_KEY='%s'\n", up, pub, up,
               sec);
    explicit_bzero(sec, sizeof sec);
    if (rc != 0)
        fprintf(stderr, "calseta gen-curve-keys: %s\n", err);
    return rc != 0;
}

/* What a runner on another host needs: the runner link's server pair and the public key of
 * the clients it serves (never a client secret: a runner connects to nothing of the stack). */
static int export_runner(const struct config *c)
{
    char pub[41], sec[41], err[512];
    int rc = bus_curve_keys(c, "runner", pub, sec, err, sizeof err);
    if (rc == 0 && !sec[0]) {
        snprintf(err, sizeof err, "the runner link's secret key is not on this host");
        rc = -1;
    }
    if (rc == 0) {
        printf("CURVE_RUNNER_PUBLIC_KEY='%s'\nCURVE_RUNNER_SECRET_KEY='%s'\n", pub, sec);
        rc = bus_curve_client_keys(c, "runner", pub, sec, err, sizeof err);
    }
    explicit_bzero(sec, sizeof sec);
    if (rc == 0)
        printf("CURVE_RUNNER_CLIENT_PUBLIC_KEY='%s'\n", pub);
    else
        fprintf(stderr, "calseta gen-curve-keys: %s\n", err);
    return rc != 0;
}

static int export_role(const char *role)
{
    struct config c;
    char err[512];
    if (strcmp(role, "enricher") && strcmp(role, "runner")) {
        fprintf(stderr, "calseta gen-curve-keys: --export takes enricher or runner\n");
        return 2;
    }
    if (config_load(&c, err, sizeof err) != 0) {
        fprintf(stderr, "calseta: configuration error: %s\n", err);
        return 1;
    }
    printf("# CURVE keys for the %s hosts of this stack (keep this file private, mode 0600)\n",
           role);
    int rc = !strcmp(role, "runner")
                 ? export_runner(&c)
                 : export_client(&c, "jobs") || export_client(&c, "lookup") ||
                       export_client(&c, "audit");
    config_destroy(&c);
    return rc;
}

int cmd_gen_curve_keys(int argc, char **argv)
{
    if (argc == 1)
        return gen_new(NULL);
    if (argc == 3 && !strcmp(argv[1], "--link"))
        return gen_new(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--export"))
        return export_role(argv[2]);
    fprintf(stderr, "usage: calseta gen-curve-keys [--link audit|jobs|lookup|runner|workflow | "
                    "--export enricher|runner]\n");
    return 2;
}
