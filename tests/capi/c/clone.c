/*
 * clone.c: issue 16's calls from C.  Prints "<case> <errno>" lines (0 for
 * success) and "check <what> <1|0>" lines for the Python test to compare.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <vaspace.h>

#define START 0x402000000000UL
#define MIB (1UL << 20)

static void
report(const char *what, long r)
{
    printf("%s %d\n", what, r < 0 ? errno : 0);
}

int
main(void)
{
    vasid_t vid = vas_create("c-a", 0640);
    segid_t sid = vas_seg_create("c-s", START, START + MIB, 0600);
    report("seg_attach", vas_seg_attach(vid, sid, O_RDWR));

    void *p = vas_mmap(vid, NULL, MIB, PROT_READ | PROT_WRITE);
    report("mmap_anywhere", p == MAP_FAILED ? -1 : 0);
    report("mmap_overlap", vas_mmap(vid, (void *)START, 4096, PROT_READ) == MAP_FAILED ? -1 : 0);
    report("mmap_unaligned",
           vas_mmap(vid, (void *)(START + 8 * MIB + 1), 4096, PROT_READ) == MAP_FAILED ? -1 : 0);
    report("mmap_bad_vid", vas_mmap(424242, NULL, 4096, PROT_READ) == MAP_FAILED ? -1 : 0);

    report("attach", vas_attach(0, vid, O_RDWR));
    report("switch", vas_switch(vid));
    strcpy((char *)p, "private");
    strcpy((char *)START, "shared");
    report("switch_back", vas_switch(0));
    report("seg_clone_busy", vas_seg_clone(sid, "c-s2"));
    report("mmap_attached", vas_mmap(vid, NULL, 4096, PROT_READ) == MAP_FAILED ? -1 : 0);
    report("detach", vas_detach(0, vid));

    segid_t sid2 = vas_seg_clone(sid, "c-s2");
    report("seg_clone", sid2);
    report("seg_clone_again", vas_seg_clone(sid, "c-s2"));
    report("seg_clone_null", vas_seg_clone(sid, NULL));
    vasid_t vid2 = vas_clone(vid, "c-b");
    report("clone", vid2);
    report("clone_unknown", vas_clone(424242, "c-x"));

    struct vas_attr attr;
    vas_getattr(vid2, &attr);
    printf("check clone_mode %d\n", attr.mode == 0640);
    report("attach_clone", vas_attach(0, vid2, O_RDWR));
    report("switch_clone", vas_switch(vid2));
    printf("check private_copied %d\n", strcmp((char *)p, "private") == 0);
    printf("check segment_shared %d\n", strcmp((char *)START, "shared") == 0);
    strcpy((char *)p, "changed");
    report("switch_back_clone", vas_switch(0));
    report("detach_clone", vas_detach(0, vid2));
    report("attach_orig", vas_attach(0, vid, O_RDONLY));
    report("switch_orig", vas_switch(vid));
    printf("check original_untouched %d\n", strcmp((char *)p, "private") == 0);
    report("switch_back_orig", vas_switch(0));
    report("detach_orig", vas_detach(0, vid));

    report("munmap", vas_munmap(vid, p, MIB));
    report("munmap_again", vas_munmap(vid, p, MIB));
    vas_delete(vid2);
    vas_delete(vid);
    vas_seg_delete(sid2);
    vas_seg_delete(sid);
    return 0;
}
