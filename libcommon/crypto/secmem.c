/*
 * secmem.c - locked memory for decrypted secrets (see secmem.h).
 *
 * Layout of one allocation: [struct secmem_hdr | user bytes | rest of the last page], one
 * private anonymous mapping per allocation, so unlocking it can never unlock another secret's
 * page (mlock does not nest).
 */
#include "secmem.h"

#include <errno.h>
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
