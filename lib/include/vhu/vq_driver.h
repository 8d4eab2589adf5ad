/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The driver side of a split virtqueue, transport-free: descriptor
 * allocation, the avail ring, kick and call suppression, and the harvest
 * of the used ring with every device-written field checked.
 *
 * The rings live in memory the caller provides (shared with the device);
 * the queue's own bookkeeping (free list, chain lengths, what is in
 * flight) is private and never read back from shared memory, so a device
 * that scribbles over the descriptor table cannot make the driver free,
 * read or write anything it did not hand out. Buffer addresses are written
 * as given: a driver that uses its own virtual addresses as guest-physical
 * ones (libblkio's choice, and vhu's blk driver) passes iovecs as they are.
 *
 * Security model: the device is untrusted. Each used element is read once
 * into locals; an id that was never issued (out of range, or not in
 * flight) or a used index that moved by more than the queue size breaks
 * the queue (-VHU_EUSEDID, -VHU_EUSEDIDX: every later harvest returns the
 * same error until vhu_vqd_reset()); a used length above the chain's
 * device-writable bytes fails that one request (-VHU_EUSEDLEN in
 * vhu_vqd_used.err) and the queue goes on.
 *
 * No allocation after vhu_vqd_create(); nothing here blocks, nothing is
 * thread-safe (one queue, one thread).
 */
#ifndef VHU_VQ_DRIVER_H
#define VHU_VQ_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the API: exported even under -fvisibility=hidden */
#endif

struct vhu_vqd;

/** vhu_vqd_create() flags: what was negotiated. */
#define VHU_VQD_F_EVENT_IDX	0x1u	/**< VIRTIO_RING_F_EVENT_IDX */
#define VHU_VQD_F_INDIRECT	0x2u	/**< VIRTIO_RING_F_INDIRECT_DESC */

/**
 * Bytes of shared memory a queue needs: descriptor table, avail ring,
 * used ring (on its own cache line) and, when indirect > 0, one indirect
 * table of indirect descriptors per ring descriptor.
 * \return the size, or 0 if num is not a valid queue size.
 */
size_t vhu_vqd_mem_size(unsigned int num, unsigned int indirect);

/**
 * Lay a queue out in mem (len >= vhu_vqd_mem_size(num, indirect), 64-byte
 * aligned, zeroed here) and allocate its private state.
 * \param indirect  entries of each indirect table (0: no indirect
 *                  descriptors; needs VHU_VQD_F_INDIRECT otherwise).
 * \return 0 with *out set; -VHU_EVQSIZE for a bad num; -EINVAL for a
 *         short or misaligned mem, or indirect without the flag; -ENOMEM.
 */
int vhu_vqd_create(unsigned int num, void *mem, size_t len, unsigned int indirect,
		   uint32_t flags, struct vhu_vqd **out);

/** Free the private state (the rings stay in the caller's memory). NULL is a no-op. */
void vhu_vqd_destroy(struct vhu_vqd *q);

/** \return the queue size. */
unsigned int vhu_vqd_num(const struct vhu_vqd *q);

/** Addresses of the three areas (the driver's virtual addresses), for SET_VRING_ADDR. */
uint64_t vhu_vqd_desc_addr(const struct vhu_vqd *q);
uint64_t vhu_vqd_avail_addr(const struct vhu_vqd *q);
uint64_t vhu_vqd_used_addr(const struct vhu_vqd *q);

/** \return requests in flight (added, not yet harvested). */
unsigned int vhu_vqd_inflight(const struct vhu_vqd *q);

/**
 * Add one request: nout device-readable buffers then nin device-writable
 * ones, as one chain (or one indirect descriptor when the queue has
 * indirect tables and the request has more than one buffer). The entry is
 * written to the avail ring but not published: call vhu_vqd_publish().
 * \return the chain's head (0..num-1, the request's id until it is
 *         harvested); -EAGAIN if the queue has no room (nothing written);
 *         -E2BIG if the request can never fit (more buffers than the
 *         queue or an indirect table holds); -EINVAL for no buffers or a
 *         buffer above 4 GiB; or the queue's broken error.
 */
int vhu_vqd_add(struct vhu_vqd *q, const struct iovec *out, unsigned int nout,
		const struct iovec *in, unsigned int nin);

/**
 * The head the next vhu_vqd_add() will return (the free list's first
 * descriptor), so that per-request state indexed by head can be filled
 * before the add.
 * \return the head, -EAGAIN if no descriptor is free, or the broken error.
 */
int vhu_vqd_next_head(const struct vhu_vqd *q);

/**
 * Publish the entries added since the last call (one release store of
 * avail->idx).
 * \return true if the device asked to be notified of them (EVENT_IDX's
 *         avail_event, or used->flags without NO_NOTIFY): write the kick
 *         eventfd.
 */
bool vhu_vqd_publish(struct vhu_vqd *q);

/** One harvested request. */
struct vhu_vqd_used {
	uint16_t head;	/**< the id vhu_vqd_add() returned */
	uint32_t len;	/**< bytes the device says it wrote (<= the chain's writable bytes) */
	int err;	/**< 0, or -VHU_EUSEDLEN (len was above the writable bytes; len is then 0) */
};

/**
 * Harvest one used element, if the device has published one.
 * \return 1 with *u filled (the head is free again); 0 if none is pending;
 *         -VHU_EUSEDID or -VHU_EUSEDIDX when the device broke the queue
 *         (sticky: see the file comment).
 */
int vhu_vqd_next_used(struct vhu_vqd *q, struct vhu_vqd_used *u);

/**
 * Ask for a call at the next used element (EVENT_IDX: used_event = the
 * next index; otherwise clear NO_INTERRUPT), with the fence that makes
 * the check race-free.
 * \return true if used elements are already pending (harvest them instead
 *         of waiting).
 */
bool vhu_vqd_enable_calls(struct vhu_vqd *q);

/** Tell the device calls are not wanted (polling). Best effort, as virtio allows. */
void vhu_vqd_disable_calls(struct vhu_vqd *q);

/** \return 0, or the sticky error of a broken queue. */
int vhu_vqd_broken(const struct vhu_vqd *q);

/**
 * Is head in flight? For failing every request of a broken queue: walk
 * heads 0..num-1, then vhu_vqd_reset().
 */
bool vhu_vqd_head_inflight(const struct vhu_vqd *q, unsigned int head);

/**
 * Forget everything in flight and clear the rings and the broken state:
 * only once the device no longer uses the rings (it was stopped, reset or
 * is gone).
 */
void vhu_vqd_reset(struct vhu_vqd *q);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
