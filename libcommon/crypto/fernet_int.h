/*
 * fernet_int.h - what fernet.c shares with fernet_decrypt.c: the token layout, AES-CBC and the
 * token's base64. Not for use outside libcommon/crypto.
 */
#ifndef CALSETA_FERNET_INT_H
#define CALSETA_FERNET_INT_H

#include <stddef.h>
#include <stdint.h>

#define FERNET_VERSION 0x80
#define HDR_LEN 25 /* version + timestamp + IV */
#define MAC_LEN 32
#define MIN_TOKEN (HDR_LEN + 16 + MAC_LEN)

/* AES-128-CBC with PKCS7 padding (enc 1 encrypts, 0 decrypts); the output length or -1. */
int fernet_aes_cbc(int enc, const uint8_t key[16], const uint8_t iv[16], const uint8_t *in,
                   size_t n, uint8_t *out);
/* Decodes a token's base64 into a fresh buffer; NULL if it is not valid base64. */
uint8_t *fernet_token_decode(const char *token, size_t *n);

#endif
