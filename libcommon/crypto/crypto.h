/*
 * crypto.h - small cryptographic helpers on top of OpenSSL.
 *
 * Offers: random bytes (fatal on failure, or a failure the caller handles), base64 (standard
 * and urlsafe alphabets, with or without padding; the decoder rejects any byte outside the
 * alphabet), lowercase hex, SHA-256, MD5 (alert fingerprints only), HMAC-SHA256, a
 * constant-time comparison, UUIDv4 generation and validation, the UUIDv7 layout, lease owner
 * names, and the parser of webhook signature headers ("sha256=" + 64 hex digits).
 */
#ifndef CALSETA_CRYPTO_H
#define CALSETA_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

/* Random bytes, two policies. crypto_random() is for a caller with nothing safe to do without
 * them (keys, secrets, request ids): a generator that fails stops the process, since OpenSSL's
 * generator only fails when the system has no entropy to seed it. crypto_random_try() is for a
 * caller with a fallback that loses nothing (the intake's batch uuids: the database draws them
 * instead): it returns -1, logs nothing and leaves OpenSSL's error queue clean, and the caller
 * decides how loudly to say so. */

/* Fills buf with n cryptographically secure random bytes; exits via msg_fatal on failure. */
void crypto_random(void *buf, size_t n);
/* Fills buf with n cryptographically secure random bytes: 0, or -1 when the generator fails
 * (buf's contents are then undefined). */
int crypto_random_try(void *buf, size_t n);

/* Base64 flags. Encoding: URL picks "-_" instead of "+/", NOPAD leaves out the '=' padding.
 * Decoding: URL picks the alphabet; NOPAD means padding is forbidden; PADOPT means padding may
 * be present or absent; with neither, the input must be padded to a multiple of 4. */
enum {
    CRYPTO_B64_STD = 0,
    CRYPTO_B64_URL = 1,
    CRYPTO_B64_NOPAD = 2,
    CRYPTO_B64_PADOPT = 4,
};

/* Length of the encoding of n bytes (without the terminating NUL). */
size_t crypto_b64_encoded_len(size_t n, int flags);
/* Largest possible decoded size of an encoding of len characters. */
size_t crypto_b64_decoded_max(size_t len);
/* Writes the encoding of in[0..n) and a NUL to out (crypto_b64_encoded_len()+1 bytes);
 * returns the encoded length. */
size_t crypto_b64_encode(const void *in, size_t n, int flags, char *out);
/* Decodes in[0..len) into out (crypto_b64_decoded_max(len) bytes). Returns 0 and sets *outlen,
 * or -1 on any invalid character, bad padding or impossible length. */
int crypto_b64_decode(const char *in, size_t len, int flags, uint8_t *out, size_t *outlen);

/* Lowercase hex of in[0..n) plus NUL into out (2n+1 bytes). */
void crypto_hex_encode(const void *in, size_t n, char *out);

void crypto_sha256(const void *p, size_t n, uint8_t out[32]);
void crypto_sha256_hex(const void *p, size_t n, char out[65]);
/* MD5 is used only for the original-compatible alert fingerprint, never for security. */
void crypto_md5_hex(const void *p, size_t n, char out[33]);
/* Fetches MD5 now; where the configured providers refuse it (FIPS) the process stops with a
 * message. A process that fingerprints alerts calls it at start, before it takes requests, so
 * such a host fails at once instead of at its first alert. */
void crypto_md5_require(void);
void crypto_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t n, uint8_t out[32]);
void crypto_hmac_sha256_hex(const void *key, size_t keylen, const void *msg, size_t n,
                            char out[65]);

/* 1 if the two byte strings are equal, 0 otherwise. The time taken depends on the lengths
 * only, never on the contents (a length mismatch returns at once). */
int crypto_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* A random (version 4) UUID, lowercase and hyphenated: 36 characters plus NUL. Cheap enough
 * for one per request (per-thread pool of random bytes, dropped in a forked child). */
void crypto_uuid4(char out[37]);
/* 1 if s is exactly 36 characters of the form 8-4-4-4-12 hex digits (either case), else 0. */
int crypto_uuid_valid(const char *s);

/* n version-7 UUIDs in binary (RFC 9562) into out: unix_ms's low 48 bits big-endian, the
 * version, 12 random bits, the variant (binary 10), 62 random bits. The random bits of out[i]
 * are taken from rand[CRYPTO_UUID7_RANDOM * i] on (10 bytes, 74 of their 80 bits kept), so
 * one draw of CRYPTO_UUID7_RANDOM * n bytes makes them all. Sorted by their bytes they are in
 * the order of their milliseconds, which keeps an index of them appending at its right edge. */
#define CRYPTO_UUID7_RANDOM 10
void crypto_uuid7_fill(unsigned char (*out)[16], size_t n, uint64_t unix_ms,
                       const unsigned char *rand);

/* The name a process puts on the rows it leases, unique to this process start:
 * "<prefix>:<host>:<pid>:<8 hex digits>" ("<host>:<pid>:<8 hex digits>" when prefix is NULL),
 * so a restarted process (same host, maybe the same pid) never takes another's lease for its
 * own. 128 bytes always hold it whole (host names are cut at 63 characters). */
void crypto_owner_id(char *out, size_t outlen, const char *prefix);

/* Parses a webhook signature header value hdr[0..len): an optional "sha256=" prefix followed
 * by exactly 64 hex digits (either case) and nothing else. 0 and out filled, or -1. */
int crypto_parse_hex_signature(const char *hdr, size_t len, uint8_t out[32]);

#endif
