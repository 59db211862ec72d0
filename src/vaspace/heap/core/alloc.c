/*
 * alloc.c -- the allocator: boundary-tagged blocks in segregated free lists,
 * plus an allocation bitmap so that any u64 can be checked for being a live
 * allocation (live_offset) before it is trusted.
 *
 * Block layout (offsets from the block start b; the user pointer is b+16):
 *   b+0   prev_size   size of the previous block, valid only if it is free
 *   b+8   size|flags  INUSE, PREV_INUSE
 *   b+16  next, prev  free-list links (free blocks only)
 * Every store goes through W() (undo.c), except to memory that was free when
 * the operation began.
 */
#include "core.h"

#include <sys/mman.h>
#include <unistd.h>

/* The word at region offset off.  Every allocator access goes through here:
 * an offset read from the region (a link, a size) that points outside it is
 * corruption, and the access is redirected to a scratch word instead of
 * faulting.  (Logical checks catch bad links earlier; this is the net.) */
static inline u64 *U(TX *t, u64 off)
{
    if (__builtin_expect(off > t->r->size - 8 || (off & 7), 0)) {
        tx_bad(t, "offset outside the region");
        t->scratch = 0;
        return &t->scratch;
    }
    return (u64 *)(t->base + off);
}

#define SF(t, b) U(t, (b) + 8)
#define PS(t, b) U(t, (b))
#define NX(t, b) U(t, (b) + 16)
#define PV(t, b) U(t, (b) + 24)

int bin_of(u64 sz)
{
    if (sz < MIN_BLOCK) /* only a corrupt size; keeps the index in range */
        return 0;
    if (sz <= 1024)
        return (int)(sz >> 4) - 2;
    int lg = 63 - __builtin_clzll(sz);
    int i = NSMALL + (lg - 10);
    return i < NBINS ? i : NBINS - 1;
}

/* Could a block start at b?  (Aligned, inside the arena, room for a block
 * before the sentinel.) */
static inline int block_at(TX *t, u64 b)
{
    u64 sent = t->r->aend - 16;
    return b % 16 == 0 && b >= t->r->aoff && b <= sent - MIN_BLOCK;
}

/* Is b a free block whose header and footer agree?  Checked before a free
 * block found through a link is trusted. */
static int free_block_ok(TX *t, u64 b)
{
    if (!block_at(t, b))
        return 0;
    u64 sf = *SF(t, b), bs = BSIZE(sf);
    if ((sf & INUSE) || bs < MIN_BLOCK || bs > t->r->aend - 16 - b)
        return 0;
    return *PS(t, b + bs) == bs;
}

static void bit_set(TX *t, u64 *word, u64 bit, int on)
{
    u64 v = *word;
    u64 nv = on ? (v | bit) : (v & ~bit);
    if (nv != v)
        W(t, word, nv);
}

static void bin_insert(TX *t, u64 b, u64 size)
{
    heap_header *h = t->h;
    int i = bin_of(size);
    u64 head = h->bins[i];
    if (head && (!block_at(t, head) || *PV(t, head) != 0)) {
        tx_bad(t, "free list head is not a block");
        return;
    }
    W(t, NX(t, b), head);
    W(t, PV(t, b), 0);
    if (head)
        W(t, PV(t, head), b);
    W(t, &h->bins[i], b);
    bit_set(t, &h->bins_nonempty[i / 64], 1ULL << (i % 64), 1);
}

static void bin_remove(TX *t, u64 b, u64 size)
{
    heap_header *h = t->h;
    int i = bin_of(size);
    u64 n = *NX(t, b), p = *PV(t, b);
    /* The neighbours must point back at b (a doubly linked list that does
     * not is corrupt, and following it would write elsewhere). */
    if (p ? (!block_at(t, p) || *NX(t, p) != b) : h->bins[i] != b) {
        tx_bad(t, "free list link is broken");
        return;
    }
    if (n && (!block_at(t, n) || *PV(t, n) != b)) {
        tx_bad(t, "free list link is broken");
        return;
    }
    if (p)
        W(t, NX(t, p), n);
    else
        W(t, &h->bins[i], n);
    if (n)
        W(t, PV(t, n), p);
    if (h->bins[i] == 0)
        bit_set(t, &h->bins_nonempty[i / 64], 1ULL << (i % 64), 0);
    /* Log the links: the caller may overwrite them with unlogged user data,
     * and a rollback must find them intact. */
    W(t, NX(t, b), 0);
    W(t, PV(t, b), 0);
}

