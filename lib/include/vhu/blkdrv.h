/* SPDX-License-Identifier: MIT */
/**
 * \file
 * A userspace vhost-user-blk driver: the front-end side of a virtio-blk
 * device served by any vhost-user-blk back-end (qemu-storage-daemon, SPDK,
 * vhu-backend, ...), with no VM. What libblkio's virtio-blk-vhost-user
 * driver does, in C on vhu's blocking endpoint.
 *
 * Set-up (vhu_blkdrv_connect()) is blocking and has one deadline: the
 * handshake QEMU's vhost-user-blk does (features, protocol features with
 * REPLY_ACK on every request that allows it, MQ, CONFIG,
 * CONFIGURE_MEM_SLOTS, SET_OWNER, GET_CONFIG), then memory, then N split
 * virtqueues with a kick and a call eventfd each. Guest-physical addresses
 * are the driver's own virtual addresses. The rings and the per-request
 * headers and status bytes live in one memfd the driver allocates; data
 * buffers must lie in regions the application allocates from the driver
 * (vhu_blkdrv_alloc()), which are shared with the back-end by ADD_MEM_REG
 * when it offers CONFIGURE_MEM_SLOTS, otherwise by a new SET_MEM_TABLE.
 *
 * The data path never allocates and never blocks: the submit functions
 * place one request on a queue (its request table has one slot per
 * descriptor, sized to the queue), vhu_blkdrv_kick() publishes what was
 * placed and notifies the back-end if it asked to be, and completions are
 * harvested by polling the used ring (vhu_blkdrv_poll()) or by waiting on
 * the queue's call eventfd with a deadline (vhu_blkdrv_wait()), or on an
 * io_uring: vhu_blkdrv_arm_call(), then a read of vhu_blkdrv_call_fd() on
 * the ring (tests/test_blkdrv.c, wait_on_the_ring, does it on vhu's ring
 * with vhu_op_sqe()), then vhu_blkdrv_poll().
 *
 * Hostile back-ends: every value the back-end writes is checked (see
 * <vhu/vq_driver.h>). A used element naming a request never issued
 * (-VHU_EUSEDID) or a used index that jumps (-VHU_EUSEDIDX) breaks the
 * queue: every request in flight on it completes with that error and
 * later submits fail with it. A used length above a request's writable
 * buffers (-VHU_EUSEDLEN) or a status byte other than OK/IOERR/UNSUPP
 * (-VHU_EBLKSTATUS) fails that request only. A back-end that closes its
 * socket fails every request in flight with -VHU_EDISCONNECT (noticed by
 * vhu_blkdrv_wait() at once, by vhu_blkdrv_poll() within a few thousand
 * empty polls). The driver never copies data: nothing is read or written
 * outside the buffers the application passed.
 *
 * Thread context: queues are independent; one thread per queue may submit
 * and harvest concurrently with other queues' threads. Connect, alloc,
 * config and destroy must not run concurrently with anything else.
 */
#ifndef VHU_BLKDRV_H
#define VHU_BLKDRV_H

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

struct vhu_blkdrv;

/** Most queues a driver sets up. */
#define VHU_BLKDRV_MAX_QUEUES	64u
/** Data buffers (iovecs) one read or write may have. */
#define VHU_BLKDRV_MAX_SEGS	32u
/** Bytes of a GET_ID answer (virtio-blk: 20, not NUL-terminated when full). */
#define VHU_BLKDRV_ID_LEN	20u

/** Connect options; zeroed fields take the defaults. */
struct vhu_blkdrv_opts {
	unsigned int num_queues;	/**< queues to set up (default 1; <= what the back-end has) */
	unsigned int queue_size;	/**< descriptors per queue, power of two (default 256) */
	int timeout_ms;			/**< deadline of connect and of each control call (default 5000) */
	bool no_mem_slots;		/**< use SET_MEM_TABLE even if ADD_MEM_REG is offered */
	/**
	 * Do not negotiate VIRTIO_RING_F_EVENT_IDX even if offered: kicks and
	 * calls are then suppressed with the rings' flags only (to measure
	 * the difference).
	 */
	bool no_event_idx;
};

