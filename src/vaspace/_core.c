/*
 * vaspace._core: the system calls under vaspace, and the switch's hot state.
 *
 * Like psutil's arch modules, each function parses its arguments, makes the
 * system call(s) and returns raw values; all policy (which mapping goes where,
 * permissions, the registry) lives in the Python layer.  The one exception is
 * the switch: it runs a whole move plan in one call, with rollback, because a
 * switch must be atomic for the calling thread and cheap (one call into C).
 *
 * Hot state kept here:
 *   - the calling thread's active vid (a __thread int, so it is per thread,
 *     as the RFC's task->active_vas);
 *   - a small cache of move plans keyed by (from vid, to vid), filled by the
 *     Python slow path and consumed by switch_fast().  The cache is only valid
 *     while no other thread is inside a VAS, because then the window holds
 *     exactly the mappings of the calling thread's VAS;
 *   - the ranges reserve() took, and a table of the segment mappings in them,
 *     each named by a *token* (see vaspace_core_api.h), with its exports.
 *
 * Safety: no call into this module, whatever its arguments, may crash the
 * interpreter.  So every address a caller gives must lie in a range reserve()
 * took, mappings are moved only by token (C knows where each one is), and a
 * mapping with live exports (memoryviews over a WindowView, holds taken
 * through the C API) is never moved or unmapped: that refuses with
 * BufferError and changes nothing, as CPython's mmap does for close().
 *
 * None of the mapping functions release the GIL: mmap/mremap on a reserved range do
 * not block on I/O, and holding the GIL makes each switch atomic with respect
 * to the process's other Python threads (which is what the plan needs).
 * dir_entries, a directory read on a file system, does release it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vaspace_core_api.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif

/* ------------------------------------------------------------------ */
/* errors                                                              */
/* ------------------------------------------------------------------ */

/* The single place that turns errno into OSError (psutil's errors.c). */
static PyObject *
vaspace_oserror(int err, const char *syscall)
{
    errno = err;
    return PyErr_SetFromErrnoWithFilename(PyExc_OSError, syscall);
}

/* PyErr_Format knows neither %#lx nor %zu everywhere: format with libc,
 * decode leniently (a name cut mid-character must not raise instead). */
static void
set_errorf(PyObject *type, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    PyObject *msg = PyUnicode_DecodeUTF8(buf, n, "replace");
    if (msg != NULL) {
        PyErr_SetObject(type, msg);
        Py_DECREF(msg);
    }
}

/* A rollback step failed: say loudly that the process state is unknown
 * (ENOTRECOVERABLE), naming the first failure and the failed undo. */
static PyObject *
unknown_state(int err, int undo_err, const char *what)
{
    PyObject *msg = PyUnicode_FromFormat(
        "%s failed (%s) and undoing it failed too (%s): this process's vaspace window is "
        "now in an unknown state; do not touch segment memory, restart the process",
        what, strerror(err), strerror(undo_err));
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", ENOTRECOVERABLE, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* per-thread and per-process hot state                                */
/* ------------------------------------------------------------------ */

static __thread long active_vid = 0;

/* Which threads are inside which VAS: the window must show the union of
 * their VASes, so the slow path needs every thread's active vid, including
 * the switches the fast path made.  A slot per thread that is inside a VAS;
 * the GIL serializes every access. */
#define MAX_THREAD_SLOTS 4096
typedef struct {
    pid_t tid;
    long vid;
} tslot_t;
static tslot_t private_slots[MAX_THREAD_SLOTS];
/* Points at private_slots, or at a MAP_SHARED file once published, so that
 * other processes can read which of our threads are in which VAS (the
 * RFC's /proc/<pid>/vas/<vid>/status) at no cost to the switch. */
static tslot_t *tslots = private_slots;
static __thread int my_slot = -1;
/* Slots [0, slots_hwm) may be in use: the fast path scans only those. */
static int slots_hwm = 0;
static __thread pid_t my_tid = 0;

/* The lazy-attach word: another process that leaves a lazy attach (or
 * detach) request for us sets it to nonzero, and the fast path, which runs
 * no Python and so never reads the registry, declines while it is set (one
 * load).  The slow path clears it before it takes the requests.  Once the
 * slots are published it lives in the same shared file, right after them
 * (a slot-sized record whose tid is always 0, so readers of the slots skip
 * it). */
typedef struct {
    int32_t zero;
    int32_t pad;
    int64_t pending;
} wake_t;
static wake_t private_wake;
static volatile wake_t *wake = &private_wake;
#define SHARED_BYTES (sizeof(private_slots) + sizeof(wake_t))

/* Threads of this process whose active vid is not 0. */
static long threads_in_vas = 0;

/* While > 0 the Python slow path is changing process state: the fast path
 * must not use cached plans. */
static long slow_busy = 0;

/* ------------------------------------------------------------------ */
/* reservations and the mapping table                                  */
/* ------------------------------------------------------------------ */

/* The ranges reserve() took (the window and the parking range).  Every
 * address a caller hands to _core must lie in one of them, so no call, not
 * even a wrong one from Python, can map over or unmap the interpreter's own
 * memory. */
#define MAX_RESERVED 16
typedef struct {
    uintptr_t lo, hi;
} range_t;
static range_t reserved[MAX_RESERVED];
static unsigned long long page_size = 4096; /* set at import */
static int n_reserved = 0;

static int
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
static int
user_range(unsigned long long addr, unsigned long long len)
{
    return len != 0 && addr + len >= addr && addr % page_size == 0 && len % page_size == 0 &&
           addr >= 0x10000 && addr + len <= 0x800000000000ull;
}

/* One mapping of a segment file: its token (0 = free entry), its home (the
 * segment's own address) and parking slot, whether it is placed (at home),
 * and how many exports pin it where it is.
 *
 * In a forked child, a mapping that had exports becomes a *ghost*: private
 * zero pages at its home, under a new token, remembering the parent's token
 * (ghost_of) so the inherited views can drop their exports.  A ghost is
 * placed and pinned until its last export goes, then it is plugged and
 * forgotten: no inherited view ever points at memory that went away. */
typedef struct {
    uint64_t token;
    uint64_t ghost_of;
    uintptr_t home, park;
    size_t len;  /* the segment's bytes: views, exports and lookups use these */
    size_t vlen; /* the VMA's bytes (>= len): a whole-PUD VMA moves as one entry */
    int prot;
    int placed;
    Py_ssize_t exports;
    char *name;
} tmap_t;

static tmap_t *tmaps = NULL;
static Py_ssize_t tmaps_len = 0; /* entries [0, tmaps_len) are in use or free */
static Py_ssize_t tmaps_cap = 0;
static uint64_t next_token = 1;
static volatile uint64_t window_gen = 1;
/* Entries with exports > 0: while 0, placing needs no overlap check. */
static Py_ssize_t pinned_maps = 0;

static tmap_t *
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
static tmap_t *
tmap_find_export(uint64_t token)
{
    if (token == 0)
        return NULL;
    for (Py_ssize_t i = 0; i < tmaps_len; i++)
        if (tmaps[i].token == token || tmaps[i].ghost_of == token)
            return &tmaps[i];
    return NULL;
}

static uintptr_t
tmap_where(const tmap_t *e)
{
    return e->placed ? e->home : e->park;
}

static int
overlaps(uintptr_t a, size_t alen, uintptr_t b, size_t blen)
{
    return a < b + blen && b < a + alen;
}

/* A live entry whose current range overlaps [addr, addr+len), or NULL. */
static tmap_t *
tmap_at(uintptr_t addr, size_t len)
{
    for (Py_ssize_t i = 0; i < tmaps_len; i++)
        if (tmaps[i].token && overlaps(tmap_where(&tmaps[i]), tmaps[i].vlen, addr, len))
            return &tmaps[i];
    return NULL;
}

static void
tmap_hold(tmap_t *e)
{
    if (e->exports++ == 0)
        pinned_maps++;
}

static void tmap_forget(tmap_t *e);
static int reserve_fixed(uintptr_t addr, size_t len);

static void
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
static tmap_t *
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

static void
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
static void
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

/* ------------------------------------------------------------------ */
/* move plans                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    Py_ssize_t idx; /* entry in tmaps, checked against token before use */
    uint64_t token;
    uintptr_t src, dst;
    size_t len;
    int place;     /* park -> home (else home -> park) */
    int keep_hole; /* the plan fills src right after: skip the plug */
} move_t;

typedef struct {
    long from, to;
    Py_ssize_t n;
    move_t *moves;
} plan_t;

/* The plan cache: open addressing with a short linear probe, so that every
 * transition of a cycle over many VASes keeps its plan (a direct-mapped table
 * let 1->2 and 5->6 evict each other). */
#define PLAN_SLOTS 1024
#define PLAN_PROBE 8
static plan_t plans[PLAN_SLOTS];
/* Slots holding a plan: clearing an empty cache (every attach and detach
 * clears it) then costs nothing instead of a pass over all the slots. */
static int plans_live = 0;

static void
plan_free(plan_t *p)
{
    if (p->moves != NULL)
        plans_live--;
    PyMem_Free(p->moves);
    memset(p, 0, sizeof(*p));
}

static void
plans_clear(void)
{
    if (plans_live == 0)
        return;
    for (int i = 0; i < PLAN_SLOTS; i++)
        plan_free(&plans[i]);
}

static unsigned long
plan_home(long from, long to)
{
    uint64_t h = (uint64_t)from * 0x9E3779B97F4A7C15ull ^ (uint64_t)to * 0xC2B2AE3D27D4EB4Full;
    return (unsigned long)(h >> 40) % PLAN_SLOTS;
}

/* The slot holding (from, to), or NULL. */
static plan_t *
plan_find(long from, long to)
{
    unsigned long h = plan_home(from, to);
    for (int i = 0; i < PLAN_PROBE; i++) {
        plan_t *p = &plans[(h + i) % PLAN_SLOTS];
        if (p->moves != NULL && p->from == from && p->to == to)
            return p;
    }
    return NULL;
}

/* Where to store (from, to): its own slot, else a free one in the probe
 * window, else the home slot (evicting whatever is there). */
static plan_t *
plan_slot(long from, long to)
{
    plan_t *p = plan_find(from, to);
    if (p != NULL)
        return p;
    unsigned long h = plan_home(from, to);
    for (int i = 0; i < PLAN_PROBE; i++) {
        p = &plans[(h + i) % PLAN_SLOTS];
        if (p->moves == NULL)
            return p;
    }
    return &plans[h];
}

/* Which mappings each attached VAS uses (set by the Python layer at attach
 * and detach).  With them the fast path can run a cached plan while other
 * threads are inside VASes: a plan may park a mapping only if no other
 * thread's VAS uses it (and plan_check refuses to place over anything
 * placed), so the window still shows the union of the threads' VASes. */
typedef struct {
    long vid;
    Py_ssize_t n;
    uint64_t *tokens;
} members_t;
static members_t *members = NULL;
static Py_ssize_t n_members = 0;

static members_t *
members_find(long vid)
{
    for (Py_ssize_t i = 0; i < n_members; i++)
        if (members[i].vid == vid)
            return &members[i];
    return NULL;
}

static void
members_clear(void)
{
    for (Py_ssize_t i = 0; i < n_members; i++)
        PyMem_Free(members[i].tokens);
    PyMem_Free(members);
    members = NULL;
    n_members = 0;
}

/* Whether the plan parks a mapping that another thread's VAS uses (or one
 * whose VAS is unknown here): then only the slow path may decide. */
