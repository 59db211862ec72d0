/*
 * hello.c: a VAS with one segment, entered and left from C.
 *
 *   cc hello.c $(vaspace config --cflags --libs) -o hello && ./hello
 *
 * Creates the VAS "hello" and the segment "hello-seg" (64 KiB at the start
 * of the window), attaches both, switches in, writes a string at the
 * segment's fixed address, switches back, and deletes both again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include <mvas/segment.h>
#include <mvas/vas.h>

#define SEG_START 0x400000000000UL
#define SEG_SIZE (64UL << 10)

static int
fail(const char *what)
{
    fprintf(stderr, "hello: %s: %s\n", what, strerror(errno));
    return 1;
}

int
main(void)
{
    vasid_t vid = vas_create("hello", 0600);
    if (vid < 0)
        return fail("vas_create");
    segid_t sid = segment_create_sz("hello-seg", SEG_START, SEG_SIZE, 0600);
    if (sid < 0)
        return fail("segment_create_sz");
    if (segment_attach(vid, sid, O_RDWR) < 0)
        return fail("segment_attach");
    if (vas_attach(0, vid, O_RDWR) < 0)
        return fail("vas_attach");
    if (vas_switch(vid) < 0)
        return fail("vas_switch");

    char *text = (char *)SEG_START;  /* the segment's address, in every process */
    strcpy(text, "hello from a VAS");
    printf("in VAS %d (active_vas() = %d): %s\n", vid, active_vas(), text);

    if (vas_switch(0) < 0)
        return fail("vas_switch(0)");
    printf("back in the original address space (active_vas() = %d)\n", active_vas());

    /* Clean up in order: detach the VAS, delete it, then the segment. */
    if (vas_detach(0, vid) < 0 || vas_delete(vid) < 0 || segment_delete(sid) < 0)
        return fail("clean-up");
    return 0;
}
