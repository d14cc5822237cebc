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
 * again zero-filled. Kept regions count against RLIMIT_MEMLOCK, so only locked ones are kept,
 * at most half the limit's pages, and all are given back when a fresh secret could not be
 * locked otherwise.
 */
#include "secmem.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

/* The system calls themselves: AddressSanitizer replaces mlock/munlock with no-ops that report
 * success, which would hide from sanitizer builds (the ones the tests run) every limit below. */
#define sys_mlock(p, n) syscall(SYS_mlock, (p), (n))
#define sys_munlock(p, n) syscall(SYS_munlock, (p), (n))

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

/* Unlocks and unmaps kept regions until at most max remain; the lock is held. */
static void kept_trim(size_t max)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    while (kept_n > max) {
        struct kept *k = kept_head;
        kept_head = k->next;
        kept_n--;
        explicit_bzero(k, sizeof *k);
        (void)sys_munlock(k, page);
        if (munmap(k, page) != 0)
            msg_fatal("secmem: munmap failed: %s", strerror(errno));
    }
}

/* Kept regions stay locked and count against RLIMIT_MEMLOCK: at most half of it goes to them,
 * so the secrets in use can always be locked too. */
static size_t kept_budget(size_t asked)
{
    struct rlimit rl;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return asked;
    size_t budget = (size_t)(rl.rlim_cur / page / 2);
    if (asked <= budget)
        return asked;
    msg_warn("secmem: RLIMIT_MEMLOCK is %llu bytes: keeping %zu locked pages for reuse instead "
             "of %zu (raise the limit, e.g. ulimit -l or the container's memlock, to keep more)",
             (unsigned long long)rl.rlim_cur, budget, asked);
    return budget;
}

void secmem_keep(size_t regions)
{
    size_t max = regions ? kept_budget(regions) : 0;
    pthread_mutex_lock(&kept_lock);
    kept_max = max;
    kept_trim(kept_max);
    pthread_mutex_unlock(&kept_lock);
}

/* A fresh region could not be locked: the kept ones are what holds the limit, so give them
 * back (and keep half as many from now on) rather than leave a live secret unlocked. 1 when
 * some were released. */
static int kept_release(void)
{
    pthread_mutex_lock(&kept_lock);
    int released = kept_n > 0;
    if (released) {
        msg_warn("secmem: the locked-memory limit is reached: released %zu kept pages, keeping "
                 "at most %zu from now on",
                 kept_n, kept_max / 2);
        kept_max /= 2;
        kept_trim(0);
    }
    pthread_mutex_unlock(&kept_lock);
    return released;
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

/* 1 if h (wiped) was kept for reuse: only locked regions are, so a region handed out again is
 * as locked as a fresh one that could be locked */
static int kept_put(struct secmem_hdr *h, size_t total, int locked)
{
    if (total != (size_t)sysconf(_SC_PAGESIZE) || !locked)
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

/* 1 when the region is locked. Past RLIMIT_MEMLOCK the kept regions are given back first;
 * when even that is not enough the secret still gets memory (a decryption must not fail for
 * it), unlocked, and the operator is told once. */
static int lock_region(void *m, size_t total)
{
    static int warned;
    if (sys_mlock(m, total) == 0)
        return 1;
    int e = errno;
    if ((e == ENOMEM || e == EAGAIN || e == EPERM) && kept_release() && sys_mlock(m, total) == 0)
        return 1;
    if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        msg_warn("secmem: cannot lock %zu bytes of secrets in RAM (%s): they may reach swap; "
                 "raise RLIMIT_MEMLOCK (ulimit -l, the container's memlock limit)",
                 total, strerror(e));
    return 0;
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
    h->locked = lock_region(m, total);
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
        (void)sys_munlock(h, total);
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
