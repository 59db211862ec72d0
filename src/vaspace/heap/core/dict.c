/*
 * dict.c -- Dict, the compact layout (as CPython's dict since 3.6): an
 * index table of small integers into one dense area of entries packed
 * back to back in insertion order (layout.h has the formats).
 *
 *   - Iteration walks the area: insertion order needs no sort.
 *   - A SET of a new key appends an entry beyond aused (free space as far
 *     as the committed Dict is concerned: no log) and logs one index word
 *     and three header words.
 *   - Replacing a value keeps the entry (and so its place in the order):
 *     in place with logged stores when the new value fits the entry's value
 *     room, else in a block of its own whose address goes in the room.
 *   - A deletion marks the entry a hole; the next rebuild drops the holes.
 *   - Growth: the area grows in place when the block after it is free
 *     (tx_realloc), else both parts are rebuilt fresh (a compacted area and
 *     a rehashed index), and the header words swap in one logged step.
 *
 * Readers probe lock-free under the Dict's seqlock, checking every offset
 * and length against the area and the arena (a torn read retries); writers
 * work under the heap lock inside one undo-logged operation.
 */
#include "core.h"

#include <stdlib.h>

const char DICT_NOT_A_DICT[] = "not a Dict";

#define R8(n) (((u64)(n) + 7) & ~7ULL)
/* Index load at most 4/5 of the slots (holes included); a rebuild leaves
 * at most 1/2.  The hash bits in the slots keep long probes cheap: they
 * rarely touch an entry that is not the key's. */
#define LOAD_OK(used, cap) ((used) * 5 <= (cap) * 4)

