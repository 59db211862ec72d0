/*
 * core/plans.c: the move-plan cache, keyed by (from vid, to vid), which the
 * Python slow path fills and switch_fast() runs; and which mappings each
 * attached VAS uses (so a cached plan can run beside other threads).
 */
#include "core.h"

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

void
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
plan_t *
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
static members_t *members = NULL;
static Py_ssize_t n_members = 0;

members_t *
members_find(long vid)
{
    for (Py_ssize_t i = 0; i < n_members; i++)
        if (members[i].vid == vid)
            return &members[i];
    return NULL;
}

void
members_clear(void)
{
    for (Py_ssize_t i = 0; i < n_members; i++)
        PyMem_Free(members[i].tokens);
    PyMem_Free(members);
    members = NULL;
    n_members = 0;
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

/* This file's functions in vaspace._core (core/module.c adds them). */
PyMethodDef plans_methods[] = {
    {"plan_put", vaspace_plan_put, METH_VARARGS, plan_put_doc},
    {"plan_get", vaspace_plan_get, METH_VARARGS, plan_get_doc},
    {"plan_clear", vaspace_plan_clear, METH_NOARGS, plan_clear_doc},
    {"vas_members", vaspace_vas_members, METH_VARARGS, vas_members_doc},
    {NULL, NULL, 0, NULL},
};