static int
parks_shared(const plan_t *p)
{
    for (int i = 0; i < slots_hwm; i++) {
        if (tslots[i].tid == 0 || i == my_slot)
            continue;
        const members_t *mb = members_find(tslots[i].vid);
        if (mb == NULL)
            return 1;
        for (Py_ssize_t j = 0; j < p->n; j++) {
            if (p->moves[j].place)
                continue;
            for (Py_ssize_t k = 0; k < mb->n; k++)
                if (mb->tokens[k] == p->moves[j].token)
                    return 1;
        }
    }
    return 0;
}

/* Whether set_active(vid) will find a slot; checked before any move so a
 * switch never half-happens. */
static int
slot_available(long vid)
{
    if (active_vid != 0 || vid == 0)
        return 1;
    for (int i = 0; i < MAX_THREAD_SLOTS; i++)
        if (tslots[i].tid == 0)
            return 1;
    return 0;
}

/* Returns -1 (with no state changed) if there is no free thread slot. */
static int
set_active(long vid)
{
    if (my_tid == 0)
        my_tid = (pid_t)syscall(SYS_gettid);
    if (active_vid == 0 && vid != 0) {
        int i;
        for (i = 0; i < MAX_THREAD_SLOTS && tslots[i].tid != 0; i++)
            ;
        if (i == MAX_THREAD_SLOTS)
            return -1;
        tslots[i].tid = my_tid;
        if (i >= slots_hwm)
            slots_hwm = i + 1;
        my_slot = i;
        threads_in_vas++;
    } else if (active_vid != 0 && vid == 0) {
        if (my_slot >= 0)
            tslots[my_slot].tid = 0;
        my_slot = -1;
        threads_in_vas--;
    }
    if (my_slot >= 0)
        tslots[my_slot].vid = vid;
    active_vid = vid;
    return 0;
}

/* ------------------------------------------------------------------ */
/* mappings                                                            */
/* ------------------------------------------------------------------ */

/* Re-reserve [addr, addr+len) as an inaccessible placeholder.  MAP_FIXED
 * replaces whatever is there, so this also discards a mapping. */
static int
reserve_fixed(uintptr_t addr, size_t len)
{
    void *p = mmap((void *)addr, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? -1 : 0;
}

/* Plug [addr, addr+len) only where nothing is mapped (MAP_FIXED_NOREPLACE):
 * for a parking slot that should be a hole, so that a foreign mapping that
 * landed there is never destroyed.  Returns 0, or -1 (errno EEXIST: occupied). */
static int
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

/* Whether a mapping's parking slot is plugged while the mapping is placed.
 * 0 (the default): the slot stays an unmapped hole, so a park is one mremap
 * into it and a place is one mremap out of it (2 calls per conflicting
 * segment).  1 (VASPACE_PARK_PLUGS=1, or the fallback after an audit found
 * something foreign in the parking range): every slot is plugged again after
 * its mapping leaves, as the window always is. */
static int park_plugs = 0;

/* A move's plug failed after its mremap: put the mapping back.  Returns the
 * plug's errno; sets *undo_err if putting it back failed too. */
static __attribute__((noinline, cold)) int
move_undo(uintptr_t src, uintptr_t dst, size_t len, int *undo_err)
{
    int err = errno;
    /* The src range was just vacated, so this cannot clash. */
    if (mremap((void *)dst, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)src) == MAP_FAILED
        || reserve_fixed(dst, len) < 0)
        *undo_err = errno;
    return err;
}

/* One move: mremap the mapping at src to dst (into a hole, or replacing a
 * placeholder), then plug the hole left at src if plug_src says so.  The
 * caller decides: a home in the window is plugged unless the plan refills it
 * at once; a parking slot only in plugged mode.  Returns 0, or the errno of
 * a failed move (nothing changed, unless *undo_err was set: then the state
 * is unknown). */
static inline int
move_one(uintptr_t src, uintptr_t dst, size_t len, int plug_src, int *undo_err)
{
    if (mremap((void *)src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)dst) == MAP_FAILED)
        return errno;
    if (!plug_src || reserve_fixed(src, len) == 0)
        return 0;
    return move_undo(src, dst, len, undo_err);
}

/* Whether the forward move m plugs the range it leaves. */
static inline int
move_plugs_src(const move_t *m)
{
    return m->place ? park_plugs : !m->keep_hole;
}

/* Check a plan against the table before anything moves.  Returns 0 (it can
 * run), 1 (stale: the table does not match the plan; no exception set), or
 * -1 (BufferError set: it would park a mapping with live exports, or place
 * a mapping over one).
 *
 * The cached-plan switch (full = 0) pays only for what keeps views safe:
 * while no mapping has exports and no other thread is inside a VAS, an O(1)
 * test per move that the plan matches the table (right token, moving the
 * right way).  Otherwise, and always for plans that come straight from
 * Python (full = 1), the plan is simulated: see plan_check_full. */
static int plan_check_full(const move_t *moves, Py_ssize_t n, int others);

static inline __attribute__((always_inline)) int
plan_check(const move_t *moves, Py_ssize_t n, int full, int others)
{
    if (full || others || pinned_maps)
        return plan_check_full(moves, n, others);
    for (Py_ssize_t i = 0; i < n; i++) {
        const move_t *m = &moves[i];
        if (m->idx >= tmaps_len || tmaps[m->idx].token != m->token ||
            tmaps[m->idx].placed == m->place)
            return 1;
    }
    return 0;
}

/* The simulated check: flip `placed` in order, then flip back, so that a
 * mapping parked early in the plan frees its range for one placed later,
 * and a place that would land on a placed mapping is refused (stale).  With
 * `others` (other threads are inside VASes) a place over a pinned mapping
 * is stale too, for the slow path to name; without, it is a BufferError.
 * O(1) per park, O(mappings) per place, which keeps placed mappings from
 * ever overlapping. */
static int
plan_check_full(const move_t *moves, Py_ssize_t n, int others)
{
    int r = 0;
    Py_ssize_t flipped = 0;
    tmap_t *pinned = NULL, *mover = NULL; /* what to name in the BufferError */
    while (flipped < n) {
        const move_t *m = &moves[flipped];
        if (m->idx >= tmaps_len || tmaps[m->idx].token != m->token ||
            tmaps[m->idx].placed == m->place) {
            r = 1;
            break;
        }
        tmap_t *e = &tmaps[m->idx];
        if (e->exports) {
            pinned = e;
            break;
        }
        for (Py_ssize_t j = 0; m->place && j < tmaps_len && r == 0; j++) {
            tmap_t *o = &tmaps[j];
            if (o->token && o->placed && overlaps(o->home, o->vlen, e->home, e->vlen)) {
                r = 1;
                /* With other threads inside VASes the slow path names the
                 * collision (EFAULT: another thread's VAS holds the range). */
                if (o->exports && !others) {
                    pinned = o;
                    mover = e;
                }
            }
        }
        if (r || pinned)
            break;
        e->placed = m->place;
        flipped++;
    }
    /* Undo the simulation (each token appears once in a plan) before any
     * Python code can run: building the message allocates, and a GC pass may
     * run finalizers that change the plans or the table. */
    while (flipped-- > 0)
        tmaps[moves[flipped].idx].placed = !moves[flipped].place;
    if (pinned == NULL)
        return r;
    if (mover == NULL) {
        refuse_exported(pinned, "switching away from its VAS");
    } else {
        char what[400];
        snprintf(what, sizeof(what), "placing segment '%s' over it",
                 mover->name ? mover->name : "?");
        refuse_exported(pinned, what);
    }
    return -1;
}

/* Move i of a plan failed with err: undo moves [0, i) in reverse, set the
 * error (ENOTRECOVERABLE if an undo failed), return -1. */
static __attribute__((noinline, cold)) int
moves_failed(const move_t *moves, Py_ssize_t i, int err, int undo_err)
{
    if (undo_err) {
        unknown_state(err, undo_err, "mremap");
        return -1;
    }
    for (Py_ssize_t j = i - 1; j >= 0; j--) {
        const move_t *u = &moves[j];
        int e3 = 0;
        /* Undoing a place leaves a hole at home: plug it.  Undoing a park
         * leaves a hole in the parking slot: as any slot. */
        int e2 = move_one(u->dst, u->src, u->len, u->place ? 1 : park_plugs, &e3);
        if (e2) {
            unknown_state(err, e2, "mremap");
            return -1;
        }
        tmaps[u->idx].placed = !u->place;
    }
    vaspace_oserror(err, "mremap");
    return -1;
}

/* Run moves[0..n) in order (after plan_check); on failure undo the ones
 * done, in reverse.  Returns 0, or -1 with OSError set. */
static int
run_moves(const move_t *moves, Py_ssize_t n)
{
    int undo_err = 0;
    if (n > 0)
        window_gen++;
    for (Py_ssize_t i = 0; i < n; i++) {
        const move_t *m = &moves[i];
        int err = move_one(m->src, m->dst, m->len, move_plugs_src(m), &undo_err);
        if (err)
            return moves_failed(moves, i, err, undo_err);
        tmaps[m->idx].placed = m->place;
    }
    return 0;
}

/* Parse a sequence of (token, place, keep_hole) tuples into a PyMem array.
 * Each token must name a live mapping, at most once; keep_hole is only
 * allowed where a later move of the same plan places a mapping of exactly
 * that range, so a plan can never leave an unreserved hole in the window. */
static int
parse_moves(PyObject *seq, move_t **out, Py_ssize_t *n_out)
{
    PyObject *fast = PySequence_Fast(seq, "moves must be a sequence of (token, place, keep_hole)");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    move_t *moves = PyMem_Calloc(n ? n : 1, sizeof(move_t));
    if (moves == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long token;
        int place, keep_hole;
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "Kpp", &token, &place, &keep_hole)) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError,
                                "each move must be a (token, place, keep_hole) tuple");
            }
            goto fail;
        }
        tmap_t *e = tmap_find(token);
        if (e == NULL) {
            set_errorf(PyExc_ValueError, "move %zd: no mapping with token %llu", i, token);
            goto fail;
        }
        for (Py_ssize_t j = 0; j < i; j++) {
            if (moves[j].token == token) {
                set_errorf(PyExc_ValueError, "move %zd: token %llu moves twice", i, token);
                goto fail;
            }
        }
        move_t *m = &moves[i];
        m->idx = e - tmaps;
        m->token = token;
        m->len = e->vlen;
        m->place = place;
        m->keep_hole = keep_hole;
        m->src = place ? e->park : e->home;
        m->dst = place ? e->home : e->park;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!moves[i].keep_hole)
            continue;
        int refilled = 0;
        for (Py_ssize_t j = i + 1; j < n; j++)
            refilled |= moves[j].place && moves[j].dst == moves[i].src &&
                        moves[j].len == moves[i].len;
        if (moves[i].place || !refilled) {
            PyErr_Format(PyExc_ValueError,
                         "move %zd: keep_hole needs a later move placing a mapping of the "
                         "same range", i);
            goto fail;
        }
    }
    Py_DECREF(fast);
    *out = moves;
    *n_out = n;
    return 0;
fail:
    PyMem_Free(moves);
    Py_DECREF(fast);
    return -1;
}

/* ------------------------------------------------------------------ */
/* exported functions                                                  */
/* ------------------------------------------------------------------ */

PyDoc_STRVAR(reserve_doc,
"reserve(addr, length)\n\n"
"Reserve [addr, addr+length) as PROT_NONE with MAP_FIXED_NOREPLACE and\n"
"remember it: every other address given to _core must lie in such a range.\n"
"Raises FileExistsError if any part of the range is already mapped.");

