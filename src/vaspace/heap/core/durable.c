/*
 * durable.c -- flush(): the region's pages reach the file in the order the
 * undo log needs.
 *
 * A process that dies is covered by the undo log alone: its stores are in
 * the page cache, which outlives it.  A power loss is different: the kernel
 * writes dirty pages back in any order and at any time, so the file can hold
 * a page from after an operation next to one from before it, and the undo
 * log (a page of its own) may be older than both.  No undo log repairs that.
 *
 * So the file is only promised to be a consistent heap at a flush, and the
 * header says whether it still is:
 *
 *   durable_mark()   before the first store after a flush: set
 *                    header.unflushed to this boot's tag and msync the header
 *                    page, so that the mark is on disk before any page can
 *                    change;
 *   durable_flush()  msync every page, then clear the mark, then msync the
 *                    header page again.  The mark is cleared only once
 *                    everything it covers is on disk.  The caller holds the
 *                    lock (no writer is active) but makes hseq even first,
 *                    so that the image on disk is not "mid-update" for a
 *                    read-only reader after a restart; after unlocking it
 *                    calls durable_settle(), which writes the header page
 *                    once more, now with the lock word free.
 *
 * A file whose mark is clear therefore holds exactly the heap as of its last
 * flush; a file marked by an earlier boot was being written when the machine
 * stopped, and may be torn.
 *
 * Why a concurrent writer cannot slip a change under a clear mark: it sets
 * the mark and msyncs the header page before its first other store, and that
 * msync also waits for any writeback of the page already in flight.
 */
#include "core.h"

#include <errno.h>
#include <sys/mman.h>

int durable_mark(heap_region *r, u64 tag)
{
    if (__atomic_load_n(&r->h->unflushed, __ATOMIC_RELAXED) == tag)
        return 0;
    __atomic_store_n(&r->h->unflushed, tag, __ATOMIC_RELAXED);
    return msync(r->base, sizeof(heap_header), MS_SYNC) == 0 ? 0 : errno;
}

int durable_settle(heap_region *r)
{
    return msync(r->base, sizeof(heap_header), MS_SYNC) == 0 ? 0 : errno;
}

int durable_flush(heap_region *r)
{
    if (msync(r->base, r->size, MS_SYNC) != 0)
        return errno;
    __atomic_store_n(&r->h->unflushed, 0, __ATOMIC_RELAXED);
    return msync(r->base, sizeof(heap_header), MS_SYNC) == 0 ? 0 : errno;
}
