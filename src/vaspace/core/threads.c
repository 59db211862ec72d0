/*
 * core/threads.c: which threads of this process are inside which VAS: the
 * calling thread's active vid, the thread slots (published in a shared file
 * for other processes to read) and the lazy-attach word after them.
 */
#include "core.h"

__thread long active_vid = 0;

/* Which threads are inside which VAS: the window must show the union of
 * their VASes, so the slow path needs every thread's active vid, including
 * the switches the fast path made.  A slot per thread that is inside a VAS;
 * the GIL serializes every access. */
static tslot_t private_slots[MAX_THREAD_SLOTS];
/* Points at private_slots, or at a MAP_SHARED file once published, so that
 * other processes can read which of our threads are in which VAS (the
 * RFC's /proc/<pid>/vas/<vid>/status) at no cost to the switch. */
tslot_t *tslots = private_slots;
__thread int my_slot = -1;
/* Slots [0, slots_hwm) may be in use: the fast path scans only those. */
int slots_hwm = 0;
static __thread pid_t my_tid = 0;

/* The lazy-attach word: another process that leaves a lazy attach (or
 * detach) request for us sets it to nonzero, and the fast path, which runs
 * no Python and so never reads the registry, declines while it is set (one
 * load).  The slow path clears it before it takes the requests.  Once the
 * slots are published it lives in the same shared file, right after them
 * (a slot-sized record whose tid is always 0, so readers of the slots skip
 * it). */
static wake_t private_wake;
volatile wake_t *wake = &private_wake;
#define SHARED_BYTES (sizeof(private_slots) + sizeof(wake_t))

/* Threads of this process whose active vid is not 0. */
long threads_in_vas = 0;

/* Returns -1 (with no state changed) if there is no free thread slot. */
int
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

/* In a forked child (reset_after_fork): no thread is inside a VAS, and the
 * published slots, which were MADV_DONTFORK, are private again. */
void
threads_reset_after_fork(void)
{
    /* The published slots were MADV_DONTFORK: the child has its own again. */
    tslots = private_slots;
    memset(private_slots, 0, sizeof(private_slots));
    /* A request left for the parent is not the child's. */
    wake = &private_wake;
    private_wake.pending = 0;
    my_slot = -1;
    my_tid = 0;
    slots_hwm = 0;
    active_vid = 0;
    threads_in_vas = 0;
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
"publish_threads(fd, mode=-1) -> int\n\n"
"Move the thread slots, and the lazy-attach word after them, into a\n"
"MAP_SHARED mapping of fd (which must be at least slots_size() bytes, and\n"
"read as zeros: only the slots in use are copied) so\n"
"other processes can read the slots and set the word.  Returns the slot\n"
"size in bytes (each slot: int32 tid, 4 bytes padding, int64 vid; the word\n"
"is the int64 of one more slot, at wake_offset(), whose tid stays 0).\n\n"
"With mode, the file is first made ready in the same call: given that\n"
"mode if fstat shows another (the umask may have masked the create's), and\n"
"sized to slots_size() if shorter (a fresh file, or one truncated to 0).");

static PyObject *
vaspace_publish_threads(PyObject *self, PyObject *args)
{
    int fd, mode = -1;
    if (!PyArg_ParseTuple(args, "i|i:publish_threads", &fd, &mode))
        return NULL;
    /* A file shorter than the slots would fault (SIGBUS) on the copy below. */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return vaspace_oserror(errno, "fstat");
    off_t size = st.st_size;
    if (mode >= 0) {
        if ((st.st_mode & 07777) != (mode_t)mode && fchmod(fd, (mode_t)mode) < 0)
            return vaspace_oserror(errno, "fchmod");
        if ((size_t)size < SHARED_BYTES) {
            if (ftruncate(fd, (off_t)SHARED_BYTES) < 0)
                return vaspace_oserror(errno, "ftruncate");
            size = (off_t)SHARED_BYTES;
        }
    }
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
     * about 150 us, most of a process's first attach); with no slot used
     * yet it copies nothing. */
    if (slots_hwm)
        memcpy(p, tslots, (size_t)slots_hwm * sizeof(tslot_t));
    /* The word lies on the file's last page: writing a zero there would
     * allocate that page for nothing (a first attach has no request yet, and
     * often no thread inside a VAS either, so it then touches no page). */
    wake_t *w = (wake_t *)((char *)p + sizeof(private_slots));
    if (wake->pending)
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

/* This file's functions in vaspace._core (core/module.c adds them). */
PyMethodDef threads_methods[] = {
    {"active", vaspace_active, METH_NOARGS, active_doc},
    {"set_active", vaspace_set_active, METH_O, set_active_doc},
    {"threads_in_vas", vaspace_threads_in_vas, METH_NOARGS, threads_in_vas_doc},
    {"forget_tid", vaspace_forget_tid, METH_O, forget_tid_doc},
    {"thread_vids", vaspace_thread_vids, METH_NOARGS, thread_vids_doc},
    {"publish_threads", vaspace_publish_threads, METH_VARARGS, publish_threads_doc},
    {"slots_size", vaspace_slots_size, METH_NOARGS, slots_size_doc},
    {"wake_offset", vaspace_wake_offset, METH_NOARGS, wake_offset_doc},
    {"wake_take", vaspace_wake_take, METH_NOARGS, wake_take_doc},
    {NULL, NULL, 0, NULL},
};
