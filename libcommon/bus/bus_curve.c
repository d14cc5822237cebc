/*
 * bus_curve.c - where a bus link's CURVE key pair comes from (see bus.h).
 *
 * Each link (audit, jobs, runner, enricher) has its own server key pair so that a process that
 * serves one link cannot impersonate the server of another (a runner that lost its sandbox does
 * not hold the audit collector's key). The pair comes from the configuration when it is set
 * (CURVE_<LINK>_PUBLIC_KEY / CURVE_<LINK>_SECRET_KEY, or the stack-wide CURVE_SERVER_* pair for
 * every link but the runner's) and otherwise from CALSETA_DATA_DIR/curve/<link>.key, made at
 * first start by whichever process of the stack needs it first. The file is created under a
 * temporary name with mode 0600 and linked into place, so processes starting together all end
 * up with the one pair that won the link(2).
 */
#include "bus.h"
#include "config.h"
#include "settings.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define Z85_KEY_LEN 40

static int z85_ok(const char *k)
{
    if (!k || strlen(k) != Z85_KEY_LEN)
        return 0;
    uint8_t raw[32];
    return zmq_z85_decode(raw, k) != NULL;
}

/* The links and the settings that may give their key pair. */
static const struct {
    const char *link, *pub, *sec;
} LINK_KEYS[] = {
    {"audit", "CURVE_AUDIT_PUBLIC_KEY", "CURVE_AUDIT_SECRET_KEY"},
    {"jobs", "CURVE_JOBS_PUBLIC_KEY", "CURVE_JOBS_SECRET_KEY"},
    {"lookup", "CURVE_LOOKUP_PUBLIC_KEY", "CURVE_LOOKUP_SECRET_KEY"},
    {"runner", "CURVE_RUNNER_PUBLIC_KEY", "CURVE_RUNNER_SECRET_KEY"},
};

/* CURVE_<LINK>_<WHAT>_KEY, then (except for the runner) CURVE_SERVER_<WHAT>_KEY. */
static const char *configured(const struct config *c, const char *link, int public)
{
    if (!c)
        return NULL;
    for (size_t i = 0; c->settings && i < sizeof LINK_KEYS / sizeof LINK_KEYS[0]; i++) {
        if (strcmp(LINK_KEYS[i].link, link))
            continue;
        const char *v = settings_get(c->settings, public ? LINK_KEYS[i].pub : LINK_KEYS[i].sec);
        if (v && *v)
            return v;
    }
    if (!strcmp(link, "runner"))
        return NULL;
    const char *v = public ? c->curve_server_public_key : c->curve_server_secret_key;
    return v && *v ? v : NULL;
}

static int read_pair(const char *path, char pub[41], char sec[41], char *err, size_t errlen)
{
    char text[2 * Z85_KEY_LEN + 3];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 1 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    int rc = -1;
    if (n == (ssize_t)sizeof text - 1 && text[Z85_KEY_LEN] == '\n' &&
        text[2 * Z85_KEY_LEN + 1] == '\n') {
        memcpy(pub, text, Z85_KEY_LEN);
        memcpy(sec, text + Z85_KEY_LEN + 1, Z85_KEY_LEN);
        pub[Z85_KEY_LEN] = sec[Z85_KEY_LEN] = 0;
        rc = z85_ok(pub) && z85_ok(sec) ? 0 : -1;
    }
    explicit_bzero(text, sizeof text);
    if (rc != 0)
        snprintf(err, errlen, "%s is not a CURVE key file (public and secret Z85 key, one per "
                              "line); remove it to have a new pair made", path);
    return rc;
}

static int make_pair(const char *path, char *err, size_t errlen)
{
    char pub[41], sec[41], text[2 * Z85_KEY_LEN + 3];
    if (zmq_curve_keypair(pub, sec) != 0) {
        snprintf(err, errlen, "zmq_curve_keypair: %s (is libzmq built with CURVE?)",
                 zmq_strerror(errno));
        return -1;
    }
    snprintf(text, sizeof text, "%s\n%s\n", pub, sec);
    explicit_bzero(sec, sizeof sec);
    char *tmp = xasprintf("%s.XXXXXX", path);
    int rc = -1, fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600 */
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fd_write_full(fd, text, strlen(text)) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        goto out;
    }
    close(fd);
    if (link(tmp, path) != 0 && errno != EEXIST) { /* EEXIST: a sibling won; use its pair */
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    unlink(tmp);
    free(tmp);
    explicit_bzero(text, sizeof text);
    return rc;
}

static int file_pair(const struct config *c, const char *link, char pub[41], char sec[41],
                     char *err, size_t errlen)
{
    const char *dir = c && c->data_dir && *c->data_dir ? c->data_dir : "var";
    char *cdir = xasprintf("%s/curve", dir);
    char *path = xasprintf("%s/%s.key", cdir, link);
    int rc;
    mkdir(dir, 0700);
    if (mkdir(cdir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", cdir, strerror(errno));
        rc = -1;
        goto out;
    }
    rc = read_pair(path, pub, sec, err, errlen);
    if (rc == 1) {
        rc = make_pair(path, err, errlen);
        if (rc == 0)
            rc = read_pair(path, pub, sec, err, errlen);
    }
out:
    free(path);
    free(cdir);
    return rc;
}

int bus_curve_keys(const struct config *c, const char *link, char pub[41], char sec[41],
                   char *err, size_t errlen)
{
    const char *cp = configured(c, link, 1);
    const char *cs = configured(c, link, 0);
    pub[0] = sec[0] = 0;
    if (cp || cs) {
        if (cp && !z85_ok(cp)) {
            snprintf(err, errlen, "the configured CURVE public key of the %s link is not a "
                                  "40-character Z85 key", link);
            return -1;
        }
        if (cs && !z85_ok(cs)) {
            snprintf(err, errlen, "the configured CURVE secret key of the %s link is not a "
                                  "40-character Z85 key", link);
            return -1;
        }
        if (cp)
            memcpy(pub, cp, Z85_KEY_LEN + 1);
        if (cs)
            memcpy(sec, cs, Z85_KEY_LEN + 1);
        if (cs && !cp && zmq_curve_public(pub, cs) != 0) {
            snprintf(err, errlen, "cannot derive the %s link's public key", link);
            return -1;
        }
        return 0;
    }
    return file_pair(c, link, pub, sec, err, errlen);
}
