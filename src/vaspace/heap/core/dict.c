/*
 * dict.c -- Dict: an open-addressing hash table of (hash, entry) slots in
 * the arena; each entry holds a key and a value, each a type tag plus bytes.
 *
 * Readers probe lock-free under the Dict's seqlock, checking every pointer
 * against the arena (a torn read retries); writers work under the heap lock
 * inside one undo-logged operation.
 */
#include "core.h"

#include <stdlib.h>

const char DICT_NOT_A_DICT[] = "not a Dict";

static inline u64 mix64(u64 x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Deterministic across processes (Python's str hash is randomised). */
u64 key_hash(int type, const char *p, size_t n)
{
    u64 h = 0x9e3779b97f4a7c15ULL ^ ((u64)n * 0x100000001b3ULL) ^ (u64)type;
    while (n >= 8) {
        u64 k;
        memcpy(&k, p, 8);
        h = (h ^ mix64(k)) * 0x9e3779b97f4a7c15ULL;
        h = (h << 29) | (h >> 35);
        p += 8;
        n -= 8;
    }
    u64 k = 0;
    memcpy(&k, p, n);
    h ^= mix64(k ^ ((u64)n << 56));
    return mix64(h);
}

/* Under the lock, before a writer trusts a Dict header: still a Dict (not
 * destroyed meanwhile), and a table that is a live allocation of the size
 * the mask says, with plausible counts. */
const char *dict_bad(const heap_region *r, dict_hdr *d)
{
    if (d->magic != DICT_MAGIC)
        return DICT_NOT_A_DICT;
    u64 mask = d->mask, table = d->table;
    u64 toff = live_offset(r, table);
    if (((mask + 1) & mask) || mask < 7 || mask > (r->size >> 4))
        return "Dict table size";
    if (!toff || usable_at(r, toff) < (mask + 1) * sizeof(dict_slot))
        return "Dict table pointer";
    if (d->count > d->used_slots || d->used_slots > mask + 1)
        return "Dict counts";
    return NULL;
}

/* Probe for key.  Read-only; tolerates concurrent writers (bounds checked,
 * bounded probe length).  Returns the slot index or -1; *reuse gets the
 * first reusable slot (tombstone or empty) or -1; *bad is set when a pointer
 * or length is out of bounds (torn read, or corruption). */
long long dict_probe(const heap_region *r, dict_hdr *d, const heap_key *k, int *bad,
                     long long *reuse, u64 *entry_out)
{
    u64 mask = ld(&d->mask), table = ld(&d->table), hash = k->hash;
    *bad = 0;
    if (reuse)
        *reuse = -1;
    if (((mask + 1) & mask) || mask > (r->size >> 4) ||
        !in_arena(r, table, (mask + 1) * sizeof(dict_slot))) {
        *bad = 1;
        return -1;
    }
    dict_slot *slots = (dict_slot *)(uintptr_t)table;
    for (u64 i = 0; i <= mask; i++) {
        dict_slot *s = &slots[(hash + i) & mask];
        u64 e = ld(&s->entry);
        if (e == 0) {
            if (reuse && *reuse < 0)
                *reuse = (long long)((hash + i) & mask);
            return -1;
        }
        if (e == TOMB) {
            if (reuse && *reuse < 0)
                *reuse = (long long)((hash + i) & mask);
            continue;
        }
        if (ld(&s->hash) != hash)
            continue;
        if (!in_arena(r, e, sizeof(dict_entry))) {
            *bad = 1;
            return -1;
        }
        dict_entry *en = (dict_entry *)(uintptr_t)e;
        u32 kl = __atomic_load_n(&en->klen, __ATOMIC_RELAXED);
        u32 vl = __atomic_load_n(&en->vlen, __ATOMIC_RELAXED);
        if (!in_arena(r, e + sizeof(dict_entry), (u64)kl + vl)) {
            *bad = 1;
            return -1;
        }
        if (en->ktype == k->type && kl == (u64)k->n &&
            memcmp((char *)(en + 1), k->p, (size_t)kl) == 0) {
            /* hand back the entry from this same table snapshot: re-reading
             * d->table could give a newer, smaller table */
            if (entry_out)
                *entry_out = e;
            return (long long)((hash + i) & mask);
        }
    }
    return -1;
}

/* Probe for the key, then for its older form (see encode_key). */
long long dict_find(const heap_region *r, dict_hdr *d, const heap_key *k, const heap_key *alt,
                    int *bad, long long *reuse, u64 *entry_out)
{
    long long i = dict_probe(r, d, k, bad, reuse, entry_out);
    if (i < 0 && !*bad && alt->p) {
        long long reuse2;
        i = dict_probe(r, d, alt, bad, &reuse2, entry_out);
    }
    return i;
}

void cb_init(copybuf *b)
{
    b->p = b->stack;
    b->n = 0;
    b->cap = sizeof b->stack;
}

void cb_free(copybuf *b)
{
    if (b->p != b->stack)
        free(b->p);
    cb_init(b);
}

/* Append n bytes; -1 (no exception set) if out of memory. */
int cb_put(copybuf *b, const void *src, size_t n)
{
    if (n > b->cap - b->n) {
        size_t cap = b->cap * 2 > b->n + n ? b->cap * 2 : b->n + n;
        char *np = b->p == b->stack ? malloc(cap) : realloc(b->p, cap);
        if (!np)
            return -1;
        if (b->p == b->stack)
            memcpy(np, b->stack, b->n);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

/* Copy one entry (its key and/or value, per which: 0 keys, 1 values, 2
 * both) as {u8 ktype, u8 vtype, u32 klen, u32 vlen, u64 order, bytes}
 * (CB_HEAD bytes of head).  The entry was bounds-checked by the caller. */
static int cb_put_entry(copybuf *b, const dict_entry *en, u32 kl, u32 vl, int which)
{
    u32 kn = which == 1 ? 0 : kl, vn = which == 0 ? 0 : vl;
    unsigned char head[CB_HEAD] = {en->ktype, en->vtype};
    u64 order = entry_order(en);
    memcpy(head + 2, &kn, 4);
    memcpy(head + 6, &vn, 4);
    memcpy(head + 10, &order, 8);
    if (cb_put(b, head, sizeof head) < 0 || cb_put(b, (const char *)(en + 1), kn) < 0 ||
        cb_put(b, (const char *)(en + 1) + kl, vn) < 0)
        return -1;
    return 0;
}

int cb_copy_entry(const heap_region *r, copybuf *b, u64 e, int which)
{
    if (!in_arena(r, e, sizeof(dict_entry)))
        return 1;
    dict_entry *en = (dict_entry *)(uintptr_t)e;
    u32 kl = __atomic_load_n(&en->klen, __ATOMIC_RELAXED);
    u32 vl = __atomic_load_n(&en->vlen, __ATOMIC_RELAXED);
    if (!in_arena(r, e + sizeof(dict_entry), (u64)kl + vl))
        return 1;
    return cb_put_entry(b, en, kl, vl, which) < 0 ? -1 : 0;
}


/* Under the lock: grow/rehash into a fresh table.  Returns 0, or -1 (out of
 * memory, or corrupt: t->corrupt says which). */
static int dict_resize(TX *t, dict_hdr *d, u64 newcap)
{
    heap_region *r = t->r;
    u64 to = tx_alloc(t, newcap * sizeof(dict_slot), 16);
    if (!to)
        return -1;
    dict_slot *ns = (dict_slot *)(r->base + to);
    memset(ns, 0, newcap * sizeof(dict_slot));
    dict_slot *os = (dict_slot *)(uintptr_t)d->table;
    u64 nm = newcap - 1, placed = 0;
    for (u64 i = 0; i <= d->mask; i++) {
        u64 e = os[i].entry;
        if (e == 0 || e == TOMB)
            continue;
        /* more live slots than the count says would fill the new table */
        if (++placed > d->count) {
            tx_bad(t, "Dict holds more entries than its count");
            return -1;
        }
        u64 j = os[i].hash & nm;
        while (ns[j].entry)
            j = (j + 1) & nm;
        ns[j] = os[i];
    }
    W(t, &d->table, abs_of(r, to));
    W(t, &d->mask, nm);
    W(t, &d->used_slots, d->count);
    tx_free(t, (u64)((char *)os - r->base));
    return 0;
}

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

int dict_put(TX *t, dict_hdr *d, const heap_key *k, const heap_key *alt, const heap_key *v,
             u64 *replaced)
{
    heap_region *r = t->r;
    if ((d->used_slots + 1) * 4 > (d->mask + 1) * 3) {
        /* Rehash to a load of at most 1/2.  With many tombstones this keeps
         * the size and only sweeps them out. */
        u64 cap = d->mask + 1;
        while ((d->count + 1) * 2 > cap)
            cap <<= 1;
        if (dict_resize(t, d, cap) < 0)
            return t->corrupt ? DICT_CORRUPT : DICT_TABLE_NOMEM;
    }
    int bad;
    long long reuse, reuse_old;
    long long i = dict_probe(r, d, k, &bad, &reuse, NULL);
    /* The key in an older form (see encode_key) is replaced by a new entry
     * in the current form, at the slot the current hash probes to. */
    long long old_i = i < 0 && !bad && alt->p ? dict_probe(r, d, alt, &bad, &reuse_old, NULL)
                                              : -1;
    if (bad)
        return DICT_CORRUPT;
    dict_slot *slots = (dict_slot *)(uintptr_t)d->table;
    /* a replaced key keeps its place in the insertion order (as in dict) */
    long long keep = i >= 0 ? i : old_i;
    u64 order = keep >= 0 ? entry_order((dict_entry *)(uintptr_t)slots[keep].entry) : d->next_order;
    u64 eo = entry_alloc(t, k, v, order);
    if (!eo)
        return DICT_NOMEM;
    if (replaced)
        *replaced = i >= 0 ? slots[i].entry : 0;
    if (old_i >= 0) {
        u64 old = slots[old_i].entry;
        W(t, &slots[old_i].entry, TOMB);
        W(t, &d->count, d->count - 1);
        tx_free(t, old - (u64)(uintptr_t)r->base);
    }
    if (i >= 0) {
        u64 old = slots[i].entry;
        W(t, &slots[i].entry, abs_of(r, eo));
        tx_free(t, old - (u64)(uintptr_t)r->base);
    } else {
        if (reuse < 0) /* only a corrupt table: the load factor keeps empty slots */
            return DICT_TABLE_FULL;
        if (slots[reuse].entry == 0)
            W(t, &d->used_slots, d->used_slots + 1);
        W(t, &slots[reuse].hash, k->hash);
        W(t, &slots[reuse].entry, abs_of(r, eo));
        W(t, &d->count, d->count + 1);
        if (old_i < 0)
            W(t, &d->next_order, d->next_order + 1);
    }
    return DICT_OK;
}

void dict_remove_at(TX *t, dict_hdr *d, long long i)
{
    dict_slot *slots = (dict_slot *)(uintptr_t)d->table;
    u64 e = slots[i].entry;
    W(t, &slots[i].entry, TOMB);
    W(t, &d->count, d->count - 1);
    tx_free(t, e - (u64)(uintptr_t)t->r->base);
}

u64 dict_create(TX *t, u64 cap)
{
    heap_region *r = t->r;
    u64 ho = tx_alloc(t, sizeof(dict_hdr), 16);
    u64 to = ho ? tx_alloc(t, cap * sizeof(dict_slot), 16) : 0;
    if (!to)
        return 0;
    /* both blocks are fresh: unlogged initialisation is safe */
    memset(r->base + to, 0, cap * sizeof(dict_slot));
    dict_hdr *d = (dict_hdr *)(r->base + ho);
    d->seq = 0;
    d->count = 0;
    d->used_slots = 0;
    d->mask = cap - 1;
    d->table = abs_of(r, to);
    d->parent = 0;
    d->next_order = 0;
    compiler_fence();
    d->magic = DICT_MAGIC;
    return ho;
}

/* Copy every live entry into buf (see cb_copy_entry).  Returns 0, -1 if out
 * of memory (no exception set), 1 if a pointer was out of bounds (torn
 * read, or corruption).  No Python calls. */
int dict_copy_entries(const heap_region *r, dict_hdr *d, int which, copybuf *buf)
{
    u64 mask = ld(&d->mask), table = ld(&d->table);
    if (((mask + 1) & mask) || mask > (r->size >> 4) ||
        !in_arena(r, table, (mask + 1) * sizeof(dict_slot)))
        return 1;
    dict_slot *slots = (dict_slot *)(uintptr_t)table;
    for (u64 i = 0; i <= mask; i++) {
        u64 e = ld(&slots[i].entry);
        if (e == 0 || e == TOMB)
            continue;
        int rc = cb_copy_entry(r, buf, e, which);
        if (rc)
            return rc;
    }
    return 0;
}


#define CLEAR_BATCH 8

/* Under the lock, after the slots [from, cap) of a table were made
 * unreachable by a committed operation: free their entries in small
 * crash-safe batches (a crash in this phase can leak them, never corrupt the
 * heap).  Entries that are not live allocations are skipped.  Containers
 * the entries hold are pushed on s (if not NULL) for destroy_owned(). */
int dict_free_entries(TX *t, u64 table, u64 from, u64 cap, refstack *s, u64 holder)
{
    heap_region *r = t->r;
    int rc = 0;
    dict_slot *os = (dict_slot *)(uintptr_t)table;
    u64 i = from;
    while (i < cap && rc == 0) {
        tx_init(t, r);
        for (int n = 0; i < cap && n < CLEAR_BATCH; i++) {
            u64 e = os[i].entry;
            if (e > TOMB) {
                u64 off = live_offset(r, e);
                if (off) {
                    rs_note(s, r, e, holder); /* a container it holds dies too */
                    tx_free(t, off);
                }
                n++;
            }
        }
        rc = tx_commit(t);
    }
    return rc;
}

/* The walk behind dict_check(); bounds-checked so that read-only mode can
 * run it optimistically under hseq. */
const char *dict_check_walk(const heap_region *r, dict_hdr *d, u64 *live_out)
{
    const char *err = NULL;
    u64 live = 0, used = 0;
    u64 table = ld(&d->table), mask = ld(&d->mask);
    if (!live_offset(r, table))
        err = "table is not a live allocation";
    else if (((mask + 1) & mask) || mask > (r->size >> 4) ||
             !in_arena(r, table, (mask + 1) * sizeof(dict_slot)))
        err = "table size is wrong";
    for (u64 i = 0; !err && i <= mask; i++) {
        dict_slot *s = (dict_slot *)(uintptr_t)table + i;
        if (s->entry == 0)
            continue;
        used++;
        if (s->entry == TOMB)
            continue;
        live++;
        u64 off = live_offset(r, s->entry);
        dict_entry *en = (dict_entry *)(uintptr_t)s->entry;
        if (!off)
            err = "entry is not a live allocation";
        else if (usable_at(r, off) < sizeof(dict_entry) + (u64)en->klen + en->vlen)
            err = "entry larger than its allocation";
        else if (key_hash(en->ktype, (char *)(en + 1), en->klen) != s->hash)
            err = "stored hash does not match key";
        else if (T_IS_REF(en->vtype))
            err = ref_check(r, en, (u64)(uintptr_t)d);
    }
    if (!err && live != d->count)
        err = "count is wrong";
    if (!err && used != d->used_slots)
        err = "used_slots is wrong";
    if (!err && (d->seq & 1))
        err = "seq is odd outside a write";
    *live_out = live;
    return err;
}

int dict_load(TX *t, dict_hdr *d, u64 n, const heap_key *k, const heap_key *alt,
              const heap_key *v, u64 *scratch, u64 *gone, u64 *ngone)
{
    heap_region *r = t->r;
    *ngone = 0;
    u64 cap = d->mask + 1;
    while ((d->count + n) * 2 > cap) {
        if (cap > (r->size >> 5)) { /* more slots than the region has bytes for */
            t->want = r->size;
            return DICT_TABLE_NOMEM;
        }
        cap <<= 1;
    }
    /* A fresh table: its slots need no log, whatever n is. */
    u64 to = tx_alloc(t, cap * sizeof(dict_slot), 16);
    if (!to)
        return t->corrupt ? DICT_CORRUPT : DICT_TABLE_NOMEM;
    dict_slot *ns = (dict_slot *)(r->base + to), *os = (dict_slot *)(uintptr_t)d->table;
    memset(ns, 0, cap * sizeof(dict_slot));
    u64 nm = cap - 1, count = 0;
    for (u64 i = 0; i <= d->mask; i++) {
        if (os[i].entry <= TOMB)
            continue;
        if (++count > d->count)
            return tx_bad(t, "Dict holds more entries than its count"), DICT_CORRUPT;
        u64 j = os[i].hash & nm;
        while (ns[j].entry)
            j = (j + 1) & nm;
        ns[j] = os[i];
    }
    /* Fresh entries: one run of blocks, so the log does not grow with n. */
    u64 *usize = scratch, *uo = scratch + n;
    for (u64 i = 0; i < n; i++)
        usize[i] = sizeof(dict_entry) + k[i].n + v[i].n;
    if (tx_alloc_run(t, usize, n, uo) < 0)
        return t->corrupt ? DICT_CORRUPT : DICT_NOMEM;
    dict_hdr nd = *d; /* probes see the new table */
    nd.table = abs_of(r, to);
    nd.mask = nm;
    u64 used = count, order = d->next_order;
    for (u64 i = 0; i < n; i++) {
        int bad;
        long long reuse, reuse2;
        u64 e = 0;
        long long j = dict_probe(r, &nd, &k[i], &bad, &reuse, &e);
        long long oj = j < 0 && !bad && alt[i].p ? dict_probe(r, &nd, &alt[i], &bad, &reuse2, &e)
                                                 : -1;
        if (bad)
            return DICT_CORRUPT;
        /* a replaced key keeps its place in the insertion order; its old
         * entry (an earlier one of this load, for a repeated key) is freed
         * by the caller after commit */
        u64 eabs = abs_of(r, uo[i]);
        entry_fill(r, uo[i], &k[i], &v[i], e ? entry_order((dict_entry *)(uintptr_t)e) : order++);
        if (e)
            gone[(*ngone)++] = e;
        if (j >= 0) {
            ns[j].entry = eabs;
            continue;
        }
        if (oj >= 0) {
            ns[oj].entry = TOMB;
            count--;
        }
        if (reuse < 0)
            return DICT_TABLE_FULL;
        used += ns[reuse].entry == 0;
        ns[reuse].hash = k[i].hash;
        ns[reuse].entry = eabs;
        count++;
    }
    W(t, &d->table, abs_of(r, to));
    W(t, &d->mask, nm);
    W(t, &d->count, count);
    W(t, &d->used_slots, used);
    W(t, &d->next_order, order);
    tx_free(t, (u64)((char *)os - r->base));
    return DICT_OK;
}
