/*
 * keys.c - API key sub-commands: create-api-key, list-api-keys, revoke-api-key.
 *
 * The full key is printed once by create-api-key and never again; list shows prefixes only.
 * Each change is audited like its REST twin.
 */
#include "apikey.h"
#include "audit.h"
#include "config.h"
#include "master.h"
#include "scopes.h"
#include "util.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends the comma- or space-separated values that follow option i to arr. */
static int take_values(int argc, char **argv, int *i, json_t *arr)
{
    int n = 0;
    while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
        char *copy = xstrdup(argv[++*i]);
        char *save = NULL;
        for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            json_array_append_new(arr, json_string(t));
            n++;
        }
        free(copy);
    }
    return n;
}

static void usage_create(void)
{
    fprintf(stderr, "usage: calseta create-api-key --name NAME --scopes SCOPE[,SCOPE...]\n"
                    "       [--allowed-sources SRC ...] [--expires-at ISO8601]\n"
                    "       [--expires-in SECONDS] [--rate-limit-per-minute N]\n"
                    "       [--key-type human|agent]\n"
                    "The key is the last line of stdout; everything else goes to stderr.\n");
}

int cmd_create_api_key(int argc, char **argv)
{
    const char *name = NULL, *expires_at = NULL, *expires_in = NULL, *rlpm = NULL;
    const char *key_type = "human";
    json_t *scopes = json_array(), *sources = NULL;
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else if (!strcmp(argv[i], "--scopes"))
            take_values(argc, argv, &i, scopes);
        else if (!strcmp(argv[i], "--allowed-sources")) {
            if (!sources)
                sources = json_array();
            take_values(argc, argv, &i, sources);
        } else if (!strcmp(argv[i], "--expires-at") && i + 1 < argc)
            expires_at = argv[++i];
        else if ((!strcmp(argv[i], "--expires-in-seconds") || !strcmp(argv[i], "--expires-in")) &&
                 i + 1 < argc)
            expires_in = argv[++i];
        else if (!strcmp(argv[i], "--rate-limit-per-minute") && i + 1 < argc)
            rlpm = argv[++i];
        else if (!strcmp(argv[i], "--key-type") && i + 1 < argc)
            key_type = argv[++i];
        else {
            usage_create();
            goto out;
        }
    }
    if (!name || !*name || json_array_size(scopes) == 0) {
        usage_create();
        goto out;
    }
    if (strcmp(key_type, "human") != 0 && strcmp(key_type, "agent") != 0) {
        fprintf(stderr, "Error: --key-type is human or agent\n");
        goto out;
    }
    size_t k;
    json_t *v;
    json_array_foreach(scopes, k, v)
    {
        if (!scope_known(json_string_value(v))) {
            fprintf(stderr, "Error: invalid scope(s): %s\n", json_string_value(v));
            goto out;
        }
    }
    if (sources && json_array_size(sources) == 0) {
        json_decref(sources);
        sources = NULL; /* flag with no values = unrestricted */
    }
    long long tmp;
    if ((expires_in && parse_ll(expires_in, 1, 100LL * 365 * 86400, &tmp)) ||
        (rlpm && parse_ll(rlpm, 1, 100000000, &tmp))) {
        fprintf(stderr, "Error: --expires-in-seconds and --rate-limit-per-minute take positive "
                        "integers\n");
        goto out;
    }

    struct config c;
    master_config(&c, "cli");
    PGconn *db = master_db_connect(&c);
    char key[48], prefix[9], hash[61];
    PGresult *r = NULL;
    for (int attempt = 0; attempt < 4; attempt++) {
        apikey_generate(key, prefix);
        if (apikey_hash(key, 12, hash) != 0) {
            fprintf(stderr, "Error: bcrypt failed\n");
            break;
        }
        char *sj = json_dumps(scopes, JSON_COMPACT);
        char *srcj = sources ? json_dumps(sources, JSON_COMPACT) : NULL;
        const char *p[9] = {name, prefix, hash, sj, expires_at, srcj, expires_in, rlpm, key_type};
        r = PQexecParams(
            db,
            "INSERT INTO api_keys AS k (name, key_prefix, key_hash, scopes, expires_at, "
            "allowed_sources, rate_limit_per_minute, key_type) VALUES ($1, $2, $3, "
            "ARRAY(SELECT json_array_elements_text($4::json)), "
            "CASE WHEN $7::bigint IS NOT NULL THEN now() + make_interval(secs => $7::bigint) "
            "ELSE $5::timestamptz END, "
            "CASE WHEN $6::json IS NULL THEN NULL "
            "ELSE ARRAY(SELECT json_array_elements_text($6::json)) END, $8::int, $9) "
            "RETURNING k.uuid, calseta_ts(k.expires_at)",
            9, NULL, p, NULL, NULL, 0);
        free(sj);
        free(srcj);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (PQresultStatus(r) == PGRES_TUPLES_OK || !st || strcmp(st, "23505"))
            break;
        PQclear(r);
        r = NULL;
    }
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
        char *sj = json_dumps(scopes, JSON_COMPACT);
        fprintf(stderr, "Name:    %s\nUUID:    %s\nPrefix:  %s\nType:    %s\nScopes:  %s\n", name,
                PQgetvalue(r, 0, 0), prefix, key_type, sj);
        if (sources) {
            char *srcj = json_dumps(sources, JSON_COMPACT);
            fprintf(stderr, "Sources: %s\n", srcj);
            free(srcj);
        }
        if (!PQgetisnull(r, 0, 1))
            fprintf(stderr, "Expires: %s\n", PQgetvalue(r, 0, 1));
        fprintf(stderr, "Save this key now. It will not be shown again.\n");
        printf("%s\n", key); /* the only line on stdout */
        fflush(stdout);
        free(sj);
        struct audit_client *ac = audit_client_new(&c, "cli", NULL);
        audit_emit(ac, "api_key_created", NULL, NULL, NULL,
                   json_pack("{s:s,s:s,s:O,s:s}", "key_prefix", prefix, "name", name, "scopes",
                             scopes, "via", "cli"));
        audit_client_flush(ac, 1500);
        audit_client_free(ac);
        rc = 0;
    } else {
        fprintf(stderr, "Error: %s", r ? PQresultErrorMessage(r) : "could not create the key\n");
    }
    explicit_bzero(key, sizeof key);
    PQclear(r);
    PQfinish(db);
    config_destroy(&c);