static PyObject *
vaspace_reserve(PyObject *self, PyObject *args)
{
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "KK", &addr, &len))
        return NULL;
    if (!user_range(addr, len)) {
        PyErr_SetString(PyExc_ValueError, "reserve: need a page-aligned, non-empty range "
                        "in the 47-bit user address space, above 64 KiB");
        return NULL;
    }
    if (n_reserved == MAX_RESERVED)
        return vaspace_oserror(ENOMEM, "reserve (too many reserved ranges)");
    void *p = mmap((void *)(uintptr_t)addr, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        return vaspace_oserror(errno, "mmap");
    if ((uintptr_t)p != addr) {
        /* A kernel without MAP_FIXED_NOREPLACE treats it as a hint. */
        munmap(p, len);
        return vaspace_oserror(EEXIST, "mmap");
    }
    reserved[n_reserved].lo = addr;
    reserved[n_reserved].hi = addr + len;
    n_reserved++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unmap_doc,
"unmap(addr, length)\n\n"
"munmap a whole range reserve() took; refused (ValueError) for any other\n"
"range, and while a mapping still lies in it.");

static PyObject *
vaspace_unmap(PyObject *self, PyObject *args)
{
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "KK", &addr, &len))
        return NULL;
    int i;
    for (i = 0; i < n_reserved; i++)
        if (reserved[i].lo == addr && reserved[i].hi == addr + len)
            break;
    if (i == n_reserved) {
        set_errorf(PyExc_ValueError, "unmap: [%#llx, +%#llx) is not a range reserve() took",
                     addr, len);
        return NULL;
    }
    tmap_t *e = tmap_at(addr, len);
    if (e != NULL) {
        if (e->exports) {
            refuse_exported(e, "unmapping the reserved range");
            return NULL;
        }
        PyErr_Format(PyExc_ValueError, "unmap: segment '%s' is still mapped in the range",
                     e->name);
        return NULL;
    }
    if (munmap((void *)(uintptr_t)addr, len) < 0)
        return vaspace_oserror(errno, "munmap");
    reserved[i] = reserved[--n_reserved];
    Py_RETURN_NONE;
}

PyDoc_STRVAR(plug_doc,
"plug(addr, length)\n\n"
"Replace whatever is mapped at a part of a reserved range with a PROT_NONE\n"
"placeholder; refused (ValueError) outside the reserved ranges and over a\n"
"mapping (unmap_mapping() discards those).");

static PyObject *
vaspace_plug(PyObject *self, PyObject *args)
{
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "KK", &addr, &len))
        return NULL;
    if (!in_reserved(addr, len)) {
        set_errorf(PyExc_ValueError, "plug: [%#llx, +%#llx) is not inside a reserved range",
                     addr, len);
        return NULL;
    }
    tmap_t *e = tmap_at(addr, len);
    if (e != NULL) {
        PyErr_Format(PyExc_ValueError, "plug: segment '%s' is mapped there", e->name);
        return NULL;
    }
    if (reserve_fixed((uintptr_t)addr, len) < 0)
        return vaspace_oserror(errno, "mmap");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(map_shared_doc,
"map_shared(fd, park, length, prot, home, name, vma_length=length) -> token\n\n"
"Map fd MAP_SHARED|MAP_FIXED at the parking slot park (replacing a\n"
"placeholder), mark it MADV_DONTFORK so that a forked child does not inherit\n"
"it, and remember it as a new mapping whose home is [home, home+length).\n"
"vma_length (a page multiple >= length) makes the VMA longer than the file:\n"
"a VMA that covers whole 1 GiB page-table entries moves with one entry per\n"
"GiB (an access past the file's end there gets SIGBUS, not SIGSEGV).\n"
"Both ranges must lie in reserved ranges; the parking slot must be free.\n"
"Returns the mapping's token (never 0, never reused).");

