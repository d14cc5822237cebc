/*
 * procsec.h - what a process that ever holds a secret does first: no core dumps, no ptrace
 * or /proc/<pid>/mem by other processes of the same user, no privilege gained through exec.
 *
 * Call secure_process_init() at the top of main() of every service that decrypts or receives
 * a credential (enricher, runner, workflowd, dispatcher, intake, the command line).
 */
#ifndef CALSETA_PROCSEC_H
#define CALSETA_PROCSEC_H

#include <stddef.h>

/* PR_SET_DUMPABLE 0, RLIMIT_CORE 0 (soft and hard) and PR_SET_NO_NEW_PRIVS 1. 0, or -1 with
 * err naming the step that failed (the others are still applied). */
int secure_process_init(char *err, size_t errlen);

#endif