/* Bitmap word and bit of the granule at user offset uoff (inside the arena;
 * the bitmap covers the whole arena, checked at open). */
static u64 *bitmap_word(char *base, const heap_region *r, u64 uoff, u64 *bit)
{
    u64 g = (uoff - r->aoff) / 16;
    *bit = 1ULL << (g % 64);
    return (u64 *)(base + r->boff + (g / 64) * 8);
}

static void bitmap_mark(TX *t, u64 uoff, int on)
{
    u64 bit;
    u64 *w = bitmap_word(t->base, t->r, uoff, &bit);
    bit_set(t, w, bit, on);
}

static int bitmap_test(const heap_region *r, u64 uoff)
{
    u64 bit;
    return (*bitmap_word(r->base, r, uoff, &bit) & bit) != 0;
}

static u64 find_free(TX *t, u64 need)
{
    heap_header *h = t->h;
    int i = bin_of(need);
    if (i >= NSMALL || h->bins[i]) {
        /* small bins hold one size; large bins a range: first fit */
        u64 limit = (t->r->aend - t->r->aoff) / MIN_BLOCK + 1;
        for (u64 b = h->bins[i]; b && limit--; b = *NX(t, b)) {
            if (!free_block_ok(t, b))
                return tx_bad(t, "free list holds a bad block");
            if (BSIZE(*SF(t, b)) >= need)
                return b;
        }
    }
    for (int j = i + 1; j < NBINS;) {
        u64 w = h->bins_nonempty[j / 64] >> (j % 64);
        if (w == 0) {
            j = (j / 64 + 1) * 64;
            continue;
        }
        j += __builtin_ctzll(w);
        if (j < NBINS && h->bins[j]) {
            /* every block of a higher bin is large enough */
            u64 b = h->bins[j];
            if (!free_block_ok(t, b) || BSIZE(*SF(t, b)) < need)
                return tx_bad(t, "free list holds a bad block");
            return b;
        }
        j++;
    }
    return 0;
}

/* Allocate usize bytes aligned to align (>=16, power of two).  Returns the
 * offset of the user pointer, or 0 when no block is large enough (t->want
 * then says how large a free block it needed) or the free lists are corrupt
 * (t->corrupt says so). */
u64 tx_alloc(TX *t, u64 usize, u64 align)
{
    heap_header *h = t->h;
    u64 arena = t->r->aend - t->r->aoff;
    if (usize > arena || align > arena) {
        /* more than the whole arena (block_bytes cannot overflow here) */
        u64 most = usize > align ? usize : align;
        t->want = most > UINT64_MAX - 64 ? most : block_bytes(most);
        return 0;
    }
    u64 need = block_bytes(usize);
    u64 search = need;
    if (align > 16)
        search = need + align + MIN_BLOCK;
    u64 b = find_free(t, search);
    if (!b && !t->corrupt)
        t->want = search;
    if (!b || t->corrupt)
        return 0;
    u64 bs = BSIZE(*SF(t, b));
    u64 pflag = *SF(t, b) & PREV_INUSE;
    bin_remove(t, b, bs);
    if (align > 16) {
        u64 uabs = (u64)(uintptr_t)t->base + b + 16;
        u64 pad = ((uabs + align - 1) & ~(align - 1)) - uabs;
        if (pad && pad < MIN_BLOCK)
            pad += align;
        if (pad) {
            /* The front padding becomes a free block of its own. */
            W(t, SF(t, b), pad | pflag);
            W(t, PS(t, b + pad), pad);
            bin_insert(t, b, pad);
            b += pad;
            bs -= pad;
            pflag = 0;
        }
    }
    if (bs - need >= MIN_BLOCK) {
        u64 r = b + need, rs = bs - need;
        W(t, SF(t, r), rs | PREV_INUSE);
        W(t, PS(t, r + rs), rs);
        bin_insert(t, r, rs);
        bs = need;
    } else {
        u64 nx = b + bs;
        W(t, SF(t, nx), *SF(t, nx) | PREV_INUSE);
    }
    W(t, SF(t, b), bs | INUSE | pflag);
    bitmap_mark(t, b + 16, 1);
    W(t, &h->used, h->used + bs);
    W(t, &h->allocations, h->allocations + 1);
    return t->corrupt ? 0 : b + 16;
}

/* Is abs a live allocation's user pointer?  Returns its offset or 0.  Every
 * step is checked (bitmap bit, INUSE, size inside the arena), so any u64 is
 * a safe argument. */
