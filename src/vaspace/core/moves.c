/*
 * core/moves.c: moving mappings between their homes and parking slots: one
 * move (mremap, then plug what it left), the check of a plan against the
 * table, running a plan with rollback, and parsing a plan from Python.
 */
#include "core.h"

/* Whether a mapping's parking slot is plugged while the mapping is placed.
 * 0 (the default): the slot stays an unmapped hole, so a park is one mremap
 * into it and a place is one mremap out of it (2 calls per conflicting
 * segment).  1 (VASPACE_PARK_PLUGS=1, or the fallback after an audit found
 * something foreign in the parking range): every slot is plugged again after
 * its mapping leaves, as the window always is. */
int park_plugs = 0;

/* A move's plug failed after its mremap: put the mapping back.  Returns the
 * plug's errno; sets *undo_err if putting it back failed too. */
static __attribute__((noinline, cold)) int
move_undo(uintptr_t src, uintptr_t dst, size_t len, int *undo_err)
{
    int err = errno;
    /* The src range was just vacated, so this cannot clash. */
    if (mremap((void *)dst, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)src) == MAP_FAILED
        || reserve_fixed(dst, len) < 0)
        *undo_err = errno;
    return err;
}

/* One move: mremap the mapping at src to dst (into a hole, or replacing a
 * placeholder), then plug the hole left at src if plug_src says so.  The
 * caller decides: a home in the window is plugged unless the plan refills it
 * at once; a parking slot only in plugged mode.  Returns 0, or the errno of
 * a failed move (nothing changed, unless *undo_err was set: then the state
 * is unknown). */
static inline int
move_one(uintptr_t src, uintptr_t dst, size_t len, int plug_src, int *undo_err)
{
    if (mremap((void *)src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)dst) == MAP_FAILED)
        return errno;
    if (!plug_src || reserve_fixed(src, len) == 0)
        return 0;
    return move_undo(src, dst, len, undo_err);
}

/* Whether the forward move m plugs the range it leaves. */
static inline int
move_plugs_src(const move_t *m)
{
    return m->place ? park_plugs : !m->keep_hole;
}

/* The simulated check: flip `placed` in order, then flip back, so that a
 * mapping parked early in the plan frees its range for one placed later,
 * and a place that would land on a placed mapping is refused (stale).  With
 * `others` (other threads are inside VASes) a place over a pinned mapping
 * is stale too, for the slow path to name; without, it is a BufferError.
 * O(1) per park, O(mappings) per place, which keeps placed mappings from
 * ever overlapping. */
int
plan_check_full(const move_t *moves, Py_ssize_t n, int others)
{
    int r = 0;
    Py_ssize_t flipped = 0;
    tmap_t *pinned = NULL, *mover = NULL; /* what to name in the BufferError */
    while (flipped < n) {
        const move_t *m = &moves[flipped];
        if (m->idx >= tmaps_len || tmaps[m->idx].token != m->token ||
            tmaps[m->idx].placed == m->place) {
            r = 1;
            break;
        }
        tmap_t *e = &tmaps[m->idx];
        if (e->exports) {
            pinned = e;
            break;
        }
        for (Py_ssize_t j = 0; m->place && j < tmaps_len && r == 0; j++) {
            tmap_t *o = &tmaps[j];
            if (o->token && o->placed && overlaps(o->home, o->vlen, e->home, e->vlen)) {
                r = 1;
                /* With other threads inside VASes the slow path names the
                 * collision (EFAULT: another thread's VAS holds the range). */
                if (o->exports && !others) {
                    pinned = o;
                    mover = e;
                }
            }
        }
        if (r || pinned)
            break;
        e->placed = m->place;
        flipped++;
    }
    /* Undo the simulation (each token appears once in a plan) before any
     * Python code can run: building the message allocates, and a GC pass may
     * run finalizers that change the plans or the table. */
    while (flipped-- > 0)
        tmaps[moves[flipped].idx].placed = !moves[flipped].place;
    if (pinned == NULL)
        return r;
    if (mover == NULL) {
        refuse_exported(pinned, "switching away from its VAS");
    } else {
        char what[400];
        snprintf(what, sizeof(what), "placing segment '%s' over it",
                 mover->name ? mover->name : "?");
        refuse_exported(pinned, what);
    }
    return -1;
}