out:
    json_decref(scopes);
    json_decref(sources);
    return rc;
}

int cmd_list_api_keys(int argc, char **argv)
{
    int all = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--all"))
            all = 1;
        else {
            fprintf(stderr, "usage: calseta list-api-keys [--all]\n");
            return 2;
        }
    }
    struct config c;
    master_config(&c, "cli");
    PGconn *db = master_db_connect(&c);
    PGresult *r = PQexec(db, all ? "SELECT key_prefix, uuid, name, array_to_string(scopes, ','), "
                                   "is_active, coalesce(calseta_ts(expires_at), '-'), "
                                   "coalesce(calseta_ts(last_used_at), '-') FROM api_keys "
                                   "ORDER BY created_at DESC"
                                 : "SELECT key_prefix, uuid, name, array_to_string(scopes, ','), "
                                   "is_active, coalesce(calseta_ts(expires_at), '-'), "
                                   "coalesce(calseta_ts(last_used_at), '-') FROM api_keys "
                                   "WHERE is_active ORDER BY created_at DESC");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "Error: %s", PQerrorMessage(db));
        rc = 1;
    } else {
        printf("%-9s %-36s %-6s %-27s %-27s %-20s %s\n", "PREFIX", "UUID", "ACTIVE", "EXPIRES",
               "LAST USED", "NAME", "SCOPES");
        for (int i = 0; i < PQntuples(r); i++)
            printf("%-9s %-36s %-6s %-27s %-27s %-20s %s\n", PQgetvalue(r, i, 0),
                   PQgetvalue(r, i, 1), PQgetvalue(r, i, 4)[0] == 't' ? "yes" : "no",
                   PQgetvalue(r, i, 5), PQgetvalue(r, i, 6), PQgetvalue(r, i, 2),
                   PQgetvalue(r, i, 3));
    }
    PQclear(r);
    PQfinish(db);
    config_destroy(&c);
    return rc;
}

int cmd_revoke_api_key(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: calseta revoke-api-key PREFIX|UUID\n");
        return 2;
    }
    struct config c;
    master_config(&c, "cli");
    PGconn *db = master_db_connect(&c);
    const char *p[1] = {argv[1]};
    PGresult *r = PQexecParams(db,
                               "UPDATE api_keys SET is_active = false, updated_at = now() "
                               "WHERE key_prefix = $1 OR uuid::text = lower($1) "
                               "RETURNING key_prefix, uuid",
                               1, NULL, p, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "Error: %s", PQerrorMessage(db));
        rc = 1;
    } else if (PQntuples(r) == 0) {
        fprintf(stderr, "Error: no API key with prefix or uuid %s\n", argv[1]);
        rc = 1;
    } else {
        printf("revoked %s (%s)\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
        struct audit_client *ac = audit_client_new(&c, "cli", NULL);
        audit_emit(ac, "api_key_revoked", NULL, NULL, NULL,
                   json_pack("{s:s,s:s}", "key_prefix", PQgetvalue(r, 0, 0), "via", "cli"));
        audit_client_flush(ac, 1500);
        audit_client_free(ac);
    }
    PQclear(r);
    PQfinish(db);
    config_destroy(&c);
    return rc;
}
