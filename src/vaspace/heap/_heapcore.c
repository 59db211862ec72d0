/*
 * _heapcore.c -- a crash-consistent, process-shared allocator and containers
 * that live entirely inside one memory region (a vaspace segment).
 *
 * Everything the heap needs (header, lock, undo log, free lists, allocation
 * bitmap, named roots) is stored inside the region, so every process that maps
 * the region at the same address shares one heap.  See docs/heap.md for the
 * layout and the crash-consistency argument; the short version:
 *
 *   - One robust, process-shared pthread mutex serialises all writers.
 *   - Every write to state that is reachable from the committed heap goes
 *     through W(), which first appends (offset, old value) to an undo log in
 *     the header.  Clearing the log count is the commit point.  A process that
 *     finds the mutex in EOWNERDEAD state rolls the log back (newest first), so
 *     a SIGKILL at any instruction leaves either the old or the new state.
 *   - Writes into memory that was free when the operation began need no log:
 *     a rollback turns that memory back into free space.  To keep this true,
 *     frees are deferred to the end of an operation (a block freed and then
 *     reused within one operation would lose its old contents on rollback).
 *   - Containers carry a sequence counter (seqlock).  Readers never write and
 *     never take the mutex on the fast path; they validate every pointer they
 *     follow against the arena bounds, so a torn read can retry, not crash.
 *
 * Internally the allocator uses offsets from the region base; the containers
 * store absolute addresses (the region sits at the same address everywhere).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../vaspace_core_api.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint8_t u8;

/* ======================================================================== */
/* On-region layout                                                         */
/* ======================================================================== */

#define HEAP_MAGIC 0x3150414548534156ULL /* "VASHEAP1" little-endian */
#define HEAP_VERSION 1u
#define NBINS 128
#define NSMALL 63 /* block sizes 32..1024 in steps of 16 */
#define LOG_CAP 2048
#define NROOTS 128
#define ROOT_NAME_MAX 55 /* bytes of UTF-8, NUL-terminated in 56 */
#define DEFER_MAX 8

#define INUSE 1ULL
#define PREV_INUSE 2ULL
#define FLAGS 15ULL
#define MIN_BLOCK 32ULL

typedef struct {
    u64 off;
    u64 old;
} undo_entry;

typedef struct {
    char name[56];
    u64 addr;
} root_entry;

typedef struct {
    u64 magic; /* written last by format */
    u32 version;
    u32 hdr_size;
    u64 size;        /* region size in bytes */
    u64 base;        /* address the region was formatted at */
    u64 bitmap_off;  /* allocation-start bitmap: 1 bit per 16-byte granule */
    u64 bitmap_bytes;
    u64 arena_off;   /* first block */
    u64 arena_end;   /* end of the sentinel block */
    u64 recoveries;  /* number of EOWNERDEAD recoveries */
    u64 used;        /* bytes in allocated blocks, headers included (logged) */
    u64 allocations; /* live allocations (logged) */
    u64 wseq_off;    /* offset of the container seq a writer made odd, or 0 */
    u64 log_count;   /* undo entries; non-zero only inside an operation */
    u64 bins_nonempty[NBINS / 64];
    u64 bins[NBINS]; /* offset of the first free block in each bin, 0 = empty */
    u64 hseq;        /* heap-wide seqlock: odd while a process holds the mutex */
    u64 pad_[5];
    pthread_mutex_t lock __attribute__((aligned(64)));
    root_entry roots[NROOTS];
    undo_entry log[LOG_CAP];
} heap_header;

/* Container headers (allocated in the arena). */
#define DICT_MAGIC 0x3154434944534156ULL  /* "VASDICT1" */
#define ARRAY_MAGIC 0x3159525241534156ULL /* "VASARRY1" */
#define TOMB 1ULL

typedef struct {
    u64 magic;
    u64 seq;
    u64 count;      /* live keys */
    u64 used_slots; /* live + tombstones */
    u64 mask;       /* capacity - 1 (capacity is a power of two) */
    u64 table;      /* absolute address of capacity x slot */
} dict_hdr;

typedef struct {
    u64 hash;
    u64 entry; /* 0 empty, TOMB deleted, else absolute address of an entry */
} dict_slot;

typedef struct {
    u32 klen;
    u32 vlen;
    u8 ktype;
    u8 vtype;
    u8 pad[6];
    /* key bytes, then value bytes */
} dict_entry;

/* T_BIGTEXT (decimal text) is what older versions wrote for ints beyond
 * int64; it is still read.  New big ints are T_BIGINT: little-endian two's
 * complement, so no digit limit applies in any process. */
enum { T_BYTES = 0, T_STR = 1, T_INT = 2, T_BIGTEXT = 3, T_BIGINT = 4 };

typedef struct {
    u64 magic;
    u64 seq;
    u64 len;
    u64 cap;
    u64 itemsize;
    u64 data; /* absolute address, 0 if cap == 0 */
    char dtype[32];
} array_hdr;

/* ======================================================================== */
/* Python object                                                            */
/* ======================================================================== */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int is_open;
    Py_ssize_t busy;    /* calls in flight that released the GIL */
    Py_ssize_t exports; /* buffers exported through the buffer protocol */
    unsigned long long warn_pending; /* recovery to report after unlock */
    int readonly;       /* opened on a read-only buffer: never write the region */
    double read_timeout; /* read-only mode: seconds to wait for a busy/dead writer */
    char *base;
    u64 size;
    heap_header *h;
    /* The geometry, validated once at open and kept here: a co-writer that
     * overwrites these header words later cannot steer this process's
     * accesses outside the region. */
    u64 boff, aoff, aend;
    /* Window memory (a vaspace segment): the token of the mapping the heap
     * was opened on, and the window generation at the last check.  Such a
     * heap keeps no buffer export of it (that would refuse every switch
     * away); each call checks that the mapping is still the one at base.
     * 0 for a plain buffer, whose export (view) is kept instead. */
    u64 token, gen;
    int has_view;
} HeapCore;

static PyObject *HeapRecoveredWarning;

/* Per-operation state (process-local, on the C stack). */
typedef struct {
    char *base;
    heap_header *h;
    HeapCore *c;
    int overflow;
    const char *corrupt; /* first inconsistency found; the operation rolls back */
    u64 scratch;         /* target of accesses that U() refused */
    int ndefer;
    u64 defer[DEFER_MAX];
    u64 *seq; /* container seq made odd by this operation, or NULL */
} TX;

/* Fault injection for tests: when non-zero, the process _exit()s at the
 * crash_countdown-th crash point inside W() (process-local; see _crash_after).
 * This is the only mutable global, and it exists so tests can "SIGKILL" a
 * writer at every single store of an operation, deterministically. */
static unsigned long crash_countdown;

static inline void crash_point(void)
{
    if (crash_countdown && --crash_countdown == 0)
        _exit(77);
}

/* Record the first inconsistency of an operation; returns 0 for use in
 * conditions.  A corrupt operation stops writing and rolls back. */
static int tx_bad(TX *t, const char *why)
{
    if (!t->corrupt)
        t->corrupt = why;
    return 0;
}

/* The word at region offset off.  Every allocator access goes through here:
 * an offset read from the region (a link, a size) that points outside it is
 * corruption, and the access is redirected to a scratch word instead of
 * faulting.  (Logical checks catch bad links earlier; this is the net.) */
static inline u64 *U(TX *t, u64 off)
{
    if (__builtin_expect(off > t->c->size - 8 || (off & 7), 0)) {
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
#define BSIZE(v) ((v) & ~FLAGS)

static inline void compiler_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* May a logged store (or its rollback) target region offset off?  Only the
 * header's counters and bins, the roots, the bitmap and the arena: never the
 * geometry, the lock, the log or the seqlock words. */
static inline int store_ok(const HeapCore *c, u64 off)
{
    if (off % 8 || off > c->size - 8)
        return 0;
    if (__builtin_expect(off >= c->boff, 1)) /* the bitmap and the arena: most stores */
        return 1;
    return (off >= offsetof(heap_header, used) && off < offsetof(heap_header, hseq) &&
            off != offsetof(heap_header, wseq_off) && off != offsetof(heap_header, log_count)) ||
           (off >= offsetof(heap_header, roots) && off < offsetof(heap_header, log));
}

/* Logged write: the old value reaches the log (and the count covers it)
 * before the new value is stored. */
static void W(TX *t, u64 *p, u64 v)
{
    heap_header *h = t->h;
    if (t->overflow || t->corrupt)
        return;
    u64 off = (u64)((char *)p - t->base);
    if (!store_ok(t->c, off)) {
        tx_bad(t, "a link points outside the heap's data");
        return;
    }
    /* No "unchanged value" shortcut: bin_remove() relies on W() to log the
     * links of a block whose memory is then overwritten without logging. */
    crash_point();
    u64 n = h->log_count;
    if (n >= LOG_CAP) {
        /* Never expected: every operation is bounded far below LOG_CAP.
         * Stop writing; commit() rolls the logged part back. */
        t->overflow = 1;
        return;
    }
    h->log[n].off = off;
    h->log[n].old = *p;
    compiler_fence();
    __atomic_store_n(&h->log_count, n + 1, __ATOMIC_RELEASE);
    compiler_fence();
    crash_point(); /* logged but not yet stored */
    *p = v;
}

static void rollback(HeapCore *c)
{
    heap_header *h = c->h;
    u64 n = h->log_count;
    if (n > LOG_CAP)
        n = LOG_CAP;
    /* Newest first, so a word logged twice ends at its pre-operation value.
     * Idempotent: a crash during rollback just means it runs again.  An
     * entry no W() could have written (corrupt log) is skipped. */
    for (u64 i = n; i-- > 0;) {
        u64 off = h->log[i].off;
        if (store_ok(c, off))
            *(u64 *)(c->base + off) = h->log[i].old;
    }
    compiler_fence();
    __atomic_store_n(&h->log_count, 0, __ATOMIC_RELEASE);
}

/* Make the heap consistent after a writer died (or left debris behind). */
static void recover(HeapCore *c)
{
    heap_header *h = c->h;
    rollback(c);
    u64 so = h->wseq_off;
    if (so % 8 == 0 && so >= c->aoff && so <= c->aend - 8) {
        u64 *seq = (u64 *)(c->base + so);
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
    h->recoveries++;
}

/* ======================================================================== */
/* Locking                                                                  */
/* ======================================================================== */

/* vaspace._core's C API (vaspace_core_api.h), imported on first need: the
 * heap also works on plain buffers without it. */
static const vaspace_core_api *core_api;
static int core_api_tried;

static const vaspace_core_api *load_core_api(void)
{
    if (!core_api_tried) {
        core_api_tried = 1;
        const vaspace_core_api *api = PyCapsule_Import(VASPACE_CORE_API_CAPSULE, 0);
        if (!api)
            PyErr_Clear(); /* no vaspace here: plain buffers only */
        else if (api->version == VASPACE_CORE_API_VERSION)
            core_api = api;
    }
    return core_api;
}

/* Is the heap's memory still the mapping it was opened on?  O(1): only when
 * the window generation moved is the token looked up again.  A heap whose
 * segment was parked, detached, or replaced by another world's segment at
 * the same address raises ValueError and touches nothing; after a switch
 * back it works again.  Called with the GIL held right before memory is
 * touched, so no switch can come in between. */
static int world_check(HeapCore *self)
{
    if (!self->token)
        return 0;
    u64 g = *core_api->window_gen;
    if (g == self->gen)
        return 0;
    if (core_api->token_at((uintptr_t)self->base) != self->token) {
        const char *name = core_api->token_name(self->token);
        if (name)
            PyErr_Format(PyExc_ValueError, "stale heap: segment '%s' is not mapped here", name);
        else
            PyErr_Format(PyExc_ValueError,
                         "stale heap: the segment it was opened on (at %p) is not mapped here",
                         (void *)self->base);
        return -1;
    }
    self->gen = g;
    return 0;
}

/* Around a stretch that releases the GIL: an export on the mapping, so a
 * switch in another thread refuses (BufferError) instead of moving the
 * memory this thread is about to touch. */
static int world_pin(HeapCore *self)
{
    if (!self->token || core_api->export_hold(self->token) == 0)
        return 0;
    PyErr_SetString(PyExc_ValueError, "stale heap: its segment is not mapped here");
    return -1;
}

static void world_unpin(HeapCore *self)
{
    if (self->token)
        core_api->export_drop(self->token);
}

static int core_check(HeapCore *self)
{
    if (!self->is_open) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed heap");
        return -1;
    }
    return world_check(self);
}

#ifdef __GLIBC__
/* The type word of a mutex initialised as format_region() does (set at
 * module init).  glibc takes its lock path from this word, and some paths
 * (priority inheritance) wait forever on a dead owner, so a heap whose lock
 * type was overwritten is refused before the lock is touched. */
static int expected_lock_kind;
#define FUTEX_TID_BITS 0x3fffffff
#define FUTEX_OWNER_DIED_BIT 0x40000000

/* Could thread tid hold the lock of the heap at base?  Only a thread whose
 * process maps the heap there.  1 = yes, or cannot tell (no /proc, another
 * user's process); 0 = no such thread, or it does not map the heap. */
static int tid_may_hold(int tid, uintptr_t base)
{
    if (access("/proc/self/maps", R_OK) != 0)
        return kill(tid, 0) == 0 || errno != ESRCH;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", tid);
    FILE *f = fopen(path, "re");
    if (!f) /* hidden (hidepid) or gone: ask the kernel whether the id exists */
        return errno != ENOENT || kill(tid, 0) == 0 || errno != ESRCH;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= base && base < hi)
            found = 1;
    }
    fclose(f);
    return found;
}

