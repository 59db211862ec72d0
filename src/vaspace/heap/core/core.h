/*
 * core.h -- the heap's Python-free core: what a caller needs to run
 * crash-consistent operations on a region formatted by format_region().
 *
 *   region.c   format and validate the header; named-root lookup
 *   undo.c     the undo log: W() (logged store), commit, rollback, recover
 *   alloc.c    the allocator (segregated free lists, boundary tags, bitmap)
 *              and the heap-wide consistency walk behind check()
 *   lock.c     the robust process-shared mutex: waiting, dead owners, debris
 *   seqlock.c  lock-free readers: wait for an even sequence count
 *   durable.c  flush(): msync in the order a power loss needs
 *   dict.c     Dict, compact: an index into a dense entry area; growth, rebuild, walks
 *   array.c    Array: header checks and resizing
 *   list.c     List: an items block of value-entry addresses
 *   own.c      containers as values: parent words, destroying what is owned
 *   lane.c     update lanes: an in-place Dict SET under its key's lane only
 *
 * The rules every operation follows (docs/heap.md has the argument):
 *   - One robust mutex serialises writers (lock.c), except in-place Dict
 *     overwrites, which take only their key's lane (lane.c) and which every
 *     heap-mutex taker excludes first.
 *   - A store to state reachable from the committed heap goes through W(),
 *     which first appends (offset, old value) to the undo log in the header.
 *     Clearing the log count is the commit point; a process that finds the
 *     mutex abandoned rolls the log back, newest first.
 *   - Memory that was free when the operation began needs no log: rollback
 *     turns it back into free space.  Frees are therefore deferred to commit.
 *   - Containers carry a seqlock; readers never write and validate every
 *     pointer they follow (in_arena), so a torn read retries, never faults.
 *
 * Nothing here raises or allocates Python objects: failures come back as
 * return codes and TX.corrupt / TX.overflow, and the bindings (_heapcore.c)
 * turn them into exceptions.
 */
#ifndef VASPACE_HEAP_CORE_H
#define VASPACE_HEAP_CORE_H

#include "layout.h"

#include <stddef.h>
#include <string.h>

/* The geometry of one opened region, validated once at open and kept in
 * process memory: a co-writer that overwrites these header words later
 * cannot steer this process's accesses outside the region. */
typedef struct {
    char *base;
    u64 size;
    heap_header *h;
    u64 boff, aoff, aend; /* bitmap offset, arena start and end */
} heap_region;

/* Per-operation state (process-local, on the C stack). */
typedef struct {
    char *base;
    heap_header *h;
    heap_region *r;
    int overflow;
    const char *corrupt; /* first inconsistency found; the operation rolls back */
    u64 scratch;         /* target of accesses that U() refused */
    int ndefer;
    u64 defer[DEFER_MAX];
    u64 *seq; /* container seq made odd by this operation, or NULL */
    u64 want; /* bytes of free block the last failed tx_alloc needed, or 0 */
} TX;

static inline void compiler_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* Order every earlier store before every later one, as the undo log and the
 * seqlock writers need (the log entry before the count that covers it, the
 * count before the store it protects, an odd seq before the data).  A
 * release fence is enough for that: no writer path needs a store ordered
 * before a later load.  On x86 (TSO, where stores already become visible in
 * program order, and a killed process's retired stores still drain in that
 * order) it compiles to nothing but a compiler barrier, where
 * compiler_fence()'s full fence is an mfence: two of those per logged store
 * were a sixth of a Dict SET's time. */
static inline void store_fence(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }

