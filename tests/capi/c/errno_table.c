/*
 * errno_table.c: every error of the C API, one line per case:
 * "<case> <errno or 0>", and "check <what> <1 if it holds>".  tests/capi/test_errno.py holds the expected
 * table.  Run as root in a fresh registry; the last cases drop to uid 65534
 * (after the interpreter has started: its files live under a root-only home).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vaspace.h>

#define W 0x400000000000UL
#define PAGE 4096UL

static void
report(const char *what, long rc)
{
    /* strerrorname_np needs glibc 2.32: print the number, the test names it. */
    printf("%s %d\n", what, rc < 0 ? errno : 0);
}

#define CASE(what, call) do { errno = 0; long rc_ = (long)(call); report(what, rc_); } while (0)

static vasid_t other_vid;

static void *
other_thread(void *arg)
{
    /* Inside a VAS whose segment sits where the main thread's next VAS wants one. */
    vas_switch(other_vid);
    pthread_barrier_wait(arg);
    pthread_barrier_wait(arg);
    vas_switch(0);
    return NULL;
}

int
main(void)
{
    struct vas_attr attr;
    struct vas_seg_attr sattr;

    CASE("create_null", vas_create(NULL, 0600));
    CASE("create_empty", vas_create("", 0600));
    CASE("create_not_utf8", vas_create("\xff\xfe", 0600));
    vasid_t vid = vas_create("t", 0777);
    CASE("create", vid);
    CASE("create_again", vas_create("t", 0600));
    printf("check sigint_default %d\n", signal(SIGINT, SIG_DFL) == SIG_DFL);
    CASE("find", vas_find("t") == vid ? 0 : -1);
    CASE("find_missing", vas_find("missing"));
    printf("check message_names_object %d\n", strstr(vaspace_last_error(), "missing") != NULL);
    CASE("find_null", vas_find(NULL));
    CASE("delete_zero", vas_delete(0));
    CASE("delete_unknown", vas_delete(999999));
    CASE("getattr_null", vas_getattr(vid, NULL));
    CASE("getattr_unknown", vas_getattr(999999, &attr));
    CASE("getattr", vas_getattr(vid, &attr));
    printf("check getattr_mode_masked %d\n", attr.mode == 0666 && attr.user == geteuid());
    attr.mode = 0600;
    CASE("setattr", vas_setattr(vid, &attr));
    CASE("setattr_null", vas_setattr(vid, NULL));

    CASE("seg_create_unaligned", vas_seg_create("s", W + 1, W + PAGE, 0600));
    CASE("seg_create_empty", vas_seg_create("s", W + PAGE, W + PAGE, 0600));
    CASE("seg_create_outside_window", vas_seg_create("s", PAGE, 2 * PAGE, 0600));
    CASE("seg_create_sz_zero", segment_create_sz("s", W, 0, 0600));
    CASE("seg_create_null", segment_create(NULL, W, W + PAGE, 0600));
    segid_t sid = segment_create_sz("s", W, PAGE, 0644);
    CASE("seg_create", sid);
    CASE("seg_create_again", segment_create("s", W + PAGE, W + 2 * PAGE, 0600));
    segid_t overlap = segment_create("overlap", W, W + 2 * PAGE, 0600);
    CASE("seg_find", segment_find("s") == sid ? 0 : -1);
    CASE("seg_find_missing", segment_find("missing"));
    CASE("seg_getattr_null", segment_getattr(sid, NULL));
    CASE("seg_getattr", segment_getattr(sid, &sattr));
    printf("check seg_getattr_mode %d\n", sattr.mode == 0644);
    CASE("seg_setattr", segment_setattr(sid, &sattr));
    CASE("seg_attach_bad_type", segment_attach(vid, sid, 3));
    CASE("seg_attach_unknown", segment_attach(vid, 999999, O_RDWR));
    CASE("seg_attach", segment_attach(vid, sid, O_RDWR));
    CASE("seg_attach_twice", segment_attach(vid, sid, O_RDWR));
    CASE("seg_attach_overlap", segment_attach(vid, overlap, O_RDWR));
    CASE("seg_detach_not_attached", segment_detach(vid, overlap));
    CASE("seg_delete_attached", segment_delete(sid));

    CASE("attach_bad_type", vas_attach(0, vid, 3));
    CASE("attach_bad_pid", vas_attach(-1, vid, O_RDWR));
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    waitpid(gone, NULL, 0);
    CASE("attach_dead_pid", vas_attach(gone, vid, O_RDWR));
    CASE("detach_not_attached", vas_detach(0, vid));
    CASE("switch_not_attached", vas_switch(vid));
    CASE("switch_negative", vas_switch(-1));
    /* S_IRWXU & O_ACCMODE == O_RDONLY: read-only, as real programs pass it. */
    CASE("attach_s_irwxu", vas_attach(0, vid, S_IRWXU));
    CASE("seg_attach_vas_attached", segment_attach(vid, overlap, O_RDWR));
    CASE("delete_attached", vas_delete(vid));
    CASE("switch", vas_switch(vid));
    printf("check active %d\n", active_vas() == vid);
    printf("check reads_segment %d\n", *(volatile char *)W == 0);
    CASE("detach_inside", vas_detach(0, vid));
    CASE("switch_back", vas_switch(0));
    CASE("detach", vas_detach(0, vid));

    /* The EFAULT rule between threads: another thread is inside a VAS
     * whose segment holds the range this thread's VAS needs. */
    other_vid = vas_create("other", 0600);
    segid_t osid = segment_create_sz("other-s", W, PAGE, 0600);
    segment_attach(other_vid, osid, O_RDWR);
    vas_attach(0, other_vid, O_RDWR);
    vas_attach(0, vid, O_RDWR);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t th;
    pthread_create(&th, NULL, other_thread, &bar);
    pthread_barrier_wait(&bar);
    CASE("switch_conflict_other_thread", vas_switch(vid));
    printf("check stays_after_conflict %d\n", active_vas() == 0);
    pthread_barrier_wait(&bar);
    pthread_join(th, NULL);
    CASE("switch_after_other_left", vas_switch(vid));
    vas_switch(0);
    vas_detach(0, vid);
    vas_detach(0, other_vid);

    CASE("vas_fork", vas_fork(0));
    CASE("vas_exec", vas_exec(0, vid));

    /* Another user: EACCES (no write permission), EPERM (not allowed on pid 1). */
    fflush(stdout);
    if (setgid(65534) < 0 || setuid(65534) < 0) {
        printf("dropped 0\n");
        return 1;
    }
    CASE("nobody_delete", vas_delete(vid));
    CASE("nobody_attach_rw", vas_attach(0, vid, O_RDWR));
    CASE("nobody_seg_delete", segment_delete(overlap));
    CASE("nobody_setattr", vas_setattr(vid, &attr));
    CASE("nobody_attach_pid1", vas_attach(1, vid, O_RDONLY));
    fflush(stdout);
    return 0;
}
