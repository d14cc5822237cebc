/*
 * fernet_decrypt.c - Fernet decryption (see fernet.h): the HMAC is checked in constant time
 * before the ciphertext is touched, and the plaintext goes into locked memory (secmem). Kept
 * apart from fernet.c so that only the programs that read secrets link it.
 */
#include "fernet.h"
#include "fernet_int.h"

#include <stdlib.h>

#include "crypto.h"
#include "secmem.h"

int fernet_decrypt(const struct fernet_key *k, const char *token, uint8_t **pt_out, size_t *n_out)
{
    uint8_t mac[32], *raw = NULL, *pt = NULL;
    size_t n = 0;
    *pt_out = NULL;
    *n_out = 0;
    if (!token || !(raw = fernet_token_decode(token, &n)))
        return -1;
    if (n < MIN_TOKEN || (n - HDR_LEN - MAC_LEN) % 16 != 0 || raw[0] != FERNET_VERSION)
        goto fail;
    size_t body = n - MAC_LEN, clen = body - HDR_LEN;
    crypto_hmac_sha256(k->sign, 16, raw, body, mac);
    if (!crypto_ct_equal(mac, MAC_LEN, raw + body, MAC_LEN))
        goto fail;
    pt = secmem_alloc(clen + 16); /* EVP may want a block of slack */
    int plen = fernet_aes_cbc(0, k->enc, raw + 9, raw + HDR_LEN, clen, pt);
    if (plen < 0)
        goto fail;
    pt[plen] = 0;
    free(raw);
    *pt_out = pt;
    *n_out = (size_t)plen;
    return 0;
fail:
    secmem_free(pt);
    free(raw);
    return -1;
}
