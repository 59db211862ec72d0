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

/* Several figures measured in turn within each run (run 1 of each, then run
 * 2 of each...), so a change of load hits them alike and the ratios of their
 * medians compare like with like. */
static void
interleaved(int k, const char *const *keys, body_fn *bodies, void *const *ctxs, int runs,
            double secs)
{
    long n[8];
    double ns[8][64];
    for (int i = 0; i < k; i++)
        n[i] = calibrate(bodies[i], ctxs[i], secs);
    for (int r = 0; r < runs && r < 64; r++) {
        for (int i = 0; i < k; i++) {
            double t0 = now_ns();
            bodies[i](n[i], ctxs[i]);
            ns[i][r] = (now_ns() - t0) / n[i];
        }
    }
    for (int i = 0; i < k; i++) {
        printf("fig %s", keys[i]);
        for (int r = 0; r < runs && r < 64; r++)
            printf(" %.1f", ns[i][r]);
        printf("\n");
    }
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

/* A child that answers each byte 'p' on to[] with one on from[], pinned to
 * CPU 0 as its parent is while it measures; 'q' ends it. */
struct pinned_peer {
    struct pipes p;
    pid_t pid;
    cpu_set_t old;
};

static void
peer_start(struct pinned_peer *peer)
{
    struct pipes *p = &peer->p;
    if (pipe(p->to) < 0 || pipe(p->from) < 0)
        die("pipe");
    cpu_set_t cpu0;
    CPU_ZERO(&cpu0);
    CPU_SET(0, &cpu0);
    sched_getaffinity(0, sizeof(peer->old), &peer->old);
    peer->pid = fork();
    if (peer->pid == 0) {
        sched_setaffinity(0, sizeof(cpu0), &cpu0);
        char c;
        while (read(p->to[0], &c, 1) == 1 && c == 'p')
            if (write(p->from[1], &c, 1) != 1)
                break;
        _exit(0);
    }
    sched_setaffinity(0, sizeof(cpu0), &cpu0);
    pingpong_body(1000, p);
}

static void
peer_stop(struct pinned_peer *peer)
{
    struct pipes *p = &peer->p;
    char q = 'q';
    if (write(p->to[1], &q, 1) != 1)
        die("pipe");
    waitpid(peer->pid, NULL, 0);
    sched_setaffinity(0, sizeof(peer->old), &peer->old);
    close(p->to[0]), close(p->to[1]), close(p->from[0]), close(p->from[1]);
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

/* A small C process, forked before the interpreter starts, that times
 * fork_body on request: the RFC's baseline (a fork of a small C process),
 * measured in turn with the creates.  Requests are a long n on cmd (0 ends
 * it), answers a double, ns per fork, on ans. */
struct forker {
    int cmd[2], ans[2];
    pid_t pid;
};

static void
forker_start(struct forker *f)
{
    if (pipe(f->cmd) < 0 || pipe(f->ans) < 0)
        die("pipe");
    f->pid = fork();
    if (f->pid < 0)
        die("fork");
    if (f->pid == 0) {
        long n;
        while (read(f->cmd[0], &n, sizeof(n)) == sizeof(n) && n > 0) {
            double t0 = now_ns();
            fork_body(n, NULL);
            double per = (now_ns() - t0) / n;
            if (write(f->ans[1], &per, sizeof(per)) != sizeof(per))
                break;
        }
        _exit(0);
    }
}

static double
forker_run(struct forker *f, long n)
{
    double per;
    if (write(f->cmd[1], &n, sizeof(n)) != sizeof(n) ||
        read(f->ans[0], &per, sizeof(per)) != sizeof(per))
        die("forker");
    return per;
}

static void
forker_stop(struct forker *f)
{
    long zero = 0;
    if (write(f->cmd[1], &zero, sizeof(zero)) != sizeof(zero))
        die("forker");
    waitpid(f->pid, NULL, 0);
    close(f->cmd[0]), close(f->cmd[1]), close(f->ans[0]), close(f->ans[1]);
}

/* vas_create against the forker's forks, in turn, run by run. */
static void
create_vs_fork(struct forker *f, int runs, long n_fork, long n_create)
{
    double fork_ns[64], create_ns[64];
    for (int r = 0; r < runs && r < 64; r++) {
        fork_ns[r] = forker_run(f, n_fork);
        double deleted = 0;
        double t0 = now_ns();
        create_body(n_create, &deleted);
        create_ns[r] = (now_ns() - t0 - deleted) / n_create;
    }
    printf("fig fork");
    for (int r = 0; r < runs && r < 64; r++)
        printf(" %.1f", fork_ns[r]);
    printf("\nfig vas_create");
    for (int r = 0; r < runs && r < 64; r++)
        printf(" %.1f", create_ns[r]);
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
    /* The C fork baseline: a small C process, forked before the interpreter
     * starts (the RFC's baseline), timed in turn with the creates. */
    struct forker forker;
    forker_start(&forker);
    long n_fork = calibrate(fork_body, NULL, secs);
    long n_create = n_fork * 8 + 10;  /* creates are cheaper than forks */
    active_vas();

    /* The switches interleaved with their baseline, all on CPU 0. */
    struct pinned_peer peer;
    peer_start(&peer);
    struct pair none = make_pair("none", 0);
    struct pair one = make_pair("one", 1);
    {
        const char *const keys[] = {"pingpong_pinned", "switch_nothing", "switch_one_conflicting"};
        body_fn bodies[] = {pingpong_body, switch_body, switch_body};
        void *const ctxs[] = {&peer.p, &none, &one};
        interleaved(3, keys, bodies, ctxs, runs, secs);
    }
    drop_pair(none);
    drop_pair(one);

    create_vs_fork(&forker, runs, n_fork, n_create > 2000 ? 2000 : n_create);
    forker_stop(&forker);
    figure("fork_embedded", fork_body, NULL, runs, secs);

    /* Once a second thread has called in, the GIL is taken and given back
     * through the public API on every call (no sticky GIL). */
    pthread_t th;
    if (pthread_create(&th, NULL, call_once, NULL) != 0 || pthread_join(th, NULL) != 0)
        die("pthread");
    none = make_pair("none2", 0);
    {
        const char *const keys[] = {"pingpong_pinned_again", "switch_nothing_threaded"};
        body_fn bodies[] = {pingpong_body, switch_body};
        void *const ctxs[] = {&peer.p, &none};
        interleaved(2, keys, bodies, ctxs, runs, secs);
    }
    drop_pair(none);
    peer_stop(&peer);
    return 0;
}
