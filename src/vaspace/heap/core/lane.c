/*
 * lane.c -- update lanes: a Dict SET that overwrites an existing key's
 * inline value in place, without the heap mutex.
 *
 * Why: every write used to take the one heap mutex and write the same
 * shared lines (the lock word, hseq, the undo log's count, the Dict's seq),
 * so two writer processes ran barely faster than one (issue 15).  An
 * in-place overwrite changes only words of its own entry, so it needs
 * exclusion only from writers of the same key and from structural changes.
 *
 * The rules (docs/heap.md, "Update lanes"):
 *   - The key's lane is lane_of(hash): two writers of one key meet in it.
 *   - A lane writer takes the lane's robust mutex, then reads hseq: odd
 *     means a heap-mutex holder is (about to be) changing structure, so it
 *     releases the lane and takes the heap mutex instead.  The mutex take is
 *     an atomic read-modify-write (a full barrier), and a heap-mutex taker
 *     makes hseq odd, then (after a full fence) looks at every lane's lock
 *     word (lanes_quiesce): at least one of the two sees the other.
 *   - The lane writer logs each word's old value in the lane's own log and
 *     makes the lane's seq odd before its first store, even after the
 *     commit (clearing the lane's log count).  Readers of a value check the
 *     lane's seq beside the container's.
 *   - A lane holder that dies leaves its mutex EOWNERDEAD: the next taker
 *     of the lane, or the next heap-mutex taker (lanes_quiesce), rolls its
 *     log back first.
 */
#include "core.h"

#include <errno.h>
#include <unistd.h>

static inline void lane_crash_point(void)
{
    if (crash_countdown && --crash_countdown == 0)
        _exit(77);
}

/* A lane log entry may only restore a word of the arena (entries live
 * there); anything else is a corrupt log and is skipped. */
static inline int lane_store_ok(const heap_region *r, u64 off)
{
    return off % 8 == 0 && off >= r->aoff && off + 8 <= r->aend;
}

int lane_recover(heap_region *r, heap_lane *l)
{
    u64 n = l->log_count;
    if (n > LANE_LOG)
        n = LANE_LOG;
    for (u64 i = n; i-- > 0;) /* newest first; idempotent */
        if (lane_store_ok(r, l->log[i].off))
            *(u64 *)(r->base + l->log[i].off) = l->log[i].old;
    compiler_fence();
    __atomic_store_n(&l->log_count, 0, __ATOMIC_RELEASE);
    /* a fresh even value: a reader that sampled the pre-crash one retries */
    u64 s = l->seq;
    __atomic_store_n(&l->seq, (s & 1) ? s + 1 : s + 2, __ATOMIC_RELEASE);
    __atomic_fetch_add(&r->h->recoveries, 1, __ATOMIC_RELAXED);
    return 1;
}

/* After taking lane l's mutex with result rc: 0 (held), 1 (held, a dead
 * holder's update rolled back) or a failure code (not held). */
static int lane_settle(heap_region *r, heap_lane *l, int rc)
{
    if (rc == EOWNERDEAD) {
        lane_recover(r, l);
        if (pthread_mutex_consistent(&l->lock) != 0) {
            pthread_mutex_unlock(&l->lock);
            return LOCK_INCONSISTENT;
        }
        return 1;
    }
    if (rc == 0 && (l->log_count != 0 || (l->seq & 1)))
        return lane_recover(r, l); /* debris: a region copied mid-update */
    return rc;
}

int lane_take(heap_region *r, int i)
{
    heap_lane *l = &r->h->lanes[i];
    if (!mutex_kind_ok(&l->lock))
        return LOCK_VANISHED;
    return lane_settle(r, l, mutex_take(&l->lock));
}

void lane_release(heap_region *r, int i)
{
    pthread_mutex_unlock(&r->h->lanes[i].lock);
}

/* Is mutex m's word free (no holder, no dead holder)?  Without glibc's
 * layout: never known, so the caller takes it. */
static inline int lock_word_free(pthread_mutex_t *m)
{
#ifdef __GLIBC__
    return __atomic_load_n(&m->__data.__lock, __ATOMIC_ACQUIRE) == 0;
#else
    (void)m;
    return 0;
#endif
}

