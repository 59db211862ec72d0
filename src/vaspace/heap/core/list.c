/*
 * list.c -- List: a sequence of mixed values.  The header holds len, cap
 * and the address of one items block of cap words; item i is the address
 * of a value entry (a dict_entry with an empty key), so a List stores every
 * value type a Dict does, containers included (own.c).
 *
 * Readers copy items under the List's seqlock, checking every pointer;
 * writers work under the heap lock inside one undo-logged operation.  An
 * append writes the slot beyond len (free space as far as the committed
 * List is concerned: no log) and then the length; an insert or removal in
 * the middle shifts the items with logged stores when few move, and else
 * builds a new items block (unlogged, it is fresh) and swaps the pointer,
 * so the undo log stays small whatever the length.
 */
#include "core.h"

const char LIST_NOT_A_LIST[] = "not a List";

/* Items moved with logged stores at most; beyond, a new block is built. */
#define SHIFT_MAX 256
#define FREE_BATCH 8

void entry_fill(heap_region *r, u64 eo, const heap_key *k, const heap_key *v, u64 order)
{
    dict_entry *en = (dict_entry *)(r->base + eo);
    en->klen = (u32)k->n;
    en->vlen = (u32)v->n;
    en->ktype = (u8)k->type;
    en->vtype = (u8)v->type;
    entry_set_order(en, order);
    memcpy((char *)(en + 1), k->p, (size_t)k->n);
    memcpy((char *)(en + 1) + k->n, v->p, (size_t)v->n);
}

u64 entry_alloc(TX *t, const heap_key *k, const heap_key *v, u64 order)
{
    u64 eo = tx_alloc(t, sizeof(dict_entry) + (u64)k->n + (u64)v->n, 16);
    if (eo)
        entry_fill(t->r, eo, k, v, order);
    return eo;
}

static u64 *items_of(const list_hdr *l) { return (u64 *)(uintptr_t)l->items; }

const char *list_bad(const heap_region *r, list_hdr *l)
{
    if (l->magic != LIST_MAGIC)
        return LIST_NOT_A_LIST;
    if (l->len > l->cap || l->cap > r->size / 8)
        return "List length";
    if (l->cap) {
        u64 off = live_offset(r, l->items);
        if (!off || usable_at(r, off) < l->cap * 8)
            return "List items are not a live allocation";
    } else if (l->items) {
        return "List items pointer";
    }
    return NULL;
}

u64 list_create(TX *t)
{
    u64 ho = tx_alloc(t, sizeof(list_hdr), 16);
    if (!ho)
        return 0;
    list_hdr *l = (list_hdr *)(t->r->base + ho); /* fresh: no log */
    memset(l, 0, sizeof *l);
    compiler_fence();
    l->magic = LIST_MAGIC;
    return ho;
}

/* A new items block of cap words holding the old items with a gap at
 * index gap (insert) or without item skip (remove); -1 for neither.  The
 * old block is freed at commit.  0, or -1 when the heap is full. */
static int rebuild(TX *t, list_hdr *l, u64 cap, long long gap, u64 gapval, long long skip)
{
    heap_region *r = t->r;
    u64 no = tx_alloc(t, cap * 8, 16);
    if (!no)
        return -1;
    u64 *dst = (u64 *)(r->base + no), *src = items_of(l), n = 0;
    for (u64 i = 0; i < l->len; i++) {
        if ((long long)i == gap)
            dst[n++] = gapval;
        if ((long long)i != skip)
            dst[n++] = src[i];
    }
    if (gap == (long long)l->len)
        dst[n++] = gapval;
    if (l->items)
        tx_free(t, l->items - (u64)(uintptr_t)r->base);
    W(t, &l->items, abs_of(r, no));
    W(t, &l->cap, cap);
    W(t, &l->len, n);
    return 0;
}

