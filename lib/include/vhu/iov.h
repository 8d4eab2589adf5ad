/* SPDX-License-Identifier: MIT */
/**
 * \file
 * Scatter-gather cursor: advance over iovec arrays that a transfer only
 * partly consumed. Used by the blocking endpoint and the io_uring engine.
 */
#ifndef VHU_IOV_H
#define VHU_IOV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the API: exported even under -fvisibility=hidden */
#endif

/**
 * A cursor over a mutable iovec array. Advancing edits the first iovec's
 * base and length in place and steps past iovecs that are done, so
 * (iov, cnt) can be handed to the next sendmsg/recvmsg as is.
 */
struct vhu_iovc {
	struct iovec *iov;	/**< first iovec with bytes left (or end) */
	unsigned int cnt;	/**< iovecs from iov on */
};

/** Start a cursor over iov[0..cnt). Leading empty iovecs are skipped. */
void vhu_iovc_init(struct vhu_iovc *c, struct iovec *iov, unsigned int cnt);

/**
 * Consume n bytes. Empty iovecs reached on the way are skipped too.
 * \return the bytes consumed: n, or fewer if the cursor ran out.
 */
size_t vhu_iovc_advance(struct vhu_iovc *c, size_t n);

/** \return bytes left under the cursor. */
size_t vhu_iovc_len(const struct vhu_iovc *c);

/** \return true when no bytes are left. */
bool vhu_iovc_done(const struct vhu_iovc *c);

/** \return the total length of iov[0..cnt). */
size_t vhu_iov_len(const struct iovec *iov, unsigned int cnt);

/**
 * The const variant: describe what is left of a read-only array after
 * skipping off bytes, as fresh iovecs in dst (the source is not touched).
 * \return the number of iovecs written to dst (at most dst_max), covering
 *         everything left or as much as dst_max iovecs hold.
 */
unsigned int vhu_iov_tail(const struct iovec *src, unsigned int cnt, size_t off,
			  struct iovec *dst, unsigned int dst_max);

/**
 * Copy up to len bytes out of an iovec array, starting off bytes in.
 * \return bytes copied.
 */
size_t vhu_iov_to_buf(const struct iovec *iov, unsigned int cnt, size_t off, void *buf, size_t len);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