/** The device, from GET_CONFIG and the negotiated features. */
struct vhu_blkdrv_info {
	uint64_t capacity;		/**< in 512-byte sectors */
	uint32_t blk_size;		/**< logical block size (512 unless BLK_SIZE) */
	uint32_t seg_max;		/**< 0 unless SEG_MAX */
	uint16_t num_queues;		/**< the back-end's queues (MQ; else 1) */
	uint16_t queues;		/**< queues this driver set up */
	uint16_t queue_size;
	uint64_t features;		/**< negotiated virtio features */
	uint64_t protocol_features;	/**< negotiated protocol features */
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	bool mem_slots;			/**< regions go by ADD_MEM_REG */
};

/** Request types (virtio-blk). */
enum vhu_blkdrv_op {
	VHU_BLKDRV_READ = 0,
	VHU_BLKDRV_WRITE = 1,
	VHU_BLKDRV_FLUSH = 4,
	VHU_BLKDRV_GET_ID = 8,
	VHU_BLKDRV_DISCARD = 11,
	VHU_BLKDRV_WRITE_ZEROES = 13,
};

/** One completion. */
struct vhu_blkdrv_completion {
	void *cookie;	/**< what was passed to submit */
	int ret;	/**< 0; -EIO (IOERR), -ENOTSUP (UNSUPP), or a named vhu error */
};

/**
 * Connect to a vhost-user-blk back-end at path and set it up: handshake,
 * GET_CONFIG, the driver's ring region, and opts->num_queues started
 * queues. Every wait has opts->timeout_ms as its deadline.
 * \return 0 with *out set; -ETIMEDOUT; -ENOTSUP if the back-end lacks a
 *         feature the driver needs (VERSION_1, PROTOCOL_FEATURES, CONFIG);
 *         -EINVAL for bad options (queue size, more queues than the
 *         back-end has); a reply error (-VHU_EREPLY, ...), -EPROTO if the
 *         back-end refused a request (non-zero ack); or -errno.
 */
int vhu_blkdrv_connect(const char *path, const struct vhu_blkdrv_opts *opts,
		       struct vhu_blkdrv **out);

/**
 * Stop the queues (GET_VRING_BASE, best effort within the deadline), close
 * the socket and every fd, unmap everything. Memory from vhu_blkdrv_alloc()
 * is gone afterwards. NULL is a no-op.
 */
void vhu_blkdrv_destroy(struct vhu_blkdrv *d);

/** \return the device description (valid until destroy). */
const struct vhu_blkdrv_info *vhu_blkdrv_info(const struct vhu_blkdrv *d);

/**
 * Allocate len bytes (rounded up to pages) of memory shared with the
 * back-end, memfd-backed, and register it (ADD_MEM_REG, or SET_MEM_TABLE
 * with every region). Data buffers must lie inside such regions. Must not
 * run while requests are in flight when the back-end has no
 * CONFIGURE_MEM_SLOTS (SET_MEM_TABLE replaces the table under it).
 * \return 0 with *out set, -ENOSPC when every slot is used, -EBUSY (see
 *         above), -ENOMEM, or a control error.
 */
int vhu_blkdrv_alloc(struct vhu_blkdrv *d, size_t len, void **out);

/**
 * Submit one request to queue q (not yet visible to the back-end: call
 * vhu_blkdrv_kick()). sector is in 512-byte units. Buffers must lie inside
 * vhu_blkdrv_alloc() regions; for discard and write-zeroes, nsectors
 * sectors from sector (one range); for get-id, buf is VHU_BLKDRV_ID_LEN
 * bytes inside a region.
 * \return 0; -EAGAIN if the queue is full (nothing was queued: harvest
 *         and retry); -EFAULT for a buffer outside every region; -E2BIG
 *         for more than VHU_BLKDRV_MAX_SEGS buffers; -ENOTSUP for an
 *         operation the back-end did not offer (flush, discard,
 *         write-zeroes); -EINVAL for a bad queue index; the queue's broken
 *         error; -VHU_EDISCONNECT once the back-end is gone.
 */