u64 live_offset(const heap_region *r, u64 abs)
{
    u64 b0 = (u64)(uintptr_t)r->base;
    if (abs < b0)
        return 0;
    u64 off = abs - b0;
    if (off % 16 || off < r->aoff + 16 || off >= r->aend - 16)
        return 0;
    if (!bitmap_test(r, off))
        return 0;
    u64 sf = *(u64 *)(r->base + off - 8);
    u64 bs = BSIZE(sf);
    if (!(sf & INUSE) || bs < MIN_BLOCK || bs > r->aend - 16 - (off - 16))
        return 0;
    return off;
}

/* Bytes usable at a live allocation's user offset. */
u64 usable_at(const heap_region *r, u64 uoff)
{
    return BSIZE(*(u64 *)(r->base + uoff - 8)) - 16;
}

void tx_free_now(TX *t, u64 uoff)
{
    heap_header *h = t->h;
    if (t->corrupt)
        return;
    if (!live_offset(t->r, (u64)(uintptr_t)t->base + uoff)) {
        tx_bad(t, "a pointer to free is not a live allocation");
        return;
    }
    u64 b = uoff - 16;
    u64 bs = BSIZE(*SF(t, b));
    bitmap_mark(t, uoff, 0);
    W(t, &h->used, h->used - bs);
    W(t, &h->allocations, h->allocations - 1);
    u64 nx = b + bs;
    u64 nsf = *SF(t, nx);
    if (!(nsf & INUSE)) {
        if (!free_block_ok(t, nx)) {
            tx_bad(t, "the next block is not a valid free block");
            return;
        }
        bin_remove(t, nx, BSIZE(nsf));
        bs += BSIZE(nsf);
    }
    if (!(*SF(t, b) & PREV_INUSE)) {
        u64 ps = *PS(t, b);
        u64 p = b - ps;
        if (ps > b - t->r->aoff || !free_block_ok(t, p) || BSIZE(*SF(t, p)) != ps) {
            tx_bad(t, "the previous block is not a valid free block");
            return;
        }
        bin_remove(t, p, ps);
        b = p;
        bs += ps;
    }
    W(t, SF(t, b), bs | (*SF(t, b) & PREV_INUSE));
    nx = b + bs;
    W(t, PS(t, nx), bs);
    W(t, SF(t, nx), *SF(t, nx) & ~PREV_INUSE);
    bin_insert(t, b, bs);
}

void tx_free(TX *t, u64 uoff)
{
    if (t->ndefer < DEFER_MAX)
        t->defer[t->ndefer++] = uoff;
    else
        t->overflow = 1; /* bug guard; commit() rolls back */
}

/* Resize the allocation at uoff (a live one) in place if possible, else
 * move it.  Returns the new user offset, or 0 if out of memory or corrupt
 * (nothing changed once rolled back). */
u64 tx_realloc(TX *t, u64 uoff, u64 usize)
{
    heap_header *h = t->h;
    if (t->corrupt || t->overflow || usize > t->r->aend - t->r->aoff)
        return 0;
    u64 need = block_bytes(usize);
    u64 b = uoff - 16;
    u64 sf = *SF(t, b);
    u64 bs = BSIZE(sf);
    if (need <= bs) {
        if (bs - need >= MIN_BLOCK) {
            /* Split the tail off as a one-block allocation, then free it
             * (deferred, so the usual coalescing applies). */
            u64 r = b + need, rs = bs - need;
            W(t, SF(t, b), need | (sf & (INUSE | PREV_INUSE)));
            W(t, SF(t, r), rs | INUSE | PREV_INUSE);
            bitmap_mark(t, r + 16, 1);
            W(t, &h->allocations, h->allocations + 1);
            tx_free(t, r + 16);
        }
        return t->corrupt ? 0 : uoff;
    }
    u64 nx = b + bs;
    u64 nsf = *SF(t, nx);
    if (!(nsf & INUSE) && bs + BSIZE(nsf) >= need) {
        if (!free_block_ok(t, nx))
            return tx_bad(t, "the next block is not a valid free block");
        u64 ns = BSIZE(nsf);
        bin_remove(t, nx, ns);
        /* Log the absorbed block's head too (bin_remove logged its links):
         * the caller may fill the grown part with unlogged data, and a
         * rollback must find that free block whole. */
        W(t, PS(t, nx), *PS(t, nx));
        W(t, SF(t, nx), nsf);
        W(t, SF(t, b), (bs + ns) | (sf & (INUSE | PREV_INUSE)));
        W(t, &h->used, h->used + ns);
        u64 nn = b + bs + ns;
        W(t, SF(t, nn), *SF(t, nn) | PREV_INUSE);
        return tx_realloc(t, uoff, usize); /* now shrinks (or stops: corrupt) */
    }
    u64 n = tx_alloc(t, usize, 16);
    if (!n)
        return 0;
    u64 keep = bs - 16 < usize ? bs - 16 : usize;
    memcpy(t->base + n, t->base + uoff, keep);
    tx_free(t, uoff);
    return n;
}