/* Move i of a plan failed with err: undo moves [0, i) in reverse, set the
 * error (ENOTRECOVERABLE if an undo failed), return -1. */
static __attribute__((noinline, cold)) int
moves_failed(const move_t *moves, Py_ssize_t i, int err, int undo_err)
{
    if (undo_err) {
        unknown_state(err, undo_err, "mremap");
        return -1;
    }
    for (Py_ssize_t j = i - 1; j >= 0; j--) {
        const move_t *u = &moves[j];
        int e3 = 0;
        /* Undoing a place leaves a hole at home: plug it.  Undoing a park
         * leaves a hole in the parking slot: as any slot. */
        int e2 = move_one(u->dst, u->src, u->len, u->place ? 1 : park_plugs, &e3);
        if (e2) {
            unknown_state(err, e2, "mremap");
            return -1;
        }
        tmaps[u->idx].placed = !u->place;
    }
    vaspace_oserror(err, "mremap");
    return -1;
}

/* Run moves[0..n) in order (after plan_check); on failure undo the ones
 * done, in reverse.  Returns 0, or -1 with OSError set. */
int
run_moves(const move_t *moves, Py_ssize_t n)
{
    int undo_err = 0;
    if (n > 0)
        window_gen++;
    for (Py_ssize_t i = 0; i < n; i++) {
        const move_t *m = &moves[i];
        int err = move_one(m->src, m->dst, m->len, move_plugs_src(m), &undo_err);
        if (err)
            return moves_failed(moves, i, err, undo_err);
        tmaps[m->idx].placed = m->place;
    }
    return 0;
}

/* Parse a sequence of (token, place, keep_hole) tuples into a PyMem array.
 * Each token must name a live mapping, at most once; keep_hole is only
 * allowed where a later move of the same plan places a mapping of exactly
 * that range, so a plan can never leave an unreserved hole in the window. */
int
parse_moves(PyObject *seq, move_t **out, Py_ssize_t *n_out)
{
    PyObject *fast = PySequence_Fast(seq, "moves must be a sequence of (token, place, keep_hole)");
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
        unsigned long long token;
        int place, keep_hole;
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "Kpp", &token, &place, &keep_hole)) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError,
                                "each move must be a (token, place, keep_hole) tuple");
            }
            goto fail;
        }
        tmap_t *e = tmap_find(token);
        if (e == NULL) {
            set_errorf(PyExc_ValueError, "move %zd: no mapping with token %llu", i, token);
            goto fail;
        }
        for (Py_ssize_t j = 0; j < i; j++) {
            if (moves[j].token == token) {
                set_errorf(PyExc_ValueError, "move %zd: token %llu moves twice", i, token);
                goto fail;
            }
        }
        move_t *m = &moves[i];
        m->idx = e - tmaps;
        m->token = token;
        m->len = e->vlen;
        m->place = place;
        m->keep_hole = keep_hole;
        m->src = place ? e->park : e->home;
        m->dst = place ? e->home : e->park;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!moves[i].keep_hole)
            continue;
        int refilled = 0;
        for (Py_ssize_t j = i + 1; j < n; j++)
            refilled |= moves[j].place && moves[j].dst == moves[i].src &&
                        moves[j].len == moves[i].len;
        if (moves[i].place || !refilled) {
            PyErr_Format(PyExc_ValueError,
                         "move %zd: keep_hole needs a later move placing a mapping of the "
                         "same range", i);
            goto fail;
        }
    }
    Py_DECREF(fast);
    *out = moves;
    *n_out = n;
    return 0;
