/*
 * undo.c -- the undo log: every logged store, commit, rollback and the
 * recovery of an operation whose writer died.
 *
 * Clearing log_count is the commit point.  Until then the log holds the old
 * value of every word the operation changed, so rollback() (newest first)
 * restores the state before the operation, whatever instruction the writer
 * died at.
 */
#include "core.h"

#include <unistd.h>

/* Fault injection for tests: when non-zero, the process _exit()s at the
 * crash_countdown-th crash point inside W() (process-local; see _crash_after).
 * This is the only mutable global, and it exists so tests can "SIGKILL" a
 * writer at every single store of an operation, deterministically. */
unsigned long crash_countdown;

static inline void crash_point(void)
{
    if (crash_countdown && --crash_countdown == 0)
        _exit(77);
}

/* May a logged store (or its rollback) target region offset off?  Only the
 * header's counters and bins, the roots, the bitmap and the arena: never the
 * geometry, the lock, the log or the seqlock words. */
static inline int store_ok(const heap_region *r, u64 off)
{
    if (off % 8 || off > r->size - 8)
        return 0;
    if (__builtin_expect(off >= r->boff, 1)) /* the bitmap and the arena: most stores */
        return 1;
    return (off >= offsetof(heap_header, used) && off < offsetof(heap_header, hseq) &&
            off != offsetof(heap_header, wseq_off) && off != offsetof(heap_header, log_count)) ||
           (off >= offsetof(heap_header, roots) && off < offsetof(heap_header, log));
}

/* Append {off, old} to the log and publish the count (a crash point
 * first).  0, or -1 when the log is full: the operation stops writing and
 * commit() rolls the logged part back (never expected: every operation is
 * bounded far below LOG_CAP). */
static int log_append(TX *t, u64 off, u64 old)
{
    heap_header *h = t->h;
    crash_point();
    u64 n = h->log_count;
    if (n >= LOG_CAP) {
        t->overflow = 1;
        return -1;
    }
    h->log[n].off = off;
    h->log[n].old = old;
    store_fence();
    __atomic_store_n(&h->log_count, n + 1, __ATOMIC_RELEASE);
    store_fence();
    return 0;
}

/* Logged write: the old value reaches the log (and the count covers it)
 * before the new value is stored. */
void W(TX *t, u64 *p, u64 v)
{
    if (t->overflow || t->corrupt)
        return;
    u64 off = (u64)((char *)p - t->base);
    if (!store_ok(t->r, off)) {
        tx_bad(t, "a link points outside the heap's data");
        return;
    }
    /* No "unchanged value" shortcut: bin_remove() relies on W() to log the
     * links of a block whose memory is then overwritten without logging. */
    if (log_append(t, off, *p) < 0)
        return;
    crash_point(); /* logged but not yet stored */
    *p = v;
}

/* A zero-range entry (the bitmap words of tx_alloc_run): off has bit 0
 * set, old holds the word count.  May rollback zero those words?  Only
 * inside the allocation bitmap. */
static inline int zero_ok(const heap_region *r, u64 off, u64 nwords)
{
    off &= ~1ULL;
    return off % 8 == 0 && off >= r->boff && off <= r->aoff && nwords <= (r->aoff - off) / 8;
}

/* Log a range instead of words: the bitmap words [p, p+nwords) are all
 * zero now and are about to be set with plain stores; one log entry says
 * "zero them again on rollback".
 * This keeps the log of a bulk allocation (alloc_run) from growing with the
 * number of blocks it carves. */
void W_zero_range(TX *t, u64 *p, u64 nwords)
{
    if (t->overflow || t->corrupt || nwords == 0)
        return;
    u64 off = (u64)((char *)p - t->base);
    if (!zero_ok(t->r, off, nwords)) {
        tx_bad(t, "a bitmap range outside the bitmap");
        return;
    }
    log_append(t, off | 1, nwords);
}

void rollback(heap_region *r)
{
    heap_header *h = r->h;
    u64 n = h->log_count;
    if (n > LOG_CAP)
        n = LOG_CAP;
    /* Newest first, so a word logged twice ends at its pre-operation value.
     * Idempotent: a crash during rollback just means it runs again.  An
     * entry no W() could have written (corrupt log) is skipped. */
    for (u64 i = n; i-- > 0;) {
        u64 off = h->log[i].off;
        if ((off & 1) && zero_ok(r, off, h->log[i].old))
            memset(r->base + (off & ~1ULL), 0, h->log[i].old * 8);
        else if (store_ok(r, off))
            *(u64 *)(r->base + off) = h->log[i].old;
    }
    compiler_fence();
    __atomic_store_n(&h->log_count, 0, __ATOMIC_RELEASE);
}

/* Make the heap consistent after a writer died (or left debris behind). */
void recover(heap_region *r)
{
    heap_header *h = r->h;
    rollback(r);
    u64 so = h->wseq_off;
    if (so % 8 == 0 && so >= r->aoff && so <= r->aend - 8) {
        u64 *seq = (u64 *)(r->base + so);
        /* Move to a fresh even value: a reader that sampled the pre-crash
         * even value must see a change even though the data was restored.
         *
         * Bumping a seq that is already even (s + 2) is not needed for
         * correctness; it is kept only because it is harmless.  wseq_off
         * is set before the seq is made odd and cleared after it is made
         * even again, so an even seq here means either the writer died
         * before its first store (tx_begin_seq: nothing of the container
         * changed) or after tx_end_seq's increment (the operation had
         * committed and the seq already holds a new even value).  In both
         * cases every reader that sampled this even value read data equal
         * to what it would read now, so leaving it unchanged is equivalent
         * (issue 17, seeded bug #7). */
        u64 s = *seq;
        __atomic_store_n(seq, (s & 1) ? s + 1 : s + 2, __ATOMIC_RELEASE);
    }
    compiler_fence();
    h->wseq_off = 0;
    __atomic_fetch_add(&h->recoveries, 1, __ATOMIC_RELAXED); /* lanes count here too */
}

void tx_init(TX *t, heap_region *r)
{
    t->base = r->base;
    t->h = r->h;
    t->r = r;
    t->overflow = 0;
    t->corrupt = NULL;
    t->ndefer = 0;
    t->seq = NULL;
    t->want = 0;
}

/* Container writers: make the seq odd before touching anything. */
void tx_begin_seq(TX *t, u64 *seq)
{
    t->h->wseq_off = (u64)((char *)seq - t->base);
    store_fence();
    __atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);
    store_fence();
    t->seq = seq;
}

void tx_end_seq(TX *t)
{
    if (t->seq) {
        store_fence();
        __atomic_store_n(t->seq, *t->seq + 1, __ATOMIC_RELEASE);
        store_fence();
        t->h->wseq_off = 0;
        t->seq = NULL;
    }
}

void tx_abort(TX *t)
{
    t->ndefer = 0;
    rollback(t->r);
    tx_end_seq(t);
}

/* Commit: run deferred frees, then clear the log (the commit point).  An
 * operation that overflowed the log or met corruption is rolled back
 * instead (t->corrupt or t->overflow says why) and -1 returned. */
int tx_commit(TX *t)
{
    for (int i = 0; i < t->ndefer; i++)
        tx_free_now(t, t->defer[i]);
    t->ndefer = 0;
    crash_point(); /* everything stored, not yet committed */
    if (t->overflow || t->corrupt) {
        tx_abort(t);
        return -1;
    }
    store_fence();
    __atomic_store_n(&t->h->log_count, 0, __ATOMIC_RELEASE);
    crash_point(); /* committed, seq still odd */
    tx_end_seq(t);
    return 0;
}
