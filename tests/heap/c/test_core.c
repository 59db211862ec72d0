/*
 * test_core.c -- the heap's Python-free core (src/vaspace/heap/core/) on its
 * own: a plain C program, no interpreter, run by tests/heap/test_core_c.py.
 *
 * Each check prints "ok - what" or "not ok - what (file:line)"; the exit
 * status is the number of failed checks (capped), so pytest sees both.
 *
 * The region is an anonymous shared mapping, so a forked child works on the
 * same heap, and a child that _exit()s at a crash point while holding the
 * robust mutex leaves exactly what a SIGKILLed writer leaves.
 */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("ok - %s\n", what);                                                             \
        } else {                                                                                   \
            printf("not ok - %s (%s:%d)\n", what, __FILE__, __LINE__);                             \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define REGION (8u << 20)

static heap_region reg;

static void setup(void)
{
    char *base = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        exit(100);
    }
    char msg[200];
    if (lock_kind_init() != 0 || format_region(base, REGION, 1) != 0 ||
        validate_header(base, REGION, msg, sizeof msg) != 0) {
        fprintf(stderr, "cannot format a heap\n");
        exit(100);
    }
    region_open(&reg, base, REGION);
}

/* Is the whole heap consistent?  Its allocation count, or -1. */
static long long walk(void)
{
    u64 where, nalloc;
    const char *err = heap_check_walk(&reg, &where, &nalloc);
    if (err)
        printf("# heap_check_walk: %s at offset %llu\n", err, (unsigned long long)where);
    return err ? -1 : (long long)nalloc;
}

static int lock(void)
{
    int rc = pthread_mutex_lock(&reg.h->lock);
    return lock_settle(&reg, rc);
}

/* A new empty Dict of 8 slots, committed. */
static dict_hdr *new_dict(void)
{
    TX t;
    tx_init(&t, &reg);
    u64 dh = dict_create(&t, 8);
    CHECK(tx_commit(&t) == 0 && dh, "dict_create");
    return (dict_hdr *)(reg.base + dh);
}

/* ---- allocator ---- */

static void test_alloc_free(void)
{
    u64 used0 = reg.h->used;
    TX t;
    tx_init(&t, &reg);
    u64 a = tx_alloc(&t, 100, 16), b = tx_alloc(&t, 5000, 4096), c = tx_alloc(&t, 1, 16);
    CHECK(tx_commit(&t) == 0, "three allocations commit");
    CHECK(a && b && c && a != b && b != c, "allocations are distinct");
    CHECK((abs_of(&reg, b) & 4095) == 0, "an aligned allocation is aligned");
    CHECK(usable_at(&reg, a) >= 100 && usable_at(&reg, b) >= 5000, "usable sizes cover requests");
    CHECK(live_offset(&reg, abs_of(&reg, a)) == a, "live_offset finds a live allocation");
    CHECK(live_offset(&reg, abs_of(&reg, a) + 16) == 0, "live_offset refuses an interior pointer");
    u64 end = abs_of(&reg, reg.aend);
    CHECK(in_arena(&reg, end - 64, 64) && !in_arena(&reg, end - 64, 65) &&
              !in_arena(&reg, end + 4096, 8) && !in_arena(&reg, UINT64_MAX - 15, 8) &&
              !in_arena(&reg, abs_of(&reg, reg.aoff) - 16, 8),
          "in_arena: exactly the arena");
    CHECK(walk() == 3, "check walk counts three allocations");
    memset(reg.base + a, 0xab, 100);
    tx_init(&t, &reg);
    u64 a2 = tx_realloc(&t, a, 3000);
    CHECK(tx_commit(&t) == 0 && a2, "realloc to a larger size");
    CHECK((unsigned char)reg.base[a2] == 0xab && (unsigned char)reg.base[a2 + 99] == 0xab,
          "realloc keeps the contents");
    tx_init(&t, &reg);
    tx_free(&t, a2);
    tx_free(&t, b);
    tx_free(&t, c);
    CHECK(tx_commit(&t) == 0, "deferred frees commit");
    CHECK(walk() == 0 && reg.h->used == used0, "everything freed, used back to its start");
    CHECK(largest_free(&reg) == reg.aend - 16 - reg.aoff, "frees coalesce into one block");

    tx_init(&t, &reg);
    CHECK(tx_alloc(&t, REGION, 16) == 0 && !t.corrupt, "an allocation larger than the heap fails");
    CHECK(tx_commit(&t) == 0, "a failed allocation commits nothing");
    tx_init(&t, &reg);
    tx_free_now(&t, a2); /* freed above: a double free */
    CHECK(t.corrupt != NULL, "a double free is refused as corruption");
    CHECK(tx_commit(&t) < 0 && walk() == 0, "and rolled back");
}

