/*
 * core/view.c: WindowView, a buffer exporter that pins its mapping: while
 * a buffer taken from it is alive, the mapping neither moves nor goes.
 */
#include "core.h"

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

PyTypeObject WindowViewType = {
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
