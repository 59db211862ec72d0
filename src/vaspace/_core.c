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
 *     exactly the mappings of the calling thread's VAS.
 *
 * None of these functions release the GIL: mmap/mremap on a reserved range do
 * not block on I/O, and holding the GIL makes each switch atomic with respect
 * to the process's other Python threads (which is what the plan needs).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

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
static __thread pid_t my_tid = 0;

/* Threads of this process whose active vid is not 0. */
static long threads_in_vas = 0;

/* While > 0 the Python slow path is changing process state: the fast path
 * must not use cached plans. */
static long slow_busy = 0;

typedef struct {
    uintptr_t src, dst;
    size_t len;
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

static void
plan_free(plan_t *p)
{
    PyMem_Free(p->moves);
    memset(p, 0, sizeof(*p));
}

static void
plans_clear(void)
{
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

/* One move: mremap the mapping at src to dst (replacing dst's placeholder),
 * then plug the hole left at src so nothing else can land there -- unless
 * the plan moves another mapping into exactly that hole next, which saves a
 * syscall per conflicting segment. */
static int
move_one(uintptr_t src, uintptr_t dst, size_t len, int keep_hole)
{
    void *p = mremap((void *)src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)dst);
    if (p == MAP_FAILED)
        return -1;
    if (!keep_hole && reserve_fixed(src, len) < 0) {
        int err = errno;
        /* Put it back; the src range was just vacated, so this cannot clash. */
        mremap((void *)dst, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)src);
        errno = err;
        return -1;
    }
    return 0;
}

/* Run moves[0..n) in order; on failure undo the ones done, in reverse.
 * Returns 0 or an errno. */
static int
run_moves(const move_t *moves, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (move_one(moves[i].src, moves[i].dst, moves[i].len, moves[i].keep_hole) < 0) {
            int err = errno;
            for (Py_ssize_t j = i - 1; j >= 0; j--)
                move_one(moves[j].dst, moves[j].src, moves[j].len, 0);
            return err;
        }
    }
    return 0;
}

/* Parse a sequence of (src, dst, len[, keep_hole]) tuples into a PyMem array. */
static int
parse_moves(PyObject *seq, move_t **out, Py_ssize_t *n_out)
{
    PyObject *fast = PySequence_Fast(seq, "moves must be a sequence of (src, dst, len)");
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
        unsigned long long src, dst, len;
        int keep_hole = 0;
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(item) ||
            !PyArg_ParseTuple(item, "KKK|p", &src, &dst, &len, &keep_hole)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError,
                                "each move must be a (src, dst, len[, keep_hole]) tuple");
            PyMem_Free(moves);
            Py_DECREF(fast);
            return -1;
        }
        moves[i].src = (uintptr_t)src;
        moves[i].dst = (uintptr_t)dst;
        moves[i].len = (size_t)len;
        moves[i].keep_hole = keep_hole;
    }
    Py_DECREF(fast);
    *out = moves;
    *n_out = n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* exported functions                                                  */
/* ------------------------------------------------------------------ */

PyDoc_STRVAR(reserve_doc,
"reserve(addr, length)\n\n"
"Reserve [addr, addr+length) as PROT_NONE with MAP_FIXED_NOREPLACE.\n"
"Raises FileExistsError if any part of the range is already mapped.");

static PyObject *
vaspace_reserve(PyObject *self, PyObject *args)
{
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "KK", &addr, &len))
        return NULL;
    void *p = mmap((void *)(uintptr_t)addr, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        return vaspace_oserror(errno, "mmap");
    if ((uintptr_t)p != addr) {
        /* A kernel without MAP_FIXED_NOREPLACE treats it as a hint. */
        munmap(p, len);
        return vaspace_oserror(EEXIST, "mmap");
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unmap_doc, "unmap(addr, length)\n\nmunmap the range.");

static PyObject *
vaspace_unmap(PyObject *self, PyObject *args)
{
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "KK", &addr, &len))
        return NULL;
    if (munmap((void *)(uintptr_t)addr, len) < 0)
        return vaspace_oserror(errno, "munmap");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(plug_doc,
"plug(addr, length)\n\n"
"Replace whatever is mapped at the range with a PROT_NONE placeholder.");

static PyObject *
vaspace_plug(PyObject *self, PyObject *args)
{
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "KK", &addr, &len))
        return NULL;
    if (reserve_fixed((uintptr_t)addr, len) < 0)
        return vaspace_oserror(errno, "mmap");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(map_shared_doc,
"map_shared(fd, addr, length, prot)\n\n"
"Map fd MAP_SHARED|MAP_FIXED at addr (replacing a placeholder), and mark it\n"
"MADV_DONTFORK so that a forked child does not inherit it.");