/* ---- undo log ---- */

static void test_rollback_in_process(void)
{
    long long before = walk();
    u64 used = reg.h->used;
    TX t;
    tx_init(&t, &reg);
    u64 a = tx_alloc(&t, 4000, 16);
    CHECK(a && reg.h->log_count > 0, "an allocation is logged");
    tx_abort(&t);
    CHECK(reg.h->log_count == 0 && reg.h->used == used && walk() == before,
          "tx_abort restores the heap");
}

/* One operation that changes much: an allocation, a realloc, a free, and a
 * Dict insert with its resize.  Run to completion, it commits. */
static void big_op(dict_hdr *d, int i)
{
    char key[32], val[64];
    int kn = snprintf(key, sizeof key, "crash-%d", i);
    int vn = snprintf(val, sizeof val, "value-%d-%s", i, "xxxxxxxxxxxxxxxxxxxx");
    heap_key k = {1, key, (u64)kn, key_hash(1, key, (size_t)kn)};
    heap_key v = {0, val, (u64)vn, 0};
    TX t;
    tx_init(&t, &reg);
    u64 a = tx_alloc(&t, 200, 16);
    u64 b = a ? tx_realloc(&t, a, 3000) : 0;
    if (b)
        tx_free(&t, b);
    tx_begin_seq(&t, &d->seq);
    dict_put(&t, d, &k, &v, NULL, 0, NULL);
    tx_commit(&t);
}

/* A child dies at every crash point of big_op in turn (it holds the robust
 * mutex); the parent's next lock finds EOWNERDEAD and must recover a heap
 * that passes every check, with the operation either whole or absent. */
static void test_recovery_after_death(void)
{
    dict_hdr *d = new_dict();
    int died = 0, bad = 0, completed = 0;
    for (unsigned long n = 1; n < 2000 && !completed; n++) {
        u64 count = d->count, allocs = reg.h->allocations;
        pid_t pid = fork();
        if (pid == 0) {
            crash_countdown = n;
            pthread_mutex_lock(&reg.h->lock);
            big_op(d, (int)count);
            crash_countdown = 0;
            lock_release(&reg);
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            completed = 1;
            continue;
        }
        died++;
        int rc = lock();
        u64 where, live;
        const char *err = heap_check_walk(&reg, &where, &live);
        const char *derr = err ? err : dict_check_walk(&reg, d, &live);
        /* either rolled back (nothing changed) or, when the child died after
         * the commit point, the whole operation is there */
        int whole = d->count == count + 1, none = d->count == count &&
                                                  reg.h->allocations == allocs;
        if (rc != 1 || err || derr || !(whole || none) || (d->seq & 1)) {
            printf("# crash point %lu: settle %d, %s, count %llu -> %llu\n", n, rc,
                   err ? err : derr ? derr : "walks ok", (unsigned long long)count,
                   (unsigned long long)d->count);
            bad++;
        }
        lock_release(&reg);
    }
    printf("# %d crash points\n", died);
    CHECK(died > 20, "the children died at many crash points");
    CHECK(completed, "the operation finally completed");
    CHECK(bad == 0, "every death was recovered to a consistent heap");
    CHECK(reg.h->recoveries >= (u64)died, "every recovery was counted");
}

/* A region copied mid-operation: a non-empty log under a free lock. */
static void test_debris(void)
{
    u64 used = reg.h->used;
    TX t;
    tx_init(&t, &reg);
    CHECK(tx_alloc(&t, 64, 16) != 0, "an allocation left uncommitted");
    /* no commit, no abort: the writer "vanished" without holding the lock */
    CHECK(lock() == 1, "the next lock recovers the debris");
    CHECK(reg.h->log_count == 0 && reg.h->used == used && walk() >= 0, "debris rolled back");
    lock_release(&reg);
}