static inline u64 ld(const u64 *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* Absolute address of region offset off. */
static inline u64 abs_of(const heap_region *r, u64 off) { return (u64)(uintptr_t)r->base + off; }

/* [a, a+n) inside the arena?  Works on absolute addresses. */
static inline int in_arena(const heap_region *r, u64 a, u64 n)
{
    u64 lo = (u64)(uintptr_t)r->base + r->aoff;
    u64 hi = (u64)(uintptr_t)r->base + r->aend;
    return a >= lo && a <= hi && n <= hi - a;
}

/* Record the first inconsistency of an operation; returns 0 for use in
 * conditions.  A corrupt operation stops writing and rolls back. */
static inline int tx_bad(TX *t, const char *why)
{
    if (!t->corrupt)
        t->corrupt = why;
    return 0;
}

#define BSIZE(v) ((v) & ~FLAGS)

/* ---- region.c ---- */
u64 hdr_bytes(void);
/* Smallest region format_region() accepts. */
u64 region_min_bytes(void);
/* Format size bytes at base (page aligned, at least region_min_bytes()),
 * in the boot whose tag is boot (odd; see lock_adopt and durable.c).
 * Returns 0, or an errno from initialising the mutex. */
int format_region(char *base, u64 size, u64 boot);
/* Initialise m as the heap mutex: process-shared, robust, error-checking. */
int lock_init(pthread_mutex_t *m);
/* Check every header field of the region at base.  Returns 0, or -1 with a
 * message in msg[0..n). */
int validate_header(char *base, u64 size, char *msg, size_t n);
/* Fill r from a header validate_header() (or format_region()) accepted. */
void region_open(heap_region *r, char *base, u64 size);
/* Index of the root named s (n bytes), or -1. */
int root_find(heap_header *h, const char *s, size_t n);

/* ---- undo.c ---- */
/* Fault injection for tests: when non-zero, the process _exit()s at the
 * crash_countdown-th crash point inside W() (process-local). */
extern unsigned long crash_countdown;
void W(TX *t, u64 *p, u64 v);
/* Log words [p, p+nwords) of the bitmap, all zero now, as "zero on rollback". */
void W_zero_range(TX *t, u64 *p, u64 nwords);
void rollback(heap_region *r);
void recover(heap_region *r);
void tx_init(TX *t, heap_region *r);
void tx_begin_seq(TX *t, u64 *seq);
void tx_end_seq(TX *t);
void tx_abort(TX *t);
/* Run deferred frees, then clear the log (the commit point).  0, or -1 when
 * the operation overflowed the log or met corruption: it was rolled back
 * instead, and t->corrupt (or t->overflow) says why. */
int tx_commit(TX *t);

/* ---- alloc.c ---- */
int bin_of(u64 sz);
u64 tx_alloc(TX *t, u64 usize, u64 align);
void tx_free_now(TX *t, u64 uoff);
void tx_free(TX *t, u64 uoff);
u64 tx_realloc(TX *t, u64 uoff, u64 usize);
/* n allocations of usize[i] bytes in one run of adjacent blocks; their
 * offsets go to uoff[i].  Its log does not grow with n (one block is taken
 * from the free lists, then carved).  0, or -1 when full (t->want) or corrupt. */
int tx_alloc_run(TX *t, const u64 *usize, u64 n, u64 *uoff);
u64 live_offset(const heap_region *r, u64 abs);
u64 usable_at(const heap_region *r, u64 uoff);
/* Size of the largest free block (0 if none); bounds-checked, so a torn
 * read-only snapshot is safe. */
u64 largest_free(const heap_region *r);
/* The block size an allocation of usize bytes takes (header included). */
static inline u64 block_bytes(u64 usize)
{
    u64 need = (usize + 16 + 15) & ~15ULL;
    return need < MIN_BLOCK ? MIN_BLOCK : need;
}
const char *heap_check_walk(const heap_region *r, u64 *where_out, u64 *nalloc_out);
/* Pages of a freed block below this many bytes are not given back. */
#define RELEASE_MIN (64ULL << 10)
/* After the commit that freed the allocation at uoff (usable bytes), under
 * the lock: give its inner pages back to the file (MADV_REMOVE). */
void release_pages(const heap_region *r, u64 uoff, u64 usable);

/* ---- lock.c ---- */
#define LOCK_VANISHED (-1000)     /* the lock word names no live thread */
#define LOCK_INCONSISTENT (-1001) /* pthread_mutex_consistent failed */
/* Record the lock type word format_region() produces; 0 or an errno. */
int lock_kind_init(void);
/* Is the lock's type word still the one format_region() wrote? */
int lock_kind_ok(heap_header *h);
/* pthread_mutex_trylock, then a bounded spin while the lock is busy (for a
 * holder that is running: operations last about a microsecond).  Returns
 * the last trylock's result: EBUSY when the caller must block (lock_wait). */
#define LOCK_SPINS 1000
int lock_take(heap_header *h);
/* The same on any heap mutex (a lane's). */
int mutex_take(pthread_mutex_t *m);
/* Block until the lock is ours; the caller releases the GIL around it. */
int lock_wait(heap_header *h);
/* The same on any heap mutex of the heap at base. */
int mutex_wait(pthread_mutex_t *m, uintptr_t base);
int mutex_kind_ok(pthread_mutex_t *m);
/* After pthread_mutex_trylock/lock_wait returned rc: on success mark the
 * heap busy for lock-free readers and recover what a dead owner (or a
 * region copied mid-operation) left.  Returns 0 (held), 1 (held, recovered)
 * or a failure code (not held): rc itself, or LOCK_INCONSISTENT. */
int lock_settle(heap_region *r, int rc);
void lock_release(heap_region *r);
/* At open, before the lock is first used: initialise the mutex again if it
 * was initialised in another boot (tag: this boot's, odd).  0 or an errno. */
int lock_adopt(heap_region *r, u64 tag);

/* ---- seqlock.c ---- */
#define SPIN_YIELD_AFTER 64
#define SPIN_LOCK_AFTER 2000
#define READ_ATTEMPTS 200
double mono_now(void);
int seq_begin(const u64 *seq, u64 *out, double *deadline, double timeout);

static inline int seq_retry(const u64 *seq, u64 s)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(seq, __ATOMIC_RELAXED) != s;
}

