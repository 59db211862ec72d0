/*
 * core/switch.c: vas_switch: the fast path that runs a cached plan in one C
 * call, and the hand-over to the Python slow path when it declines.
 */
#include "core.h"

/* While > 0 the Python slow path is changing process state: the fast path
 * must not use cached plans. */
long slow_busy = 0;

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

/* This file's functions in vaspace._core (core/module.c adds them). */
PyMethodDef switch_methods[] = {
    {"switch_fast", vaspace_switch_fast, METH_O, switch_fast_doc},
    {"vas_switch", vaspace_switch, METH_O, switch_doc},
    {"set_slow_path", vaspace_set_slow_path, METH_O, set_slow_path_doc},
    {"busy", vaspace_busy, METH_O, busy_doc},
    {NULL, NULL, 0, NULL},
};
