/*
 * fernet.c - Fernet keys and encryption (see fernet.h) on OpenSSL's EVP API. Decryption is in
 * fernet_decrypt.c, so that a program that only encrypts (the intake stores secrets it is
 * given and never reads one back) does not link it.
 */
#include "fernet.h"
#include "fernet_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "crypto.h"
#include "util.h"

int fernet_key_parse(const char *b64, struct fernet_key *out)
{
    uint8_t raw[36];
    size_t n = 0;
    if (!b64 || strlen(b64) != 44 || crypto_b64_decode(b64, 44, CRYPTO_B64_URL, raw, &n) != 0 ||
        n != 32) {
        explicit_bzero(raw, sizeof raw);
        return -1;
    }
    memcpy(out->sign, raw, 16);
    memcpy(out->enc, raw + 16, 16);
    explicit_bzero(raw, sizeof raw);
    return 0;
}

void fernet_generate_key(char out[45])
{
    uint8_t raw[32];
    crypto_random(raw, sizeof raw);
    crypto_b64_encode(raw, sizeof raw, CRYPTO_B64_URL, out);
    explicit_bzero(raw, sizeof raw);
}

int fernet_aes_cbc(int enc, const uint8_t key[16], const uint8_t iv[16], const uint8_t *in,
                   size_t n, uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, fin = 0, rc = -1;
    if (!c || n > (size_t)INT32_MAX - 32)
        goto done;
    if (EVP_CipherInit_ex(c, EVP_aes_128_cbc(), NULL, key, iv, enc) != 1 ||
        EVP_CipherUpdate(c, out, &len, in, (int)n) != 1 ||
        EVP_CipherFinal_ex(c, out + len, &fin) != 1)
        goto done;
    rc = len + fin;
done:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int fernet_encrypt_at(const struct fernet_key *k, const void *pt, size_t n, uint64_t ts,
                      const uint8_t iv[16], char **token_out)
{
    *token_out = NULL;
    if (n > (size_t)INT32_MAX - 64)
        return -1;
    size_t cap = HDR_LEN + n + 16 + MAC_LEN;
    uint8_t *raw = xmalloc(cap);
    raw[0] = FERNET_VERSION;
    for (int i = 0; i < 8; i++)
        raw[1 + i] = (uint8_t)(ts >> (56 - 8 * i));
    memcpy(raw + 9, iv, 16);
    int clen = fernet_aes_cbc(1, k->enc, iv, pt ? pt : (const void *)"", n, raw + HDR_LEN);
    if (clen < 0) {
        free(raw);
        return -1;
    }
    size_t body = HDR_LEN + (size_t)clen;
    crypto_hmac_sha256(k->sign, 16, raw, body, raw + body);
    char *tok = xmalloc(crypto_b64_encoded_len(body + MAC_LEN, CRYPTO_B64_URL) + 1);
    crypto_b64_encode(raw, body + MAC_LEN, CRYPTO_B64_URL, tok);
    free(raw);
    *token_out = tok;
    return 0;
}

int fernet_encrypt(const struct fernet_key *k, const void *pt, size_t n, char **token_out)
{
    uint8_t iv[16];
    crypto_random(iv, sizeof iv);
    time_t now = time(NULL);
    return fernet_encrypt_at(k, pt, n, now > 0 ? (uint64_t)now : 0, iv, token_out);
}

uint8_t *fernet_token_decode(const char *token, size_t *n)
{
    size_t len = strlen(token);
    uint8_t *raw = xmalloc(crypto_b64_decoded_max(len));
    if (crypto_b64_decode(token, len, CRYPTO_B64_URL, raw, n) != 0) {
        free(raw);
        return NULL;
    }
    return raw;
}

int fernet_token_timestamp(const char *token, uint64_t *ts)
{
    size_t n = 0;
    uint8_t *raw = token ? fernet_token_decode(token, &n) : NULL;
    if (!raw)
        return -1;
    int rc = -1;
    if (n >= 9 && raw[0] == FERNET_VERSION) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | raw[1 + i];
        *ts = v;
        rc = 0;
    }
    free(raw);
    return rc;
}
