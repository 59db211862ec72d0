/*
 * core/fork.c: reset_after_fork: a forked child starts in the original
 * address space, with ghosts where its parent's views pinned mappings.
 */
#include "core.h"

PyDoc_STRVAR(reset_after_fork_doc,
"reset_after_fork() -> int\n\n"
"In a forked child: the child starts in the original address space with no\n"
"cached plans and no mappings (they were MADV_DONTFORK and are gone).  The\n"
"reserved ranges stay reserved, re-plugged whole.  Where a mapping had live\n"
"exports, the child gets private zero pages instead (a ghost, pinned until\n"
"those exports go), so a view it inherited reads zeros (and writes stay\n"
"private) rather than faulting.  Returns how many ghosts it made.");

static PyObject *
vaspace_reset_after_fork(PyObject *self, PyObject *noargs)
{
    plans_clear();
    /* Fill the holes the DONTFORK mappings left, so nothing else lands there. */
    for (int i = 0; i < n_reserved; i++)
        reserve_fixed(reserved[i].lo, reserved[i].hi - reserved[i].lo);
    long ghosts = 0;
    pinned_maps = 0;
    for (Py_ssize_t i = 0; i < tmaps_len; i++) {
        tmap_t *e = &tmaps[i];
        if (e->token && e->exports && e->placed &&
            mmap((void *)e->home, e->len, PROT_READ | (e->prot & PROT_WRITE),
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) != MAP_FAILED) {
            /* Keep the entry (same index: inherited views find it) as a ghost
             * under a new token, so a heap bound to the old one sees it is stale. */
            if (!e->ghost_of)
                e->ghost_of = e->token;
            e->token = next_token++;
            e->park = e->home;
            e->vlen = e->len;
            pinned_maps++;
            ghosts++;
        } else if (e->token) {
            free(e->name);
            memset(e, 0, sizeof(*e));
        }
    }
    while (tmaps_len > 0 && tmaps[tmaps_len - 1].token == 0)
        tmaps_len--;
    window_gen++;
    threads_reset_after_fork();
    members_clear();
    slow_busy = 0;
    return PyLong_FromLong(ghosts);
}

/* This file's functions in vaspace._core (core/module.c adds them). */
PyMethodDef fork_methods[] = {
    {"reset_after_fork", vaspace_reset_after_fork, METH_NOARGS, reset_after_fork_doc},
    {NULL, NULL, 0, NULL},
};
