/*
 * common.c - configuration and database helpers shared by the CLI sub-commands.
 */
#include "master.h"
#include "config.h"
#include "log.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

void master_config(struct config *c, const char *service)
{
    char err[512];
    if (config_load(c, err, sizeof err) != 0) {
        fprintf(stderr, "calseta: configuration error: %s\n", err);
        exit(1);
    }
    config_init_log(c, service);
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
