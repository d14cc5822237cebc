/*
 * apikey.h - API keys in the original format.
 *
 * A key is "cai_" + base64url(32 random bytes, no padding): 47 characters. Its first 8
 * characters are the key_prefix (stored in clear, for lookup and display); only a bcrypt
 * "$2b$" hash of the full key is stored. bcrypt reads at most 72 bytes, so longer inputs are
 * refused everywhere instead of being truncated or crashing.
 */
#ifndef CALSETA_APIKEY_H
#define CALSETA_APIKEY_H

#include <stddef.h>

#define APIKEY_LEN 47
#define APIKEY_PREFIX_LEN 8
#define APIKEY_MAX_TOKEN 72 /* bcrypt's input limit */
#define APIKEY_HASH_LEN 60
#define APIKEY_DEFAULT_COST 12

enum apikey_parse {
    APIKEY_OK = 0,
    APIKEY_MISSING,    /* header absent or not "Bearer " -> reason missing_header */
    APIKEY_BAD_FORMAT, /* not cai_..., too short, too long, not printable ASCII -> invalid_format */
};

/* A fresh key (47 chars + NUL) and its prefix (8 chars + NUL). */
void apikey_generate(char out[48], char prefix[9]);
/* bcrypt "$2b$" hash of key at the given cost (4..31; the platform uses 12) into out
 * (60 chars + NUL). 0 on success, -1 if the key is empty or longer than 72 bytes, the cost is
 * out of range, or hashing fails. */
int apikey_hash(const char *key, int cost, char out[61]);
/* 1 if key matches hash, 0 if not (including keys over 72 bytes), -1 if hash is not a usable
 * bcrypt hash. The final comparison takes constant time. */
int apikey_verify(const char *key, const char *hash);
/* Strict parser of an Authorization header value v[0..len) (v may be NULL): exactly "Bearer "
 * then a token that starts with "cai_", is 8..72 bytes of printable ASCII (0x21..0x7e).
 * On APIKEY_OK token (NUL-terminated) and prefix (first 8 chars) are filled; otherwise both
 * are set to "". */
enum apikey_parse apikey_parse_bearer(const char *v, size_t len, char token[73], char prefix[9]);

#endif
