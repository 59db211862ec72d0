/*
 * hold.c NAME ro|rw: attach VAS NAME, say "attached" (or "error <errno>"),
 * and hold it until stdin closes.  For the sharing rule between C and
 * Python processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include <vaspace.h>

int
main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    vasid_t vid = vas_find(argv[1]);
    int type = strcmp(argv[2], "rw") == 0 ? O_RDWR : O_RDONLY;
    if (vid < 0 || vas_attach(0, vid, type) < 0) {
        printf("error %d\n", errno);
        return 1;
    }
    printf("attached\n");
    fflush(stdout);
    char line[16];
    while (fgets(line, sizeof(line), stdin) != NULL)
        ;
    return vas_detach(0, vid) == 0 ? 0 : 1;
}
