/*
 * siphash.c - SipHash-c-d (Aumasson and Bernstein) over a little-endian 64-bit state, written
 * from the algorithm's description; see siphash.h.
 */
#include "siphash.h"
#include "log.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

struct sipstate {
    uint64_t v0, v1, v2, v3;
};

/* The rounds and the word loads are inlined into each variant with its round counts as
 * constants: keys of JSON objects and indicator values are hashed per alert, and calling a
 * round and a byte-by-byte load per word made the hash a few percent of the intake's CPU. */
static inline __attribute__((always_inline)) void sipround(struct sipstate *s)
{
    s->v0 += s->v1;
    s->v1 = ROTL(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = ROTL(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = ROTL(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = ROTL(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = ROTL(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = ROTL(s->v2, 32);
}

/* The message word at p, read as little-endian whatever the host. */
static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return le64toh(w);
}

static inline __attribute__((always_inline)) void compress(struct sipstate *s, uint64_t m,
                                                            int rounds)
{
    s->v3 ^= m;
    for (int i = 0; i < rounds; i++)
        sipround(s);
    s->v0 ^= m;
}

static inline __attribute__((always_inline)) uint64_t
siphash_cd(const struct siphash_key *key, const void *data, size_t len, int c, int d)
{
    const unsigned char *p = data;
    struct sipstate s = {
        key->k0 ^ 0x736f6d6570736575ull,
        key->k1 ^ 0x646f72616e646f6dull,
        key->k0 ^ 0x6c7967656e657261ull,
        key->k1 ^ 0x7465646279746573ull,
    };
    size_t n = len;
    for (; n >= 8; p += 8, n -= 8)
        compress(&s, load_le64(p), c);
    /* The last word: the remaining bytes, and the length's low byte at the top. A message of
     * eight bytes or more has its tail read as the word that ends it, shifted; a shorter one
     * byte by byte. Either way no call: copying the tail with memcpy (a call, its size unknown
     * at compile time) was a quarter of the hash of a JSON key. */
    uint64_t last = (uint64_t)len << 56;
    if (len >= 8) {
        if (n)
            last |= load_le64(p + n - 8) >> (64 - 8 * n);
    } else {
        switch (n) {
        case 7: last |= (uint64_t)p[6] << 48; /* fall through */
        case 6: last |= (uint64_t)p[5] << 40; /* fall through */
        case 5: last |= (uint64_t)p[4] << 32; /* fall through */
        case 4: last |= (uint64_t)p[3] << 24; /* fall through */
        case 3: last |= (uint64_t)p[2] << 16; /* fall through */
        case 2: last |= (uint64_t)p[1] << 8;  /* fall through */
        case 1: last |= (uint64_t)p[0];       /* fall through */
        default: break;
        }
    }
    compress(&s, last, c);
    s.v2 ^= 0xff;
    for (int i = 0; i < d; i++)
        sipround(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t siphash13(const struct siphash_key *key, const void *data, size_t len)
{
    return siphash_cd(key, data, len, 1, 3);
}

uint64_t siphash24(const struct siphash_key *key, const void *data, size_t len)
{
    return siphash_cd(key, data, len, 2, 4);
}

void siphash_random_key(struct siphash_key *key)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = getrandom(b + got, sizeof b - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            msg_fatal("getrandom: %s", r < 0 ? strerror(errno) : "no bytes");
        got += (size_t)r;
    }
    key->k0 = load_le64(b);
    key->k1 = load_le64(b + 8);
    memset(b, 0, sizeof b);
}

static struct siphash_key process_key;
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

static void process_key_init(void)
{
    siphash_random_key(&process_key);
}

const struct siphash_key *siphash_process_key(void)
{
    pthread_once(&process_key_once, process_key_init);
    return &process_key;
}
