/*
 * master.h - the sub-commands of the `calseta` program.
 */
#ifndef CALSETA_MASTER_H
#define CALSETA_MASTER_H

int cmd_up(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_create_api_key(int argc, char **argv);
int cmd_list_api_keys(int argc, char **argv);
int cmd_revoke_api_key(int argc, char **argv);
int cmd_gen_encryption_key(int argc, char **argv);
int cmd_gen_curve_keys(int argc, char **argv);
int cmd_rotate_encryption_key(int argc, char **argv);

/* Loads the configuration and logging for a CLI command; exits with a message on error. */
struct config;
void master_config(struct config *c, const char *service);
/* Opens a blocking libpq connection for CLI use (never used on an event loop). */
struct pg_conn;
typedef struct pg_conn PGconn;
PGconn *master_db_connect(const struct config *c);

#endif
