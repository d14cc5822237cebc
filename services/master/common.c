/*
 * common.c - configuration and database helpers shared by the CLI sub-commands.
 */
#include "master.h"
#include "config.h"
#include "log.h"

#include "util.h"

#include <libgen.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Without DATABASE_URL the commands use the project's embedded cluster: scripts/pg.sh (next
 * to the build folder) connects to it, starting it where needed, and prints its URL. */
static char *embedded_database_url(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = 0;
    char *script = xasprintf("%s/../../scripts/pg.sh", dirname(exe));
    if (access(script, X_OK) != 0) {
        free(script);
        return NULL;
    }
    char *cmd = xasprintf("'%s' start", script);
    free(script);
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p)
        return NULL;
    char line[1024] = "";
    char *got = fgets(line, sizeof line, p);
    int rc = pclose(p);
    if (!got || rc != 0)
        return NULL;
    line[strcspn(line, "\r\n")] = 0;
    return strncmp(line, "postgresql://", 13) == 0 ? xstrdup(line) : NULL;
}

void master_config(struct config *c, const char *service)
{
    char err[512];
    if (config_load(c, err, sizeof err) != 0) {
        fprintf(stderr, "calseta: configuration error: %s\n", err);
        exit(1);
    }
    config_init_log(c, service);
    if (!*c->database_url) {
        char *url = embedded_database_url();
        if (url) {
            free(c->database_url);
            c->database_url = url;
        }
    }
}

PGconn *master_db_connect(const struct config *c)
{
    if (!c->database_url || !*c->database_url) {
        fprintf(stderr, "calseta: DATABASE_URL is not set\n");
        exit(1);
    }
    PGconn *db = PQconnectdb(c->database_url);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "calseta: cannot connect to the database (DATABASE_URL): %s",
                PQerrorMessage(db));
        PQfinish(db);
        exit(1);
    }
    PQclear(PQexec(db, "SET client_min_messages = warning"));
    return db;
}
