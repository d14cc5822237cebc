/*
 * fernet.h - Fernet tokens, byte-compatible with Python's cryptography.fernet.
 *
 * Key: urlsafe base64 (44 chars, padded) of 32 bytes; the first 16 sign (HMAC-SHA256), the
 * last 16 encrypt (AES-128-CBC). Token: urlsafe base64 with padding of
 *   0x80 | timestamp (8 bytes, big-endian) | IV (16) | ciphertext (PKCS7) | HMAC (32)
 * where the HMAC covers everything before it. Decryption checks the HMAC, in constant time,
 * before touching the ciphertext; there is no TTL (as in the original).
 */
#ifndef CALSETA_FERNET_H
#define CALSETA_FERNET_H

#include <stddef.h>
#include <stdint.h>

struct fernet_key {
    uint8_t sign[16];
    uint8_t enc[16];
};

/* 0 and *out filled if b64 is 44 chars of padded urlsafe base64 decoding to 32 bytes; else -1. */
int fernet_key_parse(const char *b64, struct fernet_key *out);
/* A fresh random key in its text form (44 chars + NUL). */
void fernet_generate_key(char out[45]);
/* Encrypts pt[0..n) with the current time and a random IV. *token_out is malloc'ed
 * (NUL-terminated; free() it). 0 on success, -1 on an OpenSSL failure. */
int fernet_encrypt(const struct fernet_key *k, const void *pt, size_t n, char **token_out);
/* The same with a given timestamp and IV (for test vectors). */
int fernet_encrypt_at(const struct fernet_key *k, const void *pt, size_t n, uint64_t ts,
                      const uint8_t iv[16], char **token_out);
/* Decrypts token into *pt_out: secmem (locked) memory of *n_out bytes plus a NUL terminator
 * not counted in *n_out; release it with secmem_free(). 0 on success; -1 for anything wrong
 * (bad base64, truncated, bad version, bad HMAC / wrong key, bad padding), with *pt_out NULL. */
int fernet_decrypt(const struct fernet_key *k, const char *token, uint8_t **pt_out, size_t *n_out);
/* The timestamp field of a token (no authentication); 0 and *ts set, or -1. */
int fernet_token_timestamp(const char *token, uint64_t *ts);

#endif