/* ---- Dict ---- */

static heap_key mk(int type, const char *s, char *store, int i)
{
    int n = snprintf(store, 40, "%s%d", s, i);
    heap_key k = {type, store, (u64)n, key_hash(type, store, (size_t)n)};
    return k;
}

static void test_dict(void)
{
    TX t;
    dict_hdr *d = new_dict();
    u64 dh = (u64)((char *)d - reg.base);
    CHECK(dict_bad(&reg, d) == NULL, "a new Dict is sound");
    char ks[40], vs[40];
    int n = 3000, ok = 1;
    for (int i = 0; i < n && ok; i++) {
        heap_key k = mk(1, "key", ks, i), v = mk(0, "val", vs, i);
        tx_init(&t, &reg);
        tx_begin_seq(&t, &d->seq);
        ok = dict_put(&t, d, &k, &v, NULL, 0, NULL) == DICT_OK && tx_commit(&t) == 0;
    }
    CHECK(ok && d->count == (u64)n, "3000 inserts (index and area grow on the way)");
    CHECK(d->nent * 5 <= d->cap * 4, "the index keeps its load at most 4/5");
    CHECK(d->iw == 4 && d->obits < 32 && (d->abytes / 8 + 1) >> d->obits == 0,
          "4-byte slots: an offset field that reaches the area, and hash bits");
    u64 live;
    CHECK(dict_check_walk(&reg, d, &live) == NULL && live == (u64)n, "dict_check_walk");
    int found = 1, bad;
    dict_ent_view ev;
    for (int i = 0; i < n && found; i++) {
        heap_key k = mk(1, "key", ks, i);
        snprintf(vs, sizeof vs, "val%d", i);
        found = dict_find(&reg, d, &k, &bad, &ev) && !bad && ev.vn == strlen(vs) &&
                memcmp(ev.v, vs, ev.vn) == 0;
    }
    CHECK(found, "every key finds its value");
    heap_key str1 = mk(1, "key", ks, 1), bytes1 = mk(0, "key", vs, 1);
    CHECK(!dict_find(&reg, d, &bytes1, &bad, &ev) && !bad,
          "a bytes key is not the str key with the same bytes");
    /* replace one value: shorter (in place), then longer than its room (a
     * block of its own); the entry keeps its place in the area */
    u64 at = dict_find(&reg, d, &str1, &bad, &ev);
    char longer[300];
    memset(longer, 'L', sizeof longer);
    heap_key nv = {0, "new", 3, 0}, lv = {0, longer, sizeof longer, 0};
    tx_init(&t, &reg);
    tx_begin_seq(&t, &d->seq);
    CHECK(dict_put(&t, d, &str1, &nv, NULL, 0, NULL) == DICT_OK && tx_commit(&t) == 0 &&
              d->count == (u64)n && dict_find(&reg, d, &str1, &bad, &ev) == at && ev.vn == 3,
          "a put on an existing key replaces its value in place");
    tx_init(&t, &reg);
    tx_begin_seq(&t, &d->seq);
    CHECK(dict_put(&t, d, &str1, &lv, NULL, 0, NULL) == DICT_OK && tx_commit(&t) == 0 &&
              dict_find(&reg, d, &str1, &bad, &ev) == at && (ev.h.flags & DE_VOUT) &&
              ev.vn == sizeof longer && memcmp(ev.v, longer, sizeof longer) == 0,
          "a longer value goes out of line, the entry keeps its place");
    /* remove half */
    for (int i = 0; i < n; i += 2) {
        heap_key k = mk(1, "key", ks, i);
        tx_init(&t, &reg);
        tx_begin_seq(&t, &d->seq);
        if (dict_find(&reg, d, &k, &bad, &ev))
            dict_remove(&t, d, &ev);
        tx_commit(&t);
    }
    CHECK(d->count == (u64)n / 2 && d->nent == (u64)n, "half removed: holes stay");
    CHECK(dict_check_walk(&reg, d, &live) == NULL && live == (u64)n / 2, "still sound");
    copybuf buf;
    cb_init(&buf);
    CHECK(dict_copy_entries(&reg, d, 2, &buf) == 0, "dict_copy_entries");
    size_t pos = 0, items = 0;
    int in_order = 1;
    while (pos < buf.n) {
        u32 kl, vl;
        memcpy(&kl, buf.p + pos + 2, 4);
        memcpy(&vl, buf.p + pos + 6, 4);
        snprintf(ks, sizeof ks, "key%d", (int)(2 * items + 1));
        in_order &= kl == strlen(ks) && memcmp(buf.p + pos + CB_HEAD, ks, kl) == 0;
        pos += CB_HEAD + kl + vl;
        items++;
    }
    CHECK(pos == buf.n && items == (size_t)n / 2, "the copy holds every live entry");
    CHECK(in_order, "the copy is in insertion order (no sort)");
    cb_free(&buf);
    u64 index = d->index, area = d->area, aused = d->aused;
    tx_init(&t, &reg);
    tx_begin_seq(&t, &d->seq);
    W(&t, &d->magic, 0);
    CHECK(tx_commit(&t) == 0 && dict_bad(&reg, d) == DICT_NOT_A_DICT, "destroyed: not a Dict");
    CHECK(dict_free_values(&t, area, aused, NULL, 0) == 0, "its value blocks are freed in batches");
    tx_init(&t, &reg);
    tx_free(&t, index - (u64)(uintptr_t)reg.base);
    tx_free(&t, area - (u64)(uintptr_t)reg.base);
    tx_free(&t, dh);
    CHECK(tx_commit(&t) == 0 && walk() >= 0, "and the heap is sound afterwards");
}

