/*
 * <vaspace.h>: the RFC's own names for the same calls as <mvas/vas.h> and
 * <mvas/segment.h> (which it includes), plus vaspace's additions.
 *
 *   vas_seg_create(name, start, end, mode)   = segment_create
 *   vas_seg_delete / _find / _attach / _detach / _getattr / _setattr
 *                                            = segment_delete ... setattr
 *   vas_create ... vas_setattr, active_vas   : as in <mvas/vas.h>
 *
 * Semantics are those of vaspace's Python API (one implementation: this
 * library runs it in an embedded interpreter, or in the host's when the
 * process is already Python).  Failures return -1 with the RFC's errno;
 * an error that is not an OS error (a bug, or the interpreter failing to
 * start) reads as EIO.  vaspace_last_error() then says what went wrong.
 * A NULL name is EINVAL, as in the RFC; names are UTF-8, 1..255 bytes.
 * The active VAS is per thread.  A forked child starts in the original
 * address space with no attachments; exec drops everything.
 */
#ifndef VASPACE_H
#define VASPACE_H

#include <stddef.h>
#include <mvas/vas.h>
#include <mvas/segment.h>

#ifdef __cplusplus
extern "C" {
#endif

segid_t vas_seg_create(const char *name, unsigned long start, unsigned long end, mode_t mode);
int vas_seg_delete(segid_t sid);
segid_t vas_seg_find(const char *name);
int vas_seg_attach(vasid_t vid, segid_t sid, int type);
int vas_seg_detach(vasid_t vid, segid_t sid);
int vas_seg_getattr(segid_t sid, struct vas_seg_attr *attr);
int vas_seg_setattr(segid_t sid, const struct vas_seg_attr *attr);

/* Clones (SpaceJMP's vas_clone): a new object NAME from an existing one; its
 * id, or -1 with errno EINVAL, EEXIST, EACCES, EBUSY. */
segid_t vas_seg_clone(segid_t sid, const char *name);
vasid_t vas_clone(vasid_t vid, const char *name);

/* Private memory of a VAS (the RFC's mmap made inside it): [addr, addr+length),
 * addr NULL = anywhere free in the window; prot PROT_READ or
 * PROT_READ|PROT_WRITE.  Returns the address, or MAP_FAILED with errno
 * EINVAL, EFAULT, EBUSY, EACCES, ENOMEM.  vas_munmap removes whole ranges. */
void *vas_mmap(vasid_t vid, void *addr, size_t length, int prot);
int vas_munmap(vasid_t vid, void *addr, size_t length);

/* The message of the calling thread's last failure ("" if none yet): it
 * names the object, as vaspace's Python errors do.  Valid until the
 * thread's next call. */
const char *vaspace_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* VASPACE_H */