/* ---- durable.c ---- */
/* Under the lock, before the first store of a write: mark the header as
 * written since the last flush (tag: this boot's, non-zero) and make the
 * mark durable.  0 or an errno (msync: the mark is set either way). */
int durable_mark(heap_region *r, u64 tag);
/* Under the lock: every page to the file, then the mark cleared, durably.
 * 0 or an errno. */
int durable_flush(heap_region *r);
/* After unlocking: the header page once more, so that the file's lock word
 * is free (best effort: another process may have taken the lock). */
int durable_settle(heap_region *r);

/* ---- dict.c ---- */
typedef struct refstack refstack;
/* An encoded key or value: bytes plus a type tag (and, for keys, the hash). */
typedef struct {
    int type;
    const char *p;
    u64 n;
    u64 hash;
} heap_key;

u64 key_hash(int type, const char *p, size_t n);
/* Under the lock: NULL if d is a sound Dict header, else what is wrong
 * (DICT_NOT_A_DICT when the magic is gone). */
extern const char DICT_NOT_A_DICT[];
const char *dict_bad(const heap_region *r, dict_hdr *d);

/* A Dict's geometry, read once (relaxed loads) and checked against the
 * arena: what a lock-free reader probes with. */
typedef struct {
    u64 cap, index, iw, obits, area, abytes, aused;
} dict_geom;
/* 0, or 1 when the header's words are out of bounds (torn or corrupt). */
int dict_geom_read(const heap_region *r, const dict_hdr *d, dict_geom *g);

/* One entry, decoded and bounds-checked: key and value bytes (inline, or
 * in their own blocks). */
typedef struct {
    u64 at, off, size; /* absolute address, offset in the area, bytes */
    dict_ent h;
    u64 vroom_at; /* absolute address of the value room */
    const char *k, *v;
    u64 kn, vn;
} dict_ent_view;
/* The entry at area offset off: 0, or 1 when out of bounds. */
int dent_view(const heap_region *r, const dict_geom *g, u64 off, dict_ent_view *ev);
/* Does the entry hold a container?  Gives kind and address. */
int dent_ref(const dict_ent_view *ev, int *vtype, u64 *addr);

