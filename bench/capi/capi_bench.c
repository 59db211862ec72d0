/*
 * capi_bench.c: the RFC cover letter's table, measured from C through
 * vaspace's C API.  Driven by `python -m bench.capi` (see __init__.py).
 *
 *   capi_bench first            time of the first call (interpreter start-up
 *                               and import), then of a second, warm call
 *   capi_bench table RUNS SECS  every figure, RUNS runs of about SECS each
 *
 * Output: one line per figure, "fig <key> <ns per op, one per run>...".
 * Round trips, as a pipe ping-pong measures them: switch(B); switch(A).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vaspace.h>

#define PAGE 4096UL

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void
die(const char *what)
{
    fprintf(stderr, "capi_bench: %s: %s (%s)\n", what, strerror(errno), vaspace_last_error());
    exit(1);
}

typedef void (*body_fn)(long n, void *ctx);

/* An iteration count that makes body last about secs. */
static long
calibrate(body_fn body, void *ctx, double secs)
{
    long n = 1;
    for (;;) {
        double t0 = now_ns();
        body(n, ctx);
        double dt = (now_ns() - t0) / 1e9;
        if (dt >= secs / 4 || n >= 10000000)
            return (long)(n * secs / (dt > 1e-9 ? dt : 1e-9)) + 1;
        n *= 4;
    }
}

static void
figure(const char *key, body_fn body, void *ctx, int runs, double secs)
{
    long n = calibrate(body, ctx, secs);
    printf("fig %s", key);
    for (int r = 0; r < runs; r++) {
        double t0 = now_ns();
        body(n, ctx);
        printf(" %.1f", (now_ns() - t0) / n);
    }
    printf("\n");
    fflush(stdout);
}

/* ---------------------------------------------------------------- switches */

struct pair {
    vasid_t a, b;
};

static void
switch_body(long n, void *ctx)
{
    struct pair *p = ctx;
    for (long i = 0; i < n; i++) {
        if (vas_switch(p->b) < 0 || vas_switch(p->a) < 0)
            die("vas_switch");
    }
}

/* Two attached VASes; with seg, each holds its own page at the same address. */
static struct pair
make_pair(const char *tag, int seg)
{
    struct pair p;
    char name[64];
    unsigned long w = 0x400000000000UL;
    vasid_t *v[2] = {&p.a, &p.b};
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof(name), "%s-%d", tag, i);
        if ((*v[i] = vas_create(name, 0600)) < 0)
            die("vas_create");
        if (seg) {
            segid_t sid = segment_create_sz(name, w, PAGE, 0600);
            if (sid < 0 || segment_attach(*v[i], sid, O_RDWR) < 0)
                die("segment");
        }
        if (vas_attach(0, *v[i], O_RDWR) < 0 || vas_switch(*v[i]) < 0)
            die("attach");
        if (seg)
            *(volatile char *)w = (char)i;  /* populated */
    }
    /* A, B, A: the slow path has planned and cached both directions. */
    if (vas_switch(p.a) < 0 || vas_switch(p.b) < 0 || vas_switch(p.a) < 0)
        die("warm-up");
    return p;
}

static void *
call_once(void *arg)
{
    active_vas();
    return NULL;
}

static void
drop_pair(struct pair p)
{
    vas_switch(0);
    vas_detach(0, p.a);
    vas_detach(0, p.b);
}

/* ---------------------------------------------------------------- ping-pong */

struct pipes {
    int to[2], from[2];
};

static void
pingpong_body(long n, void *ctx)
{
    struct pipes *p = ctx;
    char c = 'p';
    for (long i = 0; i < n; i++) {
        if (write(p->to[1], &c, 1) != 1 || read(p->from[0], &c, 1) != 1)
            die("ping-pong");
    }
}

static void
pingpong(int runs, double secs)
{
    struct pipes p;
    if (pipe(p.to) < 0 || pipe(p.from) < 0)
        die("pipe");
    cpu_set_t cpu0, old;
    CPU_ZERO(&cpu0);
    CPU_SET(0, &cpu0);
    sched_getaffinity(0, sizeof(old), &old);
    pid_t pid = fork();
    if (pid == 0) {
        sched_setaffinity(0, sizeof(cpu0), &cpu0);
        char c;
        while (read(p.to[0], &c, 1) == 1 && c == 'p')
            if (write(p.from[1], &c, 1) != 1)
                break;
        _exit(0);
    }
    sched_setaffinity(0, sizeof(cpu0), &cpu0);
    pingpong_body(1000, &p);
    figure("pingpong_pinned", pingpong_body, &p, runs, secs);
    char q = 'q';
    if (write(p.to[1], &q, 1) != 1)
        die("pipe");
    waitpid(pid, NULL, 0);
    sched_setaffinity(0, sizeof(old), &old);
    close(p.to[0]), close(p.to[1]), close(p.from[0]), close(p.from[1]);
}

/* ---------------------------------------------------------------- create, fork */

static void
fork_body(long n, void *ctx)
{
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) < 0)
            die("fork");
    }
}

static long counter;

static void
create_body(long n, void *ctx)
{
    /* Creates n VASes and then deletes them; only the creates are timed:
     * the deletes' time is subtracted by timing them separately. */
    double *deleted_ns = ctx;
    vasid_t *ids = malloc(n * sizeof(*ids));
    char name[32];
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "c%ld", counter++);
        if ((ids[i] = vas_create(name, 0600)) < 0)
            die("vas_create");
    }
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        vas_delete(ids[i]);
    *deleted_ns += now_ns() - t0;
    free(ids);
}

static void
create_figure(int runs, long n)
{
    printf("fig vas_create");
    for (int r = 0; r < runs; r++) {
        double deleted = 0;
        double t0 = now_ns();
        create_body(n, &deleted);
        printf(" %.1f", (now_ns() - t0 - deleted) / n);
    }
    printf("\n");
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "first") == 0) {
        double t0 = now_ns();
        vas_find("capi-bench-first");  /* ESRCH: the cost is the start-up */
        double t1 = now_ns();
        vas_find("capi-bench-first");
        double t2 = now_ns();
        printf("fig first_call %.1f\nfig second_call %.1f\n", t1 - t0, t2 - t1);
        return 0;
    }
    if (argc != 4 || strcmp(argv[1], "table") != 0) {
        fprintf(stderr, "usage: capi_bench first | table RUNS SECS\n");
        return 2;
    }
    int runs = atoi(argv[2]);
    double secs = atof(argv[3]);
    /* The C fork baseline first, while this is a small C process (the RFC's
     * baseline); again once the interpreter runs, for reference. */
    fork_body(5, NULL);
    figure("fork", fork_body, NULL, runs, secs);
    long n = calibrate(fork_body, NULL, secs) * 2 + 10;  /* creates are cheaper than forks */
    active_vas();

    pingpong(runs, secs);
    struct pair none = make_pair("none", 0);
    figure("switch_nothing", switch_body, &none, runs, secs);
    drop_pair(none);
    struct pair one = make_pair("one", 1);
    figure("switch_one_conflicting", switch_body, &one, runs, secs);
    drop_pair(one);

    create_figure(runs, n > 2000 ? 2000 : n);
    figure("fork_embedded", fork_body, NULL, runs, secs);

    /* Once a second thread has called in, every call hands the GIL over. */
    pthread_t th;
    if (pthread_create(&th, NULL, call_once, NULL) != 0 || pthread_join(th, NULL) != 0)
        die("pthread");
    none = make_pair("none2", 0);
    figure("switch_nothing_threaded", switch_body, &none, runs, secs);
    drop_pair(none);
    return 0;
}
