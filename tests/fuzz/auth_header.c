/*
 * auth_header.c - libFuzzer target for the authentication header parsers.
 *
 * Feeds arbitrary bytes (copied to a buffer of exactly their size, so any over-read is an ASan
 * report) to apikey_parse_bearer() and crypto_parse_hex_signature(), and as a string to the
 * base64 decoder, fernet_decrypt() and crypto_uuid_valid(). Besides crashes, the harness
 * aborts when a parser's answer disagrees with the definition of what it accepts: an accepted
 * bearer header must be exactly "Bearer " + a 8..72 byte printable "cai_" token; an accepted
 * signature must re-encode to the input's hex digits; decoded base64 must re-encode and decode
 * to the same bytes. Seeds: corpus/auth_header/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "apikey.h"
#include "crypto.h"
#include "fernet.h"
#include "log.h"
#include "secmem.h"

static struct fernet_key fuzz_key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_init("fuzz", 0, LOG_ERROR);
    if (fernet_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", &fuzz_key) != 0)
        abort();
    return 0;
}

/* The definition of an acceptable bearer header, written independently of apikey.c. */
static int bearer_ok(const uint8_t *d, size_t n)
{
    if (n < 7 + 8 || n > 7 + 72 || memcmp(d, "Bearer cai_", 11) != 0)
        return 0;
    for (size_t i = 7; i < n; i++)
        if (d[i] <= ' ' || d[i] >= 0x7f)
            return 0;
    return 1;
}

static void check_bearer(const uint8_t *d, size_t n)
{
    char token[73], prefix[9];
    enum apikey_parse r = apikey_parse_bearer((const char *)d, n, token, prefix);
    if ((r == APIKEY_OK) != bearer_ok(d, n))
        abort();
    if (r == APIKEY_OK) {
        if (strlen(token) != n - 7 || memcmp(token, d + 7, n - 7) != 0 || strlen(prefix) != 8 ||
            memcmp(prefix, token, 8) != 0)
            abort();
    } else {
        if (token[0] || prefix[0])
            abort();
        int bearer = n >= 7 && !memcmp(d, "Bearer ", 7);
        if ((r == APIKEY_MISSING) == bearer)
            abort();
    }
}

static void check_signature(const uint8_t *d, size_t n)
{
    uint8_t sig[32];
    char hex[65];
    if (crypto_parse_hex_signature((const char *)d, n, sig) != 0)
        return;
    size_t off = n == 71 ? 7 : 0;
    if (n != 64 && !(n == 71 && !memcmp(d, "sha256=", 7)))
        abort();
    crypto_hex_encode(sig, 32, hex);
    if (strncasecmp(hex, (const char *)d + off, 64) != 0)
        abort();
}

static void check_base64(const char *s, size_t n)
{
    for (int flags = 0; flags < 8; flags++) {
        uint8_t *out = malloc(crypto_b64_decoded_max(n));
        size_t m = 0;
        if (crypto_b64_decode(s, n, flags, out, &m) == 0) {
            int eflags = flags & (CRYPTO_B64_URL | CRYPTO_B64_NOPAD);
            char *e = malloc(crypto_b64_encoded_len(m, eflags) + 1);
            size_t elen = crypto_b64_encode(out, m, eflags, e);
            uint8_t *back = malloc(crypto_b64_decoded_max(elen));
            size_t m2 = 0;
            if (crypto_b64_decode(e, elen, eflags, back, &m2) != 0 || m2 != m ||
                memcmp(back, out, m) != 0)
                abort();
            free(back);
            free(e);
        }
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *exact = malloc(size ? size : 1);
    memcpy(exact, data, size);
    check_bearer(exact, size);
    check_signature(exact, size);
    free(exact);

    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    size_t len = strlen(s);
    check_base64(s, len);
    uint8_t *pt = NULL;
    size_t ptlen = 0;
    if (fernet_decrypt(&fuzz_key, s, &pt, &ptlen) == 0)
        secmem_free(pt);
    else if (pt)
        abort();
    (void)crypto_uuid_valid(s);
    free(s);
    return 0;
}