/* dict_load: n pairs in one operation.  Rolled back, the heap is exactly
 * as before (bytes of the header's allocator state and of the bitmap);
 * committed, every key is found and the walks pass. */
static void test_dict_load(void)
{
    enum { N = 5000 };
    static heap_key k[N], v[N];
    static char ks[N][40], vs[N][40];
    static u64 gone[N];
    dict_hdr *d = new_dict();
    for (int i = 0; i < N; i++) {
        k[i] = mk(1, "bulk", ks[i], i);
        v[i] = mk(0, "value", vs[i], i);
    }
    long long before = walk();
    size_t bm_bytes = reg.aoff - reg.boff;
    char *bm_copy = malloc(bm_bytes);
    memcpy(bm_copy, reg.base + reg.boff, bm_bytes);
    u64 used = reg.h->used, cap = d->cap;
    TX t;
    u64 ngone;
    tx_init(&t, &reg);
    tx_begin_seq(&t, &d->seq);
    CHECK(dict_load(&t, d, N, k, v, NULL, 0, gone, &ngone, NULL) == DICT_OK && ngone == 0,
          "dict_load of 5000 new keys");
    CHECK(reg.h->log_count < 64, "its undo log stays short");
    tx_abort(&t);
    CHECK(walk() == before && reg.h->used == used && d->cap == cap && d->count == 0,
          "rolled back: the heap is as before");
    CHECK(memcmp(bm_copy, reg.base + reg.boff, bm_bytes) == 0,
          "rolled back: the allocation bitmap is as before");
    free(bm_copy);
    tx_init(&t, &reg);
    tx_begin_seq(&t, &d->seq);
    CHECK(dict_load(&t, d, N, k, v, NULL, 0, gone, &ngone, NULL) == DICT_OK && tx_commit(&t) == 0,
          "dict_load commits");
    u64 live;
    CHECK(d->count == N && dict_check_walk(&reg, d, &live) == NULL && live == N &&
              walk() == before,
          "committed: count, Dict walk, no allocation per entry (new index and area replaced the old)");
    int found = 1, bad;
    dict_ent_view ev;
    for (int i = 0; i < N && found; i++)
        found = dict_find(&reg, d, &k[i], &bad, &ev) && ev.vn == v[i].n &&
                memcmp(ev.v, v[i].p, v[i].n) == 0;
    CHECK(found, "every loaded key finds its value");
    /* again, every key with a longer value (out of line) and a repeat: one
     * entry each, in place, the last value wins */
    static char big[N][200];
    for (int i = 0; i < N; i++) {
        memset(big[i], 'a' + i % 26, sizeof big[i]);
        v[i].p = big[i];
        v[i].n = i % 2 ? sizeof big[i] : 3;
    }
    tx_init(&t, &reg);
    tx_begin_seq(&t, &d->seq);
    CHECK(dict_load(&t, d, N, k, v, NULL, 0, gone, &ngone, NULL) == DICT_OK && tx_commit(&t) == 0 &&
              d->count == N && d->nent == N && dict_check_walk(&reg, d, &live) == NULL,
          "a reload replaces values, longer ones out of line");
    found = 1;
    for (u64 i = 0, prev = 0; i < N && found; prev = ev.off, i++)
        found = dict_find(&reg, d, &k[i], &bad, &ev) && ev.vn == v[i].n &&
                memcmp(ev.v, v[i].p, v[i].n) == 0 && (i == 0 || ev.off > prev);
    CHECK(found && walk() == before + N / 2, "every key has its new value at its old place; one block per long value");
}

