/*
 * main.c - the `calseta` command: one sub-command per operator task.
 *
 *   up                     start every service from the table in services.c and watch them
 *   migrate                apply migrations/NNNN_*.sql in order
 *   create-api-key         make a key and print it once
 *   list-api-keys          show keys (never the key itself)
 *   revoke-api-key         deactivate a key by prefix or uuid
 *   gen-encryption-key     print a new Fernet key for ENCRYPTION_KEY
 *   rotate-encryption-key  re-encrypt every encrypted column under a new key
 *   config-check           which settings backend and names a host sees (never values)
 *   settings-doc           print docs/configuration.md from the settings table
 */
#include "master.h"
#include "settings.h"
#include "settings_table.h"

#include <stdlib.h>

#include <stdio.h>
#include <string.h>

static int cmd_settings_doc(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char *md = settings_table_markdown();
    int rc = fputs(md, stdout) < 0 || fflush(stdout) ? 1 : 0;
    free(md);
    return rc;
}

static const struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"up", cmd_up, "start all services (or the named ones) and supervise them"},
    {"migrate", cmd_migrate, "apply database migrations"},
    {"create-api-key", cmd_create_api_key, "create an API key (--name N --scopes a,b ...)"},
    {"list-api-keys", cmd_list_api_keys, "list API keys"},
    {"revoke-api-key", cmd_revoke_api_key, "revoke an API key (prefix or uuid)"},
    {"gen-encryption-key", cmd_gen_encryption_key, "print a new ENCRYPTION_KEY"},
    {"gen-curve-keys", cmd_gen_curve_keys,
     "print new CURVE keys, or (--export enricher|runner) what another host needs"},
    {"rotate-encryption-key", cmd_rotate_encryption_key,
     "re-encrypt secrets (--old-key K --new-key K [--dry-run])"},
    {"config-check", settings_check_main,
     "show the settings backend and which names are set (SHA-256, never values)"},
    {"settings-doc", cmd_settings_doc, "print the configuration reference (Markdown)"},
};

static void usage(void)
{
    fprintf(stderr, "usage: calseta <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(stderr, "  %-22s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    usage();
    return 2;
}
