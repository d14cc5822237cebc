/*
 * apikey.c - API key generation, bcrypt hashing/verification (libxcrypt) and the strict
 * Authorization header parser (see apikey.h).
 */
#include "apikey.h"

#include <crypt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "util.h"

void apikey_generate(char out[48], char prefix[9])
{
    uint8_t raw[32];
    memcpy(out, "cai_", 4);
    crypto_random(raw, sizeof raw);
    crypto_b64_encode(raw, sizeof raw, CRYPTO_B64_URL | CRYPTO_B64_NOPAD, out + 4);
    explicit_bzero(raw, sizeof raw);
    memcpy(prefix, out, APIKEY_PREFIX_LEN);
    prefix[APIKEY_PREFIX_LEN] = 0;
}

/* bcrypt via libxcrypt; returns 0 and the 60-char result in out, else -1. `setting` is either
 * a fresh salt string or the stored hash. */
static int bcrypt_run(const char *key, const char *setting, char out[61])
{
    struct crypt_data *cd = xcalloc(1, sizeof *cd); /* ~32 KB: not on the stack */
    int rc = -1;
    const char *r = crypt_rn(key, setting, cd, (int)sizeof *cd);
    if (r && r[0] != '*' && strlen(r) == APIKEY_HASH_LEN) {
        memcpy(out, r, APIKEY_HASH_LEN + 1);
        rc = 0;
    }
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return rc;
}

int apikey_hash(const char *key, int cost, char out[61])
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    uint8_t rnd[16];
    size_t n = key ? strlen(key) : 0;
    out[0] = 0;
    if (n == 0 || n > APIKEY_MAX_TOKEN || cost < 4 || cost > 31)
        return -1;
    crypto_random(rnd, sizeof rnd);
    if (!crypt_gensalt_rn("$2b$", (unsigned long)cost, (const char *)rnd, (int)sizeof rnd, setting,
                          (int)sizeof setting))
        return -1;
    return bcrypt_run(key, setting, out);
}

/* A hash libxcrypt's bcrypt accepts: $2a$/$2b$/$2y$, two-digit cost, 53 salt+hash chars. */
static int hash_shape_ok(const char *h)
{
    if (strlen(h) != APIKEY_HASH_LEN || h[0] != '$' || h[1] != '2' || h[3] != '$' || h[6] != '$')
        return 0;
    if (h[2] != 'a' && h[2] != 'b' && h[2] != 'y')
        return 0;
    if (h[4] < '0' || h[4] > '3' || h[5] < '0' || h[5] > '9')
        return 0;
    int cost = (h[4] - '0') * 10 + (h[5] - '0');
    return cost >= 4 && cost <= 31;
}

int apikey_verify(const char *key, const char *hash)
{
    char got[61];
    if (!hash || !hash_shape_ok(hash))
        return -1;
    if (!key || strlen(key) > APIKEY_MAX_TOKEN)
        return 0;
    if (bcrypt_run(key, hash, got) != 0)
        return -1;
    int eq = crypto_ct_equal(got, APIKEY_HASH_LEN, hash, APIKEY_HASH_LEN);
    explicit_bzero(got, sizeof got);
    return eq;
}

enum apikey_parse apikey_parse_bearer(const char *v, size_t len, char token[73], char prefix[9])
{
    token[0] = 0;
    prefix[0] = 0;
    if (!v || len < 7 || memcmp(v, "Bearer ", 7) != 0)
        return APIKEY_MISSING;
    const char *t = v + 7;
    size_t n = len - 7;
    if (n < APIKEY_PREFIX_LEN || n > APIKEY_MAX_TOKEN || memcmp(t, "cai_", 4) != 0)
        return APIKEY_BAD_FORMAT;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
            return APIKEY_BAD_FORMAT;
    memcpy(token, t, n);
    token[n] = 0;
    memcpy(prefix, t, APIKEY_PREFIX_LEN);
    prefix[APIKEY_PREFIX_LEN] = 0;
    return APIKEY_OK;
}