static void test_dict_full(void)
{
    /* Fill the heap with Dict entries until a put fails: it must fail as
     * DICT_NOMEM, roll back, and leave the Dict and heap sound. */
    TX t;
    dict_hdr *d = new_dict();
    char ks[40], big[2000];
    memset(big, 'v', sizeof big);
    heap_key v = {0, big, sizeof big, 0};
    int rc = DICT_OK, i = 0;
    u64 count = 0, cap = 0;
    for (; rc == DICT_OK && i < 100000; i++) {
        heap_key k = mk(1, "fill", ks, i);
        count = d->count;
        cap = d->cap;
        tx_init(&t, &reg);
        tx_begin_seq(&t, &d->seq);
        rc = dict_put(&t, d, &k, &v, NULL, 0, NULL);
        if (rc == DICT_OK)
            tx_commit(&t);
        else
            tx_abort(&t);
    }
    u64 live;
    CHECK(rc == DICT_NOMEM || rc == DICT_TABLE_NOMEM, "a full heap fails a put with DICT_NOMEM");
    CHECK(d->count == count && d->cap == cap && !(d->seq & 1), "the failed put left no trace");
    CHECK(dict_check_walk(&reg, d, &live) == NULL && walk() >= 0, "Dict and heap are sound");
}

/* A value entry (empty key) holding v, inserted into l at i, in one tx. */
static int list_put(list_hdr *l, u64 i, const heap_key *v)
{
    static const heap_key nokey = {T_BYTES, "", 0, 0};
    TX t;
    tx_init(&t, &reg);
    tx_begin_seq(&t, &l->seq);
    u64 eo = entry_alloc(&t, &nokey, v, 0);
    if (!eo || list_insert(&t, l, i, abs_of(&reg, eo)) < 0) {
        tx_abort(&t);
        return -1;
    }
    return tx_commit(&t);
}

/* The first byte of item i's value (the test values are one digit long). */
static char list_item(list_hdr *l, u64 i)
{
    dict_entry *en = (dict_entry *)(uintptr_t)((u64 *)(uintptr_t)l->items)[i];
    return ((char *)(en + 1))[en->klen];
}

/* issue 15: List (shift in place and a new items block) and containers
 * held as values: one parent, no cycles, destroy_owned frees the subtree. */