static PyObject *
vaspace_map_shared(PyObject *self, PyObject *args)
{
    int fd, prot;
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "iKKi", &fd, &addr, &len, &prot))
        return NULL;
    if (prot & ~(PROT_READ | PROT_WRITE)) {
        PyErr_SetString(PyExc_ValueError, "prot may only hold PROT_READ and PROT_WRITE");
        return NULL;
    }
    void *p = mmap((void *)(uintptr_t)addr, len, prot, MAP_SHARED | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED)
        return vaspace_oserror(errno, "mmap");
    if (madvise(p, len, MADV_DONTFORK) < 0) {
        int err = errno;
        reserve_fixed((uintptr_t)addr, len);
        return vaspace_oserror(err, "madvise");
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(move_doc,
"move(src, dst, length)\n\n"
"mremap the mapping at src to dst (replacing dst's placeholder) and plug src.");

static PyObject *
vaspace_move(PyObject *self, PyObject *args)
{
    unsigned long long src, dst, len;
    if (!PyArg_ParseTuple(args, "KKK", &src, &dst, &len))
        return NULL;
    if (move_one((uintptr_t)src, (uintptr_t)dst, len, 0) < 0)
        return vaspace_oserror(errno, "mremap");
    Py_RETURN_NONE;
}

PyDoc_STRVAR(run_plan_doc,
"run_plan(moves, vid)\n\n"
"Run a list of (src, dst, len[, keep_hole]) moves, then make vid the calling\n"
"thread's active VAS.  keep_hole skips plugging src (the plan refills it).\n"
"All or nothing: on failure the moves done are undone, the\n"
"active vid is unchanged, and OSError is raised.");

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
    int err = run_moves(moves, n);
    PyMem_Free(moves);
    if (err)
        return vaspace_oserror(err, "mremap");
    set_active(vid);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(plan_put_doc,
"plan_put(from_vid, to_vid, moves)\n\n"
"Cache the move plan for a switch from one VAS to another.  It is used by\n"
"switch_fast() while no other thread is inside a VAS.");

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
    PyObject *list = PyList_New(p->n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < p->n; i++) {
        PyObject *t = Py_BuildValue("(KKKO)", (unsigned long long)p->moves[i].src,
                                    (unsigned long long)p->moves[i].dst,
                                    (unsigned long long)p->moves[i].len,
                                    p->moves[i].keep_hole ? Py_True : Py_False);
        if (t == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, t);
    }
    return list;
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
"thread is inside a VAS, or the slow path is busy).  Raises OSError if a\n"
"cached plan fails; the thread then stays where it was.");

static PyObject *
vaspace_switch_fast(PyObject *self, PyObject *arg)
{
    long vid = PyLong_AsLong(arg);
    if (vid == -1 && PyErr_Occurred())
        return NULL;
    long from = active_vid;
    if (vid == from)
        return PyLong_FromLong(1);
    /* Cached plans assume the window holds only this thread's VAS. */
    long others = threads_in_vas - (from != 0);
    if (slow_busy || others)
        return PyLong_FromLong(0);
    plan_t *p = plan_find(from, vid);
    if (p == NULL || !slot_available(vid))
        return PyLong_FromLong(0);
    int err = run_moves(p->moves, p->n);
    if (err)
        return vaspace_oserror(err, "mremap");
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
"addresses with a different mapping; the thread stays where it was).\n"
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
"Drop the slot of a thread that died while inside a VAS.");

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
    for (int i = 0; i < MAX_THREAD_SLOTS; i++) {
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
"Move the thread slots into a MAP_SHARED mapping of fd (which must be at\n"
"least slots_size() bytes) so other processes can read them.  Returns the\n"
"slot size in bytes (each slot: int32 tid, 4 bytes padding, int64 vid).");

static PyObject *
vaspace_publish_threads(PyObject *self, PyObject *arg)
{
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    /* Publishing again (a new registry root) moves the slots to the new file. */
    void *p = mmap(NULL, sizeof(private_slots), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return vaspace_oserror(errno, "mmap");
    if (madvise(p, sizeof(private_slots), MADV_DONTFORK) < 0) {
        int err = errno;
        munmap(p, sizeof(private_slots));
        return vaspace_oserror(err, "madvise");
    }
    memcpy(p, tslots, sizeof(private_slots));
    if (tslots != private_slots)
        munmap(tslots, sizeof(private_slots));
    tslots = p;
    return PyLong_FromSize_t(sizeof(tslot_t));
}

PyDoc_STRVAR(slots_size_doc, "slots_size() -> int\n\nBytes needed by publish_threads().");

static PyObject *
vaspace_slots_size(PyObject *self, PyObject *noargs)
{
    return PyLong_FromSize_t(sizeof(private_slots));
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
    slow_busy += d;
    if (slow_busy < 0)
        slow_busy = 0;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(reset_after_fork_doc,
"reset_after_fork()\n\n"
"In a forked child: the child starts in the original address space with no\n"
"cached plans (segment mappings were MADV_DONTFORK and are gone).");

static PyObject *
vaspace_reset_after_fork(PyObject *self, PyObject *noargs)
{
    plans_clear();
    /* The published slots were MADV_DONTFORK: the child has its own again. */
    tslots = private_slots;
    memset(private_slots, 0, sizeof(private_slots));
    my_slot = -1;
    my_tid = 0;
    active_vid = 0;
    threads_in_vas = 0;
    slow_busy = 0;
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"reserve", vaspace_reserve, METH_VARARGS, reserve_doc},
    {"unmap", vaspace_unmap, METH_VARARGS, unmap_doc},
    {"plug", vaspace_plug, METH_VARARGS, plug_doc},
    {"map_shared", vaspace_map_shared, METH_VARARGS, map_shared_doc},
    {"move", vaspace_move, METH_VARARGS, move_doc},
    {"run_plan", vaspace_run_plan, METH_VARARGS, run_plan_doc},
    {"plan_put", vaspace_plan_put, METH_VARARGS, plan_put_doc},
    {"plan_get", vaspace_plan_get, METH_VARARGS, plan_get_doc},
    {"plan_clear", vaspace_plan_clear, METH_NOARGS, plan_clear_doc},
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
    {"reset_after_fork", vaspace_reset_after_fork, METH_NOARGS, reset_after_fork_doc},
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
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "PROT_NONE", PROT_NONE) < 0 ||
        PyModule_AddIntConstant(m, "PROT_READ", PROT_READ) < 0 ||
        PyModule_AddIntConstant(m, "PROT_WRITE", PROT_WRITE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
