/*
 * curve.c - `calseta gen-curve-keys`: a new CURVE key pair for the ZeroMQ links between hosts or
 * containers, printed as the two settings that carry it (Z85, as libzmq expects):
 *
 *     CURVE_SERVER_PUBLIC_KEY='...'
 *     CURVE_SERVER_SECRET_KEY='...'
 *
 * The output is meant for a file that only the stack's own user can read (an .env file or the
 * compose keys volume); the secret never appears anywhere else.
 */
#include "master.h"

#include <stdio.h>
#include <string.h>
#include <zmq.h>

int cmd_gen_curve_keys(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: calseta gen-curve-keys\n");
        return 2;
    }
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "calseta gen-curve-keys: this libzmq has no CURVE support\n");
        return 1;
    }
    /* Z85 uses $ # ( ) & and friends but never a single quote: quoted, the lines read the same
     * in a .env file and in a shell. */
    printf("CURVE_SERVER_PUBLIC_KEY='%s'\nCURVE_SERVER_SECRET_KEY='%s'\n", pub, sec);
    explicit_bzero(sec, sizeof sec);
    return 0;
}
