/*
 * core/mappings.c: the calls Python makes on the window and its mappings:
 * reserve and release ranges, plug, map a segment file, unmap or shrink a
 * mapping, and what C knows is where.
 */
#include "core.h"

PyDoc_STRVAR(reserve_doc,
"reserve(addr, length)\n\n"
"Reserve [addr, addr+length) as PROT_NONE with MAP_FIXED_NOREPLACE and\n"
"remember it: every other address given to _core must lie in such a range.\n"
"Raises FileExistsError if any part of the range is already mapped.");

static PyObject *
vaspace_reserve(PyObject *self, PyObject *args)
{
    unsigned long long addr, len;
    if (parse_user_range(args, "reserve", &addr, &len) < 0)
        return NULL;
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

PyDoc_STRVAR(window_gen_doc,
"window_gen() -> int\n\nThe window generation: it changes whenever a mapping moves,\n"
"appears or goes away.");

static PyObject *
vaspace_window_gen(PyObject *self, PyObject *noargs)
{
    return PyLong_FromUnsignedLongLong(window_gen);
}

/* This file's functions in vaspace._core (core/module.c adds them). */
PyMethodDef mappings_methods[] = {
    {"reserve", vaspace_reserve, METH_VARARGS, reserve_doc},
    {"unmap", vaspace_unmap, METH_VARARGS, unmap_doc},
    {"plug", vaspace_plug, METH_VARARGS, plug_doc},
    {"map_shared", vaspace_map_shared, METH_VARARGS, map_shared_doc},
    {"unmap_mapping", vaspace_unmap_mapping, METH_O, unmap_mapping_doc},
    {"mappings", vaspace_mappings, METH_NOARGS, mappings_doc},
    {"shrink", vaspace_shrink, METH_O, shrink_doc},
    {"reserved", vaspace_reserved, METH_NOARGS, reserved_doc},
    {"window_gen", vaspace_window_gen, METH_NOARGS, window_gen_doc},
    {NULL, NULL, 0, NULL},
};