/* Probe for k: the live entry's absolute address (ev filled), or 0.  *bad
 * is set when an offset or length is out of bounds (torn read, or
 * corruption).  slot_out (if not NULL) gets the empty slot that ended a
 * failed probe.  Read-only: safe for lock-free readers. */
u64 dict_find_in(const heap_region *r, const dict_geom *g, const heap_key *k, int *bad,
                 dict_ent_view *ev, u64 *slot_out);
u64 dict_find(const heap_region *r, dict_hdr *d, const heap_key *k, int *bad, dict_ent_view *ev);
/* Ask the CPU to fetch the index slot a probe for hash starts at, so that
 * its cache miss overlaps the work before the probe (a hint: never faults). */
void dict_prefetch(const heap_region *r, const dict_hdr *d, u64 hash);
/* The large blocks (old index, old area) an operation freed at commit,
 * whose pages the caller gives back after the commit (release_pages). */
typedef struct {
    int n;
    u64 off[2], len[2];
} dict_freed;
/* Results of dict_put and dict_load. */
enum {
    DICT_OK = 0,
    DICT_NOMEM = 1,
    DICT_CORRUPT = 2,
    DICT_TABLE_FULL = 3,
    DICT_TABLE_NOMEM = 4,
    DICT_OOM = 5 /* process memory (dict_load's scratch) */
};
/* Under the lock, inside t with d's seq made odd: store k -> v.  A key
 * already present keeps its entry, so its place in the order.  A container
 * the key held is pushed on dead (if not NULL) with holder.  When the heap
 * is full (DICT_NOMEM for an out-of-line block, DICT_TABLE_NOMEM for a
 * rebuilt index or area) t->want says how large a free block was needed;
 * the caller rolls t back, so the Dict is never left half-grown. */
int dict_put(TX *t, dict_hdr *d, const heap_key *k, const heap_key *v, refstack *dead,
             u64 holder, dict_freed *fr);
/* Under the lock, inside t with d's seq odd: store n pairs k[i] -> v[i]
 * (a repeated key: its last value, at its first place) in one operation
 * whose undo log does not grow with n: a fresh index, a fresh area holding
 * the live entries and the new ones, one run of out-of-line blocks, then
 * eight logged header words.  Containers the replaced values held go on
 * dead; gone (n words) gets the *ngone value blocks they owned, which the
 * caller frees after commit, in small transactions. */
int dict_load(TX *t, dict_hdr *d, u64 n, const heap_key *k, const heap_key *v, refstack *dead,
              u64 holder, u64 *gone, u64 *ngone, dict_freed *fr);
/* After commit: release_pages() for each block fr lists. */
void dict_release(const heap_region *r, const dict_freed *fr);
/* Under the lock, inside t with d's seq odd: make the entry a hole (its
 * blocks are freed at commit).  The caller handles a container value. */
void dict_remove(TX *t, dict_hdr *d, const dict_ent_view *ev);
/* Under the lock, inside t: a new empty Dict with room for about nkeys
 * keys; its region offset, or 0 when the heap is full. */
u64 dict_create(TX *t, u64 nkeys);
/* Inside t with d's seq odd: empty d without allocating (index down to 8
 * slots, area emptied); the old entries stay in the area's bytes for
 * dict_free_values.  0 or -1 (corrupt). */
int dict_clear(TX *t, dict_hdr *d);
/* Inside t, after dict_clear committed: give the index's and the area's
 * tails back (in place).  0 or -1. */
int dict_shrink(TX *t, dict_hdr *d);
/* Under the lock, outside a transaction, after the entries in area[0,
 * aused) were made unreachable by a committed operation: free their
 * out-of-line blocks in small transactions (a crash between them leaks,
 * never corrupts) and push the containers they hold on s. */
int dict_free_values(TX *t, u64 area, u64 aused, refstack *s, u64 holder);
const char *dict_check_walk(const heap_region *r, dict_hdr *d, u64 *live_out);

/* A growable process-local byte buffer: container data is copied out into
 * it while the heap is locked (or under a seqlock read), and Python objects
 * are built from the copy afterwards. */
