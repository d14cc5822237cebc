/*
 * settings_check.c - `calseta config-check`: which backend answered and which names are set.
 *
 * Prints a SHA-256 of each requested value so an operator (or a test) can compare values
 * across hosts without the value ever being printed.
 */
#include "settings.h"
#include "crypto.h"

#include <stdio.h>
#include <string.h>

int settings_check_main(int argc, char **argv)
{
    char err[1024];
    struct settings *s = settings_load(NULL, err, sizeof err);
    if (!s) {
        fprintf(stderr, "calseta: configuration error: %s\n", err);
        return 1;
    }
    printf("backend=%s\n", settings_backend(s));
    for (int i = 1; i < argc; i++) {
        const char *v = settings_get(s, argv[i]);
        if (!v) {
            printf("%s=unset\n", argv[i]);
            continue;
        }
        char hex[65];
        crypto_sha256_hex(v, strlen(v), hex);
        printf("%s=set sha256=%s\n", argv[i], hex);
    }
    settings_free(s);
    return fflush(stdout) == 0 ? 0 : 1;
}