int vhu_blkdrv_readv(struct vhu_blkdrv *d, unsigned int q, uint64_t sector,
		     const struct iovec *iov, unsigned int iovcnt, void *cookie);
int vhu_blkdrv_writev(struct vhu_blkdrv *d, unsigned int q, uint64_t sector,
		      const struct iovec *iov, unsigned int iovcnt, void *cookie);
int vhu_blkdrv_read(struct vhu_blkdrv *d, unsigned int q, uint64_t sector, void *buf,
		    size_t len, void *cookie);
int vhu_blkdrv_write(struct vhu_blkdrv *d, unsigned int q, uint64_t sector, const void *buf,
		     size_t len, void *cookie);
int vhu_blkdrv_flush(struct vhu_blkdrv *d, unsigned int q, void *cookie);
int vhu_blkdrv_discard(struct vhu_blkdrv *d, unsigned int q, uint64_t sector,
		       uint32_t nsectors, void *cookie);
int vhu_blkdrv_write_zeroes(struct vhu_blkdrv *d, unsigned int q, uint64_t sector,
			    uint32_t nsectors, bool may_unmap, void *cookie);
int vhu_blkdrv_get_id(struct vhu_blkdrv *d, unsigned int q, void *buf, void *cookie);

/**
 * Make the requests submitted on q visible to the back-end and, if it
 * asked for notifications, write q's kick eventfd.
 * \return 0, or -errno from the eventfd write.
 */
int vhu_blkdrv_kick(struct vhu_blkdrv *d, unsigned int q);

/**
 * Harvest up to max completions of queue q without waiting.
 * \return the number harvested (0..max), or -EINVAL for a bad queue.
 *         Failures of requests are in their completion's ret; a queue the
 *         back-end broke hands out every in-flight request with the error
 *         and then returns 0.
 */
int vhu_blkdrv_poll(struct vhu_blkdrv *d, unsigned int q, struct vhu_blkdrv_completion *c,
		    unsigned int max);

/**
 * Harvest at least min (<= max) completions of queue q, waiting on its call
 * eventfd and on the socket (a vanished back-end) for up to timeout_ms
 * (< 0: the driver's control timeout).
 * \return the number harvested: at least min, or fewer if the queue has
 *         fewer in flight or the deadline passed after some were harvested
 *         (nothing harvested is ever dropped); -ETIMEDOUT if the deadline
 *         passed with none; -EINVAL for a bad queue or min > max.
 */
int vhu_blkdrv_wait(struct vhu_blkdrv *d, unsigned int q, struct vhu_blkdrv_completion *c,
		    unsigned int min, unsigned int max, int timeout_ms);

/** \return queue q's call eventfd (owned by the driver), or -EINVAL. */
int vhu_blkdrv_call_fd(const struct vhu_blkdrv *d, unsigned int q);

/**
 * Before waiting for q's call eventfd outside vhu_blkdrv_wait() — for
 * instance an IORING_OP_READ of 8 bytes on it started with vhu_op_sqe() on
 * the application's vhu ring, so storage completions, messages and calls
 * all complete on one ring — ask the back-end for a call at the next
 * completion. The check is race-free: a completion published before it is
 * reported here, not lost. Calls stay asked for until vhu_blkdrv_wait()
 * returns; after the read completes, harvest with vhu_blkdrv_poll().
 * \return 1 if completions are already pending (poll now, do not wait),
 *         0 if a call will come, -EINVAL for a bad queue.
 */
int vhu_blkdrv_arm_call(struct vhu_blkdrv *d, unsigned int q);

/**
 * \return the kick eventfd writes vhu_blkdrv_kick() made on q (those the
 *         back-end asked for); 0 for a bad queue. Read it on q's thread.
 */
uint64_t vhu_blkdrv_kicks(const struct vhu_blkdrv *d, unsigned int q);

/** \return requests in flight on q (submitted, not yet harvested). */
unsigned int vhu_blkdrv_inflight(const struct vhu_blkdrv *d, unsigned int q);

/** \return the back-end's PID (SO_PEERCRED), or -1 if unknown. */
int vhu_blkdrv_peer_pid(const struct vhu_blkdrv *d);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
