/*
 * bus_curve.c - where a bus link's CURVE key pairs come from (see bus.h).
 *
 * Each link (audit, jobs, lookup, runner, workflow) has its own server key pair so that a process
 * that serves one link cannot impersonate the server of another (a runner that lost its sandbox does
 * not hold the audit collector's key), and its own client key pair, which the link's servers
 * allow (bus_zap.c): knowing a server's public key is not enough to be served. A pair comes
 * from the configuration when it is set (CURVE_<LINK>_PUBLIC_KEY / CURVE_<LINK>_SECRET_KEY and
 * CURVE_<LINK>_CLIENT_PUBLIC_KEY / CURVE_<LINK>_CLIENT_SECRET_KEY, or the stack-wide
 * CURVE_SERVER_* and CURVE_CLIENT_* pairs for every link but the runner's) and otherwise from
 * CALSETA_DATA_DIR/curve/<link>.key and <link>-client.key, made at first start by whichever
 * process of the stack needs it first. A file is created under a temporary name with mode 0600
 * and linked into place, so processes starting together all end up with the one pair that won
 * the link(2).
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

/* The links and the settings that may give their key pairs and extra allowed clients. */
static const struct {
    const char *link, *pub, *sec, *cpub, *csec, *allow;
} LINK_KEYS[] = {
    {"audit", "CURVE_AUDIT_PUBLIC_KEY", "CURVE_AUDIT_SECRET_KEY", "CURVE_AUDIT_CLIENT_PUBLIC_KEY",
     "CURVE_AUDIT_CLIENT_SECRET_KEY", "CURVE_AUDIT_ALLOWED_CLIENT_KEYS"},
    {"jobs", "CURVE_JOBS_PUBLIC_KEY", "CURVE_JOBS_SECRET_KEY", "CURVE_JOBS_CLIENT_PUBLIC_KEY",
     "CURVE_JOBS_CLIENT_SECRET_KEY", "CURVE_JOBS_ALLOWED_CLIENT_KEYS"},
    {"lookup", "CURVE_LOOKUP_PUBLIC_KEY", "CURVE_LOOKUP_SECRET_KEY",
     "CURVE_LOOKUP_CLIENT_PUBLIC_KEY", "CURVE_LOOKUP_CLIENT_SECRET_KEY",
     "CURVE_LOOKUP_ALLOWED_CLIENT_KEYS"},
    {"workflow", "CURVE_WORKFLOW_PUBLIC_KEY", "CURVE_WORKFLOW_SECRET_KEY",
     "CURVE_WORKFLOW_CLIENT_PUBLIC_KEY", "CURVE_WORKFLOW_CLIENT_SECRET_KEY",
     "CURVE_WORKFLOW_ALLOWED_CLIENT_KEYS"},
    {"runner", "CURVE_RUNNER_PUBLIC_KEY", "CURVE_RUNNER_SECRET_KEY",
     "CURVE_RUNNER_CLIENT_PUBLIC_KEY", "CURVE_RUNNER_CLIENT_SECRET_KEY",
     "CURVE_RUNNER_ALLOWED_CLIENT_KEYS"},
};

enum which { SERVER_PUB, SERVER_SEC, CLIENT_PUB, CLIENT_SEC, ALLOWED };

static const char *link_setting(const struct config *c, const char *link, enum which w)
{
    for (size_t i = 0; c->settings && i < sizeof LINK_KEYS / sizeof LINK_KEYS[0]; i++) {
        if (strcmp(LINK_KEYS[i].link, link))
            continue;
        const char *name = w == SERVER_PUB   ? LINK_KEYS[i].pub
                           : w == SERVER_SEC ? LINK_KEYS[i].sec
                           : w == CLIENT_PUB ? LINK_KEYS[i].cpub
                           : w == CLIENT_SEC ? LINK_KEYS[i].csec
                                             : LINK_KEYS[i].allow;
        const char *v = settings_get(c->settings, name);
        return v && *v ? v : NULL;
    }
    return NULL;
}