static PyObject *
vaspace_map_shared(PyObject *self, PyObject *args)
{
    int fd, prot;
    unsigned long long park, len, home, vlen = 0;
    const char *name;
    if (!PyArg_ParseTuple(args, "iKKiKs|K", &fd, &park, &len, &prot, &home, &name, &vlen))
        return NULL;
    if (vlen == 0)
        vlen = len;
    if (vlen < len || vlen % page_size) {
        PyErr_SetString(PyExc_ValueError, "map_shared: vma_length must be a page multiple "
                        ">= length");
        return NULL;
    }
    if (prot & ~(PROT_READ | PROT_WRITE)) {
        PyErr_SetString(PyExc_ValueError, "prot may only hold PROT_READ and PROT_WRITE");
        return NULL;
    }
    if (!in_reserved(park, vlen) || !in_reserved(home, vlen)) {
        set_errorf(PyExc_ValueError, "map_shared: [%#llx, +%#llx) and [%#llx, +%#llx) must "
                     "lie in reserved ranges", park, len, home, len);
        return NULL;
    }
    /* Parking slots stay apart from every other mapping's slot and home, so
     * no move can land on memory another mapping owns.  Homes may overlap
     * (several worlds at one address): only one of them is placed at a time. */
    for (Py_ssize_t i = 0; i < tmaps_len; i++) {
        tmap_t *o = &tmaps[i];
        if (o->token && (overlaps(o->home, o->vlen, park, vlen) ||
                         (!o->ghost_of && (overlaps(o->park, o->vlen, park, vlen) ||
                                           overlaps(o->park, o->vlen, home, vlen))))) {
            PyErr_Format(PyExc_ValueError, "map_shared: the slot or home overlaps the "
                         "parking slot or home of segment '%s'", o->name);
            return NULL;
        }
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return PyErr_NoMemory();
    tmap_t *e = tmap_new();
    if (e == NULL) {
        free(copy);
        return NULL;
    }
    void *p = mmap((void *)(uintptr_t)park, vlen, prot, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        free(copy);
        return vaspace_oserror(errno, "mmap");
    }
    if (madvise(p, vlen, MADV_DONTFORK) < 0) {
        int err = errno;
        free(copy);
        if (reserve_fixed((uintptr_t)park, vlen) < 0)
            return unknown_state(err, errno, "madvise");
        return vaspace_oserror(err, "madvise");
    }
    window_gen++;
    e->token = next_token++;
    e->home = home;
    e->park = park;
    e->len = len;
    e->vlen = vlen;
    e->prot = prot;
    e->placed = 0;
    e->exports = 0;
    e->name = copy;
    return PyLong_FromUnsignedLongLong(e->token);
}

/* The live entry a Python int token names, or NULL with an exception set. */
static tmap_t *
tmap_from_arg(PyObject *arg)
{
    unsigned long long token = PyLong_AsUnsignedLongLong(arg);
    if (token == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    tmap_t *e = tmap_find(token);
    if (e == NULL)
        set_errorf(PyExc_ValueError, "no mapping with token %llu", token);
    return e;
}

PyDoc_STRVAR(unmap_mapping_doc,
"unmap_mapping(token)\n\n"
"Discard a mapping (plugging its range, placed or parked) and forget its\n"
"token.  BufferError while it has live exports; ValueError if unknown.");

static PyObject *
vaspace_unmap_mapping(PyObject *self, PyObject *arg)
{
    tmap_t *e = tmap_from_arg(arg);
    if (e == NULL)
        return NULL;
    if (e->exports) {
        refuse_exported(e, "unmapping it");
        return NULL;
    }
    window_gen++;
    if (reserve_fixed(tmap_where(e), e->vlen) < 0)
        return vaspace_oserror(errno, "mmap");
    /* A placed mapping's slot is a hole unless in plugged mode: fill it, but
     * never over something foreign (the audit reports that). */
    if (e->placed && !park_plugs && e->park != e->home)
        plug_noreplace(e->park, e->vlen);
    tmap_forget(e);
    /* Cached plans name table entries; make sure none outlives this one. */
    plans_clear();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(shrink_doc,
"shrink(token)\n\n"
"Cut a mapping's VMA back to its segment's length (mremap in place, then\n"
"plug the tail), wherever it is: before another mapping may use the\n"
"addresses of its tail.  Views are unaffected (they cover the segment only).\n"
"Cached plans are dropped (they hold the old length).");

static PyObject *
vaspace_shrink(PyObject *self, PyObject *arg)
{
    tmap_t *e = tmap_from_arg(arg);
    if (e == NULL)
        return NULL;
    if (e->vlen == e->len)
        Py_RETURN_NONE;
    uintptr_t at = tmap_where(e);
    if (mremap((void *)at, e->vlen, e->len, 0) == MAP_FAILED)
        return vaspace_oserror(errno, "mremap");
    size_t tail = e->vlen - e->len;
    e->vlen = e->len;
    plans_clear();
    window_gen++;
    if (reserve_fixed(at + e->len, tail) < 0)
        return vaspace_oserror(errno, "mmap");
    /* A placed mapping's slot is a hole of the old length: the tail is no
     * longer part of the slot. */
    if (e->placed && !park_plugs && e->park != e->home)
        plug_noreplace(e->park + e->len, tail);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(mappings_doc,
"mappings() -> list[tuple[int, int, int, int, bool, int, str]]\n\n"
"(token, home, park, length, placed, exports, name) of every mapping: what\n"
"C knows is where, for the slow path and for messages.");

static PyObject *
vaspace_mappings(PyObject *self, PyObject *noargs)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < tmaps_len; i++) {
        tmap_t *e = &tmaps[i];
        if (e->token == 0)
            continue;
        PyObject *t = Py_BuildValue("(KKKKOns)", (unsigned long long)e->token,
                                    (unsigned long long)e->home, (unsigned long long)e->park,
                                    (unsigned long long)e->len, e->placed ? Py_True : Py_False,
                                    e->exports, e->name);
        if (t == NULL || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
    }
    return list;
}

PyDoc_STRVAR(move_doc,
"move(token, place)\n\n"
"Move one mapping: to its home (place true) or to its parking slot, with\n"
"the same checks as a switch (BufferError under live exports).");

static PyObject *
vaspace_move(PyObject *self, PyObject *args)
{
    unsigned long long token;
    int place;
    if (!PyArg_ParseTuple(args, "Kp", &token, &place))
        return NULL;
    PyObject *seq = Py_BuildValue("((KOO))", token, place ? Py_True : Py_False, Py_False);
    if (seq == NULL)
        return NULL;
    move_t *moves;
    Py_ssize_t n;
    int r = parse_moves(seq, &moves, &n);
    Py_DECREF(seq);
    if (r < 0)
        return NULL;
    r = plan_check(moves, n, 1, 0);
    if (r == 1)
        PyErr_SetString(PyExc_ValueError, place ? "move: the mapping is placed already"
                                                : "move: the mapping is parked already");
    if (r == 0)
        r = run_moves(moves, n);
    PyMem_Free(moves);
    if (r)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(run_plan_doc,
"run_plan(moves, vid)\n\n"
"Run a list of (token, place, keep_hole) moves, then make vid the calling\n"
"thread's active VAS.  keep_hole skips plugging the home a parked mapping\n"
"leaves (a later move of the plan refills it).  All or nothing: BufferError\n"
"if a move would take away a mapping with live exports; on a failed move\n"
"the moves done are undone, the active vid is unchanged, and OSError is\n"
"raised (ENOTRECOVERABLE if the undo failed too).");

static PyObject *
vaspace_run_plan(PyObject *self, PyObject *args)
{
    PyObject *seq;
    long vid;
    move_t *moves;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "Ol", &seq, &vid))
        return NULL;
    if (!slot_available(vid))
        return vaspace_oserror(EAGAIN, "vas_switch (too many threads inside VASes)");
    if (parse_moves(seq, &moves, &n) < 0)
        return NULL;
    int r = plan_check(moves, n, 1, 0);
    if (r == 1)
        PyErr_SetString(PyExc_ValueError, "run_plan: a move parks a parked mapping, places a "
                        "placed one, or places one over a placed mapping");
    if (r == 0)
        r = run_moves(moves, n);
    PyMem_Free(moves);
    if (r)
        return NULL;
    set_active(vid);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(plan_put_doc,
"plan_put(from_vid, to_vid, moves)\n\n"
"Cache the move plan, (token, place, keep_hole) tuples, for a switch from\n"
"one VAS to another.  It is used by switch_fast() while no other thread is\n"
"inside a VAS.");

static PyObject *
vaspace_plan_put(PyObject *self, PyObject *args)
{
    long from, to;
    PyObject *seq;
    move_t *moves;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "llO", &from, &to, &seq))
        return NULL;
    if (parse_moves(seq, &moves, &n) < 0)
        return NULL;
    plan_t *slot = plan_slot(from, to);
    plan_free(slot);
    slot->from = from;
    slot->to = to;
    slot->n = n;
    slot->moves = moves;
    if (moves != NULL)
        plans_live++;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(plan_get_doc,
"plan_get(from_vid, to_vid) -> list | None\n\n"
"The cached plan as (src, dst, len, keep_hole) tuples, or None (for\n"
"introspection and tests: what a switch will move).");

static PyObject *
vaspace_plan_get(PyObject *self, PyObject *args)
{
    long from, to;
    if (!PyArg_ParseTuple(args, "ll", &from, &to))
        return NULL;
    plan_t *p = plan_find(from, to);
    if (p == NULL)
        Py_RETURN_NONE;
    /* Copy first: building tuples allocates, and a GC pass may run
     * finalizers that replace or drop this plan. */
    Py_ssize_t n = p->n;
    move_t *copy = PyMem_Calloc(n ? n : 1, sizeof(move_t));
    if (copy == NULL)
        return PyErr_NoMemory();
    memcpy(copy, p->moves, (size_t)n * sizeof(move_t));
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *t = Py_BuildValue("(KKKO)", (unsigned long long)copy[i].src,
                                    (unsigned long long)copy[i].dst,
                                    (unsigned long long)copy[i].len,
                                    copy[i].keep_hole ? Py_True : Py_False);
        if (t == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, t);
    }
    PyMem_Free(copy);
    return list;
}

PyDoc_STRVAR(vas_members_doc,
"vas_members(vid, tokens)\n\n"
"Tell the fast path which mappings (tokens) VAS vid uses; None forgets\n"
"vid.  With it, a cached plan can run while other threads are\n"
"inside VASes, if it parks none of their mappings.");

static PyObject *
vaspace_vas_members(PyObject *self, PyObject *args)
{
    long vid;
    PyObject *seq;
    if (!PyArg_ParseTuple(args, "lO", &vid, &seq))
        return NULL;
    members_t *mb = members_find(vid);
    if (seq == Py_None) {
        if (mb != NULL) {
            PyMem_Free(mb->tokens);
            *mb = members[--n_members];
        }
        Py_RETURN_NONE;
    }
    PyObject *fast = PySequence_Fast(seq, "tokens must be a sequence of ints");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    uint64_t *tokens = PyMem_Calloc(n ? n : 1, sizeof(uint64_t));
    if (tokens == NULL) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        tokens[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (tokens[i] == (uint64_t)-1 && PyErr_Occurred()) {
            PyMem_Free(tokens);
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    mb = members_find(vid); /* converting the tokens may have run Python code */
    if (mb == NULL) {
        members_t *grown = PyMem_Realloc(members, (size_t)(n_members + 1) * sizeof(members_t));
        if (grown == NULL) {
            PyMem_Free(tokens);
            return PyErr_NoMemory();
        }
        members = grown;
        mb = &members[n_members++];
        mb->tokens = NULL;
    }
    PyMem_Free(mb->tokens);
    mb->vid = vid;
    mb->n = n;
    mb->tokens = tokens;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(plan_clear_doc, "plan_clear()\n\nDrop every cached plan.");

static PyObject *
vaspace_plan_clear(PyObject *self, PyObject *noargs)
{
    plans_clear();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(switch_fast_doc,
"switch_fast(vid) -> int\n\n"
"Switch the calling thread to vid using a cached plan.  Returns 1 when done\n"
"(or already there), 2 when done and the thread entered a VAS from the\n"
"original AS, and 0 when the slow path must decide (no cached plan, another\n"
"thread is inside a VAS, the slow path is busy, or the plan is stale).\n"
"Raises BufferError if the plan would move a mapping with live exports,\n"
"OSError if a move fails; the thread then stays where it was.");

static PyObject *
vaspace_switch_fast(PyObject *self, PyObject *arg)
{
    long vid = PyLong_AsLong(arg);
    if (vid == -1 && PyErr_Occurred())
        return NULL;
    long from = active_vid;
    if (vid == from)
        return PyLong_FromLong(1);
    if (slow_busy || wake->pending)
        return PyLong_FromLong(0);
    plan_t *p = plan_find(from, vid);
    if (p == NULL || !slot_available(vid))
        return PyLong_FromLong(0);
    if (p->n) { /* nothing to move: nothing to check either */
        /* A cached plan moves what differs between the two VASes.  With
         * other threads inside VASes it may run only if it parks nothing
         * they use, and it gets the full check (their mappings may be in
         * the way). */
        long others = threads_in_vas - (from != 0);
        if (others && parks_shared(p))
            return PyLong_FromLong(0);
        int r = plan_check(p->moves, p->n, 0, others != 0);
        if (r == 1)
            return PyLong_FromLong(0);
        if (r < 0 || run_moves(p->moves, p->n) < 0)
            return NULL;
    }
    set_active(vid);
    return PyLong_FromLong(from == 0 ? 2 : 1);
}

/* The Python slow path, registered by vaspace.process.switch: called as
 * slow(vid, code) when the fast path declines (code 0) or when a thread
 * entered a VAS from the original AS (code 2, so it can guard the thread). */
static PyObject *slow_path = NULL;

PyDoc_STRVAR(set_slow_path_doc,
"set_slow_path(callable)\n\nRegister the switch's Python slow path.");

static PyObject *
vaspace_set_slow_path(PyObject *self, PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "slow path must be callable");
        return NULL;
    }
    Py_INCREF(fn);
    Py_XSETREF(slow_path, fn);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(switch_doc,
"vas_switch(vid, /)\n--\n\n"
"Switch the calling thread to VAS ``vid`` (0: the original AS).\n\n"
"Errors: EINVAL (not attached), EFAULT (another thread's VAS uses the\n"
"addresses with a different mapping; the thread stays where it was),\n"
"BufferError (a segment the switch would take away has live views).\n"
"The common case is this one C call running a cached move plan; otherwise\n"
"it hands over to the Python slow path, which plans (and caches) the move.");

static PyObject *
vaspace_switch(PyObject *self, PyObject *arg)
{
    long code = 0;
    if (PyLong_CheckExact(arg)) {
        PyObject *r = vaspace_switch_fast(self, arg);
        if (r == NULL) {
            /* Out of range for a C long: the slow path reports EINVAL. */
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return NULL;
            PyErr_Clear();
        } else {
            code = PyLong_AsLong(r);
            Py_DECREF(r);
            if (code == 1)
                Py_RETURN_NONE;
        }
    }
    if (slow_path == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "vaspace switch slow path not registered");
        return NULL;
    }
    return PyObject_CallFunction(slow_path, "Ol", arg, code);
}

PyDoc_STRVAR(active_doc, "active() -> int\n\nThe calling thread's active vid (0: original).");

static PyObject *
vaspace_active(PyObject *self, PyObject *noargs)
{
    return PyLong_FromLong(active_vid);
}

PyDoc_STRVAR(set_active_doc, "set_active(vid)\n\nSet the calling thread's active vid.");

static PyObject *
vaspace_set_active(PyObject *self, PyObject *arg)
{
    long vid = PyLong_AsLong(arg);
    if (vid == -1 && PyErr_Occurred())
        return NULL;
    if (set_active(vid) < 0)
        return vaspace_oserror(EAGAIN, "set_active (too many threads inside VASes)");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(threads_in_vas_doc,
"threads_in_vas() -> int\n\nHow many threads of this process are inside a VAS.");

static PyObject *
vaspace_threads_in_vas(PyObject *self, PyObject *noargs)
{
    return PyLong_FromLong(threads_in_vas);
}

PyDoc_STRVAR(forget_tid_doc,
"forget_tid(tid)\n\n"
"Drop the slot of a thread that died while inside a VAS.  Cached plans are\n"
"dropped too: they assumed that thread's mappings were where it left them.");

static PyObject *
vaspace_forget_tid(PyObject *self, PyObject *arg)
{
    long tid = PyLong_AsLong(arg);
    if (tid == -1 && PyErr_Occurred())
        return NULL;
    for (int i = 0; i < MAX_THREAD_SLOTS; i++) {
        if (tslots[i].tid == (pid_t)tid && tid != 0) {
            tslots[i].tid = 0;
            tslots[i].vid = 0;
            threads_in_vas--;
            plans_clear();
        }
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(thread_vids_doc,
"thread_vids() -> list[tuple[int, int]]\n\n"
"(native thread id, vid) of every thread of this process inside a VAS.");

static PyObject *
vaspace_thread_vids(PyObject *self, PyObject *noargs)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < slots_hwm; i++) { /* no slot above is in use */
        if (tslots[i].tid == 0)
            continue;
        PyObject *item = Py_BuildValue("(il)", (int)tslots[i].tid, tslots[i].vid);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    return list;
}

PyDoc_STRVAR(publish_threads_doc,
"publish_threads(fd) -> int\n\n"
"Move the thread slots, and the lazy-attach word after them, into a\n"
"MAP_SHARED mapping of fd (which must be at least slots_size() bytes, and\n"
"read as zeros: only the slots in use are copied) so\n"
"other processes can read the slots and set the word.  Returns the slot\n"
"size in bytes (each slot: int32 tid, 4 bytes padding, int64 vid; the word\n"
"is the int64 of one more slot, at wake_offset(), whose tid stays 0).");

static PyObject *
vaspace_publish_threads(PyObject *self, PyObject *arg)
{
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    /* A file shorter than the slots would fault (SIGBUS) on the copy below. */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vaspace_oserror(errno, "fstat");
    off_t size = st.st_size;
    if ((size_t)size < SHARED_BYTES) {
        set_errorf(PyExc_ValueError, "publish_threads: the file holds %lld bytes, "
                     "slots need %zu", (long long)size, (size_t)SHARED_BYTES);
        return NULL;
    }
    /* Publishing again (a new registry root) moves the slots to the new file. */
    void *p = mmap(NULL, SHARED_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return vaspace_oserror(errno, "mmap");
    if (madvise(p, SHARED_BYTES, MADV_DONTFORK) < 0) {
        int err = errno;
        munmap(p, SHARED_BYTES);
        return vaspace_oserror(err, "madvise");
    }
    /* The caller hands over a file that reads as zeros (new, or truncated to 0
     * first), and no slot at or above slots_hwm was ever used: copying only the
     * used slots touches one page of the file instead of all of its 16 (each
     * first touch of a tmpfs page allocates it, which made this call cost
     * about 150 us, most of a process's first attach). */
    memcpy(p, tslots, (size_t)slots_hwm * sizeof(tslot_t));
    wake_t *w = (wake_t *)((char *)p + sizeof(private_slots));
    w->zero = 0;
    w->pending = wake->pending;
    if (tslots != private_slots)
        munmap(tslots, SHARED_BYTES);
    tslots = p;
    wake = w;
    return PyLong_FromSize_t(sizeof(tslot_t));
}

PyDoc_STRVAR(slots_size_doc,
"slots_size() -> int\n\nBytes needed by publish_threads(): the slots and the lazy-attach word.");

static PyObject *
vaspace_slots_size(PyObject *self, PyObject *noargs)
{
    return PyLong_FromSize_t(SHARED_BYTES);
}

PyDoc_STRVAR(wake_offset_doc,
"wake_offset() -> int\n\n"
"Where, in the published slots file, the lazy-attach word (an int64) lies.");

static PyObject *
vaspace_wake_offset(PyObject *self, PyObject *noargs)
{
    return PyLong_FromSize_t(sizeof(private_slots) + offsetof(wake_t, pending));
}

PyDoc_STRVAR(wake_take_doc,
"wake_take() -> bool\n\n"
"Clear the lazy-attach word; True if it was set.  The slow path calls it\n"
"before it reads the requests, so a request left after that sets it again.");

static PyObject *
vaspace_wake_take(PyObject *self, PyObject *noargs)
{
    int64_t was = __atomic_exchange_n(&wake->pending, 0, __ATOMIC_SEQ_CST);
    return PyBool_FromLong(was != 0);
}

PyDoc_STRVAR(busy_doc,
"busy(delta)\n\n"
"Enter (+1) or leave (-1) a slow-path section; while busy, switch_fast\n"
"declines so that it never runs a plan against changing state.");

static PyObject *
vaspace_busy(PyObject *self, PyObject *arg)
{
    long d = PyLong_AsLong(arg);
    if (d == -1 && PyErr_Occurred())
        return NULL;
    if (d != 1 && d != -1) {
        PyErr_SetString(PyExc_ValueError, "busy: delta must be 1 or -1");
        return NULL;
    }
    slow_busy += d;
    if (slow_busy < 0)
        slow_busy = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(reset_after_fork_doc,
"reset_after_fork() -> int\n\n"
"In a forked child: the child starts in the original address space with no\n"
"cached plans and no mappings (they were MADV_DONTFORK and are gone).  The\n"
"reserved ranges stay reserved, re-plugged whole.  Where a mapping had live\n"
"exports, the child gets private zero pages instead (a ghost, pinned until\n"
"those exports go), so a view it inherited reads zeros (and writes stay\n"
"private) rather than faulting.  Returns how many ghosts it made.");

static PyObject *
vaspace_reset_after_fork(PyObject *self, PyObject *noargs)
{
    plans_clear();
    /* Fill the holes the DONTFORK mappings left, so nothing else lands there. */
    for (int i = 0; i < n_reserved; i++)
        reserve_fixed(reserved[i].lo, reserved[i].hi - reserved[i].lo);
    long ghosts = 0;
    pinned_maps = 0;
    for (Py_ssize_t i = 0; i < tmaps_len; i++) {
        tmap_t *e = &tmaps[i];
        if (e->token && e->exports && e->placed &&
            mmap((void *)e->home, e->len, PROT_READ | (e->prot & PROT_WRITE),
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) != MAP_FAILED) {
            /* Keep the entry (same index: inherited views find it) as a ghost
             * under a new token, so a heap bound to the old one sees it is stale. */
            if (!e->ghost_of)
                e->ghost_of = e->token;
            e->token = next_token++;
            e->park = e->home;
            e->vlen = e->len;
            pinned_maps++;
            ghosts++;
        } else if (e->token) {
            free(e->name);
            memset(e, 0, sizeof(*e));
        }
    }
    while (tmaps_len > 0 && tmaps[tmaps_len - 1].token == 0)
        tmaps_len--;
    window_gen++;
    /* The published slots were MADV_DONTFORK: the child has its own again. */
    tslots = private_slots;
    memset(private_slots, 0, sizeof(private_slots));
    /* A request left for the parent is not the child's. */
    wake = &private_wake;
    private_wake.pending = 0;
    my_slot = -1;
    my_tid = 0;
    slots_hwm = 0;
    members_clear();
    active_vid = 0;
    threads_in_vas = 0;
    slow_busy = 0;
    return PyLong_FromLong(ghosts);
}

PyDoc_STRVAR(park_plugs_doc,
"park_plugs(flag=None) -> int\n\n"
"Whether a placed mapping's parking slot is plugged (1) or left a hole (0).\n"
"With a flag, set the mode first: turning plugging on plugs every placed\n"
"mapping's slot, but only where nothing is mapped (a foreign mapping there\n"
"is left alone); turning it off needs no mapping placed.  Cached plans stay\n"
"valid (they do not say how to plug).  Returns the mode, or with a flag the\n"
"number of slots that could not be plugged or unplugged.");

static PyObject *
vaspace_park_plugs(PyObject *self, PyObject *args)
{
    int flag = -1;
    if (!PyArg_ParseTuple(args, "|p", &flag))
        return NULL;
    if (flag < 0 || flag == park_plugs)
        return PyLong_FromLong(flag < 0 ? park_plugs : 0);
    long failed = 0;
    for (Py_ssize_t i = 0; i < tmaps_len; i++) {
        tmap_t *e = &tmaps[i];
        if (!e->token || !e->placed || e->park == e->home)
            continue;
        if (!flag) {
            /* Unplugging would munmap whatever sits in the slot: it may not be ours. */
            PyErr_SetString(PyExc_ValueError, "park_plugs: cannot leave plugged mode while "
                            "a mapping is placed; switch every thread to vid 0 first");
            return NULL;
        }
        if (plug_noreplace(e->park, e->vlen) < 0)
            failed++;
    }
    park_plugs = flag;
    return PyLong_FromLong(failed);
}

PyDoc_STRVAR(reserved_doc,
"reserved() -> list[tuple[int, int]]\n\nThe [lo, hi) ranges reserve() took.");

static PyObject *
vaspace_reserved(PyObject *self, PyObject *noargs)
{
    PyObject *list = PyList_New(n_reserved);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < n_reserved; i++) {
        PyObject *t = Py_BuildValue("(KK)", (unsigned long long)reserved[i].lo,
                                    (unsigned long long)reserved[i].hi);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

PyDoc_STRVAR(dir_entries_doc,
"dir_entries(fd) -> list[str]\n\nThe names in the directory open at ``fd`` (without '.' and '..'),\n"
"decoded as os.listdir decodes them.  Like os.listdir(fd) it reads from the\n"
"descriptor's position, which every reader leaves at the start, and rewinds\n"
"after; unlike it, it uses the descriptor as is (os.listdir(fd) dups,\n"
"fstats and fcntls it first: 8 system calls for a small directory, this\n"
"makes 3: getdents64 until it returns 0, then lseek).");

struct vaspace_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static PyObject *
vaspace_dir_entries(PyObject *self, PyObject *arg)
{
    long lfd = PyLong_AsLong(arg);
    if (lfd == -1 && PyErr_Occurred())
        return NULL;
    if (lfd < 0 || lfd > INT_MAX) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int fd = (int)lfd;
    /* Kept off the stack, so a deep caller cannot overflow a small thread stack. */
    enum { BUF = 16384 };
    char *buf = PyMem_RawMalloc(BUF);
    if (buf == NULL)
        return PyErr_NoMemory();
    PyObject *list = PyList_New(0);
    if (list == NULL)
        goto fail;
    for (;;) {
        long n;
        Py_BEGIN_ALLOW_THREADS
        n = syscall(SYS_getdents64, fd, buf, (unsigned int)BUF);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            struct vaspace_dirent64 *d = (struct vaspace_dirent64 *)(buf + off);
            if (d->d_reclen == 0 || off + d->d_reclen > n)
                break; /* the kernel never does this; never loop on it */
            off += d->d_reclen;
            size_t len = strnlen(d->d_name, (size_t)(buf + off - d->d_name));
            if ((len == 1 && d->d_name[0] == '.') ||
                (len == 2 && d->d_name[0] == '.' && d->d_name[1] == '.'))
                continue;
            PyObject *name = PyUnicode_DecodeFSDefaultAndSize(d->d_name, (Py_ssize_t)len);
            if (name == NULL)
                goto fail;
            int rc = PyList_Append(list, name);
            Py_DECREF(name);
            if (rc < 0)
                goto fail;
        }
    }
    off_t pos;
    Py_BEGIN_ALLOW_THREADS
    pos = lseek(fd, 0, SEEK_SET);
    Py_END_ALLOW_THREADS
    if (pos < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    PyMem_RawFree(buf);
    return list;
fail:
    PyMem_RawFree(buf);
    Py_XDECREF(list);
    return NULL;
}

PyDoc_STRVAR(window_gen_doc,
"window_gen() -> int\n\nThe window generation: it changes whenever a mapping moves,\n"
"appears or goes away.");

static PyObject *
vaspace_window_gen(PyObject *self, PyObject *noargs)
{
    return PyLong_FromUnsignedLongLong(window_gen);
}

/* ------------------------------------------------------------------ */
/* registry lookups: one object's system calls in one call (issue 11)  */
/* ------------------------------------------------------------------ */

/*
 * A registry object is a directory <kind>/<id> whose ``index`` link names its
 * encoded name, and a name link names/<kind>/<encoded name> -> <id>.  Pinning
 * it (registry/ref.py) is open + readlinkat + readlink; its attributes are an
 * fstatat of one file inside; a segment's attach also reads its ``region``
 * and opens its ``data``.  These entries make exactly those system calls,
 * with the flags the Python code used (O_NOFOLLOW everywhere; O_NONBLOCK and
 * a file type check by fstat before any read), and return the raw results:
 * every decision (is the id the one asked for, is the region sane, is the
 * data file of the right size) stays in Python.  The system calls run with
 * the GIL released (a root on a disk may block), and on error nothing that
 * was opened stays open.
 *
 * The one check made here is syntactic and protects the next system call:
 * an ``index`` that is empty, ".", ".." or holds a '/' is never used as a
 * path component under names/ (ENOENT, as for a missing index).
 *
 * Errors are OSError subclasses by errno, whose ``filename`` names the step
 * that failed: the directory's path, "index", the name link's path, the
 * attribute file, "region" or "data".  A region or data file that is not a
 * regular file is EIO.
 */

/* Buffers sized for what vaspace writes, so that a lookup touches little
 * memory (a fresh process faults in every new page it touches): an index is
 * an encoded name (at most 255 bytes), a name link's target an id (at most
 * 10 digits), a region "start-end\n" at most 34 bytes.  A longer index or
 * target is ENAMETOOLONG (never a live object); a region read that fills
 * its buffer is returned as read, and Python refuses it as junk. */
/* A system call retried while a signal interrupts it (PEP 475's rule; on a
 * network or FUSE root, open and read may be interrupted). */
#define LK_RETRY(call)                                                   \
    ({                                                                   \
        __typeof__(call) r_;                                             \
        do                                                               \
            r_ = (call);                                                 \
        while (r_ < 0 && errno == EINTR);                                \
        r_;                                                              \
    })

enum { LK_INDEX = 256 + 1, LK_TARGET = 32, LK_REGION = 64, LK_PATH = 4096 + LK_INDEX };

typedef struct {
    int dfd, ffd;              /* the object's directory; data (open_segment) */
    int err;                   /* 0, or the errno of the step that failed */
    const char *where;         /* that step's file name */
    char index[LK_INDEX];
    ssize_t index_len;
    char target[LK_TARGET];
    ssize_t target_len;        /* -1: the name link was not read */
    struct stat st;            /* stat_live: the attribute file; open_segment: data */
    char region[LK_REGION];
    ssize_t region_len;
    char path[LK_PATH];        /* the name link's path (last: only its start is touched) */
} lookup_t;

static int
lk_fail(lookup_t *lk, int err, const char *where)
{
    lk->err = err;
    lk->where = where;
    if (lk->ffd >= 0)
        close(lk->ffd);
    if (lk->dfd >= 0)
        close(lk->dfd);
    lk->ffd = lk->dfd = -1;
    return -1;
}

/* open + readlinkat("index") [+ readlink(prefix + index)]; no GIL needed. */
static int
lk_open_live(lookup_t *lk, const char *dirpath, const char *prefix)
{
    lk->ffd = -1;
    lk->err = 0;
    lk->where = NULL;
    lk->target_len = -1;
    lk->region_len = -1;
    lk->dfd = LK_RETRY(open(dirpath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (lk->dfd < 0)
        return lk_fail(lk, errno, dirpath);
    lk->index_len = LK_RETRY(readlinkat(lk->dfd, "index", lk->index, sizeof(lk->index)));
    if (lk->index_len < 0)
        return lk_fail(lk, errno, "index");
    if (lk->index_len == (ssize_t)sizeof(lk->index))
        return lk_fail(lk, ENAMETOOLONG, "index");
    lk->index[lk->index_len] = '\0';
    if (prefix == NULL)
        return 0;
    if (lk->index_len == 0 || memchr(lk->index, '/', (size_t)lk->index_len) != NULL ||
        strcmp(lk->index, ".") == 0 || strcmp(lk->index, "..") == 0)
        return lk_fail(lk, ENOENT, "index");
    int n = snprintf(lk->path, sizeof(lk->path), "%s%s", prefix, lk->index);
    if (n < 0 || (size_t)n >= sizeof(lk->path))
        return lk_fail(lk, ENAMETOOLONG, prefix);
    lk->target_len = LK_RETRY(readlink(lk->path, lk->target, sizeof(lk->target)));
    if (lk->target_len < 0)
        return lk_fail(lk, errno, lk->path);
    if (lk->target_len == (ssize_t)sizeof(lk->target))
        return lk_fail(lk, ENAMETOOLONG, lk->path);
    lk->target[lk->target_len] = '\0';
    return 0;
}

/* stat_live's rest: fstatat(attr_file, AT_SYMLINK_NOFOLLOW), then close. */
static int
lk_stat_attr(lookup_t *lk, const char *attr_file)
{
    if (LK_RETRY(fstatat(lk->dfd, attr_file, &lk->st, AT_SYMLINK_NOFOLLOW)) < 0)
        return lk_fail(lk, errno, attr_file);
    close(lk->dfd);
    lk->dfd = -1;
    return 0;
}

/* openat(name) O_NOFOLLOW|O_NONBLOCK into lk->ffd, fstat into lk->st: EIO unless regular. */
static int
lk_open_regular_at(lookup_t *lk, const char *name, int access)
{
    lk->ffd = LK_RETRY(openat(lk->dfd, name, access | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (lk->ffd < 0)
        return lk_fail(lk, errno, name);
    if (LK_RETRY(fstat(lk->ffd, &lk->st)) < 0)
        return lk_fail(lk, errno, name);
    if (!S_ISREG(lk->st.st_mode))
        return lk_fail(lk, EIO, name);
    return 0;
}

/* open_segment's rest: read "region" (a regular file), open "data" (one too). */
static int
lk_open_data(lookup_t *lk, int data_flags)
{
    if (lk_open_regular_at(lk, "region", O_RDONLY) < 0)
        return -1;
    lk->region_len = LK_RETRY(read(lk->ffd, lk->region, sizeof(lk->region)));
    if (lk->region_len < 0)
        return lk_fail(lk, errno, "region");
    close(lk->ffd);
    lk->ffd = -1;
    if (data_flags < 0)
        return 0; /* the region only */
    return lk_open_regular_at(lk, "data", data_flags);
}

/* The arguments every lookup takes: the directory's path and the name-link prefix. */
typedef struct {
    PyObject *dir, *prefix; /* bytes (prefix NULL for None) */
    lookup_t *lk;
} lk_call_t;

static int
lk_begin(lk_call_t *c, PyObject *dir, PyObject *prefix)
{
    c->dir = c->prefix = NULL;
    c->lk = NULL;
    if (!PyUnicode_FSConverter(dir, &c->dir))
        return -1;
    if (prefix != Py_None && !PyUnicode_FSConverter(prefix, &c->prefix))
        return -1;
    c->lk = PyMem_RawMalloc(sizeof(lookup_t)); /* 5 KiB: kept off small thread stacks */
    if (c->lk == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
lk_end(lk_call_t *c, PyObject *result)
{
    if (result == NULL && c->lk != NULL && c->lk->err) {
        errno = c->lk->err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, c->lk->where);
    }
    PyMem_RawFree(c->lk);
    Py_XDECREF(c->dir);
    Py_XDECREF(c->prefix);
    return result;
}

static const char *
lk_pre(lk_call_t *c)
{
    return c->prefix != NULL ? PyBytes_AS_STRING(c->prefix) : NULL;
}

/* A new tuple from ``n`` new references (NULL entries: fail, dropping the rest). */
static PyObject *
lk_tuple(Py_ssize_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    PyObject *t = PyTuple_New(n);
    int ok = t != NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = va_arg(ap, PyObject *);
        if (item == NULL)
            ok = 0;
        if (ok)
            PyTuple_SET_ITEM(t, i, item);
        else
            Py_XDECREF(item);
    }
    va_end(ap);
    if (!ok) {
        Py_XDECREF(t);
        return NULL;
    }
    return t;
}

static PyObject *
lk_target(lookup_t *lk)
{
    if (lk->target_len < 0)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefaultAndSize(lk->target, lk->target_len);
}

enum { LK_LIVE, LK_STAT, LK_SEGMENT };

/* Every lookup: convert the paths, then open_live's system calls and the
 * step ``what`` adds, without the GIL.  -1: lk_end(c, NULL) raises. */
static int
lk_run(lk_call_t *c, PyObject *dir, PyObject *prefix, int what, const char *attr,
       int data_flags)
{
    if (lk_begin(c, dir, prefix) < 0)
        return -1;
    lookup_t *lk = c->lk;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = lk_open_live(lk, PyBytes_AS_STRING(c->dir), lk_pre(c));
    if (rc == 0 && what == LK_STAT)
        rc = lk_stat_attr(lk, attr);
    if (rc == 0 && what == LK_SEGMENT)
        rc = lk_open_data(lk, data_flags);
    Py_END_ALLOW_THREADS
    return rc;
}

PyDoc_STRVAR(open_live_doc,
"open_live(dirpath, names_prefix) -> (fd, index, target)\n\n"
"open(dirpath, O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC), readlinkat(fd,\n"
"\"index\"), then readlink(names_prefix + index); names_prefix None skips the\n"
"readlink (target is then None).  An index that is empty, '.', '..' or holds\n"
"a '/' is ENOENT.  The caller owns fd; on error nothing stays open.");

static PyObject *
vaspace_open_live(PyObject *self, PyObject *args)
{
    PyObject *dir, *prefix;
    lk_call_t c;
    if (!PyArg_ParseTuple(args, "OO", &dir, &prefix))
        return NULL;
    if (lk_run(&c, dir, prefix, LK_LIVE, NULL, 0) < 0)
        return lk_end(&c, NULL);
    lookup_t *lk = c.lk;
    PyObject *res = lk_tuple(3, PyLong_FromLong(lk->dfd),
                             PyUnicode_DecodeFSDefaultAndSize(lk->index, lk->index_len),
                             lk_target(lk));
    if (res == NULL)
        close(lk->dfd);
    return lk_end(&c, res);
}

PyDoc_STRVAR(stat_live_doc,
"stat_live(dirpath, names_prefix, attr_file) -> (index, target, st_mode, st_uid, st_gid)\n\n"
"open_live's system calls, then fstatat(fd, attr_file, AT_SYMLINK_NOFOLLOW),\n"
"then close(fd): an object's attributes in one call, nothing left open.");

static PyObject *
vaspace_stat_live(PyObject *self, PyObject *args)
{
    PyObject *dir, *prefix, *attr, *res = NULL;
    lk_call_t c;
    if (!PyArg_ParseTuple(args, "OOO&", &dir, &prefix, PyUnicode_FSConverter, &attr))
        return NULL;
    if (lk_run(&c, dir, prefix, LK_STAT, PyBytes_AS_STRING(attr), 0) == 0) {
        lookup_t *lk = c.lk;
        res = lk_tuple(5, PyUnicode_DecodeFSDefaultAndSize(lk->index, lk->index_len),
                       lk_target(lk), PyLong_FromUnsignedLong(lk->st.st_mode),
                       PyLong_FromUnsignedLong(lk->st.st_uid),
                       PyLong_FromUnsignedLong(lk->st.st_gid));
    }
    res = lk_end(&c, res); /* raises first: the error's file name may point into attr */
    Py_DECREF(attr);
    return res;
}

PyDoc_STRVAR(open_segment_doc,
"open_segment(dirpath, names_prefix, data_flags) -> (dirfd, index, target, region,\n"
"                                                   data_fd, st_size, st_nlink, st_mode)\n\n"
"open_live's system calls, then in the directory: open \"region\"\n"
"(O_RDONLY|O_NONBLOCK|O_NOFOLLOW), fstat it (EIO unless a regular file),\n"
"read at most 64 bytes (region: bytes; a valid one has at most 34), close\n"
"it; open \"data\" with data_flags (O_RDONLY or O_RDWR, plus\n"
"O_NONBLOCK|O_NOFOLLOW|O_CLOEXEC) and fstat it\n"
"(EIO unless a regular file).  data_flags -1 reads the region only (data_fd\n"
"is then -1 and the st_ fields 0).  The caller owns the descriptors; on error\n"
"nothing stays open.");

static PyObject *
vaspace_open_segment(PyObject *self, PyObject *args)
{
    PyObject *dir, *prefix;
    int data_flags;
    lk_call_t c;
    if (!PyArg_ParseTuple(args, "OOi", &dir, &prefix, &data_flags))
        return NULL;
    if (data_flags != O_RDONLY && data_flags != O_RDWR && data_flags != -1) {
        PyErr_SetString(PyExc_ValueError, "open_segment: data_flags must be O_RDONLY, O_RDWR "
                        "or -1");
        return NULL;
    }
    if (lk_run(&c, dir, prefix, LK_SEGMENT, NULL, data_flags) < 0)
        return lk_end(&c, NULL);
    lookup_t *lk = c.lk;
    PyObject *res = lk_tuple(8, PyLong_FromLong(lk->dfd),
                             PyUnicode_DecodeFSDefaultAndSize(lk->index, lk->index_len),
                             lk_target(lk),
                             PyBytes_FromStringAndSize(lk->region, lk->region_len),
                             PyLong_FromLong(lk->ffd),
                             PyLong_FromLongLong(lk->ffd < 0 ? 0 : lk->st.st_size),
                             PyLong_FromUnsignedLongLong(lk->ffd < 0 ? 0 : lk->st.st_nlink),
                             PyLong_FromUnsignedLong(lk->ffd < 0 ? 0 : lk->st.st_mode));
    if (res == NULL) {
        if (lk->ffd >= 0)
            close(lk->ffd);
        close(lk->dfd);
    }
    return lk_end(&c, res);
}

PyDoc_STRVAR(open_regular_doc,
"open_regular(dirfd, name, access) -> (fd, st_mode, st_uid, st_gid)\n\n"
"openat(dirfd, name, access|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC) and fstat it:\n"
"EIO (filename name) unless it is a regular file.  access is O_RDONLY,\n"
"O_WRONLY or O_RDWR.  A VAS's lock file for the sharing lock: a link, a FIFO\n"
"or a device is refused without blocking.  The caller owns fd.");

static PyObject *
vaspace_open_regular(PyObject *self, PyObject *args)
{
    int dfd, access;
    PyObject *name;
    if (!PyArg_ParseTuple(args, "iO&i", &dfd, PyUnicode_FSConverter, &name, &access))
        return NULL;
    if (access != O_RDONLY && access != O_WRONLY && access != O_RDWR) {
        Py_DECREF(name);
        PyErr_SetString(PyExc_ValueError, "open_regular: access must be O_RDONLY, O_WRONLY "
                        "or O_RDWR");
        return NULL;
    }
    struct stat st;
    int fd, err = 0;
    Py_BEGIN_ALLOW_THREADS
    fd = LK_RETRY(openat(dfd, PyBytes_AS_STRING(name),
                         access | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (fd < 0) {
        err = errno;
    } else {
        if (LK_RETRY(fstat(fd, &st)) < 0)
            err = errno;
        else if (!S_ISREG(st.st_mode))
            err = EIO; /* a FIFO, a device, a directory: never read, never locked */
        if (err) {
            close(fd);
            fd = -1;
        }
    }
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (fd < 0) {
        errno = err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, PyBytes_AS_STRING(name));
    } else {
        res = lk_tuple(4, PyLong_FromLong(fd), PyLong_FromUnsignedLong(st.st_mode),
                       PyLong_FromUnsignedLong(st.st_uid), PyLong_FromUnsignedLong(st.st_gid));
        if (res == NULL)
            close(fd);
    }
    Py_DECREF(name);
    return res;
}

PyDoc_STRVAR(same_entry_doc,
"same_entry(link_path, dir_path, dirfd) -> (target, same)\n\n"
"readlink(link_path), lstat(dir_path) and fstat(dirfd): the name link's\n"
"target (an id: a target of 32 bytes or more is ENAMETOOLONG), and whether\n"
"the entry dir_path is the directory open at dirfd (same device and inode):\n"
"the recheck a change makes under its lock (the object is still the one\n"
"pinned).  OSError (filename the path) if a step fails.");

static PyObject *
vaspace_same_entry(PyObject *self, PyObject *args)
{
    PyObject *link, *dir;
    int dfd;
    if (!PyArg_ParseTuple(args, "O&O&i", PyUnicode_FSConverter, &link, PyUnicode_FSConverter,
                          &dir, &dfd))
        return NULL;
    char target[LK_TARGET];
    struct stat now, pinned;
    ssize_t n;
    int err = 0;
    PyObject *where = NULL;
    Py_BEGIN_ALLOW_THREADS
    n = LK_RETRY(readlink(PyBytes_AS_STRING(link), target, sizeof(target)));
    if (n < 0 || n == (ssize_t)sizeof(target)) {
        err = n < 0 ? errno : ENAMETOOLONG;
        where = link;
    } else if (LK_RETRY(lstat(PyBytes_AS_STRING(dir), &now)) < 0 ||
               LK_RETRY(fstat(dfd, &pinned)) < 0) {
        err = errno;
        where = dir;
    }
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (err) {
        errno = err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, PyBytes_AS_STRING(where));
    } else {
        int same = now.st_dev == pinned.st_dev && now.st_ino == pinned.st_ino;
        res = lk_tuple(2, PyUnicode_DecodeFSDefaultAndSize(target, n), PyBool_FromLong(same));
    }
    Py_DECREF(link);
    Py_DECREF(dir);
    return res;
}

/* ------------------------------------------------------------------ */
/* WindowView: a buffer exporter that pins its mapping                 */
/* ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    uint64_t token;
    Py_ssize_t idx;
    uintptr_t addr;
    Py_ssize_t size;
    char readonly; /* a char: T_BOOL reads one byte */
    Py_ssize_t exports;
    PyObject *name;
} WindowView;

static tmap_t *
view_entry(WindowView *v)
{
    if (v->idx < tmaps_len &&
        (tmaps[v->idx].token == v->token || tmaps[v->idx].ghost_of == v->token))
        return &tmaps[v->idx];
    return NULL;
}

static int
WindowView_init(WindowView *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"token", "readonly", NULL};
    unsigned long long token;
    int readonly = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "K|p", kwlist, &token, &readonly))
        return -1;
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "WindowView: cannot re-init while exported");
        return -1;
    }
    tmap_t *e = tmap_find(token);
    if (e == NULL) {
        set_errorf(PyExc_ValueError, "WindowView: no mapping with token %llu", token);
        return -1;
    }
    /* Copy what we need first: decoding the name allocates, a GC pass can
     * run finalizers, and those may change (even move) the table. */
    Py_ssize_t idx = e - tmaps;
    uintptr_t addr = e->home;
    Py_ssize_t size = (Py_ssize_t)e->len;
    char ro = (char)(readonly || !(e->prot & PROT_WRITE));
    PyObject *name = PyUnicode_DecodeFSDefault(e->name);
    if (name == NULL)
        return -1;
    Py_XSETREF(self->name, name);
    self->token = token;
    self->idx = idx;
    self->addr = addr;
    self->size = size;
    self->readonly = ro;
    return 0;
}

static int
WindowView_getbuffer(WindowView *self, Py_buffer *view, int flags)
{
    if (self->token == 0) {
        PyErr_SetString(PyExc_ValueError, "WindowView: not initialised");
        return -1;
    }
    tmap_t *e = view_entry(self);
    if (e == NULL || !e->placed) {
        PyErr_Format(PyExc_ValueError, "segment '%U' is not mapped here (its mapping %s): "
                     "switch into a VAS that holds it and take a new view",
                     self->name, e == NULL ? "is gone" : "is parked");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, (void *)self->addr, self->size,
                          self->readonly, flags) < 0)
        return -1;
    tmap_hold(e);
    self->exports++;
    return 0;
}

static void
WindowView_releasebuffer(WindowView *self, Py_buffer *view)
{
    tmap_t *e = view_entry(self);
    if (e != NULL)
        tmap_drop(e);
    self->exports--;
}

static void
WindowView_dealloc(WindowView *self)
{
    Py_XDECREF(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
WindowView_repr(WindowView *self)
{
    char where[80]; /* PyUnicode_FromFormat has no '#' flag */
    snprintf(where, sizeof(where), "%#lx size %zd", (unsigned long)self->addr, self->size);
    return PyUnicode_FromFormat("<vaspace._core.WindowView segment %R at %s%s>",
                                self->name ? self->name : Py_None, where,
                                self->readonly ? " read-only" : "");
}

static PyObject *
WindowView_get_token(WindowView *self, void *c)
{
    return PyLong_FromUnsignedLongLong(self->token);
}

static PyObject *
WindowView_get_name(WindowView *self, void *c)
{
    return Py_NewRef(self->name ? self->name : Py_None);
}

static PyGetSetDef WindowView_getset[] = {
    {"token", (getter)WindowView_get_token, NULL, "The mapping's token.", NULL},
    {"name", (getter)WindowView_get_name, NULL, "The segment's name.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef WindowView_members[] = {
    {"addr", T_ULONG, offsetof(WindowView, addr), READONLY, "The segment's address."},
    {"size", T_PYSSIZET, offsetof(WindowView, size), READONLY, "The segment's size in bytes."},
    {"readonly", T_BOOL, offsetof(WindowView, readonly), READONLY, "Whether it is read-only."},
    {"exports", T_PYSSIZET, offsetof(WindowView, exports), READONLY,
     "How many buffers taken from it are alive."},
    {NULL, 0, 0, 0, NULL},
};

static PyBufferProcs WindowView_as_buffer = {
    (getbufferproc)WindowView_getbuffer,
    (releasebufferproc)WindowView_releasebuffer,
};

PyDoc_STRVAR(WindowView_doc,
"WindowView(token, readonly=False)\n\n"
"The bytes of one placed segment mapping, as a buffer (wrap it in a\n"
"memoryview).  Each buffer taken from it is an export on the mapping:\n"
"while any is alive, whatever would move or unmap the mapping refuses with\n"
"BufferError, so no access through a view can fault.");

static PyTypeObject WindowViewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vaspace._core.WindowView",
    .tp_basicsize = sizeof(WindowView),
    .tp_dealloc = (destructor)WindowView_dealloc,
    .tp_repr = (reprfunc)WindowView_repr,
    .tp_as_buffer = &WindowView_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = WindowView_doc,
    .tp_getset = WindowView_getset,
    .tp_members = WindowView_members,
    .tp_init = (initproc)WindowView_init,
    .tp_new = PyType_GenericNew,
};

/* ================================================================== */
/* FixedMap: vaspace.shared_memory's blocks (issue 14)                 */
/*                                                                    */
/* A shared-memory block is a segment file mapped MAP_SHARED at its    */
/* fixed address in the shared-memory range of the window, outside VAS */
/* switching: it is not a reserved range (reset_after_fork re-plugs    */
/* those) and not in the token table, so a forked child keeps it.      */
/* Mapping uses MAP_FIXED_NOREPLACE and unmapping only ever touches    */
/* what a FixedMap itself mapped, so no argument can clobber memory.   */
/* ================================================================== */

/* The range set_fixed_range() allows: every FixedMap lies inside it. */
static range_t fixed_range = {0, 0};

/* One mapping, shared by the FixedMap objects that alias it; the last
 * one closed unmaps it. */
typedef struct {
    uintptr_t addr;
    size_t len;
    Py_ssize_t refs;
} fixed_region_t;

typedef struct {
    PyObject_HEAD
    fixed_region_t *region; /* NULL once closed */
    unsigned long addr;
    Py_ssize_t size;
    Py_ssize_t exports;
} FixedMap;

static PyTypeObject FixedMapType;

PyDoc_STRVAR(set_fixed_range_doc,
"set_fixed_range(addr, length)\n\n"
"Allow FixedMap in [addr, addr+length) (the shared-memory range of the\n"
"window) from now on.  Refused (ValueError) unless page-aligned, in the\n"
"47-bit user address space above 64 KiB and clear of every reserved range.\n"
"Maps that exist keep their place.");

static PyObject *
vaspace_set_fixed_range(PyObject *self, PyObject *args)
{
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "KK", &addr, &len))
        return NULL;
    if (!user_range(addr, len)) {
        PyErr_SetString(PyExc_ValueError, "set_fixed_range: need a page-aligned, non-empty "
                        "range in the 47-bit user address space, above 64 KiB");
        return NULL;
    }
    for (int i = 0; i < n_reserved; i++) {
        if (overlaps(reserved[i].lo, reserved[i].hi - reserved[i].lo, addr, len)) {
            set_errorf(PyExc_ValueError, "set_fixed_range: [%#llx, +%#llx) overlaps the "
                       "reserved range [%#lx, %#lx)", addr, len,
                       (unsigned long)reserved[i].lo, (unsigned long)reserved[i].hi);
            return NULL;
        }
    }
    fixed_range.lo = addr;
    fixed_range.hi = addr + len;
    Py_RETURN_NONE;
}

/* FixedMap(fd, addr, length): map the regular file open at fd, which must
 * hold at least length bytes (a shorter one would SIGBUS on access). */
static PyObject *
FixedMap_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "addr", "length", NULL};
    int fd;
    unsigned long long addr, len;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iKK", kwlist, &fd, &addr, &len))
        return NULL;
    if (len == 0 || addr + len < addr || addr % page_size || len % page_size ||
        addr < fixed_range.lo || addr + len > fixed_range.hi) {
        set_errorf(PyExc_ValueError, "FixedMap: [%#llx, +%#llx) is not a page-aligned, "
                   "non-empty part of the shared-memory range [%#lx, %#lx)", addr, len,
                   (unsigned long)fixed_range.lo, (unsigned long)fixed_range.hi);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vaspace_oserror(errno, "fstat");
    if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size < len) {
        set_errorf(PyExc_ValueError, "FixedMap: fd %d is not a regular file of at least "
                   "%llu bytes", fd, len);
        return NULL;
    }
    fixed_region_t *r = PyMem_RawMalloc(sizeof(*r));
    if (r == NULL)
        return PyErr_NoMemory();
    FixedMap *self = (FixedMap *)type->tp_alloc(type, 0);
    if (self == NULL) {
        PyMem_RawFree(r);
        return NULL;
    }
    void *p = mmap((void *)(uintptr_t)addr, len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
    int err = errno;
    if (p != MAP_FAILED && (uintptr_t)p != addr) {
        munmap(p, len); /* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
        p = MAP_FAILED;
        err = EEXIST;
    }
    if (p == MAP_FAILED) {
        PyMem_RawFree(r);
        Py_DECREF(self);
        return vaspace_oserror(err, "mmap");
    }
    r->addr = addr;
    r->len = len;
    r->refs = 1;
    self->region = r;
    self->addr = (unsigned long)addr;
    self->size = (Py_ssize_t)len;
    return (PyObject *)self;
}

static PyObject *
fixed_closed_error(void)
{
    PyErr_SetString(PyExc_ValueError, "FixedMap is closed");
    return NULL;
}

/* Drop this object's reference to its region; the last one unmaps it. */
static int
fixed_release_region(FixedMap *self)
{
    fixed_region_t *r = self->region;
    if (r == NULL)
        return 0;
    if (r->refs == 1) {
        if (munmap((void *)r->addr, r->len) < 0)
            return -1;
        PyMem_RawFree(r);
    } else {
        r->refs--;
    }
    self->region = NULL;
    return 0;
}

PyDoc_STRVAR(FixedMap_close_doc,
"close()\n\n"
"Let go of the mapping (the last alias unmaps it).  BufferError, changing\n"
"nothing, while buffers taken from this object are alive; ValueError if it\n"
"is closed already.");

static PyObject *
FixedMap_close(FixedMap *self, PyObject *noargs)
{
    if (self->region == NULL)
        return fixed_closed_error();
    if (self->exports > 0) {
        set_errorf(PyExc_BufferError, "FixedMap at %#lx: %zd buffer(s) taken from it are "
                   "alive; release them first", self->addr, self->exports);
        return NULL;
    }
    if (fixed_release_region(self) < 0)
        return vaspace_oserror(errno, "munmap");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(FixedMap_alias_doc,
"alias() -> FixedMap\n\n"
"A new FixedMap of the same mapping, with its own export count (the\n"
"mapping stays until every alias is closed).  ValueError if closed.");

static PyObject *
FixedMap_alias(FixedMap *self, PyObject *noargs)
{
    if (self->region == NULL)
        return fixed_closed_error();
    FixedMap *other = (FixedMap *)FixedMapType.tp_alloc(&FixedMapType, 0);
    if (other == NULL)
        return NULL;
    self->region->refs++;
    other->region = self->region;
    other->addr = self->addr;
    other->size = self->size;
    return (PyObject *)other;
}

static int
FixedMap_getbuffer(FixedMap *self, Py_buffer *view, int flags)
{
    if (self->region == NULL) {
        fixed_closed_error();
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, (void *)self->region->addr, self->size, 0,
                          flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void
FixedMap_releasebuffer(FixedMap *self, Py_buffer *view)
{
    self->exports--;
}

static void
FixedMap_dealloc(FixedMap *self)
{
    /* No buffer is alive (each holds a reference), so this cannot pull
     * memory from under a view.  An munmap failure here has no caller to
     * tell: the range stays mapped, which is safe. */
    if (fixed_release_region(self) < 0)
        self->region = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
FixedMap_repr(FixedMap *self)
{
    char where[64]; /* PyUnicode_FromFormat has no '#' flag */
    snprintf(where, sizeof(where), "%#lx size %zd", self->addr, self->size);
    return PyUnicode_FromFormat("<vaspace._core.FixedMap at %s%s>", where,
                                self->region == NULL ? " closed" : "");
}

static PyObject *
FixedMap_get_closed(FixedMap *self, void *c)
{
    return PyBool_FromLong(self->region == NULL);
}

static PyMethodDef FixedMap_methods[] = {
    {"close", (PyCFunction)FixedMap_close, METH_NOARGS, FixedMap_close_doc},
    {"alias", (PyCFunction)FixedMap_alias, METH_NOARGS, FixedMap_alias_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FixedMap_getset[] = {
    {"closed", (getter)FixedMap_get_closed, NULL, "Whether close() has run.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef FixedMap_members[] = {
    {"addr", T_ULONG, offsetof(FixedMap, addr), READONLY, "The mapping's address."},
    {"size", T_PYSSIZET, offsetof(FixedMap, size), READONLY, "The mapping's size in bytes."},
    {"exports", T_PYSSIZET, offsetof(FixedMap, exports), READONLY,
     "How many buffers taken from this object are alive."},
    {NULL, 0, 0, 0, NULL},
};

static PyBufferProcs FixedMap_as_buffer = {
    (getbufferproc)FixedMap_getbuffer,
    (releasebufferproc)FixedMap_releasebuffer,
};

PyDoc_STRVAR(FixedMap_doc,
"FixedMap(fd, addr, length)\n\n"
"Map the regular file open read-write at fd, MAP_SHARED, at exactly\n"
"[addr, addr+length) inside the range set_fixed_range() allows\n"
"(FileExistsError if anything is mapped there already).  A writable buffer\n"
"exporter that counts its exports, as mmap.mmap does; a forked child\n"
"inherits the mapping.");

static PyTypeObject FixedMapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vaspace._core.FixedMap",
    .tp_basicsize = sizeof(FixedMap),
    .tp_dealloc = (destructor)FixedMap_dealloc,
    .tp_repr = (reprfunc)FixedMap_repr,
    .tp_as_buffer = &FixedMap_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = FixedMap_doc,
    .tp_methods = FixedMap_methods,
    .tp_getset = FixedMap_getset,
    .tp_members = FixedMap_members,
    .tp_new = FixedMap_new,
};

/* ================================================================== */
/* end of FixedMap                                                     */
/* ================================================================== */

/* ------------------------------------------------------------------ */
/* the C API for the heap (vaspace_core_api.h)                         */
/* ------------------------------------------------------------------ */

static uint64_t
api_token_at(uintptr_t addr)
{
    for (Py_ssize_t i = 0; i < tmaps_len; i++) {
        tmap_t *e = &tmaps[i];
        if (e->token && e->placed && e->home <= addr && addr < e->home + e->len)
            return e->token;
    }
    return 0;
}

static int
api_export_hold(uint64_t token)
{
    tmap_t *e = tmap_find(token);
    if (e == NULL || !e->placed)
        return -1;
    tmap_hold(e);
    return 0;
}

static void
api_export_drop(uint64_t token)
{
    tmap_t *e = tmap_find_export(token);
    if (e != NULL)
        tmap_drop(e);
}

static const char *
api_token_name(uint64_t token)
{
    tmap_t *e = tmap_find(token);
    return e == NULL ? NULL : e->name;
}

static const vaspace_core_api core_api = {
    VASPACE_CORE_API_VERSION, &window_gen, api_token_at, api_export_hold, api_export_drop,
    api_token_name,
};

static PyMethodDef core_methods[] = {
    {"reserve", vaspace_reserve, METH_VARARGS, reserve_doc},
    {"unmap", vaspace_unmap, METH_VARARGS, unmap_doc},
    {"plug", vaspace_plug, METH_VARARGS, plug_doc},
    {"map_shared", vaspace_map_shared, METH_VARARGS, map_shared_doc},
    {"unmap_mapping", vaspace_unmap_mapping, METH_O, unmap_mapping_doc},
    {"mappings", vaspace_mappings, METH_NOARGS, mappings_doc},
    {"shrink", vaspace_shrink, METH_O, shrink_doc},
    {"move", vaspace_move, METH_VARARGS, move_doc},
    {"run_plan", vaspace_run_plan, METH_VARARGS, run_plan_doc},
    {"plan_put", vaspace_plan_put, METH_VARARGS, plan_put_doc},
    {"plan_get", vaspace_plan_get, METH_VARARGS, plan_get_doc},
    {"plan_clear", vaspace_plan_clear, METH_NOARGS, plan_clear_doc},
    {"vas_members", vaspace_vas_members, METH_VARARGS, vas_members_doc},
    {"switch_fast", vaspace_switch_fast, METH_O, switch_fast_doc},
    {"vas_switch", vaspace_switch, METH_O, switch_doc},
    {"set_slow_path", vaspace_set_slow_path, METH_O, set_slow_path_doc},
    {"active", vaspace_active, METH_NOARGS, active_doc},
    {"set_active", vaspace_set_active, METH_O, set_active_doc},
    {"threads_in_vas", vaspace_threads_in_vas, METH_NOARGS, threads_in_vas_doc},
    {"forget_tid", vaspace_forget_tid, METH_O, forget_tid_doc},
    {"thread_vids", vaspace_thread_vids, METH_NOARGS, thread_vids_doc},
    {"busy", vaspace_busy, METH_O, busy_doc},
    {"publish_threads", vaspace_publish_threads, METH_O, publish_threads_doc},
    {"slots_size", vaspace_slots_size, METH_NOARGS, slots_size_doc},
    {"wake_offset", vaspace_wake_offset, METH_NOARGS, wake_offset_doc},
    {"wake_take", vaspace_wake_take, METH_NOARGS, wake_take_doc},
    {"reset_after_fork", vaspace_reset_after_fork, METH_NOARGS, reset_after_fork_doc},
    {"reserved", vaspace_reserved, METH_NOARGS, reserved_doc},
    {"park_plugs", vaspace_park_plugs, METH_VARARGS, park_plugs_doc},
    {"window_gen", vaspace_window_gen, METH_NOARGS, window_gen_doc},
    {"dir_entries", vaspace_dir_entries, METH_O, dir_entries_doc},
    {"set_fixed_range", vaspace_set_fixed_range, METH_VARARGS, set_fixed_range_doc},
    {"open_live", vaspace_open_live, METH_VARARGS, open_live_doc},
    {"stat_live", vaspace_stat_live, METH_VARARGS, stat_live_doc},
    {"open_segment", vaspace_open_segment, METH_VARARGS, open_segment_doc},
    {"open_regular", vaspace_open_regular, METH_VARARGS, open_regular_doc},
    {"same_entry", vaspace_same_entry, METH_VARARGS, same_entry_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "vaspace._core",
    "System calls and switch hot state for vaspace (no policy here).", -1, core_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0)
        page_size = (unsigned long long)ps;
    if (PyType_Ready(&WindowViewType) < 0)
        return NULL;
    if (PyType_Ready(&FixedMapType) < 0) /* vaspace.shared_memory's exporter */
        return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL)
        return NULL;
    PyObject *capsule = PyCapsule_New((void *)&core_api, VASPACE_CORE_API_CAPSULE, NULL);
    if (capsule == NULL || PyModule_AddObject(m, "_C_API", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&WindowViewType);
    if (PyModule_AddObject(m, "WindowView", (PyObject *)&WindowViewType) < 0) {
        Py_DECREF(&WindowViewType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FixedMapType);
    if (PyModule_AddObject(m, "FixedMap", (PyObject *)&FixedMapType) < 0) {
        Py_DECREF(&FixedMapType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "PROT_NONE", PROT_NONE) < 0 ||
        PyModule_AddIntConstant(m, "PROT_READ", PROT_READ) < 0 ||
        PyModule_AddIntConstant(m, "PROT_WRITE", PROT_WRITE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