int lanes_quiesce(heap_region *r)
{
    heap_header *h = r->h;
    int recovered = 0;
    /* hseq (made odd by the caller) before the lock words: see the top */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (int i = 0; i < NLANES; i++) {
        heap_lane *l = &h->lanes[i];
        if (lock_word_free(&l->lock) &&
            __atomic_load_n(&l->log_count, __ATOMIC_RELAXED) == 0 &&
            !(__atomic_load_n(&l->seq, __ATOMIC_RELAXED) & 1))
            continue; /* free and clean: a later taker sees hseq odd */
        if (!mutex_kind_ok(&l->lock))
            return LOCK_VANISHED;
        /* held (briefly: a lane update is a few stores), dead or debris */
        int rc = mutex_take(&l->lock);
        if (rc == EBUSY)
            rc = mutex_wait(&l->lock, (uintptr_t)h);
        rc = lane_settle(r, l, rc);
        if (rc != 0 && rc != 1)
            return rc < 0 ? rc : LOCK_VANISHED;
        recovered |= rc;
        pthread_mutex_unlock(&l->lock);
    }
    return recovered;
}

int lanes_hold(heap_region *r)
{
    int recovered = 0;
    for (int i = 0; i < NLANES; i++) {
        heap_lane *l = &r->h->lanes[i];
        int rc = mutex_kind_ok(&l->lock) ? mutex_take(&l->lock) : LOCK_VANISHED;
        if (rc == EBUSY) /* a lane writer about to see hseq odd and back off */
            rc = mutex_wait(&l->lock, (uintptr_t)r->h);
        rc = rc == LOCK_VANISHED ? rc : lane_settle(r, l, rc);
        if (rc != 0 && rc != 1) {
            lanes_drop(r, i);
            return rc < 0 ? rc : LOCK_VANISHED;
        }
        recovered |= rc;
    }
    return recovered;
}

void lanes_drop(heap_region *r, int n)
{
    for (int i = n; i-- > 0;)
        pthread_mutex_unlock(&r->h->lanes[i].lock);
}

/* Logged store into lane l's log (a crash point before and after). */
static void lane_W(heap_region *r, heap_lane *l, u64 *p, u64 v)
{
    u64 n = l->log_count;
    lane_crash_point();
    l->log[n].off = (u64)((char *)p - r->base);
    l->log[n].old = *p;
    store_fence();
    __atomic_store_n(&l->log_count, n + 1, __ATOMIC_RELEASE);
    store_fence();
    lane_crash_point(); /* logged but not yet stored */
    *p = v;
}

int lane_fits(const dict_ent_view *ev, const heap_key *v)
{
    return !(ev->h.flags & (DE_VOUT | DE_HOLE)) && !T_IS_REF(ev->h.vtype) && !T_IS_REF(v->type) &&
           v->n <= DE_VAL_INLINE_MAX && v->n <= (u64)ev->h.vroom * 8;
}

void lane_replace(heap_region *r, int i, const dict_ent_view *ev, const heap_key *v)
{
    heap_lane *l = &r->h->lanes[i];
    __atomic_store_n(&l->seq, l->seq + 1, __ATOMIC_RELEASE);
    store_fence();
    u64 *room = (u64 *)(uintptr_t)ev->vroom_at;
    for (u64 w = 0; w * 8 < v->n; w++) {
        u64 word = 0;
        memcpy(&word, v->p + w * 8, v->n - w * 8 < 8 ? (size_t)(v->n - w * 8) : 8);
        if (room[w] != word)
            lane_W(r, l, &room[w], word);
    }
    dict_ent h = ev->h;
    h.vlen = (u8)v->n;
    h.vtype = (u8)v->type;
    u64 hw, was;
    memcpy(&hw, &h, 8);
    memcpy(&was, (void *)(uintptr_t)ev->at, 8);
    if (hw != was)
        lane_W(r, l, (u64 *)(uintptr_t)ev->at, hw);
    lane_crash_point(); /* everything stored, not yet committed */
    store_fence();
    __atomic_store_n(&l->log_count, 0, __ATOMIC_RELEASE);
    lane_crash_point(); /* committed, seq still odd */
    store_fence();
    __atomic_store_n(&l->seq, l->seq + 1, __ATOMIC_RELEASE);
}
