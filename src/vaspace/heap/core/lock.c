/*
 * lock.c -- the heap's robust, process-shared mutex.
 *
 * One mutex in the header serialises every writer (but the in-place Dict
 * overwrites of lane.c, which lock_settle excludes first).  A writer that dies
 * holding it leaves it EOWNERDEAD; the next taker rolls the undo log back
 * (lock_settle).  A lock word that no thread can own (a corrupt or copied
 * region) ends the wait with LOCK_VANISHED instead of hanging.
 */
#define _GNU_SOURCE
#include "core.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#ifdef __GLIBC__
/* The type word of a mutex initialised as format_region() does (set at
 * module init).  glibc takes its lock path from this word, and some paths
 * (priority inheritance) wait forever on a dead owner, so a heap whose lock
 * type was overwritten is refused before the lock is touched. */
static int expected_lock_kind;
#define FUTEX_TID_BITS 0x3fffffff
#define FUTEX_OWNER_DIED_BIT 0x40000000

/* Could thread tid hold the lock of the heap at base?  Only a thread whose
 * process maps the heap there.  1 = yes, or cannot tell (no /proc, another
 * user's process); 0 = no such thread, or it does not map the heap. */
static int tid_may_hold(int tid, uintptr_t base)
{
    if (access("/proc/self/maps", R_OK) != 0)
        return kill(tid, 0) == 0 || errno != ESRCH;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", tid);
    FILE *f = fopen(path, "re");
    if (!f) /* hidden (hidepid) or gone: ask the kernel whether the id exists */
        return errno != ENOENT || kill(tid, 0) == 0 || errno != ESRCH;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= base && base < hi)
            found = 1;
    }
    fclose(f);
    return found;
}

/* While waiting for the lock: is the lock word one that no thread can own?
 * A free lock word is 0; a held one names its owner's thread id, which
 * glibc also stores in __owner right after taking it; a real owner that
 * dies has its robust list processed by the kernel (the word gets
 * OWNER_DIED) before its thread id disappears.  Returns 2 if no thread can
 * own it (the id names no thread that maps this heap), 1 if it is suspect
 * (no owner id, or one __owner disagrees with), 0 if it looks held. */
static int lock_word_state(pthread_mutex_t *m, uintptr_t base, int *w_out, int *o_out)
{
    int *word = &m->__data.__lock;
    int w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    int o = __atomic_load_n(&m->__data.__owner, __ATOMIC_ACQUIRE);
    *w_out = w;
    *o_out = o;
    if (w == 0 || (w & FUTEX_OWNER_DIED_BIT))
        return 0;
    int tid = w & FUTEX_TID_BITS;
    if (tid != 0 && !tid_may_hold(tid, base) && __atomic_load_n(word, __ATOMIC_ACQUIRE) == w)
        return 2;
    return tid == 0 || o != tid;
}
#endif

/* One pause of a spin-wait: tells the core (and a hypervisor) that this
 * thread is waiting, so the other hyperthread or vCPU gets the cycles. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    compiler_fence();
#endif
}

/* Try to take the lock without blocking: a trylock, then, while another
 * thread holds it, a bounded spin (LOCK_SPINS pauses, some tens of
 * microseconds) that retries whenever the lock word reads free.
 *
 * Why spin: a heap operation holds the lock for about a microsecond, and a
 * writer that blocks at once pays a futex sleep and wake-up (two system
 * calls and a context switch each way) for every contended operation, so
 * two writer processes ran at half the throughput of one.  The spin is
 * bounded, so a holder that was descheduled (or died) costs the waiter at
 * most the spin before it blocks in lock_wait, which also runs the checks
 * for a dead or impossible owner.  Returns what pthread_mutex_trylock
 * returned last (EBUSY if the lock stayed busy). */
int mutex_take(pthread_mutex_t *m)
{
    int rc = pthread_mutex_trylock(m);
#ifdef __GLIBC__
    const int *word = &m->__data.__lock;
    for (int spin = 0; rc == EBUSY && spin < LOCK_SPINS; spin++) {
        cpu_relax();
        /* free, or its owner died (the kernel left OWNER_DIED, no id) */
        if ((__atomic_load_n(word, __ATOMIC_RELAXED) & FUTEX_TID_BITS) == 0)
            rc = pthread_mutex_trylock(m);
    }
#endif
    return rc;
}

int lock_take(heap_header *h) { return mutex_take(&h->lock); }

/* Block until the lock is ours (GIL released by the caller).  Waits in 1 s
 * steps so that a lock word that no thread can own (a corrupt region) ends
 * the wait instead of hanging the process. */
int lock_wait(heap_header *h) { return mutex_wait(&h->lock, (uintptr_t)h); }