fail:
    PyMem_Free(moves);
    Py_DECREF(fast);
    return -1;
}

PyDoc_STRVAR(move_doc,
"move(token, place)\n\n"
"Move one mapping: to its home (place true) or to its parking slot, with\n"
"the same checks as a switch (BufferError under live exports).");

static PyObject *
vaspace_move(PyObject *self, PyObject *args)
{
    unsigned long long token;
    int place;
    if (!PyArg_ParseTuple(args, "Kp", &token, &place))
        return NULL;
    PyObject *seq = Py_BuildValue("((KOO))", token, place ? Py_True : Py_False, Py_False);
    if (seq == NULL)
        return NULL;
    move_t *moves;
    Py_ssize_t n;
    int r = parse_moves(seq, &moves, &n);
    Py_DECREF(seq);
    if (r < 0)
        return NULL;
    r = plan_check(moves, n, 1, 0);
    if (r == 1)
        PyErr_SetString(PyExc_ValueError, place ? "move: the mapping is placed already"
                                                : "move: the mapping is parked already");
    if (r == 0)
        r = run_moves(moves, n);
    PyMem_Free(moves);
    if (r)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(run_plan_doc,
"run_plan(moves, vid)\n\n"
"Run a list of (token, place, keep_hole) moves, then make vid the calling\n"
"thread's active VAS.  keep_hole skips plugging the home a parked mapping\n"
"leaves (a later move of the plan refills it).  All or nothing: BufferError\n"
"if a move would take away a mapping with live exports; on a failed move\n"
"the moves done are undone, the active vid is unchanged, and OSError is\n"
"raised (ENOTRECOVERABLE if the undo failed too).");

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
    int r = plan_check(moves, n, 1, 0);
    if (r == 1)
        PyErr_SetString(PyExc_ValueError, "run_plan: a move parks a parked mapping, places a "
                        "placed one, or places one over a placed mapping");
    if (r == 0)
        r = run_moves(moves, n);
    PyMem_Free(moves);
    if (r)
        return NULL;
    set_active(vid);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(park_plugs_doc,
"park_plugs(flag=None) -> int\n\n"
"Whether a placed mapping's parking slot is plugged (1) or left a hole (0).\n"
"With a flag, set the mode first: turning plugging on plugs every placed\n"
"mapping's slot, but only where nothing is mapped (a foreign mapping there\n"
"is left alone); turning it off needs no mapping placed.  Cached plans stay\n"
"valid (they do not say how to plug).  Returns the mode, or with a flag the\n"
"number of slots that could not be plugged or unplugged.");

static PyObject *
vaspace_park_plugs(PyObject *self, PyObject *args)
{
    int flag = -1;
    if (!PyArg_ParseTuple(args, "|p", &flag))
        return NULL;
    if (flag < 0 || flag == park_plugs)
        return PyLong_FromLong(flag < 0 ? park_plugs : 0);
    long failed = 0;
    for (Py_ssize_t i = 0; i < tmaps_len; i++) {
        tmap_t *e = &tmaps[i];
        if (!e->token || !e->placed || e->park == e->home)
            continue;
        if (!flag) {
            /* Unplugging would munmap whatever sits in the slot: it may not be ours. */
            PyErr_SetString(PyExc_ValueError, "park_plugs: cannot leave plugged mode while "
                            "a mapping is placed; switch every thread to vid 0 first");
            return NULL;
        }
        if (plug_noreplace(e->park, e->vlen) < 0)
            failed++;
    }
    park_plugs = flag;
    return PyLong_FromLong(failed);
}

/* This file's functions in vaspace._core (core/module.c adds them). */
PyMethodDef moves_methods[] = {
    {"move", vaspace_move, METH_VARARGS, move_doc},
    {"run_plan", vaspace_run_plan, METH_VARARGS, run_plan_doc},
    {"park_plugs", vaspace_park_plugs, METH_VARARGS, park_plugs_doc},
    {NULL, NULL, 0, NULL},
};
