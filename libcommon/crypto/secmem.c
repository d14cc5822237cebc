/*
 * secmem.c - locked memory for decrypted secrets (see secmem.h).
 *
 * Layout of one allocation: [struct secmem_hdr | user bytes | rest of the last page], one
 * private anonymous mapping per allocation, so unlocking it can never unlock another secret's
 * page (mlock does not nest).
 *
 * A process that decrypts often (an enrichment worker: once per job and provider) may keep a
 * few wiped one-page regions for reuse (secmem_keep): mapping, locking, unlocking and
 * unmapping a page each time cost more than the decryption, and every munmap of a
 * multi-threaded process interrupts the other cores to flush their TLBs. A kept region is
 * wiped in full when freed, stays locked and excluded from core dumps, and is handed out
 * again zero-filled.
 */
#include "secmem.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

#define SECMEM_MAGIC 0x5345434d454d2121ull /* "SECMEM!!" */

struct secmem_hdr {
    uint64_t magic;
    size_t size;     /* bytes asked for */
    size_t map_size; /* bytes mapped, a whole number of pages */
    int locked;
    int pad;
};

/* wiped one-page regions kept for reuse (secmem_keep), linked through their first bytes */
struct kept {
    struct kept *next;
    int locked;
};
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept *kept_head;
static size_t kept_n, kept_max;

void secmem_keep(size_t regions)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    pthread_mutex_lock(&kept_lock);
    kept_max = regions;
    while (kept_n > kept_max) {
        struct kept *k = kept_head;
        kept_head = k->next;
        kept_n--;
        int locked = k->locked;
        explicit_bzero(k, sizeof *k);
        if (locked)
            (void)munlock(k, page);
        if (munmap(k, page) != 0)
            msg_fatal("secmem: munmap failed: %s", strerror(errno));
    }
    pthread_mutex_unlock(&kept_lock);
}

static struct secmem_hdr *kept_take(size_t total)
{
    struct kept *k = NULL;
    if (total != (size_t)sysconf(_SC_PAGESIZE))
        return NULL;
    pthread_mutex_lock(&kept_lock);
    if ((k = kept_head)) {
        kept_head = k->next;
        kept_n--;
    }
    pthread_mutex_unlock(&kept_lock);
    if (!k)
        return NULL;
    int locked = k->locked;
    explicit_bzero(k, sizeof *k);
    struct secmem_hdr *h = (struct secmem_hdr *)k;
    h->map_size = total;
    h->locked = locked;
    return h;
}

/* 1 if h (wiped) was kept for reuse */
static int kept_put(struct secmem_hdr *h, size_t total, int locked)
{
    if (total != (size_t)sysconf(_SC_PAGESIZE))
        return 0;
    int kept = 0;
    pthread_mutex_lock(&kept_lock);
    if (kept_n < kept_max) {
        struct kept *k = (struct kept *)h;
        k->locked = locked;
        k->next = kept_head;
        kept_head = k;
        kept_n++;
        kept = 1;
    }
    pthread_mutex_unlock(&kept_lock);
    return kept;
}

static struct secmem_hdr *hdr_of(const void *p)
{
    struct secmem_hdr *h = (struct secmem_hdr *)((uintptr_t)p - sizeof(struct secmem_hdr));
    if (h->magic != SECMEM_MAGIC)
        msg_fatal("secmem: pointer %p was not allocated by secmem_alloc", p);
    return h;
}

void *secmem_alloc(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (n > SIZE_MAX - sizeof(struct secmem_hdr) - page)
        msg_fatal("secmem: allocation of %zu bytes too large", n);
    size_t total = (sizeof(struct secmem_hdr) + n + page - 1) / page * page;
    struct secmem_hdr *k = kept_take(total);
    if (k) {
        k->magic = SECMEM_MAGIC;
        k->size = n;
        return k + 1;
    }
    void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        msg_fatal("secmem: mmap of %zu bytes failed: %s", total, strerror(errno));
#ifdef MADV_DONTDUMP
    (void)madvise(m, total, MADV_DONTDUMP);
#endif
    struct secmem_hdr *h = m;
    h->magic = SECMEM_MAGIC;
    h->size = n;
    h->map_size = total;
    h->locked = mlock(m, total) == 0; /* best effort: RLIMIT_MEMLOCK may be tiny */
    return h + 1;
}

void secmem_free(void *p)
{
    if (!p)
        return;
    struct secmem_hdr *h = hdr_of(p);
    size_t total = h->map_size;
    int locked = h->locked;
    explicit_bzero(h, total);
    if (kept_put(h, total, locked))
        return;
    if (locked)
        (void)munlock(h, total);
    if (munmap(h, total) != 0)
        msg_fatal("secmem: munmap failed: %s", strerror(errno));
}

size_t secmem_size(const void *p)
{
    return hdr_of(p)->size;
}

int secmem_locked(const void *p)
{
    return hdr_of(p)->locked;
}