/* While waiting for the lock: is the lock word one that no thread can own?
 * A free lock word is 0; a held one names its owner's thread id, which
 * glibc also stores in __owner right after taking it; a real owner that
 * dies has its robust list processed by the kernel (the word gets
 * OWNER_DIED) before its thread id disappears.  Returns 2 if no thread can
 * own it (the id names no thread that maps this heap), 1 if it is suspect
 * (no owner id, or one __owner disagrees with), 0 if it looks held. */
static int lock_word_state(heap_header *h, int *w_out, int *o_out)
{
    int *word = &h->lock.__data.__lock;
    int w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    int o = __atomic_load_n(&h->lock.__data.__owner, __ATOMIC_ACQUIRE);
    *w_out = w;
    *o_out = o;
    if (w == 0 || (w & FUTEX_OWNER_DIED_BIT))
        return 0;
    int tid = w & FUTEX_TID_BITS;
    if (tid != 0 && !tid_may_hold(tid, (uintptr_t)h) && __atomic_load_n(word, __ATOMIC_ACQUIRE) == w)
        return 2;
    return tid == 0 || o != tid;
}
#endif

#define LOCK_VANISHED (-1000) /* heap_lock: the lock word names no live thread */

/* Block until the lock is ours (GIL released by the caller).  Waits in 1 s
 * steps so that a lock word that no thread can own (a corrupt region) ends
 * the wait instead of hanging the process. */
static int lock_wait(heap_header *h)
{
    int strikes = 0, last_w = 0, last_o = 0;
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        int rc = pthread_mutex_timedlock(&h->lock, &ts);
        if (rc == EINTR)
            continue;
        if (rc != ETIMEDOUT)
            return rc;
#ifdef __GLIBC__
        /* Definitely ownerless: stop now.  Suspect (the owner may only be
         * between its atomic take and its __owner store): stop only if the
         * same words are still there one second later. */
        int w, o, st = lock_word_state(h, &w, &o);
        if (st == 2 || (st == 1 && strikes && w == last_w && o == last_o))
            return LOCK_VANISHED;
        strikes = st == 1;
        last_w = w;
        last_o = o;
#else
        (void)strikes, (void)last_w, (void)last_o;
#endif
    }
}

/* Take the heap mutex, releasing the GIL only if we have to wait.
 * Performs recovery on EOWNERDEAD and warns about it. */
static int heap_lock(HeapCore *self)
{
    if (core_check(self) < 0) /* argument parsing may have run Python code */
        return -1;
    heap_header *h = self->h;
    int recovered = 0;
    if (self->readonly) {
        /* Safety net: every writer refuses earlier (ro_refuse), and readers
         * in read-only mode use the seqlocks.  Locking would write the
         * mutex word, which faults on a PROT_READ mapping. */
        PyErr_SetString(PyExc_PermissionError,
                        "heap opened read-only: the heap lock cannot be taken");
        return -1;
    }
#ifdef __GLIBC__
    if (__atomic_load_n(&h->lock.__data.__kind, __ATOMIC_RELAXED) != expected_lock_kind) {
        PyErr_SetString(PyExc_RuntimeError,
                        "heap corrupt: the heap lock's type word was overwritten");
        return -1;
    }
#endif
    int rc = pthread_mutex_trylock(&h->lock);
    if (rc == EBUSY) {
        if (world_pin(self) < 0)
            return -1;
        self->busy++;
        Py_BEGIN_ALLOW_THREADS
        rc = lock_wait(h);
        Py_END_ALLOW_THREADS
        self->busy--;
        world_unpin(self);
    }
    if (rc == 0 || rc == EOWNERDEAD) {
        /* Mark the heap busy for lock-free readers (read-only mode).  If a
         * dead owner left hseq odd, move it to a new odd value so a reader
         * that sampled an even value before the crash still sees a change. */
        u64 s = h->hseq;
        __atomic_store_n(&h->hseq, (s & 1) ? s + 2 : s + 1, __ATOMIC_RELEASE);
        compiler_fence();
    }
    if (rc == EOWNERDEAD) {
        recover(self);
        if (pthread_mutex_consistent(&h->lock) != 0) {
            /* Cannot happen for a robust mutex we own; fail safe. */
            __atomic_store_n(&h->hseq, h->hseq + 1, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&h->lock);
            PyErr_SetString(PyExc_RuntimeError, "pthread_mutex_consistent failed");
            return -1;
        }
        recovered = 1;
    } else if (rc == 0 && (h->log_count != 0 || h->wseq_off != 0)) {
        /* Debris from an operation that never committed but whose lock
         * was not flagged (e.g. the region was copied mid-operation). */
        recover(self);
        recovered = 1;
    } else if (rc == LOCK_VANISHED) {
        PyErr_SetString(PyExc_RuntimeError,
                        "heap corrupt: the heap lock word names no thread that could hold it");
        return -1;
    } else if (rc == EDEADLK) {
        /* Re-entry from this thread (e.g. a __del__ during an operation). */
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    } else if (rc != 0) {
        PyErr_Format(PyExc_RuntimeError, "heap corrupt: the heap lock cannot be taken (%s)",
                     strerror(rc));
        return -1;
    }
    if (recovered)
        self->warn_pending = h->recoveries;
    return 0;
}

/* Unlock, then report a recovery done by heap_lock.  The warning is issued
 * only after the mutex is released: a warning filter runs Python code, which
 * might use the heap again. */
static void heap_unlock(HeapCore *self)
{
    compiler_fence();
    __atomic_store_n(&self->h->hseq, self->h->hseq + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&self->h->lock);
    if (self->warn_pending) {
        unsigned long long n = self->warn_pending;
        self->warn_pending = 0;
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (PyErr_WarnFormat(HeapRecoveredWarning, 1,
                             "heap at %p: a process died while holding the heap lock; "
                             "its unfinished operation was rolled back (recovery #%llu)",
                             (void *)self->base, n) < 0)
            PyErr_WriteUnraisable((PyObject *)self);
        PyErr_Restore(et, ev, tb);
    }
}

/* ======================================================================== */
/* Seqlock readers                                                          */
/* ======================================================================== */

#define SPIN_YIELD_AFTER 64
#define SPIN_LOCK_AFTER 2000
#define READ_ATTEMPTS 200

static inline u64 ld(const u64 *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wait until *seq is even: 0 with the even value in *out, or -1 when the
 * writer seems stuck (dead, or descheduled).  A writable caller then reads
 * under the mutex, whose EOWNERDEAD path recovers the heap.
 *
 * A read-only caller passes its deadline (0 = not started: the first yield
 * starts it, read_timeout from now) and gets -1 once it has passed.  The
 * deadline is checked at every sched_yield, because under CPU contention one
 * yield can give the core away for a whole time slice: 2000 unchecked yields
 * overshot a 0.3 s read_timeout by seconds (issue 17). */
static int seq_begin(const HeapCore *self, const u64 *seq, u64 *out, double *deadline)
{
    for (int spins = 0; spins < SPIN_LOCK_AFTER; spins++) {
        u64 s = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (!(s & 1)) {
            *out = s;
            return 0;
        }
        if (spins > SPIN_YIELD_AFTER) {
            if (deadline) {
                double now = mono_now();
                if (*deadline == 0)
                    *deadline = now + self->read_timeout;
                else if (now >= *deadline)
                    return -1;
            }
            sched_yield();
        }
    }
    return -1;
}

static inline int seq_retry(const u64 *seq, u64 s)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(seq, __ATOMIC_RELAXED) != s;
}

/* [a, a+n) inside the arena?  Works on absolute addresses. */
static inline int in_arena(HeapCore *self, u64 a, u64 n)
{
    u64 lo = (u64)(uintptr_t)self->base + self->aoff;
    u64 hi = (u64)(uintptr_t)self->base + self->aend;
    return a >= lo && a <= hi && n <= hi - a;
}


/* Writers refuse in read-only mode before touching the region: a store to a
 * PROT_READ mapping would kill the process with SIGSEGV. */
static int ro_refuse(HeapCore *self, const char *what)
{
    if (!self->readonly)
        return 0;
    PyErr_Format(PyExc_PermissionError,
                 "heap opened read-only (read-only buffer): %s would write to it", what);
    return -1;
}

/* Start one attempt of a seqlock read of *seq.
 *
 * Writable mode: returns 0 with *s sampled (read optimistically), or, after
 * max_attempts or when the counter stays odd, takes the mutex (whose
 * EOWNERDEAD path recovers a dead writer) and returns 1; the caller unlocks.
 *
 * Read-only mode: the mutex cannot be taken (it lives in the read-only
 * region), so the reader waits, sleeping with the GIL released, until the
 * counter is even; it gives up with TimeoutError once read_timeout seconds
 * have passed since the slow path began (*deadline, 0 on the first call).
 * A writer that died mid-update leaves the counter odd until a writer opens
 * the heap and recovers it, so this is the only way out that cannot hang.
 * Returns 0 or -1 (exception set). */
static int read_begin(HeapCore *self, const u64 *seq, int attempt, int max_attempts, u64 *s,
                      double *deadline)
{
    if (core_check(self) < 0) /* argument parsing may have run Python code */
        return -1;
    double *dl = self->readonly ? deadline : NULL;
    if (attempt < max_attempts && seq_begin(self, seq, s, dl) == 0)
        return 0;
    if (!self->readonly)
        return heap_lock(self) < 0 ? -1 : 1;
    if (*deadline == 0)
        *deadline = mono_now() + self->read_timeout;
    for (;;) {
        if (mono_now() >= *deadline) {
            /* PyErr_Format has no %f: format the seconds here. */
            char secs[32];
            snprintf(secs, sizeof secs, "%.2f", self->read_timeout);
            PyErr_Format(PyExc_TimeoutError,
                         "heap opened read-only: the data stayed mid-update for %s s "
                         "(a writer died mid-update, or is stuck); a writer must open "
                         "the heap to recover it",
                         secs);
            return -1;
        }
        struct timespec ts = {0, 200 * 1000}; /* 200 us */
        if (world_pin(self) < 0)
            return -1;
        self->busy++;
        Py_BEGIN_ALLOW_THREADS
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
        self->busy--;
        world_unpin(self);
        if (seq_begin(self, seq, s, deadline) == 0)
            return 0;
    }
}

/* Heap-wide read (roots, stats, check): writable mode always locks;
 * read-only mode reads optimistically under hseq. */
static int hread_begin(HeapCore *self, int attempt, u64 *s, double *deadline)
{
    if (!self->readonly)
        return heap_lock(self) < 0 ? -1 : 1;
    return read_begin(self, &self->h->hseq, attempt, READ_ATTEMPTS, s, deadline);
}

/* End of a heap-wide read: 0 = done, 1 = torn, retry. */
static int hread_end(HeapCore *self, int locked, u64 s)
{
    if (locked) {
        heap_unlock(self);
        return 0;
    }
    return seq_retry(&self->h->hseq, s);
}

static void tx_init(TX *t, HeapCore *self)
{
    t->base = self->base;
    t->h = self->h;
    t->c = self;
    t->overflow = 0;
    t->corrupt = NULL;
    t->ndefer = 0;
    t->seq = NULL;
}

/* Container writers: make the seq odd before touching anything. */
static void tx_begin_seq(TX *t, u64 *seq)
{
    t->h->wseq_off = (u64)((char *)seq - t->base);
    compiler_fence();
    __atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);
    compiler_fence();
    t->seq = seq;
}

static void tx_end_seq(TX *t)
{
    if (t->seq) {
        compiler_fence();
        __atomic_store_n(t->seq, *t->seq + 1, __ATOMIC_RELEASE);
        compiler_fence();
        t->h->wseq_off = 0;
        t->seq = NULL;
    }
}

static void tx_free_now(TX *t, u64 uoff);

static void tx_abort(TX *t)
{
    t->ndefer = 0;
    rollback(t->c);
    tx_end_seq(t);
}

/* Commit: run deferred frees, then clear the log (the commit point).  An
 * operation that overflowed the log or met corruption is rolled back
 * instead, and raises RuntimeError. */
static int tx_commit(TX *t)
{
    for (int i = 0; i < t->ndefer; i++)
        tx_free_now(t, t->defer[i]);
    t->ndefer = 0;
    crash_point(); /* everything stored, not yet committed */
    if (t->overflow || t->corrupt) {
        const char *why = t->corrupt;
        tx_abort(t);
        if (why)
            PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s; operation rolled back", why);
        else
            PyErr_SetString(PyExc_RuntimeError, "heap undo log overflow; operation rolled back");
        return -1;
    }
    compiler_fence();
    __atomic_store_n(&t->h->log_count, 0, __ATOMIC_RELEASE);
    crash_point(); /* committed, seq still odd */
    tx_end_seq(t);
    return 0;
}

