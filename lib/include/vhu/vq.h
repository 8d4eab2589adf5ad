/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The device side of a split virtqueue: the per-queue state that the
 * SET_VRING_* messages set, and the data path (pop a request, push its
 * completion, decide whether the guest needs a call, suppress or enable
 * guest notifications). Transport-free: kick and call fds belong to the
 * caller (the engine, or a blocking back-end), which tells the queue when
 * SET_VRING_KICK arrived (vhu_vq_start) and signals the call fd when
 * vhu_vq_need_call() says so.
 *
 * Security model: the guest writes the descriptor table and the avail ring
 * while the device reads them, and may be hostile. Every value is read from
 * guest memory once, into a local, before it is checked and used; every
 * address is translated through <vhu/guest_mem.h> (one region per range);
 * chains are bounded by their table size, indirect tables may not nest.
 * The first fault marks the queue broken: vhu_vq_pop() returns that error
 * from then on, until the queue is reset. Nothing is read or written
 * outside a mapped region.
 *
 * Lifecycle (vhost-user spec, "Ring states", as QEMU, rust-vmm and DPDK
 * implement it): a queue starts stopped and disabled. SET_FEATURES without
 * VHOST_USER_F_PROTOCOL_FEATURES enables it (vhu_vq_set_features); with
 * that bit negotiated, SET_VRING_ENABLE does (vhu_vq_set_enable). It is
 * started by SET_VRING_KICK (vhu_vq_start) and stopped by GET_VRING_BASE
 * (vhu_vq_get_base). Requests are popped only while it is started and
 * enabled. NUM, ADDR and BASE may change only while it is stopped.
 *
 * Memory: a started queue holds an epoch of its vhu_mem for its ring
 * pointers and re-translates the rings when the memory table changed (at
 * its next operation, or at once with vhu_vq_refresh);
 * every popped request holds the epoch current at its pop until it is
 * pushed or dropped, so no mapping it points into goes away before.
 *
 * Threads: a queue, its vhu_mem and its requests belong to one thread.
 * No call allocates except vhu_vq_create.
 */
#ifndef VHU_VQ_H
#define VHU_VQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vhu/guest_mem.h>
#include <vhu/inflight.h>
#include <vhu/virtq.h>
#include <vhu/wire.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** One queue, device side. */
struct vhu_vq;

/**
 * A popped request: one descriptor chain as iovecs of local pointers. The
 * first nread iovecs are the device-readable buffers, the next nwrite the
 * device-writable ones, in chain order (zero-length descriptors are
 * skipped). The iovec array is the caller's (vhu_vq_pop's iov).
 */
struct vhu_vq_req {
	struct iovec *iov;	/**< the caller's array */
	unsigned int nread;	/**< device-readable iovecs: iov[0, nread) */
	unsigned int nwrite;	/**< device-writable iovecs: iov[nread, nread + nwrite) */
	uint64_t read_len;	/**< bytes in the readable iovecs */
	uint64_t write_len;	/**< bytes in the writable iovecs */
	uint16_t head;		/**< chain head: the id of its used element */
	struct vhu_mem_epoch *epoch;	/**< held until push or drop; do not touch */
};

/**
 * Create a stopped, disabled, unconfigured queue over m (which must outlive
 * it). \return 0, or -ENOMEM.
 */
int vhu_vq_create(struct vhu_mem *m, struct vhu_vq **out);

/** Release the ring pointers' epoch and free. Requests still held must be dropped first. */
void vhu_vq_destroy(struct vhu_vq *vq);

/**
 * SET_FEATURES: the acked virtio features. The queue uses
 * VIRTIO_RING_F_INDIRECT_DESC (VHU_F_RING_INDIRECT_DESC; without it an
 * indirect descriptor is a fault), VIRTIO_RING_F_EVENT_IDX
 * (VHU_F_RING_EVENT_IDX) and VHOST_USER_F_PROTOCOL_FEATURES: without that
 * bit, the queue is enabled now; with it, nothing changes (SET_FEATURES
 * never disables). VIRTIO_F_VERSION_1 is recorded (rings are read as
 * little-endian either way). Allowed in any state.
 */
void vhu_vq_set_features(struct vhu_vq *vq, uint64_t features);

/**
 * SET_VRING_NUM.
 * \return 0; -VHU_EVQSIZE if num is not a power of two in 1..32768;
 *         -EBUSY if the queue is started.
 */
