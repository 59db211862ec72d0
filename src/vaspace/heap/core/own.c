/*
 * own.c -- containers as values, and who frees them.
 *
 * A Dict, Array or List can be the value of a Dict key or a List item: the
 * entry then holds the container's header address under a reference tag
 * (T_DICT, T_ARRAY, T_LIST).  The rule is single ownership: each container
 * header has a parent word naming the one container that holds it (0 = none:
 * a root, or a container only a handle knows).  Adopting a container that
 * already has a parent, or one that would contain itself, is refused.
 * Removing the value (overwrite, del, clear) or destroying the holder
 * destroys the child and everything it owns; pop() hands the child back
 * detached (parent 0) instead.
 *
 * Destruction runs as a sequence of small transactions: each container is
 * first invalidated (magic 0, atomic under its seqlock), then its memory is
 * freed in batches; a child found on the way is pushed on a process-local
 * stack and handled the same way.  A crash between two steps leaks the rest,
 * never corrupts anything.  A child is destroyed only if its parent word
 * still names the holder it was found in, so a corrupt reference cannot aim
 * a delete at a container someone else owns.
 */
#include "core.h"

#include <stdlib.h>

static u64 ref_magic(int vtype)
{
    return vtype == T_DICT ? DICT_MAGIC : vtype == T_ARRAY ? ARRAY_MAGIC
                                        : vtype == T_LIST  ? LIST_MAGIC
                                                           : 0;
}

static u64 ref_hdr_size(int vtype)
{
    return vtype == T_DICT ? sizeof(dict_hdr) : vtype == T_ARRAY ? sizeof(array_hdr)
                                             : vtype == T_LIST   ? sizeof(list_hdr)
                                                                 : 0;
}

const char *ref_kind_name(int kind)
{
    return kind == T_DICT ? "Dict" : kind == T_ARRAY ? "Array" : "List";
}

int ref_kind_of_magic(u64 magic)
{
    return magic == DICT_MAGIC ? T_DICT : magic == ARRAY_MAGIC ? T_ARRAY
                                      : magic == LIST_MAGIC    ? T_LIST
                                                               : -1;
}

u64 *ref_parent_word(const heap_region *r, int vtype, u64 addr)
{
    u64 sz = ref_hdr_size(vtype);
    if (!sz || addr % 16 || !in_arena(r, addr, sz) || ld((u64 *)(uintptr_t)addr) != ref_magic(vtype))
        return NULL;
    u64 off = live_offset(r, addr);
    if (!off || usable_at(r, off) < sz)
        return NULL;
    switch (vtype) {
    case T_DICT:
        return &((dict_hdr *)(uintptr_t)addr)->parent;
    case T_ARRAY:
        return &((array_hdr *)(uintptr_t)addr)->parent;
    default:
        return &((list_hdr *)(uintptr_t)addr)->parent;
    }
}

/* Bound on the parent chain walked by the cycle check: far deeper than any
 * real nesting; a longer chain is a cycle that corruption made. */
#define PARENT_CHAIN_MAX 100000

int ref_adopt(TX *t, u64 holder, int vtype, u64 child)
{
    u64 *pw = ref_parent_word(t->r, vtype, child);
    if (!pw)
        return REF_NOT_LIVE;
    if (ld(pw))
        return REF_HAS_PARENT;
    /* child must be neither the holder nor one of its ancestors */
    u64 a = holder;
    for (int depth = 0; a; depth++) {
        if (a == child)
            return REF_CYCLE;
        if (depth > PARENT_CHAIN_MAX) {
            tx_bad(t, "parent chain of a container loops");
            return REF_CYCLE;
        }
        int k = a % 16 || !in_arena(t->r, a, 8) ? -1 : ref_kind_of_magic(ld((u64 *)(uintptr_t)a));
        u64 *up = k < 0 ? NULL : ref_parent_word(t->r, k, a);
        if (!up) /* a parent destroyed by a crash mid-destroy: the top */
            break;
        a = ld(up);
    }
    W(t, pw, holder);
    return REF_OK;
}

int ref_release(TX *t, u64 holder, int vtype, u64 child)
{
    u64 *pw = ref_parent_word(t->r, vtype, child);
    if (!pw || ld(pw) != holder)
        return 0;
    W(t, pw, 0);
    return 1;
}

int entry_ref(const heap_region *r, const dict_entry *en, int *vtype, u64 *addr)
{
    if (!T_IS_REF(en->vtype) || en->vlen != 8 ||
        !in_arena(r, (u64)(uintptr_t)(en + 1), (u64)en->klen + 8))
        return 0;
    *vtype = en->vtype;
    memcpy(addr, (const char *)(en + 1) + en->klen, 8);
    return 1;
}

