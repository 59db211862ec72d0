/*
 * fork.c: a forked child starts in the original address space with no
 * attachments, and can use the API at once, even when the parent forked
 * while another of its threads was calling in.  exec drops everything.
 * Prints "check <what> 1" lines; exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vaspace.h>

#define W 0x400000000000UL
#define PAGE 4096UL

static atomic_int stop;

static void *
hammer(void *arg)
{
    /* Keeps calling in, so that forks happen while this thread holds the GIL. */
    while (!atomic_load(&stop))
        vas_find("f");
    return NULL;
}

static int
unmapped(unsigned long addr)
{
    unsigned char vec;
    return mincore((void *)addr, PAGE, &vec) < 0 && errno == ENOMEM;
}

/* In a fresh child (forked or exec'd): 0 when it is in the original AS with
 * no attachments and the API works. */
static int
child_checks(vasid_t vid)
{
    int bad = 0;
    bad |= (active_vas() != 0) << 0;
    bad |= !unmapped(W) << 1;
    bad |= !(vas_switch(vid) < 0 && errno == EINVAL) << 2;
    bad |= (vas_find("f") != vid) << 3;
    return bad;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "exec-child") == 0)
        return child_checks(atoi(argv[2]));
    vasid_t vid = vas_create("f", 0600);
    segid_t sid = segment_create_sz("f-s", W, PAGE, 0600);
    if (vid < 0 || sid < 0 || segment_attach(vid, sid, O_RDWR) < 0 ||
        vas_attach(0, vid, O_RDWR) < 0 || vas_switch(vid) < 0) {
        perror("set-up");
        return 2;
    }
    *(volatile int *)W = 42;
    pthread_t th;
    pthread_create(&th, NULL, hammer, NULL);
    int forks_ok = 1;
    for (int i = 0; i < 10; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_checks(vid));
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork child %d: status %#x\n", i, status);
            forks_ok = 0;
        }
    }
    printf("check fork_child_starts_clean %d\n", forks_ok);
    atomic_store(&stop, 1);
    pthread_join(th, NULL);

    char arg[16];
    snprintf(arg, sizeof(arg), "%d", vid);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "exec-child", arg, (char *)NULL);
        _exit(99);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("check exec_child_starts_clean %d\n", WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("check parent_unchanged %d\n", active_vas() == vid && *(volatile int *)W == 42);
    vas_switch(0);
    int clean = vas_detach(0, vid) == 0 && vas_delete(vid) == 0 && segment_delete(sid) == 0;
    printf("check clean_up %d\n", clean);
    return 0;
}
