/* SPDX-License-Identifier: MIT */
/**
 * \file
 * File descriptors passed with SCM_RIGHTS: a small owning set, and the
 * control-buffer helpers every vhu transfer uses.
 *
 * Ownership rule: a received fd has exactly one owner. A struct vhu_fds
 * owns the fds in it; vhu_fds_take() moves one out; vhu_fds_close() closes
 * what is left and may be called any number of times.
 */
#ifndef VHU_FDS_H
#define VHU_FDS_H

#include <stddef.h>
#include <sys/socket.h>

#include <vhu/wire.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the API: exported even under -fvisibility=hidden */
#endif

/** An owning set of up to VHU_MAX_FDS received fds. */
struct vhu_fds {
	int fd[VHU_MAX_FDS];	/**< slots [0, n); a taken slot holds -1 */
	unsigned int n;
};

/**
 * Control buffer with room for VHU_MAX_FDS fds, aligned for struct cmsghdr
 * (whose first member is a size_t). No VLAs. Not a struct cmsghdr member:
 * glibc gives that a flexible array, which may not sit inside a struct.
 */
union vhu_cmsg_buf {
	size_t align;
	char buf[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
};

/** Initialise an empty set. */
void vhu_fds_init(struct vhu_fds *fds);

/** Close every fd still in the set and empty it. Idempotent. */
void vhu_fds_close(struct vhu_fds *fds);

/**
 * Move fd i out of the set; the caller owns it from now on.
 * \return the fd, or -1 if i is out of range or already taken.
 */
int vhu_fds_take(struct vhu_fds *fds, unsigned int i);

/**
 * Attach fds to a msghdr as one SCM_RIGHTS cmsg in cbuf. With n == 0 the
 * msghdr gets no control data.
 * \return 0, or -VHU_EFDS if n > VHU_MAX_FDS.
 */
int vhu_cmsg_build(struct msghdr *mh, union vhu_cmsg_buf *cbuf, const int *fds, unsigned int n);

/** Point a msghdr's control area at cbuf for a receive. */
void vhu_cmsg_prep_recv(struct msghdr *mh, union vhu_cmsg_buf *cbuf);

/**
 * Collect the fds a receive delivered, walking every cmsg (SCM_RIGHTS is
 * taken, anything else is skipped). They are appended to out.
 *
 * msg_flags is the receive's returned flags. If it has MSG_CTRUNC, every
 * fd that did arrive is closed and -VHU_ECTRUNC returned when the control
 * buffer was full (the peer sent more than it holds), -EMFILE when fewer
 * than VHU_MAX_FDS arrived (the kernel could not install them: this
 * process's fd table is full; the buffer must hold VHU_MAX_FDS, as
 * vhu_cmsg_prep_recv's does). If out has no
 * room for all of them, they are all closed and -VHU_EFDS returned. On any
 * error out is left as it was before the call.
 *
 * \return the number of fds appended (>= 0), or a negative vhu error.
 */
int vhu_cmsg_collect(const struct msghdr *mh, int msg_flags, struct vhu_fds *out);

/** \return true if fds a and b refer to the same open file description's inode. */
int vhu_fd_same_file(int a, int b);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