const char *ref_check(const heap_region *r, const dict_entry *en, u64 holder)
{
    int vt;
    u64 a, *pw;
    if (!entry_ref(r, en, &vt, &a))
        return "container value of the wrong length";
    if (!(pw = ref_parent_word(r, vt, a)))
        return "container value is not a live container of its kind";
    if (ld(pw) != holder)
        return "container value belongs to another parent";
    return NULL;
}

void rs_init(refstack *s)
{
    s->v = NULL;
    s->n = s->cap = 0;
    s->nomem = 0;
}

void rs_free(refstack *s)
{
    free(s->v);
    rs_init(s);
}

void rs_push(refstack *s, int vtype, u64 addr, u64 holder)
{
    if (s->n + 3 > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 48;
        u64 *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv) { /* the child is leaked, never freed twice */
            s->nomem = 1;
            return;
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = (u64)vtype;
    s->v[s->n++] = addr;
    s->v[s->n++] = holder;
}

void rs_note(refstack *s, const heap_region *r, u64 entry, u64 holder)
{
    int vt;
    u64 a;
    if (s && entry > TOMB && in_arena(r, entry, sizeof(dict_entry)) &&
        entry_ref(r, (const dict_entry *)(uintptr_t)entry, &vt, &a))
        rs_push(s, vt, a, holder);
}

/* Free a block if it is a live allocation (a destroyed container's parts). */
static void free_if_live(TX *t, u64 abs)
{
    u64 off = abs ? live_offset(t->r, abs) : 0;
    if (off)
        tx_free(t, off);
}

/* Invalidate the container: magic 0 under its seqlock, one transaction.
 * Readers holding a handle then get "not a Dict/Array/List". */
static int invalidate(TX *t, u64 *magic, u64 *seq)
{
    tx_init(t, t->r);
    tx_begin_seq(t, seq);
    W(t, magic, 0);
    return tx_commit(t);
}

static int destroy_dict(TX *t, dict_hdr *d, refstack *s)
{
    if (dict_bad(t->r, d))
        return 0; /* not a sound Dict: leak it rather than follow it */
    u64 index = d->index, area = d->area, aused = d->aused;
    if (invalidate(t, &d->magic, &d->seq) < 0 ||
        dict_free_values(t, area, aused, s, (u64)(uintptr_t)d) < 0)
        return -1;
    tx_init(t, t->r);
    free_if_live(t, index);
    free_if_live(t, area);
    free_if_live(t, (u64)(uintptr_t)d);
    return tx_commit(t);
}

static int destroy_array(TX *t, array_hdr *a, array_pinned_fn pinned)
{
    if (array_bad(t->r, a))
        return 0;
    if (pinned && pinned((u64)(uintptr_t)a)) {
        /* numpy views of its data live in this process: keep it, detached,
         * so the views never see freed memory; its handle can destroy it */
        tx_init(t, t->r);
        W(t, &a->parent, 0);
        return tx_commit(t);
    }
    u64 data = a->data;
    if (invalidate(t, &a->magic, &a->seq) < 0)
        return -1;
    tx_init(t, t->r);
    free_if_live(t, data);
    free_if_live(t, (u64)(uintptr_t)a);
    return tx_commit(t);
}

static int destroy_list(TX *t, list_hdr *l, refstack *s)
{
    if (list_bad(t->r, l))
        return 0;
    u64 items = l->items, len = l->len;
    if (invalidate(t, &l->magic, &l->seq) < 0 ||
        list_free_entries(t, items, len, s, (u64)(uintptr_t)l) < 0)
        return -1;
    tx_init(t, t->r);
    free_if_live(t, items);
    free_if_live(t, (u64)(uintptr_t)l);
    return tx_commit(t);
}

int destroy_owned(TX *t, refstack *s, array_pinned_fn pinned)
{
    while (s->n >= 3) {
        u64 holder = s->v[--s->n], addr = s->v[--s->n];
        int vt = (int)s->v[--s->n];
        u64 *pw = ref_parent_word(t->r, vt, addr);
        if (!pw || ld(pw) != holder)
            continue; /* not (or no longer) owned by that holder: not ours to free */
        int rc = vt == T_DICT    ? destroy_dict(t, (dict_hdr *)(uintptr_t)addr, s)
                 : vt == T_ARRAY ? destroy_array(t, (array_hdr *)(uintptr_t)addr, pinned)
                                 : destroy_list(t, (list_hdr *)(uintptr_t)addr, s);
        if (rc < 0)
            return -1;
    }
    return 0;
}
