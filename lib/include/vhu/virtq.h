/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The split virtqueue layout (virtio 1.2, section 2.7), defined once for
 * both sides: the device side (<vhu/vq.h>) and any driver side (a test's
 * fake guest, a userspace front-end).
 *
 * A split virtqueue of size num (a power of two, 1..32768) is three areas
 * in guest memory, each written by one side only:
 *  - the descriptor table: num descriptors of 16 bytes, 16-byte aligned,
 *    written by the driver;
 *  - the avail ring (driver area): flags, idx, ring[num], used_event;
 *    2-byte aligned, written by the driver;
 *  - the used ring (device area): flags, idx, ring[num] of (id, len),
 *    avail_event; 4-byte aligned, written by the device.
 * used_event and avail_event exist in memory whatever the features; they
 * are meaningful only with VIRTIO_RING_F_EVENT_IDX.
 *
 * Fields are little-endian (VIRTIO_F_VERSION_1); vhu runs on little-endian
 * hosts only, so they are read as native integers. The idx fields are the
 * publication points: the writer stores its ring entries, then the idx with
 * release order; the reader loads the idx with acquire order, then the
 * entries.
 */
#ifndef VHU_VIRTQ_H
#define VHU_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Largest split virtqueue size (virtio: Queue Size <= 32768). */
#define VHU_VIRTQ_MAX_SIZE		32768u

/** Descriptor flags. */
#define VHU_VIRTQ_DESC_F_NEXT		1u	/**< the chain continues at next */
#define VHU_VIRTQ_DESC_F_WRITE		2u	/**< buffer is device-writable */
#define VHU_VIRTQ_DESC_F_INDIRECT	4u	/**< buffer is a table of descriptors */

/** avail->flags: the driver asks for no used-buffer notifications (no EVENT_IDX). */
#define VHU_VIRTQ_AVAIL_F_NO_INTERRUPT	1u
/** used->flags: the device asks for no available-buffer notifications (no EVENT_IDX). */
#define VHU_VIRTQ_USED_F_NO_NOTIFY	1u

/** Alignment of each area (virtio 1.x). */
#define VHU_VIRTQ_DESC_ALIGN		16u
#define VHU_VIRTQ_AVAIL_ALIGN		2u
#define VHU_VIRTQ_USED_ALIGN		4u

/** One descriptor: a guest-physical buffer. */
struct vhu_virtq_desc {
	uint64_t addr;		/**< guest-physical address */
	uint32_t len;		/**< bytes */
	uint16_t flags;		/**< VHU_VIRTQ_DESC_F_* */
	uint16_t next;		/**< next descriptor, if flags has NEXT */
};

/** The avail ring; used_event follows ring[num]. */
struct vhu_virtq_avail {
	uint16_t flags;		/**< VHU_VIRTQ_AVAIL_F_* */
	uint16_t idx;		/**< where the driver puts the next entry (mod num) */
	uint16_t ring[];	/**< heads of available chains */
};

/** One used-ring entry. */
struct vhu_virtq_used_elem {
	uint32_t id;		/**< head of the completed chain */
	uint32_t len;		/**< bytes written into the chain's writable buffers */
};

/** The used ring; avail_event follows ring[num]. */
struct vhu_virtq_used {
	uint16_t flags;		/**< VHU_VIRTQ_USED_F_* */
	uint16_t idx;		/**< where the device puts the next entry (mod num) */
	struct vhu_virtq_used_elem ring[];
};

_Static_assert(sizeof(struct vhu_virtq_desc) == 16, "virtq_desc is 16 bytes");
_Static_assert(offsetof(struct vhu_virtq_desc, flags) == 12, "virtq_desc.flags");
_Static_assert(sizeof(struct vhu_virtq_avail) == 4, "virtq_avail header");
_Static_assert(sizeof(struct vhu_virtq_used_elem) == 8, "virtq_used_elem is 8 bytes");
_Static_assert(sizeof(struct vhu_virtq_used) == 4, "virtq_used header");

/** Bytes of the descriptor table of a queue of size num. */
static inline size_t
vhu_virtq_desc_size(unsigned int num)
{
	return 16u * (size_t)num;
}

/** Bytes of the avail ring, used_event included. */
static inline size_t
vhu_virtq_avail_size(unsigned int num)
{
	return 4u + 2u * (size_t)num + 2u;
}

/** Bytes of the used ring, avail_event included. */
static inline size_t
vhu_virtq_used_size(unsigned int num)
{
	return 4u + 8u * (size_t)num + 2u;
}

/** The driver's used_event field (EVENT_IDX): after avail->ring[num]. */
static inline uint16_t *
vhu_virtq_used_event(struct vhu_virtq_avail *avail, unsigned int num)
{
	return &avail->ring[num];
}

/** The device's avail_event field (EVENT_IDX): after used->ring[num]. */
static inline uint16_t *
vhu_virtq_avail_event(struct vhu_virtq_used *used, unsigned int num)
{
	return (uint16_t *)(void *)&used->ring[num];
}

/**
 * EVENT_IDX's notification test (virtio's vring_need_event): having moved
 * an index from old_idx to new_idx, notify the other side if its event
 * index lies in [old_idx, new_idx), in 16-bit ring arithmetic.
 */
static inline bool
vhu_virtq_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

/** True if num is a valid split virtqueue size: a power of two in 1..32768. */
static inline bool
vhu_virtq_size_valid(uint32_t num)
{
	return num != 0 && num <= VHU_VIRTQ_MAX_SIZE && (num & (num - 1)) == 0;
}

#ifdef __cplusplus
}
#endif
#endif
