/*
 * region.c -- the heap header: format a region, validate one found in
 * memory (any bytes: a co-writer's bug, a hostile file), and look up named
 * roots.
 */
#include "core.h"

#include <stdio.h>

u64 hdr_bytes(void) { return ((u64)sizeof(heap_header) + 4095) & ~4095ULL; }

u64 region_min_bytes(void) { return hdr_bytes() + 8192; }

/* The attributes of the heap mutex: process-shared, robust, error-checking. */
int lock_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc;
    if ((rc = pthread_mutexattr_init(&a)) != 0)
        return rc;
    /* ERRORCHECK: a thread that re-enters the heap while holding the lock
     * (e.g. from a __del__ run by the garbage collector) gets EDEADLK and an
     * OSError instead of hanging forever. */
    if ((rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) == 0 &&
        (rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) == 0 &&
        (rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK)) == 0)
        rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

int format_region(char *base, u64 size, u64 boot)
{
    heap_header *h = (heap_header *)base;
    u64 hb = hdr_bytes();
    __atomic_store_n(&h->magic, 0, __ATOMIC_RELEASE);
    memset(base, 0, hb);
    u64 rest = size - hb;
    u64 bm = ((rest / 128) + 64) & ~63ULL;
    h->version = HEAP_VERSION;
    h->hdr_size = (u32)sizeof(heap_header);
    h->size = size;
    h->base = (u64)(uintptr_t)base;
    h->bitmap_off = hb;
    h->bitmap_bytes = bm;
    h->arena_off = hb + bm;
    h->arena_end = size & ~15ULL;
    memset(base + hb, 0, bm);
    int rc = lock_init(&h->lock);
    for (int i = 0; rc == 0 && i < NLANES; i++)
        rc = lock_init(&h->lanes[i].lock);
    if (rc != 0)
        return rc;
    h->lock_boot = boot;
    h->unflushed = boot; /* nothing of it is on disk yet */
    /* one free block spanning the arena, then a zero-size in-use sentinel */
    u64 b = h->arena_off;
    u64 sent = h->arena_end - 16;
    u64 bs = sent - b;
    *(u64 *)(base + b + 8) = bs | PREV_INUSE;
    *(u64 *)(base + sent) = bs;
    *(u64 *)(base + sent + 8) = 0 | INUSE;
    int i = bin_of(bs);
    *(u64 *)(base + b + 16) = 0;
    *(u64 *)(base + b + 24) = 0;
    h->bins[i] = b;
    h->bins_nonempty[i / 64] |= 1ULL << (i % 64);
    compiler_fence();
    __atomic_store_n(&h->magic, HEAP_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

/* Check every header field before anything is trusted.  The arithmetic
 * cannot wrap: each sum is compared in a form whose terms are already
 * bounded. */
int validate_header(char *base, u64 size, char *msg, size_t n)
{
    heap_header *h = (heap_header *)base;
    if (size < region_min_bytes() || h->magic != HEAP_MAGIC) {
        snprintf(msg, n, "buffer does not contain a vaspace heap (bad magic)");
        return -1;
    }
    if (h->version != HEAP_VERSION || h->hdr_size != sizeof(heap_header)) {
        snprintf(msg, n,
                 "heap layout version %u (header %u bytes) is not supported: this vaspace "
                 "reads version %u only (version 1 heaps predate List, parent words and "
                 "insertion order, version 2 the compact Dict, version 3 the update lanes; copy the data into a newly "
                 "formatted heap)",
                 h->version, h->hdr_size, HEAP_VERSION);
        return -1;
    }
    if (h->size != size) {
        snprintf(msg, n, "heap was formatted for %llu bytes but the buffer has %llu",
                 (unsigned long long)h->size, (unsigned long long)size);
        return -1;
    }
    if (h->base != (u64)(uintptr_t)base) {
        snprintf(msg, n,
                 "heap was formatted at %p but is mapped at %p; containers hold "
                 "absolute pointers, so map the region at its fixed address",
                 (void *)(uintptr_t)h->base, (void *)base);
        return -1;
    }
    u64 boff = h->bitmap_off, bbytes = h->bitmap_bytes, aoff = h->arena_off, aend = h->arena_end;
    const char *bad = NULL;
    if (boff < hdr_bytes() || boff % 8 || boff > size || bbytes > size - boff)
        bad = "bitmap outside the region";
    else if (aoff % 16 || aend % 16 || aoff < boff + bbytes || aend > size || aoff > aend ||
             aend - aoff < 16 + 2 * MIN_BLOCK)
        bad = "arena outside the region";
    else if ((aend - aoff) / 16 > bbytes * 8)
        bad = "bitmap too small for the arena";
    if (bad) {
        snprintf(msg, n, "heap header is corrupt (%s)", bad);
        return -1;
    }
    return 0;
}

void region_open(heap_region *r, char *base, u64 size)
{
    r->base = base;
    r->size = size;
    r->h = (heap_header *)base;
    r->boff = r->h->bitmap_off;
    r->aoff = r->h->arena_off;
    r->aend = r->h->arena_end;
}

int root_find(heap_header *h, const char *s, size_t n)
{
    for (int i = 0; i < NROOTS; i++)
        if (h->roots[i].name[0] && strncmp(h->roots[i].name, s, 56) == 0 &&
            strnlen(h->roots[i].name, 56) == n)
            return i;
    return -1;
}