static void heap_unlock(HeapCore *self);

/* A step failed under the lock: roll back, unlock, raise.  Corruption found
 * on the way wins over the caller's exception (e.g. an allocation that
 * "failed" because a free list was corrupt is not a MemoryError).  Returns
 * NULL. */
static PyObject *tx_fail(HeapCore *self, TX *t, PyObject *exc, const char *msg)
{
    const char *why = t->corrupt;
    tx_abort(t);
    heap_unlock(self);
    if (why)
        PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s; operation rolled back", why);
    else
        PyErr_SetString(exc, msg);
    return NULL;
}

/* ======================================================================== */
/* Allocator                                                                */
/* ======================================================================== */

static inline int bin_of(u64 sz)
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
    u64 sent = t->c->aend - 16;
    return b % 16 == 0 && b >= t->c->aoff && b <= sent - MIN_BLOCK;
}

/* Is b a free block whose header and footer agree?  Checked before a free
 * block found through a link is trusted. */
static int free_block_ok(TX *t, u64 b)
{
    if (!block_at(t, b))
        return 0;
    u64 sf = *SF(t, b), bs = BSIZE(sf);
    if ((sf & INUSE) || bs < MIN_BLOCK || bs > t->c->aend - 16 - b)
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
static u64 *bitmap_word(char *base, const HeapCore *c, u64 uoff, u64 *bit)
{
    u64 g = (uoff - c->aoff) / 16;
    *bit = 1ULL << (g % 64);
    return (u64 *)(base + c->boff + (g / 64) * 8);
}

static void bitmap_mark(TX *t, u64 uoff, int on)
{
    u64 bit;
    u64 *w = bitmap_word(t->base, t->c, uoff, &bit);
    bit_set(t, w, bit, on);
}

static int bitmap_test(const HeapCore *c, u64 uoff)
{
    u64 bit;
    return (*bitmap_word(c->base, c, uoff, &bit) & bit) != 0;
}

static u64 find_free(TX *t, u64 need)
{
    heap_header *h = t->h;
    int i = bin_of(need);
    if (i >= NSMALL || h->bins[i]) {
        /* small bins hold one size; large bins a range: first fit */
        u64 limit = (t->c->aend - t->c->aoff) / MIN_BLOCK + 1;
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
 * offset of the user pointer, or 0 when no block is large enough (or the
 * free lists are corrupt: t->corrupt says so). */
static u64 tx_alloc(TX *t, u64 usize, u64 align)
{
    heap_header *h = t->h;
    u64 arena = t->c->aend - t->c->aoff;
    if (usize > arena || align > arena)
        return 0;
    u64 need = (usize + 16 + 15) & ~15ULL;
    if (need < MIN_BLOCK)
        need = MIN_BLOCK;
    u64 search = need;
    if (align > 16)
        search = need + align + MIN_BLOCK;
    u64 b = find_free(t, search);
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
static u64 live_offset(const HeapCore *c, u64 abs)
{
    u64 b0 = (u64)(uintptr_t)c->base;
    if (abs < b0)
        return 0;
    u64 off = abs - b0;
    if (off % 16 || off < c->aoff + 16 || off >= c->aend - 16)
        return 0;
    if (!bitmap_test(c, off))
        return 0;
    u64 sf = *(u64 *)(c->base + off - 8);
    u64 bs = BSIZE(sf);
    if (!(sf & INUSE) || bs < MIN_BLOCK || bs > c->aend - 16 - (off - 16))
        return 0;
    return off;
}

/* Bytes usable at a live allocation's user offset. */
static u64 usable_at(const HeapCore *c, u64 uoff)
{
    return BSIZE(*(u64 *)(c->base + uoff - 8)) - 16;
}

static void tx_free_now(TX *t, u64 uoff)
{
    heap_header *h = t->h;
    if (t->corrupt)
        return;
    if (!live_offset(t->c, (u64)(uintptr_t)t->base + uoff)) {
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
        if (ps > b - t->c->aoff || !free_block_ok(t, p) || BSIZE(*SF(t, p)) != ps) {
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

static void tx_free(TX *t, u64 uoff)
{
    if (t->ndefer < DEFER_MAX)
        t->defer[t->ndefer++] = uoff;
    else
        t->overflow = 1; /* bug guard; commit() rolls back */
}

/* Resize the allocation at uoff (a live one) in place if possible, else
 * move it.  Returns the new user offset, or 0 if out of memory or corrupt
 * (nothing changed once rolled back). */
static u64 tx_realloc(TX *t, u64 uoff, u64 usize)
{
    heap_header *h = t->h;
    if (t->corrupt || t->overflow || usize > t->c->aend - t->c->aoff)
        return 0;
    u64 need = (usize + 16 + 15) & ~15ULL;
    if (need < MIN_BLOCK)
        need = MIN_BLOCK;
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

/* ======================================================================== */
/* Argument helpers                                                         */
/* ======================================================================== */

static int parse_u64(PyObject *o, u64 *out, const char *what)
{
    PyObject *i = PyNumber_Index(o);
    if (!i)
        return -1;
    if (_PyLong_Sign(i) < 0) {
        Py_DECREF(i);
        PyErr_Format(PyExc_ValueError, "%s must not be negative", what);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(i);
    Py_DECREF(i);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s is too large", what);
        return -1;
    }
    *out = v;
    return 0;
}

static u64 abs_of(HeapCore *self, u64 off) { return (u64)(uintptr_t)self->base + off; }

/* ======================================================================== */
/* Heap methods                                                             */
/* ======================================================================== */

static u64 hdr_bytes(void) { return ((u64)sizeof(heap_header) + 4095) & ~4095ULL; }

static int format_region(char *base, u64 size)
{
    heap_header *h = (heap_header *)base;
    u64 hb = hdr_bytes();
    if (size < hb + 8192) {
        PyErr_Format(PyExc_ValueError, "region of %llu bytes is too small for a heap (minimum %llu)",
                     (unsigned long long)size, (unsigned long long)(hb + 8192));
        return -1;
    }
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
    pthread_mutexattr_t a;
    int rc;
    if ((rc = pthread_mutexattr_init(&a)) != 0)
        goto fail;
    /* ERRORCHECK: a thread that re-enters the heap while holding the lock
     * (e.g. from a __del__ run by the garbage collector) gets EDEADLK and an
     * OSError instead of hanging forever. */
    if ((rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) != 0 ||
        (rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) != 0 ||
        (rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK)) != 0 ||
        (rc = pthread_mutex_init(&h->lock, &a)) != 0) {
        pthread_mutexattr_destroy(&a);
        goto fail;
    }
    pthread_mutexattr_destroy(&a);
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
fail:
    errno = rc;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* Check every header field before anything is trusted: the region may hold
 * any bytes (a co-writer's bug, a hostile file).  The arithmetic cannot wrap:
 * each sum is compared in a form whose terms are already bounded. */
static int validate_header(char *base, u64 size)
{
    heap_header *h = (heap_header *)base;
    if (size < hdr_bytes() + 8192 || h->magic != HEAP_MAGIC) {
        PyErr_SetString(PyExc_ValueError, "buffer does not contain a vaspace heap (bad magic)");
        return -1;
    }
    if (h->version != HEAP_VERSION || h->hdr_size != sizeof(heap_header)) {
        PyErr_Format(PyExc_ValueError, "heap version %u (header %u bytes) is not supported",
                     h->version, h->hdr_size);
        return -1;
    }
    if (h->size != size) {
        PyErr_Format(PyExc_ValueError, "heap was formatted for %llu bytes but the buffer has %llu",
                     (unsigned long long)h->size, (unsigned long long)size);
        return -1;
    }
    if (h->base != (u64)(uintptr_t)base) {
        PyErr_Format(PyExc_ValueError,
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
        PyErr_Format(PyExc_ValueError, "heap header is corrupt (%s)", bad);
        return -1;
    }
    return 0;
}

static int HeapCore_init(HeapCore *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"buffer", "create", "read_timeout", NULL};
    PyObject *obj;
    int create = 0;
    double read_timeout = 2.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|pd", kwlist, &obj, &create, &read_timeout))
        return -1;
    if (!(read_timeout >= 0 && read_timeout <= 86400)) {
        PyErr_SetString(PyExc_ValueError, "read_timeout must be 0..86400 seconds");
        return -1;
    }
    if (self->is_open) {
        PyErr_SetString(PyExc_RuntimeError, "HeapCore already initialised");
        return -1;
    }
    int readonly = 0;
    int grc = PyObject_GetBuffer(obj, &self->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS);
    if (grc < 0 && !create && PyErr_ExceptionMatches(PyExc_BufferError)) {
        /* A read-only buffer (e.g. a segment attached O_RDONLY): open the
         * heap in read-only mode, which never writes the region. */
        PyErr_Clear();
        grc = PyObject_GetBuffer(obj, &self->view, PyBUF_C_CONTIGUOUS);
        readonly = 1;
    }
    if (grc < 0) {
        if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError,
                         create ? "a heap needs a writable, C-contiguous buffer, not %.100s"
                                : "a heap needs a C-contiguous buffer, not %.100s",
                         Py_TYPE(obj)->tp_name);
        }
        return -1;
    }
    char *base = self->view.buf;
    u64 size = (u64)self->view.len;
    int rc;
    const vaspace_core_api *api = load_core_api();
    self->token = api && size ? api->token_at((uintptr_t)base) : 0;
    if ((uintptr_t)base % 4096) {
        PyErr_SetString(PyExc_ValueError, "heap buffer must be page aligned (map it with mmap)");
        rc = -1;
    } else if (api && size && api->token_at((uintptr_t)base + size - 1) != self->token) {
        /* Parts of it could move independently: no single check covers it. */
        PyErr_SetString(PyExc_ValueError,
                        "heap buffer spans more than one vaspace mapping (use one segment's view)");
        rc = -1;
    } else {
        rc = create ? format_region(base, size) : validate_header(base, size);
    }
    if (rc < 0) {
        PyBuffer_Release(&self->view);
        return -1;
    }
    self->base = base;
    self->size = size;
    self->h = (heap_header *)base;
    self->boff = self->h->bitmap_off;
    self->aoff = self->h->arena_off;
    self->aend = self->h->arena_end;
    self->readonly = readonly;
    self->read_timeout = read_timeout;
    self->has_view = 1;
    if (self->token) {
        /* Window memory: remember the mapping instead of pinning it. */
        self->gen = *api->window_gen;
        PyBuffer_Release(&self->view);
        self->has_view = 0;
    }
    self->is_open = 1;
    return 0;
}

static void HeapCore_dealloc(HeapCore *self)
{
    self->is_open = 0;
    if (self->has_view) {
        self->has_view = 0;
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *HeapCore_close(HeapCore *self, PyObject *unused)
{
    if (!self->is_open)
        Py_RETURN_NONE;
    if (self->busy) {
        PyErr_SetString(PyExc_BufferError, "cannot close a heap while another thread uses it");
        return NULL;
    }
    if (self->exports) {
        PyErr_Format(PyExc_BufferError,
                     "cannot close a heap while %zd exported views (numpy arrays or "
                     "memoryviews) exist", self->exports);
        return NULL;
    }
    self->is_open = 0;
    if (self->has_view) {
        self->has_view = 0;
        PyBuffer_Release(&self->view);
    }
    self->h = NULL;
    Py_RETURN_NONE;
}

static PyObject *HeapCore_alloc(HeapCore *self, PyObject *args)
{
    PyObject *so, *ao = NULL;
    u64 size, align = 16;
    if (!PyArg_ParseTuple(args, "O|O", &so, &ao))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "alloc") < 0 || parse_u64(so, &size, "size") < 0)
        return NULL;
    if (ao && parse_u64(ao, &align, "align") < 0)
        return NULL;
    if (align == 0 || (align & (align - 1))) {
        PyErr_Format(PyExc_ValueError, "align must be a power of two, not %llu",
                     (unsigned long long)align);
        return NULL;
    }
    if (align < 16)
        align = 16;
    if (heap_lock(self) < 0)
        return NULL;
    TX t;
    tx_init(&t, self);
    u64 off = tx_alloc(&t, size, align);
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    if (!off)
        return PyErr_Format(PyExc_MemoryError, "heap full: cannot allocate %llu bytes",
                            (unsigned long long)size);
    return PyLong_FromUnsignedLongLong(abs_of(self, off));
}

/* Under the lock: the raw allocator refuses (and unlocks) to free or move a
 * live container's header: its handles would then use freed memory.
 * destroy() clears the magic first. */
static int container_refuse(HeapCore *self, u64 off, const char *what)
{
    u64 m = *(u64 *)(self->base + off);
    if (m != DICT_MAGIC && m != ARRAY_MAGIC)
        return 0;
    heap_unlock(self);
    PyErr_Format(PyExc_ValueError, "cannot %s %p: it is a live %s; use its destroy()", what,
                 (void *)(self->base + off), m == DICT_MAGIC ? "Dict" : "Array");
    return -1;
}

static PyObject *HeapCore_free(HeapCore *self, PyObject *ao)
{
    u64 addr;
    if (core_check(self) < 0 || ro_refuse(self, "free") < 0 ||
        parse_u64(ao, &addr, "address") < 0)
        return NULL;
    if (heap_lock(self) < 0)
        return NULL;
    u64 off = live_offset(self, addr);
    if (!off) {
        heap_unlock(self);
        return PyErr_Format(PyExc_ValueError,
                            "%p is not a live allocation of this heap (double free or "
                            "foreign pointer?)", (void *)(uintptr_t)addr);
    }
    if (container_refuse(self, off, "free") < 0)
        return NULL;
    TX t;
    tx_init(&t, self);
    tx_free_now(&t, off);
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *HeapCore_realloc(HeapCore *self, PyObject *args)
{
    PyObject *ao, *so;
    u64 addr, size;
    if (!PyArg_ParseTuple(args, "OO", &ao, &so))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "realloc") < 0 ||
        parse_u64(ao, &addr, "address") < 0 || parse_u64(so, &size, "size") < 0)
        return NULL;
    if (heap_lock(self) < 0)
        return NULL;
    u64 off = live_offset(self, addr);
    if (!off) {
        heap_unlock(self);
        return PyErr_Format(PyExc_ValueError, "%p is not a live allocation of this heap",
                            (void *)(uintptr_t)addr);
    }
    if (container_refuse(self, off, "realloc") < 0)
        return NULL;
    TX t;
    tx_init(&t, self);
    u64 n = tx_realloc(&t, off, size);
    if (!n) {
        char msg[80];
        snprintf(msg, sizeof msg, "heap full: cannot grow allocation to %llu bytes",
                 (unsigned long long)size);
        return tx_fail(self, &t, PyExc_MemoryError, msg);
    }
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(abs_of(self, n));
}

/* usable size of a live allocation (for tests and realloc-aware callers) */
static PyObject *HeapCore_usable_size(HeapCore *self, PyObject *ao)
{
    u64 addr;
    if (core_check(self) < 0 || parse_u64(ao, &addr, "address") < 0)
        return NULL;
    u64 off, sz;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 s = 0;
        int locked = hread_begin(self, attempt, &s, &deadline);
        if (locked < 0)
            return NULL;
        off = live_offset(self, addr);
        sz = off ? BSIZE(*(u64 *)(self->base + off - 8)) - 16 : 0;
        if (!hread_end(self, locked, s))
            break;
    }
    if (!off)
        return PyErr_Format(PyExc_ValueError, "%p is not a live allocation of this heap",
                            (void *)(uintptr_t)addr);
    return PyLong_FromUnsignedLongLong(sz);
}

static PyObject *HeapCore_stats(HeapCore *self, PyObject *unused)
{
    if (core_check(self) < 0)
        return NULL;
    heap_header *h = self->h;
    u64 largest, used, allocations, recoveries;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 s = 0;
        int locked = hread_begin(self, attempt, &s, &deadline);
        if (locked < 0)
            return NULL;
        largest = 0;
        for (int i = NBINS - 1; i >= 0 && largest == 0; i--) {
            u64 limit = (self->aend - self->aoff) / MIN_BLOCK + 1;
            /* bounds-checked: a read-only reader may see a torn free list */
            for (u64 b = ld(&h->bins[i]);
                 b && limit-- && b % 16 == 0 && b >= self->aoff && b < self->aend - 16;
                 b = ld((u64 *)(self->base + b + 16))) {
                u64 bs = BSIZE(ld((u64 *)(self->base + b + 8)));
                if (bs > largest)
                    largest = bs;
            }
        }
        used = ld(&h->used);
        allocations = ld(&h->allocations);
        recoveries = ld(&h->recoveries);
        if (!hread_end(self, locked, s))
            break;
    }
    u64 arena = self->aend - 16 - self->aoff;
    return Py_BuildValue("KKKKKK", (unsigned long long)self->size, (unsigned long long)used,
                         (unsigned long long)(arena - used), (unsigned long long)allocations,
                         (unsigned long long)(largest ? largest - 16 : 0),
                         (unsigned long long)recoveries);
}

/* Walk every block and free list; raise RuntimeError on any inconsistency. */
static const char *heap_check_body(HeapCore *self, u64 *where_out, u64 *nalloc_out);

static PyObject *HeapCore_check(HeapCore *self, PyObject *unused)
{
    if (core_check(self) < 0)
        return NULL;
    const char *err;
    u64 where = 0, nalloc = 0;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 s = 0;
        int locked = hread_begin(self, attempt, &s, &deadline);
        if (locked < 0)
            return NULL;
        err = heap_check_body(self, &where, &nalloc);
        if (!hread_end(self, locked, s))
            break;
    }
    if (err)
        return PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s (offset %p)", err,
                            (void *)(uintptr_t)where);
    return PyLong_FromUnsignedLongLong(nalloc);
}

/* The walk behind check().  Memory safe on a torn snapshot (every offset is
 * bounds-checked before it is dereferenced), so read-only mode can run it
 * optimistically and retry when hseq moved. */
static const char *heap_check_body(HeapCore *self, u64 *where_out, u64 *nalloc_out)
{
    char *base = self->base;
    heap_header *h = self->h;
    const char *err = NULL;
    u64 where = 0, used = 0, nalloc = 0, nfree_blocks = 0, nfree_listed = 0;
    int prev_inuse = 1;
    u64 b = self->aoff, sent = self->aend - 16;
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
        if (inuse != bitmap_test(self, b + 16)) {
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
            if (f < self->aoff || f >= sent || f % 16) {
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

/* ---- named roots ---- */

static int root_name(PyObject *name, const char **s, Py_ssize_t *n)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "root name must be str, not %.100s", Py_TYPE(name)->tp_name);
        return -1;
    }
    *s = PyUnicode_AsUTF8AndSize(name, n);
    if (!*s)
        return -1;
    if (*n == 0 || *n > ROOT_NAME_MAX || memchr(*s, 0, (size_t)*n)) {
        PyErr_Format(PyExc_ValueError, "root name must be 1..%d UTF-8 bytes without NUL",
                     ROOT_NAME_MAX);
        return -1;
    }
    return 0;
}

static int root_find(heap_header *h, const char *s, Py_ssize_t n)
{
    for (int i = 0; i < NROOTS; i++)
        if (h->roots[i].name[0] && strncmp(h->roots[i].name, s, 56) == 0 &&
            strnlen(h->roots[i].name, 56) == (size_t)n)
            return i;
    return -1;
}

static PyObject *HeapCore_set_root(HeapCore *self, PyObject *args)
{
    PyObject *name, *ao;
    const char *s;
    Py_ssize_t n;
    u64 addr;
    if (!PyArg_ParseTuple(args, "OO", &name, &ao))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "set_root") < 0 || root_name(name, &s, &n) < 0 ||
        parse_u64(ao, &addr, "address") < 0)
        return NULL;
    u64 b0 = (u64)(uintptr_t)self->base;
    if (addr < b0 || addr >= b0 + self->size)
        return PyErr_Format(PyExc_ValueError, "root address %p is outside the heap region",
                            (void *)(uintptr_t)addr);
    if (heap_lock(self) < 0)
        return NULL;
    heap_header *h = self->h;
    int i = root_find(h, s, n);
    TX t;
    tx_init(&t, self);
    if (i < 0) {
        for (i = 0; i < NROOTS && h->roots[i].name[0]; i++)
            ;
        if (i == NROOTS) {
            heap_unlock(self);
            return PyErr_Format(PyExc_MemoryError, "root table full (%d names)", NROOTS);
        }
        char buf[56] = {0};
        memcpy(buf, s, (size_t)n);
        /* The name words are logged: a torn name would be a corrupt root. */
        W(&t, &h->roots[i].addr, addr);
        for (int k = 0; k < 7; k++) {
            u64 w;
            memcpy(&w, buf + 8 * k, 8);
            W(&t, (u64 *)h->roots[i].name + k, w);
        }
    } else {
        W(&t, &h->roots[i].addr, addr);
    }
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *HeapCore_get_root(HeapCore *self, PyObject *name)
{
    const char *s;
    Py_ssize_t n;
    if (core_check(self) < 0 || root_name(name, &s, &n) < 0)
        return NULL;
    int i;
    u64 a;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 sq = 0;
        int locked = hread_begin(self, attempt, &sq, &deadline);
        if (locked < 0)
            return NULL;
        i = root_find(self->h, s, n);
        a = i >= 0 ? ld(&self->h->roots[i].addr) : 0;
        if (!hread_end(self, locked, sq))
            break;
    }
    if (i < 0) {
        PyErr_SetObject(PyExc_KeyError, name);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(a);
}

static PyObject *HeapCore_del_root(HeapCore *self, PyObject *name)
{
    const char *s;
    Py_ssize_t n;
    if (core_check(self) < 0 || ro_refuse(self, "del_root") < 0 || root_name(name, &s, &n) < 0 ||
        heap_lock(self) < 0)
        return NULL;
    heap_header *h = self->h;
    int i = root_find(h, s, n);
    if (i < 0) {
        heap_unlock(self);
        PyErr_SetObject(PyExc_KeyError, name);
        return NULL;
    }
    TX t;
    tx_init(&t, self);
    W(&t, (u64 *)h->roots[i].name, 0); /* first byte 0 = free slot: one word is enough */
    W(&t, &h->roots[i].addr, 0);
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *HeapCore_roots(HeapCore *self, PyObject *unused)
{
    if (core_check(self) < 0)
        return NULL;
    heap_header *h = self->h;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        /* Copy the table first (no Python calls while locked or mid-read). */
        root_entry copy[NROOTS];
        u64 sq = 0;
        int locked = hread_begin(self, attempt, &sq, &deadline);
        if (locked < 0)
            return NULL;
        memcpy(copy, h->roots, sizeof copy);
        if (hread_end(self, locked, sq))
            continue;
        PyObject *d = PyDict_New();
        if (!d)
            return NULL;
        for (int i = 0; i < NROOTS; i++) {
            if (!copy[i].name[0])
                continue;
            PyObject *k = PyUnicode_DecodeUTF8(copy[i].name,
                                               (Py_ssize_t)strnlen(copy[i].name, 56), "replace");
            PyObject *v = PyLong_FromUnsignedLongLong(copy[i].addr);
            if (!k || !v || PyDict_SetItem(d, k, v) < 0) {
                Py_XDECREF(k);
                Py_XDECREF(v);
                Py_DECREF(d);
                return NULL;
            }
            Py_DECREF(k);
            Py_DECREF(v);
        }
        return d;
    }
}

/* ======================================================================== */
/* Dict                                                                     */
/* ======================================================================== */

static inline u64 mix64(u64 x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Deterministic across processes (Python's str hash is randomised). */
static u64 key_hash(int type, const char *p, size_t n)
{
    u64 h = 0x9e3779b97f4a7c15ULL ^ ((u64)n * 0x100000001b3ULL) ^ (u64)type;
    while (n >= 8) {
        u64 k;
        memcpy(&k, p, 8);
        h = (h ^ mix64(k)) * 0x9e3779b97f4a7c15ULL;
        h = (h << 29) | (h >> 35);
        p += 8;
        n -= 8;
    }
    u64 k = 0;
    memcpy(&k, p, n);
    h ^= mix64(k ^ ((u64)n << 56));
    return mix64(h);
}

/* An encoded key or value: borrowed bytes plus a type tag (and, for keys,
 * the hash). */
typedef struct {
    int type;
    const char *p;
    Py_ssize_t n;
    u64 hash;
    char num[8];
    PyObject *tmp; /* owned temporary (big int bytes or text), or NULL */
} blob;

static void blob_clear(blob *b) { Py_CLEAR(b->tmp); }

/* int.to_bytes / int.from_bytes in signed little-endian form.  Python calls,
 * so only ever made with the heap lock released. */
static PyObject *bigint_to_bytes(PyObject *o)
{
    PyObject *bits = PyObject_CallMethod(o, "bit_length", NULL);
    if (!bits)
        return NULL;
    Py_ssize_t nbits = PyLong_AsSsize_t(bits);
    Py_DECREF(bits);
    if (nbits < 0)
        return NULL;
    PyObject *args = Py_BuildValue("(ns)", nbits / 8 + 1, "little");
    PyObject *kw = Py_BuildValue("{s:O}", "signed", Py_True);
    PyObject *meth = PyObject_GetAttrString(o, "to_bytes");
    PyObject *r = (args && kw && meth) ? PyObject_Call(meth, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(meth);
    return r;
}

static PyObject *bigint_from_bytes(const char *p, u64 n)
{
    PyObject *b = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    PyObject *args = b ? Py_BuildValue("(Os)", b, "little") : NULL;
    PyObject *kw = Py_BuildValue("{s:O}", "signed", Py_True);
    PyObject *meth = PyObject_GetAttrString((PyObject *)&PyLong_Type, "from_bytes");
    PyObject *r = (args && kw && meth) ? PyObject_Call(meth, args, kw) : NULL;
    Py_XDECREF(b);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_XDECREF(meth);
    return r;
}

static int encode(PyObject *o, blob *b, const char *what)
{
    b->tmp = NULL;
    if (PyBytes_Check(o)) {
        b->type = T_BYTES;
        b->p = PyBytes_AS_STRING(o);
        b->n = PyBytes_GET_SIZE(o);
    } else if (PyUnicode_Check(o)) {
        b->type = T_STR;
        b->p = PyUnicode_AsUTF8AndSize(o, &b->n);
        if (!b->p)
            return -1;
    } else if (PyLong_Check(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (!overflow) {
            b->type = T_INT;
            memcpy(b->num, &v, 8);
            b->p = b->num;
            b->n = 8;
        } else {
            /* beyond int64: two's complement bytes, no digit limit */
            b->tmp = bigint_to_bytes(o);
            if (!b->tmp)
                return -1;
            b->type = T_BIGINT;
            b->p = PyBytes_AS_STRING(b->tmp);
            b->n = PyBytes_GET_SIZE(b->tmp);
        }
    } else {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, str or int, not %.100s", what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if ((u64)b->n > 0xffffffffULL) {
        blob_clear(b);
        PyErr_Format(PyExc_ValueError, "%s is too long (max 4 GiB)", what);
        return -1;
    }
    b->hash = key_hash(b->type, b->p, (size_t)b->n);
    return 0;
}

/* A key, plus the form an older version stored it in, if any: big ints
 * used to be decimal text, and such keys must still be found.  alt->p is
 * NULL when there is no older form (or it cannot be computed: above the
 * interpreter's digit limit, which such a key could not have been written
 * under either). */
static int encode_key(PyObject *o, blob *k, blob *alt)
{
    alt->p = NULL;
    alt->tmp = NULL;
    if (encode(o, k, "key") < 0)
        return -1;
    if (k->type != T_BIGINT)
        return 0;
    alt->tmp = PyNumber_ToBase(o, 10);
    const char *p = alt->tmp ? PyUnicode_AsUTF8AndSize(alt->tmp, &alt->n) : NULL;
    if (!p) {
        if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            Py_CLEAR(alt->tmp);
            return 0;
        }
        blob_clear(k);
        Py_CLEAR(alt->tmp);
        return -1;
    }
    alt->p = p;
    alt->type = T_BIGTEXT;
    alt->hash = key_hash(T_BIGTEXT, p, (size_t)alt->n);
    return 0;
}

static PyObject *decode(int type, const char *p, u64 n)
{
    switch (type) {
    case T_BYTES:
        return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    case T_STR:
        return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, NULL);
    case T_INT:
        if (n == 8) {
            long long v;
            memcpy(&v, p, 8);
            return PyLong_FromLongLong(v);
        }
        break;
    case T_BIGINT:
        if (n > 0)
            return bigint_from_bytes(p, n);
        break;
    case T_BIGTEXT: {
        PyObject *s = PyUnicode_DecodeASCII(p, (Py_ssize_t)n, NULL);
        if (!s)
            return NULL;
        PyObject *r = PyLong_FromUnicodeObject(s, 10);
        Py_DECREF(s);
        return r;
    }
    }
    PyErr_SetString(PyExc_RuntimeError, "heap corrupt: bad Dict entry (type tag or length)");
    return NULL;
}

static dict_hdr *dict_at(HeapCore *self, PyObject *ho)
{
    u64 a;
    if (core_check(self) < 0 || parse_u64(ho, &a, "dict address") < 0)
        return NULL;
    if (a % 16 || !in_arena(self, a, sizeof(dict_hdr)) ||
        ld(&((dict_hdr *)(uintptr_t)a)->magic) != DICT_MAGIC) {
        PyErr_Format(PyExc_ValueError, "%p is not a Dict of this heap", (void *)(uintptr_t)a);
        return NULL;
    }
    return (dict_hdr *)(uintptr_t)a;
}

/* Under the lock, before a writer trusts a Dict header: still a Dict (not
 * destroyed meanwhile), and a table that is a live allocation of the size
 * the mask says, with plausible counts.  Raises and returns -1 if not. */
static int dict_writable(HeapCore *self, dict_hdr *d)
{
    if (d->magic != DICT_MAGIC) {
        PyErr_Format(PyExc_ValueError, "%p is not a Dict of this heap (destroyed?)", (void *)d);
        return -1;
    }
    u64 mask = d->mask, table = d->table;
    u64 toff = live_offset(self, table);
    const char *bad = NULL;
    if (((mask + 1) & mask) || mask < 7 || mask > (self->size >> 4))
        bad = "Dict table size";
    else if (!toff || usable_at(self, toff) < (mask + 1) * sizeof(dict_slot))
        bad = "Dict table pointer";
    else if (d->count > d->used_slots || d->used_slots > mask + 1)
        bad = "Dict counts";
    if (bad) {
        PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s at %p", bad, (void *)d);
        return -1;
    }
    return 0;
}

/* Probe for key.  Read-only; tolerates concurrent writers (bounds checked,
 * bounded probe length).  Returns the slot index or -1; *reuse gets the
 * first reusable slot (tombstone or empty) or -1; *bad is set when a pointer
 * or length is out of bounds (torn read, or corruption). */
static long long dict_probe(HeapCore *self, dict_hdr *d, const blob *k, int *bad,
                            long long *reuse, u64 *entry_out)
{
    u64 mask = ld(&d->mask), table = ld(&d->table), hash = k->hash;
    *bad = 0;
    if (reuse)
        *reuse = -1;
    if (((mask + 1) & mask) || mask > (self->size >> 4) ||
        !in_arena(self, table, (mask + 1) * sizeof(dict_slot))) {
        *bad = 1;
        return -1;
    }
    dict_slot *slots = (dict_slot *)(uintptr_t)table;
    for (u64 i = 0; i <= mask; i++) {
        dict_slot *s = &slots[(hash + i) & mask];
        u64 e = ld(&s->entry);
        if (e == 0) {
            if (reuse && *reuse < 0)
                *reuse = (long long)((hash + i) & mask);
            return -1;
        }
        if (e == TOMB) {
            if (reuse && *reuse < 0)
                *reuse = (long long)((hash + i) & mask);
            continue;
        }
        if (ld(&s->hash) != hash)
            continue;
        if (!in_arena(self, e, sizeof(dict_entry))) {
            *bad = 1;
            return -1;
        }
        dict_entry *en = (dict_entry *)(uintptr_t)e;
        u32 kl = __atomic_load_n(&en->klen, __ATOMIC_RELAXED);
        u32 vl = __atomic_load_n(&en->vlen, __ATOMIC_RELAXED);
        if (!in_arena(self, e + sizeof(dict_entry), (u64)kl + vl)) {
            *bad = 1;
            return -1;
        }
        if (en->ktype == k->type && kl == (u64)k->n &&
            memcmp((char *)(en + 1), k->p, (size_t)kl) == 0) {
            /* hand back the entry from this same table snapshot: re-reading
             * d->table could give a newer, smaller table */
            if (entry_out)
                *entry_out = e;
            return (long long)((hash + i) & mask);
        }
    }
    return -1;
}

/* Probe for the key, then for its older form (see encode_key). */
static long long dict_find(HeapCore *self, dict_hdr *d, const blob *k, const blob *alt, int *bad,
                           long long *reuse, u64 *entry_out)
{
    long long i = dict_probe(self, d, k, bad, reuse, entry_out);
    if (i < 0 && !*bad && alt->p) {
        long long reuse2;
        i = dict_probe(self, d, alt, bad, &reuse2, entry_out);
    }
    return i;
}

/* A growable process-local byte buffer: container data is copied out into
 * it while the heap is locked (or under a seqlock read), and Python objects
 * are built from the copy afterwards.  Building them in place could run
 * Python code (a __del__, a GC pass) that re-enters the heap. */
typedef struct {
    char *p;
    size_t n, cap;
    char stack[256];
} copybuf;

static void cb_init(copybuf *b)
{
    b->p = b->stack;
    b->n = 0;
    b->cap = sizeof b->stack;
}

static void cb_free(copybuf *b)
{
    if (b->p != b->stack)
        PyMem_Free(b->p);
    cb_init(b);
}

/* Append n bytes; -1 (no exception set) if out of memory. */
static int cb_put(copybuf *b, const void *src, size_t n)
{
    if (n > b->cap - b->n) {
        size_t cap = b->cap * 2 > b->n + n ? b->cap * 2 : b->n + n;
        char *np = b->p == b->stack ? PyMem_Malloc(cap) : PyMem_Realloc(b->p, cap);
        if (!np)
            return -1;
        if (b->p == b->stack)
            memcpy(np, b->stack, b->n);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

/* Copy one entry (its key and/or value, per which: 0 keys, 1 values, 2
 * both) as {u8 ktype, u8 vtype, u32 klen, u32 vlen, bytes}.  The entry was
 * bounds-checked by the caller. */
static int cb_put_entry(copybuf *b, const dict_entry *en, u32 kl, u32 vl, int which)
{
    u32 kn = which == 1 ? 0 : kl, vn = which == 0 ? 0 : vl;
    unsigned char head[10] = {en->ktype, en->vtype};
    memcpy(head + 2, &kn, 4);
    memcpy(head + 6, &vn, 4);
    if (cb_put(b, head, sizeof head) < 0 || cb_put(b, (const char *)(en + 1), kn) < 0 ||
        cb_put(b, (const char *)(en + 1) + kl, vn) < 0)
        return -1;
    return 0;
}

/* dict_get(hdr, key, default): value or default (never raises KeyError). */
static PyObject *HeapCore_dict_get(HeapCore *self, PyObject *args)
{
    PyObject *ho, *key, *dflt;
    if (!PyArg_ParseTuple(args, "OOO", &ho, &key, &dflt))
        return NULL;
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    blob k, alt;
    if (encode_key(key, &k, &alt) < 0)
        return NULL;
    copybuf buf;
    cb_init(&buf);
    PyObject *res = NULL;
    int locked = 0;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 s = 0;
        if (!locked) {
            /* writer stuck or endless contention: read under the mutex (or,
             * read-only, wait a bounded time) */
            locked = read_begin(self, &d->seq, attempt, READ_ATTEMPTS, &s, &deadline);
            if (locked < 0)
                goto out;
        }
        int bad;
        u64 e = 0;
        long long i = dict_find(self, d, &k, &alt, &bad, NULL, &e);
        int found = 0, vtype = 0;
        buf.n = 0;
        if (i >= 0) {
            dict_entry *en = (dict_entry *)(uintptr_t)e; /* bounds-checked by the probe */
            u64 vl = __atomic_load_n(&en->vlen, __ATOMIC_RELAXED);
            u64 kl = __atomic_load_n(&en->klen, __ATOMIC_RELAXED);
            vtype = en->vtype;
            if (in_arena(self, (u64)(uintptr_t)(en + 1), kl + vl)) {
                if (cb_put(&buf, (char *)(en + 1) + kl, vl) < 0) {
                    if (locked)
                        heap_unlock(self);
                    PyErr_NoMemory();
                    goto out;
                }
                found = 1;
            } else {
                bad = 1;
            }
        }
        if (locked) {
            heap_unlock(self);
            if (bad) {
                PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
                goto out;
            }
        } else if (seq_retry(&d->seq, s)) {
            continue;
        } else if (bad) {
            /* Consistent snapshot but bad pointers: real corruption. */
            PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
            goto out;
        }
        if (found)
            res = decode(vtype, buf.p, buf.n);
        else
            res = Py_NewRef(dflt);
        break;
    }
out:
    cb_free(&buf);
    blob_clear(&k);
    blob_clear(&alt);
    return res;
}

static PyObject *HeapCore_dict_len(HeapCore *self, PyObject *ho)
{
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&d->count, __ATOMIC_ACQUIRE));
}

static PyObject *HeapCore_dict_new(HeapCore *self, PyObject *args)
{
    Py_ssize_t cap_hint = 0;
    if (!PyArg_ParseTuple(args, "|n", &cap_hint))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "creating a Dict") < 0)
        return NULL;
    u64 cap = 8;
    while (cap_hint > 0 && cap < (u64)cap_hint * 2 && cap < (1ULL << 40))
        cap <<= 1;
    if (heap_lock(self) < 0)
        return NULL;
    TX t;
    tx_init(&t, self);
    u64 ho = tx_alloc(&t, sizeof(dict_hdr), 16);
    u64 to = ho ? tx_alloc(&t, cap * sizeof(dict_slot), 16) : 0;
    if (!to)
        return tx_fail(self, &t, PyExc_MemoryError, "heap full: cannot create a Dict");
    /* both blocks are fresh: unlogged initialisation is safe */
    memset(self->base + to, 0, cap * sizeof(dict_slot));
    dict_hdr *d = (dict_hdr *)(self->base + ho);
    d->seq = 0;
    d->count = 0;
    d->used_slots = 0;
    d->mask = cap - 1;
    d->table = abs_of(self, to);
    compiler_fence();
    d->magic = DICT_MAGIC;
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(abs_of(self, ho));
}