typedef struct {
    char *p;
    size_t n, cap;
    char stack[256];
} copybuf;

void cb_init(copybuf *b);
void cb_free(copybuf *b);
int cb_put(copybuf *b, const void *src, size_t n);
#define CB_HEAD 18
/* Copy the entry at absolute address e (key and/or value, per which: 0
 * keys, 1 values, 2 both) as {u8 ktype, u8 vtype, u32 klen, u32 vlen, u64
 * order, bytes}, CB_HEAD bytes of head.  Bounds-checked, for readers of a
 * possibly torn snapshot: 0, -1 out of memory, 1 out of bounds. */
int cb_copy_entry(const heap_region *r, copybuf *b, u64 e, int which);

static inline u64 entry_order(const dict_entry *en)
{
    return (u64)en->order_hi << 32 | en->order_lo;
}

static inline void entry_set_order(dict_entry *en, u64 o)
{
    en->order_hi = (u16)(o >> 32);
    en->order_lo = (u32)o;
}
/* Copy every live entry into buf as {u8 ktype, u8 vtype, u32 klen, u32 vlen,
 * u64 order, bytes} (which: 0 keys, 1 values, 2 both).  0, -1 out of memory, 1 torn
 * read or corruption. */
int dict_copy_entries(const heap_region *r, dict_hdr *d, int which, copybuf *buf);

/* ---- array.c ---- */
#define ITEMSIZE_MAX (1 << 20)
extern const char ARRAY_NOT_AN_ARRAY[];
const char *array_fields_bad(const heap_region *r, u64 data, u64 len, u64 cap, u64 isz);
const char *array_bad(const heap_region *r, array_hdr *a);
/* Under the lock, inside t, on a header array_bad() accepted: set len to n,
 * growing (moving) the data if needed; new items are zero.  0, or -1 when
 * the heap is full or corrupt (t->corrupt). */
int array_setlen(TX *t, array_hdr *a, u64 n, int exact);
/* Under the lock, inside t: a new empty Array of itemsize-byte items whose
 * dtype string is dtype[0..dtlen) (dtlen < 32); its offset, or 0 when full. */
u64 array_create(TX *t, u64 itemsize, const char *dtype, size_t dtlen);

/* ---- list.c ---- */
/* Write value entry k -> v (k empty for List items) with stamp order at
 * region offset eo (fresh memory). */
void entry_fill(heap_region *r, u64 eo, const heap_key *k, const heap_key *v, u64 order);
/* Under the lock, inside t: a fresh value entry holding k (may be empty)
 * and v; its region offset, or 0 when the heap is full. */
u64 entry_alloc(TX *t, const heap_key *k, const heap_key *v, u64 order);
extern const char LIST_NOT_A_LIST[];
/* Under the lock: NULL if l is a sound List header, else what is wrong. */
const char *list_bad(const heap_region *r, list_hdr *l);
/* Under the lock, inside t: a new empty List; its region offset or 0. */
u64 list_create(TX *t);
/* Under the lock, inside t with l's seq odd: put the entry at absolute
 * address e at index i (0..len).  0, or -1 when the heap is full. */
int list_insert(TX *t, list_hdr *l, u64 i, u64 e);
/* Under the lock, inside t with l's seq odd: append n values in one
 * operation whose undo log does not grow with n (a run of fresh entries,
 * tx_alloc_run; a fresh items block if the List must grow).  scratch holds
 * 2n words.  0, or -1 when the heap is full (t->want) or corrupt. */
int list_load(TX *t, list_hdr *l, u64 n, const heap_key *v, u64 *scratch);
/* ... take item i (< len) out; returns its entry address (not freed), or 0
 * when the heap is full (a middle item of a long list needs a new block). */
u64 list_remove(TX *t, list_hdr *l, u64 i);
/* Free the entries of items[0..len) in small transactions (see
 * dict_free_entries); containers they hold are pushed on s. */
int list_free_entries(TX *t, u64 items, u64 len, refstack *s, u64 holder);
/* Reader: copy items [start, stop) as values (cb_copy_entry, which 1).  0,
 * -1 out of memory, 1 torn or corrupt, 2 index out of range. */