int vhu_vq_set_num(struct vhu_vq *vq, uint32_t num);

/**
 * SET_VRING_ADDR: the front-end virtual addresses of the three areas. They
 * are translated (through the regions' user_addr) when the queue starts.
 * \return 0; -VHU_EVQRING if an address is misaligned for its area;
 *         -EBUSY if started.
 */
int vhu_vq_set_addr(struct vhu_vq *vq, const struct vhu_vring_addr *addr);

/**
 * SET_VRING_BASE (split ring): the next avail index to process.
 * \return 0; -VHU_EBODY if bits 16-31 are set; -EBUSY if started.
 */
int vhu_vq_set_base(struct vhu_vq *vq, uint32_t base);

/**
 * SET_VRING_ENABLE. \return 0, or -VHU_EBODY if enable is not 0 or 1.
 */
int vhu_vq_set_enable(struct vhu_vq *vq, uint32_t enable);

/**
 * SET_VRING_KICK: start the queue. Translates the rings, reads the device's
 * used index from the used ring (the device owns it; after a reconnect it
 * is the truth), and checks that no more requests are in flight than the
 * queue holds.
 * With an inflight area attached (vhu_vq_set_inflight), runs the recovery
 * and sets the next avail index from it (the front-end's SET_VRING_BASE
 * is overridden, unless the area is fresh and so records nothing).
 * \return 0; -EINVAL if NUM or ADDR was never set; -VHU_EVQRING (a ring is
 *         not inside one region, or misaligned once mapped), -VHU_EVQIDX or
 *         -VHU_EINFLIGHT (the queue is broken as well).
 */
int vhu_vq_start(struct vhu_vq *vq);

/**
 * GET_VRING_BASE: stop the queue and report the next avail index to process
 * (the reply's num). Requests already popped stay valid; push them as usual
 * (the used ring stays mapped until they are).
 */
uint32_t vhu_vq_get_base(struct vhu_vq *vq);

/**
 * Back to the state of vhu_vq_create (RESET_OWNER, RESET_DEVICE, or to
 * clear a broken queue): features, num, addresses, base, enable, error.
 * Requests still held must be dropped first.
 */
void vhu_vq_reset(struct vhu_vq *vq);

/**
 * After a memory-table message: move the rings to the new table now (every
 * queue operation does it anyway, but an idle queue would keep the old
 * table's mappings pinned until its next one). Call it for each queue once
 * SET_MEM_TABLE, REM_MEM_REG or a reset of the vhu_mem has been applied.
 * \return 0; -VHU_EVQRING if a ring is no longer inside one region (the
 *         queue is broken); or the error that broke the queue earlier.
 */
int vhu_vq_refresh(struct vhu_vq *vq);

/** \return true if the queue is started, enabled, and not broken. */
bool vhu_vq_ready(const struct vhu_vq *vq);

/** \return true if started (SET_VRING_KICK seen, no GET_VRING_BASE since). */
bool vhu_vq_started(const struct vhu_vq *vq);

/** \return true if enabled. */
bool vhu_vq_enabled(const struct vhu_vq *vq);

/** \return 0, or the guest fault that broke the queue (negative). */
int vhu_vq_error(const struct vhu_vq *vq);

/** \return the queue size (0 before SET_VRING_NUM). */
uint32_t vhu_vq_num(const struct vhu_vq *vq);

/** \return requests popped and not yet pushed or dropped. */
unsigned int vhu_vq_inflight(const struct vhu_vq *vq);

/**
 * Inflight tracking (<vhu/inflight.h>): attach the queue's area of an
 * inflight region (NULL detaches). From then on every pop marks its head
 * in flight with the next counter before returning it, and every push
 * clears it in the spec's order: the used element, last_batch_head, the
 * used index (release), then the head's flag and the area's used_idx; a
 * death at any point leaves a state vhu_inflight_recover() repairs. Each
 * start (vhu_vq_start) runs the recovery: the requests the area lists are
 * popped first, in counter order, with their old heads (their chains
 * checked as any other), then new ones from used_idx + their number. The
 * area must stay mapped until detached, reset or destroyed. Allocates a
 * list of queue_size entries once (kept across resets).
 * \param queue_size  the region's queue size (the area's desc_num); the
 *                    queue's size must equal it when it starts, else the
 *                    start fails with -VHU_EINFLIGHT.
 * \return 0; -EBUSY if the queue is started or has requests in flight;
 *         -ENOMEM.
 */
