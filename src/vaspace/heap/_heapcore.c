/*
 * _heapcore.c -- the CPython bindings of the heap (vaspace.heap._heapcore).
 *
 * The heap itself -- layout, undo log, allocator, lock, seqlocks, Dict and
 * Array -- is the Python-free core in core/ (start with core/core.h).  This
 * file turns Python calls into core operations and core results into Python
 * objects and exceptions:
 *
 *   - argument parsing, key/value encoding (blob) and decoding;
 *   - the HeapCore object: the buffer it was opened on, and for vaspace
 *     window memory the stale-world checks (world_check, world_pin);
 *   - taking the lock with the GIL released, and the recovery warning;
 *   - read snapshots (read_snapshot) and write operations, which
 *     turn TX failures into RuntimeError or MemoryError;
 *   - numpy views of Array data (ArrayView) and their pins;
 *   - DictHandle, the C base of vaspace.heap.Dict: its state and GET path.
 *
 * Python objects are built from data copied out of the region once the lock
 * is released (or the seqlock read validated): building them may run Python
 * code (a __del__, a GC pass) that re-enters the heap.  The one exception is
 * the Dict's GET path (snap_value), which builds the plain values whose
 * building runs no Python code straight from the region inside the
 * snapshot, and drops them if the snapshot was torn.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../vaspace_core_api.h"
#include "core/core.h"

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
    heap_region r; /* base, size, header and geometry, validated at open */
    /* Window memory (a vaspace segment): the token of the mapping the heap
     * was opened on, and the window generation at the last check.  Such a
     * heap keeps no buffer export of it (that would refuse every switch
     * away); each call checks that the mapping is still the one at base.
     * 0 for a plain buffer, whose export (view) is kept instead. */
    u64 token, gen;
    int has_view;
} HeapCore;

static PyObject *HeapRecoveredWarning;

/* This boot's tag for the header's "written since the last flush" mark
 * (durable.c): a hash of the kernel's boot_id, never 0.  1 when boot_id
 * cannot be read, so that every boot looks the same. */
static u64 boot_tag = 1;

