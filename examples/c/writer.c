/*
 * writer.c: a C process writes into a VAS that a Python process then reads
 * (reader.py).  The registry is shared: C and Python see the same objects.
 *
 *   cc writer.c $(vaspace config --cflags --libs) -o writer
 *   ./writer "a message" && python reader.py
 *
 * Creates VAS "shared-demo" with segment "shared-demo-seg" (64 KiB at the
 * start of the window), writes the message there, and detaches: the sharing
 * rule allows one writer or many readers, so the reader can attach only
 * once the writer has let go.  The objects stay in the registry (they are
 * first class); reader.py deletes them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include <vaspace.h>

#define SEG_START 0x400000000000UL
#define SEG_SIZE (64UL << 10)

int
main(int argc, char **argv)
{
    const char *message = argc > 1 ? argv[1] : "hello from C";
    vasid_t vid = vas_create("shared-demo", 0644);
    segid_t sid = vas_seg_create("shared-demo-seg", SEG_START, SEG_START + SEG_SIZE, 0644);
    if (vid < 0 || sid < 0 || vas_seg_attach(vid, sid, O_RDWR) < 0 ||
        vas_attach(0, vid, O_RDWR) < 0 || vas_switch(vid) < 0) {
        fprintf(stderr, "writer: %s (%s)\n", strerror(errno), vaspace_last_error());
        return 1;
    }
    snprintf((char *)SEG_START, SEG_SIZE, "%s", message);
    if (vas_switch(0) < 0 || vas_detach(0, vid) < 0) {
        fprintf(stderr, "writer: %s (%s)\n", strerror(errno), vaspace_last_error());
        return 1;
    }
    printf("writer: wrote %zu bytes into VAS %d\n", strlen(message), vid);
    return 0;
}
