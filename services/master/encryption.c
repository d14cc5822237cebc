/*
 * encryption.c - gen-encryption-key and rotate-encryption-key.
 *
 * Rotation re-encrypts every encrypted column in ONE transaction: a value that does not
 * decrypt under the old key stops the rotation (nothing changes) unless it already decrypts
 * under the new key (a rotation that was interrupted before — impossible in one transaction,
 * but rows written by a process already on the new key are possible), which is counted as
 * "already rotated". --dry-run does all the work and rolls back. Plaintexts live in locked
 * memory and are wiped at once.
 */
#include "audit.h"
#include "config.h"
#include "fernet.h"
#include "master.h"
#include "secmem.h"
#include "util.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_gen_encryption_key(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: calseta gen-encryption-key\n");
        return 2;
    }
    char key[45];
    fernet_generate_key(key);
    printf("%s\n", key);
    explicit_bzero(key, sizeof key);
    return 0;
}

/* One encrypted column: how to read its token and write a new one back. */
struct enc_column {
    const char *table;
    const char *select_sql; /* id, token */
    const char *update_sql; /* $1 id, $2 new token */
};

static const struct enc_column columns[] = {
    {"enrichment_providers",
     "SELECT id, auth_config->>'_encrypted' FROM enrichment_providers "
     "WHERE auth_config ? '_encrypted' FOR UPDATE",
     "UPDATE enrichment_providers SET auth_config = jsonb_build_object('_encrypted', $2::text), "
     "updated_at = now() WHERE id = $1"},
    {"source_integrations",
     "SELECT id, auth_config->>'_encrypted' FROM source_integrations "
     "WHERE auth_config ? '_encrypted' FOR UPDATE",
     "UPDATE source_integrations SET auth_config = jsonb_build_object('_encrypted', $2::text), "
     "updated_at = now() WHERE id = $1"},
    {"agent_registrations",
     "SELECT id, auth_header_value_encrypted FROM agent_registrations "
     "WHERE auth_header_value_encrypted IS NOT NULL FOR UPDATE",
     "UPDATE agent_registrations SET auth_header_value_encrypted = $2, updated_at = now() "
     "WHERE id = $1"},
};

struct counts {
    long rotated, already;
};

/* Returns 0, or -1 with a message on stderr. */
static int rotate_table(PGconn *db, const struct enc_column *col, const struct fernet_key *oldk,
                        const struct fernet_key *newk, struct counts *n)
{
    PGresult *r = PQexec(db, col->select_sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "Error reading %s: %s", col->table, PQerrorMessage(db));
        PQclear(r);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        const char *id = PQgetvalue(r, i, 0);
        const char *token = PQgetvalue(r, i, 1);
        uint8_t *pt = NULL;
        size_t ptlen = 0;
        if (fernet_decrypt(oldk, token, &pt, &ptlen) != 0) {
            if (fernet_decrypt(newk, token, &pt, &ptlen) == 0) {
                secmem_free(pt);
                n->already++;
                continue;
            }
            fprintf(stderr, "Error: %s row id %s does not decrypt with the old key\n",
                    col->table, id);
            rc = -1;
            break;
        }
        char *fresh = NULL;
        int er = fernet_encrypt(newk, pt, ptlen, &fresh);
        secmem_free(pt);
        if (er != 0) {
            fprintf(stderr, "Error: encryption failed\n");
            rc = -1;
            break;
        }
        const char *p[2] = {id, fresh};
        PGresult *u = PQexecParams(db, col->update_sql, 2, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(u) != PGRES_COMMAND_OK) {
            fprintf(stderr, "Error updating %s: %s", col->table, PQerrorMessage(db));
            rc = -1;
        } else {
            n->rotated++;
        }
        PQclear(u);
        free(fresh);
    }
    PQclear(r);
    return rc;
}

int cmd_rotate_encryption_key(int argc, char **argv)
{
    const char *old_s = NULL, *new_s = NULL;
    int dry = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--old-key") && i + 1 < argc)
            old_s = argv[++i];
        else if (!strcmp(argv[i], "--new-key") && i + 1 < argc)
            new_s = argv[++i];
        else if (!strcmp(argv[i], "--dry-run"))
            dry = 1;
        else
            old_s = new_s = NULL, i = argc;
    }
    if (!old_s || !new_s) {
        fprintf(stderr, "usage: calseta rotate-encryption-key --old-key KEY --new-key KEY "
                        "[--dry-run]\n");
        return 2;
    }
    struct fernet_key oldk, newk;
    if (fernet_key_parse(old_s, &oldk) != 0 || fernet_key_parse(new_s, &newk) != 0) {
        fprintf(stderr, "Error: --old-key and --new-key must be Fernet keys (44-char urlsafe "
                        "base64 of 32 bytes; make one with `calseta gen-encryption-key`)\n");
        return 1;
    }
    struct config c;
    master_config(&c, "cli");
    PGconn *db = master_db_connect(&c);
    PQclear(PQexec(db, "BEGIN ISOLATION LEVEL SERIALIZABLE"));
    int rc = 0;
    struct counts n[sizeof columns / sizeof columns[0]];
    memset(n, 0, sizeof n);
    for (size_t i = 0; i < sizeof columns / sizeof columns[0] && rc == 0; i++)
        rc = rotate_table(db, &columns[i], &oldk, &newk, &n[i]);
    if (rc == 0 && !dry) {
        PGresult *r = PQexec(db, "COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "Error: commit failed: %s", PQerrorMessage(db));
            rc = -1;
        }
        PQclear(r);
    } else {
        PQclear(PQexec(db, "ROLLBACK"));
    }
    if (rc == 0) {
        json_t *counts = json_object();
        for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++) {
            printf("%-22s %ld re-encrypted, %ld already under the new key\n", columns[i].table,
                   n[i].rotated, n[i].already);
            json_object_set_new(counts, columns[i].table, json_integer(n[i].rotated));
        }
        printf(dry ? "dry run: nothing was changed\n"
                   : "done: every encrypted column now uses the new key; set ENCRYPTION_KEY to "
                     "it and restart the services\n");
        struct audit_client *ac = audit_client_new(&c, "cli", NULL);
        audit_emit(ac, "encryption_key_rotated", NULL, NULL, NULL,
                   json_pack("{s:b,s:o}", "dry_run", dry, "rows", counts));
        audit_client_flush(ac, 1500);
        audit_client_free(ac);
    }
    explicit_bzero(&oldk, sizeof oldk);
    explicit_bzero(&newk, sizeof newk);
    PQfinish(db);
    config_destroy(&c);
    return rc == 0 ? 0 : 1;
}
