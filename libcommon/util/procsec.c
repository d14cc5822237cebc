/*
 * procsec.c - hardening of a process that holds secrets (see procsec.h).
 */
#include "procsec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

int secure_process_init(char *err, size_t errlen)
{
    int rc = 0;
    struct rlimit none = {0, 0};
    err[0] = 0;
    /* A core file would hold every decrypted credential of the moment. */
    if (setrlimit(RLIMIT_CORE, &none) != 0) {
        snprintf(err, errlen, "setrlimit(RLIMIT_CORE): %s", strerror(errno));
        rc = -1;
    }
    /* Not dumpable: no core either way, and another process of the same user can neither
     * ptrace this one nor read its memory through /proc. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        snprintf(err, errlen, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
        rc = -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
        rc = -1;
    }
    return rc;
}
