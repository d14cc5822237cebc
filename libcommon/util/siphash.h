/*
 * siphash.h - SipHash, a keyed pseudo-random function for hash tables whose keys come from
 * outside: without the 128-bit key nobody can choose inputs that collide.
 *
 * siphash13() is SipHash-1-3 (one compression round, three finalisation rounds), the variant
 * hash tables use for speed; siphash24() is the original SipHash-2-4, kept so the shared rounds
 * can be checked against the published test vectors.
 */
#ifndef CALSETA_SIPHASH_H
#define CALSETA_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

struct siphash_key {
    uint64_t k0, k1;
};

uint64_t siphash13(const struct siphash_key *key, const void *data, size_t len);
uint64_t siphash24(const struct siphash_key *key, const void *data, size_t len);

/* Fills *key from getrandom(); fatal when the kernel gives no randomness (a guessable key
 * would give back the flooding the keyed hash exists to stop). */
void siphash_random_key(struct siphash_key *key);

/* The process's one hash-table key, drawn on first use (thread-safe). A service calls it once
 * at startup, so a kernel without randomness stops it there and not in the middle of a
 * request. */
const struct siphash_key *siphash_process_key(void);

#endif
