/*
 * core/core.h: what the files of vaspace._core share.
 *
 * vaspace._core is the system calls under vaspace, and the switch's hot
 * state.
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
 *
 * Reading the core (one file per concept; each file adds its own functions
 * to the module, in its *_methods table):
 *
 *   core.h      this header: the shared types and state, and who owns them
 *   errors.c    errno -> OSError; the "unknown state" error of a failed undo
 *   table.c     the reserved ranges and the mapping table: tokens, exports,
 *               ghosts; the placeholder mmaps (plug, plug where empty)
 *   mappings.c  reserve / unmap / plug a range, map a segment file
 *               (map_shared), unmap_mapping, shrink, mappings(), window_gen()
 *   moves.c     one move (mremap, then plug), the plan check, running a plan
 *               with rollback, parsing a plan; move(), run_plan(), park_plugs()
 *   plans.c     the plan cache (from vid, to vid) and each VAS's mappings
 *               (vas_members), for the fast path
 *   threads.c   the active vid per thread, the thread slots and their
 *               publishing, the lazy-attach word
 *   switch.c    vas_switch: switch_fast (a cached plan in one call) and the
 *               hand-over to the Python slow path; busy()
 *   fork.c      reset_after_fork: the child's window, ghosts and slots
 *   lookups.c   the registry's file-system calls: dir_entries, and one
 *               object's open/readlink/stat sequence in one call (issue 11)
 *   view.c      WindowView: a buffer over a placed mapping that pins it
 *   fixedmap.c  FixedMap: shared_memory's blocks, outside VAS switching
 *   heap_api.c  the capsule for the heap's C extension (vaspace_core_api.h)
 *   module.c    the module: its types, constants and init
 *
 * The Python side that drives it: vaspace/process/ (attach, switch's slow
 * path, plans), vaspace/window.py (the ranges), vaspace/registry/ (lookups).
 */
#ifndef VASPACE_CORE_H
#define VASPACE_CORE_H

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

#include "../vaspace_core_api.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif

/* Everything declared below is internal to the module (setup.py builds with
 * -fvisibility=hidden, which covers definitions only): hidden declarations
 * let the compiler reach the shared state directly, and the __thread
 * variables without a __tls_get_addr call, on the switch's fast path. */
#pragma GCC visibility push(hidden)

/* ---- errors.c ---------------------------------------------------- */

PyObject *vaspace_oserror(int err, const char *syscall);
void set_errorf(PyObject *type, const char *fmt, ...);
PyObject *unknown_state(int err, int undo_err, const char *what);

/* ---- table.c: the reserved ranges and the mapping table ---------- */

/* The ranges reserve() took (the window and the parking range).  Every
 * address a caller hands to _core must lie in one of them, so no call, not
 * even a wrong one from Python, can map over or unmap the interpreter's own
 * memory. */
#define MAX_RESERVED 16
typedef struct {
    uintptr_t lo, hi;
} range_t;
extern range_t reserved[MAX_RESERVED];
extern int n_reserved;
extern unsigned long long page_size; /* set at import */

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

extern tmap_t *tmaps;
extern Py_ssize_t tmaps_len; /* entries [0, tmaps_len) are in use or free */
extern uint64_t next_token;
/* Bumped by every change to what is placed in the window (vaspace_core_api.h). */
extern volatile uint64_t window_gen;
/* Entries with exports > 0: while 0, placing needs no overlap check. */
extern Py_ssize_t pinned_maps;

int in_reserved(unsigned long long addr, unsigned long long len);
int user_range(unsigned long long addr, unsigned long long len);
int parse_user_range(PyObject *args, const char *call, unsigned long long *addr,
                     unsigned long long *len);
tmap_t *tmap_find(uint64_t token);
tmap_t *tmap_find_export(uint64_t token);
tmap_t *tmap_at(uintptr_t addr, size_t len);
tmap_t *tmap_new(void);
void tmap_hold(tmap_t *e);
void tmap_drop(tmap_t *e);
void tmap_forget(tmap_t *e);
void refuse_exported(const tmap_t *e, const char *what);
int reserve_fixed(uintptr_t addr, size_t len);
int plug_noreplace(uintptr_t addr, size_t len);

static inline uintptr_t
tmap_where(const tmap_t *e)
{
    return e->placed ? e->home : e->park;
}

static inline int
overlaps(uintptr_t a, size_t alen, uintptr_t b, size_t blen)
{
    return a < b + blen && b < a + alen;
}

/* ---- threads.c: which thread is inside which VAS ----------------- */

extern __thread long active_vid;

/* A thread inside a VAS (tid 0: a free slot). */
#define MAX_THREAD_SLOTS 4096
typedef struct {
    pid_t tid;
    long vid;
} tslot_t;

/* The lazy-attach word, stored as one more slot after the slots (threads.c). */
typedef struct {
    int32_t zero;
    int32_t pad;
    int64_t pending;
} wake_t;
extern tslot_t *tslots;         /* the slots: private, or the published file */
extern __thread int my_slot;    /* the calling thread's slot, or -1 */
extern int slots_hwm;           /* slots [0, slots_hwm) may be in use */
extern volatile wake_t *wake;   /* the lazy-attach word */
extern long threads_in_vas;     /* threads whose active vid is not 0 */

/* Whether set_active(vid) will find a slot; checked before any move so a
 * switch never half-happens.  (Inline: the fast path asks it every switch.) */
static inline int
slot_available(long vid)
{
    if (active_vid != 0 || vid == 0)
        return 1;
    for (int i = 0; i < MAX_THREAD_SLOTS; i++)
        if (tslots[i].tid == 0)
            return 1;
    return 0;
}

int set_active(long vid);
void threads_reset_after_fork(void);

/* ---- plans.c: move plans, cached for the fast path ---------------- */

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

/* Which mappings an attached VAS uses (plans.c). */
typedef struct {
    long vid;
    Py_ssize_t n;
    uint64_t *tokens;
} members_t;
plan_t *plan_find(long from, long to);
void plans_clear(void);
members_t *members_find(long vid);
void members_clear(void);

/* ---- moves.c: running a plan -------------------------------------- */

/* Whether a mapping's parking slot is plugged while the mapping is placed
 * (0: a hole; see moves.c). */
extern int park_plugs;

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
int plan_check_full(const move_t *moves, Py_ssize_t n, int others);

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

int run_moves(const move_t *moves, Py_ssize_t n);
int parse_moves(PyObject *seq, move_t **out, Py_ssize_t *n_out);

/* ---- switch.c ---------------------------------------------------- */

/* While > 0 the Python slow path is changing process state: the fast path
 * must not use cached plans. */
extern long slow_busy;

/* ---- the module's parts (module.c puts them together) ------------ */

extern PyTypeObject WindowViewType;  /* view.c */
extern PyTypeObject FixedMapType;    /* fixedmap.c */
extern const vaspace_core_api core_api; /* heap_api.c */
extern PyMethodDef mappings_methods[], moves_methods[], plans_methods[], threads_methods[],
    switch_methods[], fork_methods[], lookups_methods[], fixedmap_methods[];

#pragma GCC visibility pop

#endif /* VASPACE_CORE_H */