int mutex_wait(pthread_mutex_t *m, uintptr_t base)
{
    int strikes = 0, last_w = 0, last_o = 0;
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        int rc = pthread_mutex_timedlock(m, &ts);
        if (rc == EINTR)
            continue;
        if (rc != ETIMEDOUT)
            return rc;
#ifdef __GLIBC__
        /* Definitely ownerless: stop now.  Suspect (the owner may only be
         * between its atomic take and its __owner store): stop only if the
         * same words are still there one second later. */
        int w, o, st = lock_word_state(m, base, &w, &o);
        if (st == 2 || (st == 1 && strikes && w == last_w && o == last_o))
            return LOCK_VANISHED;
        strikes = st == 1;
        last_w = w;
        last_o = o;
#else
        (void)strikes, (void)last_w, (void)last_o;
#endif
    }
}

int lock_kind_init(void)
{
#ifdef __GLIBC__
    /* The type word format_region() gives the heap lock (a lock whose word
     * differs is refused before it is touched). */
    pthread_mutex_t m;
    int rc = lock_init(&m);
    if (rc != 0)
        return rc;
    expected_lock_kind = m.__data.__kind;
    pthread_mutex_destroy(&m);
#endif
    return 0;
}

/* A lock word means something only in the boot that initialised the mutex:
 * after a restart (a power loss, or a file written back while the lock was
 * held) it may name a thread of the old boot, or an unrelated one of this
 * boot.  Nobody can hold it across a restart, so the first opener of this
 * boot initialises it again.  lock_boot holds the tag of the boot that did;
 * an even value means an initialisation is in progress. */
int lock_adopt(heap_region *r, u64 tag)
{
    u64 *lb = &r->h->lock_boot;
    struct timespec ms = {0, 1000 * 1000};
    for (int waited = 0; waited < 4000; waited++) {
        u64 v = __atomic_load_n(lb, __ATOMIC_ACQUIRE);
        if (v == tag)
            return 0;
        /* Another boot's tag (odd), none (0: older heaps), or an
         * initialisation that has not finished in 2 s (its process died:
         * it takes microseconds): take it over. */
        int take = (v & 1) || v == 0 || waited >= 2000;
        u64 busy = (v & 1) || v == 0 ? 2 : v + 2;
        if (take && __atomic_compare_exchange_n(lb, &v, busy, 0, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE)) {
            int rc = lock_init(&r->h->lock);
            for (int i = 0; rc == 0 && i < NLANES; i++)
                rc = lock_init(&r->h->lanes[i].lock);
            __atomic_store_n(lb, tag, __ATOMIC_RELEASE);
            return rc;
        }
        nanosleep(&ms, NULL);
    }
    return ETIMEDOUT; /* the word keeps changing under us: a hostile co-writer */
}

int mutex_kind_ok(pthread_mutex_t *m)
{
#ifdef __GLIBC__
    return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == expected_lock_kind;
#else
    (void)m;
    return 1;
#endif
}

int lock_kind_ok(heap_header *h)
{
#ifdef __GLIBC__
    return mutex_kind_ok(&h->lock); /* the lanes': where they are taken (lane.c) */
#else
    (void)h;
    return 1;
#endif
}

int lock_settle(heap_region *r, int rc)
{
    heap_header *h = r->h;
    if (rc == 0 || rc == EOWNERDEAD) {
        /* Mark the heap busy for lock-free readers (read-only mode).  If a
         * dead owner left hseq odd, move it to a new odd value so a reader
         * that sampled an even value before the crash still sees a change. */
        u64 s = h->hseq;
        __atomic_store_n(&h->hseq, (s & 1) ? s + 2 : s + 1, __ATOMIC_RELEASE);
        compiler_fence();
    }
    int done = rc;
    if (rc == EOWNERDEAD) {
        /* The dead holder had excluded the lane writers before its first
         * store (and hseq stayed odd since), so no lane writer is inside
         * while its log rolls back. */
        recover(r);
        if (pthread_mutex_consistent(&h->lock) != 0) {
            /* Cannot happen for a robust mutex we own; fail safe. */
            __atomic_store_n(&h->hseq, h->hseq + 1, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&h->lock);
            return LOCK_INCONSISTENT;
        }
        done = 1;
    } else if (rc == 0 && (h->log_count != 0 || h->wseq_off != 0)) {
        /* Debris from an operation that never committed but whose lock
         * was not flagged (e.g. the region was copied mid-operation). */
        recover(r);
        done = 1;
    }
    if (done == 0 || done == 1) {
        /* Exclude the lane writers (lane.c): hseq is odd now, so none
         * starts; wait out (or recover) those already inside. */
        int lanes = lanes_quiesce(r);
        if (lanes < 0) {
            __atomic_store_n(&h->hseq, h->hseq + 1, __ATOMIC_RELEASE);
            pthread_mutex_unlock(&h->lock);
            return lanes;
        }
        if (lanes)
            done = 1;
    }
    return done;
}

void lock_release(heap_region *r)
{
    compiler_fence();
    __atomic_store_n(&r->h->hseq, r->h->hseq + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&r->h->lock);
}