/* Under the lock: grow/rehash into a fresh table.  Returns 0, or -1 (out of
 * memory, or corrupt: t->corrupt says which). */
static int dict_resize(HeapCore *self, TX *t, dict_hdr *d, u64 newcap)
{
    u64 to = tx_alloc(t, newcap * sizeof(dict_slot), 16);
    if (!to)
        return -1;
    dict_slot *ns = (dict_slot *)(self->base + to);
    memset(ns, 0, newcap * sizeof(dict_slot));
    dict_slot *os = (dict_slot *)(uintptr_t)d->table;
    u64 nm = newcap - 1, placed = 0;
    for (u64 i = 0; i <= d->mask; i++) {
        u64 e = os[i].entry;
        if (e == 0 || e == TOMB)
            continue;
        /* more live slots than the count says would fill the new table */
        if (++placed > d->count) {
            tx_bad(t, "Dict holds more entries than its count");
            return -1;
        }
        u64 j = os[i].hash & nm;
        while (ns[j].entry)
            j = (j + 1) & nm;
        ns[j] = os[i];
    }
    W(t, &d->table, abs_of(self, to));
    W(t, &d->mask, nm);
    W(t, &d->used_slots, d->count);
    tx_free(t, (u64)((char *)os - self->base));
    return 0;
}