int list_copy_range(const heap_region *r, list_hdr *l, u64 start, u64 stop, copybuf *buf);

/* ---- own.c ---- */
enum { REF_OK = 0, REF_NOT_LIVE = 1, REF_HAS_PARENT = 2, REF_CYCLE = 3 };
/* T_DICT/T_ARRAY/T_LIST for a container magic, else -1. */
int ref_kind_of_magic(u64 magic);
const char *ref_kind_name(int kind);
/* The parent word of the live container of kind vtype at addr, or NULL. */
u64 *ref_parent_word(const heap_region *r, int vtype, u64 addr);
/* Inside t: make child (kind vtype) a value held by holder: REF_OK, or why
 * not (it is no live container, has a parent already, or holds holder). */
int ref_adopt(TX *t, u64 holder, int vtype, u64 child);
/* Inside t: if holder owns child, clear its parent word; 1 if it did. */
int ref_release(TX *t, u64 holder, int vtype, u64 child);
/* Does the (bounds-checked) entry hold a container?  Gives kind and address. */
int entry_ref(const heap_region *r, const dict_entry *en, int *vtype, u64 *addr);
/* For check walks: NULL if the entry's container value is live and names
 * holder as its parent, else what is wrong. */
const char *ref_check(const heap_region *r, const dict_entry *en, u64 holder);

/* Containers waiting to be destroyed: (kind, address, holder) triples. */
struct refstack {
    u64 *v;
    size_t n, cap;
    int nomem; /* a push failed: that child leaks (never freed twice) */
};
void rs_init(refstack *s);
void rs_free(refstack *s);
void rs_push(refstack *s, int vtype, u64 addr, u64 holder);
/* Push the container the entry at absolute address entry holds, if any. */
void rs_note(refstack *s, const heap_region *r, u64 entry, u64 holder);
/* Has this process numpy views of the Array at hdr?  (From the bindings.) */
typedef int (*array_pinned_fn)(u64 hdr);
/* Under the lock, outside any transaction: destroy every container on s
 * that its holder still owns, and all they own, in small transactions (a
 * crash between them leaks, never corrupts).  An Array pinned by numpy
 * views is detached instead.  0, or -1 (t->corrupt / t->overflow). */
int destroy_owned(TX *t, refstack *s, array_pinned_fn pinned);

/* ---- lane.c ---- */
/* The lane of a key's hash (bits the Dict index's probe does not start from). */
static inline int lane_of(u64 hash) { return (int)((hash >> 40) & (NLANES - 1)); }
/* Take lane i's mutex: 0 (held), 1 (held, a dead holder's update rolled
 * back), EBUSY (stayed busy through the spin: use the heap mutex), or a
 * failure code (not held). */
int lane_take(heap_region *r, int i);
void lane_release(heap_region *r, int i);
/* Roll lane l's log back and give its seq a fresh even value.  Returns 1. */
int lane_recover(heap_region *r, heap_lane *l);
/* Under the heap mutex, hseq just made odd: wait until no lane writer is
 * inside (rolling back dead ones).  0, 1 (something was rolled back) or a
 * failure code (LOCK_VANISHED: a lane's mutex is corrupt). */
int lanes_quiesce(heap_region *r);
/* Under the heap mutex, hseq odd: take every lane's mutex and keep it, for
 * a caller that must make hseq even while it still excludes lane writers
 * (flush).  0, 1 (something was rolled back) or a failure code (none held). */
int lanes_hold(heap_region *r);
/* Release the first n lanes' mutexes (NLANES: all that lanes_hold took). */
void lanes_drop(heap_region *r, int n);
/* May entry ev take value v in place under a lane (inline, no container)? */
int lane_fits(const dict_ent_view *ev, const heap_key *v);
/* Holding lane i, hseq even: store v into ev's value room in place, logged
 * in the lane's log, the lane's seq odd meanwhile. */
void lane_replace(heap_region *r, int i, const dict_ent_view *ev, const heap_key *v);

#endif
