/*
 * tests/unit/libcommon/crypto/secmem.c - locked memory for decrypted secrets.
 *
 * Checks what the kernel reports, not what the module claims: /proc/self/smaps shows the
 * region excluded from core dumps ("dd") and locked ("lo") when secmem says it is; after
 * secmem_free the pages are gone (mincore fails); a low RLIMIT_MEMLOCK still gives memory;
 * a pointer secmem did not hand out is fatal, not silently freed; with secmem_keep, a freed
 * one-page region is wiped in full, stays locked and non-dumpable, and comes back zero-filled,
 * while larger regions are still unmapped; kept regions stay within RLIMIT_MEMLOCK and give
 * way to a secret that could not be locked otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secmem.h"

/* The VmFlags line of the smaps entry containing p ("" if none). */
static void vmflags_of(const void *p, char *out, size_t outlen)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0;
    out[0] = 0;
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (inside && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, outlen, "%.200s", line + 8);
            break;
        }
    }
    fclose(f);
}

static int has_flag(const char *flags, const char *f)
{
    char pat[8];
    snprintf(pat, sizeof pat, " %s", f);
    return strstr(flags, pat) != NULL;
}

static int mapped(void *p)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char v;
    void *base = (void *)((uintptr_t)p & ~(uintptr_t)(page - 1));
    return mincore(base, 1, &v) == 0 || errno != ENOMEM;
}

/* gVisor and some kernels do not report "lo" in smaps: find out with a page of our own. */
static int kernel_reports_lock(void)
{
    long page = sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    int yes = 0;
    if (syscall(SYS_mlock, m, (size_t)page) == 0) { /* ASan's mlock is a no-op */
        char flags[256];
        vmflags_of(m, flags, sizeof flags);
        yes = has_flag(flags, "lo");
        syscall(SYS_munlock, m, (size_t)page);
    }
    munmap(m, (size_t)page);
    return yes;
}

static void test_alloc_free(void **state)
{
    (void)state;
    int lock_visible = kernel_reports_lock();
    if (!lock_visible)
        print_message("note: this kernel does not report mlock in smaps; lock not verified\n");
    size_t sizes[] = {0, 1, 15, 16, 4000, 4096, 4097, 65536, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = secmem_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal(secmem_size(p), sizes[i]);
        for (size_t j = 0; j < sizes[i]; j++)
            assert_int_equal(p[j], 0);
        memset(p, 0xa5, sizes[i]);
        char flags[256];
        vmflags_of(p, flags, sizeof flags);
        assert_true(flags[0] != 0);
#ifdef MADV_DONTDUMP
        if (!has_flag(flags, "dd"))
            fail_msg("not excluded from core dumps: %s", flags);
#endif
        if (secmem_locked(p) && lock_visible)
            assert_true(has_flag(flags, "lo"));
        assert_true(mapped(p));
        secmem_free(p);
        assert_false(mapped(p));
    }
    secmem_free(NULL);
}

static void test_two_regions_independent(void **state)
{
    (void)state;
    char *a = secmem_alloc(32), *b = secmem_alloc(32);
    strcpy(a, "secret-a");
    strcpy(b, "secret-b");
    int b_locked = secmem_locked(b) && kernel_reports_lock();
    secmem_free(a);
    /* freeing a must not unlock or damage b */
    assert_string_equal(b, "secret-b");
    char flags[256];
    vmflags_of(b, flags, sizeof flags);
    if (b_locked)
        assert_true(has_flag(flags, "lo"));
    secmem_free(b);
}

