/* SPDX-License-Identifier: MIT */
/**
 * \file
 * Inflight I/O tracking for split virtqueues (vhost-user spec, "Inflight
 * I/O tracking", protocol feature INFLIGHT_SHMFD): a shared-memory region
 * the back-end creates (GET_INFLIGHT_FD), the front-end keeps, and hands to
 * every later back-end (SET_INFLIGHT_FD), in which the back-end marks each
 * request it takes from the avail ring until it has completed it. A
 * back-end that died with requests in flight is replaced by one that
 * finds them here and submits them again, in the order they were first
 * taken, so each completes exactly once.
 *
 * The region is num_queues areas of vhu_inflight_area_size(queue_size)
 * bytes, one per queue, each a struct vhu_inflight_queue followed by its
 * descriptor states. Transport-free: <vhu/vq.h> writes the region as it
 * pops and pushes, the device layer creates and maps it.
 *
 * Security model: the front-end holds the region's fd and may write it at
 * any time. It is read only when a queue starts (vhu_inflight_recover()),
 * each field once into a local; what it says is checked (a version other
 * than 0 or 1, desc_num other than the queue size, a last_batch_head
 * outside the queue, an inflight flag other than 0 or 1, two requests
 * with one counter, a counter that cannot be followed, a used index behind
 * the ring's or more than one ahead: -VHU_EINFLIGHT) before it is used;
 * the heads it yields are below the queue size by construction, and their
 * chains are walked and validated by vhu_vq_pop() like any other.
 */
#ifndef VHU_INFLIGHT_H
#define VHU_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** The format version a back-end writes when it first starts a queue. */
#define VHU_INFLIGHT_VERSION	1u

/** Each queue's area is a multiple of this (and starts at one). */
#define VHU_INFLIGHT_ALIGN	64u

/** One descriptor's state: the spec's DescStateSplit, 16 bytes. */
struct vhu_inflight_desc {
	uint8_t inflight;	/**< 1: taken from the avail ring and not yet used */
	uint8_t padding[5];
	uint16_t next;		/**< unused for split rings (batching chains) */
	uint64_t counter;	/**< the order requests were taken in */
};

/** One queue's area: the spec's QueueRegionSplit, a 16-byte header. */
struct vhu_inflight_queue {
	uint64_t features;		/**< unused by vhu, kept as found */
	uint16_t version;		/**< 0: never used (fresh); VHU_INFLIGHT_VERSION */
	uint16_t desc_num;		/**< entries in desc[]: the queue size */
	uint16_t last_batch_head;	/**< head of the completion being pushed */
	uint16_t used_idx;		/**< the used->idx the last completed push stored */
	struct vhu_inflight_desc desc[];
};

_Static_assert(sizeof(struct vhu_inflight_desc) == 16, "spec: DescStateSplit is 16 bytes");
_Static_assert(sizeof(struct vhu_inflight_queue) == 16, "spec: QueueRegionSplit header");

/** A request to submit again, as vhu_inflight_recover() lists them. */
struct vhu_inflight_entry {
	uint64_t counter;
	uint16_t head;
};

/** What recovery found for a queue. */
struct vhu_inflight_state {
	uint16_t used_idx;	/**< the ring's used index, now the area's too */
	uint16_t last_avail;	/**< used_idx + requests in flight: the next avail index */
	uint16_t nresubmit;	/**< list[0, nresubmit): in counter order */
	uint64_t next_counter;	/**< the counter for the next request taken */
	/**
	 * The area was fresh (version 0): it records nothing, so the next
	 * avail index is the front-end's (SET_VRING_BASE), not last_avail.
	 */
	bool fresh;
};

/**
 * \return the bytes of one queue's area for queue_size descriptors: the
 *         header and the descriptor states, rounded up to
 *         VHU_INFLIGHT_ALIGN (libvhost-user and DPDK compute the same for
 *         every power-of-two size).
 */
size_t vhu_inflight_area_size(uint16_t queue_size);

/**
 * \return the bytes of a region of num_queues areas, or 0 if num_queues is
 *         0 or queue_size is not a valid virtqueue size (a power of two in
 *         1..32768).
 */
uint64_t vhu_inflight_region_size(uint16_t num_queues, uint16_t queue_size);

/**
 * \return queue i's area in a region laid out for queue_size (no check of
 *         i: the caller knows the region's num_queues).
 */
struct vhu_inflight_queue *vhu_inflight_queue_at(void *region, uint16_t queue_size,
						 unsigned int i);

/**
 * A new region, as GET_INFLIGHT_FD hands it out: zeroed, each area's
 * desc_num set to queue_size, version 0 (fresh: the first start adopts
 * the ring's used index instead of recovering).
 */
void vhu_inflight_region_init(void *region, uint16_t num_queues, uint16_t queue_size);

/**
 * Recovery, when a queue with an area starts (the spec's steps for a
 * split ring): a fresh area (version 0) is reset and adopts used_idx with
 * nothing in flight (st->fresh). Otherwise the area is checked; if its used_idx is one
 * behind the ring's (a push stored the used index and died before it
 * finished), the entry of last_batch_head is cleared and used_idx
 * advanced; then the entries in flight are listed in counter order.
 *
 * \param num       the queue size (the area's desc_num must equal it)
 * \param used_idx  the ring's used->idx as the device reads it now
 * \param list      room for num entries (allocated once, at setup)
 * \return 0 with *st filled; -VHU_EINFLIGHT if the area is inconsistent
 *         (as the file comment lists), nothing written to it then.
 */
int vhu_inflight_recover(struct vhu_inflight_queue *q, uint16_t num, uint16_t used_idx,
			 struct vhu_inflight_entry *list, struct vhu_inflight_state *st);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