static u64 entry_alloc(HeapCore *self, TX *t, const blob *k, const blob *v)
{
    u64 eo = tx_alloc(t, sizeof(dict_entry) + (u64)k->n + (u64)v->n, 16);
    if (!eo)
        return 0;
    dict_entry *en = (dict_entry *)(self->base + eo);
    en->klen = (u32)k->n;
    en->vlen = (u32)v->n;
    en->ktype = (u8)k->type;
    en->vtype = (u8)v->type;
    memcpy((char *)(en + 1), k->p, (size_t)k->n);
    memcpy((char *)(en + 1) + k->n, v->p, (size_t)v->n);
    return eo;
}

static PyObject *HeapCore_dict_set(HeapCore *self, PyObject *args)
{
    PyObject *ho, *key, *val;
    if (!PyArg_ParseTuple(args, "OOO", &ho, &key, &val))
        return NULL;
    if (ro_refuse(self, "Dict item assignment") < 0)
        return NULL;
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    blob k, alt, v;
    if (encode_key(key, &k, &alt) < 0)
        return NULL;
    if (encode(val, &v, "value") < 0) {
        blob_clear(&k);
        blob_clear(&alt);
        return NULL;
    }
    PyObject *res = NULL;
    if (heap_lock(self) < 0)
        goto out;
    if (dict_writable(self, d) < 0) {
        heap_unlock(self);
        goto out;
    }
    TX t;
    tx_init(&t, self);
    tx_begin_seq(&t, &d->seq);
    if ((d->used_slots + 1) * 4 > (d->mask + 1) * 3) {
        /* Rehash to a load of at most 1/2.  With many tombstones this keeps
         * the size and only sweeps them out. */
        u64 cap = d->mask + 1;
        while ((d->count + 1) * 2 > cap)
            cap <<= 1;
        if (dict_resize(self, &t, d, cap) < 0) {
            tx_fail(self, &t, PyExc_MemoryError, "heap full: cannot store Dict item");
            goto out;
        }
    }
    int bad;
    long long reuse, reuse_old;
    long long i = dict_probe(self, d, &k, &bad, &reuse, NULL);
    /* The key in an older form (see encode_key) is replaced by a new entry
     * in the current form, at the slot the current hash probes to. */
    long long old_i = i < 0 && !bad && alt.p ? dict_probe(self, d, &alt, &bad, &reuse_old, NULL)
                                             : -1;
    if (bad) {
        tx_fail(self, &t, PyExc_RuntimeError, "heap corrupt: Dict structure");
        goto out;
    }
    u64 eo = entry_alloc(self, &t, &k, &v);
    if (!eo) {
        tx_fail(self, &t, PyExc_MemoryError, "heap full: cannot store Dict item");
        goto out;
    }
    dict_slot *slots = (dict_slot *)(uintptr_t)d->table;
    if (old_i >= 0) {
        u64 old = slots[old_i].entry;
        W(&t, &slots[old_i].entry, TOMB);
        W(&t, &d->count, d->count - 1);
        tx_free(&t, old - (u64)(uintptr_t)self->base);
    }
    if (i >= 0) {
        u64 old = slots[i].entry;
        W(&t, &slots[i].entry, abs_of(self, eo));
        tx_free(&t, old - (u64)(uintptr_t)self->base);
    } else {
        if (reuse < 0) { /* only a corrupt table: the load factor keeps empty slots */
            tx_fail(self, &t, PyExc_RuntimeError, "heap corrupt: Dict table full");
            goto out;
        }
        if (slots[reuse].entry == 0)
            W(&t, &d->used_slots, d->used_slots + 1);
        W(&t, &slots[reuse].hash, k.hash);
        W(&t, &slots[reuse].entry, abs_of(self, eo));
        W(&t, &d->count, d->count + 1);
    }
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc == 0)
        res = Py_NewRef(Py_None);
