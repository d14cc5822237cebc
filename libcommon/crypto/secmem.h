/*
 * secmem.h - locked, non-dumpable memory for decrypted secrets.
 *
 * secmem_alloc() maps fresh pages, locks them in RAM (best effort: a low RLIMIT_MEMLOCK only
 * loses the lock, not the allocation, with a warning) and excludes them from core dumps. secmem_free() wipes
 * the whole region before unlocking and unmapping it. The size lives in a small header just
 * before the returned pointer, so callers keep only the pointer.
 */
#ifndef CALSETA_SECMEM_H
#define CALSETA_SECMEM_H

#include <stddef.h>

/* Zero-filled region of n bytes (n may be 0); never returns NULL (fatal when out of memory). */
void *secmem_alloc(size_t n);
/* Wipes, unlocks and releases p; NULL is ignored. */
void secmem_free(void *p);
/* The n given to secmem_alloc() for p. */
size_t secmem_size(const void *p);
/* Keep up to regions wiped one-page regions for reuse instead of unmapping them (default 0:
 * every region is unmapped when freed). For processes that decrypt often; kept regions stay
 * locked and non-dumpable and hold only zeros. Only locked regions are kept, and at most half
 * of RLIMIT_MEMLOCK's pages (a warning says so when regions is cut); a secret that cannot be
 * locked makes the kept regions go (and halves regions) before it is left unlocked. */
void secmem_keep(size_t regions);
/* 1 if p's pages are locked in RAM (mlock succeeded), 0 otherwise. */
int secmem_locked(const void *p);

#endif