static void test_list_and_ownership(void)
{
    long long before = walk();
    TX t;
    tx_init(&t, &reg);
    u64 lo = list_create(&t), dh = dict_create(&t, 8);
    CHECK(tx_commit(&t) == 0 && lo && dh, "list_create and dict_create");
    list_hdr *l = (list_hdr *)(reg.base + lo);
    dict_hdr *d = (dict_hdr *)(reg.base + dh);
    char buf[8];
    int ok = 1;
    for (int i = 0; i < 6 && ok; i++) { /* 0 1 2 3 4 5, then 9 before index 2 */
        snprintf(buf, sizeof buf, "%d", i);
        heap_key v = {T_STR, buf, 1, 0};
        ok = list_put(l, (u64)i, &v) == 0;
    }
    heap_key nine = {T_STR, "9", 1, 0};
    CHECK(ok && list_put(l, 2, &nine) == 0 && l->len == 7 && list_bad(&reg, l) == NULL,
          "List inserts at the end and in the middle");
    CHECK(list_item(l, 0) == '0' && list_item(l, 2) == '9' && list_item(l, 6) == '5',
          "List items in order after a shift");
    tx_init(&t, &reg);
    tx_begin_seq(&t, &l->seq);
    u64 e = list_remove(&t, l, 2);
    tx_free(&t, e - (u64)(uintptr_t)reg.base);
    CHECK(e && tx_commit(&t) == 0 && l->len == 6 && list_item(l, 2) == '2',
          "list_remove takes the middle item out");
    copybuf cb;
    cb_init(&cb);
    CHECK(list_copy_range(&reg, l, 1, 4, &cb) == 0 && cb.n == 3 * (CB_HEAD + 1),
          "list_copy_range copies three values");
    cb_free(&cb);

    u64 labs = abs_of(&reg, lo), dabs = abs_of(&reg, dh);
    tx_init(&t, &reg);
    CHECK(ref_adopt(&t, labs, T_DICT, dabs) == REF_OK && tx_commit(&t) == 0 && d->parent == labs,
          "ref_adopt writes the parent word");
    tx_init(&t, &reg);
    int again = ref_adopt(&t, labs, T_DICT, dabs), loop = ref_adopt(&t, dabs, T_LIST, labs);
    tx_commit(&t);
    CHECK(again == REF_HAS_PARENT && loop == REF_CYCLE, "one parent each, and no cycles");
    u64 ref = dabs;
    heap_key rv = {T_DICT, (const char *)&ref, 8, 0};
    CHECK(list_put(l, 0, &rv) == 0, "the Dict becomes item 0 of the List");
    dict_entry *held = (dict_entry *)(uintptr_t)((u64 *)(uintptr_t)l->items)[0];
    CHECK(ref_check(&reg, held, labs) == NULL, "ref_check accepts the owned reference");
    CHECK(ref_check(&reg, held, dabs) != NULL, "ref_check refuses another holder");

    refstack s;
    rs_init(&s);
    rs_push(&s, T_LIST, labs, 0);
    CHECK(destroy_owned(&t, &s, NULL) == 0 && s.n == 0, "destroy_owned");
    rs_free(&s);
    CHECK(walk() == before, "the List, its items and the Dict it held are freed");
}

/* ---- durability and a lock from another boot ---- */

static void test_durable_and_adopt(void)
{
    /* An anonymous shared mapping: msync succeeds and writes nothing. */
    CHECK(durable_mark(&reg, 1) == 0 && reg.h->unflushed == 1, "durable_mark sets the mark");
    CHECK(durable_flush(&reg) == 0 && reg.h->unflushed == 0, "durable_flush clears it");
#ifdef __GLIBC__ /* the lock word's layout is glibc's */
    /* A lock word left held by a thread of another boot: adopted. */
    int *word = &reg.h->lock.__data.__lock;
    *word = 0x3ffffff0; /* a thread id above any pid_max */
    reg.h->lock_boot = 3; /* another boot's tag */
    CHECK(pthread_mutex_trylock(&reg.h->lock) == EBUSY, "the left-over lock word blocks");
    CHECK(lock_adopt(&reg, 1) == 0 && reg.h->lock_boot == 1, "lock_adopt takes it over");
    CHECK(pthread_mutex_trylock(&reg.h->lock) == 0, "and the lock is free again");
    lock_release(&reg);
    *word = 0x3ffffff0;
    CHECK(lock_adopt(&reg, 1) == 0 && pthread_mutex_trylock(&reg.h->lock) == EBUSY,
          "this boot's lock is never taken over");
    *word = 0;
#endif
}