out:
    blob_clear(&k);
    blob_clear(&alt);
    blob_clear(&v);
    return res;
}

/* dict_pop(hdr, key[, default]): remove and return; KeyError if absent and
 * no default.  The value is copied out under the lock and decoded after. */
static PyObject *HeapCore_dict_pop(HeapCore *self, PyObject *args)
{
    PyObject *ho, *key, *dflt = NULL;
    if (!PyArg_ParseTuple(args, "OO|O", &ho, &key, &dflt))
        return NULL;
    if (ro_refuse(self, "Dict deletion") < 0)
        return NULL;
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    blob k, alt;
    if (encode_key(key, &k, &alt) < 0)
        return NULL;
    copybuf buf;
    cb_init(&buf);
    PyObject *res = NULL;
    int vtype = 0;
    if (heap_lock(self) < 0)
        goto out;
    if (dict_writable(self, d) < 0) {
        heap_unlock(self);
        goto out;
    }
    int bad;
    long long i = dict_find(self, d, &k, &alt, &bad, NULL, NULL);
    if (bad) {
        heap_unlock(self);
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
        goto out;
    }
    if (i < 0) {
        heap_unlock(self);
        if (dflt)
            res = Py_NewRef(dflt);
        else
            PyErr_SetObject(PyExc_KeyError, key);
        goto out;
    }
    dict_slot *slots = (dict_slot *)(uintptr_t)d->table;
    dict_entry *en = (dict_entry *)(uintptr_t)slots[i].entry; /* bounds-checked by the probe */
    vtype = en->vtype;
    if (cb_put(&buf, (char *)(en + 1) + en->klen, en->vlen) < 0) {
        heap_unlock(self);
        PyErr_NoMemory();
        goto out;
    }
    TX t;
    tx_init(&t, self);
    tx_begin_seq(&t, &d->seq);
    W(&t, &slots[i].entry, TOMB);
    W(&t, &d->count, d->count - 1);
    tx_free(&t, (u64)((char *)en - self->base));
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc == 0)
        res = decode(vtype, buf.p, buf.n);
out:
    cb_free(&buf);
    blob_clear(&k);
    blob_clear(&alt);
    return res;
}

/* Copy every live entry into buf (see cb_put_entry).  Returns 0, -1 if out
 * of memory (no exception set), 1 if a pointer was out of bounds (torn
 * read, or corruption).  No Python calls. */
static int dict_copy_entries(HeapCore *self, dict_hdr *d, int which, copybuf *buf)
{
    u64 mask = ld(&d->mask), table = ld(&d->table);
    if (((mask + 1) & mask) || mask > (self->size >> 4) ||
        !in_arena(self, table, (mask + 1) * sizeof(dict_slot)))
        return 1;
    dict_slot *slots = (dict_slot *)(uintptr_t)table;
    for (u64 i = 0; i <= mask; i++) {
        u64 e = ld(&slots[i].entry);
        if (e == 0 || e == TOMB)
            continue;
        if (!in_arena(self, e, sizeof(dict_entry)))
            return 1;
        dict_entry *en = (dict_entry *)(uintptr_t)e;
        u32 kl = __atomic_load_n(&en->klen, __ATOMIC_RELAXED);
        u32 vl = __atomic_load_n(&en->vlen, __ATOMIC_RELAXED);
        if (!in_arena(self, e + sizeof(dict_entry), (u64)kl + vl))
            return 1;
        if (cb_put_entry(buf, en, kl, vl, which) < 0)
            return -1;
    }
    return 0;
}