/* CURVE_<LINK>_..._KEY, then (except for the runner) the stack-wide CURVE_SERVER_/CLIENT_ one. */
static const char *configured(const struct config *c, const char *link, enum which w)
{
    if (!c)
        return NULL;
    const char *v = link_setting(c, link, w);
    if (v || !strcmp(link, "runner"))
        return v;
    if (w == SERVER_PUB || w == SERVER_SEC)
        v = w == SERVER_PUB ? c->curve_server_public_key : c->curve_server_secret_key;
    else if (c->settings)
        v = settings_get(c->settings,
                         w == CLIENT_PUB ? "CURVE_CLIENT_PUBLIC_KEY" : "CURVE_CLIENT_SECRET_KEY");
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

static int file_pair(const struct config *c, const char *name, char pub[41], char sec[41],
                     char *err, size_t errlen)
{
    const char *dir = c && c->data_dir && *c->data_dir ? c->data_dir : "var";
    char *cdir = xasprintf("%s/curve", dir);
    char *path = xasprintf("%s/%s.key", cdir, name);
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

/* The server (client 0) or client (client 1) pair of a link. */
static int link_pair(const struct config *c, const char *link, int client, char pub[41],
                     char sec[41], char *err, size_t errlen)
{
    const char *what = client ? "client " : "";
    const char *cp = configured(c, link, client ? CLIENT_PUB : SERVER_PUB);
    const char *cs = configured(c, link, client ? CLIENT_SEC : SERVER_SEC);
    pub[0] = sec[0] = 0;
    if (cp || cs) {
        if (cp && !z85_ok(cp)) {
            snprintf(err, errlen, "the configured CURVE %spublic key of the %s link is not a "
                                  "40-character Z85 key", what, link);
            return -1;
        }
        if (cs && !z85_ok(cs)) {
            snprintf(err, errlen, "the configured CURVE %ssecret key of the %s link is not a "
                                  "40-character Z85 key", what, link);
            return -1;
        }
        if (cp)
            memcpy(pub, cp, Z85_KEY_LEN + 1);
        if (cs)
            memcpy(sec, cs, Z85_KEY_LEN + 1);
        if (cs && !cp && zmq_curve_public(pub, cs) != 0) {
            snprintf(err, errlen, "cannot derive the %s link's %spublic key", link, what);
            return -1;
        }
        return 0;
    }
    char *name = xasprintf("%s%s", link, client ? "-client" : "");
    int rc = file_pair(c, name, pub, sec, err, errlen);
    free(name);
    return rc;
}

int bus_curve_keys(const struct config *c, const char *link, char pub[41], char sec[41],
                   char *err, size_t errlen)
{
    return link_pair(c, link, 0, pub, sec, err, errlen);
}

int bus_curve_client_keys(const struct config *c, const char *link, char pub[41], char sec[41],
                          char *err, size_t errlen)
{
    return link_pair(c, link, 1, pub, sec, err, errlen);
}

static int add_key(struct buf *out, const char *z85, const char *link, char *err, size_t errlen)
{
    uint8_t raw[32];
    if (!z85_ok(z85) || !zmq_z85_decode(raw, z85)) {
        snprintf(err, errlen, "an allowed CURVE client key of the %s link is not a 40-character "
                              "Z85 key: %.40s", link, z85);
        return -1;
    }
    buf_append(out, raw, sizeof raw);
    return 0;
}

int bus_curve_allowed_clients(const struct config *c, const char *link, struct buf *out,
                              char *err, size_t errlen)
{
    char pub[41], sec[41];
    int rc = bus_curve_client_keys(c, link, pub, sec, err, errlen);
    explicit_bzero(sec, sizeof sec); /* a server needs the client's public key only */
    if (rc != 0 || add_key(out, pub, link, err, errlen) != 0)
        return -1;
    const char *list = c ? link_setting(c, link, ALLOWED) : NULL;
    if (!list)
        return 0;
    char *copy = xstrdup(list), *save = NULL;
    for (char *k = strtok_r(copy, ", ", &save); k && rc == 0; k = strtok_r(NULL, ", ", &save))
        rc = add_key(out, k, link, err, errlen);
    free(copy);
    return rc;
}
