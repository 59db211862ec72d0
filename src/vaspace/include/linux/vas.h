/*
 * <linux/vas.h>: the RFC's uapi header ("Introduce first class virtual
 * address spaces", include/uapi/linux/vas.h), shipped by vaspace so that
 * programs which include it directly build on a stock kernel.
 *
 * The attributes of a VAS and of a segment.  mode holds permission bits
 * (masked with 0666 on set); user and group are numeric ids.  The RFC
 * defines no uapi constants.
 */
#ifndef _UAPI_LINUX_VAS_H
#define _UAPI_LINUX_VAS_H

#include <linux/types.h>

struct vas_attr {
	__kernel_mode_t mode;
	__kernel_uid_t user;
	__kernel_gid_t group;
};

struct vas_seg_attr {
	__kernel_mode_t mode;
	__kernel_uid_t user;
	__kernel_gid_t group;
};

#endif /* _UAPI_LINUX_VAS_H */