/* Build the keys/values/items list from a copy made by dict_copy_entries. */
static PyObject *dict_build_list(const copybuf *buf, int which)
{
    PyObject *out = PyList_New(0);
    size_t pos = 0;
    while (out && pos < buf->n) {
        const unsigned char *head = (const unsigned char *)buf->p + pos;
        u32 kl, vl;
        memcpy(&kl, head + 2, 4);
        memcpy(&vl, head + 6, 4);
        const char *kp = (const char *)head + 10, *vp = kp + kl;
        pos += 10 + (size_t)kl + vl;
        PyObject *ko = NULL, *vo = NULL, *item = NULL;
        if (which != 1)
            ko = decode(head[0], kp, kl);
        if (which != 0 && (which == 1 || ko))
            vo = decode(head[1], vp, vl);
        if (which == 0)
            item = Py_XNewRef(ko);
        else if (which == 1)
            item = Py_XNewRef(vo);
        else if (ko && vo)
            item = PyTuple_Pack(2, ko, vo);
        Py_XDECREF(ko);
        Py_XDECREF(vo);
        if (!item || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    return out;
}

static PyObject *HeapCore_dict_items(HeapCore *self, PyObject *args)
{
    PyObject *ho;
    int which;
    if (!PyArg_ParseTuple(args, "Oi", &ho, &which))
        return NULL;
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    if (which < 0 || which > 2) {
        PyErr_SetString(PyExc_ValueError, "which must be 0, 1 or 2");
        return NULL;
    }
    copybuf buf;
    cb_init(&buf);
    PyObject *res = NULL;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 s = 0;
        int locked = read_begin(self, &d->seq, attempt, 20, &s, &deadline);
        if (locked < 0)
            break;
        buf.n = 0;
        int rc = dict_copy_entries(self, d, which, &buf);
        if (locked)
            heap_unlock(self);
        else if (seq_retry(&d->seq, s))
            continue; /* torn */
        if (rc < 0)
            PyErr_NoMemory();
        else if (rc > 0)
            PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
        else
            res = dict_build_list(&buf, which);
        break;
    }
    cb_free(&buf);
    return res;
}

#define CLEAR_BATCH 8

/* Under the lock, after the slots [from, cap) of a table were made
 * unreachable by a committed operation: free their entries in small
 * crash-safe batches (a crash in this phase can leak them, never corrupt the
 * heap).  Entries that are not live allocations are skipped. */
static int dict_free_entries(HeapCore *self, u64 table, u64 from, u64 cap)
{
    TX t;
    int rc = 0;
    dict_slot *os = (dict_slot *)(uintptr_t)table;
    u64 i = from;
    while (i < cap && rc == 0) {
        tx_init(&t, self);
        for (int n = 0; i < cap && n < CLEAR_BATCH; i++) {
            u64 e = os[i].entry;
            if (e > TOMB) {
                u64 off = live_offset(self, e);
                if (off)
                    tx_free(&t, off);
                n++;
            }
        }
        rc = tx_commit(&t);
    }
    return rc;
}

/* Empty the dict in place, with no allocation (so it works on a full heap):
 * one atomic step empties the first 8 slots, frees their entries and sets
 * the mask to 7; the entries of the other slots are then freed in batches,
 * and the table is shrunk to 8 slots in place. */
static PyObject *HeapCore_dict_clear(HeapCore *self, PyObject *ho)
{
    if (ro_refuse(self, "Dict.clear") < 0)
        return NULL;
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    if (heap_lock(self) < 0)
        return NULL;
    if (dict_writable(self, d) < 0) {
        heap_unlock(self);
        return NULL;
    }
    u64 table = d->table, cap = d->mask + 1;
    dict_slot *slots = (dict_slot *)(uintptr_t)table;
    TX t;
    tx_init(&t, self);
    tx_begin_seq(&t, &d->seq);
    for (int i = 0; i < 8; i++) { /* 8 <= DEFER_MAX deferred frees */
        u64 e = slots[i].entry;
        if (e > TOMB) {
            u64 off = live_offset(self, e);
            if (off)
                tx_free(&t, off);
        }
        if (e)
            W(&t, &slots[i].entry, 0);
    }
    W(&t, &d->mask, 7);
    W(&t, &d->count, 0);
    W(&t, &d->used_slots, 0);
    int rc = tx_commit(&t);
    if (rc == 0)
        rc = dict_free_entries(self, table, 8, cap);
    if (rc == 0 && cap > 8) {
        tx_init(&t, self);
        tx_realloc(&t, table - (u64)(uintptr_t)self->base, 8 * sizeof(dict_slot));
        rc = tx_commit(&t);
    }
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Free the whole dict.  Clearing the magic is the atomic step: afterwards
 * the header is no longer a Dict, and the memory is released in batches. */
static PyObject *HeapCore_dict_destroy(HeapCore *self, PyObject *ho)
{
    if (ro_refuse(self, "Dict.destroy") < 0)
        return NULL;
    dict_hdr *d = dict_at(self, ho);
    if (!d || heap_lock(self) < 0)
        return NULL;
    if (dict_writable(self, d) < 0) {
        heap_unlock(self);
        return NULL;
    }
    u64 table = d->table, cap = d->mask + 1;
    TX t;
    tx_init(&t, self);
    tx_begin_seq(&t, &d->seq);
    W(&t, &d->magic, 0);
    int rc = tx_commit(&t);
    if (rc == 0)
        rc = dict_free_entries(self, table, 0, cap);
    if (rc == 0) {
        tx_init(&t, self);
        tx_free(&t, table - (u64)(uintptr_t)self->base);
        tx_free(&t, (u64)((char *)d - self->base));
        rc = tx_commit(&t);
    }
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static const char *dict_check_body(HeapCore *self, dict_hdr *d, u64 *live_out);

/* Verify a dict: count matches, every entry is a live allocation. */
static PyObject *HeapCore_dict_check(HeapCore *self, PyObject *ho)
{
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    const char *err;
    u64 live;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 sq = 0;
        int locked = hread_begin(self, attempt, &sq, &deadline);
        if (locked < 0)
            return NULL;
        err = dict_check_body(self, d, &live);
        if (!hread_end(self, locked, sq))
            break;
    }
    if (err)
        return PyErr_Format(PyExc_RuntimeError, "Dict corrupt: %s", err);
    return PyLong_FromUnsignedLongLong(live);
}

/* The walk behind dict_check(); bounds-checked so that read-only mode can
 * run it optimistically under hseq. */
static const char *dict_check_body(HeapCore *self, dict_hdr *d, u64 *live_out)
{
    const char *err = NULL;
    u64 live = 0, used = 0;
    u64 table = ld(&d->table), mask = ld(&d->mask);
    if (!live_offset(self, table))
        err = "table is not a live allocation";
    else if (((mask + 1) & mask) || mask > (self->size >> 4) ||
             !in_arena(self, table, (mask + 1) * sizeof(dict_slot)))
        err = "table size is wrong";
    for (u64 i = 0; !err && i <= mask; i++) {
        dict_slot *s = (dict_slot *)(uintptr_t)table + i;
        if (s->entry == 0)
            continue;
        used++;
        if (s->entry == TOMB)
            continue;
        live++;
        u64 off = live_offset(self, s->entry);
        dict_entry *en = (dict_entry *)(uintptr_t)s->entry;
        if (!off)
            err = "entry is not a live allocation";
        else if (usable_at(self, off) < sizeof(dict_entry) + (u64)en->klen + en->vlen)
            err = "entry larger than its allocation";
        else if (key_hash(en->ktype, (char *)(en + 1), en->klen) != s->hash)
            err = "stored hash does not match key";
    }
    if (!err && live != d->count)
        err = "count is wrong";
    if (!err && used != d->used_slots)
        err = "used_slots is wrong";
    if (!err && (d->seq & 1))
        err = "seq is odd outside a write";
    *live_out = live;
    return err;
}

/* ======================================================================== */
/* Array                                                                    */
/* ======================================================================== */

static array_hdr *array_at(HeapCore *self, PyObject *ho)
{
    u64 a;
    if (core_check(self) < 0 || parse_u64(ho, &a, "array address") < 0)
        return NULL;
    if (a % 16 || !in_arena(self, a, sizeof(array_hdr)) ||
        ld(&((array_hdr *)(uintptr_t)a)->magic) != ARRAY_MAGIC) {
        PyErr_Format(PyExc_ValueError, "%p is not an Array of this heap",
                     (void *)(uintptr_t)a);
        return NULL;
    }
    return (array_hdr *)(uintptr_t)a;
}

#define ITEMSIZE_MAX (1 << 20)

/* Are these Array header fields consistent, with the data inside the arena?
 * (Overflow-safe: cap * isz is only formed once cap <= size / isz.) */
static const char *array_fields_bad(HeapCore *self, u64 data, u64 len, u64 cap, u64 isz)
{
    if (isz == 0 || isz > ITEMSIZE_MAX)
        return "Array item size";
    if (len > cap || cap > self->size / isz)
        return "Array length";
    if (cap ? !in_arena(self, data, cap * isz) : data != 0)
        return "Array data pointer";
    return NULL;
}

/* Under the lock, before a writer trusts an Array header: still an Array,
 * fields consistent, data a live allocation that holds cap items. */
static int array_writable(HeapCore *self, array_hdr *a)
{
    if (a->magic != ARRAY_MAGIC) {
        PyErr_Format(PyExc_ValueError, "%p is not an Array of this heap (destroyed?)", (void *)a);
        return -1;
    }
    const char *bad = array_fields_bad(self, a->data, a->len, a->cap, a->itemsize);
    if (!bad && a->cap) {
        u64 off = live_offset(self, a->data);
        if (!off || usable_at(self, off) < a->cap * a->itemsize)
            bad = "Array data is not a live allocation";
    }
    if (bad) {
        PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s at %p", bad, (void *)a);
        return -1;
    }
    return 0;
}

/* Live numpy views of Array data in this process, per Array header address
 * (process-wide: two Heap objects on one region share them).  An Array
 * with views refuses to resize, move or free its data, as bytearray does,
 * so no view ever points at freed memory.  Protected by the GIL. */
typedef struct {
    u64 hdr;
    Py_ssize_t n;
} view_pin;
static view_pin *pins;
static Py_ssize_t npins, pins_cap;

static Py_ssize_t pin_count(u64 hdr)
{
    for (Py_ssize_t i = 0; i < npins; i++)
        if (pins[i].hdr == hdr)
            return pins[i].n;
    return 0;
}

static int pin_add(u64 hdr)
{
    for (Py_ssize_t i = 0; i < npins; i++)
        if (pins[i].hdr == hdr) {
            pins[i].n++;
            return 0;
        }
    if (npins == pins_cap) {
        Py_ssize_t cap = pins_cap ? 2 * pins_cap : 8;
        view_pin *np = PyMem_Realloc(pins, (size_t)cap * sizeof *np);
        if (!np) {
            PyErr_NoMemory();
            return -1;
        }
        pins = np;
        pins_cap = cap;
    }
    pins[npins].hdr = hdr;
    pins[npins].n = 1;
    npins++;
    return 0;
}

static void pin_drop(u64 hdr)
{
    for (Py_ssize_t i = 0; i < npins; i++)
        if (pins[i].hdr == hdr) {
            if (--pins[i].n == 0)
                pins[i] = pins[--npins];
            return;
        }
}

/* Under the lock: refuse (and unlock) if numpy views of the Array's data
 * are alive in this process. */
static int array_unpinned(HeapCore *self, array_hdr *a, const char *what)
{
    Py_ssize_t n = pin_count((u64)(uintptr_t)a);
    if (!n)
        return 0;
    heap_unlock(self);
    PyErr_Format(PyExc_BufferError,
                 "cannot %s an Array while %zd numpy view(s) of its data exist; "
                 "delete them (or keep a .copy()) first", what, n);
    return -1;
}

/* Take the lock for a change of the Array's data: the header must be
 * sound (array_writable) and no numpy view may pin the data.  Returns 0
 * locked, or -1 unlocked with an exception set. */
static int array_lock_for_write(HeapCore *self, array_hdr *a, const char *what)
{
    if (heap_lock(self) < 0)
        return -1;
    if (array_writable(self, a) < 0) {
        heap_unlock(self);
        return -1;
    }
    return array_unpinned(self, a, what);
}

static PyObject *HeapCore_array_new(HeapCore *self, PyObject *args)
{
    Py_ssize_t itemsize;
    const char *dt;
    Py_ssize_t dtlen;
    if (!PyArg_ParseTuple(args, "ns#", &itemsize, &dt, &dtlen))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "creating an Array") < 0)
        return NULL;
    if (itemsize <= 0 || itemsize > ITEMSIZE_MAX) {
        PyErr_SetString(PyExc_ValueError, "itemsize must be 1..1 MiB");
        return NULL;
    }
    if (dtlen <= 0 || dtlen >= 32) {
        PyErr_SetString(PyExc_ValueError, "dtype string must be 1..31 bytes");
        return NULL;
    }
    if (heap_lock(self) < 0)
        return NULL;
    TX t;
    tx_init(&t, self);
    u64 ho = tx_alloc(&t, sizeof(array_hdr), 16);
    if (!ho)
        return tx_fail(self, &t, PyExc_MemoryError, "heap full: cannot create an Array");
    array_hdr *a = (array_hdr *)(self->base + ho);
    memset(a, 0, sizeof *a);
    a->itemsize = (u64)itemsize;
    memcpy(a->dtype, dt, (size_t)dtlen);
    compiler_fence();
    a->magic = ARRAY_MAGIC;
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(abs_of(self, ho));
}

/* Read an Array header consistently (seqlock, or under the lock) and check
 * it.  Returns 0 or -1 (exception set). */
static int array_read(HeapCore *self, array_hdr *a, u64 *data, u64 *len, u64 *cap, u64 *isz,
                      char dtype[sizeof a->dtype + 1])
{
    int locked = 0;
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 s = 0;
        if (!locked) {
            locked = read_begin(self, &a->seq, attempt, READ_ATTEMPTS, &s, &deadline);
            if (locked < 0)
                return -1;
        }
        *data = ld(&a->data);
        *len = ld(&a->len);
        *cap = ld(&a->cap);
        *isz = ld(&a->itemsize);
        memcpy(dtype, a->dtype, sizeof a->dtype);
        if (locked) {
            heap_unlock(self);
            break;
        }
        if (!seq_retry(&a->seq, s))
            break;
    }
    dtype[sizeof a->dtype] = 0;
    const char *bad = array_fields_bad(self, *data, *len, *cap, *isz);
    if (bad) {
        PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s at %p", bad, (void *)a);
        return -1;
    }
    return 0;
}

/* (data address, len, cap, itemsize, dtype) read consistently */
static PyObject *HeapCore_array_info(HeapCore *self, PyObject *ho)
{
    array_hdr *a = array_at(self, ho);
    if (!a)
        return NULL;
    u64 data, len, cap, isz;
    char dtype[sizeof a->dtype + 1];
    if (array_read(self, a, &data, &len, &cap, &isz, dtype) < 0)
        return NULL;
    return Py_BuildValue("KKKKy", (unsigned long long)data, (unsigned long long)len,
                         (unsigned long long)cap, (unsigned long long)isz, dtype);
}

/* ---- ArrayView: the exporter behind Array.numpy() ----
 *
 * Each buffer taken from it covers the Array's current data and counts as
 * a pin (see view_pin), an export of the heap (close refuses) and, for
 * window memory, an export of the segment's mapping (a switch away
 * refuses).  The buffer is read from the header at the moment it is taken,
 * so an ArrayView kept around never hands out a stale pointer. */
typedef struct {
    PyObject_HEAD
    HeapCore *core;
    u64 hdr;
} ArrayView;

static PyTypeObject ArrayViewType;

static PyObject *HeapCore_array_view(HeapCore *self, PyObject *ho)
{
    array_hdr *a = array_at(self, ho);
    if (!a)
        return NULL;
    ArrayView *v = PyObject_New(ArrayView, &ArrayViewType);
    if (!v)
        return NULL;
    v->core = (HeapCore *)Py_NewRef(self);
    v->hdr = (u64)(uintptr_t)a;
    return (PyObject *)v;
}

static void ArrayView_dealloc(ArrayView *v)
{
    Py_XDECREF(v->core);
    PyObject_Free(v);
}

static int ArrayView_getbuffer(ArrayView *v, Py_buffer *view, int flags)
{
    view->obj = NULL;
    HeapCore *c = v->core;
    PyObject *ho = PyLong_FromUnsignedLongLong(v->hdr);
    array_hdr *a = ho ? array_at(c, ho) : NULL;
    Py_XDECREF(ho);
    u64 data, len, cap, isz;
    char dtype[sizeof ((array_hdr *)0)->dtype + 1];
    if (!a || array_read(c, a, &data, &len, &cap, &isz, dtype) < 0)
        return -1;
    if (pin_add(v->hdr) < 0)
        return -1;
    if (world_pin(c) < 0) {
        pin_drop(v->hdr);
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)v, (void *)(uintptr_t)data, (Py_ssize_t)(len * isz),
                          c->readonly, flags) < 0) {
        world_unpin(c);
        pin_drop(v->hdr);
        return -1;
    }
    c->exports++;
    return 0;
}

static void ArrayView_releasebuffer(ArrayView *v, Py_buffer *view)
{
    v->core->exports--;
    world_unpin(v->core);
    pin_drop(v->hdr);
}

static PyBufferProcs ArrayView_as_buffer = {
    (getbufferproc)ArrayView_getbuffer,
    (releasebufferproc)ArrayView_releasebuffer,
};

static PyTypeObject ArrayViewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vaspace.heap._heapcore.ArrayView",
    .tp_basicsize = sizeof(ArrayView),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Buffer exporter of one Array's data (see Array.numpy()).",
    .tp_dealloc = (destructor)ArrayView_dealloc,
    .tp_as_buffer = &ArrayView_as_buffer,
};