/* ---- lock_take: trylock plus a bounded spin ---- */
static void test_lock_take(void)
{
    CHECK(lock_settle(&reg, lock_take(reg.h)) == 0, "lock_take on a free lock takes it");
    lock_release(&reg);

    /* a live holder in another process: the spin ends, EBUSY, nothing taken */
    int held[2], go[2];
    if (pipe(held) != 0 || pipe(go) != 0) {
        perror("pipe");
        exit(100);
    }
    pid_t pid = fork();
    if (pid == 0) {
        char c = 0;
        pthread_mutex_lock(&reg.h->lock);
        if (write(held[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(2);
        pthread_mutex_unlock(&reg.h->lock);
        _exit(0);
    }
    char c = 0;
    CHECK(read(held[0], &c, 1) == 1, "the child holds the lock");
    double t0 = mono_now();
    int rc = lock_take(reg.h);
    double spun = mono_now() - t0;
    CHECK(rc == EBUSY, "lock_take on a lock held by a live process returns EBUSY");
    CHECK(spun < 1.0, "and its spin is bounded");
    CHECK(write(go[1], &c, 1) == 1, "the child is told to release");
    int st, got = 0;
    for (int i = 0; i < 100000 && !got; i++) {
        rc = lock_take(reg.h);
        got = rc != EBUSY;
    }
    CHECK(got && lock_settle(&reg, rc) == 0, "after the release lock_take takes the lock");
    lock_release(&reg);
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the holder exited normally");

    /* a holder that dies: EOWNERDEAD from lock_take, and recovery */
    u64 before = reg.h->recoveries;
    pid = fork();
    if (pid == 0) {
        pthread_mutex_lock(&reg.h->lock);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    rc = lock_take(reg.h);
    CHECK(rc == EOWNERDEAD, "lock_take reports a dead holder (EOWNERDEAD)");
    CHECK(lock_settle(&reg, rc) == 1 && reg.h->recoveries == before + 1,
          "and lock_settle recovers it");
    lock_release(&reg);
    CHECK(walk() >= 0, "the heap is consistent after the dead holder");
    close(held[0]);
    close(held[1]);
    close(go[0]);
    close(go[1]);
}

/* ---- update lanes (lane.c) ---- */
static int lane_value_is(dict_hdr *d, const heap_key *k, const char *want)
{
    int bad;
    dict_ent_view ev;
    return dict_find(&reg, d, k, &bad, &ev) && !bad && ev.vn == strlen(want) &&
           memcmp(ev.v, want, ev.vn) == 0;
}

/* A child that takes k's lane and dies at the countdown-th crash point of
 * an in-place overwrite with v (or runs through it when countdown is past
 * the end).  Its exit status. */
static int lane_child(dict_hdr *d, const heap_key *k, const heap_key *v, unsigned long countdown)
{
    pid_t pid = fork();
    if (pid == 0) {
        int i = lane_of(k->hash), bad;
        dict_ent_view ev;
        if (lane_take(&reg, i) != 0 || !dict_find(&reg, d, k, &bad, &ev) || !lane_fits(&ev, v))
            _exit(3);
        crash_countdown = countdown;
        lane_replace(&reg, i, &ev, v);
        crash_countdown = 0;
        lane_release(&reg, i);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

static void test_lanes(void)
{
    dict_hdr *d = new_dict();
    const char *a = "aaaaaaaaaaaaaaaaaaaa", *b = "bbbbbbbbbbbbbbbbbbbb";
    heap_key k = {0, "lane-key", 8, key_hash(0, "lane-key", 8)};
    heap_key va = {0, a, 20, 0}, vb = {0, b, 20, 0}, vshort = {1, "c", 1, 0};
    TX t;
    tx_init(&t, &reg);
    tx_begin_seq(&t, &d->seq);
    CHECK(dict_put(&t, d, &k, &va, NULL, 0, NULL) == DICT_OK && tx_commit(&t) == 0,
          "lanes: a key to overwrite");
    int i = lane_of(k.hash);
    heap_lane *l = &reg.h->lanes[i];

    /* take, overwrite in place, release */
    u64 s0 = l->seq, ds = d->seq;
    CHECK(lane_take(&reg, i) == 0, "lane_take on a free lane takes it");
    CHECK(lane_take(&reg, i) == EDEADLK, "the lane mutex is error-checking");
    int bad;
    dict_ent_view ev;
    CHECK(dict_find(&reg, d, &k, &bad, &ev) && lane_fits(&ev, &vb), "an inline value fits");
    lane_replace(&reg, i, &ev, &vb);
    lane_release(&reg, i);
    CHECK(lane_value_is(d, &k, b) && l->seq == s0 + 2 && l->log_count == 0 && d->seq == ds,
          "the lane's seq moved by two, its log is empty, the Dict's seq did not move");
    CHECK(lane_child(d, &k, &vshort, 0) == 0 && lane_value_is(d, &k, "c"),
          "another process overwrites in the lane (type and length change)");
    CHECK(lane_child(d, &k, &vb, 0) == 0 && lane_value_is(d, &k, b), "and back");

    /* a lane holder killed at every crash point: the next lane taker, or
     * the next heap-mutex taker, rolls its update back */
    int rolled = 1, committed = 1, points = 0;
    for (unsigned long n = 1; n < 64; n++) {
        int st = lane_child(d, &k, n % 2 ? &va : &vshort, n);
        if (st == 0) {
            /* ran past the last crash point: put b back for the next round */
            committed &= lane_value_is(d, &k, n % 2 ? a : "c");
            CHECK(lane_child(d, &k, &vb, 0) == 0, "lanes: reset");
            break;
        }
        points++;
        int rc;
        if (n % 2) {
            rc = lane_take(&reg, i);
            lane_release(&reg, i);
        } else {
            rc = lock();
            lock_release(&reg);
        }
        int done = n % 2 && rc == 1 ? lane_value_is(d, &k, a) : 0;
        /* dead before its commit: b again; after it (seq still odd): the new value */
        rolled &= st == 77 && (rc == 1) && (lane_value_is(d, &k, b) || done ||
                                            (!(n % 2) && lane_value_is(d, &k, "c"))) &&
                  !(l->seq & 1) && l->log_count == 0;
        if (!lane_value_is(d, &k, b))
            CHECK(lane_child(d, &k, &vb, 0) == 0, "lanes: reset");
    }
    CHECK(points >= 4 && rolled && committed,
          "a lane holder dead at every crash point is rolled back (lane or heap taker)");
    CHECK(lane_take(&reg, i) == 0, "the lane is consistent again");
    lane_release(&reg, i);
    CHECK(walk() >= 0, "the heap is consistent after the dead lane holders");

    /* a heap-mutex holder excludes lane writers: hseq is odd to them */
    CHECK(lock() == 0, "heap mutex taken");
    pid_t pid = fork();
    if (pid == 0) {
        int rc = lane_take(&reg, i);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        int odd = (int)(__atomic_load_n(&reg.h->hseq, __ATOMIC_RELAXED) & 1);
        lane_release(&reg, i);
        _exit(rc == 0 && odd ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    lock_release(&reg);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a lane taker sees hseq odd under the heap mutex");

    /* flush makes hseq even under the heap mutex: it holds every lane then */
    CHECK(lock() == 0 && lanes_hold(&reg) == 0, "lanes_hold under the heap mutex");
    __atomic_store_n(&reg.h->hseq, reg.h->hseq + 1, __ATOMIC_RELEASE);
    pid = fork();
    if (pid == 0)
        _exit(lane_take(&reg, i) == EBUSY ? 0 : 1);
    waitpid(pid, &st, 0);
    __atomic_store_n(&reg.h->hseq, reg.h->hseq + 1, __ATOMIC_RELEASE);
    lanes_drop(&reg, NLANES);
    lock_release(&reg);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "with hseq even and the lanes held (flush), a lane taker gets EBUSY");
    CHECK(lane_take(&reg, i) == 0, "lanes_drop released them");
    lane_release(&reg, i);

    /* and a heap-mutex taker waits for a lane writer inside */
    int held[2];
    if (pipe(held) != 0)
        exit(100);
    pid = fork();
    if (pid == 0) {
        char c = 0;
        lane_take(&reg, i);
        if (write(held[1], &c, 1) != 1)
            _exit(2);
        struct timespec ms = {0, 200 * 1000 * 1000};
        nanosleep(&ms, NULL);
        __atomic_store_n(&reg.h->lanes[i].pad_, 42, __ATOMIC_RELEASE);
        lane_release(&reg, i);
        _exit(0);
    }
    char c;
    CHECK(read(held[0], &c, 1) == 1, "a child holds a lane");
    CHECK(lock() == 0 && __atomic_load_n(&reg.h->lanes[i].pad_, __ATOMIC_ACQUIRE) == 42,
          "the heap mutex taker waited until the lane holder released");
    lock_release(&reg);
    reg.h->lanes[i].pad_ = 0;
    waitpid(pid, &st, 0);
    close(held[0]);
    close(held[1]);
}

int main(void)
{
    setup();
    test_alloc_free();
    test_rollback_in_process();
    test_debris();
    test_recovery_after_death();
    test_dict();
    test_dict_load();
    test_dict_full();
    test_list_and_ownership();
    test_durable_and_adopt();
    test_lock_take();
    test_lanes();
    printf("# %d failed\n", failures);
    return failures > 100 ? 100 : failures;
}