static void test_kept_regions(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int lock_visible = kernel_reports_lock();
    secmem_keep(2);
    unsigned char *a = secmem_alloc(100);
    int a_locked = secmem_locked(a);
    memset(a, 0xa5, 100);
    secmem_free(a);
    /* kept: still mapped (so still locked and excluded from dumps), but every byte after the
     * bookkeeping header wiped */
    assert_true(mapped(a));
    unsigned char *page_start = (unsigned char *)((uintptr_t)a & ~(uintptr_t)(page - 1));
    for (unsigned char *q = a; q < page_start + page; q++)
        assert_int_equal(*q, 0);
    char flags[256];
    vmflags_of(page_start, flags, sizeof flags);
#ifdef MADV_DONTDUMP
    if (!has_flag(flags, "dd"))
        fail_msg("kept region not excluded from core dumps: %s", flags);
#endif
    if (a_locked && lock_visible)
        assert_true(has_flag(flags, "lo"));
    /* handed out again, zero-filled, with its own size */
    unsigned char *b = secmem_alloc(50);
    assert_ptr_equal(b, a);
    assert_int_equal(secmem_size(b), 50);
    assert_int_equal(secmem_locked(b), a_locked);
    for (size_t j = 0; j < 50; j++)
        assert_int_equal(b[j], 0);
    /* more than one page: never kept */
    unsigned char *big = secmem_alloc(2 * page);
    memset(big, 1, 2 * page);
    secmem_free(big);
    assert_false(mapped(big));
    /* beyond the number kept: unmapped */
    unsigned char *c = secmem_alloc(10), *d = secmem_alloc(10);
    secmem_free(b);
    secmem_free(c);
    secmem_free(d);
    assert_false(mapped(d));
    /* keeping none releases those kept */
    assert_true(mapped(b) && mapped(c));
    secmem_keep(0);
    assert_false(mapped(b));
    assert_false(mapped(c));
    unsigned char *e = secmem_alloc(10);
    secmem_free(e);
    assert_false(mapped(e));
}

static void test_low_memlock_limit(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit r = {0, 0};
        if (setrlimit(RLIMIT_MEMLOCK, &r) != 0)
            _exit(3);
        char *p = secmem_alloc(100000);
        memset(p, 1, 100000);
        int ok = secmem_size(p) == 100000;
        secmem_free(p);
        _exit(ok ? 0 : 4);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* In a forked child: RLIMIT_MEMLOCK lowered to `pages` pages and, for root, the privilege to
 * lock past it dropped (setresuid to nobody), so the limit is the one the kernel applies. 0,
 * or a code saying what failed. */
static int limit_locking(size_t pages)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct rlimit r = {pages * page, pages * page};
    if (setrlimit(RLIMIT_MEMLOCK, &r) != 0)
        return 10;
    if (geteuid() == 0 && setresuid(65534, 65534, 65534) != 0)
        return 11;
    /* the limit holds: one page more than it allows cannot be locked */
    void *m = mmap(NULL, (pages + 1) * page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 12;
    int over = syscall(SYS_mlock, m, (pages + 1) * page) == 0; /* not ASan's no-op mlock */
    munmap(m, (pages + 1) * page);
    return over ? 13 : 0;
}

/* Kept regions hold locked pages: at the limit they must not crowd out the secrets in use
 * (a fresh secret left unlocked, silently) nor be kept unlocked. */
static int kept_within_limit(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int rc = limit_locking(8);
    if (rc)
        return rc;
    secmem_keep(64); /* cut to 4 (half the limit), with a warning */
    char *one[8];
    for (int i = 0; i < 8; i++)
        one[i] = secmem_alloc(100);
    int locked = 0;
    for (int i = 0; i < 8; i++)
        locked += secmem_locked(one[i]);
    if (locked != 8) /* 8 pages: exactly the limit */
        return 20;
    for (int i = 0; i < 8; i++)
        secmem_free(one[i]);
    /* at most 4 pages kept (the old code kept all 8, the whole limit): a five-page secret
     * makes them go and gets locked */
    char *five = secmem_alloc(5 * page - 64);
    if (!secmem_locked(five))
        return 21;
    char *more[3];
    for (int i = 0; i < 3; i++)
        more[i] = secmem_alloc(100);
    for (int i = 0; i < 3; i++)
        if (!secmem_locked(more[i]))
            return 22 + i;
    /* past the limit: memory all the same, unlocked, and not kept when freed */
    char *over = secmem_alloc(100);
    if (secmem_locked(over) || secmem_size(over) != 100)
        return 30;
    memset(over, 7, 100);
    secmem_free(over);
    if (mapped(over))
        return 31;
    secmem_free(five);
    for (int i = 0; i < 3; i++)
        secmem_free(more[i]);
    return 0;
}

static void test_kept_regions_respect_memlock_limit(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2); /* the warnings are expected */
        _exit(kept_within_limit());
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0)
        fail_msg("the child failed at step %d (see kept_within_limit)", WEXITSTATUS(st));
}

static void test_foreign_pointer_is_fatal(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", 1);
        if (fd >= 0)
            dup2(fd, 2);
        static uint64_t junk[64];
        secmem_free(&junk[32]);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_not_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_free),
        cmocka_unit_test(test_two_regions_independent),
        cmocka_unit_test(test_kept_regions),
        cmocka_unit_test(test_low_memlock_limit),
        cmocka_unit_test(test_kept_regions_respect_memlock_limit),
        cmocka_unit_test(test_foreign_pointer_is_fatal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