/* Under the lock, on a header array_writable() accepted: set len to n,
 * growing the buffer (moving it) if needed.  New elements are zero.
 * Returns 0 or -1 (out of memory or corrupt; nothing changed after abort). */
static int array_setlen(HeapCore *self, TX *t, array_hdr *a, u64 n, int exact)
{
    u64 isz = a->itemsize;
    if (n > a->cap) {
        u64 cap = exact ? n : (a->cap * 2 > n ? a->cap * 2 : n);
        if (cap < 4 && !exact)
            cap = 4;
        if (cap > (self->size / isz))
            return -1;
        u64 no = tx_alloc(t, cap * isz, 64);
        if (!no)
            return -1;
        if (a->len)
            memcpy(self->base + no, (char *)(uintptr_t)a->data, a->len * isz);
        if (a->data)
            tx_free(t, a->data - (u64)(uintptr_t)self->base);
        W(t, &a->data, abs_of(self, no));
        W(t, &a->cap, cap);
    }
    if (t->corrupt)
        return -1;
    if (n > a->len) /* bytes beyond len are not committed state: no log */
        memset((char *)(uintptr_t)a->data + a->len * isz, 0, (n - a->len) * isz);
    W(t, &a->len, n);
    return 0;
}

static PyObject *HeapCore_array_resize(HeapCore *self, PyObject *args)
{
    PyObject *ho, *no;
    u64 n;
    if (!PyArg_ParseTuple(args, "OO", &ho, &no))
        return NULL;
    if (ro_refuse(self, "Array.resize") < 0)
        return NULL;
    array_hdr *a = array_at(self, ho);
    if (!a || parse_u64(no, &n, "length") < 0 || array_lock_for_write(self, a, "resize") < 0)
        return NULL;
    TX t;
    tx_init(&t, self);
    tx_begin_seq(&t, &a->seq);
    if (array_setlen(self, &t, a, n, 1) < 0) {
        char msg[80];
        snprintf(msg, sizeof msg, "heap full: cannot resize Array to %llu items",
                 (unsigned long long)n);
        return tx_fail(self, &t, PyExc_MemoryError, msg);
    }
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Append raw item bytes (a whole number of items). */
static PyObject *HeapCore_array_append(HeapCore *self, PyObject *args)
{
    PyObject *ho;
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "Oy*", &ho, &b))
        return NULL;
    PyObject *res = NULL;
    array_hdr *a = ro_refuse(self, "Array append/extend") < 0 ? NULL : array_at(self, ho);
    if (!a || array_lock_for_write(self, a, "grow") < 0)
        goto out;
    if ((u64)b.len % a->itemsize) {
        heap_unlock(self);
        PyErr_Format(PyExc_ValueError, "%zd bytes is not a whole number of %llu-byte items", b.len,
                     (unsigned long long)a->itemsize);
        goto out;
    }
    TX t;
    tx_init(&t, self);
    tx_begin_seq(&t, &a->seq);
    u64 old = a->len;
    if (array_setlen(self, &t, a, old + (u64)b.len / a->itemsize, 0) < 0) {
        tx_fail(self, &t, PyExc_MemoryError, "heap full: cannot append to Array");
        goto out;
    }
    memcpy((char *)(uintptr_t)a->data + old * a->itemsize, b.buf, (size_t)b.len);
    int rc = tx_commit(&t);
    heap_unlock(self);
    if (rc == 0)
        res = Py_NewRef(Py_None);
out:
    PyBuffer_Release(&b);
    return res;
}

/* Free an Array's memory (its header and its data). */
static PyObject *HeapCore_array_destroy(HeapCore *self, PyObject *ho)
{
    if (ro_refuse(self, "Array.destroy") < 0)
        return NULL;
    array_hdr *a = array_at(self, ho);
    if (!a || array_lock_for_write(self, a, "destroy") < 0)
        return NULL;
    TX t;
    tx_init(&t, self);
    tx_begin_seq(&t, &a->seq);
    W(&t, &a->magic, 0);
    u64 data = a->data;
    int rc = tx_commit(&t);
    /* Free in a second operation: the seq lives in the header, and the end
     * of a seq-guarded operation must not write into freed memory. */
    if (rc == 0) {
        tx_init(&t, self);
        if (data)
            tx_free(&t, data - (u64)(uintptr_t)self->base);
        tx_free(&t, (u64)((char *)a - self->base));
        rc = tx_commit(&t);
    }
    heap_unlock(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ======================================================================== */
/* Buffer export (numpy views)                                              */
/* ======================================================================== */

static int HeapCore_getbuffer(HeapCore *self, Py_buffer *view, int flags)
{
    if (core_check(self) < 0) {
        view->obj = NULL;
        if (!self->is_open) {
            PyErr_Clear();
            PyErr_SetString(PyExc_BufferError, "heap is closed");
        }
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->base, (Py_ssize_t)self->size,
                          self->readonly, flags) < 0)
        return -1;
    if (world_pin(self) < 0) {
        view->obj = NULL;
        Py_DECREF(self);
        return -1;
    }
    self->exports++;
    return 0;
}

static void HeapCore_releasebuffer(HeapCore *self, Py_buffer *view)
{
    self->exports--;
    world_unpin(self);
}

static PyBufferProcs HeapCore_as_buffer = {
    (getbufferproc)HeapCore_getbuffer,
    (releasebufferproc)HeapCore_releasebuffer,
};

/* ======================================================================== */
/* Type and module                                                          */
/* ======================================================================== */

static PyObject *HeapCore_get_base(HeapCore *self, void *c)
{
    if (core_check(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong((u64)(uintptr_t)self->base);
}

static PyObject *HeapCore_get_size(HeapCore *self, void *c)
{
    if (core_check(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(self->size);
}

static PyObject *HeapCore_get_closed(HeapCore *self, void *c) { return PyBool_FromLong(!self->is_open); }

static PyObject *HeapCore_get_readonly(HeapCore *self, void *c) { return PyBool_FromLong(self->readonly); }

static PyObject *HeapCore_get_read_timeout(HeapCore *self, void *c)
{
    return PyFloat_FromDouble(self->read_timeout);
}

static PyGetSetDef HeapCore_getset[] = {
    {"base", (getter)HeapCore_get_base, NULL, "absolute address of the region", NULL},
    {"size", (getter)HeapCore_get_size, NULL, "size of the region in bytes", NULL},
    {"closed", (getter)HeapCore_get_closed, NULL, "True after close()", NULL},
    {"readonly", (getter)HeapCore_get_readonly, NULL, "True if opened on a read-only buffer", NULL},
    {"read_timeout", (getter)HeapCore_get_read_timeout, NULL,
     "read-only mode: seconds a reader waits for a busy or dead writer", NULL},
    {NULL},
};

static PyMethodDef HeapCore_methods[] = {
    {"close", (PyCFunction)HeapCore_close, METH_NOARGS, "Release the buffer."},
    {"alloc", (PyCFunction)HeapCore_alloc, METH_VARARGS, "alloc(size, align=16) -> address"},
    {"free", (PyCFunction)HeapCore_free, METH_O, "free(address)"},
    {"realloc", (PyCFunction)HeapCore_realloc, METH_VARARGS, "realloc(address, size) -> address"},
    {"usable_size", (PyCFunction)HeapCore_usable_size, METH_O, "usable bytes of an allocation"},
    {"stats", (PyCFunction)HeapCore_stats, METH_NOARGS,
     "(size, used, free, allocations, largest_free, recoveries)"},
    {"check", (PyCFunction)HeapCore_check, METH_NOARGS, "verify invariants; returns allocations"},
    {"set_root", (PyCFunction)HeapCore_set_root, METH_VARARGS, "set_root(name, address)"},
    {"get_root", (PyCFunction)HeapCore_get_root, METH_O, "get_root(name) -> address"},
    {"del_root", (PyCFunction)HeapCore_del_root, METH_O, "del_root(name)"},
    {"roots", (PyCFunction)HeapCore_roots, METH_NOARGS, "roots() -> dict"},
    {"dict_new", (PyCFunction)HeapCore_dict_new, METH_VARARGS, "dict_new([capacity]) -> hdr"},
    {"dict_get", (PyCFunction)HeapCore_dict_get, METH_VARARGS, "dict_get(hdr, key, default)"},
    {"dict_set", (PyCFunction)HeapCore_dict_set, METH_VARARGS, "dict_set(hdr, key, value)"},
    {"dict_pop", (PyCFunction)HeapCore_dict_pop, METH_VARARGS, "dict_pop(hdr, key[, default])"},
    {"dict_len", (PyCFunction)HeapCore_dict_len, METH_O, "dict_len(hdr)"},
    {"dict_items", (PyCFunction)HeapCore_dict_items, METH_VARARGS, "dict_items(hdr, which)"},
    {"dict_clear", (PyCFunction)HeapCore_dict_clear, METH_O, "dict_clear(hdr)"},
    {"dict_check", (PyCFunction)HeapCore_dict_check, METH_O, "dict_check(hdr) -> count"},
    {"dict_destroy", (PyCFunction)HeapCore_dict_destroy, METH_O, "dict_destroy(hdr)"},
    {"array_new", (PyCFunction)HeapCore_array_new, METH_VARARGS, "array_new(itemsize, dtype)"},
    {"array_info", (PyCFunction)HeapCore_array_info, METH_O,
     "array_info(hdr) -> (data, len, cap, itemsize, dtype)"},
    {"array_resize", (PyCFunction)HeapCore_array_resize, METH_VARARGS, "array_resize(hdr, n)"},
    {"array_append", (PyCFunction)HeapCore_array_append, METH_VARARGS,
     "array_append(hdr, item_bytes)"},
    {"array_destroy", (PyCFunction)HeapCore_array_destroy, METH_O, "array_destroy(hdr)"},
    {"array_view", (PyCFunction)HeapCore_array_view, METH_O,
     "array_view(hdr) -> exporter of the Array's data (pins it while buffers are taken)"},
    {NULL},
};

static PyTypeObject HeapCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vaspace.heap._heapcore.HeapCore",
    .tp_basicsize = sizeof(HeapCore),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HeapCore(buffer, create=False): low-level heap inside a writable buffer.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)HeapCore_init,
    .tp_dealloc = (destructor)HeapCore_dealloc,
    .tp_methods = HeapCore_methods,
    .tp_getset = HeapCore_getset,
    .tp_as_buffer = &HeapCore_as_buffer,
};

static PyObject *mod_crash_after(PyObject *m, PyObject *arg)
{
    unsigned long n = PyLong_AsUnsignedLong(arg);
    if (n == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    crash_countdown = n;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_crash_after", mod_crash_after, METH_O,
     "_crash_after(n): testing only. _exit(77) at the n-th crash point of later heap "
     "writes in this process (0 disables)."},
    {NULL},
};

static struct PyModuleDef heapcore_module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = module_methods,
    .m_name = "_heapcore",
    .m_doc = "Crash-consistent shared-memory heap and containers (see vaspace.heap).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__heapcore(void)
{
#ifdef __GLIBC__
    {
        /* The type word format_region() gives the heap lock (heap_lock()
         * refuses a lock whose word differs). */
        pthread_mutexattr_t a;
        pthread_mutex_t m;
        if (pthread_mutexattr_init(&a) != 0 ||
            pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0 ||
            pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) != 0 ||
            pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK) != 0 ||
            pthread_mutex_init(&m, &a) != 0) {
            PyErr_SetString(PyExc_ImportError, "cannot initialise a robust process-shared mutex");
            return NULL;
        }
        expected_lock_kind = m.__data.__kind;
        pthread_mutex_destroy(&m);
        pthread_mutexattr_destroy(&a);
    }
#endif
    if (PyType_Ready(&HeapCoreType) < 0 || PyType_Ready(&ArrayViewType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&heapcore_module);
    if (!m)
        return NULL;
    HeapRecoveredWarning = PyErr_NewExceptionWithDoc(
        "vaspace.heap.HeapRecoveredWarning",
        "A process died while holding the heap lock; its unfinished operation was rolled back.",
        PyExc_RuntimeWarning, NULL);
    if (!HeapRecoveredWarning || PyModule_AddObjectRef(m, "HeapRecoveredWarning", HeapRecoveredWarning) < 0 ||
        PyModule_AddObjectRef(m, "HeapCore", (PyObject *)&HeapCoreType) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_BYTES", (long)hdr_bytes()) < 0 ||
        PyModule_AddIntConstant(m, "MAX_ROOTS", NROOTS) < 0 ||
        PyModule_AddIntConstant(m, "ROOT_NAME_MAX", ROOT_NAME_MAX) < 0 ||
        /* where the lock lives, for tests that fake a region copied
         * mid-operation (a non-empty undo log under a free lock) */
        PyModule_AddIntConstant(m, "_LOCK_OFFSET", (long)offsetof(heap_header, lock)) < 0 ||
        PyModule_AddIntConstant(m, "_LOCK_SIZE", (long)sizeof(pthread_mutex_t)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
