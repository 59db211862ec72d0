/*
 * threads.c: one VAS per thread.  The active VAS belongs to the calling
 * thread, so every thread can be inside its own VAS at the same time.
 *
 *   cc threads.c $(vaspace config --cflags --libs) -pthread -o threads && ./threads
 *
 * Thread i creates VAS "threads-<i>" holding segment "threads-seg-<i>" (one
 * page at a distinct address: segments of VASes that threads of one process
 * are inside at once must not overlap, or the later switch fails with
 * EFAULT), switches in, writes and reads back its own number, and leaves.
 * Exits 0 when every thread saw only its own VAS.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <mvas/segment.h>
#include <mvas/vas.h>

#define NTHREADS 4
#define BASE 0x400000000000UL
#define SLOT (2UL << 20)
#define PAGE 4096UL

static pthread_barrier_t inside;

struct job {
    int index;
    vasid_t vid;
    segid_t sid;
    int ok;
    char error[160];
};

static void *
run(void *arg)
{
    struct job *job = arg;
    char name[64];
    unsigned long start = BASE + (unsigned long)job->index * SLOT;
    snprintf(name, sizeof(name), "threads-%d", job->index);
    job->vid = vas_create(name, 0600);
    snprintf(name, sizeof(name), "threads-seg-%d", job->index);
    job->sid = segment_create_sz(name, start, PAGE, 0600);
    if (job->vid < 0 || job->sid < 0 || segment_attach(job->vid, job->sid, O_RDWR) < 0 ||
        vas_attach(0, job->vid, O_RDWR) < 0 || vas_switch(job->vid) < 0) {
        snprintf(job->error, sizeof(job->error), "set-up: %s", strerror(errno));
        pthread_barrier_wait(&inside);
        return NULL;
    }
    volatile int *word = (volatile int *)start;
    *word = 1000 + job->index;
    pthread_barrier_wait(&inside);  /* every thread is inside its VAS now */
    job->ok = *word == 1000 + job->index && active_vas() == job->vid;
    if (vas_switch(0) < 0 || active_vas() != 0)
        job->ok = 0;
    return NULL;
}

int
main(void)
{
    pthread_t tids[NTHREADS];
    struct job jobs[NTHREADS];
    pthread_barrier_init(&inside, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].index = i;
        pthread_create(&tids[i], NULL, run, &jobs[i]);
    }
    int failed = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(tids[i], NULL);
        printf("thread %d: VAS %d, %s%s\n", i, jobs[i].vid, jobs[i].ok ? "ok" : "FAILED ",
               jobs[i].error);
        failed |= !jobs[i].ok;
    }
    /* The main thread never entered a VAS. */
    printf("main thread: active_vas() = %d\n", active_vas());
    for (int i = 0; i < NTHREADS; i++) {
        if (jobs[i].vid > 0 && (vas_detach(0, jobs[i].vid) < 0 || vas_delete(jobs[i].vid) < 0))
            failed = 1;
        if (jobs[i].sid > 0 && segment_delete(jobs[i].sid) < 0)
            failed = 1;
    }
    return failed;
}