static inline u64 mix64(u64 x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* tail_word and slot_put_logged read and write words as little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the heap's Dict assumes little-endian");

/* The n < 8 bytes at p as a little-endian number, zero-extended: what a
 * memcpy into a zeroed u64 gives, without the byte stores that a load of
 * the whole word would then wait for (a stalled store forward costs more
 * than the rest of a short key's hash).  Two overlapping loads, or three
 * bytes, of which two may be the same one. */
static inline u64 tail_word(const char *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    if (n >= 4) {
        u32 lo, hi;
        memcpy(&lo, b, 4);
        memcpy(&hi, b + n - 4, 4);
        return lo | (u64)hi << (8 * (n - 4));
    }
    if (n == 0)
        return 0;
    return b[0] | (u64)b[n / 2] << (8 * (n / 2)) | (u64)b[n - 1] << (8 * (n - 1));
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
    h ^= mix64(tail_word(p, n) ^ ((u64)n << 56));
    return mix64(h);
}

static inline u16 tag_of(u64 hash) { return (u16)(hash >> 48); }

/* Does a slot's offset field of obits bits reach every entry of an area of abytes? */
static inline int shape_ok(u64 abytes, u64 obits) { return obits < 64 && !((abytes / 8 + 1) >> obits); }

/* The slot shape for an area of abytes: an offset field with one bit to
 * spare (the area can double in place before a rebuild), in a slot of 2, 4
 * or 8 bytes that leaves at least 4 bits of hash. */
static void shape_for(u64 abytes, u64 *obits, u64 *iw)
{
    u64 b = 1;
    while (!shape_ok(abytes, b))
        b++;
    *obits = ++b;
    *iw = b <= 12 ? 2 : b <= 28 ? 4 : 8;
}

/* The slot for the entry at area offset off of a key with this hash. */
static inline u64 slot_of(u64 iw, u64 obits, u64 hash, u64 off)
{
    u64 tb = 8 * iw - obits;
    return (tb ? (hash >> (64 - tb)) << obits : 0) | (off / 8 + 1);
}

static inline u64 slot_get(u64 index, u64 iw, u64 i)
{
    switch (iw) {
    case 2:
        return __atomic_load_n((u16 *)(uintptr_t)index + i, __ATOMIC_RELAXED);
    case 4:
        return __atomic_load_n((u32 *)(uintptr_t)index + i, __ATOMIC_RELAXED);
    default:
        return __atomic_load_n((u64 *)(uintptr_t)index + i, __ATOMIC_RELAXED);
    }
}

/* Unlogged store, for fresh tables. */
static inline void slot_put(u64 index, u64 iw, u64 i, u64 v)
{
    if (iw == 2)
        ((u16 *)(uintptr_t)index)[i] = (u16)v;
    else if (iw == 4)
        ((u32 *)(uintptr_t)index)[i] = (u32)v;
    else
        ((u64 *)(uintptr_t)index)[i] = v;
}

/* Logged store: the undo log works on aligned words, so log the word that
 * holds the slot, with the slot's bytes replaced. */
static void slot_put_logged(TX *t, u64 index, u64 iw, u64 i, u64 v)
{
    u64 byte = i * iw, *w = (u64 *)(uintptr_t)(index + (byte & ~7ULL)), nw = *w;
    memcpy((char *)&nw + (byte & 7), &v, (size_t)iw); /* little-endian: the low bytes */
    W(t, w, nw);
}

/* ---- geometry and entries, bounds-checked for lock-free readers ---- */

int dict_geom_read(const heap_region *r, const dict_hdr *d, dict_geom *g)
{
    g->cap = ld(&d->cap);
    g->index = ld(&d->index);
    g->iw = ld(&d->iw);
    g->obits = ld(&d->obits);
    g->area = ld(&d->area);
    g->abytes = ld(&d->abytes);
    g->aused = ld(&d->aused);
    if ((g->cap & (g->cap - 1)) || g->cap < 8 || g->cap > (r->size >> 1) ||
        (g->iw != 2 && g->iw != 4 && g->iw != 8) || g->aused > g->abytes || g->abytes % 8 ||
        g->obits > 8 * g->iw || !shape_ok(g->abytes, g->obits) || !in_arena(r, g->index, g->cap * g->iw) ||
        !in_arena(r, g->area, g->abytes) || g->area % 8)
        return 1;
    return 0;
}

/* An out-of-line block {u64 len; bytes}: its bytes, or NULL if out of bounds. */
static const char *block_bytes_at(const heap_region *r, u64 a, u64 *len)
{
    if (a % 8 || !in_arena(r, a, 8))
        return NULL;
    *len = ld((u64 *)(uintptr_t)a);
    if (*len > r->size || !in_arena(r, a + 8, *len))
        return NULL;
    return (const char *)(uintptr_t)(a + 8);
}

static inline u64 ent_size(const dict_ent *h)
{
    u64 kroom = h->flags & DE_KOUT ? 8 : h->klen;
    return 8 + R8(kroom) + (u64)h->vroom * 8;
}

int dent_view(const heap_region *r, const dict_geom *g, u64 off, dict_ent_view *ev)
{
    if (off % 8 || off >= g->aused || g->aused - off < 8)
        return 1;
    u64 at = g->area + off, hw = ld((u64 *)(uintptr_t)at);
    dict_ent h;
    memcpy(&h, &hw, 8);
    u64 size = ent_size(&h);
    if (size > g->aused - off || h.vroom == 0 || ((h.flags & DE_KOUT) && h.klen != 8))
        return 1;
    ev->at = at;
    ev->off = off;
    ev->size = size;
    ev->h = h;
    ev->vroom_at = at + 8 + R8(h.flags & DE_KOUT ? 8 : h.klen);
    if (h.flags & DE_HOLE)
        return 0; /* a hole owns nothing: its rooms are not read */
    if (h.flags & DE_KOUT) {
        ev->k = block_bytes_at(r, ld((u64 *)(uintptr_t)(at + 8)), &ev->kn);
        if (!ev->k)
            return 1;
    } else {
        ev->k = (const char *)(uintptr_t)(at + 8);
        ev->kn = h.klen;
    }
    if (h.flags & DE_VOUT) {
        ev->v = block_bytes_at(r, ld((u64 *)(uintptr_t)ev->vroom_at), &ev->vn);
        if (!ev->v)
            return 1;
    } else {
        if (h.vlen > (u64)h.vroom * 8)
            return 1;
        ev->v = (const char *)(uintptr_t)ev->vroom_at;
        ev->vn = h.vlen;
    }
    return 0;
}

int dent_ref(const dict_ent_view *ev, int *vtype, u64 *addr)
{
    if ((ev->h.flags & DE_HOLE) || !T_IS_REF(ev->h.vtype) || ev->vn != 8)
        return 0;
    *vtype = ev->h.vtype;
    memcpy(addr, ev->v, 8);
    return 1;
}

/* Push the container the entry holds (if any) on s. */
static void dent_note(refstack *s, const dict_ent_view *ev, u64 holder)
{
    int vt;
    u64 a;
    if (s && dent_ref(ev, &vt, &a))
        rs_push(s, vt, a, holder);
}

/* The geometry, and index and area live allocations of the sizes it says:
 * NULL, or what is wrong. */
static const char *parts_bad(const heap_region *r, const dict_hdr *d, dict_geom *g)
{
    if (dict_geom_read(r, d, g))
        return "index or area size is wrong";
    u64 io = live_offset(r, g->index), ao = live_offset(r, g->area);
    if (!io || usable_at(r, io) < g->cap * g->iw)
        return "index is not a live allocation of its size";
    if (!ao || usable_at(r, ao) < g->abytes)
        return "area is not a live allocation of its size";
    return NULL;
}

/* Under the lock, before a writer trusts a Dict header: still a Dict (not
 * destroyed meanwhile), with sound parts and plausible counts. */
const char *dict_bad(const heap_region *r, dict_hdr *d)
{
    if (d->magic != DICT_MAGIC)
        return DICT_NOT_A_DICT;
    dict_geom g;
    const char *bad = parts_bad(r, d, &g);
    if (bad)
        return bad;
    if (d->count > d->nent || !LOAD_OK(d->nent, g.cap) || d->nent * 16 > g.aused + 15)
        return "Dict counts";
    return NULL;
}

u64 dict_find_in(const heap_region *r, const dict_geom *g, const heap_key *k, int *bad,
                 dict_ent_view *ev, u64 *slot_out)
{
    u64 mask = g->cap - 1, hash = k->hash, omask = (1ULL << g->obits) - 1;
    u64 hbits = slot_of(g->iw, g->obits, hash, 0) & ~omask;
    u16 tag = tag_of(hash);
    *bad = 0;
    for (u64 n = 0, i = hash & mask; n < g->cap; n++, i = (i + 1) & mask) {
        u64 s = slot_get(g->index, g->iw, i);
        if (s == 0) {
            if (slot_out)
                *slot_out = i;
            return 0;
        }
        if ((s & ~omask) != hbits)
            continue; /* another key's: its entry is not read */
        /* An entry that starts inside a cache line usually ends in the next
         * one (a 12-byte key and a 32-byte value make 56 bytes): ask for
         * that line now, so that its miss overlaps the header's instead of
         * following it.  A prefetch never faults, even out of bounds. */
        u64 at = g->area + ((s & omask) - 1) * 8;
        if (at % 64)
            __builtin_prefetch((const void *)(uintptr_t)((at | 63) + 1));
        if (!(s & omask) || dent_view(r, g, ((s & omask) - 1) * 8, ev)) {
            *bad = 1;
            return 0;
        }
        if ((ev->h.flags & DE_HOLE) || ev->h.tag != tag || ev->h.ktype != k->type ||
            ev->kn != k->n || memcmp(ev->k, k->p, (size_t)k->n) != 0)
            continue;
        return ev->at;
    }
    *bad = 1; /* no empty slot: only a torn read or corruption (the load factor keeps some) */
    return 0;
}

u64 dict_find(const heap_region *r, dict_hdr *d, const heap_key *k, int *bad, dict_ent_view *ev)
{
    dict_geom g;
    if (dict_geom_read(r, d, &g)) {
        *bad = 1;
        return 0;
    }
    return dict_find_in(r, &g, k, bad, ev, NULL);
}

void dict_prefetch(const heap_region *r, const dict_hdr *d, u64 hash)
{
    dict_geom g;
    if (!dict_geom_read(r, d, &g))
        __builtin_prefetch((const void *)(uintptr_t)(g.index + (hash & (g.cap - 1)) * g.iw));
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

/* Append one record {u8 ktype, u8 vtype, u32 klen, u32 vlen, u64 order,
 * bytes} (CB_HEAD bytes of head); which: 0 keys, 1 values, 2 both. */
static int cb_put_rec(copybuf *b, int kt, int vt, const char *k, u64 kl, const char *v, u64 vl,
                      u64 order, int which)
{
    u32 kn = which == 1 ? 0 : (u32)kl, vn = which == 0 ? 0 : (u32)vl;
    unsigned char head[CB_HEAD] = {(unsigned char)kt, (unsigned char)vt};
    memcpy(head + 2, &kn, 4);
    memcpy(head + 6, &vn, 4);
    memcpy(head + 10, &order, 8);
    if (cb_put(b, head, sizeof head) < 0 || cb_put(b, k, kn) < 0 || cb_put(b, v, vn) < 0)
        return -1;
    return 0;
}

/* A List item (a value entry, layout.h's dict_entry with klen 0). */
int cb_copy_entry(const heap_region *r, copybuf *b, u64 e, int which)
{
    if (!in_arena(r, e, sizeof(dict_entry)))
        return 1;
    dict_entry *en = (dict_entry *)(uintptr_t)e;
    u32 kl = __atomic_load_n(&en->klen, __ATOMIC_RELAXED);
    u32 vl = __atomic_load_n(&en->vlen, __ATOMIC_RELAXED);
    if (!in_arena(r, e + sizeof(dict_entry), (u64)kl + vl))
        return 1;
    const char *p = (const char *)(en + 1);
    return cb_put_rec(b, en->ktype, en->vtype, p, kl, p + kl, vl, entry_order(en), which) < 0
               ? -1
               : 0;
}

int dict_copy_entries(const heap_region *r, dict_hdr *d, int which, copybuf *buf)
{
    dict_geom g;
    dict_ent_view ev;
    if (dict_geom_read(r, d, &g))
        return 1;
    u64 order = 0;
    for (u64 off = 0; off < g.aused; off += ev.size) {
        if (dent_view(r, &g, off, &ev))
            return 1;
        if (ev.h.flags & DE_HOLE)
            continue;
        if (cb_put_rec(buf, ev.h.ktype, ev.h.vtype, ev.k, ev.kn, ev.v, ev.vn, order++, which) < 0)
            return -1;
    }
    return 0;
}

/* ---- writing entries ---- */

/* Bytes of the entry a key and value take when written fresh. */
static u64 fresh_size(const heap_key *k, const heap_key *v)
{
    u64 kroom = k->n > DE_KEY_INLINE_MAX ? 8 : k->n;
    u64 vroom = v->n > DE_VAL_INLINE_MAX || v->n == 0 ? 8 : R8(v->n);
    return 8 + R8(kroom) + vroom;
}

/* Out-of-line blocks a fresh entry needs: bit 0 the key's, bit 1 the value's. */
static int fresh_blocks(const heap_key *k, const heap_key *v)
{
    return (k->n > DE_KEY_INLINE_MAX) | (v->n > DE_VAL_INLINE_MAX) << 1;
}

/* Fill a fresh block {len; bytes} at absolute address a. */
static void block_fill(u64 a, const char *p, u64 n)
{
    memcpy((void *)(uintptr_t)a, &n, 8);
    memcpy((char *)(uintptr_t)a + 8, p, (size_t)n);
}

/* Write a fresh entry at absolute address at (unlogged: fresh memory or
 * beyond aused).  kb / vb: the blocks of an out-of-line key / value (0 if
 * inline).  Returns its size. */
static u64 ent_write(u64 at, const heap_key *k, const heap_key *v, u64 kb, u64 vb)
{
    dict_ent h = {(u8)k->type, (u8)v->type, 0, 0, 0, 0, tag_of(k->hash)};
    char *p = (char *)(uintptr_t)at;
    u64 kroom;
    if (kb) {
        h.flags |= DE_KOUT;
        h.klen = 8;
        memcpy(p + 8, &kb, 8);
        kroom = 8;
    } else {
        h.klen = (u8)k->n;
        kroom = R8(k->n);
        memset(p + 8 + (kroom ? kroom - 8 : 0), 0, kroom ? 8 : 0); /* tidy padding */
        memcpy(p + 8, k->p, (size_t)k->n);
    }
    char *vr = p + 8 + kroom;
    if (vb) {
        h.flags |= DE_VOUT;
        h.vroom = 1;
        memcpy(vr, &vb, 8);
    } else {
        h.vroom = (u8)(v->n ? R8(v->n) / 8 : 1);
        h.vlen = (u8)v->n;
        memset(vr + (u64)h.vroom * 8 - 8, 0, 8);
        memcpy(vr, v->p, (size_t)v->n);
    }
    memcpy(p, &h, 8);
    return 8 + kroom + (u64)h.vroom * 8;
}

/* Copy an existing entry (not a hole) to fresh memory at at; its size. */
static u64 ent_copy(u64 at, const dict_ent_view *ev)
{
    memcpy((void *)(uintptr_t)at, (const void *)(uintptr_t)ev->at, (size_t)ev->size);
    return ev->size;
}

/* Inside t: free the block at absolute address a at commit, if it is a
 * live allocation (else the Dict is corrupt: the operation rolls back). */
static void free_abs(TX *t, u64 a)
{
    u64 off = live_offset(t->r, a);
    if (off)
        tx_free(t, off);
    else
        tx_bad(t, "Dict block is not a live allocation");
}

/* Under the lock: free the out-of-line blocks an entry owns (at commit). */
static void ent_free_blocks(TX *t, const dict_ent_view *ev)
{
    if (ev->h.flags & DE_KOUT)
        free_abs(t, (u64)(uintptr_t)ev->k - 8);
    if (ev->h.flags & DE_VOUT)
        free_abs(t, (u64)(uintptr_t)ev->v - 8);
}

/* Note a block freed at commit whose pages the caller gives back. */
static void note_freed(const heap_region *r, dict_freed *fr, u64 abs)
{
    u64 off = live_offset(r, abs), n;
    if (!fr || !off || fr->n >= 2 || (n = usable_at(r, off)) < RELEASE_MIN)
        return;
    fr->off[fr->n] = off;
    fr->len[fr->n++] = n;
}

void dict_release(const heap_region *r, const dict_freed *fr)
{
    for (int i = 0; i < fr->n; i++)
        release_pages(r, fr->off[i], fr->len[i]);
}

/* Place slot value s for hash into a fresh index (no log). */
static void index_place(u64 index, u64 iw, u64 cap, u64 hash, u64 s)
{
    u64 mask = cap - 1, i = hash & mask;
    while (slot_get(index, iw, i))
        i = (i + 1) & mask;
    slot_put(index, iw, i, s);
}

static u64 ent_hash(const dict_ent_view *ev) { return key_hash(ev->h.ktype, ev->k, (size_t)ev->kn); }

/* Smallest index for n entries at a load of at most 1/2. */
static u64 cap_for(u64 n)
{
    u64 cap = 8;
    while (cap < 2 * n)
        cap <<= 1;
    return cap;
}

/* Under the lock, inside t: rebuild d into a fresh index of cap slots and a
 * fresh area of abytes holding the live entries, compacted, in order.  The
 * header words swap in one logged step; the old parts are freed at
 * commit.  DICT_OK, DICT_TABLE_NOMEM (t->want) or DICT_CORRUPT. */
static int dict_rebuild(TX *t, dict_hdr *d, u64 cap, u64 abytes, dict_freed *fr)
{
    heap_region *r = t->r;
    u64 iw, obits;
    shape_for(abytes, &obits, &iw);
    if (cap > (r->size >> 1) / iw || abytes > r->size) {
        t->want = r->size;
        return DICT_TABLE_NOMEM;
    }
    u64 io = tx_alloc(t, cap * iw, 16);
    u64 ao = io ? tx_alloc(t, abytes ? abytes : 8, 16) : 0;
    if (!ao)
        return t->corrupt ? DICT_CORRUPT : DICT_TABLE_NOMEM;
    u64 index = abs_of(r, io), area = abs_of(r, ao), pos = 0, live = 0;
    memset((void *)(uintptr_t)index, 0, cap * iw);
    dict_geom g;
    dict_ent_view ev;
    if (dict_geom_read(r, d, &g))
        return tx_bad(t, "Dict geometry"), DICT_CORRUPT;
    for (u64 off = 0; off < g.aused; off += ev.size) {
        if (dent_view(r, &g, off, &ev))
            return tx_bad(t, "Dict entry out of bounds"), DICT_CORRUPT;
        if (ev.h.flags & DE_HOLE)
            continue;
        if (++live > d->count || pos + ev.size > abytes)
            return tx_bad(t, "Dict holds more entries than its count"), DICT_CORRUPT;
        u64 h = ent_hash(&ev);
        index_place(index, iw, cap, h, slot_of(iw, obits, h, pos));
        pos += ent_copy(area + pos, &ev);
    }
    if (live != d->count)
        return tx_bad(t, "Dict count is wrong"), DICT_CORRUPT;
    u64 oldi = g.index, olda = g.area;
    W(t, &d->index, index);
    W(t, &d->cap, cap);
    W(t, &d->iw, iw);
    W(t, &d->obits, obits);
    W(t, &d->area, area);
    W(t, &d->abytes, abytes ? abytes : 8);
    W(t, &d->aused, pos);
    W(t, &d->nent, live);
    note_freed(r, fr, oldi);
    note_freed(r, fr, olda);
    free_abs(t, oldi);
    free_abs(t, olda);
    return t->corrupt ? DICT_CORRUPT : DICT_OK;
}

/* Area bytes to ask for when need bytes must fit: a sixteenth more, so
 * that growth costs little space (it is usually in place, see
 * dict_make_room, and a move copies only the area). */
static u64 area_for(u64 need) { return (need + need / 16 + 63) & ~63ULL; }

/* Under the lock, inside t: make room for nnew more entries of bytes
 * bytes in total.  In place when only the area must grow and the block
 * after it is free; else a rebuild (which also drops the holes). */
static int dict_make_room(TX *t, dict_hdr *d, u64 nnew, u64 bytes, dict_freed *fr)
{
    u64 holes = d->nent - d->count;
    int index_full = !LOAD_OK(d->nent + nnew, d->cap);
    if (!index_full && d->aused + bytes <= d->abytes)
        return DICT_OK;
    u64 want = area_for(d->aused + bytes);
    if (!index_full && holes * 4 <= d->nent && shape_ok(want, d->obits)) {
        u64 ao = live_offset(t->r, d->area);
        if (!ao)
            return tx_bad(t, "Dict area pointer"), DICT_CORRUPT;
        u64 was = d->area, no = tx_realloc(t, ao, want);
        if (no && no != ao)
            note_freed(t->r, fr, was); /* moved: the old block is freed at commit */
        if (no) {
            /* moved or grown: the offsets in the index stay valid */
            W(t, &d->area, abs_of(t->r, no));
            W(t, &d->abytes, want);
            return DICT_OK;
        }
        if (t->corrupt)
            return DICT_CORRUPT;
        t->want = 0; /* try the rebuild, which may fit where the move did not */
    }
    /* the live bytes: the area less its holes */
    dict_geom g;
    dict_ent_view ev;
    u64 live_bytes = 0;
    if (dict_geom_read(t->r, d, &g))
        return tx_bad(t, "Dict geometry"), DICT_CORRUPT;
    for (u64 off = 0; off < g.aused; off += ev.size) {
        if (dent_view(t->r, &g, off, &ev))
            return tx_bad(t, "Dict entry out of bounds"), DICT_CORRUPT;
        if (!(ev.h.flags & DE_HOLE))
            live_bytes += ev.size;
    }
    return dict_rebuild(t, d, cap_for(d->count + nnew), area_for(live_bytes + bytes), fr);
}

/* Under the lock, inside t: give entry ev the value v, keeping its place. */
static int dent_replace(TX *t, const dict_ent_view *ev, const heap_key *v, refstack *dead,
                        u64 holder)
{
    dent_note(dead, ev, holder); /* a container the key held dies with the overwrite */
    dict_ent h = ev->h;
    u64 *room = (u64 *)(uintptr_t)ev->vroom_at;
    u64 vb = 0;
    if (v->n > DE_VAL_INLINE_MAX || v->n > (u64)h.vroom * 8) {
        u64 bo = tx_alloc(t, 8 + v->n, 16);
        if (!bo)
            return t->corrupt ? DICT_CORRUPT : DICT_NOMEM;
        vb = abs_of(t->r, bo);
        block_fill(vb, v->p, v->n);
    }
    if (h.flags & DE_VOUT)
        free_abs(t, (u64)(uintptr_t)ev->v - 8);
    if (vb) {
        W(t, &room[0], vb);
        h.flags |= DE_VOUT;
        h.vlen = 0;
    } else {
        for (u64 w = 0; w * 8 < v->n; w++) {
            u64 word = 0;
            memcpy(&word, v->p + w * 8, v->n - w * 8 < 8 ? (size_t)(v->n - w * 8) : 8);
            if (room[w] != word)
                W(t, &room[w], word);
        }
        h.flags &= (u8)~DE_VOUT;
        h.vlen = (u8)v->n;
    }
    h.vtype = (u8)v->type;
    u64 hw;
    memcpy(&hw, &h, 8);
    W(t, (u64 *)(uintptr_t)ev->at, hw);
    return DICT_OK;
}

int dict_put(TX *t, dict_hdr *d, const heap_key *k, const heap_key *v, refstack *dead,
             u64 holder, dict_freed *fr)
{
    if (fr)
        fr->n = 0;
    heap_region *r = t->r;
    int bad;
    dict_ent_view ev;
    if (dict_find(r, d, k, &bad, &ev))
        return dent_replace(t, &ev, v, dead, holder);
    if (bad)
        return tx_bad(t, "Dict structure"), DICT_CORRUPT;
    u64 size = fresh_size(k, v);
    /* Out-of-line blocks first: growing the area in place takes the whole
     * free block after it until commit, so it is the last allocation. */
    int blocks = fresh_blocks(k, v);
    u64 kb = 0, vb = 0;
    if (blocks & 1) {
        u64 bo = tx_alloc(t, 8 + k->n, 16);
        if (!bo)
            return t->corrupt ? DICT_CORRUPT : DICT_NOMEM;
        block_fill(kb = abs_of(r, bo), k->p, k->n);
    }
    if (blocks & 2) {
        u64 bo = tx_alloc(t, 8 + v->n, 16);
        if (!bo)
            return t->corrupt ? DICT_CORRUPT : DICT_NOMEM;
        block_fill(vb = abs_of(r, bo), v->p, v->n);
    }
    int rc = dict_make_room(t, d, 1, size, fr);
    if (rc != DICT_OK)
        return rc;
    dict_geom g;
    u64 slot = 0;
    if (dict_geom_read(r, d, &g))
        return tx_bad(t, "Dict geometry"), DICT_CORRUPT;
    if (dict_find_in(r, &g, k, &bad, &ev, &slot) || bad)
        return tx_bad(t, "Dict structure"), DICT_CORRUPT;
    u64 off = d->aused;
    ent_write(g.area + off, k, v, kb, vb); /* beyond aused: no log */
    slot_put_logged(t, g.index, g.iw, slot, slot_of(g.iw, g.obits, k->hash, off));
    W(t, &d->aused, off + size);
    W(t, &d->nent, d->nent + 1);
    W(t, &d->count, d->count + 1);
    return DICT_OK;
}

void dict_remove(TX *t, dict_hdr *d, const dict_ent_view *ev)
{
    ent_free_blocks(t, ev);
    dict_ent h = ev->h;
    h.flags |= DE_HOLE;
    u64 hw;
    memcpy(&hw, &h, 8);
    W(t, (u64 *)(uintptr_t)ev->at, hw);
    W(t, &d->count, d->count - 1);
}

u64 dict_create(TX *t, u64 nkeys)
{
    heap_region *r = t->r;
    u64 cap = cap_for(nkeys), abytes = area_for(nkeys * 32 > 64 ? nkeys * 32 : 64), iw, obits;
    shape_for(abytes, &obits, &iw);
    if (cap > (r->size >> 1) / iw || abytes > r->size)
        return 0;
    u64 ho = tx_alloc(t, sizeof(dict_hdr), 16);
    u64 io = ho ? tx_alloc(t, cap * iw, 16) : 0;
    u64 ao = io ? tx_alloc(t, abytes, 16) : 0;
    if (!ao)
        return 0;
    /* all three blocks are fresh: unlogged initialisation is safe */
    memset(r->base + io, 0, cap * iw);
    dict_hdr *d = (dict_hdr *)(r->base + ho);
    memset(d, 0, sizeof *d);
    d->cap = cap;
    d->index = abs_of(r, io);
    d->iw = iw;
    d->obits = obits;
    d->area = abs_of(r, ao);
    d->abytes = abytes;
    compiler_fence();
    d->magic = DICT_MAGIC;
    return ho;
}

#define FREE_BATCH 4 /* entries per transaction: two blocks each, DEFER_MAX 8 */

int dict_free_values(TX *t, u64 area, u64 aused, refstack *s, u64 holder)
{
    heap_region *r = t->r;
    dict_geom g = {8, 0, 8, 64, area, aused, aused};
    dict_ent_view ev;
    if (!in_arena(r, area, aused))
        return 0; /* not walkable: leak rather than follow it */
    int rc = 0;
    u64 off = 0;
    while (off < aused && rc == 0) {
        tx_init(t, r);
        for (int n = 0; off < aused && n < FREE_BATCH; off += ev.size) {
            if (dent_view(r, &g, off, &ev)) {
                off = aused; /* corrupt from here on: leak the rest */
                break;
            }
            if (ev.h.flags & DE_HOLE)
                continue;
            dent_note(s, &ev, holder);
            if (ev.h.flags & (DE_KOUT | DE_VOUT)) {
                ent_free_blocks(t, &ev);
                n++;
            }
        }
        rc = tx_commit(t);
    }
    return rc;
}

int dict_clear(TX *t, dict_hdr *d)
{
    u64 *index = (u64 *)(uintptr_t)d->index;
    for (u64 w = 0; w * 8 < 8 * d->iw; w++) /* the 8 slots that stay */
        if (index[w])
            W(t, &index[w], 0);
    W(t, &d->cap, 8);
    W(t, &d->count, 0);
    W(t, &d->nent, 0);
    W(t, &d->aused, 0);
    return t->corrupt ? -1 : 0;
}

int dict_shrink(TX *t, dict_hdr *d)
{
    heap_region *r = t->r;
    u64 io = live_offset(r, d->index), ao = live_offset(r, d->area);
    if (!io || !ao)
        return tx_bad(t, "Dict parts are not live allocations"), -1;
    /* shrinking in place never allocates (tx_realloc splits the tail off) */
    if (tx_realloc(t, io, 8 * d->iw) != io || tx_realloc(t, ao, 64) != ao)
        return tx_bad(t, "Dict parts did not shrink in place"), -1;
    W(t, &d->abytes, 64);
    return 0;
}

/* The walk behind dict_check(); bounds-checked so that read-only mode can
 * run it optimistically under hseq. */
const char *dict_check_walk(const heap_region *r, dict_hdr *d, u64 *live_out)
{
    dict_geom g;
    dict_ent_view ev, fv;
    u64 live = 0, nent = 0, off = 0, holder = (u64)(uintptr_t)d;
    *live_out = 0;
    const char *bad = parts_bad(r, d, &g);
    if (bad)
        return bad;
    for (; off < g.aused; off += ev.size) {
        if (dent_view(r, &g, off, &ev))
            return "entry out of bounds";
        nent++;
        if (ev.h.flags & DE_HOLE)
            continue;
        live++;
        u64 b;
        if ((ev.h.flags & DE_KOUT) &&
            (!(b = live_offset(r, (u64)(uintptr_t)ev.k - 8)) || usable_at(r, b) < 8 + ev.kn))
            return "key block is not a live allocation";
        if ((ev.h.flags & DE_VOUT) &&
            (!(b = live_offset(r, (u64)(uintptr_t)ev.v - 8)) || usable_at(r, b) < 8 + ev.vn))
            return "value block is not a live allocation";
        heap_key k = {ev.h.ktype, ev.k, ev.kn, ent_hash(&ev)};
        if (ev.h.tag != tag_of(k.hash))
            return "stored hash bits do not match key";
        int torn;
        if (dict_find_in(r, &g, &k, &torn, &fv, NULL) != ev.at)
            return "entry is not reachable from the index";
        int vt;
        u64 a, *pw;
        if (T_IS_REF(ev.h.vtype) && !dent_ref(&ev, &vt, &a))
            return "container value of the wrong length";
        if (T_IS_REF(ev.h.vtype) && !(pw = ref_parent_word(r, vt, a)))
            return "container value is not a live container of its kind";
        if (T_IS_REF(ev.h.vtype) && ld(pw) != holder)
            return "container value belongs to another parent";
    }
    u64 used = 0;
    for (u64 i = 0; i < g.cap; i++)
        used += slot_get(g.index, g.iw, i) != 0;
    *live_out = live;
    if (live != ld(&d->count))
        return "count is wrong";
    if (nent != ld(&d->nent) || used != nent)
        return "nent is wrong";
    if (ld(&d->seq) & 1)
        return "seq is odd outside a write";
    return NULL;
}

/* ---- bulk load ---- */

typedef struct {
    u64 off; /* old entry's offset (replaced keys), sort key */
    u64 vi;  /* index of its final value */
} repl_rec;

static int repl_cmp(const void *a, const void *b)
{
    u64 x = ((const repl_rec *)a)->off, y = ((const repl_rec *)b)->off;
    return x < y ? -1 : x > y;
}

static int key_eq(const heap_key *a, const heap_key *b)
{
    return a->hash == b->hash && a->type == b->type && a->n == b->n && !memcmp(a->p, b->p, (size_t)a->n);
}

/* The n pairs, resolved: for each distinct key, in order of first
 * occurrence, the index of its last value (as dict.update does).  first[]
 * gets the distinct keys' indexes, last[i] the final value index of key i.
 * Returns the number of distinct keys, or -1 when out of memory. */
static long long dedupe(u64 n, const heap_key *k, u64 *first, u64 *last)
{
    u64 cap = cap_for(n), mask = cap - 1, nd = 0;
    u64 *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return -1;
    for (u64 i = 0; i < n; i++) {
        u64 j = k[i].hash & mask;
        for (; tab[j]; j = (j + 1) & mask)
            if (key_eq(&k[tab[j] - 1], &k[i]))
                break;
        if (tab[j]) {
            last[tab[j] - 1] = i;
        } else {
            tab[j] = i + 1;
            last[i] = i;
            first[nd++] = i;
        }
    }
    free(tab);
    return (long long)nd;
}

int dict_load(TX *t, dict_hdr *d, u64 n, const heap_key *k, const heap_key *v, refstack *dead,
              u64 holder, u64 *gone, u64 *ngone, dict_freed *fr)
{
    if (fr)
        fr->n = 0;
    heap_region *r = t->r;
    *ngone = 0;
    int rc = DICT_OOM;
    u64 *first = malloc(n * sizeof *first), *last = malloc(n * sizeof *last);
    u64 *newk = malloc(n * sizeof *newk), *bs = malloc(4 * n * sizeof *bs), *bo = bs + 2 * n;
    repl_rec *repl = malloc(n * sizeof *repl);
    long long nd = first && last && newk && bs && repl ? dedupe(n, k, first, last) : -1;
    if (nd < 0)
        goto out;
    /* Which distinct keys the Dict holds already (they keep their place). */
    dict_geom g;
    dict_ent_view ev;
    rc = DICT_CORRUPT;
    if (dict_geom_read(r, d, &g))
        goto out;
    u64 nrepl = 0, nnew = 0, nblk = 0;
    for (long long j = 0; j < nd; j++) {
        u64 i = first[j];
        int bad;
        if (dict_find_in(r, &g, &k[i], &bad, &ev, NULL)) {
            repl[nrepl].off = ev.off;
            repl[nrepl++].vi = last[i];
        } else if (bad) {
            goto out;
        } else {
            newk[nnew++] = i;
        }
    }
    qsort(repl, nrepl, sizeof *repl, repl_cmp);
    /* Sizes: the live entries (re-written where replaced), then the new. */
    u64 bytes = 0, live = 0, ri = 0;
    for (u64 off = 0; off < g.aused; off += ev.size) {
        if (dent_view(r, &g, off, &ev))
            goto out;
        if (ev.h.flags & DE_HOLE)
            continue;
        live++;
        if (ri < nrepl && repl[ri].off == off) {
            const heap_key *nv = &v[repl[ri++].vi];
            bytes += 8 + R8(ev.h.flags & DE_KOUT ? 8 : ev.kn) +
                     (nv->n > DE_VAL_INLINE_MAX || nv->n == 0 ? 8 : R8(nv->n));
            if (nv->n > DE_VAL_INLINE_MAX)
                bs[nblk++] = 8 + nv->n;
        } else {
            bytes += ev.size;
        }
    }
    if (ri != nrepl || live != d->count) {
        tx_bad(t, "Dict count is wrong");
        goto out;
    }
    for (u64 j = 0; j < nnew; j++) {
        const heap_key *nk = &k[newk[j]], *nv = &v[last[newk[j]]];
        bytes += fresh_size(nk, nv);
        int fb = fresh_blocks(nk, nv);
        if (fb & 1)
            bs[nblk++] = 8 + nk->n;
        if (fb & 2)
            bs[nblk++] = 8 + nv->n;
    }
    /* Fresh parts, so that the log does not grow with n: index, area, and
     * one run of blocks for the out-of-line keys and values. */
    u64 cap = cap_for(live + nnew), abytes = area_for(bytes), iw, obits;
    shape_for(abytes, &obits, &iw);
    if (cap > (r->size >> 1) / iw || abytes > r->size) {
        t->want = r->size;
        rc = DICT_TABLE_NOMEM;
        goto out;
    }
    u64 io = tx_alloc(t, cap * iw, 16), ao = io ? tx_alloc(t, abytes, 16) : 0;
    if (!ao || (nblk && tx_alloc_run(t, bs, nblk, bo) < 0)) {
        rc = t->corrupt ? DICT_CORRUPT : DICT_TABLE_NOMEM;
        goto out;
    }
    u64 index = abs_of(r, io), area = abs_of(r, ao), pos = 0, bi = 0;
    memset((void *)(uintptr_t)index, 0, cap * iw);
    ri = 0;
    for (u64 off = 0; off < g.aused; off += ev.size) {
        dent_view(r, &g, off, &ev); /* checked above */
        if (ev.h.flags & DE_HOLE)
            continue;
        u64 h = ent_hash(&ev);
        index_place(index, iw, cap, h, slot_of(iw, obits, h, pos));
        if (ri < nrepl && repl[ri].off == off) {
            const heap_key *nv = &v[repl[ri++].vi];
            heap_key nk = {ev.h.ktype, ev.k, ev.kn, h};
            u64 kb = ev.h.flags & DE_KOUT ? (u64)(uintptr_t)ev.k - 8 : 0;
            u64 vb = nv->n > DE_VAL_INLINE_MAX ? abs_of(r, bo[bi++]) : 0;
            if (vb)
                block_fill(vb, nv->p, nv->n);
            dent_note(dead, &ev, holder);
            if (ev.h.flags & DE_VOUT)
                gone[(*ngone)++] = (u64)(uintptr_t)ev.v - 8;
            pos += ent_write(area + pos, &nk, nv, kb, vb);
        } else {
            pos += ent_copy(area + pos, &ev);
        }
    }
    for (u64 j = 0; j < nnew; j++) {
        const heap_key *nk = &k[newk[j]], *nv = &v[last[newk[j]]];
        int fb = fresh_blocks(nk, nv);
        u64 kb = fb & 1 ? abs_of(r, bo[bi++]) : 0, vb = fb & 2 ? abs_of(r, bo[bi++]) : 0;
        if (kb)
            block_fill(kb, nk->p, nk->n);
        if (vb)
            block_fill(vb, nv->p, nv->n);
        index_place(index, iw, cap, nk->hash, slot_of(iw, obits, nk->hash, pos));
        pos += ent_write(area + pos, nk, nv, kb, vb);
    }
    W(t, &d->index, index);
    W(t, &d->cap, cap);
    W(t, &d->iw, iw);
    W(t, &d->obits, obits);
    W(t, &d->area, area);
    W(t, &d->abytes, abytes);
    W(t, &d->aused, pos);
    W(t, &d->nent, live + nnew);
    W(t, &d->count, live + nnew);
    note_freed(r, fr, g.index);
    note_freed(r, fr, g.area);
    free_abs(t, g.index);
    free_abs(t, g.area);
    rc = t->corrupt ? DICT_CORRUPT : DICT_OK;
out:
    free(first);
    free(last);
    free(newk);
    free(bs);
    free(repl);
    return rc;
}