int list_insert(TX *t, list_hdr *l, u64 i, u64 e)
{
    u64 len = l->len;
    if (len == l->cap || len - i > SHIFT_MAX) {
        u64 cap = len == l->cap ? (l->cap < 4 ? 4 : l->cap * 2) : l->cap;
        if (cap > t->r->size / 8)
            return -1;
        return rebuild(t, l, cap, (long long)i, e, -1);
    }
    u64 *it = items_of(l);
    it[len] = len > i ? it[len - 1] : e; /* beyond len: not committed state */
    for (u64 j = len - 1; len > i && j > i; j--)
        W(t, &it[j], it[j - 1]);
    if (len > i)
        W(t, &it[i], e);
    W(t, &l->len, len + 1);
    return 0;
}

int list_load(TX *t, list_hdr *l, u64 n, const heap_key *v, u64 *scratch)
{
    static const heap_key no_key = {T_BYTES, "", 0, 0};
    heap_region *r = t->r;
    u64 len = l->len, need = len + n, cap = l->cap, no = 0, *it = items_of(l);
    if (need > r->size / 8) {
        t->want = r->size;
        return -1;
    }
    if (need > cap) {
        /* a fresh items block (the old one is freed at commit) */
        for (cap = cap < 4 ? 4 : cap; cap < need;)
            cap *= 2;
        if (cap > r->size / 8)
            cap = need;
        no = tx_alloc(t, cap * 8, 16);
        if (!no)
            return -1;
        if (len)
            memcpy(r->base + no, it, len * 8);
        it = (u64 *)(r->base + no);
    }
    u64 *usize = scratch, *uo = scratch + n;
    for (u64 i = 0; i < n; i++)
        usize[i] = sizeof(dict_entry) + v[i].n;
    if (tx_alloc_run(t, usize, n, uo) < 0)
        return -1;
    for (u64 i = 0; i < n; i++) {
        entry_fill(r, uo[i], &no_key, &v[i], 0);
        it[len + i] = abs_of(r, uo[i]); /* beyond len, or a fresh block: no log */
    }
    if (no) {
        if (l->items)
            tx_free(t, l->items - (u64)(uintptr_t)r->base);
        W(t, &l->items, abs_of(r, no));
        W(t, &l->cap, cap);
    }
    W(t, &l->len, need);
    return t->corrupt || t->overflow ? -1 : 0;
}

u64 list_remove(TX *t, list_hdr *l, u64 i)
{
    u64 *it = items_of(l), e = it[i], len = l->len;
    if (len - 1 - i > SHIFT_MAX) {
        if (rebuild(t, l, l->cap, -1, 0, (long long)i) < 0)
            return 0;
        return e;
    }
    for (u64 j = i; j + 1 < len; j++)
        W(t, &it[j], it[j + 1]);
    W(t, &l->len, len - 1);
    return e;
}

int list_free_entries(TX *t, u64 items, u64 len, refstack *s, u64 holder)
{
    heap_region *r = t->r;
    u64 *it = (u64 *)(uintptr_t)items;
    int rc = 0;
    for (u64 i = 0; i < len && rc == 0;) {
        tx_init(t, r);
        for (int n = 0; i < len && n < FREE_BATCH; i++, n++) {
            u64 off = live_offset(r, it[i]);
            if (off) {
                rs_note(s, r, it[i], holder);
                tx_free(t, off);
            }
        }
        rc = tx_commit(t);
    }
    return rc;
}

int list_copy_range(const heap_region *r, list_hdr *l, u64 start, u64 stop, copybuf *buf)
{
    u64 len = ld(&l->len), cap = ld(&l->cap), items = ld(&l->items);
    if (len > cap || cap > r->size / 8 || (cap && !in_arena(r, items, cap * 8)))
        return 1;
    if (stop > len)
        stop = len;
    if (start > stop)
        return 2;
    u64 *it = (u64 *)(uintptr_t)items;
    for (u64 i = start; i < stop; i++) {
        int rc = cb_copy_entry(r, buf, ld(&it[i]), 1);
        if (rc)
            return rc;
    }
    return 0;
}
