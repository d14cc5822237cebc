/* temporary: sub-commands not yet written (lead is writing them) */
#include "master.h"
int cmd_up(int argc, char **argv){(void)argc;(void)argv;return 1;}
int cmd_create_api_key(int argc, char **argv){(void)argc;(void)argv;return 1;}
int cmd_list_api_keys(int argc, char **argv){(void)argc;(void)argv;return 1;}
int cmd_revoke_api_key(int argc, char **argv){(void)argc;(void)argv;return 1;}
int cmd_gen_encryption_key(int argc, char **argv){(void)argc;(void)argv;return 1;}
int cmd_rotate_encryption_key(int argc, char **argv){(void)argc;(void)argv;return 1;}
