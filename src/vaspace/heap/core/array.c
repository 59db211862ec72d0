/*
 * array.c -- Array: a header (len, cap, itemsize, dtype) and one data block
 * of cap items.  Readers copy the header under its seqlock; writers resize
 * inside one undo-logged operation.
 */
#include "core.h"

const char ARRAY_NOT_AN_ARRAY[] = "not an Array";

/* Are these Array header fields consistent, with the data inside the arena?
 * (Overflow-safe: cap * isz is only formed once cap <= size / isz.) */
const char *array_fields_bad(const heap_region *r, u64 data, u64 len, u64 cap, u64 isz)
{
    if (isz == 0 || isz > ITEMSIZE_MAX)
        return "Array item size";
    if (len > cap || cap > r->size / isz)
        return "Array length";
    if (cap ? !in_arena(r, data, cap * isz) : data != 0)
        return "Array data pointer";
    return NULL;
}

/* Under the lock, before a writer trusts an Array header: still an Array,
 * fields consistent, data a live allocation that holds cap items.  NULL,
 * or what is wrong (ARRAY_NOT_AN_ARRAY when the magic is gone). */
const char *array_bad(const heap_region *r, array_hdr *a)
{
    if (a->magic != ARRAY_MAGIC)
        return ARRAY_NOT_AN_ARRAY;
    const char *bad = array_fields_bad(r, a->data, a->len, a->cap, a->itemsize);
    if (!bad && a->cap) {
        u64 off = live_offset(r, a->data);
        if (!off || usable_at(r, off) < a->cap * a->itemsize)
            bad = "Array data is not a live allocation";
    }
    return bad;
}

/* Under the lock, on a header array_bad() accepted: set len to n,
 * growing the buffer (moving it) if needed.  New elements are zero.
 * Returns 0 or -1 (out of memory or corrupt; nothing changed after abort). */
int array_setlen(TX *t, array_hdr *a, u64 n, int exact)
{
    heap_region *r = t->r;
    u64 isz = a->itemsize;
    if (n > a->cap) {
        u64 cap = exact ? n : (a->cap * 2 > n ? a->cap * 2 : n);
        if (cap < 4 && !exact)
            cap = 4;
        if (cap > (r->size / isz))
            return -1;
        u64 no = tx_alloc(t, cap * isz, 64);
        if (!no)
            return -1;
        if (a->len)
            memcpy(r->base + no, (char *)(uintptr_t)a->data, a->len * isz);
        if (a->data)
            tx_free(t, a->data - (u64)(uintptr_t)r->base);
        W(t, &a->data, abs_of(r, no));
        W(t, &a->cap, cap);
    }
    if (t->corrupt)
        return -1;
    if (n > a->len) /* bytes beyond len are not committed state: no log */
        memset((char *)(uintptr_t)a->data + a->len * isz, 0, (n - a->len) * isz);
    W(t, &a->len, n);
    return 0;
}

u64 array_create(TX *t, u64 itemsize, const char *dtype, size_t dtlen)
{
    u64 ho = tx_alloc(t, sizeof(array_hdr), 16);
    if (!ho)
        return 0;
    /* a fresh block: unlogged initialisation is safe */
    array_hdr *a = (array_hdr *)(t->r->base + ho);
    memset(a, 0, sizeof *a);
    a->itemsize = itemsize;
    memcpy(a->dtype, dtype, dtlen < sizeof a->dtype ? dtlen : sizeof a->dtype - 1);
    compiler_fence();
    a->magic = ARRAY_MAGIC;
    return ho;
}