static void boot_tag_init(void)
{
    char id[64];
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (!f)
        return;
    size_t n = fread(id, 1, sizeof id, f);
    fclose(f);
    if (n)
        boot_tag = key_hash(0, id, n) | 1;
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
    if (core_api->token_at((uintptr_t)self->r.base) != self->token) {
        const char *name = core_api->token_name(self->token);
        if (name)
            PyErr_Format(PyExc_ValueError, "stale heap: segment '%s' is not mapped here", name);
        else
            PyErr_Format(PyExc_ValueError,
                         "stale heap: the segment it was opened on (at %p) is not mapped here",
                         (void *)self->r.base);
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

/* Take the heap mutex, releasing the GIL only if we have to wait.
 * Performs recovery on EOWNERDEAD and warns about it. */
static int heap_lock(HeapCore *self)
{
    if (core_check(self) < 0) /* argument parsing may have run Python code */
        return -1;
    heap_header *h = self->r.h;
    if (self->readonly) {
        /* Safety net: every writer refuses earlier (ro_refuse), and readers
         * in read-only mode use the seqlocks.  Locking would write the
         * mutex word, which faults on a PROT_READ mapping. */
        PyErr_SetString(PyExc_PermissionError,
                        "heap opened read-only: the heap lock cannot be taken");
        return -1;
    }
    if (!lock_kind_ok(h)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "heap corrupt: the heap lock's type word was overwritten");
        return -1;
    }
    int rc = lock_take(h);
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
    rc = lock_settle(&self->r, rc);
    if (rc == LOCK_INCONSISTENT) {
        /* Cannot happen for a robust mutex we own; fail safe. */
        PyErr_SetString(PyExc_RuntimeError, "pthread_mutex_consistent failed");
        return -1;
    } else if (rc == LOCK_VANISHED) {
        PyErr_SetString(PyExc_RuntimeError,
                        "heap corrupt: the heap lock word names no thread that could hold it");
        return -1;
    } else if (rc == EDEADLK) {
        /* Re-entry from this thread (e.g. a __del__ during an operation). */
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    } else if (rc != 0 && rc != 1) {
        PyErr_Format(PyExc_RuntimeError, "heap corrupt: the heap lock cannot be taken (%s)",
                     strerror(rc));
        return -1;
    }
    if (rc == 1) /* recovered */
        self->warn_pending = h->recoveries;
    return 0;
}

/* Unlock, then report a recovery done by heap_lock.  The warning is issued
 * only after the mutex is released: a warning filter runs Python code, which
 * might use the heap again. */
static void recovery_warn(HeapCore *self);

static void heap_unlock(HeapCore *self)
{
    lock_release(&self->r);
    recovery_warn(self);
}

/* Warn about the recovery a lock taker did (warn_pending), outside every
 * lock: a warning filter runs Python code, which might use the heap. */
static void recovery_warn(HeapCore *self)
{
    if (self->warn_pending) {
        unsigned long long n = self->warn_pending;
        self->warn_pending = 0;
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (PyErr_WarnFormat(HeapRecoveredWarning, 1,
                             "heap at %p: a process died while holding the heap lock; "
                             "its unfinished operation was rolled back (recovery #%llu)",
                             (void *)self->r.base, n) < 0)
            PyErr_WriteUnraisable((PyObject *)self);
        PyErr_Restore(et, ev, tb);
    }
}

/* ======================================================================== */
/* Seqlock readers                                                          */
/* ======================================================================== */

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
static int ro_timeout(HeapCore *self)
{
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

static int read_begin(HeapCore *self, const u64 *seq, int attempt, int max_attempts, u64 *s,
                      double *deadline)
{
    if (core_check(self) < 0) /* argument parsing may have run Python code */
        return -1;
    double *dl = self->readonly ? deadline : NULL;
    if (attempt < max_attempts && seq_begin(seq, s, dl, self->read_timeout) == 0)
        return 0;
    if (!self->readonly)
        return heap_lock(self) < 0 ? -1 : 1;
    if (*deadline == 0)
        *deadline = mono_now() + self->read_timeout;
    for (;;) {
        if (mono_now() >= *deadline)
            return ro_timeout(self);
        struct timespec ts = {0, 200 * 1000}; /* 200 us */
        if (world_pin(self) < 0)
            return -1;
        self->busy++;
        Py_BEGIN_ALLOW_THREADS
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
        self->busy--;
        world_unpin(self);
        if (seq_begin(seq, s, deadline, self->read_timeout) == 0)
            return 0;
    }
}

/* One consistent read of the region: copy(self, arg) copies what the caller
 * needs out of the region into arg.  It makes no Python calls and raises
 * nothing, and it checks every pointer it follows, because it may run on a
 * torn snapshot that is then thrown away.
 *
 * seq is a container's seqlock: the copy runs optimistically and is retried
 * while the seq moved, and after max_attempts (or when a writer seems stuck)
 * it runs under the heap lock instead (see read_begin).  NULL means heap-wide
 * state (roots, stats, check walks), which has no seqlock of its own:
 * writable mode reads it under the lock, read-only mode optimistically under
 * the header's hseq.  Every read of the region goes through here.
 *
 * Returns 0 once copy ran on a consistent snapshot, or -1 (exception set). */
typedef void (*read_copy)(HeapCore *self, void *arg);

/* Which update lanes (lane.c) a read must validate beside its seq: the
 * lane of one key (0..NLANES-1), all of them (a read of many Dict values),
 * or none (data no lane writer touches: Arrays, Lists). */
enum { LANES_ALL = -1, LANES_NONE = -2 };

/* Sample the seqs of lanes: 0 with a summary in *out (seqs only grow, so a
 * sum that did not change means none did), or -1 when one stays odd (a
 * lane writer died mid-update, or is stuck). */
static int lanes_sample(HeapCore *self, int lanes, u64 *out, double *deadline)
{
    *out = 0;
    if (lanes == LANES_NONE)
        return 0;
    double *dl = self->readonly ? deadline : NULL;
    heap_lane *l = self->r.h->lanes;
    if (lanes >= 0)
        return seq_begin(&l[lanes].seq, out, dl, self->read_timeout);
    for (int i = 0; i < NLANES; i++) {
        u64 s;
        if (seq_begin(&l[i].seq, &s, dl, self->read_timeout) < 0)
            return -1;
        *out += s;
    }
    return 0;
}

static int lanes_moved(HeapCore *self, int lanes, u64 was)
{
    if (lanes == LANES_NONE)
        return 0;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    heap_lane *l = self->r.h->lanes;
    if (lanes >= 0)
        return __atomic_load_n(&l[lanes].seq, __ATOMIC_RELAXED) != was;
    u64 sum = 0;
    for (int i = 0; i < NLANES; i++)
        sum += __atomic_load_n(&l[i].seq, __ATOMIC_RELAXED);
    return sum != was;
}

static inline int read_snapshot(HeapCore *self, const u64 *seq, int lanes, int max_attempts,
                                read_copy copy, void *arg)
{
    if (core_check(self) < 0)
        return -1;
    int heap_wide = seq == NULL;
    if (heap_wide) {
        seq = &self->r.h->hseq;
        lanes = LANES_ALL; /* read-only mode: hseq does not cover lane writers */
    }
    double deadline = 0;
    for (int attempt = 0;; attempt++) {
        u64 s = 0, ls = 0;
        int locked = heap_wide && !self->readonly
                         ? (heap_lock(self) < 0 ? -1 : 1)
                         : read_begin(self, seq, attempt, max_attempts, &s, &deadline);
        if (locked < 0)
            return -1;
        if (!locked && lanes_sample(self, lanes, &ls, &deadline) < 0) {
            /* a lane stays mid-update: the heap mutex waits it out (or
             * recovers it); read-only mode cannot take it */
            if (self->readonly)
                return ro_timeout(self);
            if (heap_lock(self) < 0)
                return -1;
            locked = 1;
        }
        copy(self, arg);
        if (locked) {
            heap_unlock(self);
            return 0;
        }
        if (!seq_retry(seq, s) && !lanes_moved(self, lanes, ls))
            return 0;
    }
}

/* Raise the error of a TX that was rolled back (corruption found, or the
 * undo log overflowed). */
static void tx_raise(TX *t)
{
    if (t->corrupt)
        PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s; operation rolled back", t->corrupt);
    else
        PyErr_SetString(PyExc_RuntimeError, "heap undo log overflow; operation rolled back");
}

/* Commit t (see tx_commit); on failure it was rolled back: raise, -1. */
static int tx_done(TX *t)
{
    if (tx_commit(t) == 0)
        return 0;
    tx_raise(t);
    return -1;
}

/* MemoryError for an operation that found no free block large enough.  It
 * says how much more room the heap needed (t->want against the largest free
 * block), so that a user can size the segment.  Under the lock, before t is
 * rolled back. */
static void raise_full(HeapCore *self, TX *t, const char *what)
{
    if (!t->want) { /* refused before any block was looked for */
        PyErr_Format(PyExc_MemoryError, "heap full: cannot %s", what);
        return;
    }
    u64 largest = largest_free(&self->r);
    u64 more = t->want > largest ? t->want - largest : t->want;
    PyErr_Format(PyExc_MemoryError,
                 "heap full: cannot %s: it needs a free block of %llu bytes, the largest "
                 "is %llu, so the heap needs at least %llu more bytes (segments are "
                 "sparse: make them generous; see docs/heap.md, Sizing)",
                 what, (unsigned long long)t->want, (unsigned long long)largest,
                 (unsigned long long)more);
}

/* The body of a write operation: runs under the heap lock, inside t.
 * Returns WRITE_COMMIT (commit t), WRITE_DONE (nothing left to commit: the
 * body wrote nothing, or committed its own steps) or WRITE_FAIL (exception
 * set; t is rolled back, and corruption recorded in t wins over the
 * exception: an allocation that "failed" on a corrupt free list is not a
 * MemoryError).  A body makes no Python calls that could run Python code. */
enum { WRITE_FAIL = -1, WRITE_COMMIT = 0, WRITE_DONE = 1 };
typedef int (*write_body)(HeapCore *self, TX *t, void *arg);

/* The shape of every write: lock, tx_init, body, commit or roll back,
 * unlock.  Callers refuse read-only heaps first (ro_refuse), so that this
 * error comes before any about their arguments.  0, or -1 (exception set). */
static int heap_write(HeapCore *self, write_body body, void *arg)
{
    if (heap_lock(self) < 0)
        return -1;
    if (self->r.h->unflushed != boot_tag) {
        /* The first write since a flush: its mark must be durable before
         * any page changes (durable.c).  A region that is no file mapping
         * cannot be msynced; the mark is set all the same. */
        if (world_pin(self) < 0) {
            heap_unlock(self);
            return -1;
        }
        self->busy++;
        Py_BEGIN_ALLOW_THREADS
        durable_mark(&self->r, boot_tag);
        Py_END_ALLOW_THREADS
        self->busy--;
        world_unpin(self);
    }
    TX t;
    tx_init(&t, &self->r);
    int rc = body(self, &t, arg);
    if (rc == WRITE_COMMIT) {
        rc = tx_done(&t);
    } else if (rc == WRITE_FAIL) {
        tx_abort(&t);
        if (t.corrupt) {
            PyErr_Clear();
            tx_raise(&t);
        }
    }
    heap_unlock(self);
    return rc < 0 ? -1 : 0;
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


/* ======================================================================== */
/* Heap methods                                                             */
/* ======================================================================== */

/* format_region(), raising ValueError or OSError. */
static int region_format(char *base, u64 size)
{
    if (size < region_min_bytes()) {
        PyErr_Format(PyExc_ValueError, "region of %llu bytes is too small for a heap (minimum %llu)",
                     (unsigned long long)size, (unsigned long long)region_min_bytes());
        return -1;
    }
    int rc = format_region(base, size, boot_tag);
    if (rc == 0)
        return 0;
    errno = rc;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* validate_header(), raising ValueError. */
static int region_validate(char *base, u64 size)
{
    char msg[256];
    if (validate_header(base, size, msg, sizeof msg) == 0)
        return 0;
    PyErr_SetString(PyExc_ValueError, msg);
    return -1;
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
        rc = create ? region_format(base, size) : region_validate(base, size);
    }
    if (rc < 0) {
        PyBuffer_Release(&self->view);
        return -1;
    }
    region_open(&self->r, base, size);
    if (!readonly && !create && (rc = lock_adopt(&self->r, boot_tag)) != 0) {
        PyBuffer_Release(&self->view);
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
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
    self->r.h = NULL;
    Py_RETURN_NONE;
}

typedef struct {
    u64 size, align, off;
} alloc_args;

static int alloc_body(HeapCore *self, TX *t, void *arg)
{
    alloc_args *a = arg;
    a->off = tx_alloc(t, a->size, a->align);
    if (a->off)
        return WRITE_COMMIT;
    char what[64];
    snprintf(what, sizeof what, "allocate %llu bytes", (unsigned long long)a->size);
    raise_full(self, t, what);
    return WRITE_FAIL;
}

static PyObject *HeapCore_alloc(HeapCore *self, PyObject *args)
{
    PyObject *so, *ao = NULL;
    alloc_args a = {0, 16, 0};
    if (!PyArg_ParseTuple(args, "O|O", &so, &ao))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "alloc") < 0 || parse_u64(so, &a.size, "size") < 0)
        return NULL;
    if (ao && parse_u64(ao, &a.align, "align") < 0)
        return NULL;
    if (a.align == 0 || (a.align & (a.align - 1))) {
        PyErr_Format(PyExc_ValueError, "align must be a power of two, not %llu",
                     (unsigned long long)a.align);
        return NULL;
    }
    if (a.align < 16)
        a.align = 16;
    if (heap_write(self, alloc_body, &a) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(abs_of(&self->r, a.off));
}

/* Under the lock: the offset of the live allocation at addr that the raw
 * allocator may free or move, or 0 with an exception set.  A live
 * container's header is refused (its handles would then use freed memory;
 * destroy() clears the magic first). */
static u64 raw_block(HeapCore *self, u64 addr, const char *what)
{
    u64 off = live_offset(&self->r, addr);
    if (!off) {
        PyErr_Format(PyExc_ValueError, "%p is not a live allocation of this heap%s",
                     (void *)(uintptr_t)addr,
                     strcmp(what, "free") == 0 ? " (double free or foreign pointer?)" : "");
        return 0;
    }
    u64 m = *(u64 *)(self->r.base + off);
    int kind = ref_kind_of_magic(m);
    if (kind < 0)
        return off;
    PyErr_Format(PyExc_ValueError, "cannot %s %p: it is a live %s; use its destroy()", what,
                 (void *)(self->r.base + off), ref_kind_name(kind));
    return 0;
}

typedef struct {
    u64 addr, size;
} block_args;

static int free_body(HeapCore *self, TX *t, void *arg)
{
    block_args *a = arg;
    u64 off = raw_block(self, a->addr, "free");
    if (!off)
        return WRITE_FAIL;
    tx_free_now(t, off);
    return WRITE_COMMIT;
}

static PyObject *HeapCore_free(HeapCore *self, PyObject *ao)
{
    block_args a;
    if (core_check(self) < 0 || ro_refuse(self, "free") < 0 ||
        parse_u64(ao, &a.addr, "address") < 0 || heap_write(self, free_body, &a) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int realloc_body(HeapCore *self, TX *t, void *arg)
{
    block_args *a = arg;
    u64 off = raw_block(self, a->addr, "realloc");
    if (!off)
        return WRITE_FAIL;
    u64 n = tx_realloc(t, off, a->size);
    if (!n) {
        char what[64];
        snprintf(what, sizeof what, "grow allocation to %llu bytes", (unsigned long long)a->size);
        raise_full(self, t, what);
        return WRITE_FAIL;
    }
    a->addr = abs_of(&self->r, n);
    return WRITE_COMMIT;
}

static PyObject *HeapCore_realloc(HeapCore *self, PyObject *args)
{
    PyObject *ao, *so;
    block_args a;
    if (!PyArg_ParseTuple(args, "OO", &ao, &so))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "realloc") < 0 ||
        parse_u64(ao, &a.addr, "address") < 0 || parse_u64(so, &a.size, "size") < 0 ||
        heap_write(self, realloc_body, &a) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(a.addr);
}

/* usable size of a live allocation (for tests and realloc-aware callers) */
typedef struct {
    u64 addr, off, size;
} usable_read;

static void usable_copy(HeapCore *self, void *arg)
{
    usable_read *u = arg;
    u->off = live_offset(&self->r, u->addr);
    u->size = u->off ? usable_at(&self->r, u->off) : 0;
}

static PyObject *HeapCore_usable_size(HeapCore *self, PyObject *ao)
{
    usable_read u;
    if (core_check(self) < 0 || parse_u64(ao, &u.addr, "address") < 0 ||
        read_snapshot(self, NULL, LANES_ALL, READ_ATTEMPTS, usable_copy, &u) < 0)
        return NULL;
    if (!u.off)
        return PyErr_Format(PyExc_ValueError, "%p is not a live allocation of this heap",
                            (void *)(uintptr_t)u.addr);
    return PyLong_FromUnsignedLongLong(u.size);
}

typedef struct {
    u64 largest, used, allocations, recoveries;
} stats_read;

static void stats_copy(HeapCore *self, void *arg)
{
    stats_read *st = arg;
    heap_header *h = self->r.h;
    st->largest = largest_free(&self->r);
    st->used = ld(&h->used);
    st->allocations = ld(&h->allocations);
    st->recoveries = ld(&h->recoveries);
}

static PyObject *HeapCore_stats(HeapCore *self, PyObject *unused)
{
    stats_read st;
    if (read_snapshot(self, NULL, LANES_ALL, READ_ATTEMPTS, stats_copy, &st) < 0)
        return NULL;
    u64 arena = self->r.aend - 16 - self->r.aoff;
    return Py_BuildValue("KKKKKK", (unsigned long long)self->r.size, (unsigned long long)st.used,
                         (unsigned long long)(arena - st.used), (unsigned long long)st.allocations,
                         (unsigned long long)(st.largest ? st.largest - 16 : 0),
                         (unsigned long long)st.recoveries);
}

/* Walk every block and free list; raise RuntimeError on any inconsistency. */
typedef struct {
    const char *err;
    u64 where, nalloc;
} check_read;

static void check_copy(HeapCore *self, void *arg)
{
    check_read *c = arg;
    c->err = heap_check_walk(&self->r, &c->where, &c->nalloc);
}

static PyObject *HeapCore_check(HeapCore *self, PyObject *unused)
{
    check_read c;
    if (read_snapshot(self, NULL, LANES_ALL, READ_ATTEMPTS, check_copy, &c) < 0)
        return NULL;
    if (c.err)
        return PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s (offset %p)", c.err,
                            (void *)(uintptr_t)c.where);
    return PyLong_FromUnsignedLongLong(c.nalloc);
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

/* set_root / del_root: the name (and its UTF-8), and the address to set. */
typedef struct {
    PyObject *name;
    const char *s;
    size_t n;
    u64 addr;
} root_args;

static int set_root_body(HeapCore *self, TX *t, void *arg)
{
    root_args *a = arg;
    heap_header *h = self->r.h;
    int i = root_find(h, a->s, a->n);
    if (i >= 0) {
        W(t, &h->roots[i].addr, a->addr);
        return WRITE_COMMIT;
    }
    for (i = 0; i < NROOTS && h->roots[i].name[0]; i++)
        ;
    if (i == NROOTS) {
        PyErr_Format(PyExc_MemoryError, "root table full (%d names)", NROOTS);
        return WRITE_FAIL;
    }
    char buf[56] = {0};
    memcpy(buf, a->s, a->n);
    /* The name words are logged: a torn name would be a corrupt root. */
    W(t, &h->roots[i].addr, a->addr);
    for (int k = 0; k < 7; k++) {
        u64 w;
        memcpy(&w, buf + 8 * k, 8);
        W(t, (u64 *)h->roots[i].name + k, w);
    }
    return WRITE_COMMIT;
}

static PyObject *HeapCore_set_root(HeapCore *self, PyObject *args)
{
    PyObject *name, *ao;
    root_args a;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OO", &name, &ao))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "set_root") < 0 ||
        root_name(name, &a.s, &n) < 0 || parse_u64(ao, &a.addr, "address") < 0)
        return NULL;
    a.n = (size_t)n;
    u64 b0 = (u64)(uintptr_t)self->r.base;
    if (a.addr < b0 || a.addr >= b0 + self->r.size)
        return PyErr_Format(PyExc_ValueError, "root address %p is outside the heap region",
                            (void *)(uintptr_t)a.addr);
    if (heap_write(self, set_root_body, &a) < 0)
        return NULL;
    Py_RETURN_NONE;
}

typedef struct {
    const char *s;
    size_t n;
    int i;
    u64 addr;
} root_read;

static void root_copy(HeapCore *self, void *arg)
{
    root_read *r = arg;
    r->i = root_find(self->r.h, r->s, r->n);
    r->addr = r->i >= 0 ? ld(&self->r.h->roots[r->i].addr) : 0;
}

static PyObject *HeapCore_get_root(HeapCore *self, PyObject *name)
{
    root_read r;
    Py_ssize_t n;
    if (core_check(self) < 0 || root_name(name, &r.s, &n) < 0)
        return NULL;
    r.n = (size_t)n;
    if (read_snapshot(self, NULL, LANES_ALL, READ_ATTEMPTS, root_copy, &r) < 0)
        return NULL;
    if (r.i < 0) {
        PyErr_SetObject(PyExc_KeyError, name);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(r.addr);
}

static int del_root_body(HeapCore *self, TX *t, void *arg)
{
    root_args *a = arg;
    heap_header *h = self->r.h;
    int i = root_find(h, a->s, a->n);
    if (i < 0) {
        PyErr_SetObject(PyExc_KeyError, a->name);
        return WRITE_FAIL;
    }
    W(t, (u64 *)h->roots[i].name, 0); /* first byte 0 = free slot: one word is enough */
    W(t, &h->roots[i].addr, 0);
    return WRITE_COMMIT;
}

static PyObject *HeapCore_del_root(HeapCore *self, PyObject *name)
{
    root_args a = {name, NULL, 0, 0};
    Py_ssize_t n;
    if (core_check(self) < 0 || ro_refuse(self, "del_root") < 0 || root_name(name, &a.s, &n) < 0)
        return NULL;
    a.n = (size_t)n;
    if (heap_write(self, del_root_body, &a) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void roots_copy(HeapCore *self, void *arg)
{
    memcpy(arg, self->r.h->roots, sizeof self->r.h->roots);
}

static PyObject *HeapCore_roots(HeapCore *self, PyObject *unused)
{
    /* Copy the table first (no Python calls while locked or mid-read). */
    root_entry copy[NROOTS];
    if (read_snapshot(self, NULL, LANES_ALL, READ_ATTEMPTS, roots_copy, copy) < 0)
        return NULL;
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    for (int i = 0; i < NROOTS; i++) {
        if (!copy[i].name[0])
            continue;
        PyObject *k = PyUnicode_DecodeUTF8(copy[i].name, (Py_ssize_t)strnlen(copy[i].name, 56),
                                           "replace");
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

/* ======================================================================== */
/* Dict                                                                     */
/* ======================================================================== */

/* An encoded key or value (the core's heap_key: borrowed bytes, a type tag
 * and, for keys, the hash) plus what keeps the bytes alive. */
typedef struct {
    heap_key key;
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
    Py_ssize_t n;
    b->tmp = NULL;
    if (PyBytes_Check(o)) {
        b->key.type = T_BYTES;
        b->key.p = PyBytes_AS_STRING(o);
        n = PyBytes_GET_SIZE(o);
    } else if (PyUnicode_Check(o)) {
        b->key.type = T_STR;
        b->key.p = PyUnicode_AsUTF8AndSize(o, &n);
        if (!b->key.p)
            return -1;
    } else if (PyLong_Check(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (!overflow) {
            b->key.type = T_INT;
            memcpy(b->num, &v, 8);
            b->key.p = b->num;
            n = 8;
        } else {
            /* beyond int64: two's complement bytes, no digit limit */
            b->tmp = bigint_to_bytes(o);
            if (!b->tmp)
                return -1;
            b->key.type = T_BIGINT;
            b->key.p = PyBytes_AS_STRING(b->tmp);
            n = PyBytes_GET_SIZE(b->tmp);
        }
    } else {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, str or int, not %.100s", what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if ((u64)n > 0xffffffffULL) {
        blob_clear(b);
        PyErr_Format(PyExc_ValueError, "%s is too long (max 4 GiB)", what);
        return -1;
    }
    b->key.n = (u64)n;
    b->key.hash = key_hash(b->key.type, b->key.p, (size_t)n);
    return 0;
}

/* vaspace.heap._Ref (a NamedTuple (kind, addr)), registered by the Python
 * layer: how a container travels as a value in both directions. */
static PyObject *ref_type;

/* A value: None, bool (kept as bool), float, a _Ref to a container, or
 * what encode() takes. */
static int encode_value(PyObject *o, blob *b)
{
    b->tmp = NULL;
    b->key.hash = 0;
    b->key.p = b->num;
    if (o == Py_None) {
        b->key.type = T_NONE;
        b->key.n = 0;
    } else if (PyBool_Check(o)) {
        b->key.type = T_BOOL;
        b->num[0] = o == Py_True;
        b->key.n = 1;
    } else if (PyFloat_Check(o)) {
        double x = PyFloat_AS_DOUBLE(o);
        b->key.type = T_FLOAT;
        memcpy(b->num, &x, 8);
        b->key.n = 8;
    } else if (ref_type && Py_IS_TYPE(o, (PyTypeObject *)ref_type) && PyTuple_GET_SIZE(o) == 2) {
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(o, 0));
        u64 addr = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(o, 1));
        if (PyErr_Occurred())
            return -1;
        if (!T_IS_REF(kind)) {
            PyErr_SetString(PyExc_ValueError, "bad container reference");
            return -1;
        }
        b->key.type = (int)kind;
        memcpy(b->num, &addr, 8);
        b->key.n = 8;
    } else if (PyBytes_Check(o) || PyUnicode_Check(o) || PyLong_Check(o)) {
        return encode(o, b, "value");
    } else {
        PyErr_Format(PyExc_TypeError,
                     "value must be None, bool, int, float, str, bytes, or a Dict, Array or "
                     "List of the same heap, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
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
    case T_NONE:
        if (n == 0)
            Py_RETURN_NONE;
        break;
    case T_BOOL:
        if (n == 1 && (unsigned char)p[0] <= 1)
            return PyBool_FromLong(p[0]);
        break;
    case T_FLOAT:
        if (n == 8) {
            double x;
            memcpy(&x, p, 8);
            return PyFloat_FromDouble(x);
        }
        break;
    case T_DICT:
    case T_ARRAY:
    case T_LIST:
        /* the Python layer turns it into a live handle, checking the header */
        if (n == 8 && ref_type) {
            u64 a;
            memcpy(&a, p, 8);
            return PyObject_CallFunction(ref_type, "iK", type, (unsigned long long)a);
        }
        break;
    }
    PyErr_SetString(PyExc_RuntimeError, "heap corrupt: bad value entry (type tag or length)");
    return NULL;
}

/* The container header of kind (T_DICT, T_ARRAY, T_LIST) at the address
 * ho names: aligned, inside the arena, with its magic.  Else ValueError. */
static void *container_at_addr(HeapCore *self, u64 a, int kind, u64 magic, size_t size)
{
    if (core_check(self) < 0)
        return NULL;
    if (a % 16 || !in_arena(&self->r, a, size) || ld((u64 *)(uintptr_t)a) != magic) {
        PyErr_Format(PyExc_ValueError, "%p is not %s %s of this heap", (void *)(uintptr_t)a,
                     kind == T_ARRAY ? "an" : "a", ref_kind_name(kind));
        return NULL;
    }
    return (void *)(uintptr_t)a;
}

static void *container_at(HeapCore *self, PyObject *ho, int kind, u64 magic, size_t size)
{
    u64 a;
    if (parse_u64(ho, &a, "container address") < 0)
        return NULL;
    return container_at_addr(self, a, kind, magic, size);
}

/* Under the lock: raise for what a *_bad() check found (notmagic: the
 * magic is gone, so a ValueError; else corruption).  0 if nothing. */
static int container_raise(const char *bad, const char *notmagic, int kind, void *hdr)
{
    if (!bad)
        return 0;
    if (bad == notmagic)
        PyErr_Format(PyExc_ValueError, "%p is not %s %s of this heap (destroyed?)", hdr,
                     kind == T_ARRAY ? "an" : "a", ref_kind_name(kind));
    else
        PyErr_Format(PyExc_RuntimeError, "heap corrupt: %s at %p", bad, hdr);
    return -1;
}

static dict_hdr *dict_at(HeapCore *self, PyObject *ho)
{
    return container_at(self, ho, T_DICT, DICT_MAGIC, sizeof(dict_hdr));
}

/* Under the lock, before a writer trusts a Dict header (see dict_bad).
 * Raises and returns -1 if it is not sound. */
static int dict_writable(HeapCore *self, dict_hdr *d)
{
    return container_raise(dict_bad(&self->r, d), DICT_NOT_A_DICT, T_DICT, d);
}

/* Inside a read snapshot: build the value object straight from the region's
 * bytes, with no copy-out buffer, when its type allows it: bytes, ASCII
 * text, int64, float, None, bool.  Building these runs no Python code (none
 * is tracked by the GC, so the allocation cannot start a collection and its
 * finalizers; a failed one sets the type-only MemoryError, which is cleared
 * here) and reads only the bounds-checked bytes it is given.  Returns 1 with
 * *out set (NULL: out of memory), or 0 for a value that decode() builds
 * after the snapshot instead: a container reference or a big int (building
 * them calls Python), text that is not ASCII (a decoding error would build
 * an exception object), or a bad length (decode() reports it as corruption,
 * once the snapshot is known to be consistent). */
static int snap_value(int type, const char *p, u64 n, PyObject **out)
{
    switch (type) {
    case T_BYTES:
        *out = PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
        break;
    case T_STR:
        for (u64 i = 0; i < n; i++)
            if ((unsigned char)p[i] & 0x80)
                return 0;
        *out = PyUnicode_New((Py_ssize_t)n, 127);
        if (*out)
            memcpy(PyUnicode_DATA(*out), p, (size_t)n);
        break;
    case T_INT: {
        long long v;
        if (n != 8)
            return 0;
        memcpy(&v, p, 8);
        *out = PyLong_FromLongLong(v);
        break;
    }
    case T_FLOAT: {
        double x;
        if (n != 8)
            return 0;
        memcpy(&x, p, 8);
        *out = PyFloat_FromDouble(x);
        break;
    }
    case T_NONE:
        if (n != 0)
            return 0;
        *out = Py_NewRef(Py_None);
        break;
    case T_BOOL:
        if (n != 1 || (unsigned char)p[0] > 1)
            return 0;
        *out = PyBool_FromLong(p[0]);
        break;
    default:
        return 0;
    }
    if (!*out)
        PyErr_Clear(); /* reported after the snapshot, if it was consistent */
    return 1;
}

typedef struct {
    dict_hdr *d;
    const heap_key *k;
    int want; /* 1: the value; 0: only whether the key is there */
    int found, vtype, bad, nomem;
    PyObject *val; /* the value, built in the snapshot (snap_value) */
    copybuf buf;   /* or its bytes, for decode() after the snapshot */
} get_read;

/* Look one key up (dict_get, under d's seqlock).  An object built from a
 * snapshot that then turns out torn is dropped here, on the retry: only one
 * built from a consistent snapshot leaves read_snapshot. */
static void get_copy(HeapCore *self, void *arg)
{
    get_read *g = arg;
    dict_ent_view ev; /* bounds-checked by the probe */
    Py_CLEAR(g->val);
    g->found = g->nomem = 0;
    g->buf.n = 0;
    if (!dict_find(&self->r, g->d, g->k, &g->bad, &ev))
        return;
    g->found = 1;
    g->vtype = ev.h.vtype;
    if (!g->want)
        return;
    if (snap_value(ev.h.vtype, ev.v, ev.vn, &g->val))
        g->nomem = !g->val;
    else if (cb_put(&g->buf, ev.v, ev.vn) < 0)
        g->nomem = 1;
}

/* Look key up in the Dict whose header is at addr.  Returns 1 with *out the
 * value (want; a container comes as a _Ref), 0 if the key is absent, -1
 * with an exception set.  The key is encoded first: encoding may run Python
 * code (an int subclass), which could close the heap or switch its segment
 * away, and container_at_addr checks for that right before the region is
 * read. */
static int dict_lookup(HeapCore *self, u64 addr, PyObject *key, int want, PyObject **out)
{
    blob k;
    if (encode(key, &k, "key") < 0)
        return -1;
    dict_hdr *d = container_at_addr(self, addr, T_DICT, DICT_MAGIC, sizeof(dict_hdr));
    if (!d) {
        blob_clear(&k);
        return -1;
    }
    dict_prefetch(&self->r, d, k.key.hash);
    get_read g; /* set field by field: an initialiser would zero buf's 256 bytes */
    g.d = d;
    g.k = &k.key;
    g.want = want;
    g.found = g.vtype = g.bad = g.nomem = 0;
    g.val = NULL;
    cb_init(&g.buf);
    int rc = -1;
    if (read_snapshot(self, &d->seq, lane_of(k.key.hash), READ_ATTEMPTS, get_copy, &g) < 0)
        ;
    else if (g.bad) /* a consistent snapshot with bad pointers: real corruption */
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
    else if (g.nomem)
        PyErr_NoMemory();
    else if (!g.found || !want)
        rc = g.found;
    else if (g.val) {
        *out = g.val;
        g.val = NULL;
        rc = 1;
    } else if ((*out = decode(g.vtype, g.buf.p, g.buf.n)))
        rc = 1;
    Py_XDECREF(g.val);
    cb_free(&g.buf);
    blob_clear(&k);
    return rc;
}

/* dict_get(hdr, key, default): value or default (never raises KeyError).
 * A fast call: no argument tuple. */
static PyObject *HeapCore_dict_get(HeapCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "dict_get expected 3 arguments, got %zd", nargs);
        return NULL;
    }
    u64 a;
    PyObject *v = NULL;
    if (parse_u64(args[0], &a, "container address") < 0)
        return NULL;
    int rc = dict_lookup(self, a, args[1], 1, &v);
    return rc < 0 ? NULL : rc ? v : Py_NewRef(args[2]);
}

/* ---- DictHandle: the C part of a Dict handle, and the GET path ---- */

static PyTypeObject HeapCoreType;
static PyObject *from_value_fn; /* vaspace.heap._from_value(heap, ref) */

/* vaspace.heap.Dict derives from this type, which holds the handle's state
 * (_heap, _c, _addr) in C: d[key], d.get(key) and `key in d` are then each
 * one C call from the interpreter, with no Python frame, no attribute
 * lookups and no address parsing; a GET costs about what LMDB's txn.get
 * does in calls.  Only the address's parsing is done once, when _addr is
 * set; the heap's liveness (closed, stale world) and the header (bounds,
 * magic) are checked on every call, as for every other entry point: they
 * can change between two calls. */
typedef struct {
    PyObject_HEAD
    PyObject *heap;     /* the vaspace.heap.Heap: container values become its handles */
    HeapCore *c;        /* the heap's core */
    PyObject *addr_obj; /* the header's address, as an int */
    u64 addr;           /* the same, parsed */
} DictHandle;

/* The lookup of handle_get/subscript/contains.  The core is held for the
 * call: a reader may release the GIL (read-only mode, a stuck writer), and
 * another thread could meanwhile set _c to something else. */
static int handle_lookup(DictHandle *h, PyObject *key, int want, PyObject **out)
{
    HeapCore *c = h->c;
    if (!c || !h->addr_obj) {
        PyErr_SetString(PyExc_ValueError, "Dict handle is not set up (no heap or no address)");
        return -1;
    }
    Py_INCREF(c);
    int rc = dict_lookup(c, h->addr, key, want, out);
    Py_DECREF(c);
    return rc;
}

/* A container value (a _Ref) becomes a live handle through _from_value, as
 * in the Python methods; other values pass through. */
static PyObject *handle_value(DictHandle *h, PyObject *v)
{
    if (!ref_type || !Py_IS_TYPE(v, (PyTypeObject *)ref_type) || !from_value_fn)
        return v;
    PyObject *heap = h->heap ? h->heap : Py_None;
    Py_SETREF(v, PyObject_CallFunctionObjArgs(from_value_fn, heap, v, NULL));
    return v;
}

static PyObject *handle_subscript(DictHandle *h, PyObject *key)
{
    PyObject *v = NULL;
    int rc = handle_lookup(h, key, 1, &v);
    if (rc == 0)
        PyErr_SetObject(PyExc_KeyError, key); /* key is bytes, str or int: never a tuple */
    return rc > 0 ? handle_value(h, v) : NULL;
}

/* `key in d`: False for a key of a type no Dict holds (as the Python method
 * it replaces answered), else a lookup that builds no value. */
static int handle_contains(DictHandle *h, PyObject *key)
{
    if (!PyBytes_Check(key) && !PyUnicode_Check(key) && !PyLong_Check(key))
        return 0;
    return handle_lookup(h, key, 0, NULL);
}

/* d.get(key, default=None): a fast call, default also by keyword. */
static PyObject *handle_get(DictHandle *h, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs < 1 || nargs + nkw > 2 ||
        (nkw && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "default"))) {
        PyErr_SetString(PyExc_TypeError, "get() takes a key and an optional default");
        return NULL;
    }
    PyObject *dflt = nargs + nkw == 2 ? args[1] : Py_None, *v = NULL;
    int rc = handle_lookup(h, args[0], 1, &v);
    return rc < 0 ? NULL : rc ? handle_value(h, v) : Py_NewRef(dflt);
}

static PyObject *handle_unset(const char *name)
{
    PyErr_Format(PyExc_AttributeError, "Dict handle has no %s yet", name);
    return NULL;
}

static PyObject *handle_get_heap(DictHandle *h, void *x)
{
    return h->heap ? Py_NewRef(h->heap) : handle_unset("_heap");
}

static int handle_set_heap(DictHandle *h, PyObject *v, void *x)
{
    Py_XSETREF(h->heap, Py_XNewRef(v));
    return 0;
}

static PyObject *handle_get_c(DictHandle *h, void *x)
{
    return h->c ? Py_NewRef((PyObject *)h->c) : handle_unset("_c");
}

static int handle_set_c(DictHandle *h, PyObject *v, void *x)
{
    if (v && !PyObject_TypeCheck(v, &HeapCoreType)) {
        PyErr_Format(PyExc_TypeError, "_c must be a HeapCore, not %.100s", Py_TYPE(v)->tp_name);
        return -1;
    }
    Py_XSETREF(h->c, (HeapCore *)Py_XNewRef(v));
    return 0;
}

static PyObject *handle_get_addr(DictHandle *h, void *x)
{
    return h->addr_obj ? Py_NewRef(h->addr_obj) : handle_unset("_addr");
}

/* The address is parsed here, once per handle (ValueError if negative or
 * beyond 64 bits); whether a Dict is there is checked on every call. */
static int handle_set_addr(DictHandle *h, PyObject *v, void *x)
{
    u64 a = 0;
    PyObject *i = v ? PyNumber_Index(v) : NULL;
    if (v && (!i || parse_u64(i, &a, "container address") < 0)) {
        Py_XDECREF(i);
        return -1;
    }
    Py_XSETREF(h->addr_obj, i);
    h->addr = a;
    return 0;
}

static int handle_traverse(DictHandle *h, visitproc visit, void *arg)
{
    Py_VISIT(h->heap);
    Py_VISIT(h->c);
    return 0;
}

static int handle_clear(DictHandle *h)
{
    Py_CLEAR(h->heap);
    Py_CLEAR(h->c);
    Py_CLEAR(h->addr_obj);
    return 0;
}

/* A subclass's (heap) type is released by CPython's subtype_dealloc, which
 * calls this. */
static void handle_dealloc(DictHandle *h)
{
    PyObject_GC_UnTrack(h);
    handle_clear(h);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static PyMappingMethods handle_as_mapping = {.mp_subscript = (binaryfunc)handle_subscript};
static PySequenceMethods handle_as_sequence = {.sq_contains = (objobjproc)handle_contains};

static PyMethodDef handle_methods[] = {
    {"get", (PyCFunction)(void (*)(void))handle_get, METH_FASTCALL | METH_KEYWORDS,
     "get(key, default=None): the value of key, or default"},
    {NULL},
};

static PyGetSetDef handle_getset[] = {
    {"_heap", (getter)handle_get_heap, (setter)handle_set_heap, "the Heap", NULL},
    {"_c", (getter)handle_get_c, (setter)handle_set_c, "the heap's core (a HeapCore)", NULL},
    {"_addr", (getter)handle_get_addr, (setter)handle_set_addr, "the header's address", NULL},
    {NULL},
};

static PyTypeObject DictHandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vaspace.heap._heapcore.DictHandle",
    .tp_basicsize = sizeof(DictHandle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C part of a vaspace.heap.Dict handle: its state and its GET path.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_traverse = (traverseproc)handle_traverse,
    .tp_clear = (inquiry)handle_clear,
    .tp_as_mapping = &handle_as_mapping,
    .tp_as_sequence = &handle_as_sequence,
    .tp_methods = handle_methods,
    .tp_getset = handle_getset,
};

static PyObject *HeapCore_dict_len(HeapCore *self, PyObject *ho)
{
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&d->count, __ATOMIC_ACQUIRE));
}

static int dict_new_body(HeapCore *self, TX *t, void *arg)
{
    u64 *cap_or_hdr = arg; /* in: keys to make room for; out: the new Dict's offset */
    *cap_or_hdr = dict_create(t, *cap_or_hdr);
    if (*cap_or_hdr)
        return WRITE_COMMIT;
    raise_full(self, t, "create a Dict");
    return WRITE_FAIL;
}

static PyObject *HeapCore_dict_new(HeapCore *self, PyObject *args)
{
    Py_ssize_t cap_hint = 0;
    if (!PyArg_ParseTuple(args, "|n", &cap_hint))
        return NULL;
    if (core_check(self) < 0 || ro_refuse(self, "creating a Dict") < 0)
        return NULL;
    u64 cap = cap_hint > 0 ? (u64)cap_hint : 0; /* in: keys to make room for */
    if (cap > (self->r.size >> 4))
        cap = self->r.size >> 4;
    if (heap_write(self, dict_new_body, &cap) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(abs_of(&self->r, cap));
}

/* ---- containers as values (core/own.c has the rule) ---- */

static Py_ssize_t pin_count(u64 hdr);

static int array_pinned(u64 hdr) { return pin_count(hdr) > 0; }

/* Under the lock, inside t: make the container v refers to (if it is a
 * reference) a value held by holder.  cur is the entry the place holds now
 * (or 0): re-assigning the container it already holds changes nothing.
 * Returns 0 (adopted, or not a reference), 1 (nothing to do) or -1 (raised:
 * the container is gone, has another parent, or would hold itself). */
static int value_adopt(HeapCore *self, TX *t, u64 holder, const heap_key *v, int cur_vt,
                       u64 cur_addr)
{
    if (!T_IS_REF(v->type))
        return 0;
    u64 child;
    memcpy(&child, v->p, 8);
    if (cur_vt == v->type && cur_addr == child)
        return 1;
    const char *kind = ref_kind_name(v->type);
    switch (ref_adopt(t, holder, v->type, child)) {
    case REF_OK:
        return 0;
    case REF_NOT_LIVE:
        PyErr_Format(PyExc_ValueError, "%p is not a live %s of this heap (destroyed?)",
                     (void *)(uintptr_t)child, kind);
        return -1;
    case REF_HAS_PARENT:
        PyErr_Format(PyExc_ValueError,
                     "the %s at %p is already a value in another container; a container "
                     "has one parent (pop() it from there first)",
                     kind, (void *)(uintptr_t)child);
        return -1;
    default:
        PyErr_Format(PyExc_ValueError,
                     "the %s at %p holds this container: a container cannot hold itself",
                     kind, (void *)(uintptr_t)child);
        return -1;
    }
}

/* Commit t, then destroy the containers the write orphaned (dead), each
 * in its own small transactions.  A write body's last step. */
static int commit_and_destroy(HeapCore *self, TX *t, refstack *dead)
{
    if (tx_done(t) < 0)
        return WRITE_FAIL;
    if (dead->n && destroy_owned(t, dead, array_pinned) < 0) {
        tx_raise(t);
        return WRITE_FAIL;
    }
    return WRITE_DONE;
}

/* destroy(): a container held as a value is destroyed through its holder. */
static int refuse_owned(u64 parent, const char *kind)
{
    if (!parent)
        return 0;
    PyErr_Format(PyExc_ValueError,
                 "this %s is a value inside the container at %p: delete it there (del "
                 "holder[key]) to destroy it, or pop() it to own it",
                 kind, (void *)(uintptr_t)parent);
    return -1;
}

/* Dict.update: n pairs stored in one operation (dict_load), so the whole
 * update commits or rolls back as one, whatever n is. */
typedef struct {
    dict_hdr *d;
    u64 n;
    blob *kb, *vb; /* encoded keys and values */
    heap_key *k, *v; /* their heap_keys, as dict_load takes them */
    u64 *gone;       /* n words: value blocks the update replaced */
    refstack dead;
} dict_update_args;

/* After commit: free the value blocks the update replaced, 8 per
 * transaction (a crash between them leaks a block, never corrupts). */
static int free_gone(HeapCore *self, TX *t, dict_update_args *a, u64 ngone)
{
    for (u64 i = 0; i < ngone;) {
        tx_init(t, &self->r);
        for (int m = 0; i < ngone && m < DEFER_MAX; i++, m++) {
            u64 off = live_offset(&self->r, a->gone[i]);
            if (off)
                tx_free(t, off);
        }
        if (tx_commit(t) < 0) {
            tx_raise(t);
            return -1;
        }
    }
    return 0;
}

static int dict_update_body(HeapCore *self, TX *t, void *arg)
{
    dict_update_args *a = arg;
    if (dict_writable(self, a->d) < 0)
        return WRITE_FAIL;
    tx_begin_seq(t, &a->d->seq);
    u64 ngone = 0;
    dict_freed fr;
    int rc = dict_load(t, a->d, a->n, a->k, a->v, &a->dead, (u64)(uintptr_t)a->d, a->gone, &ngone,
                       &fr);
    if (rc == DICT_NOMEM || rc == DICT_TABLE_NOMEM) {
        char what[96];
        snprintf(what, sizeof what, "store %llu Dict items in one update",
                 (unsigned long long)a->n);
        raise_full(self, t, what);
        return WRITE_FAIL;
    }
    if (rc == DICT_OOM) {
        PyErr_NoMemory();
        return WRITE_FAIL;
    }
    if (rc != DICT_OK) {
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
        return WRITE_FAIL;
    }
    if (tx_done(t) < 0)
        return WRITE_FAIL;
    dict_release(&self->r, &fr);
    if (free_gone(self, t, a, ngone) < 0)
        return WRITE_FAIL;
    if (a->dead.n && destroy_owned(t, &a->dead, array_pinned) < 0) {
        tx_raise(t);
        return WRITE_FAIL;
    }
    return WRITE_DONE;
}

/* Is o a value that update() stores as is (no container reference)? */
static int plain_value(PyObject *o)
{
    return o == Py_None || PyBool_Check(o) || PyFloat_Check(o) || PyBytes_Check(o) ||
           PyUnicode_Check(o) || PyLong_Check(o);
}

/* Encode the pairs (a sequence of (key, value) 2-sequences) into a's
 * arrays; Python calls, so before the lock is taken.  0, -1 (exception),
 * 1 when a value is not plain (the caller stores item by item), or 2 when
 * an item is not a tuple (the caller makes tuples and calls again). */
static int update_encode(dict_update_args *a, PyObject *items)
{
    for (u64 i = 0; i < a->n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(items, i), *ko, *vo;
        if (!PyTuple_Check(pair))
            return 2;
        if (PyTuple_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_ValueError,
                         "dictionary update sequence element #%llu has length %zd; 2 is required",
                         (unsigned long long)i, PyTuple_GET_SIZE(pair));
            return -1;
        }
        ko = PyTuple_GET_ITEM(pair, 0);
        vo = PyTuple_GET_ITEM(pair, 1);
        if (!plain_value(vo))
            return 1;
        if (encode(ko, &a->kb[i], "key") < 0 || encode_value(vo, &a->vb[i]) < 0)
            return -1;
        a->k[i] = a->kb[i].key;
        a->v[i] = a->vb[i].key;
    }
    return 0;
}

/* dict_update(hdr, items): 0 when stored; nothing is stored when it
 * returns 1 (a value is not plain: Dict.update stores item by item) or 2 (an
 * item is not a tuple). */
static PyObject *HeapCore_dict_update(HeapCore *self, PyObject *args)
{
    PyObject *ho, *io;
    if (!PyArg_ParseTuple(args, "OO", &ho, &io))
        return NULL;
    if (ro_refuse(self, "Dict.update") < 0)
        return NULL;
    dict_update_args a;
    memset(&a, 0, sizeof a);
    a.d = dict_at(self, ho);
    if (!a.d)
        return NULL;
    /* A tuple copy: the encoded keys point into the items' buffers, and
     * Python code run while encoding (a __del__ in a GC pass) must not be
     * able to drop an item from under them. */
    PyObject *items = PySequence_Tuple(io);
    if (!items)
        return NULL;
    int rc = 0;
    a.n = (u64)PyTuple_GET_SIZE(items);
    if (a.n == 0)
        goto out;
    a.kb = PyMem_Calloc(a.n * 2, sizeof(blob));
    a.k = PyMem_Calloc(a.n * 2, sizeof(heap_key));
    a.gone = PyMem_Calloc(a.n, sizeof(u64));
    if (!a.kb || !a.k || !a.gone) {
        PyErr_NoMemory();
        rc = -1;
        goto out;
    }
    a.vb = a.kb + a.n;
    a.v = a.k + a.n;
    rs_init(&a.dead);
    rc = update_encode(&a, items);
    if (rc == 0)
        rc = heap_write(self, dict_update_body, &a);
    rs_free(&a.dead);
out:
    if (a.kb)
        for (u64 i = 0; i < a.n * 2; i++)
            blob_clear(&a.kb[i]);
    PyMem_Free(a.kb);
    PyMem_Free(a.k);
    PyMem_Free(a.gone);
    Py_DECREF(items);
    return rc < 0 ? NULL : PyLong_FromLong(rc);
}

typedef struct {
    dict_hdr *d;
    blob k, v;
    refstack dead; /* containers the write orphaned, destroyed after commit */
} dict_set_args;

static int dict_set_body(HeapCore *self, TX *t, void *arg)
{
    dict_set_args *a = arg;
    if (dict_writable(self, a->d) < 0)
        return WRITE_FAIL;
    tx_begin_seq(t, &a->d->seq);
    u64 holder = (u64)(uintptr_t)a->d, caddr = 0;
    int bad = 0, cvt = -1;
    dict_ent_view ev;
    if (T_IS_REF(a->v.key.type) && dict_find(&self->r, a->d, &a->k.key, &bad, &ev) &&
        !dent_ref(&ev, &cvt, &caddr))
        cvt = -1;
    int adopt = bad ? 0 : value_adopt(self, t, holder, &a->v.key, cvt, caddr);
    if (bad) {
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
        return WRITE_FAIL;
    }
    if (adopt)
        return adopt < 0 ? WRITE_FAIL : WRITE_COMMIT;
    /* a container the key held dies with the overwrite (one owner) */
    dict_freed fr;
    switch (dict_put(t, a->d, &a->k.key, &a->v.key, &a->dead, holder, &fr)) {
    case DICT_OK:
        if (tx_done(t) < 0)
            return WRITE_FAIL;
        dict_release(&self->r, &fr); /* committed: the old parts are free */
        if (a->dead.n && destroy_owned(t, &a->dead, array_pinned) < 0) {
            tx_raise(t);
            return WRITE_FAIL;
        }
        return WRITE_DONE;
    case DICT_NOMEM:
        raise_full(self, t, "store Dict item");
        return WRITE_FAIL;
    case DICT_TABLE_NOMEM: {
        char what[96];
        snprintf(what, sizeof what,
                 "store Dict item (its index of %llu slots and area of %llu bytes must grow)",
                 (unsigned long long)a->d->cap, (unsigned long long)a->d->abytes);
        raise_full(self, t, what);
        return WRITE_FAIL;
    }
    case DICT_TABLE_FULL: /* only a corrupt table: the load factor keeps empty slots */
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict table full");
        return WRITE_FAIL;
    default:
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
        return WRITE_FAIL;
    }
}

/* The update-lane path of a SET (lane.c): when the key is present and the
 * new value fits its entry's room inline, overwrite it in place holding only
 * the key's lane, not the heap mutex.  1 stored, 0 not taken (the caller
 * takes the heap mutex, which also reports whatever is wrong), -1 error. */
static int dict_lane_set(HeapCore *self, dict_hdr *d, const heap_key *k, const heap_key *v)
{
    if (T_IS_REF(v->type) || v->n > DE_VAL_INLINE_MAX)
        return 0;
    if (core_check(self) < 0)
        return -1;
    heap_region *r = &self->r;
    int i = lane_of(k->hash), done = 0, bad = 0;
    dict_ent_view ev;
    /* First a lock-free probe, as a reader's (every pointer checked, the
     * result only a hint): a new key, or a value that does not fit, goes
     * straight to the heap mutex.  The probe also brings the table slots and
     * the entry into this core's cache, so that under the lock (lane or
     * heap) the probe mostly hits it: with several writer processes, the
     * cache misses of a probe (a quarter of a SET's time on a big Dict) are
     * paid in parallel, not while the others wait.  Only after core_check:
     * the memory must be mapped here. */
    if (!dict_find(r, d, k, &bad, &ev) || bad || !lane_fits(&ev, v))
        return 0;
    int rc = lane_take(r, i);
    if (rc != 0 && rc != 1)
        return 0; /* busy, or a corrupt lane mutex: the heap path decides */
    if (rc == 1)
        self->warn_pending = r->h->recoveries;
    /* the lane's lock word before hseq (lane.c: the heap-mutex taker makes
     * hseq odd before it reads the lane words) */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!(__atomic_load_n(&r->h->hseq, __ATOMIC_RELAXED) & 1) && r->h->unflushed == boot_tag &&
        !dict_bad(r, d)) {
        if (dict_find(r, d, k, &bad, &ev) && !bad && lane_fits(&ev, v)) {
            lane_replace(r, i, &ev, v);
            done = 1;
        }
    }
    lane_release(r, i);
    recovery_warn(self);
    return PyErr_Occurred() ? -1 : done; /* a warning filter may raise */
}

static PyObject *HeapCore_dict_set(HeapCore *self, PyObject *args)
{
    PyObject *ho, *key, *val;
    if (!PyArg_ParseTuple(args, "OOO", &ho, &key, &val))
        return NULL;
    if (ro_refuse(self, "Dict item assignment") < 0)
        return NULL;
    dict_set_args a;
    a.d = dict_at(self, ho);
    if (!a.d || encode(key, &a.k, "key") < 0)
        return NULL;
    int rc = -1;
    rs_init(&a.dead);
    if (encode_value(val, &a.v) == 0) {
        rc = dict_lane_set(self, a.d, &a.k.key, &a.v.key); /* its probe warms the cache */
        if (rc == 0)
            rc = heap_write(self, dict_set_body, &a);
        blob_clear(&a.v);
    }
    rs_free(&a.dead);
    blob_clear(&a.k);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

typedef struct {
    dict_hdr *d;
    PyObject *key, *dflt;
    blob k;
    copybuf buf; /* the popped value's bytes */
    int vtype, found;
    int destroy;   /* del: a container value is destroyed; pop: handed back detached */
    refstack dead;
} dict_pop_args;

static int dict_pop_body(HeapCore *self, TX *t, void *arg)
{
    dict_pop_args *a = arg;
    if (dict_writable(self, a->d) < 0)
        return WRITE_FAIL;
    int bad;
    dict_ent_view ev; /* bounds-checked by the probe */
    u64 e = dict_find(&self->r, a->d, &a->k.key, &bad, &ev);
    if (bad) {
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
        return WRITE_FAIL;
    }
    if (!e) {
        if (a->dflt)
            return WRITE_DONE;
        PyErr_SetObject(PyExc_KeyError, a->key);
        return WRITE_FAIL;
    }
    a->vtype = ev.h.vtype;
    if (cb_put(&a->buf, ev.v, ev.vn) < 0) {
        PyErr_NoMemory();
        return WRITE_FAIL;
    }
    a->found = 1;
    tx_begin_seq(t, &a->d->seq);
    u64 holder = (u64)(uintptr_t)a->d, ca;
    int vt;
    if (dent_ref(&ev, &vt, &ca)) {
        if (a->destroy)
            rs_push(&a->dead, vt, ca, holder);
        else
            ref_release(t, holder, vt, ca);
    }
    dict_remove(t, a->d, &ev);
    return commit_and_destroy(self, t, &a->dead);
}

/* dict_pop(hdr, key[, default]): remove and return; KeyError if absent and
 * no default.  The value is copied out under the lock and decoded after.
 * A container value comes back as a detached, live container.
 * dict_del(hdr, key): the same, but a container value is destroyed. */
static PyObject *dict_pop_impl(HeapCore *self, PyObject *args, int destroy)
{
    dict_pop_args a = {.dflt = NULL, .found = 0, .destroy = destroy};
    PyObject *ho;
    rs_init(&a.dead);
    if (destroy ? !PyArg_ParseTuple(args, "OO", &ho, &a.key)
                : !PyArg_ParseTuple(args, "OO|O", &ho, &a.key, &a.dflt))
        return NULL;
    if (ro_refuse(self, "Dict deletion") < 0)
        return NULL;
    a.d = dict_at(self, ho);
    if (!a.d || encode(a.key, &a.k, "key") < 0)
        return NULL;
    cb_init(&a.buf);
    PyObject *res = NULL;
    if (heap_write(self, dict_pop_body, &a) == 0)
        res = destroy ? Py_NewRef(Py_None)
              : a.found ? decode(a.vtype, a.buf.p, a.buf.n) : Py_NewRef(a.dflt);
    rs_free(&a.dead);
    cb_free(&a.buf);
    blob_clear(&a.k);
    return res;
}

static PyObject *HeapCore_dict_pop(HeapCore *self, PyObject *args)
{
    return dict_pop_impl(self, args, 0);
}

static PyObject *HeapCore_dict_del(HeapCore *self, PyObject *args)
{
    return dict_pop_impl(self, args, 1);
}

/* Build the keys/values/items list from a copy made by dict_copy_entries
 * (already in insertion order: the area's order). */
static PyObject *dict_build_list(const copybuf *buf, int which)
{
    PyObject *out = PyList_New(0);
    for (size_t pos = 0; out && pos < buf->n;) {
        const unsigned char *head = (const unsigned char *)buf->p + pos;
        u32 kl, vl;
        memcpy(&kl, head + 2, 4);
        memcpy(&vl, head + 6, 4);
        pos += CB_HEAD + (size_t)kl + vl;
        const char *kp = (const char *)head + CB_HEAD, *vp = kp + kl;
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

typedef struct {
    dict_hdr *d;
    int which, rc;
    copybuf *buf;
} items_read;

static void items_copy(HeapCore *self, void *arg)
{
    items_read *it = arg;
    it->buf->n = 0;
    it->rc = dict_copy_entries(&self->r, it->d, it->which, it->buf);
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
    items_read it = {d, which, 0, &buf};
    /* A whole-table copy is long: few optimistic tries before the lock. */
    if (read_snapshot(self, &d->seq, LANES_ALL, 20, items_copy, &it) < 0)
        ;
    else if (it.rc < 0)
        PyErr_NoMemory();
    else if (it.rc > 0)
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: Dict structure");
    else
        res = dict_build_list(&buf, which);
    cb_free(&buf);
    return res;
}

/* Empty the dict in place, with no allocation (so it works on a full heap):
 * one atomic step empties it (dict_clear); the out-of-line blocks of the
 * old entries are then freed in batches, and the index and area are
 * shrunk in place. */
typedef struct {
    dict_hdr *d;
    refstack dead;
} dict_drop_args;

static int dict_clear_body(HeapCore *self, TX *t, void *arg)
{
    dict_drop_args *a = arg;
    dict_hdr *d = a->d;
    u64 holder = (u64)(uintptr_t)d;
    if (dict_writable(self, d) < 0)
        return WRITE_FAIL;
    u64 area = d->area, aused = d->aused;
    tx_begin_seq(t, &d->seq);
    if (dict_clear(t, d) < 0 || tx_done(t) < 0)
        return WRITE_FAIL;
    if (dict_free_values(t, area, aused, &a->dead, holder) < 0) {
        tx_raise(t);
        return WRITE_FAIL;
    }
    tx_init(t, &self->r);
    dict_shrink(t, d);
    return commit_and_destroy(self, t, &a->dead);
}

/* clear() and destroy(): a write that may orphan containers. */
static PyObject *dict_drop(HeapCore *self, PyObject *ho, const char *what, write_body body)
{
    if (ro_refuse(self, what) < 0)
        return NULL;
    dict_drop_args a = {.d = dict_at(self, ho)};
    rs_init(&a.dead);
    int rc = a.d ? heap_write(self, body, &a) : -1;
    rs_free(&a.dead);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *HeapCore_dict_clear(HeapCore *self, PyObject *ho)
{
    return dict_drop(self, ho, "Dict.clear", dict_clear_body);
}

/* Free the whole dict.  Clearing the magic is the atomic step: afterwards
 * the header is no longer a Dict, and the memory is released in batches. */
static int dict_destroy_body(HeapCore *self, TX *t, void *arg)
{
    dict_drop_args *a = arg;
    if (dict_writable(self, a->d) < 0 || refuse_owned(a->d->parent, "Dict") < 0)
        return WRITE_FAIL;
    /* own.c: invalidate, free the entries in batches, then what they held */
    rs_push(&a->dead, T_DICT, (u64)(uintptr_t)a->d, 0);
    return commit_and_destroy(self, t, &a->dead);
}

static PyObject *HeapCore_dict_destroy(HeapCore *self, PyObject *ho)
{
    return dict_drop(self, ho, "Dict.destroy", dict_destroy_body);
}

/* Verify a dict: count matches, every entry is a live allocation. */
typedef struct {
    dict_hdr *d;
    const char *err;
    u64 live;
} dict_check_read;

static void dict_check_copy(HeapCore *self, void *arg)
{
    dict_check_read *c = arg;
    c->err = dict_check_walk(&self->r, c->d, &c->live);
}

static PyObject *HeapCore_dict_check(HeapCore *self, PyObject *ho)
{
    dict_hdr *d = dict_at(self, ho);
    if (!d)
        return NULL;
    /* Heap-wide: the walk checks that entries are live allocations. */
    dict_check_read c = {d, NULL, 0};
    if (read_snapshot(self, NULL, LANES_ALL, READ_ATTEMPTS, dict_check_copy, &c) < 0)
        return NULL;
    if (c.err)
        return PyErr_Format(PyExc_RuntimeError, "Dict corrupt: %s", c.err);
    return PyLong_FromUnsignedLongLong(c.live);
}

/* ======================================================================== */
/* Array                                                                    */
/* ======================================================================== */

static array_hdr *array_at(HeapCore *self, PyObject *ho)
{
    return container_at(self, ho, T_ARRAY, ARRAY_MAGIC, sizeof(array_hdr));
}

/* Under the lock, before a writer trusts an Array header (see array_bad).
 * Raises and returns -1 if it is not sound. */
static int array_writable(HeapCore *self, array_hdr *a)
{
    return container_raise(array_bad(&self->r, a), ARRAY_NOT_AN_ARRAY, T_ARRAY, a);
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

/* Under the lock, before a change of the Array's data: the header must be
 * sound (array_writable) and no numpy view in this process may pin the
 * data.  0, or -1 with an exception set. */
static int array_changeable(HeapCore *self, array_hdr *a, const char *what)
{
    if (array_writable(self, a) < 0)
        return -1;
    Py_ssize_t n = pin_count((u64)(uintptr_t)a);
    if (!n)
        return 0;
    PyErr_Format(PyExc_BufferError,
                 "cannot %s an Array while %zd numpy view(s) of its data exist; "
                 "delete them (or keep a .copy()) first", what, n);
    return -1;
}

typedef struct {
    u64 itemsize;
    const char *dtype;
    size_t dtlen;
    u64 hdr; /* out: the new Array's offset */
} array_new_args;

static int array_new_body(HeapCore *self, TX *t, void *arg)
{
    array_new_args *a = arg;
    a->hdr = array_create(t, a->itemsize, a->dtype, a->dtlen);
    if (a->hdr)
        return WRITE_COMMIT;
    raise_full(self, t, "create an Array");
    return WRITE_FAIL;
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
    array_new_args a = {(u64)itemsize, dt, (size_t)dtlen, 0};
    if (heap_write(self, array_new_body, &a) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(abs_of(&self->r, a.hdr));
}

typedef struct {
    array_hdr *a;
    u64 data, len, cap, isz;
    char dtype[sizeof ((array_hdr *)0)->dtype + 1];
} array_read_t;

static void array_copy(HeapCore *self, void *arg)
{
    array_read_t *r = arg;
    array_hdr *a = r->a;
    r->data = ld(&a->data);
    r->len = ld(&a->len);
    r->cap = ld(&a->cap);
    r->isz = ld(&a->itemsize);
    memcpy(r->dtype, a->dtype, sizeof a->dtype);
}

/* Read an Array header consistently (seqlock, or under the lock) and check
 * it.  Returns 0 or -1 (exception set). */
static int array_read(HeapCore *self, array_hdr *a, u64 *data, u64 *len, u64 *cap, u64 *isz,
                      char dtype[sizeof a->dtype + 1])
{
    array_read_t r = {.a = a};
    if (read_snapshot(self, &a->seq, LANES_NONE, READ_ATTEMPTS, array_copy, &r) < 0)
        return -1;
    *data = r.data;
    *len = r.len;
    *cap = r.cap;
    *isz = r.isz;
    memcpy(dtype, r.dtype, sizeof a->dtype);
    dtype[sizeof a->dtype] = 0;
    const char *bad = array_fields_bad(&self->r, *data, *len, *cap, *isz);
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


typedef struct {
    array_hdr *a;
    u64 n;            /* resize: the new length */
    const Py_buffer *items; /* append: the item bytes */
} array_args;

static int array_resize_body(HeapCore *self, TX *t, void *arg)
{
    array_args *r = arg;
    if (array_changeable(self, r->a, "resize") < 0)
        return WRITE_FAIL;
    tx_begin_seq(t, &r->a->seq);
    if (array_setlen(t, r->a, r->n, 1) == 0)
        return WRITE_COMMIT;
    char what[64];
    snprintf(what, sizeof what, "resize Array to %llu items", (unsigned long long)r->n);
    raise_full(self, t, what);
    return WRITE_FAIL;
}

static PyObject *HeapCore_array_resize(HeapCore *self, PyObject *args)
{
    PyObject *ho, *no;
    array_args r = {NULL, 0, NULL};
    if (!PyArg_ParseTuple(args, "OO", &ho, &no))
        return NULL;
    if (ro_refuse(self, "Array.resize") < 0)
        return NULL;
    r.a = array_at(self, ho);
    if (!r.a || parse_u64(no, &r.n, "length") < 0 || heap_write(self, array_resize_body, &r) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int array_append_body(HeapCore *self, TX *t, void *arg)
{
    array_args *r = arg;
    array_hdr *a = r->a;
    if (array_changeable(self, a, "grow") < 0)
        return WRITE_FAIL;
    if ((u64)r->items->len % a->itemsize) {
        PyErr_Format(PyExc_ValueError, "%zd bytes is not a whole number of %llu-byte items",
                     r->items->len, (unsigned long long)a->itemsize);
        return WRITE_FAIL;
    }
    tx_begin_seq(t, &a->seq);
    u64 old = a->len;
    if (array_setlen(t, a, old + (u64)r->items->len / a->itemsize, 0) < 0) {
        raise_full(self, t, "append to Array");
        return WRITE_FAIL;
    }
    /* beyond the old length: memory no committed state reaches, no log */
    memcpy((char *)(uintptr_t)a->data + old * a->itemsize, r->items->buf, (size_t)r->items->len);
    return WRITE_COMMIT;
}

/* Append raw item bytes (a whole number of items). */
static PyObject *HeapCore_array_append(HeapCore *self, PyObject *args)
{
    PyObject *ho;
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "Oy*", &ho, &b))
        return NULL;
    array_args r = {NULL, 0, &b};
    r.a = ro_refuse(self, "Array append/extend") < 0 ? NULL : array_at(self, ho);
    int rc = r.a ? heap_write(self, array_append_body, &r) : -1;
    PyBuffer_Release(&b);
    return rc < 0 ? NULL : Py_NewRef(Py_None);
}

static int array_destroy_body(HeapCore *self, TX *t, void *arg)
{
    array_hdr *a = arg;
    if (array_changeable(self, a, "destroy") < 0 || refuse_owned(a->parent, "Array") < 0)
        return WRITE_FAIL;
    tx_begin_seq(t, &a->seq);
    W(t, &a->magic, 0);
    u64 data = a->data;
    if (tx_done(t) < 0)
        return WRITE_FAIL;
    /* Free in a second operation: the seq lives in the header, and the end
     * of a seq-guarded operation must not write into freed memory. */
    tx_init(t, &self->r);
    if (data)
        tx_free(t, data - (u64)(uintptr_t)self->r.base);
    tx_free(t, (u64)((char *)a - self->r.base));
    return WRITE_COMMIT;
}

/* Free an Array's memory (its header and its data). */
static PyObject *HeapCore_array_destroy(HeapCore *self, PyObject *ho)
{
    if (ro_refuse(self, "Array.destroy") < 0)
        return NULL;
    array_hdr *a = array_at(self, ho);
    if (!a || heap_write(self, array_destroy_body, a) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Make the file behind the region a consistent heap on disk, holding every
 * operation committed so far (see durable.c for the order). */
static PyObject *HeapCore_flush(HeapCore *self, PyObject *unused)
{
    if (core_check(self) < 0 || ro_refuse(self, "flush") < 0 || heap_lock(self) < 0)
        return NULL;
    if (world_pin(self) < 0) {
        heap_unlock(self);
        return NULL;
    }
    heap_header *h = self->r.h;
    int rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    /* Held, but no operation is in flight: hseq even while the pages are
     * written, so the image does not look mid-update (durable.c).  An even
     * hseq would let lane writers in (lane.c), so every lane is held
     * meanwhile: nothing changes under the mark flush clears. */
    rc = lanes_hold(&self->r);
    if (rc == 0 || rc == 1) {
        __atomic_store_n(&h->hseq, h->hseq + 1, __ATOMIC_RELEASE);
        rc = durable_flush(&self->r);
        __atomic_store_n(&h->hseq, h->hseq + 1, __ATOMIC_RELEASE);
        lanes_drop(&self->r, NLANES);
    } else {
        rc = EIO; /* a lane mutex no thread can own: a corrupt header */
    }
    Py_END_ALLOW_THREADS
    heap_unlock(self);
    if (rc == 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = durable_settle(&self->r);
        Py_END_ALLOW_THREADS
    }
    self->busy--;
    world_unpin(self);
    if (rc) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* 0: the region is as of its last flush; 1: written since, in this boot;
 * 2: written since, and the machine restarted before the next flush. */
static PyObject *HeapCore_get_unflushed(HeapCore *self, void *c)
{
    if (core_check(self) < 0)
        return NULL;
    u64 m = __atomic_load_n(&self->r.h->unflushed, __ATOMIC_RELAXED);
    return PyLong_FromLong(m == 0 ? 0 : m == boot_tag ? 1 : 2);
}

/* ======================================================================== */
/* List                                                                     */
/* ======================================================================== */

static list_hdr *list_at(HeapCore *self, PyObject *ho)
{
    return container_at(self, ho, T_LIST, LIST_MAGIC, sizeof(list_hdr));
}

/* Under the lock, before a writer trusts a List header (see list_bad). */
static int list_writable(HeapCore *self, list_hdr *l)
{
    return container_raise(list_bad(&self->r, l), LIST_NOT_A_LIST, T_LIST, l);
}

/* Under the lock: item i's entry, checked before a writer follows it. */
static dict_entry *list_entry(HeapCore *self, list_hdr *l, u64 i)
{
    u64 e = ((u64 *)(uintptr_t)l->items)[i], off = live_offset(&self->r, e);
    dict_entry *en = (dict_entry *)(uintptr_t)e;
    if (off && usable_at(&self->r, off) >= sizeof *en &&
        usable_at(&self->r, off) - sizeof *en >= (u64)en->klen + en->vlen)
        return en;
    PyErr_Format(PyExc_RuntimeError, "heap corrupt: List item %llu at %p", (unsigned long long)i,
                 (void *)l);
    return NULL;
}

/* Python's index rules: negative counts from the end; insert clamps. */
static int list_index(Py_ssize_t i, u64 len, int clamp, u64 *out)
{
    if (i < 0)
        i += (Py_ssize_t)len;
    if (clamp) {
        *out = i < 0 ? 0 : (u64)i > len ? len : (u64)i;
        return 0;
    }
    if (i < 0 || (u64)i >= len) {
        PyErr_SetString(PyExc_IndexError, len ? "List index out of range" : "List is empty");
        return -1;
    }
    *out = (u64)i;
    return 0;
}

static int list_new_body(HeapCore *self, TX *t, void *arg)
{
    u64 *out = arg;
    *out = list_create(t);
    if (*out)
        return WRITE_COMMIT;
    PyErr_SetString(PyExc_MemoryError, "heap full: cannot create a List");
    return WRITE_FAIL;
}

static PyObject *HeapCore_list_new(HeapCore *self, PyObject *unused)
{
    u64 off;
    if (core_check(self) < 0 || ro_refuse(self, "creating a List") < 0 ||
        heap_write(self, list_new_body, &off) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(abs_of(&self->r, off));
}

static PyObject *HeapCore_list_len(HeapCore *self, PyObject *ho)
{
    list_hdr *l = list_at(self, ho);
    if (!l)
        return NULL;
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&l->len, __ATOMIC_ACQUIRE));
}

typedef struct {
    list_hdr *l;
    Py_ssize_t index; /* one item (range 0), or [start, stop) */
    u64 start, stop;
    int range, rc, out_of_range;
    copybuf *buf;
} list_read;

static void list_copy(HeapCore *self, void *arg)
{
    list_read *r = arg;
    r->buf->n = 0;
    r->out_of_range = 0;
    u64 start = r->start, stop = r->stop, len = ld(&r->l->len);
    if (!r->range) {
        Py_ssize_t i = r->index < 0 ? r->index + (Py_ssize_t)len : r->index;
        if (i < 0 || (u64)i >= len) {
            r->out_of_range = 1;
            r->rc = 0;
            return;
        }
        start = (u64)i;
        stop = start + 1;
    }
    r->rc = list_copy_range(&self->r, r->l, start, stop, r->buf);
}

/* Decode a copy of values (cb_copy_entry, which 1) into a Python list. */
static PyObject *values_build_list(const copybuf *buf)
{
    PyObject *out = PyList_New(0);
    for (size_t pos = 0; out && pos < buf->n;) {
        const unsigned char *head = (const unsigned char *)buf->p + pos;
        u32 vl;
        memcpy(&vl, head + 6, 4);
        PyObject *v = decode(head[1], (const char *)head + CB_HEAD, vl);
        pos += CB_HEAD + (size_t)vl;
        if (!v || PyList_Append(out, v) < 0)
            Py_CLEAR(out);
        Py_XDECREF(v);
    }
    return out;
}

static PyObject *list_read_values(HeapCore *self, list_read *r)
{
    copybuf buf;
    cb_init(&buf);
    r->buf = &buf;
    PyObject *res = NULL;
    if (read_snapshot(self, &r->l->seq, LANES_NONE, r->range ? 20 : READ_ATTEMPTS, list_copy, r) < 0)
        ;
    else if (r->out_of_range)
        PyErr_SetString(PyExc_IndexError, "List index out of range");
    else if (r->rc == 1)
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: List structure");
    else if (r->rc < 0)
        PyErr_NoMemory();
    else
        res = values_build_list(&buf);
    cb_free(&buf);
    return res;
}

/* list_get(hdr, index) -> value */
static PyObject *HeapCore_list_get(HeapCore *self, PyObject *args)
{
    PyObject *ho;
    list_read r = {.range = 0};
    if (!PyArg_ParseTuple(args, "On", &ho, &r.index) || !(r.l = list_at(self, ho)))
        return NULL;
    PyObject *vals = list_read_values(self, &r);
    if (!vals)
        return NULL;
    PyObject *v = PyList_GET_SIZE(vals) == 1 ? Py_NewRef(PyList_GET_ITEM(vals, 0)) : NULL;
    if (!v)
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: List structure");
    Py_DECREF(vals);
    return v;
}

/* list_range(hdr, start, stop) -> list of the values [start, stop) (stop
 * is clipped to the length at the instant of the read) */
static PyObject *HeapCore_list_range(HeapCore *self, PyObject *args)
{
    PyObject *ho, *so, *eo;
    list_read r = {.range = 1};
    if (!PyArg_ParseTuple(args, "OOO", &ho, &so, &eo) || !(r.l = list_at(self, ho)) ||
        parse_u64(so, &r.start, "start") < 0 || parse_u64(eo, &r.stop, "stop") < 0)
        return NULL;
    if (r.start > r.stop)
        r.start = r.stop;
    return list_read_values(self, &r);
}

typedef struct {
    list_hdr *l;
    Py_ssize_t index;
    int op; /* 0 insert, 1 set, 2 pop, 3 del, 4 destroy */
    blob v;
    copybuf buf; /* pop: the value's bytes */
    int vtype;
    refstack dead;
} list_write_args;

static const heap_key no_key = {T_BYTES, "", 0, 0};

static int list_write_body(HeapCore *self, TX *t, void *arg)
{
    list_write_args *a = arg;
    list_hdr *l = a->l;
    u64 holder = (u64)(uintptr_t)l, i, ca;
    int vt;
    if (list_writable(self, l) < 0)
        return WRITE_FAIL;
    if (a->op == 4) {
        if (refuse_owned(l->parent, "List") < 0)
            return WRITE_FAIL;
        rs_push(&a->dead, T_LIST, holder, 0);
        return commit_and_destroy(self, t, &a->dead);
    }
    if (list_index(a->index, l->len, a->op == 0, &i) < 0)
        return WRITE_FAIL;
    dict_entry *cur = a->op == 0 ? NULL : list_entry(self, l, i);
    if (a->op != 0 && !cur)
        return WRITE_FAIL;
    tx_begin_seq(t, &l->seq);
    if (a->op <= 1) { /* insert, set: a new value entry */
        int cvt = -1;
        u64 caddr = 0;
        if (!cur || !entry_ref(&self->r, cur, &cvt, &caddr))
            cvt = -1;
        int adopt = value_adopt(self, t, holder, &a->v.key, cvt, caddr);
        if (adopt)
            return adopt < 0 ? WRITE_FAIL : WRITE_COMMIT;
        u64 eo = entry_alloc(t, &no_key, &a->v.key, 0);
        if (!eo || (a->op == 0 && list_insert(t, l, i, abs_of(&self->r, eo)) < 0)) {
            PyErr_SetString(PyExc_MemoryError, "heap full: cannot store List item");
            return WRITE_FAIL;
        }
        if (a->op == 1)
            W(t, &((u64 *)(uintptr_t)l->items)[i], abs_of(&self->r, eo));
    } else { /* pop, del: take the item out */
        a->vtype = cur->vtype;
        if (a->op == 2 && cb_put(&a->buf, (char *)(cur + 1) + cur->klen, cur->vlen) < 0) {
            PyErr_NoMemory();
            return WRITE_FAIL;
        }
        if (!list_remove(t, l, i)) {
            PyErr_SetString(PyExc_MemoryError, "heap full: cannot remove a List item");
            return WRITE_FAIL;
        }
    }
    if (cur) {
        /* set and del destroy a container the item held; pop hands it back */
        if (a->op == 2 && entry_ref(&self->r, cur, &vt, &ca))
            ref_release(t, holder, vt, ca);
        else
            rs_note(&a->dead, &self->r, (u64)(uintptr_t)cur, holder);
        tx_free(t, (u64)((char *)cur - self->r.base));
    }
    return commit_and_destroy(self, t, &a->dead);
}

static PyObject *list_write(HeapCore *self, PyObject *ho, Py_ssize_t index, int op,
                            PyObject *val)
{
    static const char *what[] = {"List insert/append", "List item assignment", "List.pop",
                                 "List item deletion", "List.destroy"};
    list_write_args a = {.index = index, .op = op};
    if (ro_refuse(self, what[op]) < 0 || !(a.l = list_at(self, ho)))
        return NULL;
    a.v.tmp = NULL;
    if (val && encode_value(val, &a.v) < 0)
        return NULL;
    cb_init(&a.buf);
    rs_init(&a.dead);
    PyObject *res = NULL;
    if (heap_write(self, list_write_body, &a) == 0)
        res = op == 2 ? decode(a.vtype, a.buf.p, a.buf.n) : Py_NewRef(Py_None);
    rs_free(&a.dead);
    cb_free(&a.buf);
    blob_clear(&a.v);
    return res;
}

/* list_insert(hdr, index, value): index as list.insert (clamped) */
/* List.extend: n values appended in one operation (list_load). */
typedef struct {
    list_hdr *l;
    u64 n;
    blob *vb;
    heap_key *v;
    u64 *scratch; /* 2n words */
} list_extend_args;

static int list_extend_body(HeapCore *self, TX *t, void *arg)
{
    list_extend_args *a = arg;
    if (list_writable(self, a->l) < 0)
        return WRITE_FAIL;
    tx_begin_seq(t, &a->l->seq);
    if (list_load(t, a->l, a->n, a->v, a->scratch) == 0)
        return WRITE_COMMIT;
    if (t->corrupt)
        PyErr_SetString(PyExc_RuntimeError, "heap corrupt: List structure");
    else
        raise_full(self, t, "extend the List");
    return WRITE_FAIL;
}

/* list_extend(hdr, values): 0 when appended; 1 (nothing stored) when a
 * value is not plain, for List.extend to append one by one. */
static PyObject *HeapCore_list_extend(HeapCore *self, PyObject *args)
{
    PyObject *ho, *vo;
    if (!PyArg_ParseTuple(args, "OO", &ho, &vo))
        return NULL;
    if (ro_refuse(self, "List.extend") < 0)
        return NULL;
    list_extend_args a = {0};
    if (!(a.l = list_at(self, ho)))
        return NULL;
    PyObject *vals = PySequence_Tuple(vo); /* see dict_update */
    if (!vals)
        return NULL;
    int rc = 0;
    a.n = (u64)PyTuple_GET_SIZE(vals);
    for (u64 i = 0; i < a.n && rc == 0; i++)
        rc = !plain_value(PyTuple_GET_ITEM(vals, i));
    if (a.n == 0 || rc)
        goto out;
    a.vb = PyMem_Calloc(a.n, sizeof(blob));
    a.v = PyMem_Calloc(a.n, sizeof(heap_key));
    a.scratch = PyMem_Calloc(a.n * 2, sizeof(u64));
    if (!a.vb || !a.v || !a.scratch) {
        PyErr_NoMemory();
        rc = -1;
        goto out;
    }
    for (u64 i = 0; i < a.n && rc == 0; i++) {
        rc = encode_value(PyTuple_GET_ITEM(vals, i), &a.vb[i]);
        a.v[i] = a.vb[i].key;
    }
    if (rc == 0)
        rc = heap_write(self, list_extend_body, &a);
out:
    if (a.vb)
        for (u64 i = 0; i < a.n; i++)
            blob_clear(&a.vb[i]);
    PyMem_Free(a.vb);
    PyMem_Free(a.v);
    PyMem_Free(a.scratch);
    Py_DECREF(vals);
    return rc < 0 ? NULL : PyLong_FromLong(rc);
}

static PyObject *HeapCore_list_insert(HeapCore *self, PyObject *args)
{
    PyObject *ho, *v;
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "OnO", &ho, &i, &v))
        return NULL;
    return list_write(self, ho, i, 0, v);
}

static PyObject *HeapCore_list_set(HeapCore *self, PyObject *args)
{
    PyObject *ho, *v;
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "OnO", &ho, &i, &v))
        return NULL;
    return list_write(self, ho, i, 1, v);
}

/* list_pop(hdr, index, destroy): remove item index and return it (a
 * container comes back detached); with destroy, return None and destroy a
 * container it held. */
static PyObject *HeapCore_list_pop(HeapCore *self, PyObject *args)
{
    PyObject *ho;
    Py_ssize_t i;
    int destroy;
    if (!PyArg_ParseTuple(args, "Onp", &ho, &i, &destroy))
        return NULL;
    return list_write(self, ho, i, destroy ? 3 : 2, NULL);
}

static PyObject *HeapCore_list_destroy(HeapCore *self, PyObject *ho)
{
    return list_write(self, ho, 0, 4, NULL);
}

/* The parent word of the container at addr (0 = none), read as one word;
 * for tests and repr.  ValueError if addr holds no live container. */
static PyObject *HeapCore_container_parent(HeapCore *self, PyObject *ho)
{
    u64 a;
    if (core_check(self) < 0 || parse_u64(ho, &a, "address") < 0)
        return NULL;
    int kind = a % 16 || !in_arena(&self->r, a, 8) ? -1 : ref_kind_of_magic(ld((u64 *)(uintptr_t)a));
    u64 *pw = kind < 0 ? NULL : ref_parent_word(&self->r, kind, a);
    if (!pw)
        return PyErr_Format(PyExc_ValueError, "%p is not a live container of this heap",
                            (void *)(uintptr_t)a);
    return PyLong_FromUnsignedLongLong(ld(pw));
}

static PyObject *mod_set_ref_type(PyObject *m, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "_set_ref_type needs a tuple subclass");
        return NULL;
    }
    Py_XSETREF(ref_type, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyObject *mod_set_from_value(PyObject *m, PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "_set_from_value needs a callable");
        return NULL;
    }
    Py_XSETREF(from_value_fn, Py_NewRef(fn));
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
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->r.base, (Py_ssize_t)self->r.size,
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
    return PyLong_FromUnsignedLongLong((u64)(uintptr_t)self->r.base);
}

static PyObject *HeapCore_get_size(HeapCore *self, void *c)
{
    if (core_check(self) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(self->r.size);
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
    {"unflushed", (getter)HeapCore_get_unflushed, NULL,
     "0 as of the last flush, 1 written since, 2 written and the machine restarted", NULL},
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
    {"flush", (PyCFunction)HeapCore_flush, METH_NOARGS, "msync the region in the order a power loss needs"},
    {"set_root", (PyCFunction)HeapCore_set_root, METH_VARARGS, "set_root(name, address)"},
    {"get_root", (PyCFunction)HeapCore_get_root, METH_O, "get_root(name) -> address"},
    {"del_root", (PyCFunction)HeapCore_del_root, METH_O, "del_root(name)"},
    {"roots", (PyCFunction)HeapCore_roots, METH_NOARGS, "roots() -> dict"},
    {"dict_new", (PyCFunction)HeapCore_dict_new, METH_VARARGS, "dict_new([capacity]) -> hdr"},
    {"dict_get", (PyCFunction)(void (*)(void))HeapCore_dict_get, METH_FASTCALL, "dict_get(hdr, key, default)"},
    {"dict_set", (PyCFunction)HeapCore_dict_set, METH_VARARGS, "dict_set(hdr, key, value)"},
    {"dict_update", (PyCFunction)HeapCore_dict_update, METH_VARARGS,
     "dict_update(hdr, items): store all (key, value) pairs in one operation"},
    {"dict_pop", (PyCFunction)HeapCore_dict_pop, METH_VARARGS, "dict_pop(hdr, key[, default])"},
    {"dict_del", (PyCFunction)HeapCore_dict_del, METH_VARARGS,
     "dict_del(hdr, key): remove; a container value is destroyed"},
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
    {"list_new", (PyCFunction)HeapCore_list_new, METH_NOARGS, "list_new() -> hdr"},
    {"list_len", (PyCFunction)HeapCore_list_len, METH_O, "list_len(hdr)"},
    {"list_get", (PyCFunction)HeapCore_list_get, METH_VARARGS, "list_get(hdr, index)"},
    {"list_range", (PyCFunction)HeapCore_list_range, METH_VARARGS,
     "list_range(hdr, start, stop) -> list"},
    {"list_insert", (PyCFunction)HeapCore_list_insert, METH_VARARGS,
     "list_insert(hdr, index, value)"},
    {"list_set", (PyCFunction)HeapCore_list_set, METH_VARARGS, "list_set(hdr, index, value)"},
    {"list_extend", (PyCFunction)HeapCore_list_extend, METH_VARARGS,
     "list_extend(hdr, values): append all values in one operation"},
    {"list_pop", (PyCFunction)HeapCore_list_pop, METH_VARARGS,
     "list_pop(hdr, index, destroy) -> value"},
    {"list_destroy", (PyCFunction)HeapCore_list_destroy, METH_O, "list_destroy(hdr)"},
    {"container_parent", (PyCFunction)HeapCore_container_parent, METH_O,
     "container_parent(hdr) -> address of the holding container, or 0"},
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
    {"_set_from_value", mod_set_from_value, METH_O,
     "_set_from_value(fn): how DictHandle turns a _Ref into a handle"},
    {"_set_ref_type", mod_set_ref_type, METH_O,
     "_set_ref_type(cls): the tuple subclass (kind, addr) container values travel as"},
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
    boot_tag_init();
    if (lock_kind_init() != 0) {
        PyErr_SetString(PyExc_ImportError, "cannot initialise a robust process-shared mutex");
        return NULL;
    }
    if (PyType_Ready(&HeapCoreType) < 0 || PyType_Ready(&ArrayViewType) < 0 ||
        PyType_Ready(&DictHandleType) < 0)
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
        PyModule_AddObjectRef(m, "DictHandle", (PyObject *)&DictHandleType) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_BYTES", (long)hdr_bytes()) < 0 ||
        PyModule_AddIntConstant(m, "MAX_ROOTS", NROOTS) < 0 ||
        PyModule_AddIntConstant(m, "ROOT_NAME_MAX", ROOT_NAME_MAX) < 0 ||
        /* where the lock lives, for tests that fake a region copied
         * mid-operation (a non-empty undo log under a free lock) */
        PyModule_AddIntConstant(m, "_LOCK_OFFSET", (long)offsetof(heap_header, lock)) < 0 ||
        PyModule_AddIntConstant(m, "_LOCK_SIZE", (long)sizeof(pthread_mutex_t)) < 0 ||
        /* the "written since the last flush" mark, for tests that fake a
         * restart (another boot's tag) */
        PyModule_AddIntConstant(m, "_UNFLUSHED_OFFSET", (long)offsetof(heap_header, unflushed)) < 0 ||
        PyModule_AddIntConstant(m, "_LOCK_BOOT_OFFSET", (long)offsetof(heap_header, lock_boot)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