int vhu_vq_set_inflight(struct vhu_vq *vq, struct vhu_inflight_queue *area,
			uint16_t queue_size);

/**
 * \return requests the last start found in the inflight area and
 *         vhu_vq_pop() has not returned again yet.
 */
unsigned int vhu_vq_resubmit_pending(const struct vhu_vq *vq);

/**
 * Pop the next available request.
 *
 * \param iov, iov_max  the caller's iovec array; the chain's buffers must
 *                      fit in it (iov_max of the queue size covers every
 *                      chain without indirect descriptors).
 * \return 1 and *req filled (it holds an epoch: push or drop it); 0 if
 *         nothing is available, or the queue is not started or not
 *         enabled; or a guest fault, after which the queue is broken and
 *         returns that fault on every later pop: -VHU_EVQIDX (avail index
 *         moved by more than the queue size), -VHU_EVQDESC (head or next
 *         outside its table), -VHU_EVQLOOP (a chain longer than its table:
 *         loops included), -VHU_EVQINDIRECT, -VHU_EVQORDER (readable after
 *         writable), -VHU_EVQSEGS (more buffers than iov_max),
 *         -VHU_EGUESTADDR (a buffer or indirect table not inside one
 *         region), -VHU_EVQRING (the rings no longer translate after a
 *         memory table change), -VHU_EMEMLOST (a region of the table
 *         shrank under its mapping and the SIGBUS guard replaced it with
 *         zeroes, vhu_mem_error(): whatever else the zeroes looked like).
 */
int vhu_vq_pop(struct vhu_vq *vq, struct vhu_vq_req *req, struct iovec *iov,
	       unsigned int iov_max);

/**
 * Complete a request: write (head, len) to the used ring and publish the
 * used index (release order), then release the request's epoch. The
 * request is done with, whatever the return.
 * \param len  bytes written into the writable buffers; clamped to
 *             req->write_len (a device cannot have written more).
 * \return 0; -VHU_EVQRING if the used ring could not be written (its
 *         region left the memory table: the completion is lost, the queue
 *         is broken); -VHU_EMEMLOST if a region of the table was lost
 *         (vhu_mem_error(); the queue is broken: the device is to be
 *         closed). A queue broken by a later guest fault still takes
 *         the completions of requests popped before it.
 */
int vhu_vq_push(struct vhu_vq *vq, struct vhu_vq_req *req, uint32_t len);

/**
 * Give up a popped request without completing it (device reset, a request
 * the device rejects without an answer): releases its epoch. The guest
 * never sees it used. With an inflight area the request stays marked in
 * flight there: it was not completed, so the next start of the queue (a
 * new back-end after a crash, or this one after GET_VRING_BASE and a new
 * kick) submits it again; completing it is then the guest's only answer.
 */
void vhu_vq_drop(struct vhu_vq *vq, struct vhu_vq_req *req);

/**
 * After pushes: does the guest want a used-buffer notification (a call)?
 * With EVENT_IDX: if its used_event lies among the indexes pushed since the
 * last call decision (vhu_virtq_need_event); without: if any were pushed
 * and avail->flags lacks NO_INTERRUPT. A full barrier orders the used index
 * store before the read of the guest's field. Each call consumes the
 * pushes it judged: call it once per batch, then signal if true.
 */
bool vhu_vq_need_call(struct vhu_vq *vq);

/**
 * Ask the guest not to kick (polling, or while a batch is processed):
 * used->flags NO_NOTIFY without EVENT_IDX; with EVENT_IDX, avail_event is
 * set (and kept, as requests are popped) half the index space behind the
 * next index to process, where no index the guest publishes reaches it.
 */
void vhu_vq_notify_disable(struct vhu_vq *vq);

/**
 * Polling: does the avail ring hold requests not yet popped (or are
 * inflight requests still to be resubmitted)? One acquire load of the
 * avail index. 
eturn false when the queue is not ready;
 * true when the rings no longer translate (the next vhu_vq_pop() reports
 * the fault).
 */
bool vhu_vq_avail_pending(struct vhu_vq *vq);

/**
 * Ask the guest to kick again: clear NO_NOTIFY, or with EVENT_IDX set
 * avail_event to the next index to process. Then, after a full barrier,
 * look at the avail index again.
 * \return true if requests became available meanwhile: the guest may not
 *         kick for them, so pop them now (the lost-kick race).
 */
bool vhu_vq_notify_enable(struct vhu_vq *vq);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
