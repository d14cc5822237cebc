/*
 * migrate.c - `calseta migrate`: apply migrations/NNNN_name.sql in order.
 *
 * Each file runs in its own transaction together with its row in schema_migrations, so a
 * failed migration leaves nothing behind. A session advisory lock keeps two migrators (two
 * hosts starting at once) from racing. Applied versions are skipped, so running it twice is a
 * no-op.
 */
#include "master.h"
#include "config.h"
#include "log.h"
#include "settings.h"
#include "util.h"
#include "settings_table.h"

#include <ctype.h>
#include <dirent.h>
#include <libgen.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int is_migration_name(const char *n)
{
    size_t len = strlen(n);
    if (len < 10 || strcmp(n + len - 4, ".sql"))
        return 0;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)n[i]))
            return 0;
    return n[4] == '_';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The migrations folder: --dir, CALSETA_MIGRATIONS_DIR, or next to the installed binary. */
static char *find_dir(const struct config *c, const char *opt)
{
    if (opt)
        return xstrdup(opt);
    const char *env = setting_value(c->settings, "CALSETA_MIGRATIONS_DIR");
    if (env)
        return xstrdup(env);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *dir = dirname(exe);
        const char *cands[] = {"../../migrations", "../share/calseta/migrations", "../migrations"};
        for (size_t i = 0; i < 3; i++) {
            char *p = xasprintf("%s/%s", dir, cands[i]);
            if (access(p, R_OK) == 0)
                return p;
            free(p);
        }
    }
    return xstrdup("migrations");
}

static int exec_ok(PGconn *db, const char *sql, const char *what)
{
    PGresult *r = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "calseta migrate: %s failed: %s", what, PQerrorMessage(db));
    PQclear(r);
    return ok;
}

static int applied(PGconn *db, const char *version)
{
    const char *p[1] = {version};
    PGresult *r =
        PQexecParams(db, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, p, NULL,
                     NULL, 0);
    int yes = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
    PQclear(r);
    return yes;
}

static int apply_one(PGconn *db, const char *dir, const char *name)
{
    char version[5];
    memcpy(version, name, 4);
    version[4] = 0;
    if (applied(db, version))
        return 0;
    char *path = xasprintf("%s/%s", dir, name);
    char *sql = file_read(path, NULL);
    free(path);
    if (!sql) {
        fprintf(stderr, "calseta migrate: cannot read %s/%s\n", dir, name);
        return -1;
    }
    int rc = -1;
    if (!exec_ok(db, "BEGIN", "BEGIN"))
        goto out;
    if (!exec_ok(db, sql, name)) {
        PQclear(PQexec(db, "ROLLBACK"));
        goto out;
    }
    const char *p[2] = {version, name};
    PGresult *r = PQexecParams(db, "INSERT INTO schema_migrations(version, name) VALUES ($1, $2)",
                               2, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok || !exec_ok(db, "COMMIT", "COMMIT")) {
        PQclear(PQexec(db, "ROLLBACK"));
        goto out;
    }
    printf("applied %s\n", name);
    rc = 1;
out:
    free(sql);
    return rc;
}

int cmd_migrate(int argc, char **argv)
{
    const char *dir_opt = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir_opt = argv[++i];
        else {
            fprintf(stderr, "usage: calseta migrate [--dir DIR]\n");
            return 2;
        }
    }
    struct config c;
    master_config(&c, "migrate");
    char *dir = find_dir(&c, dir_opt);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "calseta migrate: cannot open migrations folder %s\n", dir);
        free(dir);
        config_destroy(&c);
        return 1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_migration_name(e->d_name))
            continue;
        names = xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);

    PGconn *db = master_db_connect(&c);
    int rc = 0, count = 0;
    if (!exec_ok(db, "SELECT pg_advisory_lock(727274001)", "lock") ||
        !exec_ok(db,
                 "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, "
                 "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                 "create schema_migrations")) {
        rc = 1;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        int r = apply_one(db, dir, names[i]);
        if (r < 0)
            rc = 1;
        else
            count += r;
    }
    if (rc == 0)
        printf("migrations up to date (%d applied now, %zu known)\n", count, n);
    PQclear(PQexec(db, "SELECT pg_advisory_unlock(727274001)"));
    PQfinish(db);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(dir);
    config_destroy(&c);
    return rc;
}
