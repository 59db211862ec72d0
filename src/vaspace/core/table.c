/*
 * core/table.c: the ranges reserve() took, and the table of segment mappings
 * in them (tokens, exports, ghosts), with the two placeholder mmaps every
 * other file uses to fill the window.
 */
#include "core.h"

/* The ranges reserve() took (the window and the parking range).  Every
 * address a caller hands to _core must lie in one of them, so no call, not
 * even a wrong one from Python, can map over or unmap the interpreter's own
 * memory. */
range_t reserved[MAX_RESERVED];
unsigned long long page_size = 4096; /* set at import */
int n_reserved = 0;

int
in_reserved(unsigned long long addr, unsigned long long len)
{
    if (len == 0 || addr + len < addr || addr % page_size || len % page_size)
        return 0;
    for (int i = 0; i < n_reserved; i++)
        if (reserved[i].lo <= addr && addr + len <= reserved[i].hi)
            return 1;
    return 0;
}

/* Whether [addr, addr+len) is a page-aligned, non-empty range of the 47-bit
 * user address space, not below 64 KiB (a mapping at NULL would hide NULL
 * dereferences): what reserve() and set_fixed_range() accept. */
int
user_range(unsigned long long addr, unsigned long long len)
{
    return len != 0 && addr + len >= addr && addr % page_size == 0 && len % page_size == 0 &&
           addr >= 0x10000 && addr + len <= 0x800000000000ull;
}

/* The (addr, length) arguments of reserve() and set_fixed_range(): -1 with
 * ValueError (naming the call) unless they are a user_range(). */
int
parse_user_range(PyObject *args, const char *call, unsigned long long *addr,
                 unsigned long long *len)
{
    if (!PyArg_ParseTuple(args, "KK", addr, len))
        return -1;
    if (!user_range(*addr, *len)) {
        PyErr_Format(PyExc_ValueError, "%s: need a page-aligned, non-empty range in the "
                     "47-bit user address space, above 64 KiB", call);
        return -1;
    }
    return 0;
}

tmap_t *tmaps = NULL;
Py_ssize_t tmaps_len = 0; /* entries [0, tmaps_len) are in use or free */
static Py_ssize_t tmaps_cap = 0;
uint64_t next_token = 1;
volatile uint64_t window_gen = 1;
/* Entries with exports > 0: while 0, placing needs no overlap check. */
Py_ssize_t pinned_maps = 0;

tmap_t *
tmap_find(uint64_t token)
{
    if (token == 0)
        return NULL;
    for (Py_ssize_t i = 0; i < tmaps_len; i++)
        if (tmaps[i].token == token)
            return &tmaps[i];
    return NULL;
}

/* The entry whose exports `token` took: the mapping, or its ghost in a child. */
tmap_t *
tmap_find_export(uint64_t token)
{
    if (token == 0)
        return NULL;
    for (Py_ssize_t i = 0; i < tmaps_len; i++)
        if (tmaps[i].token == token || tmaps[i].ghost_of == token)
            return &tmaps[i];
    return NULL;
}

/* A live entry whose current range overlaps [addr, addr+len), or NULL. */
tmap_t *
tmap_at(uintptr_t addr, size_t len)
{
    for (Py_ssize_t i = 0; i < tmaps_len; i++)
        if (tmaps[i].token && overlaps(tmap_where(&tmaps[i]), tmaps[i].vlen, addr, len))
            return &tmaps[i];
    return NULL;
}

void
tmap_hold(tmap_t *e)
{
    if (e->exports++ == 0)
        pinned_maps++;
}

void
tmap_drop(tmap_t *e)
{
    if (e->exports > 0 && --e->exports == 0) {
        pinned_maps--;
        if (e->ghost_of) { /* the last inherited view is gone: so is the ghost */
            reserve_fixed(e->home, e->len);
            tmap_forget(e);
            window_gen++;
        }
    }
}

/* A free entry (growing the table), or NULL with MemoryError set. */
tmap_t *
tmap_new(void)
{
    for (Py_ssize_t i = 0; i < tmaps_len; i++)
        if (tmaps[i].token == 0)
            return &tmaps[i];
    if (tmaps_len == tmaps_cap) {
        Py_ssize_t cap = tmaps_cap ? 2 * tmaps_cap : 16;
        tmap_t *t = realloc(tmaps, (size_t)cap * sizeof(tmap_t));
        if (t == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(t + tmaps_cap, 0, (size_t)(cap - tmaps_cap) * sizeof(tmap_t));
        tmaps = t;
        tmaps_cap = cap;
    }
    return &tmaps[tmaps_len++];
}

void
tmap_forget(tmap_t *e)
{
    if (e->exports > 0)
        pinned_maps--;
    free(e->name);
    memset(e, 0, sizeof(*e));
    while (tmaps_len > 0 && tmaps[tmaps_len - 1].token == 0)
        tmaps_len--;
}

/* Set BufferError: the mapping has live exports, so `what` cannot happen. */
void
refuse_exported(const tmap_t *e, const char *what)
{
    set_errorf(PyExc_BufferError,
               "segment '%s' at [%#lx, %#lx) still has %zd live view(s) (memoryviews, numpy "
                 "arrays or ctypes objects made from Segment.view()/array(), or a heap on it): "
                 "%s would move or unmap that memory; release them first (mv.release() or "
                 "'with seg.view() as mv:', del the arrays) and retry",
                 e->name ? e->name : "?", (unsigned long)e->home,
                 (unsigned long)(e->home + e->len), e->exports, what);
}

/* Re-reserve [addr, addr+len) as an inaccessible placeholder.  MAP_FIXED
 * replaces whatever is there, so this also discards a mapping. */
int
reserve_fixed(uintptr_t addr, size_t len)
{
    void *p = mmap((void *)addr, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? -1 : 0;
}

/* Plug [addr, addr+len) only where nothing is mapped (MAP_FIXED_NOREPLACE):
 * for a parking slot that should be a hole, so that a foreign mapping that
 * landed there is never destroyed.  Returns 0, or -1 (errno EEXIST: occupied). */
int
plug_noreplace(uintptr_t addr, size_t len)
{
    void *p = mmap((void *)addr, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    if ((uintptr_t)p != addr) { /* a kernel without MAP_FIXED_NOREPLACE: a hint */
        munmap(p, len);
        errno = EEXIST;
        return -1;
    }
    return 0;
}