/* Size of the largest free block (0 if none); bounds-checked, so a torn
 * read-only snapshot is safe. */
u64 largest_free(const heap_region *r)
{
    heap_header *h = r->h;
    u64 largest = 0;
    for (int i = NBINS - 1; i >= 0 && largest == 0; i--) {
        u64 limit = (r->aend - r->aoff) / MIN_BLOCK + 1;
        /* bounds-checked: a read-only reader may see a torn free list */
        for (u64 b = ld(&h->bins[i]);
             b && limit-- && b % 16 == 0 && b >= r->aoff && b < r->aend - 16;
             b = ld((u64 *)(r->base + b + 16))) {
            u64 bs = BSIZE(ld((u64 *)(r->base + b + 8)));
            if (bs > largest)
                largest = bs;
        }
    }
    return largest;
}

/* The walk behind check().  Memory safe on a torn snapshot (every offset is
 * bounds-checked before it is dereferenced), so read-only mode can run it
 * optimistically and retry when hseq moved. */
/* Is any bit set for the user offsets [from, to) (16-byte granules)?  A
 * bit inside a block would let live_offset() accept an address inside it
 * (a run of carved blocks that rollback did not unmark, for one). */
static int bitmap_any(const heap_region *r, u64 from, u64 to)
{
    const u64 *bm = (const u64 *)(r->base + r->boff);
    u64 g = (from - r->aoff) / 16, ge = (to - r->aoff) / 16;
    while (g < ge) {
        u64 w = g / 64, lo = g % 64, n = ge - g < 64 - lo ? ge - g : 64 - lo;
        u64 mask = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << lo;
        if (bm[w] & mask)
            return 1;
        g += n;
    }
    return 0;
}

const char *heap_check_walk(const heap_region *r, u64 *where_out, u64 *nalloc_out)
{
    char *base = r->base;
    heap_header *h = r->h;
    const char *err = NULL;
    u64 where = 0, used = 0, nalloc = 0, nfree_blocks = 0, nfree_listed = 0;
    int prev_inuse = 1;
    u64 b = r->aoff, sent = r->aend - 16;
    if (h->log_count != 0)
        err = "undo log not empty";
    while (!err && b < sent) {
        u64 sf = *(u64 *)(base + b + 8), bs = BSIZE(sf);
        where = b;
        if (bs < MIN_BLOCK || bs % 16 || bs > sent - b) {
            err = "bad block size";
            break;
        }
        if (!!(sf & PREV_INUSE) != prev_inuse) {
            err = "PREV_INUSE flag disagrees with previous block";
            break;
        }
        int inuse = (int)(sf & INUSE);
        if (inuse != bitmap_test(r, b + 16) || bitmap_any(r, b + 32, b + bs + 16)) {
            err = "allocation bitmap disagrees with block";
            break;
        }
        if (inuse) {
            used += bs;
            nalloc++;
        } else {
            if (!prev_inuse) {
                err = "two adjacent free blocks";
                break;
            }
            if (*(u64 *)(base + b + bs) != bs) {
                err = "prev_size of next block wrong";
                break;
            }
            nfree_blocks++;
        }
        prev_inuse = inuse;
        b += bs;
    }
    if (!err && b != sent) {
        err = "blocks do not tile the arena";
        where = b;
    }
    if (!err && !!(*(u64 *)(base + sent + 8) & PREV_INUSE) != prev_inuse)
        err = "sentinel PREV_INUSE wrong";
    if (!err && used != h->used)
        err = "used counter wrong";
    if (!err && nalloc != h->allocations)
        err = "allocations counter wrong";
    for (int i = 0; !err && i < NBINS; i++) {
        int nonempty = !!(h->bins_nonempty[i / 64] & (1ULL << (i % 64)));
        if (nonempty != (h->bins[i] != 0)) {
            err = "bin bitmap wrong";
            break;
        }
        u64 prev = 0, limit = nfree_blocks + 1;
        for (u64 f = h->bins[i]; f; f = *(u64 *)(base + f + 16)) {
            where = f;
            if (!limit--) {
                err = "free list cycle";
                break;
            }
            if (f < r->aoff || f >= sent || f % 16) {
                err = "free list pointer out of arena";
                break;
            }
            u64 sf = *(u64 *)(base + f + 8);
            if ((sf & INUSE) || bin_of(BSIZE(sf)) != i) {
                err = "free list holds a used or misbinned block";
                break;
            }
            if (*(u64 *)(base + f + 24) != prev) {
                err = "free list back link wrong";
                break;
            }
            prev = f;
            nfree_listed++;
        }
    }
    if (!err && nfree_listed != nfree_blocks)
        err = "free blocks missing from free lists";
    *where_out = where;
    *nalloc_out = nalloc;
    return err;
}

