/*
 * core/fixedmap.c: FixedMap, vaspace.shared_memory's blocks (issue 14).
 *
 * A shared-memory block is a segment file mapped MAP_SHARED at its
 * fixed address in the shared-memory range of the window, outside VAS
 * switching: it is not a reserved range (reset_after_fork re-plugs
 * those) and not in the token table, so a forked child keeps it.
 * Mapping uses MAP_FIXED_NOREPLACE and unmapping only ever touches
 * what a FixedMap itself mapped, so no argument can clobber memory.
 */
#include "core.h"

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
    if (parse_user_range(args, "set_fixed_range", &addr, &len) < 0)
        return NULL;
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

PyTypeObject FixedMapType = {
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

/* This file's functions in vaspace._core (core/module.c adds them). */
PyMethodDef fixedmap_methods[] = {
    {"set_fixed_range", vaspace_set_fixed_range, METH_VARARGS, set_fixed_range_doc},
    {NULL, NULL, 0, NULL},
};
