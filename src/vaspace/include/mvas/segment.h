/*
 * <mvas/segment.h>: libmvas's segment calls, served by vaspace (source
 * compatible).  Every call returns -1 and sets errno (the RFC's) on failure.
 * A segment is memory at a fixed address [start, end), inside the window
 * (VASPACE_WINDOW, by default [0x400000000000, 0x500000000000)).
 */
#ifndef MVAS_SEGMENT_H
#define MVAS_SEGMENT_H

#include <mvas/vas.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int segid_t;

/* Create a segment for [start, end); returns its id (> 0).  EINVAL (bad or
 * NULL name, unaligned or empty range), EFAULT (outside the window), EEXIST. */
segid_t segment_create(const char *name, unsigned long start, unsigned long end, mode_t mode);
/* The same, for size bytes at start. */
segid_t segment_create_sz(const char *name, unsigned long start, unsigned long size, mode_t mode);
/* Delete a segment.  EINVAL, EBUSY (attached to a VAS), EACCES, EPERM. */
int segment_delete(segid_t sid);
/* The id of the segment called name.  EINVAL, ESRCH. */
segid_t segment_find(const char *name);
/* Attach a segment to a VAS with type (as vas_attach's).  EINVAL, EACCES,
 * EBUSY (the VAS is attached to a process), EFAULT (overlap). */
int segment_attach(vasid_t vid, segid_t sid, int type);
/* Detach it.  EINVAL (not attached), EBUSY, EACCES. */
int segment_detach(vasid_t vid, segid_t sid);
/* The segment's mode, user and group.  EINVAL (unknown id, NULL attr). */
int segment_getattr(segid_t sid, struct vas_seg_attr *attr);
/* Set them (mode masked with 0666).  EINVAL, EACCES, EPERM. */
int segment_setattr(segid_t sid, const struct vas_seg_attr *attr);

#ifdef __cplusplus
}
#endif

#endif /* MVAS_SEGMENT_H */
