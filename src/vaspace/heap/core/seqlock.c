/*
 * seqlock.c -- lock-free readers.  Every container (and the heap header, for
 * read-only mode) carries a sequence count that a writer makes odd before its
 * first store and even again after commit.  A reader samples an even count,
 * reads (validating every pointer it follows), and retries if the count
 * moved (seq_retry in core.h).
 */
#include "core.h"

#include <sched.h>
#include <time.h>

double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wait until *seq is even: 0 with the even value in *out, or -1 when the
 * writer seems stuck (dead, or descheduled).  A writable caller then reads
 * under the mutex, whose EOWNERDEAD path recovers the heap.
 *
 * A read-only caller passes its deadline (0 = not started: the first yield
 * starts it, timeout seconds from now) and gets -1 once it has passed.  The
 * deadline is checked at every sched_yield, because under CPU contention one
 * yield can give the core away for a whole time slice: 2000 unchecked yields
 * overshot a 0.3 s read_timeout by seconds (issue 17). */
int seq_begin(const u64 *seq, u64 *out, double *deadline, double timeout)
{
    for (int spins = 0; spins < SPIN_LOCK_AFTER; spins++) {
        u64 s = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (!(s & 1)) {
            *out = s;
            return 0;
        }
        if (spins > SPIN_YIELD_AFTER) {
            if (deadline) {
                double now = mono_now();
                if (*deadline == 0)
                    *deadline = now + timeout;
                else if (now >= *deadline)
                    return -1;
            }
            sched_yield();
        }
    }
    return -1;
}