/* Set the bitmap bits of the carved blocks' user pointers (all but the
 * first, which tx_alloc marked).  The granules [g_lo, g_hi) lie inside the
 * run, which was free, so their bits are zero: the words wholly inside get
 * one zero-range log entry and plain stores; the (at most two) words shared
 * with neighbours are logged word by word. */
static void run_mark(TX *t, const u64 *uoff, u64 n, u64 g_lo, u64 g_hi)
{
    u64 *bm = (u64 *)(t->base + t->r->boff);
    u64 wf_lo = (g_lo + 63) / 64, wf_hi = g_hi / 64;
    if (wf_hi > wf_lo) {
        for (u64 w = wf_lo; w < wf_hi; w++)
            if (bm[w]) {
                tx_bad(t, "the bitmap marks an allocation inside a free block");
                return;
            }
        W_zero_range(t, &bm[wf_lo], wf_hi - wf_lo);
    }
    u64 pend_w = UINT64_MAX, pend = 0;
    for (u64 i = 1; i < n && !t->corrupt && !t->overflow; i++) {
        u64 g = (uoff[i] - t->r->aoff) / 16, w = g / 64, bit = 1ULL << (g % 64);
        if (w >= wf_lo && w < wf_hi) {
            bm[w] |= bit;
            continue;
        }
        if (w != pend_w && pend)
            W(t, &bm[pend_w], bm[pend_w] | pend);
        if (w != pend_w)
            pend = 0;
        pend_w = w;
        pend |= bit;
    }
    if (pend)
        W(t, &bm[pend_w], bm[pend_w] | pend);
}

int tx_alloc_run(TX *t, const u64 *usize, u64 n, u64 *uoff)
{
    u64 arena = t->r->aend - t->r->aoff, total = 0;
    for (u64 i = 0; i < n; i++) {
        if (usize[i] > arena || (total += block_bytes(usize[i])) > arena) {
            t->want = UINT64_MAX - 64;
            return -1;
        }
    }
    if (n == 0)
        return 0;
    /* block_bytes(total - 16) == total: one block exactly the run's size */
    u64 u0 = tx_alloc(t, total - 16, 16);
    if (!u0)
        return -1;
    u64 b = u0 - 16, sf = *SF(t, b), bs = BSIZE(sf);
    u64 at = b;
    for (u64 i = 0; i < n; i++) {
        u64 s = block_bytes(usize[i]);
        if (i == n - 1)
            s += bs - total; /* a tail too small to split stays with the last */
        uoff[i] = at + 16;
        if (i == 0) {
            W(t, SF(t, b), s | INUSE | (sf & PREV_INUSE));
        } else {
            /* inside the run: memory that was free, so no log */
            *PS(t, at) = 0;
            *SF(t, at) = s | INUSE | PREV_INUSE;
        }
        at += s;
    }
    run_mark(t, uoff, n, (b + 32 - t->r->aoff) / 16, (b + bs - t->r->aoff) / 16);
    W(t, &t->h->allocations, t->h->allocations + n - 1);
    return t->corrupt || t->overflow ? -1 : 0;
}

/* After the commit that freed the allocation at region offset uoff (usable
 * bytes long), still under the lock: give the pages inside it back to the
 * backing file or shmem (MADV_REMOVE), so that a large block a container
 * moved out of costs no memory or disk until it is allocated again.  The
 * block's head (size and free-list links) and the next block's first word
 * are outside the range.  Best effort: a mapping that cannot punch holes
 * (a private one) keeps its pages.  Added for the compact Dict (helper D). */
void release_pages(const heap_region *r, u64 uoff, u64 usable)
{
    u64 pg = (u64)sysconf(_SC_PAGESIZE);
    u64 lo = (uoff + 16 + pg - 1) & ~(pg - 1), hi = (uoff + usable) & ~(pg - 1);
    if (hi >= lo + RELEASE_MIN && hi <= r->aend)
        (void)madvise(r->base + lo, (size_t)(hi - lo), MADV_REMOVE);
}
