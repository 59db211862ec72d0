/*
 * <mvas/vas.h>: libmvas's VAS calls, served by vaspace (source compatible).
 *
 * Every call returns -1 and sets errno on failure, with the errno the RFC's
 * system call returns (unlike libmvas, whose failures all read as EPERM).
 * Link with $(vaspace config --libs); see vaspace.h for the differences.
 */
#ifndef MVAS_VAS_H
#define MVAS_VAS_H

#include <linux/vas.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int vasid_t;

/* Create a VAS; returns its id (> 0).  EINVAL (bad or NULL name), EEXIST. */
vasid_t vas_create(const char *name, mode_t mode);
/* Delete a VAS.  EINVAL, EBUSY (attached to a process), EACCES, EPERM. */
int vas_delete(vasid_t vid);
/* The id of the VAS called name.  EINVAL (bad or NULL name), ESRCH. */
vasid_t vas_find(const char *name);
/* Attach a VAS to pid (0: the caller).  type & O_ACCMODE: O_RDONLY (0, so
 * S_IRWXU means read-only), O_WRONLY or O_RDWR.  EINVAL, ESRCH, EPERM,
 * EACCES, EBUSY (one writer or many readers). */
int vas_attach(pid_t pid, vasid_t vid, int type);
/* Detach a VAS from pid (0: the caller).  EINVAL, ESRCH, EPERM, EBUSY. */
int vas_detach(pid_t pid, vasid_t vid);
/* Switch the calling thread to vid (0: the original address space).
 * EINVAL (not attached), EFAULT (another thread's VAS holds the range). */
int vas_switch(vasid_t vid);
/* The calling thread's active VAS (0: the original address space). */
vasid_t active_vas(void);
/* The VAS's mode, user and group.  EINVAL (unknown id, NULL attr). */
int vas_getattr(vasid_t vid, struct vas_attr *attr);
/* Set them (mode masked with 0666).  EINVAL, EACCES, EPERM. */
int vas_setattr(vasid_t vid, const struct vas_attr *attr);

/* libmvas extras that are not in the RFC: always -1 with errno ENOSYS. */
vasid_t vas_fork(pid_t pid);
int vas_exec(pid_t pid, vasid_t vid);

#ifdef __cplusplus
}
#endif

#endif /* MVAS_VAS_H */
